//! A tiny SOCKS5 proxy (RFC 1928) on a free loopback port, recording what it tunnelled so
//! a test can prove traffic went through it.
//!
//! Only the `CONNECT` command is served, to a domain name, an IPv4 or an IPv6 address.
//! Authentication is either none (method `0x00`) or, when the proxy is started with
//! [`Socks5Proxy::with_credentials`], RFC 1929 user name and password (method `0x02`,
//! the only one then offered): wrong credentials are answered with a failure status and
//! the connection is closed. A client offering no acceptable method gets `0xFF`; other
//! commands `0x07` (command not supported), an unknown address type `0x08`, an
//! unreachable target `0x05` (connection refused). It runs on its own thread with its own
//! current-thread tokio runtime, like [`HttpProxy`](crate::HttpProxy), so it works from
//! synchronous, tokio and actix tests alike.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Protocol version 5.
const VER: u8 = 0x05;
/// Authentication methods (RFC 1928 §3).
const NO_AUTH: u8 = 0x00;
const USER_PASSWORD: u8 = 0x02;
const NO_ACCEPTABLE: u8 = 0xFF;
/// Reply codes (RFC 1928 §6).
const SUCCEEDED: u8 = 0x00;
const CONNECTION_REFUSED: u8 = 0x05;
const COMMAND_NOT_SUPPORTED: u8 = 0x07;
const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

/// How a SOCKS5 target was addressed in the CONNECT request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks5Address {
    /// `ATYP 0x01`: an IPv4 address.
    Ipv4,
    /// `ATYP 0x03`: a domain name.
    Domain,
    /// `ATYP 0x04`: an IPv6 address.
    Ipv6,
}

/// A running SOCKS5 proxy on `127.0.0.1:<free port>`; stopped (every tunnel closed) when
/// dropped. `Debug` never shows the expected password.
pub struct Socks5Proxy {
    port: u16,
    credentials: Option<(String, String)>,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Socks5Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5Proxy")
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Stats {
    /// Targets of every CONNECT request, in arrival order (established or not).
    targets: Mutex<Vec<(Socks5Address, String)>>,
    /// Tunnels established (target reached, success replied).
    tunnels: AtomicUsize,
    /// Authentication attempts refused (wrong user name or password, or none offered).
    auth_failures: AtomicUsize,
}

impl Socks5Proxy {
    /// Starts a proxy that asks for no authentication, on `127.0.0.1:0`. It accepts
    /// connections as soon as this returns.
    ///
    /// # Panics
    ///
    /// Panics when the socket cannot be bound or the thread cannot be started.
    pub fn start() -> Socks5Proxy {
        Self::spawn(None)
    }

    /// Starts a proxy that requires RFC 1929 user name and password authentication with
    /// exactly these credentials.
    ///
    /// # Panics
    ///
    /// As [`Socks5Proxy::start`].
    pub fn with_credentials(user: &str, password: &str) -> Socks5Proxy {
        Self::spawn(Some((user.to_owned(), password.to_owned())))
    }

    fn spawn(credentials: Option<(String, String)>) -> Socks5Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("make listener non-blocking");
        let port = listener.local_addr().expect("local addr").port();
        let stats = Arc::new(Stats::default());
        let (shutdown, mut shutdown_rx) = oneshot::channel::<()>();
        let thread_stats = stats.clone();
        let expected = Arc::new(credentials.clone());
        let thread = std::thread::Builder::new()
            .name(format!("socks5-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build proxy runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("register listener with tokio");
                    loop {
                        tokio::select! {
                            _ = &mut shutdown_rx => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => {
                                    tokio::spawn(serve(stream, thread_stats.clone(), expected.clone()));
                                }
                                Err(e) => eprintln!("socks5 proxy {port}: accept failed: {e}"),
                            },
                        }
                    }
                });
                // Dropping the runtime cancels every tunnel task, closing sockets.
                drop(rt);
            })
            .expect("spawn proxy thread");
        Socks5Proxy { port, credentials, stats, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// The listening port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `socks5://[user:password@]127.0.0.1:<port>`, the form clients take as their proxy
    /// (with the credentials the proxy requires, percent-encoded, if any).
    pub fn url(&self) -> String {
        match &self.credentials {
            Some((u, p)) => format!("socks5://{}:{}@127.0.0.1:{}", encode(u), encode(p), self.port),
            None => format!("socks5://127.0.0.1:{}", self.port),
        }
    }

    /// `socks5://user:password@127.0.0.1:<port>` with the given credentials, whatever the
    /// proxy requires (to try wrong ones).
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("socks5://{}:{}@127.0.0.1:{}", encode(user), encode(password), self.port)
    }

    /// The `host:port` target of every CONNECT request so far, in arrival order (an IPv6
    /// host in brackets).
    pub fn connect_targets(&self) -> Vec<String> {
        self.stats.targets.lock().map(|t| t.iter().map(|(_, s)| s.clone()).collect()).unwrap_or_default()
    }

    /// Every CONNECT target so far with the address type it was requested by.
    pub fn connect_requests(&self) -> Vec<(Socks5Address, String)> {
        self.stats.targets.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Number of tunnels established so far (target reached, success replied).
    pub fn tunnels(&self) -> usize {
        self.stats.tunnels.load(Ordering::SeqCst)
    }

    /// Number of clients refused at authentication so far.
    pub fn auth_failures(&self) -> usize {
        self.stats.auth_failures.load(Ordering::SeqCst)
    }
}

impl Drop for Socks5Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("socks5 proxy thread on port {} panicked", self.port);
            }
        }
    }
}

/// Percent-encodes what may not stand in a URL's userinfo.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Replies `code` with an all-zero IPv4 bound address and closes.
async fn reply(client: &mut TcpStream, code: u8) -> std::io::Result<()> {
    client.write_all(&[VER, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]).await
}

async fn read_string(client: &mut TcpStream) -> std::io::Result<String> {
    let n = client.read_u8().await?;
    let mut buf = vec![0u8; usize::from(n)];
    client.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn serve(mut client: TcpStream, stats: Arc<Stats>, expected: Arc<Option<(String, String)>>) {
    let _ = client.set_nodelay(true);
    let _ = negotiate(&mut client, &stats, &expected).await;
}

/// Method selection, authentication, the request and then the tunnel. An error is the
/// client going away mid-exchange: nothing to answer.
async fn negotiate(
    client: &mut TcpStream,
    stats: &Stats,
    expected: &Option<(String, String)>,
) -> std::io::Result<()> {
    // Method selection: VER NMETHODS METHODS…
    if client.read_u8().await? != VER {
        return Ok(());
    }
    let n = client.read_u8().await?;
    let mut methods = vec![0u8; usize::from(n)];
    client.read_exact(&mut methods).await?;
    let wanted = if expected.is_some() { USER_PASSWORD } else { NO_AUTH };
    if !methods.contains(&wanted) {
        if expected.is_some() {
            stats.auth_failures.fetch_add(1, Ordering::SeqCst);
        }
        return client.write_all(&[VER, NO_ACCEPTABLE]).await;
    }
    client.write_all(&[VER, wanted]).await?;
    if let Some((user, password)) = expected {
        // RFC 1929: VER(1) ULEN UNAME PLEN PASSWD.
        if client.read_u8().await? != 0x01 {
            return Ok(());
        }
        let (u, p) = (read_string(client).await?, read_string(client).await?);
        if u != *user || p != *password {
            stats.auth_failures.fetch_add(1, Ordering::SeqCst);
            return client.write_all(&[0x01, 0x01]).await;
        }
        client.write_all(&[0x01, 0x00]).await?;
    }
    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
    let mut head = [0u8; 4];
    client.read_exact(&mut head).await?;
    if head[0] != VER {
        return Ok(());
    }
    let (kind, host) = match head[3] {
        0x01 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).await?;
            (Socks5Address::Ipv4, Ipv4Addr::from(a).to_string())
        }
        0x03 => (Socks5Address::Domain, read_string(client).await?),
        0x04 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a).await?;
            (Socks5Address::Ipv6, Ipv6Addr::from(a).to_string())
        }
        _ => return reply(client, ADDRESS_TYPE_NOT_SUPPORTED).await,
    };
    let port = client.read_u16().await?;
    if head[1] != 0x01 {
        return reply(client, COMMAND_NOT_SUPPORTED).await;
    }
    let target =
        if kind == Socks5Address::Ipv6 { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    if let Ok(mut t) = stats.targets.lock() {
        t.push((kind, target));
    }
    let mut upstream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(_) => return reply(client, CONNECTION_REFUSED).await,
    };
    let _ = upstream.set_nodelay(true);
    let bound = upstream.local_addr()?;
    let mut answer = vec![VER, SUCCEEDED, 0x00];
    match bound.ip() {
        std::net::IpAddr::V4(a) => {
            answer.push(0x01);
            answer.extend_from_slice(&a.octets());
        }
        std::net::IpAddr::V6(a) => {
            answer.push(0x04);
            answer.extend_from_slice(&a.octets());
        }
    }
    answer.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&answer).await?;
    stats.tunnels.fetch_add(1, Ordering::SeqCst);
    let _ = tokio::io::copy_bidirectional(client, &mut upstream).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot echo server: (its address, the thread that echoes 5 bytes).
    fn echo(bind: &str) -> Option<(std::net::SocketAddr, std::thread::JoinHandle<()>)> {
        let l = std::net::TcpListener::bind(bind).ok()?;
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&buf).unwrap();
        });
        Some((addr, t))
    }

    fn open(proxy: &Socks5Proxy) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        s
    }

    fn read_n(s: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).unwrap();
        buf
    }

    /// Sends a CONNECT for `addr` (ATYP and address bytes) to `port` and returns the reply
    /// code, having read the whole reply.
    fn connect(s: &mut std::net::TcpStream, atyp: u8, addr: &[u8], port: u16) -> u8 {
        let mut req = vec![VER, 0x01, 0x00, atyp];
        req.extend_from_slice(addr);
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).unwrap();
        let head = read_n(s, 4);
        let rest = match head[3] {
            0x01 => 4 + 2,
            0x04 => 16 + 2,
            other => panic!("reply address type {other}"),
        };
        read_n(s, rest);
        head[1]
    }

    fn round_trip(s: &mut std::net::TcpStream) {
        s.write_all(b"hello").unwrap();
        assert_eq!(read_n(s, 5), b"hello");
    }

    #[test]
    fn tunnels_to_domain_ipv4_and_ipv6_targets_without_authentication() {
        let proxy = Socks5Proxy::start();
        let mut want = Vec::new();
        // Domain name.
        let (addr, server) = echo("127.0.0.1:0").unwrap();
        let mut s = open(&proxy);
        s.write_all(&[VER, 1, NO_AUTH]).unwrap();
        assert_eq!(read_n(&mut s, 2), [VER, NO_AUTH]);
        let mut name = vec![9u8];
        name.extend_from_slice(b"localhost");
        // The proxy tries every address `localhost` resolves to, ::1 or 127.0.0.1 first.
        assert_eq!(connect(&mut s, 0x03, &name, addr.port()), SUCCEEDED);
        round_trip(&mut s);
        server.join().unwrap();
        want.push((Socks5Address::Domain, format!("localhost:{}", addr.port())));
        // IPv4.
        let (addr, server) = echo("127.0.0.1:0").unwrap();
        let mut s = open(&proxy);
        s.write_all(&[VER, 2, USER_PASSWORD, NO_AUTH]).unwrap();
        assert_eq!(read_n(&mut s, 2), [VER, NO_AUTH]);
        assert_eq!(connect(&mut s, 0x01, &[127, 0, 0, 1], addr.port()), SUCCEEDED);
        round_trip(&mut s);
        server.join().unwrap();
        want.push((Socks5Address::Ipv4, addr.to_string()));
        // IPv6, where the machine has a loopback for it.
        if let Some((addr, server)) = echo("[::1]:0") {
            let mut s = open(&proxy);
            s.write_all(&[VER, 1, NO_AUTH]).unwrap();
            assert_eq!(read_n(&mut s, 2), [VER, NO_AUTH]);
            assert_eq!(connect(&mut s, 0x04, &Ipv6Addr::LOCALHOST.octets(), addr.port()), SUCCEEDED);
            round_trip(&mut s);
            server.join().unwrap();
            want.push((Socks5Address::Ipv6, addr.to_string()));
        } else {
            eprintln!("SKIP the IPv6 leg: no ::1 on this machine");
        }
        assert_eq!(proxy.connect_requests(), want);
        assert_eq!(proxy.tunnels(), want.len());
        assert_eq!(proxy.auth_failures(), 0);
    }

    #[test]
    fn requires_the_configured_user_name_and_password() {
        let proxy = Socks5Proxy::with_credentials("dev ice", "pa:ss");
        assert!(proxy.url().starts_with("socks5://dev%20ice:pa%3Ass@127.0.0.1:"), "{}", proxy.url());
        assert!(!format!("{proxy:?}").contains("pa:ss"));
        // No-auth only: no acceptable method.
        let mut s = open(&proxy);
        s.write_all(&[VER, 1, NO_AUTH]).unwrap();
        assert_eq!(read_n(&mut s, 2), [VER, NO_ACCEPTABLE]);
        // Wrong password: failure status.
        let mut s = open(&proxy);
        s.write_all(&[VER, 2, NO_AUTH, USER_PASSWORD]).unwrap();
        assert_eq!(read_n(&mut s, 2), [VER, USER_PASSWORD]);
        s.write_all(&[0x01, 7, b'd', b'e', b'v', b' ', b'i', b'c', b'e', 5, b'w', b'r', b'o', b'n', b'g'])
            .unwrap();
        assert_eq!(read_n(&mut s, 2), [0x01, 0x01]);
        // The right ones: a tunnel.
        let (addr, server) = echo("127.0.0.1:0").unwrap();
        let mut s = open(&proxy);
        s.write_all(&[VER, 1, USER_PASSWORD]).unwrap();
        assert_eq!(read_n(&mut s, 2), [VER, USER_PASSWORD]);
        s.write_all(&[0x01, 7, b'd', b'e', b'v', b' ', b'i', b'c', b'e', 5, b'p', b'a', b':', b's', b's'])
            .unwrap();
        assert_eq!(read_n(&mut s, 2), [0x01, 0x00]);
        assert_eq!(connect(&mut s, 0x01, &[127, 0, 0, 1], addr.port()), SUCCEEDED);
        round_trip(&mut s);
        server.join().unwrap();
        assert_eq!(proxy.auth_failures(), 2);
        assert_eq!(proxy.connect_targets(), vec![addr.to_string()]);
        assert_eq!(proxy.tunnels(), 1);
    }

    #[test]
    fn refuses_other_commands_and_unreachable_targets() {
        let proxy = Socks5Proxy::start();
        // BIND (0x02) is not served.
        let mut s = open(&proxy);
        s.write_all(&[VER, 1, NO_AUTH]).unwrap();
        read_n(&mut s, 2);
        s.write_all(&[VER, 0x02, 0x00, 0x01, 127, 0, 0, 1, 0, 80]).unwrap();
        assert_eq!(read_n(&mut s, 10)[1], COMMAND_NOT_SUPPORTED);
        // A port nothing listens on: bind one, note it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut s = open(&proxy);
        s.write_all(&[VER, 1, NO_AUTH]).unwrap();
        read_n(&mut s, 2);
        assert_eq!(connect(&mut s, 0x01, &[127, 0, 0, 1], closed.port()), CONNECTION_REFUSED);
        assert_eq!(proxy.connect_targets(), vec![closed.to_string()]);
        assert_eq!(proxy.tunnels(), 0);
    }
}
