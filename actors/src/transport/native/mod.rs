//! The native transport: MQTT 3.1.1 and 5 on the actors' own tokio runtime, one task per
//! connection and no thread of its own, TLS through OpenSSL, WebSocket and HTTP CONNECT /
//! SOCKS5 proxies ([`io`]), rumqttc's packet codec ([`wire`]).
//!
//! A connection's task reads and writes its stream. Writes are batched: whatever is queued
//! when the task gets to write goes out in one write (up to 64 KiB), so a full window of
//! PUBLISHes costs a few syscalls, not one each. Nothing here blocks the runtime thread,
//! and a link that is dropped ends its task (and closes its socket) at once.
//!
//! Keep-alive: a PINGREQ after `keep_alive` without anything written, and the link is lost
//! when its PINGRESP (or anything else) does not come within the ping timeout (the smaller
//! of 10 s and the keep-alive). [`Link::probe`] sends a PINGREQ at once and waits for the
//! broker to answer anything.
//!
//! The TLS contexts (trust store, client certificate and key read from their files) are
//! built once per distinct set of TLS settings and files and shared by every connection
//! that uses them, as a gateway's thousands of devices do. A [`TlsHook`]
//! ([`NativeTransport::with_tls_hook`]) adjusts each of them after the fixed settings.

mod io;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use connector_core::topic_alias::{AliasUse, TopicAliasCache};
use connector_core::{
    ConnectFailure, ConnectParams, DisconnectReason, OutboundPacket, PemSource, QoS, TlsOptions,
};
use futures::future::BoxFuture;
use openssl::error::ErrorStack;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslVerifyMode, SslVersion};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{Connected, Heard, Link, LinkEvent, PublishCompletion, Transport, TransportError};
use wire::{Incoming, Proto};

/// Bytes gathered into one write at most.
const BATCH_BYTES: usize = 64 * 1024;
/// Topic aliases the server may use towards us (MQTT 5).
const INBOUND_ALIASES: u16 = 64;
/// The longest wait for a PINGRESP.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A function that adjusts the OpenSSL client context of a [`NativeTransport`] after its
/// fixed settings (see [`NativeTransport::with_tls_hook`]).
pub type TlsHook = Arc<dyn Fn(&mut SslConnectorBuilder) -> Result<(), ErrorStack> + Send + Sync>;

/// What every link of a transport shares: the in-flight limit, the TLS hook and the TLS
/// contexts.
#[derive(Default)]
struct Inner {
    /// Most QoS 1 publishes in flight on one link (the server's Receive Maximum may lower it).
    max_inflight: usize,
    tls_hook: Option<TlsHook>,
    contexts: Mutex<Vec<(TlsKey, Arc<tokio::sync::OnceCell<SslConnector>>)>>,
}

/// The context for `tls`: the fixed settings, then `hook`. A hook that turns certificate
/// verification off or allows a version before TLS 1.2 is obeyed, and said so in a warning
/// each time a context is built with it.
fn build_context(tls: &TlsOptions, hook: Option<&TlsHook>) -> Result<SslConnector, String> {
    let mut b = super::tls_diag::connector_builder(tls).map_err(|e| format!("TLS setup: {e}"))?;
    let Some(hook) = hook else { return Ok(b.build()) };
    hook(&mut b).map_err(|e| format!("TLS hook: {e}"))?;
    let old = [SslVersion::SSL3, SslVersion::TLS1, SslVersion::TLS1_1];
    let min = b.min_proto_version();
    if min.is_none_or(|v| old.contains(&v)) {
        warn!("the TLS hook allows protocol versions before TLS 1.2");
    }
    let built = b.build();
    if !built.context().verify_mode().contains(SslVerifyMode::PEER) {
        warn!("the TLS hook turned server certificate verification off");
    }
    Ok(built)
}

impl Inner {
    /// The TLS context for these settings, built once (on the blocking pool: it reads files).
    /// Connections that ask while it is being built wait for that build: a fleet connecting
    /// at once builds one context, not one each (each build loads the trust store; a few
    /// hundred concurrent ones cost hundreds of MiB of short-lived allocations).
    async fn context(self: &Arc<Self>, tls: &TlsOptions) -> Result<SslConnector, ConnectFailure> {
        let key = TlsKey::of(tls);
        let cell = {
            let mut cache = self.contexts.lock();
            match cache.iter().find(|(k, _)| *k == key) {
                Some((_, c)) => c.clone(),
                None => {
                    // Settings whose files changed since are dropped with their context.
                    cache.retain(|(k, _)| k.settings != key.settings);
                    let c = Arc::new(tokio::sync::OnceCell::new());
                    cache.push((key, c.clone()));
                    c
                }
            }
        };
        let built = cell
            .get_or_try_init(|| async {
                let t = tls.clone();
                let hook = self.tls_hook.clone();
                tokio::task::spawn_blocking(move || build_context(&t, hook.as_ref()))
                    .await
                    .map_err(|e| ConnectFailure::Credentials { message: format!("TLS setup: {e}") })?
                    .map_err(|message| ConnectFailure::Credentials { message })
            })
            .await?;
        Ok(built.clone())
    }
}

/// What a TLS context is built from: the settings and, for files, when they last changed
/// (a certificate rotated in place gets a new context).
#[derive(Clone, PartialEq)]
struct TlsKey {
    settings: TlsOptions,
    stamps: Vec<Option<(SystemTime, u64)>>,
}

impl TlsKey {
    fn of(tls: &TlsOptions) -> Self {
        let stamp = |s: &Option<PemSource>| match s {
            Some(PemSource::File(p)) => {
                std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
            }
            _ => None,
        };
        Self {
            settings: tls.clone(),
            stamps: vec![stamp(&tls.ca), stamp(&tls.client_cert), stamp(&tls.client_key)],
        }
    }
}

/// The native transport (see the module docs). Clones share their TLS contexts: give one
/// transport to many connectors.
#[derive(Clone, Default)]
pub struct NativeTransport(Arc<Inner>);

impl std::fmt::Debug for NativeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTransport")
            .field("max_inflight", &self.0.max_inflight)
            .field("tls_hook", &self.0.tls_hook.is_some())
            .finish_non_exhaustive()
    }
}

impl NativeTransport {
    /// A transport allowing `max_inflight` unacknowledged QoS 1 publishes per link (the
    /// server's Receive Maximum may lower it).
    pub fn new(max_inflight: usize) -> Self {
        Self(Arc::new(Inner {
            max_inflight: max_inflight.clamp(1, 65_535),
            tls_hook: None,
            contexts: Mutex::new(Vec::new()),
        }))
    }

    /// This transport with `hook` run on every OpenSSL client context it builds, after the
    /// fixed settings (TLS 1.2 or later, peer verification, the trust store, the client
    /// certificate and key, the cipher list, ALPN): for what those settings do not cover,
    /// such as a minimum of TLS 1.3, a CA held in memory, signature algorithms or curves.
    /// An error from the hook fails the connect attempt as
    /// [`ConnectFailure::Credentials`]. Contexts built before (by clones of this
    /// transport) are not shared with the new one.
    ///
    /// Verification stays on unless the hook turns it off: the chain is verified against
    /// the trust store (which the hook may extend), and the host name is checked for every
    /// connection (set per connection, out of the hook's reach). A hook that sets
    /// [`SslVerifyMode::NONE`] or allows a version before TLS 1.2 is obeyed, with a
    /// `warn` each time a context is built. The paho transport has no such hook: paho
    /// builds its context inside the C library.
    ///
    /// ```
    /// use connector_actors::transport::NativeTransport;
    /// use openssl::ssl::{SslConnectorBuilder, SslVersion};
    /// let transport = NativeTransport::new(64).with_tls_hook(|b: &mut SslConnectorBuilder| {
    ///     b.set_min_proto_version(Some(SslVersion::TLS1_3))
    /// });
    /// # let _ = transport;
    /// ```
    pub fn with_tls_hook<F>(self, hook: F) -> Self
    where
        F: Fn(&mut SslConnectorBuilder) -> Result<(), ErrorStack> + Send + Sync + 'static,
    {
        Self(Arc::new(Inner {
            max_inflight: self.0.max_inflight,
            tls_hook: Some(Arc::new(hook)),
            contexts: Mutex::new(Vec::new()),
        }))
    }
}

impl Transport for NativeTransport {
    fn connect(&self, params: ConnectParams) -> BoxFuture<'static, Result<Connected, ConnectFailure>> {
        let t = self.0.clone();
        Box::pin(async move {
            let limit = params.connect_timeout;
            match tokio::time::timeout(limit, connect(t, params)).await {
                Ok(r) => r,
                Err(_) => Err(ConnectFailure::Timeout),
            }
        })
    }
}

/// Where an answer goes.
type Reply<T> = oneshot::Sender<Result<T, TransportError>>;

/// A command for a link's task.
enum Cmd {
    Publish { packet: OutboundPacket, alias: AliasUse, done: Reply<()> },
    Subscribe { filters: Vec<(String, QoS)>, done: Reply<Vec<Option<QoS>>> },
    Unsubscribe { filters: Vec<String>, done: Reply<()> },
    PubAck(u16),
    Ping,
    Disconnect(oneshot::Sender<()>),
}

/// Requests waiting for the server's answer, by packet id.
#[derive(Default)]
struct Pending {
    publishes: HashMap<u16, Reply<()>>,
    subscribes: HashMap<u16, Reply<Vec<Option<QoS>>>>,
    unsubscribes: HashMap<u16, Reply<()>>,
    next: u16,
}

impl Pending {
    fn in_use(&self, id: u16) -> bool {
        self.publishes.contains_key(&id)
            || self.subscribes.contains_key(&id)
            || self.unsubscribes.contains_key(&id)
    }

    /// A free packet id (the callers bound what is in flight well below 65,535).
    fn id(&mut self) -> u16 {
        loop {
            self.next = self.next.wrapping_add(1).max(1);
            if !self.in_use(self.next) {
                return self.next;
            }
        }
    }
}

/// What a link's task shares with the link.
struct Shared {
    pending: Mutex<Pending>,
    heard: Arc<Heard>,
    /// QoS 1 publishes handed to the link and not completed.
    outstanding: AtomicUsize,
    limit: usize,
    /// A PINGREQ is waiting for its answer (anything from the server answers it).
    ping_out: Mutex<Option<Instant>>,
    requested_close: AtomicBool,
}

/// A live native connection.
struct NativeLink {
    cmds: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    aliases: Option<Mutex<TopicAliasCache>>,
    task: tokio::task::AbortHandle,
}

impl Drop for NativeLink {
    fn drop(&mut self) {
        // The task (and its socket) ends with the link.
        self.task.abort();
    }
}

impl Link for NativeLink {
    fn publish(&self, packet: &OutboundPacket) -> Result<PublishCompletion, TransportError> {
        let qos1 = packet.qos == QoS::AtLeastOnce;
        if qos1 && self.shared.outstanding.fetch_add(1, Ordering::AcqRel) >= self.shared.limit {
            self.shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(TransportError::Busy);
        }
        let (done, rx) = oneshot::channel();
        // The table stays locked until the command is queued: bindings reach the wire in
        // the order they were handed out.
        let mut aliases = self.aliases.as_ref().map(|m| m.lock());
        let alias = aliases.as_mut().map_or(AliasUse::Off, |t| t.resolve(&packet.topic));
        if self.cmds.send(Cmd::Publish { packet: packet.clone(), alias, done }).is_err() {
            if let (AliasUse::Bind(_), Some(t)) = (alias, aliases.as_mut()) {
                t.forget(&packet.topic);
            }
            if qos1 {
                self.shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(TransportError::NotConnected);
        }
        drop(aliases);
        let shared = self.shared.clone();
        Ok(Box::pin(async move {
            let r = rx.await.unwrap_or(Err(TransportError::NotConnected));
            if qos1 {
                shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
            r
        }))
    }

    fn subscribe(
        &self,
        filters: Vec<(String, QoS)>,
    ) -> BoxFuture<'static, Result<Vec<Option<QoS>>, TransportError>> {
        let (done, rx) = oneshot::channel();
        let sent = self.cmds.send(Cmd::Subscribe { filters, done }).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(TransportError::NotConnected);
            }
            rx.await.unwrap_or(Err(TransportError::NotConnected))
        })
    }

    fn unsubscribe(&self, filters: Vec<String>) -> BoxFuture<'static, Result<(), TransportError>> {
        let (done, rx) = oneshot::channel();
        let sent = self.cmds.send(Cmd::Unsubscribe { filters, done }).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(TransportError::NotConnected);
            }
            rx.await.unwrap_or(Err(TransportError::NotConnected))
        })
    }

    fn disconnect(&self, timeout: Duration) -> BoxFuture<'static, ()> {
        let (done, rx) = oneshot::channel();
        self.shared.requested_close.store(true, Ordering::Release);
        let sent = self.cmds.send(Cmd::Disconnect(done)).is_ok();
        let task = self.task.clone();
        Box::pin(async move {
            if sent && tokio::time::timeout(timeout, rx).await.is_err() {
                debug!("DISCONNECT not written in time; closing anyway");
            }
            task.abort();
        })
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'static, Result<(), TransportError>> {
        let answer = self.shared.heard.clone().probe(timeout);
        let _ = self.cmds.send(Cmd::Ping);
        answer
    }
}

async fn connect(t: Arc<Inner>, params: ConnectParams) -> Result<Connected, ConnectFailure> {
    let tls = match (&params.tls, params.uri.scheme().is_tls()) {
        (Some(opts), true) => Some(t.context(opts).await?),
        _ => None,
    };
    let mut stream = io::open(&params, tls.as_ref()).await?;
    let proto = Proto::of(params.mqtt_version);
    let mut out = BytesMut::with_capacity(512);
    let asks = wire::Asks { receive_max: u16::MAX, topic_alias_max: INBOUND_ALIASES };
    wire::connect(&mut out, &params, proto, asks).map_err(|e| ConnectFailure::Credentials { message: e })?;
    let sent_cert = params.tls.as_ref().is_some_and(|t| t.client_cert.is_some());
    let broken = |e: std::io::Error| {
        io::refusal_after_handshake(&e, sent_cert)
            .unwrap_or_else(|| ConnectFailure::Transport { message: format!("before CONNACK: {e}") })
    };
    let wrote = match stream.write_all(&out).await {
        Ok(()) => stream.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = wrote {
        // The server may have refused us with an alert that is still to be read.
        let mut scratch = BytesMut::with_capacity(512);
        if let Ok(Err(read)) =
            tokio::time::timeout(Duration::from_secs(1), stream.read_buf(&mut scratch)).await
        {
            if let Some(refusal) = io::refusal_after_handshake(&read, sent_cert) {
                return Err(refusal);
            }
        }
        return Err(broken(e));
    }
    // Small to start with (a gateway holds thousands of links); reads grow it as needed.
    let mut inbuf = BytesMut::with_capacity(2 * 1024);
    let granted = loop {
        match wire::read(&mut inbuf, proto) {
            Ok(Some(Incoming::ConnAck(Ok(g)))) => break g,
            Ok(Some(Incoming::ConnAck(Err((code, reason))))) => {
                return Err(ConnectFailure::Refused { code, reason })
            }
            Ok(Some(other)) => {
                return Err(ConnectFailure::Transport { message: format!("expected CONNACK, got {other:?}") })
            }
            Ok(None) => {}
            Err(e) => return Err(ConnectFailure::Transport { message: format!("malformed CONNACK: {e}") }),
        }
        if stream.read_buf(&mut inbuf).await.map_err(broken)? == 0 {
            return Err(ConnectFailure::Transport { message: "connection closed before CONNACK".to_owned() });
        }
    };
    let limit = granted.receive_max.map_or(t.max_inflight, |r| usize::from(r).min(t.max_inflight)).max(1);
    let aliases = match proto {
        Proto::V5 => {
            let max = params.topic_aliasing.effective_max(granted.topic_alias_max);
            (max > 0).then(|| Mutex::new(TopicAliasCache::new(max)))
        }
        Proto::V4 => None,
    };
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        heard: Arc::new(Heard::default()),
        outstanding: AtomicUsize::new(0),
        limit,
        ping_out: Mutex::new(None),
        requested_close: AtomicBool::new(false),
    });
    let (cmds, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let session = Session {
        proto,
        shared: shared.clone(),
        keep_alive: params.keep_alive,
        max_packet: granted.max_packet,
        acks: cmds.clone(),
    };
    let task = tokio::spawn(session.run(stream, inbuf, cmd_rx, ev_tx)).abort_handle();
    debug!(client = %params.client_id, session_present = granted.session_present, limit, "native link up");
    let link = NativeLink { cmds, shared, aliases, task };
    Ok(Connected { link: Arc::new(link), session_present: granted.session_present, events })
}

/// A connection's task.
struct Session {
    proto: Proto,
    shared: Arc<Shared>,
    keep_alive: Duration,
    max_packet: Option<u32>,
    /// Where the reader queues PUBACKs for the writer.
    acks: mpsc::UnboundedSender<Cmd>,
}

impl Session {
    async fn run(
        self,
        stream: io::BoxIo,
        inbuf: BytesMut,
        cmds: mpsc::UnboundedReceiver<Cmd>,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) {
        let (rd, wr) = tokio::io::split(stream);
        let this = Arc::new(self);
        let reason = tokio::select! {
            r = this.clone().read(rd, inbuf, events.clone()) => r,
            r = this.clone().write(wr, cmds) => r,
        };
        if !this.shared.requested_close.load(Ordering::Acquire) {
            debug!(reason = reason.label(), "native link lost");
            let _ = events.send(LinkEvent::Lost(reason));
        }
        // Whatever waits for an answer gets `NotConnected` as its senders drop.
        *this.shared.pending.lock() = Pending::default();
    }

    async fn read(
        self: Arc<Self>,
        mut rd: tokio::io::ReadHalf<io::BoxIo>,
        mut buf: BytesMut,
        events: mpsc::UnboundedSender<LinkEvent>,
    ) -> DisconnectReason {
        let mut aliases: HashMap<u16, String> = HashMap::new();
        loop {
            loop {
                let packet = match wire::read(&mut buf, self.proto) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "malformed packet from the server; closing the link");
                        return DisconnectReason::ConnectionLost;
                    }
                };
                self.shared.heard.bump();
                *self.shared.ping_out.lock() = None;
                if let Some(reason) = self.on_packet(packet, &mut aliases, &events) {
                    return reason;
                }
            }
            if buf.capacity() - buf.len() < 2048 {
                buf.reserve(8 * 1024);
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return DisconnectReason::ConnectionLost,
                Ok(_) => {}
            }
        }
    }

    fn on_packet(
        &self,
        packet: Incoming,
        aliases: &mut HashMap<u16, String>,
        events: &mpsc::UnboundedSender<LinkEvent>,
    ) -> Option<DisconnectReason> {
        match packet {
            Incoming::Publish { pkid, alias, mut message } => {
                if let Some(a) = alias {
                    if message.topic.is_empty() {
                        match aliases.get(&a) {
                            Some(t) => message.topic = t.clone(),
                            None => {
                                warn!(alias = a, "PUBLISH with an unknown topic alias; closing the link");
                                return Some(DisconnectReason::ConnectionLost);
                            }
                        }
                    } else if a <= INBOUND_ALIASES {
                        aliases.insert(a, message.topic.clone());
                    }
                }
                // QoS 1: PUBACK once the recipients have taken it (the Subscriber acks in
                // arrival order, so PUBACKs go in the order of their PUBLISHes).
                let ack = (message.qos == QoS::AtLeastOnce).then(|| {
                    let acks = self.acks.clone();
                    super::Acker::new(move || {
                        let _ = acks.send(Cmd::PubAck(pkid));
                    })
                });
                let _ = events.send(LinkEvent::Message(message, ack));
            }
            Incoming::PubAck { pkid, refused } => {
                if let Some(done) = self.shared.pending.lock().publishes.remove(&pkid) {
                    let _ = done.send(match refused {
                        None => Ok(()),
                        Some(code) => Err(TransportError::Refused(format!("PUBACK reason code {code:#04x}"))),
                    });
                }
            }
            Incoming::SubAck { pkid, granted } => {
                if let Some(done) = self.shared.pending.lock().subscribes.remove(&pkid) {
                    let _ = done.send(Ok(granted));
                }
            }
            Incoming::UnsubAck { pkid } => {
                if let Some(done) = self.shared.pending.lock().unsubscribes.remove(&pkid) {
                    let _ = done.send(Ok(()));
                }
            }
            Incoming::Disconnect { code } => return Some(DisconnectReason::ServerDisconnect { code }),
            Incoming::PingResp | Incoming::ConnAck(_) | Incoming::Other => {}
        }
        None
    }

    async fn write(
        self: Arc<Self>,
        mut wr: tokio::io::WriteHalf<io::BoxIo>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) -> DisconnectReason {
        // Grows to a batch's size under load and keeps it; an idle link holds little.
        let mut buf = BytesMut::with_capacity(1024);
        let mut written_qos0 = Vec::new();
        let ping_timeout = PING_TIMEOUT.min(self.keep_alive.max(Duration::from_secs(1)));
        let mut last_write = Instant::now();
        loop {
            let ping_due = last_write + self.keep_alive;
            let ping_deadline = self.shared.ping_out.lock().map(|at| at + ping_timeout);
            let first = tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(c) => c,
                    None => return DisconnectReason::Requested,
                },
                () = tokio::time::sleep_until(ping_due.into()), if !self.keep_alive.is_zero() => Cmd::Ping,
                () = sleep_until_opt(ping_deadline) => {
                    warn!(after = ?ping_timeout, "no answer to PINGREQ; the link is lost");
                    return DisconnectReason::ConnectionLost;
                }
            };
            let mut closing = None;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                if let Cmd::Disconnect(done) = cmd {
                    wire::disconnect(&mut buf, self.proto);
                    closing = Some(done);
                    break;
                }
                self.encode(cmd, &mut buf, &mut written_qos0);
                if buf.len() < BATCH_BYTES {
                    next = cmds.try_recv().ok();
                }
            }
            if !buf.is_empty() {
                if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                    return DisconnectReason::ConnectionLost;
                }
                buf.clear();
                last_write = Instant::now();
            }
            for done in written_qos0.drain(..) {
                let _ = done.send(Ok(()));
            }
            if let Some(done) = closing {
                let _ = wr.shutdown().await;
                let _ = done.send(());
                return DisconnectReason::Requested;
            }
        }
    }

    fn encode(&self, cmd: Cmd, buf: &mut BytesMut, written_qos0: &mut Vec<Reply<()>>) {
        match cmd {
            Cmd::Publish { packet, alias, done } => {
                let qos1 = packet.qos == QoS::AtLeastOnce;
                let mut pending = self.shared.pending.lock();
                let pkid = if qos1 { pending.id() } else { 0 };
                match wire::publish(buf, self.proto, pkid, &packet, alias, self.max_packet) {
                    Ok(()) if qos1 => {
                        pending.publishes.insert(pkid, done);
                    }
                    Ok(()) => written_qos0.push(done),
                    Err(e) => {
                        let _ = done.send(Err(TransportError::Failed(format!("PUBLISH not encoded: {e}"))));
                    }
                }
            }
            Cmd::Subscribe { filters, done } => {
                let mut pending = self.shared.pending.lock();
                let pkid = pending.id();
                match wire::subscribe(buf, self.proto, pkid, &filters) {
                    Ok(()) => {
                        pending.subscribes.insert(pkid, done);
                    }
                    Err(e) => {
                        let _ = done.send(Err(TransportError::Failed(format!("SUBSCRIBE not encoded: {e}"))));
                    }
                }
            }
            Cmd::Unsubscribe { filters, done } => {
                let mut pending = self.shared.pending.lock();
                let pkid = pending.id();
                match wire::unsubscribe(buf, self.proto, pkid, &filters) {
                    Ok(()) => {
                        pending.unsubscribes.insert(pkid, done);
                    }
                    Err(e) => {
                        let _ =
                            done.send(Err(TransportError::Failed(format!("UNSUBSCRIBE not encoded: {e}"))));
                    }
                }
            }
            Cmd::PubAck(pkid) => wire::puback(buf, self.proto, pkid),
            Cmd::Ping => {
                let mut out = self.shared.ping_out.lock();
                if out.is_none() {
                    *out = Some(Instant::now());
                }
                wire::pingreq(buf, self.proto);
            }
            Cmd::Disconnect(_) => {}
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Builds a context with `hook` and returns the warnings logged meanwhile.
    fn warnings_with(hook: TlsHook) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let built = tracing::subscriber::with_default(subscriber, || {
            build_context(&TlsOptions::default(), Some(&hook))
        });
        assert!(built.is_ok(), "{:?}", built.err());
        let text = String::from_utf8_lossy(&out.0.lock()).into_owned();
        text
    }

    #[test]
    fn a_hook_that_keeps_the_fixed_settings_is_not_warned_about() {
        let hook: TlsHook = Arc::new(|b| b.set_cipher_list("ECDHE+AESGCM"));
        let w = warnings_with(hook);
        assert!(!w.contains("WARN"), "{w}");
    }

    #[test]
    fn a_hook_that_turns_verification_off_is_warned_about() {
        let hook: TlsHook = Arc::new(|b| {
            b.set_verify(SslVerifyMode::NONE);
            Ok(())
        });
        let w = warnings_with(hook);
        assert_eq!(w.matches("turned server certificate verification off").count(), 1, "{w}");
        assert!(!w.contains("before TLS 1.2"), "{w}");
    }

    #[test]
    fn a_hook_that_allows_tls_1_0_is_warned_about() {
        let hook: TlsHook = Arc::new(|b| b.set_min_proto_version(Some(SslVersion::TLS1)));
        let w = warnings_with(hook);
        assert_eq!(w.matches("allows protocol versions before TLS 1.2").count(), 1, "{w}");
        let hook: TlsHook = Arc::new(|b| b.set_min_proto_version(None));
        let w = warnings_with(hook);
        assert_eq!(w.matches("allows protocol versions before TLS 1.2").count(), 1, "{w}");
    }

    #[actix_rt::test]
    async fn connections_that_ask_at_once_share_one_context_build() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let builds = Arc::new(AtomicUsize::new(0));
        let counted = builds.clone();
        let t = NativeTransport::new(10).with_tls_hook(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let tls = TlsOptions::default();
        let all = futures::future::join_all((0..32).map(|_| t.0.context(&tls))).await;
        assert!(all.iter().all(Result::is_ok));
        assert_eq!(builds.load(Ordering::SeqCst), 1, "one build for 32 concurrent connections");
        // Other settings: their own context.
        let other = TlsOptions { alpn: vec!["mqtt".into()], ..TlsOptions::default() };
        assert!(t.0.context(&other).await.is_ok() && t.0.context(&tls).await.is_ok());
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }
}
