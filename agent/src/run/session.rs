//! One connector on one identity, its method and job handlers, and its status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_actors::jobs::{JobOutcome, JobRun, JobsOptions};
use connector_actors::{Connector, MethodCall, MethodResponse};
use connector_core::jobs::JobStatus;
use connector_core::{ConnectFailure, ConnectionEvent, ConnectionState, ConnectorMetrics};
use prometheus::Registry;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::now_secs;
use super::provision::Obtained;
use super::telemetry::{Flavour, Shared};
use crate::config::Settings;
use crate::handlers::{HandlerError, HandlerOptions, HandlerRunner};
use crate::metrics::AgentMetrics;
use crate::status::Status;

/// Whether the service refused the identity at CONNACK.
pub(crate) fn is_auth_refusal(ev: &ConnectionEvent) -> bool {
    matches!(ev, ConnectionEvent::ConnectionFailed { reason: r @ ConnectFailure::Refused { .. }, .. }
        if matches!(r.label(), "not_authorized" | "bad_credentials"))
}

pub(crate) fn state_after(ev: &ConnectionEvent) -> ConnectionState {
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
pub(crate) struct Session {
    /// The actor tree.
    pub conn: Connector,
    /// How telemetry is addressed.
    pub flavour: Flavour,
    /// Device id / thing name.
    pub device: String,
    /// `dps`, `fleet`, `cache` or `static`.
    pub source: &'static str,
    /// Provisioned: a refusal re-provisions.
    pub provisioned: bool,
    /// Lifecycle events from the first attempt on.
    pub events: mpsc::Receiver<ConnectionEvent>,
    /// Whether the agent's own state was reported (once per session).
    pub reported: bool,
    /// Whether the session was ever connected.
    pub connected_once: bool,
    /// Failed connect attempts in a row before the first connection.
    pub early_failures: u32,
    /// The metric label of the last connect failure since the last connection (a TLS
    /// refusal is printed when it changes).
    pub last_failure: Option<&'static str>,
    /// Tasks that live as long as the session (state sync).
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

pub(crate) fn start_session(
    o: Obtained,
    s: &Settings,
    families: &ConnectorMetrics,
    registry: &Registry,
) -> Session {
    let (tx, events) = mpsc::channel(256);
    let mut builder = o
        .builder
        .backoff(s.connection.backoff.clone())
        .ack_timeout(s.connection.ack_timeout)
        .stall_watchdog(s.connection.stall);
    if let Some(d) = s.store.expiry {
        builder = builder.default_expiry(d);
    }
    if let Some(kind) = s.connection.transport {
        builder = builder.transport_kind(kind);
    }
    let conn = builder
        .metrics(families.clone())
        .registry(registry)
        .offline_queue(s.store.max_messages, s.store.drop_policy)
        .offline_max_bytes(usize::try_from(s.store.max_bytes).unwrap_or(usize::MAX))
        .persistence(s.store.dir.clone())
        .fsync(s.store.fsync)
        .disconnect_timeout(s.shutdown_timeout)
        .method_deadline(s.handlers.timeout + Duration::from_secs(1))
        .events_to(tx)
        .start();
    let how = match o.source {
        "dps" => "provisioned through DPS",
        "fleet" => "provisioned by fleet provisioning",
        "cache" => "cached identity",
        _ => "configured credentials",
    };
    say!("identity: device {} on {} ({how})", o.device, o.hub);
    info!(device = %o.device, hub = %o.hub, source = o.source, "session started");
    Session {
        conn,
        flavour: o.flavour,
        device: o.device,
        source: o.source,
        provisioned: o.provisioned,
        events,
        reported: false,
        connected_once: false,
        early_failures: 0,
        last_failure: None,
        tasks: Vec::new(),
    }
}

/// The handler runner the settings describe (`None` without a handler directory).
pub(crate) fn handler_runner(s: &Settings) -> Result<Option<HandlerRunner>, HandlerError> {
    let Some(dir) = &s.handlers.dir else { return Ok(None) };
    let mut o = HandlerOptions::new(dir.clone(), s.handlers.allow.iter().cloned());
    o.timeout = s.handlers.timeout;
    o.max_output_bytes = s.handlers.max_output_bytes;
    o.run_as = s.handlers.run_as.clone();
    HandlerRunner::new(o).map(Some)
}

/// The current handler runner, swapped by a reload.
pub(crate) type SharedRunner = Arc<std::sync::RwLock<Option<HandlerRunner>>>;

/// Every direct method runs the allow-listed handler of its name; anything else is
/// refused with the handler module's status (403 not allow-listed, 404 missing, …).
pub(crate) fn register_methods(conn: &Connector, runner: &SharedRunner, metrics: &AgentMetrics) {
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
            say!("method: {name} → {}", r.status);
            MethodResponse::new(r.status, r.payload)
        }
    });
}

pub(crate) async fn status(s: &Session, shared: &Shared, state: ConnectionState, started: Instant) -> Status {
    let st = s.conn.publisher().stats().await.unwrap_or_default();
    Status {
        state,
        device: s.device.clone(),
        sent: shared.sent.load(Ordering::Relaxed),
        acked: s.conn.metrics().acked.get(),
        queued: st.queued_count,
        inflight: st.unacked_count,
        dropped: st.dropped_oldest_total + st.expired_total + st.failed_total,
        twin_version: s.conn.twin().and_then(|t| t.last_desired_version()),
        uptime: started.elapsed(),
    }
}

/// Reports what the agent is, once per session after its first connection.
pub(crate) fn report_agent_state(conn: &Connector, cloud: &'static str, source: &'static str) {
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

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("device", &self.device).field("source", &self.source).finish()
    }
}

/// AWS jobs: a job whose document's `operation` is an allow-listed handler runs it
/// (`args` as arguments); the exit status decides SUCCEEDED / FAILED, a refusal REJECTED.
/// Operations not registered are rejected by the jobs runner itself.
pub(crate) fn register_jobs(conn: &Connector, runner: &SharedRunner, s: &Settings, metrics: &AgentMetrics) {
    let Some(jobs) = conn.jobs() else { return };
    jobs.set_options(JobsOptions {
        handler_timeout: s.handlers.timeout + Duration::from_secs(5),
        step_timeout_minutes: None,
    });
    for name in &s.handlers.allow {
        let runner = runner.clone();
        let metrics = metrics.clone();
        let registered = jobs.register(name.clone(), move |run: JobRun| {
            let current = runner.read().map(|r| r.clone()).unwrap_or(None);
            let metrics = metrics.clone();
            async move {
                let Some(runner) = current else {
                    metrics.handler_runs.with_label_values(&["refused"]).inc();
                    return JobOutcome::rejected("no handlers are configured on this device");
                };
                let r = runner.run_job(&run.document).await;
                let outcome = match r.status {
                    JobStatus::Succeeded => "ok",
                    JobStatus::Rejected => "refused",
                    _ => "failed",
                };
                metrics.handler_runs.with_label_values(&[outcome]).inc();
                say!("job: {} ({}) → {:?}", run.job_id, run.operation().unwrap_or("-"), r.status);
                match r.status {
                    JobStatus::Succeeded => JobOutcome::Succeeded(r.status_details),
                    JobStatus::Rejected => JobOutcome::Rejected(r.status_details),
                    _ => JobOutcome::Failed(r.status_details),
                }
            }
        });
        if let Err(e) = registered {
            warn!(handler = %name, error = %e, "job handler not registered");
        }
    }
}
