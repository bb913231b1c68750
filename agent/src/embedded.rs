//! The embedded default: the emulator started in-process, with an enrollment for the
//! agent, so that the agent provisions and connects exactly as it would against a cloud.
//!
//! The emulator keeps its CA and registry in [`EmbeddedSettings::data_dir`] (by default
//! `<state_dir>/emulator`), so a restarted agent finds its enrollment, its device and its
//! cached identity valid. Where it listens is written to `<state_dir>/emulator.json`
//! ([`EmulatorInfo`]) and printed, so that a person or a test can play the back end
//! through the control API (`connector-emulator ctl --url …`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use connector_core::Secret;
use connector_emulator::control::api::{Attestation, DeviceStatus, Enrollment, SymmetricKey};
use connector_emulator::control::aws_api::{CreateCertificate, ProvisioningTemplate};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{
    AwsAuth, AwsSettings, AzureAuth, AzureSettings, Cloud, CloudKind, DpsAttestation, DpsSettings,
    EmbeddedSettings,
};
use crate::identity::IdentityCache;
use crate::ops::write_private;

/// The file in the state directory describing the running embedded emulator.
pub const INFO_FILE: &str = "emulator.json";
const KEY_FILE: &str = "agent-enrollment.key";

/// Why the embedded emulator could not be set up.
#[derive(Debug, Error)]
pub enum EmbeddedError {
    /// The emulator did not start.
    #[error("starting the embedded emulator in {}: {error}", dir.display())]
    Start {
        /// Its data directory.
        dir: PathBuf,
        /// The emulator's error.
        error: connector_emulator::EmulatorError,
    },
    /// The enrollment could not be created through the control API.
    #[error("creating the agent's enrollment in the embedded emulator: {0}")]
    Enroll(String),
    /// A file could not be written.
    #[error("writing {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// Where the embedded emulator listens (`<state_dir>/emulator.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorInfo {
    /// `azure` or `aws`.
    pub flavour: String,
    /// Control API base URL (`http://127.0.0.1:PORT`).
    pub control_url: String,
    /// TLS MQTT port (IoT Hub and DPS).
    pub mqtt_port: u16,
    /// CA certificate to trust.
    pub ca_file: PathBuf,
    /// The agent's registration id / device id / thing name.
    pub device_id: String,
    /// The agent's pid.
    pub pid: u32,
}

/// A running embedded emulator and the cloud settings that reach it.
#[derive(Debug)]
pub struct Embedded {
    /// The emulator (stops when dropped).
    pub handle: EmulatorHandle,
    /// Cloud settings pointing at it.
    pub cloud: Cloud,
    /// What was written to `emulator.json`.
    pub info: EmulatorInfo,
}

/// Starts the emulator and enrolls the agent.
pub async fn start(e: &EmbeddedSettings, state_dir: &Path) -> Result<Embedded, EmbeddedError> {
    let aws = e.flavour == CloudKind::Aws;
    let mut cfg = EmulatorConfig::ephemeral();
    cfg.state_dir = Some(e.data_dir.clone());
    cfg.ws_port = None;
    cfg.aws_port = None;
    if !aws {
        cfg.aws_mqtt_port = None;
    }
    cfg.method_default_timeout = Duration::from_secs(30);
    let handle =
        Emulator::start(cfg).map_err(|error| EmbeddedError::Start { dir: e.data_dir.clone(), error })?;
    if aws {
        return start_aws(e, state_dir, handle).await;
    }

    // The enrollment key is the agent's: made once, kept 0600 beside the emulator's data.
    let key_path = e.data_dir.join(KEY_FILE);
    let key = match std::fs::read_to_string(&key_path) {
        Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
        _ => {
            let mut raw = [0u8; 32];
            openssl::rand::rand_bytes(&mut raw).map_err(|err| EmbeddedError::Enroll(err.to_string()))?;
            let k = base64::engine::general_purpose::STANDARD.encode(raw);
            write_private(&key_path, k.as_bytes())
                .map_err(|error| EmbeddedError::Io { path: key_path.clone(), error })?;
            k
        }
    };
    let key = Secret::new(key);
    let enrollment = Enrollment {
        attestation: Attestation::SymmetricKey {
            symmetric_key: SymmetricKey {
                primary_key: key.expose().to_owned(),
                secondary_key: String::new(),
            },
        },
        device_id: Some(e.device_id.clone()),
        provisioning_status: DeviceStatus::Enabled,
    };
    let ctl = handle.control();
    // Re-putting the same enrollment on a restart changes nothing for the device.
    ctl.put_enrollment(&e.device_id, &enrollment)
        .await
        .map_err(|err| EmbeddedError::Enroll(err.to_string()))?;

    let ca_file = handle.ca_path().to_owned();
    let cloud = Cloud::Azure(AzureSettings {
        auth: AzureAuth::Dps(DpsSettings {
            id_scope: handle.dps_id_scope().to_owned(),
            registration_id: e.device_id.clone(),
            endpoint: "localhost".into(),
            port: Some(handle.mqtt_port()),
            attestation: DpsAttestation::SymmetricKey(key),
            timeout: Duration::from_secs(30),
        }),
        port: Some(handle.mqtt_port()),
        ca_file: Some(ca_file.clone()),
        model_id: None,
        websocket: false,
        proxy: None,
    });
    let info = EmulatorInfo {
        flavour: e.flavour.as_str().into(),
        control_url: handle.control_url(),
        mqtt_port: handle.mqtt_port(),
        ca_file,
        device_id: e.device_id.clone(),
        pid: std::process::id(),
    };
    write_info(state_dir, &info)?;
    Ok(Embedded { handle, cloud, info })
}

fn write_info(state_dir: &Path, info: &EmulatorInfo) -> Result<(), EmbeddedError> {
    let path = state_dir.join(INFO_FILE);
    let bytes = serde_json::to_vec_pretty(info)
        .map_err(|err| EmbeddedError::Io { path: path.clone(), error: std::io::Error::other(err) })?;
    write_private(&path, &bytes).map_err(|error| EmbeddedError::Io { path, error })
}

/// The provisioning template the embedded AWS flavour registers: the thing is named by
/// the `ThingName` parameter.
pub const AWS_TEMPLATE: &str = "ConnectorAgent";

/// AWS flavour: a provisioning template and a claim certificate, so that the agent
/// provisions by claim. The emulator keeps no AWS registry across restarts (a real
/// account does): a fleet identity the agent cached earlier is registered again, so that
/// a restart reuses it as it would against AWS.
async fn start_aws(
    e: &EmbeddedSettings,
    state_dir: &Path,
    handle: EmulatorHandle,
) -> Result<Embedded, EmbeddedError> {
    let enroll = |err: connector_emulator::ControlError| EmbeddedError::Enroll(err.to_string());
    let port = handle
        .aws_mqtt_port()
        .ok_or_else(|| EmbeddedError::Enroll("the emulator's AWS MQTT port is disabled".into()))?;
    let ctl = handle.control();
    let template = ProvisioningTemplate::new(serde_json::json!({
        "Parameters": {"ThingName": {"Type": "String"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "ThingName"}}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}
        }
    }));
    ctl.aws_put_provisioning_template(AWS_TEMPLATE, &template).await.map_err(enroll)?;
    let claim = ctl
        .aws_create_certificate(&CreateCertificate {
            common_name: Some("connector-agent-claim".into()),
            ..Default::default()
        })
        .await
        .map_err(enroll)?;
    let key =
        claim.private_key_pem.clone().ok_or_else(|| EmbeddedError::Enroll("no claim key issued".into()))?;
    let cert_file = e.data_dir.join("claim.pem.crt");
    let key_file = e.data_dir.join("claim.pem.key");
    for (path, bytes) in [(&cert_file, claim.certificate_pem.as_bytes()), (&key_file, key.as_bytes())] {
        write_private(path, bytes).map_err(|error| EmbeddedError::Io { path: path.clone(), error })?;
    }
    // A device identity provisioned by an earlier run: known to the (new) registry again.
    let store = connector_aws::fleet::IdentityStore::new(
        IdentityCache::new(state_dir).dir().join(crate::run::FLEET_DIR),
    );
    if let Ok(Some(id)) = store.load() {
        ctl.aws_create_thing(&id.thing_name).await.map_err(enroll)?;
        let again = CreateCertificate {
            certificate_pem: Some(id.certificate_pem.clone()),
            thing_name: Some(id.thing_name.clone()),
            ..Default::default()
        };
        if let Err(err) = ctl.aws_create_certificate(&again).await {
            tracing::warn!(error = %err, "could not register the cached device certificate again");
        }
    }
    let ca_file = handle.ca_path().to_owned();
    let cloud = Cloud::Aws(AwsSettings {
        endpoint: handle.aws_endpoint().to_owned(),
        port: Some(port),
        thing_name: Some(e.device_id.clone()),
        client_id: None,
        ca_file: Some(ca_file.clone()),
        auth: AwsAuth::FleetProvisioning {
            template_name: AWS_TEMPLATE.into(),
            claim_cert_file: cert_file,
            claim_key_file: key_file,
            parameters: BTreeMap::from([("ThingName".to_owned(), e.device_id.clone())]),
            timeout: Duration::from_secs(30),
        },
        alpn: false,
        topic_aliases: 0,
        proxy: None,
    });
    let info = EmulatorInfo {
        flavour: "aws".into(),
        control_url: handle.control_url(),
        mqtt_port: port,
        ca_file,
        device_id: e.device_id.clone(),
        pid: std::process::id(),
    };
    write_info(state_dir, &info)?;
    Ok(Embedded { handle, cloud, info })
}
