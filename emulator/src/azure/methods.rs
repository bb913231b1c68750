//! Direct methods: the hub publishes `$iothub/methods/POST/{name}/?$rid={rid}` (QoS 0)
//! and waits for `$iothub/methods/res/{status}/?$rid={rid}` from the *same* identity.

use std::collections::HashMap;
use std::time::Duration;

use futures::channel::oneshot;
use serde_json::Value;

use super::topics::SubKind;
use super::{ConnCmd, Hub, Identity, Peer};
use crate::control::api::{MethodInvocation, MethodResult};

/// Request and response payloads are limited to 128 KB.
pub(crate) const MAX_METHOD_BYTES: usize = 128 * 1024;

/// What the device answered.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub status: i64,
    pub payload: Vec<u8>,
}

/// Calls waiting for an answer, keyed by the identity the request went to and `$rid`.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    calls: HashMap<(Identity, String), oneshot::Sender<Outcome>>,
}

/// A failed invocation; `error_code()` follows the hub's 6-digit codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MethodError {
    #[error("{0}")]
    BadRequest(String),
    #[error("identity {0} not found")]
    NotFound(String),
    #[error("device {0} is not online or not subscribed to methods")]
    NotOnline(String),
    #[error("payload of {size} bytes exceeds {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the device did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the device answered with a payload that is not JSON")]
    BadResponse,
}

impl MethodError {
    /// 6-digit error code (HTTP status × 1000 + detail).
    pub fn error_code(&self) -> u64 {
        match self {
            MethodError::BadRequest(_) => 400_000,
            MethodError::NotFound(_) => 404_001,
            MethodError::NotOnline(_) => 404_103,
            MethodError::TooLarge { .. } => 413_000,
            MethodError::Timeout(_) => 504_101,
            MethodError::BadResponse => 502_000,
        }
    }
}

/// Method names: printable US-ASCII without `$ ( ) < > @ , ; : \ " / [ ] ? = { }`, SP, HT.
fn valid_method_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !br#"$()<>@,;:\"/[]?={}"#.contains(&b))
}

impl Hub {
    /// Invokes a method and waits for the answer (or the timeout).
    pub async fn invoke_method(
        &self,
        id: &Identity,
        inv: &MethodInvocation,
    ) -> Result<MethodResult, MethodError> {
        let timeout = match (inv.timeout_ms, inv.response_timeout_in_seconds) {
            (Some(ms), _) if (1..=300_000).contains(&ms) => Duration::from_millis(ms),
            (Some(_), _) => return Err(MethodError::BadRequest("timeoutMs must be 1..=300000".into())),
            (None, Some(s)) if (5..=300).contains(&s) => Duration::from_secs(s),
            (None, Some(_)) => {
                return Err(MethodError::BadRequest("responseTimeoutInSeconds must be 5..=300".into()))
            }
            (None, None) => self.settings.method_default_timeout,
        };
        let (rid, rx) = self.start_method(id, inv)?;
        tracing::debug!(client_id = %id, method = %inv.method_name, rid = %rid, "method invoked");
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => {
                let payload = if outcome.payload.iter().all(u8::is_ascii_whitespace) {
                    Value::Null
                } else {
                    serde_json::from_slice(&outcome.payload).map_err(|_| MethodError::BadResponse)?
                };
                Ok(MethodResult { status: outcome.status, payload })
            }
            // Timed out, or the pending entry was dropped: the caller sees a timeout.
            _ => {
                self.lock().methods.calls.remove(&(id.clone(), rid));
                Err(MethodError::Timeout(timeout))
            }
        }
    }

    fn start_method(
        &self,
        id: &Identity,
        inv: &MethodInvocation,
    ) -> Result<(String, oneshot::Receiver<Outcome>), MethodError> {
        if !valid_method_name(&inv.method_name) {
            return Err(MethodError::BadRequest(format!("invalid method name {:?}", inv.method_name)));
        }
        let payload = match &inv.payload {
            Some(v) => serde_json::to_vec(v).map_err(|e| MethodError::BadRequest(e.to_string()))?,
            None => Vec::new(),
        };
        if payload.len() > MAX_METHOD_BYTES {
            return Err(MethodError::TooLarge { size: payload.len(), limit: MAX_METHOD_BYTES });
        }
        let mut st = self.lock();
        if st.registry.lookup(id).is_none() {
            return Err(MethodError::NotFound(id.to_string()));
        }
        let peer = Peer::Hub(id.clone());
        if self.subscribed(&st, &peer, SubKind::Methods).is_none() {
            return Err(MethodError::NotOnline(id.to_string()));
        }
        let rid = format!("{:x}", self.next_id());
        let (tx, rx) = oneshot::channel();
        st.methods.calls.insert((id.clone(), rid.clone()), tx);
        let topic = format!("$iothub/methods/POST/{}/?$rid={rid}", inv.method_name);
        if !self.send(&st, &peer, ConnCmd::Publish { topic, payload, qos: 0 }) {
            st.methods.calls.remove(&(id.clone(), rid));
            return Err(MethodError::NotOnline(id.to_string()));
        }
        Ok((rid, rx))
    }

    /// A response from `id`; false when no call of `id` waits for `rid`.
    pub fn method_response(&self, id: &Identity, rid: &str, status: i64, payload: Vec<u8>) -> bool {
        let tx = self.lock().methods.calls.remove(&(id.clone(), rid.to_string()));
        match tx {
            Some(tx) => tx.send(Outcome { status, payload }).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names() {
        assert!(valid_method_name("reboot"));
        assert!(valid_method_name("thermostat1*getMaxMinReport"));
        for bad in ["", "a b", "a/b", "a$", "a?", "é"] {
            assert!(!valid_method_name(bad), "{bad}");
        }
    }
}
