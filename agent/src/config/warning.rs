//! Configuration-time warnings: collected while the configuration is validated (before
//! logging exists) and emitted once it does ([`ConfigWarning::log`]) and by
//! `--check-config`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Something in the configuration that works but should be fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// A secret file can be read by its group or by others.
    ReadableSecret {
        /// The key naming the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The metrics endpoint listens on a non-loopback address: anyone on the network can
    /// read the device's metrics and health.
    PublicMetrics {
        /// The configured address.
        addr: SocketAddr,
    },
}

impl ConfigWarning {
    /// The dotted key the warning is about.
    pub fn key(&self) -> &str {
        match self {
            ConfigWarning::ReadableSecret { key, .. } => key,
            ConfigWarning::PublicMetrics { .. } => "metrics.addr",
        }
    }

    /// Emits the warning as a `warn` event with its fields.
    pub fn log(&self) {
        match self {
            ConfigWarning::ReadableSecret { key, path, mode } => tracing::warn!(
                key = key.as_str(),
                file = %path.display(),
                mode = format_args!("{mode:04o}"),
                "secret file is readable by group or others; chmod 600 it"
            ),
            ConfigWarning::PublicMetrics { addr } => tracing::warn!(
                key = "metrics.addr",
                %addr,
                "metrics endpoint listens beyond loopback: /metrics, /healthz and /readyz are reachable from the network"
            ),
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::ReadableSecret { key, path, mode } => write!(
                f,
                "`{key}`: secret file {} is readable by group or others (mode {mode:04o}); chmod 600 it",
                path.display()
            ),
            ConfigWarning::PublicMetrics { addr } => write!(
                f,
                "`metrics.addr`: {addr} is not a loopback address: /metrics, /healthz and /readyz are reachable from the network"
            ),
        }
    }
}
