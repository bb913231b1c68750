//! Logging through `tracing`: text or JSON lines on stderr, with a level that a reload
//! (SIGHUP) can change.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Always-quiet targets (appended after the configured level, so they win): the in-process
/// emulator's server runtime is chatty at shutdown, and the MQTT client library's DEBUG and
/// TRACE lines print its connect options and server URI verbatim, which carry AWS
/// credentials (a custom authorizer's token in the user name, a SigV4 session token in the
/// WebSocket URL).
const QUIET: &str = ",ntex_server=off,ntex_rt=warn,ntex_io=warn,ntex_mqtt=warn,ntex_service=warn,connector_emulator=warn,paho_mqtt=info,paho_mqtt_c=info";

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
    let registry = tracing_subscriber::registry().with(layer);
    let r = if json {
        registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init()
    };
    r.ok().map(|_| LogHandle { handle })
}
