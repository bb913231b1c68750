//! The file's shape: every field optional, unknown keys refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Dur;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) agent: RawAgent,
    pub(super) cloud: RawCloud,
    pub(super) azure: Option<RawAzure>,
    pub(super) aws: Option<RawAws>,
    pub(super) emulator: Option<RawEmulator>,
    pub(super) telemetry: RawTelemetry,
    pub(super) ingest: RawIngest,
    pub(super) state: RawState,
    pub(super) handlers: RawHandlers,
    pub(super) store: RawStore,
    pub(super) connection: RawConnection,
    pub(super) metrics: RawMetrics,
    pub(super) logging: RawLogging,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) state_dir: Option<PathBuf>,
    pub(super) status_interval: Option<Dur>,
    pub(super) shutdown_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCloud {
    pub(super) provider: Option<String>,
    pub(super) embedded: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAzure {
    pub(super) connection_string_file: Option<PathBuf>,
    pub(super) connection_string_env: Option<String>,
    pub(super) host_name: Option<String>,
    pub(super) device_id: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) model_id: Option<String>,
    pub(super) transport: Option<String>,
    pub(super) proxy: Option<String>,
    pub(super) x509: Option<RawCertKey>,
    pub(super) dps: Option<RawDps>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCertKey {
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDps {
    pub(super) id_scope: Option<String>,
    pub(super) registration_id: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) symmetric_key_file: Option<PathBuf>,
    pub(super) symmetric_key_env: Option<String>,
    pub(super) group_key_file: Option<PathBuf>,
    pub(super) group_key_env: Option<String>,
    pub(super) x509: Option<bool>,
    pub(super) timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAws {
    pub(super) endpoint: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) thing_name: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) proxy: Option<String>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) fleet_provisioning: Option<RawFleet>,
    pub(super) auth: Option<String>,
    pub(super) sigv4: Option<RawSigV4>,
    pub(super) custom_authorizer: Option<RawCustomAuthorizer>,
    pub(super) topic_aliases: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSigV4 {
    pub(super) region: Option<String>,
    pub(super) source: Option<String>,
    pub(super) profile: Option<String>,
    pub(super) credentials_file: Option<PathBuf>,
    pub(super) access_key_id: Option<String>,
    pub(super) secret_access_key_file: Option<PathBuf>,
    pub(super) session_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCustomAuthorizer {
    pub(super) authorizer_name: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) token_env: Option<String>,
    pub(super) token_key_name: Option<String>,
    pub(super) signature_file: Option<PathBuf>,
    pub(super) signing_key_file: Option<PathBuf>,
    pub(super) username: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) password_env: Option<String>,
    pub(super) transport: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) template_name: Option<String>,
    pub(super) claim_cert_file: Option<PathBuf>,
    pub(super) claim_key_file: Option<PathBuf>,
    pub(super) parameters: BTreeMap<String, String>,
    pub(super) timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawEmulator {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) device_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) interval: Option<Dur>,
    pub(super) device_stats: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawIngest {
    pub(super) enabled: Option<bool>,
    pub(super) socket: Option<PathBuf>,
    pub(super) batch_max_messages: Option<usize>,
    pub(super) batch_max_bytes: Option<usize>,
    pub(super) batch_max_delay: Option<Dur>,
    pub(super) idle_timeout: Option<Dur>,
    pub(super) partial_line_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) enabled: Option<bool>,
    pub(super) desired_file: Option<PathBuf>,
    pub(super) reported_file: Option<PathBuf>,
    pub(super) poll_interval: Option<Dur>,
    pub(super) named_shadows: Vec<RawNamedShadow>,
}

/// One `[[state.named_shadows]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawNamedShadow {
    pub(super) name: Option<String>,
    pub(super) desired_file: Option<PathBuf>,
    pub(super) reported_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawHandlers {
    pub(super) dir: Option<PathBuf>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) timeout: Option<Dur>,
    pub(super) run_as: Option<String>,
    pub(super) max_output_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) dir: Option<PathBuf>,
    pub(super) max_messages: Option<usize>,
    pub(super) max_bytes: Option<u64>,
    pub(super) drop_policy: Option<String>,
    pub(super) fsync: Option<bool>,
    pub(super) expiry: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConnection {
    pub(super) transport: Option<String>,
    pub(super) stall_watchdog: Option<bool>,
    pub(super) stall_threshold: Option<Dur>,
    pub(super) probe_timeout: Option<Dur>,
    pub(super) ack_timeout: Option<Dur>,
    pub(super) backoff_min: Option<Dur>,
    pub(super) backoff_max: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) enabled: Option<bool>,
    pub(super) addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) level: Option<String>,
    pub(super) json: Option<bool>,
}
