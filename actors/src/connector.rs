//! `Connector::builder(provider)…start()`: the one way to build the tree, and the handle it
//! returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use connector_core::{
    BackoffPolicy, Clock, ConnectionEvent, ConnectionMetrics, ConnectionState, ConnectorMetrics, DropPolicy,
    Inbound, OfflinePolicy, Provider, Publish, QoS, Random, SystemClock, ThreadRandom,
};
use futures::Stream;
use prometheus::Registry;
use tokio::sync::{mpsc, watch};

use crate::connection::{AddListener, ConnectionActor, DropLink, EventSink, Settings, Stop};
use crate::error::{ConnectorError, PublishError, SubscribeError};
use crate::fleet::ConnectPacer;
use crate::jobs::{JobsHandle, JobsSettings, JobsShared};
use crate::messages::{
    Cancelled, Event, GetStats, MessageId, PublishAck, PublisherStats, Sink, Subscribe, SubscriptionId,
    Unsubscribe,
};
use crate::methods::{MethodsHandle, MethodsSetup, SharedRegistry};
use crate::metrics_exporter::MetricsServer;
use crate::publisher::{Command, Publisher, PublisherArgs, PublisherOptions, StallPolicy};
use crate::slots::{command, send_packet, PublisherSlot, Slot};
use crate::subscriber::{SharedTable, Subscriber, SubscriberArgs};
use crate::supervision::RestartPolicy;
use crate::transport::{Transport, TransportKind};
use crate::twin::{TwinHandle, TwinRetry, TwinSettings, TwinShared};

/// Builds a [`Connector`].
pub struct ConnectorBuilder {
    provider: Arc<dyn Provider>,
    publisher: PublisherOptions,
    backoff: BackoffPolicy,
    reconnect: Arc<dyn connector_core::reconnect::ReconnectPolicy>,
    restart: RestartPolicy,
    metrics: Option<ConnectorMetrics>,
    registry: Option<Registry>,
    listeners: Vec<EventSink>,
    transport: Option<Arc<dyn Transport>>,
    clock: Arc<dyn Clock>,
    random: Box<dyn Random>,
    disconnect_timeout: Duration,
    operation_timeout: Duration,
    twin_retry: TwinRetry,
    method_deadline: Duration,
    pacer: Option<ConnectPacer>,
    transport_kind: Option<TransportKind>,
}

impl ConnectorBuilder {
    /// How throttled (429) device-state requests are retried before
    /// [`crate::TwinError::Throttled`].
    pub fn twin_retry(mut self, retry: TwinRetry) -> Self {
        self.twin_retry = retry;
        self
    }

    /// How long a direct-method handler may run before the caller is answered 504
    /// (default [`crate::methods::DEFAULT_METHOD_DEADLINE`]; see [`Connector::methods`]).
    pub fn method_deadline(mut self, d: Duration) -> Self {
        self.method_deadline = d;
        self
    }
    /// How long a SUBSCRIBE or UNSUBSCRIBE waits for the broker's acknowledgement, and a
    /// device-state (twin) request for its answer.
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }
    /// Offline queue capacity and drop policy.
    pub fn offline_queue(mut self, capacity: usize, drop: DropPolicy) -> Self {
        self.publisher.offline.capacity = capacity;
        self.publisher.offline.drop = drop;
        self
    }
    /// An exact cap on the bytes (topic + payload) of accepted messages not yet
    /// acknowledged, queued and in flight; the offline queue's drop policy applies at the cap
    /// (see [`OfflinePolicy::max_bytes`]). No cap by default.
    pub fn offline_max_bytes(mut self, bytes: usize) -> Self {
        self.publisher.offline.max_bytes = Some(bytes);
        self
    }
    /// The whole offline policy.
    pub fn offline(mut self, policy: OfflinePolicy) -> Self {
        self.publisher.offline = policy;
        self
    }
    /// Most messages in flight (sent, not acknowledged).
    pub fn inflight_window(mut self, n: usize) -> Self {
        self.publisher.inflight_window = n.max(1);
        self
    }
    /// How long one attempt waits for its PUBACK on one link (default 60 s). When it passes
    /// the link is replaced and the message sent again on the next one: it never removes a
    /// message (see [`ConnectorBuilder::default_expiry`] for that).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.publisher.ack_timeout = d;
        self
    }
    /// An expiry for every message without one of its own: accepted messages not
    /// acknowledged within `d` are removed, counted and reported. Off by default: messages
    /// wait for as long as an outage lasts.
    pub fn default_expiry(mut self, d: Duration) -> Self {
        self.publisher.default_expiry = Some(d);
        self
    }
    /// The stall watchdog's threshold and probe timeout (default 5 s and 5 s; see
    /// [`StallPolicy`]); `None` turns it off, leaving dead links to the keep-alive and the
    /// acknowledgement timeout.
    pub fn stall_watchdog(mut self, policy: Option<StallPolicy>) -> Self {
        self.publisher.stall = policy;
        self
    }
    /// Keeps accepted QoS 1 messages in an on-disk store in `dir` until acknowledged.
    pub fn persistence(mut self, dir: impl Into<PathBuf>) -> Self {
        self.publisher.persistence = Some(dir.into());
        self
    }
    /// `fsync` every store write.
    pub fn fsync(mut self, on: bool) -> Self {
        self.publisher.fsync = on;
        self
    }
    /// Reconnect backoff.
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }
    /// Whether to keep reconnecting (default: for ever). After each failed attempt and each
    /// lost connection the policy sees the failures in a row, the time offline and the
    /// backoff's delay, and answers "retry after" or "give up"; giving up emits
    /// [`ConnectionEvent::GaveUp`](connector_core::ConnectionEvent::GaveUp) and stops the
    /// connector. [`RetryLimits`](connector_core::reconnect::RetryLimits) gives up after a
    /// number of attempts or a time offline; a closure is a policy too.
    pub fn reconnect_policy(mut self, policy: impl connector_core::reconnect::ReconnectPolicy) -> Self {
        self.reconnect = Arc::new(policy);
        self
    }
    /// Child restart policy.
    pub fn restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }
    /// Metric families registered once and shared by several connectors.
    pub fn metrics(mut self, metrics: ConnectorMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
    /// A registry to register this connector's metric families in (once per registry; for
    /// several connectors in one registry use [`ConnectorBuilder::metrics`]).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }
    /// Sends lifecycle events to an actor.
    pub fn on_event(mut self, recipient: Recipient<Event>) -> Self {
        self.listeners.push(EventSink::Recipient(recipient));
        self
    }
    /// Sends lifecycle events to a channel (from the very first attempt on).
    pub fn events_to(mut self, tx: mpsc::Sender<ConnectionEvent>) -> Self {
        self.listeners.push(EventSink::Channel(tx));
        self
    }
    /// Paces this connector's connect attempts (first connects and reconnects) with others
    /// sharing the pacer (see [`crate::fleet`]).
    pub fn connect_pacer(mut self, pacer: ConnectPacer) -> Self {
        self.pacer = Some(pacer);
        self
    }
    /// The transport by kind, sized for this connector's in-flight window (the default is
    /// [`TransportKind::from_env`]; [`ConnectorBuilder::transport`] wins over this).
    pub fn transport_kind(mut self, kind: TransportKind) -> Self {
        self.transport_kind = Some(kind);
        self
    }
    /// A transport instance, for example one shared by many connectors (the default is
    /// [`TransportKind::from_env`]).
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Self {
        self.transport = Some(t);
        self
    }
    /// An injected clock.
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }
    /// Injected randomness (backoff jitter, renewal jitter).
    pub fn random(mut self, r: Box<dyn Random>) -> Self {
        self.random = r;
        self
    }
    /// How long a graceful disconnect waits for in-flight acknowledgements.
    pub fn disconnect_timeout(mut self, d: Duration) -> Self {
        self.disconnect_timeout = d;
        self
    }

    /// Starts the tree. Call inside a running actix `System`.
    pub fn start(self) -> Connector {
        let registry = self.registry.clone().unwrap_or_default();
        let families = match self.metrics {
            Some(m) => m,
            None => ConnectorMetrics::register(&registry).unwrap_or_else(|e| {
                tracing::error!(error = %e, "metric families already registered; this connector's metrics are detached");
                ConnectorMetrics::register(&Registry::new()).expect("a fresh registry has no conflicts")
            }),
        };
        let client = self
            .provider
            .connect_params(self.clock.wall())
            .map(|p| p.client_id)
            .unwrap_or_else(|_| "unknown".into());
        let metrics: ConnectionMetrics = families.connection(self.provider.name(), &client);
        let (state_tx, state_rx) = watch::channel(ConnectionState::Disconnected);
        let (closed_tx, _) = watch::channel(false);
        let transport = self.transport.unwrap_or_else(|| {
            let max_inflight = self.publisher.inflight_window.saturating_mul(2).max(64);
            self.transport_kind.unwrap_or_else(TransportKind::from_env).build(max_inflight)
        });
        let settings = Settings {
            provider: self.provider.clone(),
            transport,
            backoff: self.backoff,
            reconnect: self.reconnect,
            restart: self.restart,
            clock: self.clock,
            random: self.random,
            metrics: metrics.clone(),
            listeners: self.listeners,
            state_tx,
            closed_tx,
            disconnect_timeout: self.disconnect_timeout,
            pacer: self.pacer,
        };
        let pub_args = PublisherArgs {
            provider: self.provider.clone(),
            options: self.publisher,
            metrics: metrics.clone(),
            supervisor: None,
        };
        let twin_settings = self.provider.state().is_some().then(|| TwinSettings {
            provider: self.provider.clone(),
            timeout: self.operation_timeout,
            retry: self.twin_retry,
            shared: Arc::new(TwinShared::for_pushes(self.provider.state().map(|c| c.desired_pushes()))),
            metrics: metrics.clone(),
        });
        let twin_shared = twin_settings.as_ref().map(|t| t.shared.clone());
        let jobs_settings = self.provider.jobs().is_some().then(|| JobsSettings {
            provider: self.provider.clone(),
            timeout: self.operation_timeout,
            shared: Arc::new(JobsShared::default()),
            metrics: metrics.clone(),
        });
        let jobs_shared = jobs_settings.as_ref().map(|j| j.shared.clone());
        let table: SharedTable = SharedTable::default();
        let methods_setup = MethodsSetup {
            provider: self.provider.clone(),
            registry: SharedRegistry::default(),
            metrics: metrics.clone(),
        };
        methods_setup.registry.write().set_deadline(self.method_deadline);
        let sub_args = SubscriberArgs {
            provider: self.provider,
            timeout: self.operation_timeout,
            table,
            metrics: metrics.clone(),
        };
        let tree = ConnectionActor::start_tree(
            settings,
            pub_args,
            sub_args,
            twin_settings,
            jobs_settings,
            methods_setup,
        );
        let (publisher, subscriber) = (tree.publisher, tree.subscriber);
        let twin = tree.twin.zip(twin_shared).map(|(slot, shared)| TwinHandle { slot, shared });
        let jobs = tree.jobs.zip(jobs_shared).map(|(slot, shared)| JobsHandle {
            slot,
            shared,
            metrics: metrics.clone(),
        });
        let (methods, methods_args) = tree.methods;
        Connector {
            conn: tree.conn,
            twin,
            jobs,
            methods: MethodsHandle::new(methods, subscriber.clone(), methods_args),
            publisher: PublisherHandle { slot: publisher },
            subscriber: SubscriberHandle { slot: subscriber },
            state: state_rx,
            registry,
            metrics,
        }
    }
}

/// A running connection tree.
#[derive(Clone)]
pub struct Connector {
    conn: Addr<ConnectionActor>,
    methods: MethodsHandle,
    publisher: PublisherHandle,
    subscriber: SubscriberHandle,
    twin: Option<TwinHandle>,
    jobs: Option<JobsHandle>,
    state: watch::Receiver<ConnectionState>,
    registry: Registry,
    metrics: ConnectionMetrics,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("state", &*self.state.borrow()).finish_non_exhaustive()
    }
}

impl Connector {
    /// Starts building a connector over `provider`.
    pub fn builder(provider: impl Provider) -> ConnectorBuilder {
        Self::builder_arc(Arc::new(provider))
    }

    /// [`Connector::builder`] for a provider already behind an `Arc`.
    pub fn builder_arc(provider: Arc<dyn Provider>) -> ConnectorBuilder {
        ConnectorBuilder {
            provider,
            pacer: None,
            transport_kind: None,
            publisher: PublisherOptions::default(),
            backoff: BackoffPolicy::default(),
            reconnect: Arc::new(connector_core::reconnect::RetryLimits::forever()),
            restart: RestartPolicy::default(),
            metrics: None,
            registry: None,
            listeners: Vec::new(),
            transport: None,
            clock: Arc::new(SystemClock),
            random: Box::new(ThreadRandom),
            disconnect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
            twin_retry: TwinRetry::default(),
            method_deadline: crate::methods::DEFAULT_METHOD_DEADLINE,
        }
    }

    /// The Publisher.
    pub fn publisher(&self) -> PublisherHandle {
        self.publisher.clone()
    }

    /// The Subscriber.
    pub fn subscriber(&self) -> SubscriberHandle {
        self.subscriber.clone()
    }

    /// The TwinActor (device state), when the provider has it
    /// (`conn.twin()?.send(GetTwin).await??`, or [`TwinHandle::get`]).
    pub fn twin(&self) -> Option<TwinHandle> {
        self.twin.clone()
    }

    /// The JobsActor (device jobs), when the provider has a jobs channel (AWS IoT Jobs;
    /// Azure has none): requests, events and the handler registry.
    pub fn jobs(&self) -> Option<JobsHandle> {
        self.jobs.clone()
    }

    /// The direct-method dispatcher: register handlers by name, a default, or streams.
    pub fn methods(&self) -> MethodsHandle {
        self.methods.clone()
    }

    /// The ConnectionActor.
    pub fn connection(&self) -> Addr<ConnectionActor> {
        self.conn.clone()
    }

    /// The registry holding this connector's metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// This connection's metrics.
    pub fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// Whether connected now.
    pub fn is_connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// Waits until connected, at most `within`.
    pub async fn wait_connected(&self, within: Duration) -> Result<(), ConnectorError> {
        let mut rx = self.state.clone();
        let reached = tokio::time::timeout(within, async move {
            rx.wait_for(|s| matches!(s, ConnectionState::Connected | ConnectionState::Stopped))
                .await
                .map(|s| *s)
        })
        .await;
        match reached {
            Ok(Ok(ConnectionState::Connected)) => Ok(()),
            Ok(_) => Err(ConnectorError::Stopped),
            Err(_) => Err(ConnectorError::ConnectTimeout { after: within }),
        }
    }

    /// Lifecycle events from now on, as a stream.
    pub fn events(&self, capacity: usize) -> impl Stream<Item = ConnectionEvent> + Unpin {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.conn.do_send(AddListener(EventSink::Channel(tx)));
        channel_stream(rx)
    }

    /// Drops the link as a network failure would (fault injection).
    pub fn drop_link(&self) {
        self.conn.do_send(DropLink);
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (use a loopback address unless
    /// the metrics are meant to be reachable from elsewhere).
    pub async fn serve_metrics(&self, addr: SocketAddr) -> Result<MetricsServer, ConnectorError> {
        MetricsServer::start(addr, self.registry.clone(), self.state.clone())
            .await
            .map_err(|e| ConnectorError::Io(e.to_string()))
    }

    /// Stops gracefully: DISCONNECT (waiting for in-flight acknowledgements up to the
    /// disconnect timeout), then the children. Resolves when done.
    pub async fn stop(&self) {
        let _ = self.conn.send(Stop).await;
    }
}

/// A handle to the current Publisher (it survives Publisher restarts).
#[derive(Clone)]
pub struct PublisherHandle {
    slot: PublisherSlot,
}

impl PublisherHandle {
    /// The Publisher's current address, for actor code. A supervised restart replaces the actor, and
    /// this address with it: keep the handle (it always reaches the current one) and call
    /// this when sending, rather than keeping the address.
    pub fn addr(&self) -> Addr<Publisher> {
        self.slot.read().addr.clone()
    }

    /// Publishes and waits for PUBACK (QoS 1) or the write (QoS 0). The message is handed to
    /// the Publisher when this is called (not when the future is first polled), so calls
    /// through handles are ordered as made. This is the fast path: a command channel the
    /// Publisher drains, with no actix envelope per message; actor code can send
    /// [`crate::messages::PublishRequest`] to [`PublisherHandle::addr`] instead.
    pub fn publish(
        &self,
        p: Publish,
    ) -> impl std::future::Future<Output = Result<PublishAck, PublishError>> + 'static {
        let answer = command(&self.slot, move |tx| Command::Publish(p, tx));
        async move { answer.await? }
    }

    /// Hands a message over; resolves once it is accepted (and stored, with persistence).
    /// Ordered with [`PublisherHandle::publish`] calls.
    pub fn enqueue(
        &self,
        p: Publish,
    ) -> impl std::future::Future<Output = Result<MessageId, PublishError>> + 'static {
        let answer = command(&self.slot, move |tx| Command::Enqueue(p, tx));
        async move { answer.await? }
    }

    /// Publishes a packet the provider already mapped to the wire (a method response, a
    /// device-state request) and waits for PUBACK (QoS 1) or the write (QoS 0), with the
    /// same queueing, ordering and acknowledgement timeout as [`PublisherHandle::publish`].
    /// The packet is handed over when this is called, so dropping the future does not
    /// withdraw it.
    pub fn publish_packet(
        &self,
        packet: connector_core::OutboundPacket,
    ) -> impl std::future::Future<Output = Result<PublishAck, PublishError>> + 'static {
        send_packet(&self.slot, packet)
    }

    /// Withdraws an accepted message that is not yet acknowledged (its id comes from
    /// [`PublisherHandle::enqueue`] or a [`PublishError::Timeout`]); a caller still waiting
    /// gets [`PublishError::Cancelled`]. A message already sent may still reach the broker
    /// ([`Cancelled::Abandoned`]).
    pub fn cancel(
        &self,
        id: MessageId,
    ) -> impl std::future::Future<Output = Result<Cancelled, PublishError>> + 'static {
        command(&self.slot, move |tx| Command::Cancel(id, tx))
    }

    /// Operation statistics.
    pub fn stats(&self) -> impl std::future::Future<Output = Result<PublisherStats, PublishError>> + 'static {
        let fut = self.slot.read().addr.send(GetStats);
        async move { Ok(fut.await?) }
    }
}

/// A handle to the current Subscriber (it survives Subscriber restarts).
#[derive(Clone)]
pub struct SubscriberHandle {
    slot: Slot<Subscriber>,
}

impl SubscriberHandle {
    /// The Subscriber's current address, for actor code. A supervised restart replaces the actor, and
    /// this address with it: keep the handle (it always reaches the current one) and call
    /// this when sending, rather than keeping the address.
    pub fn addr(&self) -> Addr<Subscriber> {
        self.slot.read().clone()
    }

    /// Registers a route; resolves once the broker granted the subscription (or at once
    /// while offline: it is made on the next connection).
    pub async fn subscribe(&self, s: Subscribe) -> Result<SubscriptionId, SubscribeError> {
        let fut = self.slot.read().send(s);
        fut.await?
    }

    /// Removes a route.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<(), SubscribeError> {
        let fut = self.slot.read().send(Unsubscribe(id));
        fut.await?
    }

    /// Messages on topics matching `filter`, as a stream with `capacity` slots. When it is
    /// full, a QoS 1 message waits for room (and holds back inbound routing meanwhile: the
    /// broker sees the backpressure, nothing is lost); a QoS 0 message is dropped and counted
    /// (`recipient_full`).
    pub async fn stream(
        &self,
        filter: impl Into<String>,
        qos: QoS,
        capacity: usize,
    ) -> Result<(SubscriptionId, impl Stream<Item = Inbound> + Unpin), SubscribeError> {
        self.stream_with(filter.into(), qos, capacity, Sink::Channel).await
    }

    /// [`SubscriberHandle::stream`] for a consumer that would rather lose messages than hold
    /// others back: whatever finds it full is dropped and counted (`recipient_full`), QoS 1
    /// included.
    pub async fn stream_dropping(
        &self,
        filter: impl Into<String>,
        qos: QoS,
        capacity: usize,
    ) -> Result<(SubscriptionId, impl Stream<Item = Inbound> + Unpin), SubscribeError> {
        self.stream_with(filter.into(), qos, capacity, Sink::DroppingChannel).await
    }

    async fn stream_with(
        &self,
        filter: String,
        qos: QoS,
        capacity: usize,
        sink: fn(mpsc::Sender<Inbound>) -> Sink,
    ) -> Result<(SubscriptionId, impl Stream<Item = Inbound> + Unpin), SubscribeError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let key = crate::messages::RouteKey::Topic { filter, qos };
        let id = self.subscribe(Subscribe { key, sink: sink(tx) }).await?;
        Ok((id, channel_stream(rx)))
    }
}

fn channel_stream<T: 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Unpin {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
