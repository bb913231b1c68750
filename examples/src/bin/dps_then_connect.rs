//! DPS then connect: provisions a device through the Device Provisioning Service over
//! MQTT, connects to the hub it was assigned, sends a few telemetry messages and stops.
//!
//! By default everything runs locally: the emulator starts in-process, an individual
//! symmetric-key enrollment is created through its control API, and the messages are read
//! back from it at the end.
//!
//! ```text
//! cargo run -p connector-examples --bin dps_then_connect
//! ```
//!
//! With `DPS_ID_SCOPE` and `DPS_REGISTRATION_ID` set it provisions with a real DPS instead,
//! using `DPS_SYMMETRIC_KEY` (individual enrollment) or `DPS_GROUP_KEY` (enrollment group:
//! the device key is derived from it), and `DPS_GLOBAL_ENDPOINT` when set (default
//! `global.azure-devices-provisioning.net`). Keys are never printed.

use std::time::Duration;

use anyhow::{bail, Context as _};
use connector_azure::dps::client::{provision_then_connect, ProvisioningOptions};
use connector_azure::dps::{DpsAuth, DpsOptions, DpsRegistration, GLOBAL_ENDPOINT};
use connector_azure::{AzureOptions, SasKey};
use connector_core::{PemSource, Publish, QoS};
use connector_emulator::control::api::{Attestation, DeviceStatus, Enrollment, SymmetricKey};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

const MESSAGES: usize = 3;

/// The registration and hub options for a real DPS, from the environment; `None` when
/// `DPS_ID_SCOPE` is not set.
fn from_env() -> anyhow::Result<Option<(DpsRegistration, AzureOptions)>> {
    let Ok(scope) = std::env::var("DPS_ID_SCOPE") else { return Ok(None) };
    let reg_id =
        std::env::var("DPS_REGISTRATION_ID").context("DPS_ID_SCOPE is set: set DPS_REGISTRATION_ID too")?;
    let auth = match (std::env::var("DPS_SYMMETRIC_KEY"), std::env::var("DPS_GROUP_KEY")) {
        (Ok(k), _) => DpsAuth::SymmetricKey(SasKey::from_base64(&k).context("DPS_SYMMETRIC_KEY")?),
        (_, Ok(k)) => DpsAuth::GroupKey(SasKey::from_base64(&k).context("DPS_GROUP_KEY")?),
        _ => bail!("set DPS_SYMMETRIC_KEY (individual enrollment) or DPS_GROUP_KEY (enrollment group)"),
    };
    let opts = DpsOptions {
        endpoint: std::env::var("DPS_GLOBAL_ENDPOINT").unwrap_or_else(|_| GLOBAL_ENDPOINT.to_owned()),
        ..DpsOptions::default()
    };
    Ok(Some((DpsRegistration::new(scope, reg_id, auth, opts)?, AzureOptions::default())))
}

/// Starts the emulator and enrolls `thermostat-reg` (assigned as `thermostat-01`) with a
/// key the emulator generates.
async fn local() -> anyhow::Result<(EmulatorHandle, DpsRegistration, AzureOptions)> {
    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    println!("emulator: MQTT/TLS on 127.0.0.1:{}, control API at {}", emu.mqtt_port(), emu.control_url());
    let enrollment = Enrollment {
        attestation: Attestation::SymmetricKey { symmetric_key: SymmetricKey::default() },
        device_id: Some("thermostat-01".into()),
        provisioning_status: DeviceStatus::Enabled,
    };
    let created = emu.control().put_enrollment("thermostat-reg", &enrollment).await?;
    let Attestation::SymmetricKey { symmetric_key } = created.attestation else {
        bail!("the emulator returned another attestation than the one asked for");
    };
    println!("enrollment: thermostat-reg (individual, symmetric key) in ID scope {}", emu.dps_id_scope());
    let ca = PemSource::File(emu.ca_path().to_owned());
    let opts = DpsOptions {
        endpoint: "localhost".into(),
        port: Some(emu.mqtt_port()),
        trust_roots: Some(ca),
        ..DpsOptions::default()
    };
    let key = SasKey::from_base64(&symmetric_key.primary_key)?;
    let reg = DpsRegistration::new(emu.dps_id_scope(), "thermostat-reg", DpsAuth::SymmetricKey(key), opts)?;
    // The hub is on the same port; its trust roots come from the DPS options.
    let hub = AzureOptions::default().port(emu.mqtt_port());
    Ok((emu, reg, hub))
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    // ntex's worker logs "Server is gone" at error level when the in-process emulator
    // shuts down at the end: expected here, so not shown by default.
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,ntex_server::wrk=off".into()))
        .init();
    let (emu, reg, hub_options) = match from_env()? {
        Some((reg, hub)) => {
            println!("using the real DPS at {}", reg.options().endpoint);
            (None, reg, hub)
        }
        None => {
            let (emu, reg, hub) = local().await?;
            (Some(emu), reg, hub)
        }
    };

    println!("provisioning registration `{}` in scope {} ...", reg.registration_id(), reg.id_scope());
    let done = provision_then_connect(&reg, hub_options, &ProvisioningOptions::default()).await?;
    let a = &done.assignment;
    println!(
        "assigned: hub {} device {} ({})",
        a.assigned_hub,
        a.device_id,
        a.substatus.as_deref().unwrap_or("-")
    );
    done.connector.wait_connected(Duration::from_secs(30)).await.context("connecting to the assigned hub")?;
    println!("connected to {}", a.assigned_hub);

    let publisher = done.connector.publisher();
    for i in 0..MESSAGES {
        let body = format!("{{\"seq\":{i},\"temperature\":{:.1}}}", 21.0 + i as f64 * 0.5);
        publisher
            .publish(Publish::telemetry(body.clone()).content_type("application/json").qos(QoS::AtLeastOnce))
            .await?;
        println!("sent {body}");
    }
    done.connector.stop().await;
    println!("disconnected");

    if let Some(emu) = emu {
        let got = emu.control().telemetry(&a.device_id, None).await?;
        println!("the emulator received {} message(s) from {}", got.len(), a.device_id);
        emu.shutdown();
        if got.len() != MESSAGES {
            bail!("expected {MESSAGES} messages, the emulator has {}", got.len());
        }
    }
    Ok(())
}
