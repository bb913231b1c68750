//! The typed Azure device against the emulator over TLS: JSON telemetry, the twin with
//! typed sections and versions, typed desired patches, a direct method and C2D.
#![allow(clippy::unwrap_used)]

mod common;

use connector_actors::{MethodCall, MethodResponse};
use connector_azure::device::AzureDevice;
use connector_emulator::control::api::{C2dRequest, MethodInvocation};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use common::{device, fast_backoff, start, WAIT};

#[derive(Debug, Deserialize, PartialEq, Default)]
struct Desired {
    #[serde(default)]
    fan: Option<String>,
    #[serde(default)]
    target: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Reported {
    firmware: String,
    uptime_s: u64,
}

#[actix_rt::test]
async fn the_typed_device_speaks_telemetry_twin_methods_and_c2d() {
    let emu = start();
    let id = "typed-dev";
    let dev = AzureDevice::start_with(device(&emu, id).await, |b| b.backoff(fast_backoff()));
    let twin = dev.twin();
    let mut patches = twin.desired_patches::<Desired>(8).await.unwrap();
    dev.wait_connected(WAIT).await.unwrap();

    dev.send_telemetry(&json!({"temperature": 21.5})).await.unwrap();
    let got = emu.control().telemetry(id, None).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload.as_deref(), Some(r#"{"temperature":21.5}"#));
    assert_eq!(got[0].system_properties.get("$.ct"), Some(&Some("application/json".to_string())));

    let reported = Reported { firmware: "1.2.0".into(), uptime_s: 42 };
    let v = twin.report(&reported).await.unwrap();
    let doc = twin.get::<Desired, Reported>().await.unwrap();
    assert_eq!(doc.reported, reported);
    assert_eq!(doc.reported_version, v, "the version the report answered is the document's");
    assert_eq!(doc.desired, Desired::default());
    let v0 = doc.desired_version.unwrap();

    emu.control().patch_desired(id, None, json!({"fan": "on", "target": 21.5})).await.unwrap();
    // Registered before the connection: its catch-up (the whole, empty, desired section)
    // may come first.
    let p = loop {
        let p = tokio::time::timeout(WAIT, patches.next()).await.unwrap().unwrap().unwrap();
        if !p.catch_up {
            break p;
        }
        assert_eq!(p.body, Desired::default());
    };
    assert_eq!(p.body, Desired { fan: Some("on".into()), target: Some(21.5) });
    assert_eq!((p.version, p.catch_up), (Some(v0 + 1), false));

    dev.methods()
        .register("double", |call: MethodCall| async move {
            let n = call.json::<serde_json::Value>().ok().and_then(|v| v["n"].as_i64()).unwrap_or(0);
            MethodResponse::ok(json!({"n": n * 2}))
        })
        .unwrap();
    let inv = MethodInvocation {
        timeout_ms: Some(WAIT.as_millis() as u64),
        ..MethodInvocation::new("double", Some(json!({"n": 21})))
    };
    let answer = emu.control().invoke(id, None, &inv).await.unwrap();
    assert_eq!((answer.status, answer.payload), (200, json!({"n": 42})));

    let mut c2d = dev.c2d(4).await.unwrap();
    let req =
        C2dRequest { payload: Some("reboot".into()), message_id: Some("m-1".into()), ..Default::default() };
    emu.control().send_c2d(id, &req).await.unwrap();
    let m = tokio::time::timeout(WAIT, c2d.next()).await.unwrap().unwrap();
    assert_eq!((&m.payload[..], m.system_property("$.mid")), (&b"reboot"[..], Some("m-1")));

    dev.stop().await;
    assert!(!dev.connector().is_connected());
    emu.shutdown();
}

#[actix_rt::test]
async fn a_document_that_does_not_fit_the_type_is_a_typed_error() {
    let emu = start();
    let id = "typed-mismatch";
    let dev = AzureDevice::start_with(device(&emu, id).await, |b| b.backoff(fast_backoff()));
    dev.wait_connected(WAIT).await.unwrap();
    dev.twin().report(&json!({"firmware": 7})).await.unwrap();
    let e = dev.twin().get::<Desired, Reported>().await.unwrap_err();
    assert!(matches!(e, connector_azure::device::DeviceError::Json(_)), "{e:?}");
    assert!(e.to_string().starts_with("document:"), "{e}");
    // A desired patch that does not fit is an item of the stream, not skipped unseen; the
    // next one that fits still arrives.
    let mut patches = dev.twin().desired_patches::<Desired>(8).await.unwrap();
    emu.control().patch_desired(id, None, json!({"fan": 5})).await.unwrap();
    emu.control().patch_desired(id, None, json!({"fan": "off"})).await.unwrap();
    let first = tokio::time::timeout(WAIT, patches.next()).await.unwrap().unwrap();
    assert!(matches!(first, Err(connector_azure::device::DeviceError::Json(_))), "{first:?}");
    let second = tokio::time::timeout(WAIT, patches.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(second.body.fan.as_deref(), Some("off"));
    dev.stop().await;
    emu.shutdown();
}
