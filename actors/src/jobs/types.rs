//! The jobs channel's public data, messages, outcomes and errors.

use super::*;

/// How long a job handler may run by default before the job is failed.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a jobs request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JobError {
    /// No answer within the operation timeout.
    #[error("no answer after {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The service rejected the request.
    #[error("rejected ({code:?}): {message}")]
    Rejected {
        /// The service's error code.
        code: JobErrorCode,
        /// The service's message.
        message: String,
        /// The execution's current state, when the service sent it.
        state: Option<JobExecutionState>,
    },
    /// The request is invalid before anything is sent (a status a device may not set,
    /// status details or a job id out of the service's rules).
    #[error("invalid request")]
    Invalid(#[source] JobsError),
    /// The answer is not the document it must be.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The request could not be sent: the link is gone and the Publisher refused it.
    #[error("not connected")]
    Disconnected,
    /// The connection (or the JobsActor) stopped before the request completed.
    #[error("stopped")]
    Stopped,
    /// The provider's codec refused the request.
    #[error("codec")]
    Codec(#[from] ProviderError),
    /// The Publisher failed the request's packet.
    #[error("publish")]
    Publish(#[source] PublishError),
    /// A handler registered without an operation name (a job document's `operation` is
    /// never empty, so it could never run).
    #[error("a job handler needs a non-empty operation name")]
    EmptyOperation,
}

impl JobError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            JobError::Timeout { .. } => "timeout",
            JobError::Rejected { .. } => "rejected",
            JobError::Invalid(_) => "invalid",
            JobError::Malformed(_) => "malformed",
            JobError::Disconnected => "disconnected",
            JobError::Stopped => "stopped",
            JobError::Codec(_) => "codec",
            JobError::Publish(_) => "publish",
            JobError::EmptyOperation => "empty_operation",
        }
    }
}

impl From<MailboxError> for JobError {
    fn from(_: MailboxError) -> Self {
        JobError::Stopped
    }
}

/// GetPendingJobExecutions.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<PendingJobs, JobError>")]
pub struct GetPendingJobs;

/// StartNextPendingJobExecution: the execution started (or already in progress), `None`
/// when nothing is pending.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "Result<Option<JobExecution>, JobError>")]
pub struct StartNextJob(pub StartNextRequest);

/// DescribeJobExecution of `job_id` (`$next` for the next pending one).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Option<JobExecution>, JobError>")]
pub struct DescribeJob {
    /// The job id, or `$next`.
    pub job_id: String,
    /// The request fields.
    pub request: DescribeRequest,
}

/// UpdateJobExecution of `job_id`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<jobs::UpdateAnswer, JobError>")]
pub struct UpdateJob {
    /// The job id.
    pub job_id: String,
    /// The update.
    pub update: JobUpdate,
}

/// What the jobs channel tells its watchers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobEvent {
    /// The channel is (re)established on a new connection: a good moment to ask for
    /// pending work.
    Ready,
    /// `notify`: the pending executions changed.
    PendingChanged(PendingListChanged),
    /// `notify-next`: the next pending execution changed (`None`: nothing is pending).
    NextChanged(Option<JobExecution>),
}

/// How a job handler ended an execution. An actor handling [`JobInvoked`] returns it as its
/// message result.
#[derive(Debug, Clone, PartialEq, Eq, actix::MessageResponse)]
pub enum JobOutcome {
    /// Done: `SUCCEEDED` with these status details.
    Succeeded(StatusDetails),
    /// `FAILED` with these status details.
    Failed(StatusDetails),
    /// Refused: `REJECTED` with these status details.
    Rejected(StatusDetails),
}

impl JobOutcome {
    /// The terminal status it sets.
    pub fn status(&self) -> JobStatus {
        match self {
            JobOutcome::Succeeded(_) => JobStatus::Succeeded,
            JobOutcome::Failed(_) => JobStatus::Failed,
            JobOutcome::Rejected(_) => JobStatus::Rejected,
        }
    }

    /// A `FAILED` outcome with `{"reason": reason}`.
    pub fn failed(reason: impl Into<String>) -> Self {
        JobOutcome::Failed(reason_details(reason))
    }

    /// A `REJECTED` outcome with `{"reason": reason}`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        JobOutcome::Rejected(reason_details(reason))
    }

    /// A `SUCCEEDED` outcome without details.
    pub fn succeeded() -> Self {
        JobOutcome::Succeeded(StatusDetails::new())
    }

    pub(super) fn into_details(self) -> StatusDetails {
        match self {
            JobOutcome::Succeeded(d) | JobOutcome::Failed(d) | JobOutcome::Rejected(d) => d,
        }
    }
}

pub(super) fn reason_details(reason: impl Into<String>) -> StatusDetails {
    let mut reason: String = reason.into();
    if reason.is_empty() {
        reason.push('-');
    }
    // Status detail values are 1–1024 characters without control characters.
    let clean: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(1024).collect();
    StatusDetails::from([("reason".to_owned(), clean)])
}

/// A job execution delivered to an actor ([`JobsHandle::register_recipient`]); the actor's
/// answer is the outcome.
#[derive(Clone, actix::Message)]
#[rtype(result = "JobOutcome")]
pub struct JobInvoked(pub JobRun);

/// One execution handed to a job handler.
#[derive(Clone)]
pub struct JobRun {
    /// The job id.
    pub job_id: String,
    /// The job document.
    pub document: Value,
    /// The attempt number.
    pub execution_number: Option<u64>,
    /// The execution's version when it was started.
    pub version_number: u64,
    pub(super) jobs: JobsHandle,
}

impl std::fmt::Debug for JobRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRun")
            .field("job_id", &self.job_id)
            .field("execution_number", &self.execution_number)
            .field("version_number", &self.version_number)
            .finish_non_exhaustive()
    }
}

impl JobRun {
    /// Reports progress: the execution stays `IN_PROGRESS` with these status details.
    pub async fn progress(&self, details: StatusDetails) -> Result<(), JobError> {
        let mut update = JobUpdate::new(JobStatus::InProgress);
        update.status_details = Some(details);
        update.execution_number = self.execution_number;
        self.jobs.update(&self.job_id, update).await.map(|_| ())
    }

    /// The document's `operation`, if it has one.
    pub fn operation(&self) -> Option<&str> {
        self.document.get("operation").and_then(Value::as_str)
    }
}

/// A job handler: given the execution, it runs the document and says how it ended.
pub type JobHandlerFn = Arc<dyn Fn(JobRun) -> Pin<Box<dyn Future<Output = JobOutcome> + Send>> + Send + Sync>;

/// The runner's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsOptions {
    /// How long a handler may run before the job is failed.
    pub handler_timeout: Duration,
    /// The step timer asked for in StartNext (the service times the execution out if the
    /// device goes silent); `None` keeps the job's own setting.
    pub step_timeout_minutes: Option<i64>,
}

impl Default for JobsOptions {
    /// [`DEFAULT_JOB_TIMEOUT`], no step timer.
    fn default() -> Self {
        Self { handler_timeout: DEFAULT_JOB_TIMEOUT, step_timeout_minutes: None }
    }
}
