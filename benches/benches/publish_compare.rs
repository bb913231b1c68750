//! QoS 1 and QoS 0 publishes of 100 bytes through the actor tree's Publisher (over paho and
//! over the native transport), raw paho `AsyncClient`, raw rumqttc and a raw blocking
//! socket that writes whole windows per syscall (the ceiling, [`connector_benches::raw_path`]),
//! against one local mosquitto, alternating raw → paho → rumqttc → actors → actors-native in
//! every round. Prints msgs/s (median over rounds), PUBACK (or write) latency p50/p99 (over
//! all rounds' messages), CPU time per message of the client process and of the broker
//! (median over rounds), the ratios to raw paho, raw rumqttc and the raw socket (of the
//! medians, and paired within rounds against rumqttc), the
//! client CPU per thread, and the RSS of minimal connected programs.
//!
//! ```text
//! cargo bench -p connector-benches --bench publish_compare [-- --msgs N --rounds N
//!     --window N --warmup N --payload N --qos 1,0 --paths raw,paho,rumqttc,actors,actors-native
//!     --broker local|test-support --pin --no-rss --tls]
//! ```
//!
//! The same settings can be given as `BENCH_MSGS`, `BENCH_ROUNDS`, `BENCH_WINDOW`,
//! `BENCH_WARMUP`, `BENCH_PAYLOAD`, `BENCH_QOS`, `BENCH_PATHS`, `BENCH_BROKER`,
//! `BENCH_PIN=1`, `BENCH_TLS=1` (arguments win).
//!
//! `--tls` runs every path over TLS to the broker's second listener (a fresh CA and a
//! `localhost` certificate made with openssl; each client verifies chain and host name).
//! Paho's TLS method is fixed at 1.2 (its `Tls_1_2` setting, the one the actor tree's paho
//! transport uses: paho C has no "at least 1.2"); the native transport and rumqttc
//! (native-tls, i.e. OpenSSL too) negotiate 1.3.
//!
//! `--pin` runs the client (all its threads) and the broker on CPU 0 via `taskset`: on a
//! small VM, unpinned runs are bimodal because paho's three threads hand every message
//! over between CPUs (cross-CPU wake-ups are expensive there); on one CPU the runs are
//! steady and throughput is simply inverse to the CPU time per message.
//!
//! Progress goes to stderr, the results table to stdout. Without `--bench` (which
//! `cargo bench` passes; `cargo test --all-targets` does not) the defaults shrink to a
//! smoke run of 500 messages × 1 round; pass `--bench` when running the binary directly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{bail, Context as _};
use connector_benches::broker;
use connector_benches::{
    actor_path, cpu, paho_path, raw_path, rss, rumqttc_path, stats, RunConfig, RunResult,
};

/// The broker under test: a quiet local one (default) or `test_support::Mosquitto`, which
/// logs every packet (`log_type all`) and so costs the broker CPU per message.
enum Broker {
    Local(broker::Mosquitto),
    TestSupport(Box<test_support::Mosquitto>),
}

impl Broker {
    fn start(kind: &str, cpu: Option<usize>, tls: Option<broker::TlsFiles<'_>>) -> anyhow::Result<Self> {
        Ok(match kind {
            "local" => Broker::Local(
                match tls {
                    Some(files) => broker::Mosquitto::start_tls(cpu, files),
                    None => broker::Mosquitto::start_on(cpu),
                }
                .context("mosquitto did not start (set MOSQUITTO=path)")?,
            ),
            "test-support" if tls.is_some() => bail!("--tls needs the local broker"),
            "test-support" => Broker::TestSupport(Box::new(
                test_support::Mosquitto::start().context("mosquitto not found")?,
            )),
            other => bail!("unknown broker {other:?} (local, test-support)"),
        })
    }

    fn url(&self) -> String {
        match self {
            Broker::Local(b) => b.url(),
            Broker::TestSupport(b) => b.url(),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Broker::Local(b) => Some(b.pid()),
            Broker::TestSupport(b) => {
                let conf = b.dir().join("mosquitto.conf");
                cpu::find_pid_with_arg(&conf.to_string_lossy())
            }
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Broker::Local(_) => "quiet",
            Broker::TestSupport(_) => "test-support, log_type all",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Path {
    Raw,
    Paho,
    Rumqttc,
    Actors,
    ActorsNative,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Raw => "raw",
            Path::Paho => "paho",
            Path::Rumqttc => "rumqttc",
            Path::Actors => "actors",
            Path::ActorsNative => "actors-native",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "raw" => Path::Raw,
            "paho" => Path::Paho,
            "rumqttc" => Path::Rumqttc,
            "actors" | "actor" => Path::Actors,
            "actors-native" | "native" => Path::ActorsNative,
            other => bail!("unknown path {other:?} (raw, paho, rumqttc, actors, actors-native)"),
        })
    }
}

#[derive(Debug)]
struct Settings {
    msgs: usize,
    rounds: usize,
    window: usize,
    warmup: usize,
    payload: usize,
    qos: Vec<u8>,
    paths: Vec<Path>,
    broker: String,
    pin: bool,
    rss: bool,
    tls: bool,
}

fn parse_list<T>(s: &str, f: impl Fn(&str) -> anyhow::Result<T>) -> anyhow::Result<Vec<T>> {
    s.split(',').filter(|x| !x.is_empty()).map(|x| f(x.trim())).collect()
}

fn parse_qos(s: &str) -> anyhow::Result<u8> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        other => bail!("QoS {other:?}: 0 or 1"),
    }
}

fn settings() -> anyhow::Result<Settings> {
    let mut kv: BTreeMap<String, String> = BTreeMap::new();
    for (env, key) in [
        ("BENCH_MSGS", "msgs"),
        ("BENCH_ROUNDS", "rounds"),
        ("BENCH_WINDOW", "window"),
        ("BENCH_WARMUP", "warmup"),
        ("BENCH_PAYLOAD", "payload"),
        ("BENCH_QOS", "qos"),
        ("BENCH_PATHS", "paths"),
        ("BENCH_BROKER", "broker"),
    ] {
        if let Ok(v) = std::env::var(env) {
            kv.insert(key.to_owned(), v);
        }
    }
    let mut rss = true;
    let mut pin = std::env::var("BENCH_PIN").is_ok_and(|v| v == "1");
    let mut tls = std::env::var("BENCH_TLS").is_ok_and(|v| v == "1");
    // Without `--bench` (e.g. `cargo test --all-targets`) this is a quick smoke run.
    let mut full = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // `cargo bench` passes `--bench`; a filter string may follow from the user.
            "--bench" => full = true,
            "--no-rss" => rss = false,
            "--pin" => pin = true,
            "--tls" => tls = true,
            flag if flag.starts_with("--") => {
                let key = flag.trim_start_matches("--");
                let (key, value) = match key.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (key.to_owned(), args.next().with_context(|| format!("{flag} needs a value"))?),
                };
                kv.insert(key, value);
            }
            _ => {}
        }
    }
    let num = |k: &str, default: usize| -> anyhow::Result<usize> {
        kv.get(k)
            .map(|v| v.replace('_', "").parse().with_context(|| format!("--{k}")))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let s = Settings {
        msgs: num("msgs", if full { 20_000 } else { 500 })?.max(1),
        rounds: num("rounds", if full { 5 } else { 1 })?.max(1),
        window: num("window", 100)?.max(1),
        warmup: num("warmup", if full { 2_000 } else { 100 })?,
        payload: num("payload", 100)?,
        qos: parse_list(kv.get("qos").map_or("1,0", String::as_str), parse_qos)?,
        paths: parse_list(
            kv.get("paths").map_or("raw,paho,rumqttc,actors,actors-native", String::as_str),
            Path::parse,
        )?,
        broker: kv.get("broker").cloned().unwrap_or_else(|| "local".to_owned()),
        pin,
        rss,
        tls,
    };
    for k in kv.keys() {
        if !["msgs", "rounds", "window", "warmup", "payload", "qos", "paths", "broker"].contains(&k.as_str())
        {
            bail!("unknown option --{k}");
        }
    }
    Ok(s)
}

async fn run_one(path: Path, cfg: &RunConfig) -> anyhow::Result<RunResult> {
    match path {
        Path::Raw => raw_path::run(cfg),
        Path::Paho => paho_path::run(cfg).await,
        Path::Rumqttc => rumqttc_path::run(cfg).await,
        Path::Actors => actor_path::run(cfg, actor_path::Over::Paho).await,
        Path::ActorsNative => actor_path::run(cfg, actor_path::Over::Native).await,
    }
}

fn main() -> anyhow::Result<()> {
    let s = settings()?;
    if let Some(status) = connector_benches::pinned_rerun(s.pin)? {
        if !status.success() {
            bail!("pinned run failed: {status}");
        }
        return Ok(());
    }
    let pinned = std::env::var_os(connector_benches::PINNED_ENV).is_some();
    if pinned && s.broker != "local" {
        bail!("--pin needs the local broker");
    }
    let pki = s.tls.then(test_support::TestPki::generate);
    let files = pki.as_ref().map(|p| broker::TlsFiles { cert: &p.server_cert, key: &p.server_key });
    let broker = Broker::start(&s.broker, pinned.then_some(0), files)?;
    let plain_url = broker.url();
    let url = match (&broker, &pki) {
        (Broker::Local(b), Some(_)) => b.tls_url().context("no TLS listener")?,
        _ => plain_url.clone(),
    };
    let tls_ca = pki.as_ref().map(|p| p.ca_cert.clone());
    let broker_pid = broker.pid();
    let version = broker::version();
    eprintln!("publish_compare: broker {url} (pid {broker_pid:?}), {s:?}");

    let mut results: BTreeMap<(u8, Path), Vec<RunResult>> = BTreeMap::new();
    let total = Instant::now();
    actix_rt::System::new().block_on(async {
        for round in 1..=s.rounds {
            for &qos in &s.qos {
                for &path in &s.paths {
                    let cfg = RunConfig {
                        url: url.clone(),
                        tls_ca: tls_ca.clone(),
                        client_id: format!("bench-{}-q{qos}-r{round}", path.name()),
                        topic: format!("bench/{}", path.name()),
                        payload_len: s.payload,
                        qos,
                        msgs: s.msgs,
                        warmup: s.warmup,
                        window: s.window,
                        broker_pid,
                    };
                    let r = run_one(path, &cfg)
                        .await
                        .with_context(|| format!("{} QoS {qos} round {round}", path.name()))?;
                    eprintln!(
                        "round {round} qos {qos} {:<8} {:>9.0} msgs/s, longest gap {:.1} ms before completion {}",
                        path.name(),
                        r.rate(),
                        f64::from(r.max_gap.0) / 1000.0,
                        r.max_gap.1
                    );
                    results.entry((qos, path)).or_default().push(r);
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    eprintln!("measured in {:.1} s", total.elapsed().as_secs_f64());

    let mut out = String::new();
    writeln!(
        out,
        "publish_compare: {}-byte payloads, window {}, {} msgs x {} rounds, {version} on loopback{} ({}{})",
        s.payload,
        s.window,
        s.msgs,
        s.rounds,
        if s.tls { " over TLS" } else { "" },
        broker.describe(),
        if pinned { "; client and broker pinned to CPU 0" } else { "" }
    )?;
    writeln!(
        out,
        "{:<4} {:<13} {:>14} {:>7} {:>7} {:>10} {:>13} {:>8} {:>11} {:>7} {:>14}   msgs/s per round",
        "qos",
        "path",
        "msgs/s(median)",
        "p50_us",
        "p99_us",
        "cpu_us/msg",
        "broker_us/msg",
        "vs_paho",
        "vs_rumqttc",
        "vs_raw",
        "paired_rumqttc"
    )?;
    let fmt_opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    for &qos in &s.qos {
        let rate_of = |p: Path| -> Option<f64> {
            results.get(&(qos, p)).map(|rs| {
                let rates: Vec<f64> = rs.iter().map(RunResult::rate).collect();
                stats::median(&rates)
            })
        };
        // The ratio of the medians to `base`'s.
        let ratio = |path: Path, base: Path| -> String {
            match (rate_of(path), rate_of(base)) {
                (Some(r), Some(b)) if path != base && b > 0.0 => format!("{:.2}", r / b),
                _ => String::new(),
            }
        };
        // The same ratio taken within each round (neighbours in time), then the median:
        // less sensitive to the machine slowing down for a while.
        let paired = |path: Path, base: Path| -> String {
            match (results.get(&(qos, path)), results.get(&(qos, base))) {
                (Some(rs), Some(bs)) if path != base => {
                    let v: Vec<f64> = rs
                        .iter()
                        .zip(bs)
                        .filter(|(_, b)| b.rate() > 0.0)
                        .map(|(r, b)| r.rate() / b.rate())
                        .collect();
                    format!("{:.2}", stats::median(&v))
                }
                _ => String::new(),
            }
        };
        for &path in &s.paths {
            let Some(rs) = results.get(&(qos, path)) else {
                continue;
            };
            let rate = rate_of(path).unwrap_or(0.0);
            let mut lat: Vec<u32> = rs.iter().flat_map(|r| r.latencies_us.iter().copied()).collect();
            let p50 = stats::percentile(&mut lat, 50.0);
            let p99 = stats::percentile(&mut lat, 99.0);
            let median_of = |f: fn(&RunResult) -> Option<f64>| -> Option<f64> {
                let v: Option<Vec<f64>> = rs.iter().map(f).collect();
                v.map(|v| stats::median(&v))
            };
            let cpu = fmt_opt(median_of(RunResult::cpu_us_per_msg));
            let broker_cpu = fmt_opt(median_of(RunResult::broker_us_per_msg));
            let per_round: Vec<String> = rs.iter().map(|r| format!("{:.0}", r.rate())).collect();
            writeln!(
                out,
                "{qos:<4} {:<13} {rate:>14.0} {p50:>7} {p99:>7} {cpu:>10} {broker_cpu:>13} {:>8} {:>11} {:>7} {:>14}   {}",
                path.name(),
                ratio(path, Path::Paho),
                ratio(path, Path::Rumqttc),
                ratio(path, Path::Raw),
                paired(path, Path::Rumqttc),
                per_round.join(" ")
            )?;
        }
    }

    // Where each path's client CPU goes, per thread (the runtime thread is the main one).
    let main_comm =
        std::fs::read_to_string("/proc/self/comm").map(|c| c.trim().to_owned()).unwrap_or_default();
    writeln!(
        out,
        "client cpu_us/msg by thread (median over rounds; runtime = the thread running the async code):"
    )?;
    for &qos in &s.qos {
        for &path in &s.paths {
            let Some(rs) = results.get(&(qos, path)) else {
                continue;
            };
            let names: std::collections::BTreeSet<&String> =
                rs.iter().flat_map(|r| r.cpu.threads_ns.keys()).collect();
            let mut parts: Vec<(f64, String)> = names
                .into_iter()
                .map(|name| {
                    let v: Vec<f64> = rs.iter().map(|r| r.thread_us_per_msg(name).unwrap_or(0.0)).collect();
                    let label = if *name == main_comm { "runtime".to_owned() } else { name.clone() };
                    (stats::median(&v), label)
                })
                .filter(|(v, _)| *v >= 0.01)
                .collect();
            parts.sort_by(|a, b| b.0.total_cmp(&a.0));
            let parts: Vec<String> = parts.into_iter().map(|(v, name)| format!("{name} {v:.2}")).collect();
            writeln!(out, "  {qos:<4} {:<13} {}", path.name(), parts.join(", "))?;
        }
    }

    if s.rss {
        let mut parts = Vec::new();
        for (name, bin) in [
            ("actors", env!("CARGO_BIN_EXE_rss_actors")),
            ("raw paho", env!("CARGO_BIN_EXE_rss_paho")),
            ("raw rumqttc", env!("CARGO_BIN_EXE_rss_rumqttc")),
        ] {
            match rss::probe(bin, &plain_url) {
                Ok(r) => parts.push(format!("{name} minimal program {}", r.describe())),
                Err(e) => parts.push(format!("{name}: failed ({e:#})")),
            }
        }
        writeln!(out, "rss: {}", parts.join("; "))?;
    }
    print!("{out}");
    drop(broker);
    Ok(())
}
