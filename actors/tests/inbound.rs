//! Inbound QoS 1 is at-least-once: a consumer slower than the broker, on a stream of 100
//! slots, loses nothing (backpressure, not drops), over a real mosquitto.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use connector_actors::Connector;
use connector_core::{DropPolicy, Inbound, Publish, QoS};
use futures::StreamExt;
use test_support::Mosquitto;

#[actix_rt::test]
async fn a_slow_consumer_loses_no_inbound_qos1_message() {
    const N: usize = 3_000;
    let Some(broker) = Mosquitto::start() else { return };
    let registry = prometheus::Registry::new();
    let sub = Connector::builder(provider(&broker.url(), "slow-sub"))
        .backoff(fast_backoff())
        .registry(&registry)
        .start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("slow/#", QoS::AtLeastOnce, 100).await.unwrap();

    let publ = Connector::builder(provider(&broker.url(), "slow-pub"))
        .backoff(fast_backoff())
        .offline_queue(N, DropPolicy::Newest)
        .start();
    publ.wait_connected(WAIT).await.unwrap();
    let publisher = publ.publisher();
    for i in 0..N {
        publisher.enqueue(Publish::to_topic("slow/seq", i.to_string()).qos(QoS::AtLeastOnce)).await.unwrap();
    }

    // The consumer's work: a millisecond per message, far slower than the broker sends.
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < N && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), inbox.next()).await {
            Ok(Some(Inbound::Message(m))) => {
                seen.insert(String::from_utf8(m.payload.to_vec()).unwrap());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            _ => break,
        }
    }
    let dropped =
        sample(&render(&registry), "connector_inbound_dropped_total", &[("reason", "recipient_full")])
            .unwrap_or(0.0);
    println!("slow consumer: published={N} received_unique={} dropped_recipient_full={dropped}", seen.len());
    assert_eq!(dropped, 0.0, "inbound messages dropped at a full stream");
    assert_eq!(seen.len(), N, "inbound QoS 1 messages lost");
    publ.stop().await;
    sub.stop().await;
}
