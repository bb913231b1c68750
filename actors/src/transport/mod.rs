//! The narrow seam between the actors and an MQTT client library.
//!
//! A [`Transport`] turns [`ConnectParams`] into a live [`Link`]. A link publishes (each
//! publish returns a future of its completion), subscribes, unsubscribes and disconnects;
//! its events (inbound messages, loss) arrive on a stream. The actors
//! see nothing of the client library behind it, so a second transport can be added and
//! measured without touching them. Each connection gets a fresh link: whatever the old one
//! had in flight is the Publisher's to resend, never the library's.
//!
//! Logging: this crate never logs credentials (a proxy URL appears in errors with its user
//! name and password redacted), but paho-mqtt logs its connect options (password, SAS token,
//! presigned URL, custom-authorizer user name, and the C library's trace the proxy's
//! `Proxy-Authorization`) at `debug` under the `log` targets `paho_mqtt` and `paho_mqtt_c`, and the WebSocket library under the native
//! transport logs the upgrade request (a presigned SigV4 URL with its signature and session
//! token) at `trace` under `tungstenite` and `tokio_tungstenite`. Keep those targets at
//! `info` or above in production filters (the device agent caps them whatever its level).

mod native;
mod paho;
mod tls_diag;

use std::sync::Arc;
use std::time::Duration;

use connector_core::{ConnectFailure, ConnectParams, DisconnectReason, InboundMessage, OutboundPacket, QoS};
use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedReceiver;

pub use native::{NativeTransport, TlsHook};
pub use paho::PahoTransport;

/// The environment variable that picks the transport of connectors whose builder names none
/// (`paho` or `native`; how the suites run over both).
pub const TRANSPORT_ENV: &str = "CONNECTOR_TRANSPORT";

/// The two transports, by name (`paho`, `native`), for configuration files and the
/// environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// [`PahoTransport`]: the Eclipse Paho C client under paho-mqtt.
    Paho,
    /// [`NativeTransport`]: MQTT on the actors' own runtime, TLS through OpenSSL.
    Native,
}

impl TransportKind {
    /// The kind used when nothing names one: the native transport (ADR 008 has the
    /// measurements behind the choice).
    pub const DEFAULT: TransportKind = TransportKind::Native;

    /// Its name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Paho => "paho",
            TransportKind::Native => "native",
        }
    }

    /// A transport of this kind allowing `max_inflight` unacknowledged QoS 1 publishes per
    /// link.
    pub fn build(self, max_inflight: usize) -> Arc<dyn Transport> {
        match self {
            TransportKind::Paho => Arc::new(PahoTransport::new(max_inflight)),
            TransportKind::Native => Arc::new(NativeTransport::new(max_inflight)),
        }
    }

    /// [`TRANSPORT_ENV`]'s choice, else [`TransportKind::DEFAULT`]. An unknown name in the
    /// variable is ignored with a warning.
    pub fn from_env() -> TransportKind {
        match std::env::var(TRANSPORT_ENV) {
            Ok(v) => v.parse().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring {TRANSPORT_ENV}");
                TransportKind::DEFAULT
            }),
            Err(_) => TransportKind::DEFAULT,
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport name that is neither `paho` nor `native`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?}: expected \"paho\" or \"native\"")]
pub struct UnknownTransport(pub String);

impl std::str::FromStr for TransportKind {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "paho" => Ok(TransportKind::Paho),
            "native" => Ok(TransportKind::Native),
            other => Err(UnknownTransport(other.to_owned())),
        }
    }
}

/// The transport of a connector whose builder names none: [`TransportKind::from_env`].
pub fn default_transport(max_inflight: usize) -> Arc<dyn Transport> {
    TransportKind::from_env().build(max_inflight)
}

/// A transport failure on a live link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The link is down.
    #[error("not connected")]
    NotConnected,
    /// The client library's buffers are full; try again after a completion.
    #[error("transport busy")]
    Busy,
    /// The broker refused the operation (e.g. a SUBACK failure code).
    #[error("refused by the broker: {0}")]
    Refused(String),
    /// The client library failed the operation.
    #[error("transport failure: {0}")]
    Failed(String),
    /// A probe of the link went unanswered.
    #[error("no answer from the broker within {after:?}")]
    NoAnswer {
        /// How long the probe waited.
        after: Duration,
    },
}

/// Acknowledges an inbound QoS 1 message once its recipients have taken it (the native
/// transport sends its PUBACK then; dropping it unused leaves the message unacknowledged, for
/// the broker to send again on the next connection).
pub struct Acker(Box<dyn FnOnce() + Send>);

impl Acker {
    /// An acknowledgement that runs `f`.
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Self(Box::new(f))
    }

    /// Acknowledges.
    pub fn ack(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Acker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acker")
    }
}

/// Something that happened on a link.
#[derive(Debug)]
pub enum LinkEvent {
    /// A message arrived; a QoS 1 message comes with its acknowledgement when the transport
    /// leaves that to the recipient (`None`: the client library acknowledged it already).
    Message(InboundMessage, Option<Acker>),
    /// The link ended.
    Lost(DisconnectReason),
}

/// The completion of one publish: PUBACK (QoS 1) or written (QoS 0), or why not.
pub type PublishCompletion = BoxFuture<'static, Result<(), TransportError>>;

/// A live connection.
pub trait Link: Send + Sync + 'static {
    /// Hands a publish to the client and returns the future of its completion. A link that
    /// dies may leave such futures pending for ever: their owner drops them on link loss.
    fn publish(&self, packet: &OutboundPacket) -> Result<PublishCompletion, TransportError>;
    /// Subscribes; resolves to the granted QoS per filter (`None` = refused).
    fn subscribe(
        &self,
        filters: Vec<(String, QoS)>,
    ) -> BoxFuture<'static, Result<Vec<Option<QoS>>, TransportError>>;
    /// Unsubscribes.
    fn unsubscribe(&self, filters: Vec<String>) -> BoxFuture<'static, Result<(), TransportError>>;
    /// Sends DISCONNECT and closes, waiting at most `timeout`.
    fn disconnect(&self, timeout: Duration) -> BoxFuture<'static, ()>;
    /// Asks whether the broker is still there: resolves `Ok` as soon as the broker is heard
    /// from after the call (a PINGRESP to a PINGREQ sent now, where the client library can
    /// send one; otherwise any acknowledgement or message), or with
    /// [`TransportError::NoAnswer`] when `timeout` passes in silence. The stall watchdog
    /// calls it before declaring a link dead.
    fn probe(&self, timeout: Duration) -> BoxFuture<'static, Result<(), TransportError>>;
}

/// What a link has heard from its broker: a count bumped by every packet that came from
/// it (message, acknowledgement), with a notifier, so that a probe can wait for the next
/// one. Bumped from any thread.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    count: std::sync::atomic::AtomicU64,
    notify: tokio::sync::Notify,
}

impl Heard {
    /// Something came from the broker.
    pub(crate) fn bump(&self) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Waits up to `timeout` for something to come after this call.
    pub(crate) fn probe(
        self: Arc<Self>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        let mark = self.count.load(std::sync::atomic::Ordering::Acquire);
        Box::pin(async move {
            let heard = async {
                loop {
                    let next = self.notify.notified();
                    if self.count.load(std::sync::atomic::Ordering::Acquire) != mark {
                        return;
                    }
                    next.await;
                }
            };
            tokio::time::timeout(timeout, heard)
                .await
                .map_err(|_| TransportError::NoAnswer { after: timeout })
        })
    }
}

/// A link just made, with its two streams.
pub struct Connected {
    /// The link.
    pub link: Arc<dyn Link>,
    /// Whether the broker kept the session.
    pub session_present: bool,
    /// Inbound messages and loss.
    pub events: UnboundedReceiver<LinkEvent>,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected").field("session_present", &self.session_present).finish_non_exhaustive()
    }
}

/// Makes links.
pub trait Transport: Send + Sync + 'static {
    /// One connect attempt.
    fn connect(&self, params: ConnectParams) -> BoxFuture<'static, Result<Connected, ConnectFailure>>;
}
