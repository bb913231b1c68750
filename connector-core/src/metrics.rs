//! Prometheus metric families of the connector.
//!
//! [`ConnectorMetrics`] registers the families once into a registry; each connection takes
//! a [`ConnectionMetrics`] view with its `provider` and `client` labels bound, so the hot
//! paths never hash label values.
//!
//! **Per-device or aggregated.** By default every connection has its own series (`client`
//! is its client id). A gateway or fleet of thousands of devices in one process turns that
//! off with [`ConnectorMetrics::aggregated`]: every connection of a provider then shares one
//! series per family, labelled `client="*"` ([`AGGREGATED_CLIENT`]). Counters and the
//! latency histogram add up; the gauges (`connector_connected`, queue depth, in flight) are
//! kept as each connection's share ([`GaugeShare`]), so the series is the fleet's total
//! (devices connected, messages queued) and a connection that ends takes its share back.
//! Two gauges that have no meaningful sum, `connector_connection_state` and
//! `connector_twin_desired_version`, are per-device only: aggregated views do not export them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The `client` label value of aggregated series (see the module docs).
pub const AGGREGATED_CLIENT: &str = "*";

/// One connection's share of a gauge series: [`GaugeShare::set`] moves the series by the
/// difference from this connection's previous value, so that many connections can share
/// one (aggregated) series and each still reads its own value back with
/// [`GaugeShare::get`]. When the last clone is dropped the share is taken back out.
#[derive(Clone, Debug)]
pub struct GaugeShare(Arc<ShareInner>);

#[derive(Debug)]
struct ShareInner {
    series: IntGauge,
    mine: AtomicI64,
}

impl GaugeShare {
    fn new(series: IntGauge) -> Self {
        Self(Arc::new(ShareInner { series, mine: AtomicI64::new(0) }))
    }

    /// Sets this connection's value.
    pub fn set(&self, v: i64) {
        let old = self.0.mine.swap(v, Ordering::AcqRel);
        if v != old {
            self.0.series.add(v - old);
        }
    }

    /// This connection's value (not the series').
    pub fn get(&self) -> i64 {
        self.0.mine.load(Ordering::Acquire)
    }
}

impl Drop for ShareInner {
    fn drop(&mut self) {
        self.series.sub(*self.mine.get_mut());
    }
}

/// The connector's metric families, registered in one registry.
#[derive(Clone, Debug)]
pub struct ConnectorMetrics {
    published: IntCounterVec,
    received: IntCounterVec,
    ack_latency: HistogramVec,
    state: IntGaugeVec,
    connected: IntGaugeVec,
    connect_attempts: IntCounterVec,
    connect_failures: IntCounterVec,
    reconnects: IntCounterVec,
    disconnects: IntCounterVec,
    queue_depth: IntGaugeVec,
    queue_drops: IntCounterVec,
    discarded: IntCounterVec,
    inflight: IntGaugeVec,
    restarts: IntCounterVec,
    handler_panics: IntCounterVec,
    inbound_dropped: IntCounterVec,
    credential_renewals: IntCounterVec,
    twin_requests: IntCounterVec,
    twin_desired_version: IntGaugeVec,
    twin_desired_updates: IntCounterVec,
    method_calls: IntCounterVec,
    job_requests: IntCounterVec,
    jobs_finished: IntCounterVec,
    per_device: bool,
}

const LABELS: [&str; 2] = ["provider", "client"];

fn counter(name: &str, help: &str, extra: &[&str]) -> IntCounterVec {
    let labels: Vec<&str> = LABELS.iter().chain(extra).copied().collect();
    IntCounterVec::new(Opts::new(name, help), &labels).expect("metric definitions are static and valid")
}

fn gauge(name: &str, help: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &LABELS).expect("metric definitions are static and valid")
}

impl ConnectorMetrics {
    /// Creates the families and registers them. Fails if the registry already holds
    /// families of these names (register once, share the handle between connections).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            published: counter(
                "connector_messages_published_total",
                "Outbound messages by kind and outcome (acked, sent, failed, timeout, dropped, rejected).",
                &["kind", "outcome"],
            ),
            received: counter("connector_messages_received_total", "Inbound messages by kind.", &["kind"]),
            ack_latency: HistogramVec::new(
                HistogramOpts::new(
                    "connector_publish_ack_latency_seconds",
                    "Time from handing a QoS 1 publish to the transport to its PUBACK.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &LABELS,
            )
            .expect("metric definitions are static and valid"),
            state: gauge(
                "connector_connection_state",
                "Connection state: 0 disconnected, 1 connecting, 2 connected, 3 backoff, 4 stopped.",
            ),
            connected: gauge("connector_connected", "1 while connected, else 0."),
            connect_attempts: counter("connector_connect_attempts_total", "Connect attempts.", &[]),
            connect_failures: counter(
                "connector_connect_failures_total",
                "Failed connect attempts by reason.",
                &["reason"],
            ),
            reconnects: counter("connector_reconnects_total", "Successful connections after the first.", &[]),
            disconnects: counter(
                "connector_disconnects_total",
                "Established connections that ended, by reason.",
                &["reason"],
            ),
            queue_depth: gauge("connector_offline_queue_depth", "Accepted messages waiting to be sent."),
            queue_drops: counter(
                "connector_offline_queue_dropped_total",
                "Messages dropped by the offline queue's policy (oldest evicted or newest refused).",
                &["policy"],
            ),
            discarded: counter(
                "connector_messages_discarded_total",
                "Accepted messages removed before their acknowledgement, by reason: expired (their expiry), \
                 evicted (drop-oldest at a count or byte cap), cancelled (by their caller), failed (refused \
                 for good by the broker or the transport).",
                &["reason"],
            ),
            inflight: gauge("connector_inflight_messages", "Messages sent and not yet acknowledged."),
            restarts: counter(
                "connector_actor_restarts_total",
                "Child actors restarted by their supervisor.",
                &["actor"],
            ),
            handler_panics: counter(
                "connector_handler_panics_total",
                "Panics caught in user handler code.",
                &["handler"],
            ),
            inbound_dropped: counter(
                "connector_inbound_dropped_total",
                "Inbound deliveries not made, by reason (recipient_full, recipient_closed, unrouted).",
                &["reason"],
            ),
            credential_renewals: counter(
                "connector_credential_renewals_total",
                "Reconnects made to present fresh credentials before expiry.",
                &[],
            ),
            twin_requests: counter(
                "connector_twin_requests_total",
                "Device-state (twin/shadow) requests by operation and outcome (ok, status, throttled, timeout, …).",
                &["op", "outcome"],
            ),
            twin_desired_version: gauge(
                "connector_twin_desired_version",
                "The newest desired-state version seen (Azure twin desired $version, AWS shadow version).",
            ),
            twin_desired_updates: counter(
                "connector_twin_desired_updates_total",
                "Desired-state changes by outcome (delivered, catch_up, duplicate, malformed).",
                &["outcome"],
            ),
            method_calls: counter(
                "connector_method_calls_total",
                "Direct-method calls answered, by the status sent back.",
                &["status"],
            ),
            job_requests: counter(
                "connector_job_requests_total",
                "Jobs requests by operation (get_pending, start_next, describe, update) and outcome.",
                &["op", "outcome"],
            ),
            jobs_finished: counter(
                "connector_jobs_total",
                "Job executions run by this device's handlers, by the status they ended in.",
                &["status"],
            ),
            per_device: true,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.published.clone()),
            Box::new(m.received.clone()),
            Box::new(m.ack_latency.clone()),
            Box::new(m.state.clone()),
            Box::new(m.connected.clone()),
            Box::new(m.connect_attempts.clone()),
            Box::new(m.connect_failures.clone()),
            Box::new(m.reconnects.clone()),
            Box::new(m.disconnects.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.queue_drops.clone()),
            Box::new(m.discarded.clone()),
            Box::new(m.inflight.clone()),
            Box::new(m.restarts.clone()),
            Box::new(m.handler_panics.clone()),
            Box::new(m.inbound_dropped.clone()),
            Box::new(m.credential_renewals.clone()),
            Box::new(m.twin_requests.clone()),
            Box::new(m.twin_desired_version.clone()),
            Box::new(m.twin_desired_updates.clone()),
            Box::new(m.method_calls.clone()),
            Box::new(m.job_requests.clone()),
            Box::new(m.jobs_finished.clone()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        Ok(m)
    }

    /// The same families with per-device series off: every connection viewed through the
    /// result shares one series per family and provider (`client="*"`; see the module docs).
    /// For gateways and fleets: thousands of devices, a scrape of a few dozen series.
    pub fn aggregated(mut self) -> Self {
        self.per_device = false;
        self
    }

    /// Whether connections get series of their own.
    pub fn per_device(&self) -> bool {
        self.per_device
    }

    /// A view with the connection's labels bound (its client id, or [`AGGREGATED_CLIENT`]
    /// when the families are [`aggregated`](Self::aggregated)).
    pub fn connection(&self, provider: &str, client: &str) -> ConnectionMetrics {
        let client = if self.per_device { client } else { AGGREGATED_CLIENT };
        let l = [provider, client];
        // Gauges without a meaningful sum stay out of aggregated scrapes.
        let own = |family: &IntGaugeVec| {
            if self.per_device {
                family.with_label_values(&l)
            } else {
                IntGauge::new("unexported", "not exported when aggregated").expect("static and valid")
            }
        };
        ConnectionMetrics {
            families: self.clone(),
            provider: provider.to_owned(),
            client: client.to_owned(),
            acked: self.published.with_label_values(&[provider, client, "message", "acked"]),
            sent_qos0: self.published.with_label_values(&[provider, client, "message", "sent"]),
            ack_latency: self.ack_latency.with_label_values(&l),
            state: own(&self.state),
            connected: GaugeShare::new(self.connected.with_label_values(&l)),
            connect_attempts: self.connect_attempts.with_label_values(&l),
            reconnects: self.reconnects.with_label_values(&l),
            queue_depth: GaugeShare::new(self.queue_depth.with_label_values(&l)),
            inflight: GaugeShare::new(self.inflight.with_label_values(&l)),
            credential_renewals: self.credential_renewals.with_label_values(&l),
            twin_desired_version: own(&self.twin_desired_version),
        }
    }
}

/// One connection's metrics, labels bound.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    families: ConnectorMetrics,
    provider: String,
    client: String,
    /// QoS 1 publishes acknowledged (kind `message`).
    pub acked: IntCounter,
    /// QoS 0 publishes written (kind `message`).
    pub sent_qos0: IntCounter,
    /// PUBACK latency.
    pub ack_latency: Histogram,
    /// Connection state gauge (per-device series only).
    pub state: IntGauge,
    /// Connected gauge (this connection's share).
    pub connected: GaugeShare,
    /// Connect attempts.
    pub connect_attempts: IntCounter,
    /// Reconnects.
    pub reconnects: IntCounter,
    /// Offline queue depth (this connection's share).
    pub queue_depth: GaugeShare,
    /// In-flight count (this connection's share).
    pub inflight: GaugeShare,
    /// Credential renewals.
    pub credential_renewals: IntCounter,
    /// The newest desired-state version seen (per-device series only).
    pub twin_desired_version: IntGauge,
}

impl ConnectionMetrics {
    /// A view on a private registry, for connections built without metrics.
    pub fn detached(provider: &str, client: &str) -> Self {
        ConnectorMetrics::register(&Registry::new())
            .expect("a fresh registry has no conflicting families")
            .connection(provider, client)
    }

    fn l<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![self.provider.as_str(), self.client.as_str()];
        v.extend_from_slice(extra);
        v
    }

    /// Counts a publish outcome for a message kind.
    pub fn published(&self, kind: &str, outcome: &str) {
        self.families.published.with_label_values(&self.l(&[kind, outcome])).inc();
    }
    /// Counts an inbound message of a kind.
    pub fn received(&self, kind: &str) {
        self.families.received.with_label_values(&self.l(&[kind])).inc();
    }
    /// Counts a failed connect attempt.
    pub fn connect_failed(&self, reason: &str) {
        self.families.connect_failures.with_label_values(&self.l(&[reason])).inc();
    }
    /// Counts a lost connection.
    pub fn disconnected(&self, reason: &str) {
        self.families.disconnects.with_label_values(&self.l(&[reason])).inc();
    }
    /// Counts queue drops under a policy.
    pub fn queue_dropped(&self, policy: &str, n: u64) {
        self.families.queue_drops.with_label_values(&self.l(&[policy])).inc_by(n);
    }
    /// Counts accepted messages removed before their acknowledgement (`reason`: expired,
    /// evicted, cancelled, failed).
    pub fn discarded(&self, reason: &str, n: u64) {
        self.families.discarded.with_label_values(&self.l(&[reason])).inc_by(n);
    }
    /// Counts a child restart.
    pub fn restarted(&self, actor: &str) {
        self.families.restarts.with_label_values(&self.l(&[actor])).inc();
    }
    /// Counts a caught panic in user handler code.
    pub fn handler_panicked(&self, handler: &str) {
        self.families.handler_panics.with_label_values(&self.l(&[handler])).inc();
    }
    /// Counts a device-state request outcome (`op`: get, report).
    pub fn twin_request(&self, op: &str, outcome: &str) {
        self.families.twin_requests.with_label_values(&self.l(&[op, outcome])).inc();
    }
    /// Counts a desired-state change by outcome.
    pub fn twin_desired(&self, outcome: &str) {
        self.families.twin_desired_updates.with_label_values(&self.l(&[outcome])).inc();
    }
    /// Counts an inbound delivery not made.
    pub fn inbound_dropped(&self, reason: &str) {
        self.families.inbound_dropped.with_label_values(&self.l(&[reason])).inc();
    }
    /// Counts a direct-method call answered with `status`.
    pub fn method_answered(&self, status: u16) {
        let status = status.to_string();
        self.families.method_calls.with_label_values(&self.l(&[status.as_str()])).inc();
    }
    /// Counts a jobs request outcome (`op`: get_pending, start_next, describe, update).
    pub fn job_request(&self, op: &str, outcome: &str) {
        self.families.job_requests.with_label_values(&self.l(&[op, outcome])).inc();
    }
    /// Counts a job execution ended by a handler with `status` (`SUCCEEDED`, `FAILED`, …).
    pub fn job_finished(&self, status: &str) {
        self.families.jobs_finished.with_label_values(&self.l(&[status])).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn families_render_with_bound_labels() {
        let reg = Registry::new();
        let m = ConnectorMetrics::register(&reg).unwrap();
        let c = m.connection("mqtt", "dev-1");
        c.acked.inc();
        c.queue_dropped("oldest", 3);
        c.connect_failed("bad_credentials");
        let mut buf = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains(
            r#"connector_messages_published_total{client="dev-1",kind="message",outcome="acked",provider="mqtt"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"connector_offline_queue_dropped_total{client="dev-1",policy="oldest",provider="mqtt"} 3"#
        ));
        assert!(text.contains(r#"reason="bad_credentials""#));
    }

    fn scrape(reg: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn aggregated_families_share_one_series_and_gauges_sum_shares() {
        let reg = Registry::new();
        let m = ConnectorMetrics::register(&reg).unwrap().aggregated();
        let mut views: Vec<_> = (0..3).map(|i| m.connection("aws", &format!("dev-{i}"))).collect();
        for v in &views {
            v.acked.inc();
            v.connected.set(1);
            v.queue_depth.set(4);
            v.state.set(2);
        }
        views[2].queue_depth.set(1);
        assert_eq!(views[2].queue_depth.get(), 1, "each view reads its own share");
        let text = scrape(&reg);
        assert!(!text.contains("dev-"), "no per-device series: {text}");
        assert!(text.contains(r#"connector_messages_published_total{client="*",kind="message",outcome="acked",provider="aws"} 3"#), "{text}");
        assert!(text.contains(r#"connector_connected{client="*",provider="aws"} 3"#), "{text}");
        assert!(text.contains(r#"connector_offline_queue_depth{client="*",provider="aws"} 9"#), "{text}");
        assert!(!text.contains("connector_connection_state{"), "state has no sum: {text}");
        drop(views.remove(0));
        let text = scrape(&reg);
        assert!(
            text.contains(r#"connector_connected{client="*",provider="aws"} 2"#),
            "an ended view takes its share back: {text}"
        );
    }

    #[test]
    fn per_device_gauges_read_as_set() {
        let reg = Registry::new();
        let m = ConnectorMetrics::register(&reg).unwrap();
        let v = m.connection("mqtt", "d");
        v.inflight.set(7);
        v.inflight.set(3);
        assert!(scrape(&reg).contains(r#"connector_inflight_messages{client="d",provider="mqtt"} 3"#));
    }

    #[test]
    fn registering_twice_in_one_registry_is_an_error() {
        let reg = Registry::new();
        ConnectorMetrics::register(&reg).unwrap();
        assert!(ConnectorMetrics::register(&reg).is_err());
    }
}
