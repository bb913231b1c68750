//! Draining the offline queue after a reconnect, as the AWS V1 SDK describes it: only once
//! the subscriptions are back, at the configured rate, QoS 0 included when the policy queues
//! it. Real mosquitto, a real fault proxy refusing the port while the device is offline.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use connector_actors::Connector;
use connector_core::{ConnectionEvent, Inbound, OfflinePolicy, Publish, QoS, Qos0Offline};
use test_support::{Fault, FaultProxy, Mosquitto};

/// Takes `n` messages from a stream, with their arrival times.
async fn take_timed(
    s: &mut (impl futures::Stream<Item = Inbound> + Unpin),
    n: usize,
    what: &str,
) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        match next_within(s, WAIT, what).await {
            Inbound::Message(m) => got.push((Instant::now(), String::from_utf8(m.payload.to_vec()).unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

/// A device subscribed to its own topic goes offline (the port refuses), queues QoS 0 and
/// QoS 1 messages, and reconnects with a clean session, so it must subscribe again.
async fn offline_then_drain(name: &str, drain_interval: Option<Duration>) -> Option<Vec<(Instant, String)>> {
    let broker = Mosquitto::start()?;
    let proxy = FaultProxy::to_port(broker.port());
    let offline = OfflinePolicy { qos0: Qos0Offline::Queue, drain_interval, ..OfflinePolicy::default() };
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let mut events = futures::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    });
    let dev = Connector::builder(provider(&proxy.url(), name))
        .backoff(fast_backoff())
        .offline(offline)
        .events_to(tx)
        .start();
    dev.wait_connected(WAIT).await.unwrap();
    let topic = format!("drain/{name}");
    let (_, mut own) = dev.subscriber().stream(topic.clone(), QoS::AtLeastOnce, 100).await.unwrap();

    proxy.set(Fault::Refuse);
    event_matching(&mut events, WAIT, "the disconnect", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
    let publisher = dev.publisher();
    for i in 0..10 {
        let qos = if i % 2 == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        publisher.enqueue(Publish::to_topic(topic.clone(), format!("{i}")).qos(qos)).await.unwrap();
    }
    let s = publisher.stats().await.unwrap();
    assert_eq!(s.queued_count, 10, "QoS 0 and QoS 1 queued while offline");
    proxy.set(Fault::Pass);
    let got = take_timed(&mut own, 10, "the drained messages on the device's own subscription").await;
    dev.stop().await;
    Some(got)
}

#[actix_rt::test]
async fn the_queue_drains_only_after_the_subscriptions_are_back() {
    // No pacing: the whole queue goes the moment the Publisher has the link. A message sent
    // before the SUBSCRIBE was answered would never reach the device's own subscription.
    let Some(got) = offline_then_drain("order", None).await else { return };
    let order: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(order, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], "every drained message, in order");
}

#[actix_rt::test]
async fn draining_goes_at_the_configured_rate_qos0_included() {
    let interval = Duration::from_millis(100);
    let Some(got) = offline_then_drain("rate", Some(interval)).await else { return };
    let order: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(order, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    // One message per interval: ten messages span at least nine intervals (a slower machine
    // only spreads them further).
    let span = got[9].0 - got[0].0;
    assert!(span >= interval * 9 * 9 / 10, "drained too fast: 10 messages in {span:?}");
    println!("drained 10 messages (5 QoS 0, 5 QoS 1) at one per {interval:?} over {span:?}");
}
