//! Fleet simulator: N simulated devices of either cloud in one process, each publishing
//! telemetry at a rate and answering direct methods (Azure) or running jobs (AWS), all
//! through one [`Fleet`]: one native transport and TLS context, aggregated metrics, paced
//! connects and jittered reconnects.
//!
//! ```text
//! cargo run --release -p connector-examples --bin fleet_simulator -- \
//!     [--cloud azure|aws] [--devices 100] [--rate 1.0] [--duration 20] \
//!     [--connect-rate 200] [--prefix sim] [--metrics 127.0.0.1:9899] \
//!     [--azure-connection-strings FILE]
//! ```
//!
//! - **On the emulator** (the default: no cloud configured) the emulator starts in-process,
//!   the devices are created in it, and after `--duration` seconds the simulator plays the
//!   back end: it invokes a method on (Azure) or creates a job for (AWS) a sample of devices
//!   and checks every answer, then prints a `fleet:` summary line and exits 0 when every
//!   device connected and answered.
//! - **Against a real hub**: `--azure-connection-strings FILE` (one device connection
//!   string per line), or for AWS `AWS_IOT_ENDPOINT`, `AWS_IOT_CERT`, `AWS_IOT_KEY`
//!   (`AWS_IOT_CA` optional) with things named `{prefix}-{i}` sharing that certificate
//!   (its policy must allow those client ids). It then runs until `--duration` or Ctrl-C.
//!
//! `--rate` is telemetry messages per second per device (QoS 1, a small JSON document);
//! `--metrics` serves the fleet's aggregated Prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use connector_actors::methods::{MethodCall, MethodResponse};
use connector_actors::{Connector, Fleet, JobOutcome, JobRun, MetricsServer};
use connector_aws::{AwsAuth, AwsOptions, AwsProvider, X509Credentials};
use connector_azure::{AzureOptions, AzureProvider, ConnectionString};
use connector_core::{ConnectionState, PemSource, Provider, Publish, QoS};
use connector_emulator::control::api::{Authentication, MethodInvocation};
use connector_emulator::control::aws_api::{CreateCertificate, CreateJob, JobExecutionStatus};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::json;

#[derive(Debug, Clone)]
struct Args {
    aws: bool,
    devices: usize,
    rate: f64,
    duration: Duration,
    connect_rate: f64,
    prefix: String,
    metrics: Option<std::net::SocketAddr>,
    azure_connection_strings: Option<std::path::PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        aws: false,
        devices: 100,
        rate: 1.0,
        duration: Duration::from_secs(20),
        connect_rate: 200.0,
        prefix: "sim".into(),
        metrics: None,
        azure_connection_strings: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--cloud" => {
                a.aws = match value()?.as_str() {
                    "azure" => false,
                    "aws" => true,
                    other => bail!("--cloud is azure or aws, not {other}"),
                }
            }
            "--devices" => a.devices = value()?.parse().context("--devices")?,
            "--rate" => a.rate = value()?.parse().context("--rate")?,
            "--duration" => a.duration = Duration::from_secs_f64(value()?.parse().context("--duration")?),
            "--connect-rate" => a.connect_rate = value()?.parse().context("--connect-rate")?,
            "--prefix" => a.prefix = value()?,
            "--metrics" => a.metrics = Some(value()?.parse().context("--metrics")?),
            "--azure-connection-strings" => a.azure_connection_strings = Some(value()?.into()),
            "-h" | "--help" => {
                println!("see the module documentation: cargo doc -p connector-examples");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.devices == 0 || !(a.rate >= 0.0 && a.rate.is_finite()) {
        bail!("--devices must be at least 1 and --rate a number >= 0");
    }
    Ok(a)
}

/// What the fleet did, counted across devices.
#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    failed: AtomicU64,
    /// Telemetry publishes not answered yet.
    in_flight: AtomicU64,
    /// No new telemetry: the run is ending.
    stopping: std::sync::atomic::AtomicBool,
    methods: AtomicU64,
    jobs: AtomicU64,
}

/// Where the devices connect, and the emulator when it is ours.
struct Target {
    emulator: Option<EmulatorHandle>,
    providers: Vec<Arc<dyn Provider>>,
}

async fn azure_on_emulator(a: &Args) -> anyhow::Result<Target> {
    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    let ctl = emu.control();
    let mut providers: Vec<Arc<dyn Provider>> = Vec::with_capacity(a.devices);
    for i in 0..a.devices {
        let id = format!("{}-{i}", a.prefix);
        let info = ctl.create_device(&id).await?;
        let Authentication::Sas { symmetric_key } = info.authentication else {
            bail!("expected a SAS device")
        };
        let cs: ConnectionString = format!(
            "HostName={};DeviceId={id};SharedAccessKey={}",
            emu.hub_host_name(),
            symmetric_key.primary_key
        )
        .parse()?;
        let mut opts = AzureOptions::default().port(emu.mqtt_port());
        opts.trust_roots = Some(PemSource::File(emu.ca_path().to_owned()));
        providers.push(Arc::new(AzureProvider::new(cs, opts)?));
    }
    Ok(Target { emulator: Some(emu), providers })
}

async fn aws_on_emulator(a: &Args) -> anyhow::Result<Target> {
    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    let ctl = emu.control();
    // One certificate for the whole fleet, attached to every thing.
    let cert = ctl
        .aws_create_certificate(&CreateCertificate {
            common_name: Some("fleet".into()),
            ..Default::default()
        })
        .await?;
    let key = cert.private_key_pem.clone().context("the emulator issues the key")?;
    let port = emu.aws_mqtt_port().context("the emulator's AWS endpoint is enabled")?;
    let mut providers: Vec<Arc<dyn Provider>> = Vec::with_capacity(a.devices);
    for i in 0..a.devices {
        let thing = format!("{}-{i}", a.prefix);
        ctl.aws_create_thing(&thing).await?;
        ctl.aws_attach(&cert.certificate_id, &thing).await?;
        let creds = X509Credentials::from_pem(cert.certificate_pem.clone(), key.clone());
        let opts = AwsOptions::new(emu.aws_endpoint(), thing, AwsAuth::Certificate(creds))
            .port(port)
            .trust_roots(PemSource::File(emu.ca_path().to_owned()));
        providers.push(Arc::new(AwsProvider::new(opts)?));
    }
    Ok(Target { emulator: Some(emu), providers })
}

fn real_cloud(a: &Args) -> anyhow::Result<Option<Target>> {
    if let Some(path) = &a.azure_connection_strings {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let cs: ConnectionString =
                line.trim().parse().with_context(|| format!("{} line {}", path.display(), n + 1))?;
            providers.push(Arc::new(AzureProvider::new(cs, AzureOptions::default())?));
        }
        return Ok(Some(Target { emulator: None, providers }));
    }
    let Some(base) = connector_examples::aws_options_from_env()? else { return Ok(None) };
    let providers = (0..a.devices)
        .map(|i| {
            let mut opts: AwsOptions = base.clone();
            opts.thing_name = format!("{}-{i}", a.prefix);
            Ok(Arc::new(AwsProvider::new(opts)?) as Arc<dyn Provider>)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(Target { emulator: None, providers }))
}

/// The device's behaviour: answer `ping` (Azure) or run `report` jobs (AWS), and publish
/// telemetry at `rate` per second.
fn simulate(conn: &Connector, n: usize, rate: f64, counts: Arc<Counts>) -> anyhow::Result<()> {
    let c = counts.clone();
    if let Some(jobs) = conn.jobs() {
        jobs.register("report", move |_run: JobRun| {
            c.jobs.fetch_add(1, Ordering::Relaxed);
            async move { JobOutcome::succeeded() }
        })?;
    } else {
        conn.methods().register("ping", move |call: MethodCall| {
            let c = c.clone();
            async move {
                c.methods.fetch_add(1, Ordering::Relaxed);
                let echo = call.json::<serde_json::Value>().unwrap_or(serde_json::Value::Null);
                MethodResponse::ok(json!({"pong": echo}))
            }
        })?;
    }
    if rate > 0.0 {
        let publisher = conn.publisher();
        let period = Duration::from_secs_f64(1.0 / rate);
        actix_rt::spawn(async move {
            // Devices start spread over one period, not in step.
            let offset = period.mul_f64((n % 1000) as f64 / 1000.0);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            loop {
                tick.tick().await;
                if counts.stopping.load(Ordering::Relaxed) {
                    break;
                }
                seq += 1;
                let body = json!({"device": n, "seq": seq, "temperature": 20.0 + (seq % 10) as f64});
                let msg = Publish::telemetry(body.to_string().into_bytes()).qos(QoS::AtLeastOnce);
                let (p, c) = (publisher.clone(), counts.clone());
                c.in_flight.fetch_add(1, Ordering::Relaxed);
                actix_rt::spawn(async move {
                    match p.publish(msg).await {
                        Ok(_) => {
                            c.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if c.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("fleet: device {n}: telemetry failed: {e}");
                            }
                        }
                    }
                    c.in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
    }
    Ok(())
}

/// The back end's check on the emulator: a method call (Azure) or a job (AWS) for a sample
/// of devices; returns how many answered correctly.
async fn back_end(emu: &EmulatorHandle, a: &Args, sample: usize) -> anyhow::Result<usize> {
    let ctl = emu.control();
    let step = (a.devices / sample).max(1);
    let ids: Vec<String> =
        (0..a.devices).step_by(step).take(sample).map(|i| format!("{}-{i}", a.prefix)).collect();
    if a.aws {
        ctl.aws_create_job(&CreateJob::new("fleet-report-1", json!({"operation": "report"}), ids.clone()))
            .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut ok = 0;
        for id in &ids {
            loop {
                let e = ctl.aws_job_execution(id, "fleet-report-1", None).await?;
                if !matches!(e.status, JobExecutionStatus::Queued | JobExecutionStatus::InProgress) {
                    ok += usize::from(e.status == JobExecutionStatus::Succeeded);
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("the job on {id} did not end: {:?}", e.status);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        return Ok(ok);
    }
    let mut ok = 0;
    for id in &ids {
        let inv = MethodInvocation {
            method_name: "ping".into(),
            payload: Some(json!({"from": "fleet"})),
            response_timeout_in_seconds: Some(30),
            timeout_ms: None,
        };
        let r = ctl.invoke(id, None, &inv).await?;
        ok += usize::from(r.status == 200 && r.payload["pong"]["from"] == "fleet");
    }
    Ok(ok)
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    connector_examples::init_tracing("error,ntex_server=off");
    let a = args()?;
    let target = match real_cloud(&a)? {
        Some(t) => t,
        None if a.aws => aws_on_emulator(&a).await?,
        None => azure_on_emulator(&a).await?,
    };
    let n = target.providers.len();
    let fleet = Fleet::builder().connects_per_second(a.connect_rate).build();
    // /readyz of a fleet says only that the process is up: the status lines say the rest.
    let (_ready, ready) = tokio::sync::watch::channel(ConnectionState::Connected);
    let _metrics = match a.metrics {
        Some(addr) => {
            let server = MetricsServer::start(addr, fleet.registry().clone(), ready).await?;
            println!("fleet: metrics at http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let counts = Arc::new(Counts::default());
    let started = tokio::time::Instant::now();
    let mut conns = Vec::with_capacity(n);
    for (i, p) in target.providers.into_iter().enumerate() {
        let conn = fleet.connector_arc(p).start();
        simulate(&conn, i, a.rate, counts.clone())?;
        conns.push(conn);
    }
    let bound = Duration::from_secs_f64(n as f64 / a.connect_rate) + Duration::from_secs(60);
    let connected = futures::future::join_all(conns.iter().map(|c| c.wait_connected(bound)))
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    println!("fleet: {connected}/{n} devices connected in {:.1} s", started.elapsed().as_secs_f64());

    let run = async {
        let mut status = tokio::time::interval(Duration::from_secs(5));
        status.tick().await;
        loop {
            status.tick().await;
            let up = conns.iter().filter(|c| c.is_connected()).count();
            println!(
                "fleet: {up}/{n} connected, telemetry acked={} failed={}, methods={} jobs={}",
                counts.acked.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
                counts.methods.load(Ordering::Relaxed),
                counts.jobs.load(Ordering::Relaxed),
            );
        }
    };
    tokio::select! {
        () = run => {}
        () = tokio::time::sleep(a.duration) => {}
        r = tokio::signal::ctrl_c() => r?,
    }

    let mut answered = None;
    let sample = n.min(10);
    if let Some(emu) = &target.emulator {
        answered = Some(back_end(emu, &a, sample).await?);
    }
    let up = conns.iter().filter(|c| c.is_connected()).count();
    // No new telemetry; what was sent is answered (or fails) before the devices stop, so a
    // publish is never cut short by its own device's shutdown.
    counts.stopping.store(true, Ordering::Relaxed);
    let drain = tokio::time::Instant::now() + Duration::from_secs(30);
    while counts.in_flight.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    futures::future::join_all(conns.iter().map(Connector::stop)).await;
    let what = if a.aws { "jobs succeeded" } else { "methods answered" };
    println!(
        "fleet: done: {up}/{n} connected at the end, telemetry acked={} failed={}, {what} {}",
        counts.acked.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        answered.map_or("(no back end)".into(), |k| format!("{k}/{sample}")),
    );
    if connected < n || up < n || answered.is_some_and(|k| k < sample) {
        bail!("not every device connected and answered");
    }
    Ok(())
}
