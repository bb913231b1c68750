//! The Publisher: typed publishes in, provider topics out; QoS 0/1 with completion on
//! PUBACK and a timeout; an in-flight window; the offline queue with its drop policy; an
//! optional on-disk store so that accepted messages survive a crash.
//!
//! Every accepted message stays in the Publisher's own table until it completes. When a
//! link dies, whatever was in flight on it goes back to the head of the queue and is sent
//! again on the next link, whether or not the client library noticed the loss in time
//! (paho.mqtt.rust issue 218), so a QoS 1 message is delivered at least once or its caller
//! gets an error.

pub(crate) mod store;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use connector_core::{
    ConnectionMetrics, OfflinePolicy, OfflineQueue, OutboundPacket, Provider, PushOutcome, QoS, Qos0Offline,
};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use crate::error::PublishError;
use crate::messages::{
    Enqueue, GetStats, LinkDown, LinkUp, MessageId, PublishAck, PublishRequest, PublisherStats, Shutdown,
};
use crate::supervision::ChildGuard;
use crate::transport::{Completion, Link, TransportError};
use store::Store;

/// Options of the Publisher.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Most messages sent and not yet acknowledged.
    pub inflight_window: usize,
    /// How long a caller waits for the outcome before `Timeout`.
    pub ack_timeout: Duration,
    /// Offline queue policy.
    pub offline: OfflinePolicy,
    /// A directory for the on-disk store; `None` keeps accepted messages in memory only.
    pub persistence: Option<PathBuf>,
    /// `fsync` every store write (survives power loss, costs throughput).
    pub fsync: bool,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            inflight_window: 1000,
            ack_timeout: Duration::from_secs(60),
            offline: OfflinePolicy::default(),
            persistence: None,
            fsync: false,
        }
    }
}

type Reply = oneshot::Sender<Result<PublishAck, PublishError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    InFlight { generation: u64, since: Instant },
}

struct Entry {
    packet: OutboundPacket,
    reply: Option<Reply>,
    state: State,
    attempts: u32,
    persisted: bool,
    timeout: Duration,
}

/// Everything a Publisher is built from; kept by the supervisor to rebuild it.
#[derive(Clone)]
pub(crate) struct PublisherArgs {
    pub provider: Arc<dyn Provider>,
    pub options: PublisherOptions,
    pub metrics: ConnectionMetrics,
}

/// The Publisher actor.
pub struct Publisher {
    args: PublisherArgs,
    entries: HashMap<u64, Entry>,
    queue: OfflineQueue<u64>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    timer: Option<(Instant, SpawnHandle)>,
    link: Option<(u64, Arc<dyn Link>, SpawnHandle)>,
    next_seq: u64,
    inflight: usize,
    inflight_bytes: usize,
    incomplete_bytes: usize,
    draining: Option<SpawnHandle>,
    busy_retry: Option<SpawnHandle>,
    store: Option<Store>,
    stats: PublisherStats,
    _guard: Option<ChildGuard>,
}

impl Publisher {
    pub(crate) fn new(args: PublisherArgs, guard: Option<ChildGuard>) -> Self {
        let queue = OfflineQueue::new(args.options.offline.capacity, args.options.offline.drop);
        Self {
            args,
            entries: HashMap::new(),
            queue,
            deadlines: BinaryHeap::new(),
            timer: None,
            link: None,
            next_seq: 1,
            inflight: 0,
            inflight_bytes: 0,
            incomplete_bytes: 0,
            draining: None,
            busy_retry: None,
            store: None,
            stats: PublisherStats::default(),
            _guard: guard,
        }
    }

    fn metrics(&self) -> &ConnectionMetrics {
        &self.args.metrics
    }

    fn update_gauges(&self) {
        let m = self.metrics();
        m.queue_depth.set(self.queue.len() as i64);
        m.inflight.set(self.inflight as i64);
    }

    /// Accepts a message: returns its sequence number, or why not. The reply (if any)
    /// is completed later.
    fn accept(
        &mut self,
        publish: &connector_core::Publish,
        reply: Option<Reply>,
        ctx: &mut Context<Self>,
    ) -> Result<u64, (PublishError, Option<Reply>)> {
        let packet = match self.args.provider.encode_publish(publish) {
            Ok(p) => p,
            Err(e) => {
                self.metrics().published("message", "invalid");
                return Err((PublishError::Invalid(e), reply));
            }
        };
        let qos0 = packet.qos == QoS::AtMostOnce;
        if qos0 && self.link.is_none() && self.args.options.offline.qos0 == Qos0Offline::Fail {
            self.metrics().published("message", "not_connected");
            return Err((PublishError::NotConnected, reply));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.queue.push(seq) {
            PushOutcome::Queued => {}
            PushOutcome::QueuedEvicting(old) => {
                self.stats.dropped_oldest_total += 1;
                self.metrics().queue_dropped("oldest", 1);
                self.fail(old, PublishError::Dropped);
            }
            PushOutcome::Rejected(_) => {
                self.stats.rejected_newest_total += 1;
                self.metrics().queue_dropped("newest", 1);
                self.metrics().published("message", "rejected");
                return Err((PublishError::QueueFull { capacity: self.queue.capacity() }, reply));
            }
        }
        let mut persisted = false;
        if !qos0 {
            if let Some(store) = &mut self.store {
                if let Err(e) = store.append(seq, &packet) {
                    error!(error = %e, "store: append failed; message refused");
                    self.queue.remove_where(|s| *s == seq);
                    return Err((PublishError::Persistence(e.to_string()), reply));
                }
                persisted = true;
            }
        }
        let timeout = publish.get_timeout().unwrap_or(self.args.options.ack_timeout);
        self.incomplete_bytes += packet.size();
        self.entries
            .insert(seq, Entry { packet, reply, state: State::Queued, attempts: 0, persisted, timeout });
        self.arm_deadline(seq, timeout, ctx);
        self.pump(ctx);
        Ok(seq)
    }

    fn arm_deadline(&mut self, seq: u64, timeout: Duration, ctx: &mut Context<Self>) {
        let at = Instant::now() + timeout;
        self.deadlines.push(Reverse((at, seq)));
        self.schedule_timer(ctx);
    }

    fn schedule_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(Reverse((at, _))) = self.deadlines.peek().copied() else {
            return;
        };
        if let Some((armed, _)) = self.timer {
            if armed <= at {
                return;
            }
        }
        if let Some((_, h)) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let h = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.expire(ctx);
        });
        self.timer = Some((at, h));
    }

    fn expire(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut expired_queued = Vec::new();
        while let Some(Reverse((at, seq))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(entry) = self.entries.get(&seq) {
                let after = entry.timeout;
                if entry.state == State::Queued {
                    expired_queued.push(seq);
                }
                self.stats.timed_out_total += 1;
                self.metrics().published("message", "timeout");
                self.finish(seq, Err(PublishError::Timeout { after }));
            }
        }
        if !expired_queued.is_empty() {
            self.queue.remove_where(|s| expired_queued.contains(s));
        }
        // Drop heap entries of messages that completed long ago, so the heap stays small.
        if self.deadlines.len() > 4 * self.entries.len() + 1024 {
            let live: BinaryHeap<_> =
                self.deadlines.drain().filter(|Reverse((_, s))| self.entries.contains_key(s)).collect();
            self.deadlines = live;
        }
        self.update_gauges();
        self.schedule_timer(ctx);
        self.pump(ctx);
    }

    /// Completes an entry with an outcome: replies, updates counters and the store.
    fn finish(&mut self, seq: u64, outcome: Result<(), PublishError>) {
        let Some(entry) = self.entries.remove(&seq) else {
            return;
        };
        self.incomplete_bytes -= entry.packet.size();
        if let State::InFlight { .. } = entry.state {
            self.inflight -= 1;
            self.inflight_bytes -= entry.packet.size();
        }
        if entry.persisted {
            if let Some(store) = &mut self.store {
                if let Err(e) = store.complete(seq) {
                    warn!(error = %e, seq, "store: completion not recorded; message may be sent again after a restart");
                }
            }
        }
        if let Some(reply) = entry.reply {
            let _ = reply.send(outcome.map(|()| PublishAck { id: MessageId(seq), attempts: entry.attempts }));
        }
    }

    fn fail(&mut self, seq: u64, e: PublishError) {
        self.finish(seq, Err(e));
    }

    /// Sends queued messages while the window has room.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.draining.is_some() {
            self.update_gauges();
            return;
        }
        self.send_some(usize::MAX, ctx);
    }

    fn send_some(&mut self, mut budget: usize, ctx: &mut Context<Self>) {
        let Some((generation, link, _)) = self.link.as_ref().map(|(g, l, h)| (*g, l.clone(), *h)) else {
            self.update_gauges();
            return;
        };
        let window = self.args.options.inflight_window;
        while budget > 0 && self.inflight < window {
            let Some(seq) = self.queue.pop() else { break };
            let Some(entry) = self.entries.get_mut(&seq) else {
                continue;
            };
            match link.publish(seq, &entry.packet) {
                Ok(()) => {
                    entry.attempts += 1;
                    if entry.attempts > 1 {
                        self.stats.resent_total += 1;
                    }
                    entry.state = State::InFlight { generation, since: Instant::now() };
                    self.inflight += 1;
                    self.inflight_bytes += entry.packet.size();
                    budget -= 1;
                }
                Err(TransportError::NotConnected) => {
                    // The link is going down; LinkDown will follow. Keep the message first.
                    self.queue.push_front_all(std::iter::once(seq));
                    break;
                }
                Err(TransportError::Busy) => {
                    // Back-pressure from the client library: retry shortly (or on the next
                    // completion, whichever comes first).
                    self.queue.push_front_all(std::iter::once(seq));
                    if self.busy_retry.is_none() {
                        self.busy_retry = Some(ctx.run_later(Duration::from_millis(5), |act, ctx| {
                            act.busy_retry = None;
                            act.pump(ctx);
                        }));
                    }
                    break;
                }
                Err(e) => {
                    warn!(seq, error = %e, "publish refused by the transport");
                    self.stats.failed_total += 1;
                    self.metrics().published("message", "failed");
                    self.fail(seq, PublishError::Transport(e));
                }
            }
        }
        self.update_gauges();
    }

    fn on_completion(&mut self, c: Completion, ctx: &mut Context<Self>) {
        let Some(entry) = self.entries.get(&c.seq) else {
            return;
        };
        let State::InFlight { since, .. } = entry.state else {
            return;
        };
        match c.result {
            Ok(()) => {
                let qos0 = entry.packet.qos == QoS::AtMostOnce;
                if qos0 {
                    self.metrics().sent_qos0.inc();
                } else {
                    self.metrics().acked.inc();
                    self.metrics().ack_latency.observe(since.elapsed().as_secs_f64());
                }
                self.stats.acked_total += 1;
                self.finish(c.seq, Ok(()));
            }
            Err(TransportError::NotConnected) => {
                // Stays in flight until LinkDown puts it back in the queue.
                debug!(seq = c.seq, "publish interrupted by disconnect");
                return;
            }
            Err(e) => {
                if entry.attempts < 3 {
                    debug!(seq = c.seq, error = %e, "publish failed; retrying");
                    if let Some(entry) = self.entries.get_mut(&c.seq) {
                        entry.state = State::Queued;
                        self.inflight -= 1;
                        self.inflight_bytes -= entry.packet.size();
                        self.queue.push_front_all(std::iter::once(c.seq));
                    }
                } else {
                    self.stats.failed_total += 1;
                    self.metrics().published("message", "failed");
                    self.fail(c.seq, PublishError::Transport(e));
                }
            }
        }
        if self.store.as_ref().is_some_and(Store::wants_compaction) {
            self.compact();
        }
        self.pump(ctx);
    }

    fn compact(&mut self) {
        let Some(store) = &mut self.store else { return };
        let mut live: Vec<(u64, &OutboundPacket)> =
            self.entries.iter().filter(|(_, e)| e.persisted).map(|(s, e)| (*s, &e.packet)).collect();
        live.sort_by_key(|(s, _)| *s);
        if let Err(e) = store.compact(live.into_iter()) {
            warn!(error = %e, "store: compaction failed");
        }
    }

    fn requeue_inflight(&mut self, generation: u64) {
        let mut back: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::InFlight { generation: g, .. } if g == generation))
            .map(|(s, _)| *s)
            .collect();
        back.sort_unstable();
        for seq in &back {
            if let Some(e) = self.entries.get_mut(seq) {
                e.state = State::Queued;
                self.inflight -= 1;
                self.inflight_bytes -= e.packet.size();
            }
        }
        self.queue.push_front_all(back.into_iter());
    }

    fn start_draining(&mut self, ctx: &mut Context<Self>) {
        let Some(interval) = self.args.options.offline.drain_interval else {
            return;
        };
        if self.queue.is_empty() {
            return;
        }
        let h = ctx.run_interval(interval, |act, ctx| {
            act.send_some(1, ctx);
            if act.queue.is_empty() {
                if let Some(h) = act.draining.take() {
                    ctx.cancel_future(h);
                }
            }
        });
        self.draining = Some(h);
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A full mailbox would defer `send`s and could reorder them; the offline queue is
        // the bound that matters.
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        let Some(dir) = self.args.options.persistence.clone() else {
            return;
        };
        match Store::open(&dir, self.args.options.fsync) {
            Ok((store, pending)) => {
                let n = pending.len();
                let mut seqs = Vec::with_capacity(n);
                for (seq, packet) in pending {
                    self.incomplete_bytes += packet.size();
                    let timeout = self.args.options.ack_timeout;
                    self.entries.insert(
                        seq,
                        Entry {
                            packet,
                            reply: None,
                            state: State::Queued,
                            attempts: 0,
                            persisted: true,
                            timeout,
                        },
                    );
                    self.next_seq = self.next_seq.max(seq + 1);
                    seqs.push(seq);
                }
                // Recovered messages were accepted before the restart: they go first and are
                // never refused by the capacity.
                self.queue.push_front_all(seqs.iter().copied());
                for seq in seqs {
                    self.arm_deadline(seq, self.args.options.ack_timeout, ctx);
                }
                if n > 0 {
                    tracing::info!(recovered = n, dir = %dir.display(), "store: recovered unsent messages");
                }
                self.store = Some(store);
                self.update_gauges();
            }
            Err(e) => {
                error!(error = %e, dir = %dir.display(), "store: cannot open; persistence disabled");
            }
        }
    }
}

impl Handler<PublishRequest> for Publisher {
    type Result = ResponseFuture<Result<PublishAck, PublishError>>;

    fn handle(&mut self, msg: PublishRequest, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if let Err((e, _)) = self.accept(&msg.0, Some(tx), ctx) {
            return Box::pin(async move { Err(e) });
        }
        Box::pin(async move { rx.await.unwrap_or(Err(PublishError::Stopped)) })
    }
}

impl Handler<Enqueue> for Publisher {
    type Result = Result<MessageId, PublishError>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        self.accept(&msg.0, None, ctx).map(MessageId).map_err(|(e, _)| e)
    }
}

impl Handler<GetStats> for Publisher {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut s = self.stats;
        s.incomplete_count = self.entries.len();
        s.incomplete_bytes = self.incomplete_bytes;
        s.unacked_count = self.inflight;
        s.unacked_bytes = self.inflight_bytes;
        s.queued_count = self.queue.len();
        MessageResult(s)
    }
}

impl Handler<LinkUp> for Publisher {
    type Result = ();

    fn handle(&mut self, msg: LinkUp, ctx: &mut Self::Context) {
        if let Some((_, _, h)) = self.link.take() {
            ctx.cancel_future(h);
        }
        let Some(completions) = msg.completions else {
            return;
        };
        let generation = msg.generation;
        let h = ctx.add_stream(tokio_stream_from(completions));
        self.link = Some((generation, msg.link, h));
        self.start_draining(ctx);
        self.pump(ctx);
    }
}

impl Handler<LinkDown> for Publisher {
    type Result = ();

    fn handle(&mut self, msg: LinkDown, ctx: &mut Self::Context) {
        if self.link.as_ref().is_some_and(|(g, _, _)| *g == msg.generation) {
            if let Some((_, _, h)) = self.link.take() {
                ctx.cancel_future(h);
            }
        }
        if let Some(h) = self.draining.take() {
            ctx.cancel_future(h);
        }
        self.requeue_inflight(msg.generation);
        self.update_gauges();
    }
}

impl Handler<Shutdown> for Publisher {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        // Persisted messages stay in the store for the next run; their callers learn that
        // this run will not complete them.
        let seqs: Vec<u64> = self.entries.keys().copied().collect();
        for seq in seqs {
            if let Some(e) = self.entries.get_mut(&seq) {
                e.persisted = false;
            }
            self.fail(seq, PublishError::Stopped);
        }
        ctx.stop();
    }
}

impl StreamHandler<Completion> for Publisher {
    fn handle(&mut self, c: Completion, ctx: &mut Self::Context) {
        self.on_completion(c, ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for Publisher {
    type Result = ();
    fn handle(&mut self, _: crate::messages::InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in the Publisher");
    }
}

/// An mpsc receiver as a `Stream`.
pub(crate) fn tokio_stream_from<T: 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
