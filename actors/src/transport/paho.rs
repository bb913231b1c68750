//! The paho-mqtt (Eclipse Paho C) transport.
//!
//! Paho's callbacks run on the C library's threads and deadlock if they call back into the
//! client, so they only convert and forward into an unbounded channel. A publish returns
//! paho's delivery token as the completion future; the Publisher polls those futures
//! itself and drops them when the link dies, so tokens of a dead client never leak a task.
//!
//! Proxies: paho tunnels through HTTP `CONNECT` proxies only (`http://[user:pw@]host:port`);
//! a `socks5://` proxy is refused before anything is sent (the native transport speaks
//! SOCKS5). Paho builds its OpenSSL context inside the C library from its SSL options, so
//! [`NativeTransport::with_tls_hook`](super::NativeTransport::with_tls_hook) has no paho
//! counterpart: what the hook would change cannot reach paho's context.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use connector_core::topic_alias::{AliasUse, TopicAliasCache};
use connector_core::{
    ConnectFailure, ConnectParams, DisconnectReason, InboundMessage, MqttVersion, OutboundPacket, PemSource,
    QoS, TlsOptions,
};
use futures::future::BoxFuture;
use paho_mqtt as mqtt;
use parking_lot::Mutex;
use tokio::sync::mpsc::unbounded_channel;
use tracing::{debug, error, warn};

use super::{Connected, Heard, Link, LinkEvent, PublishCompletion, Transport, TransportError};

/// The paho-mqtt transport.
#[derive(Debug, Default, Clone)]
pub struct PahoTransport {
    /// In-flight limit given to the C library (it refuses publishes beyond it).
    pub max_inflight: i32,
}

impl PahoTransport {
    /// A transport whose client allows `max_inflight` unacknowledged publishes.
    pub fn new(max_inflight: usize) -> Self {
        Self { max_inflight: i32::try_from(max_inflight.clamp(1, 65_535)).unwrap_or(65_535) }
    }
}

/// PEM held in memory goes to private files for the C library, removed with the link.
struct TlsFiles {
    _dir: tempfile::TempDir,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

fn materialise(tls: &TlsOptions) -> std::io::Result<TlsFiles> {
    let dir = tempfile::Builder::new().prefix("connector-tls").tempdir()?;
    let write = |name: &str, src: &Option<PemSource>| -> std::io::Result<Option<String>> {
        match src {
            None => Ok(None),
            Some(PemSource::File(p)) => Ok(Some(p.to_string_lossy().into_owned())),
            Some(PemSource::Pem(pem)) => {
                let path = dir.path().join(name);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                opts.open(&path)?.write_all(pem.expose().as_bytes())?;
                Ok(Some(path.to_string_lossy().into_owned()))
            }
        }
    };
    Ok(TlsFiles {
        ca: write("ca.pem", &tls.ca)?,
        cert: write("cert.pem", &tls.client_cert)?,
        key: write("key.pem", &tls.client_key)?,
        _dir: dir,
    })
}

fn ssl_options(tls: &TlsOptions, files: &TlsFiles) -> Result<mqtt::SslOptions, ConnectFailure> {
    let bad = |what: &str, e: mqtt::Error| ConnectFailure::Credentials { message: format!("{what}: {e}") };
    let mut b = mqtt::SslOptionsBuilder::new();
    // Paho's defaults verify neither the chain nor the host name: turn both on, TLS 1.2+.
    b.enable_server_cert_auth(true).verify(true).ssl_version(mqtt::SslVersion::Tls_1_2);
    if let Some(ca) = &files.ca {
        b.trust_store(ca).map_err(|e| bad("trust store", e))?;
    }
    if let Some(cert) = &files.cert {
        b.key_store(cert).map_err(|e| bad("client certificate", e))?;
    }
    if let Some(key) = &files.key {
        b.private_key(key).map_err(|e| bad("private key", e))?;
    }
    if let Some(pw) = &tls.key_password {
        b.private_key_password(pw.expose());
    }
    if let Some(c) = &tls.ciphers {
        b.enabled_cipher_suites(c.as_str());
    }
    if !tls.alpn.is_empty() {
        let protos: Vec<&str> = tls.alpn.iter().map(String::as_str).collect();
        b.alpn_protos(&protos);
    }
    Ok(b.finalize())
}

fn paho_uri(params: &ConnectParams) -> String {
    use connector_core::Scheme;
    let u = &params.uri;
    let host = if u.host().contains(':') { format!("[{}]", u.host()) } else { u.host().to_owned() };
    let scheme = match u.scheme() {
        Scheme::Mqtt => "tcp",
        Scheme::Mqtts => "ssl",
        Scheme::Ws => "ws",
        Scheme::Wss => "wss",
    };
    format!("{scheme}://{host}:{}{}", u.port(), u.path())
}

fn failure_from(e: &mqtt::Error) -> ConnectFailure {
    match e {
        mqtt::Error::ConnectReturn(rc) => {
            let code = *rc as u8;
            ConnectFailure::Refused { code, reason: ConnectFailure::v3_reason(code).to_owned() }
        }
        mqtt::Error::ReasonCode(rc, _) => ConnectFailure::Refused { code: *rc as u8, reason: rc.to_string() },
        mqtt::Error::Timeout | mqtt::Error::TcpConnectTimeout => ConnectFailure::Timeout,
        other => ConnectFailure::Transport { message: other.to_string() },
    }
}

fn inbound(msg: &mqtt::Message) -> InboundMessage {
    let props = msg.properties();
    let mut m = InboundMessage::new(
        msg.topic(),
        bytes::Bytes::copy_from_slice(msg.payload()),
        if msg.qos() == mqtt::QoS::from(mqtt::QOS_0) { QoS::AtMostOnce } else { QoS::AtLeastOnce },
    );
    m.retain = msg.retained();
    if !props.is_empty() {
        m.content_type = props.get_string(mqtt::PropertyCode::ContentType);
        m.correlation_data = props.get_binary(mqtt::PropertyCode::CorrelationData).map(bytes::Bytes::from);
        m.user_properties =
            props.iter(mqtt::PropertyCode::UserProperty).filter_map(|p| p.get_string_pair()).collect();
    }
    m
}

/// The paho message for a packet. With an alias, [`AliasUse::Reuse`] sends an empty topic and
/// [`AliasUse::Bind`] the topic; both carry the Topic Alias property.
fn paho_message(packet: &OutboundPacket, v5: bool, alias: AliasUse) -> Result<mqtt::Message, TransportError> {
    let alias = if v5 { alias } else { AliasUse::Off };
    let topic = match alias {
        AliasUse::Reuse(_) => "",
        AliasUse::Bind(_) | AliasUse::Off => packet.topic.as_str(),
    };
    let mut b = mqtt::MessageBuilder::new()
        .topic(topic)
        .payload(packet.payload.as_ref())
        .qos(i32::from(packet.qos.as_u8()))
        .retained(packet.retain);
    let alias = match alias {
        AliasUse::Bind(a) | AliasUse::Reuse(a) => Some(a),
        AliasUse::Off => None,
    };
    if v5 && (!packet.properties.is_empty() || alias.is_some()) {
        let p = &packet.properties;
        let mut props = mqtt::Properties::new();
        let fail = |e: mqtt::Error| TransportError::Failed(format!("property: {e}"));
        if let Some(a) = alias {
            props.push_u16(mqtt::PropertyCode::TopicAlias, a).map_err(fail)?;
        }
        if let Some(ct) = &p.content_type {
            props.push_string(mqtt::PropertyCode::ContentType, ct).map_err(fail)?;
        }
        if let Some(cd) = &p.correlation_data {
            props.push_binary(mqtt::PropertyCode::CorrelationData, cd.to_vec()).map_err(fail)?;
        }
        if let Some(rt) = &p.response_topic {
            props.push_string(mqtt::PropertyCode::ResponseTopic, rt).map_err(fail)?;
        }
        if let Some(e) = p.message_expiry_secs {
            props.push_u32(mqtt::PropertyCode::MessageExpiryInterval, e).map_err(fail)?;
        }
        for (k, v) in &p.user {
            props.push_string_pair(mqtt::PropertyCode::UserProperty, k, v).map_err(fail)?;
        }
        b = b.properties(props);
    }
    Ok(b.finalize())
}

// Paho C return codes (MQTTAsync.h) that `try_publish` reports inside `Error::Publish`.
const RC_DISCONNECTED: i32 = -3;
const RC_MAX_INFLIGHT: i32 = -4;
const RC_NO_MORE_MSGIDS: i32 = -10;
const RC_MAX_BUFFERED: i32 = -12;

struct PahoLink {
    /// Always `Some` until dropped: the drop hands it to the reaper (see [`reap`]).
    client: Option<mqtt::AsyncClient>,
    v5: bool,
    /// This connection's outbound topic aliases; `None` when aliasing is off.
    aliases: Option<Mutex<TopicAliasCache>>,
    /// What came from the broker (messages, acknowledgements). Paho sends its own PINGREQs
    /// and hides their PINGRESPs, so a probe listens for the next packet it does show.
    heard: Arc<Heard>,
    _tls: Option<TlsFiles>,
}

fn completion_error(e: mqtt::Error) -> TransportError {
    match e {
        mqtt::Error::Disconnected => TransportError::NotConnected,
        other => TransportError::Failed(other.to_string()),
    }
}

/// A link's client is never destroyed on the thread that drops the link (the actors'
/// runtime thread): `MQTTAsync_destroy` takes paho's global lock, which a wedged paho thread
/// may hold for ever, and the runtime would stop with it. The reaper drops it on its own.
impl Drop for PahoLink {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            reap(client, None);
        }
    }
}

impl PahoLink {
    fn client(&self) -> &mqtt::AsyncClient {
        self.client.as_ref().expect("taken only by drop")
    }

    fn try_publish(&self, msg: mqtt::Message) -> Result<PublishCompletion, TransportError> {
        let token = self.client().try_publish(msg).map_err(|e| match e {
            mqtt::Error::Disconnected => TransportError::NotConnected,
            mqtt::Error::Publish(RC_DISCONNECTED, _) => TransportError::NotConnected,
            mqtt::Error::Publish(RC_MAX_INFLIGHT | RC_NO_MORE_MSGIDS | RC_MAX_BUFFERED, _) => {
                TransportError::Busy
            }
            mqtt::Error::MaxBufferedMessages
            | mqtt::Error::MaxMessagesInflight
            | mqtt::Error::NoMoreMsgIds => TransportError::Busy,
            other => TransportError::Failed(other.to_string()),
        })?;
        let heard = self.heard.clone();
        Ok(Box::pin(async move {
            let r = token.await.map_err(completion_error);
            if r != Err(TransportError::NotConnected) {
                // An acknowledgement (or a refusal) came from the broker.
                heard.bump();
            }
            r
        }))
    }
}

impl Link for PahoLink {
    fn publish(&self, packet: &OutboundPacket) -> Result<PublishCompletion, TransportError> {
        // The table stays locked until paho has queued the message, so bindings reach the
        // wire in the order the table handed them out.
        let mut aliases = self.aliases.as_ref().map(|m| m.lock());
        let alias = aliases.as_mut().map_or(AliasUse::Off, |t| t.resolve(&packet.topic));
        let sent = paho_message(packet, self.v5, alias).and_then(|msg| self.try_publish(msg));
        if let (Err(_), AliasUse::Bind(_), Some(t)) = (&sent, alias, aliases.as_mut()) {
            // The binding never left the client: the server does not know it.
            t.forget(&packet.topic);
        }
        sent
    }

    fn subscribe(
        &self,
        filters: Vec<(String, QoS)>,
    ) -> BoxFuture<'static, Result<Vec<Option<QoS>>, TransportError>> {
        let topics: Vec<String> = filters.iter().map(|(f, _)| f.clone()).collect();
        let qos: Vec<i32> = filters.iter().map(|(_, q)| i32::from(q.as_u8())).collect();
        let token = self.client().subscribe_many(&topics, &qos);
        Box::pin(async move {
            let rsp = token.await.map_err(|e| TransportError::Failed(e.to_string()))?;
            let granted: Vec<Option<QoS>> = match rsp.subscribe_many_response() {
                Some(codes) => {
                    codes.into_iter().map(|c| u8::try_from(c).ok().and_then(QoS::from_u8)).collect()
                }
                None => match rsp.subscribe_response() {
                    Some(c) => vec![u8::try_from(c).ok().and_then(QoS::from_u8)],
                    None => filters.iter().map(|(_, q)| Some(*q)).collect(),
                },
            };
            Ok(granted)
        })
    }

    fn unsubscribe(&self, filters: Vec<String>) -> BoxFuture<'static, Result<(), TransportError>> {
        let token = self.client().unsubscribe_many(&filters);
        Box::pin(async move { token.await.map(|_| ()).map_err(|e| TransportError::Failed(e.to_string())) })
    }

    fn disconnect(&self, timeout: Duration) -> BoxFuture<'static, ()> {
        let opts = mqtt::DisconnectOptionsBuilder::new().timeout(timeout).finalize();
        let token = self.client().disconnect(opts);
        Box::pin(async move {
            // Paho's token has been seen never to complete when the broker keeps PUBACKs
            // back; bound the wait so that stopping can never hang.
            match tokio::time::timeout(timeout + Duration::from_secs(1), token).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => debug!(error = %e, "disconnect"),
                Err(_) => warn!("disconnect did not complete in time; closing anyway"),
            }
        })
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'static, Result<(), TransportError>> {
        // Paho cannot be asked for a PINGREQ: listen for anything the broker sends (the
        // PUBACKs the stalled messages are owed, an inbound message).
        self.heard.clone().probe(timeout)
    }
}

impl Transport for PahoTransport {
    fn connect(&self, params: ConnectParams) -> BoxFuture<'static, Result<Connected, ConnectFailure>> {
        let max_inflight = self.max_inflight;
        Box::pin(async move { connect(params, max_inflight).await })
    }
}

struct Started {
    client: mqtt::AsyncClient,
    token: mqtt::ConnectToken,
    events: tokio::sync::mpsc::UnboundedReceiver<LinkEvent>,
    heard: Arc<Heard>,
    tls_files: Option<TlsFiles>,
}

/// Creates the client, installs the forwarding callbacks and starts the connect. Synchronous:
/// paho's option builders hold raw pointers and must not live across an await.
fn start_connect(params: &ConnectParams, max_inflight: i32) -> Result<Started, ConnectFailure> {
    if let Some(proxy) = &params.http_proxy {
        if !proxy.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")) {
            return Err(ConnectFailure::Credentials {
                message: format!(
                    "proxy {}: paho tunnels through http:// (CONNECT) proxies only; a socks5:// proxy needs the native transport",
                    connector_core::provider::redact_userinfo(proxy)
                ),
            });
        }
    }
    let v5 = params.mqtt_version == MqttVersion::V5;
    let uri = paho_uri(params);
    let create = mqtt::CreateOptionsBuilder::new()
        .server_uri(&uri)
        .client_id(&params.client_id)
        .persistence(None)
        // Commands waiting for paho's send thread count as "buffered": allow a full window.
        .max_buffered_messages(max_inflight)
        .mqtt_version(if v5 { mqtt::MQTT_VERSION_5 } else { mqtt::MQTT_VERSION_3_1_1 })
        .finalize();
    let client = mqtt::AsyncClient::new(create)
        .map_err(|e| ConnectFailure::Transport { message: format!("client: {e}") })?;

    let (ev_tx, events) = unbounded_channel();
    let heard = Arc::new(Heard::default());
    {
        let tx = ev_tx.clone();
        let h = heard.clone();
        client.set_message_callback(move |_, msg| {
            h.bump();
            if let Some(msg) = msg {
                let _ = tx.send(LinkEvent::Message(inbound(&msg), None));
            }
        });
        let tx = ev_tx.clone();
        client.set_connection_lost_callback(move |_| {
            let _ = tx.send(LinkEvent::Lost(DisconnectReason::ConnectionLost));
        });
        let tx = ev_tx;
        client.set_disconnected_callback(move |_, _props, reason| {
            let _ = tx.send(LinkEvent::Lost(DisconnectReason::ServerDisconnect { code: reason as u8 }));
        });
    }

    let tls_files = match &params.tls {
        Some(t) => Some(
            materialise(t).map_err(|e| ConnectFailure::Credentials { message: format!("TLS files: {e}") })?,
        ),
        None => None,
    };
    let mut b = if v5 {
        if params.uri.scheme().is_websocket() {
            mqtt::ConnectOptionsBuilder::new_ws_v5()
        } else {
            mqtt::ConnectOptionsBuilder::new_v5()
        }
    } else if params.uri.scheme().is_websocket() {
        mqtt::ConnectOptionsBuilder::new_ws()
    } else {
        mqtt::ConnectOptionsBuilder::new_v3()
    };
    b.keep_alive_interval(params.keep_alive)
        .connect_timeout(params.connect_timeout)
        .max_inflight(max_inflight);
    if v5 {
        b.clean_start(params.clean_session);
        if !params.clean_session {
            // Keep the session for as long as the broker allows.
            let mut props = mqtt::Properties::new();
            let _ = props.push_u32(mqtt::PropertyCode::SessionExpiryInterval, u32::MAX);
            b.properties(props);
        }
    } else {
        b.clean_session(params.clean_session);
    }
    if let Some(u) = &params.username {
        b.user_name(u.as_str());
    }
    if let Some(p) = &params.password {
        b.password(p.expose());
    }
    if let (Some(t), Some(files)) = (&params.tls, &tls_files) {
        b.ssl_options(ssl_options(t, files)?);
    }
    if let Some(proxy) = &params.http_proxy {
        if params.uri.scheme().is_tls() {
            b.https_proxy(proxy.as_str())
        } else {
            b.http_proxy(proxy.as_str())
        };
    }
    if !params.http_headers.is_empty() {
        let headers: Vec<(&str, &str)> =
            params.http_headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        b.http_headers(&headers);
    }
    let token = client.connect(b.finalize());
    Ok(Started { client, token, events, heard, tls_files })
}

/// A connect in progress. Paho's connect token holds a reference to its client, and paho
/// releases its own reference to the token on its callback thread *after* waking us. If our
/// references go first, that late release drops the last client reference inside paho's
/// callback, where `MQTTAsync_destroy` deadlocks every paho client in the process. So a
/// client that does not become a live link (the attempt failed or was abandoned) goes to the
/// reaper, which waits for the token, lets paho's callback finish, and drops both on its
/// own thread.
struct PendingConnect {
    client: Option<mqtt::AsyncClient>,
    token: Option<mqtt::ConnectToken>,
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        if let (Some(client), Some(token)) = (self.client.take(), self.token.take()) {
            reap(client, Some(token));
        }
    }
}

/// How long after a connect token completes its client is kept: paho's callback releases
/// the token microseconds after completing it; this is a generous margin.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// Drops `client` on the reaper thread, after its connect `token` (if any) completed and
/// [`REAP_GRACE`] passed. Never on the caller's thread: if the reaper cannot be had, the client
/// is leaked rather than destroyed where it could block.
fn reap(client: mqtt::AsyncClient, token: Option<mqtt::ConnectToken>) {
    type Item = (mqtt::AsyncClient, Option<mqtt::ConnectToken>, std::time::Instant);
    static REAPER: std::sync::OnceLock<Option<std::sync::Mutex<std::sync::mpsc::Sender<Item>>>> =
        std::sync::OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Item>();
        let spawned = std::thread::Builder::new().name("paho-reaper".into()).spawn(move || {
            // Items arrive in order, so each waits only for what is left of its own grace.
            for (client, token, queued) in rx {
                if let Some(token) = token {
                    let _ = token.wait();
                }
                let due = queued.max(std::time::Instant::now() - Duration::from_millis(1)) + REAP_GRACE;
                std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                drop(client);
            }
        });
        match spawned {
            Ok(_) => Some(std::sync::Mutex::new(tx)),
            Err(e) => {
                error!(error = %e, "cannot start the paho reaper; abandoned clients are leaked");
                None
            }
        }
    });
    // The client itself travels (not a clone), so the last reference is the reaper's.
    let item = (client, token, std::time::Instant::now());
    let unsent = match reaper.as_ref().map(|tx| tx.lock()) {
        Some(Ok(tx)) => tx.send(item).err().map(|e| e.0),
        _ => Some(item),
    };
    if let Some((client, _, _)) = unsent {
        // Keep the client for ever rather than risk the deadlock.
        std::mem::forget(client);
    }
}

async fn connect(params: ConnectParams, max_inflight: i32) -> Result<Connected, ConnectFailure> {
    let v5 = params.mqtt_version == MqttVersion::V5;
    let Started { client, token, events, heard, tls_files } = start_connect(&params, max_inflight)?;
    let mut pending = PendingConnect { client: Some(client), token: Some(token) };
    let token = pending.token.as_mut().expect("set just above");
    // A failed attempt's client and token go to the reaper when `pending` drops.
    let rsp = match token.await {
        Ok(rsp) => rsp,
        // Paho names no TLS reason: find it (see tls_diag).
        Err(e) => return Err(super::tls_diag::explain(&params, failure_from(&e)).await),
    };
    let client = pending.client.take().expect("set just above");
    let session_present = rsp.connect_response().is_some_and(|r| r.session_present);

    if !session_present && !params.clean_session {
        // Normal on a first connection; the Subscriber subscribes again either way.
        debug!(client = %params.client_id, "broker has no session for this client; subscribing afresh");
    }
    let aliases = if v5 {
        let server_max = rsp.properties().get_int(mqtt::PropertyCode::TopicAliasMaximum).unwrap_or(0);
        let max = params.topic_aliasing.effective_max(u16::try_from(server_max).unwrap_or(0));
        if max > 0 {
            debug!(client = %params.client_id, aliases = max, server_max, "outbound topic aliases on");
        }
        (max > 0).then(|| Mutex::new(TopicAliasCache::new(max)))
    } else {
        None
    };
    let link = PahoLink { client: Some(client), v5, aliases, heard, _tls: tls_files };
    Ok(Connected { link: Arc::new(link), session_present, events })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(topic: &str) -> OutboundPacket {
        OutboundPacket {
            topic: topic.to_owned(),
            payload: bytes::Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }
    }

    #[test]
    fn aliased_messages_carry_the_alias_and_omit_a_bound_topic() -> Result<(), TransportError> {
        let alias = |m: &mqtt::Message| m.properties().get_int(mqtt::PropertyCode::TopicAlias);
        let m = paho_message(&packet("a/b"), true, AliasUse::Bind(3))?;
        assert_eq!((m.topic(), alias(&m)), ("a/b", Some(3)));
        let m = paho_message(&packet("a/b"), true, AliasUse::Reuse(3))?;
        assert_eq!((m.topic(), alias(&m)), ("", Some(3)));
        let m = paho_message(&packet("a/b"), true, AliasUse::Off)?;
        assert_eq!((m.topic(), alias(&m)), ("a/b", None));
        // MQTT 3.1.1 has no aliases: the topic always goes.
        let m = paho_message(&packet("a/b"), false, AliasUse::Reuse(3))?;
        assert_eq!((m.topic(), alias(&m)), ("a/b", None));
        Ok(())
    }
}
