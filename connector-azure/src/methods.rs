//! Direct methods (`azure-iot-hub.md` §9): requests arrive on
//! `$iothub/methods/POST/{name}/?$rid={rid}`, answers go to
//! `$iothub/methods/res/{status}/?$rid={rid}` with a JSON (or empty) body.
//!
//! ```
//! use connector_azure::methods::response_packet;
//! let p = response_packet("1", 200, bytes::Bytes::from_static(br#"{"ok":true}"#))?;
//! assert_eq!(p.topic, "$iothub/methods/res/200/?$rid=1");
//! # Ok::<(), connector_core::ProviderError>(())
//! ```

use bytes::Bytes;
use connector_core::{ConfigError, MethodRequest, OutboundPacket, ProviderError, QoS, WireProperties};

use crate::topics::DeviceTopic;

/// The largest method request or response payload, in bytes.
pub const MAX_METHOD_PAYLOAD: usize = 128 * 1024;

/// A [`MethodRequest`] from a parsed request topic and its payload.
pub fn method_request(name: String, request_id: String, payload: Bytes) -> MethodRequest {
    MethodRequest { name, request_id, payload }
}

/// The answer to request `request_id`: `status` chosen by the device, `payload` JSON or
/// empty, at most 128 KB. Published at QoS 1.
pub fn response_packet(
    request_id: &str,
    status: u16,
    payload: Bytes,
) -> Result<OutboundPacket, ProviderError> {
    if request_id.is_empty() {
        return Err(ConfigError::Invalid { field: "request_id", reason: "empty".into() }.into());
    }
    if payload.len() > MAX_METHOD_PAYLOAD {
        return Err(ProviderError::PayloadTooLarge { size: payload.len(), limit: MAX_METHOD_PAYLOAD });
    }
    if !payload.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(ProviderError::Unsupported { what: "a method response payload that is not JSON".into() });
    }
    let topic = DeviceTopic::MethodResponse { status, request_id: request_id.to_owned() }
        .assemble()
        .map_err(|e| ProviderError::Unsupported { what: e.to_string() })?;
    Ok(OutboundPacket {
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WireProperties::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_checked_before_sending() {
        let p = response_packet("a b", 65535, Bytes::new()).unwrap();
        assert_eq!(p.topic, "$iothub/methods/res/65535/?$rid=a%20b");
        assert!(p.payload.is_empty());
        assert!(matches!(response_packet("", 200, Bytes::new()), Err(ProviderError::Config(_))));
        assert!(matches!(
            response_packet("1", 200, Bytes::from_static(b"{not json")),
            Err(ProviderError::Unsupported { .. })
        ));
        let big = Bytes::from(vec![b' '; MAX_METHOD_PAYLOAD + 1]);
        assert_eq!(
            response_packet("1", 200, big),
            Err(ProviderError::PayloadTooLarge { size: MAX_METHOD_PAYLOAD + 1, limit: MAX_METHOD_PAYLOAD })
        );
    }
}
