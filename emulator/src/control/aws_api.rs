//! Bodies of the AWS IoT control API routes (`/aws/…`, listed in the crate docs).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A thing (`PUT /aws/things/{name}` body and answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thing {
    /// Thing name (set from the path).
    #[serde(default)]
    pub thing_name: String,
    /// Attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Ids of the certificates attached to it.
    #[serde(default)]
    pub principals: Vec<String>,
}

/// Certificate status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// Accepted for connections.
    #[default]
    Active,
    /// Registered but refused.
    Inactive,
    /// Issued by fleet provisioning, waiting for RegisterThing (refused for connections;
    /// deleted when its ownership token expires unattached).
    PendingActivation,
}

/// Body of `POST /aws/certificates`: issue a client certificate from the emulator CA
/// and register it, or (with `certificatePem`) register one issued elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCertificate {
    /// Subject CN of an issued certificate (default: the thing name, or `aws-device`).
    #[serde(default)]
    pub common_name: Option<String>,
    /// Register this PEM certificate instead of issuing one.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// Status (default `ACTIVE`).
    #[serde(default)]
    pub status: CertificateStatus,
    /// Attach it to this (existing) thing.
    #[serde(default)]
    pub thing_name: Option<String>,
}

/// A registered certificate. `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// Certificate id: lower-case hex SHA-256 of the DER certificate.
    pub certificate_id: String,
    /// PEM certificate.
    pub certificate_pem: String,
    /// PEM private key (PKCS#8), only in the answer that issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// Status.
    pub status: CertificateStatus,
    /// Things it is attached to.
    #[serde(default)]
    pub things: Vec<String>,
}

impl fmt::Debug for CertificateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateInfo")
            .field("certificate_id", &self.certificate_id)
            .field("status", &self.status)
            .field("things", &self.things)
            .finish_non_exhaustive()
    }
}

/// Body of `PUT /aws/certificates/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateUpdate {
    /// New status (connections of a deactivated certificate are closed).
    pub status: CertificateStatus,
}

/// An IAM-like access key for SigV4 (`POST /aws/access-keys`). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    /// Access key id (`AKIA…`).
    pub access_key_id: String,
    /// Secret access key (empty in listings).
    #[serde(default)]
    pub secret_access_key: String,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// A custom authorizer (`PUT /aws/authorizers/{name}`). The Lambda is replaced by an
/// allow-list: a connection is authenticated when its token is in `allowedTokens` (and,
/// with `tokenSigningPublicKey`, its signature verifies). `Debug` hides the tokens.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorizer {
    /// Name of the token's query parameter / header (e.g. `token`).
    pub token_key_name: String,
    /// PEM public key verifying `x-amz-customauthorizer-signature` (base64 RSA-SHA256 of
    /// the token); `None` disables signing.
    #[serde(default)]
    pub token_signing_public_key: Option<String>,
    /// Tokens the "Lambda" accepts.
    #[serde(default)]
    pub allowed_tokens: Vec<String>,
    /// Used when the client names no authorizer.
    #[serde(default)]
    pub default: bool,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("token_key_name", &self.token_key_name)
            .field("signing", &self.token_signing_public_key.is_some())
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

/// A captured PUBLISH on a user topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsTelemetry {
    /// Increasing number.
    pub sequence_number: u64,
    /// Sender's client id.
    pub client_id: String,
    /// Things of the sender's certificate (empty for SigV4 / custom auth).
    pub things: Vec<String>,
    /// Topic.
    pub topic: String,
    /// Payload as UTF-8, when it is.
    pub payload: Option<String>,
    /// Payload, base64.
    pub payload_base64: String,
    /// QoS.
    pub qos: u8,
    /// MQTT 5 user properties, in order (empty for MQTT 3.1.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The MQTT 5 Topic Alias the PUBLISH carried (`topic` is the resolved topic either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_alias: Option<u16>,
    /// Receive time, Unix milliseconds.
    pub received_at_ms: u64,
}

/// A live AWS connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsConnection {
    /// Client id.
    pub client_id: String,
    /// `x509`, `sigv4`, `custom-auth`.
    pub auth: String,
    /// Principal: certificate id, access key id, or authorizer/token principal.
    pub principal: String,
    /// Subscribed filters.
    pub subscriptions: Vec<String>,
}

/// Faults of one client id (`PUT /aws/faults/{clientId}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsFaults {
    /// Refuse CONNECT with this CONNACK code (1–5).
    #[serde(default)]
    pub refuse_connect: Option<u8>,
    /// Answer shadow requests with 429.
    #[serde(default)]
    pub throttle_shadow: bool,
    /// Answer jobs requests with `RequestThrottled`.
    #[serde(default)]
    pub throttle_jobs: bool,
    /// Answer fleet-provisioning requests with 429 `Throttling`.
    #[serde(default)]
    pub throttle_provisioning: bool,
    /// Number of refusals/throttled requests before the fault clears (`None`: until cleared).
    #[serde(default)]
    pub count: Option<u32>,
}

/// Answer of a shadow route: the document, or the error document with its `code`.
pub type ShadowDocument = Value;

/// State of a job execution (`aws-jobs.md` §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobExecutionStatus {
    /// Waiting for the device.
    Queued,
    /// The device is running it.
    InProgress,
    /// Finished successfully (terminal).
    Succeeded,
    /// Finished with a failure (terminal; retried when the job has retries left).
    Failed,
    /// A step or in-progress timer ran out (terminal; retried when the job has retries left).
    TimedOut,
    /// The device refused it (terminal).
    Rejected,
    /// The thing left the job's targets (terminal).
    Removed,
    /// Cancelled by the back end (terminal).
    Canceled,
}

impl JobExecutionStatus {
    /// No further change is possible.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobExecutionStatus::Queued | JobExecutionStatus::InProgress)
    }

    /// The wire name (`IN_PROGRESS`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            JobExecutionStatus::Queued => "QUEUED",
            JobExecutionStatus::InProgress => "IN_PROGRESS",
            JobExecutionStatus::Succeeded => "SUCCEEDED",
            JobExecutionStatus::Failed => "FAILED",
            JobExecutionStatus::TimedOut => "TIMED_OUT",
            JobExecutionStatus::Rejected => "REJECTED",
            JobExecutionStatus::Removed => "REMOVED",
            JobExecutionStatus::Canceled => "CANCELED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<JobExecutionStatus> {
        use JobExecutionStatus::*;
        [Queued, InProgress, Succeeded, Failed, TimedOut, Rejected, Removed, Canceled]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// State of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Some execution is not terminal yet.
    InProgress,
    /// Every execution reached a terminal state.
    Completed,
    /// Cancelled by the back end.
    Canceled,
}

/// Job-level timer (`timeoutConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobTimeoutConfig {
    /// Minutes an execution may stay IN_PROGRESS (from its start; step timers do not
    /// change it) before it becomes TIMED_OUT, 1–10080.
    pub in_progress_timeout_in_minutes: u64,
}

/// Retries (`jobExecutionsRetryConfig`, simplified): a FAILED or TIMED_OUT execution is
/// followed by a new QUEUED one with the next execution number, this many times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRetryConfig {
    /// Retries per thing, 0–10.
    pub number_of_retries: u32,
}

/// Body of `POST /aws/jobs`: a snapshot job on the named things (which must exist).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateJob {
    /// Job id, `[a-zA-Z0-9_-]{1,64}`, unique.
    pub job_id: String,
    /// The job document: a JSON object of at most 32 KB.
    pub document: Value,
    /// Thing names; each gets a QUEUED execution (execution number 1, version 1).
    pub targets: Vec<String>,
    /// Job-level in-progress timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_config: Option<JobTimeoutConfig>,
    /// Retries after FAILED / TIMED_OUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<JobRetryConfig>,
}

impl CreateJob {
    /// A job with no timer and no retries.
    pub fn new(job_id: impl Into<String>, document: Value, targets: Vec<String>) -> CreateJob {
        CreateJob { job_id: job_id.into(), document, targets, timeout_config: None, retry_config: None }
    }
}

/// A job (`GET /aws/jobs/{jobId}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    /// Job id.
    pub job_id: String,
    /// The job document.
    pub document: Value,
    /// Target things.
    pub targets: Vec<String>,
    /// State.
    pub status: JobState,
    /// Creation time (Unix seconds, service clock).
    pub created_at: u64,
    /// Job-level timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_config: Option<JobTimeoutConfig>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<JobRetryConfig>,
}

/// A job execution as the back end sees it (`GET /aws/things/{t}/jobs/{jobId}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionInfo {
    /// Job id.
    pub job_id: String,
    /// Thing name.
    pub thing_name: String,
    /// Attempt number (1, then +1 per retry).
    pub execution_number: u64,
    /// State.
    pub status: JobExecutionStatus,
    /// Status details last set by the device.
    #[serde(default)]
    pub status_details: BTreeMap<String, String>,
    /// Version (1 when queued, +1 per change).
    pub version_number: u64,
    /// Queued at (Unix seconds, service clock).
    pub queued_at: u64,
    /// Started at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Last updated at.
    pub last_updated_at: u64,
    /// Seconds before a running timer times it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_seconds_before_timed_out: Option<u64>,
}

/// Body of the cancel routes (`POST /aws/jobs/{jobId}/cancel`,
/// `POST /aws/things/{t}/jobs/{jobId}/cancel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelJob {
    /// Also cancel IN_PROGRESS executions (otherwise only QUEUED ones; cancelling one
    /// IN_PROGRESS execution without `force` is refused with 409).
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /aws/clock`: moves the service clock of jobs and fleet provisioning
/// forward (timers, ownership-token expiry), then applies what expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvanceClock {
    /// Seconds to add.
    pub advance_seconds: u64,
}

/// Answer of `POST /aws/clock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceClock {
    /// Total offset from real time, seconds.
    pub offset_seconds: u64,
    /// The service clock now (Unix seconds).
    pub now: u64,
}

/// A fleet-provisioning template (`PUT /aws/provisioning-templates/{name}`).
///
/// `templateBody` is the AWS template (as a JSON object or a string holding one):
/// `Parameters` (name → `{"Type":"String","Default":…}`; no `Default` = required),
/// `Resources` with exactly one `AWS::IoT::Thing` (`Properties.ThingName`, optional
/// `AttributePayload`), optionally an `AWS::IoT::Certificate` (`Properties.Status`,
/// default `ACTIVE`) and policies (accepted, not evaluated: policies are allow-all), and a
/// flat `DeviceConfiguration`. Values are strings, `{"Ref": param}` or
/// `{"Fn::Join": [sep, [values…]]}`; `AWS::IoT::Certificate::Id` and
/// `AWS::IoT::Certificate::CommonName` are predefined parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisioningTemplate {
    /// Template name, `[0-9A-Za-z_-]{1,36}` (set from the path).
    #[serde(default)]
    pub template_name: String,
    /// The template document.
    pub template_body: Value,
    /// Disabled templates answer RegisterThing with 404.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Principals (certificate ids, access key ids, authorizer names) that may use it —
    /// the claim certificates; empty: any authenticated connection.
    #[serde(default)]
    pub allowed_principals: Vec<String>,
}

fn enabled_default() -> bool {
    true
}

impl ProvisioningTemplate {
    /// An enabled template usable by any principal.
    pub fn new(template_body: Value) -> ProvisioningTemplate {
        ProvisioningTemplate {
            template_name: String::new(),
            template_body,
            enabled: true,
            allowed_principals: Vec::new(),
        }
    }
}

/// Jobs service settings (`GET`, `PUT /aws/jobs-settings`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobsSettings {
    /// Also publish `notify` when an execution moves from QUEUED to IN_PROGRESS (the
    /// docs disagree, `aws-jobs.md` §4.1; default false: only when an execution joins or
    /// leaves the pending list, as in their worked example).
    #[serde(default)]
    pub notify_on_start: bool,
}
