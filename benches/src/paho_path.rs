//! Raw `paho_mqtt::AsyncClient`: `window` delivery tokens outstanding in a
//! `FuturesUnordered`, completion = token completion (PUBACK for QoS 1, written for QoS 0).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::stream::{FuturesUnordered, StreamExt};
use paho_mqtt as mqtt;

use crate::{Measure, RunConfig, RunResult};

/// Connects a paho client the way the actor tree's transport does (MQTT 3.1.1, clean
/// session, keep-alive 60 s, no persistence, the same in-flight and buffered-message
/// limits).
pub async fn connect(cfg: &RunConfig) -> anyhow::Result<mqtt::AsyncClient> {
    let (client, token) = start_connect(cfg)?;
    token.await.context("paho connect")?;
    Ok(client)
}

/// Creates the client and starts the connect (synchronous: paho's option builders must not
/// live across an await).
fn start_connect(cfg: &RunConfig) -> anyhow::Result<(mqtt::AsyncClient, mqtt::ConnectToken)> {
    let uri = match &cfg.tls_ca {
        Some(_) => cfg.url.replacen("mqtts://", "ssl://", 1),
        None => cfg.url.clone(),
    };
    let create = mqtt::CreateOptionsBuilder::new()
        .server_uri(&uri)
        .client_id(&cfg.client_id)
        .persistence(None)
        .max_buffered_messages(cfg.paho_max_inflight())
        .mqtt_version(mqtt::MQTT_VERSION_3_1_1)
        .finalize();
    let client = mqtt::AsyncClient::new(create).context("paho client")?;
    let mut opts = mqtt::ConnectOptionsBuilder::new_v3();
    if let Some(ca) = &cfg.tls_ca {
        // Paho's defaults verify nothing: the chain, the host name and TLS 1.2 are asked for.
        let ssl = mqtt::SslOptionsBuilder::new()
            .trust_store(ca)
            .context("CA file")?
            .enable_server_cert_auth(true)
            .verify(true)
            .ssl_version(mqtt::SslVersion::Tls_1_2)
            .finalize();
        opts.ssl_options(ssl);
    }
    let opts = opts
        .keep_alive_interval(Duration::from_secs(60))
        .clean_session(true)
        .max_inflight(cfg.paho_max_inflight())
        .finalize();
    let token = client.connect(opts);
    Ok((client, token))
}

/// One run: connect, warm up, time `cfg.msgs` publishes, disconnect.
pub async fn run(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let client = connect(cfg).await?;
    let payload = cfg.payload();
    publish_n(&client, cfg, &payload, cfg.warmup).await?;
    let result = publish_n(&client, cfg, &payload, cfg.msgs).await?;
    client.disconnect(None).await.context("paho disconnect")?;
    Ok(result)
}

async fn publish_n(
    client: &mqtt::AsyncClient,
    cfg: &RunConfig,
    payload: &[u8],
    n: usize,
) -> anyhow::Result<RunResult> {
    let qos = i32::from(cfg.qos);
    let mut pending = FuturesUnordered::new();
    let (mut sent, mut done) = (0usize, 0usize);
    let mut m = Measure::start(cfg, n);
    while done < n {
        while sent < n && pending.len() < cfg.window {
            let t0 = Instant::now();
            let msg = mqtt::Message::new(cfg.topic.as_str(), payload, qos);
            let token = client.try_publish(msg).context("paho publish")?;
            pending.push(async move { token.await.map(|()| t0) });
            sent += 1;
        }
        let t0 = pending.next().await.context("no publish outstanding")?.context("paho delivery")?;
        m.completed(t0);
        done += 1;
    }
    Ok(m.finish(n))
}
