//! The raw-socket ceiling: one blocking socket (plain, or OpenSSL TLS with chain and host
//! name verified), no runtime, no threads. Packets are encoded and decoded with rumqttc's
//! `mqttbytes` codec; every write carries all the PUBLISHes the window allows at that
//! moment (one `write` syscall for many packets, refilled when half the window is free),
//! every read takes all PUBACKs that have arrived. No client does less work per message, so its rate against a broker is what the
//! broker (and the loopback) allows a single connection: the ceiling the other paths are
//! read against.
//!
//! Completion is the PUBACK for QoS 1 (mosquitto answers in order, so the oldest
//! outstanding publish is the one acknowledged) and the write returning for QoS 0; a QoS 0
//! run ends only when the broker has answered a PINGREQ sent after its last PUBLISH, so
//! its rate is what the broker took in, not what the kernel buffered.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
use rumqttc::mqttbytes::QoS;

use crate::{Measure, RunConfig, RunResult};

const MAX_PACKET: usize = 1 << 20;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Conn {
    io: Box<dyn Stream>,
    rx: BytesMut,
    tx: BytesMut,
}

impl Conn {
    fn open(cfg: &RunConfig) -> anyhow::Result<Self> {
        let (host, port) = cfg.host_port()?;
        let tcp = TcpStream::connect((host.as_str(), port)).context("connect")?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let io: Box<dyn Stream> = match &cfg.tls_ca {
            None => Box::new(tcp),
            Some(ca) => {
                let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())?;
                b.set_ca_file(ca).context("CA file")?;
                b.set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))?;
                let tls = b.build().connect(&host, tcp).context("TLS handshake")?;
                Box::new(tls)
            }
        };
        let mut c =
            Conn { io, rx: BytesMut::with_capacity(64 * 1024), tx: BytesMut::with_capacity(64 * 1024) };
        let mut connect = Connect::new(cfg.client_id.clone());
        connect.keep_alive = 60;
        connect.clean_session = true;
        Packet::Connect(connect).write(&mut c.tx, MAX_PACKET)?;
        c.flush()?;
        match c.next_packet()? {
            Packet::ConnAck(ack) if ack.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success => Ok(c),
            other => bail!("expected a successful CONNACK, got {other:?}"),
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.io.write_all(&self.tx).context("write")?;
        self.tx.clear();
        Ok(())
    }

    /// Reads once (blocking) into the receive buffer.
    fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io.read(&mut chunk).context("read")?;
        if n == 0 {
            bail!("the broker closed the connection");
        }
        self.rx.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next whole packet already received, if any.
    fn try_packet(&mut self) -> anyhow::Result<Option<Packet>> {
        match Packet::read(&mut self.rx, MAX_PACKET) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e).context("decode"),
        }
    }

    fn next_packet(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = self.try_packet()? {
                return Ok(p);
            }
            self.fill()?;
        }
    }
}

/// One run: connect, warm up, time `cfg.msgs` publishes, disconnect.
pub fn run(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let mut c = Conn::open(cfg)?;
    let payload = cfg.payload();
    let mut pkid = 0u16;
    publish_n(&mut c, cfg, &payload, cfg.warmup, &mut pkid)?;
    let result = publish_n(&mut c, cfg, &payload, cfg.msgs, &mut pkid)?;
    Packet::Disconnect.write(&mut c.tx, MAX_PACKET)?;
    c.flush()?;
    Ok(result)
}

fn publish_n(
    c: &mut Conn,
    cfg: &RunConfig,
    payload: &[u8],
    n: usize,
    pkid: &mut u16,
) -> anyhow::Result<RunResult> {
    let qos = if cfg.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
    let mut outstanding: VecDeque<(u16, Instant)> = VecDeque::with_capacity(cfg.window);
    let (mut sent, mut done) = (0usize, 0usize);
    let mut m = Measure::start(cfg, n);
    while done < n {
        let t0 = Instant::now();
        let mut batch = 0usize;
        while sent < n && outstanding.len() + batch < cfg.window {
            let mut p = Publish::new(cfg.topic.as_str(), qos, payload);
            if qos == QoS::AtLeastOnce {
                *pkid = if *pkid == u16::MAX { 1 } else { *pkid + 1 };
                p.pkid = *pkid;
                outstanding.push_back((*pkid, t0));
            }
            p.write(&mut c.tx)?;
            sent += 1;
            batch += 1;
        }
        if batch > 0 {
            c.flush()?;
        }
        if qos == QoS::AtMostOnce {
            for _ in 0..batch {
                m.completed(t0);
            }
            done += batch;
            if done == n {
                // A write returning means only that the kernel took the bytes (megabytes
                // fit in loopback buffers): the run ends when the broker answers a PINGREQ
                // sent after the last PUBLISH, i.e. when it has read them all.
                Packet::PingReq.write(&mut c.tx, MAX_PACKET)?;
                c.flush()?;
                match c.next_packet()? {
                    Packet::PingResp => {}
                    other => bail!("expected PINGRESP, got {other:?}"),
                }
            }
            continue;
        }
        // Read until half the window is free (the last messages: until one more is
        // answered), taking every PUBACK already here: each read and each write then carries
        // many packets instead of one ping-pong per message.
        let low = if sent < n { cfg.window / 2 } else { outstanding.len().saturating_sub(1) };
        loop {
            match c.try_packet()? {
                Some(Packet::PubAck(ack)) => {
                    let (id, t) = outstanding.pop_front().context("a PUBACK with nothing outstanding")?;
                    if id != ack.pkid {
                        bail!("PUBACK {} out of order (expected {id})", ack.pkid);
                    }
                    m.completed(t);
                    done += 1;
                }
                Some(other) => bail!("unexpected {other:?}"),
                None if outstanding.len() <= low => break,
                None => c.fill()?,
            }
        }
    }
    Ok(m.finish(n))
}
