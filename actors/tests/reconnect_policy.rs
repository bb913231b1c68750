//! The reconnect policy beside the backoff: a limit on attempts, a limit on time offline,
//! a user's own policy; giving up is a typed `GaveUp` event, then `Stopped`, and callers
//! waiting on the connector get errors instead of waiting for ever.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use connector_actors::Connector;
use connector_core::reconnect::{ReconnectContext, ReconnectDecision, RetryLimits};
use connector_core::{ConnectionEvent, Publish, QoS};
use test_support::Mosquitto;

/// A loopback port nothing listens on (connects are refused at once).
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("tcp://127.0.0.1:{port}")
}

/// Every event until `Stopped` (inclusive).
async fn events_until_stopped(rx: &mut tokio::sync::mpsc::Receiver<ConnectionEvent>) -> Vec<ConnectionEvent> {
    let mut all = Vec::new();
    loop {
        let e = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no Stopped within {WAIT:?}; so far {all:?}"))
            .unwrap_or_else(|| panic!("event stream ended before Stopped: {all:?}"));
        let stopped = matches!(e, ConnectionEvent::Stopped { .. });
        all.push(e);
        if stopped {
            return all;
        }
    }
}

#[actix_rt::test]
async fn an_attempt_limit_gives_up_on_the_last_failure_and_fails_the_waiting_publish() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let conn = Connector::builder(provider(&refused_url(), "give-up-attempts"))
        .backoff(fast_backoff())
        .reconnect_policy(RetryLimits { max_attempts: Some(3), give_up_after: None })
        .events_to(tx)
        .start();
    // Accepted while offline (the default queues QoS 1), never deliverable.
    let waiting = conn.publisher().publish(Publish::to_topic("t/give-up", &b"x"[..]).qos(QoS::AtLeastOnce));
    let events = events_until_stopped(&mut rx).await;
    let attempts = events.iter().filter(|e| matches!(e, ConnectionEvent::AttemptingConnect { .. })).count();
    let failed = events.iter().filter(|e| matches!(e, ConnectionEvent::ConnectionFailed { .. })).count();
    assert_eq!((attempts, failed), (3, 2), "{events:?}");
    let gave_up = events.iter().find(|e| matches!(e, ConnectionEvent::GaveUp { .. })).unwrap();
    let ConnectionEvent::GaveUp { failures, reason, .. } = gave_up else { unreachable!() };
    assert_eq!(*failures, 3, "{events:?}");
    assert!(reason.contains("3 connect attempts failed"), "{reason}");
    let ConnectionEvent::Stopped { reason } = events.last().unwrap() else { unreachable!() };
    assert!(reason.contains("gave up reconnecting"), "{reason}");
    let r = tokio::time::timeout(WAIT, waiting).await.expect("the waiting publish is answered");
    assert!(r.is_err(), "a connector that gave up cannot deliver: {r:?}");
    assert!(!conn.is_connected());
}

#[actix_rt::test]
async fn a_time_offline_limit_gives_up_after_the_broker_dies() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let limit = Duration::from_millis(800);
    let conn = Connector::builder(provider(&broker.url(), "give-up-offline"))
        .backoff(fast_backoff())
        .reconnect_policy(RetryLimits { max_attempts: None, give_up_after: Some(limit) })
        .events_to(tx)
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    broker.kill();
    let events = events_until_stopped(&mut rx).await;
    let lost = events.iter().position(|e| matches!(e, ConnectionEvent::Disconnected { .. }));
    let gave = events.iter().position(|e| matches!(e, ConnectionEvent::GaveUp { .. }));
    assert!(matches!((lost, gave), (Some(l), Some(g)) if l < g), "{events:?}");
    let ConnectionEvent::GaveUp { offline_for, failures, .. } = &events[gave.unwrap()] else {
        unreachable!()
    };
    assert!(*offline_for >= limit, "gave up after {offline_for:?}, limit {limit:?}");
    assert!(*failures >= 1, "attempts were made first: {events:?}");
}

#[actix_rt::test]
async fn a_users_policy_sets_each_delay_and_sees_every_failure() {
    let seen: Arc<Mutex<Vec<ReconnectContext>>> = Arc::default();
    let record = seen.clone();
    let policy = move |cx: &ReconnectContext| {
        record.lock().unwrap().push(*cx);
        if cx.failures >= 4 {
            ReconnectDecision::GiveUp("mine: four".into())
        } else {
            ReconnectDecision::RetryAfter(Duration::from_millis(30 + 10 * u64::from(cx.failures)))
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let conn = Connector::builder(provider(&refused_url(), "own-policy"))
        .backoff(fast_backoff())
        .reconnect_policy(policy)
        .events_to(tx)
        .start();
    let events = events_until_stopped(&mut rx).await;
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            ConnectionEvent::ConnectionFailed { retry_in, .. } => Some(*retry_in),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [40, 50, 60].map(Duration::from_millis), "{events:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, ConnectionEvent::GaveUp { reason, failures: 4, .. } if reason == "mine: four")));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|c| c.failures).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Offline time only grows, and the backoff's proposal is within its bounds.
    assert!(seen.windows(2).all(|w| w[0].offline_for <= w[1].offline_for), "{seen:?}");
    assert!(seen.iter().all(|c| c.backoff <= Duration::from_millis(400)), "{seen:?}");
    conn.stop().await;
}
