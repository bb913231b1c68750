//! A tiny HTTP `CONNECT` proxy (RFC 9110 §9.3.6) on a free loopback port, recording what
//! it tunnelled so a test can prove traffic went through it.
//!
//! Only `CONNECT host:port` is served: the proxy connects to the target, answers
//! `HTTP/1.1 200 Connection established` in one write and then copies bytes both ways
//! until either side closes. Any other method gets `405`, a malformed request `400`, an
//! unreachable target `502`. It runs on its own thread with its own current-thread tokio
//! runtime, so it works from synchronous, tokio and actix tests alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Largest request head the proxy reads.
const MAX_HEAD: usize = 8 * 1024;

/// A running CONNECT proxy on `127.0.0.1:<free port>`; stopped (every tunnel closed)
/// when dropped.
pub struct HttpProxy {
    port: u16,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Stats {
    /// Targets of every CONNECT request, in arrival order (established or not).
    targets: Mutex<Vec<String>>,
    /// Tunnels established (target reached, 200 sent).
    tunnels: AtomicUsize,
}

impl HttpProxy {
    /// Starts the proxy on `127.0.0.1:0`. It accepts connections as soon as this returns.
    ///
    /// # Panics
    ///
    /// Panics when the socket cannot be bound or the thread cannot be started.
    pub fn start() -> HttpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("make listener non-blocking");
        let port = listener.local_addr().expect("local addr").port();
        let stats = Arc::new(Stats::default());
        let (shutdown, mut shutdown_rx) = oneshot::channel::<()>();
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("http-proxy-{port}"))
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
                                    tokio::spawn(serve(stream, thread_stats.clone()));
                                }
                                Err(e) => eprintln!("http proxy {port}: accept failed: {e}"),
                            },
                        }
                    }
                });
                // Dropping the runtime cancels every tunnel task, closing sockets.
                drop(rt);
            })
            .expect("spawn proxy thread");
        HttpProxy { port, stats, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// The listening port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, the form MQTT clients take as their proxy.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `host:port` target of every CONNECT request so far, in arrival order.
    pub fn connect_targets(&self) -> Vec<String> {
        self.stats.targets.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Number of tunnels established so far (target reached, `200` answered).
    pub fn tunnels(&self) -> usize {
        self.stats.tunnels.load(Ordering::SeqCst)
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("http proxy thread on port {} panicked", self.port);
            }
        }
    }
}

async fn answer(stream: &mut TcpStream, status: &str) {
    let msg = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(msg.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn serve(mut client: TcpStream, stats: Arc<Stats>) {
    let _ = client.set_nodelay(true);
    // Read the request head byte by byte so nothing past it (the tunnelled stream) is
    // consumed here.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return answer(&mut client, "431 Request Header Fields Too Large").await;
        }
        match client.read_u8().await {
            Ok(b) => head.push(b),
            Err(_) => return,
        }
    }
    let Ok(head) = std::str::from_utf8(&head) else {
        return answer(&mut client, "400 Bad Request").await;
    };
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    if method != "CONNECT" {
        return answer(&mut client, "405 Method Not Allowed").await;
    }
    if target.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
        return answer(&mut client, "400 Bad Request").await;
    }
    if let Ok(mut t) = stats.targets.lock() {
        t.push(target.to_string());
    }
    let mut upstream = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(_) => return answer(&mut client, "502 Bad Gateway").await,
    };
    let _ = upstream.set_nodelay(true);
    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
        return;
    }
    stats.tunnels.fetch_add(1, Ordering::SeqCst);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};

    fn request(proxy: &HttpProxy, req: &str) -> (String, std::net::TcpStream) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        (String::from_utf8(head).unwrap(), s)
    }

    #[test]
    fn tunnels_bytes_to_the_connect_target_and_records_it() {
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = echo.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&buf).unwrap();
        });
        let proxy = HttpProxy::start();
        let (head, mut s) = request(&proxy, &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        s.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        server.join().unwrap();
        assert_eq!(proxy.connect_targets(), vec![target]);
        assert_eq!(proxy.tunnels(), 1);
    }

    #[test]
    fn refuses_other_methods_and_unreachable_targets() {
        let proxy = HttpProxy::start();
        let (head, _) = request(&proxy, "GET http://example.invalid/ HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");
        // A port nothing listens on: bind one, note it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (head, _) = request(&proxy, &format!("CONNECT {closed} HTTP/1.1\r\n\r\n"));
        assert!(head.starts_with("HTTP/1.1 502"), "{head}");
        assert_eq!(proxy.connect_targets(), vec![closed.to_string()]);
        assert_eq!(proxy.tunnels(), 0);
    }
}
