//! actix message types. The data lives in `connector_core::model`; the orphan rule puts
//! the `Message` impls here, as thin wrappers.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use connector_core::{ConnectionEvent, Inbound, Publish, QoS};

use crate::error::{PublishError, SubscribeError};
use crate::transport::Link;

/// Publish and wait for the outcome: PUBACK for QoS 1, written for QoS 0.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<PublishAck, PublishError>")]
pub struct PublishRequest(pub Publish);

impl From<Publish> for PublishRequest {
    fn from(p: Publish) -> Self {
        Self(p)
    }
}

/// Publish a packet the provider has already mapped onto the wire (its own requests: twin
/// GET/PATCH, method responses), with the Publisher's queue, offline and acknowledgement
/// semantics; waits for the outcome as [`PublishRequest`] does.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<PublishAck, PublishError>")]
pub struct PublishPacket {
    /// The wire packet.
    pub packet: connector_core::OutboundPacket,
    /// Removes it (answering [`PublishError::Expired`]) if not acknowledged within this
    /// long: a request is worth sending only until its requester stops waiting.
    pub expiry: Option<std::time::Duration>,
}

/// Hand a message over and return as soon as it is accepted (queued, and written to the
/// on-disk store when persistence is on). From then on it is delivered at least once unless
/// a limit the user set removes it (its expiry, the queue's or store's cap under the drop
/// policy), which is counted in `connector_messages_discarded_total` and logged; its outcome
/// shows in the statistics and metrics.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<MessageId, PublishError>")]
pub struct Enqueue(pub Publish);

/// Withdraw an accepted message that is not yet acknowledged; its waiting caller gets
/// [`PublishError::Cancelled`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Cancelled")]
pub struct Cancel(pub MessageId);

/// What a [`Cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancelled {
    /// Removed before it was ever sent.
    Withdrawn,
    /// Removed, but it had been sent at least once: it may still reach the broker.
    Abandoned,
    /// Not found: already completed (acknowledged, expired, dropped) or never accepted.
    Unknown,
}

/// The Publisher's sequence number for an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// A completed publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// The message's sequence number.
    pub id: MessageId,
    /// How many times it was handed to a transport (more than 1 after a reconnect).
    pub attempts: u32,
}

/// Ask the Publisher for its operation statistics.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "PublisherStats")]
pub struct GetStats;

/// The Publisher's operation statistics (as AWS's `get_stats`): incomplete = accepted and
/// not yet completed (queued or in flight); unacked = sent and awaiting PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublisherStats {
    /// Messages accepted and not completed.
    pub incomplete_count: usize,
    /// Their payload + topic bytes.
    pub incomplete_bytes: usize,
    /// Messages sent and not acknowledged.
    pub unacked_count: usize,
    /// Their bytes.
    pub unacked_bytes: usize,
    /// Messages waiting in the offline queue.
    pub queued_count: usize,
    /// Messages acknowledged since start.
    pub acked_total: u64,
    /// Messages evicted (drop-oldest, at the queue's capacity or its byte cap) since start.
    pub dropped_oldest_total: u64,
    /// Messages refused when offered since start: by a full queue (drop-newest) or by the
    /// byte cap ([`PublishError::StoreFull`], either policy).
    pub rejected_newest_total: u64,
    /// Callers' waits ([`connector_core::Publish::timeout`]) that ended before the outcome
    /// since start (the messages stayed queued).
    pub timed_out_total: u64,
    /// Messages removed by their expiry since start.
    pub expired_total: u64,
    /// Messages cancelled by their callers since start.
    pub cancelled_total: u64,
    /// Attempts whose acknowledgement timeout passed (the link was then replaced) since start.
    pub ack_timeouts_total: u64,
    /// Times the stall watchdog suspected the link (oldest PUBLISH unacknowledged for the
    /// stall threshold, nothing heard) and asked for a probe, since start.
    pub stalls_total: u64,
    /// Messages sent again after a reconnect.
    pub resent_total: u64,
    /// Messages the transport failed for good since start.
    pub failed_total: u64,
    /// Times sending waited for the provider's publish rate (token bucket) since start.
    pub paced_total: u64,
}

/// A lifecycle event, as delivered to a `Recipient<Event>`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Event(pub ConnectionEvent);

/// An inbound message routed to a subscriber.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Received(pub Inbound);

/// An opaque id of a subscription route, to unsubscribe with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub u64);

/// A user handler for inbound messages, run inside the Subscriber. A panic in it is caught,
/// counted in `connector_handler_panics_total`, and the handler stays registered.
pub type Handler = Arc<dyn Fn(&Inbound) + Send + Sync>;

/// Where routed messages go.
#[derive(Clone)]
pub enum Sink {
    /// An actor; `try_send`, so a full or dead mailbox never blocks the others.
    Recipient(Recipient<Received>),
    /// A closure run in the Subscriber.
    Handler(Handler),
    /// A bounded channel (what [`crate::SubscriberHandle::stream`] reads). When it is full
    /// a QoS 1 message waits for room, and so does all inbound routing (backpressure back to
    /// the broker); a QoS 0 message is dropped and counted.
    Channel(tokio::sync::mpsc::Sender<Inbound>),
    /// A bounded channel that drops (and counts, `recipient_full`) whatever finds it full,
    /// QoS 1 included: for a consumer that prefers losing messages to holding others back
    /// (what [`crate::SubscriberHandle::stream_dropping`] reads).
    DroppingChannel(tokio::sync::mpsc::Sender<Inbound>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Recipient(_) => "Sink::Recipient",
            Sink::Handler(_) => "Sink::Handler",
            Sink::Channel(_) => "Sink::Channel",
            Sink::DroppingChannel(_) => "Sink::DroppingChannel",
        })
    }
}

/// What a route selects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteKey {
    /// User-topic messages whose topic matches the MQTT filter (subscribed at the broker).
    Topic {
        /// The topic filter.
        filter: String,
        /// Requested QoS.
        qos: QoS,
    },
    /// Every inbound message the provider classifies as this kind.
    Kind(connector_core::InboundKind),
    /// A broker subscription for messages of the provider's own services (an AWS named
    /// shadow's topics): kept in the table and made again after every reconnect whose
    /// session was not kept, like user filters, but it routes nothing itself — what
    /// arrives on it is classified and routed by [`RouteKey::Kind`].
    Service {
        /// The topic filter.
        filter: String,
        /// Requested QoS.
        qos: QoS,
    },
}

impl RouteKey {
    /// The broker filter this route needs, if any.
    pub fn filter(&self) -> Option<(&str, QoS)> {
        match self {
            RouteKey::Topic { filter, qos } | RouteKey::Service { filter, qos } => Some((filter, *qos)),
            RouteKey::Kind(_) => None,
        }
    }
}

/// Register a route.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<SubscriptionId, SubscribeError>")]
pub struct Subscribe {
    /// What to select.
    pub key: RouteKey,
    /// Where it goes.
    pub sink: Sink,
}

impl Subscribe {
    /// Messages on topics matching `filter`, to an actor.
    pub fn topic(filter: impl Into<String>, qos: QoS, recipient: Recipient<Received>) -> Self {
        Self { key: RouteKey::Topic { filter: filter.into(), qos }, sink: Sink::Recipient(recipient) }
    }

    /// Messages on topics matching `filter`, to a closure.
    pub fn handler(
        filter: impl Into<String>,
        qos: QoS,
        f: impl Fn(&Inbound) + Send + Sync + 'static,
    ) -> Self {
        Self { key: RouteKey::Topic { filter: filter.into(), qos }, sink: Sink::Handler(Arc::new(f)) }
    }

    /// A persistent broker subscription for a provider service (see [`RouteKey::Service`]).
    pub fn service(filter: impl Into<String>, qos: QoS) -> Self {
        Self { key: RouteKey::Service { filter: filter.into(), qos }, sink: Sink::Handler(Arc::new(|_| {})) }
    }
}

/// Remove a route (and the broker subscription when no route needs its filter any more).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), SubscribeError>")]
pub struct Unsubscribe(pub SubscriptionId);

// ---- internal messages between the ConnectionActor and its children ----

/// A new link is up (sent to children). The Subscriber answers once its re-subscriptions
/// are done (granted, refused or timed out); only then does the Publisher get it, so the
/// offline queue drains after the subscriptions are back (as the AWS V1 SDK drains).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkUp {
    pub generation: u64,
    pub link: Arc<dyn Link>,
    pub session_present: bool,
}

/// The Publisher suspects the link of this generation (sent to the ConnectionActor).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkSuspect {
    pub generation: u64,
    pub why: Suspicion,
}

/// Why the Publisher suspects a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspicion {
    /// The oldest QoS 1 PUBLISH has waited `unacked_for` with nothing heard: probe, for
    /// `probe_timeout`, and declare the link dead if the probe goes unanswered.
    Stalled { unacked_for: Duration, probe_timeout: Duration },
    /// A PUBLISH went unacknowledged for the acknowledgement timeout: replace the link.
    AckTimeout { after: Duration },
}

/// The link of this generation is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkDown {
    pub generation: u64,
}

/// The connection is stopping for good: fail whatever cannot complete.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// A raw inbound message for the Subscriber to classify and route.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Route(pub connector_core::InboundMessage, pub Option<crate::transport::Acker>);

/// Answered once the Subscriber has handled everything sent to it before (a `LinkUp` and
/// the re-subscription it starts): the TwinActor waits on it so that its requests go out
/// after the SUBSCRIBE for their responses.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Barrier;

/// Test hook: make a child panic inside a handler (compiled only with `fault-injection`).
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;
