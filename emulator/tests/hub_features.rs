//! Telemetry, C2D, methods, twin and isolation against the running emulator.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use connector_emulator::control::api::{C2dRequest, IdentitySpec, MethodInvocation, Throttle};
use serde_json::{json, Value};

#[tokio::test]
async fn telemetry_is_captured_with_its_properties() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let dev = env.connect("dev-1", &key).await;
    let topic = "devices/dev-1/messages/events/%24.mid=msg-1&%24.ct=application%2Fjson&%24.ce=utf-8&level=critical&temp%20alert=a%2Fb&flag";
    dev.publish(topic, r#"{"t":21.5}"#, 1).await.unwrap();
    let retained = paho_mqtt::MessageBuilder::new()
        .topic("devices/dev-1/messages/events/")
        .payload("r")
        .qos(0)
        .retained(true)
        .finalize();
    dev.client.publish(retained).await.unwrap();
    let msgs = wait_for(|| async { env.ctl.telemetry("dev-1", None).await.unwrap() }, |m| m.len() == 2).await;
    let m = &msgs[0];
    assert_eq!(m.payload.as_deref(), Some(r#"{"t":21.5}"#));
    assert_eq!(m.qos, 1);
    assert_eq!(m.system_properties.get("$.mid"), Some(&Some("msg-1".into())));
    assert_eq!(m.system_properties.get("$.ct"), Some(&Some("application/json".into())));
    assert_eq!(m.system_properties.get("$.ce"), Some(&Some("utf-8".into())));
    assert_eq!(m.properties.get("level"), Some(&Some("critical".into())));
    assert_eq!(m.properties.get("temp alert"), Some(&Some("a/b".into())));
    assert_eq!(m.properties.get("flag"), Some(&None));
    assert_eq!(m.annotations["iothub-connection-device-id"], "dev-1");
    assert!(m.annotations["iothub-connection-auth-method"].contains(r#""type":"sas""#));
    assert_eq!(msgs[1].properties.get("mqtt-retain"), Some(&Some("true".into())));
    env.ctl.clear_telemetry("dev-1", None).await.unwrap();
    assert!(env.ctl.telemetry("dev-1", None).await.unwrap().is_empty());
    dev.disconnect().await;
}

/// Polls `get` until `done` holds (the control API is the only way to observe the hub).
async fn wait_for<T, F, Fut>(get: F, done: impl Fn(&T) -> bool) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = get().await;
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out polling the control API");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn module_telemetry_and_will() {
    let env = Env::start();
    env.device("dev-1").await;
    let mkey = key_of(&env.ctl.put_identity("dev-1", Some("m1"), &IdentitySpec::default()).await.unwrap());
    let token = sas(&format!("{}/devices/dev-1/modules/m1", env.host()), &mkey, now() + 600, None);
    let m = env
        .connect_with("dev-1/m1", &hub_user(env.host(), "dev-1/m1"), Some(&token), None, true)
        .await
        .unwrap();
    m.publish("devices/dev-1/modules/m1/messages/events/%24.on=out1", "x", 1).await.unwrap();
    let msgs =
        wait_for(|| async { env.ctl.telemetry("dev-1", Some("m1")).await.unwrap() }, |m| m.len() == 1).await;
    assert_eq!(msgs[0].module_id.as_deref(), Some("m1"));
    assert_eq!(msgs[0].system_properties.get("$.on"), Some(&Some("out1".into())));
    assert!(env.ctl.telemetry("dev-1", None).await.unwrap().is_empty(), "device view excludes modules");
    m.disconnect().await;
}

#[tokio::test]
async fn c2d_is_delivered_with_properties_and_kept_until_puback() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let host = env.host().to_string();
    let token = sas(&format!("{host}/devices/dev-1"), &key, now() + 600, None);
    // Persistent session: subscribe, go away, get the message on reconnect.
    let dev = env.connect_with("dev-1", &hub_user(&host, "dev-1"), Some(&token), None, false).await.unwrap();
    assert_eq!(dev.subscribe("devices/dev-1/messages/devicebound/#", 1).await, 1);
    dev.disconnect().await;
    let mut props = BTreeMap::new();
    props.insert("k y".to_string(), Some("a&b=c".to_string()));
    props.insert("flag".to_string(), None);
    let req = C2dRequest {
        payload: Some("hello".into()),
        properties: props,
        message_id: Some("m-1".into()),
        correlation_id: Some("c-1".into()),
        content_type: Some("text/plain".into()),
        ..C2dRequest::default()
    };
    let accepted = env.ctl.send_c2d("dev-1", &req).await.unwrap();
    assert_eq!(accepted.pending, 1);
    assert_eq!(env.ctl.pending_c2d("dev-1").await.unwrap().len(), 1);
    let dev = env.connect_with("dev-1", &hub_user(&host, "dev-1"), Some(&token), None, false).await.unwrap();
    let msg = dev.recv("C2D after reconnect").await;
    assert_eq!(msg.payload_str(), "hello");
    assert_eq!(msg.qos(), paho_mqtt::QoS::AtLeastOnce);
    let topic = msg.topic();
    assert!(topic.starts_with("devices/dev-1/messages/devicebound/"), "{topic}");
    for part in [
        "%24.mid=m-1",
        "%24.cid=c-1",
        "%24.ct=text%2Fplain",
        "%24.to=%2Fdevices%2Fdev-1%2Fmessages%2FdeviceBound",
        "k%20y=a%26b%3Dc",
        "&flag",
    ] {
        assert!(topic.contains(part), "{part} missing in {topic}");
    }
    // PUBACK completes the message.
    wait_for(|| async { env.ctl.pending_c2d("dev-1").await.unwrap() }, |p| p.is_empty()).await;
    // Live delivery to a subscribed device.
    env.ctl
        .send_c2d("dev-1", &C2dRequest { payload: Some("second".into()), ..C2dRequest::default() })
        .await
        .unwrap();
    assert_eq!(dev.recv("live C2D").await.payload_str(), "second");
    dev.disconnect().await;
    // Modules get no C2D; unknown devices are 404.
    let err = env.ctl.send_c2d("ghost", &C2dRequest::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn c2d_queue_limit_and_clean_session() {
    let mut cfg = connector_emulator::EmulatorConfig::ephemeral();
    cfg.c2d_max_pending = 2;
    let env = Env::with(cfg);
    let key = env.device("dev-1").await;
    for i in 0..2 {
        env.ctl
            .send_c2d("dev-1", &C2dRequest { payload: Some(format!("m{i}")), ..C2dRequest::default() })
            .await
            .unwrap();
    }
    let err = env.ctl.send_c2d("dev-1", &C2dRequest::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    // Clean session: nothing arrives until the device subscribes, then both in order.
    let dev = env.connect("dev-1", &key).await;
    assert!(dev.nothing_within(Duration::from_millis(200)).await.is_none());
    dev.subscribe("devices/+/messages/devicebound/#", 1).await;
    assert_eq!(dev.recv("first queued C2D").await.payload_str(), "m0");
    assert_eq!(dev.recv("second queued C2D").await.payload_str(), "m1");
    dev.disconnect().await;
}

#[tokio::test]
async fn method_round_trip_timeout_and_offline() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let inv = MethodInvocation {
        timeout_ms: Some(2000),
        ..MethodInvocation::new("reboot", Some(json!({"delay": 1})))
    };
    let err = env.ctl.invoke("dev-1", None, &inv).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "offline device");
    let dev = env.connect("dev-1", &key).await;
    assert_eq!(dev.subscribe("$iothub/methods/POST/#", 0).await, 0);
    let ctl = env.ctl.clone();
    let call = tokio::spawn(async move { ctl.invoke("dev-1", None, &inv).await });
    let req = dev.recv("method request").await;
    assert!(req.topic().starts_with("$iothub/methods/POST/reboot/?$rid="), "{}", req.topic());
    assert_eq!(serde_json::from_slice::<Value>(req.payload()).unwrap(), json!({"delay": 1}));
    let rid = param(req.topic(), "$rid").unwrap();
    dev.publish(&format!("$iothub/methods/res/201/?$rid={rid}"), r#"{"ok":true}"#, 1).await.unwrap();
    let result = call.await.unwrap().unwrap();
    assert_eq!(result.status, 201);
    assert_eq!(result.payload, json!({"ok": true}));

    // No answer: 504 after the timeout.
    let inv = MethodInvocation { timeout_ms: Some(300), ..MethodInvocation::new("slow", None) };
    let err = env.ctl.invoke("dev-1", None, &inv).await.unwrap_err();
    assert_eq!(err.status(), Some(504));
    let late = dev.recv("the slow request").await;
    assert!(late.payload().is_empty());
    // A late answer is dropped, the connection stays up.
    let rid = param(late.topic(), "$rid").unwrap();
    dev.publish(&format!("$iothub/methods/res/200/?$rid={rid}"), "", 1).await.unwrap();
    assert!(dev.client.is_connected());
    // Out-of-range service timeout is refused.
    let inv = MethodInvocation { response_timeout_in_seconds: Some(1), ..MethodInvocation::new("m", None) };
    assert_eq!(env.ctl.invoke("dev-1", None, &inv).await.unwrap_err().status(), Some(400));
    dev.disconnect().await;
}

#[tokio::test]
async fn twin_get_patch_and_desired_push_with_versions() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let dev = env.connect("dev-1", &key).await;
    dev.subscribe("$iothub/twin/res/#", 0).await;
    dev.subscribe("$iothub/twin/PATCH/properties/desired/#", 0).await;

    dev.publish("$iothub/twin/GET/?$rid=1", "", 0).await.unwrap();
    let r = dev.recv("twin GET response").await;
    assert_eq!(r.topic(), "$iothub/twin/res/200/?$rid=1");
    let doc: Value = serde_json::from_slice(r.payload()).unwrap();
    assert_eq!(doc, json!({"desired": {"$version": 1}, "reported": {"$version": 1}}));

    dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=2", r#"{"battery":55,"o":{"a":1}}"#, 0)
        .await
        .unwrap();
    let r = dev.recv("reported PATCH response").await;
    assert_eq!(r.topic(), "$iothub/twin/res/204/?$rid=2&$version=2");
    assert!(r.payload().is_empty());
    dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=3", r#"{"o":{"a":null,"b":2}}"#, 0)
        .await
        .unwrap();
    assert_eq!(dev.recv("second PATCH").await.topic(), "$iothub/twin/res/204/?$rid=3&$version=3");

    let twin = env.ctl.patch_desired("dev-1", None, json!({"rate": 5, "route": null})).await.unwrap();
    assert_eq!(twin["properties"]["desired"]["$version"], 2);
    let push = dev.recv("desired patch").await;
    assert_eq!(push.topic(), "$iothub/twin/PATCH/properties/desired/?$version=2");
    assert_eq!(
        serde_json::from_slice::<Value>(push.payload()).unwrap(),
        json!({"rate": 5, "route": null, "$version": 2})
    );

    dev.publish("$iothub/twin/GET/?$rid=4", " ", 0).await.unwrap();
    let doc: Value = serde_json::from_slice(dev.recv("second GET").await.payload()).unwrap();
    assert_eq!(doc["desired"], json!({"rate": 5, "$version": 2}));
    assert_eq!(doc["reported"], json!({"battery": 55, "o": {"b": 2}, "$version": 3}));

    // The service view carries $metadata.
    let twin = env.ctl.twin("dev-1", None).await.unwrap();
    let meta = &twin["properties"]["reported"]["$metadata"];
    assert!(meta["$lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert!(meta["o"]["b"]["$lastUpdated"].is_string());
    assert_eq!(twin["properties"]["desired"]["$metadata"]["rate"]["$lastUpdatedVersion"], 2);

    // Errors: malformed JSON 400, invalid key 400, throttled 429 (versions unchanged).
    dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=5", "{not json", 0).await.unwrap();
    assert_eq!(dev.recv("400").await.topic(), "$iothub/twin/res/400/?$rid=5");
    dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=6", r#"{"a.b":1}"#, 0).await.unwrap();
    assert_eq!(dev.recv("400 key").await.topic(), "$iothub/twin/res/400/?$rid=6");
    env.ctl.throttle("dev-1", None, &Throttle { twin: true, connect: false, count: Some(1) }).await.unwrap();
    dev.publish("$iothub/twin/GET/?$rid=7", "", 0).await.unwrap();
    assert_eq!(dev.recv("429").await.topic(), "$iothub/twin/res/429/?$rid=7");
    dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=8", r#"{"x":1}"#, 0).await.unwrap();
    assert_eq!(dev.recv("after throttling").await.topic(), "$iothub/twin/res/204/?$rid=8&$version=4");
    assert!(dev.client.is_connected());
    dev.disconnect().await;
}

#[tokio::test]
async fn devices_never_see_each_others_traffic() {
    let env = Env::start();
    let key_a = env.device("dev-a").await;
    let key_b = env.device("dev-b").await;
    let a = env.connect("dev-a", &key_a).await;
    let b = env.connect("dev-b", &key_b).await;
    for d in [&a, &b] {
        d.subscribe("$iothub/twin/res/#", 0).await;
        d.subscribe("$iothub/methods/POST/#", 0).await;
        d.subscribe("$iothub/twin/PATCH/properties/desired/#", 0).await;
        d.subscribe("devices/+/messages/devicebound/#", 1).await;
    }
    // B cannot subscribe to A's C2D or to wildcards.
    assert_eq!(b.subscribe("devices/dev-a/messages/devicebound/#", 1).await, 0x80);
    assert_eq!(b.subscribe("#", 0).await, 0x80);
    assert_eq!(b.subscribe("$iothub/#", 0).await, 0x80);

    a.publish("$iothub/twin/GET/?$rid=same", "", 0).await.unwrap();
    assert_eq!(a.recv("A's twin response").await.topic(), "$iothub/twin/res/200/?$rid=same");
    env.ctl.patch_desired("dev-a", None, json!({"only": "a"})).await.unwrap();
    assert!(a.recv("A's desired patch").await.topic().starts_with("$iothub/twin/PATCH/properties/desired/"));
    env.ctl
        .send_c2d("dev-a", &C2dRequest { payload: Some("for a".into()), ..C2dRequest::default() })
        .await
        .unwrap();
    assert_eq!(a.recv("A's C2D").await.payload_str(), "for a");

    let ctl = env.ctl.clone();
    let inv = MethodInvocation { timeout_ms: Some(1500), ..MethodInvocation::new("ping", None) };
    let call = tokio::spawn(async move { ctl.invoke("dev-a", None, &inv).await });
    let req = a.recv("A's method request").await;
    let rid = param(req.topic(), "$rid").unwrap();
    // B answers with A's $rid: it must not complete A's call.
    b.publish(&format!("$iothub/methods/res/200/?$rid={rid}"), r#""from b""#, 0).await.unwrap();
    a.publish(&format!("$iothub/methods/res/200/?$rid={rid}"), r#""from a""#, 0).await.unwrap();
    assert_eq!(call.await.unwrap().unwrap().payload, json!("from a"));

    // Everything A got was A's; B got nothing.
    assert!(b.nothing_within(Duration::from_millis(200)).await.is_none(), "B received A's traffic");
    // B publishing on A's telemetry topic is disconnected, and nothing is recorded.
    b.publish("devices/dev-a/messages/events/", "spoof", 1).await.ok();
    b.lost("B is disconnected for publishing as A").await;
    assert!(env.ctl.telemetry("dev-a", None).await.unwrap().is_empty());
    assert!(a.client.is_connected());
    a.disconnect().await;
}

#[tokio::test]
async fn refused_publishes_close_the_connection() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    for (what, topic, qos, size) in [
        ("QoS 2", "devices/dev-1/messages/events/", 2, 1),
        ("unknown topic", "some/topic", 1, 1),
        ("oversized message", "devices/dev-1/messages/events/", 1, 256 * 1024 + 1),
    ] {
        let dev = env.connect("dev-1", &key).await;
        let _ = dev.publish(topic, vec![b'x'; size], qos).await;
        dev.lost(what).await;
    }
    assert!(env.ctl.telemetry("dev-1", None).await.unwrap().is_empty());
}
