//! A TCP fault proxy on a free loopback port: it forwards to one upstream address and can
//! be switched, while running, between passing traffic and the faults a network path
//! really shows.
//!
//! | [`Fault`] | existing connections | new connections |
//! |---|---|---|
//! | `Pass` | bytes flow both ways | connected upstream |
//! | `Blackhole` | nothing is read or forwarded (bytes wait in the kernel's buffers, as unacknowledged segments do; they flow again when the path heals) | accepted and held: nothing is answered until the path heals, then joined upstream (as a retransmitted SYN would get through) |
//! | `Reset` | closed with a TCP RST | reset at once |
//! | `Refuse` | closed with a TCP RST | the port is closed: `connect` fails with "connection refused" |
//! | `Slow(d)` | every chunk waits `d` before it is forwarded | connected upstream |
//!
//! The model is kind to the client in one way: a real blackhole loses the SYN, and the
//! client's TCP retransmits it after 1, 3, 7 … s; here the held connection joins as soon as
//! the path heals. The proxy runs on its own thread with its own current-thread tokio
//! runtime, so it works from synchronous, tokio and actix tests alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Silently stop forwarding, in both directions; new connections are accepted and
    /// ignored.
    Blackhole,
    /// Reset every connection, existing and new.
    Reset,
    /// Reset existing connections and close the port.
    Refuse,
    /// Forward, delaying every chunk by this long.
    Slow(Duration),
}

/// What the proxy has seen since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connections accepted (any mode).
    pub accepted: u64,
    /// Connections joined to the upstream.
    pub joined: u64,
    /// Connections reset by a fault.
    pub reset: u64,
    /// Bytes forwarded client → upstream.
    pub up_bytes: u64,
    /// Bytes forwarded upstream → client.
    pub down_bytes: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    joined: AtomicU64,
    reset: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

/// A running fault proxy on `127.0.0.1:<port>`; every connection closes when it is dropped.
pub struct FaultProxy {
    port: u16,
    mode: watch::Sender<Fault>,
    resets: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("port", &self.port).field("mode", &*self.mode.borrow()).finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` in [`Fault::Pass`]; it accepts connections as soon as
    /// this returns.
    ///
    /// # Panics
    ///
    /// Panics when no loopback port can be bound or the thread cannot be started.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("make listener non-blocking");
        let port = listener.local_addr().expect("local addr").port();
        let (mode, mode_rx) = watch::channel(Fault::Pass);
        let (stop, stop_rx) = watch::channel(false);
        let (resets, resets_rx) = watch::channel(0u64);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build proxy runtime");
                let modes = Modes { rx: mode_rx, resets: resets_rx };
                rt.block_on(serve(listener, port, upstream, modes, stop_rx, c));
            })
            .expect("spawn the proxy thread");
        FaultProxy { port, mode, resets, stop, counters, thread: Some(thread) }
    }

    /// Starts a proxy to `127.0.0.1:port`.
    pub fn to_port(port: u16) -> FaultProxy {
        Self::start(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `tcp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Switches the fault; it applies to existing connections at once.
    pub fn set(&self, fault: Fault) {
        if matches!(fault, Fault::Reset | Fault::Refuse) {
            self.resets.send_modify(|e| *e += 1);
        }
        self.mode.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.mode.borrow()
    }

    /// Resets every existing connection and goes on passing new ones.
    pub fn reset_connections(&self) {
        self.resets.send_modify(|e| *e += 1);
    }

    /// What the proxy has seen.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            accepted: g(&c.accepted),
            joined: g(&c.joined),
            reset: g(&c.reset),
            up_bytes: g(&c.up),
            down_bytes: g(&c.down),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The fault in force, and a reset epoch through which every connection learns of a reset
/// (one that is switched away at once must still reach connections that never saw it).
#[derive(Clone)]
struct Modes {
    rx: watch::Receiver<Fault>,
    resets: watch::Receiver<u64>,
}

async fn serve(
    std_listener: std::net::TcpListener,
    port: u16,
    upstream: SocketAddr,
    mut modes: Modes,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut listener = Some(TcpListener::from_std(std_listener).expect("register listener with tokio"));
    loop {
        let current = *modes.rx.borrow_and_update();
        if current == Fault::Refuse {
            listener = None;
        } else if listener.is_none() {
            // The port comes back: the same number, so clients reconnect to the same URI.
            match bind_again(port).await {
                Some(l) => listener = Some(l),
                None => return,
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            changed = modes.rx.changed() => if changed.is_err() { return },
            accepted = accept(listener.as_ref()) => {
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                // The reset epoch at accept time: a reset from now on reaches this one.
                let epoch = *modes.resets.borrow();
                tokio::spawn(connection(client, upstream, epoch, modes.clone(), counters.clone(), stop.clone()));
            }
        }
    }
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn bind_again(port: u16) -> Option<TcpListener> {
    // The old socket closed a moment ago; the port is ours (SO_REUSEADDR), but give the
    // kernel a few tries.
    for _ in 0..200 {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Some(l),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    None
}

fn rst(s: &TcpStream) {
    // Linger 0: closing sends RST instead of FIN.
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    start_epoch: u64,
    mut modes: Modes,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = client.set_nodelay(true);
    let now = *modes.rx.borrow();
    match now {
        Fault::Reset | Fault::Refuse => {
            rst(&client);
            counters.reset.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Fault::Blackhole => {
            // Accepted, never answered: held (what the client sent waits in the socket, as
            // its SYN would be retransmitted) until the path heals, a reset, or the end.
            let mut rx = modes.rx.clone();
            tokio::select! {
                _ = rx.wait_for(|m| *m != Fault::Blackhole) => {}
                _ = modes.resets.wait_for(|e| *e != start_epoch) => {}
                _ = stop.changed() => return,
            }
            if *modes.resets.borrow() != start_epoch
                || matches!(*modes.rx.borrow(), Fault::Reset | Fault::Refuse)
            {
                rst(&client);
                counters.reset.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        Fault::Pass | Fault::Slow(_) => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        rst(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    counters.joined.fetch_add(1, Ordering::Relaxed);
    let (mut client, mut server) = (client, server);
    let reset = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = pump(cr, sw, modes.rx.clone(), &counters.up);
        let down = pump(sr, cw, modes.rx.clone(), &counters.down);
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            _ = modes.resets.wait_for(|e| *e != start_epoch) => true,
            _ = stop.changed() => false,
        }
    };
    if reset {
        counters.reset.fetch_add(1, Ordering::Relaxed);
        rst(&client);
        rst(&server);
    }
}

/// Copies one direction until EOF or an error.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    mut mode: watch::Receiver<Fault>,
    bytes: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Hold while blackholed: nothing is read, so nothing is acknowledged past the
        // kernel's buffers.
        let Ok(m) = mode.wait_for(|m| *m != Fault::Blackhole).await.map(|m| *m) else { break };
        if let Fault::Slow(d) = m {
            tokio::time::sleep(d).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A blackhole that started while this chunk was read swallows it until it heals.
        if mode.wait_for(|m| *m != Fault::Blackhole).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream as StdStream;

    use super::*;

    /// An echo server on a free port.
    fn echo() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    fn client(p: &FaultProxy) -> StdStream {
        let s = StdStream::connect(("127.0.0.1", p.port())).expect("connect to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s
    }

    fn round_trip(s: &mut StdStream, what: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(what)?;
        let mut got = vec![0u8; what.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn passes_then_blackholes_then_heals_the_same_connection() {
        let p = FaultProxy::to_port(echo());
        let mut s = client(&p);
        assert_eq!(round_trip(&mut s, b"one").expect("pass"), b"one");
        p.set(Fault::Blackhole);
        s.write_all(b"two").expect("write into the blackhole");
        s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let mut b = [0u8; 3];
        let e = s.read(&mut b).expect_err("nothing comes back through a blackhole");
        assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e}");
        p.set(Fault::Pass);
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.read_exact(&mut b).expect("the held bytes flow once healed");
        assert_eq!(&b, b"two");
    }

    #[test]
    fn a_connection_made_during_a_blackhole_is_joined_only_when_it_heals() {
        let p = FaultProxy::to_port(echo());
        p.set(Fault::Blackhole);
        let mut s = client(&p);
        s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        assert!(round_trip(&mut s, b"x").is_err());
        assert_eq!(p.stats().joined, 0);
        p.set(Fault::Pass);
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("what was sent into the blackhole arrives once healed");
        assert_eq!(&b, b"x");
        let mut t = client(&p);
        assert_eq!(round_trip(&mut t, b"y").expect("a new connection passes"), b"y");
    }

    #[test]
    fn a_connection_held_by_a_blackhole_is_reset_with_the_others() {
        let p = FaultProxy::to_port(echo());
        p.set(Fault::Blackhole);
        let mut s = client(&p);
        s.write_all(b"x").expect("write");
        crate::wait_until(Duration::from_secs(5), "the proxy to accept", || p.stats().accepted == 1);
        p.reset_connections();
        p.set(Fault::Pass);
        let mut b = [0u8; 1];
        let e = s.read(&mut b);
        assert!(matches!(&e, Err(e) if e.kind() == ErrorKind::ConnectionReset), "got {e:?}");
        assert_eq!(p.stats().joined, 0);
    }

    #[test]
    fn reset_connections_resets_existing_and_passes_new_ones() {
        let p = FaultProxy::to_port(echo());
        let mut s = client(&p);
        assert_eq!(round_trip(&mut s, b"a").expect("pass"), b"a");
        p.reset_connections();
        let mut b = [0u8; 1];
        let e = s.read(&mut b);
        assert!(
            matches!(&e, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "the client sees a reset, got {e:?}"
        );
        let mut t = client(&p);
        assert_eq!(round_trip(&mut t, b"b").expect("new connections pass"), b"b");
        assert_eq!(p.stats().reset, 1);
    }

    #[test]
    fn refuse_closes_the_port_and_pass_reopens_it() {
        let p = FaultProxy::to_port(echo());
        let mut s = client(&p);
        assert_eq!(round_trip(&mut s, b"a").expect("pass"), b"a");
        p.set(Fault::Refuse);
        crate::wait_until(
            Duration::from_secs(5),
            "the port to refuse",
            || matches!(StdStream::connect(("127.0.0.1", p.port())), Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        );
        let mut b = [0u8; 1];
        assert!(s.read(&mut b).is_err() || b == [0], "the old connection is gone");
        p.set(Fault::Pass);
        crate::wait_until(Duration::from_secs(5), "the port to accept again", || {
            StdStream::connect(("127.0.0.1", p.port())).is_ok()
        });
        let mut t = client(&p);
        assert_eq!(round_trip(&mut t, b"c").expect("pass again"), b"c");
    }

    #[test]
    fn slow_still_delivers_in_order() {
        let p = FaultProxy::to_port(echo());
        p.set(Fault::Slow(Duration::from_millis(20)));
        let mut s = client(&p);
        assert_eq!(round_trip(&mut s, b"slow and steady").expect("slow"), b"slow and steady");
        // The counters move just after each write.
        crate::wait_until(Duration::from_secs(5), "both directions counted", || {
            p.stats().up_bytes == 15 && p.stats().down_bytes == 15
        });
    }
}
