//! The TwinActor: device state (Azure twin, AWS shadow) through the provider's
//! [`StateCodec`](connector_core::provider::StateCodec), provider-neutral.
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
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

use crate::connection::{PublisherSlot, Slot};
use crate::error::PublishError;
use crate::messages::{Event, Received, RouteKey, Shutdown, Sink, Subscribe};
use crate::requests::{self, Links, Requester, SendFailure};
use crate::subscriber::Subscriber;
use crate::supervision::ChildGuard;

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

/// The whole device-state document, as the service returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinDocument {
    /// The document (Azure: `{"desired":{…,"$version"},"reported":{…,"$version"}}`; AWS:
    /// `{"state":{"desired":…,"reported":…},"version":…}`).
    pub body: Value,
    /// The version the response carried, if any.
    pub version: Option<u64>,
}

impl TwinDocument {
    fn section(&self, name: &str) -> Option<&Value> {
        self.body.get(name).or_else(|| self.body.get("state")?.get(name))
    }
    /// The desired section.
    pub fn desired(&self) -> Option<&Value> {
        self.section("desired")
    }
    /// The reported section.
    pub fn reported(&self) -> Option<&Value> {
        self.section("reported")
    }
    /// The desired version: the desired section's `$version` (Azure), else the document's
    /// `version` (AWS).
    pub fn desired_version(&self) -> Option<u64> {
        self.desired()
            .and_then(|d| d.get("$version"))
            .or_else(|| self.body.get("version"))
            .and_then(Value::as_u64)
    }
    /// The reported section's `$version`, if it has one.
    pub fn reported_version(&self) -> Option<u64> {
        self.reported().and_then(|r| r.get("$version")).and_then(Value::as_u64)
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

/// Test hook: make the TwinActor panic (compiled only with `fault-injection`).
#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for TwinActor {
    type Result = ();
    fn handle(&mut self, _: crate::messages::InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in the TwinActor");
    }
}

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

/// Watchers and the last delivered desired version: owned by the supervisor, so they
/// survive TwinActor restarts.
#[derive(Debug, Default)]
pub(crate) struct TwinShared {
    inner: Mutex<SharedInner>,
}

#[derive(Debug, Default)]
struct SharedInner {
    next_id: u64,
    /// Watchers of desired changes, each of one document (`None`: the classic one).
    watchers: BTreeMap<u64, (Option<String>, DesiredSink)>,
    /// Watchers of `update/documents` (all documents).
    documents: BTreeMap<u64, mpsc::Sender<StateDocuments>>,
    /// The newest desired version delivered, per document.
    versions: BTreeMap<Option<String>, u64>,
    /// Named documents in use: subscribed once, kept, caught up on every connection.
    named: BTreeSet<String>,
}

impl SharedInner {
    fn last(&self, shadow: &Option<String>) -> Option<u64> {
        self.versions.get(shadow).copied()
    }
}

impl TwinShared {
    fn watch(&self, shadow: Option<String>, sink: DesiredSink) -> WatchId {
        let mut g = self.inner.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.watchers.insert(id, (shadow, sink));
        WatchId(id)
    }

    fn watch_documents(&self, tx: mpsc::Sender<StateDocuments>) -> WatchId {
        let mut g = self.inner.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.documents.insert(id, tx);
        WatchId(id)
    }

    fn unwatch(&self, id: WatchId) -> bool {
        let mut g = self.inner.lock();
        g.watchers.remove(&id.0).is_some() || g.documents.remove(&id.0).is_some()
    }
}

/// What the TwinActor is built from, kept by the supervisor to rebuild it.
#[derive(Clone)]
pub(crate) struct TwinSettings {
    pub provider: Arc<dyn Provider>,
    pub timeout: Duration,
    pub retry: TwinRetry,
    pub shared: Arc<TwinShared>,
    pub metrics: ConnectionMetrics,
}

/// [`TwinSettings`] with the siblings' slots.
#[derive(Clone)]
pub(crate) struct TwinArgs {
    pub settings: TwinSettings,
    pub publisher: PublisherSlot,
    pub subscriber: Slot<Subscriber>,
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
        p.deadline = Instant::now() + self.args.settings.timeout;
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
        let doc = match result.and_then(|r| decode_document(&r)) {
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
        let Some(version) = doc.desired_version() else {
            warn!(shadow = ?shadow, "catch-up document has no desired version; nothing delivered");
            return;
        };
        let newer = self.args.settings.shared.inner.lock().last(&shadow).is_none_or(|last| version > last);
        if !newer {
            debug!(shadow = ?shadow, version, "catch-up: nothing missed");
            return;
        }
        let body = match doc.body.get("state") {
            // AWS: what is still to do is the delta; none means reported already matches.
            Some(state) => match state.get("delta") {
                Some(delta @ Value::Object(m)) if !m.is_empty() => delta.clone(),
                _ => {
                    debug!(shadow = ?shadow, version, "catch-up: no delta");
                    self.note_version(&shadow, version);
                    return;
                }
            },
            None => doc.desired().cloned().unwrap_or(Value::Null),
        };
        info!(shadow = ?shadow, version, "catch-up: delivering the desired state");
        self.deliver(DesiredUpdate { shadow, version: Some(version), body, catch_up: true });
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
        self.deliver(DesiredUpdate { shadow: patch.shadow, version: patch.version, body, catch_up: false });
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
}

/// A successful GET answer as a document: its body must be a JSON object.
pub fn decode_document(r: &StateResponse) -> Result<TwinDocument, TwinError> {
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(body @ Value::Object(_)) => Ok(TwinDocument { body, version: r.version }),
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
        for kind in ["state_response", "desired_patch", "state_documents"] {
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
        Box::pin(async move { fut.await.and_then(|r| decode_document(&r)) })
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
            other => debug!(kind = other.kind(), "not for the TwinActor"),
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

/// A handle to the current TwinActor (it survives restarts; watchers registered through it
/// are kept by the supervisor).
#[derive(Clone)]
pub struct TwinHandle {
    pub(crate) slot: Slot<TwinActor>,
    pub(crate) shared: Arc<TwinShared>,
}

impl std::fmt::Debug for TwinHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinHandle").field("last_desired_version", &self.last_desired_version()).finish()
    }
}

impl TwinHandle {
    /// The TwinActor's current address, for actor code.
    pub fn addr(&self) -> Addr<TwinActor> {
        self.slot.read().clone()
    }

    /// Sends a message to the current TwinActor (`conn.twin()?.send(GetTwin).await??`).
    pub fn send<M>(
        &self,
        msg: M,
    ) -> impl std::future::Future<Output = Result<M::Result, MailboxError>> + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TwinActor: Handler<M>,
    {
        self.slot.read().send(msg)
    }

    /// Fetches the whole document.
    pub async fn get(&self) -> Result<TwinDocument, TwinError> {
        self.send(GetTwin).await?
    }

    /// Patches the reported state with a JSON object.
    pub async fn report(&self, patch: &Value) -> Result<Reported, TwinError> {
        self.send(ReportState::json(patch)).await?
    }

    /// Patches the reported state with raw bytes (checked to be JSON first).
    pub async fn report_bytes(&self, patch: impl Into<Bytes>) -> Result<Reported, TwinError> {
        self.send(ReportState(patch.into())).await?
    }

    /// Desired changes from now on as a stream with `capacity` slots (when it is full,
    /// further updates are dropped and counted). Registered at once, so the catch-up of the
    /// next connection reaches it.
    pub fn desired(&self, capacity: usize) -> (WatchId, impl Stream<Item = DesiredUpdate> + Unpin) {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        let id = self.shared.watch(None, DesiredSink::Channel(tx));
        (id, futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// Desired changes to an actor.
    pub fn watch(&self, recipient: Recipient<DesiredChanged>) -> WatchId {
        self.shared.watch(None, DesiredSink::Recipient(recipient))
    }

    /// Fetches a document (`None`: the classic one; `Some(name)`: an AWS named shadow).
    pub async fn get_shadow(&self, shadow: Option<&str>) -> Result<TwinDocument, TwinError> {
        self.send(GetShadow { shadow: shadow.map(str::to_owned) }).await?
    }

    /// Patches a document's reported state.
    pub async fn report_shadow(&self, shadow: Option<&str>, patch: &Value) -> Result<Reported, TwinError> {
        let patch = Bytes::from(patch.to_string());
        self.send(ReportShadow { shadow: shadow.map(str::to_owned), patch }).await?
    }

    /// Updates a document with a `{"desired":…,"reported":…}` state, at `version` if given.
    pub async fn update_shadow(
        &self,
        shadow: Option<&str>,
        state: &Value,
        version: Option<u64>,
    ) -> Result<Reported, TwinError> {
        let state = Bytes::from(state.to_string());
        self.send(UpdateShadow { shadow: shadow.map(str::to_owned), state, version }).await?
    }

    /// Deletes a document.
    pub async fn delete_shadow(&self, shadow: Option<&str>) -> Result<Reported, TwinError> {
        self.send(DeleteShadow { shadow: shadow.map(str::to_owned) }).await?
    }

    /// Desired changes (AWS deltas) of one document as a stream. For a named shadow its
    /// subscriptions are made once and kept, and every (re)connection catches up on it.
    pub async fn shadow_desired(
        &self,
        shadow: Option<&str>,
        capacity: usize,
    ) -> Result<(WatchId, impl Stream<Item = DesiredUpdate> + Unpin), TwinError> {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        let id = self
            .send(WatchShadow { shadow: shadow.map(str::to_owned), sink: DesiredSink::Channel(tx) })
            .await?;
        Ok((id, futures::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }

    /// The previous and current documents after every accepted update (AWS
    /// `update/documents`) of the documents in use, as a stream.
    pub fn documents(&self, capacity: usize) -> (WatchId, impl Stream<Item = StateDocuments> + Unpin) {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        let id = self.shared.watch_documents(tx);
        (id, futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// Stops a watcher; `false` if the id was unknown.
    pub fn unwatch(&self, id: WatchId) -> bool {
        self.shared.unwatch(id)
    }

    /// The newest desired version delivered to watchers so far (of the classic document).
    pub fn last_desired_version(&self) -> Option<u64> {
        self.shared.inner.lock().last(&None)
    }

    /// The newest desired version seen of a document.
    pub fn shadow_version(&self, shadow: Option<&str>) -> Option<u64> {
        self.shared.inner.lock().last(&shadow.map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &'static [u8]) -> StateResponse {
        StateResponse { request_id: "1".into(), status, version: None, body: Bytes::from_static(body) }
    }

    #[test]
    fn malformed_documents_are_typed_errors() {
        let table: [(&[u8], bool); 7] = [
            (br#"{"desired":{"$version":3},"reported":{"$version":1}}"#, true),
            (b"", false),
            (b"not json", false),
            (b"[1,2]", false),
            (b"\"text\"", false),
            (b"\xff\xfe{", false),
            (br#"{"desired":"#, false),
        ];
        for (body, ok) in table {
            let r =
                StateResponse { request_id: "1".into(), status: 200, version: None, body: Bytes::from(body) };
            match decode_document(&r) {
                Ok(doc) => {
                    assert!(ok, "{body:?} decoded");
                    assert_eq!((doc.desired_version(), doc.reported_version()), (Some(3), Some(1)));
                }
                Err(TwinError::InvalidJson(_)) => assert!(!ok, "{body:?} refused"),
                Err(e) => panic!("{body:?}: {e:?}"),
            }
        }
        let _ = resp(200, b"{}");
    }

    #[test]
    fn documents_of_both_shapes_give_their_sections() {
        let azure =
            decode_document(&resp(200, br#"{"desired":{"a":1,"$version":7},"reported":{"$version":2}}"#))
                .unwrap();
        assert_eq!(azure.desired_version(), Some(7));
        assert_eq!(azure.desired().and_then(|d| d.get("a")), Some(&Value::from(1)));
        let aws = decode_document(&resp(200, br#"{"state":{"desired":{"a":2},"reported":{}},"version":9}"#))
            .unwrap();
        assert_eq!(aws.desired_version(), Some(9));
        assert_eq!(aws.desired().and_then(|d| d.get("a")), Some(&Value::from(2)));
        assert_eq!(aws.reported_version(), None);
    }

    #[test]
    fn patches_must_be_json() {
        assert!(check_patch(br#"{"a":1}"#).is_ok());
        for bad in [&b""[..], b"{", b"\xff", b"nope"] {
            assert!(matches!(check_patch(bad), Err(TwinError::InvalidJson(_))), "{bad:?}");
        }
    }

    /// A plain broker provider with a toy state codec.
    struct StateProvider(connector_core::MqttProvider);

    struct Codec;

    impl connector_core::provider::StateCodec for Codec {
        fn get(&self, rid: &str) -> Result<connector_core::OutboundPacket, ProviderError> {
            self.report(rid, b"{}")
        }
        fn report(&self, rid: &str, patch: &[u8]) -> Result<connector_core::OutboundPacket, ProviderError> {
            Ok(connector_core::OutboundPacket {
                topic: format!("state/{rid}"),
                payload: Bytes::copy_from_slice(patch),
                qos: connector_core::QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            })
        }
        fn subscriptions(&self) -> Vec<connector_core::SubscriptionSpec> {
            Vec::new()
        }
    }

    impl Provider for StateProvider {
        fn name(&self) -> &'static str {
            "test"
        }
        fn connect_params(
            &self,
            now: std::time::SystemTime,
        ) -> Result<connector_core::ConnectParams, ProviderError> {
            self.0.connect_params(now)
        }
        fn telemetry_topic(&self, p: &connector_core::Publish) -> Result<String, ProviderError> {
            self.0.telemetry_topic(p)
        }
        fn state(&self) -> Option<&dyn connector_core::provider::StateCodec> {
            Some(&Codec)
        }
    }

    /// A TwinActor with real (unconnected) siblings.
    fn actor() -> (Addr<TwinActor>, Arc<TwinShared>) {
        use crate::publisher::{Publisher, PublisherArgs, PublisherOptions};
        use crate::subscriber::SubscriberArgs;
        let provider: Arc<dyn Provider> = Arc::new(StateProvider(
            connector_core::MqttProvider::new(connector_core::MqttOptions::new("tcp://127.0.0.1:1", "t"))
                .unwrap(),
        ));
        let metrics = ConnectionMetrics::detached("test", "t");
        let publisher = Publisher::spawn(
            PublisherArgs {
                provider: provider.clone(),
                options: PublisherOptions::default(),
                metrics: metrics.clone(),
            },
            None,
        );
        let subscriber = Subscriber::new(
            SubscriberArgs {
                provider: provider.clone(),
                timeout: Duration::from_secs(1),
                table: Default::default(),
                metrics: metrics.clone(),
            },
            None,
        )
        .start();
        let shared = Arc::new(TwinShared::default());
        let settings = TwinSettings {
            provider,
            timeout: Duration::from_millis(200),
            retry: TwinRetry::default(),
            shared: shared.clone(),
            metrics,
        };
        let args = TwinArgs {
            settings,
            publisher: Arc::new(parking_lot::RwLock::new(publisher)),
            subscriber: Arc::new(parking_lot::RwLock::new(subscriber)),
        };
        (TwinActor::new(args, None).start(), shared)
    }

    fn patch(version: Option<u64>, body: &'static [u8]) -> Received {
        Received(Inbound::DesiredPatch(DesiredPatch {
            shadow: None,
            version,
            body: Bytes::from_static(body),
        }))
    }

    #[actix_rt::test]
    async fn duplicate_stale_and_malformed_desired_patches_are_dropped() {
        let (twin, shared) = actor();
        let (tx, mut rx) = mpsc::channel(16);
        shared.watch(None, DesiredSink::Channel(tx));
        let table: [(Option<u64>, &'static [u8], bool); 8] = [
            (Some(5), br#"{"a":1}"#, true),
            (Some(5), br#"{"a":1}"#, false),
            (Some(4), br#"{"a":0}"#, false),
            (Some(6), br#"{"a":2}"#, true),
            (None, br#"{"b":1}"#, true),
            (Some(7), b"not json", false),
            (Some(7), b"[1]", false),
            (Some(7), br#"{"a":3}"#, true),
        ];
        for (version, body, delivered) in table {
            twin.send(patch(version, body)).await.unwrap();
            match rx.try_recv() {
                Ok(u) => {
                    assert!(delivered, "{version:?} {body:?} delivered");
                    assert_eq!((u.version, u.catch_up), (version, false));
                }
                Err(_) => assert!(!delivered, "{version:?} {body:?} not delivered"),
            }
        }
        assert_eq!(shared.inner.lock().last(&None), Some(7));
    }

    #[actix_rt::test]
    async fn offline_requests_time_out_and_unknown_answers_are_ignored() {
        let (twin, _) = actor();
        let got = twin.send(GetTwin).await.unwrap();
        assert_eq!(got, Err(TwinError::Timeout { after: Duration::from_millis(200) }));
        // An answer nobody waits for (late, or another client's) changes nothing.
        let late = StateResponse { request_id: "1".into(), status: 200, version: None, body: Bytes::new() };
        twin.send(Received(Inbound::StateResponse(late))).await.unwrap();
        let got = twin.send(ReportState(Bytes::from_static(b"{"))).await.unwrap();
        assert!(matches!(got, Err(TwinError::InvalidJson(_))), "{got:?}");
    }

    #[test]
    fn shared_watchers_are_kept_by_id() {
        let s = TwinShared::default();
        let (tx, _rx) = mpsc::channel(1);
        let a = s.watch(None, DesiredSink::Channel(tx.clone()));
        let b = s.watch(Some("n".into()), DesiredSink::Channel(tx));
        assert_ne!(a, b);
        assert!(s.unwatch(a));
        assert!(!s.unwatch(a));
        assert_eq!(s.inner.lock().watchers.len(), 1);
    }
}
