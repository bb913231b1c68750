//! The control API's fault injection, the `ctl` command line, and state across restarts.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use std::process::Command;

use common::*;
use connector_emulator::control::api::{RefuseConnect, Throttle};
use connector_emulator::EmulatorConfig;
use serde_json::Value;

fn ctl(env: &Env, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_connector-emulator"))
        .arg("ctl")
        .arg("--url")
        .arg(env.emu.control_url())
        .args(args)
        .output()
        .expect("run connector-emulator ctl");
    assert!(out.status.success(), "ctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ctl {args:?} printed no JSON ({e})"))
}

#[tokio::test]
async fn cli_drives_the_back_end() {
    let env = Env::start();
    let info = ctl(&env, &["info"]);
    assert_eq!(info["mqttPort"], env.emu.mqtt_port());
    let created = ctl(&env, &["device", "create", "cli-dev"]);
    let key = created["authentication"]["symmetricKey"]["primaryKey"].as_str().unwrap().to_string();
    let cs = ctl(&env, &["device", "connection-string", "cli-dev"]);
    assert_eq!(cs["connectionString"], format!("HostName=localhost;DeviceId=cli-dev;SharedAccessKey={key}"));
    assert_eq!(ctl(&env, &["device", "list"]).as_array().unwrap().len(), 1);

    let dev = env.connect("cli-dev", &key).await;
    dev.subscribe("$iothub/twin/PATCH/properties/desired/#", 0).await;
    dev.subscribe("devices/cli-dev/messages/devicebound/#", 1).await;
    let twin = tokio::task::spawn_blocking({
        let url = env.emu.control_url();
        move || {
            let out = Command::new(env!("CARGO_BIN_EXE_connector-emulator"))
                .args(["ctl", "--url", &url, "twin", "patch-desired", "cli-dev", r#"{"fan":true}"#])
                .output()
                .unwrap();
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(twin["properties"]["desired"]["fan"], true);
    assert_eq!(
        dev.recv("desired patch from the CLI").await.topic(),
        "$iothub/twin/PATCH/properties/desired/?$version=2"
    );
    ctl(&env, &["c2d", "send", "cli-dev", "--payload", "hi", "-p", "a=b", "--message-id", "m1"]);
    let msg = dev.recv("C2D from the CLI").await;
    assert!(msg.topic().contains("%24.mid=m1") && msg.topic().contains("a=b"), "{}", msg.topic());
    dev.publish("devices/cli-dev/messages/events/x=1", "t", 1).await.unwrap();
    let mut seen = Value::Null;
    for _ in 0..200 {
        seen = ctl(&env, &["telemetry", "list", "cli-dev"]);
        if seen.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
    }
    assert_eq!(seen[0]["properties"]["x"], "1");
    ctl(&env, &["telemetry", "clear"]);
    assert_eq!(ctl(&env, &["telemetry", "list"]).as_array().unwrap().len(), 0);
    ctl(&env, &["fault", "drop", "cli-dev"]);
    dev.lost("dropped through the CLI").await;

    let group = ctl(&env, &["group", "create", "g1"]);
    assert!(group["attestation"]["symmetricKey"]["primaryKey"].is_string());
    let derived = ctl(&env, &["group", "derive-key", "g1", "dev-9"]);
    let gk = group["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap();
    assert_eq!(derived["derivedKey"], hmac_b64(gk, "dev-9"));

    // Errors exit non-zero with the API's message.
    let out = Command::new(env!("CARGO_BIN_EXE_connector-emulator"))
        .args(["ctl", "--url", &env.emu.control_url(), "device", "get", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[tokio::test]
async fn fault_injection() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let token = sas(&format!("{}/devices/dev-1", env.host()), &key, now() + 600, None);
    let user = hub_user(env.host(), "dev-1");

    // Refuse one CONNECT with code 4, then connect normally.
    env.ctl.refuse_connect("dev-1", None, &RefuseConnect { code: 4, count: Some(1) }).await.unwrap();
    let err = env.connect_with("dev-1", &user, Some(&token), None, true).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(4));
    let dev = env.connect_with("dev-1", &user, Some(&token), None, true).await.unwrap();

    // Drop: the connection is closed, the device may come back.
    env.ctl.drop_connection("dev-1", None).await.unwrap();
    dev.lost("dropped").await;
    assert_eq!(env.ctl.drop_connection("dev-1", None).await.unwrap_err().status(), Some(404));

    // Early token expiry closes the connection.
    let dev = env.connect_with("dev-1", &user, Some(&token), None, true).await.unwrap();
    env.ctl.expire_token("dev-1", None).await.unwrap();
    dev.lost("token expired early").await;

    // Throttled CONNECT: server unavailable (3) until cleared.
    env.ctl.throttle("dev-1", None, &Throttle { twin: false, connect: true, count: None }).await.unwrap();
    let faults: Value = env.ctl.request(hyper::Method::GET, "/faults", None::<&()>).await.unwrap();
    assert_eq!(faults[0]["throttle"]["connect"], true);
    let err = env.connect_with("dev-1", &user, Some(&token), None, true).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(3));
    env.ctl.clear_faults("dev-1", None).await.unwrap();
    env.connect_with("dev-1", &user, Some(&token), None, true).await.unwrap().disconnect().await;
    // Only codes 2–5 can be injected.
    let bad =
        env.ctl.refuse_connect("dev-1", None, &RefuseConnect { code: 0, count: None }).await.unwrap_err();
    assert_eq!(bad.status(), Some(400));
}

#[tokio::test]
async fn state_dir_keeps_the_ca_and_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig::ephemeral();
    cfg.state_dir = Some(dir.path().to_path_buf());
    let env = Env::with(cfg.clone());
    let key = env.device("kept").await;
    let ca = env.emu.ca_pem().to_vec();
    drop(env);
    let env = Env::with(cfg);
    assert_eq!(env.emu.ca_pem(), ca.as_slice());
    assert_eq!(env.emu.ca_path(), dir.path().join("ca.pem"));
    env.connect("kept", &key).await.disconnect().await;
}

#[tokio::test]
async fn unknown_routes_and_bad_bodies_are_errors() {
    let env = Env::start();
    let e = env.ctl.request::<Value>(hyper::Method::GET, "/nope", None::<&()>).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    let e = env
        .ctl
        .request::<Value>(hyper::Method::PUT, "/devices/d1", Some(&serde_json::json!({"bogus": 1})))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    let e = env
        .ctl
        .request::<Value>(hyper::Method::PUT, "/devices/bad%23id", Some(&serde_json::json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
}

/// A peer that accepts the connection but never answers: the request fails with a
/// timeout instead of hanging (what `ctl --url` pointed at the wrong port would do).
#[tokio::test]
async fn a_silent_peer_is_a_timeout_not_a_hang() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(socket);
    });
    let client = connector_emulator::ControlClient::from_addr(addr)
        .with_timeout(std::time::Duration::from_millis(300));
    let answered = tokio::time::timeout(std::time::Duration::from_secs(20), client.info()).await;
    let err = answered.expect("the client's own timeout ends the request").unwrap_err();
    let io = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::TimedOut), "{err:?}");
    held.abort();
}
