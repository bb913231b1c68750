//! The Subscriber: the subscription table (filter → sinks), re-subscription after every
//! reconnect whose session was not kept, and typed routing through the provider's
//! classifier. Inbound QoS 1 is at-least-once: a recipient whose stream or mailbox is full
//! holds back routing until it takes the message (backpressure, back to the broker), and the
//! message is acknowledged only then; QoS 0 meeting a full recipient is dropped, and so is
//! anything meeting a [`Sink::DroppingChannel`]. Every delivery not made is counted by
//! reason.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use actix::prelude::*;
use connector_core::topic::{topic_matches, validate_topic_filter};
use connector_core::{ConnectionMetrics, Inbound, Provider, QoS};
use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::error::SubscribeError;
use crate::messages::{
    LinkDown, LinkUp, Received, Route, RouteKey, Shutdown, Sink, Subscribe, SubscriptionId, Unsubscribe,
};
use crate::supervision::ChildGuard;
use crate::transport::Link;

/// The subscription table. It belongs to the supervisor and outlives Subscriber restarts,
/// so registrations survive a crash of the actor.
#[derive(Debug, Default)]
pub(crate) struct Table {
    next_id: u64,
    routes: BTreeMap<u64, (RouteKey, Sink)>,
}

impl Table {
    /// Distinct broker subscriptions: each filter at the highest QoS asked for it.
    fn filters(&self) -> Vec<(String, QoS)> {
        let mut out: BTreeMap<&str, QoS> = BTreeMap::new();
        for (key, _) in self.routes.values() {
            if let Some((filter, qos)) = key.filter() {
                let e = out.entry(filter).or_insert(qos);
                *e = (*e).max(qos);
            }
        }
        out.into_iter().map(|(f, q)| (f.to_owned(), q)).collect()
    }

    fn uses_filter(&self, filter: &str) -> bool {
        self.routes.values().any(|(k, _)| k.filter().is_some_and(|(f, _)| f == filter))
    }
}

pub(crate) type SharedTable = Arc<Mutex<Table>>;

/// Everything a Subscriber is built from.
#[derive(Clone)]
pub(crate) struct SubscriberArgs {
    pub provider: Arc<dyn Provider>,
    /// How long a SUBSCRIBE or UNSUBSCRIBE may wait for its acknowledgement.
    pub timeout: std::time::Duration,
    pub table: SharedTable,
    pub metrics: ConnectionMetrics,
}

/// The Subscriber actor.
pub struct Subscriber {
    args: SubscriberArgs,
    link: Option<(u64, Arc<dyn Link>)>,
    _guard: Option<ChildGuard>,
}

impl Subscriber {
    pub(crate) fn new(args: SubscriberArgs, guard: Option<ChildGuard>) -> Self {
        Self { args, link: None, _guard: guard }
    }

    /// Routes `inbound` to every sink that selects it. A QoS 0 message meeting a full sink is
    /// dropped there and counted; a QoS 1 message (`wait`) is not: the sinks that were full
    /// come back as futures that complete once they took it, and the caller holds the
    /// Subscriber until then (backpressure, back to the broker's in-flight window).
    fn deliver(&self, inbound: Inbound, wait: bool) -> Vec<futures::future::BoxFuture<'static, ()>> {
        let metrics = &self.args.metrics;
        metrics.received(inbound.kind().as_str());
        let mut dead = Vec::new();
        let mut pending: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
        let mut delivered = false;
        {
            let table = self.args.table.lock();
            for (id, (key, sink)) in &table.routes {
                let selected = match key {
                    RouteKey::Topic { filter, .. } => {
                        matches!(inbound, Inbound::Message(_)) && topic_matches(filter, inbound.topic())
                    }
                    RouteKey::Kind(kind) => *kind == inbound.kind(),
                    RouteKey::Service { .. } => false,
                };
                if !selected {
                    continue;
                }
                delivered = true;
                match sink {
                    Sink::Recipient(r) => match r.try_send(Received(inbound.clone())) {
                        Ok(()) => {}
                        Err(SendError::Full(m)) if wait => {
                            let fut = r.send(m);
                            pending.push(Box::pin(async move {
                                let _ = fut.await;
                            }));
                        }
                        Err(SendError::Full(_)) => metrics.inbound_dropped("recipient_full"),
                        Err(SendError::Closed(_)) => {
                            metrics.inbound_dropped("recipient_closed");
                            dead.push(*id);
                        }
                    },
                    Sink::Channel(tx) => match tx.try_send(inbound.clone()) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(m)) if wait => {
                            let tx = tx.clone();
                            pending.push(Box::pin(async move {
                                let _ = tx.send(m).await;
                            }));
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                            metrics.inbound_dropped("recipient_full")
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                            metrics.inbound_dropped("recipient_closed");
                            dead.push(*id);
                        }
                    },
                    Sink::DroppingChannel(tx) => match tx.try_send(inbound.clone()) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                            metrics.inbound_dropped("recipient_full")
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                            metrics.inbound_dropped("recipient_closed");
                            dead.push(*id);
                        }
                    },
                    Sink::Handler(h) => {
                        if catch_unwind(AssertUnwindSafe(|| h(&inbound))).is_err() {
                            warn!(topic = %inbound.topic(), "inbound handler panicked; it stays registered");
                            metrics.handler_panicked("inbound");
                        }
                    }
                }
            }
        }
        if !delivered {
            debug!(topic = %inbound.topic(), kind = inbound.kind().as_str(), "no route");
            metrics.inbound_dropped("unrouted");
        }
        if !dead.is_empty() {
            let mut table = self.args.table.lock();
            for id in dead {
                table.routes.remove(&id);
            }
        }
        pending
    }

    /// Subscribes again to every filter the table and the provider need; resolves when
    /// every SUBSCRIBE has been answered (granted or refused) or has timed out.
    fn resubscribe(&self, link: Arc<dyn Link>) -> futures::future::BoxFuture<'static, ()> {
        let mut filters = self.args.table.lock().filters();
        let state = self.args.provider.state().map(|c| c.subscriptions()).unwrap_or_default();
        let jobs = self.args.provider.jobs().map(|c| c.subscriptions()).unwrap_or_default();
        for spec in self.args.provider.subscriptions().into_iter().chain(state).chain(jobs) {
            if !filters.iter().any(|(f, _)| *f == spec.filter) {
                filters.push((spec.filter, spec.qos));
            }
        }
        // Services that take a limited number of filters per SUBSCRIBE get several.
        let per = self.args.provider.limits().max_filters_per_subscribe.unwrap_or(usize::MAX).max(1);
        let timeout = self.args.timeout;
        let chunks: Vec<_> = filters
            .chunks(per)
            .map(|chunk| {
                let filters = chunk.to_vec();
                let fut = tokio::time::timeout(timeout, link.subscribe(filters.clone()));
                async move {
                    match fut.await {
                        Err(_) => warn!("re-subscribe timed out; retried on the next connection"),
                        Ok(Ok(granted)) => {
                            for ((f, _), g) in filters.iter().zip(granted) {
                                if g.is_none() {
                                    warn!(filter = %f, "broker refused a re-subscription");
                                }
                            }
                            debug!(filters = filters.len(), "re-subscribed");
                        }
                        Ok(Err(e)) => {
                            warn!(error = %e, "re-subscribe failed; retried on the next connection")
                        }
                    }
                }
            })
            .collect();
        Box::pin(async move {
            futures::future::join_all(chunks).await;
        })
    }
}

impl Actor for Subscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
    }
}

impl Handler<Subscribe> for Subscriber {
    type Result = ResponseActFuture<Self, Result<SubscriptionId, SubscribeError>>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        let (id, new_filter) = {
            if let Some((filter, _)) = msg.key.filter() {
                if let Err(e) = validate_topic_filter(filter) {
                    return Box::pin(actix::fut::ready(Err(SubscribeError::InvalidFilter(e))));
                }
            }
            let mut table = self.args.table.lock();
            let new_filter = match msg.key.filter() {
                Some((filter, qos)) => {
                    let existing = table.filters().into_iter().find(|(f, _)| f == filter).map(|(_, q)| q);
                    match existing {
                        Some(q) if q >= qos => None,
                        _ => Some((filter.to_owned(), qos)),
                    }
                }
                None => None,
            };
            table.next_id += 1;
            let id = table.next_id;
            table.routes.insert(id, (msg.key, msg.sink));
            (id, new_filter)
        };
        let (Some((filter, qos)), Some((_, link))) = (new_filter, self.link.clone()) else {
            // Offline (subscribed on the next connection) or nothing new to ask the broker.
            return Box::pin(actix::fut::ready(Ok(SubscriptionId(id))));
        };
        let after = self.args.timeout;
        let fut = tokio::time::timeout(after, link.subscribe(vec![(filter.clone(), qos)]));
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            let outcome = match res {
                Ok(Ok(granted)) if granted.first().copied().flatten().is_some() => {
                    return Ok(SubscriptionId(id))
                }
                Ok(Ok(_)) => SubscribeError::Refused { filter },
                Ok(Err(e)) => SubscribeError::Transport(e),
                Err(_) => SubscribeError::Timeout { after },
            };
            act.args.table.lock().routes.remove(&id);
            Err(outcome)
        }))
    }
}

impl Handler<Unsubscribe> for Subscriber {
    type Result = ResponseActFuture<Self, Result<(), SubscribeError>>;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) -> Self::Result {
        let unused = {
            let mut table = self.args.table.lock();
            match table.routes.remove(&msg.0 .0) {
                Some((key, _)) => key.filter().map(|(f, _)| f.to_owned()).filter(|f| !table.uses_filter(f)),
                None => None,
            }
        };
        let (Some(filter), Some((_, link))) = (unused, self.link.clone()) else {
            return Box::pin(actix::fut::ready(Ok(())));
        };
        let after = self.args.timeout;
        let fut = tokio::time::timeout(after, link.unsubscribe(vec![filter]));
        Box::pin(
            async move {
                match fut.await {
                    Ok(r) => r.map_err(SubscribeError::Transport),
                    Err(_) => Err(SubscribeError::Timeout { after }),
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<LinkUp> for Subscriber {
    /// Answered once the re-subscriptions are done, so that the Publisher drains after them.
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: LinkUp, _: &mut Self::Context) -> Self::Result {
        let fresh = self.link.as_ref().is_none_or(|(g, _)| *g != msg.generation);
        self.link = Some((msg.generation, msg.link.clone()));
        if fresh && !msg.session_present {
            // The SUBSCRIBEs are handed to the link now (before anything sent after this
            // message, such as the TwinActor's requests behind its `Barrier`).
            self.resubscribe(msg.link)
        } else {
            Box::pin(async {})
        }
    }
}

impl Handler<LinkDown> for Subscriber {
    type Result = ();

    fn handle(&mut self, msg: LinkDown, _: &mut Self::Context) {
        if self.link.as_ref().is_some_and(|(g, _)| *g == msg.generation) {
            self.link = None;
        }
    }
}

impl Handler<Route> for Subscriber {
    type Result = ();

    fn handle(&mut self, msg: Route, ctx: &mut Self::Context) {
        let Route(raw, ack) = msg;
        let qos1 = raw.qos == QoS::AtLeastOnce;
        let inbound = self.args.provider.classify(raw);
        let waits = self.deliver(inbound, qos1);
        if waits.is_empty() {
            if let Some(a) = ack {
                a.ack();
            }
            return;
        }
        // Every recipient has it only once the full ones took it: nothing else is routed
        // meanwhile (order is kept), and the acknowledgement waits with it.
        debug!(waiting = waits.len(), "inbound QoS 1: waiting for full recipients");
        ctx.wait(
            async move {
                futures::future::join_all(waits).await;
                if let Some(a) = ack {
                    a.ack();
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<crate::messages::Barrier> for Subscriber {
    type Result = ();

    fn handle(&mut self, _: crate::messages::Barrier, _: &mut Self::Context) {}
}

impl Handler<Shutdown> for Subscriber {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::messages::InjectPanic> for Subscriber {
    type Result = ();
    fn handle(&mut self, _: crate::messages::InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in the Subscriber");
    }
}
