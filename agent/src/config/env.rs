//! Environment overrides (`CONNECTOR_AGENT_…`) and command-line overrides.

use std::path::PathBuf;

use super::{ConfigError, Origin, ENV_PREFIX};

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
/// `CONNECTOR_AGENT_AZURE_DPS_ID_SCOPE`). Lists of tables (`[[state.named_shadows]]`)
/// have no variable: they come from the file only.
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
    ("azure.proxy", EnvKind::Str),
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
    ("aws.auth", EnvKind::Str),
    ("aws.sigv4.region", EnvKind::Str),
    ("aws.sigv4.source", EnvKind::Str),
    ("aws.sigv4.profile", EnvKind::Str),
    ("aws.sigv4.credentials_file", EnvKind::Str),
    ("aws.sigv4.access_key_id", EnvKind::Str),
    ("aws.sigv4.secret_access_key_file", EnvKind::Str),
    ("aws.sigv4.session_token_file", EnvKind::Str),
    ("aws.custom_authorizer.authorizer_name", EnvKind::Str),
    ("aws.custom_authorizer.token_file", EnvKind::Str),
    ("aws.custom_authorizer.token_env", EnvKind::Str),
    ("aws.custom_authorizer.token_key_name", EnvKind::Str),
    ("aws.custom_authorizer.signature_file", EnvKind::Str),
    ("aws.custom_authorizer.signing_key_file", EnvKind::Str),
    ("aws.custom_authorizer.username", EnvKind::Str),
    ("aws.custom_authorizer.password_file", EnvKind::Str),
    ("aws.custom_authorizer.password_env", EnvKind::Str),
    ("aws.custom_authorizer.transport", EnvKind::Str),
    ("aws.topic_aliases", EnvKind::Int),
    ("aws.proxy", EnvKind::Str),
    ("emulator.data_dir", EnvKind::Str),
    ("emulator.device_id", EnvKind::Str),
    ("telemetry.interval", EnvKind::Str),
    ("telemetry.device_stats", EnvKind::Bool),
    ("ingest.enabled", EnvKind::Bool),
    ("ingest.socket", EnvKind::Str),
    ("ingest.batch_max_messages", EnvKind::Int),
    ("ingest.batch_max_bytes", EnvKind::Int),
    ("ingest.batch_max_delay", EnvKind::Str),
    ("ingest.idle_timeout", EnvKind::Str),
    ("ingest.partial_line_timeout", EnvKind::Str),
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
    ("store.expiry", EnvKind::Str),
    ("connection.transport", EnvKind::Str),
    ("connection.stall_watchdog", EnvKind::Bool),
    ("connection.stall_threshold", EnvKind::Str),
    ("connection.probe_timeout", EnvKind::Str),
    ("connection.ack_timeout", EnvKind::Str),
    ("connection.backoff_min", EnvKind::Str),
    ("connection.backoff_max", EnvKind::Str),
    ("metrics.enabled", EnvKind::Bool),
    ("metrics.addr", EnvKind::Str),
    ("logging.level", EnvKind::Str),
    ("logging.json", EnvKind::Bool),
];

/// The environment variable that overrides `key`.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "_"))
}

pub(super) fn env_value(var: &str, key: &str, kind: EnvKind, raw: &str) -> Result<toml::Value, ConfigError> {
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

pub(super) fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) {
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
    pub(super) fn entries(&self) -> Vec<(&'static str, &'static str, toml::Value)> {
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
