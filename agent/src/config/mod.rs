//! The agent's configuration: a TOML file, `CONNECTOR_AGENT_…` environment overrides and
//! command-line flags, merged in that order and validated up front into [`Settings`].
//!
//! Every error is a [`ConfigError`] naming where the offending value came from (the file,
//! the environment variable or the flag), the key (`telemetry.interval`) and the reason.
//! Secrets (connection strings, symmetric keys, AWS secret access keys, session tokens and
//! custom-authorizer credentials) are read from files or named environment
//! variables into [`connector_core::Secret`]s: they never appear in errors, logs or `Debug` output.
//!
//! The sections and keys are documented in `agent/config/*.toml`; [`ENV_KEYS`] lists every
//! key an environment variable can override (`telemetry.interval` ←
//! `CONNECTOR_AGENT_TELEMETRY_INTERVAL`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_core::DropPolicy;
use serde::Deserialize;
use thiserror::Error;

mod cloud;
mod ctx;
mod env;
mod ingest;
mod raw;
mod settings;
mod state;
#[cfg(test)]
mod tests;
mod warning;

use ctx::{non_empty, Ctx};
use env::{env_value, set_path};
pub use env::{env_var_for, EnvKind, Overrides, ENV_KEYS};
use raw::RawConfig;
pub use settings::*;
pub use warning::ConfigWarning;

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "CONNECTOR_AGENT_";

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(&'static str),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Default => f.write_str("built-in default"),
        }
    }
}

/// Why the configuration is unusable. Messages name the source, the key and the reason;
/// none carries a secret.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{}: cannot read the configuration file: {error}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: not valid TOML: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key is unknown, has the wrong type, or an invalid value.
    #[error("{origin}: `{key}`: {reason}")]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The dotted key (`telemetry.interval`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A secret (or certificate) file named by a key could not be read.
    #[error("{origin}: `{key}`: cannot read {}: {error}", path.display())]
    File {
        /// Where the key came from.
        origin: Origin,
        /// The key naming the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// An environment variable with the agent's prefix names no known key.
    #[error(
        "environment variable {var}: no such configuration key (known: see `connector-agent --help-env`)"
    )]
    UnknownEnv {
        /// The variable.
        var: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } | ConfigError::File { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A duration in configuration: `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"`, or an integer
/// number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// The longest duration configuration accepts (about 31 years): anything longer is a
/// mistake, and would overflow the clock arithmetic of timers and deadlines.
pub const MAX_DURATION_SECS: u64 = 1_000_000_000;

/// Parses `"500ms"`, `"10s"`, `"1.5s"`, `"5m"`, `"2h"`, `"1d"` (a bare number is seconds),
/// at most [`MAX_DURATION_SECS`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{s}`: expected a number followed by ms, s, m, h or d"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        u => return Err(format!("invalid duration `{s}`: unknown unit `{u}` (use ms, s, m, h or d)")),
    };
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=MAX_DURATION_SECS as f64).contains(&secs) {
        return Err(format!("invalid duration `{s}`: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n <= MAX_DURATION_SECS => Ok(Dur(Duration::from_secs(n))),
            Raw::Int(n) => Err(serde::de::Error::custom(format!("invalid duration `{n}`: out of range"))),
            Raw::Str(s) => parse_duration(&s).map(Dur).map_err(serde::de::Error::custom),
        }
    }
}

/// Default telemetry interval.
pub const DEFAULT_TELEMETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Loads, merges and validates the configuration: `file` (if any), then the environment
/// (`env`: a lookup, normally `std::env::var`), then `overrides`.
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| ConfigError::Read { file: path.to_owned(), error })?;
            load_str(&text, path, env, overrides)
        }
        None => load_table(toml::Table::new(), None, env, overrides),
    }
}

/// [`load`] of configuration text already in memory: `text` is the TOML of `file`, which
/// only names it in errors and in [`Settings::file`] (it is not read). Files that keys name
/// (secrets, certificates) are still read, and `handlers.run_as` is looked up in the user
/// database; the environment is only `env`. The entry point of the configuration fuzz target.
pub fn load_str(
    text: &str,
    file: &Path,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let table = text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        message: e.to_string().trim().to_owned(),
    })?;
    load_table(table, Some(file), env, overrides)
}

fn load_table(
    mut table: toml::Table,
    file: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let default_origin = file.map(|p| Origin::File(p.to_owned())).unwrap_or(Origin::Default);
    let mut origins = HashMap::new();
    for (var, value) in env {
        let Some(_) = var.strip_prefix(ENV_PREFIX) else { continue };
        let Some((key, kind)) = ENV_KEYS.iter().find(|(k, _)| env_var_for(k) == *var) else {
            return Err(ConfigError::UnknownEnv { var: var.clone() });
        };
        set_path(&mut table, key, env_value(var, key, *kind, value)?);
        origins.insert((*key).to_owned(), Origin::Env(var.clone()));
    }
    for (key, flag, value) in overrides.entries() {
        set_path(&mut table, key, value);
        origins.insert(key.to_owned(), Origin::Flag(flag));
    }
    let ctx = Ctx { origins, default_origin, warnings: Default::default() };
    let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let reason = e.into_inner().to_string();
        // An unknown field is reported at its parent; name it in the key.
        ctx.invalid(&key, reason)
    })?;
    let env_lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    validate(raw, file, &ctx, &env_lookup)
}

/// [`load`] with the process environment.
pub fn load_from_process(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load(file, &env, overrides)
}

fn default_state_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(d) = env("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd's StateDirectory= (colon-separated when several).
        return d.split(':').next().map(PathBuf::from);
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/connector-agent"));
    }
    if let Some(x) = env("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(Path::new(&x).join("connector-agent"));
    }
    env("HOME").filter(|d| !d.is_empty()).map(|h| Path::new(&h).join(".local/state/connector-agent"))
}

fn validate(
    raw: RawConfig,
    file: Option<&Path>,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let state_dir = match raw.agent.state_dir {
        Some(d) if d.as_os_str().is_empty() => {
            return Err(ctx.invalid("agent.state_dir", "must not be empty"))
        }
        Some(d) => d,
        None => default_state_dir(env).ok_or_else(|| {
            ctx.invalid(
                "agent.state_dir",
                "missing: no $STATE_DIRECTORY, $XDG_STATE_HOME or $HOME to default from",
            )
        })?,
    };
    let status_interval = match raw.agent.status_interval.map(|d| d.0) {
        Some(d) if d.is_zero() => None,
        Some(d) if d < Duration::from_millis(100) => {
            return Err(ctx.invalid("agent.status_interval", "must be at least 100ms (0 disables)"))
        }
        Some(d) => Some(d),
        None => Some(Duration::from_secs(10)),
    };
    let shutdown_timeout = raw.agent.shutdown_timeout.map_or(Duration::from_secs(5), |d| d.0);

    let provider = match raw.cloud.provider.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("azure") => CloudKind::Azure,
        Some("aws") => CloudKind::Aws,
        Some(other) => {
            return Err(ctx.invalid("cloud.provider", format!("unknown provider `{other}` (azure or aws)")))
        }
        None if raw.aws.is_some() && raw.azure.is_none() => CloudKind::Aws,
        None => CloudKind::Azure,
    };
    let configured = match provider {
        CloudKind::Azure => raw.azure.is_some(),
        CloudKind::Aws => raw.aws.is_some(),
    };
    let embedded = match raw.cloud.embedded {
        Some(true) if configured => {
            return Err(ctx.invalid(
                "cloud.embedded",
                format!("is true but [{}] is configured: remove one of them", provider.as_str()),
            ))
        }
        Some(false) if !configured => {
            return Err(ctx.invalid(
                "cloud.embedded",
                format!("is false but there is no [{}] section to connect with", provider.as_str()),
            ))
        }
        Some(e) => e,
        None => !configured || raw.emulator.is_some(),
    };
    if embedded && configured {
        return Err(ctx.invalid(
            "emulator",
            format!(
                "[emulator] and [{}] are both present: the embedded emulator or a cloud, not both",
                provider.as_str()
            ),
        ));
    }
    let cloud = if embedded {
        let em = raw.emulator.unwrap_or_default();
        let device_id = non_empty(ctx, "emulator.device_id", em.device_id)?
            .unwrap_or_else(|| "connector-agent".to_owned());
        if !device_id.chars().all(|c| c.is_ascii_alphanumeric() || "-.:_".contains(c))
            || device_id.len() > 128
        {
            return Err(ctx.invalid(
                "emulator.device_id",
                "use at most 128 letters, digits and - . : _ (a DPS registration id and a thing name)",
            ));
        }
        Cloud::Embedded(EmbeddedSettings {
            flavour: provider,
            data_dir: em.data_dir.unwrap_or_else(|| state_dir.join("emulator")),
            device_id,
        })
    } else {
        match provider {
            CloudKind::Azure => Cloud::Azure(cloud::azure(raw.azure.unwrap_or_default(), ctx, env)?),
            CloudKind::Aws => Cloud::Aws(cloud::aws(raw.aws.unwrap_or_default(), ctx, env)?),
        }
    };

    let interval = raw.telemetry.interval.map_or(DEFAULT_TELEMETRY_INTERVAL, |d| d.0);
    if interval < Duration::from_millis(100) {
        return Err(ctx.invalid("telemetry.interval", "must be at least 100ms"));
    }
    let telemetry = TelemetrySettings { interval, device_stats: raw.telemetry.device_stats.unwrap_or(true) };

    let ingest = ingest::ingest(raw.ingest, &state_dir, ctx)?;

    let state = state::state(raw.state, &state_dir, &cloud, ctx)?;

    let handlers = HandlerSettings {
        dir: raw.handlers.dir,
        allow: raw.handlers.allow.unwrap_or_default(),
        timeout: raw.handlers.timeout.map_or(Duration::from_secs(30), |d| d.0),
        run_as: non_empty(ctx, "handlers.run_as", raw.handlers.run_as)?,
        max_output_bytes: raw.handlers.max_output_bytes.unwrap_or(64 * 1024),
    };
    for name in &handlers.allow {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ctx.invalid("handlers.allow", format!("`{name}` is not a plain file name")));
        }
    }
    if !handlers.allow.is_empty() && handlers.dir.is_none() {
        return Err(
            ctx.invalid("handlers.dir", "missing: handlers.allow names handlers but no directory holds them")
        );
    }
    if handlers.timeout.is_zero() {
        return Err(ctx.invalid("handlers.timeout", "must be more than 0"));
    }
    if let Some(user) = &handlers.run_as {
        match nix::unistd::User::from_name(user) {
            Ok(Some(_)) => {}
            _ => return Err(ctx.invalid("handlers.run_as", format!("no such user `{user}`"))),
        }
    }

    let drop_policy = match raw.store.drop_policy.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("oldest") => DropPolicy::Oldest,
        Some("newest") => DropPolicy::Newest,
        Some(other) => {
            return Err(ctx.invalid("store.drop_policy", format!("`{other}`: expected `oldest` or `newest`")))
        }
    };
    let store = StoreSettings {
        dir: raw.store.dir.unwrap_or_else(|| state_dir.join("outbox")),
        max_messages: raw.store.max_messages.unwrap_or(10_000),
        max_bytes: raw.store.max_bytes.unwrap_or(64 * 1024 * 1024),
        drop_policy,
        fsync: raw.store.fsync.unwrap_or(false),
        expiry: raw.store.expiry.map(|d| d.0),
    };
    if store.expiry.is_some_and(|d| d.is_zero()) {
        return Err(ctx.invalid("store.expiry", "must be more than 0 (leave it out for no expiry)"));
    }
    let connection = connection(raw.connection, ctx)?;
    let (proxy_key, proxy) = match &cloud {
        Cloud::Azure(a) => ("azure.proxy", a.proxy.as_ref()),
        Cloud::Aws(a) => ("aws.proxy", a.proxy.as_ref()),
        Cloud::Embedded(_) => ("", None),
    };
    let socks = proxy.is_some_and(|p| p.expose().get(..5).is_some_and(|s| s.eq_ignore_ascii_case("socks")));
    if socks && connection.transport == Some(connector_actors::transport::TransportKind::Paho) {
        return Err(ctx.invalid(
            proxy_key,
            "a socks5:// proxy needs the native transport (connection.transport = \"native\"); paho tunnels through http:// proxies only",
        ));
    }
    if store.max_messages == 0 {
        return Err(ctx.invalid("store.max_messages", "must be at least 1"));
    }
    if store.max_bytes < 1024 {
        return Err(ctx.invalid("store.max_bytes", "must be at least 1024"));
    }

    let metrics = if raw.metrics.enabled.unwrap_or(true) {
        let addr = raw.metrics.addr.unwrap_or_else(|| connector_actors::DEFAULT_METRICS_ADDR.to_owned());
        Some(addr.parse::<SocketAddr>().map_err(|_| {
            ctx.invalid("metrics.addr", format!("`{addr}` is not an address:port (e.g. 127.0.0.1:9898)"))
        })?)
    } else {
        None
    };
    if let Some(addr) = metrics.filter(|a| !a.ip().is_loopback()) {
        ctx.warn(ConfigWarning::PublicMetrics { addr });
    }

    let logging = LoggingSettings {
        level: raw.logging.level.unwrap_or_else(|| "info".to_owned()),
        json: raw.logging.json.unwrap_or(false),
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&logging.level) {
        return Err(ctx.invalid("logging.level", format!("`{}`: {e}", logging.level)));
    }

    Ok(Settings {
        warnings: ctx.warnings.take(),
        file: file.map(Path::to_owned),
        state_dir,
        status_interval,
        shutdown_timeout,
        cloud,
        telemetry,
        ingest,
        state,
        handlers,
        store,
        connection,
        metrics,
        logging,
    })
}

/// `[connection]`: the transport, the stall watchdog, the acknowledgement timeout and the
/// backoff.
fn connection(raw: raw::RawConnection, ctx: &Ctx) -> Result<ConnectionSettings, ConfigError> {
    let defaults = connector_actors::StallPolicy::default();
    let positive = |key: &'static str, d: Option<Dur>, default: Duration| match d {
        Some(d) if d.0.is_zero() => Err(ctx.invalid(key, "must be more than 0")),
        Some(d) => Ok(d.0),
        None => Ok(default),
    };
    let threshold = positive("connection.stall_threshold", raw.stall_threshold, defaults.threshold)?;
    let probe_timeout = positive("connection.probe_timeout", raw.probe_timeout, defaults.probe_timeout)?;
    let ack_timeout = positive("connection.ack_timeout", raw.ack_timeout, Duration::from_secs(60))?;
    let backoff_defaults = connector_core::BackoffPolicy::default();
    let backoff = connector_core::BackoffPolicy {
        min: positive("connection.backoff_min", raw.backoff_min, backoff_defaults.min)?,
        max: positive("connection.backoff_max", raw.backoff_max, backoff_defaults.max)?,
        ..backoff_defaults
    };
    if backoff.max < backoff.min {
        return Err(ctx.invalid("connection.backoff_max", "must be at least connection.backoff_min"));
    }
    let stall = raw
        .stall_watchdog
        .unwrap_or(true)
        .then_some(connector_actors::StallPolicy { threshold, probe_timeout });
    let transport = match raw.transport {
        Some(t) => Some(t.parse().map_err(|e: connector_actors::transport::UnknownTransport| {
            ctx.invalid("connection.transport", e.to_string())
        })?),
        None => None,
    };
    Ok(ConnectionSettings { transport, stall, ack_timeout, backoff })
}

/// What changed between two settings that a reload (SIGHUP) cannot apply in place.
pub fn restart_required(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.state_dir != new.state_dir {
        v.push("agent.state_dir");
    }
    if format!("{:?}", old.cloud) != format!("{:?}", new.cloud) {
        v.push("cloud");
    }
    if old.ingest != new.ingest {
        v.push("ingest");
    }
    if old.state != new.state {
        v.push("state");
    }
    if old.store != new.store {
        v.push("store");
    }
    if old.connection != new.connection {
        v.push("connection");
    }
    if old.metrics != new.metrics {
        v.push("metrics");
    }
    if old.logging.json != new.logging.json {
        v.push("logging.json");
    }
    if old.handlers.dir != new.handlers.dir || old.handlers.run_as != new.handlers.run_as {
        v.push("handlers.dir/run_as");
    }
    v
}
