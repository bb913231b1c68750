//! An AWS IoT device that keeps its state in sync with its Device Shadows: the classic
//! shadow (a lamp's `power` and `color`) and a named shadow `config` (`interval`), through
//! the TwinActor of the supervised actor tree, over mutual TLS.
//!
//! Every delta the cloud sends (and, after each reconnect, the delta it missed) is applied
//! to the local state and reported back, so desired and reported converge.
//!
//! By default everything runs locally: the emulator starts in-process, a thing and its
//! certificate are created through its control API, and the example plays the cloud
//! application too — it changes the desired state of both shadows, waits until the device
//! has reported them, prints the documents, and exits 0.
//!
//! ```text
//! cargo run -p connector-examples --bin aws_shadow_sync
//! ```
//!
//! With `AWS_IOT_ENDPOINT`, `AWS_IOT_THING`, `AWS_IOT_CERT`, `AWS_IOT_KEY` (PEM files) and
//! optionally `AWS_IOT_CA` set, it connects to that endpoint instead and runs until Ctrl-C.

use std::time::Duration;

use anyhow::{bail, Context as _};
use connector_aws::device::{AwsDevice, Shadow};
use connector_aws::{AwsOptions, AwsProvider};
use connector_emulator::{Emulator, EmulatorConfig};
use futures::StreamExt;
use serde_json::{json, Value};

const THING: &str = "lamp-01";

/// Applies every delta of one shadow to the device and reports the new state.
async fn sync(shadow: Shadow) -> anyhow::Result<()> {
    let mut deltas = shadow.deltas::<Value>(16).await?;
    actix_rt::spawn(async move {
        let name = shadow.name().unwrap_or("classic").to_owned();
        while let Some(delta) = deltas.next().await {
            let delta = match delta {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("shadow {name}: a delta the device cannot read: {e}");
                    continue;
                }
            };
            let kind = if delta.catch_up { "catch-up" } else { "delta" };
            println!("shadow {name}: {kind} v{:?} {}", delta.version, delta.body);
            // A real device would drive its hardware here; the lamp takes any value.
            match shadow.report(&delta.body).await {
                Ok(v) => println!("shadow {name}: reported, now v{v:?}"),
                Err(e) => eprintln!("shadow {name}: report failed: {e}"),
            }
        }
    });
    Ok(())
}

async fn start_device(opts: AwsOptions) -> anyhow::Result<AwsDevice> {
    let dev = AwsDevice::start(AwsProvider::new(opts)?);
    dev.wait_connected(Duration::from_secs(20)).await.context("connecting")?;
    sync(dev.shadow(None)).await?;
    sync(dev.shadow(Some("config"))).await?;
    // The initial state.
    dev.shadow(None).report(&json!({"power": "off", "color": "white"})).await?;
    dev.shadow(Some("config")).report(&json!({"interval": 60})).await?;
    Ok(dev)
}

/// Waits until a shadow's reported state caught up with its desired state, and returns both.
async fn converged(shadow: &Shadow) -> anyhow::Result<(Value, Value)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = shadow.get::<Value, Value>().await?;
        let (desired, reported) = (s.desired.unwrap_or(Value::Null), s.reported.unwrap_or(Value::Null));
        let caught_up =
            desired.as_object().is_some_and(|d| d.iter().all(|(k, v)| reported.get(k) == Some(v)));
        if caught_up {
            return Ok((desired, reported));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("shadow {:?} did not converge: desired {desired}, reported {reported}", shadow.name());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    connector_examples::init_tracing("warn,connector_actors=info,ntex_server=off");

    if let Some(opts) = connector_examples::aws_options_from_env()? {
        let dev = start_device(opts).await?;
        println!("connected; syncing shadows until Ctrl-C");
        tokio::signal::ctrl_c().await?;
        dev.stop().await;
        return Ok(());
    }

    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    let ctl = emu.control();
    let opts = connector_examples::emulator_thing(&emu, THING).await?;
    let dev = start_device(opts).await?;
    println!("device {THING} connected to the emulator over mutual TLS");

    // The cloud application changes what it wants.
    ctl.aws_update_desired(THING, None, json!({"power": "on", "color": "amber"})).await?;
    ctl.aws_update_desired(THING, Some("config"), json!({"interval": 5})).await?;
    let (_, classic) = converged(&dev.shadow(None)).await?;
    let (_, config) = converged(&dev.shadow(Some("config"))).await?;
    if classic["color"] != "amber" || config["interval"] != 5 {
        bail!("reported state did not follow: {classic} {config}");
    }
    println!("classic shadow reported: {classic}");
    println!("config shadow reported:  {config}");
    println!("in sync: desired and reported agree on both shadows");
    dev.stop().await;
    Ok(())
}
