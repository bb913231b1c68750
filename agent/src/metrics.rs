//! The agent's own metric families, beside the connector's (`connector_*`, registered by
//! the actor tree in the same registry and served on the same `/metrics`).

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The agent's metric families.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// `connector_agent_info{version,cloud,device}` = 1.
    pub info: IntGaugeVec,
    /// `connector_agent_start_time_seconds`.
    pub start_time: IntGauge,
    /// `connector_agent_messages_total{source,outcome}`: telemetry the agent handed to the
    /// Publisher (source `device_stats` or `ingest`; outcome `accepted` or `refused`).
    pub messages: IntCounterVec,
    /// `connector_agent_ingest_lines_total{outcome}`: lines from the ingestion socket
    /// (`accepted`, `refused`).
    pub ingest_lines: IntCounterVec,
    /// `connector_agent_provisioning_total{source,outcome}`: identities obtained
    /// (source `dps`, `cache`, `static`; outcome `ok`, `error`).
    pub provisioning: IntCounterVec,
    /// `connector_agent_config_reloads_total{outcome}` (`ok`, `error`).
    pub reloads: IntCounterVec,
    /// `connector_agent_store_bytes`: bytes of accepted, unacknowledged messages.
    pub store_bytes: IntGauge,
    /// `connector_agent_handler_runs_total{outcome}`.
    pub handler_runs: IntCounterVec,
    /// `connector_agent_state_sync_total{direction,outcome,shadow}`: `shadow` is empty for
    /// the twin / classic shadow, else a configured named shadow's name.
    pub state_sync: IntCounterVec,
}

impl AgentMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = AgentMetrics {
            info: IntGaugeVec::new(
                Opts::new("connector_agent_info", "The agent: version, cloud and device (always 1)."),
                &["version", "cloud", "device"],
            )?,
            start_time: IntGauge::new("connector_agent_start_time_seconds", "When the agent started (Unix time).")?,
            messages: IntCounterVec::new(
                Opts::new(
                    "connector_agent_messages_total",
                    "Telemetry handed to the Publisher, by source (device_stats, ingest) and outcome (accepted, refused).",
                ),
                &["source", "outcome"],
            )?,
            ingest_lines: IntCounterVec::new(
                Opts::new("connector_agent_ingest_lines_total", "Ingestion socket lines by outcome (accepted, refused)."),
                &["outcome"],
            )?,
            provisioning: IntCounterVec::new(
                Opts::new(
                    "connector_agent_provisioning_total",
                    "Identities obtained, by source (dps, fleet, cache, static) and outcome (ok, error).",
                ),
                &["source", "outcome"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new("connector_agent_config_reloads_total", "Configuration reloads (SIGHUP) by outcome."),
                &["outcome"],
            )?,
            store_bytes: IntGauge::new(
                "connector_agent_store_bytes",
                "Bytes of accepted messages not yet acknowledged (the offline store).",
            )?,
            handler_runs: IntCounterVec::new(
                Opts::new(
                    "connector_agent_handler_runs_total",
                    "Method and job handler invocations by outcome (ok, failed, refused, timeout).",
                ),
                &["outcome"],
            )?,
            state_sync: IntCounterVec::new(
                Opts::new(
                    "connector_agent_state_sync_total",
                    "State-file synchronisation by direction (desired, reported), outcome (ok, error) and AWS named shadow (empty: the twin or classic shadow).",
                ),
                &["direction", "outcome", "shadow"],
            )?,
        };
        registry.register(Box::new(m.info.clone()))?;
        registry.register(Box::new(m.start_time.clone()))?;
        registry.register(Box::new(m.messages.clone()))?;
        registry.register(Box::new(m.ingest_lines.clone()))?;
        registry.register(Box::new(m.provisioning.clone()))?;
        registry.register(Box::new(m.reloads.clone()))?;
        registry.register(Box::new(m.store_bytes.clone()))?;
        registry.register(Box::new(m.handler_runs.clone()))?;
        registry.register(Box::new(m.state_sync.clone()))?;
        Ok(m)
    }
}
