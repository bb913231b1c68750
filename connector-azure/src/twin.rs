//! The device twin (`azure-iot-hub.md` §10) as the provider's [`StateCodec`]: GET and
//! reported PATCH requests correlated by `$rid`, responses and desired patches decoded.
//!
//! ```
//! use connector_azure::twin::TwinCodec;
//! use connector_core::provider::StateCodec;
//! let get = TwinCodec.get("1")?;
//! assert_eq!(get.topic, "$iothub/twin/GET/?$rid=1");
//! let patch = TwinCodec.report("2", br#"{"batteryLevel":60}"#)?;
//! assert_eq!(patch.topic, "$iothub/twin/PATCH/properties/reported/?$rid=2");
//! # Ok::<(), connector_core::ProviderError>(())
//! ```

use bytes::Bytes;
use connector_core::provider::StateCodec;
use connector_core::StateSections;
use connector_core::{
    ConfigError, DesiredPatch, OutboundPacket, ProviderError, QoS, StateResponse, SubscriptionSpec,
    WireProperties,
};

use crate::topics::DeviceTopic;

/// Twin requests and subscriptions. Stateless: request ids come from the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwinCodec;

impl TwinCodec {
    fn packet(topic: DeviceTopic, payload: Bytes) -> Result<OutboundPacket, ProviderError> {
        let topic = topic.assemble().map_err(|e| ProviderError::Unsupported { what: e.to_string() })?;
        Ok(OutboundPacket {
            topic,
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WireProperties::default(),
        })
    }
}

fn check_request_id(request_id: &str) -> Result<(), ProviderError> {
    if request_id.is_empty() {
        return Err(ConfigError::Invalid { field: "request_id", reason: "empty".into() }.into());
    }
    Ok(())
}

impl StateCodec for TwinCodec {
    /// `{"desired":{…,"$version"},"reported":{…,"$version"}}`; pushes are patches of the
    /// desired section, so a catch-up delivers the whole of it.
    fn read_document(&self, document: &serde_json::Value, version: Option<u64>) -> StateSections {
        let desired = document.get("desired").cloned();
        let reported = document.get("reported").cloned();
        let v = |s: &Option<serde_json::Value>| {
            s.as_ref().and_then(|s| s.get("$version")).and_then(serde_json::Value::as_u64)
        };
        StateSections {
            desired_version: v(&desired).or(version),
            reported_version: v(&reported),
            catch_up: desired.clone(),
            desired,
            reported,
        }
    }

    /// `$iothub/twin/GET/?$rid={rid}` with an empty body.
    fn get(&self, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        check_request_id(request_id)?;
        Self::packet(DeviceTopic::TwinGet { request_id: request_id.to_owned() }, Bytes::new())
    }

    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}` with the patch, which must be
    /// a JSON object (`null` members delete).
    fn report(&self, request_id: &str, patch: &[u8]) -> Result<OutboundPacket, ProviderError> {
        check_request_id(request_id)?;
        match serde_json::from_slice::<serde_json::Value>(patch) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return Err(ProviderError::Unsupported {
                    what: "a reported patch that is not a JSON object".into(),
                })
            }
        }
        Self::packet(
            DeviceTopic::TwinPatchReported { request_id: request_id.to_owned() },
            Bytes::copy_from_slice(patch),
        )
    }

    /// Twin responses and desired-property changes, at QoS 1.
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        [DeviceTopic::TwinResponsesFilter, DeviceTopic::TwinDesiredFilter]
            .iter()
            .filter_map(|t| t.assemble().ok())
            .map(|filter| SubscriptionSpec { filter, qos: QoS::AtLeastOnce })
            .collect()
    }
}

/// A [`StateResponse`] from a parsed `$iothub/twin/res/…` topic and its body.
pub fn state_response(status: u16, request_id: String, version: Option<u64>, body: Bytes) -> StateResponse {
    StateResponse { request_id, status, version, body }
}

/// A [`DesiredPatch`]: the version from the topic's `$version`, else from the body's
/// root `$version`.
pub fn desired_patch(version: Option<u64>, body: Bytes) -> DesiredPatch {
    let version = version.or_else(|| {
        serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("$version")?.as_u64())
    });
    DesiredPatch { shadow: None, version, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_read_as_sections_with_their_versions_and_the_desired_state_is_the_catch_up() {
        let doc =
            serde_json::json!({"desired": {"a": 1, "$version": 7}, "reported": {"b": 2, "$version": 3}});
        let s = TwinCodec.read_document(&doc, None);
        assert_eq!((s.desired_version, s.reported_version), (Some(7), Some(3)));
        assert_eq!(s.desired, Some(serde_json::json!({"a": 1, "$version": 7})));
        assert_eq!(s.catch_up, s.desired);
        // No $version: the response's.
        let s = TwinCodec.read_document(&serde_json::json!({"desired": {}}), Some(4));
        assert_eq!((s.desired_version, s.reported), (Some(4), None));
    }

    #[test]
    fn requests_and_subscriptions() {
        let c = TwinCodec;
        let g = c.get("r 1").unwrap();
        assert_eq!(
            (g.topic.as_str(), g.payload.len(), g.qos),
            ("$iothub/twin/GET/?$rid=r%201", 0, QoS::AtLeastOnce)
        );
        let body = br#"{"telemetrySendFrequency":"35m","batteryLevel":60,"oldKey":null}"#;
        let p = c.report("2", body).unwrap();
        assert_eq!(&p.payload[..], &body[..]);
        for bad in [&b"[1]"[..], b"nope", b""] {
            assert!(matches!(c.report("3", bad), Err(ProviderError::Unsupported { .. })));
        }
        assert!(c.get("").is_err());
        let subs: Vec<_> = c.subscriptions().into_iter().map(|s| s.filter).collect();
        assert_eq!(subs, ["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"]);
    }

    #[test]
    fn desired_version_falls_back_to_the_body() {
        let body = Bytes::from_static(br#"{"telemetrySendFrequency":"5m","route":null,"$version":8}"#);
        assert_eq!(desired_patch(None, body.clone()).version, Some(8));
        assert_eq!(desired_patch(Some(9), body).version, Some(9));
        assert_eq!(desired_patch(None, Bytes::from_static(b"garbage")).version, None);
        // §12: a component patch carries `$version` at the root.
        let pnp = Bytes::from_static(br#"{"thermostat1":{"targetTemperature":21.3},"$version":3}"#);
        assert_eq!(desired_patch(None, pnp).version, Some(3));
    }
}
