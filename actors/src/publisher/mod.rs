//! The Publisher: typed publishes in, provider topics out; QoS 0/1 with completion on
//! PUBACK; an in-flight window; the offline queue with its drop policy; an optional on-disk
//! store so that accepted messages survive a crash; the stall watchdog.
//!
//! # Delivery
//! A QoS 1 message the Publisher accepted stays in its table (and in the store, with
//! persistence) until the broker acknowledges it, for as long as an outage lasts. Only a
//! limit the user set removes it before that:
//! - its expiry ([`Publish::expire_after`](connector_core::Publish::expire_after), or
//!   [`PublisherOptions::default_expiry`], off by default);
//! - the queue's capacity or [`OfflinePolicy::max_bytes`] under the drop policy;
//! - its caller cancelling it ([`Cancel`]).
//!
//! Each removal is counted by reason (`connector_messages_discarded_total`), logged at
//! `warn` with the counts, and answered to a waiting caller. Time spent queued is not
//! acknowledgement time: [`PublisherOptions::ack_timeout`] measures one attempt on one link
//! (PUBLISH handed to the transport → PUBACK), and its passing marks the link suspect — the
//! ConnectionActor replaces it and the message is sent again on the next link. A caller may
//! bound its own wait ([`Publish::timeout`](connector_core::Publish::timeout)); the wait
//! ending leaves the message queued. Messages recovered from the store after a restart get
//! no deadline from the time they were read (their stored expiry, if any, still applies).
//!
//! Two bounds apply when a message is accepted, both with the offline policy's
//! [`DropPolicy`](connector_core::DropPolicy): the queue's capacity (a count of messages
//! waiting to be sent) and, when set, [`OfflinePolicy::max_bytes`], an exact cap on the
//! topic + payload bytes of every accepted message not yet completed, queued and in flight
//! (the `incomplete_bytes` of [`PublisherStats`]). At the byte cap drop-newest refuses the
//! new message with [`PublishError::StoreFull`]; drop-oldest evicts queued messages oldest
//! first (their callers get [`PublishError::Dropped`]) until it fits, and refuses it with
//! `StoreFull` when evicting every queued message would not be enough. Neither bound refuses
//! messages recovered from the store or put back in the queue after a lost link.
//!
//! When a link dies, whatever was in flight on it goes back to the head of the queue and is
//! sent again on the next link, whether or not the client library noticed the loss in time
//! (paho.mqtt.rust issue 218), so a QoS 1 message is delivered at least once or its caller
//! gets an error. After a reconnect the Publisher gets the new link only once the
//! Subscriber's re-subscriptions are done, and with [`OfflinePolicy::drain_interval`] it
//! drains the queue at that pace (the AWS V1 SDK's draining).
//!
//! The publish path is kept short: completion futures are polled from a `FuturesUnordered`
//! the Publisher owns (no relay task, no channel hop), replies go straight into the
//! caller's reply channel (no task per request), and the table is keyed by sequence number
//! with a trivial hasher.

#[cfg(test)]
mod delivery_tests;
mod discards;
mod outbox;
pub(crate) mod store;
#[cfg(test)]
mod tests;
mod watchdog;

pub use watchdog::StallPolicy;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use connector_core::offline::ByteVerdict;
use connector_core::{
    ConnectionMetrics, OfflinePolicy, OfflineQueue, OutboundPacket, Provider, PushOutcome, QoS, Qos0Offline,
};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tracing::{debug, error, warn};

use crate::error::PublishError;
use crate::messages::{
    Cancel, Cancelled, Enqueue, GetStats, LinkDown, LinkSuspect, LinkUp, MessageId, PublishAck,
    PublishRequest, PublisherStats, Shutdown,
};
use crate::supervision::ChildGuard;
use crate::transport::{Link, TransportError};
use discards::{Discard, DiscardLog};
use outbox::{Deadlines, Due, Entry, Outbox, State};
use store::{Store, Stored};
use watchdog::Watchdog;

/// Options of the Publisher.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Most messages sent and not yet acknowledged.
    pub inflight_window: usize,
    /// How long one attempt may wait for its PUBACK on one link (PUBLISH handed to the
    /// transport → PUBACK). When it passes the link is replaced and the message sent again on
    /// the next one; it never removes a message. Default 60 s.
    pub ack_timeout: Duration,
    /// An expiry for every message that has none of its own (`None`, the default: messages
    /// wait for as long as an outage lasts).
    pub default_expiry: Option<Duration>,
    /// The stall watchdog (`None` turns it off; the acknowledgement timeout still applies).
    pub stall: Option<StallPolicy>,
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
            default_expiry: None,
            stall: Some(StallPolicy::default()),
            offline: OfflinePolicy::default(),
            persistence: None,
            fsync: false,
        }
    }
}

type Outcome = Result<PublishAck, PublishError>;

/// Where a caller's reply goes: filled with actix's reply sender right after the handler
/// returns, taken when the message completes.
pub(crate) type ReplySlot = Rc<Cell<Option<OneshotSender<Outcome>>>>;

/// How a completed message answers its caller.
pub(crate) enum Reply {
    /// A caller through `Addr::send` (actix's reply channel, handed over after the handler).
    Slot(ReplySlot),
    /// A caller through the handle's command channel.
    Direct(OneshotSender<Outcome>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        let tx = match self {
            Reply::Slot(slot) => slot.take(),
            Reply::Direct(tx) => Some(tx),
        };
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// A command on the handle's fast path: no actix envelope, no response machinery, one
/// stream of the Publisher's context drained in order.
pub(crate) enum Command {
    /// Publish and answer with the outcome.
    Publish(connector_core::Publish, OneshotSender<Outcome>),
    /// Accept and answer at once.
    Enqueue(connector_core::Publish, OneshotSender<Result<MessageId, PublishError>>),
    /// Publish a packet the provider already mapped (method responses, state requests),
    /// with the same queueing and acknowledgement as any other message.
    Packet(OutboundPacket, OneshotSender<Outcome>),
    /// Withdraw an accepted message.
    Cancel(MessageId, OneshotSender<Cancelled>),
}

/// The sending half of a Publisher's command channel, with its address.
#[derive(Clone)]
pub(crate) struct PublisherPort {
    pub addr: Addr<Publisher>,
    pub commands: tokio::sync::mpsc::UnboundedSender<Command>,
}

/// The response of the `PublishRequest` handler: an immediate outcome, or a slot that the
/// completion will answer through.
pub struct PublishResponse {
    immediate: Option<Outcome>,
    slot: Option<ReplySlot>,
}

impl MessageResponse<Publisher, PublishRequest> for PublishResponse {
    fn handle(self, _: &mut Context<Publisher>, tx: Option<OneshotSender<Outcome>>) {
        match (self.immediate, self.slot, tx) {
            (Some(outcome), _, Some(tx)) => {
                let _ = tx.send(outcome);
            }
            (None, Some(slot), tx) => slot.set(tx),
            _ => {}
        }
    }
}

type Done = (u64, u64, Result<(), TransportError>);

/// A completion future tagged with its message (no second allocation, unlike `map` + box).
struct Tagged {
    seq: u64,
    generation: u64,
    fut: crate::transport::PublishCompletion,
}

impl std::future::Future for Tagged {
    type Output = Done;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Done> {
        let (seq, generation) = (self.seq, self.generation);
        self.fut.as_mut().poll(cx).map(|r| (seq, generation, r))
    }
}

/// The completion futures of in-flight messages, polled as one stream of the Publisher's
/// context. It never ends: empty, it waits to be woken by the next push.
#[derive(Clone, Default)]
struct Completions {
    set: Rc<RefCell<FuturesUnordered<Tagged>>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Completions {
    fn push(&self, seq: u64, generation: u64, fut: crate::transport::PublishCompletion) {
        self.set.borrow_mut().push(Tagged { seq, generation, fut });
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Forgets every pending completion (their link is gone).
    fn clear(&self) {
        *self.set.borrow_mut() = FuturesUnordered::new();
    }
}

impl Stream for Completions {
    type Item = Done;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Done>> {
        match self.set.borrow_mut().poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(Some(done)),
            _ => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Everything a Publisher is built from; kept by the supervisor to rebuild it.
#[derive(Clone)]
pub(crate) struct PublisherArgs {
    pub provider: Arc<dyn Provider>,
    pub options: PublisherOptions,
    pub metrics: ConnectionMetrics,
    /// Where the watchdog reports a suspect link (the ConnectionActor).
    pub supervisor: Option<Recipient<LinkSuspect>>,
}

/// The Publisher actor.
pub struct Publisher {
    args: PublisherArgs,
    entries: Outbox,
    queue: OfflineQueue<u64>,
    deadlines: Deadlines,
    timer: Option<(Instant, SpawnHandle)>,
    watchdog: Watchdog,
    watch_timer: Option<(Instant, SpawnHandle)>,
    discards: DiscardLog,
    link: Option<(u64, Arc<dyn Link>)>,
    completions: Completions,
    commands: Option<tokio::sync::mpsc::UnboundedReceiver<Command>>,
    next_seq: u64,
    inflight: usize,
    inflight_bytes: usize,
    incomplete_bytes: usize,
    draining: Option<SpawnHandle>,
    busy_retry: Option<SpawnHandle>,
    /// Paces sends to the provider's per-connection publish rate, if it has one.
    rate: Option<connector_core::rate::TokenBucket>,
    rate_retry: Option<SpawnHandle>,
    store: Option<Store>,
    stats: PublisherStats,
    _guard: Option<ChildGuard>,
}

impl Publisher {
    /// Starts a Publisher with its command channel.
    pub(crate) fn spawn(args: PublisherArgs, guard: Option<ChildGuard>) -> PublisherPort {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut p = Publisher::new(args, guard);
        p.commands = Some(rx);
        PublisherPort { addr: p.start(), commands: tx }
    }

    pub(crate) fn new(args: PublisherArgs, guard: Option<ChildGuard>) -> Self {
        let queue = OfflineQueue::new(args.options.offline.capacity, args.options.offline.drop);
        let rate = args
            .provider
            .limits()
            .max_publish_rate
            .map(|r| connector_core::rate::TokenBucket::new(r, r, Instant::now()));
        Self {
            rate,
            rate_retry: None,
            deadlines: Deadlines::new(args.options.default_expiry),
            watchdog: Watchdog::new(args.options.stall, args.options.ack_timeout),
            watch_timer: None,
            discards: DiscardLog::default(),
            args,
            entries: Outbox::default(),
            queue,
            timer: None,
            link: None,
            completions: Completions::default(),
            commands: None,
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

    /// Accepts a message: returns its sequence number, or why not.
    fn accept(
        &mut self,
        publish: connector_core::Publish,
        reply: Option<Reply>,
        ctx: &mut Context<Self>,
    ) -> Result<u64, (PublishError, Option<Reply>)> {
        let limits = Limits { wait: publish.get_timeout(), expiry: publish.get_expiry() };
        let packet = match self.args.provider.encode_owned(publish) {
            Ok(p) => p,
            Err(e) => {
                self.metrics().published("message", "invalid");
                return Err((PublishError::Invalid(e), reply));
            }
        };
        self.accept_packet(packet, limits, reply, ctx)
    }

    /// Accepts a packet already mapped onto the wire (the provider's own requests: twin,
    /// method responses): the same queue, window, store and limits as a publish.
    fn accept_packet(
        &mut self,
        packet: OutboundPacket,
        limits: Limits,
        reply: Option<Reply>,
        ctx: &mut Context<Self>,
    ) -> Result<u64, (PublishError, Option<Reply>)> {
        let expiry = limits.expiry.or(self.args.options.default_expiry);
        let qos0 = packet.qos == QoS::AtMostOnce;
        if qos0 && self.link.is_none() && self.args.options.offline.qos0 == Qos0Offline::Fail {
            self.metrics().published("message", "not_connected");
            return Err((PublishError::NotConnected, reply));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = packet.size();
        let entries = &self.entries;
        let queued = self.queue.iter().map(|s| entries.get(*s).map_or(0, |e| e.packet.size()));
        match self.args.options.offline.byte_verdict(size, self.incomplete_bytes, queued) {
            ByteVerdict::Fits => {}
            ByteVerdict::FitsEvicting(n) => {
                for _ in 0..n {
                    if let Some(old) = self.queue.pop() {
                        self.evict(old, ctx);
                    }
                }
            }
            ByteVerdict::Refused => {
                let max_bytes = self.args.options.offline.max_bytes.unwrap_or(0);
                self.stats.rejected_newest_total += 1;
                self.metrics().queue_dropped("newest", 1);
                self.metrics().published("message", "store_full");
                debug!(size, max_bytes, incomplete = self.incomplete_bytes, "byte cap: message refused");
                return Err((PublishError::StoreFull { size, max_bytes }, reply));
            }
        }
        match self.queue.push(seq) {
            PushOutcome::Queued => {}
            PushOutcome::QueuedEvicting(old) => self.evict(old, ctx),
            PushOutcome::Rejected(_) => {
                self.stats.rejected_newest_total += 1;
                self.metrics().queue_dropped("newest", 1);
                self.metrics().published("message", "rejected");
                return Err((PublishError::QueueFull { capacity: self.queue.capacity() }, reply));
            }
        }
        let mut persisted = false;
        let mut expires_ms = None;
        if !qos0 {
            if let Some(store) = &mut self.store {
                expires_ms = expiry.map(|d| wall_ms(SystemTime::now()).saturating_add(millis(d)));
                if let Err(e) = store.append(seq, &packet, expires_ms) {
                    error!(error = %e, "store: append failed; message refused");
                    self.queue.remove_where(|s| *s == seq);
                    return Err((PublishError::Persistence(e.to_string()), reply));
                }
                persisted = true;
            }
        }
        self.incomplete_bytes += size;
        let wait = limits.wait.filter(|_| reply.is_some());
        let entry =
            Entry { packet, reply, state: State::Queued, attempts: 0, persisted, expiry, expires_ms, wait };
        self.entries.insert(seq, entry);
        if expiry.is_some() || wait.is_some() {
            if let Some(d) = expiry {
                self.deadlines.push(crate::requests::deadline_after(d), seq, Due::Expiry, d);
            }
            if let Some(w) = wait {
                self.deadlines.push(crate::requests::deadline_after(w), seq, Due::Wait, w);
            }
            if self.deadlines.len() > 2 * self.entries.len() + 1024 {
                let entries = &self.entries;
                self.deadlines.prune(|s| entries.get(s).is_some());
            }
            self.schedule_timer(ctx);
        }
        self.pump(ctx);
        Ok(seq)
    }

    /// Drops a queued message to make room for a newer one (drop-oldest): its caller gets
    /// `Dropped`, and the drop is counted.
    fn evict(&mut self, seq: u64, ctx: &mut Context<Self>) {
        self.stats.dropped_oldest_total += 1;
        self.metrics().queue_dropped("oldest", 1);
        self.discard(Discard::Evicted, 1, ctx);
        self.finish(seq, Err(PublishError::Dropped));
    }

    /// Counts and logs removals of accepted messages.
    fn discard(&mut self, why: Discard, n: u64, ctx: &mut Context<Self>) {
        self.metrics().discarded(why.label(), n);
        if let Some(wait) = self.discards.note(why, n, Instant::now()) {
            ctx.run_later(wait, |act, _| act.discards.flush(Instant::now()));
        }
    }

    fn schedule_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.deadlines.next() else { return };
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

    /// Expiries and callers' waits that came due.
    fn expire(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut expired_queued = Vec::new();
        let mut expired = 0;
        while let Some((seq, due)) = self.deadlines.pop_due(now) {
            let Some(entry) = self.entries.get_mut(seq) else { continue };
            match due {
                Due::Wait => {
                    // The caller stops waiting; the message stays.
                    if let (Some(reply), Some(after)) = (entry.reply.take(), entry.wait) {
                        self.stats.timed_out_total += 1;
                        reply.send(Err(PublishError::Timeout { after, id: MessageId(seq) }));
                    }
                }
                Due::Expiry => {
                    let after = entry.expiry.unwrap_or_default();
                    if entry.state == State::Queued {
                        expired_queued.push(seq);
                    }
                    self.stats.expired_total += 1;
                    self.metrics().published("message", "expired");
                    expired += 1;
                    self.finish(seq, Err(PublishError::Expired { after }));
                }
            }
        }
        if !expired_queued.is_empty() {
            self.queue.remove_where(|s| expired_queued.contains(s));
        }
        if expired > 0 {
            self.discard(Discard::Expired, expired, ctx);
        }
        self.update_gauges();
        self.schedule_timer(ctx);
        self.pump(ctx);
    }

    /// Completes an entry with an outcome: replies, updates counters and the store.
    fn finish(&mut self, seq: u64, outcome: Result<(), PublishError>) {
        let Some(entry) = self.entries.remove(seq) else { return };
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
            reply.send(outcome.map(|()| PublishAck { id: MessageId(seq), attempts: entry.attempts }));
        }
    }

    /// Withdraws an accepted message at its caller's request.
    fn cancel(&mut self, seq: u64, ctx: &mut Context<Self>) -> Cancelled {
        let Some(entry) = self.entries.get(seq) else { return Cancelled::Unknown };
        let sent = entry.attempts > 0;
        if entry.state == State::Queued {
            self.queue.remove_where(|s| *s == seq);
        }
        self.stats.cancelled_total += 1;
        self.discard(Discard::Cancelled, 1, ctx);
        self.finish(seq, Err(PublishError::Cancelled));
        self.update_gauges();
        self.pump(ctx);
        if sent {
            Cancelled::Abandoned
        } else {
            Cancelled::Withdrawn
        }
    }

    /// Arms the watchdog's timer for `at`, unless it is armed earlier already.
    fn arm_watchdog(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((armed, h)) = self.watch_timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(h);
        }
        let h = ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.watch_timer = None;
            act.watch(ctx);
        });
        self.watch_timer = Some((at, h));
    }

    /// A new link, or none: the watchdog starts afresh.
    fn reset_watchdog(&mut self, ctx: &mut Context<Self>) {
        self.watchdog.reset();
        if let Some((_, h)) = self.watch_timer.take() {
            ctx.cancel_future(h);
        }
    }

    /// The watchdog looks at the oldest unacknowledged PUBLISH.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        let Some((generation, _)) = self.link else { return };
        let entries = &self.entries;
        self.watchdog.prune(|seq, at| in_flight_since(entries, seq, generation, at));
        let (report, next) = self.watchdog.check(Instant::now());
        if let Some(why) = report {
            match why {
                crate::messages::Suspicion::Stalled { unacked_for, .. } => {
                    self.stats.stalls_total += 1;
                    warn!(generation, unacked_for = ?unacked_for, inflight = self.inflight, "publishes stalled with nothing heard from the broker; probing the link");
                }
                crate::messages::Suspicion::AckTimeout { after } => {
                    self.stats.ack_timeouts_total += 1;
                    warn!(generation, after = ?after, "a publish went unacknowledged for the acknowledgement timeout; replacing the link");
                }
            }
            if let Some(sup) = &self.args.supervisor {
                let _ = sup.try_send(LinkSuspect { generation, why });
            }
        }
        if let Some(at) = next {
            self.arm_watchdog(at, ctx);
        }
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
        let Some((generation, link)) = self.link.clone() else {
            self.update_gauges();
            return;
        };
        let window = self.args.options.inflight_window;
        let mut now = None;
        let mut watched = None;
        while budget > 0 && self.inflight < window {
            if let Some(bucket) = &mut self.rate {
                let t = *now.get_or_insert_with(Instant::now);
                if !self.queue.is_empty() && !bucket.try_take(t) {
                    // Over the service's rate: send the rest when the next token is there.
                    if self.rate_retry.is_none() {
                        self.stats.paced_total += 1;
                        let wait = bucket.wait_time(t).max(Duration::from_millis(1));
                        self.rate_retry = Some(ctx.run_later(wait, |act, ctx| {
                            act.rate_retry = None;
                            act.pump(ctx);
                        }));
                    }
                    break;
                }
            }
            let Some(seq) = self.queue.pop() else { break };
            let Some(entry) = self.entries.get_mut(seq) else { continue };
            match link.publish(&entry.packet) {
                Ok(done) => {
                    entry.attempts += 1;
                    if entry.attempts > 1 {
                        self.stats.resent_total += 1;
                    }
                    let since = *now.get_or_insert_with(Instant::now);
                    entry.state = State::InFlight { generation, since };
                    self.inflight += 1;
                    self.inflight_bytes += entry.packet.size();
                    if entry.packet.qos != QoS::AtMostOnce {
                        self.watchdog.sent(seq, since);
                        watched = Some(since);
                    }
                    self.completions.push(seq, generation, done);
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
                    self.discard(Discard::Failed, 1, ctx);
                    self.finish(seq, Err(PublishError::Transport(e)));
                }
            }
        }
        if let (Some(since), None) = (watched, self.watch_timer) {
            // Something is watched: look again when the oldest could first be overdue.
            let after = self.watchdog.stall_after().unwrap_or(self.args.options.ack_timeout);
            self.arm_watchdog(since + after.min(self.args.options.ack_timeout), ctx);
        }
        self.update_gauges();
    }

    fn on_completion(&mut self, (seq, generation, result): Done, ctx: &mut Context<Self>) {
        let Some(entry) = self.entries.get(seq) else { return };
        let State::InFlight { since, generation: g } = entry.state else { return };
        if g != generation {
            return;
        }
        match result {
            Ok(()) => {
                if entry.packet.qos == QoS::AtMostOnce {
                    self.metrics().sent_qos0.inc();
                } else {
                    let now = Instant::now();
                    let latency = now.saturating_duration_since(since);
                    self.metrics().acked.inc();
                    self.metrics().ack_latency.observe(latency.as_secs_f64());
                    self.watchdog.heard(now, Some(latency));
                }
                self.stats.acked_total += 1;
                self.finish(seq, Ok(()));
                let entries = &self.entries;
                self.watchdog.prune(|s, at| in_flight_since(entries, s, generation, at));
            }
            Err(TransportError::NotConnected) => {
                // Stays in flight until LinkDown puts it back in the queue.
                debug!(seq, "publish interrupted by disconnect");
                return;
            }
            Err(e) => {
                if entry.attempts < 3 {
                    debug!(seq, error = %e, "publish failed; retrying");
                    let size = entry.packet.size();
                    if let Some(entry) = self.entries.get_mut(seq) {
                        entry.state = State::Queued;
                    }
                    self.inflight -= 1;
                    self.inflight_bytes -= size;
                    self.queue.push_front_all(std::iter::once(seq));
                } else {
                    self.stats.failed_total += 1;
                    self.metrics().published("message", "failed");
                    self.discard(Discard::Failed, 1, ctx);
                    self.finish(seq, Err(PublishError::Transport(e)));
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
        let mut live: Vec<(u64, &OutboundPacket, Option<u64>)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.persisted)
            .map(|(s, e)| (s, &e.packet, e.expires_ms))
            .collect();
        live.sort_by_key(|(s, _, _)| *s);
        if let Err(e) = store.compact(live.into_iter()) {
            warn!(error = %e, "store: compaction failed");
        }
    }

    fn requeue_inflight(&mut self, generation: u64) {
        let mut back: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::InFlight { generation: g, .. } if g == generation))
            .map(|(s, _)| s)
            .collect();
        back.sort_unstable();
        for seq in &back {
            if let Some(e) = self.entries.get_mut(*seq) {
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

    fn recover(&mut self, ctx: &mut Context<Self>) {
        let Some(dir) = self.args.options.persistence.clone() else {
            return;
        };
        match Store::open(&dir, self.args.options.fsync) {
            Ok((store, pending)) => {
                let n = pending.len();
                let now_ms = wall_ms(SystemTime::now());
                let mut seqs = Vec::with_capacity(n);
                for (seq, Stored { packet, expires_ms }) in pending {
                    self.incomplete_bytes += packet.size();
                    // No deadline from the time it was read: only its stored expiry applies.
                    let expiry = expires_ms.map(|at| Duration::from_millis(at.saturating_sub(now_ms)));
                    let entry = Entry {
                        packet,
                        reply: None,
                        state: State::Queued,
                        attempts: 0,
                        persisted: true,
                        expiry,
                        expires_ms,
                        wait: None,
                    };
                    self.entries.insert(seq, entry);
                    if let Some(left) = expiry {
                        self.deadlines.push(crate::requests::deadline_after(left), seq, Due::Expiry, left);
                    }
                    self.next_seq = self.next_seq.max(seq + 1);
                    seqs.push(seq);
                }
                // Recovered messages were accepted before the restart: they go first and are
                // never refused by the capacity.
                self.queue.push_front_all(seqs.into_iter());
                if n > 0 {
                    tracing::info!(recovered = n, dir = %dir.display(), "store: recovered unsent messages");
                }
                self.store = Some(store);
                self.schedule_timer(ctx);
                self.update_gauges();
            }
            Err(e) => {
                error!(error = %e, dir = %dir.display(), "store: cannot open; persistence disabled");
            }
        }
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A full mailbox would defer `send`s and could reorder them; the offline queue is
        // the bound that matters.
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        ctx.add_stream(self.completions.clone());
        if let Some(rx) = self.commands.take() {
            ctx.add_stream(tokio_stream_from(rx));
        }
        self.recover(ctx);
    }
}

impl Handler<PublishRequest> for Publisher {
    type Result = PublishResponse;

    fn handle(&mut self, msg: PublishRequest, ctx: &mut Self::Context) -> Self::Result {
        let slot: ReplySlot = Rc::new(Cell::new(None));
        match self.accept(msg.0, Some(Reply::Slot(slot.clone())), ctx) {
            Ok(_) => PublishResponse { immediate: None, slot: Some(slot) },
            Err((e, _)) => PublishResponse { immediate: Some(Err(e)), slot: None },
        }
    }
}

impl Handler<crate::messages::PublishPacket> for Publisher {
    type Result = PublishResponse;

    fn handle(&mut self, msg: crate::messages::PublishPacket, ctx: &mut Self::Context) -> Self::Result {
        let slot: ReplySlot = Rc::new(Cell::new(None));
        let limits = Limits { wait: None, expiry: msg.expiry };
        match self.accept_packet(msg.packet, limits, Some(Reply::Slot(slot.clone())), ctx) {
            Ok(_) => PublishResponse { immediate: None, slot: Some(slot) },
            Err((e, _)) => PublishResponse { immediate: Some(Err(e)), slot: None },
        }
    }
}

impl MessageResponse<Publisher, crate::messages::PublishPacket> for PublishResponse {
    fn handle(self, ctx: &mut Context<Publisher>, tx: Option<OneshotSender<Outcome>>) {
        <Self as MessageResponse<Publisher, PublishRequest>>::handle(self, ctx, tx);
    }
}

impl Handler<Enqueue> for Publisher {
    type Result = Result<MessageId, PublishError>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        self.accept(msg.0, None, ctx).map(MessageId).map_err(|(e, _)| e)
    }
}

impl Handler<Cancel> for Publisher {
    type Result = MessageResult<Cancel>;

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.cancel(msg.0 .0, ctx))
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
        self.link = Some((msg.generation, msg.link));
        self.reset_watchdog(ctx);
        self.start_draining(ctx);
        self.pump(ctx);
    }
}

impl Handler<LinkDown> for Publisher {
    type Result = ();

    fn handle(&mut self, msg: LinkDown, ctx: &mut Self::Context) {
        if self.link.as_ref().is_some_and(|(g, _)| *g == msg.generation) {
            self.link = None;
            // The dead client's completions may never come: forget them.
            self.completions.clear();
        }
        if let Some(h) = self.draining.take() {
            ctx.cancel_future(h);
        }
        self.reset_watchdog(ctx);
        self.requeue_inflight(msg.generation);
        self.update_gauges();
    }
}

impl Handler<Shutdown> for Publisher {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        // Persisted messages stay in the store for the next run; their callers learn that
        // this run will not complete them.
        for seq in self.entries.seqs() {
            if let Some(e) = self.entries.get_mut(seq) {
                e.persisted = false;
            }
            self.finish(seq, Err(PublishError::Stopped));
        }
        ctx.stop();
    }
}

impl StreamHandler<Command> for Publisher {
    fn handle(&mut self, cmd: Command, ctx: &mut Self::Context) {
        match cmd {
            Command::Publish(p, tx) => {
                if let Err((e, Some(reply))) = self.accept(p, Some(Reply::Direct(tx)), ctx) {
                    reply.send(Err(e));
                }
            }
            Command::Enqueue(p, tx) => {
                let _ = tx.send(self.accept(p, None, ctx).map(MessageId).map_err(|(e, _)| e));
            }
            Command::Packet(p, tx) => {
                let reply = Some(Reply::Direct(tx));
                if let Err((e, Some(reply))) = self.accept_packet(p, Limits::default(), reply, ctx) {
                    reply.send(Err(e));
                }
            }
            Command::Cancel(id, tx) => {
                let _ = tx.send(self.cancel(id.0, ctx));
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl StreamHandler<Done> for Publisher {
    fn handle(&mut self, done: Done, ctx: &mut Self::Context) {
        self.on_completion(done, ctx);
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

/// The limits a caller put on one message.
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    /// How long the caller waits for the outcome.
    wait: Option<Duration>,
    /// When the message is removed unacknowledged.
    expiry: Option<Duration>,
}

/// Whether `seq` is still waiting for its acknowledgement from the send made at `at` on
/// link `generation`.
fn in_flight_since(entries: &Outbox, seq: u64, generation: u64, at: Instant) -> bool {
    entries.get(seq).is_some_and(
        |e| matches!(e.state, State::InFlight { generation: g, since } if g == generation && since == at),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// An mpsc receiver as a `Stream`.
pub(crate) fn tokio_stream_from<T: 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
