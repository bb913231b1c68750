//! The ConnectionActor: owns the link, runs the connection state machine
//! (Disconnected → Connecting → Connected → Backoff → Connecting …), broadcasts lifecycle
//! events, renews credentials through the reconnect path, and supervises its children.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use connector_core::reconnect::{ReconnectContext, ReconnectDecision, ReconnectPolicy};
use connector_core::{
    Backoff, BackoffPolicy, Clock, ConnectFailure, ConnectionEvent, ConnectionMetrics, ConnectionState,
    DisconnectReason, Provider, Random,
};
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, info_span, warn};

use crate::fleet::ConnectPacer;
use crate::jobs::{JobsActor, JobsArgs, JobsSettings};
use crate::messages::{Event, LinkDown, LinkSuspect, LinkUp, Route, Shutdown, Suspicion};
use crate::methods::{MethodsActor, MethodsArgs, MethodsSetup};
use crate::publisher::{tokio_stream_from, Publisher, PublisherArgs, PublisherPort};
use crate::subscriber::{Subscriber, SubscriberArgs};
use crate::supervision::ChildExited;
use crate::supervision::{ChildGuard, ChildKind, RestartPolicy, RestartTracker};
use crate::transport::{Connected, Link, LinkEvent, Transport};
use crate::twin::{TwinActor, TwinArgs, TwinSettings};

/// Where lifecycle events go.
#[derive(Clone, Debug)]
pub enum EventSink {
    /// An actor.
    Recipient(Recipient<Event>),
    /// A bounded channel.
    Channel(mpsc::Sender<ConnectionEvent>),
}

/// Register another lifecycle event sink.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddListener(pub EventSink);

/// Stop the connection: DISCONNECT, stop the children, emit `Stopped`. Resolves when done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Ask for the current state.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ConnectionState")]
pub struct GetState;

/// Drop the current link as if the network had failed (fault injection and tests of the
/// reconnect path; a real loss takes the same path).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct DropLink;

/// How long the Publisher waits for the Subscriber's re-subscriptions after a connect
/// before it gets the link anyway.
const SUBSCRIBED_WITHIN: Duration = Duration::from_secs(30);

use crate::slots::{PublisherSlot, Slot};

pub(crate) struct Settings {
    pub provider: Arc<dyn Provider>,
    pub transport: Arc<dyn Transport>,
    pub backoff: BackoffPolicy,
    pub reconnect: Arc<dyn ReconnectPolicy>,
    pub restart: RestartPolicy,
    pub clock: Arc<dyn Clock>,
    pub random: Box<dyn Random>,
    pub metrics: ConnectionMetrics,
    pub listeners: Vec<EventSink>,
    pub state_tx: watch::Sender<ConnectionState>,
    pub closed_tx: watch::Sender<bool>,
    pub disconnect_timeout: Duration,
    /// Spaces connect attempts with other connectors (fleet mode).
    pub pacer: Option<ConnectPacer>,
}

struct Child<T> {
    slot: Arc<RwLock<T>>,
    incarnation: u64,
    tracker: RestartTracker,
}

/// The root of the supervision tree.
pub struct ConnectionActor {
    s: Settings,
    backoff: Backoff,
    state: ConnectionState,
    generation: u64,
    link: Option<Arc<dyn Link>>,
    events: Option<SpawnHandle>,
    timer: Option<SpawnHandle>,
    renewal: Option<SpawnHandle>,
    attempt: u32,
    /// Since when the device has been without a connection (`None`: connected).
    offline_since: Option<Instant>,
    ever_connected: bool,
    stopping: bool,
    /// The generation whose link is being probed.
    probing: Option<u64>,
    publisher: Child<PublisherPort>,
    pub_args: PublisherArgs,
    subscriber: Child<Addr<Subscriber>>,
    sub_args: SubscriberArgs,
    /// The TwinActor, when the provider has device state.
    twin: Option<(Child<Addr<TwinActor>>, TwinArgs)>,
    /// The JobsActor, when the provider has a jobs channel.
    jobs: Option<(Child<Addr<JobsActor>>, JobsArgs)>,
    methods: Child<Addr<MethodsActor>>,
    methods_args: MethodsArgs,
}

/// The addresses of a started tree, as the `Connector` keeps them.
pub(crate) struct Tree {
    pub conn: Addr<ConnectionActor>,
    pub publisher: PublisherSlot,
    pub subscriber: Slot<Subscriber>,
    pub twin: Option<Slot<TwinActor>>,
    pub jobs: Option<Slot<JobsActor>>,
    pub methods: (Slot<MethodsActor>, MethodsArgs),
}

impl ConnectionActor {
    pub(crate) fn start_tree(
        mut s: Settings,
        pub_args: PublisherArgs,
        sub_args: SubscriberArgs,
        twin: Option<TwinSettings>,
        jobs: Option<JobsSettings>,
        methods_setup: MethodsSetup,
    ) -> Tree {
        let mut slots = None;
        let mut twin_slot = None;
        let mut jobs_slot = None;
        let mut pub_args = pub_args;
        let addr = ConnectionActor::create(|ctx| {
            let me = ctx.address().recipient::<ChildExited>();
            pub_args.supervisor = Some(ctx.address().recipient::<LinkSuspect>());
            let publisher = Publisher::spawn(
                pub_args.clone(),
                Some(ChildGuard { kind: ChildKind::Publisher, incarnation: 0, supervisor: me.clone() }),
            );
            let subscriber = Subscriber::new(
                sub_args.clone(),
                Some(ChildGuard { kind: ChildKind::Subscriber, incarnation: 0, supervisor: me.clone() }),
            )
            .start();
            let p = Arc::new(RwLock::new(publisher));
            let sub = Arc::new(RwLock::new(subscriber));
            let twin = twin.map(|settings| {
                let args = TwinArgs { settings, publisher: p.clone(), subscriber: sub.clone() };
                let guard = ChildGuard { kind: ChildKind::Twin, incarnation: 0, supervisor: me.clone() };
                let addr = TwinActor::new(args.clone(), Some(guard)).start();
                s.listeners.push(EventSink::Recipient(addr.clone().recipient()));
                let slot = Arc::new(RwLock::new(addr));
                twin_slot = Some(slot.clone());
                (Child { slot, incarnation: 0, tracker: RestartTracker::default() }, args)
            });
            let jobs = jobs.map(|settings| {
                let args = JobsArgs { settings, publisher: p.clone(), subscriber: sub.clone() };
                let guard = ChildGuard { kind: ChildKind::Jobs, incarnation: 0, supervisor: me.clone() };
                let addr = JobsActor::new(args.clone(), Some(guard)).start();
                s.listeners.push(EventSink::Recipient(addr.clone().recipient()));
                let slot = Arc::new(RwLock::new(addr));
                jobs_slot = Some(slot.clone());
                (Child { slot, incarnation: 0, tracker: RestartTracker::default() }, args)
            });
            let methods_args = methods_setup.with_publisher(p.clone());
            let methods = MethodsActor::new(
                methods_args.clone(),
                Some(ChildGuard { kind: ChildKind::Methods, incarnation: 0, supervisor: me }),
            )
            .start();
            let m = Arc::new(RwLock::new(methods));
            slots = Some((p.clone(), sub.clone(), (m.clone(), methods_args.clone())));
            let started = s.clock.now();
            ConnectionActor {
                backoff: Backoff::new(s.backoff.clone()),
                s,
                state: ConnectionState::Disconnected,
                generation: 0,
                link: None,
                events: None,
                timer: None,
                renewal: None,
                attempt: 0,
                offline_since: Some(started),
                ever_connected: false,
                stopping: false,
                probing: None,
                publisher: Child { slot: p, incarnation: 0, tracker: RestartTracker::default() },
                pub_args,
                subscriber: Child { slot: sub, incarnation: 0, tracker: RestartTracker::default() },
                sub_args,
                twin,
                jobs,
                methods: Child { slot: m, incarnation: 0, tracker: RestartTracker::default() },
                methods_args,
            }
        });
        let (publisher, subscriber, methods) = slots.expect("create runs its closure before returning");
        Tree { conn: addr, publisher, subscriber, twin: twin_slot, jobs: jobs_slot, methods }
    }

    fn set_state(&mut self, state: ConnectionState) {
        self.state = state;
        self.s.metrics.state.set(state as i64);
        self.s.metrics.connected.set(i64::from(state == ConnectionState::Connected));
        self.s.state_tx.send_replace(state);
    }

    fn emit(&mut self, event: ConnectionEvent) {
        debug!(?event, "lifecycle");
        self.s.listeners.retain(|sink| match sink {
            EventSink::Recipient(r) => !matches!(r.try_send(Event(event.clone())), Err(SendError::Closed(_))),
            EventSink::Channel(tx) => {
                !matches!(tx.try_send(event.clone()), Err(mpsc::error::TrySendError::Closed(_)))
            }
        });
    }

    /// Connects, after the pacer's slot when there is a pacer.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.timer = None;
        if let Some(pacer) = self.s.pacer.clone() {
            self.set_state(ConnectionState::Connecting);
            let slot = async move { pacer.slot().await };
            self.timer = Some(ctx.spawn(slot.into_actor(self).map(|(), act, ctx| {
                act.timer = None;
                act.connect_now(ctx)
            })));
            return;
        }
        self.connect_now(ctx);
    }

    fn connect_now(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.attempt += 1;
        self.set_state(ConnectionState::Connecting);
        self.s.metrics.connect_attempts.inc();
        self.emit(ConnectionEvent::AttemptingConnect { attempt: self.attempt });
        let params = match self.s.provider.connect_params(self.s.clock.wall()).and_then(|p| {
            p.validate()?;
            Ok(p)
        }) {
            Ok(p) => p,
            Err(e) => {
                self.failed(ConnectFailure::Credentials { message: e.to_string() }, ctx);
                return;
            }
        };
        let expires = params.credentials_expire;
        let span =
            info_span!("connect", client = %params.client_id, uri = ?params.uri, attempt = self.attempt);
        let fut = self.s.transport.connect(params);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let _e = span.enter();
            match res {
                Ok(c) if act.stopping => {
                    actix_rt::spawn(c.link.disconnect(Duration::from_secs(1)));
                }
                Ok(c) => act.connected(c, expires, ctx),
                Err(f) => act.failed(f, ctx),
            }
        }));
    }

    fn connected(&mut self, c: Connected, expires: Option<SystemTime>, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        info!(generation, session_present = c.session_present, "connected");
        if self.ever_connected {
            self.s.metrics.reconnects.inc();
        }
        self.ever_connected = true;
        self.attempt = 0;
        self.offline_since = None;
        self.backoff.connected(self.s.clock.now());
        self.link = Some(c.link.clone());
        self.events = Some(
            ctx.add_stream(futures::StreamExt::map(tokio_stream_from(c.events), move |e| (generation, e))),
        );
        self.set_state(ConnectionState::Connected);
        self.emit(ConnectionEvent::Connected { session_present: c.session_present });
        // The subscriptions first: the Publisher gets the link (and starts draining the
        // offline queue) once the Subscriber has re-subscribed.
        let session_present = c.session_present;
        // Bounded: a Subscriber held by a full recipient must not keep the Publisher offline.
        let subscribed = tokio::time::timeout(
            SUBSCRIBED_WITHIN,
            self.subscriber.slot.read().send(LinkUp { generation, link: c.link.clone(), session_present }),
        );
        let link = c.link;
        ctx.spawn(subscribed.into_actor(self).map(move |_, act, _| {
            if act.generation == generation && act.link.is_some() {
                act.publisher.slot.read().addr.do_send(LinkUp { generation, link, session_present });
            }
        }));
        self.schedule_renewal(expires, ctx);
    }

    /// Ends the current link because it no longer delivers: close it without waiting and
    /// reconnect with backoff.
    fn declare_dead(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        if let Some(link) = self.link.clone() {
            actix_rt::spawn(link.disconnect(Duration::ZERO));
            self.lost(reason, ctx);
        }
    }

    fn failed(&mut self, reason: ConnectFailure, ctx: &mut Context<Self>) {
        self.s.metrics.connect_failed(reason.label());
        let Some(delay) = self.next_attempt(self.attempt, ctx) else {
            warn!(reason = %reason, "connect failed; not retrying");
            return;
        };
        warn!(reason = %reason, retry_in = ?delay, "connect failed");
        self.emit(ConnectionEvent::ConnectionFailed { reason, retry_in: delay });
        self.retry_after(delay, ctx);
    }

    /// The delay before the next attempt, as the reconnect policy decides from the
    /// backoff's; `None` when it gives up (then `GaveUp` is emitted and the connection
    /// stops).
    fn next_attempt(&mut self, failures: u32, ctx: &mut Context<Self>) -> Option<Duration> {
        if self.stopping {
            // Stopping already: no attempt follows, and no policy is asked.
            return None;
        }
        let now = self.s.clock.now();
        let backoff = self.backoff.next_delay(now, self.s.random.as_mut());
        let offline_for = now.saturating_duration_since(*self.offline_since.get_or_insert(now));
        let cx = ReconnectContext { failures, offline_for, backoff };
        match self.s.reconnect.decide(&cx) {
            ReconnectDecision::RetryAfter(d) => Some(d),
            ReconnectDecision::GiveUp(reason) => {
                error!(failures, offline_for = ?offline_for, reason = %reason, "reconnect policy gave up; stopping");
                self.emit(ConnectionEvent::GaveUp { failures, offline_for, reason: reason.clone() });
                self.shutdown(format!("gave up reconnecting: {reason}"), ctx);
                None
            }
        }
    }

    fn retry_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.set_state(ConnectionState::Backoff);
        self.timer = Some(ctx.run_later(delay, |act, ctx| act.connect(ctx)));
    }

    /// Ends the current link: children requeue, the event stream is dropped.
    fn link_down(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) -> Option<Arc<dyn Link>> {
        let link = self.link.take()?;
        if let Some(h) = self.events.take() {
            ctx.cancel_future(h);
        }
        if let Some(h) = self.renewal.take() {
            ctx.cancel_future(h);
        }
        self.s.metrics.disconnected(reason.label());
        self.emit(ConnectionEvent::Disconnected { reason });
        Some(link)
    }

    fn notify_down(&self) {
        let generation = self.generation;
        self.publisher.slot.read().addr.do_send(LinkDown { generation });
        self.subscriber.slot.read().do_send(LinkDown { generation });
    }

    fn lost(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        if self.link_down(reason.clone(), ctx).is_none() {
            return;
        }
        warn!(reason = reason.label(), "connection lost");
        self.offline_since = Some(self.s.clock.now());
        self.notify_down();
        if let Some(delay) = self.next_attempt(0, ctx) {
            self.retry_after(delay, ctx);
        }
    }

    fn schedule_renewal(&mut self, expires: Option<SystemTime>, ctx: &mut Context<Self>) {
        let Some(expires) = expires else { return };
        let lifetime = expires.duration_since(self.s.clock.wall()).unwrap_or_default();
        // Renew at 80–90 % of the remaining lifetime (jittered so a fleet does not renew in
        // step), and never later than one second before expiry.
        let fraction = 0.8 + 0.1 * self.s.random.next_f64();
        let at = lifetime.mul_f64(fraction).min(lifetime.saturating_sub(Duration::from_secs(1)));
        debug!(renew_in = ?at, "credential renewal scheduled");
        self.renewal = Some(ctx.run_later(at, |act, ctx| act.renew(ctx)));
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        self.renewal = None;
        let Some(link) = self.link_down(DisconnectReason::CredentialRenewal, ctx) else {
            return;
        };
        info!("renewing credentials");
        self.s.metrics.credential_renewals.inc();
        self.set_state(ConnectionState::Connecting);
        let fut = link.disconnect(self.s.disconnect_timeout);
        ctx.spawn(fut.into_actor(self).map(|(), act, ctx| {
            act.notify_down();
            act.connect(ctx);
        }));
    }

    fn restart_child(&mut self, kind: ChildKind, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let policy = self.s.restart;
        let allowed = match kind {
            ChildKind::Publisher => self.publisher.tracker.allow(&policy, now),
            ChildKind::Subscriber => self.subscriber.tracker.allow(&policy, now),
            ChildKind::Twin => self.twin.as_mut().is_none_or(|(c, _)| c.tracker.allow(&policy, now)),
            ChildKind::Methods => self.methods.tracker.allow(&policy, now),
            ChildKind::Jobs => self.jobs.as_mut().is_none_or(|(c, _)| c.tracker.allow(&policy, now)),
        };
        if !allowed {
            error!(child = kind.label(), "restart limit exceeded; stopping the connection");
            self.shutdown(format!("restart limit exceeded for the {}", kind.label()), ctx);
            return;
        }
        warn!(child = kind.label(), "child exited; restarting");
        self.s.metrics.restarted(kind.label());
        let me = ctx.address().recipient::<ChildExited>();
        let link = self.link.clone().map(|l| (self.generation, l));
        match kind {
            ChildKind::Publisher => {
                self.publisher.incarnation += 1;
                let guard = ChildGuard { kind, incarnation: self.publisher.incarnation, supervisor: me };
                let port = Publisher::spawn(self.pub_args.clone(), Some(guard));
                let addr = port.addr.clone();
                if let Some((generation, link)) = link {
                    addr.do_send(LinkUp { generation, link, session_present: true });
                }
                *self.publisher.slot.write() = port;
            }
            ChildKind::Subscriber => {
                self.subscriber.incarnation += 1;
                let guard = ChildGuard { kind, incarnation: self.subscriber.incarnation, supervisor: me };
                let addr = Subscriber::new(self.sub_args.clone(), Some(guard)).start();
                if let Some((generation, link)) = link {
                    addr.do_send(LinkUp { generation, link, session_present: true });
                }
                *self.subscriber.slot.write() = addr;
            }
            ChildKind::Twin => {
                let Some((child, args)) = self.twin.as_mut() else { return };
                child.incarnation += 1;
                let guard = ChildGuard { kind, incarnation: child.incarnation, supervisor: me };
                let addr = TwinActor::new(args.clone(), Some(guard)).start();
                self.s.listeners.push(EventSink::Recipient(addr.clone().recipient()));
                if link.is_some() {
                    // Up already: the new actor catches up on what its predecessor missed.
                    addr.do_send(Event(ConnectionEvent::Connected { session_present: true }));
                }
                *child.slot.write() = addr;
            }
            ChildKind::Jobs => {
                let Some((child, args)) = self.jobs.as_mut() else { return };
                child.incarnation += 1;
                let guard = ChildGuard { kind, incarnation: child.incarnation, supervisor: me };
                let addr = JobsActor::new(args.clone(), Some(guard)).start();
                self.s.listeners.push(EventSink::Recipient(addr.clone().recipient()));
                if link.is_some() {
                    addr.do_send(Event(ConnectionEvent::Connected { session_present: true }));
                }
                *child.slot.write() = addr;
            }
            ChildKind::Methods => {
                self.methods.incarnation += 1;
                let guard = ChildGuard { kind, incarnation: self.methods.incarnation, supervisor: me };
                *self.methods.slot.write() =
                    MethodsActor::new(self.methods_args.clone(), Some(guard)).start();
            }
        }
    }

    /// Stops for good: DISCONNECT first (paho waits for in-flight acknowledgements up to
    /// the timeout, and their completions still reach the Publisher), then the children
    /// fail what cannot complete, then `Stopped`.
    fn shutdown(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let link = self.link.clone();
        let timeout = self.s.disconnect_timeout;
        let fut = async move {
            if let Some(link) = link {
                link.disconnect(timeout).await;
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |(), act, ctx| {
            act.link_down(DisconnectReason::Requested, ctx);
            act.publisher.slot.read().addr.do_send(Shutdown);
            act.subscriber.slot.read().do_send(Shutdown);
            if let Some((twin, _)) = &act.twin {
                twin.slot.read().do_send(Shutdown);
            }
            if let Some((jobs, _)) = &act.jobs {
                jobs.slot.read().do_send(Shutdown);
            }
            act.methods.slot.read().do_send(Shutdown);
            act.set_state(ConnectionState::Stopped);
            act.emit(ConnectionEvent::Stopped { reason });
            ctx.stop();
        }));
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.s.closed_tx.send_replace(true);
    }
}

impl StreamHandler<(u64, LinkEvent)> for ConnectionActor {
    fn handle(&mut self, (generation, event): (u64, LinkEvent), ctx: &mut Self::Context) {
        if generation != self.generation {
            return;
        }
        match event {
            LinkEvent::Message(m, ack) => self.subscriber.slot.read().do_send(Route(m, ack)),
            LinkEvent::Lost(reason) => self.lost(reason, ctx),
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<ChildExited> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        let current = match msg.kind {
            ChildKind::Publisher => self.publisher.incarnation,
            ChildKind::Subscriber => self.subscriber.incarnation,
            ChildKind::Twin => self.twin.as_ref().map_or(u64::MAX, |(c, _)| c.incarnation),
            ChildKind::Methods => self.methods.incarnation,
            ChildKind::Jobs => self.jobs.as_ref().map_or(u64::MAX, |(c, _)| c.incarnation),
        };
        if self.stopping || msg.incarnation != current {
            return;
        }
        self.restart_child(msg.kind, ctx);
    }
}

impl Handler<LinkSuspect> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: LinkSuspect, ctx: &mut Self::Context) {
        let Some(link) = self.link.clone() else { return };
        if msg.generation != self.generation || self.stopping {
            return;
        }
        match msg.why {
            Suspicion::AckTimeout { after } => {
                warn!(generation = msg.generation, after = ?after, "acknowledgement timeout: replacing the link");
                self.declare_dead(DisconnectReason::AckTimeout { after }, ctx);
            }
            Suspicion::Stalled { unacked_for, probe_timeout } => {
                if self.probing == Some(msg.generation) {
                    return;
                }
                self.probing = Some(msg.generation);
                let generation = msg.generation;
                debug!(generation, unacked_for = ?unacked_for, "probing a stalled link");
                ctx.spawn(link.probe(probe_timeout).into_actor(self).map(move |res, act, ctx| {
                    act.probing = None;
                    if act.generation != generation {
                        return;
                    }
                    match res {
                        Ok(()) => debug!(generation, "stalled link answered its probe"),
                        Err(e) => {
                            let unacked_for = unacked_for + probe_timeout;
                            warn!(generation, unacked_for = ?unacked_for, error = %e, "link declared dead: publishes unacknowledged and the probe unanswered");
                            act.declare_dead(DisconnectReason::Stalled { unacked_for }, ctx);
                        }
                    }
                }));
            }
        }
    }
}

impl Handler<AddListener> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: AddListener, _: &mut Self::Context) {
        self.s.listeners.push(msg.0);
    }
}

impl Handler<GetState> for ConnectionActor {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.state)
    }
}

impl Handler<DropLink> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: DropLink, ctx: &mut Self::Context) {
        self.declare_dead(DisconnectReason::ConnectionLost, ctx);
    }
}

impl Handler<Stop> for ConnectionActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) -> Self::Result {
        self.shutdown("requested".into(), ctx);
        let mut closed = self.s.closed_tx.subscribe();
        Box::pin(async move {
            let _ = closed.wait_for(|c| *c).await;
        })
    }
}

impl Drop for ConnectionActor {
    fn drop(&mut self) {
        self.s.state_tx.send_replace(ConnectionState::Stopped);
        self.s.closed_tx.send_replace(true);
    }
}
