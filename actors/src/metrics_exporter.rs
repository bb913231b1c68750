//! `/metrics` (Prometheus text), `/healthz` and `/readyz` over a minimal HTTP/1.1 server.
//!
//! Three fixed GET routes do not need a web framework: requests are read up to a small
//! limit with a deadline, answered, and the connection closed.

use std::net::SocketAddr;
use std::time::Duration;

use connector_core::ConnectionState;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

/// The default address: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9898";

/// A running metrics endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl MetricsServer {
    /// Binds `addr` and serves until dropped.
    pub async fn start(
        addr: SocketAddr,
        registry: Registry,
        state: watch::Receiver<ConnectionState>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let registry = registry.clone();
                let ready = *state.borrow() == ConnectionState::Connected;
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &registry, ready).await {
                        debug!(error = %e, "metrics request");
                    }
                });
            }
        })
        .abort_handle();
        Ok(Self { addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, registry: &Registry, ready: bool) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    let head = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let r = stream.read(&mut buf[n..]).await?;
            if r == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            n += r;
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if n == buf.len() {
                return Ok(false);
            }
        }
    })
    .await;
    let complete = matches!(head, Ok(Ok(true)));
    let text = String::from_utf8_lossy(&buf[..n]);
    let mut parts = text.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = if !complete {
        ("400 Bad Request", "text/plain", b"bad request\n".to_vec())
    } else if method != "GET" {
        ("405 Method Not Allowed", "text/plain", b"only GET\n".to_vec())
    } else {
        match path.split('?').next().unwrap_or("") {
            "/metrics" => {
                let mut out = Vec::new();
                TextEncoder::new().encode(&registry.gather(), &mut out).map_err(std::io::Error::other)?;
                ("200 OK", "text/plain; version=0.0.4", out)
            }
            "/healthz" => ("200 OK", "text/plain", b"ok\n".to_vec()),
            "/readyz" if ready => ("200 OK", "text/plain", b"ready\n".to_vec()),
            "/readyz" => ("503 Service Unavailable", "text/plain", b"not connected\n".to_vec()),
            _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}
