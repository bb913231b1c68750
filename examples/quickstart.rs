//! Quickstart: the supervised connection tree against a local broker.
//!
//! Starts mosquitto on a free loopback port (or uses `--broker tcp://host:port`), builds a
//! [`Connector`], subscribes to its own telemetry, publishes `--count` messages (QoS 1),
//! serves `/metrics` on loopback, prints a status line per second and stops gracefully.
//!
//! ```text
//! cargo run -p connector-examples --example quickstart -- [--broker URI] [--count N]
//! ```

use std::time::Duration;

use anyhow::{bail, Context as _};
use connector_actors::Connector;
use connector_core::{MqttOptions, MqttProvider, Publish, QoS};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    broker: Option<String>,
    count: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { broker: None, count: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--broker" => a.broker = Some(it.next().context("--broker needs a URI")?),
            "--count" => a.count = it.next().context("--count needs a number")?.parse()?,
            "-h" | "--help" => {
                println!("quickstart [--broker tcp://host:port] [--count N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    Ok(a)
}

async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
    s.shutdown().await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let args = args()?;
    // The embedded default: a broker of our own, unless one is named.
    let _broker;
    let url = match &args.broker {
        Some(u) => u.clone(),
        None => {
            _broker = test_support::Mosquitto::start()
                .context("mosquitto is not installed (run ./scripts/deps.sh, or pass --broker)")?;
            println!("started a local mosquitto at {}", _broker.url());
            _broker.url()
        }
    };

    let provider = MqttProvider::new(MqttOptions::new(&url, "quickstart-device"))?;
    let conn = Connector::builder(provider).start();
    conn.wait_connected(Duration::from_secs(10)).await?;
    let metrics = conn.serve_metrics("127.0.0.1:0".parse()?).await?;
    println!("connected to {url}; metrics on http://{}/metrics", metrics.local_addr());

    let (_, mut inbox) =
        conn.subscriber().stream("devices/quickstart-device/#", QoS::AtLeastOnce, 1024).await?;
    let publisher = conn.publisher();
    let mut received = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    for i in 0..args.count {
        tick.tick().await;
        let body = format!("{{\"seq\":{i},\"temperature\":{:.1}}}", 20.0 + (i as f64 * 0.37).sin() * 3.0);
        publisher.publish(Publish::telemetry(body).qos(QoS::AtLeastOnce)).await?;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), inbox.next()).await {
            received += 1;
        }
        if i % 4 == 3 || i + 1 == args.count {
            let s = publisher.stats().await?;
            println!(
                "status: {:?} | sent {} acked {} | queued {} in flight {} | received back {}",
                conn.state(),
                i + 1,
                s.acked_total,
                s.queued_count,
                s.unacked_count,
                received
            );
        }
    }
    while received < args.count {
        match tokio::time::timeout(Duration::from_secs(5), inbox.next()).await {
            Ok(Some(_)) => received += 1,
            _ => break,
        }
    }
    let text = scrape(metrics.local_addr()).await?;
    println!("metrics excerpt:");
    for line in text.lines().filter(|l| {
        l.starts_with("connector_messages_published_total")
            || l.starts_with("connector_publish_ack_latency_seconds_count")
            || l.starts_with("connector_connected")
    }) {
        println!("  {line}");
    }
    conn.stop().await;
    println!("stopped; published {} and received {received} back", args.count);
    if received < args.count {
        bail!("only {received} of {} messages came back", args.count);
    }
    Ok(())
}
