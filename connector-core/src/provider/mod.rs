//! The provider boundary: what a cloud (or a plain broker) plugs into the supervision tree.
//!
//! A provider is synchronous, object-safe and pure: connect parameters for a given instant,
//! the mapping of a [`Publish`] onto the wire, the subscriptions it needs, and a classifier
//! from an inbound message to a typed [`Inbound`]. Actors hold it as `Arc<dyn Provider>`.

mod connect;
mod mqtt;

use std::time::{Duration, SystemTime};

pub use connect::{redact_userinfo, BrokerUri, ConnectParams, MqttVersion, PemSource, Scheme, TlsOptions};
pub use mqtt::{MqttOptions, MqttProvider};

use crate::error::{ProviderError, TopicError};
use crate::model::{Inbound, InboundMessage, OutboundPacket, Publish, QoS, Target, WireProperties};
use crate::topic::validate_topic_name;

/// Limits the provider's service enforces, checked before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest payload in bytes.
    pub max_payload: usize,
    /// Longest topic in bytes.
    pub max_topic_len: usize,
    /// Most `/`-separated topic levels, if limited.
    pub max_topic_levels: Option<usize>,
    /// Most PUBLISH packets per second on one connection, if the service throttles it (AWS
    /// IoT Core: 100). The Publisher paces its sends with a token bucket of this rate (burst
    /// = one second's worth) instead of letting the service drop the connection.
    pub max_publish_rate: Option<u32>,
    /// Most topic filters in one SUBSCRIBE packet, if limited (AWS IoT Core: 8); the
    /// Subscriber splits larger sets into several SUBSCRIBEs.
    pub max_filters_per_subscribe: Option<usize>,
}

impl Default for Limits {
    /// The MQTT wire format's own limits.
    fn default() -> Self {
        Self {
            max_payload: 268_435_455,
            max_topic_len: 65_535,
            max_topic_levels: None,
            max_publish_rate: None,
            max_filters_per_subscribe: None,
        }
    }
}

/// A subscription the provider needs for its own features (C2D, methods, twin responses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// The topic filter.
    pub filter: String,
    /// Requested QoS.
    pub qos: QoS,
}

/// A cloud (or broker) plugged into the supervision tree.
pub trait Provider: Send + Sync + 'static {
    /// A short stable name for metrics labels (`mqtt`, `azure`, `aws`).
    fn name(&self) -> &'static str;

    /// Parameters for a connect attempt at wall-clock `now` (fresh credentials each time).
    fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError>;

    /// The topic for [`Target::Telemetry`] messages.
    fn telemetry_topic(&self, publish: &Publish) -> Result<String, ProviderError>;

    /// Maps a publish onto the wire, enforcing the limits. The default serves brokers that
    /// carry properties as MQTT 5 properties.
    fn encode_publish(&self, publish: &Publish) -> Result<OutboundPacket, ProviderError> {
        let topic = match publish.target() {
            Target::Telemetry => self.telemetry_topic(publish)?,
            Target::Topic(t) => t.clone(),
            #[allow(unreachable_patterns)]
            _ => return Err(ProviderError::Unsupported { what: "publish target".into() }),
        };
        encode_with_mqtt5_properties(topic, publish, self.mqtt_version(), &self.limits())
    }

    /// [`Provider::encode_publish`] for a publish the caller gives up: providers may move
    /// the topic and payload instead of copying them (the publish hot path calls this).
    fn encode_owned(&self, publish: Publish) -> Result<OutboundPacket, ProviderError> {
        self.encode_publish(&publish)
    }

    /// The protocol version this provider connects with.
    fn mqtt_version(&self) -> MqttVersion {
        MqttVersion::V311
    }

    /// The subscriptions the provider's features need, made on every connection whose
    /// session was not kept.
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        Vec::new()
    }

    /// Classifies an inbound message.
    fn classify(&self, message: InboundMessage) -> Inbound {
        Inbound::Message(message)
    }

    /// The service's limits.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// The answer to a direct method (`status` and a JSON `payload`), as a wire publish.
    fn method_response(
        &self,
        request_id: &str,
        status: u16,
        payload: bytes::Bytes,
    ) -> Result<OutboundPacket, ProviderError> {
        let _ = (request_id, status, payload);
        Err(ProviderError::Unsupported { what: format!("direct methods on {}", self.name()) })
    }

    /// The device-state (twin/shadow) request codec, if the provider has device state.
    fn state(&self) -> Option<&dyn StateCodec> {
        None
    }

    /// The jobs request codec, if the provider has a device jobs channel (AWS IoT Jobs;
    /// Azure has none and starts no JobsActor).
    fn jobs(&self) -> Option<&dyn JobsCodec> {
        None
    }
}

/// A device-state document as its provider reads it: the sections and versions the tree
/// works with, in the cloud's own semantics (the tree itself knows no document shape).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateSections {
    /// The desired state, if the document has one.
    pub desired: Option<serde_json::Value>,
    /// The reported state, if the document has one.
    pub reported: Option<serde_json::Value>,
    /// The desired state's version (`None`: the platform has none, so a catch-up cannot
    /// tell what was missed and delivers [`StateSections::catch_up`] after every connection).
    pub desired_version: Option<u64>,
    /// The reported state's version, if the cloud keeps one apart.
    pub reported_version: Option<u64>,
    /// What a catch-up delivers to desired watchers when the version moved: the whole
    /// desired state where pushes are patches of it (Azure), what is still to do where
    /// pushes are deltas (AWS; `None` when reported already matches desired).
    pub catch_up: Option<serde_json::Value>,
}

/// What a desired push carries ([`StateCodec::desired_pushes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredPushes {
    /// A patch of the desired state: applying every patch in order gives the desired
    /// state.
    Patches,
    /// The desired keys that differ from the reported ones: removals and skipped versions
    /// are not in it, so a mirror of the whole desired state needs the document.
    Deltas,
}

/// Requests on the device-state document (Azure twin, AWS shadow). Responses come back
/// through [`Provider::classify`] as [`Inbound::StateResponse`] carrying the request id.
pub trait StateCodec: Send + Sync {
    /// Reads a successful GET answer (`document` is its JSON object body, `version` what
    /// the response carried).
    fn read_document(&self, document: &serde_json::Value, version: Option<u64>) -> StateSections;

    /// Ask for the whole document.
    fn get(&self, request_id: &str) -> Result<OutboundPacket, ProviderError>;
    /// Patch the reported state with a JSON object.
    fn report(&self, request_id: &str, patch: &[u8]) -> Result<OutboundPacket, ProviderError>;
    /// The subscriptions responses and desired changes arrive on.
    fn subscriptions(&self) -> Vec<SubscriptionSpec>;

    /// Whether the service answers reports (Azure and AWS do). When it does not (a
    /// ThingsBoard-style attributes publish), a report is complete when the broker
    /// acknowledges it, and its result carries no version.
    fn reports_answered(&self) -> bool {
        true
    }

    /// What a desired push carries: a patch of the desired state (Azure, ThingsBoard) or
    /// a delta against the reported state (AWS).
    fn desired_pushes(&self) -> DesiredPushes {
        DesiredPushes::Patches
    }

    /// [`StateCodec::get`] of a named document (AWS named shadow); `None` is the classic
    /// document. Providers without named documents refuse a name.
    fn get_named(&self, shadow: Option<&str>, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        match shadow {
            None => self.get(request_id),
            Some(_) => Err(ProviderError::Unsupported { what: "named device-state documents".into() }),
        }
    }

    /// [`StateCodec::report`] on a named document.
    fn report_named(
        &self,
        shadow: Option<&str>,
        request_id: &str,
        patch: &[u8],
    ) -> Result<OutboundPacket, ProviderError> {
        match shadow {
            None => self.report(request_id, patch),
            Some(_) => Err(ProviderError::Unsupported { what: "named device-state documents".into() }),
        }
    }

    /// A full update request: `state` is `{"desired":…,"reported":…}` (either may be absent
    /// or `null`), applied only at `version` when given (AWS shadow update). Providers whose
    /// devices may only patch reported state refuse it.
    fn update(
        &self,
        shadow: Option<&str>,
        request_id: &str,
        state: &[u8],
        version: Option<u64>,
    ) -> Result<OutboundPacket, ProviderError> {
        let _ = (shadow, request_id, state, version);
        Err(ProviderError::Unsupported { what: "device-side updates of desired state".into() })
    }

    /// Deletes the document (AWS shadow delete).
    fn delete(&self, shadow: Option<&str>, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        let _ = (shadow, request_id);
        Err(ProviderError::Unsupported { what: "deleting the device-state document".into() })
    }

    /// The subscriptions a named document's responses and changes arrive on (made once
    /// when the document is first used, and kept across reconnects).
    fn named_subscriptions(&self, shadow: &str) -> Vec<SubscriptionSpec> {
        let _ = shadow;
        Vec::new()
    }
}

/// Checks a topic against limits: a valid MQTT topic name within length and depth.
pub fn check_topic(topic: &str, limits: &Limits) -> Result<(), TopicError> {
    validate_topic_name(topic)?;
    if topic.len() > limits.max_topic_len {
        return Err(TopicError::TooLong { len: topic.len(), limit: limits.max_topic_len });
    }
    if let Some(max) = limits.max_topic_levels {
        let levels = topic.split('/').count();
        if levels > max {
            return Err(TopicError::TooDeep { levels, limit: max });
        }
    }
    Ok(())
}

/// The plain-broker mapping: topic as given; properties as MQTT 5 properties, refused on
/// MQTT 3.1.1 (which cannot carry them) rather than silently dropped.
pub fn encode_with_mqtt5_properties(
    topic: String,
    publish: &Publish,
    version: MqttVersion,
    limits: &Limits,
) -> Result<OutboundPacket, ProviderError> {
    check_topic(&topic, limits)?;
    let size = publish.payload().len();
    if size > limits.max_payload {
        return Err(ProviderError::PayloadTooLarge { size, limit: limits.max_payload });
    }
    let properties = if publish.has_properties() {
        if version == MqttVersion::V311 {
            return Err(ProviderError::Unsupported {
                what: "message properties on MQTT 3.1.1 (use MQTT 5 or a cloud provider)".into(),
            });
        }
        if publish.get_content_encoding().is_some() || publish.get_message_id().is_some() {
            return Err(ProviderError::Unsupported {
                what: "content encoding and message id have no MQTT 5 property".into(),
            });
        }
        let mut user = publish.properties().to_vec();
        user.extend_from_slice(publish.user_properties());
        WireProperties {
            content_type: publish.get_content_type().map(str::to_owned),
            correlation_data: publish.get_correlation_id().map(|c| c.to_owned().into()),
            response_topic: None,
            message_expiry_secs: publish.get_message_expiry().map(expiry_secs),
            user,
        }
    } else {
        WireProperties::default()
    };
    Ok(OutboundPacket {
        topic,
        payload: publish.payload().clone(),
        qos: publish.get_qos(),
        retain: publish.is_retain(),
        properties,
    })
}

fn expiry_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX)
}

/// Requests of a device jobs channel (AWS IoT Jobs). Answers come back through
/// [`Provider::classify`] as [`Inbound::JobResponse`] carrying the request id
/// (`clientToken`); events as [`Inbound::JobNotification`]. Bodies are the JSON of
/// [`crate::jobs`].
pub trait JobsCodec: Send + Sync {
    /// The subscriptions answers and events arrive on (responses of the four operations,
    /// `notify`, `notify-next`).
    fn subscriptions(&self) -> Vec<SubscriptionSpec>;
    /// GetPendingJobExecutions.
    fn get_pending(&self, request_id: &str) -> Result<OutboundPacket, ProviderError>;
    /// StartNextPendingJobExecution.
    fn start_next(
        &self,
        request_id: &str,
        request: &crate::jobs::StartNextRequest,
    ) -> Result<OutboundPacket, ProviderError>;
    /// DescribeJobExecution of `job_id` (`$next` for the next pending one).
    fn describe(
        &self,
        request_id: &str,
        job_id: &str,
        request: &crate::jobs::DescribeRequest,
    ) -> Result<OutboundPacket, ProviderError>;
    /// UpdateJobExecution of `job_id`.
    fn update(
        &self,
        request_id: &str,
        job_id: &str,
        request: &crate::jobs::JobUpdate,
    ) -> Result<OutboundPacket, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_before_sending() {
        let limits =
            Limits { max_payload: 4, max_topic_len: 10, max_topic_levels: Some(3), ..Limits::default() };
        let p = Publish::to_topic("a/b", &b"12345"[..]);
        assert_eq!(
            encode_with_mqtt5_properties("a/b".into(), &p, MqttVersion::V311, &limits),
            Err(ProviderError::PayloadTooLarge { size: 5, limit: 4 })
        );
        let p = Publish::to_topic("x", &b"1"[..]);
        assert_eq!(
            encode_with_mqtt5_properties("a/b/c/d".into(), &p, MqttVersion::V311, &limits),
            Err(ProviderError::Topic(TopicError::TooDeep { levels: 4, limit: 3 }))
        );
        assert_eq!(
            encode_with_mqtt5_properties("abcdefghijk".into(), &p, MqttVersion::V311, &limits),
            Err(ProviderError::Topic(TopicError::TooLong { len: 11, limit: 10 }))
        );
        assert!(matches!(
            encode_with_mqtt5_properties("a/+".into(), &p, MqttVersion::V311, &limits),
            Err(ProviderError::Topic(TopicError::WildcardInName { .. }))
        ));
    }

    #[test]
    fn properties_need_mqtt5() {
        let p = Publish::to_topic("t", &b"x"[..]).property("k", "v").content_type("text/plain");
        assert!(matches!(
            encode_with_mqtt5_properties("t".into(), &p, MqttVersion::V311, &Limits::default()),
            Err(ProviderError::Unsupported { .. })
        ));
        let w = encode_with_mqtt5_properties("t".into(), &p, MqttVersion::V5, &Limits::default()).unwrap();
        assert_eq!(w.properties.user, [("k".to_string(), "v".to_string())]);
        assert_eq!(w.properties.content_type.as_deref(), Some("text/plain"));
    }
}
