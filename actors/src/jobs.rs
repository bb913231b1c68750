//! The JobsActor: a device jobs channel (AWS IoT Jobs) through the provider's
//! [`JobsCodec`](connector_core::provider::JobsCodec), and a handler registry that runs job
//! documents.
//!
//! - [`GetPendingJobs`], [`StartNextJob`], [`DescribeJob`] and [`UpdateJob`] are requests
//!   correlated by `clientToken` (a [`RequestIds`] id) with a deadline (the builder's
//!   operation timeout); each ends in its typed answer or a [`JobError`], never a hang. A
//!   rejected request is [`JobError::Rejected`] with the service's code and message.
//! - Requests are sent only while a link is up and after the Subscriber has handled that
//!   link (so the jobs subscriptions precede them on the wire); a request whose answer was
//!   lost with a link is sent again, with the same token, on the next one.
//! - `notify` and `notify-next` events, and a [`JobEvent::Ready`] after every connection,
//!   go to event watchers ([`JobsHandle::events`]).
//! - [`JobsHandle::register`] adds a handler for a job document's `operation`. The first
//!   registration starts the runner: after every connection and every `notify-next` it
//!   asks StartNext until nothing is pending, runs each execution's handler in its own
//!   task with a timeout, and ends the execution `SUCCEEDED`, `FAILED` or `REJECTED` as the
//!   handler says. A handler that panics or overruns its timeout fails the job (with the
//!   reason in `statusDetails`), never the tree; an operation nobody handles is
//!   `REJECTED`. Executions are at least once: one whose final update was lost comes back
//!   from StartNext (still `IN_PROGRESS`) and runs again.
//!
//! Watchers and handlers live in a shared slot owned by the supervisor, so a restarted
//! JobsActor keeps them (requests pending in the old one fail with [`JobError::Stopped`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use connector_core::jobs::{
    self, DescribeRequest, ExecutionAnswer, JobErrorCode, JobErrorDocument, JobExecution, JobExecutionState,
    JobStatus, JobUpdate, JobsError, PendingJobs, PendingListChanged, StartNextRequest, StatusDetails,
};
use connector_core::{
    ConnectionEvent, ConnectionMetrics, CorrelationTable, Inbound, JobNotification, JobOp, JobResponse,
    Provider, ProviderError, RequestIds,
};
use futures::Stream;
use parking_lot::Mutex;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::connection::{PublisherSlot, Slot};
use crate::error::PublishError;
use crate::messages::{Event, Received, RouteKey, Shutdown, Sink, Subscribe};
use crate::requests::{self, Links, Requester, SendFailure};
use crate::subscriber::Subscriber;
use crate::supervision::ChildGuard;

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

/// How a job handler ended an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    fn into_details(self) -> StatusDetails {
        match self {
            JobOutcome::Succeeded(d) | JobOutcome::Failed(d) | JobOutcome::Rejected(d) => d,
        }
    }
}

fn reason_details(reason: impl Into<String>) -> StatusDetails {
    let mut reason: String = reason.into();
    if reason.is_empty() {
        reason.push('-');
    }
    // Status detail values are 1–1024 characters without control characters.
    let clean: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(1024).collect();
    StatusDetails::from([("reason".to_owned(), clean)])
}

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
    jobs: JobsHandle,
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

/// Watchers and handlers: owned by the supervisor, so they survive JobsActor restarts.
#[derive(Default)]
pub(crate) struct JobsShared {
    inner: Mutex<SharedInner>,
}

#[derive(Default)]
struct SharedInner {
    next_id: u64,
    watchers: BTreeMap<u64, mpsc::Sender<JobEvent>>,
    handlers: BTreeMap<String, JobHandlerFn>,
    runner: bool,
    options: JobsOptions,
}

impl JobsShared {
    fn watch(&self, tx: mpsc::Sender<JobEvent>) -> u64 {
        let mut g = self.inner.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.watchers.insert(id, tx);
        id
    }

    fn broadcast(&self, event: &JobEvent, metrics: &ConnectionMetrics) {
        self.inner.lock().watchers.retain(|_, tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.inbound_dropped("job_watcher_full");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

/// What the JobsActor is built from, kept by the supervisor to rebuild it.
#[derive(Clone)]
pub(crate) struct JobsSettings {
    pub provider: Arc<dyn Provider>,
    pub timeout: Duration,
    pub shared: Arc<JobsShared>,
    pub metrics: ConnectionMetrics,
}

/// [`JobsSettings`] with the siblings' slots.
#[derive(Clone)]
pub(crate) struct JobsArgs {
    pub settings: JobsSettings,
    pub publisher: PublisherSlot,
    pub subscriber: Slot<Subscriber>,
}

#[derive(Debug, Clone)]
enum JobRequest {
    GetPending,
    StartNext(StartNextRequest),
    Describe(String, DescribeRequest),
    Update(String, JobUpdate),
}

impl JobRequest {
    fn label(&self) -> &'static str {
        match self {
            JobRequest::GetPending => "get_pending",
            JobRequest::StartNext(_) => "start_next",
            JobRequest::Describe(..) => "describe",
            JobRequest::Update(..) => "update",
        }
    }

    fn op(&self) -> JobOp {
        match self {
            JobRequest::GetPending => JobOp::GetPending,
            JobRequest::StartNext(_) => JobOp::StartNext,
            JobRequest::Describe(..) => JobOp::Describe,
            JobRequest::Update(..) => JobOp::Update,
        }
    }

    /// What the service would refuse, refused before sending.
    fn validate(&self) -> Result<(), JobError> {
        match self {
            JobRequest::GetPending => Ok(()),
            JobRequest::StartNext(r) => {
                if let Some(d) = &r.status_details {
                    jobs::validate_status_details(d).map_err(JobError::Invalid)?;
                }
                match r.step_timeout_in_minutes {
                    Some(t) if !(1..=10_080).contains(&t) => Err(JobError::Invalid(JobsError::Invalid {
                        field: "stepTimeoutInMinutes",
                        reason: "1–10080",
                    })),
                    _ => Ok(()),
                }
            }
            JobRequest::Describe(id, _) => jobs::validate_job_id(id, true).map_err(JobError::Invalid),
            JobRequest::Update(id, u) => {
                jobs::validate_job_id(id, false).map_err(JobError::Invalid)?;
                u.validate().map_err(JobError::Invalid)
            }
        }
    }
}

struct Pending {
    req: JobRequest,
    tx: oneshot::Sender<Result<JobResponse, JobError>>,
    deadline: Instant,
}

/// The jobs actor (one per connection whose provider has a [`JobsCodec`]).
///
/// [`JobsCodec`]: connector_core::provider::JobsCodec
pub struct JobsActor {
    args: JobsArgs,
    ids: RequestIds,
    pending: CorrelationTable<String, Pending>,
    links: Links,
    _guard: Option<ChildGuard>,
}

impl JobsActor {
    pub(crate) fn new(args: JobsArgs, guard: Option<ChildGuard>) -> Self {
        Self {
            args,
            ids: RequestIds::new(),
            pending: CorrelationTable::new(),
            links: Links::default(),
            _guard: guard,
        }
    }

    fn metrics(&self) -> &ConnectionMetrics {
        &self.args.settings.metrics
    }

    fn encode(&self, req: &JobRequest, rid: &str) -> Result<connector_core::OutboundPacket, ProviderError> {
        let codec = self
            .args
            .settings
            .provider
            .jobs()
            .ok_or_else(|| ProviderError::Unsupported { what: "device jobs".into() })?;
        match req {
            JobRequest::GetPending => codec.get_pending(rid),
            JobRequest::StartNext(r) => codec.start_next(rid, r),
            JobRequest::Describe(id, r) => codec.describe(rid, id, r),
            JobRequest::Update(id, u) => codec.update(rid, id, u),
        }
    }

    /// Starts a request: the future answers with the raw response.
    fn call(
        &mut self,
        req: JobRequest,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<JobResponse, JobError>> + 'static {
        let (tx, rx) = oneshot::channel();
        let label = req.label();
        let rid = self.ids.next_id();
        let checked =
            req.validate().and_then(|()| self.encode(&req, &rid).map(|_| ()).map_err(JobError::from));
        match checked {
            Err(e) => {
                self.metrics().job_request(label, e.label());
                let _ = tx.send(Err(e));
            }
            Ok(()) => {
                let deadline = Instant::now() + self.args.settings.timeout;
                debug!(rid = %rid, op = label, "jobs request");
                self.pending.insert(rid.clone(), deadline, Pending { req, tx, deadline });
                requests::arm_timer(self, ctx);
                if self.links.admit(&rid) {
                    self.send(rid, ctx);
                }
            }
        }
        async move { rx.await.unwrap_or(Err(JobError::Stopped)) }
    }

    fn fail(&mut self, rid: &String, err: JobError) {
        self.links.forget(rid);
        if let Some(p) = self.pending.complete(rid) {
            self.metrics().job_request(p.req.label(), err.label());
            let _ = p.tx.send(Err(err));
        }
    }

    fn on_response(&mut self, r: JobResponse) {
        let Some(p) = self.pending.complete(&r.request_id) else {
            debug!(rid = %r.request_id, op = ?r.op, "jobs answer for no pending request (late or foreign)");
            self.metrics().job_request("response", "unmatched");
            return;
        };
        self.links.forget(&r.request_id);
        if p.req.op() != r.op {
            warn!(rid = %r.request_id, expected = ?p.req.op(), got = ?r.op, "jobs answer on another operation's topic");
        }
        let result = if r.accepted {
            Ok(r)
        } else {
            match jobs::parse::<JobErrorDocument>(&r.body) {
                Ok(doc) => Err(JobError::Rejected {
                    code: doc.code,
                    message: doc.message,
                    state: doc.execution_state,
                }),
                Err(e) => Err(JobError::Malformed(e.to_string())),
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics().job_request(p.req.label(), outcome);
        let _ = p.tx.send(result);
    }

    fn on_notification(&mut self, n: JobNotification) {
        let event = if n.next {
            jobs::parse::<ExecutionAnswer>(&n.body).map(|a| JobEvent::NextChanged(a.execution))
        } else {
            jobs::parse::<PendingListChanged>(&n.body).map(JobEvent::PendingChanged)
        };
        match event {
            Ok(event) => self.args.settings.shared.broadcast(&event, self.metrics()),
            Err(e) => {
                warn!(next = n.next, error = %e, "malformed jobs notification dropped");
                self.metrics().inbound_dropped("malformed_job_notification");
            }
        }
    }

    fn fail_all(&mut self, err: JobError) {
        self.links.clear();
        for (_, p) in self.pending.drain() {
            self.metrics().job_request(p.req.label(), err.label());
            let _ = p.tx.send(Err(err.clone()));
        }
    }
}

impl Requester for JobsActor {
    fn links(&mut self) -> &mut Links {
        &mut self.links
    }

    fn is_pending(&self, rid: &str) -> bool {
        self.pending.contains(&rid.to_owned())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    fn send(&mut self, rid: String, ctx: &mut Context<Self>) {
        let Some(p) = self.pending.complete(&rid) else { return };
        let packet = self.encode(&p.req, &rid);
        let deadline = p.deadline;
        self.pending.insert(rid.clone(), deadline, p);
        match packet {
            Ok(packet) => {
                let publisher = self.args.publisher.read().addr.clone();
                requests::hand_over(self, &publisher, rid, packet, deadline, ctx);
            }
            Err(e) => self.fail(&rid, e.into()),
        }
    }

    fn send_failed(&mut self, rid: &str, failure: SendFailure) {
        let err = match failure {
            SendFailure::Disconnected => JobError::Disconnected,
            SendFailure::Stopped => JobError::Stopped,
            SendFailure::Publish(e) => JobError::Publish(e),
        };
        self.fail(&rid.to_owned(), err);
    }

    fn expire(&mut self, _: &mut Context<Self>) {
        let after = self.args.settings.timeout;
        for (rid, p) in self.pending.expire(Instant::now()) {
            self.links.forget(&rid);
            warn!(rid = %rid, op = p.req.label(), ?after, "jobs request timed out");
            self.metrics().job_request(p.req.label(), "timeout");
            let _ = p.tx.send(Err(JobError::Timeout { after }));
        }
    }

    fn ready(&mut self, _: &mut Context<Self>) {
        self.args.settings.shared.broadcast(&JobEvent::Ready, self.metrics());
    }
}

fn parse_answer<T: serde::de::DeserializeOwned>(r: &JobResponse) -> Result<T, JobError> {
    jobs::parse::<T>(&r.body).map_err(|e| JobError::Malformed(e.to_string()))
}

impl Actor for JobsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        let me = ctx.address().recipient::<Received>();
        let subscriber = self.args.subscriber.read().clone();
        for kind in ["job_response", "job_notification"] {
            subscriber.do_send(Subscribe { key: RouteKey::Kind(kind), sink: Sink::Recipient(me.clone()) });
        }
    }
}

impl Handler<GetPendingJobs> for JobsActor {
    type Result = ResponseFuture<Result<PendingJobs, JobError>>;

    fn handle(&mut self, _: GetPendingJobs, ctx: &mut Self::Context) -> Self::Result {
        let fut = self.call(JobRequest::GetPending, ctx);
        Box::pin(async move { fut.await.and_then(|r| parse_answer(&r)) })
    }
}

impl Handler<StartNextJob> for JobsActor {
    type Result = ResponseFuture<Result<Option<JobExecution>, JobError>>;

    fn handle(&mut self, msg: StartNextJob, ctx: &mut Self::Context) -> Self::Result {
        let fut = self.call(JobRequest::StartNext(msg.0), ctx);
        Box::pin(
            async move { fut.await.and_then(|r| parse_answer::<ExecutionAnswer>(&r)).map(|a| a.execution) },
        )
    }
}

impl Handler<DescribeJob> for JobsActor {
    type Result = ResponseFuture<Result<Option<JobExecution>, JobError>>;

    fn handle(&mut self, msg: DescribeJob, ctx: &mut Self::Context) -> Self::Result {
        let fut = self.call(JobRequest::Describe(msg.job_id, msg.request), ctx);
        Box::pin(
            async move { fut.await.and_then(|r| parse_answer::<ExecutionAnswer>(&r)).map(|a| a.execution) },
        )
    }
}

impl Handler<UpdateJob> for JobsActor {
    type Result = ResponseFuture<Result<jobs::UpdateAnswer, JobError>>;

    fn handle(&mut self, msg: UpdateJob, ctx: &mut Self::Context) -> Self::Result {
        let fut = self.call(JobRequest::Update(msg.job_id, msg.update), ctx);
        Box::pin(async move { fut.await.and_then(|r| parse_answer(&r)) })
    }
}

impl Handler<Received> for JobsActor {
    type Result = ();

    fn handle(&mut self, msg: Received, _: &mut Self::Context) {
        match msg.0 {
            Inbound::JobResponse(r) => self.on_response(r),
            Inbound::JobNotification(n) => self.on_notification(n),
            other => debug!(kind = other.kind(), "not for the JobsActor"),
        }
    }
}

impl Handler<Event> for JobsActor {
    type Result = ();

    fn handle(&mut self, msg: Event, ctx: &mut Self::Context) {
        match msg.0 {
            ConnectionEvent::Connected { .. } => {
                let subscriber = self.args.subscriber.read().clone();
                requests::link_up(self, &subscriber, ctx);
            }
            ConnectionEvent::Disconnected { .. } => self.links.down(),
            ConnectionEvent::Stopped { .. } => {
                self.fail_all(JobError::Stopped);
                // Ends the watchers' streams (and so the runner).
                self.args.settings.shared.inner.lock().watchers.clear();
            }
            _ => {}
        }
    }
}

impl Handler<Shutdown> for JobsActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.fail_all(JobError::Stopped);
        self.args.settings.shared.inner.lock().watchers.clear();
        ctx.stop();
    }
}

/// Test hook: make the JobsActor panic (compiled only with `fault-injection`).
#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for JobsActor {
    type Result = ();
    fn handle(&mut self, _: crate::messages::InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in the JobsActor");
    }
}

/// A handle to the current JobsActor (it survives restarts), its events and its handlers.
#[derive(Clone)]
pub struct JobsHandle {
    pub(crate) slot: Slot<JobsActor>,
    pub(crate) shared: Arc<JobsShared>,
    pub(crate) metrics: ConnectionMetrics,
}

impl std::fmt::Debug for JobsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let handlers: Vec<String> = self.shared.inner.lock().handlers.keys().cloned().collect();
        f.debug_struct("JobsHandle").field("handlers", &handlers).finish()
    }
}

impl JobsHandle {
    /// The JobsActor's current address, for actor code.
    pub fn addr(&self) -> Addr<JobsActor> {
        self.slot.read().clone()
    }

    /// GetPendingJobExecutions.
    pub async fn get_pending(&self) -> Result<PendingJobs, JobError> {
        self.addr().send(GetPendingJobs).await?
    }

    /// StartNextPendingJobExecution.
    pub async fn start_next(&self, request: StartNextRequest) -> Result<Option<JobExecution>, JobError> {
        self.addr().send(StartNextJob(request)).await?
    }

    /// DescribeJobExecution (`$next` for the next pending one).
    pub async fn describe(
        &self,
        job_id: &str,
        request: DescribeRequest,
    ) -> Result<Option<JobExecution>, JobError> {
        self.addr().send(DescribeJob { job_id: job_id.to_owned(), request }).await?
    }

    /// UpdateJobExecution.
    pub async fn update(&self, job_id: &str, update: JobUpdate) -> Result<jobs::UpdateAnswer, JobError> {
        self.addr().send(UpdateJob { job_id: job_id.to_owned(), update }).await?
    }

    /// Jobs events from now on as a stream with `capacity` slots (when it is full, events
    /// are dropped and counted). It ends when the connection stops.
    pub fn events(&self, capacity: usize) -> impl Stream<Item = JobEvent> + Unpin {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        self.shared.watch(tx);
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// Sets the runner's options (handler timeout, step timer) for the executions it
    /// starts from now on.
    pub fn set_options(&self, options: JobsOptions) {
        self.shared.inner.lock().options = options;
    }

    /// Runs job documents whose `operation` is `operation` with `handler`. The first
    /// registration starts the runner (must be called inside the actix system). A name
    /// registered again replaces its handler.
    pub fn register<F, Fut>(&self, operation: impl Into<String>, handler: F)
    where
        F: Fn(JobRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobOutcome> + Send + 'static,
    {
        let f: JobHandlerFn = Arc::new(move |run| Box::pin(handler(run)));
        let start = {
            let mut g = self.shared.inner.lock();
            g.handlers.insert(operation.into(), f);
            !std::mem::replace(&mut g.runner, true)
        };
        if start {
            let events = self.events(64);
            let me = self.clone();
            actix_rt::spawn(async move { me.run(events).await });
        }
    }

    /// The runner: drains pending executions after every connection and `notify-next`.
    async fn run(self, mut events: impl Stream<Item = JobEvent> + Unpin) {
        use futures::StreamExt as _;
        // Something may be pending already (the link may have been up before the runner).
        let mut stopped = self.drain().await;
        while !stopped {
            match events.next().await {
                Some(JobEvent::Ready | JobEvent::NextChanged(Some(_))) => stopped = self.drain().await,
                Some(JobEvent::NextChanged(None) | JobEvent::PendingChanged(_)) => {}
                None => break,
            }
        }
        debug!("jobs runner ends: the connection stopped");
    }

    /// Starts and runs executions until none is pending; `true` once the connection
    /// stopped for good.
    async fn drain(&self) -> bool {
        loop {
            let step = self.shared.inner.lock().options.step_timeout_minutes;
            let request = StartNextRequest { status_details: None, step_timeout_in_minutes: step };
            match self.start_next(request).await {
                Ok(Some(execution)) => self.run_one(execution).await,
                Ok(None) => return false,
                Err(JobError::Stopped) => return true,
                Err(JobError::Timeout { .. } | JobError::Disconnected) => {
                    debug!("start-next not answered; the next connection retries");
                    return false;
                }
                Err(e) => {
                    warn!(error = %e, "start-next failed");
                    return false;
                }
            }
        }
    }

    async fn run_one(&self, execution: JobExecution) {
        let document = execution.job_document.clone().unwrap_or(Value::Null);
        let run = JobRun {
            job_id: execution.job_id.clone(),
            document,
            execution_number: execution.execution_number,
            version_number: execution.version_number,
            jobs: self.clone(),
        };
        let operation = run.operation().map(str::to_owned);
        let (handler, timeout) = {
            let g = self.shared.inner.lock();
            let handler = operation.as_ref().and_then(|op| g.handlers.get(op).cloned());
            (handler, g.options.handler_timeout)
        };
        let job_id = execution.job_id.clone();
        let outcome = match handler {
            None => {
                let op = operation.as_deref().unwrap_or("<none>");
                warn!(job_id = %job_id, operation = op, "no handler for the job's operation; rejecting it");
                JobOutcome::rejected(format!("no handler for operation {op:?}"))
            }
            Some(handler) => {
                info!(job_id = %job_id, operation = ?operation, "running job");
                let mut task = actix_rt::spawn(handler(run));
                match tokio::time::timeout(timeout, &mut task).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(e)) if e.is_panic() => {
                        warn!(job_id = %job_id, "job handler panicked; failing the job");
                        self.metrics.handler_panicked("job");
                        JobOutcome::failed("the job handler panicked")
                    }
                    Ok(Err(_)) => JobOutcome::failed("the job handler was cancelled"),
                    Err(_) => {
                        task.abort();
                        warn!(job_id = %job_id, ?timeout, "job handler overran its timeout; failing the job");
                        JobOutcome::failed(format!("the job handler overran its timeout of {timeout:?}"))
                    }
                }
            }
        };
        let status = outcome.status();
        let mut update = JobUpdate::new(status);
        let mut details = outcome.into_details();
        if jobs::validate_status_details(&details).is_err() {
            warn!(job_id = %job_id, "handler's status details break the service's rules; replaced");
            details = reason_details("the handler's status details were invalid");
        }
        update.status_details = (!details.is_empty()).then_some(details);
        update.execution_number = execution.execution_number;
        match self.update(&job_id, update).await {
            Ok(_) => {
                info!(job_id = %job_id, status = %status, "job ended");
                self.metrics.job_finished(status.as_str());
            }
            Err(e) => {
                warn!(job_id = %job_id, status = %status, error = %e, "ending the job failed; it comes back from start-next")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_terminal_statuses_with_valid_details() {
        assert_eq!(JobOutcome::succeeded().status(), JobStatus::Succeeded);
        assert_eq!(JobOutcome::failed("x").status(), JobStatus::Failed);
        assert_eq!(JobOutcome::rejected("x").status(), JobStatus::Rejected);
        for reason in ["", "line\nbreak", &"y".repeat(5000)] {
            let d = JobOutcome::failed(reason).into_details();
            assert!(jobs::validate_status_details(&d).is_ok(), "{reason:?} → {d:?}");
        }
    }

    #[test]
    fn invalid_requests_are_refused_before_sending() {
        let bad = [
            JobRequest::Describe("no/slash".into(), DescribeRequest::default()),
            JobRequest::Update("$next".into(), JobUpdate::new(JobStatus::Succeeded)),
            JobRequest::Update("ok".into(), JobUpdate::new(JobStatus::Queued)),
            JobRequest::StartNext(StartNextRequest {
                status_details: None,
                step_timeout_in_minutes: Some(0),
            }),
        ];
        for r in bad {
            assert!(matches!(r.validate(), Err(JobError::Invalid(_))), "{r:?}");
        }
        assert!(JobRequest::Describe("$next".into(), DescribeRequest::default()).validate().is_ok());
        assert!(JobRequest::GetPending.validate().is_ok());
    }
}
