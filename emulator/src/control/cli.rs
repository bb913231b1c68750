//! The command line: `connector-emulator serve …` and `connector-emulator ctl …`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::client::ControlClient;
use crate::config::{EmulatorConfig, DEFAULT_CONTROL_PORT, DEFAULT_MQTT_PORT};
use crate::util::{derive_device_key, pct_encode};

/// Local emulator of the Azure IoT Hub and DPS device endpoints.
#[derive(Debug, Parser)]
#[command(name = "connector-emulator", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the emulator until interrupted.
    Serve(ServeArgs),
    /// Act as the back end through the control API of a running emulator.
    Ctl(CtlArgs),
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS MQTT port (IoT Hub and DPS).
    #[arg(long, default_value_t = DEFAULT_MQTT_PORT)]
    pub mqtt_port: u16,
    /// Control API port (loopback only).
    #[arg(long, default_value_t = DEFAULT_CONTROL_PORT)]
    pub control_port: u16,
    /// MQTT over secure WebSocket port (path `/$iothub/websocket`, subprotocol `mqtt`;
    /// the hub's is 443).
    #[arg(long, default_value_t = crate::config::DEFAULT_WS_PORT)]
    pub ws_port: u16,
    /// Do not listen for MQTT over WebSocket.
    #[arg(long, conflicts_with = "ws_port")]
    pub no_websocket: bool,
    /// Also listen for plain-TCP MQTT on this port.
    #[arg(long)]
    pub plain_port: Option<u16>,
    /// Keep the CA, server certificate and registry here across restarts.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Address of the MQTT listeners.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// The hub's HostName.
    #[arg(long, default_value = "localhost")]
    pub hub_host_name: String,
    /// More host names for the hub and its certificate (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// DPS ID scope.
    #[arg(long, default_value = crate::config::DEFAULT_ID_SCOPE)]
    pub id_scope: String,
    /// AWS IoT certificate MQTT port (AWS's 8883).
    #[arg(long, default_value_t = crate::config::DEFAULT_AWS_MQTT_PORT)]
    pub aws_mqtt_port: u16,
    /// AWS IoT ALPN / WebSocket port (AWS's 443).
    #[arg(long, default_value_t = crate::config::DEFAULT_AWS_PORT)]
    pub aws_port: u16,
    /// Do not serve the AWS IoT endpoint.
    #[arg(long)]
    pub no_aws: bool,
    /// AWS IoT endpoint host name (SNI and server certificate).
    #[arg(long, default_value = "localhost")]
    pub aws_endpoint: String,
    /// AWS region of SigV4 credential scopes.
    #[arg(long, default_value = crate::config::DEFAULT_AWS_REGION)]
    pub aws_region: String,
}

impl ServeArgs {
    /// The emulator configuration these options describe.
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig {
            mqtt_port: self.mqtt_port,
            control_port: self.control_port,
            plain_mqtt_port: self.plain_port,
            ws_port: (!self.no_websocket).then_some(self.ws_port),
            state_dir: self.state_dir.clone(),
            bind_address: self.bind,
            hub_host_name: self.hub_host_name.clone(),
            extra_host_names: self.hosts.clone(),
            dps_id_scope: self.id_scope.clone(),
            aws_mqtt_port: (!self.no_aws).then_some(self.aws_mqtt_port),
            aws_port: (!self.no_aws).then_some(self.aws_port),
            aws_endpoint: self.aws_endpoint.clone(),
            aws_region: self.aws_region.clone(),
            handle_signals: true,
            ..EmulatorConfig::default()
        }
    }
}

/// Options of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control API URL.
    #[arg(long, env = "CONNECTOR_EMULATOR_URL", default_value_t = format!("http://127.0.0.1:{DEFAULT_CONTROL_PORT}"))]
    pub url: String,
    /// The request.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Identity options shared by many commands.
#[derive(Debug, Args)]
pub struct Target {
    /// Device id.
    pub device: String,
    /// Module id.
    #[arg(long, short)]
    pub module: Option<String>,
}

/// Authentication options of `device create` / `module create`.
#[derive(Debug, Args, Default)]
pub struct AuthArgs {
    /// Primary symmetric key (base64; generated if absent).
    #[arg(long)]
    pub primary_key: Option<String>,
    /// Secondary symmetric key.
    #[arg(long)]
    pub secondary_key: Option<String>,
    /// X.509 thumbprint (SHA-1 or SHA-256 hex): self-signed certificate authentication.
    #[arg(long)]
    pub thumbprint: Option<String>,
    /// Secondary X.509 thumbprint.
    #[arg(long)]
    pub secondary_thumbprint: Option<String>,
    /// X.509 certificate signed by a registered CA (CN = device id).
    #[arg(long)]
    pub ca: bool,
    /// Create disabled.
    #[arg(long)]
    pub disabled: bool,
}

impl AuthArgs {
    fn body(&self) -> Value {
        let auth = if self.ca {
            json!({"type": "certificateAuthority"})
        } else if self.thumbprint.is_some() || self.secondary_thumbprint.is_some() {
            json!({"type": "selfSigned", "x509Thumbprint": {
                "primaryThumbprint": self.thumbprint, "secondaryThumbprint": self.secondary_thumbprint}})
        } else {
            json!({"type": "sas", "symmetricKey": {
                "primaryKey": self.primary_key.clone().unwrap_or_default(),
                "secondaryKey": self.secondary_key.clone().unwrap_or_default()}})
        };
        json!({"authentication": auth, "status": if self.disabled { "disabled" } else { "enabled" }})
    }
}

/// `ctl` commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Host names, ports, ID scope, CA path.
    Info,
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Modules.
    #[command(subcommand)]
    Module(ModuleCmd),
    /// Twins.
    #[command(subcommand)]
    Twin(TwinCmd),
    /// Invoke a direct method and print the device's answer.
    Invoke {
        #[command(flatten)]
        target: Target,
        /// Method name.
        method: String,
        /// JSON payload.
        #[arg(long)]
        payload: Option<String>,
        /// Seconds to wait for the answer (5–300).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Cloud-to-device messages.
    #[command(subcommand)]
    C2d(C2dCmd),
    /// Captured telemetry.
    #[command(subcommand)]
    Telemetry(TelemetryCmd),
    /// Live connections.
    Connections,
    /// Fault injection.
    #[command(subcommand)]
    Fault(FaultCmd),
    /// DPS individual enrollments.
    #[command(subcommand)]
    Enrollment(EnrollmentCmd),
    /// DPS enrollment groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// CA certificates for X.509 CA authentication; client certificates from the emulator CA.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Shared access policies.
    Policies,
    /// The AWS IoT endpoint: things, certificates, keys, authorizers, shadows, jobs,
    /// provisioning templates, telemetry, faults.
    #[command(subcommand)]
    Aws(AwsCmd),
}

/// `ctl aws …`.
#[derive(Debug, Subcommand)]
pub enum AwsCmd {
    /// List things.
    Things,
    /// Create a thing.
    CreateThing { thing: String },
    /// Delete a thing (and its shadows).
    DeleteThing { thing: String },
    /// Issue a client certificate from the emulator CA, registered ACTIVE (prints the key).
    CreateCert {
        /// Attach it to this thing.
        #[arg(long)]
        thing: Option<String>,
    },
    /// Set a certificate's status (ACTIVE or INACTIVE).
    CertStatus { id: String, status: String },
    /// Create a SigV4 access key pair.
    CreateAccessKey,
    /// Register a custom authorizer accepting the given tokens.
    Authorizer {
        name: String,
        #[arg(long, default_value = "token")]
        token_key_name: String,
        #[arg(long = "allow")]
        allowed_tokens: Vec<String>,
        #[arg(long)]
        default: bool,
    },
    /// Show a shadow.
    Shadow {
        thing: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Update a shadow's desired state as a cloud application (JSON object).
    Desired {
        thing: String,
        desired: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a shadow.
    DeleteShadow {
        thing: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Captured telemetry.
    Telemetry {
        #[arg(long)]
        client_id: Option<String>,
        /// Topic filter (`+`/`#` allowed).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Live AWS connections.
    Connections,
    /// Close a client's connection now.
    Drop { client_id: String },
    /// Refuse the next CONNECTs of a client with a CONNACK code.
    Refuse {
        client_id: String,
        #[arg(long, default_value_t = 5)]
        code: u8,
        #[arg(long)]
        count: Option<u32>,
    },
    /// Answer a client's shadow requests with 429 (or its jobs / provisioning requests).
    Throttle {
        client_id: String,
        #[arg(long)]
        count: Option<u32>,
        /// Throttle jobs requests (RequestThrottled) instead of shadow requests.
        #[arg(long)]
        jobs: bool,
        /// Throttle fleet-provisioning requests (429) instead of shadow requests.
        #[arg(long)]
        provisioning: bool,
    },
    /// Create a job with a QUEUED execution on each thing.
    CreateJob {
        job_id: String,
        /// Job document (JSON object).
        document: String,
        /// Target thing (repeatable).
        #[arg(long = "thing", required = true)]
        things: Vec<String>,
        /// Job-level in-progress timeout, minutes.
        #[arg(long)]
        in_progress_timeout: Option<u64>,
        /// Retries after FAILED / TIMED_OUT.
        #[arg(long)]
        retries: Option<u32>,
    },
    /// List jobs, or show one.
    Jobs { job_id: Option<String> },
    /// Cancel a job (QUEUED executions; IN_PROGRESS ones too with --force).
    CancelJob {
        job_id: String,
        #[arg(long)]
        force: bool,
    },
    /// A thing's job executions, or one of them.
    Executions {
        thing: String,
        job_id: Option<String>,
        #[arg(long)]
        execution_number: Option<u64>,
    },
    /// Cancel a thing's execution of a job (IN_PROGRESS only with --force).
    CancelExecution {
        thing: String,
        job_id: String,
        #[arg(long)]
        force: bool,
    },
    /// Mark a thing's execution of a job REMOVED.
    RemoveExecution { thing: String, job_id: String },
    /// List fleet-provisioning templates.
    Templates,
    /// Create or replace a fleet-provisioning template.
    CreateTemplate {
        name: String,
        /// Template body: JSON, or @FILE.
        body: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Principal (claim certificate id) allowed to use it (repeatable; default: any).
        #[arg(long = "allow")]
        allowed_principals: Vec<String>,
    },
    /// Delete a fleet-provisioning template.
    DeleteTemplate { name: String },
    /// Move the jobs/provisioning service clock forward (timers, token expiry).
    AdvanceClock { seconds: u64 },
    /// Show or set the jobs settings.
    JobsSettings {
        /// Also publish `notify` when an execution moves from QUEUED to IN_PROGRESS.
        #[arg(long)]
        notify_on_start: Option<bool>,
    },
    /// Clear a client's faults.
    ClearFaults { client_id: String },
}

/// `ctl device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// List devices.
    List,
    /// Show a device (with its keys).
    Get { device: String },
    /// Create or update a device.
    Create {
        device: String,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Delete a device and its modules.
    Delete { device: String },
    /// Print a connection string for a SAS device.
    ConnectionString { device: String },
}

/// `ctl module …`.
#[derive(Debug, Subcommand)]
pub enum ModuleCmd {
    /// List a device's modules.
    List { device: String },
    /// Show a module.
    Get { device: String, module: String },
    /// Create or update a module.
    Create {
        device: String,
        module: String,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Delete a module.
    Delete { device: String, module: String },
    /// Print a connection string for a SAS module.
    ConnectionString { device: String, module: String },
}

/// `ctl twin …`.
#[derive(Debug, Subcommand)]
pub enum TwinCmd {
    /// Show the twin (service view, with $metadata).
    Get {
        #[command(flatten)]
        target: Target,
    },
    /// Merge a JSON patch into desired properties (the device is notified).
    PatchDesired {
        #[command(flatten)]
        target: Target,
        /// JSON object.
        patch: String,
    },
}

/// `ctl c2d …`.
#[derive(Debug, Subcommand)]
pub enum C2dCmd {
    /// Queue a message for a device.
    Send {
        device: String,
        /// Body text.
        #[arg(long)]
        payload: Option<String>,
        /// Application property `name=value` (repeatable; `name` alone for null).
        #[arg(long = "property", short = 'p')]
        properties: Vec<String>,
        /// $.mid
        #[arg(long)]
        message_id: Option<String>,
        /// $.cid
        #[arg(long)]
        correlation_id: Option<String>,
        /// $.ct
        #[arg(long)]
        content_type: Option<String>,
        /// $.ce
        #[arg(long)]
        content_encoding: Option<String>,
    },
    /// Messages not yet acknowledged by the device.
    Pending { device: String },
}

/// `ctl telemetry …`.
#[derive(Debug, Subcommand)]
pub enum TelemetryCmd {
    /// Show captured telemetry (all, or of one device/module).
    List {
        device: Option<String>,
        #[arg(long, short)]
        module: Option<String>,
    },
    /// Delete captured telemetry.
    Clear {
        device: Option<String>,
        #[arg(long, short)]
        module: Option<String>,
    },
}

/// `ctl fault …`.
#[derive(Debug, Subcommand)]
pub enum FaultCmd {
    /// Active faults.
    List,
    /// Close the identity's connection now.
    Drop {
        #[command(flatten)]
        target: Target,
    },
    /// Close the identity's connection as if its token expired.
    ExpireToken {
        #[command(flatten)]
        target: Target,
    },
    /// Refuse CONNECTs with a CONNACK return code.
    Refuse {
        #[command(flatten)]
        target: Target,
        /// Return code 2–5.
        #[arg(long, default_value_t = 5)]
        code: u8,
        /// How many CONNECTs (default: until cleared).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Throttle: twin requests answered 429, CONNECTs refused with 3.
    Throttle {
        #[command(flatten)]
        target: Target,
        /// Twin GET/PATCH answered 429.
        #[arg(long)]
        twin: bool,
        /// CONNECT refused (server unavailable).
        #[arg(long)]
        connect: bool,
        /// How many operations (default: until cleared).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Clear faults (of one identity, or all).
    Clear {
        device: Option<String>,
        #[arg(long, short)]
        module: Option<String>,
    },
}

/// `ctl enrollment …`.
#[derive(Debug, Subcommand)]
pub enum EnrollmentCmd {
    /// List individual enrollments.
    List,
    /// Create or update an individual enrollment (symmetric key unless --thumbprint).
    Create {
        registration_id: String,
        /// Primary key (generated if absent).
        #[arg(long)]
        key: Option<String>,
        /// Secondary key.
        #[arg(long)]
        secondary_key: Option<String>,
        /// Device id to assign (default: the registration id).
        #[arg(long)]
        device_id: Option<String>,
        /// X.509 attestation by certificate thumbprint.
        #[arg(long)]
        thumbprint: Option<String>,
    },
    /// Delete an individual enrollment.
    Delete { registration_id: String },
}

/// `ctl group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List enrollment groups.
    List,
    /// Create or update a group (symmetric key unless --ca-pem).
    Create {
        group_id: String,
        /// Group primary key (generated if absent).
        #[arg(long)]
        key: Option<String>,
        /// Group secondary key.
        #[arg(long)]
        secondary_key: Option<String>,
        /// X.509 attestation: PEM file of the CA signing device certificates.
        #[arg(long)]
        ca_pem: Option<PathBuf>,
    },
    /// Delete a group.
    Delete { group_id: String },
    /// Print the device key derived from the group's primary key for a registration id.
    DeriveKey { group_id: String, registration_id: String },
}

/// `ctl cert …`.
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Registered CA certificates.
    List,
    /// Register a CA certificate (PEM file).
    Add { name: String, pem: PathBuf },
    /// Remove a CA certificate.
    Delete { name: String },
    /// Issue a client certificate from the emulator's CA.
    Issue {
        /// Subject CN.
        common_name: String,
    },
}

fn id_path(device: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("/devices/{}/modules/{}", pct_encode(device), pct_encode(m)),
        None => format!("/devices/{}", pct_encode(device)),
    }
}

fn aws_request(cmd: AwsCmd) -> anyhow::Result<(Method, String, Option<Value>)> {
    let shadow_path = |thing: &str, name: Option<&str>| match name {
        Some(n) => format!("/aws/things/{}/shadow?name={}", pct_encode(thing), pct_encode(n)),
        None => format!("/aws/things/{}/shadow", pct_encode(thing)),
    };
    Ok(match cmd {
        AwsCmd::Things => (Method::GET, "/aws/things".into(), None),
        AwsCmd::CreateThing { thing } => {
            (Method::PUT, format!("/aws/things/{}", pct_encode(&thing)), Some(json!({})))
        }
        AwsCmd::DeleteThing { thing } => {
            (Method::DELETE, format!("/aws/things/{}", pct_encode(&thing)), None)
        }
        AwsCmd::CreateCert { thing } => {
            (Method::POST, "/aws/certificates".into(), Some(json!({ "thingName": thing })))
        }
        AwsCmd::CertStatus { id, status } => (
            Method::PUT,
            format!("/aws/certificates/{}", pct_encode(&id)),
            Some(json!({ "status": status.to_ascii_uppercase() })),
        ),
        AwsCmd::CreateAccessKey => (Method::POST, "/aws/access-keys".into(), None),
        AwsCmd::Authorizer { name, token_key_name, allowed_tokens, default } => (
            Method::PUT,
            format!("/aws/authorizers/{}", pct_encode(&name)),
            Some(
                json!({ "tokenKeyName": token_key_name, "allowedTokens": allowed_tokens, "default": default }),
            ),
        ),
        AwsCmd::Shadow { thing, name } => (Method::GET, shadow_path(&thing, name.as_deref()), None),
        AwsCmd::Desired { thing, desired, name } => (
            Method::POST,
            shadow_path(&thing, name.as_deref()),
            Some(json!({ "state": { "desired": parse_json(&desired)? } })),
        ),
        AwsCmd::DeleteShadow { thing, name } => (Method::DELETE, shadow_path(&thing, name.as_deref()), None),
        AwsCmd::Telemetry { client_id, topic } => {
            let mut q = Vec::new();
            if let Some(c) = client_id {
                q.push(format!("clientId={}", pct_encode(&c)));
            }
            if let Some(t) = topic {
                q.push(format!("topic={}", pct_encode(&t)));
            }
            (Method::GET, format!("/aws/telemetry?{}", q.join("&")), None)
        }
        AwsCmd::Connections => (Method::GET, "/aws/connections".into(), None),
        AwsCmd::Drop { client_id } => {
            (Method::POST, format!("/aws/connections/{}/drop", pct_encode(&client_id)), None)
        }
        AwsCmd::Refuse { client_id, code, count } => (
            Method::PUT,
            format!("/aws/faults/{}", pct_encode(&client_id)),
            Some(json!({ "refuseConnect": code, "count": count })),
        ),
        AwsCmd::Throttle { client_id, count, jobs, provisioning } => (
            Method::PUT,
            format!("/aws/faults/{}", pct_encode(&client_id)),
            Some(json!({
                "throttleShadow": !jobs && !provisioning, "throttleJobs": jobs,
                "throttleProvisioning": provisioning, "count": count,
            })),
        ),
        AwsCmd::CreateJob { job_id, document, things, in_progress_timeout, retries } => {
            let mut body = json!({ "jobId": job_id, "document": parse_json(&document)?, "targets": things });
            if let Some(m) = in_progress_timeout {
                body["timeoutConfig"] = json!({ "inProgressTimeoutInMinutes": m });
            }
            if let Some(n) = retries {
                body["retryConfig"] = json!({ "numberOfRetries": n });
            }
            (Method::POST, "/aws/jobs".into(), Some(body))
        }
        AwsCmd::Jobs { job_id: None } => (Method::GET, "/aws/jobs".into(), None),
        AwsCmd::Jobs { job_id: Some(id) } => (Method::GET, format!("/aws/jobs/{}", pct_encode(&id)), None),
        AwsCmd::CancelJob { job_id, force } => (
            Method::POST,
            format!("/aws/jobs/{}/cancel", pct_encode(&job_id)),
            Some(json!({ "force": force })),
        ),
        AwsCmd::Executions { thing, job_id: None, .. } => {
            (Method::GET, format!("/aws/things/{}/jobs", pct_encode(&thing)), None)
        }
        AwsCmd::Executions { thing, job_id: Some(id), execution_number } => {
            let mut path = format!("/aws/things/{}/jobs/{}", pct_encode(&thing), pct_encode(&id));
            if let Some(n) = execution_number {
                path.push_str(&format!("?executionNumber={n}"));
            }
            (Method::GET, path, None)
        }
        AwsCmd::CancelExecution { thing, job_id, force } => (
            Method::POST,
            format!("/aws/things/{}/jobs/{}/cancel", pct_encode(&thing), pct_encode(&job_id)),
            Some(json!({ "force": force })),
        ),
        AwsCmd::RemoveExecution { thing, job_id } => {
            (Method::DELETE, format!("/aws/things/{}/jobs/{}", pct_encode(&thing), pct_encode(&job_id)), None)
        }
        AwsCmd::Templates => (Method::GET, "/aws/provisioning-templates".into(), None),
        AwsCmd::CreateTemplate { name, body, disabled, allowed_principals } => {
            let text = match body.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)?,
                None => body,
            };
            (
                Method::PUT,
                format!("/aws/provisioning-templates/{}", pct_encode(&name)),
                Some(json!({
                    "templateBody": parse_json(&text)?, "enabled": !disabled,
                    "allowedPrincipals": allowed_principals,
                })),
            )
        }
        AwsCmd::DeleteTemplate { name } => {
            (Method::DELETE, format!("/aws/provisioning-templates/{}", pct_encode(&name)), None)
        }
        AwsCmd::JobsSettings { notify_on_start: None } => (Method::GET, "/aws/jobs-settings".into(), None),
        AwsCmd::JobsSettings { notify_on_start: Some(b) } => {
            (Method::PUT, "/aws/jobs-settings".into(), Some(json!({ "notifyOnStart": b })))
        }
        AwsCmd::AdvanceClock { seconds } => {
            (Method::POST, "/aws/clock".into(), Some(json!({ "advanceSeconds": seconds })))
        }
        AwsCmd::ClearFaults { client_id } => {
            (Method::DELETE, format!("/aws/faults/{}", pct_encode(&client_id)), None)
        }
    })
}

fn parse_json(s: &str) -> anyhow::Result<Value> {
    serde_json::from_str(s).map_err(|e| anyhow::anyhow!("not valid JSON: {e}"))
}

/// Runs a `ctl` command and returns what to print.
pub async fn run_ctl(args: CtlArgs) -> anyhow::Result<Value> {
    let c = ControlClient::new(&args.url)?;
    let get = |path: String| {
        let c = c.clone();
        async move { c.request::<Value>(Method::GET, &path, None::<&()>).await }
    };
    let (method, path, body): (Method, String, Option<Value>) = match args.command {
        CtlCommand::Info => (Method::GET, "/info".into(), None),
        CtlCommand::Policies => (Method::GET, "/policies".into(), None),
        CtlCommand::Connections => (Method::GET, "/connections".into(), None),
        CtlCommand::Aws(cmd) => aws_request(cmd)?,
        CtlCommand::Device(cmd) => match cmd {
            DeviceCmd::List => (Method::GET, "/devices".into(), None),
            DeviceCmd::Get { device } => (Method::GET, id_path(&device, None), None),
            DeviceCmd::Create { device, auth } => (Method::PUT, id_path(&device, None), Some(auth.body())),
            DeviceCmd::Delete { device } => (Method::DELETE, id_path(&device, None), None),
            DeviceCmd::ConnectionString { device } => return connection_string(&c, &device, None).await,
        },
        CtlCommand::Module(cmd) => match cmd {
            ModuleCmd::List { device } => (Method::GET, format!("{}/modules", id_path(&device, None)), None),
            ModuleCmd::Get { device, module } => (Method::GET, id_path(&device, Some(&module)), None),
            ModuleCmd::Create { device, module, auth } => {
                (Method::PUT, id_path(&device, Some(&module)), Some(auth.body()))
            }
            ModuleCmd::Delete { device, module } => (Method::DELETE, id_path(&device, Some(&module)), None),
            ModuleCmd::ConnectionString { device, module } => {
                return connection_string(&c, &device, Some(&module)).await
            }
        },
        CtlCommand::Twin(cmd) => match cmd {
            TwinCmd::Get { target } => {
                (Method::GET, format!("{}/twin", id_path(&target.device, target.module.as_deref())), None)
            }
            TwinCmd::PatchDesired { target, patch } => (
                Method::PATCH,
                format!("{}/twin", id_path(&target.device, target.module.as_deref())),
                Some(json!({"properties": {"desired": parse_json(&patch)?}})),
            ),
        },
        CtlCommand::Invoke { target, method, payload, timeout } => {
            let mut body = json!({"methodName": method});
            if let Some(p) = payload {
                body["payload"] = parse_json(&p)?;
            }
            if let Some(t) = timeout {
                body["responseTimeoutInSeconds"] = json!(t);
            }
            (
                Method::POST,
                format!("{}/methods", id_path(&target.device, target.module.as_deref())),
                Some(body),
            )
        }
        CtlCommand::C2d(cmd) => match cmd {
            C2dCmd::Send {
                device,
                payload,
                properties,
                message_id,
                correlation_id,
                content_type,
                content_encoding,
            } => {
                let props: BTreeMap<String, Option<String>> = properties
                    .iter()
                    .map(|p| match p.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (p.clone(), None),
                    })
                    .collect();
                let body = json!({
                    "payload": payload, "properties": props, "messageId": message_id,
                    "correlationId": correlation_id, "contentType": content_type, "contentEncoding": content_encoding,
                });
                let body = Value::Object(
                    body.as_object()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(_, v)| !v.is_null())
                        .collect(),
                );
                (Method::POST, format!("{}/messages/devicebound", id_path(&device, None)), Some(body))
            }
            C2dCmd::Pending { device } => {
                (Method::GET, format!("{}/messages/devicebound", id_path(&device, None)), None)
            }
        },
        CtlCommand::Telemetry(cmd) => {
            let (m, device, module) = match cmd {
                TelemetryCmd::List { device, module } => (Method::GET, device, module),
                TelemetryCmd::Clear { device, module } => (Method::DELETE, device, module),
            };
            match device {
                Some(d) => (m, format!("{}/messages/events", id_path(&d, module.as_deref())), None),
                None => (m, "/messages/events".into(), None),
            }
        }
        CtlCommand::Fault(cmd) => match cmd {
            FaultCmd::List => (Method::GET, "/faults".into(), None),
            FaultCmd::Drop { target } => (
                Method::POST,
                format!("{}/faults/drop", id_path(&target.device, target.module.as_deref())),
                None,
            ),
            FaultCmd::ExpireToken { target } => (
                Method::POST,
                format!("{}/faults/expire-token", id_path(&target.device, target.module.as_deref())),
                None,
            ),
            FaultCmd::Refuse { target, code, count } => (
                Method::PUT,
                format!("{}/faults/refuse-connect", id_path(&target.device, target.module.as_deref())),
                Some(json!({"code": code, "count": count})),
            ),
            FaultCmd::Throttle { target, twin, connect, count } => (
                Method::PUT,
                format!("{}/faults/throttle", id_path(&target.device, target.module.as_deref())),
                Some(json!({"twin": twin, "connect": connect, "count": count})),
            ),
            FaultCmd::Clear { device: Some(d), module } => {
                (Method::DELETE, format!("{}/faults", id_path(&d, module.as_deref())), None)
            }
            FaultCmd::Clear { device: None, .. } => (Method::DELETE, "/faults".into(), None),
        },
        CtlCommand::Enrollment(cmd) => match cmd {
            EnrollmentCmd::List => (Method::GET, "/dps/enrollments".into(), None),
            EnrollmentCmd::Create { registration_id, key, secondary_key, device_id, thumbprint } => {
                let attestation = match thumbprint {
                    Some(t) => {
                        json!({"type": "x509", "x509": {"clientCertificateThumbprint": {"primaryThumbprint": t}}})
                    }
                    None => json!({"type": "symmetricKey", "symmetricKey": {
                        "primaryKey": key.unwrap_or_default(), "secondaryKey": secondary_key.unwrap_or_default()}}),
                };
                let mut body = json!({"attestation": attestation});
                if let Some(d) = device_id {
                    body["deviceId"] = json!(d);
                }
                (Method::PUT, format!("/dps/enrollments/{}", pct_encode(&registration_id)), Some(body))
            }
            EnrollmentCmd::Delete { registration_id } => {
                (Method::DELETE, format!("/dps/enrollments/{}", pct_encode(&registration_id)), None)
            }
        },
        CtlCommand::Group(cmd) => match cmd {
            GroupCmd::List => (Method::GET, "/dps/enrollmentGroups".into(), None),
            GroupCmd::Create { group_id, key, secondary_key, ca_pem } => {
                let attestation = match ca_pem {
                    Some(path) => {
                        json!({"type": "x509", "x509": {"caCertificatePem": std::fs::read_to_string(&path)?}})
                    }
                    None => json!({"type": "symmetricKey", "symmetricKey": {
                        "primaryKey": key.unwrap_or_default(), "secondaryKey": secondary_key.unwrap_or_default()}}),
                };
                (
                    Method::PUT,
                    format!("/dps/enrollmentGroups/{}", pct_encode(&group_id)),
                    Some(json!({"attestation": attestation})),
                )
            }
            GroupCmd::Delete { group_id } => {
                (Method::DELETE, format!("/dps/enrollmentGroups/{}", pct_encode(&group_id)), None)
            }
            GroupCmd::DeriveKey { group_id, registration_id } => {
                let g = get(format!("/dps/enrollmentGroups/{}", pct_encode(&group_id))).await?;
                let key = g["attestation"]["symmetricKey"]["primaryKey"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("group {group_id} has no symmetric key"))?;
                let derived = derive_device_key(key, &registration_id)
                    .ok_or_else(|| anyhow::anyhow!("group key is not base64"))?;
                return Ok(json!({"registrationId": registration_id, "derivedKey": derived}));
            }
        },
        CtlCommand::Cert(cmd) => match cmd {
            CertCmd::List => (Method::GET, "/certificates".into(), None),
            CertCmd::Add { name, pem } => (
                Method::PUT,
                format!("/certificates/{}", pct_encode(&name)),
                Some(json!({"pem": std::fs::read_to_string(&pem)?})),
            ),
            CertCmd::Delete { name } => {
                (Method::DELETE, format!("/certificates/{}", pct_encode(&name)), None)
            }
            CertCmd::Issue { common_name } => {
                (Method::POST, "/certificates/issue".into(), Some(json!({"commonName": common_name})))
            }
        },
    };
    Ok(c.request::<Value>(method, &path, body.as_ref()).await?)
}

async fn connection_string(c: &ControlClient, device: &str, module: Option<&str>) -> anyhow::Result<Value> {
    let info = c.info().await?;
    let id = c.identity(device, module).await?;
    let super::api::Authentication::Sas { symmetric_key } = id.authentication else {
        anyhow::bail!("{device} does not use SAS authentication");
    };
    let mut s = format!("HostName={};DeviceId={device}", info.hub_host_name);
    if let Some(m) = module {
        s.push_str(&format!(";ModuleId={m}"));
    }
    s.push_str(&format!(";SharedAccessKey={}", symmetric_key.primary_key));
    Ok(
        json!({"connectionString": s, "caPath": info.ca_path, "mqttPort": info.mqtt_port, "wsPort": info.ws_port}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(args: &[&str]) -> (Method, String, Option<Value>) {
        let argv = ["connector-emulator", "ctl", "aws"].iter().chain(args).copied();
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Ctl(CtlArgs { command: CtlCommand::Aws(cmd), .. }) = cli.command else {
            panic!("not an aws command")
        };
        aws_request(cmd).unwrap()
    }

    #[test]
    fn aws_jobs_and_provisioning_commands_map_to_routes() {
        let (m, p, b) = aws(&[
            "create-job",
            "fw-1",
            r#"{"op":"install"}"#,
            "--thing",
            "a",
            "--thing",
            "b",
            "--in-progress-timeout",
            "5",
            "--retries",
            "2",
        ]);
        assert_eq!((m, p.as_str()), (Method::POST, "/aws/jobs"));
        assert_eq!(
            b.unwrap(),
            json!({"jobId":"fw-1","document":{"op":"install"},"targets":["a","b"],
                   "timeoutConfig":{"inProgressTimeoutInMinutes":5},"retryConfig":{"numberOfRetries":2}})
        );
        assert_eq!(aws(&["jobs"]).1, "/aws/jobs");
        assert_eq!(aws(&["jobs", "fw-1"]).1, "/aws/jobs/fw-1");
        let (m, p, b) = aws(&["cancel-job", "fw-1", "--force"]);
        assert_eq!((m, p.as_str(), b), (Method::POST, "/aws/jobs/fw-1/cancel", Some(json!({"force": true}))));
        assert_eq!(aws(&["executions", "a"]).1, "/aws/things/a/jobs");
        assert_eq!(
            aws(&["executions", "a", "fw-1", "--execution-number", "2"]).1,
            "/aws/things/a/jobs/fw-1?executionNumber=2"
        );
        assert_eq!(aws(&["cancel-execution", "a", "fw-1"]).1, "/aws/things/a/jobs/fw-1/cancel");
        let (m, p, _) = aws(&["remove-execution", "a", "fw-1"]);
        assert_eq!((m, p.as_str()), (Method::DELETE, "/aws/things/a/jobs/fw-1"));
        let (m, p, b) = aws(&["create-template", "fleet", r#"{"Resources":{}}"#, "--allow", "cert-1"]);
        assert_eq!((m, p.as_str()), (Method::PUT, "/aws/provisioning-templates/fleet"));
        assert_eq!(
            b.unwrap(),
            json!({"templateBody":{"Resources":{}},"enabled":true,"allowedPrincipals":["cert-1"]})
        );
        assert_eq!(aws(&["delete-template", "fleet"]).0, Method::DELETE);
        let (m, _, b) = aws(&["jobs-settings", "--notify-on-start", "true"]);
        assert_eq!((m, b), (Method::PUT, Some(json!({"notifyOnStart": true}))));
        assert_eq!(aws(&["jobs-settings"]).0, Method::GET);
        let (_, p, b) = aws(&["advance-clock", "61"]);
        assert_eq!((p.as_str(), b), ("/aws/clock", Some(json!({"advanceSeconds": 61}))));
        let (_, _, b) = aws(&["throttle", "dev", "--jobs", "--count", "1"]);
        assert_eq!(
            b.unwrap(),
            json!({"throttleShadow":false,"throttleJobs":true,"throttleProvisioning":false,"count":1})
        );
        assert!(Cli::try_parse_from(["connector-emulator", "ctl", "aws", "create-job", "x", "{}"]).is_err());
    }
}
