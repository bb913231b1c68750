//! `connector-cli`: command-line helpers of the cloud connector.
//!
//! ```text
//! connector-cli azure sas --connection-string "HostName=…;DeviceId=…;SharedAccessKey=…" [--ttl 3600] [--expiry <unix>]
//! connector-cli azure sas --key <base64> --resource <uri> [--expiry <unix> | --ttl <s>] [--policy <name>]
//! connector-cli azure derive-key --group-key <base64> --registration-id <id>
//! connector-cli azure info --connection-string "…" [--model-id <dtmi>] [--api-version <v>] [--websocket] [--port <n>]
//! connector-cli aws presign --endpoint <host> [--port <n>] [--region <r>] --access-key-id <id>
//!     (--secret-access-key <s> | --secret-access-key-file <path>) [--session-token <t>]
//!     [--time <RFC 3339 | unix>] [--expires <s>] [--sign-connection]
//! connector-cli aws topics --thing <name> [--shadow <name>]
//! ```
//!
//! Tokens and keys go to stdout only; errors go to stderr with their causes and a non-zero
//! exit status, and never contain a key or token.

use std::error::Error;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

mod aws;

use clap::{Args, Parser, Subcommand};
use connector_azure::provider::{client_id, subscription_topics, username};
use connector_azure::{
    AzureError, AzureOptions, ConnectionString, Credential, DeviceTopic, PropertyBag, SasKey, SasToken,
    Transport,
};

#[derive(Parser)]
#[command(name = "connector-cli", version, about = "Command-line helpers of the cloud connector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Azure IoT Hub and DPS helpers.
    #[command(subcommand)]
    Azure(Azure),
    /// AWS IoT Core helpers: SigV4 presigned URLs, shadow and jobs topics.
    #[command(subcommand)]
    Aws(aws::Aws),
}

#[derive(Subcommand)]
enum Azure {
    /// Print a SAS token, from a connection string or from a key and a resource URI.
    Sas(SasArgs),
    /// Print the derived device key of an enrollment-group member (DPS).
    DeriveKey {
        /// The enrollment group's key (base64).
        #[arg(long)]
        group_key: String,
        /// The device's registration id.
        #[arg(long)]
        registration_id: String,
    },
    /// Print the MQTT client id, user name, endpoint and topics of a connection string.
    Info(InfoArgs),
}

#[derive(Args)]
struct SasArgs {
    /// A device or module connection string.
    #[arg(long, conflicts_with_all = ["key", "resource", "policy"], required_unless_present = "key")]
    connection_string: Option<String>,
    /// A shared access key (base64).
    #[arg(long, requires = "resource")]
    key: Option<String>,
    /// The resource URI, unencoded (e.g. `myhub.azure-devices.net/devices/device-01`).
    #[arg(long, requires = "key")]
    resource: Option<String>,
    /// The shared access policy name (`skn`).
    #[arg(long)]
    policy: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[arg(long, conflicts_with = "ttl")]
    expiry: Option<u64>,
    /// Lifetime from now, in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

#[derive(Args)]
struct InfoArgs {
    /// A device or module connection string.
    #[arg(long)]
    connection_string: String,
    /// Plug and Play model id announced in the user name.
    #[arg(long)]
    model_id: Option<String>,
    /// api-version of the user name.
    #[arg(long)]
    api_version: Option<String>,
    /// Connect over WebSocket (443) instead of MQTT/TLS (8883).
    #[arg(long)]
    websocket: bool,
    /// Override the port.
    #[arg(long)]
    port: Option<u16>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, SystemTime::now()) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                let _ = write!(msg, ": {s}");
                source = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, now: SystemTime) -> Result<String, Box<dyn Error>> {
    match command {
        Command::Azure(Azure::Sas(args)) => sas(args, now),
        Command::Azure(Azure::DeriveKey { group_key, registration_id }) => {
            let derived = SasKey::from_base64(&group_key)?.derive(&registration_id)?;
            Ok(format!("{}\n", derived.to_base64().expose()))
        }
        Command::Azure(Azure::Info(args)) => info(args),
        Command::Aws(command) => aws::run(command, now),
    }
}

fn sas(args: SasArgs, now: SystemTime) -> Result<String, Box<dyn Error>> {
    let expiry = |now: SystemTime| -> Result<u64, Box<dyn Error>> {
        if let Some(e) = args.expiry {
            return Ok(e);
        }
        let now = now.duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
        Ok(now.checked_add(args.ttl).ok_or("expiry overflows")?)
    };
    let token = match (&args.connection_string, &args.key, &args.resource) {
        (Some(cs), _, _) => {
            let cs = cs.parse::<ConnectionString>().map_err(AzureError::from)?;
            let resource = cs.resource_uri();
            match cs.credential() {
                Credential::DeviceKey(key) => SasToken::generate(key, &resource, expiry(now)?, None)?,
                Credential::PolicyKey { name, key } => {
                    SasToken::generate(key, &resource, expiry(now)?, Some(name))?
                }
                Credential::Signature(t) => t.clone(),
                Credential::X509 => {
                    return Err("the connection string uses x509=true: there is no key to sign with".into())
                }
                _ => return Err("this connection string's credential cannot make SAS tokens".into()),
            }
        }
        (None, Some(key), Some(resource)) => {
            SasToken::generate(&SasKey::from_base64(key)?, resource, expiry(now)?, args.policy.as_deref())?
        }
        _ => return Err("give --connection-string, or --key with --resource".into()),
    };
    Ok(format!("{}\n", token.expose()))
}

fn info(args: InfoArgs) -> Result<String, Box<dyn Error>> {
    let cs = args.connection_string.parse::<ConnectionString>().map_err(AzureError::from)?;
    let mut opts = AzureOptions::default();
    if let Some(v) = args.api_version {
        opts.api_version = v;
    }
    if let Some(m) = args.model_id {
        connector_azure::pnp::validate_dtmi(&m).map_err(|reason| format!("invalid model id: {reason}"))?;
        opts.model_id = Some(m);
    }
    opts.transport = if args.websocket { Transport::WebSocket } else { Transport::Mqtt };
    let host = cs.gateway_host_name().unwrap_or(cs.host_name());
    let auth = match cs.credential() {
        Credential::DeviceKey(_) => "SAS token from the device key".to_owned(),
        Credential::PolicyKey { name, .. } => format!("SAS token from the policy key (skn={name})"),
        Credential::Signature(t) => {
            format!("the given SharedAccessSignature (expires at se={}, not renewable)", t.expiry_unix())
        }
        Credential::X509 => "X.509 client certificate (no password)".to_owned(),
        _ => "other".to_owned(),
    };
    let telemetry = DeviceTopic::Telemetry {
        device_id: cs.device_id().to_owned(),
        module_id: cs.module_id().map(str::to_owned),
        properties: PropertyBag::new(),
    };
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(out, "{k}: {v}");
    };
    line("uri", &opts.transport.uri(host, args.port));
    line("host", host);
    line("port", &args.port.unwrap_or(opts.transport.default_port()).to_string());
    line("client id", &client_id(&cs));
    line("username", &username(&cs, &opts));
    line("auth", &auth);
    line("resource", &cs.resource_uri());
    line("telemetry", &telemetry.assemble()?);
    for t in subscription_topics(&cs) {
        let name = match t {
            DeviceTopic::C2dFilter { .. } => "subscribe c2d",
            DeviceTopic::InputsFilter { .. } => "subscribe module inputs",
            DeviceTopic::MethodsFilter => "subscribe methods",
            DeviceTopic::TwinResponsesFilter => "subscribe twin responses",
            DeviceTopic::TwinDesiredFilter => "subscribe twin desired",
            _ => "subscribe",
        };
        line(name, &t.assemble()?);
    }
    line("method response", "$iothub/methods/res/{status}/?$rid={rid}");
    line("twin get", "$iothub/twin/GET/?$rid={rid}");
    line("twin reported", "$iothub/twin/PATCH/properties/reported/?$rid={rid}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn ttl_counts_from_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_686_000);
        let args = SasArgs {
            connection_string: None,
            key: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
            resource: Some("myhub.azure-devices.net/devices/device-01".into()),
            policy: None,
            expiry: None,
            ttl: 3600,
        };
        assert_eq!(
            sas(args, now).unwrap(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600\n"
        );
    }
}
