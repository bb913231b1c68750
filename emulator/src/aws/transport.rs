//! The AWS endpoint's transports: TLS (with SNI checked against the endpoint's host
//! names) on two listeners, relayed over loopback to the internal AWS MQTT listener.
//!
//! * `aws_mqtt_port` (AWS's 8883): MQTT with a client certificate; ALPN not needed.
//! * `aws_port` (AWS's 443): routed by ALPN — `x-amzn-mqtt-ca` → MQTT with a client
//!   certificate; `mqtt` → MQTT with custom-authorizer credentials in the CONNECT user
//!   name; `http/1.1` or none → HTTP: `GET /mqtt` WebSocket upgrade (subprotocol `mqtt`
//!   or `mqttv3.1`), authenticated by a SigV4 presigned query (403 when the signature,
//!   key, region or expiry is wrong) or by a custom authorizer's headers/query.
//!
//! Like `ws.rs`, each relay connection is registered (by its loopback address) with
//! what the transport learned ([`PeerInfo`]) before a byte is sent; the internal
//! listener refuses anything not registered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{AlpnError, NameType, Ssl, SslAcceptor, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_openssl::SslStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::{custom_authorize, AwsCore, PeerInfo, Transport, MAX_PAYLOAD_BYTES};
use crate::error::EmulatorError;
use crate::ws::{has_token, header, pump, refuse, Refusal, WsError};

/// The WebSocket path of the AWS endpoint.
pub const AWS_WS_PATH: &str = "/mqtt";
/// ALPN for certificate-authenticated MQTT on the 443-style port.
pub const ALPN_MQTT_CA: &str = "x-amzn-mqtt-ca";
/// ALPN for custom-authorizer MQTT on the 443-style port.
pub const ALPN_MQTT: &str = "mqtt";
/// Server ALPN preference (wire format).
const ALPN_WIRE: &[u8] = b"\x0ex-amzn-mqtt-ca\x04mqtt\x08http/1.1";
const MAX_HEAD: usize = 8 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What each relayed connection is, by the relay connection's local address.
#[derive(Default)]
pub(crate) struct AwsRelayPeers {
    map: Mutex<HashMap<SocketAddr, PeerInfo>>,
}

impl AwsRelayPeers {
    /// The peer registered for a connection of the internal listener from `addr`.
    pub(crate) fn get(&self, addr: SocketAddr) -> Option<PeerInfo> {
        self.map.lock().get(&addr).cloned()
    }
}

/// Which listener a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// 8883-style: certificate MQTT only.
    Mqtt,
    /// 443-style: ALPN routing.
    Alpn,
}

/// TLS ≥ 1.2 with the emulator's server certificate, a client certificate requested
/// (not required), and the ALPN selection of the 443-style port.
pub(crate) fn tls_acceptor(
    cert: &X509,
    key: &PKey<Private>,
    ca: &X509,
) -> Result<SslAcceptor, EmulatorError> {
    let build = || -> Result<SslAcceptor, openssl::error::ErrorStack> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        b.set_private_key(key)?;
        b.set_certificate(cert)?;
        b.add_extra_chain_cert(ca.clone())?;
        b.check_private_key()?;
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        b.set_session_id_context(b"connector-emulator-aws")?;
        b.set_alpn_select_callback(|_, client| {
            openssl::ssl::select_next_proto(ALPN_WIRE, client).ok_or(AlpnError::NOACK)
        });
        Ok(b.build())
    };
    build().map_err(|e| EmulatorError::tls("configure AWS TLS", e))
}

/// Accepts connections on `listener` for ever.
pub(crate) async fn serve(
    listener: TcpListener,
    which: Listener,
    acceptor: SslAcceptor,
    relay: SocketAddr,
    peers: Arc<AwsRelayPeers>,
    core: Arc<AwsCore>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let (acceptor, peers, core) = (acceptor.clone(), peers.clone(), core.clone());
                    conns.spawn_local(async move {
                        if let Err(e) = connection(stream, which, acceptor, relay, peers, core).await {
                            tracing::info!(peer = %from, listener = ?which, error = %e, "AWS connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AWS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection(
    stream: TcpStream,
    which: Listener,
    acceptor: SslAcceptor,
    relay: SocketAddr,
    peers: Arc<AwsRelayPeers>,
    core: Arc<AwsCore>,
) -> Result<(), WsError> {
    let _ = stream.set_nodelay(true);
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let ssl = Ssl::new(acceptor.context()).map_err(|e| WsError::Tls(e.to_string()))?;
        let mut tls = SslStream::new(ssl, stream).map_err(|e| WsError::Tls(e.to_string()))?;
        Pin::new(&mut tls).accept().await.map_err(|e| WsError::Tls(e.to_string()))?;
        Ok::<_, WsError>(tls)
    })
    .await
    .map_err(|_| WsError::Timeout(HANDSHAKE_TIMEOUT))??;
    let sni = tls.ssl().servername(NameType::HOST_NAME).map(str::to_owned);
    if !sni.as_deref().is_some_and(|h| core.accepts_host(h)) {
        let _ = tls.shutdown().await;
        return Err(WsError::Tls(format!("SNI {sni:?} is not the endpoint's host name")));
    }
    let cert = tls.ssl().peer_certificate();
    let alpn = tls.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
    let transport = match (which, alpn.as_deref()) {
        (Listener::Mqtt, _) => Some(Transport::Mtls),
        (Listener::Alpn, Some(p)) if p == ALPN_MQTT_CA.as_bytes() => Some(Transport::Mtls),
        (Listener::Alpn, Some(p)) if p == ALPN_MQTT.as_bytes() => Some(Transport::CustomAuthMqtt),
        (Listener::Alpn, _) => None,
    };
    if let Some(transport) = transport {
        tracing::debug!(listener = ?which, ?transport, "AWS MQTT over TLS");
        let mut upstream = register(relay, &peers, PeerInfo { cert, transport }).await?;
        let result = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
        peers.map.lock().remove(&upstream.local_addr()?);
        return result.map(|_| ()).map_err(WsError::Io);
    }
    let (transport, rest, protocol, key) = upgrade(&mut tls, &core).await?;
    let accept = derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await?;
    tls.flush().await?;
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_PAYLOAD_BYTES * 4);
    config.max_frame_size = Some(MAX_PAYLOAD_BYTES * 4);
    let ws = WebSocketStream::from_partially_read(tls, rest, Role::Server, Some(config)).await;
    let upstream = register(relay, &peers, PeerInfo { cert, transport }).await?;
    let local = upstream.local_addr()?;
    let result = pump(ws, upstream).await;
    peers.map.lock().remove(&local);
    result
}

async fn register(relay: SocketAddr, peers: &AwsRelayPeers, info: PeerInfo) -> Result<TcpStream, WsError> {
    let upstream = TcpStream::connect(relay).await?;
    let _ = upstream.set_nodelay(true);
    peers.map.lock().insert(upstream.local_addr()?, info);
    Ok(upstream)
}

/// Reads and checks the upgrade request; returns the transport (authentication), the
/// bytes read past the head, the subprotocol to echo and the `Sec-WebSocket-Key`.
async fn upgrade(
    s: &mut SslStream<TcpStream>,
    core: &AwsCore,
) -> Result<(Transport, Vec<u8>, String, String), WsError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(WsError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                return match check(&req, core) {
                    Ok((t, proto, key)) => Ok((t, buf.split_off(len), proto, key)),
                    Err(r) => Err(refuse(s, r).await),
                };
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(refuse(s, Refusal::new(431, "request head above 8 KiB")).await);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(refuse(s, Refusal::new(400, format!("unparsable request: {e}"))).await),
        }
    }
}

fn check(req: &httparse::Request<'_, '_>, core: &AwsCore) -> Result<(Transport, String, String), Refusal> {
    let target = req.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != AWS_WS_PATH {
        return Err(Refusal::new(404, format!("no WebSocket endpoint at {path:?}; use {AWS_WS_PATH}")));
    }
    if req.method != Some("GET") {
        return Err(Refusal::new(405, "only GET upgrades"));
    }
    if !has_token(header(req, "upgrade"), "websocket") || !has_token(header(req, "connection"), "upgrade") {
        return Err(Refusal::new(400, "not a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)"));
    }
    if header(req, "sec-websocket-version") != Some("13") {
        return Err(Refusal {
            status: 426,
            reason: "Sec-WebSocket-Version must be 13".into(),
            extra: "Sec-WebSocket-Version: 13\r\n",
        });
    }
    let key = match header(req, "sec-websocket-key") {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => return Err(Refusal::new(400, "no Sec-WebSocket-Key")),
    };
    let offered: Vec<String> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    let protocol = ["mqtt", "mqttv3.1"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .ok_or_else(|| Refusal::new(400, "Sec-WebSocket-Protocol must offer \"mqtt\" (or \"mqttv3.1\")"))?;
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter_map(|h| Some((h.name.to_string(), std::str::from_utf8(h.value).ok()?.to_string())))
        .collect();
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), crate::util::pct_decode(v).unwrap_or_else(|| v.to_string()))
        })
        .collect();
    let transport = if params.iter().any(|(k, _)| k == "X-Amz-Algorithm") {
        let st = core.lock();
        let v = super::sigv4::verify("GET", path, query, &headers, &core.settings.region, core.now(), |k| {
            st.keys.get(k).cloned()
        })
        .map_err(|e| Refusal::new(403, format!("SigV4: {e}")))?;
        Transport::SigV4 { access_key_id: v.access_key_id }
    } else {
        // Custom authorizer: headers first, then query parameters.
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .or_else(|| params.iter().find(|(n, _)| n == name))
                .map(|(_, v)| v.clone())
        };
        let st = core.lock();
        let name = custom_authorize(
            &st.authorizers,
            find("x-amz-customauthorizer-name").as_deref(),
            find("x-amz-customauthorizer-signature").as_deref(),
            find,
        )
        .map_err(|e| Refusal::new(403, format!("custom authorizer: {e}")))?;
        Transport::CustomAuthWs { authorizer: name }
    };
    Ok((transport, protocol.to_string(), key))
}
