//! Gateway / fleet mode: many device identities in one process, sharing one runtime, one
//! transport (and so one TLS context per distinct set of TLS settings), one metrics
//! registry with aggregated series, and a connect pacer, so that a broker restart does not
//! turn into a reconnect storm.
//!
//! ```no_run
//! # use connector_actors::fleet::Fleet;
//! # use connector_core::{MqttOptions, MqttProvider};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fleet = Fleet::builder().connects_per_second(200.0).build();
//! let mut devices = Vec::new();
//! for i in 0..1000 {
//!     let p = MqttProvider::new(MqttOptions::new("tcp://127.0.0.1:1883", format!("sim-{i}")))?;
//!     devices.push(fleet.connector(p).start());
//! }
//! # Ok(()) }
//! ```
//!
//! What each part does:
//! - **Transport**: one [`NativeTransport`] by default (no thread per connection; TLS
//!   contexts built once and shared). Any [`Transport`] can be given instead.
//! - **Metrics**: the families are registered once in the fleet's registry,
//!   [aggregated](connector_core::ConnectorMetrics::aggregated) unless per-device series are
//!   asked for: a scrape stays a few dozen series whatever the fleet's size.
//! - **Connect pacing**: every connect attempt of every member (first connects and
//!   reconnects alike) takes a slot from the fleet's [`ConnectPacer`], at most
//!   `connects_per_second` of them, in the order asked. Reconnect delays are jittered by
//!   each member's backoff (full jitter by default), so after a broker restart the fleet
//!   comes back spread over the backoff window and paced below the broker's accept rate.

use std::sync::Arc;
use std::time::Duration;

use connector_core::{ConnectorMetrics, Provider};
use parking_lot::Mutex;
use prometheus::Registry;
use tokio::time::Instant;

use crate::connector::{Connector, ConnectorBuilder};
use crate::transport::{NativeTransport, Transport};

/// Connect attempts per second a fleet allows by default.
pub const DEFAULT_CONNECTS_PER_SECOND: f64 = 100.0;

/// Spaces connect attempts of many connections: each [`ConnectPacer::slot`] waits for the
/// next free slot, `1 / rate` after the previous one (a burst of `burst` slots may go at
/// once after a quiet period). Clones share the schedule.
#[derive(Clone, Debug)]
pub struct ConnectPacer(Arc<PacerInner>);

#[derive(Debug)]
struct PacerInner {
    interval: Duration,
    burst: u32,
    /// The time the next slot is free at.
    next: Mutex<Option<Instant>>,
}

impl ConnectPacer {
    /// At most `per_second` slots per second (at least one per hour), `burst` of them at
    /// once after a quiet period.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let per_second = if per_second.is_finite() { per_second.max(1.0 / 3600.0) } else { 1e9 };
        Self(Arc::new(PacerInner {
            interval: Duration::from_secs_f64(1.0 / per_second),
            burst: burst.max(1),
            next: Mutex::new(None),
        }))
    }

    /// The gap between slots.
    pub fn interval(&self) -> Duration {
        self.0.interval
    }

    /// Reserves the next slot and returns when it is due (already, if the pacer was idle).
    /// A generic cell rate: the theoretical arrival time may run ahead of `now` by
    /// `burst - 1` intervals before a caller has to wait.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.0.next.lock();
        let tat = next.map_or(now, |n| n.max(now));
        *next = Some(tat + self.0.interval);
        let slack = self.0.interval * (self.0.burst - 1);
        tat.checked_sub(slack).unwrap_or(now).max(now)
    }

    /// Waits for this caller's slot.
    pub async fn slot(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }
}

/// Builds a [`Fleet`].
#[derive(Default)]
pub struct FleetBuilder {
    transport: Option<Arc<dyn Transport>>,
    registry: Option<Registry>,
    per_device_metrics: bool,
    connects_per_second: Option<f64>,
    burst: Option<u32>,
}

impl FleetBuilder {
    /// The transport every member uses (default: one [`NativeTransport`]).
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Self {
        self.transport = Some(t);
        self
    }

    /// The registry the fleet's metric families go into (default: a new one, see
    /// [`Fleet::registry`]).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Series per device instead of aggregated ones (off by default: at fleet sizes the
    /// scrape would grow by ~30 series a device).
    pub fn per_device_metrics(mut self, on: bool) -> Self {
        self.per_device_metrics = on;
        self
    }

    /// Connect attempts per second across the fleet (default
    /// [`DEFAULT_CONNECTS_PER_SECOND`]).
    pub fn connects_per_second(mut self, rate: f64) -> Self {
        self.connects_per_second = Some(rate);
        self
    }

    /// Attempts that may go at once after a quiet period (default: a tenth of a second's
    /// worth, at least 1).
    pub fn connect_burst(mut self, n: u32) -> Self {
        self.burst = Some(n);
        self
    }

    /// The fleet. Fails only if the registry already holds the connector's families.
    pub fn try_build(self) -> Result<Fleet, prometheus::Error> {
        let registry = self.registry.unwrap_or_default();
        let mut metrics = ConnectorMetrics::register(&registry)?;
        if !self.per_device_metrics {
            metrics = metrics.aggregated();
        }
        let rate = self.connects_per_second.unwrap_or(DEFAULT_CONNECTS_PER_SECOND);
        let burst = self.burst.unwrap_or_else(|| (rate / 10.0).clamp(1.0, 10_000.0) as u32);
        // Twice the default window of 100: the native transport's own bound per link.
        let transport = self.transport.unwrap_or_else(|| Arc::new(NativeTransport::new(200)));
        Ok(Fleet { transport, registry, metrics, pacer: ConnectPacer::new(rate, burst) })
    }

    /// The fleet, in a registry of its own (see [`FleetBuilder::try_build`]).
    pub fn build(self) -> Fleet {
        let fresh = Self { registry: None, ..self };
        fresh.try_build().expect("a fresh registry holds no families")
    }
}

/// Many connectors sharing one transport, one metrics registry and one connect pacer.
#[derive(Clone)]
pub struct Fleet {
    transport: Arc<dyn Transport>,
    registry: Registry,
    metrics: ConnectorMetrics,
    pacer: ConnectPacer,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("per_device_metrics", &self.metrics.per_device())
            .field("connect_interval", &self.pacer.interval())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// A builder.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// A connector builder for one member: the fleet's transport, metrics and pacer are set;
    /// everything else is the caller's to set before `start()`.
    pub fn connector<P: Provider>(&self, provider: P) -> ConnectorBuilder {
        self.connector_arc(Arc::new(provider))
    }

    /// [`Fleet::connector`] for a provider already behind an `Arc`.
    pub fn connector_arc(&self, provider: Arc<dyn Provider>) -> ConnectorBuilder {
        Connector::builder_arc(provider)
            .transport(self.transport.clone())
            .metrics(self.metrics.clone())
            .registry(&self.registry)
            .connect_pacer(self.pacer.clone())
    }

    /// The registry holding the fleet's metrics (serve it with
    /// [`crate::MetricsServer`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metric families the members share.
    pub fn metrics(&self) -> &ConnectorMetrics {
        &self.metrics
    }

    /// The connect pacer.
    pub fn pacer(&self) -> &ConnectPacer {
        &self.pacer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_interval_after_the_burst() {
        let p = ConnectPacer::new(10.0, 3);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..6).map(|_| p.reserve(t0) - t0).collect();
        let ms: Vec<u128> = slots.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 0, 100, 200, 300], "burst of 3, then 100 ms apart");
    }

    #[test]
    fn an_idle_pacer_refills_its_burst_but_no_more() {
        let p = ConnectPacer::new(10.0, 2);
        let t0 = Instant::now();
        for _ in 0..5 {
            p.reserve(t0);
        }
        // Long after the schedule ran out: two go at once, the third waits an interval.
        let later = t0 + Duration::from_secs(60);
        let ms: Vec<u128> = (0..3).map(|_| (p.reserve(later) - later).as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 100]);
    }

    #[test]
    fn rates_out_of_range_are_clamped() {
        assert_eq!(ConnectPacer::new(0.0, 1).interval(), Duration::from_secs(3600));
        assert!(ConnectPacer::new(f64::INFINITY, 1).interval() < Duration::from_micros(1));
        assert!(ConnectPacer::new(f64::NAN, 1).interval() < Duration::from_micros(1));
    }
}
