//! The device-facing topic scheme: what a device may publish and subscribe to.
//!
//! Everything is resolved against the *authenticated* identity: a topic naming another
//! device is refused, never routed.

use super::Identity;

/// A subscription the hub serves. Only the documented filters map to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SubKind {
    /// `devices/{id}/messages/devicebound/#` (or `devices/+/messages/devicebound/#`).
    C2d,
    /// `$iothub/methods/POST/#`.
    Methods,
    /// `$iothub/twin/res/#`.
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`.
    TwinDesired,
    /// `$dps/registrations/res/#`.
    DpsResponses,
}

/// Maps an IoT Hub SUBSCRIBE filter to what it subscribes to, for `id`.
pub(crate) fn hub_filter(filter: &str, id: &Identity) -> Option<SubKind> {
    match filter {
        "$iothub/methods/POST/#" => Some(SubKind::Methods),
        "$iothub/twin/res/#" => Some(SubKind::TwinResponses),
        "$iothub/twin/PATCH/properties/desired/#" => Some(SubKind::TwinDesired),
        _ if id.module_id.is_none() => {
            let rest = filter.strip_prefix("devices/")?.strip_suffix("/messages/devicebound/#")?;
            (rest == "+" || rest == id.device_id).then_some(SubKind::C2d)
        }
        _ => None,
    }
}

/// Maps a DPS SUBSCRIBE filter.
pub(crate) fn dps_filter(filter: &str) -> Option<SubKind> {
    (filter == "$dps/registrations/res/#").then_some(SubKind::DpsResponses)
}

/// A device PUBLISH on an IoT Hub connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HubPublish<'a> {
    /// Telemetry; `bag` is the (still encoded) property bag after the prefix.
    Telemetry { bag: &'a str },
    /// `$iothub/twin/GET/?$rid=`.
    TwinGet { rid: String },
    /// `$iothub/twin/PATCH/properties/reported/?$rid=`.
    TwinPatchReported { rid: String },
    /// `$iothub/methods/res/{status}/?$rid=`.
    MethodResponse { status: i64, rid: String },
}

/// Why a PUBLISH topic was refused (the connection is closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TopicError {
    #[error("topic is not one the hub serves")]
    Unknown,
    #[error("topic names another identity")]
    ForeignIdentity,
    #[error("topic lacks a valid $rid")]
    MissingRid,
    #[error("method status is not an integer")]
    BadStatus,
}

/// Classifies a device PUBLISH topic for the authenticated identity `id`.
pub(crate) fn classify_hub<'a>(topic: &'a str, id: &Identity) -> Result<HubPublish<'a>, TopicError> {
    if let Some(rest) = topic.strip_prefix("devices/") {
        let own = match &id.module_id {
            None => format!("{}/messages/events/", id.device_id),
            Some(m) => format!("{}/modules/{}/messages/events/", id.device_id, m),
        };
        return match rest.strip_prefix(own.as_str()) {
            Some(bag) => Ok(HubPublish::Telemetry { bag }),
            None if rest.contains("/messages/events") => Err(TopicError::ForeignIdentity),
            None => Err(TopicError::Unknown),
        };
    }
    if let Some(q) = topic.strip_prefix("$iothub/twin/GET/?") {
        return Ok(HubPublish::TwinGet { rid: rid(q)? });
    }
    if let Some(q) = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/?") {
        return Ok(HubPublish::TwinPatchReported { rid: rid(q)? });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
        let (status, q) = rest.split_once("/?").ok_or(TopicError::MissingRid)?;
        let status = status.parse::<i64>().map_err(|_| TopicError::BadStatus)?;
        return Ok(HubPublish::MethodResponse { status, rid: rid(q)? });
    }
    Err(TopicError::Unknown)
}

/// A device PUBLISH on a DPS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DpsPublish {
    /// `$dps/registrations/PUT/iotdps-register/?$rid=`.
    Register { rid: String },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`.
    Poll { rid: String, operation_id: String },
}

/// Classifies a DPS PUBLISH topic.
pub(crate) fn classify_dps(topic: &str) -> Result<DpsPublish, TopicError> {
    if let Some(q) = topic.strip_prefix("$dps/registrations/PUT/iotdps-register/?") {
        return Ok(DpsPublish::Register { rid: rid(q)? });
    }
    if let Some(q) = topic.strip_prefix("$dps/registrations/GET/iotdps-get-operationstatus/?") {
        let operation_id = param(q, "operationId").ok_or(TopicError::Unknown)?;
        return Ok(DpsPublish::Poll { rid: rid(q)?, operation_id });
    }
    Err(TopicError::Unknown)
}

fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn rid(query: &str) -> Result<String, TopicError> {
    param(query, "$rid").ok_or(TopicError::MissingRid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_is_accepted_only_for_the_own_identity() {
        let d = Identity::device("d1");
        assert_eq!(classify_hub("devices/d1/messages/events/", &d), Ok(HubPublish::Telemetry { bag: "" }));
        assert_eq!(
            classify_hub("devices/d1/messages/events/a=b", &d),
            Ok(HubPublish::Telemetry { bag: "a=b" })
        );
        assert_eq!(classify_hub("devices/d2/messages/events/", &d), Err(TopicError::ForeignIdentity));
        assert_eq!(
            classify_hub("devices/d1/modules/m/messages/events/", &d),
            Err(TopicError::ForeignIdentity)
        );
        assert_eq!(classify_hub("devices/d1/messages/devicebound/", &d), Err(TopicError::Unknown));
        let m = Identity::module("d1", "m");
        assert_eq!(
            classify_hub("devices/d1/modules/m/messages/events/", &m),
            Ok(HubPublish::Telemetry { bag: "" })
        );
        assert_eq!(classify_hub("devices/d1/messages/events/", &m), Err(TopicError::ForeignIdentity));
    }

    #[test]
    fn twin_and_method_topics() {
        let d = Identity::device("d1");
        assert_eq!(classify_hub("$iothub/twin/GET/?$rid=7", &d), Ok(HubPublish::TwinGet { rid: "7".into() }));
        assert_eq!(
            classify_hub("$iothub/twin/PATCH/properties/reported/?$rid=a-b", &d),
            Ok(HubPublish::TwinPatchReported { rid: "a-b".into() })
        );
        assert_eq!(classify_hub("$iothub/twin/GET/?x=1", &d), Err(TopicError::MissingRid));
        assert_eq!(
            classify_hub("$iothub/methods/res/200/?$rid=1", &d),
            Ok(HubPublish::MethodResponse { status: 200, rid: "1".into() })
        );
        assert_eq!(classify_hub("$iothub/methods/res/ok/?$rid=1", &d), Err(TopicError::BadStatus));
        assert_eq!(
            classify_hub("$iothub/twin/PATCH/properties/desired/?$rid=1", &d),
            Err(TopicError::Unknown)
        );
        assert_eq!(classify_hub("anything", &d), Err(TopicError::Unknown));
    }

    #[test]
    fn filters() {
        let d = Identity::device("d1");
        let m = Identity::module("d1", "m");
        assert_eq!(hub_filter("devices/d1/messages/devicebound/#", &d), Some(SubKind::C2d));
        assert_eq!(hub_filter("devices/+/messages/devicebound/#", &d), Some(SubKind::C2d));
        assert_eq!(hub_filter("devices/d2/messages/devicebound/#", &d), None);
        assert_eq!(hub_filter("devices/d1/messages/devicebound/#", &m), None);
        assert_eq!(hub_filter("$iothub/twin/res/#", &m), Some(SubKind::TwinResponses));
        assert_eq!(hub_filter("#", &d), None);
        assert_eq!(hub_filter("$iothub/#", &d), None);
        assert_eq!(dps_filter("$dps/registrations/res/#"), Some(SubKind::DpsResponses));
    }

    #[test]
    fn dps_topics() {
        assert_eq!(
            classify_dps("$dps/registrations/PUT/iotdps-register/?$rid=1"),
            Ok(DpsPublish::Register { rid: "1".into() })
        );
        assert_eq!(
            classify_dps("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op"),
            Ok(DpsPublish::Poll { rid: "2".into(), operation_id: "op".into() })
        );
        assert!(classify_dps("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2").is_err());
    }
}
