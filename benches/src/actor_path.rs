//! The actor tree: `Connector::builder(provider).inflight_window(window).start()`, then
//! `window` `conn.publisher().publish(..)` calls outstanding (each one a `PublishRequest`
//! in the Publisher's mailbox); completion = the Publisher's reply (PUBACK for QoS 1,
//! written for QoS 0). Must run inside an actix `System`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use connector_actors::Connector;
use connector_core::{MqttOptions, MqttProvider, PemSource, Publish, QoS, TlsOptions};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::{Measure, RunConfig, RunResult};

/// Which transport the connector runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// paho-mqtt.
    Paho,
    /// The native transport.
    Native,
}

/// Starts a connector (MQTT 3.1.1, clean session, keep-alive 60 s: the provider defaults)
/// on `over` and waits until it is connected.
pub async fn connect(cfg: &RunConfig, over: Over) -> anyhow::Result<Connector> {
    let mut options = MqttOptions::new(cfg.url.as_str(), cfg.client_id.as_str());
    if let Some(ca) = &cfg.tls_ca {
        options = options.tls(TlsOptions { ca: Some(PemSource::File(ca.clone())), ..Default::default() });
    }
    let provider = MqttProvider::new(options).context("provider options")?;
    let inflight = cfg.window.saturating_mul(2).max(64);
    let transport: std::sync::Arc<dyn connector_actors::transport::Transport> = match over {
        Over::Paho => std::sync::Arc::new(connector_actors::transport::PahoTransport::new(inflight)),
        Over::Native => std::sync::Arc::new(connector_actors::transport::NativeTransport::new(inflight)),
    };
    let conn = Connector::builder(provider).inflight_window(cfg.window).transport(transport).start();
    conn.wait_connected(Duration::from_secs(10)).await.context("connector did not connect")?;
    Ok(conn)
}

/// One run: connect, warm up, time `cfg.msgs` publishes, stop.
pub async fn run(cfg: &RunConfig, over: Over) -> anyhow::Result<RunResult> {
    let conn = connect(cfg, over).await?;
    let payload = Bytes::from(cfg.payload());
    publish_n(&conn, cfg, &payload, cfg.warmup).await?;
    let result = publish_n(&conn, cfg, &payload, cfg.msgs).await?;
    conn.stop().await;
    Ok(result)
}

async fn publish_n(
    conn: &Connector,
    cfg: &RunConfig,
    payload: &Bytes,
    n: usize,
) -> anyhow::Result<RunResult> {
    let qos = if cfg.qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
    let publisher = conn.publisher();
    let mut pending = FuturesUnordered::new();
    let (mut sent, mut done) = (0usize, 0usize);
    let mut m = Measure::start(cfg, n);
    while done < n {
        while sent < n && pending.len() < cfg.window {
            let t0 = Instant::now();
            let p = Publish::to_topic(cfg.topic.as_str(), payload.clone()).qos(qos);
            let reply = publisher.publish(p);
            pending.push(async move { (reply.await, t0) });
            sent += 1;
        }
        let (reply, t0) = pending.next().await.context("no publish outstanding")?;
        reply.context("publish failed")?;
        m.completed(t0);
        done += 1;
    }
    Ok(m.finish(n))
}
