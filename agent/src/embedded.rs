//! The embedded default: the emulator started in-process, with an enrollment for the
//! agent, so that the agent provisions and connects exactly as it would against a cloud.
//!
//! The emulator keeps its CA and registry in [`EmbeddedSettings::data_dir`] (by default
//! `<state_dir>/emulator`), so a restarted agent finds its enrollment, its device and its
//! cached identity valid. Where it listens is written to `<state_dir>/emulator.json`
//! ([`EmulatorInfo`]) and printed, so that a person or a test can play the back end
//! through the control API (`connector-emulator ctl --url …`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use connector_core::Secret;
use connector_emulator::control::api::{Attestation, DeviceStatus, Enrollment, SymmetricKey};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{
    AzureAuth, AzureSettings, Cloud, CloudKind, DpsAttestation, DpsSettings, EmbeddedSettings,
};
use crate::ops::write_private;

/// The file in the state directory describing the running embedded emulator.
pub const INFO_FILE: &str = "emulator.json";
const KEY_FILE: &str = "agent-enrollment.key";

/// Why the embedded emulator could not be set up.
#[derive(Debug, Error)]
pub enum EmbeddedError {
    /// The emulator did not start.
    #[error("starting the embedded emulator in {}: {source}", dir.display())]
    Start {
        /// Its data directory.
        dir: PathBuf,
        /// The emulator's error.
        source: connector_emulator::EmulatorError,
    },
    /// The enrollment could not be created through the control API.
    #[error("creating the agent's enrollment in the embedded emulator: {0}")]
    Enroll(String),
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not available yet.
    #[error("the embedded {0} emulator flavour is not available in this build yet")]
    Unsupported(&'static str),
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
    if e.flavour == CloudKind::Aws {
        return Err(EmbeddedError::Unsupported("AWS"));
    }
    let mut cfg = EmulatorConfig::ephemeral();
    cfg.state_dir = Some(e.data_dir.clone());
    cfg.ws_port = None;
    cfg.aws_mqtt_port = None;
    cfg.aws_port = None;
    cfg.method_default_timeout = Duration::from_secs(30);
    let handle =
        Emulator::start(cfg).map_err(|source| EmbeddedError::Start { dir: e.data_dir.clone(), source })?;

    // The enrollment key is the agent's: made once, kept 0600 beside the emulator's data.
    let key_path = e.data_dir.join(KEY_FILE);
    let key = match std::fs::read_to_string(&key_path) {
        Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
        _ => {
            let mut raw = [0u8; 32];
            openssl::rand::rand_bytes(&mut raw).map_err(|err| EmbeddedError::Enroll(err.to_string()))?;
            let k = base64::engine::general_purpose::STANDARD.encode(raw);
            write_private(&key_path, k.as_bytes())
                .map_err(|source| EmbeddedError::Io { path: key_path.clone(), source })?;
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
    });
    let info = EmulatorInfo {
        flavour: e.flavour.as_str().into(),
        control_url: handle.control_url(),
        mqtt_port: handle.mqtt_port(),
        ca_file,
        device_id: e.device_id.clone(),
        pid: std::process::id(),
    };
    let path = state_dir.join(INFO_FILE);
    let bytes = serde_json::to_vec_pretty(&info)
        .map_err(|err| EmbeddedError::Io { path: path.clone(), source: std::io::Error::other(err) })?;
    write_private(&path, &bytes).map_err(|source| EmbeddedError::Io { path, source })?;
    Ok(Embedded { handle, cloud, info })
}
