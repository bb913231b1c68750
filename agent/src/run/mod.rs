//! The agent's main loop: obtain an identity (cache, DPS, or static credentials), start the
//! actor tree on it, feed it telemetry (device stats, the ingestion socket), mirror device
//! state, answer methods, serve metrics, print status, and react to signals.
//!
//! A *session* is one [`connector_actors::Connector`] on one identity. When the service refuses a
//! provisioned identity (CONNACK not authorised), the session ends, the cached identity is
//! forgotten and the device provisions again; everything else (the ingestion socket, the
//! metrics endpoint, the on-disk store) lives across sessions.

mod provision;
pub use provision::FLEET_DIR;
mod session;
mod state;
mod telemetry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector_actors::{MetricsServer, PublisherHandle};
use connector_core::{ConnectFailure, ConnectionEvent, ConnectionState, ConnectorMetrics};
use prometheus::Registry;
use serde::Serialize;
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{self, Cloud, ConfigError, Overrides, Settings};
use crate::embedded::{self, EmbeddedError};
use crate::handlers::HandlerError;
use crate::identity::IdentityCache;
use crate::ingest::{IngestError, IngestOptions, IngestServer};
use crate::logging::LogHandle;
use crate::metrics::AgentMetrics;
use crate::ops::{write_private, InstanceLock, LockError, Notifier};
use crate::stats::{StatsOptions, StatsSampler};
use provision::{forget, identity_refused, obtain};
use session::{
    handler_runner, register_jobs, register_methods, report_agent_state, start_session, state_after, status,
    Session, SharedRunner,
};
use telemetry::{ingest_consumer, send_stats, Flavour, Shared};

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
    #[error("metrics endpoint {addr}: {error}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        error: std::io::Error,
    },
    /// The ingestion socket could not be served.
    #[error("ingestion socket")]
    Ingest(#[from] IngestError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    /// Metric families could not be registered.
    #[error("metrics registry")]
    Registry(#[from] prometheus::Error),
    /// The store directory cannot be written (accepted messages would not survive a crash).
    #[error("store directory {}: {error}", dir.display())]
    Store {
        /// The directory.
        dir: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The handler directory or run-as user is unusable.
    #[error("handlers")]
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
    /// Play the embedded emulator's back end once connected (see [`crate::demo`]).
    pub demo: bool,
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

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn interval(d: Duration) -> tokio::time::Interval {
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
    // Found while loading, before there was a logger: emitted now, once the signals are ours
    // (whoever reads them in the log may act on them at once).
    for w in &settings.warnings {
        w.log();
    }

    check_store_dir(&settings.store.dir)?;
    let registry = Registry::new();
    let families = ConnectorMetrics::register(&registry)?;
    let metrics = AgentMetrics::register(&registry)?;
    metrics.start_time.set(now_secs() as i64);
    let (state_tx, state_rx) = watch::channel(ConnectionState::Disconnected);

    let embedded_on = matches!(settings.cloud, Cloud::Embedded(_));
    let cloud_name = settings.cloud.kind().as_str();
    say!(
        "connector-agent {}: cloud {cloud_name}{}, state {}",
        env!("CARGO_PKG_VERSION"),
        if embedded_on { " (embedded emulator)" } else { "" },
        settings.state_dir.display()
    );

    // The embedded emulator, when no cloud is configured.
    let mut control_url = None;
    let (cloud, _emulator) = match &settings.cloud {
        Cloud::Embedded(e) => {
            let emb = embedded::start(e, &settings.state_dir).await?;
            say!(
                "emulator: control API {}, MQTT/TLS 127.0.0.1:{} ({}), data {}",
                emb.info.control_url,
                emb.info.mqtt_port,
                emb.info.flavour,
                e.data_dir.display()
            );
            control_url = Some(emb.info.control_url.clone());
            (emb.cloud, Some(emb.handle))
        }
        c => (c.clone(), None),
    };

    let metrics_server = match settings.metrics {
        Some(addr) => {
            let srv = MetricsServer::start(addr, registry.clone(), state_rx.clone())
                .await
                .map_err(|error| AgentError::Metrics { addr, error })?;
            say!("metrics: http://{}/metrics", srv.local_addr());
            Some(srv)
        }
        None => None,
    };

    let runner: SharedRunner = Arc::new(std::sync::RwLock::new(handler_runner(&settings)?));
    if let Some(r) = runner.read().ok().as_ref().and_then(|r| r.as_ref()) {
        say!(
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
    let (pub_tx, pub_rx) = watch::channel::<Option<(PublisherHandle, Flavour)>>(None);
    let ingest = if settings.ingest.enabled {
        let mut io = IngestOptions::new(settings.ingest.socket.clone());
        io.max_batch_messages = settings.ingest.batch_max_messages;
        io.max_batch_bytes = settings.ingest.batch_max_bytes;
        io.max_delay = settings.ingest.batch_max_delay;
        io.idle_timeout = settings.ingest.idle_timeout;
        io.partial_line_timeout = settings.ingest.partial_line_timeout;
        let (server, batches) = IngestServer::bind(io).await?;
        say!("ingest: socket {}", server.path().display());
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
    // The CPU baseline now; the first sample a second later, then every interval.
    let _ = sampler.sample();
    let mut telemetry_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1).min(settings.telemetry.interval),
        settings.telemetry.interval,
    );
    telemetry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_tick = maybe_interval(settings.status_interval);
    let mut store_tick = interval(Duration::from_secs(1));
    let mut watchdog_tick = maybe_interval(notifier.watchdog().map(|w| w / 2));
    let exit_at = opts.exit_after.map(|d| tokio::time::Instant::now() + d);
    let exit_sleep = tokio::time::sleep_until(
        exit_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 10)),
    );
    tokio::pin!(exit_sleep);
    // Ready: the lock, the endpoints and the socket are up; connecting (and provisioning,
    // which may wait for the network) is what the agent does from here on, and /readyz
    // says when it is connected.
    notifier.notify("READY=1\nSTATUS=starting: obtaining the device identity");
    let mut use_cache = true;
    let mut session: Option<Session> = None;
    let mut last_provision = None::<Instant>;

    let why_stop: &str = 'sessions: loop {
        // Obtain an identity, racing the stop signals.
        let obtained = {
            let provisioning = obtain(&cloud, &cache, use_cache, &metrics);
            tokio::pin!(provisioning);
            loop {
                tokio::select! {
                    o = &mut provisioning => break o,
                    _ = sig_term.recv() => break 'sessions "SIGTERM",
                    _ = sig_int.recv() => break 'sessions "SIGINT",
                    _ = &mut exit_sleep, if exit_at.is_some() => break 'sessions "--exit-after",
                    // Provisioning may retry for long (no network at boot): keep systemd's
                    // watchdog fed meanwhile.
                    _ = watchdog_tick.tick() => notifier.notify("WATCHDOG=1"),
                }
            }
        };
        if matches!(obtained.source, "dps" | "fleet") {
            last_provision = Some(Instant::now());
        }
        metrics.info.with_label_values(&[env!("CARGO_PKG_VERSION"), cloud_name, &obtained.device]).set(1);
        let s = session.insert(start_session(obtained, &settings, &families, &registry));
        register_methods(&s.conn, &runner, &metrics);
        register_jobs(&s.conn, &runner, &settings, &metrics);
        if let (true, Some(twin)) = (settings.state.enabled, s.conn.twin()) {
            for doc in state::Document::all(&settings.state) {
                s.tasks.push(actix_rt::spawn(state::state_sync(
                    twin.clone(),
                    doc,
                    settings.state.poll_interval,
                    metrics.clone(),
                )));
            }
        }
        let _ = pub_tx.send(Some((s.conn.publisher(), s.flavour.clone())));
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
                                        register_jobs(&s.conn, &runner, &new, &metrics);
                                        say!("reload: handlers allowed: {}", if new.handlers.allow.is_empty() { "none".to_owned() } else { new.handlers.allow.join(", ") });
                                    }
                                    Err(e) => warn!(error = %e, "reload: handlers unusable; keeping the previous ones"),
                                }
                            }
                            settings = new;
                            say!("reload: configuration applied");
                        }
                        Err(e) => {
                            metrics.reloads.with_label_values(&["error"]).inc();
                            error!(error = %e, "reload failed; keeping the running configuration");
                            say_err!("reload failed, keeping the running configuration: {e}");
                        }
                    }
                }
                ev = s.events.recv() => {
                    // The tree stopped on its own (its restart policy gave up) or its
                    // event channel closed: start a new session after a pause.
                    if matches!(ev, None | Some(ConnectionEvent::Stopped { .. })) {
                        let _ = state_tx.send(ConnectionState::Stopped);
                        error!(device = %s.device, event = ?ev, "the connection stopped on its own; starting a new session in 5 s");
                        say!("session: the connection stopped on its own; restarting it in 5 s");
                        let _ = pub_tx.send(None);
                        s.conn.stop().await;
                        session = None;
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = sig_term.recv() => break 'sessions "SIGTERM",
                            _ = sig_int.recv() => break 'sessions "SIGINT",
                        }
                        continue 'sessions;
                    }
                    let Some(ev) = ev else { continue };
                    let st = state_after(&ev);
                    let _ = state_tx.send(st);
                    if matches!(ev, ConnectionEvent::Connected { .. }) && !s.reported {
                        s.reported = true;
                        report_agent_state(&s.conn, cloud_name, s.source);
                        if let (true, Some(url)) = (opts.demo, control_url.take()) {
                            let (desired, reported) = (settings.state.desired_file.clone(), settings.state.reported_file.clone());
                            actix_rt::spawn(crate::demo::play(url, settings.cloud.kind(), s.device.clone(), desired, reported));
                        }
                    }
                    match &ev {
                        ConnectionEvent::Connected { .. } => {
                            s.connected_once = true;
                            s.early_failures = 0;
                            s.last_failure = None;
                        }
                        ConnectionEvent::ConnectionFailed { reason, .. } => {
                            if !s.connected_once {
                                s.early_failures += 1;
                            }
                            // Why TLS refused is worth an operator's eye (once per reason).
                            if matches!(reason, ConnectFailure::Tls { .. }) && s.last_failure != Some(reason.label()) {
                                say_err!("connect: {reason}");
                            }
                            s.last_failure = Some(reason.label());
                        }
                        _ => {}
                    }
                    if s.provisioned && identity_refused(&ev, s, last_provision) {
                        warn!(device = %s.device, event = ?ev, "the service refused the provisioned identity; provisioning again");
                        say!("identity: refused by the service ({ev:?}); provisioning again");
                        forget(&cache);
                        let _ = pub_tx.send(None);
                        s.conn.stop().await;
                        session = None;
                        use_cache = false;
                        continue 'sessions;
                    }
                }
                _ = telemetry_tick.tick() => {
                    if settings.telemetry.device_stats {
                        send_stats(&mut sampler, &s.conn.publisher(), &s.flavour, &shared, &metrics);
                    }
                }
                _ = store_tick.tick() => {
                    if let Ok(st) = s.conn.publisher().stats().await {
                        metrics.store_bytes.set(st.incomplete_bytes as i64);
                    }
                }
                _ = status_tick.tick() => {
                    let line = status(s, &shared, *state_rx.borrow(), started).await;
                    say!("{line}");
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
        say!("stopped ({why_stop}): {line} pending={pending}");
    } else {
        say!("stopped ({why_stop}) before connecting");
    }
    drop(metrics_server);
    Ok(())
}

/// Checks the handler directory (it exists, it and every directory above it are trusted)
/// and the run-as user, as the agent does at start: for `--check-config`.
pub fn check_handlers(settings: &Settings) -> Result<(), AgentError> {
    handler_runner(settings).map(|_| ()).map_err(AgentError::Handlers)
}

/// The Publisher would run without its on-disk store if it could not open it: refuse to
/// start instead, since acknowledged ingested lines must survive a crash.
fn check_store_dir(dir: &std::path::Path) -> Result<(), AgentError> {
    let err = |error| AgentError::Store { dir: dir.to_owned(), error };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

/// Re-reads the configuration; applies what can change in place and says what cannot.
fn reload(current: &Settings, opts: &RunOptions) -> Result<Settings, ConfigError> {
    let mut new = config::load_from_process(current.file.as_deref(), &opts.overrides)?;
    if opts.demo {
        crate::demo::prepare(&mut new)?;
    }
    for w in &new.warnings {
        w.log();
    }
    for key in config::restart_required(current, &new) {
        warn!(key, "changed in the configuration; takes effect after a restart");
        say!("reload: `{key}` changed; restart the agent to apply it");
    }
    if new.logging.level != current.logging.level {
        if let Some(log) = &opts.log {
            match log.set_level(&new.logging.level) {
                Ok(()) => tracing::debug!(level = %new.logging.level, "log level changed"),
                Err(e) => warn!(error = %e, "cannot change the log level"),
            }
        }
    }
    Ok(new)
}
