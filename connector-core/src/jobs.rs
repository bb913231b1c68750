//! Typed documents of a device jobs channel, in the JSON of AWS IoT Jobs
//! (`aws-jobs.md`): execution states and their transitions, executions, the requests a
//! device makes and the error documents it gets back. Parsing never panics; anything
//! malformed is a [`JobsError`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// `statusDetails`: a string → string map.
pub type StatusDetails = BTreeMap<String, String>;

/// The state of a job execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for the device.
    Queued,
    /// The device is running it.
    InProgress,
    /// Finished successfully (terminal).
    Succeeded,
    /// Finished with a failure (terminal, may be retried by the service).
    Failed,
    /// The step or job timer ran out (terminal, set by the service).
    TimedOut,
    /// The device refused it (terminal).
    Rejected,
    /// The thing left the job's targets (terminal, set by the service).
    Removed,
    /// Cancelled (terminal, set by the service).
    Canceled,
}

impl JobStatus {
    /// No further update is possible.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::InProgress)
    }

    /// A status a device may set in an update.
    pub fn settable_by_device(self) -> bool {
        matches!(self, JobStatus::InProgress | JobStatus::Succeeded | JobStatus::Failed | JobStatus::Rejected)
    }

    /// Whether a device update may move an execution from `self` to `next` (`aws-jobs.md`
    /// §5): from QUEUED or IN_PROGRESS to IN_PROGRESS or a device-settable terminal state.
    pub fn device_may_move_to(self, next: JobStatus) -> Result<(), JobsError> {
        if !next.settable_by_device() {
            return Err(JobsError::NotSettable(next));
        }
        if self.is_terminal() {
            return Err(JobsError::InvalidTransition { from: self, to: next });
        }
        Ok(())
    }

    /// The wire name (`IN_PROGRESS`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::TimedOut => "TIMED_OUT",
            JobStatus::Rejected => "REJECTED",
            JobStatus::Removed => "REMOVED",
            JobStatus::Canceled => "CANCELED",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job execution (`JobExecution`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    /// The job id.
    pub job_id: String,
    /// The thing it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
    /// The job document (JSON object), when included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<Value>,
    /// Its state.
    pub status: JobStatus,
    /// Progress details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    /// Queued at (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<u64>,
    /// Started at (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Last updated at (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<u64>,
    /// Seconds left before the running timer times it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_seconds_before_timed_out: Option<u64>,
    /// The version, for `expectedVersion`.
    #[serde(default)]
    pub version_number: u64,
    /// The attempt number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<u64>,
}

/// `JobExecutionState`: what an update answer or an error carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionState {
    /// Its state.
    pub status: JobStatus,
    /// Progress details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    /// The version.
    #[serde(default)]
    pub version_number: u64,
}

/// `JobExecutionSummary`: an entry of the pending lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionSummary {
    /// The job id.
    pub job_id: String,
    /// Queued at (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<u64>,
    /// Started at (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Last updated at (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<u64>,
    /// The version.
    #[serde(default)]
    pub version_number: u64,
    /// The attempt number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<u64>,
}

/// The accepted answer of GetPendingJobExecutions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingJobs {
    /// Executions in progress.
    #[serde(default)]
    pub in_progress_jobs: Vec<JobExecutionSummary>,
    /// Executions queued.
    #[serde(default)]
    pub queued_jobs: Vec<JobExecutionSummary>,
}

/// The accepted answer of StartNext / Describe, and the `notify-next` event: the
/// execution, absent when nothing is pending.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionAnswer {
    /// The execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
}

/// The accepted answer of UpdateJobExecution.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAnswer {
    /// The new state, when `includeJobExecutionState` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
    /// The job document, when `includeJobDocument` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<Value>,
}

/// The `notify` event: pending executions by status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PendingListChanged {
    /// Status → summaries (`IN_PROGRESS`, `QUEUED`).
    #[serde(default)]
    pub jobs: BTreeMap<JobStatus, Vec<JobExecutionSummary>>,
}

/// StartNextPendingJobExecution request fields (the client token is added by the codec).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNextRequest {
    /// Status details to set when the execution starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    /// Step timer, 1–10080 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
}

/// DescribeJobExecution request fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRequest {
    /// The attempt (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<u64>,
    /// Include the job document (the service defaults to true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
}

/// UpdateJobExecution request fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobUpdate {
    /// The new status (`IN_PROGRESS`, `SUCCEEDED`, `FAILED`, `REJECTED`).
    pub status: JobStatus,
    /// Replaces the stored details when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<StatusDetails>,
    /// Apply only at this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    /// The attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_number: Option<u64>,
    /// Return the new state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_execution_state: Option<bool>,
    /// Return the job document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_job_document: Option<bool>,
    /// Step timer, 1–10080 minutes, or −1 to cancel it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<i64>,
}

impl JobUpdate {
    /// An update to `status` with nothing else set.
    pub fn new(status: JobStatus) -> Self {
        Self {
            status,
            status_details: None,
            expected_version: None,
            execution_number: None,
            include_job_execution_state: None,
            include_job_document: None,
            step_timeout_in_minutes: None,
        }
    }

    /// Checks what the service would refuse as `InvalidRequest` (`aws-jobs.md` §7), before
    /// anything is sent.
    pub fn validate(&self) -> Result<(), JobsError> {
        if !self.status.settable_by_device() {
            return Err(JobsError::NotSettable(self.status));
        }
        if let Some(d) = &self.status_details {
            validate_status_details(d)?;
        }
        if let Some(t) = self.step_timeout_in_minutes {
            if t != -1 && !(1..=10_080).contains(&t) {
                return Err(JobsError::Invalid {
                    field: "stepTimeoutInMinutes",
                    reason: "1–10080, or −1 to cancel",
                });
            }
        }
        Ok(())
    }
}

/// Checks status details against the service's rules: keys `[a-zA-Z0-9:_-]{1,128}`,
/// values 1–1024 characters without control characters.
pub fn validate_status_details(details: &StatusDetails) -> Result<(), JobsError> {
    for (k, v) in details {
        let key_ok = !k.is_empty()
            && k.chars().count() <= 128
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
        if !key_ok {
            return Err(JobsError::Invalid {
                field: "statusDetails",
                reason: "keys are [a-zA-Z0-9:_-], 1–128 characters",
            });
        }
        if v.is_empty() || v.chars().count() > 1024 || v.chars().any(char::is_control) {
            return Err(JobsError::Invalid {
                field: "statusDetails",
                reason: "values are 1–1024 characters without control characters",
            });
        }
    }
    Ok(())
}

/// Checks a job id (`[a-zA-Z0-9_-]{1,64}`, or `$next` where `allow_next`).
pub fn validate_job_id(job_id: &str, allow_next: bool) -> Result<(), JobsError> {
    if allow_next && job_id == "$next" {
        return Ok(());
    }
    let ok = !job_id.is_empty()
        && job_id.len() <= 64
        && job_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(JobsError::Invalid { field: "jobId", reason: "[a-zA-Z0-9_-], 1–64 characters" })
    }
}

/// The `code` of a rejected jobs request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobErrorCode {
    /// A topic under the jobs namespace that maps to no API.
    InvalidTopic,
    /// The payload is not UTF-8 JSON.
    InvalidJson,
    /// Invalid fields.
    InvalidRequest,
    /// Not allowed from the current state.
    InvalidStateTransition,
    /// No such execution.
    ResourceNotFound,
    /// `expectedVersion` is not the current version.
    VersionMismatch,
    /// The service failed.
    InternalError,
    /// Throttled.
    RequestThrottled,
    /// Describe on a job in a terminal state.
    TerminalStateReached,
    /// A code this client does not know.
    #[serde(untagged)]
    Other(String),
}

/// A `…/rejected` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobErrorDocument {
    /// What went wrong.
    pub code: JobErrorCode,
    /// The service's message.
    #[serde(default)]
    pub message: String,
    /// The current state (InvalidStateTransition, VersionMismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
}

/// Errors of the jobs documents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JobsError {
    /// A status a device may not set.
    #[error("a device may not set the status {0}")]
    NotSettable(JobStatus),
    /// A transition the service refuses.
    #[error("a job execution cannot move from {from} to {to}")]
    InvalidTransition {
        /// The current status.
        from: JobStatus,
        /// The requested one.
        to: JobStatus,
    },
    /// A field out of the service's rules.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule.
        reason: &'static str,
    },
    /// A document that does not parse.
    #[error("malformed jobs document: {0}")]
    Malformed(String),
}

/// Parses a jobs document body (a JSON object) into `T`.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, JobsError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => {
            serde_json::from_value(v).map_err(|e| JobsError::Malformed(e.to_string()))
        }
        Ok(_) => Err(JobsError::Malformed("not a JSON object".into())),
        Err(e) => Err(JobsError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_state_table() {
        use JobStatus::*;
        for from in [Queued, InProgress] {
            for to in [InProgress, Succeeded, Failed, Rejected] {
                assert_eq!(from.device_may_move_to(to), Ok(()), "{from} → {to}");
            }
        }
        for from in [Succeeded, Failed, TimedOut, Rejected, Removed, Canceled] {
            assert_eq!(
                from.device_may_move_to(InProgress),
                Err(JobsError::InvalidTransition { from, to: InProgress })
            );
        }
        for to in [Queued, TimedOut, Removed, Canceled] {
            assert_eq!(InProgress.device_may_move_to(to), Err(JobsError::NotSettable(to)));
        }
    }

    #[test]
    fn documents_parse_from_the_protocol_examples() {
        let start: ExecutionAnswer = parse(
            br#"{"execution":{"jobId":"022","thingName":"MyThing","jobDocument":{"operation":"test"},
  "status":"IN_PROGRESS","statusDetails":{"step":"download"},"queuedAt":1489096123,"startedAt":1489096200,
  "lastUpdatedAt":1489096200,"versionNumber":2,"executionNumber":1},
 "timestamp":1489096200,"clientToken":"client-1"}"#,
        )
        .unwrap();
        let e = start.execution.unwrap();
        assert_eq!((e.job_id.as_str(), e.status, e.version_number), ("022", JobStatus::InProgress, 2));
        assert_eq!(e.status_details.unwrap().get("step").map(String::as_str), Some("download"));
        let notify: PendingListChanged = parse(
            br#"{"timestamp":1517017906,"jobs":{"IN_PROGRESS":[{"jobId":"job1","queuedAt":1517016947,"lastUpdatedAt":1517017472,"startedAt":1517017472,"executionNumber":1,"versionNumber":2}],"QUEUED":[{"jobId":"job2","queuedAt":1517017191,"lastUpdatedAt":1517017191,"executionNumber":1,"versionNumber":1}]}}"#,
        )
        .unwrap();
        assert_eq!(notify.jobs[&JobStatus::Queued][0].job_id, "job2");
        let err: JobErrorDocument = parse(
            br#"{"code":"VersionMismatch","message":"m","clientToken":"c-7","timestamp":1517189392,
 "executionState":{"status":"IN_PROGRESS","statusDetails":{"progress":"50%"},"versionNumber":3}}"#,
        )
        .unwrap();
        assert_eq!(err.code, JobErrorCode::VersionMismatch);
        assert_eq!(err.execution_state.unwrap().version_number, 3);
        let other: JobErrorDocument = parse(br#"{"code":"Brand-new","message":""}"#).unwrap();
        assert_eq!(other.code, JobErrorCode::Other("Brand-new".into()));
        let empty: ExecutionAnswer = parse(br#"{"timestamp":1517189551}"#).unwrap();
        assert!(empty.execution.is_none());
    }

    #[test]
    fn malformed_documents_and_fields_are_typed_errors() {
        for bad in [&b""[..], b"{", b"[]", b"{\"execution\":{\"jobId\":1}}", b"\xff"] {
            assert!(matches!(parse::<ExecutionAnswer>(bad), Err(JobsError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(parse::<JobUpdate>(br#"{"status":"DONE"}"#), Err(JobsError::Malformed(_))));
        let mut u = JobUpdate::new(JobStatus::InProgress);
        assert_eq!(u.validate(), Ok(()));
        u.step_timeout_in_minutes = Some(0);
        assert!(u.validate().is_err());
        u.step_timeout_in_minutes = Some(-1);
        assert_eq!(u.validate(), Ok(()));
        u.status_details = Some([("bad key".to_string(), "v".to_string())].into());
        assert!(u.validate().is_err());
        u.status_details = Some([("k".to_string(), "line\nbreak".to_string())].into());
        assert!(u.validate().is_err());
        assert_eq!(
            JobUpdate::new(JobStatus::Canceled).validate(),
            Err(JobsError::NotSettable(JobStatus::Canceled))
        );
        assert!(validate_job_id("$next", true).is_ok());
        for bad in ["", "$next", "a/b", &"x".repeat(65)] {
            assert!(validate_job_id(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn updates_serialise_as_the_service_expects() {
        let mut u = JobUpdate::new(JobStatus::Succeeded);
        u.expected_version = Some(2);
        assert_eq!(serde_json::to_string(&u).unwrap(), r#"{"status":"SUCCEEDED","expectedVersion":2}"#);
    }
}
