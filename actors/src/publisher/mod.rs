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
//! # Where things are
//! `mod.rs`: the actor, its options and the messages it takes; `admission` (accept:
//! capacity, byte cap, QoS 0 offline), `draining` (queue → link within the window and the
//! provider's rate; requeue after a lost link; paced drain), `completions` (PUBACKs →
//! callers and store), `expiry` (expiry, evictions, cancellations), `recovery` (the store
//! read back after a restart), `outbox` (the table and its queues), `store` (the on-disk
//! log), `watchdog` (stall detection), `discards` (removal counts and warnings).
//!
//! The publish path is kept short: completion futures are polled from a `FuturesUnordered`
//! the Publisher owns (no relay task, no channel hop), replies go straight into the
//! caller's reply channel (no task per request), and the table is keyed by sequence number
//! with a trivial hasher.

mod admission;
mod completions;
#[cfg(test)]
mod delivery_tests;
mod discards;
mod draining;
mod expiry;
mod outbox;
mod recovery;
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
use completions::Completions;
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
