//! Every topic of the IoT Hub device protocol as one enum, with one assemble and one match
//! function (`azure-iot-hub.md` §6–§10).
//!
//! | variant | topic |
//! |---|---|
//! | [`DeviceTopic::Telemetry`] | `devices/{d}/messages/events/{bag}`, `devices/{d}/modules/{m}/messages/events/{bag}` |
//! | [`DeviceTopic::C2dFilter`] | `devices/{d}/messages/devicebound/#` |
//! | [`DeviceTopic::C2d`] | `devices/{d}/messages/devicebound/{bag}` |
//! | [`DeviceTopic::InputsFilter`] | `devices/{d}/modules/{m}/inputs/#` |
//! | [`DeviceTopic::Input`] | `devices/{d}/modules/{m}/inputs/{input}/{bag}` |
//! | [`DeviceTopic::MethodsFilter`] | `$iothub/methods/POST/#` |
//! | [`DeviceTopic::MethodRequest`] | `$iothub/methods/POST/{name}/?$rid={rid}` |
//! | [`DeviceTopic::MethodResponse`] | `$iothub/methods/res/{status}/?$rid={rid}` |
//! | [`DeviceTopic::TwinResponsesFilter`] | `$iothub/twin/res/#` |
//! | [`DeviceTopic::TwinResponse`] | `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]` |
//! | [`DeviceTopic::TwinGet`] | `$iothub/twin/GET/?$rid={rid}` |
//! | [`DeviceTopic::TwinPatchReported`] | `$iothub/twin/PATCH/properties/reported/?$rid={rid}` |
//! | [`DeviceTopic::TwinDesiredFilter`] | `$iothub/twin/PATCH/properties/desired/#` |
//! | [`DeviceTopic::TwinDesiredPatch`] | `$iothub/twin/PATCH/properties/desired/?$version={v}` |
//!
//! Device and module ids are literal in topics; request ids and property bags are
//! percent-encoded.
//!
//! ```
//! use connector_azure::topics::DeviceTopic;
//! let t = DeviceTopic::parse("$iothub/twin/res/204/?$rid=7&$version=12")?;
//! assert_eq!(t, DeviceTopic::TwinResponse { status: 204, request_id: "7".into(), version: Some(12) });
//! assert_eq!(t.assemble()?, "$iothub/twin/res/204/?$rid=7&$version=12");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::encoding::percent_encode;
use crate::error::{PropertyBagError, TopicParseError};
use crate::properties::PropertyBag;

const METHODS_POST: &str = "$iothub/methods/POST/";
const METHODS_RES: &str = "$iothub/methods/res/";
const TWIN_RES: &str = "$iothub/twin/res/";
const TWIN_GET: &str = "$iothub/twin/GET/";
const TWIN_REPORTED: &str = "$iothub/twin/PATCH/properties/reported/";
const TWIN_DESIRED: &str = "$iothub/twin/PATCH/properties/desired/";

/// Who publishes on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// The device publishes.
    DeviceToHub,
    /// The hub publishes.
    HubToDevice,
    /// A subscription filter.
    Filter,
}

/// A topic of the IoT Hub device protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceTopic {
    /// Device-to-cloud telemetry of a device or module, with its property bag.
    Telemetry {
        /// The device id.
        device_id: String,
        /// The module id, for module telemetry.
        module_id: Option<String>,
        /// The property bag.
        properties: PropertyBag,
    },
    /// The cloud-to-device subscription.
    C2dFilter {
        /// The device id (azure-sdk-for-c uses `+`).
        device_id: String,
    },
    /// A cloud-to-device message.
    C2d {
        /// The device id.
        device_id: String,
        /// The property bag.
        properties: PropertyBag,
    },
    /// The module-inputs subscription (IoT Edge).
    InputsFilter {
        /// The device id.
        device_id: String,
        /// The module id.
        module_id: String,
    },
    /// A message routed to a module input.
    Input {
        /// The device id.
        device_id: String,
        /// The module id.
        module_id: String,
        /// The input name (percent-decoded).
        input: String,
        /// The property bag.
        properties: PropertyBag,
    },
    /// The direct-methods subscription.
    MethodsFilter,
    /// A direct-method request.
    MethodRequest {
        /// The method name (`{component}*{command}` for Plug and Play components).
        name: String,
        /// `$rid`, opaque.
        request_id: String,
    },
    /// The device's answer to a direct method.
    MethodResponse {
        /// The status chosen by the device.
        status: u16,
        /// `$rid` of the request.
        request_id: String,
    },
    /// The twin-responses subscription.
    TwinResponsesFilter,
    /// A response to a twin request.
    TwinResponse {
        /// HTTP-like status.
        status: u16,
        /// `$rid` of the request.
        request_id: String,
        /// `$version`: the new reported version after a PATCH.
        version: Option<u64>,
    },
    /// Get the twin.
    TwinGet {
        /// `$rid`.
        request_id: String,
    },
    /// Patch reported properties.
    TwinPatchReported {
        /// `$rid`.
        request_id: String,
    },
    /// The desired-properties subscription.
    TwinDesiredFilter,
    /// A desired-properties change.
    TwinDesiredPatch {
        /// `$version`: the desired version after the change.
        version: Option<u64>,
    },
}

impl DeviceTopic {
    /// Who publishes on this topic.
    pub fn direction(&self) -> Direction {
        match self {
            Self::C2dFilter { .. }
            | Self::InputsFilter { .. }
            | Self::MethodsFilter
            | Self::TwinResponsesFilter
            | Self::TwinDesiredFilter => Direction::Filter,
            Self::Telemetry { .. }
            | Self::MethodResponse { .. }
            | Self::TwinGet { .. }
            | Self::TwinPatchReported { .. } => Direction::DeviceToHub,
            Self::C2d { .. }
            | Self::Input { .. }
            | Self::MethodRequest { .. }
            | Self::TwinResponse { .. }
            | Self::TwinDesiredPatch { .. } => Direction::HubToDevice,
        }
    }

    /// The topic (or filter) text. Only a property bag with an empty name fails.
    pub fn assemble(&self) -> Result<String, PropertyBagError> {
        let rid = |r: &str| percent_encode(r);
        Ok(match self {
            Self::Telemetry { device_id, module_id: None, properties } => {
                format!("devices/{device_id}/messages/events/{}", properties.encode()?)
            }
            Self::Telemetry { device_id, module_id: Some(m), properties } => {
                format!("devices/{device_id}/modules/{m}/messages/events/{}", properties.encode()?)
            }
            Self::C2dFilter { device_id } => format!("devices/{device_id}/messages/devicebound/#"),
            Self::C2d { device_id, properties } => {
                format!("devices/{device_id}/messages/devicebound/{}", properties.encode()?)
            }
            Self::InputsFilter { device_id, module_id } => {
                format!("devices/{device_id}/modules/{module_id}/inputs/#")
            }
            Self::Input { device_id, module_id, input, properties } => format!(
                "devices/{device_id}/modules/{module_id}/inputs/{}/{}",
                percent_encode(input),
                properties.encode()?
            ),
            Self::MethodsFilter => format!("{METHODS_POST}#"),
            Self::MethodRequest { name, request_id } => {
                format!("{METHODS_POST}{name}/?$rid={}", rid(request_id))
            }
            Self::MethodResponse { status, request_id } => {
                format!("{METHODS_RES}{status}/?$rid={}", rid(request_id))
            }
            Self::TwinResponsesFilter => format!("{TWIN_RES}#"),
            Self::TwinResponse { status, request_id, version } => {
                let mut t = format!("{TWIN_RES}{status}/?$rid={}", rid(request_id));
                if let Some(v) = version {
                    t.push_str(&format!("&$version={v}"));
                }
                t
            }
            Self::TwinGet { request_id } => format!("{TWIN_GET}?$rid={}", rid(request_id)),
            Self::TwinPatchReported { request_id } => format!("{TWIN_REPORTED}?$rid={}", rid(request_id)),
            Self::TwinDesiredFilter => format!("{TWIN_DESIRED}#"),
            Self::TwinDesiredPatch { version: Some(v) } => format!("{TWIN_DESIRED}?$version={v}"),
            Self::TwinDesiredPatch { version: None } => TWIN_DESIRED.to_owned(),
        })
    }

    /// Matches a topic (or one of the filters above) to its variant.
    pub fn parse(topic: &str) -> Result<Self, TopicParseError> {
        if topic.starts_with("$iothub/") {
            return parse_iothub(topic);
        }
        let rest = topic.strip_prefix("devices/").ok_or(TopicParseError::Unknown)?;
        let (device_id, rest) = rest.split_once('/').ok_or(TopicParseError::Unknown)?;
        let device_id = non_empty("device id", device_id)?.to_owned();
        if rest == "messages/devicebound/#" {
            return Ok(Self::C2dFilter { device_id });
        }
        if let Some(bag) = tail(rest, "messages/devicebound") {
            return Ok(Self::C2d { device_id, properties: PropertyBag::parse(bag)? });
        }
        if let Some(bag) = tail(rest, "messages/events") {
            return Ok(Self::Telemetry { device_id, module_id: None, properties: PropertyBag::parse(bag)? });
        }
        let rest = rest.strip_prefix("modules/").ok_or(TopicParseError::Unknown)?;
        let (module_id, rest) = rest.split_once('/').ok_or(TopicParseError::Unknown)?;
        let module_id = non_empty("module id", module_id)?.to_owned();
        if let Some(bag) = tail(rest, "messages/events") {
            let properties = PropertyBag::parse(bag)?;
            return Ok(Self::Telemetry { device_id, module_id: Some(module_id), properties });
        }
        if rest == "inputs/#" {
            return Ok(Self::InputsFilter { device_id, module_id });
        }
        let rest = rest.strip_prefix("inputs/").ok_or(TopicParseError::Unknown)?;
        let (input, bag) = rest.split_once('/').unwrap_or((rest, ""));
        let input = crate::encoding::percent_decode(non_empty("input name", input)?).map_err(|_| {
            TopicParseError::InvalidSegment { what: "input name", reason: "bad percent-encoding" }
        })?;
        Ok(Self::Input { device_id, module_id, input, properties: PropertyBag::parse(bag)? })
    }
}

/// `rest` after `prefix` when followed by nothing or by `/`: the bag (possibly empty).
fn tail<'a>(rest: &'a str, prefix: &str) -> Option<&'a str> {
    match rest.strip_prefix(prefix)? {
        "" => Some(""),
        r => r.strip_prefix('/'),
    }
}

fn non_empty<'a>(what: &'static str, s: &'a str) -> Result<&'a str, TopicParseError> {
    if s.is_empty() {
        Err(TopicParseError::InvalidSegment { what, reason: "empty" })
    } else {
        Ok(s)
    }
}

fn parse_iothub(topic: &str) -> Result<DeviceTopic, TopicParseError> {
    use DeviceTopic as T;
    match topic {
        "$iothub/methods/POST/#" => return Ok(T::MethodsFilter),
        "$iothub/twin/res/#" => return Ok(T::TwinResponsesFilter),
        "$iothub/twin/PATCH/properties/desired/#" => return Ok(T::TwinDesiredFilter),
        _ => {}
    }
    if let Some(r) = topic.strip_prefix(METHODS_POST) {
        let (name, query) = split_segment(r, "method name")?;
        let q = Query::parse(query)?;
        return Ok(T::MethodRequest { name: name.to_owned(), request_id: q.request_id()? });
    }
    if let Some(r) = topic.strip_prefix(METHODS_RES) {
        let (status, query) = split_segment(r, "status")?;
        let q = Query::parse(query)?;
        return Ok(T::MethodResponse { status: parse_status(status)?, request_id: q.request_id()? });
    }
    if let Some(r) = topic.strip_prefix(TWIN_RES) {
        let (status, query) = split_segment(r, "status")?;
        let q = Query::parse(query)?;
        return Ok(T::TwinResponse {
            status: parse_status(status)?,
            request_id: q.request_id()?,
            version: q.version()?,
        });
    }
    if let Some(r) = topic.strip_prefix(TWIN_GET) {
        return Ok(T::TwinGet { request_id: Query::parse(r)?.request_id()? });
    }
    if let Some(r) = topic.strip_prefix(TWIN_REPORTED) {
        return Ok(T::TwinPatchReported { request_id: Query::parse(r)?.request_id()? });
    }
    let desired = topic
        .strip_prefix(TWIN_DESIRED)
        .or_else(|| (topic == TWIN_DESIRED.trim_end_matches('/')).then_some(""));
    if let Some(r) = desired {
        return Ok(T::TwinDesiredPatch { version: Query::parse(r)?.version()? });
    }
    Err(TopicParseError::Unknown)
}

/// Splits `{segment}/{query}`: the segment must be non-empty, the rest is the query.
fn split_segment<'a>(s: &'a str, what: &'static str) -> Result<(&'a str, &'a str), TopicParseError> {
    let (segment, query) = s.split_once('/').unwrap_or((s, ""));
    Ok((non_empty(what, segment)?, query))
}

/// The `?$rid=…&$version=…` query of a response or request topic.
struct Query {
    request_id: Option<String>,
    version: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Result<Self, TopicParseError> {
        if !query.is_empty() && !query.starts_with('?') {
            return Err(TopicParseError::Unknown);
        }
        let mut q = Query { request_id: None, version: None };
        for (k, v) in PropertyBag::parse(query)?.into_pairs() {
            let (name, slot) = match k.as_str() {
                "$rid" => ("$rid", &mut q.request_id),
                "$version" => ("$version", &mut q.version),
                _ => continue, // unknown parameters are ignored
            };
            if slot.is_some() {
                return Err(TopicParseError::DuplicateParameter(name));
            }
            *slot = Some(v.unwrap_or_default());
        }
        Ok(q)
    }

    fn request_id(&self) -> Result<String, TopicParseError> {
        match &self.request_id {
            Some(r) if !r.is_empty() => Ok(r.clone()),
            _ => Err(TopicParseError::MissingParameter("$rid")),
        }
    }

    fn version(&self) -> Result<Option<u64>, TopicParseError> {
        self.version
            .as_deref()
            .map(|v| parse_decimal(v).ok_or_else(|| TopicParseError::InvalidVersion { value: truncate(v) }))
            .transpose()
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_status(s: &str) -> Result<u16, TopicParseError> {
    parse_decimal(s)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or_else(|| TopicParseError::InvalidStatus { value: truncate(s) })
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceTopic as T;

    fn bag(pairs: &[(&str, &str)]) -> PropertyBag {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_topic_assembles_and_parses_back() {
        let table = [
            (
                T::Telemetry { device_id: "d".into(), module_id: None, properties: bag(&[]) },
                "devices/d/messages/events/",
            ),
            (
                T::Telemetry {
                    device_id: "d".into(),
                    module_id: Some("m".into()),
                    properties: bag(&[("$.on", "o1")]),
                },
                "devices/d/modules/m/messages/events/%24.on=o1",
            ),
            (T::C2dFilter { device_id: "d".into() }, "devices/d/messages/devicebound/#"),
            (
                T::C2d { device_id: "d".into(), properties: bag(&[("a", "1")]) },
                "devices/d/messages/devicebound/a=1",
            ),
            (
                T::InputsFilter { device_id: "d".into(), module_id: "m".into() },
                "devices/d/modules/m/inputs/#",
            ),
            (
                T::Input {
                    device_id: "d".into(),
                    module_id: "m".into(),
                    input: "in 1".into(),
                    properties: bag(&[("k", "v")]),
                },
                "devices/d/modules/m/inputs/in%201/k=v",
            ),
            (T::MethodsFilter, "$iothub/methods/POST/#"),
            (
                T::MethodRequest { name: "reboot".into(), request_id: "1".into() },
                "$iothub/methods/POST/reboot/?$rid=1",
            ),
            (T::MethodResponse { status: 200, request_id: "1".into() }, "$iothub/methods/res/200/?$rid=1"),
            (T::TwinResponsesFilter, "$iothub/twin/res/#"),
            (
                T::TwinResponse { status: 200, request_id: "r 1".into(), version: None },
                "$iothub/twin/res/200/?$rid=r%201",
            ),
            (
                T::TwinResponse { status: 204, request_id: "2".into(), version: Some(13) },
                "$iothub/twin/res/204/?$rid=2&$version=13",
            ),
            (T::TwinGet { request_id: "3".into() }, "$iothub/twin/GET/?$rid=3"),
            (
                T::TwinPatchReported { request_id: "4".into() },
                "$iothub/twin/PATCH/properties/reported/?$rid=4",
            ),
            (T::TwinDesiredFilter, "$iothub/twin/PATCH/properties/desired/#"),
            (T::TwinDesiredPatch { version: Some(8) }, "$iothub/twin/PATCH/properties/desired/?$version=8"),
            (T::TwinDesiredPatch { version: None }, "$iothub/twin/PATCH/properties/desired/"),
        ];
        for (topic, text) in table {
            assert_eq!(topic.assemble().unwrap(), text);
            assert_eq!(T::parse(text).unwrap(), topic, "{text}");
        }
    }

    #[test]
    fn lenient_spellings_are_understood() {
        assert_eq!(
            T::parse("devices/d/messages/devicebound").unwrap(),
            T::C2d { device_id: "d".into(), properties: bag(&[]) }
        );
        assert_eq!(
            T::parse("devices/+/messages/devicebound/#").unwrap(),
            T::C2dFilter { device_id: "+".into() }
        );
        assert_eq!(
            T::parse("devices/d/messages/devicebound/?$.to=/devices/d/messages/deviceBound&x").unwrap(),
            T::C2d {
                device_id: "d".into(),
                properties: PropertyBag::parse("$.to=/devices/d/messages/deviceBound&x").unwrap()
            }
        );
        assert_eq!(
            T::parse("$iothub/twin/res/200/?$version=3&x=y&$rid=9").unwrap(),
            T::TwinResponse { status: 200, request_id: "9".into(), version: Some(3) }
        );
        assert_eq!(
            T::parse("$iothub/twin/PATCH/properties/desired").unwrap(),
            T::TwinDesiredPatch { version: None }
        );
        assert_eq!(
            T::parse("$iothub/methods/POST/thermostat1*getMaxMinReport/?$rid=1").unwrap(),
            T::MethodRequest { name: "thermostat1*getMaxMinReport".into(), request_id: "1".into() }
        );
        assert_eq!(
            T::parse("devices/d/modules/m/inputs/in").unwrap(),
            T::Input {
                device_id: "d".into(),
                module_id: "m".into(),
                input: "in".into(),
                properties: bag(&[])
            }
        );
    }

    #[test]
    fn malformed_topics_are_typed_errors() {
        use TopicParseError as E;
        let table = [
            ("a/b", E::Unknown),
            ("devices/d", E::Unknown),
            ("devices/d/other", E::Unknown),
            ("devices//messages/events/", E::InvalidSegment { what: "device id", reason: "empty" }),
            ("devices/d/modules//messages/events/", E::InvalidSegment { what: "module id", reason: "empty" }),
            ("devices/d/modules/m/inputs//a=1", E::InvalidSegment { what: "input name", reason: "empty" }),
            (
                "devices/d/messages/devicebound/a=%zz",
                E::Properties(PropertyBagError::BadEscape { index: 0, position: 2 }),
            ),
            ("devices/d/messages/eventsX", E::Unknown),
            ("$iothub/other", E::Unknown),
            ("$iothub/methods/POST/reboot/?$rid=", E::MissingParameter("$rid")),
            ("$iothub/methods/POST/reboot/", E::MissingParameter("$rid")),
            ("$iothub/methods/POST/reboot/x", E::Unknown),
            ("$iothub/methods/POST//?$rid=1", E::InvalidSegment { what: "method name", reason: "empty" }),
            ("$iothub/twin/res/abc/?$rid=1", E::InvalidStatus { value: "abc".into() }),
            ("$iothub/twin/res/65536/?$rid=1", E::InvalidStatus { value: "65536".into() }),
            ("$iothub/twin/res/-1/?$rid=1", E::InvalidStatus { value: "-1".into() }),
            ("$iothub/twin/res/200/?$rid=1&$rid=2", E::DuplicateParameter("$rid")),
            ("$iothub/twin/res/204/?$rid=1&$version=x", E::InvalidVersion { value: "x".into() }),
            ("$iothub/twin/PATCH/properties/desired/?$version=-3", E::InvalidVersion { value: "-3".into() }),
            ("$iothub/twin/PATCH/properties/desired/?$version", E::InvalidVersion { value: String::new() }),
            (
                "$iothub/twin/res/200/?$rid=%",
                E::Properties(PropertyBagError::BadEscape { index: 0, position: 5 }),
            ),
        ];
        for (topic, want) in table {
            assert_eq!(T::parse(topic), Err(want), "{topic}");
        }
    }

    #[test]
    fn directions() {
        assert_eq!(T::MethodsFilter.direction(), Direction::Filter);
        assert_eq!(T::TwinGet { request_id: "1".into() }.direction(), Direction::DeviceToHub);
        assert_eq!(T::TwinDesiredPatch { version: None }.direction(), Direction::HubToDevice);
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Stand-in for the `azure_topic_classify` fuzz target: mutated topics never panic,
    /// and what parses assembles to a topic that parses to the same value.
    #[test]
    fn random_topics_never_panic_and_round_trip() {
        let seeds = [
            "$iothub/twin/res/204/?$rid=1&$version=2",
            "$iothub/methods/POST/reboot/?$rid=1",
            "devices/d/messages/devicebound/%24.to=%2Fdevices&a=1",
            "devices/d/modules/m/inputs/in1/k=v",
            "$iothub/twin/PATCH/properties/desired/?$version=8",
        ];
        let alphabet: Vec<char> = "/?&=$%#+24abdr0 \u{0}é".chars().collect();
        let mut next = test_support::xorshift(0x0bad_cafe_dead_beefu64);
        for i in 0..30_000 {
            let mut s: Vec<char> = seeds[i % seeds.len()].chars().collect();
            for _ in 0..(1 + next() % 4) {
                let pos = (next() as usize) % (s.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => s.insert(pos, c),
                    1 if pos < s.len() => {
                        s.remove(pos);
                    }
                    _ if pos < s.len() => s[pos] = c,
                    _ => {}
                }
            }
            let s: String = s.into_iter().collect();
            if let Ok(t) = DeviceTopic::parse(&s) {
                let text = t.assemble().unwrap();
                assert_eq!(DeviceTopic::parse(&text).as_ref(), Ok(&t), "{s:?} → {text:?}");
            }
        }
    }
}
