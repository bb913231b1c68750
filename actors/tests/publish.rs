//! Publishing through the tree against a real mosquitto: round trips, lifecycle events,
//! the offline queue's drop policies, timeouts, bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use connector_actors::{Connector, PublishError, SubscribeError};
use connector_core::{
    ConnectionEvent, DisconnectReason, DropPolicy, Limits, ProviderError, Publish, QoS, TopicError,
};
use futures::future::join_all;
use test_support::{FakeBehaviour, FakeBroker, Mosquitto};

#[actix_rt::test]
async fn qos0_and_qos1_round_trip() {
    let Some(broker) = Mosquitto::start() else { return };
    let sub = Connector::builder(provider(&broker.url(), "rt-sub")).backoff(fast_backoff()).start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("rt/#", QoS::AtLeastOnce, 16).await.unwrap();

    let publ = Connector::builder(provider(&broker.url(), "rt-pub")).backoff(fast_backoff()).start();
    publ.wait_connected(WAIT).await.unwrap();
    let ack = publ
        .publisher()
        .publish(Publish::to_topic("rt/one", &b"hello"[..]).qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(ack.attempts, 1);
    let got = next_within(&mut inbox, WAIT, "the QoS 1 message").await;
    assert_eq!(got.topic(), "rt/one");
    let connector_core::Inbound::Message(m) = got else { panic!("a user message") };
    assert_eq!((&m.payload[..], m.qos), (&b"hello"[..], QoS::AtLeastOnce));

    publ.publisher().publish(Publish::to_topic("rt/zero", &b"z"[..]).qos(QoS::AtMostOnce)).await.unwrap();
    let connector_core::Inbound::Message(m) = next_within(&mut inbox, WAIT, "the QoS 0 message").await else {
        panic!("a user message")
    };
    assert_eq!((m.topic.as_str(), &m.payload[..], m.qos), ("rt/zero", &b"z"[..], QoS::AtMostOnce));

    // The actor path: a PublishRequest sent to the Publisher's address.
    let ack = publ
        .publisher()
        .addr()
        .send(connector_actors::messages::PublishRequest(Publish::to_topic("rt/actor", &b"a"[..])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack.attempts, 1);
    let got = next_within(&mut inbox, WAIT, "the message sent through the actor address").await;
    assert_eq!(got.topic(), "rt/actor");

    let stats = publ.publisher().stats().await.unwrap();
    assert_eq!((stats.acked_total, stats.incomplete_count, stats.unacked_count), (3, 0, 0));
    publ.stop().await;
    sub.stop().await;
}

#[actix_rt::test]
async fn lifecycle_events_follow_the_connection() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let (tx, mut events) = tokio::sync::mpsc::channel(256);
    let conn =
        Connector::builder(provider(&broker.url(), "life")).backoff(fast_backoff()).events_to(tx).start();
    let mut events = futures::stream::poll_fn(move |cx| events.poll_recv(cx));

    assert_eq!(
        next_within(&mut events, WAIT, "first attempt").await,
        ConnectionEvent::AttemptingConnect { attempt: 1 }
    );
    assert_eq!(
        next_within(&mut events, WAIT, "connected").await,
        ConnectionEvent::Connected { session_present: false }
    );

    broker.kill();
    assert_eq!(
        next_within(&mut events, WAIT, "disconnected").await,
        ConnectionEvent::Disconnected { reason: DisconnectReason::ConnectionLost }
    );
    assert_eq!(
        next_within(&mut events, WAIT, "a reconnect attempt").await,
        ConnectionEvent::AttemptingConnect { attempt: 1 }
    );
    let failed = next_within(&mut events, WAIT, "the attempt failing").await;
    assert!(matches!(failed, ConnectionEvent::ConnectionFailed { .. }), "{failed:?}");

    broker.restart();
    event_matching(&mut events, WAIT, "connected again", |e| matches!(e, ConnectionEvent::Connected { .. }))
        .await;
    assert_eq!(conn.metrics().reconnects.get(), 1);

    conn.stop().await;
    assert_eq!(
        next_within(&mut events, WAIT, "disconnect on stop").await,
        ConnectionEvent::Disconnected { reason: DisconnectReason::Requested }
    );
    assert!(matches!(next_within(&mut events, WAIT, "stopped").await, ConnectionEvent::Stopped { .. }));
}

/// Publishes seven messages while the broker is down into a queue of five, as in the AWS
/// SDK's documented example, and checks which complete and which are dropped.
async fn offline_queue_case(
    policy: DropPolicy,
) -> (Vec<Result<u64, PublishError>>, connector_actors::messages::PublisherStats) {
    let mut broker = Mosquitto::start().expect("checked by the caller");
    broker.kill();
    let conn = Connector::builder(provider(&broker.url(), "offline"))
        .backoff(fast_backoff())
        .offline_queue(5, policy)
        .start();
    let publisher = conn.publisher();
    // `send` queues in call order, so the Publisher sees 1..=7 in order.
    let futs: Vec<_> = (1..=7u8)
        .map(|i| publisher.publish(Publish::to_topic("offline/q", vec![i]).qos(QoS::AtLeastOnce)))
        .collect();
    let outcome = actix_rt::spawn(join_all(futs));
    // All seven are decided before the broker comes back: the queue holds five.
    test_support::wait_until_async(WAIT, "five queued", || conn.metrics().queue_depth.get() == 5).await;
    broker.restart();
    let results = outcome.await.unwrap();
    let stats = conn.publisher().stats().await.unwrap();
    conn.stop().await;
    (results.into_iter().map(|r| r.map(|a| a.id.0)).collect(), stats)
}

#[actix_rt::test]
async fn offline_queue_drop_oldest_evicts_exactly_the_two_oldest() {
    if Mosquitto::start().is_none() {
        return;
    }
    let (results, stats) = offline_queue_case(DropPolicy::Oldest).await;
    assert_eq!(results[0], Err(PublishError::Dropped));
    assert_eq!(results[1], Err(PublishError::Dropped));
    assert_eq!(results[2..].iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>(), [3, 4, 5, 6, 7]);
    assert_eq!((stats.dropped_oldest_total, stats.rejected_newest_total, stats.acked_total), (2, 0, 5));
    println!("drop-oldest: queued 7 into 5 → dropped 2 (ids 1, 2), acked 5");
}

#[actix_rt::test]
async fn offline_queue_drop_newest_refuses_exactly_the_two_newest() {
    if Mosquitto::start().is_none() {
        return;
    }
    let (results, stats) = offline_queue_case(DropPolicy::Newest).await;
    assert_eq!(results[..5].iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(results[5], Err(PublishError::QueueFull { capacity: 5 }));
    assert_eq!(results[6], Err(PublishError::QueueFull { capacity: 5 }));
    assert_eq!((stats.dropped_oldest_total, stats.rejected_newest_total, stats.acked_total), (0, 2, 5));
    println!("drop-newest: queued 7 into 5 → refused 2 (the 6th and 7th), acked 5");
}

#[actix_rt::test]
async fn qos0_fails_fast_while_offline_by_default() {
    let Some(mut broker) = Mosquitto::start() else { return };
    broker.kill();
    let conn = Connector::builder(provider(&broker.url(), "qos0-offline")).backoff(fast_backoff()).start();
    let r = conn.publisher().publish(Publish::to_topic("t", &b"x"[..]).qos(QoS::AtMostOnce)).await;
    assert_eq!(r, Err(PublishError::NotConnected));
    conn.stop().await;
}

#[actix_rt::test]
async fn a_callers_wait_ends_with_a_typed_error_and_the_message_stays_until_cancelled() {
    let fake = FakeBroker::start(FakeBehaviour { withhold_puback: true, ..Default::default() });
    let conn = Connector::builder(provider(&fake.url(), "no-puback"))
        .backoff(fast_backoff())
        .disconnect_timeout(Duration::from_millis(200))
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let publish =
        conn.publisher().publish(Publish::to_topic("t/x", &b"x"[..]).timeout(Duration::from_millis(300)));
    let r = tokio::time::timeout(WAIT, publish).await.expect("the publish resolves (with its timeout error)");
    let Err(PublishError::Timeout { after, id }) = r else { panic!("expected the wait to end, got {r:?}") };
    assert_eq!(after, Duration::from_millis(300));
    assert!(fake.publishes_received() >= 1, "the broker saw the publish");
    // The wait ended; the message did not: it is still owed its PUBACK.
    let stats = conn.publisher().stats().await.unwrap();
    assert_eq!((stats.timed_out_total, stats.incomplete_count, stats.unacked_count), (1, 1, 1));
    // Until its caller gives it up.
    assert_eq!(conn.publisher().cancel(id).await, Ok(connector_actors::messages::Cancelled::Abandoned));
    assert_eq!(conn.publisher().cancel(id).await, Ok(connector_actors::messages::Cancelled::Unknown));
    let stats = conn.publisher().stats().await.unwrap();
    assert_eq!((stats.cancelled_total, stats.incomplete_count, stats.unacked_count), (1, 0, 0));
    tokio::time::timeout(WAIT, conn.stop()).await.expect("stop completes");
}

#[actix_rt::test]
async fn bad_topics_filters_and_payloads_are_typed_errors() {
    let Some(broker) = Mosquitto::start() else { return };
    let p = provider_with(&broker.url(), "bad-input", |mut o| {
        o.limits = Limits { max_payload: 8, ..Limits::default() };
        o
    });
    let conn = Connector::builder(p).backoff(fast_backoff()).start();
    conn.wait_connected(WAIT).await.unwrap();
    let publisher = conn.publisher();
    let table: Vec<(Publish, PublishError)> = vec![
        (
            Publish::to_topic("a/+/b", &b"x"[..]),
            PublishError::Invalid(ProviderError::Topic(TopicError::WildcardInName { position: 2 })),
        ),
        (Publish::to_topic("", &b"x"[..]), PublishError::Invalid(ProviderError::Topic(TopicError::Empty))),
        (
            Publish::to_topic("a\0b", &b"x"[..]),
            PublishError::Invalid(ProviderError::Topic(TopicError::NulCharacter { position: 1 })),
        ),
        (
            Publish::to_topic("a/b", vec![0u8; 9]),
            PublishError::Invalid(ProviderError::PayloadTooLarge { size: 9, limit: 8 }),
        ),
    ];
    for (p, want) in table {
        assert_eq!(publisher.publish(p).await, Err(want));
    }
    assert!(matches!(
        publisher.publish(Publish::to_topic("a", &b"x"[..]).property("k", "v")).await,
        Err(PublishError::Invalid(ProviderError::Unsupported { .. }))
    ));
    for filter in ["a/#/b", "a+", ""] {
        let r = conn.subscriber().stream(filter, QoS::AtLeastOnce, 1).await.map(|_| ());
        assert!(matches!(r, Err(SubscribeError::InvalidFilter(_))), "{filter}: {r:?}");
    }
    // Nothing bad was accepted, and the connection is still up.
    assert_eq!(publisher.stats().await.unwrap().incomplete_count, 0);
    assert!(publisher.publish(Publish::to_topic("a/b", &b"ok"[..])).await.is_ok());
    conn.stop().await;
}

#[actix_rt::test]
async fn publishes_are_paced_to_the_providers_rate_and_none_is_lost() {
    let Some(broker) = Mosquitto::start() else { return };
    let sub = Connector::builder(provider(&broker.url(), "rate-sub")).backoff(fast_backoff()).start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("rate/#", QoS::AtLeastOnce, 64).await.unwrap();
    let p = provider_with(&broker.url(), "rate-pub", |mut o| {
        o.limits = Limits { max_publish_rate: Some(20), ..Limits::default() };
        o
    });
    let publ = Connector::builder(p).backoff(fast_backoff()).start();
    publ.wait_connected(WAIT).await.unwrap();
    let publisher = publ.publisher();
    let n = 45;
    let acks =
        join_all((0..n).map(|i| {
            publisher.publish(Publish::to_topic(format!("rate/{i}"), &b"x"[..]).qos(QoS::AtLeastOnce))
        }))
        .await;
    assert!(acks.iter().all(Result::is_ok), "{acks:?}");
    // The burst is one second's worth (20): the rest waited for tokens.
    let stats = publisher.stats().await.unwrap();
    assert!(stats.paced_total > 0, "{stats:?}");
    assert_eq!(stats.acked_total, n as u64);
    let mut seen = Vec::new();
    while seen.len() < n {
        let m = next_within(&mut inbox, WAIT, "a paced message").await;
        seen.push(m.topic().to_owned());
    }
    let want: Vec<String> = (0..n).map(|i| format!("rate/{i}")).collect();
    assert_eq!(seen, want, "every message arrived, in order");
    publ.stop().await;
    sub.stop().await;
}
