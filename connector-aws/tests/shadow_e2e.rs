//! Device Shadows through the real actor tree (the TwinActor over the AWS provider's
//! shadow codec) against the emulator's AWS IoT endpoint, over mutual TLS: classic and
//! named shadows side by side, deltas from a cloud application, the service's semantics
//! (merge, null delete, nested delta, version conflict, oversized documents), delete,
//! the documents stream, and the delta a reconnect catches up on.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use connector_actors::twin::DesiredUpdate;
use connector_actors::TwinError;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

async fn next_update(s: &mut (impl Stream<Item = DesiredUpdate> + Unpin), what: &str) -> DesiredUpdate {
    match tokio::time::timeout(WAIT, s.next()).await {
        Ok(Some(u)) => u,
        Ok(None) => panic!("desired stream ended waiting for {what}"),
        Err(_) => panic!("no desired update within {WAIT:?}: {what}"),
    }
}

#[actix_rt::test]
async fn classic_and_named_shadows_side_by_side() {
    let env = AwsEnv::start().await;
    let dev = env.device("lamp-1").await;
    let twin = dev.conn.twin().expect("AWS has shadows");

    let classic = twin.report_shadow(None, &json!({"power": "on"})).await.unwrap();
    let named = twin.report_shadow(Some("config"), &json!({"interval": 5})).await.unwrap();
    assert_eq!((classic.version, named.version), (Some(1), Some(1)), "two independent documents");
    twin.report_shadow(Some("config"), &json!({"interval": 10})).await.unwrap();

    let c = twin.get_shadow(None).await.unwrap();
    let n = twin.get_shadow(Some("config")).await.unwrap();
    assert_eq!(c.reported(), Some(&json!({"power": "on"})));
    assert_eq!(n.reported(), Some(&json!({"interval": 10})));
    assert_eq!((c.version, n.version), (Some(1), Some(2)));
    // The service agrees.
    let stored = env.ctl.aws_shadow("lamp-1", Some("config")).await.unwrap();
    assert_eq!(stored["state"]["reported"], json!({"interval": 10}));
    assert_eq!(env.ctl.aws_shadow("lamp-1", None).await.unwrap()["state"]["reported"]["power"], "on");
    dev.conn.stop().await;
}

#[actix_rt::test]
async fn a_cloud_desired_change_arrives_as_a_delta_per_document() {
    let env = AwsEnv::start().await;
    let dev = env.device("lamp-2").await;
    let twin = dev.conn.twin().unwrap();
    let (_, mut classic) = twin.shadow_desired(None, 8).await.unwrap();
    let (_, mut named) = twin.shadow_desired(Some("config"), 8).await.unwrap();
    twin.report_shadow(None, &json!({"color": "blue"})).await.unwrap();
    twin.report_shadow(Some("config"), &json!({"interval": 5})).await.unwrap();

    env.ctl.aws_update_desired("lamp-2", None, json!({"color": "red"})).await.unwrap();
    let u = next_update(&mut classic, "the classic delta").await;
    assert_eq!((u.shadow.as_deref(), &u.body, u.catch_up), (None, &json!({"color": "red"}), false));

    env.ctl.aws_update_desired("lamp-2", Some("config"), json!({"interval": 60})).await.unwrap();
    let u = next_update(&mut named, "the named delta").await;
    assert_eq!((u.shadow.as_deref(), &u.body), (Some("config"), &json!({"interval": 60})));
    assert_eq!(twin.shadow_version(Some("config")), u.version);

    // Reporting the desired value clears the delta.
    twin.report_shadow(None, &json!({"color": "red"})).await.unwrap();
    let doc = twin.get_shadow(None).await.unwrap();
    assert!(doc.body["state"].get("delta").is_none(), "{}", doc.body);
    dev.conn.stop().await;
}

#[actix_rt::test]
async fn shadow_semantics_merge_null_delete_nested_delta_conflict_and_size() {
    let env = AwsEnv::start().await;
    let dev = env.device("lamp-3").await;
    let twin = dev.conn.twin().unwrap();

    let v1 = twin
        .update_shadow(
            None,
            &json!({"desired": {"a": {"b": 1, "c": 2}, "list": [1, 2]}, "reported": {"a": {"b": 1}}}),
            None,
        )
        .await
        .unwrap();
    // Objects merge, arrays replace, null deletes.
    twin.update_shadow(None, &json!({"desired": {"a": {"c": 3}, "list": [9], "gone": null}}), None)
        .await
        .unwrap();
    twin.update_shadow(None, &json!({"desired": {"a": {"b": null}}}), None).await.unwrap();
    let doc = twin.get_shadow(None).await.unwrap();
    assert_eq!(doc.desired(), Some(&json!({"a": {"c": 3}, "list": [9]})));
    // The delta is nested: only what differs from reported.
    assert_eq!(doc.body["state"]["delta"], json!({"a": {"c": 3}, "list": [9]}));
    let current = doc.version.unwrap();
    assert!(current > v1.version.unwrap());

    // An update at a stale version is a 409 and changes nothing.
    let stale = twin.update_shadow(None, &json!({"desired": {"x": 1}}), v1.version).await;
    assert!(matches!(stale, Err(TwinError::Status { status: 409, .. })), "{stale:?}");
    // At the current version it applies.
    let ok = twin.update_shadow(None, &json!({"desired": {"x": 1}}), Some(current)).await.unwrap();
    assert_eq!(ok.version, Some(current + 1));

    // An oversized document (above 8 KB) is refused with a typed error, and nothing is lost.
    let big = json!({"reported": {"blob": "x".repeat(9 * 1024)}});
    let r = twin.update_shadow(None, &big, None).await;
    assert!(
        matches!(r, Err(TwinError::Status { status: 413, .. }) | Err(TwinError::Codec(_))),
        "oversized: {r:?}"
    );
    // Not JSON at all: refused before sending.
    let bad =
        twin.send(connector_actors::twin::UpdateShadow { shadow: None, state: "{".into(), version: None });
    assert!(matches!(bad.await.unwrap(), Err(TwinError::InvalidJson(_))));
    assert_eq!(
        twin.get_shadow(None).await.unwrap().version,
        Some(current + 1),
        "the refusals changed nothing"
    );
    dev.conn.stop().await;
}

#[actix_rt::test]
async fn delete_and_the_documents_stream() {
    let env = AwsEnv::start().await;
    let dev = env.device("lamp-4").await;
    let twin = dev.conn.twin().unwrap();
    let (_, mut docs) = twin.documents(8);
    twin.report_shadow(Some("fw"), &json!({"version": "1.0"})).await.unwrap();
    let d = tokio::time::timeout(WAIT, docs.next()).await.unwrap().unwrap();
    assert_eq!(d.shadow.as_deref(), Some("fw"));
    let body: Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(body["current"]["state"]["reported"]["version"], "1.0");

    twin.delete_shadow(Some("fw")).await.unwrap();
    let gone = twin.get_shadow(Some("fw")).await;
    assert!(matches!(gone, Err(TwinError::Status { status: 404, .. })), "{gone:?}");
    let again = twin.delete_shadow(Some("fw")).await;
    assert!(matches!(again, Err(TwinError::Status { status: 404, .. })), "{again:?}");
    dev.conn.stop().await;
}

#[actix_rt::test]
async fn a_delta_changed_while_offline_is_delivered_after_the_reconnect() {
    let env = AwsEnv::start().await;
    let dev = env.device("lamp-5").await;
    let twin = dev.conn.twin().unwrap();
    let (_, mut classic) = twin.shadow_desired(None, 8).await.unwrap();
    let (_, mut named) = twin.shadow_desired(Some("config"), 8).await.unwrap();
    twin.report_shadow(None, &json!({"mode": "eco"})).await.unwrap();
    twin.report_shadow(Some("config"), &json!({"interval": 5})).await.unwrap();

    // Keep the device out, drop it, and change both documents while it is away.
    let refuse =
        connector_emulator::control::aws_api::AwsFaults { refuse_connect: Some(3), ..Default::default() };
    env.ctl.aws_faults(&dev.client_id, &refuse).await.unwrap();
    let mut events = dev.conn.events(16);
    env.ctl.aws_drop(&dev.client_id).await.unwrap();
    wait_disconnected(&mut events).await;
    env.ctl.aws_update_desired("lamp-5", None, json!({"mode": "boost"})).await.unwrap();
    env.ctl.aws_update_desired("lamp-5", Some("config"), json!({"interval": 1})).await.unwrap();
    env.ctl.aws_faults(&dev.client_id, &Default::default()).await.unwrap();

    // The reconnect's catch-up delivers both deltas (no delta was pushed while offline).
    let u = next_update(&mut classic, "the classic catch-up").await;
    assert_eq!((&u.body, u.catch_up), (&json!({"mode": "boost"}), true));
    let u = next_update(&mut named, "the named catch-up").await;
    assert_eq!((u.shadow.as_deref(), &u.body, u.catch_up), (Some("config"), &json!({"interval": 1}), true));
    // The named shadow's subscriptions were made again: a new change arrives live.
    env.ctl.aws_update_desired("lamp-5", Some("config"), json!({"interval": 2})).await.unwrap();
    let u = next_update(&mut named, "a live named delta after the reconnect").await;
    assert_eq!((&u.body, u.catch_up), (&json!({"interval": 2}), false));
    dev.conn.stop().await;
}

#[actix_rt::test]
async fn throttled_shadow_requests_are_retried() {
    let env = AwsEnv::start().await;
    let dev = env.device("lamp-6").await;
    let twin = dev.conn.twin().unwrap();
    let f = connector_emulator::control::aws_api::AwsFaults {
        throttle_shadow: true,
        count: Some(1),
        ..Default::default()
    };
    env.ctl.aws_faults(&dev.client_id, &f).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), twin.report_shadow(None, &json!({"t": 1})))
        .await
        .expect("a throttled request ends");
    assert_eq!(r.unwrap().version, Some(1), "answered after the 429 retry");
    dev.conn.stop().await;
}
