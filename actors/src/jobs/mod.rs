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

mod handle;
mod shared;
#[cfg(test)]
mod tests;
mod types;

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
use connector_core::InboundKind;
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

use crate::error::PublishError;
use crate::messages::{Event, Received, RouteKey, Shutdown, Sink, Subscribe};
use crate::requests::{self, Links, Requester, SendFailure};
use crate::slots::{PublisherSlot, Slot};
use crate::subscriber::Subscriber;
use crate::supervision::ChildGuard;

pub use handle::JobsHandle;
pub(crate) use shared::{JobsArgs, JobsSettings, JobsShared};
use types::reason_details;
pub use types::*;

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
                let deadline = requests::deadline_after(self.args.settings.timeout);
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
        for kind in [InboundKind::JobResponse, InboundKind::JobNotification] {
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
            other => debug!(kind = other.kind().as_str(), "not for the JobsActor"),
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
