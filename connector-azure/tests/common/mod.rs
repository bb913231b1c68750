//! What the end-to-end tests against the emulator share: starting it, creating SAS devices,
//! options that trust its CA, a fast backoff and metric samples.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use connector_actors::Connector;
use connector_azure::{AzureOptions, AzureProvider, ConnectionString};
use connector_core::{BackoffPolicy, Jitter, PemSource};
use connector_emulator::control::api::Authentication;
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

/// How long a test waits for anything that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// An emulator on ephemeral ports.
pub fn start() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::ephemeral()).unwrap()
}

/// Reconnects within 50–500 ms, full jitter.
pub fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_millis(50),
        max: Duration::from_millis(500),
        stable_after: Duration::from_secs(5),
        jitter: Jitter::Full,
    }
}

/// Creates a SAS device on the emulator and returns its connection string (`HostName` =
/// the hub's).
pub async fn sas_device(emu: &EmulatorHandle, id: &str) -> String {
    let info = emu.control().create_device(id).await.unwrap();
    let Authentication::Sas { symmetric_key } = info.authentication else { panic!("a SAS device") };
    format!("HostName={};DeviceId={id};SharedAccessKey={}", emu.hub_host_name(), symmetric_key.primary_key)
}

/// MQTT/TLS options on the emulator's port, trusting its CA.
pub fn hub_options(emu: &EmulatorHandle) -> AzureOptions {
    let mut opts = AzureOptions::default().port(emu.mqtt_port());
    opts.trust_roots = Some(PemSource::File(emu.ca_path().to_owned()));
    opts
}

/// A provider for a new SAS device with [`hub_options`].
pub async fn device(emu: &EmulatorHandle, id: &str) -> AzureProvider {
    let cs: ConnectionString = sas_device(emu, id).await.parse().unwrap();
    AzureProvider::new(cs, hub_options(emu)).unwrap()
}

/// A metric sample of this connector's registry (counters and gauges summed), 0 if absent.
pub fn sample(conn: &Connector, name: &str, labels: &[(&str, &str)]) -> f64 {
    conn.registry()
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v))
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}
