//! [`MethodsHandle`]: registering handlers, streams, actors and the default.

use super::*;

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

    /// The dispatcher's current address, for actor code. A supervised restart replaces the actor, and
    /// this address with it: keep the handle (it always reaches the current one) and call
    /// this when sending, rather than keeping the address.
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
