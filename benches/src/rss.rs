//! Resident set size of minimal connected programs.

use std::process::Command;

use anyhow::{bail, Context as _};

/// The line prefix the probe binaries print their RSS with.
pub const RSS_PREFIX: &str = "rss_kib ";

/// Resident memory of a process, in KiB, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`: everything resident.
    pub total: u64,
    /// `RssAnon`: heap, stacks, anonymous mappings.
    pub anon: u64,
    /// `RssFile`: resident pages of the executable and shared libraries.
    pub file: u64,
}

impl Rss {
    /// This process's resident memory.
    pub fn current() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        Some(Self { total: field("VmRSS:")?, anon: field("RssAnon:")?, file: field("RssFile:")? })
    }

    /// `MiB total (anon MiB, file MiB)`.
    pub fn describe(&self) -> String {
        let mib = |k: u64| k as f64 / 1024.0;
        format!("{:.1} MiB (anon {:.1}, file {:.1})", mib(self.total), mib(self.anon), mib(self.file))
    }
}

/// Prints [`RSS_PREFIX`] and `total anon file`: the probe binaries' one line of output.
pub fn report() -> anyhow::Result<()> {
    let r = Rss::current().context("no VmRSS/RssAnon/RssFile in /proc/self/status")?;
    println!("{RSS_PREFIX}{} {} {}", r.total, r.anon, r.file);
    Ok(())
}

/// Runs a probe binary against `url` and returns the RSS it reported.
pub fn probe(bin: &str, url: &str) -> anyhow::Result<Rss> {
    let out = Command::new(bin).arg(url).output().with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        bail!("{bin} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RSS_PREFIX))
        .with_context(|| format!("{bin} printed no RSS line: {stdout}"))?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match v.as_slice() {
        [total, anon, file] => Ok(Rss { total: *total, anon: *anon, file: *file }),
        _ => bail!("{bin}: bad RSS line {line:?}"),
    }
}

/// The broker URL a probe binary was given (its first argument).
pub fn url_arg() -> anyhow::Result<String> {
    std::env::args().nth(1).context("usage: <probe> tcp://127.0.0.1:PORT")
}
