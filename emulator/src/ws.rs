//! MQTT over secure WebSockets, as the hub serves it on port 443: TLS with the emulator's
//! server certificate, an HTTP/1.1 upgrade on `/$iothub/websocket` with subprotocol
//! `mqtt`, then MQTT packets carried in binary frames.
//!
//! # How
//! The listener terminates TLS (tokio-openssl, the same acceptor as the MQTT listener),
//! parses the upgrade request (httparse) and answers it, then lets tungstenite frame the
//! WebSocket. The MQTT byte stream is **relayed** over loopback TCP to an internal MQTT
//! listener (not the optional plain-TCP one) served by the same hub logic as the TLS
//! listener: same authentication, same topics, same faults.
//!
//! The relay registers each connection's TLS client certificate (and chain) under the
//! loopback address of its relay connection before sending a byte; the internal
//! listener takes the certificate from there, so X.509 authentication works over
//! WebSockets as over TLS. A connection to the internal listener that the relay did not
//! register is refused at CONNECT (code 5): nothing bypasses the WebSocket listener.
//!
//! # Refused
//! Anything but `GET /$iothub/websocket` (a query string is ignored) with
//! `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13`, a
//! `Sec-WebSocket-Key` and `mqtt` among `Sec-WebSocket-Protocol` gets an HTTP 4xx
//! answer naming the problem, then the connection is closed: 404 (path), 405 (method),
//! 400 (not an upgrade, no key, no `mqtt` subprotocol, unparsable), 426 (version),
//! 431 (head above 8 KiB). Text frames close the WebSocket with 1003 (MQTT is binary).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use openssl::ssl::{Ssl, SslAcceptor};
use openssl::x509::X509;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_openssl::SslStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::azure::telemetry::MAX_D2C_BYTES;

/// The only path upgraded (the hub's).
pub const WS_PATH: &str = "/$iothub/websocket";
/// The only subprotocol accepted.
pub const WS_SUBPROTOCOL: &str = "mqtt";
/// Largest upgrade request head.
const MAX_HEAD: usize = 8 * 1024;
/// Time to finish TLS and send the upgrade request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS client certificate of a relayed connection.
#[derive(Clone)]
pub(crate) struct RelayedPeer {
    /// Leaf certificate, if the client sent one.
    pub cert: Option<X509>,
    /// The chain the client sent.
    pub chain: Vec<X509>,
}

/// Client certificates of relayed connections, by the relay connection's local address
/// (the peer address the internal MQTT listener sees).
#[derive(Default)]
pub(crate) struct RelayPeers {
    map: Mutex<HashMap<SocketAddr, RelayedPeer>>,
}

impl RelayPeers {
    fn insert(&self, addr: SocketAddr, peer: RelayedPeer) {
        self.map.lock().insert(addr, peer);
    }

    fn remove(&self, addr: SocketAddr) {
        self.map.lock().remove(&addr);
    }

    /// The peer registered for a connection of the internal listener from `addr`.
    pub(crate) fn get(&self, addr: SocketAddr) -> Option<RelayedPeer> {
        self.map.lock().get(&addr).cloned()
    }
}

/// Accepts WebSocket connections on `listener` for ever, relaying each to `relay`.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: SslAcceptor,
    relay: SocketAddr,
    peers: Arc<RelayPeers>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let (acceptor, peers) = (acceptor.clone(), peers.clone());
                    conns.spawn_local(async move {
                        if let Err(e) = connection(stream, from, acceptor, relay, peers).await {
                            tracing::info!(peer = %from, error = %e, "websocket connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "websocket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Why a WebSocket connection ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error("tls: {0}")]
    Tls(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("upgrade refused with {status}: {reason}")]
    Refused { status: u16, reason: String },
    #[error("no upgrade request within {0:?}")]
    Timeout(Duration),
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
}

async fn connection(
    stream: TcpStream,
    from: SocketAddr,
    acceptor: SslAcceptor,
    relay: SocketAddr,
    peers: Arc<RelayPeers>,
) -> Result<(), WsError> {
    let _ = stream.set_nodelay(true);
    let (tls, rest) = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let ssl = Ssl::new(acceptor.context()).map_err(|e| WsError::Tls(e.to_string()))?;
        let mut tls = SslStream::new(ssl, stream).map_err(|e| WsError::Tls(e.to_string()))?;
        Pin::new(&mut tls).accept().await.map_err(|e| WsError::Tls(e.to_string()))?;
        let rest = upgrade(&mut tls).await?;
        Ok::<_, WsError>((tls, rest))
    })
    .await
    .map_err(|_| WsError::Timeout(HANDSHAKE_TIMEOUT))??;
    let peer = RelayedPeer {
        cert: tls.ssl().peer_certificate(),
        chain: tls
            .ssl()
            .peer_cert_chain()
            .map(|c| c.iter().map(|x| x.to_owned()).collect())
            .unwrap_or_default(),
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_D2C_BYTES * 4);
    config.max_frame_size = Some(MAX_D2C_BYTES * 4);
    let ws = WebSocketStream::from_partially_read(tls, rest, Role::Server, Some(config)).await;
    let upstream = TcpStream::connect(relay).await?;
    let _ = upstream.set_nodelay(true);
    let local = upstream.local_addr()?;
    peers.insert(local, peer);
    tracing::debug!(peer = %from, relay = %local, "websocket upgraded");
    let result = pump(ws, upstream).await;
    peers.remove(local);
    result
}

/// Reads the upgrade request, answers it, and returns the bytes read past its head.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<Vec<u8>, WsError> {
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
                return match check(&req) {
                    Ok(key) => {
                        let accept = derive_accept_key(key.as_bytes());
                        let head = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {WS_SUBPROTOCOL}\r\n\r\n"
                        );
                        s.write_all(head.as_bytes()).await?;
                        s.flush().await?;
                        Ok(buf.split_off(len))
                    }
                    Err(refusal) => Err(refuse(s, refusal).await),
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

pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) extra: &'static str,
}

impl Refusal {
    pub(crate) fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal { status, reason: reason.into(), extra: "" }
    }
}

pub(crate) fn header<'a>(req: &'a httparse::Request<'_, '_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

pub(crate) fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Checks the upgrade request; returns its `Sec-WebSocket-Key`.
fn check<'a>(req: &'a httparse::Request<'_, '_>) -> Result<&'a str, Refusal> {
    let path = req.path.unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    if path != WS_PATH {
        return Err(Refusal::new(404, format!("no WebSocket endpoint at {path:?}; use {WS_PATH}")));
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
        Some(k) if !k.is_empty() => k,
        _ => return Err(Refusal::new(400, "no Sec-WebSocket-Key")),
    };
    let protocols = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"));
    let mqtt = protocols.into_iter().any(|h| {
        std::str::from_utf8(h.value)
            .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(WS_SUBPROTOCOL)))
    });
    if !mqtt {
        return Err(Refusal::new(400, format!("Sec-WebSocket-Protocol must offer {WS_SUBPROTOCOL:?}")));
    }
    Ok(key)
}

/// Sends the refusal and closes; returns the error to report.
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, r: Refusal) -> WsError {
    let text = match r.status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Refused",
    };
    let body = format!("{}\n", r.reason);
    let head = format!(
        "HTTP/1.1 {} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        r.status,
        body.len(),
        r.extra
    );
    let sent = async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        s.flush().await?;
        s.shutdown().await
    };
    if let Err(e) = sent.await {
        tracing::debug!(error = %e, "sending the upgrade refusal failed");
    }
    WsError::Refused { status: r.status, reason: r.reason }
}

/// The length of the first complete MQTT control packet in `bytes` (fixed header with its
/// variable-length "remaining length", then that many bytes), or `None` while incomplete.
/// Only the framing is read here; the packet itself is decoded by ntex-mqtt upstream.
fn packet_len(bytes: &[u8]) -> Option<usize> {
    let mut remaining: usize = 0;
    for i in 0..4 {
        let b = *bytes.get(1 + i)?;
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 2 + i + remaining;
            return (bytes.len() >= total).then_some(total);
        }
    }
    // A fifth length byte is malformed MQTT; the hub side never sends one. Frame what is
    // there rather than stall.
    Some(bytes.len().min(5))
}

/// Copies MQTT bytes both ways until either side ends, then closes the other.
pub(crate) async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    upstream: TcpStream,
) -> Result<(), WsError> {
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let inbound = async {
        while let Some(msg) = ws_rx.next().await {
            match msg? {
                Message::Binary(data) => up_tx.write_all(&data).await?,
                Message::Text(_) => return Ok(Some(CloseCode::Unsupported)),
                Message::Close(_) => return Ok(None),
                // Pings are answered by tungstenite; pongs and raw frames carry nothing.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        Ok::<_, WsError>(None)
    };
    let outbound = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = up_rx.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, WsError>(());
            }
            pending.extend_from_slice(&buf[..n]);
            // One MQTT control packet per binary frame, as the hub sends them: paho's
            // WebSocket reader loses a second packet that shares a frame with the first.
            let mut start = 0;
            while let Some(len) = packet_len(&pending[start..]) {
                ws_tx.send(Message::binary(pending[start..start + len].to_vec())).await?;
                start += len;
            }
            pending.drain(..start);
        }
    };
    let (result, code) = tokio::select! {
        r = inbound => match r {
            Ok(Some(code)) => (Ok(()), code),
            Ok(None) => (Ok(()), CloseCode::Normal),
            Err(e) => (Err(e), CloseCode::Error),
        },
        r = outbound => (r, CloseCode::Normal),
    };
    // The hub side closed (refused CONNECT, dropped connection, shutdown) or the client
    // did: end both.
    let _ = up_tx.shutdown().await;
    let reason = if code == CloseCode::Unsupported { "MQTT needs binary frames" } else { "" };
    let _ = ws_tx.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    let _ = ws_tx.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_check(raw: &str) -> Result<String, u16> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        assert!(matches!(req.parse(raw.as_bytes()), Ok(httparse::Status::Complete(_))));
        check(&req).map(str::to_owned).map_err(|r| r.status)
    }

    const GOOD: &str = "GET /$iothub/websocket HTTP/1.1\r\nHost: h:443\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

    #[test]
    fn outbound_bytes_are_framed_one_packet_at_a_time() {
        // PUBACK (4 bytes) then a PUBLISH with a two-byte remaining length (200 bytes).
        let mut bytes = vec![0x40, 0x02, 0x00, 0x01];
        let mut publish = vec![0x30, 0xc8, 0x01];
        publish.extend(std::iter::repeat_n(b'x', 200));
        bytes.extend(&publish);
        assert_eq!(packet_len(&bytes), Some(4));
        assert_eq!(packet_len(&bytes[4..]), Some(203));
        assert_eq!(packet_len(&bytes[4..100]), None);
        assert_eq!(packet_len(&[0x40]), None);
        assert_eq!(packet_len(&[]), None);
        assert_eq!(packet_len(&[0xc0, 0x00]), Some(2));
        assert_eq!(packet_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), Some(5));
    }

    #[test]
    fn the_hub_upgrade_request_is_accepted() {
        assert_eq!(parse_check(GOOD).as_deref(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        // RFC 6455 §1.3's example.
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let listed = GOOD
            .replace("Protocol: mqtt", "Protocol: mqttv3.1, MQTT")
            .replace("Upgrade\r\n", "keep-alive, Upgrade\r\n");
        assert!(parse_check(&listed).is_ok());
    }

    #[test]
    fn everything_else_is_refused_with_a_4xx() {
        assert_eq!(parse_check(&GOOD.replace("/$iothub/websocket", "/mqtt")), Err(404));
        assert_eq!(parse_check(&GOOD.replace("GET ", "POST ")), Err(405));
        assert_eq!(parse_check(&GOOD.replace("Sec-WebSocket-Protocol: mqtt\r\n", "")), Err(400));
        assert_eq!(parse_check(&GOOD.replace("Protocol: mqtt", "Protocol: wamp")), Err(400));
        assert_eq!(parse_check(&GOOD.replace("Upgrade: websocket", "Upgrade: h2c")), Err(400));
        assert_eq!(parse_check(&GOOD.replace("Version: 13", "Version: 8")), Err(426));
        assert_eq!(
            parse_check(&GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            Err(400)
        );
    }
}
