//! Direct methods: a provider-neutral dispatcher of method requests to user handlers.
//!
//! A method request ([`Inbound::MethodRequest`]) must be answered with a status and a JSON
//! body before the caller's deadline. The [`MethodsActor`] is a supervised child of the
//! [`crate::ConnectionActor`]: it looks the method up by name in a registry, runs the
//! handler in its own task and publishes the answer at QoS 1 through the Publisher (the
//! provider maps it onto the wire with [`connector_core::Provider::method_response`]).
//!
//! Every call is answered exactly once, whatever happens to it:
//!
//! | what happens | status sent to the caller |
//! |---|---|
//! | the handler answers | the handler's status and body |
//! | no handler for the name, no default set | 404, `{"error": "method not found", "method": name}` |
//! | the handler panics (when called or while running) | 500, counted in `connector_handler_panics_total{handler="method"}` |
//! | the handler overruns its deadline | 504; the late answer is discarded |
//! | a [`Responder`] is dropped unanswered | 500, `handler dropped the request` |
//! | the answer is refused by the provider (not JSON, too large) | 500 naming the reason |
//! | a stream's buffer is full | 503 |
//!
//! Answers are counted by status in `connector_method_calls_total`.
//!
//! Registrations live in a registry shared with the supervisor, so they survive a restart
//! of the dispatcher; calls already running live in their own tasks and are answered
//! whether or not the dispatcher is restarted meanwhile.
//!
//! ```no_run
//! use connector_actors::methods::{MethodCall, MethodResponse};
//! use serde_json::json;
//!
//! # async fn demo(conn: connector_actors::Connector) -> Result<(), connector_actors::methods::MethodError> {
//! let methods = conn.methods();
//! methods.register("reboot", |call: MethodCall| async move {
//!     #[derive(serde::Deserialize)]
//!     struct Args { delay: u64 }
//!     match call.json::<Args>() {
//!         Ok(a) => MethodResponse::ok(json!({ "rebooting_in": a.delay })),
//!         Err(e) => MethodResponse::error(400, e),
//!     }
//! })?;
//! methods.register_fn("ping", |_call| MethodResponse::ok(json!("pong")))?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use connector_core::{ConnectionMetrics, Inbound, MethodRequest, Provider, ProviderError};
use futures::{FutureExt, Stream};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::connection::{PublisherSlot, Slot};
use crate::error::PublishError;
use crate::messages::{Received, RouteKey, Shutdown, Sink, Subscribe};
use crate::subscriber::Subscriber;
use crate::supervision::ChildGuard;

/// How long a handler may run before the dispatcher answers 504 for it.
pub const DEFAULT_METHOD_DEADLINE: Duration = Duration::from_secs(30);

/// What can go wrong with a method call, on the device's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MethodError {
    /// The request's payload is not the JSON the handler expects (or no JSON at all).
    #[error("payload of method `{method}` is not the expected JSON: {reason}")]
    InvalidPayload {
        /// The method name.
        method: String,
        /// What the JSON parser said.
        reason: String,
    },
    /// A response body could not be serialised to JSON.
    #[error("response cannot be serialised to JSON: {reason}")]
    Serialize {
        /// What the serialiser said.
        reason: String,
    },
    /// The provider refused the response (not JSON, too large, …); the caller was sent a
    /// 500 instead.
    #[error("response to method `{method}` refused; the caller got a 500")]
    InvalidResponse {
        /// The method name.
        method: String,
        /// Why the provider refused it.
        #[source]
        source: ProviderError,
    },
    /// The response could not be published.
    #[error("response to method `{method}` not delivered")]
    Publish {
        /// The method name.
        method: String,
        /// The Publisher's error.
        #[source]
        source: PublishError,
    },
    /// The call was answered already (its deadline passed and the caller got a 504).
    #[error("method `{method}` was answered already (deadline passed)")]
    AlreadyAnswered {
        /// The method name.
        method: String,
    },
    /// A method name to register is empty.
    #[error("a method name must not be empty")]
    EmptyName,
}

/// One method call as a handler sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct MethodCall {
    name: String,
    request_id: String,
    payload: Bytes,
}

impl fmt::Debug for MethodCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodCall")
            .field("name", &self.name)
            .field("request_id", &self.request_id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl MethodCall {
    /// A call (for tests of handlers; calls normally come from the dispatcher).
    pub fn new(name: impl Into<String>, request_id: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self { name: name.into(), request_id: request_id.into(), payload: payload.into() }
    }

    /// The method name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider's request id (Azure `$rid`).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The raw payload, as received (normally JSON; empty when the caller sent none).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload parsed as JSON into `T`; a typed error when it is empty, not JSON or not
    /// of `T`'s shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, MethodError> {
        let invalid = |reason: String| MethodError::InvalidPayload { method: self.name.clone(), reason };
        if self.payload.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid("empty payload".into()));
        }
        serde_json::from_slice(&self.payload).map_err(|e| invalid(e.to_string()))
    }
}

impl From<MethodRequest> for MethodCall {
    fn from(r: MethodRequest) -> Self {
        Self { name: r.name, request_id: r.request_id, payload: r.payload }
    }
}

/// The answer to a method call: a status and a JSON body (or none). An actor handling
/// [`MethodInvoked`] returns it as its message result.
#[derive(Debug, Clone, PartialEq, Eq, actix::MessageResponse)]
pub struct MethodResponse {
    /// The status (HTTP-like: 200, 400, 404, 500, …), chosen by the device.
    pub status: u16,
    /// The body: JSON, or empty. The provider checks it when it is sent.
    pub payload: Bytes,
}

impl MethodResponse {
    /// `status` with a JSON body.
    pub fn new(status: u16, body: Value) -> Self {
        Self { status, payload: Bytes::from(body.to_string()) }
    }

    /// 200 with a JSON body.
    pub fn ok(body: Value) -> Self {
        Self::new(200, body)
    }

    /// `status` with any serialisable body; a typed error if it does not serialise.
    pub fn json<T: Serialize + ?Sized>(status: u16, body: &T) -> Result<Self, MethodError> {
        serde_json::to_vec(body)
            .map(|v| Self { status, payload: Bytes::from(v) })
            .map_err(|e| MethodError::Serialize { reason: e.to_string() })
    }

    /// `status` with an error body `{"error": message}`.
    pub fn error(status: u16, message: impl fmt::Display) -> Self {
        Self::new(status, json!({ "error": message.to_string() }))
    }

    /// `status` with no body.
    pub fn empty(status: u16) -> Self {
        Self { status, payload: Bytes::new() }
    }

    /// `status` with a body taken as is (the provider refuses it when it is sent if it is
    /// not JSON or too large; the caller then gets a 500).
    pub fn raw(status: u16, payload: impl Into<Bytes>) -> Self {
        Self { status, payload: payload.into() }
    }
}

/// The future a handler returns.
pub type MethodFuture = Pin<Box<dyn Future<Output = MethodResponse> + 'static>>;

/// A method handler: called once per call, on the connector's arbiter. Implemented for
/// every `Fn(MethodCall) -> impl Future<Output = MethodResponse>` closure.
pub trait MethodHandler: Send + Sync + 'static {
    /// Handles one call.
    fn call(&self, call: MethodCall) -> MethodFuture;
}

impl<F, Fut> MethodHandler for F
where
    F: Fn(MethodCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = MethodResponse> + 'static,
{
    fn call(&self, call: MethodCall) -> MethodFuture {
        Box::pin(self(call))
    }
}

/// A direct-method call delivered to an actor ([`MethodsHandle::register_recipient`]); the
/// actor's answer is the method's response.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "MethodResponse")]
pub struct MethodInvoked(pub MethodCall);

/// An actor as a handler: a call it cannot take (mailbox closed or full) is answered 503.
struct RecipientHandler(Recipient<MethodInvoked>);

impl MethodHandler for RecipientHandler {
    fn call(&self, call: MethodCall) -> MethodFuture {
        let r = self.0.clone();
        Box::pin(async move {
            r.send(MethodInvoked(call)).await.unwrap_or_else(|e| {
                MethodResponse::error(503, format!("the handling actor is unavailable: {e}"))
            })
        })
    }
}

/// A synchronous closure as a handler.
struct SyncHandler<F>(F);

impl<F> MethodHandler for SyncHandler<F>
where
    F: Fn(MethodCall) -> MethodResponse + Send + Sync + 'static,
{
    fn call(&self, call: MethodCall) -> MethodFuture {
        let r = (self.0)(call);
        Box::pin(std::future::ready(r))
    }
}

#[derive(Clone)]
enum Target {
    Handler(Arc<dyn MethodHandler>),
    Stream(mpsc::Sender<IncomingCall>),
}

#[derive(Clone)]
struct Route {
    target: Target,
    deadline: Option<Duration>,
}

/// The registrations. It belongs to the supervisor and outlives dispatcher restarts.
pub(crate) struct Registry {
    by_name: HashMap<String, Route>,
    default: Option<Route>,
    deadline: Duration,
}

impl Default for Registry {
    fn default() -> Self {
        Self { by_name: HashMap::new(), default: None, deadline: DEFAULT_METHOD_DEADLINE }
    }
}

impl Registry {
    pub(crate) fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }
}

pub(crate) type SharedRegistry = Arc<RwLock<Registry>>;

/// What the dispatcher needs besides the Publisher (which the tree creates).
pub(crate) struct MethodsSetup {
    pub provider: Arc<dyn Provider>,
    pub registry: SharedRegistry,
    pub metrics: ConnectionMetrics,
}

impl MethodsSetup {
    pub(crate) fn with_publisher(self, publisher: PublisherSlot) -> MethodsArgs {
        MethodsArgs { provider: self.provider, publisher, registry: self.registry, metrics: self.metrics }
    }
}

/// Everything a [`MethodsActor`] is built from; kept by the supervisor to rebuild it.
#[derive(Clone)]
pub(crate) struct MethodsArgs {
    pub provider: Arc<dyn Provider>,
    pub publisher: PublisherSlot,
    pub registry: SharedRegistry,
    pub metrics: ConnectionMetrics,
}

impl MethodsArgs {
    /// Routes one request to its handler (in a task of its own) or answers it at once.
    fn dispatch(&self, req: MethodRequest) {
        let (route, default_deadline) = {
            let r = self.registry.read();
            (r.by_name.get(&req.name).or(r.default.as_ref()).cloned(), r.deadline)
        };
        let answer = Answer::new(self.clone(), &req);
        let call = MethodCall::from(req);
        let Some(route) = route else {
            debug!(method = %call.name, "no handler; default answer");
            drop(answer.send(not_found(&call.name)));
            return;
        };
        let deadline = route.deadline.unwrap_or(default_deadline);
        match route.target {
            Target::Handler(h) => {
                actix_rt::spawn(run_handler(h, call, answer, deadline, self.metrics.clone()));
            }
            Target::Stream(tx) => self.to_stream(&tx, call, answer, deadline),
        }
    }

    fn to_stream(
        &self,
        tx: &mpsc::Sender<IncomingCall>,
        call: MethodCall,
        answer: Answer,
        deadline: Duration,
    ) {
        let slot = Arc::new(Mutex::new(Some(answer)));
        let weak = Arc::downgrade(&slot);
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let name = call.name.clone();
        let incoming =
            IncomingCall { call, responder: Responder { slot, method: name.clone(), _done: done_tx } };
        match tx.try_send(incoming) {
            Ok(()) => {
                actix_rt::spawn(async move {
                    if tokio::time::timeout(deadline, done_rx).await.is_err() {
                        if let Some(a) = weak.upgrade().and_then(|s| s.lock().take()) {
                            warn!(method = %name, ?deadline, "method stream did not answer in time; 504");
                            drop(a.send(overran(&name, deadline)));
                        }
                    }
                });
            }
            Err(mpsc::error::TrySendError::Full(c)) => {
                self.metrics.inbound_dropped("recipient_full");
                warn!(method = %name, "method stream full; 503");
                if let Some(a) = c.responder.slot.lock().take() {
                    drop(a.send(MethodResponse::error(503, format!("method `{name}` is busy"))));
                }
            }
            Err(mpsc::error::TrySendError::Closed(c)) => {
                // The stream was dropped: the method is no longer handled.
                {
                    let mut r = self.registry.write();
                    if matches!(r.by_name.get(&name), Some(Route { target: Target::Stream(t), .. }) if t.same_channel(tx))
                    {
                        r.by_name.remove(&name);
                    }
                    if matches!(&r.default, Some(Route { target: Target::Stream(t), .. }) if t.same_channel(tx))
                    {
                        r.default = None;
                    }
                }
                debug!(method = %name, "method stream dropped; unregistered");
                let Some(a) = c.responder.slot.lock().take() else { return };
                let req = MethodRequest {
                    name: c.call.name.clone(),
                    request_id: c.call.request_id.clone(),
                    payload: c.call.payload.clone(),
                };
                a.disarm();
                self.dispatch(req);
            }
        }
    }
}

fn not_found(name: &str) -> MethodResponse {
    MethodResponse::new(404, json!({ "error": "method not found", "method": name }))
}

fn overran(name: &str, deadline: Duration) -> MethodResponse {
    MethodResponse::new(
        504,
        json!({ "error": "the handler did not answer in time", "method": name, "deadlineMs": deadline.as_millis() as u64 }),
    )
}

async fn run_handler(
    h: Arc<dyn MethodHandler>,
    call: MethodCall,
    answer: Answer,
    deadline: Duration,
    metrics: ConnectionMetrics,
) {
    let name = call.name.clone();
    let panicked = || {
        metrics.handler_panicked("method");
        warn!(method = %name, "method handler panicked; 500");
        MethodResponse::new(500, json!({ "error": "the handler panicked", "method": name }))
    };
    let response = match catch_unwind(AssertUnwindSafe(|| h.call(call))) {
        Err(_) => panicked(),
        Ok(fut) => match tokio::time::timeout(deadline, AssertUnwindSafe(fut).catch_unwind()).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => panicked(),
            Err(_) => {
                warn!(method = %name, ?deadline, "method handler overran its deadline; 504");
                overran(&name, deadline)
            }
        },
    };
    if let Err(e) = answer.send(response).await {
        warn!(method = %name, error = %e, "method answer");
    }
}

/// The obligation to answer one call. Answered once: by `send`, or with a 500 when dropped.
struct Answer {
    args: MethodsArgs,
    method: String,
    request_id: String,
    pending: bool,
}

impl Answer {
    fn new(args: MethodsArgs, req: &MethodRequest) -> Self {
        Self { args, method: req.name.clone(), request_id: req.request_id.clone(), pending: true }
    }

    /// Hands the answer to the Publisher now; the future resolves on PUBACK.
    fn send(mut self, response: MethodResponse) -> impl Future<Output = Result<(), MethodError>> + 'static {
        self.pending = false;
        self.publish(response)
    }

    /// Forgets the obligation (someone else answers).
    fn disarm(mut self) {
        self.pending = false;
    }

    fn publish(&self, response: MethodResponse) -> impl Future<Output = Result<(), MethodError>> + 'static {
        let provider = &self.args.provider;
        let method = self.method.clone();
        let (packet, status, refused) = match provider.method_response(
            &self.request_id,
            response.status,
            response.payload,
        ) {
            Ok(p) => (Ok(p), response.status, None),
            Err(e) => {
                warn!(method = %method, status = response.status, error = %e, "method response refused; 500 instead");
                let body =
                    json!({ "error": format!("the device's response was refused: {e}"), "method": method });
                let fallback = provider.method_response(&self.request_id, 500, Bytes::from(body.to_string()));
                (fallback, 500, Some(e))
            }
        };
        let sent = match packet {
            Ok(p) => {
                self.args.metrics.method_answered(status);
                Ok(crate::connector::send_packet(&self.args.publisher, p))
            }
            Err(e) => Err(e),
        };
        async move {
            let outcome = match sent {
                Ok(fut) => fut
                    .await
                    .map(|_| ())
                    .map_err(|source| MethodError::Publish { method: method.clone(), source }),
                Err(source) => Err(MethodError::InvalidResponse { method: method.clone(), source }),
            };
            match (refused, outcome) {
                (Some(source), _) => Err(MethodError::InvalidResponse { method, source }),
                (None, o) => o,
            }
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if self.pending {
            self.pending = false;
            warn!(method = %self.method, "method call dropped unanswered; 500");
            drop(self.publish(MethodResponse::new(
                500,
                json!({ "error": "handler dropped the request", "method": self.method }),
            )));
        }
    }
}

/// A call delivered through [`MethodsHandle::stream`], with the obligation to answer it.
#[derive(Debug)]
pub struct IncomingCall {
    /// The call.
    pub call: MethodCall,
    /// Answers it.
    pub responder: Responder,
}

/// Answers one call. Dropped unanswered, it answers 500 (`handler dropped the request`) so
/// the caller never waits for its own timeout; after the deadline, the call has been
/// answered 504 and [`Responder::respond`] fails with [`MethodError::AlreadyAnswered`].
pub struct Responder {
    slot: Arc<Mutex<Option<Answer>>>,
    method: String,
    _done: oneshot::Sender<()>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").field("method", &self.method).finish_non_exhaustive()
    }
}

impl Responder {
    /// Answers. The answer is handed over when this is called; the future resolves when the
    /// service acknowledged it, or with a typed error (refused response: the caller got a
    /// 500; deadline already passed; not delivered).
    pub fn respond(
        self,
        response: MethodResponse,
    ) -> impl Future<Output = Result<(), MethodError>> + 'static {
        let answer = self.slot.lock().take();
        let method = self.method.clone();
        let fut = answer.map(|a| a.send(response));
        async move {
            match fut {
                Some(f) => f.await,
                None => Err(MethodError::AlreadyAnswered { method }),
            }
        }
    }

    /// Whether the call was answered already (by the deadline).
    pub fn is_answered(&self) -> bool {
        self.slot.lock().is_none()
    }
}

/// Method calls of one name (or of every name without a handler), as a stream.
pub struct MethodStream {
    rx: mpsc::Receiver<IncomingCall>,
}

impl fmt::Debug for MethodStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MethodStream")
    }
}

impl Stream for MethodStream {
    type Item = IncomingCall;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<IncomingCall>> {
        self.rx.poll_recv(cx)
    }
}

/// The method dispatcher actor: a supervised child of the [`crate::ConnectionActor`]. It
/// takes [`Received`] messages (method requests; anything else is ignored).
pub struct MethodsActor {
    args: MethodsArgs,
    _guard: Option<ChildGuard>,
}

impl MethodsActor {
    pub(crate) fn new(args: MethodsArgs, guard: Option<ChildGuard>) -> Self {
        Self { args, _guard: guard }
    }
}

impl Actor for MethodsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
    }
}

impl Handler<Received> for MethodsActor {
    type Result = ();

    fn handle(&mut self, msg: Received, _: &mut Self::Context) {
        if let Inbound::MethodRequest(req) = msg.0 {
            self.args.dispatch(req);
        }
    }
}

impl Handler<Shutdown> for MethodsActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for MethodsActor {
    type Result = ();
    fn handle(&mut self, _: crate::messages::InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in the MethodsActor");
    }
}

/// A handle to the method dispatcher (it survives dispatcher restarts). The first
/// registration routes the provider's method requests to the dispatcher; until then they
/// go wherever the Subscriber's routes send them (a `RouteKey::Kind(connector_core::InboundKind::Method)` route of
/// your own, or nowhere). Registering the same name again replaces its handler.
#[derive(Clone)]
pub struct MethodsHandle {
    slot: Slot<MethodsActor>,
    subscriber: Slot<Subscriber>,
    args: MethodsArgs,
    routed: Arc<Once>,
}

impl fmt::Debug for MethodsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.args.registry.read();
        let mut names: Vec<&str> = r.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("MethodsHandle")
            .field("methods", &names)
            .field("default", &r.default.is_some())
            .field("deadline", &r.deadline)
            .finish()
    }
}

impl MethodsHandle {
    pub(crate) fn new(slot: Slot<MethodsActor>, subscriber: Slot<Subscriber>, args: MethodsArgs) -> Self {
        Self { slot, subscriber, args, routed: Arc::new(Once::new()) }
    }

    /// The dispatcher's current address, for actor code.
    pub fn addr(&self) -> Addr<MethodsActor> {
        self.slot.read().clone()
    }

    fn route(&self) {
        self.routed.call_once(|| {
            let slot = self.slot.clone();
            let args = self.args.clone();
            let sink = Sink::Handler(Arc::new(move |inbound: &Inbound| {
                let Inbound::MethodRequest(req) = inbound else { return };
                let addr = slot.read().clone();
                if let Err(e) = addr.try_send(Received(inbound.clone())) {
                    // Restarting: answer rather than let the caller wait for its timeout.
                    warn!(method = %req.name, error = %e, "method dispatcher unavailable; 503");
                    let answer = Answer::new(args.clone(), req);
                    drop(answer.send(MethodResponse::error(503, "the method dispatcher is restarting")));
                }
            }));
            self.subscriber
                .read()
                .do_send(Subscribe { key: RouteKey::Kind(connector_core::InboundKind::Method), sink });
        });
    }

    fn insert(&self, name: String, route: Route) -> Result<(), MethodError> {
        if name.is_empty() {
            return Err(MethodError::EmptyName);
        }
        self.args.registry.write().by_name.insert(name, route);
        self.route();
        Ok(())
    }

    /// Handles method `name` with an async handler
    /// (`Fn(MethodCall) -> impl Future<Output = MethodResponse>`), under the default deadline.
    pub fn register(&self, name: impl Into<String>, handler: impl MethodHandler) -> Result<(), MethodError> {
        self.insert(name.into(), Route { target: Target::Handler(Arc::new(handler)), deadline: None })
    }

    /// [`MethodsHandle::register`] with a deadline of its own.
    pub fn register_with_deadline(
        &self,
        name: impl Into<String>,
        deadline: Duration,
        handler: impl MethodHandler,
    ) -> Result<(), MethodError> {
        self.insert(
            name.into(),
            Route { target: Target::Handler(Arc::new(handler)), deadline: Some(deadline) },
        )
    }

    /// Handles method `name` in an actor: each call is a [`MethodInvoked`] message whose
    /// answer is the response (under the default deadline; a closed or full mailbox answers
    /// 503).
    pub fn register_recipient(
        &self,
        name: impl Into<String>,
        recipient: Recipient<MethodInvoked>,
    ) -> Result<(), MethodError> {
        self.register(name, RecipientHandler(recipient))
    }

    /// Handles method `name` with a synchronous closure.
    pub fn register_fn(
        &self,
        name: impl Into<String>,
        f: impl Fn(MethodCall) -> MethodResponse + Send + Sync + 'static,
    ) -> Result<(), MethodError> {
        self.register(name, SyncHandler(f))
    }

    /// Delivers calls of method `name` as a stream with `capacity` slots (a call finding it
    /// full is answered 503). Each call carries a [`Responder`]. Dropping the stream
    /// unregisters the method.
    pub fn stream(&self, name: impl Into<String>, capacity: usize) -> Result<MethodStream, MethodError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.insert(name.into(), Route { target: Target::Stream(tx), deadline: None })?;
        Ok(MethodStream { rx })
    }

    /// Removes the handler of `name`; `true` if there was one.
    pub fn unregister(&self, name: &str) -> bool {
        self.args.registry.write().by_name.remove(name).is_some()
    }

    /// Handles every method without a handler of its own (instead of the built-in 404).
    pub fn set_default(&self, handler: impl MethodHandler) {
        self.args.registry.write().default =
            Some(Route { target: Target::Handler(Arc::new(handler)), deadline: None });
        self.route();
    }

    /// Delivers every method without a handler of its own as a stream (see
    /// [`MethodsHandle::stream`]).
    pub fn default_stream(&self, capacity: usize) -> MethodStream {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.args.registry.write().default = Some(Route { target: Target::Stream(tx), deadline: None });
        self.route();
        MethodStream { rx }
    }

    /// Back to the built-in default: 404 with `{"error": "method not found", "method": name}`.
    pub fn clear_default(&self) {
        self.args.registry.write().default = None;
    }

    /// The deadline of handlers registered without one of their own (default 30 s). The
    /// service's own timeout is chosen by the caller and not sent to the device: keep this
    /// below it.
    pub fn set_deadline(&self, deadline: Duration) {
        self.args.registry.write().set_deadline(deadline);
    }

    /// Names with a handler of their own, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.args.registry.read().by_name.keys().cloned().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Args {
        delay: u64,
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty payload"),
            (b"  \n", "empty payload"),
            (b"{not json", "key must be a string"),
            (b"\xff\xfe", "expected value"),
            (b"\"a string\"", "invalid type"),
            (b"{\"delay\":\"soon\"}", "invalid type"),
            (b"{\"delay\":-1}", "invalid value"),
            (b"{}", "missing field"),
            (b"{\"delay\":1} trailing", "trailing characters"),
        ];
        for (payload, want) in cases {
            let call = MethodCall::new("m", "1", Bytes::copy_from_slice(payload));
            match call.json::<Args>() {
                Err(MethodError::InvalidPayload { method, reason }) => {
                    assert_eq!(method, "m");
                    assert!(reason.contains(want), "{payload:?}: {reason}");
                }
                other => panic!("{payload:?}: {other:?}"),
            }
        }
        let ok = MethodCall::new("m", "1", &b"{\"delay\":5}"[..]);
        assert_eq!(ok.json::<Args>().unwrap(), Args { delay: 5 });
    }

    #[test]
    fn responses_build_json_bodies() {
        let r = MethodResponse::error(418, "teapot");
        assert_eq!((r.status, &r.payload[..]), (418, &br#"{"error":"teapot"}"#[..]));
        assert_eq!(MethodResponse::ok(json!({"a": 1})).payload, Bytes::from_static(br#"{"a":1}"#));
        assert!(MethodResponse::empty(204).payload.is_empty());
        let mut bad = HashMap::new();
        bad.insert(vec![1u8], 1);
        assert!(matches!(MethodResponse::json(200, &bad), Err(MethodError::Serialize { .. })));
    }
}
