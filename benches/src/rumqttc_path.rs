//! Raw `rumqttc::AsyncClient` + `EventLoop`, driven from one task: top up to `window`
//! outstanding publishes with `try_publish`, then poll the event loop once.
//!
//! Completion is `Incoming::PubAck` for QoS 1 and `Outgoing::Publish` (the packet written
//! to the connection) for QoS 0. The event loop takes requests in order, so the publish
//! call times are matched to packet ids as `Outgoing::Publish(pkid)` events come out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};

use crate::{Measure, RunConfig, RunResult};

/// Connects (MQTT 3.1.1, clean session, keep-alive 60 s, in-flight = window,
/// `TCP_NODELAY` like paho) and polls until CONNACK.
pub async fn connect(cfg: &RunConfig) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let (host, port) = cfg.host_port()?;
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
    if let Some(ca) = &cfg.tls_ca {
        // native-tls: OpenSSL on Linux, as the other two paths.
        let ca = std::fs::read(ca).context("CA file")?;
        opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::SimpleNative {
            ca,
            client_auth: None,
        }));
    }
    opts.set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true)
        .set_inflight(u16::try_from(cfg.window.clamp(1, 65_535)).unwrap_or(u16::MAX));
    let (client, mut eventloop) = AsyncClient::new(opts, cfg.window.max(10));
    // Paho sets TCP_NODELAY on its sockets; rumqttc does not by default. Same socket for
    // both.
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Incoming::ConnAck(ack)) = eventloop.poll().await? {
                return Ok::<_, rumqttc::ConnectionError>(ack);
            }
        }
    })
    .await
    .context("rumqttc connect timed out")?
    .context("rumqttc connect")?;
    if connected.code != rumqttc::ConnectReturnCode::Success {
        bail!("rumqttc connect refused: {:?}", connected.code);
    }
    Ok((client, eventloop))
}

/// One run: connect, warm up, time `cfg.msgs` publishes, disconnect.
pub async fn run(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let (client, mut eventloop) = connect(cfg).await?;
    let payload = cfg.payload();
    publish_n(&client, &mut eventloop, cfg, &payload, cfg.warmup).await?;
    let result = publish_n(&client, &mut eventloop, cfg, &payload, cfg.msgs).await?;
    client.try_disconnect().context("rumqttc disconnect")?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    Ok(result)
}

async fn publish_n(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    cfg: &RunConfig,
    payload: &[u8],
    n: usize,
) -> anyhow::Result<RunResult> {
    let qos = if cfg.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
    let mut called: VecDeque<Instant> = VecDeque::with_capacity(cfg.window);
    let mut by_pkid: Vec<Option<Instant>> = vec![None; usize::from(u16::MAX) + 1];
    let (mut sent, mut done) = (0usize, 0usize);
    let mut m = Measure::start(cfg, n);
    while done < n {
        while sent < n && sent - done < cfg.window {
            let t0 = Instant::now();
            client.try_publish(cfg.topic.as_str(), qos, false, payload).context("rumqttc publish")?;
            called.push_back(t0);
            sent += 1;
        }
        match eventloop.poll().await.context("rumqttc event loop")? {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let t0 = called.pop_front().context("a publish nobody called")?;
                if qos == QoS::AtMostOnce {
                    m.completed(t0);
                    done += 1;
                } else {
                    by_pkid[usize::from(pkid)] = Some(t0);
                }
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(t0) = by_pkid[usize::from(ack.pkid)].take() {
                    m.completed(t0);
                    done += 1;
                }
            }
            _ => {}
        }
    }
    Ok(m.finish(n))
}
