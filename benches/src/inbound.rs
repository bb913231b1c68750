//! Inbound QoS 1 delivery: how fast each client takes messages the broker holds for it.
//!
//! A run: a persistent session (`clean_session = false`) subscribes the receiver's client id
//! to its topic and goes away; a feeder publishes `msgs` QoS 1 messages to that topic, which
//! the broker queues for the session; then the receiver under test connects with that client
//! id and the broker streams the backlog at it (with its in-flight window toward the
//! client). Measured: messages per second from the first message to the last, and the
//! client's CPU per message. The feeder and the session are raw rumqttc, outside the timing.
//!
//! | path | receiver |
//! |---|---|
//! | `rumqttc` | `EventLoop::poll`, automatic PUBACKs |
//! | `paho` | `AsyncClient::get_stream` (PUBACK once the callback has queued it) |
//! | `actors` / `actors-native` | `conn.subscriber().stream(topic, QoS 1, 1024)` on the paho / native transport (native: PUBACK once the stream item is taken) |

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::StreamExt;
use rumqttc::{Event, Incoming, Outgoing, QoS};

use crate::actor_path::Over;
use crate::cpu::CpuMark;

/// What one inbound run needs.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// `tcp://127.0.0.1:PORT`.
    pub url: String,
    /// The receiver's client id (its persistent session).
    pub client_id: String,
    /// Messages queued and then received.
    pub msgs: usize,
    /// Payload bytes.
    pub payload_len: usize,
    /// The broker's pid, for its CPU time.
    pub broker_pid: Option<u32>,
}

impl InboundConfig {
    fn topic(&self) -> String {
        format!("bench/in/{}", self.client_id)
    }

    fn host_port(&self) -> anyhow::Result<(String, u16)> {
        let rest = self.url.strip_prefix("tcp://").context("tcp:// URL")?;
        let (h, p) = rest.rsplit_once(':').context("port")?;
        Ok((h.to_owned(), p.parse()?))
    }

    fn rumqttc(&self, id: &str, clean: bool) -> anyhow::Result<(rumqttc::AsyncClient, rumqttc::EventLoop)> {
        let (host, port) = self.host_port()?;
        let mut o = rumqttc::MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(60)).set_clean_session(clean).set_inflight(1000);
        let (c, mut ev) = rumqttc::AsyncClient::new(o, 1000);
        let mut net = ev.network_options();
        net.set_tcp_nodelay(true);
        ev.set_network_options(net);
        Ok((c, ev))
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct InboundResult {
    /// Messages received.
    pub msgs: usize,
    /// First message to last.
    pub elapsed: Duration,
    /// Client CPU over the same span (ns).
    pub client_ns: u64,
    /// Broker CPU over the same span (ns).
    pub broker_ns: u64,
}

impl InboundResult {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Makes the session and queues `msgs` messages for it.
pub async fn preload(cfg: &InboundConfig) -> anyhow::Result<()> {
    let topic = cfg.topic();
    // The session: subscribe, then leave without cleaning it.
    let (c, mut ev) = cfg.rumqttc(&cfg.client_id, false)?;
    c.subscribe(&topic, QoS::AtLeastOnce).await?;
    poll_until(&mut ev, |e| matches!(e, Event::Incoming(Incoming::SubAck(_)))).await?;
    c.disconnect().await?;
    poll_until(&mut ev, |e| matches!(e, Event::Outgoing(Outgoing::Disconnect))).await?;
    // The feeder: `msgs` QoS 1 publishes, every PUBACK awaited.
    let (f, mut fev) = cfg.rumqttc(&format!("feed-{}", cfg.client_id), true)?;
    let payload = vec![b'i'; cfg.payload_len];
    let feeder = async {
        for _ in 0..cfg.msgs {
            f.publish(&topic, QoS::AtLeastOnce, false, payload.clone()).await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let acks = async {
        let mut n = 0;
        while n < cfg.msgs {
            if let Event::Incoming(Incoming::PubAck(_)) = fev.poll().await? {
                n += 1;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(120), futures::future::try_join(feeder, acks))
        .await
        .context("feeding the backlog timed out")??;
    f.disconnect().await?;
    poll_until(&mut fev, |e| matches!(e, Event::Outgoing(Outgoing::Disconnect))).await?;
    Ok(())
}

async fn poll_until(ev: &mut rumqttc::EventLoop, done: impl Fn(&Event) -> bool) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = ev.poll().await?;
            if done(&e) {
                return Ok::<_, anyhow::Error>(());
            }
        }
    })
    .await
    .context("rumqttc timed out")?
}

/// Times the span from the first message to the `n`-th.
struct Clock {
    n: usize,
    got: usize,
    start: Option<(Instant, CpuMark)>,
    broker_pid: Option<u32>,
}

impl Clock {
    fn new(cfg: &InboundConfig) -> Self {
        Self { n: cfg.msgs, got: 0, start: None, broker_pid: cfg.broker_pid }
    }

    /// One message came; `Some` with the result after the last.
    fn tick(&mut self) -> Option<InboundResult> {
        if self.start.is_none() {
            self.start = Some((Instant::now(), CpuMark::now(self.broker_pid)));
        }
        self.got += 1;
        (self.got == self.n).then(|| {
            let (t0, cpu) = self.start.as_ref().expect("set above");
            let used = cpu.elapsed();
            InboundResult {
                msgs: self.n.saturating_sub(1).max(1),
                elapsed: t0.elapsed(),
                client_ns: used.client_ns.unwrap_or(0),
                broker_ns: used.broker_ns.unwrap_or(0),
            }
        })
    }
}

const RECEIVE_WITHIN: Duration = Duration::from_secs(120);

/// The raw rumqttc receiver.
pub async fn rumqttc(cfg: &InboundConfig) -> anyhow::Result<InboundResult> {
    let (c, mut ev) = cfg.rumqttc(&cfg.client_id, false)?;
    let mut clock = Clock::new(cfg);
    let r = tokio::time::timeout(RECEIVE_WITHIN, async {
        loop {
            if let Event::Incoming(Incoming::Publish(_)) = ev.poll().await? {
                if let Some(r) = clock.tick() {
                    return Ok::<_, anyhow::Error>(r);
                }
            }
        }
    })
    .await
    .context("rumqttc receive timed out")??;
    c.disconnect().await?;
    let _ = poll_until(&mut ev, |e| matches!(e, Event::Outgoing(Outgoing::Disconnect))).await;
    Ok(r)
}

/// The raw paho receiver.
pub async fn paho(cfg: &InboundConfig) -> anyhow::Result<InboundResult> {
    use paho_mqtt as mqtt;
    let (client, stream, token) = {
        let create = mqtt::CreateOptionsBuilder::new()
            .server_uri(&cfg.url)
            .client_id(&cfg.client_id)
            .persistence(None)
            .mqtt_version(mqtt::MQTT_VERSION_3_1_1)
            .finalize();
        let mut client = mqtt::AsyncClient::new(create).context("paho client")?;
        let stream = client.get_stream(4096);
        let opts = mqtt::ConnectOptionsBuilder::new_v3()
            .keep_alive_interval(Duration::from_secs(60))
            .clean_session(false)
            .finalize();
        let token = client.connect(opts);
        (client, stream, token)
    };
    token.await.context("paho connect")?;
    let mut clock = Clock::new(cfg);
    let r = tokio::time::timeout(RECEIVE_WITHIN, async {
        while let Ok(m) = stream.recv().await {
            if m.is_some() {
                if let Some(r) = clock.tick() {
                    return Ok(r);
                }
            }
        }
        bail!("paho stream ended")
    })
    .await
    .context("paho receive timed out")??;
    client.disconnect(None).await.context("paho disconnect")?;
    Ok(r)
}

/// The actor tree's Subscriber stream, on `over`.
pub async fn actors(cfg: &InboundConfig, over: Over) -> anyhow::Result<InboundResult> {
    use connector_core::{MqttOptions, MqttProvider};
    let provider =
        MqttProvider::new(MqttOptions::new(cfg.url.as_str(), cfg.client_id.as_str()).clean_session(false))?;
    let kind = match over {
        Over::Paho => connector_actors::transport::TransportKind::Paho,
        Over::Native => connector_actors::transport::TransportKind::Native,
    };
    let conn = connector_actors::Connector::builder(provider).transport_kind(kind).start();
    // Registered before the link is up, so the backlog finds its route.
    let (_, mut stream) =
        conn.subscriber().stream(cfg.topic(), connector_core::QoS::AtLeastOnce, 1024).await?;
    let mut clock = Clock::new(cfg);
    let r = tokio::time::timeout(RECEIVE_WITHIN, async {
        while stream.next().await.is_some() {
            if let Some(r) = clock.tick() {
                return Ok(r);
            }
        }
        bail!("subscriber stream ended")
    })
    .await
    .context("actor receive timed out")??;
    conn.stop().await;
    Ok(r)
}
