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
use connector_actors::twin::DesiredUpdate;
use connector_actors::{Connector, TwinHandle};
use connector_aws::{AwsOptions, AwsProvider};
use connector_emulator::{Emulator, EmulatorConfig};
use futures::StreamExt;
use serde_json::{json, Value};

const THING: &str = "lamp-01";

/// Applies every delta of one shadow to the device and reports the new state.
fn sync(
    twin: TwinHandle,
    shadow: Option<&'static str>,
    mut deltas: impl futures::Stream<Item = DesiredUpdate> + Unpin + 'static,
) {
    actix_rt::spawn(async move {
        while let Some(update) = deltas.next().await {
            let name = shadow.unwrap_or("classic");
            let kind = if update.catch_up { "catch-up" } else { "delta" };
            println!("shadow {name}: {kind} v{:?} {}", update.version, update.body);
            // A real device would drive its hardware here; the lamp takes any value.
            match twin.report_shadow(shadow, &update.body).await {
                Ok(r) => println!("shadow {name}: reported, now v{:?}", r.version),
                Err(e) => eprintln!("shadow {name}: report failed: {e}"),
            }
        }
    });
}

async fn start_device(opts: AwsOptions) -> anyhow::Result<(Connector, TwinHandle)> {
    let conn = Connector::builder(AwsProvider::new(opts)?).start();
    conn.wait_connected(Duration::from_secs(20)).await.context("connecting")?;
    let twin = conn.twin().context("AWS provides shadows")?;
    let (_, classic) = twin.shadow_desired(None, 16).await?;
    let (_, config) = twin.shadow_desired(Some("config"), 16).await?;
    sync(twin.clone(), None, classic);
    sync(twin.clone(), Some("config"), config);
    // The initial state.
    twin.report_shadow(None, &json!({"power": "off", "color": "white"})).await?;
    twin.report_shadow(Some("config"), &json!({"interval": 60})).await?;
    Ok((conn, twin))
}

/// Waits until a shadow has no delta left (reported caught up with desired).
async fn converged(twin: &TwinHandle, shadow: Option<&str>) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let doc = twin.get_shadow(shadow).await?;
        if doc.body["state"].get("delta").is_none() {
            return Ok(doc.body);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("shadow {shadow:?} did not converge: {}", doc.body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    connector_examples::init_tracing("warn,connector_actors=info,ntex_server=off");

    if let Some(opts) = connector_examples::aws_options_from_env()? {
        let (conn, _twin) = start_device(opts).await?;
        println!("connected; syncing shadows until Ctrl-C");
        tokio::signal::ctrl_c().await?;
        conn.stop().await;
        return Ok(());
    }

    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    let ctl = emu.control();
    let opts = connector_examples::emulator_thing(&emu, THING).await?;
    let (conn, twin) = start_device(opts).await?;
    println!("device {THING} connected to the emulator over mutual TLS");

    // The cloud application changes what it wants.
    ctl.aws_update_desired(THING, None, json!({"power": "on", "color": "amber"})).await?;
    ctl.aws_update_desired(THING, Some("config"), json!({"interval": 5})).await?;
    let classic = converged(&twin, None).await?;
    let config = converged(&twin, Some("config")).await?;
    if classic["state"]["reported"]["color"] != "amber" || config["state"]["reported"]["interval"] != 5 {
        bail!("reported state did not follow: {classic} {config}");
    }
    println!("classic shadow: {}", classic["state"]);
    println!("config shadow:  {}", config["state"]);
    println!("in sync: desired and reported agree on both shadows");
    conn.stop().await;
    Ok(())
}
