//! The TwinActor's public data, messages and errors.

use super::*;
use connector_core::StateSections;

/// Why a device-state request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TwinError {
    /// No answer within the operation timeout.
    #[error("no answer after {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The service answered with an error status.
    #[error("the service answered {status}: {body}")]
    Status {
        /// The status (400, 404, 413, …).
        status: u16,
        /// The answer's body, as text.
        body: String,
    },
    /// Still throttled (429) after the retries allowed.
    #[error("throttled (429) after {attempts} attempts")]
    Throttled {
        /// Attempts made.
        attempts: u32,
    },
    /// The request could not be sent: the link is gone and the Publisher refused it.
    #[error("not connected")]
    Disconnected,
    /// The connection (or the TwinActor) stopped before the request completed.
    #[error("stopped")]
    Stopped,
    /// A body that is not the JSON it must be (a patch, a document).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The provider's codec refused the request.
    #[error("codec")]
    Codec(#[from] ProviderError),
    /// The Publisher failed the request's packet.
    #[error("publish")]
    Publish(#[source] PublishError),
    /// The provider has no device state.
    #[error("the provider has no device state")]
    Unsupported,
}

impl TwinError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TwinError::Timeout { .. } => "timeout",
            TwinError::Status { .. } => "status",
            TwinError::Throttled { .. } => "throttled",
            TwinError::Disconnected => "disconnected",
            TwinError::Stopped => "stopped",
            TwinError::InvalidJson(_) => "invalid_json",
            TwinError::Codec(_) => "codec",
            TwinError::Publish(_) => "publish",
            TwinError::Unsupported => "unsupported",
        }
    }
}

impl From<MailboxError> for TwinError {
    fn from(_: MailboxError) -> Self {
        TwinError::Stopped
    }
}

/// The whole device-state document, as the service returned it, with its sections as the
/// provider's codec reads them ([`StateSections`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TwinDocument {
    /// The document as the service sent it.
    pub body: Value,
    /// The version the response carried, if any.
    pub version: Option<u64>,
    sections: StateSections,
}

impl TwinDocument {
    /// A document and the sections its provider read from it.
    pub fn new(body: Value, version: Option<u64>, sections: StateSections) -> Self {
        Self { body, version, sections }
    }
    /// The sections and versions, as the provider reads them.
    pub fn sections(&self) -> &StateSections {
        &self.sections
    }
    /// The desired section.
    pub fn desired(&self) -> Option<&Value> {
        self.sections.desired.as_ref()
    }
    /// The reported section.
    pub fn reported(&self) -> Option<&Value> {
        self.sections.reported.as_ref()
    }
    /// The desired version, as the provider reads it.
    pub fn desired_version(&self) -> Option<u64> {
        self.sections.desired_version
    }
    /// The reported version, where the cloud keeps one apart.
    pub fn reported_version(&self) -> Option<u64> {
        self.sections.reported_version
    }
}

/// A reported patch the service accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    /// The reported version after the patch, if the service said.
    pub version: Option<u64>,
}

/// A desired-state change delivered to watchers.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredUpdate {
    /// The named document it belongs to (AWS named shadow); `None` for the Azure twin and
    /// the AWS classic shadow.
    pub shadow: Option<String>,
    /// The desired version after the change (none if the service did not say: such a patch
    /// cannot be checked for duplicates).
    pub version: Option<u64>,
    /// The patch (Azure) or delta (AWS); for a catch-up, the whole desired section (Azure)
    /// or the document's current delta (AWS).
    pub body: Value,
    /// `true` when this is the whole desired section fetched after a (re)connection
    /// because its version was newer than the last one delivered.
    pub catch_up: bool,
    /// The whole desired state, when this update came with it (every catch-up: the
    /// document was just fetched). Where pushes are deltas, a watcher mirroring the whole
    /// desired state takes it from here instead of fetching the document again.
    pub desired: Option<Value>,
}

/// A desired change, as delivered to a `Recipient<DesiredChanged>`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DesiredChanged(pub DesiredUpdate);

/// Where desired changes go.
#[derive(Clone, Debug)]
pub enum DesiredSink {
    /// An actor (`try_send`: a full or dead mailbox never blocks the others).
    Recipient(Recipient<DesiredChanged>),
    /// A bounded channel; when it is full, updates are dropped and counted.
    Channel(mpsc::Sender<DesiredUpdate>),
}

/// The id of a desired watcher, to stop watching with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// Fetch the whole document.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<TwinDocument, TwinError>")]
pub struct GetTwin;

/// Patch the reported state with a JSON object (`null` members delete).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Reported, TwinError>")]
pub struct ReportState(pub Bytes);

impl ReportState {
    /// A patch from a JSON value.
    pub fn json(patch: &Value) -> Self {
        Self(Bytes::from(patch.to_string()))
    }
}

/// Start watching desired changes of the classic document (the Azure twin, the AWS
/// classic shadow).
#[derive(Debug, Clone, Message)]
#[rtype(result = "WatchId")]
pub struct WatchDesired(pub DesiredSink);

/// Fetch a document: `shadow` names an AWS named shadow, `None` is the classic one.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<TwinDocument, TwinError>")]
pub struct GetShadow {
    /// The named shadow, or `None`.
    pub shadow: Option<String>,
}

/// Patch a document's reported state.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Reported, TwinError>")]
pub struct ReportShadow {
    /// The named shadow, or `None`.
    pub shadow: Option<String>,
    /// The reported patch (a JSON object; `null` members delete).
    pub patch: Bytes,
}

/// A full update of a document (AWS shadow update): `state` is
/// `{"desired":…,"reported":…}`, applied only at `version` when given (a conflict is
/// [`TwinError::Status`] 409).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Reported, TwinError>")]
pub struct UpdateShadow {
    /// The named shadow, or `None`.
    pub shadow: Option<String>,
    /// The `state` object.
    pub state: Bytes,
    /// The optimistic-lock version.
    pub version: Option<u64>,
}

/// Delete a document (AWS shadow delete).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Reported, TwinError>")]
pub struct DeleteShadow {
    /// The named shadow, or `None`.
    pub shadow: Option<String>,
}

/// Start watching desired changes (deltas) of one document. For a named shadow, its
/// subscriptions are made once and kept across reconnects, and every (re)connection
/// catches up on it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "WatchId")]
pub struct WatchShadow {
    /// The named shadow, or `None`.
    pub shadow: Option<String>,
    /// Where its changes go.
    pub sink: DesiredSink,
}

/// Stop watching; `false` if the id was unknown.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct UnwatchDesired(pub WatchId);

/// How throttled (429) requests are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinRetry {
    /// Delays between attempts (jittered).
    pub backoff: BackoffPolicy,
    /// Retries after the first attempt before [`TwinError::Throttled`].
    pub max_retries: u32,
}

impl Default for TwinRetry {
    /// 1 s doubling to 16 s with full jitter, 5 retries.
    fn default() -> Self {
        Self {
            backoff: BackoffPolicy {
                min: Duration::from_secs(1),
                max: Duration::from_secs(16),
                stable_after: Duration::MAX,
                jitter: Jitter::Full,
            },
            max_retries: 5,
        }
    }
}
