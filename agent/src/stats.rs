//! Periodic device statistics read from `/proc` and `statvfs`.
//!
//! - pure parsers for the kernel's text files: [`parse_proc_stat`], [`parse_meminfo`],
//!   [`parse_uptime`], [`parse_loadavg`], [`parse_status_rss`]; malformed text is a typed
//!   [`StatsError`], never a panic;
//! - [`StatsSampler`]: reads them (from an injectable proc root, `/proc` by default) plus
//!   `statvfs` of a configured path into a serialisable [`DeviceStats`] snapshot, computing CPU
//!   usage as the busy share of the jiffies elapsed since its previous sample;
//! - [`StatsSampler::run`] / [`StatsSampler::spawn`]: a loop that takes a snapshot every
//!   `interval` and sends it on a tokio mpsc channel until the receiver is dropped.
//!
//! ```no_run
//! # async fn demo() {
//! use connector_agent::stats::{StatsOptions, StatsSampler};
//! use std::time::Duration;
//! let mut rx = StatsSampler::new(StatsOptions::new(Duration::from_secs(60), "/")).spawn(4);
//! while let Some(s) = rx.recv().await {
//!     println!("{}", serde_json::to_string(&s).unwrap_or_default());
//! }
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;

/// Why reading or parsing a statistics source failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StatsError {
    /// A source file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `statvfs` of the disk path failed.
    #[error("statvfs of {path} failed")]
    Statvfs {
        /// The path given as the disk to measure.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A required line or field is missing.
    #[error("{file}: missing {what}")]
    Missing {
        /// Which source (`/proc/stat`, `/proc/meminfo`, …).
        file: &'static str,
        /// What was looked for.
        what: &'static str,
    },
    /// A field is present but is not a number of the expected kind.
    #[error("{file}: field {field} is not a valid number: {value:?}")]
    BadNumber {
        /// Which source.
        file: &'static str,
        /// The field's name.
        field: &'static str,
        /// The offending text (at most 32 characters of it).
        value: String,
    },
}

fn bad_number(file: &'static str, field: &'static str, value: &str) -> StatsError {
    StatsError::BadNumber { file, field, value: value.chars().take(32).collect() }
}

/// Aggregate CPU time counters (jiffies) from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Time in user mode (`guest` included by the kernel).
    pub user: u64,
    /// Niced user time.
    pub nice: u64,
    /// Kernel time.
    pub system: u64,
    /// Idle time.
    pub idle: u64,
    /// Waiting for I/O (counted as idle).
    pub iowait: u64,
    /// Hard interrupts.
    pub irq: u64,
    /// Soft interrupts.
    pub softirq: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

impl CpuTimes {
    /// All counted jiffies.
    pub fn total(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }

    /// Idle jiffies (`idle + iowait`).
    pub fn idle_total(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }

    /// Busy share in percent (0–100) of the jiffies elapsed between `earlier` and `self`;
    /// `None` when no time elapsed or the counters went backwards.
    pub fn percent_busy_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total().checked_sub(earlier.total())?;
        let idle = self.idle_total().checked_sub(earlier.idle_total())?;
        if total == 0 || idle > total {
            return None;
        }
        Some((total - idle) as f64 * 100.0 / total as f64)
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat` (the first four counters are required,
/// later ones default to 0 on old kernels).
pub fn parse_proc_stat(text: &str) -> Result<CpuTimes, StatsError> {
    const FILE: &str = "/proc/stat";
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))
        .ok_or(StatsError::Missing { file: FILE, what: "aggregate cpu line" })?;
    const NAMES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
    let mut v = [0u64; 8];
    let mut fields = line.split_whitespace().skip(1);
    for (i, name) in NAMES.iter().enumerate() {
        match fields.next() {
            Some(f) => v[i] = f.parse().map_err(|_| bad_number(FILE, name, f))?,
            None if i < 4 => return Err(StatsError::Missing { file: FILE, what: "cpu counters" }),
            None => break,
        }
    }
    Ok(CpuTimes {
        user: v[0],
        nice: v[1],
        system: v[2],
        idle: v[3],
        iowait: v[4],
        irq: v[5],
        softirq: v[6],
        steal: v[7],
    })
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total_bytes: u64,
    /// `MemAvailable` (kernels before 3.14 lack it: `MemFree + Buffers + Cached` then).
    pub available_bytes: u64,
}

fn meminfo_kib(text: &str, key: &'static str) -> Result<Option<u64>, StatsError> {
    for line in text.lines() {
        let Some((k, rest)) = line.split_once(':') else { continue };
        if k.trim() != key {
            continue;
        }
        let mut parts = rest.split_whitespace();
        let num = parts.next().ok_or(StatsError::Missing { file: "/proc/meminfo", what: "value" })?;
        let n: u64 = num.parse().map_err(|_| bad_number("/proc/meminfo", key, num))?;
        return match parts.next() {
            Some("kB") | None => Ok(Some(n.saturating_mul(1024))),
            Some(unit) => Err(bad_number("/proc/meminfo", key, unit)),
        };
    }
    Ok(None)
}

/// Parses `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, StatsError> {
    let total_bytes = meminfo_kib(text, "MemTotal")?
        .ok_or(StatsError::Missing { file: "/proc/meminfo", what: "MemTotal" })?;
    let available_bytes = match meminfo_kib(text, "MemAvailable")? {
        Some(a) => a,
        None => {
            let free = meminfo_kib(text, "MemFree")?
                .ok_or(StatsError::Missing { file: "/proc/meminfo", what: "MemAvailable or MemFree" })?;
            free.saturating_add(meminfo_kib(text, "Buffers")?.unwrap_or(0))
                .saturating_add(meminfo_kib(text, "Cached")?.unwrap_or(0))
        }
    };
    Ok(MemInfo { total_bytes, available_bytes })
}

fn parse_seconds(file: &'static str, field: &'static str, s: &str) -> Result<f64, StatsError> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(bad_number(file, field, s)),
    }
}

/// Parses `/proc/uptime` (its first field: seconds since boot).
pub fn parse_uptime(text: &str) -> Result<Duration, StatsError> {
    let first =
        text.split_whitespace().next().ok_or(StatsError::Missing { file: "/proc/uptime", what: "uptime" })?;
    // Beyond what a Duration holds (about 1.8e19 s) is as malformed as a negative number.
    Duration::try_from_secs_f64(parse_seconds("/proc/uptime", "uptime", first)?)
        .map_err(|_| bad_number("/proc/uptime", "uptime", first))
}

/// Load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadAverage {
    /// One minute.
    pub one: f64,
    /// Five minutes.
    pub five: f64,
    /// Fifteen minutes.
    pub fifteen: f64,
}

/// Parses `/proc/loadavg` (its first three fields).
pub fn parse_loadavg(text: &str) -> Result<LoadAverage, StatsError> {
    const FILE: &str = "/proc/loadavg";
    let mut f = text.split_whitespace();
    let mut next = |field: &'static str| -> Result<f64, StatsError> {
        let s = f.next().ok_or(StatsError::Missing { file: FILE, what: field })?;
        parse_seconds(FILE, field, s)
    };
    Ok(LoadAverage { one: next("1 min")?, five: next("5 min")?, fifteen: next("15 min")? })
}

/// Parses the resident set size (`VmRSS`, bytes) out of `/proc/<pid>/status`.
pub fn parse_status_rss(text: &str) -> Result<u64, StatsError> {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let mut parts = rest.split_whitespace();
            let num =
                parts.next().ok_or(StatsError::Missing { file: "/proc/self/status", what: "VmRSS value" })?;
            let kib: u64 = num.parse().map_err(|_| bad_number("/proc/self/status", "VmRSS", num))?;
            return Ok(kib.saturating_mul(1024));
        }
    }
    Err(StatsError::Missing { file: "/proc/self/status", what: "VmRSS" })
}

/// One snapshot of the device's statistics; serialises to flat snake_case JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceStats {
    /// Busy CPU share (all cores) since the previous sample, percent; `None` on the first
    /// sample of a sampler.
    pub cpu_percent: Option<f64>,
    /// Total memory.
    pub mem_total_bytes: u64,
    /// Memory available to new work without swapping.
    pub mem_available_bytes: u64,
    /// Size of the file system holding the configured disk path.
    pub disk_total_bytes: u64,
    /// Space on it available to unprivileged users.
    pub disk_free_bytes: u64,
    /// Load averages.
    pub load: LoadAverage,
    /// Seconds since boot.
    pub uptime_secs: u64,
    /// Resident set size of this process.
    pub process_rss_bytes: u64,
}

/// What a [`StatsSampler`] reads and how often.
#[derive(Debug, Clone)]
pub struct StatsOptions {
    /// Time between two snapshots of [`StatsSampler::run`].
    pub interval: Duration,
    /// A path on the file system whose size and free space are reported.
    pub disk_path: PathBuf,
    /// Where procfs is mounted (`/proc`; tests point it at fixture directories).
    pub proc_root: PathBuf,
}

impl StatsOptions {
    /// Samples every `interval`, measuring the file system of `disk_path`, from `/proc`.
    pub fn new(interval: Duration, disk_path: impl Into<PathBuf>) -> Self {
        Self { interval, disk_path: disk_path.into(), proc_root: PathBuf::from("/proc") }
    }

    /// Reads the kernel files from `root` instead of `/proc` (its `stat`, `meminfo`,
    /// `uptime`, `loadavg` and `self/status`).
    pub fn proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }
}

/// Takes [`DeviceStats`] snapshots, remembering the previous CPU counters.
#[derive(Debug)]
pub struct StatsSampler {
    opts: StatsOptions,
    prev_cpu: Option<CpuTimes>,
}

fn read(root: &Path, rel: &str) -> Result<String, StatsError> {
    let path = root.join(rel);
    std::fs::read_to_string(&path).map_err(|source| StatsError::Read { path, source })
}

impl StatsSampler {
    /// A sampler with no previous sample.
    pub fn new(opts: StatsOptions) -> Self {
        Self { opts, prev_cpu: None }
    }

    /// Reads every source once. The CPU share is computed against the previous successful
    /// sample (`None` on the first one); a failed sample leaves the previous counters as
    /// they were.
    pub fn sample(&mut self) -> Result<DeviceStats, StatsError> {
        let root = &self.opts.proc_root;
        let cpu = parse_proc_stat(&read(root, "stat")?)?;
        let mem = parse_meminfo(&read(root, "meminfo")?)?;
        let uptime = parse_uptime(&read(root, "uptime")?)?;
        let load = parse_loadavg(&read(root, "loadavg")?)?;
        let rss = parse_status_rss(&read(root, "self/status")?)?;
        let vfs = nix::sys::statvfs::statvfs(&self.opts.disk_path)
            .map_err(|source| StatsError::Statvfs { path: self.opts.disk_path.clone(), source })?;
        let frag = vfs.fragment_size() as u64;
        let cpu_percent = self.prev_cpu.and_then(|p| cpu.percent_busy_since(&p));
        self.prev_cpu = Some(cpu);
        Ok(DeviceStats {
            cpu_percent,
            mem_total_bytes: mem.total_bytes,
            mem_available_bytes: mem.available_bytes,
            disk_total_bytes: (vfs.blocks() as u64).saturating_mul(frag),
            disk_free_bytes: (vfs.blocks_available() as u64).saturating_mul(frag),
            load,
            uptime_secs: uptime.as_secs(),
            process_rss_bytes: rss,
        })
    }

    /// Samples once now as the CPU baseline (not sent), then every `interval` sends a
    /// snapshot on `tx`, until `tx`'s receiver is dropped. A failed sample is logged
    /// (`warn`, once per distinct error text in a row) and skipped. A consumer slower than
    /// the interval makes the loop wait on the channel: ticks are delayed, never bunched.
    pub async fn run(mut self, tx: mpsc::Sender<DeviceStats>) {
        let mut last_error: Option<String> = None;
        let _ = self.sample();
        let mut tick = tokio::time::interval(self.opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            match self.sample() {
                Ok(s) => {
                    last_error = None;
                    if tx.send(s).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let text = error_chain(&e);
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(error = %text, "device stats sample failed");
                        last_error = Some(text);
                    }
                }
            }
        }
    }

    /// Spawns [`run`](Self::run) on the current tokio runtime and returns the receiving end
    /// of a channel of `capacity` snapshots. Dropping the receiver ends the task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(self, capacity: usize) -> mpsc::Receiver<DeviceStats> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(self.run(tx));
        rx
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
