//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::{parse_duration, Overrides};

/// The cloud connector's device agent.
///
/// With no configuration it starts the emulator in-process (Azure flavour unless
/// `--cloud aws`), provisions itself, connects over TLS and runs until stopped. With
/// `--config FILE` it connects to the cloud the file names. Environment variables
/// `CONNECTOR_AGENT_<SECTION>_<KEY>` override the file, flags override both.
#[derive(Debug, Clone, Parser)]
#[command(name = "connector-agent", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file (TOML; see agent/config/*.toml).
    #[arg(long, short = 'c', value_name = "FILE", env = "CONNECTOR_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Cloud provider: azure or aws (the embedded emulator's flavour when no cloud is
    /// configured).
    #[arg(long, value_name = "azure|aws")]
    pub cloud: Option<String>,
    /// State directory: identity cache, lock, offline store, socket, state files.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log level or filter directive (`info`, `debug`, `warn,connector_agent=debug`).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Address of /metrics, /healthz and /readyz (`off` disables; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Device-stats telemetry interval (`10s`, `500ms`).
    #[arg(long, value_name = "DURATION")]
    pub telemetry_interval: Option<String>,
    /// Status line interval (`0` disables).
    #[arg(long, value_name = "DURATION")]
    pub status_interval: Option<String>,
    /// Stop gracefully after this long (a bounded demo), exiting 0.
    #[arg(long, alias = "duration", value_name = "DURATION", value_parser = parse_cli_duration)]
    pub exit_after: Option<Duration>,
    /// With the embedded emulator: also play its back end once connected (a desired
    /// change, the reported file, a method or job running a demo handler, a refused one,
    /// the telemetry received), printing `demo:` lines. Pair it with --exit-after.
    #[arg(long)]
    pub demo: bool,
    /// Validate the configuration, print a summary (no secrets) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// List the environment variables that override configuration keys, and exit.
    #[arg(long)]
    pub help_env: bool,
}

fn parse_cli_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

impl Cli {
    /// The configuration overrides these flags carry.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            cloud: self.cloud.clone(),
            state_dir: self.state_dir.clone(),
            log_level: self.log_level.clone(),
            log_json: self.log_json,
            metrics_addr: self.metrics_addr.clone(),
            telemetry_interval: self.telemetry_interval.clone(),
            status_interval: self.status_interval.clone(),
        }
    }
}
