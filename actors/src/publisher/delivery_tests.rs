//! Delivery semantics, driven through the Publisher's mailbox with a scripted link: what
//! removes an accepted message (its expiry, its caller) and what never does (queue time,
//! the acknowledgement timeout, a caller's wait ending, a restart).
//!
//! Some tests let a short timeout pass on purpose: the time passing is what they test,
//! never a means of waiting for something else.

use connector_core::OutboundPacket;
use futures::future::join_all;

use super::tests::*;
use super::*;
use crate::messages::Suspicion;

/// Collects what the Publisher reports about its link (it stands in for the ConnectionActor).
struct Supervisor(tokio::sync::mpsc::UnboundedSender<Suspicion>);

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<LinkSuspect> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: LinkSuspect, _: &mut Self::Context) {
        let _ = self.0.send(msg.why);
    }
}

fn supervisor() -> (Recipient<LinkSuspect>, tokio::sync::mpsc::UnboundedReceiver<Suspicion>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Supervisor(tx).start().recipient(), rx)
}

const SHORT: Duration = Duration::from_millis(150);

#[actix_rt::test]
async fn queue_time_is_not_ack_time() {
    // An acknowledgement timeout far shorter than the time spent offline.
    let rig = start_with(PublisherOptions { ack_timeout: SHORT, ..PublisherOptions::default() }, None);
    let futs: Vec<_> = (1..=3).map(|i| rig.publish(msg(i))).collect();
    tokio::time::sleep(SHORT * 4).await;
    let s = rig.stats().await;
    assert_eq!((s.incomplete_count, s.queued_count, s.expired_total, s.timed_out_total), (3, 3, 0, 0));
    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    let outcomes = within(join_all(futs), "the three after the outage").await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(link.sent(), [1, 2, 3]);
}

#[actix_rt::test]
async fn an_ack_timeout_reports_the_link_and_keeps_the_message_for_the_next_one() {
    let (sup, mut reports) = supervisor();
    let options = PublisherOptions { ack_timeout: SHORT, stall: None, ..PublisherOptions::default() };
    let rig = start_with(options, Some(sup));
    let first = ScriptedLink::holding();
    rig.link_up(1, first.clone()).await;
    let fut = rig.publish(msg(1));
    let why = within(reports.recv(), "the link reported").await.expect("a report");
    assert_eq!(why, Suspicion::AckTimeout { after: SHORT });
    let s = rig.stats().await;
    assert_eq!((s.incomplete_count, s.unacked_count, s.ack_timeouts_total), (1, 1, 1));
    // The supervisor replaces the link: the message goes again on the next one.
    rig.addr.send(LinkDown { generation: 1 }).await.unwrap();
    let second = ScriptedLink::acking();
    rig.link_up(2, second.clone()).await;
    let ack = within(fut, "the resent message").await.expect("acknowledged on the second link");
    assert_eq!((ack.id.0, ack.attempts), (1, 2));
    assert_eq!((first.sent(), second.sent()), (vec![1], vec![1]));
}

#[actix_rt::test]
async fn a_silent_stall_asks_for_a_probe() {
    let (sup, mut reports) = supervisor();
    let stall = StallPolicy { threshold: SHORT, probe_timeout: Duration::from_secs(3) };
    let options = PublisherOptions { stall: Some(stall), ..PublisherOptions::default() };
    let rig = start_with(options, Some(sup));
    rig.link_up(1, ScriptedLink::holding()).await;
    let _pending = rig.publish(msg(1));
    let why = within(reports.recv(), "the stall reported").await.expect("a report");
    let Suspicion::Stalled { unacked_for, probe_timeout } = why else {
        panic!("expected a stall, got {why:?}")
    };
    assert!(unacked_for >= SHORT, "{unacked_for:?}");
    assert_eq!(probe_timeout, Duration::from_secs(3));
    assert_eq!(rig.stats().await.stalls_total, 1);
}

#[actix_rt::test]
async fn an_expiry_removes_a_queued_message_and_tells_its_caller() {
    let rig = start_with(PublisherOptions::default(), None);
    let short = rig.publish(msg(1).expire_after(SHORT));
    let kept = rig.publish(msg(2));
    assert_eq!(within(short, "the expiry").await, Err(PublishError::Expired { after: SHORT }));
    let s = rig.stats().await;
    assert_eq!((s.expired_total, s.incomplete_count, s.queued_count), (1, 1, 1));
    assert_eq!(rig.metric("connector_messages_discarded_total", "reason=\"expired\""), 1.0);
    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    assert!(within(kept, "the other one").await.is_ok());
    assert_eq!(link.sent(), [2], "the expired message is never sent");
}

#[actix_rt::test]
async fn the_default_expiry_applies_to_messages_without_one_and_also_in_flight() {
    let options = PublisherOptions { default_expiry: Some(SHORT), ..PublisherOptions::default() };
    let rig = start_with(options, None);
    let link = ScriptedLink::holding();
    rig.link_up(1, link.clone()).await;
    let in_flight = rig.publish(msg(1));
    let own = rig.publish(msg(2).expire_after(Duration::from_secs(60)));
    assert_eq!(within(in_flight, "the default expiry").await, Err(PublishError::Expired { after: SHORT }));
    let s = rig.stats().await;
    assert_eq!((s.expired_total, s.incomplete_count, s.unacked_count), (1, 1, 1));
    link.release();
    assert!(within(own, "the message with its own expiry").await.is_ok());
}

#[actix_rt::test]
async fn a_callers_wait_ends_without_removing_the_message() {
    let rig = start_with(PublisherOptions::default(), None);
    let r = within(rig.publish(msg(1).timeout(SHORT)), "the wait to end").await;
    assert_eq!(r, Err(PublishError::Timeout { after: SHORT, id: MessageId(1) }));
    let s = rig.stats().await;
    assert_eq!((s.timed_out_total, s.incomplete_count, s.queued_count), (1, 1, 1));
    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    let deadline = Instant::now() + WAIT;
    while rig.stats().await.acked_total < 1 && Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(rig.stats().await.acked_total, 1, "delivered after its caller stopped waiting");
    assert_eq!(link.sent(), [1]);
}

#[actix_rt::test]
async fn cancel_withdraws_a_queued_message_and_answers_its_caller() {
    let rig = start_with(PublisherOptions::default(), None);
    let fut = rig.publish(msg(1));
    let other = rig.publish(msg(2));
    assert_eq!(rig.addr.send(Cancel(MessageId(1))).await.unwrap(), Cancelled::Withdrawn);
    assert_eq!(within(fut, "the cancelled caller").await, Err(PublishError::Cancelled));
    assert_eq!(rig.addr.send(Cancel(MessageId(1))).await.unwrap(), Cancelled::Unknown);
    assert_eq!(rig.metric("connector_messages_discarded_total", "reason=\"cancelled\""), 1.0);
    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    assert!(within(other, "the other").await.is_ok());
    assert_eq!(link.sent(), [2]);
}

fn stored(seq: u8) -> OutboundPacket {
    OutboundPacket {
        topic: "cap/t".into(),
        payload: bytes::Bytes::from(msg(seq).payload().to_vec()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

#[actix_rt::test]
async fn recovered_messages_get_no_deadline_from_the_time_they_were_read_but_keep_their_expiry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        store.append(1, &stored(1), None).unwrap();
        let soon = wall_ms(SystemTime::now()) + millis(SHORT);
        store.append(2, &stored(2), Some(soon)).unwrap();
    }
    let options = PublisherOptions {
        ack_timeout: SHORT,
        persistence: Some(dir.path().to_owned()),
        ..PublisherOptions::default()
    };
    let rig = start_with(options, None);
    tokio::time::sleep(SHORT * 4).await;
    let s = rig.stats().await;
    assert_eq!((s.incomplete_count, s.expired_total), (1, 1), "only the stored expiry removes one");
    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    let deadline = Instant::now() + WAIT;
    while rig.stats().await.acked_total < 1 && Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(link.sent(), [1]);
    drop(rig);
    // Completed and expired: nothing is left for the next start.
    let (_, pending) = Store::open(dir.path(), false).unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}
