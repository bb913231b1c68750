//! The byte stream under a native link: TCP (directly, or through an HTTP CONNECT or SOCKS5
//! proxy), then TLS through OpenSSL (chain and host-name verification always on, TLS 1.2 or
//! later), then, for `ws`/`wss`, a WebSocket carrying MQTT in binary frames (subprotocol
//! `mqtt`, the provider's headers on the upgrade request).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use connector_core::{ConnectFailure, ConnectParams, ProxyRefusal, TlsRefusal};
use futures::{Sink, Stream};
use openssl::ssl::SslConnector;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use tokio_tungstenite::WebSocketStream;

/// What a link reads from and writes to.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The stream, boxed.
pub(super) type BoxIo = Box<dyn Io>;

fn transport(message: impl Into<String>) -> ConnectFailure {
    ConnectFailure::Transport { message: message.into() }
}

fn proxy_refused(reason: ProxyRefusal, detail: impl Into<String>) -> ConnectFailure {
    ConnectFailure::Proxy { reason, detail: detail.into() }
}

/// Opens the stream `params` describe; `tls` is the context for `mqtts`/`wss`.
pub(super) async fn open(
    params: &ConnectParams,
    tls: Option<&SslConnector>,
) -> Result<BoxIo, ConnectFailure> {
    let uri = &params.uri;
    let (host, port) = (uri.host(), uri.port());
    let tcp = match &params.http_proxy {
        None => TcpStream::connect((host, port))
            .await
            .map_err(|e| transport(format!("TCP connect to {host}:{port}: {e}")))?,
        Some(proxy) => through_proxy(proxy, host, port).await?,
    };
    let _ = tcp.set_nodelay(true);
    let stream: BoxIo = if uri.scheme().is_tls() {
        let connector = tls.ok_or_else(|| ConnectFailure::Credentials {
            message: "a TLS scheme needs TLS settings".to_owned(),
        })?;
        let sent_cert = params.tls.as_ref().is_some_and(|t| t.client_cert.is_some());
        Box::new(handshake(connector, host, tcp, sent_cert).await?)
    } else {
        Box::new(tcp)
    };
    if uri.scheme().is_websocket() {
        return websocket(params, stream).await;
    }
    Ok(stream)
}

/// The TLS handshake, with the refusal named when there is one to name.
async fn handshake(
    connector: &SslConnector,
    host: &str,
    tcp: TcpStream,
    sent_cert: bool,
) -> Result<SslStream<TcpStream>, ConnectFailure> {
    let ssl = connector
        .configure()
        .and_then(|c| c.into_ssl(host))
        .map_err(|e| ConnectFailure::Credentials { message: format!("TLS setup: {e}") })?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| transport(format!("TLS setup: {e}")))?;
    match Pin::new(&mut stream).connect().await {
        Ok(()) => Ok(stream),
        Err(e) => {
            let verify = stream.ssl().verify_result();
            match super::super::tls_diag::classify(verify, e.ssl_error(), sent_cert) {
                Some((reason, detail)) => Err(ConnectFailure::Tls { reason, detail }),
                None if e.io_error().is_some() => Err(transport(format!("TLS handshake: {e}"))),
                None => {
                    Err(ConnectFailure::Tls { reason: TlsRefusal::HandshakeFailure, detail: e.to_string() })
                }
            }
        }
    }
}

/// A TLS refusal that came after the handshake (with TLS 1.3 the server judges the client
/// certificate then, and its alert arrives on the first read), if `e` is one.
pub(super) fn refusal_after_handshake(e: &io::Error, sent_cert: bool) -> Option<ConnectFailure> {
    let stack = e.get_ref()?.downcast_ref::<openssl::ssl::Error>()?.ssl_error();
    let (reason, detail) =
        super::super::tls_diag::classify(openssl::x509::X509VerifyResult::OK, stack, sent_cert)?;
    Some(ConnectFailure::Tls { reason, detail })
}

/// A proxy URL: `http://[user:password@]host:port` (HTTP CONNECT) or
/// `socks5://[user:password@]host:port`. No `Debug`: it holds the password.
struct ProxyUrl {
    socks: bool,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

fn parse_proxy(url: &str) -> Result<ProxyUrl, ConnectFailure> {
    let bad = |why: &str| ConnectFailure::Credentials {
        message: format!("proxy {}: {why}", connector_core::provider::redact_userinfo(url)),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected scheme://host:port"))?;
    let socks = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "socks5" | "socks5h" => true,
        _ => return Err(bad("only http:// (CONNECT) and socks5:// proxies are supported")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (credentials, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let decode = |s: &str| percent_decode(s);
            (Some((decode(u), decode(p))), hp)
        }
        None => (None, authority),
    };
    let default_port = if socks { 1080 } else { 80 };
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad("the port is not a number"));
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
        match rest.strip_prefix(':') {
            Some(p) => (h, port_of(p)?),
            None => (h, default_port),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (hostport, default_port),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(ProxyUrl { socks, host: host.to_owned(), port, credentials })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

async fn through_proxy(url: &str, host: &str, port: u16) -> Result<TcpStream, ConnectFailure> {
    let p = parse_proxy(url)?;
    let mut tcp = TcpStream::connect((p.host.as_str(), p.port))
        .await
        .map_err(|e| transport(format!("proxy connect to {}:{}: {e}", p.host, p.port)))?;
    if p.socks {
        socks5(&mut tcp, &p, host, port).await?;
    } else {
        http_connect(&mut tcp, &p, host, port).await?;
    }
    Ok(tcp)
}

/// RFC 9110 §9.3.6: `CONNECT host:port`, a 2xx answer, then the tunnel.
async fn http_connect(
    tcp: &mut TcpStream,
    p: &ProxyUrl,
    host: &str,
    port: u16,
) -> Result<(), ConnectFailure> {
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((u, pw)) = &p.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.map_err(|e| transport(format!("proxy: {e}")))?;
    // Read the answer's head byte by byte: nothing of the tunnel may be consumed.
    let mut reader = BufReader::with_capacity(1, &mut *tcp);
    let mut status = String::new();
    reader.read_line(&mut status).await.map_err(|e| transport(format!("proxy: {e}")))?;
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.map_err(|e| transport(format!("proxy: {e}")))?;
        if n == 0 || line == "\r\n" || line == "\n" || line.len() > 8192 {
            break;
        }
    }
    match code {
        Some(c) if (200..300).contains(&c) => Ok(()),
        Some(407) => Err(proxy_refused(ProxyRefusal::AuthenticationFailed, status.trim())),
        Some(_) => Err(proxy_refused(ProxyRefusal::TunnelRefused, status.trim())),
        None => Err(transport(format!("proxy: not an HTTP answer: {}", status.trim()))),
    }
}

/// RFC 1928 (with RFC 1929 user/password authentication): CONNECT to an IPv4 or IPv6
/// address when `host` is one, else by domain name (resolved by the proxy).
async fn socks5(tcp: &mut TcpStream, p: &ProxyUrl, host: &str, port: u16) -> Result<(), ConnectFailure> {
    let io = |e: io::Error| transport(format!("SOCKS5 proxy: {e}"));
    let methods: &[u8] = if p.credentials.is_some() { &[0x00, 0x02] } else { &[0x00] };
    let mut hello = vec![0x05, methods.len() as u8];
    hello.extend_from_slice(methods);
    tcp.write_all(&hello).await.map_err(io)?;
    let mut choice = [0u8; 2];
    tcp.read_exact(&mut choice).await.map_err(io)?;
    match (choice, &p.credentials) {
        ([0x05, 0x00], _) => {}
        ([0x05, 0x02], Some((u, pw))) => {
            if u.len() > 255 || pw.len() > 255 {
                return Err(transport("SOCKS5 proxy: user name or password longer than 255 bytes"));
            }
            let mut auth = vec![0x01, u.len() as u8];
            auth.extend_from_slice(u.as_bytes());
            auth.push(pw.len() as u8);
            auth.extend_from_slice(pw.as_bytes());
            tcp.write_all(&auth).await.map_err(io)?;
            let mut status = [0u8; 2];
            tcp.read_exact(&mut status).await.map_err(io)?;
            if status[1] != 0 {
                return Err(proxy_refused(
                    ProxyRefusal::AuthenticationFailed,
                    format!("SOCKS5 authentication status {}", status[1]),
                ));
            }
        }
        ([0x05, 0xFF], _) => {
            return Err(proxy_refused(
                ProxyRefusal::NoAcceptableMethod,
                if p.credentials.is_some() {
                    "SOCKS5: neither no authentication nor user name and password accepted"
                } else {
                    "SOCKS5: no authentication not accepted (the proxy may want a user name and password)"
                },
            ))
        }
        ([0x05, m], _) => {
            return Err(proxy_refused(
                ProxyRefusal::NoAcceptableMethod,
                format!("SOCKS5: the proxy chose method {m}, which was not offered"),
            ))
        }
        _ => return Err(transport("SOCKS5 proxy: not a SOCKS5 answer")),
    }
    let mut req = vec![0x05, 0x01, 0x00];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            req.push(0x01);
            req.extend_from_slice(&a.octets());
        }
        Ok(std::net::IpAddr::V6(a)) => {
            req.push(0x04);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return Err(transport("SOCKS5 proxy: host name longer than 255 bytes"));
            }
            req.push(0x03);
            req.push(host.len() as u8);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    tcp.write_all(&req).await.map_err(io)?;
    let mut head = [0u8; 4];
    tcp.read_exact(&mut head).await.map_err(io)?;
    if head[1] != 0 {
        return Err(proxy_refused(
            ProxyRefusal::TunnelRefused,
            format!("SOCKS5 reply {}: {}", head[1], socks5_reply(head[1])),
        ));
    }
    let skip = match head[3] {
        0x01 => 4 + 2,
        0x04 => 16 + 2,
        0x03 => {
            let mut n = [0u8; 1];
            tcp.read_exact(&mut n).await.map_err(io)?;
            usize::from(n[0]) + 2
        }
        _ => return Err(transport("SOCKS5 proxy: malformed reply")),
    };
    let mut rest = vec![0u8; skip];
    tcp.read_exact(&mut rest).await.map_err(io)?;
    Ok(())
}

/// The meaning of a SOCKS5 reply code (RFC 1928 §6).
fn socks5_reply(code: u8) -> &'static str {
    match code {
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned",
    }
}

/// The WebSocket upgrade: subprotocol `mqtt`, the provider's headers (SigV4 or a custom
/// authorizer's token may ride there or in the URL's query).
async fn websocket(params: &ConnectParams, stream: BoxIo) -> Result<BoxIo, ConnectFailure> {
    let uri = &params.uri;
    let scheme = if uri.scheme().is_tls() { "wss" } else { "ws" };
    let host = if uri.host().contains(':') { format!("[{}]", uri.host()) } else { uri.host().to_owned() };
    let url = format!("{scheme}://{host}:{}{}", uri.port(), uri.path());
    let mut req = url.into_client_request().map_err(|e| transport(format!("WebSocket request: {e}")))?;
    let headers = req.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", tungstenite::http::HeaderValue::from_static("mqtt"));
    for (k, v) in &params.http_headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| transport(format!("WebSocket header name `{k}` is not valid")))?;
        let value = tungstenite::http::HeaderValue::from_str(v.expose())
            .map_err(|_| transport(format!("WebSocket header `{k}` has a value that is not valid")))?;
        headers.insert(name, value);
    }
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await.map_err(|e| match e {
        tungstenite::Error::Http(resp) => {
            transport(format!("WebSocket upgrade refused: HTTP {}", resp.status()))
        }
        other => transport(format!("WebSocket upgrade: {other}")),
    })?;
    Ok(Box::new(WsIo { ws, read: Bytes::new() }))
}

/// MQTT over WebSocket binary frames as a byte stream.
struct WsIo<S> {
    ws: WebSocketStream<S>,
    read: Bytes,
}

fn ws_err(e: tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.read.is_empty() {
                let n = self.read.len().min(buf.remaining());
                let chunk = self.read.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(Message::Binary(b)))) => self.read = b,
                // Pings are answered by tungstenite on the next write or flush.
                Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {
                    let _ = Pin::new(&mut self.ws).poll_flush(cx);
                }
                Poll::Ready(Some(Ok(Message::Text(_)))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket",
                    )))
                }
                Poll::Ready(Some(Ok(Message::Close(_))) | None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(ws_err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.ws).poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(ws_err(e))),
            Poll::Pending => return Poll::Pending,
        }
        Pin::new(&mut self.ws).start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(ws_err)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_credentials_and_default_ports() {
        let p = parse_proxy("http://u%40x:p%3Aw@proxy.local:3128")
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.socks, p.host.as_str(), p.port), (false, "proxy.local", 3128));
        assert_eq!(p.credentials, Some(("u@x".to_owned(), "p:w".to_owned())));
        let p = parse_proxy("socks5://[::1]").map_err(|e| e.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.socks, p.host.as_str(), p.port, p.credentials), (true, "::1", 1080, None));
        for bad in ["proxy:3128", "ftp://p:1", "http://:1", "http://p:port"] {
            let e = parse_proxy(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("proxy"), "{bad}: {e}");
        }
        // A password never reaches the error.
        let e = parse_proxy("ftp://user:secret@p:1").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
    }
}
