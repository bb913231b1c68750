//! The TwinActor against the emulator over TLS: get, report, desired patches with their
//! `$version`, catch-up after a reconnect, 429 throttling with backoff, timeouts, malformed
//! patches, supervision, and two devices that never see each other's twin traffic.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use connector_actors::messages::InjectPanic;
use connector_actors::twin::{DesiredUpdate, GetTwin, ReportState, TwinRetry};
use connector_actors::{Connector, GetState, TwinError, TwinHandle};
use connector_core::{BackoffPolicy, ConnectionEvent, Jitter, ProviderError};
use connector_emulator::control::api::{RefuseConnect, Throttle};
use connector_emulator::EmulatorHandle;
use futures::{FutureExt, Stream, StreamExt};
use serde_json::json;

use common::{device, fast_backoff, sample, start, WAIT};

/// Three retries 20–100 ms apart.
fn fast_retry() -> TwinRetry {
    TwinRetry {
        backoff: BackoffPolicy {
            min: Duration::from_millis(20),
            max: Duration::from_millis(100),
            stable_after: Duration::MAX,
            jitter: Jitter::Full,
        },
        max_retries: 3,
    }
}

/// A connector for a new device, with a desired watcher registered before it connects.
async fn connect(
    emu: &EmulatorHandle,
    id: &str,
) -> (Connector, TwinHandle, impl Stream<Item = DesiredUpdate> + Unpin) {
    let conn = Connector::builder(device(emu, id).await)
        .backoff(fast_backoff())
        .operation_timeout(Duration::from_secs(5))
        .twin_retry(fast_retry())
        .start();
    let twin = conn.twin().expect("the Azure provider has a twin");
    let (_, desired) = twin.desired(16);
    conn.wait_connected(WAIT).await.unwrap();
    (conn, twin, desired)
}

async fn next_update(s: &mut (impl Stream<Item = DesiredUpdate> + Unpin), what: &str) -> DesiredUpdate {
    tokio::time::timeout(WAIT, s.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("stream ended waiting for {what}"))
}

async fn wait_event(
    events: &mut (impl Stream<Item = ConnectionEvent> + Unpin),
    what: &str,
    pred: impl Fn(&ConnectionEvent) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if pred(&e) {
                return;
            }
        }
        panic!("event stream ended waiting for {what}");
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[actix_rt::test]
async fn get_returns_the_document_and_reported_patches_reach_the_twin() {
    let emu = start();
    let (conn, twin, _desired) = connect(&emu, "twin-get").await;
    // The design's actor form and the handle form.
    let doc = twin.send(GetTwin).await.unwrap().unwrap();
    println!("document: {}", doc.body);
    let reported_before = doc.reported_version().expect("reported $version");
    assert!(doc.desired_version().is_some(), "desired $version in {}", doc.body);

    let patch = json!({"batteryLevel": 60, "firmware": {"version": "1.2.3"}});
    let r = twin.report(&patch).await.unwrap();
    assert_eq!(r.version, Some(reported_before + 1), "the reported version goes up by one");

    let service = emu.control().twin("twin-get", None).await.unwrap();
    let reported = &service["properties"]["reported"];
    println!("service-side reported: {reported}");
    assert_eq!(reported["batteryLevel"], json!(60));
    assert_eq!(reported["firmware"]["version"], json!("1.2.3"));
    assert_eq!(reported["$version"], json!(reported_before + 1));
    assert!(reported["$metadata"]["batteryLevel"]["$lastUpdated"].is_string(), "{reported}");

    // Read back through the device side too; `null` deletes.
    let r2 = twin.send(ReportState::json(&json!({"batteryLevel": null}))).await.unwrap().unwrap();
    assert_eq!(r2.version, Some(reported_before + 2));
    let doc = twin.get().await.unwrap();
    assert_eq!(doc.reported().unwrap().get("batteryLevel"), None);
    assert_eq!(doc.reported().unwrap()["firmware"]["version"], json!("1.2.3"));
    assert_eq!(sample(&conn, "connector_twin_requests_total", &[("op", "report"), ("outcome", "ok")]), 2.0);
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn desired_patches_reach_watchers_with_their_version() {
    let emu = start();
    let (conn, twin, mut desired) = connect(&emu, "twin-desired").await;
    // The first connection delivers the whole desired section.
    let initial = next_update(&mut desired, "the initial desired state").await;
    assert!(initial.catch_up);
    let v0 = initial.version.unwrap();

    emu.control().patch_desired("twin-desired", None, json!({"fan": "on", "target": 21.5})).await.unwrap();
    let u = next_update(&mut desired, "the desired patch").await;
    println!("delivered: {u:?}");
    assert_eq!(u.version, Some(v0 + 1));
    assert!(!u.catch_up);
    assert_eq!(u.body["fan"], json!("on"));
    assert_eq!(u.body["target"], json!(21.5));
    assert_eq!(twin.last_desired_version(), Some(v0 + 1));
    assert_eq!(sample(&conn, "connector_twin_desired_version", &[]), (v0 + 1) as f64);
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn changes_made_while_offline_are_caught_up_after_the_reconnect() {
    let emu = start();
    let (conn, twin, mut desired) = connect(&emu, "twin-catchup").await;
    let v0 = next_update(&mut desired, "the initial desired state").await.version.unwrap();
    let mut events = conn.events(64);

    // Hold the device offline: drop it and refuse its reconnects.
    let ctl = emu.control();
    ctl.refuse_connect("twin-catchup", None, &RefuseConnect { code: 3, count: None }).await.unwrap();
    ctl.drop_connection("twin-catchup", None).await.unwrap();
    wait_event(&mut events, "the disconnect", |e| matches!(e, ConnectionEvent::Disconnected { .. })).await;
    // Requests made while offline wait for the next link (within their timeout).
    let t = twin.clone();
    let offline_report = actix_rt::spawn(async move { t.report(&json!({"whileOffline": true})).await });
    let t = twin.clone();
    let offline_get = actix_rt::spawn(async move { t.get().await });
    ctl.patch_desired("twin-catchup", None, json!({"mode": "eco"})).await.unwrap();
    ctl.patch_desired("twin-catchup", None, json!({"interval": 30})).await.unwrap();
    wait_event(&mut events, "a refused reconnect", |e| matches!(e, ConnectionEvent::ConnectionFailed { .. }))
        .await;
    ctl.clear_faults("twin-catchup", None).await.unwrap();
    wait_event(&mut events, "the reconnect", |e| matches!(e, ConnectionEvent::Connected { .. })).await;

    let u = next_update(&mut desired, "the catch-up").await;
    println!("delivered after the reconnect: {u:?}");
    assert!(u.catch_up, "{u:?}");
    assert_eq!(u.version, Some(v0 + 2), "the newest version");
    assert_eq!(u.body["mode"], json!("eco"));
    assert_eq!(u.body["interval"], json!(30));
    assert!(offline_report.await.unwrap().unwrap().version.is_some());
    let doc = offline_get.await.unwrap().unwrap();
    assert_eq!(doc.desired_version(), Some(v0 + 2));
    let service = ctl.twin("twin-catchup", None).await.unwrap();
    assert_eq!(service["properties"]["reported"]["whileOffline"], json!(true));
    // Nothing else was pending: the next patch follows on directly.
    ctl.patch_desired("twin-catchup", None, json!({"mode": "boost"})).await.unwrap();
    let u = next_update(&mut desired, "the patch after the catch-up").await;
    assert_eq!((u.version, u.catch_up), (Some(v0 + 3), false));
    assert_eq!(twin.last_desired_version(), Some(v0 + 3));
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn throttled_requests_are_retried_with_backoff_then_fail_typed() {
    let emu = start();
    let (conn, twin, mut desired) = connect(&emu, "twin-429").await;
    // Let the connection's own catch-up GET complete before throttling.
    next_update(&mut desired, "the initial desired state").await;
    let ctl = emu.control();

    ctl.throttle("twin-429", None, &Throttle { twin: true, connect: false, count: Some(2) }).await.unwrap();
    let doc = twin.get().await.expect("the GET succeeds after two 429s");
    assert!(doc.desired_version().is_some());
    assert_eq!(
        sample(&conn, "connector_twin_requests_total", &[("op", "get"), ("outcome", "throttled_retry")]),
        2.0
    );

    ctl.throttle("twin-429", None, &Throttle { twin: true, connect: false, count: None }).await.unwrap();
    match twin.get().await {
        Err(TwinError::Throttled { attempts }) => assert_eq!(attempts, 4, "one attempt and three retries"),
        other => panic!("expected Throttled, got {other:?}"),
    }
    match twin.report(&json!({"a": 1})).await {
        Err(TwinError::Throttled { attempts: 4 }) => {}
        other => panic!("expected Throttled, got {other:?}"),
    }
    ctl.clear_faults("twin-429", None).await.unwrap();
    assert!(twin.report(&json!({"a": 1})).await.unwrap().version.is_some());
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn a_request_without_an_answer_times_out() {
    let emu = start();
    let provider = device(&emu, "twin-timeout").await;
    // Never connected: the request waits for a link that does not come.
    emu.control()
        .refuse_connect("twin-timeout", None, &RefuseConnect { code: 3, count: None })
        .await
        .unwrap();
    let conn = Connector::builder(provider)
        .backoff(fast_backoff())
        .operation_timeout(Duration::from_millis(500))
        .start();
    let twin = conn.twin().unwrap();
    let got = tokio::time::timeout(WAIT, twin.get()).await.expect("no hang");
    assert_eq!(got, Err(TwinError::Timeout { after: Duration::from_millis(500) }));
    let got = tokio::time::timeout(WAIT, twin.report(&json!({"x": 1}))).await.expect("no hang");
    assert!(matches!(got, Err(TwinError::Timeout { .. })), "{got:?}");
    assert!(!conn.is_connected());
    conn.stop().await;
    // After the stop, requests fail at once.
    let got = tokio::time::timeout(WAIT, twin.get()).await.expect("no hang");
    assert_eq!(got, Err(TwinError::Stopped));
    emu.shutdown();
}

/// What a malformed patch must fail with.
type Expect = fn(&TwinError) -> bool;

#[actix_rt::test]
async fn malformed_patches_are_typed_errors() {
    let emu = start();
    let (conn, twin, _desired) = connect(&emu, "twin-bad").await;
    let deep = (0..12).fold(json!(1), |v, _| json!({ "n": v }));
    let table: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("array", b"[1,2]".to_vec(), |e| matches!(e, TwinError::Codec(ProviderError::Unsupported { .. }))),
        ("string", b"\"text\"".to_vec(), |e| {
            matches!(e, TwinError::Codec(ProviderError::Unsupported { .. }))
        }),
        ("empty", Vec::new(), |e| matches!(e, TwinError::InvalidJson(_))),
        ("truncated", b"{\"a\":".to_vec(), |e| matches!(e, TwinError::InvalidJson(_))),
        ("invalid UTF-8", b"{\"a\":\"\xff\xfe\"}".to_vec(), |e| matches!(e, TwinError::InvalidJson(_))),
        ("bad key (hub: 400)", br#"{"$bad":1}"#.to_vec(), |e| {
            matches!(e, TwinError::Status { status: 400, .. })
        }),
        ("deeper than 10 (hub: 400)", deep.to_string().into_bytes(), |e| {
            matches!(e, TwinError::Status { status: 400, .. })
        }),
    ];
    for (name, body, want) in table {
        match twin.report_bytes(body).await {
            Err(e) => {
                println!("{name}: {e} ({e:?})");
                assert!(want(&e), "{name}: {e:?}");
            }
            Ok(r) => panic!("{name}: accepted ({r:?})"),
        }
    }
    // The connection and the actor are fine afterwards.
    assert!(twin.report(&json!({"ok": true})).await.is_ok());
    assert!(conn.is_connected());
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn a_restarted_twin_actor_keeps_its_watchers() {
    let emu = start();
    let (conn, twin, mut desired) = connect(&emu, "twin-restart").await;
    let v0 = next_update(&mut desired, "the initial desired state").await.version.unwrap();
    let old = twin.addr();
    // The reply channel closes when the actor dies; its guard has told the supervisor by then,
    // and the supervisor handles that before the GetState sent after it.
    assert!(old.send(InjectPanic).await.is_err());
    conn.connection().send(GetState).await.unwrap();
    assert!(!old.connected());
    assert!(twin.addr().connected(), "a new TwinActor");
    assert_eq!(sample(&conn, "connector_actor_restarts_total", &[("actor", "twin")]), 1.0);

    emu.control().patch_desired("twin-restart", None, json!({"after": "restart"})).await.unwrap();
    // The new actor's catch-up GET races the patch: the change arrives either as the patch
    // or inside the catch-up, exactly once.
    let u = next_update(&mut desired, "the change through the restarted actor").await;
    println!("delivered after the restart: {u:?}");
    assert_eq!(u.version, Some(v0 + 1));
    assert_eq!(u.body["after"], json!("restart"));
    assert_eq!(twin.last_desired_version(), Some(v0 + 1));
    assert!(twin.get().await.is_ok());
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn two_devices_never_see_each_others_twin_traffic() {
    let emu = start();
    let (conn_a, twin_a, mut desired_a) = connect(&emu, "twin-a").await;
    let (conn_b, twin_b, mut desired_b) = connect(&emu, "twin-b").await;
    let va = next_update(&mut desired_a, "A's initial desired state").await.version.unwrap();
    next_update(&mut desired_b, "B's initial desired state").await;

    emu.control().patch_desired("twin-a", None, json!({"only": "a"})).await.unwrap();
    twin_a.report(&json!({"from": "a"})).await.unwrap();
    let u = next_update(&mut desired_a, "A's patch").await;
    assert_eq!(u.version, Some(va + 1));
    // A round trip on B's own connection: anything the hub had sent B before it would have
    // been routed before this answer.
    let doc_b = twin_b.get().await.unwrap();
    assert_eq!(doc_b.desired().unwrap().get("only"), None);
    assert_eq!(doc_b.reported().unwrap().get("from"), None);
    assert!(desired_b.next().now_or_never().is_none(), "B saw nothing of A's desired patch");
    conn_a.stop().await;
    conn_b.stop().await;
    emu.shutdown();
}
