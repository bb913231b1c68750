//! Logging through `tracing`: text or JSON lines on stderr, with a level that a reload
//! (SIGHUP) can change.
//!
//! The MQTT client library's DEBUG and TRACE lines print its connect options (the password:
//! an Azure SAS token, an AWS custom authorizer's token) and server URI (a SigV4 session
//! token in the WebSocket URL) verbatim, and the WebSocket library's TRACE lines print the
//! upgrade request (the presigned SigV4 URL, its signature and session token). So events of
//! every target starting with one of [`CAPPED_TARGET_PREFIXES`] (`paho_mqtt`,
//! `paho_mqtt::async_client`, the C library's `paho_mqtt_c`, `tungstenite::handshake::client`,
//! `tokio_tungstenite`, …) above INFO are dropped by a fixed filter applied besides the
//! configured (reloadable) one: no directive (`paho_mqtt_c=trace`, `[{span}]=trace`, …) can
//! let them through.

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Default-quiet targets (appended after the configured level, so they win): the in-process
/// emulator's server runtime is chatty at shutdown.
const QUIET: &str =
    ",ntex_server=off,ntex_rt=warn,ntex_io=warn,ntex_mqtt=warn,ntex_service=warn,connector_emulator=warn";

/// The prefixes of the targets of libraries that log credentials at DEBUG or TRACE (the
/// paho MQTT client; the WebSocket client of the native transport), capped at
/// [`CAPPED_MAX_LEVEL`].
pub const CAPPED_TARGET_PREFIXES: &[&str] = &["paho_mqtt", "tungstenite", "tokio_tungstenite"];

/// The most verbose level logged for [`CAPPED_TARGET_PREFIXES`] targets, whatever the filter.
pub const CAPPED_MAX_LEVEL: Level = Level::INFO;

/// Whether an event or span of `target` at `level` passes the fixed cap.
pub fn under_paho_cap(target: &str, level: &Level) -> bool {
    *level <= CAPPED_MAX_LEVEL || !CAPPED_TARGET_PREFIXES.iter().any(|p| target.starts_with(p))
}

/// The fixed filter: drops [`CAPPED_TARGET_PREFIXES`] events above [`CAPPED_MAX_LEVEL`].
fn paho_cap() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|meta| under_paho_cap(meta.target(), meta.level()))
}

/// Changes the log level after start.
#[derive(Clone)]
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogHandle")
    }
}

fn filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    EnvFilter::try_new(format!("{level}{QUIET}"))
}

impl LogHandle {
    /// Sets a new level directive (`info`, `debug,paho_mqtt=warn`).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let f = filter(level).map_err(|e| e.to_string())?;
        self.handle.reload(f).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber; `json` selects JSON lines. Returns `None` if one was
/// installed already.
pub fn init(level: &str, json: bool) -> Option<LogHandle> {
    let f = filter(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (layer, handle) = reload::Layer::new(f);
    // The reloadable filter first (its handle's type names the bare registry), then the
    // fixed cap: an event must pass both.
    let registry = tracing_subscriber::registry().with(layer).with(paho_cap());
    let r = if json {
        registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init()
    };
    r.ok().map(|_| LogHandle { handle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_paho_target_is_capped_at_info() {
        for target in [
            "paho_mqtt",
            "paho_mqtt::async_client",
            "paho_mqtt_c",
            "paho_mqtt_sys::x",
            "tungstenite::handshake::client",
            "tokio_tungstenite",
        ] {
            assert!(!under_paho_cap(target, &Level::DEBUG), "{target}");
            assert!(!under_paho_cap(target, &Level::TRACE), "{target}");
            assert!(under_paho_cap(target, &Level::INFO), "{target}");
            assert!(under_paho_cap(target, &Level::ERROR), "{target}");
        }
        assert!(under_paho_cap("connector_actors::transport::paho", &Level::TRACE));
    }
}
