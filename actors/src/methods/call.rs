//! A method call and its answer: [`MethodCall`], [`MethodResponse`], [`MethodError`].

use super::*;

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
    pub(crate) name: String,
    pub(crate) request_id: String,
    pub(crate) payload: Bytes,
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
