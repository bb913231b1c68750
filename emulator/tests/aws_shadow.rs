//! The AWS Device Shadow service over MQTT (paho with a client certificate) and from the
//! control API: documents, delta and rejections published to subscribers at the right
//! moments.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use connector_emulator::control::aws_api::AwsFaults;
use serde_json::{json, Value};

async fn next_json(dev: &Device, what: &str) -> (String, Value) {
    let m = dev.recv(what).await;
    (m.topic().to_string(), serde_json::from_slice(m.payload()).unwrap())
}

#[tokio::test]
async fn shadow_semantics_over_mqtt() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = aws_thing_with_cert(&env, "lamp", dir.path()).await;
    let dev = env.aws_cert_connect("lamp", &cert, &key).await.unwrap();
    let p = "$aws/things/lamp/shadow";
    for f in [
        format!("{p}/get/+"),
        format!("{p}/update/+"),
        format!("{p}/delete/+"),
        format!("{p}/name/+/update/+"),
    ] {
        assert_eq!(dev.subscribe(&f, 1).await, 1, "{f}");
    }
    // Get before any update: 404 with the documented message.
    dev.publish(&format!("{p}/get"), r#"{"clientToken":"g0"}"#, 1).await.unwrap();
    let (t, d) = next_json(&dev, "get rejected").await;
    assert_eq!(t, format!("{p}/get/rejected"));
    assert_eq!(
        (d["code"].as_u64(), d["message"].as_str(), d["clientToken"].as_str()),
        (Some(404), Some("No shadow exists with name: 'lamp'"), Some("g0"))
    );
    // Reported: accepted then documents, no delta.
    dev.publish(
        &format!("{p}/update"),
        r#"{"state":{"reported":{"color":"blue","list":[1,2]}},"clientToken":"u1"}"#,
        1,
    )
    .await
    .unwrap();
    let (t, d) = next_json(&dev, "update accepted").await;
    assert_eq!(
        (t.as_str(), d["version"].as_u64(), d["clientToken"].as_str()),
        (format!("{p}/update/accepted").as_str(), Some(1), Some("u1"))
    );
    let (t, d) = next_json(&dev, "documents").await;
    assert_eq!(t, format!("{p}/update/documents"));
    assert!(d.get("previous").is_none());
    assert_eq!(d["current"]["state"]["reported"]["color"], "blue");
    // Desired from the cloud (control API): accepted, documents, then the delta.
    env.ctl.aws_update_desired("lamp", None, json!({"color":"red","list":[1,2]})).await.unwrap();
    assert_eq!(next_json(&dev, "accepted").await.0, format!("{p}/update/accepted"));
    let (t, d) = next_json(&dev, "documents").await;
    assert_eq!(
        (t.as_str(), d["previous"]["version"].as_u64(), d["current"]["version"].as_u64()),
        (format!("{p}/update/documents").as_str(), Some(1), Some(2))
    );
    let (t, d) = next_json(&dev, "delta").await;
    assert_eq!(t, format!("{p}/update/delta"));
    assert_eq!(d["state"], json!({"color":"red"}));
    assert_eq!(d["version"], 2);
    // Version conflict (409), then the right version.
    dev.publish(
        &format!("{p}/update"),
        r#"{"state":{"reported":{"color":"red"}},"version":1,"clientToken":"c"}"#,
        1,
    )
    .await
    .unwrap();
    let (t, d) = next_json(&dev, "conflict").await;
    assert_eq!(
        (t.as_str(), d["code"].as_u64(), d["message"].as_str()),
        (format!("{p}/update/rejected").as_str(), Some(409), Some("Version conflict"))
    );
    dev.publish(
        &format!("{p}/update"),
        r#"{"state":{"reported":{"color":"red","list":null}},"version":2}"#,
        1,
    )
    .await
    .unwrap();
    assert_eq!(next_json(&dev, "accepted").await.1["version"], 3);
    let (_, docs) = next_json(&dev, "documents").await;
    assert!(docs["current"]["state"]["reported"].get("list").is_none());
    // Reported caught up on color, but `list` was deleted from reported: the delta says so.
    let (t, d) = next_json(&dev, "delta after reported").await;
    assert_eq!((t.as_str(), &d["state"]), (format!("{p}/update/delta").as_str(), &json!({"list":[1,2]})));
    // Oversized (413) and too deep (400).
    let big = json!({"state":{"reported":{"x":"y".repeat(9000)}}}).to_string();
    dev.publish(&format!("{p}/update"), big, 1).await.unwrap();
    assert_eq!(next_json(&dev, "413").await.1["code"], 413);
    let deep = r#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#;
    dev.publish(&format!("{p}/update"), deep, 1).await.unwrap();
    assert_eq!(
        next_json(&dev, "depth").await.1["message"],
        "JSON contains too many levels of nesting; maximum is 6"
    );
    // Named shadow beside the classic one.
    dev.publish(&format!("{p}/name/cfg/update"), r#"{"state":{"reported":{"mode":"eco"}}}"#, 1)
        .await
        .unwrap();
    let (t, d) = next_json(&dev, "named accepted").await;
    assert_eq!(
        (t.as_str(), d["version"].as_u64()),
        (format!("{p}/name/cfg/update/accepted").as_str(), Some(1))
    );
    assert_eq!(next_json(&dev, "named documents").await.0, format!("{p}/name/cfg/update/documents"));
    assert_eq!(env.ctl.aws_shadow("lamp", None).await.unwrap()["version"], 3);
    assert_eq!(env.ctl.aws_shadow("lamp", Some("cfg")).await.unwrap()["state"]["reported"]["mode"], "eco");
    // Delete then get: 404.
    dev.publish(&format!("{p}/delete"), r#"{"clientToken":"d"}"#, 1).await.unwrap();
    let (t, d) = next_json(&dev, "delete accepted").await;
    assert_eq!(
        (t.as_str(), d["version"].as_u64(), d["clientToken"].as_str()),
        (format!("{p}/delete/accepted").as_str(), Some(3), Some("d"))
    );
    dev.publish(&format!("{p}/get"), "", 1).await.unwrap();
    assert_eq!(next_json(&dev, "get after delete").await.1["code"], 404);
    assert_eq!(env.ctl.aws_shadow("lamp", Some("cfg")).await.unwrap()["version"], 1);
    dev.disconnect().await;
}

#[tokio::test]
async fn telemetry_faults_and_unserved_reserved_topics() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = aws_thing_with_cert(&env, "pump", dir.path()).await;
    let dev = env.aws_cert_connect("pump", &cert, &key).await.unwrap();
    assert_eq!(dev.subscribe("$aws/things/pump/shadow/get/+", 1).await, 1);
    assert_eq!(dev.subscribe("$aws/events/presence/connected/pump", 1).await, 0x80);
    dev.publish("factory/pump/flow", "{\"l\":3}", 1).await.unwrap();
    let t = env.ctl.aws_telemetry(None, Some("factory/#")).await.unwrap();
    assert_eq!(
        (t.len(), t[0].client_id.as_str(), t[0].things.clone()),
        (1, "pump", vec!["pump".to_string()])
    );
    // Throttled shadow request: 429.
    env.ctl
        .aws_faults("pump", &AwsFaults { throttle_shadow: true, count: Some(1), ..Default::default() })
        .await
        .unwrap();
    dev.publish("$aws/things/pump/shadow/get", "", 1).await.unwrap();
    assert_eq!(next_json(&dev, "429").await.1["code"], 429);
    dev.publish("$aws/things/pump/shadow/get", "", 1).await.unwrap();
    assert_eq!(next_json(&dev, "404 once the fault is used up").await.1["code"], 404);
    // A reserved service the emulator does not serve (Device Defender) closes the connection.
    dev.publish("$aws/things/pump/defender/metrics/json", "{}", 0).await.unwrap();
    dev.lost("defender refused").await;
    // Refused CONNECT, then drop.
    env.ctl
        .aws_faults("pump", &AwsFaults { refuse_connect: Some(3), count: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(connack_code(&env.aws_cert_connect("pump", &cert, &key).await.err().unwrap()), Some(3));
    let dev = env.aws_cert_connect("pump", &cert, &key).await.unwrap();
    env.ctl.aws_drop("pump").await.unwrap();
    dev.lost("dropped").await;
}
