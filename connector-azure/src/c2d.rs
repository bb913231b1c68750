//! Cloud-to-device messages and module inputs (`azure-iot-hub.md` §7–§8): the delivered
//! topic's property bag split into system and application properties.
//!
//! ```
//! use connector_azure::c2d::c2d_message;
//! use connector_azure::properties::PropertyBag;
//! let topic = "devices/d/messages/devicebound/%24.mid=m1&color=red";
//! let bag = PropertyBag::parse("%24.mid=m1&color=red")?;
//! let m = c2d_message(topic, &b"hi"[..], bag, None);
//! assert_eq!((m.system_property("$.mid"), m.property("color")), (Some("m1"), Some("red")));
//! # Ok::<(), connector_azure::PropertyBagError>(())
//! ```

use bytes::Bytes;
use connector_core::C2dMessage;

use crate::properties::PropertyBag;

/// The largest C2D message the hub delivers, in bytes.
pub const MAX_C2D_PAYLOAD: usize = 64 * 1024;

/// A [`C2dMessage`] from a delivered topic's decoded bag. System properties (`$.…`,
/// `iothub-ack`) and application properties keep their wire order; a null value
/// (`name` without `=`) becomes the empty string.
pub fn c2d_message(
    topic: impl Into<String>,
    payload: impl Into<Bytes>,
    properties: PropertyBag,
    input: Option<String>,
) -> C2dMessage {
    let (system_properties, properties) = properties.split_system();
    C2dMessage { topic: topic.into(), payload: payload.into(), properties, system_properties, input }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_application_properties_are_separated() {
        let bag =
            PropertyBag::parse("%24.to=%2Fdevices%2Fd%2Fmessages%2FdeviceBound&abc=123&iothub-ack=full&n")
                .unwrap();
        let m = c2d_message("t", Bytes::from_static(b"x"), bag, Some("in1".into()));
        assert_eq!(m.system_property("$.to"), Some("/devices/d/messages/deviceBound"));
        assert_eq!(m.system_property("iothub-ack"), Some("full"));
        assert_eq!(m.properties, [("abc".to_string(), "123".to_string()), ("n".to_string(), String::new())]);
        assert_eq!(m.input.as_deref(), Some("in1"));
    }
}
