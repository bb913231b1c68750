use std::time::Duration;

use bytes::Bytes;

/// MQTT quality of service. The clouds offer 0 and 1 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum QoS {
    /// Fire and forget.
    AtMostOnce = 0,
    /// Acknowledged by PUBACK; may be delivered more than once.
    #[default]
    AtLeastOnce = 1,
}

impl QoS {
    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// From the wire value; QoS 2 maps to `None`.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            _ => None,
        }
    }
}

/// Where a publish goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// The provider's telemetry (device-to-cloud) topic.
    Telemetry,
    /// An explicit MQTT topic.
    Topic(String),
}

/// An outbound message, before the provider maps it to the wire.
///
/// ```
/// use connector_core::{Publish, QoS};
/// let p = Publish::telemetry(&b"{\"t\":21.5}"[..])
///     .property("unit", "C")
///     .content_type("application/json")
///     .qos(QoS::AtLeastOnce);
/// assert_eq!(p.properties(), &[("unit".to_string(), "C".to_string())]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    target: Target,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    content_type: Option<String>,
    content_encoding: Option<String>,
    message_id: Option<String>,
    correlation_id: Option<String>,
    properties: Vec<(String, String)>,
    user_properties: Vec<(String, String)>,
    message_expiry: Option<Duration>,
    timeout: Option<Duration>,
    expiry: Option<Duration>,
}

impl Publish {
    fn new(target: Target, payload: Bytes) -> Self {
        Self {
            target,
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            content_type: None,
            content_encoding: None,
            message_id: None,
            correlation_id: None,
            properties: Vec::new(),
            user_properties: Vec::new(),
            message_expiry: None,
            timeout: None,
            expiry: None,
        }
    }

    /// Telemetry to the provider's device-to-cloud topic, QoS 1.
    pub fn telemetry(payload: impl Into<Bytes>) -> Self {
        Self::new(Target::Telemetry, payload.into())
    }

    /// A message to an explicit topic, QoS 1.
    pub fn to_topic(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self::new(Target::Topic(topic.into()), payload.into())
    }

    /// Sets the QoS.
    pub fn qos(mut self, qos: QoS) -> Self {
        self.qos = qos;
        self
    }
    /// Sets the retain flag.
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }
    /// Content type (Azure `$.ct`, MQTT 5 content type).
    pub fn content_type(mut self, v: impl Into<String>) -> Self {
        self.content_type = Some(v.into());
        self
    }
    /// Content encoding (Azure `$.ce`).
    pub fn content_encoding(mut self, v: impl Into<String>) -> Self {
        self.content_encoding = Some(v.into());
        self
    }
    /// Message id (Azure `$.mid`).
    pub fn message_id(mut self, v: impl Into<String>) -> Self {
        self.message_id = Some(v.into());
        self
    }
    /// Correlation id (Azure `$.cid`, MQTT 5 correlation data).
    pub fn correlation_id(mut self, v: impl Into<String>) -> Self {
        self.correlation_id = Some(v.into());
        self
    }
    /// Adds a custom application property (Azure property bag; MQTT 5 user property).
    pub fn property(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.properties.push((k.into(), v.into()));
        self
    }
    /// Adds an MQTT 5 user property.
    pub fn user_property(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.user_properties.push((k.into(), v.into()));
        self
    }
    /// MQTT 5 message expiry interval.
    pub fn message_expiry(mut self, d: Duration) -> Self {
        self.message_expiry = Some(d);
        self
    }
    /// Bounds how long the caller of `publish` waits for the outcome. When `d` passes first,
    /// the caller gets a timeout error that carries the message's id, and the message stays
    /// accepted: it is still delivered (at least once) unless the caller cancels it through
    /// that id or an expiry removes it. This is the caller's limit, not the message's; for
    /// that, see [`Publish::expire_after`].
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Removes the message if it is not acknowledged within `d` of being accepted (queued
    /// offline, in flight, or recovered from the on-disk store after a restart: the expiry is
    /// stored with it). The removal is counted (`expired`), logged, and reported to a waiting
    /// caller as an expiry error. Without it (and without a Publisher-wide default expiry) an
    /// accepted message waits for as long as the outage lasts.
    pub fn expire_after(mut self, d: Duration) -> Self {
        self.expiry = Some(d);
        self
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// The QoS.
    pub fn get_qos(&self) -> QoS {
        self.qos
    }
    /// The retain flag.
    pub fn is_retain(&self) -> bool {
        self.retain
    }
    /// Content type.
    pub fn get_content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    /// Content encoding.
    pub fn get_content_encoding(&self) -> Option<&str> {
        self.content_encoding.as_deref()
    }
    /// Message id.
    pub fn get_message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
    /// Correlation id.
    pub fn get_correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
    /// Custom application properties, in insertion order.
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }
    /// MQTT 5 user properties.
    pub fn user_properties(&self) -> &[(String, String)] {
        &self.user_properties
    }
    /// MQTT 5 message expiry.
    pub fn get_message_expiry(&self) -> Option<Duration> {
        self.message_expiry
    }
    /// How long the caller waits for the outcome ([`Publish::timeout`]).
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// The message's expiry ([`Publish::expire_after`]).
    pub fn get_expiry(&self) -> Option<Duration> {
        self.expiry
    }
    /// Takes the publish apart: target, payload, QoS, retain (properties are dropped; check
    /// [`Publish::has_properties`] first).
    pub fn into_parts(self) -> (Target, Bytes, QoS, bool) {
        (self.target, self.payload, self.qos, self.retain)
    }

    /// Whether any property needs MQTT 5 (or a provider encoding such as Azure's bag).
    pub fn has_properties(&self) -> bool {
        self.content_type.is_some()
            || self.content_encoding.is_some()
            || self.message_id.is_some()
            || self.correlation_id.is_some()
            || !self.properties.is_empty()
            || !self.user_properties.is_empty()
            || self.message_expiry.is_some()
    }
}

/// MQTT 5 properties of a wire publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireProperties {
    /// Content type.
    pub content_type: Option<String>,
    /// Correlation data.
    pub correlation_data: Option<Bytes>,
    /// Response topic.
    pub response_topic: Option<String>,
    /// Message expiry interval in seconds.
    pub message_expiry_secs: Option<u32>,
    /// User properties.
    pub user: Vec<(String, String)>,
}

impl WireProperties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.content_type.is_none()
            && self.correlation_data.is_none()
            && self.response_topic.is_none()
            && self.message_expiry_secs.is_none()
            && self.user.is_empty()
    }
}

/// A publish as it goes on the wire: the provider's mapping of a [`Publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPacket {
    /// The full topic (Azure property bags included).
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 properties (empty on 3.1.1).
    pub properties: WireProperties,
}

impl OutboundPacket {
    /// Bytes this packet accounts for in statistics (topic + payload).
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}
