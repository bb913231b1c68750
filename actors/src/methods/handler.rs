//! Handlers: async and sync closures, actors ([`MethodInvoked`]).

use super::*;

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
pub(crate) struct RecipientHandler(pub(crate) Recipient<MethodInvoked>);

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
pub(crate) struct SyncHandler<F>(pub(crate) F);

impl<F> MethodHandler for SyncHandler<F>
where
    F: Fn(MethodCall) -> MethodResponse + Send + Sync + 'static,
{
    fn call(&self, call: MethodCall) -> MethodFuture {
        let r = (self.0)(call);
        Box::pin(std::future::ready(r))
    }
}
