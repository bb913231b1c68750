//! MQTT 5 outbound topic aliases through the tree against a real mosquitto.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use connector_actors::Connector;
use connector_core::{MqttVersion, Publish, QoS, TopicAliasing};
use test_support::Mosquitto;

/// MQTT 5 topic aliases through a real broker: a publisher with a two-entry alias table
/// sends to four topics in an order that binds, reuses and rebinds aliases, mixing QoS 0
/// and 1; mosquitto resolves every alias (an unknown or out-of-range one would be a
/// protocol error that closes the connection) and the subscriber sees each message on the
/// topic it was published to, in order.
#[actix_rt::test]
async fn topic_aliases_resolve_at_a_real_broker() {
    let Some(broker) = Mosquitto::start() else { return };
    let sub = Connector::builder(provider(&broker.url(), "alias-sub")).backoff(fast_backoff()).start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("alias/#", QoS::AtLeastOnce, 64).await.unwrap();

    let publ = Connector::builder(provider_with(&broker.url(), "alias-pub", |o| {
        o.mqtt_version(MqttVersion::V5).topic_aliasing(TopicAliasing::Lru { max: 2 })
    }))
    .backoff(fast_backoff())
    .start();
    publ.wait_connected(WAIT).await.unwrap();
    let order = [0, 1, 0, 1, 2, 0, 3, 3, 1, 2, 2, 0];
    for (n, i) in order.iter().enumerate() {
        let qos = if n % 3 == 2 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        let topic = format!("alias/{i}");
        publ.publisher()
            .publish(Publish::to_topic(&topic, format!("{n}").into_bytes()).qos(qos))
            .await
            .unwrap();
    }
    for (n, i) in order.iter().enumerate() {
        let connector_core::Inbound::Message(m) = next_within(&mut inbox, WAIT, "an aliased message").await
        else {
            panic!("a user message")
        };
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            (format!("alias/{i}").as_str(), format!("{n}").as_bytes())
        );
    }
    let stats = publ.publisher().stats().await.unwrap();
    assert_eq!(stats.incomplete_count, 0);
    publ.stop().await;
    sub.stop().await;
}
