//! Fleet scale: N device connections in one process against one local mosquitto.
//!
//! ```text
//! cargo run --release -p connector-benches --bin fleet_scale -- [--n 100,1000,10000]
//!     [--transport native|paho] [--msgs 5] [--connect-rate 2000] [--no-restart]
//! ```
//!
//! For each N (a fresh broker and fleet each): connect all N through one
//! [`connector_actors::Fleet`] (one transport, aggregated metrics, paced connects), then
//! - **memory**: this process's RSS growth per connection;
//! - **publish**: every device publishes `msgs` QoS 1 messages at once; CPU µs per message
//!   (this process) and wall time;
//! - **restart** (unless `--no-restart`): SIGKILL the broker, every device publishes one
//!   QoS 1 message while it is down, restart it on the same port; the time until all N are
//!   connected again and every outage message is acknowledged; QoS 1 lost must be 0;
//! - **exit**: the time to stop every connector.
//!
//! The file-descriptor limit is raised to the hard limit first (the broker, a child,
//! inherits it); N connections need N descriptors here and N in the broker.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use connector_actors::transport::{NativeTransport, PahoTransport};
use connector_actors::{Connector, Fleet};
use connector_core::{MqttOptions, MqttProvider, Publish, QoS};
use futures::future::join_all;
use test_support::{Mosquitto, MosquittoConfig};

struct Args {
    ns: Vec<usize>,
    transport: String,
    msgs: usize,
    connect_rate: f64,
    restart: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        ns: vec![100, 1000, 10_000],
        transport: "native".into(),
        msgs: 5,
        connect_rate: 2000.0,
        restart: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => {
                a.ns = value()?.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
            }
            "--transport" => a.transport = value()?,
            "--msgs" => a.msgs = value()?.parse()?,
            "--connect-rate" => a.connect_rate = value()?.parse()?,
            "--no-restart" => a.restart = false,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn rss_kib() -> u64 {
    connector_benches::rss::Rss::current().map_or(0, |r| r.total)
}

fn cpu_ns() -> u64 {
    connector_benches::cpu::process_cpu_ns(None).unwrap_or(0)
}

/// One row of the table.
#[derive(Debug, Default)]
struct Row {
    n: usize,
    connect_s: f64,
    kib_per_conn: f64,
    publish_msgs: usize,
    publish_s: f64,
    cpu_us_per_msg: f64,
    restart_s: Option<f64>,
    lost: usize,
    exit_s: f64,
}

async fn wait_all_connected(conns: &[Connector], within: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let waits = conns.iter().map(|c| c.wait_connected(within));
    let failed = join_all(waits).await.into_iter().filter(Result::is_err).count();
    if failed > 0 {
        bail!("{failed} of {} not connected within {within:?}", conns.len());
    }
    Ok(t0.elapsed())
}

async fn publish_round(conns: &[Connector], msgs: usize, topic: &str) -> (usize, usize) {
    let payload = bytes::Bytes::from(vec![b'x'; 100]);
    let sends = conns.iter().flat_map(|c| {
        let (p, payload) = (c.publisher(), payload.clone());
        (0..msgs)
            .map(move |_| p.publish(Publish::to_topic(topic, payload.clone()).qos(QoS::AtLeastOnce)))
            .collect::<Vec<_>>()
    });
    let results = join_all(sends).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    (ok, results.len() - ok)
}

async fn run_one(a: &Args, n: usize) -> anyhow::Result<Row> {
    let mut broker: Mosquitto = Mosquitto::start_with(MosquittoConfig {
        extra: vec!["max_connections -1".into(), "set_tcp_nodelay true".into()],
        ..Default::default()
    })
    .context("mosquitto is not installed")?;
    let url = broker.url();
    let fleet = match a.transport.as_str() {
        "native" => Fleet::builder().transport(std::sync::Arc::new(NativeTransport::new(200))),
        "paho" => Fleet::builder().transport(std::sync::Arc::new(PahoTransport::new(200))),
        other => bail!("unknown transport {other}"),
    }
    .connects_per_second(a.connect_rate)
    .build();

    let rss0 = rss_kib();
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let p = MqttProvider::new(MqttOptions::new(url.clone(), format!("fleet-{n}-{i}")))?;
        conns.push(fleet.connector(p).start());
    }
    let bound = Duration::from_secs_f64(n as f64 / a.connect_rate) + Duration::from_secs(60);
    wait_all_connected(&conns, bound).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib();
    let kib_per_conn = rss1.saturating_sub(rss0) as f64 / n as f64;

    let (c0, t0) = (cpu_ns(), Instant::now());
    let (ok, failed) = publish_round(&conns, a.msgs, "fleet/t").await;
    let publish_s = t0.elapsed().as_secs_f64();
    let cpu_us_per_msg = cpu_ns().saturating_sub(c0) as f64 / 1000.0 / ok.max(1) as f64;
    if failed > 0 {
        bail!("{failed} publishes failed before any fault");
    }

    let mut row =
        Row { n, connect_s, kib_per_conn, publish_msgs: ok, publish_s, cpu_us_per_msg, ..Row::default() };

    // The broker lives until the fleet has stopped.
    let _broker = if !a.restart {
        broker
    } else {
        broker.kill();
        let t0 = Instant::now();
        // Each device publishes one message while the broker is down: accepted, queued.
        let sends: Vec<_> = conns
            .iter()
            .map(|c| {
                c.publisher().publish(Publish::to_topic("fleet/outage", &b"o"[..]).qos(QoS::AtLeastOnce))
            })
            .collect();
        // A two-second outage, then the restart off the runtime thread (it polls the port).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let broker = tokio::task::spawn_blocking(move || {
            broker.restart();
            broker
        })
        .await?;
        let results = join_all(sends).await;
        row.lost = results.iter().filter(|r| r.is_err()).count();
        wait_all_connected(&conns, Duration::from_secs(120)).await?;
        row.restart_s = Some(t0.elapsed().as_secs_f64());
        broker
    };

    let t0 = Instant::now();
    join_all(conns.iter().map(Connector::stop)).await;
    drop(conns);
    row.exit_s = t0.elapsed().as_secs_f64();
    Ok(row)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let fds = connector_benches::raise_fd_limit();
    println!(
        "fleet_scale: transport {}, {} QoS 1 msgs per device, connects paced at {}/s, fd limit {fds}, broker {}",
        a.transport,
        a.msgs,
        a.connect_rate,
        connector_benches::broker::version()
    );
    println!(
        "| N | connect all (s) | RSS per connection (KiB) | publish N×{} (s) | CPU µs/msg | broker SIGKILL → all back + outage msgs acked (s) | QoS 1 lost | stop all (s) |",
        a.msgs
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &a.ns {
        if n as u64 + 64 > fds {
            bail!("N = {n} needs more than the fd limit {fds}");
        }
        let row = actix_rt::System::new().block_on(run_one(&a, n))?;
        println!(
            "| {} | {:.2} | {:.1} | {:.2} | {:.1} | {} | {} | {:.2} |",
            row.n,
            row.connect_s,
            row.kib_per_conn,
            row.publish_s,
            row.cpu_us_per_msg,
            row.restart_s.map_or("—".into(), |s| format!("{s:.2}")),
            row.lost,
            row.exit_s
        );
        let _ = row.publish_msgs;
    }
    Ok(())
}
