//! The property bag (`azure-iot-hub.md` §5): `name=value&name=value…` after the fixed
//! prefix of telemetry, C2D and module-input topics.
//!
//! * Names and values are percent-encoded: every byte but `A–Z a–z 0–9 - _ . ~`, upper-case
//!   hex, `%20` for space (never `+`, which decodes as a literal plus).
//! * `name` alone is a null value, `name=` the empty string.
//! * System properties start with `$.` (sent as `%24.`); both spellings decode alike.
//! * Decoding strips one leading `?`, accepts any valid `%XX` (hex in either case) and
//!   refuses empty names, broken escapes and non-UTF-8 results.
//!
//! ```
//! use connector_azure::properties::PropertyBag;
//! let bag = PropertyBag::new().with("$.ct", "application/json").with("temp alert", "a/b");
//! assert_eq!(bag.encode()?, "%24.ct=application%2Fjson&temp%20alert=a%2Fb");
//! assert_eq!(PropertyBag::parse("?$.ct=application%2fjson&flag")?.get("flag"), Some(None));
//! # Ok::<(), connector_azure::PropertyBagError>(())
//! ```

use connector_core::Publish;

use crate::encoding::{percent_decode, percent_encode, DecodeError};
use crate::error::PropertyBagError;

/// The IoT Hub system properties a device sends or receives, by wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SystemProperty {
    /// `$.mid`: message id.
    MessageId,
    /// `$.cid`: correlation id.
    CorrelationId,
    /// `$.uid`: user id.
    UserId,
    /// `$.ct`: content type.
    ContentType,
    /// `$.ce`: content encoding.
    ContentEncoding,
    /// `$.ctime`: creation time (ISO 8601 UTC).
    CreationTime,
    /// `$.exp`: absolute expiry time (ISO 8601).
    ExpiryTime,
    /// `$.to`: destination (set by the hub on C2D).
    To,
    /// `$.on`: output name (module telemetry routed by IoT Edge).
    OutputName,
    /// `$.sub`: Plug and Play component name.
    ComponentName,
    /// `$.ifid`: interface id (security messages).
    InterfaceId,
    /// `$.diagid`: distributed-tracing id.
    DiagnosticId,
    /// `$.diagctx`: distributed-tracing context.
    DiagnosticContext,
    /// `$.cdid`: sending device (module inputs).
    ConnectionDeviceId,
    /// `$.cmid`: sending module (module inputs).
    ConnectionModuleId,
    /// `iothub-ack`: feedback requested for a C2D message.
    Ack,
}

impl SystemProperty {
    const ALL: [SystemProperty; 16] = [
        Self::MessageId,
        Self::CorrelationId,
        Self::UserId,
        Self::ContentType,
        Self::ContentEncoding,
        Self::CreationTime,
        Self::ExpiryTime,
        Self::To,
        Self::OutputName,
        Self::ComponentName,
        Self::InterfaceId,
        Self::DiagnosticId,
        Self::DiagnosticContext,
        Self::ConnectionDeviceId,
        Self::ConnectionModuleId,
        Self::Ack,
    ];

    /// The decoded wire name (`$.mid`, …).
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::MessageId => "$.mid",
            Self::CorrelationId => "$.cid",
            Self::UserId => "$.uid",
            Self::ContentType => "$.ct",
            Self::ContentEncoding => "$.ce",
            Self::CreationTime => "$.ctime",
            Self::ExpiryTime => "$.exp",
            Self::To => "$.to",
            Self::OutputName => "$.on",
            Self::ComponentName => "$.sub",
            Self::InterfaceId => "$.ifid",
            Self::DiagnosticId => "$.diagid",
            Self::DiagnosticContext => "$.diagctx",
            Self::ConnectionDeviceId => "$.cdid",
            Self::ConnectionModuleId => "$.cmid",
            Self::Ack => "iothub-ack",
        }
    }

    /// The property for a decoded wire name.
    pub fn from_wire_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.wire_name() == name)
    }

    /// Whether a device may set it through [`Publish::property`] (those without a
    /// [`Publish`] setter of their own).
    pub fn settable_as_property(self) -> bool {
        matches!(
            self,
            Self::UserId
                | Self::CreationTime
                | Self::ExpiryTime
                | Self::OutputName
                | Self::ComponentName
                | Self::InterfaceId
                | Self::DiagnosticId
                | Self::DiagnosticContext
        )
    }
}

/// Decoded (name, value) pairs.
pub type Pairs = Vec<(String, String)>;

/// Whether a decoded name is a system property (`$.…` or `iothub-ack`).
pub fn is_system_name(name: &str) -> bool {
    name.starts_with("$.") || name == SystemProperty::Ack.wire_name()
}

/// Ordered (name, value) pairs; a `None` value is a null (`name` without `=`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertyBag {
    pairs: Vec<(String, Option<String>)>,
}

impl PropertyBag {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a property.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.pairs.push((name.into(), Some(value.into())));
    }

    /// Appends a property with a null value.
    pub fn push_null(&mut self, name: impl Into<String>) {
        self.pairs.push((name.into(), None));
    }

    /// Appends a property, builder style.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(name, value);
        self
    }

    /// The first property called `name`: `Some(None)` when its value is null.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_deref())
    }

    /// The pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the bag is empty.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, consuming the bag.
    pub fn into_pairs(self) -> Vec<(String, Option<String>)> {
        self.pairs
    }

    /// Bytes counted against the message size limit (§5): system property values plus
    /// application property names and values.
    pub fn accounted_size(&self) -> usize {
        self.pairs
            .iter()
            .map(|(k, v)| {
                let v = v.as_deref().map_or(0, str::len);
                if is_system_name(k) {
                    v
                } else {
                    k.len() + v
                }
            })
            .sum()
    }

    /// Splits into (system, application) pairs, nulls as empty strings.
    pub fn split_system(self) -> (Pairs, Pairs) {
        let mut system = Vec::new();
        let mut app = Vec::new();
        for (k, v) in self.pairs {
            let pair = (k, v.unwrap_or_default());
            if is_system_name(&pair.0) {
                system.push(pair);
            } else {
                app.push(pair);
            }
        }
        (system, app)
    }

    /// The wire form, without a leading `?`. Empty names are refused.
    pub fn encode(&self) -> Result<String, PropertyBagError> {
        let mut out = String::new();
        for (index, (k, v)) in self.pairs.iter().enumerate() {
            if k.is_empty() {
                return Err(PropertyBagError::EmptyName { index });
            }
            if index > 0 {
                out.push('&');
            }
            out.push_str(&percent_encode(k));
            if let Some(v) = v {
                out.push('=');
                out.push_str(&percent_encode(v));
            }
        }
        Ok(out)
    }

    /// Decodes a bag (one optional leading `?` is stripped; the empty string is the empty
    /// bag).
    pub fn parse(bag: &str) -> Result<Self, PropertyBagError> {
        let bag = bag.strip_prefix('?').unwrap_or(bag);
        let mut pairs = Vec::new();
        if bag.is_empty() {
            return Ok(Self { pairs });
        }
        for (index, pair) in bag.split('&').enumerate() {
            let (k, v) = match pair.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (pair, None),
            };
            let decode = |s: &str, offset: usize| {
                percent_decode(s).map_err(|e| match e {
                    DecodeError::BadEscape { position } => {
                        PropertyBagError::BadEscape { index, position: offset + position }
                    }
                    DecodeError::NotUtf8 => PropertyBagError::NotUtf8 { index },
                })
            };
            let k = decode(k, 0)?;
            if k.is_empty() {
                return Err(PropertyBagError::EmptyName { index });
            }
            let v = v.map(|v| decode(v, pair.len() - v.len())).transpose()?;
            pairs.push((k, v));
        }
        Ok(Self { pairs })
    }

    /// The telemetry bag of a [`Publish`]: `$.mid`, `$.cid`, `$.ct`, `$.ce` from its
    /// setters, then its properties in order. Properties named `$.…` must be system
    /// properties without a setter (`$.on`, `$.sub`, `$.uid`, `$.ctime`, `$.exp`,
    /// `$.ifid`, `$.diagid`, `$.diagctx`); others are [`PropertyBagError::Reserved`].
    pub fn from_publish(publish: &Publish) -> Result<Self, PropertyBagError> {
        let mut bag = Self::new();
        let fields = [
            (SystemProperty::MessageId, publish.get_message_id()),
            (SystemProperty::CorrelationId, publish.get_correlation_id()),
            (SystemProperty::ContentType, publish.get_content_type()),
            (SystemProperty::ContentEncoding, publish.get_content_encoding()),
        ];
        for (p, v) in fields {
            if let Some(v) = v {
                bag.push(p.wire_name(), v);
            }
        }
        for (index, (k, v)) in publish.properties().iter().enumerate() {
            if k.is_empty() {
                return Err(PropertyBagError::EmptyName { index });
            }
            if is_system_name(k)
                && !SystemProperty::from_wire_name(k).is_some_and(|p| p.settable_as_property())
            {
                return Err(PropertyBagError::Reserved { name: k.clone() });
            }
            if bag.get(k).is_some() {
                return Err(PropertyBagError::Reserved { name: k.clone() });
            }
            bag.push(k.clone(), v.clone());
        }
        Ok(bag)
    }
}

impl FromIterator<(String, String)> for PropertyBag {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self { pairs: iter.into_iter().map(|(k, v)| (k, Some(v))).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_the_spec() {
        let bag = PropertyBag::new()
            .with("$.mid", "msg-1")
            .with("$.ct", "application/json")
            .with("$.ce", "utf-8")
            .with("level", "critical")
            .with("temp alert", "a/b");
        assert_eq!(
            bag.encode().unwrap(),
            "%24.mid=msg-1&%24.ct=application%2Fjson&%24.ce=utf-8&level=critical&temp%20alert=a%2Fb"
        );
        let mut bag = PropertyBag::new().with("e", "").with("plus", "a+b&c=d#e%");
        bag.push_null("n");
        assert_eq!(bag.encode().unwrap(), "e=&plus=a%2Bb%26c%3Dd%23e%25&n");
        assert_eq!(PropertyBag::parse(&bag.encode().unwrap()).unwrap(), bag);
        assert_eq!(PropertyBag::new().with("", "x").encode(), Err(PropertyBagError::EmptyName { index: 0 }));
        assert_eq!(PropertyBag::new().encode().unwrap(), "");
    }

    #[test]
    fn decoding_accepts_both_spellings_and_nulls() {
        let bag = PropertyBag::parse("?prop1&prop2=&prop3=a%20string&%24.mid=1&$.cid=2&p=a+b").unwrap();
        let pairs: Vec<_> = bag.iter().collect();
        assert_eq!(
            pairs,
            [
                ("prop1", None),
                ("prop2", Some("")),
                ("prop3", Some("a string")),
                ("$.mid", Some("1")),
                ("$.cid", Some("2")),
                ("p", Some("a+b")),
            ]
        );
        assert!(PropertyBag::parse("").unwrap().is_empty());
        assert!(PropertyBag::parse("?").unwrap().is_empty());
        assert_eq!(PropertyBag::parse("a=b=c").unwrap().get("a"), Some(Some("b=c")));
        assert_eq!(PropertyBag::parse("a=%2f%2F").unwrap().get("a"), Some(Some("//")));
    }

    #[test]
    fn malformed_bags_are_typed_errors() {
        let table = [
            ("=v", PropertyBagError::EmptyName { index: 0 }),
            ("a=1&&b=2", PropertyBagError::EmptyName { index: 1 }),
            ("a=1&", PropertyBagError::EmptyName { index: 1 }),
            ("a=1&b=%G1", PropertyBagError::BadEscape { index: 1, position: 2 }),
            ("a%=1", PropertyBagError::BadEscape { index: 0, position: 1 }),
            ("a=%2", PropertyBagError::BadEscape { index: 0, position: 2 }),
            ("a=%C3", PropertyBagError::NotUtf8 { index: 0 }),
            ("%24=1&%00x=%ff", PropertyBagError::NotUtf8 { index: 1 }),
        ];
        for (s, want) in table {
            assert_eq!(PropertyBag::parse(s), Err(want), "{s}");
        }
    }

    #[test]
    fn publish_fields_become_system_properties() {
        let p = Publish::telemetry(&b"{}"[..])
            .message_id("msg-1")
            .correlation_id("c 1")
            .content_type("application/json")
            .content_encoding("utf-8")
            .property("level", "critical")
            .property("$.on", "out1");
        let bag = PropertyBag::from_publish(&p).unwrap();
        assert_eq!(
            bag.encode().unwrap(),
            "%24.mid=msg-1&%24.cid=c%201&%24.ct=application%2Fjson&%24.ce=utf-8&level=critical&%24.on=out1"
        );
        assert_eq!(bag.accounted_size(), "msg-1c 1application/jsonutf-8levelcriticalout1".len());
        for reserved in ["$.mid", "$.to", "$.unknown", "iothub-ack"] {
            let p = Publish::telemetry(&b""[..]).property(reserved, "x");
            assert_eq!(
                PropertyBag::from_publish(&p),
                Err(PropertyBagError::Reserved { name: reserved.into() }),
                "{reserved}"
            );
        }
        let dup = Publish::telemetry(&b""[..]).property("a", "1").property("a", "2");
        assert!(PropertyBag::from_publish(&dup).is_err());
        let (system, app) = PropertyBag::parse("%24.to=x&a=1&iothub-ack=full&n").unwrap().split_system();
        assert_eq!(system, [("$.to".to_string(), "x".to_string()), ("iothub-ack".into(), "full".into())]);
        assert_eq!(app, [("a".to_string(), "1".to_string()), ("n".into(), String::new())]);
    }

    #[test]
    fn system_property_names_round_trip() {
        for p in SystemProperty::ALL {
            assert_eq!(SystemProperty::from_wire_name(p.wire_name()), Some(p));
        }
        assert_eq!(SystemProperty::from_wire_name("$.nope"), None);
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Stand-in for the `property_bag` fuzz target: decoding never panics and what decodes
    /// re-encodes to a bag that decodes to the same pairs.
    #[test]
    fn random_bags_never_panic_and_round_trip() {
        let seeds = ["%24.mid=1&a=b%20c&n", "?$.to=/devices/d/messages/deviceBound&x=%2F", "a=&b=%c3%a9"];
        let alphabet: Vec<char> = "&=?%$.2F4aC3 +\u{0}é/".chars().collect();
        let mut next = test_support::xorshift(0x1234_5678_9abc_def1u64);
        for i in 0..20_000 {
            let mut s: Vec<char> = seeds[i % seeds.len()].chars().collect();
            for _ in 0..(1 + next() % 5) {
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
            if let Ok(bag) = PropertyBag::parse(&s) {
                let again = PropertyBag::parse(&bag.encode().unwrap()).unwrap();
                assert_eq!(again, bag, "{s:?}");
            }
        }
    }
}
