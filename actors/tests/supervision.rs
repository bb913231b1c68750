//! Supervision: panics in user code are isolated and counted; children that die are
//! restarted with their registrations; the connection stays up throughout.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use common::*;
use connector_actors::messages::{InjectPanic, Received, Subscribe};
use connector_actors::Connector;
use connector_core::{Publish, QoS};
use prometheus::Registry;
use test_support::Mosquitto;

/// A user actor that panics on the first message it gets.
struct Fragile;
impl Actor for Fragile {
    type Context = Context<Self>;
}
impl Handler<Received> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Received, _: &mut Self::Context) {
        panic!("user code failed");
    }
}

#[actix_rt::test]
async fn panicking_recipients_and_handlers_do_not_drop_the_connection() {
    let Some(broker) = Mosquitto::start() else { return };
    let registry = Registry::new();
    let conn = Connector::builder(provider(&broker.url(), "panics"))
        .backoff(fast_backoff())
        .registry(&registry)
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let sub = conn.subscriber();

    let fragile = Fragile.start();
    sub.subscribe(Subscribe::topic("p/#", QoS::AtLeastOnce, fragile.recipient())).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    sub.subscribe(Subscribe::handler("p/#", QoS::AtLeastOnce, move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        panic!("handler failed");
    }))
    .await
    .unwrap();
    let (_, mut healthy) = sub.stream("p/#", QoS::AtLeastOnce, 16).await.unwrap();

    for i in 0..3 {
        conn.publisher().publish(Publish::to_topic("p/x", format!("{i}"))).await.unwrap();
        next_within(&mut healthy, WAIT, "delivery to the healthy subscriber").await;
    }
    let text = render(&registry);
    assert_eq!(sample(&text, "connector_handler_panics_total", &[("handler", "inbound")]), Some(3.0));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "the panicking handler stays registered");
    // The fragile actor died on its first message; the next delivery finds it closed,
    // counts it, and removes the route.
    assert_eq!(
        sample(&text, "connector_inbound_dropped_total", &[("reason", "recipient_closed")]),
        Some(1.0)
    );
    assert!(conn.is_connected());
    assert_eq!(conn.metrics().reconnects.get(), 0);
    conn.stop().await;
}

#[actix_rt::test]
async fn children_that_panic_are_restarted_with_their_registrations() {
    let Some(broker) = Mosquitto::start() else { return };
    let registry = Registry::new();
    let conn = Connector::builder(provider(&broker.url(), "restarts"))
        .backoff(fast_backoff())
        .registry(&registry)
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = conn.subscriber().stream("r/#", QoS::AtLeastOnce, 16).await.unwrap();

    let old = conn.subscriber().addr();
    old.do_send(InjectPanic);
    test_support::wait_until_async(WAIT, "the subscriber to be restarted", || {
        sample(&render(&registry), "connector_actor_restarts_total", &[("actor", "subscriber")]) == Some(1.0)
    })
    .await;
    assert!(!old.connected());
    conn.publisher().publish(Publish::to_topic("r/1", &b"after subscriber restart"[..])).await.unwrap();
    next_within(&mut inbox, WAIT, "delivery through the restarted subscriber").await;

    conn.publisher().addr().do_send(InjectPanic);
    test_support::wait_until_async(WAIT, "the publisher to be restarted", || {
        sample(&render(&registry), "connector_actor_restarts_total", &[("actor", "publisher")]) == Some(1.0)
    })
    .await;
    let ack =
        conn.publisher().publish(Publish::to_topic("r/2", &b"after publisher restart"[..])).await.unwrap();
    assert_eq!(ack.attempts, 1);
    next_within(&mut inbox, WAIT, "delivery from the restarted publisher").await;
    assert!(conn.is_connected());
    assert_eq!(conn.metrics().reconnects.get(), 0, "the connection stayed up");
    conn.stop().await;
}

#[actix_rt::test]
async fn a_dropping_recipient_never_blocks_the_others_and_its_drops_are_counted() {
    let Some(broker) = Mosquitto::start() else { return };
    let registry = Registry::new();
    let conn = Connector::builder(provider(&broker.url(), "slow"))
        .backoff(fast_backoff())
        .registry(&registry)
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    // Room for one message, never read, and opted into drops (a plain stream would hold
    // the others back: inbound QoS 1 is not dropped unless a subscription asks for it).
    let (_, _stuck) = conn.subscriber().stream_dropping("s/#", QoS::AtLeastOnce, 1).await.unwrap();
    let (_, mut healthy) = conn.subscriber().stream("s/#", QoS::AtLeastOnce, 64).await.unwrap();
    for i in 0..10 {
        conn.publisher().publish(Publish::to_topic("s/x", format!("{i}"))).await.unwrap();
    }
    for i in 0..10 {
        let connector_core::Inbound::Message(m) =
            next_within(&mut healthy, WAIT, "every message at the healthy stream").await
        else {
            panic!("a user message")
        };
        assert_eq!(m.payload, format!("{i}").as_bytes());
    }
    let text = render(&registry);
    assert_eq!(sample(&text, "connector_inbound_dropped_total", &[("reason", "recipient_full")]), Some(9.0));
    conn.stop().await;
}

#[actix_rt::test]
async fn exceeding_the_restart_policy_stops_the_connection() {
    let Some(broker) = Mosquitto::start() else { return };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let conn = Connector::builder(provider(&broker.url(), "restart-limit"))
        .backoff(fast_backoff())
        .restart_policy(connector_actors::RestartPolicy {
            max_restarts: 1,
            window: std::time::Duration::from_secs(60),
        })
        .events_to(tx)
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let mut events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let first = conn.subscriber().addr();
    first.do_send(InjectPanic);
    test_support::wait_until_async(WAIT, "the first restart", || conn.subscriber().addr() != first).await;
    let second = conn.subscriber().addr();
    assert!(second.connected());
    second.do_send(InjectPanic);
    let e = event_matching(&mut events, WAIT, "the connection stopping", |e| {
        matches!(e, connector_core::ConnectionEvent::Stopped { .. })
    })
    .await;
    assert_eq!(
        e,
        connector_core::ConnectionEvent::Stopped {
            reason: "restart limit exceeded for the subscriber".into()
        }
    );
    test_support::wait_until_async(WAIT, "the state to be Stopped", || {
        conn.state() == connector_core::ConnectionState::Stopped
    })
    .await;
}
