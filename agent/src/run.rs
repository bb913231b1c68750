//! The agent's main loop: obtain an identity (cache, DPS, or static credentials), start the
//! actor tree on it, feed it telemetry (device stats, the ingestion socket), mirror device
//! state, answer methods, serve metrics, print status, and react to signals.
//!
//! A *session* is one [`Connector`] on one identity. When the service refuses a
//! provisioned identity (CONNACK not authorised), the session ends, the cached identity is
//! forgotten and the device provisions again; everything else (the ingestion socket, the
//! metrics endpoint, the on-disk store) lives across sessions.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector_actors::{Connector, MethodCall, MethodResponse, MetricsServer, PublisherHandle, TwinHandle};
use connector_azure::dps::client::{provision, ProvisioningOptions};
use connector_azure::dps::{DpsAuth, DpsOptions, DpsRegistration};
use connector_azure::{
    AzureOptions, AzureProvider, ConnectionString, Credential, SasKey, Transport, X509Identity,
};
use connector_core::{
    BackoffPolicy, ConnectFailure, ConnectionEvent, ConnectionState, ConnectorMetrics, PemSource, Publish,
    QoS,
};
use futures::StreamExt;
use prometheus::Registry;
use serde::Serialize;
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::{
    self, AzureAuth, AzureSettings, Cloud, ConfigError, DpsAttestation, Overrides, Settings,
};
use crate::embedded::{self, EmbeddedError};
use crate::handlers::{HandlerError, HandlerOptions, HandlerRunner};
use crate::identity::{CachedIdentity, IdentityCache};
use crate::ingest::{Batch, IngestError, IngestOptions, IngestServer};
use crate::logging::LogHandle;
use crate::metrics::AgentMetrics;
use crate::ops::{write_private, InstanceLock, LockError, Notifier};
use crate::state_sync::{without_metadata, DesiredMirror, ReportedWatcher};
use crate::stats::{StatsOptions, StatsSampler};
use crate::status::Status;

/// The file in the state directory describing the running agent ([`AgentInfo`]).
pub const AGENT_INFO_FILE: &str = "agent.json";

/// Why the agent could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another instance holds the state directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The embedded emulator could not be set up.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// The metrics endpoint could not bind.
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The ingestion socket could not be served.
    #[error("ingestion socket: {0}")]
    Ingest(#[from] IngestError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    /// Metric families could not be registered.
    #[error("metrics registry: {0}")]
    Registry(#[from] prometheus::Error),
    /// The handler directory or run-as user is unusable.
    #[error("handlers: {0}")]
    Handlers(#[from] HandlerError),
    /// The cloud is not supported by this build yet.
    #[error("{0}")]
    Unsupported(String),
}

/// What the agent needs besides its [`Settings`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop gracefully after this long.
    pub exit_after: Option<Duration>,
    /// The command-line overrides (re-applied on reload).
    pub overrides: Overrides,
    /// Changes the log level on reload.
    pub log: Option<LogHandle>,
}

/// Where the running agent can be reached (`<state_dir>/agent.json`).
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    /// Process id.
    pub pid: u32,
    /// `azure` or `aws`.
    pub cloud: &'static str,
    /// Whether the emulator runs in-process.
    pub embedded: bool,
    /// The bound metrics address.
    pub metrics_addr: Option<String>,
    /// The ingestion socket.
    pub ingest_socket: Option<PathBuf>,
}

/// An identity the connector can run on.
struct Obtained {
    provider: AzureProvider,
    device: String,
    hub: String,
    /// `dps`, `cache` or `static`.
    source: &'static str,
    /// Provisioned (DPS): a refusal re-provisions.
    provisioned: bool,
}

/// Counters shared with the tasks.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    store_full: AtomicBool,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn azure_options(a: &AzureSettings) -> AzureOptions {
    let mut o = AzureOptions::default();
    if let Some(p) = a.port {
        o = o.port(p);
    }
    if let Some(ca) = &a.ca_file {
        o = o.trust_roots(PemSource::File(ca.clone()));
    }
    if let Some(m) = &a.model_id {
        o = o.model_id(m.clone());
    }
    if a.websocket {
        o = o.transport(Transport::WebSocket);
    }
    o
}

fn dps_registration(a: &AzureSettings, d: &config::DpsSettings) -> Result<DpsRegistration, String> {
    let auth = match &d.attestation {
        DpsAttestation::SymmetricKey(k) => {
            DpsAuth::SymmetricKey(SasKey::from_base64(k.expose()).map_err(|e| e.to_string())?)
        }
        DpsAttestation::GroupKey(k) => {
            DpsAuth::GroupKey(SasKey::from_base64(k.expose()).map_err(|e| e.to_string())?)
        }
        DpsAttestation::X509 { cert_file, key_file } => DpsAuth::X509(
            X509Identity::from_pem_files(cert_file, key_file, None, SystemTime::now())
                .map_err(|e| e.to_string())?,
        ),
    };
    let opts = DpsOptions {
        endpoint: d.endpoint.clone(),
        port: d.port,
        trust_roots: a.ca_file.clone().map(PemSource::File),
        ..DpsOptions::default()
    };
    DpsRegistration::new(d.id_scope.clone(), d.registration_id.clone(), auth, opts).map_err(|e| e.to_string())
}

/// The hub provider for an assignment (as `dps::client::hub_provider`, from cached parts).
fn hub_provider(
    a: &AzureSettings,
    reg: &DpsRegistration,
    hub: &str,
    device: &str,
) -> Result<AzureProvider, String> {
    let mut opts = azure_options(a);
    let credential = match reg.device_key() {
        Some(k) => Credential::DeviceKey(k.clone()),
        None => Credential::X509,
    };
    if let DpsAuth::X509(id) = reg.auth() {
        opts = opts.x509(id.clone());
    }
    let cs = ConnectionString::new(hub, device, credential).map_err(|e| e.to_string())?;
    AzureProvider::new(cs, opts).map_err(|e| e.to_string())
}

/// One attempt at an identity for Azure.
async fn azure_identity(
    a: &AzureSettings,
    cache: &IdentityCache,
    use_cache: bool,
) -> Result<Obtained, String> {
    match &a.auth {
        AzureAuth::ConnectionString(cs) => {
            let parsed: ConnectionString =
                cs.expose().parse().map_err(|e: connector_azure::ConnectionStringError| e.to_string())?;
            let device = parsed.device_id().to_owned();
            let hub = parsed.host_name().to_owned();
            let provider = AzureProvider::new(parsed, azure_options(a)).map_err(|e| e.to_string())?;
            Ok(Obtained { provider, device, hub, source: "static", provisioned: false })
        }
        AzureAuth::X509 { host_name, device_id, cert_file, key_file } => {
            let id = X509Identity::from_pem_files(cert_file, key_file, None, SystemTime::now())
                .map_err(|e| e.to_string())?;
            let cs = ConnectionString::new(host_name.clone(), device_id.clone(), Credential::X509)
                .map_err(|e| e.to_string())?;
            let provider = AzureProvider::new(cs, azure_options(a).x509(id)).map_err(|e| e.to_string())?;
            Ok(Obtained {
                provider,
                device: device_id.clone(),
                hub: host_name.clone(),
                source: "static",
                provisioned: false,
            })
        }
        AzureAuth::Dps(d) => {
            let reg = dps_registration(a, d)?;
            let key = format!("azure-dps:{}:{}/{}", d.endpoint, d.id_scope, d.registration_id);
            if use_cache {
                if let Some(c) = cache.load(&key) {
                    let provider = hub_provider(a, &reg, &c.hub, &c.device_id)?;
                    return Ok(Obtained {
                        provider,
                        device: c.device_id,
                        hub: c.hub,
                        source: "cache",
                        provisioned: true,
                    });
                }
            }
            let popts = ProvisioningOptions::default().timeout(d.timeout);
            let assignment = provision(&reg, &popts).await.map_err(|e| format!("DPS: {e}"))?;
            let id = CachedIdentity::new("azure", &key, &assignment.assigned_hub, &assignment.device_id);
            if let Err(e) = cache.store(&id) {
                warn!(error = %e, dir = %cache.dir().display(), "cannot cache the provisioned identity");
            }
            let provider = hub_provider(a, &reg, &assignment.assigned_hub, &assignment.device_id)?;
            Ok(Obtained {
                provider,
                device: assignment.device_id,
                hub: assignment.assigned_hub,
                source: "dps",
                provisioned: true,
            })
        }
    }
}

/// Retries [`azure_identity`] with backoff until it succeeds (the caller races it with
/// the shutdown signals).
async fn obtain(cloud: &Cloud, cache: &IdentityCache, use_cache: bool, metrics: &AgentMetrics) -> Obtained {
    let mut backoff = connector_core::Backoff::new(BackoffPolicy::default());
    let mut use_cache = use_cache;
    loop {
        let r = match cloud {
            Cloud::Azure(a) => azure_identity(a, cache, use_cache).await,
            Cloud::Aws(_) | Cloud::Embedded(_) => {
                Err("this cloud cannot be provisioned in this build".to_owned())
            }
        };
        match r {
            Ok(o) => {
                metrics.provisioning.with_label_values(&[o.source, "ok"]).inc();
                return o;
            }
            Err(e) => {
                metrics.provisioning.with_label_values(&["dps", "error"]).inc();
                let wait = backoff.next_delay(Instant::now(), &mut connector_core::ThreadRandom);
                warn!(error = %e, retry_in = ?wait, "obtaining the device identity failed");
                eprintln!("identity: {e}; retrying in {:.0?}", wait);
                use_cache = true;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn is_auth_refusal(ev: &ConnectionEvent) -> bool {
    matches!(ev, ConnectionEvent::ConnectionFailed { reason: r @ ConnectFailure::Refused { .. }, .. }
        if matches!(r.label(), "not_authorized" | "bad_credentials"))
}

fn state_after(ev: &ConnectionEvent) -> ConnectionState {
    match ev {
        ConnectionEvent::AttemptingConnect { .. } => ConnectionState::Connecting,
        ConnectionEvent::Connected { .. } => ConnectionState::Connected,
        ConnectionEvent::ConnectionFailed { .. } | ConnectionEvent::Disconnected { .. } => {
            ConnectionState::Backoff
        }
        ConnectionEvent::Stopped { .. } => ConnectionState::Stopped,
        _ => ConnectionState::Connecting,
    }
}

/// One connector on one identity.
struct Session {
    conn: Connector,
    device: String,
    source: &'static str,
    provisioned: bool,
    events: mpsc::Receiver<ConnectionEvent>,
    reported: bool,
    /// Tasks that live as long as the session (state sync).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

fn start_session(o: Obtained, s: &Settings, families: &ConnectorMetrics, registry: &Registry) -> Session {
    let (tx, events) = mpsc::channel(256);
    let conn = Connector::builder(o.provider)
        .metrics(families.clone())
        .registry(registry)
        .offline_queue(s.store.max_messages, s.store.drop_policy)
        .persistence(s.store.dir.clone())
        .fsync(s.store.fsync)
        .disconnect_timeout(s.shutdown_timeout)
        .method_deadline(s.handlers.timeout + Duration::from_secs(1))
        .events_to(tx)
        .start();
    let how = match o.source {
        "dps" => "provisioned through DPS",
        "cache" => "cached identity",
        _ => "configured credentials",
    };
    println!("identity: device {} on {} ({how})", o.device, o.hub);
    info!(device = %o.device, hub = %o.hub, source = o.source, "session started");
    Session {
        conn,
        device: o.device,
        source: o.source,
        provisioned: o.provisioned,
        events,
        reported: false,
        tasks: Vec::new(),
    }
}

/// Publishes one device-stats sample (handed over now; counted when accepted).
fn send_stats(
    sampler: &mut StatsSampler,
    publisher: &PublisherHandle,
    shared: &Arc<Shared>,
    metrics: &AgentMetrics,
) {
    let stats = match sampler.sample() {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "device stats sample failed");
            return;
        }
    };
    if shared.store_full.load(Ordering::Relaxed) {
        metrics.messages.with_label_values(&["device_stats", "refused"]).inc();
        warn!("store full (store.max_bytes): device stats not sent");
        return;
    }
    let body = match serde_json::to_vec(&stats) {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "device stats do not serialise");
            return;
        }
    };
    let p = Publish::telemetry(body)
        .qos(QoS::AtLeastOnce)
        .content_type("application/json")
        .content_encoding("utf-8")
        .property("source", "device-stats");
    let fut = publisher.enqueue(p);
    let shared = shared.clone();
    let metrics = metrics.clone();
    actix_rt::spawn(async move {
        match fut.await {
            Ok(_) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                metrics.messages.with_label_values(&["device_stats", "accepted"]).inc();
            }
            Err(e) => {
                metrics.messages.with_label_values(&["device_stats", "refused"]).inc();
                warn!(error = %e, "device stats refused by the publisher");
            }
        }
    });
}

/// Ingested lines travelling together: channel, properties, payloads with their ackers.
type Group = (Option<String>, Vec<(String, String)>, Vec<(bytes::Bytes, crate::ingest::Acker)>);

/// Publishes ingested batches through the current session's Publisher; a line is
/// acknowledged to its producer only once the Publisher accepted (and stored) the message
/// holding it. Lines of one batch with the same channel and properties travel together as
/// one JSON array.
async fn ingest_consumer(
    mut batches: mpsc::Receiver<Batch>,
    mut publisher: watch::Receiver<Option<PublisherHandle>>,
    shared: Arc<Shared>,
    metrics: AgentMetrics,
) {
    while let Some(batch) = batches.recv().await {
        let mut groups: Vec<Group> = Vec::new();
        for (msg, ack) in batch.into_parts() {
            let props: Vec<(String, String)> = msg.properties.into_iter().collect();
            match groups.iter_mut().find(|(t, p, _)| *t == msg.topic && *p == props) {
                Some(g) => g.2.push((msg.payload, ack)),
                None => groups.push((msg.topic, props, vec![(msg.payload, ack)])),
            }
        }
        for (topic, props, items) in groups {
            let n = items.len() as u64;
            let reject = |items: Vec<(bytes::Bytes, crate::ingest::Acker)>, why: &str| {
                metrics.ingest_lines.with_label_values(&["refused"]).inc_by(items.len() as u64);
                items.into_iter().for_each(|(_, a)| a.reject(why.to_owned()));
            };
            if shared.store_full.load(Ordering::Relaxed) {
                metrics.messages.with_label_values(&["ingest", "refused"]).inc();
                reject(items, "the agent's store is full (store.max_bytes)");
                continue;
            }
            let mut body = Vec::with_capacity(items.iter().map(|(p, _)| p.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, (p, _)) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(p);
            }
            body.push(b']');
            let mut p = Publish::telemetry(body)
                .qos(QoS::AtLeastOnce)
                .content_type("application/json")
                .content_encoding("utf-8")
                .property("source", "ingest");
            if let Some(t) = topic {
                p = p.property("channel", t);
            }
            for (k, v) in props {
                p = p.property(k, v);
            }
            // Wait for a session (provisioning may be under way): producers wait too.
            let handle = match publisher.wait_for(Option::is_some).await {
                Ok(h) => h.clone(),
                Err(_) => None,
            };
            let Some(handle) = handle else {
                reject(items, "the agent is stopping");
                continue;
            };
            match handle.enqueue(p).await {
                Ok(_) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    metrics.messages.with_label_values(&["ingest", "accepted"]).inc();
                    metrics.ingest_lines.with_label_values(&["accepted"]).inc_by(n);
                    items.into_iter().for_each(|(_, a)| a.accept());
                }
                Err(e) => {
                    metrics.messages.with_label_values(&["ingest", "refused"]).inc();
                    reject(items, &format!("not accepted: {e}"));
                }
            }
        }
    }
}

/// Mirrors desired state to the desired file and reports changes of the reported file,
/// for one session. Reports that fail (offline, throttled) are merged and retried.
async fn state_sync(twin: TwinHandle, st: config::StateSettings, metrics: AgentMetrics) {
    let mut mirror = match DesiredMirror::open(&st.desired_file, 0o644) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "desired state file unreadable; starting from an empty document");
            DesiredMirror::new(&st.desired_file, 0o644)
        }
    };
    let (watch_id, mut desired) = twin.desired(64);
    let mut patches = ReportedWatcher::new(&st.reported_file).spawn(st.poll_interval, 16);
    let mut pending: Option<serde_json::Value> = None;
    let mut retry = interval(st.poll_interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            update = desired.next() => {
                let Some(u) = update else { break };
                let body = without_metadata(&u.body);
                let r = if u.catch_up { mirror.replace(&body) } else { mirror.apply_patch(&body) };
                match r {
                    Ok(changed) => {
                        metrics.state_sync.with_label_values(&["desired", "ok"]).inc();
                        if changed {
                            println!(
                                "desired: v{} written to {}",
                                u.version.map_or_else(|| "?".to_owned(), |v| v.to_string()),
                                mirror.path().display()
                            );
                        }
                    }
                    Err(e) => {
                        metrics.state_sync.with_label_values(&["desired", "error"]).inc();
                        warn!(error = %e, "writing the desired state file failed");
                    }
                }
            }
            patch = patches.recv() => {
                let Some(p) = patch else { break };
                match &mut pending {
                    Some(acc) => merge_patch_keep_nulls(acc, &p),
                    None => pending = Some(p),
                }
                report_pending(&twin, &mut pending, &metrics).await;
            }
            _ = retry.tick(), if pending.is_some() => report_pending(&twin, &mut pending, &metrics).await,
        }
    }
    twin.unwatch(watch_id);
}

/// Merges `patch` into `acc` keeping `null`s (deletions must reach the service).
fn merge_patch_keep_nulls(acc: &mut serde_json::Value, patch: &serde_json::Value) {
    match (acc.as_object_mut(), patch.as_object()) {
        (Some(a), Some(p)) => {
            for (k, v) in p {
                match a.get_mut(k) {
                    Some(old) if old.is_object() && v.is_object() => merge_patch_keep_nulls(old, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *acc = patch.clone(),
    }
}

async fn report_pending(twin: &TwinHandle, pending: &mut Option<serde_json::Value>, metrics: &AgentMetrics) {
    let Some(p) = pending.take() else { return };
    match twin.report(&p).await {
        Ok(r) => {
            metrics.state_sync.with_label_values(&["reported", "ok"]).inc();
            println!("reported: v{}", r.version.map_or_else(|| "?".to_owned(), |v| v.to_string()));
        }
        Err(e) => {
            metrics.state_sync.with_label_values(&["reported", "error"]).inc();
            warn!(error = %e, "reporting the state file failed; retrying");
            *pending = Some(p);
        }
    }
}

/// The handler runner the settings describe (`None` without a handler directory).
fn handler_runner(s: &Settings) -> Result<Option<HandlerRunner>, HandlerError> {
    let Some(dir) = &s.handlers.dir else { return Ok(None) };
    let mut o = HandlerOptions::new(dir.clone(), s.handlers.allow.iter().cloned());
    o.timeout = s.handlers.timeout;
    o.max_output_bytes = s.handlers.max_output_bytes;
    o.run_as = s.handlers.run_as.clone();
    HandlerRunner::new(o).map(Some)
}

/// The current handler runner, swapped by a reload.
type SharedRunner = Arc<std::sync::RwLock<Option<HandlerRunner>>>;

/// Every direct method runs the allow-listed handler of its name; anything else is
/// refused with the handler module's status (403 not allow-listed, 404 missing, …).
fn register_methods(conn: &Connector, runner: &SharedRunner, metrics: &AgentMetrics) {
    let runner = runner.clone();
    let metrics = metrics.clone();
    conn.methods().set_default(move |call: MethodCall| {
        let current = runner.read().map(|r| r.clone()).unwrap_or(None);
        let metrics = metrics.clone();
        async move {
            let name = call.name().to_owned();
            let Some(runner) = current else {
                metrics.handler_runs.with_label_values(&["refused"]).inc();
                warn!(method = %name, "method refused: no handler directory is configured");
                return MethodResponse::new(
                    404,
                    serde_json::json!({"error": "no handlers are configured on this device", "method": name}),
                );
            };
            let payload: serde_json::Value = if call.payload().is_empty() {
                serde_json::Value::Null
            } else {
                match serde_json::from_slice(call.payload()) {
                    Ok(v) => v,
                    Err(e) => {
                        metrics.handler_runs.with_label_values(&["refused"]).inc();
                        return MethodResponse::new(
                            400,
                            serde_json::json!({"error": format!("payload is not JSON: {e}")}),
                        );
                    }
                }
            };
            let r = runner.run_method(&name, &payload).await;
            let outcome = match r.status {
                200 => "ok",
                504 => "timeout",
                400 | 403 | 404 => "refused",
                _ => "failed",
            };
            metrics.handler_runs.with_label_values(&[outcome]).inc();
            println!("method: {name} → {}", r.status);
            MethodResponse::new(r.status, r.payload)
        }
    });
}

fn interval(d: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

/// A tick that never fires (for disabled periodic work).
fn maybe_interval(d: Option<Duration>) -> tokio::time::Interval {
    interval(d.unwrap_or(Duration::from_secs(86_400 * 365)))
}

/// Runs the agent until a signal or `exit_after`. Call inside an actix `System`.
pub async fn run(mut settings: Settings, opts: RunOptions) -> Result<(), AgentError> {
    let started = Instant::now();
    let _lock = InstanceLock::acquire(&settings.state_dir)?;
    let notifier = Notifier::from_env();
    let mut sig_term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut sig_int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let mut sig_hup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;

    let registry = Registry::new();
    let families = ConnectorMetrics::register(&registry)?;
    let metrics = AgentMetrics::register(&registry)?;
    metrics.start_time.set(now_secs() as i64);
    let (state_tx, state_rx) = watch::channel(ConnectionState::Disconnected);

    let embedded_on = matches!(settings.cloud, Cloud::Embedded(_));
    let cloud_name = settings.cloud.kind().as_str();
    println!(
        "connector-agent {}: cloud {cloud_name}{}, state {}",
        env!("CARGO_PKG_VERSION"),
        if embedded_on { " (embedded emulator)" } else { "" },
        settings.state_dir.display()
    );

    // The embedded emulator, when no cloud is configured.
    let (cloud, _emulator) = match &settings.cloud {
        Cloud::Embedded(e) => {
            let emb = embedded::start(e, &settings.state_dir).await?;
            println!(
                "emulator: control API {}, MQTT/TLS 127.0.0.1:{}, data {}",
                emb.info.control_url,
                emb.info.mqtt_port,
                e.data_dir.display()
            );
            (emb.cloud, Some(emb.handle))
        }
        Cloud::Aws(_) => {
            return Err(AgentError::Unsupported(
                "the AWS IoT Core flavour of the agent is not available in this build yet".into(),
            ))
        }
        c => (c.clone(), None),
    };

    let metrics_server = match settings.metrics {
        Some(addr) => {
            let srv = MetricsServer::start(addr, registry.clone(), state_rx.clone())
                .await
                .map_err(|source| AgentError::Metrics { addr, source })?;
            println!("metrics: http://{}/metrics", srv.local_addr());
            Some(srv)
        }
        None => None,
    };

    let runner: SharedRunner = Arc::new(std::sync::RwLock::new(handler_runner(&settings)?));
    if let Some(r) = runner.read().ok().as_ref().and_then(|r| r.as_ref()) {
        println!(
            "handlers: {} (allowed: {})",
            r.dir().display(),
            if settings.handlers.allow.is_empty() {
                "none".to_owned()
            } else {
                settings.handlers.allow.join(", ")
            }
        );
    }
    let shared = Arc::new(Shared::default());
    let (pub_tx, pub_rx) = watch::channel::<Option<PublisherHandle>>(None);
    let ingest = if settings.ingest.enabled {
        let mut io = IngestOptions::new(settings.ingest.socket.clone());
        io.max_batch_messages = settings.ingest.batch_max_messages;
        io.max_batch_bytes = settings.ingest.batch_max_bytes;
        io.max_delay = settings.ingest.batch_max_delay;
        let (server, batches) = IngestServer::bind(io).await?;
        println!("ingest: socket {}", server.path().display());
        actix_rt::spawn(ingest_consumer(batches, pub_rx, shared.clone(), metrics.clone()));
        Some(server)
    } else {
        None
    };

    let info = AgentInfo {
        pid: std::process::id(),
        cloud: cloud_name,
        embedded: embedded_on,
        metrics_addr: metrics_server.as_ref().map(|m| m.local_addr().to_string()),
        ingest_socket: ingest.as_ref().map(|i| i.path().to_owned()),
    };
    let info_path = settings.state_dir.join(AGENT_INFO_FILE);
    if let Err(e) = serde_json::to_vec_pretty(&info)
        .map_err(std::io::Error::other)
        .and_then(|b| write_private(&info_path, &b))
    {
        warn!(error = %e, file = %info_path.display(), "cannot write the agent info file");
    }

    let cache = IdentityCache::new(&settings.state_dir);
    let mut sampler =
        StatsSampler::new(StatsOptions::new(settings.telemetry.interval, settings.state_dir.clone()));
    let _ = sampler.sample(); // the CPU baseline
    let mut telemetry_tick = interval(settings.telemetry.interval);
    let mut status_tick = maybe_interval(settings.status_interval);
    let mut store_tick = interval(Duration::from_secs(1));
    let mut watchdog_tick = maybe_interval(notifier.watchdog().map(|w| w / 2));
    let exit_at = opts.exit_after.map(|d| tokio::time::Instant::now() + d);
    let exit_sleep = tokio::time::sleep_until(
        exit_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 10)),
    );
    tokio::pin!(exit_sleep);
    let mut ready_sent = false;
    let mut use_cache = true;
    let mut session: Option<Session> = None;
    let mut last_provision = None::<Instant>;

    let why_stop: &str = 'sessions: loop {
        // Obtain an identity, racing the stop signals.
        let obtained = tokio::select! {
            o = obtain(&cloud, &cache, use_cache, &metrics) => o,
            _ = sig_term.recv() => break 'sessions "SIGTERM",
            _ = sig_int.recv() => break 'sessions "SIGINT",
            _ = &mut exit_sleep, if exit_at.is_some() => break 'sessions "--exit-after",
        };
        if obtained.source == "dps" {
            last_provision = Some(Instant::now());
        }
        metrics.info.with_label_values(&[env!("CARGO_PKG_VERSION"), cloud_name, &obtained.device]).set(1);
        let s = session.insert(start_session(obtained, &settings, &families, &registry));
        register_methods(&s.conn, &runner, &metrics);
        if let (true, Some(twin)) = (settings.state.enabled, s.conn.twin()) {
            s.tasks.push(actix_rt::spawn(state_sync(twin, settings.state.clone(), metrics.clone())));
        }
        let _ = pub_tx.send(Some(s.conn.publisher()));
        if !ready_sent {
            notifier.notify("READY=1\nSTATUS=started");
            ready_sent = true;
        }
        loop {
            tokio::select! {
                _ = sig_term.recv() => break 'sessions "SIGTERM",
                _ = sig_int.recv() => break 'sessions "SIGINT",
                _ = &mut exit_sleep, if exit_at.is_some() => break 'sessions "--exit-after",
                _ = sig_hup.recv() => {
                    match reload(&settings, &opts) {
                        Ok(new) => {
                            metrics.reloads.with_label_values(&["ok"]).inc();
                            if new.telemetry.interval != settings.telemetry.interval {
                                telemetry_tick = interval(new.telemetry.interval);
                            }
                            if new.status_interval != settings.status_interval {
                                status_tick = maybe_interval(new.status_interval);
                            }
                            if new.handlers != settings.handlers {
                                match handler_runner(&new) {
                                    Ok(r) => {
                                        if let Ok(mut cur) = runner.write() {
                                            *cur = r;
                                        }
                                        println!("reload: handlers allowed: {}", if new.handlers.allow.is_empty() { "none".to_owned() } else { new.handlers.allow.join(", ") });
                                    }
                                    Err(e) => warn!(error = %e, "reload: handlers unusable; keeping the previous ones"),
                                }
                            }
                            settings = new;
                            println!("reload: configuration applied");
                        }
                        Err(e) => {
                            metrics.reloads.with_label_values(&["error"]).inc();
                            error!(error = %e, "reload failed; keeping the running configuration");
                            eprintln!("reload failed, keeping the running configuration: {e}");
                        }
                    }
                }
                ev = s.events.recv() => {
                    let Some(ev) = ev else { continue };
                    let st = state_after(&ev);
                    let _ = state_tx.send(st);
                    if matches!(ev, ConnectionEvent::Connected { .. }) && !s.reported {
                        s.reported = true;
                        report_agent_state(&s.conn, cloud_name, s.source);
                    }
                    if is_auth_refusal(&ev) && s.provisioned {
                        // A cached identity refused: provision again at once. A fresh one
                        // refused: provision again, but not more than once a minute.
                        let recent = last_provision.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                        if s.source == "cache" || !recent {
                            warn!(device = %s.device, event = ?ev, "the service refused the provisioned identity; provisioning again");
                            println!("identity: refused by the service ({ev:?}); provisioning again");
                            if let Err(e) = cache.clear() {
                                warn!(error = %e, "cannot clear the identity cache");
                            }
                            let _ = pub_tx.send(None);
                            s.conn.stop().await;
                            session = None;
                            use_cache = false;
                            continue 'sessions;
                        }
                    }
                }
                _ = telemetry_tick.tick() => {
                    if settings.telemetry.device_stats {
                        send_stats(&mut sampler, &s.conn.publisher(), &shared, &metrics);
                    }
                }
                _ = store_tick.tick() => {
                    if let Ok(st) = s.conn.publisher().stats().await {
                        metrics.store_bytes.set(st.incomplete_bytes as i64);
                        shared.store_full.store(st.incomplete_bytes as u64 >= settings.store.max_bytes, Ordering::Relaxed);
                    }
                }
                _ = status_tick.tick() => {
                    let line = status(s, &shared, *state_rx.borrow(), started).await;
                    println!("{line}");
                    notifier.notify(&format!("STATUS={line}"));
                }
                _ = watchdog_tick.tick() => notifier.notify("WATCHDOG=1"),
            }
        }
    };

    // Graceful stop: no new lines, flush what was accepted (bounded), DISCONNECT.
    info!(signal = why_stop, "stopping");
    notifier.notify("STOPPING=1");
    if let Some(ingest) = ingest {
        ingest.shutdown().await;
    }
    let _ = pub_tx.send(None);
    if let Some(s) = session.take() {
        let deadline = Instant::now() + settings.shutdown_timeout;
        let mut pending = 0;
        loop {
            match s.conn.publisher().stats().await {
                Ok(st) => pending = st.incomplete_count,
                Err(_) => break,
            }
            if pending == 0 || !s.conn.is_connected() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let line = status(&s, &shared, *state_rx.borrow(), started).await;
        s.conn.stop().await;
        println!("stopped ({why_stop}): {line} pending={pending}");
    } else {
        println!("stopped ({why_stop}) before connecting");
    }
    drop(metrics_server);
    Ok(())
}

async fn status(s: &Session, shared: &Shared, state: ConnectionState, started: Instant) -> Status {
    let st = s.conn.publisher().stats().await.unwrap_or_default();
    Status {
        state,
        device: s.device.clone(),
        sent: shared.sent.load(Ordering::Relaxed),
        acked: s.conn.metrics().acked.get(),
        queued: st.queued_count,
        inflight: st.unacked_count,
        twin_version: s.conn.twin().and_then(|t| t.last_desired_version()),
        uptime: started.elapsed(),
    }
}

/// Reports what the agent is, once per session after its first connection.
fn report_agent_state(conn: &Connector, cloud: &'static str, source: &'static str) {
    let Some(twin) = conn.twin() else { return };
    let doc = serde_json::json!({
        "agent": {
            "version": env!("CARGO_PKG_VERSION"),
            "cloud": cloud,
            "identity": source,
            "started": now_secs(),
        }
    });
    actix_rt::spawn(async move {
        if let Err(e) = twin.report(&doc).await {
            warn!(error = %e, "reporting the agent's state failed");
        }
    });
}

/// Re-reads the configuration; applies what can change in place and says what cannot.
fn reload(current: &Settings, opts: &RunOptions) -> Result<Settings, ConfigError> {
    let new = config::load_from_process(current.file.as_deref(), &opts.overrides)?;
    for key in config::restart_required(current, &new) {
        warn!(key, "changed in the configuration; takes effect after a restart");
        println!("reload: `{key}` changed; restart the agent to apply it");
    }
    if new.logging.level != current.logging.level {
        if let Some(log) = &opts.log {
            if let Err(e) = log.set_level(&new.logging.level) {
                warn!(error = %e, "cannot change the log level");
            }
        }
    }
    Ok(new)
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("device", &self.device).field("source", &self.source).finish()
    }
}

/// A one-line description of the settings for `--check-config` (no secrets).
pub fn describe(s: &Settings) -> String {
    let cloud = match &s.cloud {
        Cloud::Embedded(e) => format!(
            "embedded {} emulator (device {}, data {})",
            e.flavour.as_str(),
            e.device_id,
            e.data_dir.display()
        ),
        Cloud::Azure(a) => match &a.auth {
            AzureAuth::ConnectionString(_) => "azure, connection string".to_owned(),
            AzureAuth::X509 { host_name, device_id, .. } => {
                format!("azure, X.509 device {device_id} on {host_name}")
            }
            AzureAuth::Dps(d) => {
                format!("azure, DPS {} scope {} registration {}", d.endpoint, d.id_scope, d.registration_id)
            }
        },
        Cloud::Aws(a) => format!("aws, endpoint {}", a.endpoint),
    };
    format!(
        "configuration ok: cloud {cloud}; state {}; telemetry every {:?}; ingest {}; metrics {}; store {} ({} messages, {} bytes, drop {:?}); log {}{}",
        s.state_dir.display(),
        s.telemetry.interval,
        if s.ingest.enabled { s.ingest.socket.display().to_string() } else { "off".into() },
        s.metrics.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        s.store.dir.display(),
        s.store.max_messages,
        s.store.max_bytes,
        s.store.drop_policy,
        s.logging.level,
        if s.logging.json { " (json)" } else { "" },
    )
}
