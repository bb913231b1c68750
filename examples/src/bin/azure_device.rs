//! An Azure IoT Hub device: telemetry with properties, direct methods and the device twin
//! (a Plug and Play thermostat), through the supervised actor tree and its typed Azure face
//! (`connector_azure::device::AzureDevice`).
//!
//! By default everything runs locally: the emulator starts in-process, a device is created
//! through its control API, and the example plays the back end too — it patches a desired
//! property, invokes the device's methods and reads the telemetry back — then exits 0.
//!
//! ```text
//! cargo run -p connector-examples --bin azure_device
//! ```
//!
//! With `AZURE_IOT_CONNECTION_STRING` set it connects to that hub instead and runs until
//! Ctrl-C, answering methods and desired changes from the real back end (the key is never
//! printed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use connector_actors::methods::{MethodCall, MethodResponse};
use connector_azure::device::{AzureDevice, AzureTwin};
use connector_azure::pnp::{ack_document, component_telemetry, WritableAck};
use connector_azure::{AzureOptions, AzureProvider, ConnectionString};
use connector_core::{PemSource, Publish, QoS};
use connector_emulator::control::api::{Authentication, MethodInvocation};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use futures::StreamExt;
use serde_json::json;

const MODEL: &str = "dtmi:com:example:Thermostat;1";
const DEVICE: &str = "thermostat-01";

/// The device's state: the temperature it reports and the target it was given.
#[derive(Default)]
struct Thermostat {
    /// Hundredths of a degree.
    target_centi: AtomicU64,
    reboots: AtomicU64,
}

/// Registers the direct methods: `reboot` and `getMaxMinReport` (a PnP command).
fn methods(dev: &AzureDevice, state: Arc<Thermostat>) -> anyhow::Result<()> {
    let methods = dev.methods();
    let s = state.clone();
    methods.register("reboot", move |call: MethodCall| {
        let s = s.clone();
        async move {
            let delay: u64 =
                call.json::<serde_json::Value>().ok().and_then(|v| v["delay"].as_u64()).unwrap_or(0);
            let n = s.reboots.fetch_add(1, Ordering::Relaxed) + 1;
            println!("method reboot (delay {delay} s): reboot number {n}");
            MethodResponse::ok(json!({"rebooting": true, "delay": delay, "count": n}))
        }
    })?;
    methods.register("getMaxMinReport", move |_call: MethodCall| {
        let s = state.clone();
        async move {
            let t = s.target_centi.load(Ordering::Relaxed) as f64 / 100.0;
            MethodResponse::ok(json!({"maxTemp": t + 1.0, "minTemp": t - 1.0, "avgTemp": t}))
        }
    })?;
    Ok(())
}

/// Applies desired `targetTemperature` changes and acknowledges them as a PnP writable
/// property (reported `{"value","ac","av"}`), catch-ups included.
async fn twin_sync(twin: AzureTwin, state: Arc<Thermostat>) -> anyhow::Result<()> {
    let mut desired = twin.desired_patches::<serde_json::Value>(16).await?;
    actix_rt::spawn(async move {
        while let Some(update) = desired.next().await {
            let update = match update {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("twin: a desired patch the device cannot read: {e}");
                    continue;
                }
            };
            let Some(target) = update.body.get("targetTemperature").and_then(|v| v.as_f64()) else {
                continue;
            };
            state.target_centi.store((target * 100.0).round() as u64, Ordering::Relaxed);
            let av = update.version.unwrap_or(0);
            let ack = ack_document(None, "targetTemperature", &WritableAck::accepted(json!(target), av));
            match twin.report(&ack).await {
                Ok(v) => println!(
                    "twin: targetTemperature {target} (desired v{av}{}) acknowledged, reported v{v:?}",
                    if update.catch_up { ", catch-up" } else { "" },
                ),
                Err(e) => eprintln!("twin: acknowledging targetTemperature failed: {e}"),
            }
        }
    });
    Ok(())
}

/// Starts the emulator and creates the device.
async fn local() -> anyhow::Result<(EmulatorHandle, AzureProvider)> {
    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    println!("emulator: MQTT/TLS on 127.0.0.1:{}, control API at {}", emu.mqtt_port(), emu.control_url());
    let info = emu.control().create_device(DEVICE).await?;
    let Authentication::Sas { symmetric_key } = info.authentication else { bail!("expected a SAS device") };
    let cs: ConnectionString = format!(
        "HostName={};DeviceId={DEVICE};SharedAccessKey={}",
        emu.hub_host_name(),
        symmetric_key.primary_key
    )
    .parse()?;
    let mut opts = AzureOptions::default().port(emu.mqtt_port()).model_id(MODEL);
    opts.trust_roots = Some(PemSource::File(emu.ca_path().to_owned()));
    Ok((emu, AzureProvider::new(cs, opts)?))
}

/// The back end's side, played against the emulator: a desired change, two method calls,
/// then the telemetry the hub received.
async fn back_end(emu: &EmulatorHandle) -> anyhow::Result<()> {
    let ctl = emu.control();
    ctl.patch_desired(DEVICE, None, json!({"targetTemperature": 22.5})).await?;
    for (name, payload) in
        [("reboot", json!({"delay": 5})), ("getMaxMinReport", json!({})), ("selfDestruct", json!({}))]
    {
        let inv = MethodInvocation {
            method_name: name.into(),
            payload: Some(payload),
            response_timeout_in_seconds: Some(10),
            timeout_ms: None,
        };
        let r = ctl.invoke(DEVICE, None, &inv).await?;
        println!("back end: {name} → {} {}", r.status, r.payload);
    }
    Ok(())
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ntex_server=off".into()),
        )
        .init();
    let (emu, provider) = match std::env::var("AZURE_IOT_CONNECTION_STRING") {
        Ok(cs) => {
            let cs: ConnectionString = cs.parse().context("AZURE_IOT_CONNECTION_STRING")?;
            (None, AzureProvider::new(cs, AzureOptions::default().model_id(MODEL))?)
        }
        Err(_) => {
            let (emu, p) = local().await?;
            (Some(emu), p)
        }
    };
    let state = Arc::new(Thermostat::default());
    let dev = AzureDevice::start(provider);
    methods(&dev, state.clone())?;
    twin_sync(dev.twin(), state.clone()).await?;
    dev.wait_connected(Duration::from_secs(20)).await?;
    println!("connected as {DEVICE} (model {MODEL})");
    let doc = dev.twin().get::<serde_json::Value, serde_json::Value>().await?;
    println!("twin: desired v{:?}, reported v{:?}", doc.desired_version, doc.reported_version);

    let Some(emu) = emu else {
        // A real hub: send telemetry every 10 s until Ctrl-C.
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => send(&dev, &state).await,
                _ = actix_rt::signal::ctrl_c() => break,
            }
        }
        dev.stop().await;
        return Ok(());
    };
    for _ in 0..3 {
        send(&dev, &state).await;
    }
    back_end(&emu).await?;
    // The acknowledgement of the desired change is visible to the back end once the
    // device's reported patch was accepted.
    let mut acked = None;
    for _ in 0..50 {
        let t = emu.control().twin(DEVICE, None).await?;
        if let Some(ack) = t.pointer("/properties/reported/targetTemperature").cloned() {
            acked = Some(ack);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "back end: reported targetTemperature = {}",
        acked.context("the device acknowledged the desired change")?
    );
    let received = emu.control().telemetry(DEVICE, None).await?;
    println!("back end: {} telemetry message(s) received from {DEVICE}", received.len());
    dev.stop().await;
    emu.shutdown();
    Ok(())
}

/// One telemetry message from the thermostat component, QoS 1, acknowledged by the hub.
async fn send(dev: &AzureDevice, state: &Thermostat) {
    let t = state.target_centi.load(Ordering::Relaxed) as f64 / 100.0;
    let body = json!({"temperature": if t == 0.0 { 21.0 } else { t }}).to_string();
    let publish = component_telemetry(Publish::telemetry(body.clone()), "thermostat1")
        .qos(QoS::AtLeastOnce)
        .content_type("application/json")
        .content_encoding("utf-8")
        .property("source", "azure_device example");
    match dev.publisher().publish(publish).await {
        Ok(_) => println!("sent {body}"),
        Err(e) => eprintln!("telemetry failed: {e}"),
    }
}
