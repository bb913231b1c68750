use bytes::Bytes;

use super::QoS;

/// A message received from the broker, as the transport delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The topic it was published to.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// The retain flag.
    pub retain: bool,
    /// The DUP flag: the broker may have delivered it before.
    pub duplicate: bool,
    /// MQTT 5 user properties.
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation_data: Option<Bytes>,
}

impl InboundMessage {
    /// A message with no properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>, qos: QoS) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            duplicate: false,
            user_properties: Vec::new(),
            content_type: None,
            correlation_data: None,
        }
    }
}

/// What the provider's classifier made of an inbound message. Cloud providers add their
/// kinds (C2D, method request, twin response, desired patch, shadow delta, job
/// notification); routing in the Subscriber is by kind, then by topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// A message on a user topic.
    Message(InboundMessage),
}

impl Inbound {
    /// A stable label for metrics and routing.
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Message(_) => "message",
        }
    }

    /// The topic the message arrived on.
    pub fn topic(&self) -> &str {
        match self {
            Inbound::Message(m) => &m.topic,
        }
    }
}
