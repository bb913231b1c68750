//! Emulator scale: N devices over TLS from one process (one `Fleet`, one shared TLS
//! context) to one standalone emulator process.
//!
//! ```text
//! cargo build --release -p connector-emulator
//! cargo run --release -p connector-benches --bin emulator_scale -- [--cloud azure|aws]
//!     [--n 1000,10000] [--emulator target/release/connector-emulator] [--connect-rate 1000]
//! ```
//!
//! Per N (a fresh emulator each): connect all N — Azure (the default): N devices, each
//! with its own SAS key, MQTT over TLS on the hub port; AWS: mutual TLS on the AWS endpoint,
//! one certificate for the fleet — then each publishes one QoS 1 telemetry message and waits
//! for its PUBACK, then all stop. Printed: connect time, RSS growth per connection of this
//! process and of the emulator, and the stop time.
//!
//! The emulator's AWS endpoint terminates TLS and relays each device to its MQTT core over
//! loopback: three file descriptors per AWS device (one per Azure device), so under a
//! 20,000 descriptor hard limit it holds about 6,600 AWS devices.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use connector_actors::{Connector, Fleet};
use connector_aws::{AwsAuth, AwsOptions, AwsProvider, X509Credentials};
use connector_azure::{AzureOptions, AzureProvider, ConnectionString};
use connector_core::{PemSource, Provider, Publish, QoS};
use connector_emulator::control::api::Authentication;
use connector_emulator::control::aws_api::CreateCertificate;
use connector_emulator::ControlClient;
use futures::future::join_all;

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The emulator process; killed when dropped.
struct Emu {
    child: Child,
    _dir: tempfile::TempDir,
    ca: PathBuf,
    aws_port: u16,
    hub_port: u16,
    control: ControlClient,
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_emulator(bin: &str) -> anyhow::Result<Emu> {
    let dir = tempfile::tempdir()?;
    let (mqtt, control, aws_mqtt, aws_http) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let child = Command::new(bin)
        .args(["serve", "--no-websocket", "--state-dir"])
        .arg(dir.path())
        .args(["--mqtt-port", &mqtt.to_string(), "--control-port", &control.to_string()])
        .args(["--aws-mqtt-port", &aws_mqtt.to_string(), "--aws-port", &aws_http.to_string()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {bin} (build it: cargo build --release -p connector-emulator)"))?;
    let ctl = ControlClient::from_addr(([127, 0, 0, 1], control).into());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.info().await.is_err() {
        if Instant::now() > deadline {
            bail!("the emulator's control API did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = dir.path().join("ca.pem");
    Ok(Emu { child, _dir: dir, ca, aws_port: aws_mqtt, hub_port: mqtt, control: ctl })
}

/// N AWS providers: mutual TLS with one certificate for the fleet.
async fn aws_providers(emu: &Emu, n: usize) -> anyhow::Result<Vec<Arc<dyn Provider>>> {
    let cert = emu
        .control
        .aws_create_certificate(&CreateCertificate {
            common_name: Some("fleet".into()),
            ..Default::default()
        })
        .await?;
    let key = cert.private_key_pem.clone().context("the emulator issues the key")?;
    (0..n)
        .map(|i| {
            let creds = X509Credentials::from_pem(cert.certificate_pem.clone(), key.clone());
            let opts = AwsOptions::new("localhost", format!("scale-{i}"), AwsAuth::Certificate(creds))
                .port(emu.aws_port)
                .trust_roots(PemSource::File(emu.ca.clone()));
            Ok(Arc::new(AwsProvider::new(opts)?) as Arc<dyn Provider>)
        })
        .collect()
}

/// N Azure providers: a device identity (SAS key) each, registered through the control API.
async fn azure_providers(emu: &Emu, n: usize) -> anyhow::Result<Vec<Arc<dyn Provider>>> {
    let info = emu.control.info().await?;
    let mut out: Vec<Arc<dyn Provider>> = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("scale-{i}");
        let Authentication::Sas { symmetric_key } = emu.control.create_device(&id).await?.authentication
        else {
            bail!("expected a SAS device")
        };
        let cs: ConnectionString = format!(
            "HostName={};DeviceId={id};SharedAccessKey={}",
            info.hub_host_name, symmetric_key.primary_key
        )
        .parse()?;
        let mut opts = AzureOptions::default().port(emu.hub_port);
        opts.trust_roots = Some(PemSource::File(emu.ca.clone()));
        out.push(Arc::new(AzureProvider::new(cs, opts)?));
    }
    Ok(out)
}

async fn run_one(bin: &str, aws: bool, n: usize, rate: f64) -> anyhow::Result<String> {
    let emu = start_emulator(bin).await?;
    let providers = if aws { aws_providers(&emu, n).await? } else { azure_providers(&emu, n).await? };
    let fleet = Fleet::builder().connects_per_second(rate).build();
    let (rss0, emu0) =
        (connector_benches::rss::Rss::current().map_or(0, |r| r.total), rss_of(emu.child.id()));
    let t0 = Instant::now();
    let conns: Vec<Connector> = providers.into_iter().map(|p| fleet.connector_arc(p).start()).collect();
    let bound = Duration::from_secs_f64(n as f64 / rate) + Duration::from_secs(120);
    let failed =
        join_all(conns.iter().map(|c| c.wait_connected(bound))).await.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {n} did not connect");
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let (rss1, emu1) =
        (connector_benches::rss::Rss::current().map_or(0, |r| r.total), rss_of(emu.child.id()));
    let sends = conns
        .iter()
        .map(|c| c.publisher().publish(Publish::telemetry(&b"{\"t\":1}"[..]).qos(QoS::AtLeastOnce)));
    let lost = join_all(sends).await.iter().filter(|r| r.is_err()).count();
    let t1 = Instant::now();
    join_all(conns.iter().map(Connector::stop)).await;
    drop(conns);
    let stop_s = t1.elapsed().as_secs_f64();
    Ok(format!(
        "| {n} | {connect_s:.2} | {:.1} | {:.1} | {lost} | {stop_s:.2} |",
        rss1.saturating_sub(rss0) as f64 / n as f64,
        emu1.saturating_sub(emu0) as f64 / n as f64
    ))
}

fn main() -> anyhow::Result<()> {
    let mut ns = vec![1000, 10_000];
    let mut bin = "target/release/connector-emulator".to_owned();
    let mut rate = 1000.0;
    let mut aws = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => ns = value()?.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?,
            "--emulator" => bin = value()?,
            "--connect-rate" => rate = value()?.parse()?,
            "--cloud" => {
                aws = match value()?.as_str() {
                    "aws" => true,
                    "azure" => false,
                    other => bail!("--cloud {other}: azure or aws"),
                }
            }
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let fds = connector_benches::raise_fd_limit();
    println!(
        "emulator_scale: {}, connects paced at {rate}/s, fd limit {fds}",
        if aws {
            "AWS mTLS (one certificate, one shared TLS context)"
        } else {
            "Azure SAS over TLS (a key per device, one shared TLS context)"
        }
    );
    println!("| N | connect all (s) | client RSS per connection (KiB) | emulator RSS per connection (KiB) | QoS 1 lost | stop all (s) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in ns {
        println!("{}", actix_rt::System::new().block_on(run_one(&bin, aws, n, rate))?);
    }
    Ok(())
}
