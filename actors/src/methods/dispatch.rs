//! Dispatch: the registrations (kept by the supervisor across restarts), running a
//! handler under its deadline, and the obligation to answer every call once.

use super::*;

#[derive(Clone)]
pub(crate) enum Target {
    Handler(Arc<dyn MethodHandler>),
    Stream(mpsc::Sender<IncomingCall>),
}

#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) target: Target,
    pub(crate) deadline: Option<Duration>,
}

/// The registrations. It belongs to the supervisor and outlives dispatcher restarts.
pub(crate) struct Registry {
    pub(crate) by_name: HashMap<String, Route>,
    pub(crate) default: Option<Route>,
    pub(crate) deadline: Duration,
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
    pub(crate) fn dispatch(&self, req: MethodRequest) {
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

    pub(crate) fn to_stream(
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
pub(crate) struct Answer {
    pub(crate) args: MethodsArgs,
    pub(crate) method: String,
    pub(crate) request_id: String,
    pub(crate) pending: bool,
}

impl Answer {
    pub(crate) fn new(args: MethodsArgs, req: &MethodRequest) -> Self {
        Self { args, method: req.name.clone(), request_id: req.request_id.clone(), pending: true }
    }

    /// Hands the answer to the Publisher now; the future resolves on PUBACK.
    pub(crate) fn send(
        mut self,
        response: MethodResponse,
    ) -> impl Future<Output = Result<(), MethodError>> + 'static {
        self.pending = false;
        self.publish(response)
    }

    /// Forgets the obligation (someone else answers).
    pub(crate) fn disarm(mut self) {
        self.pending = false;
    }

    pub(crate) fn publish(
        &self,
        response: MethodResponse,
    ) -> impl Future<Output = Result<(), MethodError>> + 'static {
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
                Ok(crate::slots::send_packet(&self.args.publisher, p))
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
