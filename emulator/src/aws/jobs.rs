//! The AWS IoT Jobs service, as a pure state machine (`shared/protocols/aws-jobs.md`):
//! device requests and back-end operations in, messages to publish out. No I/O and no
//! clock: the caller passes `now` (seconds, the service clock) and publishes what comes
//! back — answers (`…/accepted`, `…/rejected`) to the requesting client only,
//! notifications (`notify`, `notify-next`) to every subscriber.
//!
//! * Executions per thing, in queue order; the pending list is every `IN_PROGRESS` one
//!   then every `QUEUED` one, each in queue order; "next" is its first entry.
//! * Device updates (§5): from `QUEUED`/`IN_PROGRESS` to `IN_PROGRESS`, `SUCCEEDED`,
//!   `FAILED`, `REJECTED`; a terminal execution → `InvalidStateTransition`; other statuses
//!   → `InvalidRequest`. `versionNumber` starts at 1 and grows by one per change (device
//!   or service); `expectedVersion` (number or numeric string) must match
//!   (`VersionMismatch`, with `executionState`).
//! * Timers: a step timer (`stepTimeoutInMinutes` of StartNext/Update, −1 cancels) and
//!   the job's `inProgressTimeoutInMinutes` from the start; whichever ends first makes the
//!   execution `TIMED_OUT`. Evaluated by [`Jobs::expire`] before every request and by the
//!   caller's periodic tick.
//! * Retries: a `FAILED`/`TIMED_OUT` execution of a job with retries left is followed by a
//!   new `QUEUED` one with the next execution number.
//! * `notify` when the set of pending executions changes (optionally also on
//!   `QUEUED`→`IN_PROGRESS`, [`Jobs::notify_on_start`]); `notify-next` when which
//!   execution is next changes (§4).
//! * Describe on an execution that is terminal while its job is no longer in progress →
//!   `TerminalStateReached` (§6).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::control::aws_api::{
    CreateJob, JobExecutionInfo, JobExecutionStatus as Status, JobInfo, JobRetryConfig, JobState,
    JobTimeoutConfig,
};

/// Largest job document, bytes.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Largest `clientToken`, bytes.
pub(crate) const MAX_CLIENT_TOKEN: usize = 64;
/// Largest step / in-progress timeout, minutes.
pub(crate) const MAX_TIMEOUT_MINUTES: i64 = 10_080;
/// Most executions in a `notify` message.
const NOTIFY_LIMIT: usize = 10;
/// Most retries a job may ask for.
const MAX_RETRIES: u32 = 10;

/// The `code` of a `…/rejected` document (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    InvalidTopic,
    InvalidJson,
    InvalidRequest,
    InvalidStateTransition,
    ResourceNotFound,
    VersionMismatch,
    RequestThrottled,
    TerminalStateReached,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::InvalidTopic => "InvalidTopic",
            Code::InvalidJson => "InvalidJson",
            Code::InvalidRequest => "InvalidRequest",
            Code::InvalidStateTransition => "InvalidStateTransition",
            Code::ResourceNotFound => "ResourceNotFound",
            Code::VersionMismatch => "VersionMismatch",
            Code::RequestThrottled => "RequestThrottled",
            Code::TerminalStateReached => "TerminalStateReached",
        }
    }
}

/// A rejected device request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub(crate) struct JobsError {
    pub code: Code,
    pub message: String,
    /// `executionState` (InvalidStateTransition, VersionMismatch).
    pub state: Option<Value>,
}

impl JobsError {
    pub fn new(code: Code, message: impl Into<String>) -> JobsError {
        JobsError { code, message: message.into(), state: None }
    }

    fn invalid(message: impl Into<String>) -> JobsError {
        JobsError::new(Code::InvalidRequest, message)
    }

    /// The `…/rejected` document.
    pub fn document(&self, client_token: Option<&str>, now: u64) -> Value {
        let mut d = json!({ "code": self.code.as_str(), "message": self.message, "timestamp": now });
        if let Some(t) = client_token {
            d["clientToken"] = json!(t);
        }
        if let Some(s) = &self.state {
            d["executionState"] = s.clone();
        }
        d
    }
}

/// Why a back-end (control API) operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outgoing {
    pub topic: String,
    pub document: Value,
    /// An answer: only for the client that made the request.
    pub reply: bool,
}

#[derive(Clone, Debug)]
struct Job {
    document: Value,
    targets: Vec<String>,
    state: JobState,
    created_at: u64,
    timeout: Option<JobTimeoutConfig>,
    retry: Option<JobRetryConfig>,
}

#[derive(Clone, Debug)]
struct Execution {
    job_id: String,
    number: u64,
    status: Status,
    details: BTreeMap<String, String>,
    queued_at: u64,
    started_at: Option<u64>,
    last_updated_at: u64,
    version: u64,
    step_deadline: Option<u64>,
    job_deadline: Option<u64>,
}

impl Execution {
    fn queued(job_id: &str, number: u64, now: u64) -> Execution {
        Execution {
            job_id: job_id.to_string(),
            number,
            status: Status::Queued,
            details: BTreeMap::new(),
            queued_at: now,
            started_at: None,
            last_updated_at: now,
            version: 1,
            step_deadline: None,
            job_deadline: None,
        }
    }

    fn deadline(&self) -> Option<u64> {
        match (self.step_deadline, self.job_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn key(&self) -> (String, u64) {
        (self.job_id.clone(), self.number)
    }

    /// Moves to a status set by the service or the device; clears timers when terminal.
    fn set_status(&mut self, status: Status, now: u64) {
        self.status = status;
        self.version += 1;
        self.last_updated_at = now;
        if status.is_terminal() {
            self.step_deadline = None;
            self.job_deadline = None;
        }
    }

    fn state_doc(&self) -> Value {
        json!({ "status": self.status.as_str(), "statusDetails": self.details, "versionNumber": self.version })
    }

    fn summary(&self) -> Value {
        let mut d = json!({
            "jobId": self.job_id, "queuedAt": self.queued_at, "lastUpdatedAt": self.last_updated_at,
            "versionNumber": self.version, "executionNumber": self.number,
        });
        if let Some(s) = self.started_at {
            d["startedAt"] = json!(s);
        }
        d
    }

    fn info(&self, thing: &str, now: u64) -> JobExecutionInfo {
        JobExecutionInfo {
            job_id: self.job_id.clone(),
            thing_name: thing.to_string(),
            execution_number: self.number,
            status: self.status,
            status_details: self.details.clone(),
            version_number: self.version,
            queued_at: self.queued_at,
            started_at: self.started_at,
            last_updated_at: self.last_updated_at,
            approximate_seconds_before_timed_out: self.deadline().map(|d| d.saturating_sub(now)),
        }
    }
}

/// What notifications compare: the pending executions with their status, and the next.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    pending: Vec<((String, u64), Status)>,
    next: Option<(String, u64)>,
}

/// Every job and execution of the emulator.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    jobs: BTreeMap<String, Job>,
    /// Per thing, in queue order.
    execs: BTreeMap<String, Vec<Execution>>,
    /// Also publish `notify` when an execution moves from QUEUED to IN_PROGRESS (§4.1:
    /// the docs disagree; the default follows their worked example, add/remove only).
    pub notify_on_start: bool,
}

/// `[a-zA-Z0-9_-]{1,64}`.
pub(crate) fn valid_job_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
}

fn prefix(thing: &str) -> String {
    format!("$aws/things/{thing}/jobs")
}

impl Jobs {
    /// Handles a device PUBLISH on `$aws/things/{thing}/jobs/{rest}`.
    pub fn handle(&mut self, thing: &str, rest: &str, payload: &[u8], now: u64) -> Vec<Outgoing> {
        let mut out = self.expire(now);
        let topic = format!("{}/{rest}", prefix(thing));
        let before = self.snapshot(thing);
        let result = match parse_request(payload) {
            Ok((req, token)) => match self.request(thing, rest, &req, now) {
                Ok(d) => Ok((d, token)),
                Err(e) => Err((e, token)),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok((mut doc, token)) => {
                doc["timestamp"] = json!(now);
                if let Some(t) = token {
                    doc["clientToken"] = json!(t);
                }
                out.push(Outgoing { topic: format!("{topic}/accepted"), document: doc, reply: true });
            }
            Err((e, token)) => out.push(Outgoing {
                topic: format!("{topic}/rejected"),
                document: e.document(token.as_deref(), now),
                reply: true,
            }),
        }
        out.extend(self.notifications(thing, &before, now));
        out
    }

    fn request(
        &mut self,
        thing: &str,
        rest: &str,
        req: &Map<String, Value>,
        now: u64,
    ) -> Result<Value, JobsError> {
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["get"] => Ok(self.get_pending(thing)),
            ["start-next"] => self.start_next(thing, req, now),
            [id, "get"] => self.describe(thing, id, req, now),
            [id, "update"] => self.update(thing, id, req, now),
            _ => Err(JobsError::new(Code::InvalidTopic, format!("no jobs API at jobs/{rest}"))),
        }
    }

    fn pending(&self, thing: &str) -> Vec<&Execution> {
        let Some(v) = self.execs.get(thing) else { return Vec::new() };
        let running = v.iter().filter(|e| e.status == Status::InProgress);
        running.chain(v.iter().filter(|e| e.status == Status::Queued)).collect()
    }

    fn snapshot(&self, thing: &str) -> Snapshot {
        let pending: Vec<_> = self.pending(thing).iter().map(|e| (e.key(), e.status)).collect();
        let next = pending.first().map(|(k, _)| k.clone());
        Snapshot { pending, next }
    }

    fn document_of(&self, job_id: &str) -> Value {
        self.jobs.get(job_id).map(|j| j.document.clone()).unwrap_or_else(|| json!({}))
    }

    /// A `JobExecution` document.
    fn execution_doc(&self, thing: Option<&str>, e: &Execution, include_doc: bool, now: u64) -> Value {
        let mut d = json!({
            "jobId": e.job_id, "status": e.status.as_str(), "queuedAt": e.queued_at,
            "lastUpdatedAt": e.last_updated_at, "versionNumber": e.version, "executionNumber": e.number,
        });
        if let Some(t) = thing {
            d["thingName"] = json!(t);
        }
        if !e.details.is_empty() {
            d["statusDetails"] = json!(e.details);
        }
        if let Some(s) = e.started_at {
            d["startedAt"] = json!(s);
        }
        if let Some(dl) = e.deadline() {
            d["approximateSecondsBeforeTimedOut"] = json!(dl.saturating_sub(now));
        }
        if include_doc {
            d["jobDocument"] = self.document_of(&e.job_id);
        }
        d
    }

    fn get_pending(&self, thing: &str) -> Value {
        let p = self.pending(thing);
        let list = |s: Status| p.iter().filter(|e| e.status == s).map(|e| e.summary()).collect::<Vec<_>>();
        json!({ "inProgressJobs": list(Status::InProgress), "queuedJobs": list(Status::Queued) })
    }

    fn start_next(&mut self, thing: &str, req: &Map<String, Value>, now: u64) -> Result<Value, JobsError> {
        let details = status_details(req)?;
        let step = match step_timeout(req)? {
            Some(-1) => return Err(JobsError::invalid("stepTimeoutInMinutes must be 1 to 10080")),
            s => s,
        };
        let Some(key) = self.pending(thing).first().map(|e| e.key()) else { return Ok(json!({})) };
        let job_timeout = self.jobs.get(&key.0).and_then(|j| j.timeout);
        let e = self.find_mut(thing, &key.0, Some(key.1)).ok_or_else(internal)?;
        if e.status == Status::Queued {
            e.set_status(Status::InProgress, now);
            e.started_at = Some(now);
            if let Some(d) = details {
                e.details = d;
            }
            e.step_deadline = step.map(|m| now.saturating_add(m.unsigned_abs() * 60));
            e.job_deadline =
                job_timeout.map(|t| now.saturating_add(t.in_progress_timeout_in_minutes.saturating_mul(60)));
        }
        let e = e.clone();
        Ok(json!({ "execution": self.execution_doc(Some(thing), &e, true, now) }))
    }

    fn describe(
        &self,
        thing: &str,
        id: &str,
        req: &Map<String, Value>,
        now: u64,
    ) -> Result<Value, JobsError> {
        let number = opt_u64(req, "executionNumber")?;
        let include = opt_bool(req, "includeJobDocument")?.unwrap_or(true);
        if id == "$next" {
            return Ok(match self.pending(thing).first() {
                Some(e) => json!({ "execution": self.execution_doc(Some(thing), e, include, now) }),
                None => json!({}),
            });
        }
        if !valid_job_id(id) {
            return Err(JobsError::invalid("jobId must be 1 to 64 characters of [a-zA-Z0-9_-] or $next"));
        }
        let e = self.find(thing, id, number).ok_or_else(|| not_found(thing, id))?;
        let job_over = self.jobs.get(id).is_none_or(|j| j.state != JobState::InProgress);
        if e.status.is_terminal() && job_over {
            return Err(JobsError::new(
                Code::TerminalStateReached,
                format!("job {id} is in a terminal state ({})", e.status.as_str()),
            ));
        }
        Ok(json!({ "execution": self.execution_doc(Some(thing), e, include, now) }))
    }

    fn update(
        &mut self,
        thing: &str,
        id: &str,
        req: &Map<String, Value>,
        now: u64,
    ) -> Result<Value, JobsError> {
        if !valid_job_id(id) {
            return Err(JobsError::invalid("jobId must be 1 to 64 characters of [a-zA-Z0-9_-]"));
        }
        let status = match req.get("status") {
            None => return Err(JobsError::invalid("status is required")),
            Some(Value::String(s)) => {
                Status::parse(s).ok_or_else(|| JobsError::invalid(format!("unknown status {s:?}")))?
            }
            Some(_) => return Err(JobsError::invalid("status must be a string")),
        };
        if !matches!(status, Status::InProgress | Status::Succeeded | Status::Failed | Status::Rejected) {
            return Err(JobsError::invalid(format!("a device may not set the status {}", status.as_str())));
        }
        let details = status_details(req)?;
        let expected = expected_version(req)?;
        let number = opt_u64(req, "executionNumber")?;
        let step = step_timeout(req)?;
        let include_state = opt_bool(req, "includeJobExecutionState")?.unwrap_or(false);
        let include_doc = opt_bool(req, "includeJobDocument")?.unwrap_or(false);
        let job_timeout = self.jobs.get(id).and_then(|j| j.timeout);
        let e = self.find_mut(thing, id, number).ok_or_else(|| not_found(thing, id))?;
        if e.status.is_terminal() {
            return Err(JobsError {
                state: Some(e.state_doc()),
                ..JobsError::new(
                    Code::InvalidStateTransition,
                    format!("cannot update job {id} from {} to {}", e.status.as_str(), status.as_str()),
                )
            });
        }
        if expected.is_some_and(|v| v != e.version) {
            return Err(JobsError {
                state: Some(e.state_doc()),
                ..JobsError::new(Code::VersionMismatch, format!("the current version is {}", e.version))
            });
        }
        let was = e.status;
        e.set_status(status, now);
        if let Some(d) = details {
            e.details = d;
        }
        if status == Status::InProgress {
            if was == Status::Queued {
                e.started_at = Some(now);
                e.job_deadline = job_timeout
                    .map(|t| now.saturating_add(t.in_progress_timeout_in_minutes.saturating_mul(60)));
            }
            match step {
                Some(-1) => e.step_deadline = None,
                Some(m) => e.step_deadline = Some(now.saturating_add(m.unsigned_abs() * 60)),
                None => {}
            }
        }
        let mut doc = json!({});
        if include_state {
            doc["executionState"] = e.state_doc();
        }
        let key = e.key();
        if include_doc {
            doc["jobDocument"] = self.document_of(id);
        }
        if status.is_terminal() {
            self.after_terminal(thing, &key, now);
        }
        Ok(doc)
    }

    /// Retry and job completion after an execution reached a terminal state.
    fn after_terminal(&mut self, thing: &str, key: &(String, u64), now: u64) {
        let Some(job) = self.jobs.get(&key.0) else { return };
        let retries = job.retry.map_or(0, |r| u64::from(r.number_of_retries));
        let status = self.find(thing, &key.0, Some(key.1)).map(|e| e.status);
        if matches!(status, Some(Status::Failed | Status::TimedOut)) && key.1 <= retries {
            self.execs.entry(thing.to_string()).or_default().push(Execution::queued(&key.0, key.1 + 1, now));
        }
        self.update_job_state(&key.0);
    }

    fn update_job_state(&mut self, job_id: &str) {
        let all_done = self
            .execs
            .values()
            .flat_map(|v| v.iter().filter(|e| e.job_id == job_id))
            .all(|e| e.status.is_terminal());
        if let Some(j) = self.jobs.get_mut(job_id) {
            if all_done && j.state == JobState::InProgress {
                j.state = JobState::Completed;
            }
        }
    }

    fn find(&self, thing: &str, id: &str, number: Option<u64>) -> Option<&Execution> {
        let v = self.execs.get(thing)?;
        let mut it = v.iter().filter(|e| e.job_id == id);
        match number {
            Some(n) => it.find(|e| e.number == n),
            None => it.max_by_key(|e| e.number),
        }
    }

    fn find_mut(&mut self, thing: &str, id: &str, number: Option<u64>) -> Option<&mut Execution> {
        let v = self.execs.get_mut(thing)?;
        let mut it = v.iter_mut().filter(|e| e.job_id == id);
        match number {
            Some(n) => it.find(|e| e.number == n),
            None => it.max_by_key(|e| e.number),
        }
    }

    /// `notify` / `notify-next` for what changed on `thing` since `before`.
    fn notifications(&self, thing: &str, before: &Snapshot, now: u64) -> Vec<Outgoing> {
        let after = self.snapshot(thing);
        let mut out = Vec::new();
        let keys = |s: &Snapshot| {
            let mut k: Vec<(String, u64)> = s.pending.iter().map(|(k, _)| k.clone()).collect();
            k.sort();
            k
        };
        let changed =
            keys(before) != keys(&after) || (self.notify_on_start && before.pending != after.pending);
        if changed {
            let p = self.pending(thing);
            let mut jobs = Map::new();
            for s in [Status::InProgress, Status::Queued] {
                let list: Vec<Value> =
                    p.iter().take(NOTIFY_LIMIT).filter(|e| e.status == s).map(|e| e.summary()).collect();
                if !list.is_empty() {
                    jobs.insert(s.as_str().to_string(), Value::Array(list));
                }
            }
            out.push(Outgoing {
                topic: format!("{}/notify", prefix(thing)),
                document: json!({ "timestamp": now, "jobs": jobs }),
                reply: false,
            });
        }
        if before.next != after.next {
            let mut d = json!({ "timestamp": now });
            if let Some(e) = self.pending(thing).first() {
                d["execution"] = self.execution_doc(None, e, true, now);
            }
            out.push(Outgoing { topic: format!("{}/notify-next", prefix(thing)), document: d, reply: false });
        }
        out
    }

    /// Times out every running execution whose timer has ended by `now`.
    pub fn expire(&mut self, now: u64) -> Vec<Outgoing> {
        let due: Vec<(String, (String, u64))> = self
            .execs
            .iter()
            .flat_map(|(t, v)| {
                v.iter()
                    .filter(|e| e.status == Status::InProgress && e.deadline().is_some_and(|d| d <= now))
                    .map(move |e| (t.clone(), e.key()))
            })
            .collect();
        let mut out = Vec::new();
        for (thing, key) in due {
            let before = self.snapshot(&thing);
            if let Some(e) = self.find_mut(&thing, &key.0, Some(key.1)) {
                tracing::debug!(thing = %thing, job = %key.0, execution = key.1, "job execution timed out");
                e.set_status(Status::TimedOut, now);
            }
            self.after_terminal(&thing, &key, now);
            out.extend(self.notifications(&thing, &before, now));
        }
        out
    }

    // ---- back end (control API) ----

    /// Creates a job: a QUEUED execution on every target (which the caller checked exist).
    pub fn create_job(&mut self, spec: &CreateJob, now: u64) -> Result<(JobInfo, Vec<Outgoing>), AdminError> {
        if !valid_job_id(&spec.job_id) {
            return Err(AdminError::Invalid("jobId must be 1 to 64 characters of [a-zA-Z0-9_-]".into()));
        }
        if self.jobs.contains_key(&spec.job_id) {
            return Err(AdminError::Conflict(format!("job {} already exists", spec.job_id)));
        }
        if !spec.document.is_object() {
            return Err(AdminError::Invalid("document must be a JSON object".into()));
        }
        if spec.document.to_string().len() > MAX_DOCUMENT_BYTES {
            return Err(AdminError::Invalid("document exceeds 32 KB".into()));
        }
        let mut targets = spec.targets.clone();
        targets.sort();
        targets.dedup();
        if targets.is_empty() {
            return Err(AdminError::Invalid("targets must name at least one thing".into()));
        }
        if let Some(t) = spec.timeout_config {
            if !(1..=MAX_TIMEOUT_MINUTES as u64).contains(&t.in_progress_timeout_in_minutes) {
                return Err(AdminError::Invalid("inProgressTimeoutInMinutes must be 1 to 10080".into()));
            }
        }
        if spec.retry_config.is_some_and(|r| r.number_of_retries > MAX_RETRIES) {
            return Err(AdminError::Invalid("numberOfRetries must be 0 to 10".into()));
        }
        let job = Job {
            document: spec.document.clone(),
            targets: targets.clone(),
            state: JobState::InProgress,
            created_at: now,
            timeout: spec.timeout_config,
            retry: spec.retry_config,
        };
        self.jobs.insert(spec.job_id.clone(), job);
        let mut out = Vec::new();
        for t in &targets {
            let before = self.snapshot(t);
            self.execs.entry(t.clone()).or_default().push(Execution::queued(&spec.job_id, 1, now));
            out.extend(self.notifications(t, &before, now));
        }
        let info = self.job(&spec.job_id).ok_or_else(|| AdminError::NotFound(spec.job_id.clone()))?;
        Ok((info, out))
    }

    /// A job.
    pub fn job(&self, id: &str) -> Option<JobInfo> {
        let j = self.jobs.get(id)?;
        Some(JobInfo {
            job_id: id.to_string(),
            document: j.document.clone(),
            targets: j.targets.clone(),
            status: j.state,
            created_at: j.created_at,
            timeout_config: j.timeout,
            retry_config: j.retry,
        })
    }

    /// Every job.
    pub fn list(&self) -> Vec<JobInfo> {
        self.jobs.keys().filter_map(|id| self.job(id)).collect()
    }

    /// Every execution of a thing (terminal ones too), in queue order.
    pub fn executions(&self, thing: &str, now: u64) -> Vec<JobExecutionInfo> {
        self.execs.get(thing).map(|v| v.iter().map(|e| e.info(thing, now)).collect()).unwrap_or_default()
    }

    /// One execution (`None` number: the latest).
    pub fn execution(
        &self,
        thing: &str,
        id: &str,
        number: Option<u64>,
        now: u64,
    ) -> Option<JobExecutionInfo> {
        self.find(thing, id, number).map(|e| e.info(thing, now))
    }

    /// Cancels a job: QUEUED executions (and IN_PROGRESS ones with `force`) become CANCELED.
    pub fn cancel_job(
        &mut self,
        id: &str,
        force: bool,
        now: u64,
    ) -> Result<(JobInfo, Vec<Outgoing>), AdminError> {
        let job = self.jobs.get_mut(id).ok_or_else(|| AdminError::NotFound(format!("job {id}")))?;
        if job.state != JobState::Canceled {
            job.state = JobState::Canceled;
        }
        let things: Vec<String> = self.execs.keys().cloned().collect();
        let mut out = Vec::new();
        for t in things {
            let before = self.snapshot(&t);
            for e in self.execs.get_mut(&t).into_iter().flatten().filter(|e| e.job_id == id) {
                if e.status == Status::Queued || (force && e.status == Status::InProgress) {
                    e.set_status(Status::Canceled, now);
                }
            }
            out.extend(self.notifications(&t, &before, now));
        }
        let info = self.job(id).ok_or_else(|| AdminError::NotFound(format!("job {id}")))?;
        Ok((info, out))
    }

    /// Ends a thing's latest execution of a job as CANCELED or REMOVED (IN_PROGRESS
    /// ones only with `force`).
    pub fn end_execution(
        &mut self,
        thing: &str,
        id: &str,
        status: Status,
        force: bool,
        now: u64,
    ) -> Result<(JobExecutionInfo, Vec<Outgoing>), AdminError> {
        let before = self.snapshot(thing);
        let missing = || AdminError::NotFound(format!("execution of job {id} on {thing}"));
        let e = self.find_mut(thing, id, None).ok_or_else(missing)?;
        match e.status {
            s if s.is_terminal() => {
                return Err(AdminError::Conflict(format!("the execution is already {}", s.as_str())))
            }
            Status::InProgress if !force => {
                return Err(AdminError::Conflict("the execution is IN_PROGRESS; use force".into()))
            }
            _ => e.set_status(status, now),
        }
        let info = e.info(thing, now);
        self.update_job_state(id);
        Ok((info, self.notifications(thing, &before, now)))
    }

    /// Forgets the executions of a deleted thing.
    pub fn remove_thing(&mut self, thing: &str) {
        let ids: Vec<String> = self.execs.remove(thing).into_iter().flatten().map(|e| e.job_id).collect();
        for id in ids {
            self.update_job_state(&id);
        }
    }
}

fn internal() -> JobsError {
    JobsError::new(Code::ResourceNotFound, "the execution disappeared")
}

fn not_found(thing: &str, id: &str) -> JobsError {
    JobsError::new(Code::ResourceNotFound, format!("no execution of job {id} on thing {thing}"))
}

/// The `{topic}/rejected` answer to a request refused before the store (throttling).
pub(crate) fn rejection(thing: &str, rest: &str, e: &JobsError, payload: &[u8], now: u64) -> Outgoing {
    let token = parse_request(payload).ok().and_then(|(_, t)| t);
    Outgoing {
        topic: format!("{}/{rest}/rejected", prefix(thing)),
        document: e.document(token.as_deref(), now),
        reply: true,
    }
}

type Parsed = (Map<String, Value>, Option<String>);

/// A request body: empty, or a JSON object with an optional `clientToken`.
fn parse_request(payload: &[u8]) -> Result<Parsed, (JobsError, Option<String>)> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok((Map::new(), None));
    }
    let bad_json = || (JobsError::new(Code::InvalidJson, "the payload is not a UTF-8 JSON object"), None);
    let text = std::str::from_utf8(payload).map_err(|_| bad_json())?;
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) else { return Err(bad_json()) };
    match m.get("clientToken") {
        None => Ok((m, None)),
        Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_CLIENT_TOKEN => {
            let t = t.clone();
            Ok((m, Some(t)))
        }
        Some(_) => Err((JobsError::invalid("clientToken must be a string of 1 to 64 characters"), None)),
    }
}

fn opt_bool(req: &Map<String, Value>, key: &str) -> Result<Option<bool>, JobsError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(JobsError::invalid(format!("{key} must be a boolean"))),
    }
}

fn opt_u64(req: &Map<String, Value>, key: &str) -> Result<Option<u64>, JobsError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| JobsError::invalid(format!("{key} must be a positive integer"))),
    }
}

/// `expectedVersion`: a number or a numeric string (the embedded C library sends a string).
fn expected_version(req: &Map<String, Value>) -> Result<Option<u64>, JobsError> {
    let bad = || JobsError::invalid("expectedVersion must be a number");
    match req.get("expectedVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse::<u64>().map(Some).map_err(|_| bad()),
        Some(v) => v.as_u64().map(Some).ok_or_else(bad),
    }
}

/// `stepTimeoutInMinutes`: 1–10080, or −1.
fn step_timeout(req: &Map<String, Value>) -> Result<Option<i64>, JobsError> {
    match req.get("stepTimeoutInMinutes") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(m) if m == -1 || (1..=MAX_TIMEOUT_MINUTES).contains(&m) => Ok(Some(m)),
            _ => Err(JobsError::invalid("stepTimeoutInMinutes must be 1 to 10080, or -1")),
        },
    }
}

/// `statusDetails`: keys `[a-zA-Z0-9:_-]{1,128}`, string values of 1–1024 characters
/// without control characters (§7).
fn status_details(req: &Map<String, Value>) -> Result<Option<BTreeMap<String, String>>, JobsError> {
    let m = match req.get("statusDetails") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(JobsError::invalid("statusDetails must be an object")),
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let key_ok = !k.is_empty()
            && k.len() <= 128
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b));
        if !key_ok {
            return Err(JobsError::invalid(format!(
                "statusDetails key {k:?} is not 1-128 characters of [a-zA-Z0-9:_-]"
            )));
        }
        let Value::String(s) = v else {
            return Err(JobsError::invalid(format!("statusDetails value of {k} must be a string")));
        };
        if s.is_empty() || s.chars().count() > 1024 || s.chars().any(char::is_control) {
            return Err(JobsError::invalid(format!(
                "statusDetails value of {k} must be 1-1024 characters without control characters"
            )));
        }
        out.insert(k.clone(), s.clone());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "lamp";

    fn spec(id: &str) -> CreateJob {
        CreateJob::new(id, json!({"operation": id}), vec![T.to_string()])
    }

    fn req(j: &mut Jobs, rest: &str, body: Value, now: u64) -> Vec<Outgoing> {
        j.handle(T, rest, body.to_string().as_bytes(), now)
    }

    fn find<'a>(out: &'a [Outgoing], suffix: &str) -> Option<&'a Value> {
        out.iter().find(|o| o.topic.ends_with(suffix)).map(|o| &o.document)
    }

    fn answer(out: &[Outgoing]) -> (&str, &Value) {
        let o = out.iter().find(|o| o.reply).expect("an answer");
        (o.topic.rsplit('/').next().unwrap_or_default(), &o.document)
    }

    #[test]
    fn lifecycle_with_notifications_versions_and_client_tokens() {
        let mut j = Jobs::default();
        let (_, out) = j.create_job(&spec("job1"), 100).unwrap();
        let notify = find(&out, "/notify").unwrap();
        assert_eq!(notify["jobs"]["QUEUED"][0]["jobId"], "job1");
        assert_eq!(notify["jobs"]["QUEUED"][0]["versionNumber"], 1);
        let next = find(&out, "/notify-next").unwrap();
        assert_eq!(
            (next["execution"]["status"].as_str(), &next["execution"]["jobDocument"]),
            (Some("QUEUED"), &json!({"operation":"job1"}))
        );
        assert!(out.iter().all(|o| !o.reply));
        // A second job: notify (pending set grew), no notify-next (job1 still first).
        let (_, out) = j.create_job(&spec("job2"), 101).unwrap();
        assert!(find(&out, "/notify").is_some() && find(&out, "/notify-next").is_none());
        let out = req(&mut j, "get", json!({"clientToken":"c0"}), 102);
        let (kind, d) = answer(&out);
        assert_eq!(
            (kind, d["clientToken"].as_str(), d["timestamp"].as_u64()),
            ("accepted", Some("c0"), Some(102))
        );
        assert_eq!(d["queuedJobs"].as_array().unwrap().len(), 2);
        assert_eq!(d["inProgressJobs"], json!([]));
        // start-next: QUEUED → IN_PROGRESS, version 2, details set; no notification by default.
        let out =
            req(&mut j, "start-next", json!({"statusDetails":{"step":"download"},"clientToken":"c1"}), 103);
        assert_eq!(out.len(), 1);
        let (kind, d) = answer(&out);
        let e = &d["execution"];
        assert_eq!(kind, "accepted");
        assert_eq!(
            (e["jobId"].as_str(), e["status"].as_str(), e["versionNumber"].as_u64()),
            (Some("job1"), Some("IN_PROGRESS"), Some(2))
        );
        assert_eq!(
            (e["startedAt"].as_u64(), e["thingName"].as_str(), &e["statusDetails"]),
            (Some(103), Some(T), &json!({"step":"download"}))
        );
        // start-next again: the same execution, unchanged.
        let out = req(&mut j, "start-next", json!({"statusDetails":{"step":"other"}}), 104);
        assert_eq!(answer(&out).1["execution"]["statusDetails"], json!({"step":"download"}));
        assert_eq!(answer(&out).1["execution"]["versionNumber"], 2);
        // Update with expectedVersion as a string (embedded C SDK), progress details.
        let out = req(
            &mut j,
            "job1/update",
            json!({"status":"IN_PROGRESS","statusDetails":{"progress":"50%"},"expectedVersion":"2","includeJobExecutionState":true,"clientToken":"c2"}),
            105,
        );
        let (kind, d) = answer(&out);
        assert_eq!(
            (kind, &d["executionState"]),
            (
                "accepted",
                &json!({"status":"IN_PROGRESS","statusDetails":{"progress":"50%"},"versionNumber":3})
            )
        );
        assert!(d.get("jobDocument").is_none());
        // Stale version.
        let out = req(
            &mut j,
            "job1/update",
            json!({"status":"SUCCEEDED","expectedVersion":2,"clientToken":"c3"}),
            106,
        );
        let (kind, d) = answer(&out);
        assert_eq!(
            (kind, d["code"].as_str(), d["clientToken"].as_str()),
            ("rejected", Some("VersionMismatch"), Some("c3"))
        );
        assert_eq!(d["executionState"]["versionNumber"], 3);
        // Success: accepted with the document, then notify (job1 left) and notify-next (job2).
        let out = req(
            &mut j,
            "job1/update",
            json!({"status":"SUCCEEDED","expectedVersion":3,"includeJobDocument":true}),
            107,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(answer(&out).1["jobDocument"], json!({"operation":"job1"}));
        let notify = find(&out, "/notify").unwrap();
        assert!(notify["jobs"].get("IN_PROGRESS").is_none());
        assert_eq!(notify["jobs"]["QUEUED"][0]["jobId"], "job2");
        assert_eq!(find(&out, "/notify-next").unwrap()["execution"]["jobId"], "job2");
        assert_eq!(j.job("job1").unwrap().status, JobState::Completed);
        let info = j.execution(T, "job1", None, 108).unwrap();
        assert_eq!(
            (info.status, info.version_number, info.status_details.get("progress").map(String::as_str)),
            (Status::Succeeded, 4, Some("50%"))
        );
        // Terminal: updates refused, describe says TerminalStateReached.
        let out = req(&mut j, "job1/update", json!({"status":"IN_PROGRESS"}), 109);
        let (_, d) = answer(&out);
        assert_eq!(
            (d["code"].as_str(), d["executionState"]["status"].as_str()),
            (Some("InvalidStateTransition"), Some("SUCCEEDED"))
        );
        assert_eq!(answer(&req(&mut j, "job1/get", json!({}), 109)).1["code"], "TerminalStateReached");
        // job2 rejected directly from QUEUED: queue empty → notify {} and notify-next without execution.
        let out = req(&mut j, "job2/update", json!({"status":"REJECTED"}), 110);
        assert_eq!(find(&out, "/notify").unwrap()["jobs"], json!({}));
        assert_eq!(find(&out, "/notify-next").unwrap(), &json!({"timestamp":110}));
        assert_eq!(answer(&req(&mut j, "start-next", json!({}), 111)).1, &json!({"timestamp":111}));
        assert_eq!(answer(&req(&mut j, "$next/get", json!({}), 111)).1, &json!({"timestamp":111}));
    }

    #[test]
    fn transitions_follow_the_state_table() {
        use Status::*;
        // (status before, requested, accepted?, error code)
        let table = [
            (Queued, "IN_PROGRESS", None),
            (Queued, "SUCCEEDED", None),
            (Queued, "FAILED", None),
            (Queued, "REJECTED", None),
            (InProgress, "IN_PROGRESS", None),
            (InProgress, "SUCCEEDED", None),
            (InProgress, "FAILED", None),
            (InProgress, "REJECTED", None),
            (Queued, "QUEUED", Some("InvalidRequest")),
            (InProgress, "TIMED_OUT", Some("InvalidRequest")),
            (InProgress, "CANCELED", Some("InvalidRequest")),
            (InProgress, "REMOVED", Some("InvalidRequest")),
            (InProgress, "DONE", Some("InvalidRequest")),
            (Succeeded, "IN_PROGRESS", Some("InvalidStateTransition")),
            (Failed, "SUCCEEDED", Some("InvalidStateTransition")),
            (Rejected, "IN_PROGRESS", Some("InvalidStateTransition")),
            (Canceled, "IN_PROGRESS", Some("InvalidStateTransition")),
            (Removed, "FAILED", Some("InvalidStateTransition")),
            (TimedOut, "SUCCEEDED", Some("InvalidStateTransition")),
        ];
        for (from, to, err) in table {
            let mut j = Jobs::default();
            let mut two = spec("a");
            two.targets.push("other".into());
            j.create_job(&two, 1).unwrap();
            match from {
                Queued => {}
                InProgress | Succeeded | Failed | Rejected => {
                    req(
                        &mut j,
                        "a/update",
                        json!({"status": if from == InProgress { "IN_PROGRESS" } else { from.as_str() }}),
                        2,
                    );
                }
                TimedOut => {
                    req(&mut j, "start-next", json!({"stepTimeoutInMinutes":1}), 2);
                    j.expire(62);
                }
                Canceled | Removed => {
                    j.end_execution(T, "a", from, false, 2).unwrap();
                }
            }
            assert_eq!(j.execution(T, "a", None, 3).unwrap().status, from, "setup {from:?}");
            let out = req(&mut j, "a/update", json!({"status": to}), 100);
            let (kind, d) = answer(&out);
            match err {
                None => assert_eq!(
                    (kind, j.execution(T, "a", None, 100).unwrap().status.as_str()),
                    ("accepted", to)
                ),
                Some(code) => {
                    assert_eq!((kind, d["code"].as_str()), ("rejected", Some(code)), "{from:?} → {to}")
                }
            }
        }
    }

    #[test]
    fn request_validation_uses_the_documented_codes() {
        let mut j = Jobs::default();
        j.create_job(&spec("j1"), 1).unwrap();
        let cases: Vec<(&str, &[u8], &str)> = vec![
            ("j1/update", b"not json", "InvalidJson"),
            ("j1/update", b"[1]", "InvalidJson"),
            ("j1/update", b"\xff", "InvalidJson"),
            ("j1/update", br#"{}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":1}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","statusDetails":{"bad key":"v"}}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","statusDetails":{"k":""}}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","statusDetails":{"k":"a\nb"}}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","statusDetails":{"k":1}}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","statusDetails":"x"}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","expectedVersion":"two"}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","stepTimeoutInMinutes":0}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","stepTimeoutInMinutes":10081}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","includeJobDocument":"yes"}"#, "InvalidRequest"),
            ("j1/update", br#"{"status":"IN_PROGRESS","clientToken":5}"#, "InvalidRequest"),
            ("start-next", br#"{"stepTimeoutInMinutes":-1}"#, "InvalidRequest"),
            ("nope/update", br#"{"status":"IN_PROGRESS"}"#, "ResourceNotFound"),
            ("j1/update", br#"{"status":"IN_PROGRESS","executionNumber":2}"#, "ResourceNotFound"),
            ("j.1/update", br#"{"status":"IN_PROGRESS"}"#, "InvalidRequest"),
            ("nope/get", b"", "ResourceNotFound"),
            ("notify", b"{}", "InvalidTopic"),
            ("get/accepted", b"{}", "InvalidTopic"),
            ("j1/delete", b"{}", "InvalidTopic"),
        ];
        for (rest, body, code) in cases {
            let out = j.handle(T, rest, body, 5);
            let o = out.iter().find(|o| o.reply).unwrap();
            assert_eq!(o.topic, format!("$aws/things/{T}/jobs/{rest}/rejected"));
            assert_eq!(o.document["code"], code, "{rest} {}", String::from_utf8_lossy(body));
        }
        // Nothing changed.
        let e = j.execution(T, "j1", None, 5).unwrap();
        assert_eq!((e.status, e.version_number), (Status::Queued, 1));
        // Limits at the edge are accepted.
        let v = "x".repeat(1024);
        let out = req(
            &mut j,
            "j1/update",
            json!({"status":"IN_PROGRESS","statusDetails":{"k:_-9": v},"stepTimeoutInMinutes":10080}),
            6,
        );
        assert_eq!(answer(&out).0, "accepted");
    }

    #[test]
    fn describe_next_execution_numbers_and_documents() {
        let mut j = Jobs::default();
        j.create_job(&spec("a"), 10).unwrap();
        j.create_job(&spec("b"), 11).unwrap();
        let d = answer(&req(&mut j, "$next/get", json!({"clientToken":"n"}), 12)).1.clone();
        assert_eq!((d["execution"]["jobId"].as_str(), d["clientToken"].as_str()), (Some("a"), Some("n")));
        assert_eq!(d["execution"]["jobDocument"], json!({"operation":"a"}));
        let d = answer(&req(&mut j, "b/get", json!({"includeJobDocument":false}), 12)).1.clone();
        assert_eq!(
            (d["execution"]["status"].as_str(), d["execution"].get("jobDocument")),
            (Some("QUEUED"), None)
        );
        // b IN_PROGRESS makes it next (IN_PROGRESS before QUEUED): notify-next says so.
        let out = req(&mut j, "b/update", json!({"status":"IN_PROGRESS"}), 13);
        assert_eq!(find(&out, "/notify-next").unwrap()["execution"]["jobId"], "b");
        assert!(find(&out, "/notify").is_none());
        assert_eq!(answer(&req(&mut j, "$next/get", json!({}), 14)).1["execution"]["jobId"], "b");
        let d = answer(&req(&mut j, "get", json!({}), 14)).1.clone();
        assert_eq!(
            (d["inProgressJobs"][0]["jobId"].as_str(), d["queuedJobs"][0]["jobId"].as_str()),
            (Some("b"), Some("a"))
        );
        assert_eq!(d["inProgressJobs"][0]["startedAt"], 13);
        let d = answer(&req(&mut j, "b/get", json!({"executionNumber":1}), 14)).1.clone();
        assert_eq!(d["execution"]["executionNumber"], 1);
    }

    #[test]
    fn notify_on_start_is_configurable() {
        let mut j = Jobs { notify_on_start: true, ..Jobs::default() };
        j.create_job(&spec("a"), 1).unwrap();
        let out = req(&mut j, "start-next", json!({}), 2);
        assert_eq!(find(&out, "/notify").unwrap()["jobs"]["IN_PROGRESS"][0]["jobId"], "a");
    }

    #[test]
    fn step_and_job_timers_time_out_and_retries_queue_a_new_execution() {
        let mut j = Jobs::default();
        let mut s = spec("t");
        s.timeout_config = Some(JobTimeoutConfig { in_progress_timeout_in_minutes: 10 });
        s.retry_config = Some(JobRetryConfig { number_of_retries: 1 });
        j.create_job(&s, 0).unwrap();
        let d = answer(&req(&mut j, "start-next", json!({"stepTimeoutInMinutes":2}), 100)).1.clone();
        assert_eq!(d["execution"]["approximateSecondsBeforeTimedOut"], 120);
        // Resetting the step timer; −1 cancels it, leaving the job timer (600 s from start).
        req(&mut j, "t/update", json!({"status":"IN_PROGRESS","stepTimeoutInMinutes":5}), 200);
        assert_eq!(j.execution(T, "t", None, 200).unwrap().approximate_seconds_before_timed_out, Some(300));
        req(&mut j, "t/update", json!({"status":"IN_PROGRESS","stepTimeoutInMinutes":-1}), 210);
        assert_eq!(j.execution(T, "t", None, 210).unwrap().approximate_seconds_before_timed_out, Some(490));
        assert!(j.expire(699).is_empty());
        // Lazily on the next request: TIMED_OUT, then the retry (execution 2) is queued.
        let out = req(&mut j, "get", json!({}), 700);
        let e1 = j.execution(T, "t", Some(1), 700).unwrap();
        assert_eq!((e1.status, e1.version_number), (Status::TimedOut, 5));
        let notify = find(&out, "/notify").unwrap();
        assert_eq!(notify["jobs"]["QUEUED"][0]["executionNumber"], 2);
        let next = find(&out, "/notify-next").unwrap();
        assert_eq!(
            (next["execution"]["executionNumber"].as_u64(), next["execution"]["status"].as_str()),
            (Some(2), Some("QUEUED"))
        );
        assert_eq!(answer(&out).1["queuedJobs"][0]["executionNumber"], 2);
        // The second attempt fails: no retries left, the job completes.
        let out = req(&mut j, "t/update", json!({"status":"FAILED","executionNumber":2}), 800);
        assert_eq!(answer(&out).0, "accepted");
        assert_eq!(j.executions(T, 800).len(), 2);
        assert_eq!(j.job("t").unwrap().status, JobState::Completed);
        // Through expire() directly (the periodic tick).
        let mut j = Jobs::default();
        j.create_job(&spec("u"), 0).unwrap();
        req(&mut j, "start-next", json!({"stepTimeoutInMinutes":1}), 0);
        let out = j.expire(60);
        assert_eq!(find(&out, "/notify-next").unwrap(), &json!({"timestamp":60}));
        assert_eq!(j.execution(T, "u", None, 60).unwrap().status, Status::TimedOut);
    }

    #[test]
    fn back_end_create_cancel_remove() {
        let mut j = Jobs::default();
        assert!(matches!(
            j.create_job(&CreateJob::new("a b", json!({}), vec![T.into()]), 0),
            Err(AdminError::Invalid(_))
        ));
        assert!(matches!(
            j.create_job(&CreateJob::new("a", json!([1]), vec![T.into()]), 0),
            Err(AdminError::Invalid(_))
        ));
        assert!(matches!(
            j.create_job(&CreateJob::new("a", json!({}), vec![]), 0),
            Err(AdminError::Invalid(_))
        ));
        let big = json!({"x": "y".repeat(MAX_DOCUMENT_BYTES)});
        assert!(matches!(
            j.create_job(&CreateJob::new("a", big, vec![T.into()]), 0),
            Err(AdminError::Invalid(_))
        ));
        j.create_job(&spec("a"), 0).unwrap();
        assert!(matches!(j.create_job(&spec("a"), 0), Err(AdminError::Conflict(_))));
        j.create_job(&spec("b"), 0).unwrap();
        req(&mut j, "start-next", json!({}), 1);
        // Without force the running execution stays.
        assert!(matches!(j.end_execution(T, "a", Status::Canceled, false, 2), Err(AdminError::Conflict(_))));
        let (info, out) = j.cancel_job("a", false, 2).unwrap();
        assert_eq!(info.status, JobState::Canceled);
        assert!(out.is_empty());
        assert_eq!(j.execution(T, "a", None, 2).unwrap().status, Status::InProgress);
        let (e, out) = j.end_execution(T, "a", Status::Canceled, true, 3).unwrap();
        assert_eq!((e.status, e.version_number), (Status::Canceled, 3));
        assert_eq!(find(&out, "/notify-next").unwrap()["execution"]["jobId"], "b");
        let (e, _) = j.end_execution(T, "b", Status::Removed, false, 4).unwrap();
        assert_eq!(e.status, Status::Removed);
        assert!(matches!(j.end_execution(T, "b", Status::Removed, true, 4), Err(AdminError::Conflict(_))));
        assert!(matches!(j.end_execution(T, "zz", Status::Removed, true, 4), Err(AdminError::NotFound(_))));
        j.remove_thing(T);
        assert!(j.executions(T, 5).is_empty());
        assert_eq!(j.list().len(), 2);
    }
}
