//! The Publisher's byte cap, driven through its mailbox with a scripted link: no broker, no
//! sleeps. A request sent to the actor's address is handled in order, so a `GetStats` sent
//! after some publishes sees all of them decided.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use connector_core::{ConnectorMetrics, DropPolicy, MqttOptions, MqttProvider, Publish};
use futures::future::{join_all, BoxFuture};
use parking_lot::Mutex;
use prometheus::Registry;
use tokio::sync::oneshot;

use super::*;

pub(super) const WAIT: Duration = Duration::from_secs(5);
const TOPIC: &str = "cap/t";
/// Bytes of every `msg` (topic + payload), the measure the cap uses.
const SIZE: usize = 100;

/// A QoS 1 message of `size` bytes whose payload starts with `id`.
pub(super) fn sized(id: u8, size: usize) -> Publish {
    let mut payload = vec![b'.'; size - TOPIC.len()];
    payload[0] = id;
    Publish::to_topic(TOPIC, payload).qos(QoS::AtLeastOnce)
}

pub(super) fn msg(id: u8) -> Publish {
    sized(id, SIZE)
}

/// A link that records the ids it is handed and acknowledges them only once released.
#[derive(Default)]
pub(super) struct ScriptedLink {
    sent: Mutex<Vec<u8>>,
    held: Mutex<Vec<oneshot::Sender<Result<(), TransportError>>>>,
    released: AtomicBool,
}

impl ScriptedLink {
    pub(super) fn holding() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(super) fn acking() -> Arc<Self> {
        let l = Self::default();
        l.released.store(true, Ordering::SeqCst);
        Arc::new(l)
    }

    /// Acknowledges what it holds and everything handed to it from now on.
    pub(super) fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        for tx in self.held.lock().drain(..) {
            let _ = tx.send(Ok(()));
        }
    }

    pub(super) fn sent(&self) -> Vec<u8> {
        self.sent.lock().clone()
    }
}

impl Link for ScriptedLink {
    fn publish(
        &self,
        packet: &OutboundPacket,
    ) -> Result<crate::transport::PublishCompletion, TransportError> {
        self.sent.lock().push(packet.payload[0]);
        if self.released.load(Ordering::SeqCst) {
            return Ok(Box::pin(async { Ok(()) }));
        }
        let (tx, rx) = oneshot::channel();
        self.held.lock().push(tx);
        Ok(Box::pin(async move { rx.await.unwrap_or(Err(TransportError::NotConnected)) }))
    }

    fn subscribe(
        &self,
        _: Vec<(String, QoS)>,
    ) -> BoxFuture<'static, Result<Vec<Option<QoS>>, TransportError>> {
        Box::pin(async { Err(TransportError::NotConnected) })
    }

    fn unsubscribe(&self, _: Vec<String>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async { Err(TransportError::NotConnected) })
    }

    fn disconnect(&self, _: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn probe(&self, _: Duration) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
}

pub(super) struct Rig {
    pub(super) addr: Addr<Publisher>,
    registry: Registry,
}

fn capped(max_bytes: usize, drop: DropPolicy) -> OfflinePolicy {
    OfflinePolicy { max_bytes: Some(max_bytes), drop, ..OfflinePolicy::default() }
}

fn start(offline: OfflinePolicy, inflight_window: usize, persistence: Option<PathBuf>) -> Rig {
    let options = PublisherOptions { inflight_window, offline, persistence, ..PublisherOptions::default() };
    start_with(options, None)
}

/// A Publisher with these options, reporting suspect links to `supervisor`.
pub(super) fn start_with(options: PublisherOptions, supervisor: Option<Recipient<LinkSuspect>>) -> Rig {
    let registry = Registry::new();
    let metrics = ConnectorMetrics::register(&registry).unwrap().connection("test", "t");
    let provider: Arc<dyn Provider> =
        Arc::new(MqttProvider::new(MqttOptions::new("tcp://127.0.0.1:1", "t")).unwrap());
    let addr = Publisher::new(PublisherArgs { provider, options, metrics, supervisor }, None).start();
    Rig { addr, registry }
}

impl Rig {
    /// Hands a publish to the Publisher now (it is in the mailbox when this returns); the
    /// future gives its outcome.
    pub(super) fn publish(&self, p: Publish) -> impl std::future::Future<Output = Outcome> {
        let req = self.addr.send(PublishRequest(p));
        async move { req.await.unwrap_or_else(|e| Err(PublishError::Unavailable(e))) }
    }

    pub(super) async fn stats(&self) -> PublisherStats {
        self.addr.send(GetStats).await.unwrap()
    }

    pub(super) async fn link_up(&self, generation: u64, link: Arc<ScriptedLink>) {
        self.addr.send(LinkUp { generation, link, session_present: false }).await.unwrap();
    }

    /// A sample of the connection's metrics (0 when never counted).
    pub(super) fn metric(&self, name: &str, label: &str) -> f64 {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf).unwrap();
        String::from_utf8(buf)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

pub(super) async fn within<F: std::future::Future>(f: F, what: &str) -> F::Output {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn ids(outcomes: &[Outcome]) -> Vec<Result<u64, PublishError>> {
    outcomes.iter().map(|o| o.clone().map(|a| a.id.0)).collect()
}

#[actix_rt::test]
async fn newest_refuses_at_the_byte_cap_and_delivers_the_earlier_messages() {
    let rig = start(capped(3 * SIZE, DropPolicy::Newest), 100, None);
    let accepted: Vec<_> = (1..=3).map(|i| rig.publish(msg(i))).collect();
    let refused = rig.publish(msg(4));
    let small = rig.publish(sized(5, TOPIC.len() + 1));
    let full = PublishError::StoreFull { size: SIZE, max_bytes: 3 * SIZE };
    assert_eq!(within(refused, "the refusal").await, Err(full));
    assert_eq!(
        within(small, "the small one's refusal").await,
        Err(PublishError::StoreFull { size: TOPIC.len() + 1, max_bytes: 3 * SIZE })
    );
    let s = rig.stats().await;
    assert_eq!((s.incomplete_count, s.incomplete_bytes, s.queued_count), (3, 3 * SIZE, 3));
    assert_eq!((s.rejected_newest_total, s.dropped_oldest_total), (2, 0));

    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    let outcomes = within(join_all(accepted), "the accepted three").await;
    assert_eq!(ids(&outcomes), [Ok(1), Ok(2), Ok(3)]);
    assert_eq!(link.sent(), [1, 2, 3]);
    let s = rig.stats().await;
    assert_eq!((s.acked_total, s.incomplete_count, s.incomplete_bytes), (3, 0, 0));
    assert_eq!(rig.metric("connector_messages_published_total", "outcome=\"store_full\""), 2.0);
    assert_eq!(rig.metric("connector_offline_queue_dropped_total", "policy=\"newest\""), 2.0);

    // Room again: the cap counts completions out.
    let again = rig.publish(msg(6));
    assert!(within(again, "a publish after the acks").await.is_ok());
}

#[actix_rt::test]
async fn oldest_evicts_the_oldest_queued_until_the_new_message_fits() {
    let rig = start(capped(3 * SIZE, DropPolicy::Oldest), 100, None);
    let mut futs: Vec<_> = (1..=5).map(|i| rig.publish(msg(i))).collect();
    // Twice the size: two more of the oldest go.
    futs.push(rig.publish(sized(6, 2 * SIZE)));
    let s = rig.stats().await;
    assert_eq!((s.incomplete_count, s.incomplete_bytes, s.queued_count), (2, 3 * SIZE, 2));
    assert_eq!((s.dropped_oldest_total, s.rejected_newest_total), (4, 0));

    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    let outcomes = within(join_all(futs), "every caller's outcome").await;
    let d = Err(PublishError::Dropped);
    assert_eq!(ids(&outcomes), [d.clone(), d.clone(), d.clone(), d, Ok(5), Ok(6)]);
    assert_eq!(link.sent(), [5, 6]);
    let s = rig.stats().await;
    assert_eq!((s.acked_total, s.incomplete_count, s.incomplete_bytes), (2, 0, 0));
    assert_eq!(rig.metric("connector_offline_queue_dropped_total", "policy=\"oldest\""), 4.0);
}

#[actix_rt::test]
async fn oldest_never_evicts_messages_in_flight() {
    // A window of two: 1 and 2 go in flight and stay there (no acknowledgement yet).
    let rig = start(capped(3 * SIZE, DropPolicy::Oldest), 2, None);
    let link = ScriptedLink::holding();
    rig.link_up(1, link.clone()).await;
    let first = [rig.publish(msg(1)), rig.publish(msg(2))];
    let third = rig.publish(msg(3));
    // Full: 4 evicts 3, the only queued message.
    let fourth = rig.publish(msg(4));
    assert_eq!(within(third, "3 evicted").await, Err(PublishError::Dropped));
    // 200 more bytes: evicting 4 would free only 100, so 6 is refused and 4 kept.
    let sixth = rig.publish(sized(6, 2 * SIZE));
    assert_eq!(
        within(sixth, "6 refused").await,
        Err(PublishError::StoreFull { size: 2 * SIZE, max_bytes: 3 * SIZE })
    );
    let s = rig.stats().await;
    assert_eq!((s.unacked_count, s.unacked_bytes, s.queued_count), (2, 2 * SIZE, 1));
    assert_eq!((s.incomplete_count, s.incomplete_bytes), (3, 3 * SIZE));
    assert_eq!((s.dropped_oldest_total, s.rejected_newest_total), (1, 1));
    assert_eq!(link.sent(), [1, 2]);

    link.release();
    let [a, b] = first;
    let outcomes = within(join_all([a, b, fourth]), "1, 2 and 4").await;
    assert_eq!(ids(&outcomes), [Ok(1), Ok(2), Ok(4)]);
    assert_eq!(link.sent(), [1, 2, 4]);
    let s = rig.stats().await;
    assert_eq!((s.acked_total, s.incomplete_count, s.incomplete_bytes), (3, 0, 0));
}

#[actix_rt::test]
async fn a_message_larger_than_the_cap_is_refused_even_when_nothing_is_pending() {
    for drop in [DropPolicy::Newest, DropPolicy::Oldest] {
        let rig = start(capped(SIZE, drop), 100, None);
        let big = rig.publish(sized(1, SIZE + 1));
        assert_eq!(
            within(big, "the oversized refusal").await,
            Err(PublishError::StoreFull { size: SIZE + 1, max_bytes: SIZE }),
            "{drop:?}"
        );
        // Exactly the cap fits.
        let exact = rig.publish(msg(2));
        let s = rig.stats().await;
        assert_eq!(
            (s.incomplete_count, s.incomplete_bytes, s.rejected_newest_total),
            (1, SIZE, 1),
            "{drop:?}"
        );
        rig.link_up(1, ScriptedLink::acking()).await;
        assert!(within(exact, "the message of exactly the cap").await.is_ok(), "{drop:?}");
    }
}

#[actix_rt::test]
async fn messages_put_back_after_a_lost_link_are_never_refused() {
    let rig = start(capped(3 * SIZE, DropPolicy::Newest), 100, None);
    let first = ScriptedLink::holding();
    rig.link_up(1, first.clone()).await;
    let futs: Vec<_> = (1..=3).map(|i| rig.publish(msg(i))).collect();
    let s = rig.stats().await;
    assert_eq!((s.unacked_count, s.incomplete_bytes), (3, 3 * SIZE));

    rig.addr.send(LinkDown { generation: 1 }).await.unwrap();
    let s = rig.stats().await;
    assert_eq!(
        (s.unacked_count, s.queued_count, s.incomplete_count, s.incomplete_bytes),
        (0, 3, 3, 3 * SIZE)
    );
    assert_eq!((s.dropped_oldest_total, s.rejected_newest_total), (0, 0));
    let refused = rig.publish(msg(4));
    assert!(matches!(within(refused, "4 refused").await, Err(PublishError::StoreFull { .. })));

    let second = ScriptedLink::acking();
    rig.link_up(2, second.clone()).await;
    let outcomes = within(join_all(futs), "1, 2 and 3 on the second link").await;
    assert_eq!(
        outcomes.iter().map(|o| o.clone().map(|a| (a.id.0, a.attempts))).collect::<Vec<_>>(),
        [Ok((1, 2)), Ok((2, 2)), Ok((3, 2))]
    );
    assert_eq!(second.sent(), [1, 2, 3]);
    let s = rig.stats().await;
    assert_eq!((s.acked_total, s.incomplete_count, s.incomplete_bytes), (3, 0, 0));
}

#[actix_rt::test]
async fn messages_recovered_from_the_store_are_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, pending) = Store::open(dir.path(), false).unwrap();
        assert!(pending.is_empty());
        for seq in 1..=5u8 {
            let packet = OutboundPacket {
                topic: TOPIC.into(),
                payload: Bytes::from(msg(seq).payload().to_vec()),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            };
            store.append(u64::from(seq), &packet, None).unwrap();
        }
    }
    // A cap of three messages; five were accepted before the restart.
    let rig = start(capped(3 * SIZE, DropPolicy::Newest), 100, Some(dir.path().to_owned()));
    let refused = rig.publish(msg(6));
    assert!(matches!(within(refused, "6 refused").await, Err(PublishError::StoreFull { .. })));
    let s = rig.stats().await;
    assert_eq!((s.incomplete_count, s.incomplete_bytes, s.dropped_oldest_total), (5, 5 * SIZE, 0));

    let link = ScriptedLink::acking();
    rig.link_up(1, link.clone()).await;
    let mut s = rig.stats().await;
    // The link acknowledges at once, but completions are polled by the actor in between.
    let deadline = Instant::now() + WAIT;
    while s.acked_total < 5 && Instant::now() < deadline {
        s = rig.stats().await;
        tokio::task::yield_now().await;
    }
    assert_eq!((s.acked_total, s.incomplete_count, s.incomplete_bytes), (5, 0, 0));
    assert_eq!(link.sent(), [1, 2, 3, 4, 5]);
}
