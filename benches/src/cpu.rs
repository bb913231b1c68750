//! CPU time of a process (all its threads), from `/proc/<pid>/task/*/schedstat`
//! (nanoseconds on CPU, first field). Threads that exit between two readings take their
//! time with them; the benchmark reads while its clients are connected, so none do.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// CPU nanoseconds used so far by all live threads of `pid` (`None`: this process).
pub fn process_cpu_ns(pid: Option<u32>) -> Option<u64> {
    let base = match pid {
        Some(p) => PathBuf::from(format!("/proc/{p}/task")),
        None => PathBuf::from("/proc/self/task"),
    };
    let mut total = 0u64;
    for entry in std::fs::read_dir(base).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
            total += ns;
        }
    }
    Some(total)
}

/// CPU nanoseconds used so far by this process's live threads, summed per thread name
/// (`comm`: the runtime thread is named after the program, paho's are `MQTTAsync_send`
/// and `MQTTAsync_rcv`).
pub fn cpu_ns_by_thread() -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for entry in dir.flatten() {
        let ns = std::fs::read_to_string(entry.path().join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()));
        let name = std::fs::read_to_string(entry.path().join("comm"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned());
        if let Some(ns) = ns {
            *by_name.entry(name).or_insert(0) += ns;
        }
    }
    by_name
}

/// A reading of this process's and the broker's CPU time.
#[derive(Debug, Clone)]
pub struct CpuMark {
    client: Option<u64>,
    broker: Option<u64>,
    broker_pid: Option<u32>,
    threads: BTreeMap<String, u64>,
}

/// CPU time since a [`CpuMark`].
#[derive(Debug, Clone, Default)]
pub struct CpuUsed {
    /// This process, all threads, in nanoseconds.
    pub client_ns: Option<u64>,
    /// The broker, in nanoseconds.
    pub broker_ns: Option<u64>,
    /// This process, per thread name, in nanoseconds.
    pub threads_ns: BTreeMap<String, u64>,
}

impl CpuMark {
    /// Reads both now.
    pub fn now(broker_pid: Option<u32>) -> Self {
        Self {
            client: process_cpu_ns(None),
            broker: broker_pid.and_then(|p| process_cpu_ns(Some(p))),
            broker_pid,
            threads: cpu_ns_by_thread(),
        }
    }

    /// CPU time used since this mark.
    pub fn elapsed(&self) -> CpuUsed {
        let later = Self::now(self.broker_pid);
        let diff = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let threads_ns = later
            .threads
            .iter()
            .map(|(name, ns)| {
                let before = self.threads.get(name).copied().unwrap_or(0);
                (name.clone(), ns.saturating_sub(before))
            })
            .collect();
        CpuUsed {
            client_ns: diff(self.client, later.client),
            broker_ns: diff(self.broker, later.broker),
            threads_ns,
        }
    }
}

/// The process id of the running program whose command line has `arg` among its
/// arguments (used to find a broker started by someone else from its config path).
pub fn find_pid_with_arg(arg: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            return Some(pid);
        }
    }
    None
}
