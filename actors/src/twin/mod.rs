//! The TwinActor: device state (Azure twin, AWS shadow) through the provider's
//! [`StateCodec`], provider-neutral.
//!
//! - [`GetTwin`] asks for the whole document, [`ReportState`] patches the reported state;
//!   every request carries a request id (`$rid`, `clientToken`) from [`RequestIds`], waits in
//!   a [`CorrelationTable`] with a deadline (the builder's operation timeout, per attempt),
//!   and answers with a typed [`TwinError`] on failure, never a hang.
//! - A `429` answer is retried with a jittered [`Backoff`] up to a limit, then
//!   [`TwinError::Throttled`].
//! - Desired changes go to watchers ([`DesiredSink`]) as [`DesiredUpdate`]s with their
//!   version; a patch whose version is not newer than the last one delivered is a duplicate
//!   and is dropped.
//! - After every connection (the first included) the actor fetches the document again and,
//!   if its desired version is newer than the last one delivered, delivers the whole
//!   desired section as a catch-up ([`DesiredUpdate::catch_up`]): nothing changed while
//!   offline is missed.
//! - Requests are sent only while a link is up and after the Subscriber has handled that
//!   link (so the SUBSCRIBE for the responses precedes them on the wire); a request whose
//!   answer was lost with a link is sent again, with the same id, on the next one.
//!
//! The watchers and the last delivered version live in a shared slot owned by the
//! supervisor, so a restarted TwinActor keeps them (requests pending in the old one fail
//! with [`TwinError::Stopped`]).

mod handle;
mod shared;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use connector_core::provider::StateCodec;
use connector_core::InboundKind;
use connector_core::{
    Backoff, BackoffPolicy, ConnectionEvent, ConnectionMetrics, CorrelationTable, DesiredPatch, Inbound,
    Jitter, Provider, ProviderError, QoS, RequestIds, StateDocuments, StateResponse, ThreadRandom,
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

pub use handle::TwinHandle;
pub(crate) use shared::{TwinArgs, TwinSettings, TwinShared};
pub use types::*;

/// Test hook: make the TwinActor panic (compiled only with `fault-injection`).
#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for TwinActor {
    type Result = ();
    fn handle(&mut self, _: crate::messages::InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in the TwinActor");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Get,
    Report,
    Update,
    Delete,
}

impl OpKind {
    fn label(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Report => "report",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
        }
    }
}

enum Waiter {
    Caller(oneshot::Sender<Result<StateResponse, TwinError>>),
    CatchUp(Option<String>),
}

/// One request: the operation, the document and what it carries.
struct Request {
    op: OpKind,
    shadow: Option<String>,
    patch: Bytes,
    version: Option<u64>,
}

impl Request {
    fn get(shadow: Option<String>) -> Self {
        Self { op: OpKind::Get, shadow, patch: Bytes::new(), version: None }
    }
}

struct Pending {
    op: OpKind,
    shadow: Option<String>,
    version: Option<u64>,
    patch: Bytes,
    waiter: Waiter,
    deadline: Instant,
    attempts: u32,
    backoff: Backoff,
}

/// The device-state actor (one per connection whose provider has a [`StateCodec`]).
///
/// [`StateCodec`]: connector_core::provider::StateCodec
pub struct TwinActor {
    args: TwinArgs,
    ids: RequestIds,
    pending: CorrelationTable<String, Pending>,
    links: Links,
    /// Documents whose catch-up GET is under way.
    catching_up: BTreeSet<Option<String>>,
    _guard: Option<ChildGuard>,
}

impl TwinActor {
    pub(crate) fn new(args: TwinArgs, guard: Option<ChildGuard>) -> Self {
        Self {
            args,
            ids: RequestIds::new(),
            pending: CorrelationTable::new(),
            links: Links::default(),
            catching_up: BTreeSet::new(),
            _guard: guard,
        }
    }

    fn metrics(&self) -> &ConnectionMetrics {
        &self.args.settings.metrics
    }

    /// Registers a request and sends it (or keeps it for the next link). A named document
    /// used for the first time is subscribed to first (once, kept across reconnects).
    fn start_request(&mut self, req: Request, waiter: Waiter, ctx: &mut Context<Self>) {
        let backoff = Backoff::new(self.args.settings.retry.backoff.clone());
        let Request { op, shadow, patch, version } = req;
        let pending =
            Pending { op, shadow, version, patch, waiter, deadline: Instant::now(), attempts: 0, backoff };
        match pending.shadow.clone() {
            Some(name) => {
                let subscribed = self.use_named(&name);
                ctx.spawn(subscribed.into_actor(self).map(move |res, act, ctx| match res {
                    Ok(()) => act.attempt(pending, ctx),
                    Err(e) => act.finish(pending, Err(e)),
                }));
            }
            None => self.attempt(pending, ctx),
        }
    }

    /// Makes sure a named document's subscriptions exist (they stay in the Subscriber's
    /// table, so they are made again after every reconnect) and that every connection
    /// catches up on it. Resolves once the broker granted them (at once when offline or
    /// already in use).
    fn use_named(&self, name: &str) -> impl std::future::Future<Output = Result<(), TwinError>> + 'static {
        let first = self.args.settings.shared.inner.lock().named.insert(name.to_owned());
        let specs = match (first, self.args.settings.provider.state()) {
            (true, Some(codec)) => codec.named_subscriptions(name),
            _ => Vec::new(),
        };
        let subscriber = self.args.subscriber.read().clone();
        let shared = self.args.settings.shared.clone();
        let name = name.to_owned();
        async move {
            for spec in specs {
                let qos = if spec.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                let res = subscriber.send(crate::messages::Subscribe::service(spec.filter, qos)).await;
                if !matches!(res, Ok(Ok(_))) {
                    // Not in use after all: the next request on it tries again.
                    shared.inner.lock().named.remove(&name);
                    return Err(match res {
                        Ok(Err(e)) => {
                            warn!(shadow = %name, error = %e, "subscribing to a named document failed");
                            TwinError::Disconnected
                        }
                        _ => TwinError::Stopped,
                    });
                }
            }
            Ok(())
        }
    }

    /// One attempt of a request: a fresh id and deadline.
    fn attempt(&mut self, mut p: Pending, ctx: &mut Context<Self>) {
        let rid = self.ids.next_id();
        // Encode now, so that a codec refusal is reported at once.
        if let Err(e) = self.encode(&p, &rid) {
            self.finish(p, Err(e.into()));
            return;
        }
        p.deadline = requests::deadline_after(self.args.settings.timeout);
        p.attempts += 1;
        debug!(rid = %rid, op = p.op.label(), attempt = p.attempts, "twin request");
        self.pending.insert(rid.clone(), p.deadline, p);
        requests::arm_timer(self, ctx);
        if self.links.admit(&rid) {
            self.send(rid, ctx);
        }
    }

    fn encode(&self, p: &Pending, rid: &str) -> Result<connector_core::OutboundPacket, ProviderError> {
        let codec = self
            .args
            .settings
            .provider
            .state()
            .ok_or_else(|| ProviderError::Unsupported { what: "device state".into() })?;
        let shadow = p.shadow.as_deref();
        match p.op {
            OpKind::Get => codec.get_named(shadow, rid),
            OpKind::Report => codec.report_named(shadow, rid, &p.patch),
            OpKind::Update => codec.update(shadow, rid, &p.patch, p.version),
            OpKind::Delete => codec.delete(shadow, rid),
        }
    }

    /// Completes a request: counts it and answers its waiter.
    fn finish(&mut self, p: Pending, result: Result<StateResponse, TwinError>) {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics().twin_request(p.op.label(), outcome);
        match p.waiter {
            Waiter::Caller(tx) => {
                let _ = tx.send(result);
            }
            Waiter::CatchUp(shadow) => self.caught_up(shadow, result),
        }
    }

    fn on_response(&mut self, r: StateResponse, ctx: &mut Context<Self>) {
        let Some(mut p) = self.pending.complete(&r.request_id) else {
            debug!(rid = %r.request_id, status = r.status, "twin response for no pending request (late or foreign)");
            self.metrics().twin_request("response", "unmatched");
            return;
        };
        self.links.forget(&r.request_id);
        match r.status {
            200..=299 => self.finish(p, Ok(r)),
            429 => {
                let retry = &self.args.settings.retry;
                if p.attempts > retry.max_retries {
                    warn!(rid = %r.request_id, attempts = p.attempts, "twin request still throttled; giving up");
                    let attempts = p.attempts;
                    self.finish(p, Err(TwinError::Throttled { attempts }));
                    return;
                }
                let delay = p.backoff.next_delay(Instant::now(), &mut ThreadRandom);
                info!(rid = %r.request_id, attempt = p.attempts, retry_in = ?delay, "twin request throttled (429); retrying");
                self.metrics().twin_request(p.op.label(), "throttled_retry");
                ctx.run_later(delay, move |act, ctx| act.attempt(p, ctx));
            }
            status => {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                self.finish(p, Err(TwinError::Status { status, body }));
            }
        }
    }

    /// The link is up and what waited was sent: catch up on every document in use.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let named: Vec<String> = self.args.settings.shared.inner.lock().named.iter().cloned().collect();
        for shadow in std::iter::once(None).chain(named.into_iter().map(Some)) {
            if self.catching_up.insert(shadow.clone()) {
                self.start_request(Request::get(shadow.clone()), Waiter::CatchUp(shadow), ctx);
            }
        }
    }

    fn caught_up(&mut self, shadow: Option<String>, result: Result<StateResponse, TwinError>) {
        self.catching_up.remove(&shadow);
        let codec = self.args.settings.provider.state();
        let doc = match result.and_then(|r| decode_document(codec, &r)) {
            Ok(doc) => doc,
            Err(TwinError::Status { status: 404, .. }) => {
                debug!(shadow = ?shadow, "catch-up: the document does not exist (yet)");
                return;
            }
            Err(e) => {
                warn!(shadow = ?shadow, error = %e, "catch-up GET failed; retried on the next connection");
                return;
            }
        };
        let sections = doc.sections();
        let Some(version) = sections.desired_version else {
            // A platform without versions (ThingsBoard's shared attributes): nothing tells
            // what was missed, so what the codec says a catch-up delivers is delivered after
            // every connection — at least once, never lost.
            let Some(body) = sections.catch_up.clone() else { return };
            info!(shadow = ?shadow, "catch-up: a versionless document; delivering its desired state");
            let desired = sections.desired.clone();
            self.deliver(DesiredUpdate { shadow, version: None, body, catch_up: true, desired });
            return;
        };
        let newer = self.args.settings.shared.inner.lock().last(&shadow).is_none_or(|last| version > last);
        if !newer {
            debug!(shadow = ?shadow, version, "catch-up: nothing missed");
            return;
        }
        // Patches of desired (Azure): the whole desired state; deltas (AWS): what is still
        // to do, none when reported already matches.
        let Some(body) = sections.catch_up.clone() else {
            debug!(shadow = ?shadow, version, "catch-up: nothing left to do");
            self.note_version(&shadow, version);
            return;
        };
        info!(shadow = ?shadow, version, "catch-up: delivering the desired state");
        let desired = sections.desired.clone();
        self.deliver(DesiredUpdate { shadow, version: Some(version), body, catch_up: true, desired });
    }

    fn note_version(&self, shadow: &Option<String>, v: u64) {
        let mut g = self.args.settings.shared.inner.lock();
        let e = g.versions.entry(shadow.clone()).or_insert(v);
        *e = (*e).max(v);
        if shadow.is_none() {
            self.metrics().twin_desired_version.set(i64::try_from(*e).unwrap_or(i64::MAX));
        }
    }

    fn on_documents(&mut self, docs: StateDocuments) {
        let mut g = self.args.settings.shared.inner.lock();
        g.documents.retain(|_, tx| match tx.try_send(docs.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.args.settings.metrics.twin_desired("documents_watcher_full");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    fn on_desired(&mut self, patch: DesiredPatch) {
        let body = match serde_json::from_slice::<Value>(&patch.body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                warn!(version = ?patch.version, "desired patch is not a JSON object; dropped");
                self.metrics().twin_desired("malformed");
                return;
            }
            Err(e) => {
                warn!(version = ?patch.version, error = %e, "desired patch is not JSON; dropped");
                self.metrics().twin_desired("malformed");
                return;
            }
        };
        if let Some(v) = patch.version {
            let last = self.args.settings.shared.inner.lock().last(&patch.shadow);
            if last.is_some_and(|last| v <= last) {
                debug!(version = v, ?last, "duplicate desired patch dropped");
                self.metrics().twin_desired("duplicate");
                return;
            }
        }
        self.deliver(DesiredUpdate {
            shadow: patch.shadow,
            version: patch.version,
            body,
            catch_up: false,
            desired: None,
        });
    }

    fn deliver(&self, update: DesiredUpdate) {
        if let Some(v) = update.version {
            self.note_version(&update.shadow, v);
        }
        let metrics = self.metrics();
        let mut g = self.args.settings.shared.inner.lock();
        metrics.twin_desired(if update.catch_up { "catch_up" } else { "delivered" });
        let mut dead = Vec::new();
        for (id, (shadow, sink)) in &g.watchers {
            if *shadow != update.shadow {
                continue;
            }
            let closed = match sink {
                DesiredSink::Recipient(r) => match r.try_send(DesiredChanged(update.clone())) {
                    Ok(()) => false,
                    Err(SendError::Full(_)) => {
                        metrics.twin_desired("watcher_full");
                        false
                    }
                    Err(SendError::Closed(_)) => true,
                },
                DesiredSink::Channel(tx) => match tx.try_send(update.clone()) {
                    Ok(()) => false,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics.twin_desired("watcher_full");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => true,
                },
            };
            if closed {
                dead.push(*id);
            }
        }
        for id in dead {
            g.watchers.remove(&id);
        }
    }

    fn fail_all(&mut self, err: TwinError) {
        self.links.clear();
        for (_, p) in self.pending.drain() {
            self.finish(p, Err(err.clone()));
        }
    }
}

impl Requester for TwinActor {
    fn links(&mut self) -> &mut Links {
        &mut self.links
    }

    fn is_pending(&self, rid: &str) -> bool {
        self.pending.contains(&rid.to_owned())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    /// Hands a pending request's packet to the Publisher.
    fn send(&mut self, rid: String, ctx: &mut Context<Self>) {
        let Some(p) = self.pending.complete(&rid) else { return };
        let packet = self.encode(&p, &rid);
        let deadline = p.deadline;
        match packet {
            Ok(packet) => {
                self.pending.insert(rid.clone(), deadline, p);
                let publisher = self.args.publisher.read().addr.clone();
                requests::hand_over(self, &publisher, rid, packet, deadline, ctx);
            }
            Err(e) => {
                self.links.forget(&rid);
                self.finish(p, Err(e.into()));
            }
        }
    }

    fn send_failed(&mut self, rid: &str, failure: SendFailure) {
        let err = match failure {
            SendFailure::Disconnected => TwinError::Disconnected,
            SendFailure::Stopped => TwinError::Stopped,
            SendFailure::Publish(e) => TwinError::Publish(e),
        };
        if let Some(p) = self.pending.complete(&rid.to_owned()) {
            self.finish(p, Err(err));
        }
    }

    fn expire(&mut self, _: &mut Context<Self>) {
        let after = self.args.settings.timeout;
        for (rid, p) in self.pending.expire(Instant::now()) {
            self.links.forget(&rid);
            warn!(rid = %rid, op = p.op.label(), ?after, "twin request timed out");
            self.finish(p, Err(TwinError::Timeout { after }));
        }
    }

    fn ready(&mut self, ctx: &mut Context<Self>) {
        self.catch_up(ctx);
    }

    fn acknowledged(&mut self, rid: &str) -> bool {
        // Answered reports (Azure, AWS) return here, before anything is looked up.
        if self.args.settings.provider.state().is_none_or(|c| c.reports_answered()) {
            return false;
        }
        let rid = rid.to_owned();
        if self.pending.with(&rid, |p| p.op != OpKind::Report).unwrap_or(true) {
            return false;
        }
        let Some(p) = self.pending.complete(&rid) else { return false };
        debug!(rid = %rid, "report acknowledged by the broker; the service does not answer reports");
        self.finish(
            p,
            Ok(StateResponse { request_id: rid, status: 204, version: None, body: bytes::Bytes::new() }),
        );
        true
    }
}

/// A successful GET answer as a document: its body must be a JSON object, which the
/// provider's codec reads into its sections (`None`: a provider without device state).
pub fn decode_document(codec: Option<&dyn StateCodec>, r: &StateResponse) -> Result<TwinDocument, TwinError> {
    let codec = codec.ok_or(TwinError::Unsupported)?;
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(body @ Value::Object(_)) => {
            let sections = codec.read_document(&body, r.version);
            Ok(TwinDocument::new(body, r.version, sections))
        }
        Ok(other) => Err(TwinError::InvalidJson(format!("the document is not a JSON object: {other}"))),
        Err(e) => Err(TwinError::InvalidJson(e.to_string())),
    }
}

/// Checks a reported patch before it is sent: it must be JSON (the codec decides what
/// shape the service takes).
fn check_patch(patch: &[u8]) -> Result<(), TwinError> {
    serde_json::from_slice::<Value>(patch).map(|_| ()).map_err(|e| TwinError::InvalidJson(e.to_string()))
}

impl Actor for TwinActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        let me = ctx.address().recipient::<Received>();
        let subscriber = self.args.subscriber.read().clone();
        for kind in [InboundKind::StateResponse, InboundKind::DesiredPatch, InboundKind::StateDocuments] {
            subscriber.do_send(Subscribe { key: RouteKey::Kind(kind), sink: Sink::Recipient(me.clone()) });
        }
    }
}

impl Handler<GetTwin> for TwinActor {
    type Result = ResponseFuture<Result<TwinDocument, TwinError>>;

    fn handle(&mut self, _: GetTwin, ctx: &mut Self::Context) -> Self::Result {
        self.handle(GetShadow { shadow: None }, ctx)
    }
}

impl TwinActor {
    /// Starts a caller's request; the future answers with the raw response.
    fn call(
        &mut self,
        req: Request,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = Result<StateResponse, TwinError>> + 'static {
        let checked = match req.op {
            OpKind::Report | OpKind::Update => check_patch(&req.patch),
            OpKind::Get | OpKind::Delete => Ok(()),
        };
        let (tx, rx) = oneshot::channel();
        match checked {
            Ok(()) => self.start_request(req, Waiter::Caller(tx), ctx),
            Err(e) => {
                self.metrics().twin_request(req.op.label(), e.label());
                let _ = tx.send(Err(e));
            }
        }
        async move { rx.await.unwrap_or(Err(TwinError::Stopped)) }
    }
}

impl Handler<GetShadow> for TwinActor {
    type Result = ResponseFuture<Result<TwinDocument, TwinError>>;

    fn handle(&mut self, msg: GetShadow, ctx: &mut Self::Context) -> Self::Result {
        let fut = self.call(Request::get(msg.shadow), ctx);
        let provider = self.args.settings.provider.clone();
        Box::pin(async move { fut.await.and_then(|r| decode_document(provider.state(), &r)) })
    }
}

fn reported(
    fut: impl std::future::Future<Output = Result<StateResponse, TwinError>> + 'static,
) -> ResponseFuture<Result<Reported, TwinError>> {
    Box::pin(async move { fut.await.map(|r| Reported { version: r.version }) })
}

impl Handler<ReportShadow> for TwinActor {
    type Result = ResponseFuture<Result<Reported, TwinError>>;

    fn handle(&mut self, msg: ReportShadow, ctx: &mut Self::Context) -> Self::Result {
        let req = Request { op: OpKind::Report, shadow: msg.shadow, patch: msg.patch, version: None };
        reported(self.call(req, ctx))
    }
}

impl Handler<UpdateShadow> for TwinActor {
    type Result = ResponseFuture<Result<Reported, TwinError>>;

    fn handle(&mut self, msg: UpdateShadow, ctx: &mut Self::Context) -> Self::Result {
        let req = Request { op: OpKind::Update, shadow: msg.shadow, patch: msg.state, version: msg.version };
        reported(self.call(req, ctx))
    }
}

impl Handler<DeleteShadow> for TwinActor {
    type Result = ResponseFuture<Result<Reported, TwinError>>;

    fn handle(&mut self, msg: DeleteShadow, ctx: &mut Self::Context) -> Self::Result {
        let req = Request { op: OpKind::Delete, shadow: msg.shadow, patch: Bytes::new(), version: None };
        reported(self.call(req, ctx))
    }
}

impl Handler<WatchShadow> for TwinActor {
    type Result = MessageResult<WatchShadow>;

    fn handle(&mut self, msg: WatchShadow, ctx: &mut Self::Context) -> Self::Result {
        if let Some(name) = msg.shadow.clone() {
            let newly = !self.args.settings.shared.inner.lock().named.contains(&name);
            let fut = self.use_named(&name);
            let online = self.links.online();
            ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                // Catch up at once when the link is up already; otherwise the next
                // connection does.
                if res.is_ok() && newly && online && act.catching_up.insert(Some(name.clone())) {
                    act.start_request(Request::get(Some(name.clone())), Waiter::CatchUp(Some(name)), ctx);
                }
            }));
        }
        MessageResult(self.args.settings.shared.watch(msg.shadow, msg.sink))
    }
}

impl Handler<ReportState> for TwinActor {
    type Result = ResponseFuture<Result<Reported, TwinError>>;

    fn handle(&mut self, msg: ReportState, ctx: &mut Self::Context) -> Self::Result {
        self.handle(ReportShadow { shadow: None, patch: msg.0 }, ctx)
    }
}

impl Handler<WatchDesired> for TwinActor {
    type Result = MessageResult<WatchDesired>;

    fn handle(&mut self, msg: WatchDesired, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.args.settings.shared.watch(None, msg.0))
    }
}

impl Handler<UnwatchDesired> for TwinActor {
    type Result = bool;

    fn handle(&mut self, msg: UnwatchDesired, _: &mut Self::Context) -> bool {
        self.args.settings.shared.unwatch(msg.0)
    }
}

impl Handler<Received> for TwinActor {
    type Result = ();

    fn handle(&mut self, msg: Received, ctx: &mut Self::Context) {
        match msg.0 {
            Inbound::StateResponse(r) => self.on_response(r, ctx),
            Inbound::DesiredPatch(p) => self.on_desired(p),
            Inbound::StateDocuments(d) => self.on_documents(d),
            other => debug!(kind = other.kind().as_str(), "not for the TwinActor"),
        }
    }
}

impl Handler<Event> for TwinActor {
    type Result = ();

    fn handle(&mut self, msg: Event, ctx: &mut Self::Context) {
        match msg.0 {
            ConnectionEvent::Connected { .. } => {
                // Everything the ConnectionActor sent the Subscriber for this link (its
                // LinkUp, hence the re-subscription) is handled before the barrier.
                let subscriber = self.args.subscriber.read().clone();
                requests::link_up(self, &subscriber, ctx);
            }
            // Answers to requests sent on the lost link will not come: send them again.
            ConnectionEvent::Disconnected { .. } => self.links.down(),
            ConnectionEvent::Stopped { .. } => self.fail_all(TwinError::Stopped),
            _ => {}
        }
    }
}

impl Handler<Shutdown> for TwinActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.fail_all(TwinError::Stopped);
        ctx.stop();
    }
}
