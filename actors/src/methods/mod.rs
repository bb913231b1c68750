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

use crate::error::PublishError;
use crate::messages::{Received, RouteKey, Shutdown, Sink, Subscribe};
use crate::slots::{PublisherSlot, Slot};
use crate::subscriber::Subscriber;
use crate::supervision::ChildGuard;

/// How long a handler may run before the dispatcher answers 504 for it.
pub const DEFAULT_METHOD_DEADLINE: Duration = Duration::from_secs(30);

mod call;
mod dispatch;
mod handle;
mod handler;
mod stream;
#[cfg(test)]
mod tests;

pub use call::*;
pub(crate) use dispatch::*;
pub use handle::*;
pub use handler::*;
pub use stream::*;

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
