//! The validated settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use connector_core::{DropPolicy, Secret};

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
    /// Dead-link detection and reconnect pacing.
    pub connection: ConnectionSettings,
    /// `/metrics`, `/healthz`, `/readyz` address (`None`: not served).
    pub metrics: Option<SocketAddr>,
    /// Logging.
    pub logging: LoggingSettings,
    /// What validation found worth fixing (emit them once logging exists:
    /// [`ConfigWarning::log`](super::ConfigWarning::log)).
    pub warnings: Vec<super::ConfigWarning>,
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
    /// `http://[user:pw@]host:port` (CONNECT) or `socks5://[user:pw@]host:port`: every
    /// connection (hub and DPS) goes through it. A secret: it may carry credentials.
    pub proxy: Option<connector_core::Secret>,
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
    /// Port override (default: 8883 for a certificate, else 443).
    pub port: Option<u16>,
    /// Thing name (also the client id unless `client_id` is set).
    pub thing_name: Option<String>,
    /// MQTT client id.
    pub client_id: Option<String>,
    /// Trust roots (PEM).
    pub ca_file: Option<PathBuf>,
    /// How the device authenticates.
    pub auth: AwsAuth,
    /// A certificate identity (configured or fleet-provisioned) connects on 443 with ALPN
    /// `x-amzn-mqtt-ca` (`aws.auth = "certificate-alpn"`) instead of MQTT on 8883.
    pub alpn: bool,
    /// Most MQTT 5 topic aliases the device connection uses (`aws.topic_aliases`; 0: none).
    pub topic_aliases: u16,
    /// `http://[user:pw@]host:port` (CONNECT) or `socks5://[user:pw@]host:port`: every
    /// connection (including fleet provisioning) goes through it. A secret: it may carry
    /// credentials.
    pub proxy: Option<connector_core::Secret>,
}

/// Where SigV4 credentials come from.
#[derive(Debug, Clone)]
pub enum AwsCredentialsSetting {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) of the agent.
    Environment,
    /// A profile of a shared credentials file.
    Profile {
        /// The profile (`None`: `AWS_PROFILE`, else `default`).
        name: Option<String>,
        /// The file (`None`: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`).
        file: Option<PathBuf>,
    },
    /// An access key id with its secret (and session token) read from files. `Debug` shows
    /// the key id only.
    Files(connector_aws::AwsCredentials),
}

impl AwsCredentialsSetting {
    /// The library's credentials source.
    pub fn source(&self) -> connector_aws::CredentialsSource {
        match self {
            AwsCredentialsSetting::Environment => connector_aws::CredentialsSource::Environment,
            AwsCredentialsSetting::Profile { name, file } => {
                connector_aws::CredentialsSource::Profile { name: name.clone(), file: file.clone() }
            }
            AwsCredentialsSetting::Files(c) => connector_aws::CredentialsSource::Explicit(c.clone()),
        }
    }
}

/// SigV4 (MQTT over WebSocket with a presigned URL).
#[derive(Debug, Clone)]
pub struct AwsSigV4Settings {
    /// The region of the credential scope (configured, or from the endpoint).
    pub region: String,
    /// Where the credentials come from.
    pub credentials: AwsCredentialsSetting,
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
    /// SigV4-signed MQTT over WebSocket.
    SigV4(AwsSigV4Settings),
    /// A custom authorizer (token, signature, user name, password); `Debug` shows no secret.
    CustomAuthorizer(connector_aws::CustomAuth),
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
    /// A producer connection silent this long at a line boundary is closed.
    pub idle_timeout: Duration,
    /// A line not complete this long after its first byte is refused and its connection
    /// closed.
    pub partial_line_timeout: Duration,
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
    /// How often the reported files are checked for changes.
    pub poll_interval: Duration,
    /// AWS named shadows synchronised beside the classic shadow, each with its own files
    /// (`[[state.named_shadows]]`; empty on Azure).
    pub named_shadows: Vec<NamedShadowSettings>,
}

/// An AWS named shadow mirrored to its own pair of files.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedShadowSettings {
    /// The shadow's name (`[$a-zA-Z0-9:_-]`, 1–64 characters).
    pub name: String,
    /// Where its desired state is written (default `<state_dir>/shadow-<name>.desired.json`).
    pub desired_file: PathBuf,
    /// Where its reported state is read from (default
    /// `<state_dir>/shadow-<name>.reported.json`).
    pub reported_file: PathBuf,
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
    /// Most topic + payload bytes of accepted, unacknowledged messages (queued and in
    /// flight): an exact cap, the Publisher's `OfflinePolicy::max_bytes`.
    pub max_bytes: u64,
    /// Which message goes when `max_messages` or `max_bytes` is reached.
    pub drop_policy: DropPolicy,
    /// `fsync` every store write.
    pub fsync: bool,
    /// Removes accepted messages not acknowledged within this long (`None`, the default:
    /// they wait for as long as an outage lasts).
    pub expiry: Option<Duration>,
}

/// Dead-link detection and reconnect pacing.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSettings {
    /// The MQTT transport (`None`: the library's default, which `CONNECTOR_TRANSPORT` may
    /// name).
    pub transport: Option<connector_actors::transport::TransportKind>,
    /// The stall watchdog (`None`: off).
    pub stall: Option<connector_actors::StallPolicy>,
    /// How long one attempt waits for its PUBACK before the link is replaced.
    pub ack_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: connector_core::BackoffPolicy,
}

/// Logging.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingSettings {
    /// An `EnvFilter` directive (`info`, `debug,paho_mqtt=warn`).
    pub level: String,
    /// JSON lines instead of text.
    pub json: bool,
}

impl Settings {
    /// A one-line description of the settings for `--check-config` (no secrets).
    pub fn describe(&self) -> String {
        let s = self;
        let cloud = match &s.cloud {
            Cloud::Embedded(e) => format!(
                "embedded {} emulator (device {}, data {})",
                e.flavour.as_str(),
                e.device_id,
                e.data_dir.display()
            ),
            Cloud::Azure(a) => {
                let auth = match &a.auth {
                    AzureAuth::ConnectionString(_) => "azure, connection string".to_owned(),
                    AzureAuth::X509 { host_name, device_id, .. } => {
                        format!("azure, X.509 device {device_id} on {host_name}")
                    }
                    AzureAuth::Dps(d) => {
                        format!(
                            "azure, DPS {} scope {} registration {}",
                            d.endpoint, d.id_scope, d.registration_id
                        )
                    }
                };
                auth + &via_proxy(&a.proxy)
            }
            Cloud::Aws(a) => {
                let thing = a.thing_name.as_deref().or(a.client_id.as_deref()).unwrap_or("-");
                let alpn = if a.alpn { " (ALPN x-amzn-mqtt-ca on 443)" } else { "" };
                let aliases = match a.topic_aliases {
                    0 => String::new(),
                    n => format!(", up to {n} topic aliases"),
                };
                let auth = match &a.auth {
                    AwsAuth::Certificate { .. } => {
                        format!("aws, endpoint {}, certificate of thing {thing}{alpn}", a.endpoint)
                    }
                    AwsAuth::FleetProvisioning { template_name, .. } => format!(
                        "aws, endpoint {}, fleet provisioning with template {template_name}{alpn}",
                        a.endpoint
                    ),
                    AwsAuth::SigV4(v) => {
                        let creds = match &v.credentials {
                            AwsCredentialsSetting::Environment => "the environment".to_owned(),
                            AwsCredentialsSetting::Profile { name, file } => format!(
                                "profile {} of {}",
                                name.as_deref().unwrap_or("(AWS_PROFILE or default)"),
                                file.as_ref().map_or_else(
                                    || "the default credentials file".to_owned(),
                                    |f| f.display().to_string()
                                )
                            ),
                            AwsCredentialsSetting::Files(c) => {
                                format!("files (access key id {})", c.access_key_id())
                            }
                        };
                        format!(
                            "aws, endpoint {}, SigV4 over WebSocket as thing {thing}, region {}, credentials from {creds}",
                            a.endpoint, v.region
                        )
                    }
                    AwsAuth::CustomAuthorizer(c) => format!(
                        "aws, endpoint {}, custom authorizer {} over {} as thing {thing}{}{}",
                        a.endpoint,
                        c.authorizer.as_deref().unwrap_or("(the default authorizer)"),
                        match c.transport {
                            connector_aws::CustomAuthTransport::WebSocket => "WebSocket",
                            _ => "MQTT (ALPN mqtt)",
                        },
                        c.token.as_ref().map_or_else(String::new, |(k, _)| format!(", token {k}")),
                        if c.signature.is_some() { ", signed" } else { "" },
                    ),
                };
                format!("{auth}{aliases}{}", via_proxy(&a.proxy))
            }
        };
        let named = if s.state.enabled && !s.state.named_shadows.is_empty() {
            let names: Vec<&str> = s.state.named_shadows.iter().map(|n| n.name.as_str()).collect();
            format!("; named shadows {}", names.join(", "))
        } else {
            String::new()
        };
        format!(
            "configuration ok: cloud {cloud}; state {}{named}; telemetry every {:?}; ingest {}; metrics {}; store {} ({} messages, {} bytes, drop {:?}); log {}{}",
            s.state_dir.display(),
            s.telemetry.interval,
            if s.ingest.enabled { s.ingest.socket.display().to_string() } else { "off".into() },
            s.metrics.map_or_else(|| "off".to_owned(), |a| a.to_string()),
            s.store.dir.display(),
            s.store.max_messages,
            s.store.max_bytes,
            s.store.drop_policy,
            s.logging.level,
            if s.logging.json { " (json)" } else { "" },
        )
    }
}

/// `, through proxy http://<redacted>@host:port` (credentials never shown), or nothing.
fn via_proxy(p: &Option<connector_core::Secret>) -> String {
    p.as_ref().map_or_else(String::new, |p| {
        format!(", through proxy {}", connector_core::provider::redact_userinfo(p.expose()))
    })
}
