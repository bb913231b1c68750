//! The Publisher's byte cap (`offline_max_bytes`) through the whole tree: against a real
//! mosquitto that is down while messages are offered (everything queued), and against the
//! scripted fake broker that withholds PUBACKs (messages stay in flight). Every offered
//! message ends acknowledged, dropped or refused, and the three add up.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use connector_actors::{Connector, PublishError};
use connector_core::{DropPolicy, Publish, QoS};
use futures::future::join_all;
use test_support::{FakeBehaviour, FakeBroker, Mosquitto};

const TOPIC: &str = "cap/t";
/// Topic + payload bytes of `msg`, the measure of the cap.
const SIZE: usize = 100;
const CAP: usize = 3 * SIZE;

/// A QoS 1 message of `size` bytes (topic + payload) whose payload starts with `id`.
fn sized(id: u8, size: usize) -> Publish {
    let mut payload = vec![b'.'; size - TOPIC.len()];
    payload[0] = id;
    Publish::to_topic(TOPIC, payload).qos(QoS::AtLeastOnce)
}

fn msg(id: u8) -> Publish {
    sized(id, SIZE)
}

async fn within<F: std::future::Future>(f: F, what: &str) -> F::Output {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[actix_rt::test]
async fn byte_cap_drop_newest_refuses_at_the_cap_and_delivers_the_earlier_messages() {
    let Some(mut broker) = Mosquitto::start() else { return };
    broker.kill();
    let conn = Connector::builder(provider(&broker.url(), "cap-newest"))
        .backoff(fast_backoff())
        .offline_queue(1000, DropPolicy::Newest)
        .offline_max_bytes(CAP)
        .start();
    let publisher = conn.publisher();
    let accepted: Vec<_> = (1..=3).map(|i| publisher.publish(msg(i))).collect();
    let refused = publisher.publish(msg(4));
    let oversized = publisher.publish(sized(5, CAP + 1));
    // Refusals come at once; the Publisher takes commands in order, so 1..=3 are decided too.
    assert_eq!(
        within(refused, "4 refused").await,
        Err(PublishError::StoreFull { size: SIZE, max_bytes: CAP })
    );
    assert_eq!(
        within(oversized, "the oversized one refused").await,
        Err(PublishError::StoreFull { size: CAP + 1, max_bytes: CAP })
    );
    let s = publisher.stats().await.unwrap();
    assert_eq!((s.incomplete_count, s.incomplete_bytes, s.rejected_newest_total), (3, CAP, 2));

    broker.restart();
    let acks = within(join_all(accepted), "the three accepted messages").await;
    let ids: Vec<u64> = acks.into_iter().map(|a| a.unwrap().id.0).collect();
    assert_eq!(ids, [1, 2, 3]);
    let s = publisher.stats().await.unwrap();
    // Offered 5 = acknowledged 3 + refused 2; nothing pending, nothing counted twice.
    assert_eq!((s.acked_total, s.rejected_newest_total, s.dropped_oldest_total), (3, 2, 0));
    assert_eq!((s.incomplete_count, s.incomplete_bytes), (0, 0));
    println!("byte cap {CAP}, drop-newest: offered 5 → acked 3, refused 2 (one larger than the cap)");
    conn.stop().await;
}

#[actix_rt::test]
async fn byte_cap_drop_oldest_evicts_the_oldest_queued() {
    let Some(mut broker) = Mosquitto::start() else { return };
    broker.kill();
    let conn = Connector::builder(provider(&broker.url(), "cap-oldest"))
        .backoff(fast_backoff())
        .offline_queue(1000, DropPolicy::Oldest)
        .offline_max_bytes(CAP)
        .start();
    let publisher = conn.publisher();
    let futs: Vec<_> = (1..=5).map(|i| publisher.publish(msg(i))).collect();
    let oversized = publisher.publish(sized(6, CAP + 1));
    assert_eq!(
        within(oversized, "the oversized one refused").await,
        Err(PublishError::StoreFull { size: CAP + 1, max_bytes: CAP })
    );
    let s = publisher.stats().await.unwrap();
    assert_eq!((s.incomplete_count, s.incomplete_bytes, s.queued_count), (3, CAP, 3));
    assert_eq!((s.dropped_oldest_total, s.rejected_newest_total), (2, 1));

    broker.restart();
    let results: Vec<Result<u64, PublishError>> = within(join_all(futs), "every caller's outcome")
        .await
        .into_iter()
        .map(|r| r.map(|a| a.id.0))
        .collect();
    assert_eq!(results, [Err(PublishError::Dropped), Err(PublishError::Dropped), Ok(3), Ok(4), Ok(5)]);
    let s = publisher.stats().await.unwrap();
    // Offered 6 = acknowledged 3 + dropped 2 + refused 1.
    assert_eq!((s.acked_total, s.dropped_oldest_total, s.rejected_newest_total), (3, 2, 1));
    assert_eq!((s.incomplete_count, s.incomplete_bytes), (0, 0));
    println!("byte cap {CAP}, drop-oldest: offered 6 → acked 3, dropped 2 (ids 1, 2), refused 1 (oversized)");
    conn.stop().await;
}

/// Messages in flight count against the cap and are never evicted: with PUBACKs withheld
/// and a window of two, drop-oldest can only evict the queued message.
#[actix_rt::test]
async fn byte_cap_counts_unacknowledged_messages_in_flight() {
    let fake = FakeBroker::start(FakeBehaviour { withhold_puback: true, ..Default::default() });
    let conn = Connector::builder(provider(&fake.url(), "cap-inflight"))
        .backoff(fast_backoff())
        .inflight_window(2)
        .offline_queue(1000, DropPolicy::Oldest)
        .offline_max_bytes(CAP)
        .disconnect_timeout(Duration::from_millis(200))
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let publisher = conn.publisher();
    let first = publisher.publish(msg(1));
    let second = publisher.publish(msg(2));
    let third = publisher.publish(msg(3));
    test_support::wait_until_async(WAIT, "1 and 2 at the broker", || fake.publishes_received() >= 2).await;
    // 4 makes room by evicting 3, the only queued message.
    let fourth = publisher.publish(msg(4));
    assert_eq!(within(third, "3 evicted").await, Err(PublishError::Dropped));
    // 200 bytes more: evicting 4 frees only 100 (1 and 2 are in flight), so 5 is refused.
    let fifth = publisher.publish(sized(5, 2 * SIZE));
    assert_eq!(
        within(fifth, "5 refused").await,
        Err(PublishError::StoreFull { size: 2 * SIZE, max_bytes: CAP })
    );
    let s = publisher.stats().await.unwrap();
    assert_eq!((s.unacked_count, s.unacked_bytes, s.queued_count), (2, 2 * SIZE, 1));
    assert_eq!((s.incomplete_count, s.incomplete_bytes), (3, CAP));
    assert_eq!((s.dropped_oldest_total, s.rejected_newest_total, s.acked_total), (1, 1, 0));

    // Stopping ends the rest with a typed error: nothing is left without an outcome.
    within(conn.stop(), "stop").await;
    let rest = within(join_all([first, second, fourth]), "1, 2 and 4 answered").await;
    assert!(rest.iter().all(|r| r == &Err(PublishError::Stopped)), "{rest:?}");
}
