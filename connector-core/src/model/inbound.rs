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

/// A cloud-to-device message (Azure C2D; a module input carries its input name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2dMessage {
    /// The topic it arrived on.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// Application properties, in wire order.
    pub properties: Vec<(String, String)>,
    /// System properties (`$.mid`, `$.cid`, `$.ct`, `$.ce`, `$.to`, `$.exp`, …) by their
    /// wire names, in wire order.
    pub system_properties: Vec<(String, String)>,
    /// For module inputs: the input name.
    pub input: Option<String>,
}

impl C2dMessage {
    /// An application property by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// A system property by wire name (`$.mid`, …).
    pub fn system_property(&self, name: &str) -> Option<&str> {
        self.system_properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A direct-method invocation: user code must answer it before the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRequest {
    /// The method name.
    pub name: String,
    /// The request id the answer must carry (`$rid`).
    pub request_id: String,
    /// The JSON payload.
    pub payload: Bytes,
}

/// A response to a device-state request (twin get/patch; shadow get/update/delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateResponse {
    /// The correlation id (`$rid`, `clientToken`).
    pub request_id: String,
    /// HTTP-like status (200, 204, 400, 404, 409, 429, …).
    pub status: u16,
    /// The document version the service reports, if any.
    pub version: Option<u64>,
    /// The body (JSON), possibly empty.
    pub body: Bytes,
}

/// A change of desired state pushed by the service (Azure desired patch, AWS delta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPatch {
    /// The named document it belongs to (AWS named shadow); `None` for the Azure twin and
    /// the AWS classic shadow.
    pub shadow: Option<String>,
    /// The version of the document after the change.
    pub version: Option<u64>,
    /// The patch (JSON).
    pub body: Bytes,
}

/// The previous and current full documents after an accepted update (AWS
/// `update/documents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDocuments {
    /// The named document (`None`: the classic shadow).
    pub shadow: Option<String>,
    /// The version of the current document.
    pub version: Option<u64>,
    /// `{"previous":…,"current":…,"timestamp":…}` as the service sent it.
    pub body: Bytes,
}

/// The device-side jobs operation a [`JobResponse`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOp {
    /// GetPendingJobExecutions.
    GetPending,
    /// StartNextPendingJobExecution.
    StartNext,
    /// DescribeJobExecution.
    Describe,
    /// UpdateJobExecution.
    Update,
}

/// An answer to a jobs request (AWS `…/jobs/…/accepted|rejected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResponse {
    /// The correlation id (`clientToken`); empty when the service sent none.
    pub request_id: String,
    /// Which operation it answers.
    pub op: JobOp,
    /// The job id of the topic (describe and update; `$next` for describe-next).
    pub job_id: Option<String>,
    /// `accepted` (true) or `rejected` (false).
    pub accepted: bool,
    /// The JSON body.
    pub body: Bytes,
}

/// A jobs event pushed by the service: the pending list changed (`notify`) or the next
/// execution changed (`notify-next`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNotification {
    /// `notify-next` (true) or `notify` (false).
    pub next: bool,
    /// The JSON body.
    pub body: Bytes,
}

/// What the provider's classifier made of an inbound message. Routing in the Subscriber
/// is by [`Inbound::kind`], then (for user messages) by topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// A message on a user topic.
    Message(InboundMessage),
    /// A cloud-to-device message.
    C2d(C2dMessage),
    /// A direct-method request.
    MethodRequest(MethodRequest),
    /// A response to a device-state request.
    StateResponse(StateResponse),
    /// A desired-state change.
    DesiredPatch(DesiredPatch),
    /// Previous and current documents after an update.
    StateDocuments(StateDocuments),
    /// An answer to a jobs request.
    JobResponse(JobResponse),
    /// A jobs event.
    JobNotification(JobNotification),
    /// A message on one of the provider's own topics that could not be parsed: the reason
    /// is kept, nothing is dropped silently.
    Malformed {
        /// The topic.
        topic: String,
        /// Why it could not be understood.
        reason: String,
    },
}

impl Inbound {
    /// A stable label for metrics and routing.
    pub fn kind(&self) -> InboundKind {
        match self {
            Inbound::Message(_) => InboundKind::Message,
            Inbound::C2d(_) => InboundKind::C2d,
            Inbound::MethodRequest(_) => InboundKind::Method,
            Inbound::StateResponse(_) => InboundKind::StateResponse,
            Inbound::DesiredPatch(_) => InboundKind::DesiredPatch,
            Inbound::StateDocuments(_) => InboundKind::StateDocuments,
            Inbound::JobResponse(_) => InboundKind::JobResponse,
            Inbound::JobNotification(_) => InboundKind::JobNotification,
            Inbound::Malformed { .. } => InboundKind::Malformed,
        }
    }

    /// The topic the message arrived on, where it is kept.
    pub fn topic(&self) -> &str {
        match self {
            Inbound::Message(m) => &m.topic,
            Inbound::C2d(m) => &m.topic,
            Inbound::Malformed { topic, .. } => topic,
            Inbound::MethodRequest(_)
            | Inbound::StateResponse(_)
            | Inbound::DesiredPatch(_)
            | Inbound::StateDocuments(_)
            | Inbound::JobResponse(_)
            | Inbound::JobNotification(_) => "",
        }
    }
}

/// What an [`Inbound`] message is, as routes name it (`RouteKey::Kind` in `connector-actors`)
/// and metrics label it ([`InboundKind::as_str`]): typed, so a route cannot name a kind that
/// does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum InboundKind {
    /// A message on a user topic.
    Message,
    /// An Azure cloud-to-device message.
    C2d,
    /// An Azure direct-method request.
    Method,
    /// An answer to a device-state request (twin / shadow get, report, update, delete).
    StateResponse,
    /// A desired-state change (Azure patch, AWS delta).
    DesiredPatch,
    /// The previous and current documents after an update (AWS `update/documents`).
    StateDocuments,
    /// An answer to a jobs request.
    JobResponse,
    /// A jobs notification.
    JobNotification,
    /// A message the provider could not decode.
    Malformed,
}

impl InboundKind {
    /// Every kind.
    pub const ALL: [InboundKind; 9] = [
        InboundKind::Message,
        InboundKind::C2d,
        InboundKind::Method,
        InboundKind::StateResponse,
        InboundKind::DesiredPatch,
        InboundKind::StateDocuments,
        InboundKind::JobResponse,
        InboundKind::JobNotification,
        InboundKind::Malformed,
    ];

    /// The metric label and log name (`message`, `c2d`, `method`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            InboundKind::Message => "message",
            InboundKind::C2d => "c2d",
            InboundKind::Method => "method",
            InboundKind::StateResponse => "state_response",
            InboundKind::DesiredPatch => "desired_patch",
            InboundKind::StateDocuments => "state_documents",
            InboundKind::JobResponse => "job_response",
            InboundKind::JobNotification => "job_notification",
            InboundKind::Malformed => "malformed",
        }
    }
}

impl std::fmt::Display for InboundKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod kind_tests {
    use super::InboundKind;

    #[test]
    fn every_kind_has_its_own_label() {
        let labels: std::collections::BTreeSet<&str> = InboundKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), InboundKind::ALL.len());
        assert_eq!(InboundKind::C2d.to_string(), "c2d");
    }
}
