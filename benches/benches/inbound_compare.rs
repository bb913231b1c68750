//! Inbound QoS 1: how fast raw rumqttc, raw paho and the actor tree's Subscriber (on paho and
//! on the native transport) take a backlog the broker holds for them (see
//! `connector_benches::inbound`), alternating the paths in every round.
//!
//! ```text
//! cargo bench -p connector-benches --bench inbound_compare [-- --msgs N --rounds N
//!     --payload N --paths rumqttc,paho,actors,actors-native --pin]
//! ```
//!
//! The broker is a quiet local mosquitto with `max_queued_messages 0` (it keeps the whole
//! backlog) and `max_inflight_messages 100` (its window toward the receiver). Without
//! `--bench` (as `cargo test --all-targets` runs it) it is a smoke run of 300 messages × 1
//! round.

use anyhow::{bail, Context as _};
use connector_benches::actor_path::Over;
use connector_benches::inbound::{self, InboundConfig, InboundResult};
use connector_benches::{broker, stats};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num = |name: &str, default: usize| -> anyhow::Result<usize> {
        value(name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name} {v}")))
    };
    let msgs = num("--msgs", if full { 20_000 } else { 300 })?.max(2);
    let rounds = num("--rounds", if full { 5 } else { 1 })?.max(1);
    let payload_len = num("--payload", 100)?;
    let paths: Vec<String> = value("--paths")
        .unwrap_or_else(|| "rumqttc,paho,actors,actors-native".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let pin = args.iter().any(|a| a == "--pin");
    if let Some(status) = connector_benches::pinned_rerun(pin)? {
        if !status.success() {
            bail!("pinned run failed: {status}");
        }
        return Ok(());
    }
    let pinned = std::env::var_os(connector_benches::PINNED_ENV).is_some();
    let b = broker::Mosquitto::start_with(
        pinned.then_some(0),
        &["max_queued_messages 0", "max_inflight_messages 100"],
    )
    .context("mosquitto did not start (set MOSQUITTO=path)")?;
    let url = b.url();
    let mut results: Vec<(String, Vec<InboundResult>)> =
        paths.iter().map(|p| (p.clone(), Vec::new())).collect();
    actix_rt::System::new().block_on(async {
        for round in 0..rounds {
            for (path, runs) in results.iter_mut() {
                let cfg = InboundConfig {
                    url: url.clone(),
                    client_id: format!("in-{path}-{round}"),
                    msgs,
                    payload_len,
                    broker_pid: Some(b.pid()),
                };
                inbound::preload(&cfg).await.with_context(|| format!("preloading for {path}"))?;
                let r = match path.as_str() {
                    "rumqttc" => inbound::rumqttc(&cfg).await,
                    "paho" => inbound::paho(&cfg).await,
                    "actors" => inbound::actors(&cfg, Over::Paho).await,
                    "actors-native" => inbound::actors(&cfg, Over::Native).await,
                    other => bail!("unknown path {other}"),
                }
                .with_context(|| format!("receiving on {path}"))?;
                eprintln!("round {} {path:14} {:>9.0} msgs/s", round + 1, r.rate());
                runs.push(r);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!(
        "inbound_compare: {payload_len}-byte QoS 1 backlog of {msgs} msgs x {rounds} rounds, {} (max_inflight_messages 100){}",
        broker::version(),
        if pinned { "; client and broker pinned to CPU 0" } else { "" }
    );
    println!("path            msgs/s(median)  cpu_us/msg  broker_us/msg  vs_rumqttc  paired");
    let median_rate =
        |runs: &[InboundResult]| stats::median(&runs.iter().map(InboundResult::rate).collect::<Vec<_>>());
    let base: Option<Vec<InboundResult>> =
        results.iter().find(|(p, _)| p == "rumqttc").map(|(_, r)| r.clone());
    for (path, runs) in &results {
        let rate = median_rate(runs);
        let cpu = stats::median(
            &runs.iter().map(|r| r.client_ns as f64 / 1000.0 / r.msgs as f64).collect::<Vec<_>>(),
        );
        let broker = stats::median(
            &runs.iter().map(|r| r.broker_ns as f64 / 1000.0 / r.msgs as f64).collect::<Vec<_>>(),
        );
        let (ratio, paired) = match &base {
            Some(b) if path != "rumqttc" => {
                let paired: Vec<f64> = runs.iter().zip(b).map(|(r, b)| r.rate() / b.rate()).collect();
                (format!("{:.2}", rate / median_rate(b)), format!("{:.2}", stats::median(&paired)))
            }
            _ => (String::new(), String::new()),
        };
        println!("{path:14}  {rate:>14.0}  {cpu:>10.2}  {broker:>13.2}  {ratio:>10}  {paired:>6}");
    }
    Ok(())
}
