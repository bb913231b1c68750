//! Benchmarks of the cloud connector's publish path.
//!
//! `cargo bench -p connector-benches --bench publish_compare` publishes 100-byte messages
//! through three paths against one local mosquitto, alternating in every round:
//!
//! | path | module |
//! |---|---|
//! | raw `paho_mqtt::AsyncClient` | [`paho_path`] |
//! | raw `rumqttc::AsyncClient` + `EventLoop` | [`rumqttc_path`] |
//! | the actor tree's Publisher | [`actor_path`] |
//! | a blocking socket writing whole windows per syscall (the ceiling) | [`raw_path`] |
//!
//! Each path keeps `window` publishes outstanding and records, per message, the time from
//! the publish call to its completion (PUBACK for QoS 1; written for QoS 0). The
//! `rss_actors`, `rss_paho` and `rss_rumqttc` binaries are minimal connected programs that
//! print their resident set size.

pub mod actor_path;
pub mod broker;
pub mod cpu;
pub mod inbound;
pub mod paho_path;
pub mod raw_path;
pub mod rss;
pub mod rumqttc_path;
pub mod stats;

use std::time::Duration;

/// What one measured run does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Broker URL: `tcp://127.0.0.1:PORT`, or `mqtts://localhost:PORT` with [`RunConfig::tls_ca`].
    pub url: String,
    /// TLS: the CA that signed the broker's certificate (`localhost`); every path then
    /// verifies the chain and the host name (and negotiates TLS 1.2+ with its defaults).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client id (unique per run).
    pub client_id: String,
    /// Topic published to.
    pub topic: String,
    /// Payload size in bytes.
    pub payload_len: usize,
    /// QoS: 0 or 1.
    pub qos: u8,
    /// Timed messages.
    pub msgs: usize,
    /// Untimed messages sent first on the fresh connection.
    pub warmup: usize,
    /// Most publishes outstanding (called, not completed).
    pub window: usize,
    /// The broker's process id, to measure its CPU time (`None`: not measured).
    pub broker_pid: Option<u32>,
}

impl RunConfig {
    /// Host and port of [`RunConfig::url`] (`tcp://`, `mqtt://`, `mqtts://` or `ssl://`).
    pub fn host_port(&self) -> anyhow::Result<(String, u16)> {
        use anyhow::Context as _;
        let rest = ["tcp://", "mqtt://", "mqtts://", "ssl://"]
            .iter()
            .find_map(|p| self.url.strip_prefix(p))
            .context("broker URL must be tcp://host:port or mqtts://host:port")?;
        let (host, port) = rest.rsplit_once(':').context("broker URL has no port")?;
        Ok((host.to_owned(), port.parse().context("broker port")?))
    }

    /// The payload: `payload_len` bytes.
    pub fn payload(&self) -> Vec<u8> {
        (0..self.payload_len).map(|i| b'a' + (i % 26) as u8).collect()
    }

    /// The in-flight limit given to the paho C library: the same formula the actor tree's
    /// default transport uses (`2 × window`, at least 64), so that both paho paths run with
    /// the same client configuration.
    pub fn paho_max_inflight(&self) -> i32 {
        i32::try_from(self.window.saturating_mul(2).clamp(64, 65_535)).unwrap_or(65_535)
    }
}

/// What one measured run produced.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Completed timed messages.
    pub msgs: usize,
    /// Wall time of the timed part (first publish call to last completion).
    pub elapsed: Duration,
    /// Per-message latency in microseconds (publish call to completion).
    pub latencies_us: Vec<u32>,
    /// CPU time during the timed part.
    pub cpu: cpu::CpuUsed,
    /// The longest time without a completion (from the start of the timed part to the
    /// first one, or between two), in microseconds, and the index of the completion that
    /// ended it: a stall detector.
    pub max_gap: (u32, usize),
}

impl RunResult {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.msgs as f64 / s
        } else {
            0.0
        }
    }

    /// This process's CPU microseconds per message.
    pub fn cpu_us_per_msg(&self) -> Option<f64> {
        self.cpu.client_ns.map(|ns| ns as f64 / 1000.0 / self.msgs.max(1) as f64)
    }

    /// The broker's CPU microseconds per message.
    pub fn broker_us_per_msg(&self) -> Option<f64> {
        self.cpu.broker_ns.map(|ns| ns as f64 / 1000.0 / self.msgs.max(1) as f64)
    }

    /// CPU microseconds per message of this process's threads named `name`.
    pub fn thread_us_per_msg(&self, name: &str) -> Option<f64> {
        self.cpu.threads_ns.get(name).map(|ns| *ns as f64 / 1000.0 / self.msgs.max(1) as f64)
    }
}

/// Tracks the longest stretch without a completion.
#[derive(Debug, Clone, Copy)]
pub struct GapTracker {
    last: std::time::Instant,
    n: usize,
    max: (u32, usize),
}

impl GapTracker {
    /// Starts tracking at `start`.
    pub fn new(start: std::time::Instant) -> Self {
        Self { last: start, n: 0, max: (0, 0) }
    }

    /// A completion happened now.
    pub fn completed(&mut self) {
        let now = std::time::Instant::now();
        let gap = u32::try_from(now.duration_since(self.last).as_micros()).unwrap_or(u32::MAX);
        if gap > self.max.0 {
            self.max = (gap, self.n);
        }
        self.last = now;
        self.n += 1;
    }

    /// (longest gap in µs, index of the completion that ended it).
    pub fn max(&self) -> (u32, usize) {
        self.max
    }
}

/// The timed part of a publish run: CPU from here, wall time, per-message latencies and
/// the longest gap between completions.
#[derive(Debug)]
pub struct Measure {
    cpu: cpu::CpuMark,
    start: std::time::Instant,
    gaps: GapTracker,
    latencies: Vec<u32>,
}

impl Measure {
    /// Starts measuring `n` messages of `cfg`.
    pub fn start(cfg: &RunConfig, n: usize) -> Self {
        let cpu = cpu::CpuMark::now(cfg.broker_pid);
        let start = std::time::Instant::now();
        Self { cpu, start, gaps: GapTracker::new(start), latencies: Vec::with_capacity(n) }
    }

    /// A message whose publish call was at `t0` completed now.
    pub fn completed(&mut self, t0: std::time::Instant) {
        self.latencies.push(micros_since(t0));
        self.gaps.completed();
    }

    /// The result of `n` completed messages.
    pub fn finish(self, n: usize) -> RunResult {
        let elapsed = self.start.elapsed();
        let cpu = self.cpu.elapsed();
        RunResult { msgs: n, elapsed, latencies_us: self.latencies, cpu, max_gap: self.gaps.max() }
    }
}

/// Microseconds since `t0`, saturating at `u32::MAX`.
pub fn micros_since(t0: std::time::Instant) -> u32 {
    u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// Set in the pinned re-run of a benchmark.
pub const PINNED_ENV: &str = "BENCH_PINNED";

/// With `pin`: runs this program again under `taskset -c 0` (its broker, a child, too) and
/// returns its exit status; `None` when this process should do the work itself.
pub fn pinned_rerun(pin: bool) -> anyhow::Result<Option<std::process::ExitStatus>> {
    use anyhow::Context as _;
    if !pin || std::env::var_os(PINNED_ENV).is_some() {
        return Ok(None);
    }
    let exe = std::env::current_exe().context("own executable")?;
    let status = std::process::Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(PINNED_ENV, "1")
        .status()
        .context("running taskset (util-linux)")?;
    Ok(Some(status))
}

/// Raises this process's file-descriptor limit (children inherit it) and returns the
/// limit now in force: to [`WANTED_FDS`] where the process may raise its hard limit (root,
/// up to the kernel's `fs.nr_open`), else to the hard limit.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(WANTED_FDS);
    let wanted = WANTED_FDS.min(nr_open);
    let lim = getrlimit(Resource::Nofile);
    if lim.maximum.is_some_and(|m| m < wanted) {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: Some(wanted) });
    }
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    let _ = setrlimit(Resource::Nofile, lim);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The file descriptors the scale benchmarks ask for: 10,000 device connections are 10,000
/// sockets in the client and up to three times that in the emulator (its TLS front relays
/// each device to its broker over loopback).
pub const WANTED_FDS: u64 = 65_536;
