//! A third cloud plugs in without touching `actors`: a test-only provider for a
//! ThingsBoard-style device API, over mosquitto, with a small scripted platform on the other
//! side. What the provider had to write is this file's `ThingsBoard` type: its topics, its
//! inbound classification, its RPC answer and its attribute codec — nothing else.
//!
//! The API, as ThingsBoard's MQTT device API has it: telemetry on `v1/devices/me/telemetry`;
//! client attributes published to `v1/devices/me/attributes` and never answered; attribute
//! requests on `v1/devices/me/attributes/request/{id}` answered on
//! `…/attributes/response/{id}` with `{"client":…,"shared":…}`; shared-attribute pushes
//! without a version; server-side RPC on `v1/devices/me/rpc/request/{id}` answered on
//! `…/rpc/response/{id}`. One deviation: pushes arrive on `v1/devices/me/attributes/shared`
//! instead of `v1/devices/me/attributes`, because mosquitto (unlike ThingsBoard) would
//! route the device's own attribute reports back to it on the shared topic.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use connector_actors::methods::{MethodCall, MethodResponse};
use connector_actors::Connector;
use connector_core::provider::StateCodec;
use connector_core::{
    ConnectParams, ConnectionEvent, DesiredPatch, Inbound, InboundMessage, MethodRequest, MqttOptions,
    MqttProvider, OutboundPacket, Provider, ProviderError, Publish, QoS, StateResponse, StateSections,
    SubscriptionSpec, WireProperties,
};
use futures::Stream;
use serde_json::{json, Value};
use test_support::Mosquitto;

const TELEMETRY: &str = "v1/devices/me/telemetry";
const ATTRIBUTES: &str = "v1/devices/me/attributes";
const SHARED: &str = "v1/devices/me/attributes/shared";
const ATTR_REQUEST: &str = "v1/devices/me/attributes/request/";
const ATTR_RESPONSE: &str = "v1/devices/me/attributes/response/";
const RPC_REQUEST: &str = "v1/devices/me/rpc/request/";
const RPC_RESPONSE: &str = "v1/devices/me/rpc/response/";

/// The third provider: plain MQTT underneath (connect parameters, publishes), the device
/// API's topics on top.
struct ThingsBoard {
    mqtt: MqttProvider,
}

fn packet(topic: String, payload: impl Into<Bytes>) -> OutboundPacket {
    OutboundPacket {
        topic,
        payload: payload.into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WireProperties::default(),
    }
}

impl Provider for ThingsBoard {
    fn name(&self) -> &'static str {
        "thingsboard"
    }
    fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError> {
        self.mqtt.connect_params(now)
    }
    fn telemetry_topic(&self, _: &Publish) -> Result<String, ProviderError> {
        Ok(TELEMETRY.into())
    }
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        [format!("{RPC_REQUEST}+"), SHARED.to_owned()]
            .into_iter()
            .map(|filter| SubscriptionSpec { filter, qos: QoS::AtLeastOnce })
            .collect()
    }
    fn classify(&self, m: InboundMessage) -> Inbound {
        if let Some(id) = m.topic.strip_prefix(RPC_REQUEST) {
            let Ok(v) = serde_json::from_slice::<Value>(&m.payload) else {
                return Inbound::Malformed {
                    topic: m.topic.clone(),
                    reason: "RPC request is not JSON".into(),
                };
            };
            return Inbound::MethodRequest(MethodRequest {
                name: v["method"].as_str().unwrap_or_default().to_owned(),
                request_id: id.to_owned(),
                payload: Bytes::from(v["params"].to_string()),
            });
        }
        if let Some(id) = m.topic.strip_prefix(ATTR_RESPONSE) {
            // The platform's `{"client":…,"shared":…}` as the tree's document: shared
            // attributes are what the platform wants (desired), client ones what the device
            // said (reported). No version: the platform has none.
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            let doc = json!({"desired": v["shared"], "reported": v["client"]});
            return Inbound::StateResponse(StateResponse {
                request_id: id.to_owned(),
                status: 200,
                version: None,
                body: Bytes::from(doc.to_string()),
            });
        }
        if m.topic == SHARED {
            return Inbound::DesiredPatch(DesiredPatch {
                shadow: None,
                version: None,
                body: m.payload.clone(),
            });
        }
        Inbound::Message(m)
    }
    fn method_response(
        &self,
        request_id: &str,
        _status: u16,
        payload: Bytes,
    ) -> Result<OutboundPacket, ProviderError> {
        Ok(packet(format!("{RPC_RESPONSE}{request_id}"), payload))
    }
    fn state(&self) -> Option<&dyn StateCodec> {
        Some(self)
    }
}

impl StateCodec for ThingsBoard {
    /// The translated `{"desired": shared, "reported": client}`; no versions; pushes are
    /// patches of the shared attributes, so a catch-up delivers all of them.
    fn read_document(&self, document: &Value, _version: Option<u64>) -> StateSections {
        let desired = document.get("desired").filter(|v| !v.is_null()).cloned();
        StateSections {
            catch_up: desired.clone(),
            desired,
            reported: document.get("reported").filter(|v| !v.is_null()).cloned(),
            desired_version: None,
            reported_version: None,
        }
    }
    fn get(&self, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        Ok(packet(format!("{ATTR_REQUEST}{request_id}"), r#"{"clientKeys":"","sharedKeys":""}"#))
    }
    fn report(&self, _request_id: &str, patch: &[u8]) -> Result<OutboundPacket, ProviderError> {
        Ok(packet(ATTRIBUTES.to_owned(), Bytes::copy_from_slice(patch)))
    }
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        vec![SubscriptionSpec { filter: format!("{ATTR_RESPONSE}+"), qos: QoS::AtLeastOnce }]
    }
    fn reports_answered(&self) -> bool {
        false
    }
}

/// The platform: answers attribute requests from its shared/client store, records
/// telemetry and client attributes, sends RPCs and shared-attribute pushes.
struct Platform {
    conn: Connector,
    inbox: std::pin::Pin<Box<dyn Stream<Item = Inbound>>>,
}

impl Platform {
    async fn start(url: &str) -> Platform {
        let conn = Connector::builder(provider(url, "tb-platform")).backoff(fast_backoff()).start();
        conn.wait_connected(WAIT).await.unwrap();
        let sub = conn.subscriber();
        let mut streams = Vec::new();
        for f in [
            TELEMETRY.to_owned(),
            ATTRIBUTES.to_owned(),
            format!("{ATTR_REQUEST}+"),
            format!("{RPC_RESPONSE}+"),
        ] {
            streams.push(sub.stream(f, QoS::AtLeastOnce, 64).await.unwrap().1);
        }
        Platform { conn, inbox: Box::pin(futures::stream::select_all(streams)) }
    }

    async fn next(&mut self, what: &str) -> (String, Value) {
        let m = next_within(&mut self.inbox, WAIT, what).await;
        let Inbound::Message(m) = m else { panic!("{what}: {m:?}") };
        (m.topic.clone(), serde_json::from_slice(&m.payload).unwrap_or(Value::Null))
    }

    async fn publish(&self, topic: String, body: &Value) {
        self.conn
            .publisher()
            .publish(Publish::to_topic(topic, body.to_string()).qos(QoS::AtLeastOnce))
            .await
            .unwrap();
    }

    /// Answers the next attribute request with `shared` (and the client attributes it was told).
    async fn answer_attributes(&mut self, shared: &Value, client: &Value) {
        let (topic, _) = self.next("an attribute request").await;
        let id =
            topic.strip_prefix(ATTR_REQUEST).unwrap_or_else(|| panic!("not a request: {topic}")).to_owned();
        self.publish(format!("{ATTR_RESPONSE}{id}"), &json!({"shared": shared, "client": client})).await;
    }
}

async fn next_desired(
    s: &mut (impl Stream<Item = connector_actors::twin::DesiredUpdate> + Unpin),
    what: &str,
) -> connector_actors::twin::DesiredUpdate {
    next_within(s, WAIT, what).await
}

#[actix_rt::test]
async fn a_thingsboard_style_provider_plugs_into_the_tree() {
    let Some(broker) = Mosquitto::start() else { return };
    let mut platform = Platform::start(&broker.url()).await;
    let tb = ThingsBoard {
        mqtt: MqttProvider::new(
            MqttOptions::new(broker.url(), test_support::unique_client_id("tb-device"))
                .credentials("ACCESS_TOKEN", ""),
        )
        .unwrap(),
    };
    let (tx, mut events) = tokio::sync::mpsc::channel(64);
    let device = Connector::builder(tb)
        .backoff(fast_backoff())
        // Short, so that a report waiting for an answer that never comes fails the test.
        .operation_timeout(Duration::from_secs(2))
        .events_to(tx)
        .start();
    let twin = device.twin().expect("the provider has a state codec");
    let (_, mut desired) = twin.desired(16);
    device
        .methods()
        .register("double", |call: MethodCall| async move {
            let n = call.json::<Value>().ok().and_then(|v| v["n"].as_i64()).unwrap_or(0);
            MethodResponse::ok(json!({"n": n * 2}))
        })
        .unwrap();
    device.wait_connected(WAIT).await.unwrap();
    // The first connection's catch-up: the platform's attributes, versionless.
    platform.answer_attributes(&json!({"mode": "eco"}), &json!({})).await;
    let u = next_desired(&mut desired, "the first catch-up").await;
    assert_eq!((u.body, u.version, u.catch_up), (json!({"mode": "eco"}), None, true));

    // Telemetry on the platform's topic.
    device.publisher().publish(Publish::telemetry(r#"{"t":21.5}"#).qos(QoS::AtLeastOnce)).await.unwrap();
    assert_eq!(platform.next("telemetry").await, (TELEMETRY.to_owned(), json!({"t": 21.5})));

    // Client attributes: complete on the broker's PUBACK, nobody answers.
    let r = twin.report(&json!({"firmware": "1.0"})).await.expect("an unanswered report completes");
    assert_eq!(r.version, None);
    assert_eq!(platform.next("client attributes").await, (ATTRIBUTES.to_owned(), json!({"firmware": "1.0"})));

    // An attribute request answered by the platform.
    let get = actix_rt::spawn({
        let twin = twin.clone();
        async move { twin.get().await }
    });
    platform.answer_attributes(&json!({"mode": "eco"}), &json!({"firmware": "1.0"})).await;
    let doc = get.await.unwrap().unwrap();
    assert_eq!(
        (doc.desired(), doc.reported()),
        (Some(&json!({"mode": "eco"})), Some(&json!({"firmware": "1.0"})))
    );

    // Server-side RPC, answered by the registered method.
    platform.publish(format!("{RPC_REQUEST}7"), &json!({"method": "double", "params": {"n": 21}})).await;
    assert_eq!(platform.next("the RPC answer").await, (format!("{RPC_RESPONSE}7"), json!({"n": 42})));

    // A versionless push.
    platform.publish(SHARED.to_owned(), &json!({"mode": "turbo"})).await;
    let u = next_desired(&mut desired, "the push").await;
    assert_eq!((u.body, u.version, u.catch_up), (json!({"mode": "turbo"}), None, false));

    // Offline while the platform changes its mind: the push is missed (clean session), the
    // catch-up after the reconnect delivers the current state.
    device.drop_link();
    event_matching(&mut futures::stream::poll_fn(|cx| events.poll_recv(cx)), WAIT, "the link down", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
    platform.answer_attributes(&json!({"mode": "night"}), &json!({"firmware": "1.0"})).await;
    let u = next_desired(&mut desired, "the catch-up after the reconnect").await;
    assert_eq!((u.body, u.version, u.catch_up), (json!({"mode": "night"}), None, true));

    device.stop().await;
    platform.conn.stop().await;
}
