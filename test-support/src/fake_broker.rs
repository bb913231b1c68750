//! A scripted fake MQTT 3.1.1 broker for behaviour a real broker cannot be made to show.
//!
//! It speaks just enough MQTT (via `rumqttc::mqttbytes::v4`) to look like a broker, and
//! deviates from a real one only where its [`FakeBehaviour`] says so. It runs on its own
//! thread with its own current-thread tokio runtime, so it works from synchronous tests,
//! tokio tests and actix tests alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as MqttError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Largest packet the fake broker accepts.
const MAX_PACKET: usize = 1 << 20;

/// The deliberately malformed packet sent by
/// [`FakeBehaviour::send_malformed_after_connect`]: a QoS 0 PUBLISH whose remaining
/// length is 2 but whose topic length field claims 65535 bytes.
pub const MALFORMED_PACKET: [u8; 4] = [0x30, 0x02, 0xFF, 0xFF];

/// How a [`FakeBroker`] deviates from a well-behaved broker.
///
/// The default behaves like a normal broker.
#[derive(Clone, Debug, Default)]
pub struct FakeBehaviour {
    /// Never acknowledge a PUBLISH (no PUBACK for QoS 1, no PUBREC for QoS 2).
    pub withhold_puback: bool,
    /// CONNACK return code; `None` (or `Some(0)`) accepts the connection. With a
    /// non-zero code the broker closes the connection right after the CONNACK.
    pub connack_code: Option<u8>,
    /// Right after a successful CONNACK, send [`MALFORMED_PACKET`]. The connection
    /// stays open afterwards; the client is expected to drop it.
    pub send_malformed_after_connect: bool,
}

/// A running fake broker on `127.0.0.1:<free port>`; shut down (all connections
/// closed) when dropped.
///
/// Responses: CONNECT → CONNACK (code from the behaviour, session present = false),
/// PINGREQ → PINGRESP, SUBSCRIBE → SUBACK granting the QoS asked for,
/// UNSUBSCRIBE → UNSUBACK, PUBLISH QoS 1 → PUBACK and QoS 2 → PUBREC (unless
/// withheld), PUBREL → PUBCOMP, DISCONNECT → connection closed. A CONNECT for an
/// unsupported protocol level is answered with CONNACK 1 (refused: protocol version);
/// any other undecodable input closes the connection.
pub struct FakeBroker {
    port: u16,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Stats {
    publishes: AtomicUsize,
    connections: AtomicUsize,
}

impl FakeBroker {
    /// Starts a fake broker listening on `127.0.0.1:0`. It accepts connections as soon
    /// as this returns.
    ///
    /// # Panics
    ///
    /// Panics when the socket cannot be bound or the thread cannot be started.
    pub fn start(b: FakeBehaviour) -> FakeBroker {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("make listener non-blocking");
        let port = listener.local_addr().expect("local addr").port();
        let stats = Arc::new(Stats::default());
        let (shutdown, mut shutdown_rx) = oneshot::channel::<()>();
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-broker-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build fake broker runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("register listener with tokio");
                    loop {
                        tokio::select! {
                            _ = &mut shutdown_rx => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => {
                                    tokio::spawn(serve(stream, b.clone(), thread_stats.clone()));
                                }
                                Err(e) => eprintln!("fake broker {port}: accept failed: {e}"),
                            },
                        }
                    }
                });
                // Dropping the runtime cancels every connection task, closing sockets.
                drop(rt);
            })
            .expect("spawn fake broker thread");
        FakeBroker { port, stats, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// The listening port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `tcp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Number of PUBLISH packets received so far, over all connections.
    pub fn publishes_received(&self) -> usize {
        self.stats.publishes.load(Ordering::SeqCst)
    }

    /// Number of MQTT connection attempts (CONNECT packets) received so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("fake broker thread on port {} panicked", self.port);
            }
        }
    }
}

enum Next {
    Continue,
    Close,
}

async fn serve(mut stream: TcpStream, b: FakeBehaviour, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        loop {
            match Packet::read(&mut buf, MAX_PACKET) {
                Ok(packet) => match answer(&mut stream, packet, &b, &stats).await {
                    Ok(Next::Continue) => {}
                    Ok(Next::Close) | Err(_) => return,
                },
                Err(MqttError::InsufficientBytes(_)) => break,
                Err(MqttError::InvalidProtocol | MqttError::InvalidProtocolLevel(_)) => {
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let ack = ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false);
                    let _ = send(&mut stream, Packet::ConnAck(ack)).await;
                    return;
                }
                Err(_) => return,
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn answer(
    stream: &mut TcpStream,
    packet: Packet,
    b: &FakeBehaviour,
    stats: &Stats,
) -> std::io::Result<Next> {
    match packet {
        Packet::Connect(_) => {
            stats.connections.fetch_add(1, Ordering::SeqCst);
            let code = b.connack_code.unwrap_or(0);
            match return_code(code) {
                Some(rc) => send(stream, Packet::ConnAck(ConnAck::new(rc, false))).await?,
                // Codes 6..=255 are reserved in MQTT 3.1.1; rumqttc cannot encode them.
                None => write_all(stream, &[0x20, 0x02, 0x00, code]).await?,
            }
            if code != 0 {
                return Ok(Next::Close);
            }
            if b.send_malformed_after_connect {
                write_all(stream, &MALFORMED_PACKET).await?;
            }
        }
        Packet::Publish(p) => {
            stats.publishes.fetch_add(1, Ordering::SeqCst);
            if !b.withhold_puback {
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => send(stream, Packet::PubAck(PubAck::new(p.pkid))).await?,
                    QoS::ExactlyOnce => send(stream, Packet::PubRec(PubRec::new(p.pkid))).await?,
                }
            }
        }
        Packet::PubRel(r) => send(stream, Packet::PubComp(PubComp::new(r.pkid))).await?,
        Packet::Subscribe(s) => {
            let codes = s.filters.iter().map(|f| SubscribeReasonCode::Success(f.qos)).collect();
            send(stream, Packet::SubAck(SubAck::new(s.pkid, codes))).await?;
        }
        Packet::Unsubscribe(u) => send(stream, Packet::UnsubAck(UnsubAck::new(u.pkid))).await?,
        Packet::PingReq => send(stream, Packet::PingResp).await?,
        Packet::Disconnect => return Ok(Next::Close),
        // Acknowledgements of messages we never send, and server-to-client packets.
        _ => {}
    }
    Ok(Next::Continue)
}

fn return_code(code: u8) -> Option<ConnectReturnCode> {
    Some(match code {
        0 => ConnectReturnCode::Success,
        1 => ConnectReturnCode::RefusedProtocolVersion,
        2 => ConnectReturnCode::BadClientId,
        3 => ConnectReturnCode::ServiceUnavailable,
        4 => ConnectReturnCode::BadUserNamePassword,
        5 => ConnectReturnCode::NotAuthorized,
        _ => return None,
    })
}

async fn send(stream: &mut TcpStream, packet: Packet) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    packet.write(&mut out, MAX_PACKET).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_all(stream, &out).await
}

async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recv::wait_until;
    use crate::test_mqtt::RawClient;
    use rumqttc::mqttbytes::v4::{Publish, Subscribe};
    use std::time::Duration;

    fn tcp(port: u16) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        s
    }

    #[test]
    fn answers_connect_ping_subscribe_publish() {
        let broker = FakeBroker::start(FakeBehaviour::default());
        assert_eq!(broker.url(), format!("tcp://127.0.0.1:{}", broker.port()));
        let (mut c, ack) = RawClient::connect(tcp(broker.port()), "fake-1", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
        assert!(!ack.session_present);
        assert_eq!(broker.connections(), 1);

        c.send(Packet::PingReq);
        assert_eq!(c.recv(), Packet::PingResp);

        let mut sub = Subscribe::new("a/b", QoS::AtLeastOnce);
        sub.pkid = 3;
        c.send(Packet::Subscribe(sub));
        match c.recv() {
            Packet::SubAck(s) => {
                assert_eq!(s.pkid, 3);
                assert_eq!(s.return_codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }

        c.publish_qos1("a/b", b"hello", 7);
        let mut q2 = Publish::new("a/b", QoS::ExactlyOnce, b"x".to_vec());
        q2.pkid = 8;
        c.send(Packet::Publish(q2));
        assert_eq!(c.recv(), Packet::PubRec(PubRec::new(8)));
        c.send(Packet::PubRel(rumqttc::mqttbytes::v4::PubRel::new(8)));
        assert_eq!(c.recv(), Packet::PubComp(PubComp::new(8)));
        c.send(Packet::Publish(Publish::new("a/b", QoS::AtMostOnce, b"q0".to_vec())));
        c.send(Packet::PingReq);
        assert_eq!(c.recv(), Packet::PingResp);
        assert_eq!(broker.publishes_received(), 3);

        c.send(Packet::Disconnect);
        assert!(c.try_recv().is_err(), "DISCONNECT closes the connection");
    }

    #[test]
    fn withholds_puback() {
        let broker = FakeBroker::start(FakeBehaviour { withhold_puback: true, ..Default::default() });
        let (mut c, _) = RawClient::connect(tcp(broker.port()), "fake-2", true, None);
        let mut p = Publish::new("t", QoS::AtLeastOnce, b"x".to_vec());
        p.pkid = 1;
        c.send(Packet::Publish(p));
        // The PINGRESP proves the PUBLISH was processed without an answer.
        c.send(Packet::PingReq);
        assert_eq!(c.recv(), Packet::PingResp);
        assert_eq!(broker.publishes_received(), 1);
    }

    #[test]
    fn refuses_with_configured_code_and_closes() {
        let broker = FakeBroker::start(FakeBehaviour { connack_code: Some(5), ..Default::default() });
        let (mut c, ack) = RawClient::connect(tcp(broker.port()), "fake-3", true, None);
        assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
        assert!(c.try_recv().is_err(), "connection closed after refusal");
        assert_eq!(broker.connections(), 1);
    }

    #[test]
    fn sends_malformed_packet_after_connack() {
        let broker =
            FakeBroker::start(FakeBehaviour { send_malformed_after_connect: true, ..Default::default() });
        let (mut c, ack) = RawClient::connect(tcp(broker.port()), "fake-4", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
        let mut raw = Vec::new();
        while raw.len() < MALFORMED_PACKET.len() {
            let chunk = c.read_raw().expect("read malformed packet");
            assert!(!chunk.is_empty(), "connection closed early");
            raw.extend(chunk);
        }
        assert_eq!(raw, MALFORMED_PACKET);
    }

    #[test]
    fn counts_reconnections_and_closes_on_drop() {
        let broker = FakeBroker::start(FakeBehaviour::default());
        let port = broker.port();
        let (mut first, _) = RawClient::connect(tcp(port), "fake-5", true, None);
        drop(RawClient::connect(tcp(port), "fake-5", true, None));
        wait_until(Duration::from_secs(5), "two connections counted", || broker.connections() == 2);
        drop(broker);
        assert!(first.try_recv().is_err(), "connection closed on drop");
    }
}
