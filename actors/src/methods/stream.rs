//! Calls delivered as a stream, each with its [`Responder`].

use super::*;

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
    pub(crate) slot: Arc<Mutex<Option<Answer>>>,
    pub(crate) method: String,
    pub(crate) _done: oneshot::Sender<()>,
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
    pub(crate) rx: mpsc::Receiver<IncomingCall>,
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
