//! The agent's configuration: a TOML file, `CONNECTOR_AGENT_…` environment overrides and
//! command-line flags, merged in that order and validated up front into [`Settings`].
//!
//! Every error is a [`ConfigError`] naming where the offending value came from (the file,
//! the environment variable or the flag), the key (`telemetry.interval`) and the reason.
//! Secrets (connection strings, symmetric keys) are read from files or named environment
//! variables into [`Secret`]s: they never appear in errors, logs or `Debug` output.
//!
//! The sections and keys are documented in `agent/config/*.toml`; [`ENV_KEYS`] lists every
//! key an environment variable can override (`telemetry.interval` ←
//! `CONNECTOR_AGENT_TELEMETRY_INTERVAL`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_core::{DropPolicy, Secret};
use serde::Deserialize;
use thiserror::Error;

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
    #[error("{}: cannot read the configuration file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
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
    #[error("{origin}: `{key}`: cannot read {}: {source}", path.display())]
    File {
        /// Where the key came from.
        origin: Origin,
        /// The key naming the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
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

/// Parses `"500ms"`, `"10s"`, `"1.5s"`, `"5m"`, `"2h"`, `"1d"` (a bare number is seconds).
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
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
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
            Raw::Int(n) => Ok(Dur(Duration::from_secs(n))),
            Raw::Str(s) => parse_duration(&s).map(Dur).map_err(serde::de::Error::custom),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file's shape (every field optional; unknown keys refused).

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    agent: RawAgent,
    cloud: RawCloud,
    azure: Option<RawAzure>,
    aws: Option<RawAws>,
    emulator: Option<RawEmulator>,
    telemetry: RawTelemetry,
    ingest: RawIngest,
    state: RawState,
    handlers: RawHandlers,
    store: RawStore,
    metrics: RawMetrics,
    logging: RawLogging,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAgent {
    state_dir: Option<PathBuf>,
    status_interval: Option<Dur>,
    shutdown_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCloud {
    provider: Option<String>,
    embedded: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAzure {
    connection_string_file: Option<PathBuf>,
    connection_string_env: Option<String>,
    host_name: Option<String>,
    device_id: Option<String>,
    port: Option<u16>,
    ca_file: Option<PathBuf>,
    model_id: Option<String>,
    transport: Option<String>,
    x509: Option<RawCertKey>,
    dps: Option<RawDps>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCertKey {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDps {
    id_scope: Option<String>,
    registration_id: Option<String>,
    endpoint: Option<String>,
    port: Option<u16>,
    symmetric_key_file: Option<PathBuf>,
    symmetric_key_env: Option<String>,
    group_key_file: Option<PathBuf>,
    group_key_env: Option<String>,
    x509: Option<bool>,
    timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAws {
    endpoint: Option<String>,
    port: Option<u16>,
    thing_name: Option<String>,
    client_id: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    fleet_provisioning: Option<RawFleet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFleet {
    template_name: Option<String>,
    claim_cert_file: Option<PathBuf>,
    claim_key_file: Option<PathBuf>,
    parameters: BTreeMap<String, String>,
    timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawEmulator {
    data_dir: Option<PathBuf>,
    device_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTelemetry {
    interval: Option<Dur>,
    device_stats: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawIngest {
    enabled: Option<bool>,
    socket: Option<PathBuf>,
    batch_max_messages: Option<usize>,
    batch_max_bytes: Option<usize>,
    batch_max_delay: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawState {
    enabled: Option<bool>,
    desired_file: Option<PathBuf>,
    reported_file: Option<PathBuf>,
    poll_interval: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHandlers {
    dir: Option<PathBuf>,
    allow: Option<Vec<String>>,
    timeout: Option<Dur>,
    run_as: Option<String>,
    max_output_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStore {
    dir: Option<PathBuf>,
    max_messages: Option<usize>,
    max_bytes: Option<u64>,
    drop_policy: Option<String>,
    fsync: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMetrics {
    enabled: Option<bool>,
    addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLogging {
    level: Option<String>,
    json: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// Environment overrides.

/// The type of a key settable from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// A string (durations, paths, names).
    Str,
    /// An unsigned integer.
    Int,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// A comma-separated list of strings.
    List,
}

/// Every key an environment variable can set: `CONNECTOR_AGENT_` followed by the key in
/// upper case with `.` replaced by `_` (`azure.dps.id_scope` ←
/// `CONNECTOR_AGENT_AZURE_DPS_ID_SCOPE`).
pub const ENV_KEYS: &[(&str, EnvKind)] = &[
    ("agent.state_dir", EnvKind::Str),
    ("agent.status_interval", EnvKind::Str),
    ("agent.shutdown_timeout", EnvKind::Str),
    ("cloud.provider", EnvKind::Str),
    ("cloud.embedded", EnvKind::Bool),
    ("azure.connection_string_file", EnvKind::Str),
    ("azure.connection_string_env", EnvKind::Str),
    ("azure.host_name", EnvKind::Str),
    ("azure.device_id", EnvKind::Str),
    ("azure.port", EnvKind::Int),
    ("azure.ca_file", EnvKind::Str),
    ("azure.model_id", EnvKind::Str),
    ("azure.transport", EnvKind::Str),
    ("azure.x509.cert_file", EnvKind::Str),
    ("azure.x509.key_file", EnvKind::Str),
    ("azure.dps.id_scope", EnvKind::Str),
    ("azure.dps.registration_id", EnvKind::Str),
    ("azure.dps.endpoint", EnvKind::Str),
    ("azure.dps.port", EnvKind::Int),
    ("azure.dps.symmetric_key_file", EnvKind::Str),
    ("azure.dps.symmetric_key_env", EnvKind::Str),
    ("azure.dps.group_key_file", EnvKind::Str),
    ("azure.dps.group_key_env", EnvKind::Str),
    ("azure.dps.x509", EnvKind::Bool),
    ("azure.dps.timeout", EnvKind::Str),
    ("aws.endpoint", EnvKind::Str),
    ("aws.port", EnvKind::Int),
    ("aws.thing_name", EnvKind::Str),
    ("aws.client_id", EnvKind::Str),
    ("aws.ca_file", EnvKind::Str),
    ("aws.cert_file", EnvKind::Str),
    ("aws.key_file", EnvKind::Str),
    ("aws.fleet_provisioning.template_name", EnvKind::Str),
    ("aws.fleet_provisioning.claim_cert_file", EnvKind::Str),
    ("aws.fleet_provisioning.claim_key_file", EnvKind::Str),
    ("aws.fleet_provisioning.timeout", EnvKind::Str),
    ("emulator.data_dir", EnvKind::Str),
    ("emulator.device_id", EnvKind::Str),
    ("telemetry.interval", EnvKind::Str),
    ("telemetry.device_stats", EnvKind::Bool),
    ("ingest.enabled", EnvKind::Bool),
    ("ingest.socket", EnvKind::Str),
    ("ingest.batch_max_messages", EnvKind::Int),
    ("ingest.batch_max_bytes", EnvKind::Int),
    ("ingest.batch_max_delay", EnvKind::Str),
    ("state.enabled", EnvKind::Bool),
    ("state.desired_file", EnvKind::Str),
    ("state.reported_file", EnvKind::Str),
    ("state.poll_interval", EnvKind::Str),
    ("handlers.dir", EnvKind::Str),
    ("handlers.allow", EnvKind::List),
    ("handlers.timeout", EnvKind::Str),
    ("handlers.run_as", EnvKind::Str),
    ("handlers.max_output_bytes", EnvKind::Int),
    ("store.dir", EnvKind::Str),
    ("store.max_messages", EnvKind::Int),
    ("store.max_bytes", EnvKind::Int),
    ("store.drop_policy", EnvKind::Str),
    ("store.fsync", EnvKind::Bool),
    ("metrics.enabled", EnvKind::Bool),
    ("metrics.addr", EnvKind::Str),
    ("logging.level", EnvKind::Str),
    ("logging.json", EnvKind::Bool),
];

/// The environment variable that overrides `key`.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "_"))
}

fn env_value(var: &str, key: &str, kind: EnvKind, raw: &str) -> Result<toml::Value, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        origin: Origin::Env(var.to_owned()),
        key: key.to_owned(),
        reason,
    };
    Ok(match kind {
        EnvKind::Str => toml::Value::String(raw.to_owned()),
        EnvKind::Int => toml::Value::Integer(
            raw.trim().parse::<i64>().map_err(|_| invalid(format!("`{raw}` is not an integer")))?,
        ),
        EnvKind::Bool => toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(invalid(format!("`{raw}` is not a boolean (true/false)"))),
        }),
        EnvKind::List => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut t = table;
    for p in parts {
        let entry = t.entry(p.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else { return };
        t = next;
    }
    t.insert(last.to_owned(), value);
}

/// Values from the command line that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--cloud`.
    pub cloud: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-json`.
    pub log_json: bool,
    /// `--metrics-addr` (`off` disables).
    pub metrics_addr: Option<String>,
    /// `--telemetry-interval`.
    pub telemetry_interval: Option<String>,
    /// `--status-interval`.
    pub status_interval: Option<String>,
}

impl Overrides {
    fn entries(&self) -> Vec<(&'static str, &'static str, toml::Value)> {
        let s = |v: &str| toml::Value::String(v.to_owned());
        let mut out = Vec::new();
        if let Some(c) = &self.cloud {
            out.push(("cloud.provider", "--cloud", s(c)));
        }
        if let Some(d) = &self.state_dir {
            out.push(("agent.state_dir", "--state-dir", s(&d.to_string_lossy())));
        }
        if let Some(l) = &self.log_level {
            out.push(("logging.level", "--log-level", s(l)));
        }
        if self.log_json {
            out.push(("logging.json", "--log-json", toml::Value::Boolean(true)));
        }
        if let Some(a) = &self.metrics_addr {
            if a.eq_ignore_ascii_case("off") {
                out.push(("metrics.enabled", "--metrics-addr", toml::Value::Boolean(false)));
            } else {
                out.push(("metrics.addr", "--metrics-addr", s(a)));
            }
        }
        if let Some(i) = &self.telemetry_interval {
            out.push(("telemetry.interval", "--telemetry-interval", s(i)));
        }
        if let Some(i) = &self.status_interval {
            out.push(("agent.status_interval", "--status-interval", s(i)));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The validated settings.

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file, if one was given.
    pub file: Option<PathBuf>,
    /// Identity cache, lock file, default store, socket and state files.
    pub state_dir: PathBuf,
    /// How often the status line is printed (`None`: never).
    pub status_interval: Option<Duration>,
    /// How long a shutdown waits for unacknowledged messages before disconnecting.
    pub shutdown_timeout: Duration,
    /// Which cloud, and how to reach it.
    pub cloud: Cloud,
    /// Periodic telemetry.
    pub telemetry: TelemetrySettings,
    /// The local ingestion socket.
    pub ingest: IngestSettings,
    /// Desired/reported state files.
    pub state: StateSettings,
    /// Method/job handler executables.
    pub handlers: HandlerSettings,
    /// The Publisher's offline queue and on-disk store.
    pub store: StoreSettings,
    /// `/metrics`, `/healthz`, `/readyz` address (`None`: not served).
    pub metrics: Option<SocketAddr>,
    /// Logging.
    pub logging: LoggingSettings,
}

/// The two clouds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudKind {
    /// Azure IoT Hub (+ DPS).
    Azure,
    /// AWS IoT Core (+ fleet provisioning).
    Aws,
}

impl CloudKind {
    /// `azure` or `aws`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloudKind::Azure => "azure",
            CloudKind::Aws => "aws",
        }
    }
}

/// Which cloud the agent talks to.
#[derive(Debug, Clone)]
pub enum Cloud {
    /// The emulator, started in-process (the default with no configuration).
    Embedded(EmbeddedSettings),
    /// Azure IoT Hub.
    Azure(AzureSettings),
    /// AWS IoT Core.
    Aws(AwsSettings),
}

impl Cloud {
    /// The cloud's kind (the flavour, for the embedded emulator).
    pub fn kind(&self) -> CloudKind {
        match self {
            Cloud::Embedded(e) => e.flavour,
            Cloud::Azure(_) => CloudKind::Azure,
            Cloud::Aws(_) => CloudKind::Aws,
        }
    }
}

/// The in-process emulator.
#[derive(Debug, Clone)]
pub struct EmbeddedSettings {
    /// Azure or AWS flavour.
    pub flavour: CloudKind,
    /// The emulator's CA, registry and enrollment (kept across restarts).
    pub data_dir: PathBuf,
    /// The device id (Azure) or thing name (AWS) the agent provisions as.
    pub device_id: String,
}

/// Azure IoT Hub.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// How the device authenticates.
    pub auth: AzureAuth,
    /// Hub port override.
    pub port: Option<u16>,
    /// Trust roots (PEM) instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Plug and Play model id.
    pub model_id: Option<String>,
    /// MQTT over TLS or over WebSocket.
    pub websocket: bool,
}

/// Azure device authentication.
#[derive(Debug, Clone)]
pub enum AzureAuth {
    /// A device connection string (SAS key).
    ConnectionString(Secret),
    /// A client certificate for `device_id` on `host_name`.
    X509 {
        /// The hub.
        host_name: String,
        /// The device.
        device_id: String,
        /// Certificate (PEM, leaf first).
        cert_file: PathBuf,
        /// Private key (PEM).
        key_file: PathBuf,
    },
    /// Device Provisioning Service.
    Dps(DpsSettings),
}

/// DPS registration settings.
#[derive(Debug, Clone)]
pub struct DpsSettings {
    /// ID scope.
    pub id_scope: String,
    /// Registration id.
    pub registration_id: String,
    /// DPS host.
    pub endpoint: String,
    /// DPS port override.
    pub port: Option<u16>,
    /// Attestation.
    pub attestation: DpsAttestation,
    /// Provisioning time limit.
    pub timeout: Duration,
}

/// DPS attestation.
#[derive(Debug, Clone)]
pub enum DpsAttestation {
    /// Individual enrollment key.
    SymmetricKey(Secret),
    /// Enrollment group key (the device key is derived).
    GroupKey(Secret),
    /// Client certificate (`azure.x509`).
    X509 {
        /// Certificate.
        cert_file: PathBuf,
        /// Private key.
        key_file: PathBuf,
    },
}

/// AWS IoT Core.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// The account's device data endpoint.
    pub endpoint: String,
    /// Port (8883 or 443 with ALPN).
    pub port: Option<u16>,
    /// Thing name (also the client id unless `client_id` is set).
    pub thing_name: Option<String>,
    /// MQTT client id.
    pub client_id: Option<String>,
    /// Trust roots (PEM).
    pub ca_file: Option<PathBuf>,
    /// How the device authenticates.
    pub auth: AwsAuth,
}

/// AWS device authentication.
#[derive(Debug, Clone)]
pub enum AwsAuth {
    /// A device certificate and key.
    Certificate {
        /// Certificate (PEM).
        cert_file: PathBuf,
        /// Private key (PEM).
        key_file: PathBuf,
    },
    /// Fleet provisioning by claim.
    FleetProvisioning {
        /// Provisioning template.
        template_name: String,
        /// Claim certificate.
        claim_cert_file: PathBuf,
        /// Claim private key.
        claim_key_file: PathBuf,
        /// Template parameters.
        parameters: BTreeMap<String, String>,
        /// Provisioning time limit.
        timeout: Duration,
    },
}

/// Periodic telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// How often a device-stats message is sent.
    pub interval: Duration,
    /// Whether device stats are sent at all.
    pub device_stats: bool,
}

/// The local ingestion socket.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSettings {
    /// Whether the socket is served.
    pub enabled: bool,
    /// Socket path.
    pub socket: PathBuf,
    /// Most lines per telemetry message.
    pub batch_max_messages: usize,
    /// Most payload bytes per telemetry message.
    pub batch_max_bytes: usize,
    /// Longest a line waits for its batch.
    pub batch_max_delay: Duration,
}

/// Desired/reported state files.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// Whether state is synchronised.
    pub enabled: bool,
    /// Where desired state is written.
    pub desired_file: PathBuf,
    /// Where reported state is read from.
    pub reported_file: PathBuf,
    /// How often the reported file is checked for changes.
    pub poll_interval: Duration,
}

/// Method/job handler executables.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerSettings {
    /// The handler directory (`None`: no handlers; every method is refused).
    pub dir: Option<PathBuf>,
    /// Handler names that may run (file names in `dir`).
    pub allow: Vec<String>,
    /// Longest a handler may run.
    pub timeout: Duration,
    /// Run handlers as this user (the agent must be root).
    pub run_as: Option<String>,
    /// Output captured per stream.
    pub max_output_bytes: usize,
}

/// The Publisher's offline queue and on-disk store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// The store's directory.
    pub dir: PathBuf,
    /// Most accepted messages waiting to be sent.
    pub max_messages: usize,
    /// Most bytes of accepted, unacknowledged messages (new messages are refused beyond).
    pub max_bytes: u64,
    /// Which message goes when `max_messages` is reached.
    pub drop_policy: DropPolicy,
    /// `fsync` every store write.
    pub fsync: bool,
}

/// Logging.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingSettings {
    /// An `EnvFilter` directive (`info`, `debug,paho_mqtt=warn`).
    pub level: String,
    /// JSON lines instead of text.
    pub json: bool,
}

/// Default telemetry interval.
pub const DEFAULT_TELEMETRY_INTERVAL: Duration = Duration::from_secs(10);

struct Ctx {
    origins: HashMap<String, Origin>,
    default_origin: Origin,
}

impl Ctx {
    fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or_else(|| self.default_origin.clone())
    }
    fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { origin: self.origin(key), key: key.to_owned(), reason: reason.into() }
    }
    fn read_file(&self, key: &str, path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            origin: self.origin(key),
            key: key.to_owned(),
            path: path.to_owned(),
            source,
        })
    }
    fn must_exist(&self, key: &str, path: &Path) -> Result<(), ConfigError> {
        std::fs::metadata(path).map(|_| ()).map_err(|source| ConfigError::File {
            origin: self.origin(key),
            key: key.to_owned(),
            path: path.to_owned(),
            source,
        })
    }
    /// A secret from a file (trimmed) or a named environment variable.
    fn secret(
        &self,
        file_key: &str,
        file: Option<&Path>,
        env_key: &str,
        env: Option<&str>,
        env_lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (file, env) {
            (Some(_), Some(_)) => {
                Err(self.invalid(env_key, format!("set either `{file_key}` or `{env_key}`, not both")))
            }
            (Some(path), None) => {
                let text = self.read_file(file_key, path)?;
                warn_if_readable_by_others(path);
                let s = text.trim();
                if s.is_empty() {
                    return Err(self.invalid(file_key, format!("{} is empty", path.display())));
                }
                Ok(Some(Secret::new(s)))
            }
            (None, Some(var)) => match env_lookup(var) {
                Some(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                _ => Err(self.invalid(env_key, format!("environment variable {var} is not set or empty"))),
            },
            (None, None) => Ok(None),
        }
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "secret file is readable by group or others; chmod 600 it");
        }
    }
}

/// Loads, merges and validates the configuration: `file` (if any), then the environment
/// (`env`: a lookup, normally `std::env::var`), then `overrides`.
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { file: path.to_owned(), source })?;
            text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax {
                file: path.to_owned(),
                message: e.to_string().trim().to_owned(),
            })?
        }
        None => toml::Table::new(),
    };
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
    let ctx = Ctx { origins, default_origin };
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

fn non_empty(ctx: &Ctx, key: &str, v: Option<String>) -> Result<Option<String>, ConfigError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(ctx.invalid(key, "must not be empty")),
        other => Ok(other),
    }
}

fn required<T>(ctx: &Ctx, key: &str, v: Option<T>, why: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| ctx.invalid(key, format!("missing: {why}")))
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
            CloudKind::Azure => Cloud::Azure(azure(raw.azure.unwrap_or_default(), ctx, env)?),
            CloudKind::Aws => Cloud::Aws(aws(raw.aws.unwrap_or_default(), ctx)?),
        }
    };

    let interval = raw.telemetry.interval.map_or(DEFAULT_TELEMETRY_INTERVAL, |d| d.0);
    if interval < Duration::from_millis(100) {
        return Err(ctx.invalid("telemetry.interval", "must be at least 100ms"));
    }
    let telemetry = TelemetrySettings { interval, device_stats: raw.telemetry.device_stats.unwrap_or(true) };

    let ingest = IngestSettings {
        enabled: raw.ingest.enabled.unwrap_or(true),
        socket: raw.ingest.socket.unwrap_or_else(|| state_dir.join("ingest.sock")),
        batch_max_messages: raw.ingest.batch_max_messages.unwrap_or(100),
        batch_max_bytes: raw.ingest.batch_max_bytes.unwrap_or(64 * 1024),
        batch_max_delay: raw.ingest.batch_max_delay.map_or(Duration::from_secs(1), |d| d.0),
    };
    if ingest.batch_max_messages == 0 {
        return Err(ctx.invalid("ingest.batch_max_messages", "must be at least 1"));
    }
    if ingest.batch_max_bytes < 64 {
        return Err(ctx.invalid("ingest.batch_max_bytes", "must be at least 64"));
    }
    // sun_path is 108 bytes including the terminating NUL.
    if ingest.enabled && ingest.socket.as_os_str().len() > 107 {
        return Err(ctx.invalid("ingest.socket", "a Unix socket path must be at most 107 bytes"));
    }

    let state = StateSettings {
        enabled: raw.state.enabled.unwrap_or(true),
        desired_file: raw.state.desired_file.unwrap_or_else(|| state_dir.join("desired.json")),
        reported_file: raw.state.reported_file.unwrap_or_else(|| state_dir.join("reported.json")),
        poll_interval: raw.state.poll_interval.map_or(Duration::from_secs(1), |d| d.0),
    };
    if state.poll_interval < Duration::from_millis(50) {
        return Err(ctx.invalid("state.poll_interval", "must be at least 50ms"));
    }
    if state.desired_file == state.reported_file {
        return Err(ctx.invalid("state.reported_file", "must differ from state.desired_file"));
    }

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
    };
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

    let logging = LoggingSettings {
        level: raw.logging.level.unwrap_or_else(|| "info".to_owned()),
        json: raw.logging.json.unwrap_or(false),
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&logging.level) {
        return Err(ctx.invalid("logging.level", format!("`{}`: {e}", logging.level)));
    }

    Ok(Settings {
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
        metrics,
        logging,
    })
}

fn azure(
    raw: RawAzure,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AzureSettings, ConfigError> {
    let websocket = match raw.transport.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("mqtt") => false,
        Some("websocket") | Some("wss") => true,
        Some(other) => {
            return Err(ctx.invalid("azure.transport", format!("`{other}`: expected `mqtt` or `websocket`")))
        }
    };
    if let Some(ca) = &raw.ca_file {
        ctx.must_exist("azure.ca_file", ca)?;
    }
    let cs = ctx.secret(
        "azure.connection_string_file",
        raw.connection_string_file.as_deref(),
        "azure.connection_string_env",
        raw.connection_string_env.as_deref(),
        env,
    )?;
    let x509 = match raw.x509 {
        Some(c) => {
            let cert = required(ctx, "azure.x509.cert_file", c.cert_file, "the device certificate (PEM)")?;
            let key = required(ctx, "azure.x509.key_file", c.key_file, "the device private key (PEM)")?;
            ctx.must_exist("azure.x509.cert_file", &cert)?;
            ctx.must_exist("azure.x509.key_file", &key)?;
            Some((cert, key))
        }
        None => None,
    };
    let auth = match (cs, raw.dps) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                "azure.dps",
                "a connection string and [azure.dps] are both configured: choose one",
            ))
        }
        (Some(cs), None) => {
            if let Err(e) = cs.expose().parse::<connector_azure::ConnectionString>() {
                let key = if raw.connection_string_file.is_some() {
                    "azure.connection_string_file"
                } else {
                    "azure.connection_string_env"
                };
                return Err(ctx.invalid(key, format!("not a device connection string: {e}")));
            }
            AzureAuth::ConnectionString(cs)
        }
        (None, Some(dps)) => {
            let id_scope =
                required(ctx, "azure.dps.id_scope", non_empty(ctx, "azure.dps.id_scope", dps.id_scope)?, "the DPS ID scope")?;
            let registration_id = required(
                ctx,
                "azure.dps.registration_id",
                non_empty(ctx, "azure.dps.registration_id", dps.registration_id)?,
                "the registration id",
            )?;
            let sym = ctx.secret(
                "azure.dps.symmetric_key_file",
                dps.symmetric_key_file.as_deref(),
                "azure.dps.symmetric_key_env",
                dps.symmetric_key_env.as_deref(),
                env,
            )?;
            let group = ctx.secret(
                "azure.dps.group_key_file",
                dps.group_key_file.as_deref(),
                "azure.dps.group_key_env",
                dps.group_key_env.as_deref(),
                env,
            )?;
            let want_x509 = dps.x509.unwrap_or(false);
            let attestation = match (sym, group, want_x509) {
                (Some(k), None, false) => DpsAttestation::SymmetricKey(k),
                (None, Some(k), false) => DpsAttestation::GroupKey(k),
                (None, None, true) => {
                    let (cert_file, key_file) = x509.clone().ok_or_else(|| {
                        ctx.invalid("azure.x509", "missing: azure.dps.x509 = true needs [azure.x509] cert_file and key_file")
                    })?;
                    DpsAttestation::X509 { cert_file, key_file }
                }
                (None, None, false) => {
                    return Err(ctx.invalid(
                        "azure.dps",
                        "no attestation: set symmetric_key_file/_env, group_key_file/_env, or x509 = true",
                    ))
                }
                _ => {
                    return Err(ctx.invalid(
                        "azure.dps",
                        "more than one attestation: set only one of the symmetric key, the group key and x509",
                    ))
                }
            };
            for (key, secret) in [
                ("azure.dps.symmetric_key_file", matches!(&attestation, DpsAttestation::SymmetricKey(_))),
                ("azure.dps.group_key_file", matches!(&attestation, DpsAttestation::GroupKey(_))),
            ] {
                if !secret {
                    continue;
                }
                let (DpsAttestation::SymmetricKey(k) | DpsAttestation::GroupKey(k)) = &attestation else { continue };
                if connector_azure::SasKey::from_base64(k.expose()).is_err() {
                    return Err(ctx.invalid(key, "not a base64 symmetric key"));
                }
            }
            let dps_settings = DpsSettings {
                id_scope,
                registration_id,
                endpoint: dps.endpoint.unwrap_or_else(|| connector_azure::dps::GLOBAL_ENDPOINT.to_owned()),
                port: dps.port,
                attestation,
                timeout: dps.timeout.map_or(Duration::from_secs(60), |d| d.0),
            };
            // Reject what the DPS client would (bad scope or registration id) now.
            let probe_key = connector_azure::SasKey::from_base64("AAAAAAAAAAAAAAAAAAAAAA==")
                .map_err(|e| ctx.invalid("azure.dps", e.to_string()))?;
            if let Err(e) = connector_azure::dps::DpsRegistration::new(
                dps_settings.id_scope.clone(),
                dps_settings.registration_id.clone(),
                connector_azure::dps::DpsAuth::SymmetricKey(probe_key),
                connector_azure::dps::DpsOptions::default(),
            ) {
                return Err(ctx.invalid("azure.dps.registration_id", e.to_string()));
            }
            AzureAuth::Dps(dps_settings)
        }
        (None, None) => match x509 {
            Some((cert_file, key_file)) => AzureAuth::X509 {
                host_name: required(ctx, "azure.host_name", non_empty(ctx, "azure.host_name", raw.host_name)?, "the hub host name for X.509")?,
                device_id: required(ctx, "azure.device_id", non_empty(ctx, "azure.device_id", raw.device_id)?, "the device id for X.509")?,
                cert_file,
                key_file,
            },
            None => {
                return Err(ctx.invalid(
                    "azure",
                    "no credentials: set connection_string_file or connection_string_env, [azure.dps], or [azure.x509] with host_name and device_id",
                ))
            }
        },
    };
    Ok(AzureSettings { auth, port: raw.port, ca_file: raw.ca_file, model_id: raw.model_id, websocket })
}

fn aws(raw: RawAws, ctx: &Ctx) -> Result<AwsSettings, ConfigError> {
    let endpoint = required(
        ctx,
        "aws.endpoint",
        non_empty(ctx, "aws.endpoint", raw.endpoint)?,
        "the device data endpoint (xxxx-ats.iot.REGION.amazonaws.com)",
    )?;
    if let Some(ca) = &raw.ca_file {
        ctx.must_exist("aws.ca_file", ca)?;
    }
    let auth = match (raw.cert_file, raw.key_file, raw.fleet_provisioning) {
        (Some(_), Some(_), Some(_)) => {
            return Err(ctx.invalid(
                "aws.fleet_provisioning",
                "a device certificate and fleet provisioning are both configured: choose one",
            ))
        }
        (Some(cert_file), Some(key_file), None) => {
            ctx.must_exist("aws.cert_file", &cert_file)?;
            ctx.must_exist("aws.key_file", &key_file)?;
            AwsAuth::Certificate { cert_file, key_file }
        }
        (Some(_), None, _) => {
            return Err(ctx.invalid("aws.key_file", "missing: aws.cert_file needs its private key"))
        }
        (None, Some(_), _) => {
            return Err(ctx.invalid("aws.cert_file", "missing: aws.key_file needs its certificate"))
        }
        (None, None, Some(f)) => {
            let template_name = required(
                ctx,
                "aws.fleet_provisioning.template_name",
                non_empty(ctx, "aws.fleet_provisioning.template_name", f.template_name)?,
                "the provisioning template",
            )?;
            let claim_cert_file = required(
                ctx,
                "aws.fleet_provisioning.claim_cert_file",
                f.claim_cert_file,
                "the claim certificate",
            )?;
            let claim_key_file = required(
                ctx,
                "aws.fleet_provisioning.claim_key_file",
                f.claim_key_file,
                "the claim private key",
            )?;
            ctx.must_exist("aws.fleet_provisioning.claim_cert_file", &claim_cert_file)?;
            ctx.must_exist("aws.fleet_provisioning.claim_key_file", &claim_key_file)?;
            AwsAuth::FleetProvisioning {
                template_name,
                claim_cert_file,
                claim_key_file,
                parameters: f.parameters,
                timeout: f.timeout.map_or(Duration::from_secs(60), |d| d.0),
            }
        }
        (None, None, None) => {
            return Err(
                ctx.invalid("aws", "no credentials: set cert_file and key_file, or [aws.fleet_provisioning]")
            )
        }
    };
    if raw.thing_name.is_none() && raw.client_id.is_none() && matches!(auth, AwsAuth::Certificate { .. }) {
        return Err(ctx.invalid("aws.thing_name", "missing: the thing name (or aws.client_id)"));
    }
    Ok(AwsSettings {
        endpoint,
        port: raw.port,
        thing_name: non_empty(ctx, "aws.thing_name", raw.thing_name)?,
        client_id: non_empty(ctx, "aws.client_id", raw.client_id)?,
        ca_file: raw.ca_file,
        auth,
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn base() -> Vec<(String, String)> {
        env(&[("HOME", "/home/x")])
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("ten").unwrap_err().contains("invalid duration"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn no_configuration_is_the_embedded_azure_default() {
        let s = load(None, &base(), &Overrides::default()).unwrap();
        let Cloud::Embedded(e) = &s.cloud else { panic!("{:?}", s.cloud) };
        assert_eq!(e.flavour, CloudKind::Azure);
        assert_eq!(e.device_id, "connector-agent");
        assert!(s.state_dir.ends_with("connector-agent"));
        assert_eq!(s.store.drop_policy, DropPolicy::Oldest);
        assert_eq!(s.metrics, Some("127.0.0.1:9898".parse().unwrap()));
        let o = Overrides { cloud: Some("aws".into()), ..Overrides::default() };
        assert_eq!(load(None, &base(), &o).unwrap().cloud.kind(), CloudKind::Aws);
    }

    #[test]
    fn environment_and_flags_override_in_order() {
        let mut e = base();
        e.extend(env(&[
            ("CONNECTOR_AGENT_TELEMETRY_INTERVAL", "3s"),
            ("CONNECTOR_AGENT_LOGGING_LEVEL", "debug"),
            ("CONNECTOR_AGENT_HANDLERS_ALLOW", "a, b"),
            ("CONNECTOR_AGENT_HANDLERS_DIR", "/h"),
            ("CONNECTOR_AGENT_STORE_MAX_MESSAGES", "5"),
        ]));
        let o = Overrides {
            log_level: Some("warn".into()),
            metrics_addr: Some("off".into()),
            ..Overrides::default()
        };
        let s = load(None, &e, &o).unwrap();
        assert_eq!(s.telemetry.interval, Duration::from_secs(3));
        assert_eq!(s.logging.level, "warn");
        assert_eq!(s.handlers.allow, vec!["a", "b"]);
        assert_eq!(s.store.max_messages, 5);
        assert_eq!(s.metrics, None);
    }

    #[test]
    fn errors_name_the_source_and_key() {
        let mut e = base();
        e.push(("CONNECTOR_AGENT_TELEMETRY_INTERVAL".into(), "soon".into()));
        let err = load(None, &e, &Overrides::default()).unwrap_err();
        assert_eq!(err.key(), Some("telemetry.interval"));
        let msg = err.to_string();
        assert!(
            msg.contains("CONNECTOR_AGENT_TELEMETRY_INTERVAL") && msg.contains("invalid duration"),
            "{msg}"
        );

        let mut e = base();
        e.push(("CONNECTOR_AGENT_TELEMETRY_INTERVALL".into(), "1s".into()));
        assert!(matches!(load(None, &e, &Overrides::default()), Err(ConfigError::UnknownEnv { .. })));

        let o = Overrides { cloud: Some("gcp".into()), ..Overrides::default() };
        let msg = load(None, &base(), &o).unwrap_err().to_string();
        assert!(msg.contains("flag --cloud") && msg.contains("cloud.provider"), "{msg}");
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cs = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0";
        let csf = dir.path().join("cs");
        std::fs::write(&csf, cs).unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, format!("[azure]\nconnection_string_file = {:?}\n", csf)).unwrap();
        let s = load(Some(&file), &base(), &Overrides::default()).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("c2VjcmV0") && dbg.contains("redacted"), "{dbg}");
        // A connection string that does not parse: the error names the key, not the value.
        std::fs::write(&csf, "HostName=h;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0").unwrap();
        let msg = load(Some(&file), &base(), &Overrides::default()).unwrap_err().to_string();
        assert!(msg.contains("azure.connection_string_file") && !msg.contains("c2VjcmV0"), "{msg}");
    }
}
