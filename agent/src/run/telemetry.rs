//! Telemetry into the Publisher: device stats and ingested batches.
//!
//! Azure: the device's telemetry topic with properties `source` (`device-stats`,
//! `ingest`) and, for ingested lines with a channel, `channel`. AWS: `dt/{thing}/telemetry`
//! for device stats and ingested lines without a channel, `dt/{thing}/{channel}` for those
//! with one, with the same properties as MQTT 5 user properties.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use connector_actors::{PublishError, PublisherHandle};
use connector_core::{Publish, QoS};
use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use crate::ingest::Batch;
use crate::metrics::AgentMetrics;
use crate::stats::StatsSampler;

/// Counters shared with the tasks.
#[derive(Default)]
pub(crate) struct Shared {
    /// Messages the Publisher accepted.
    pub sent: AtomicU64,
}

/// What a producer is told when the Publisher's byte cap (`store.max_bytes`) refuses its
/// lines.
const STORE_FULL: &str = "the agent's store is full (store.max_bytes)";

/// How a session's telemetry is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// Azure IoT Hub: one telemetry topic, properties in the topic's property bag.
    Azure,
    /// AWS IoT Core: topics under `dt/{thing}/`.
    Aws {
        /// The thing name.
        thing: String,
    },
}

impl Flavour {
    /// A QoS 1 JSON telemetry message from `source`, on `channel` when given.
    pub fn publish(&self, body: Vec<u8>, source: &str, channel: Option<&str>) -> Publish {
        let p = match (self, channel) {
            (Flavour::Azure, _) => Publish::telemetry(body).content_encoding("utf-8"),
            (Flavour::Aws { thing }, Some(c)) if aws_channel_ok(c) => {
                Publish::to_topic(format!("dt/{thing}/{c}"), body)
            }
            (Flavour::Aws { .. }, _) => Publish::telemetry(body),
        };
        let p = p.qos(QoS::AtLeastOnce).content_type("application/json").property("source", source);
        match channel {
            Some(c) => p.property("channel", c),
            None => p,
        }
    }
}

/// A channel usable as the last levels of an AWS topic (`dt/{thing}/` + at most 5 more
/// levels, no wildcards, no empty level).
fn aws_channel_ok(c: &str) -> bool {
    c.split('/').count() <= 5 && c.split('/').all(|l| !l.is_empty() && !l.contains(['+', '#', '$']))
}

/// Publishes one device-stats sample (handed over now; counted when accepted).
pub(crate) fn send_stats(
    sampler: &mut StatsSampler,
    publisher: &PublisherHandle,
    flavour: &Flavour,
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
    let body = match serde_json::to_vec(&stats) {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "device stats do not serialise");
            return;
        }
    };
    let p = flavour.publish(body, "device-stats", None);
    let fut = publisher.enqueue(p);
    let shared = shared.clone();
    let metrics = metrics.clone();
    actix_rt::spawn(async move {
        match fut.await {
            Ok(_) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                metrics.messages.with_label_values(&["device_stats", "accepted"]).inc();
            }
            Err(e @ PublishError::StoreFull { .. }) => {
                metrics.messages.with_label_values(&["device_stats", "refused"]).inc();
                warn!(error = %e, "store full (store.max_bytes): device stats not sent");
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
/// holding it, and refused when the Publisher refuses it (at `store.max_bytes` with
/// `drop_policy = "newest"`, the Publisher's exact byte cap). Lines of one batch with the
/// same channel and properties travel together as one JSON array.
pub(crate) async fn ingest_consumer(
    mut batches: mpsc::Receiver<Batch>,
    mut publisher: watch::Receiver<Option<(PublisherHandle, Flavour)>>,
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
            let mut body = Vec::with_capacity(items.iter().map(|(p, _)| p.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, (p, _)) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(p);
            }
            body.push(b']');
            // Wait for a session (provisioning may be under way): producers wait too.
            let current = match publisher.wait_for(Option::is_some).await {
                Ok(h) => h.clone(),
                Err(_) => None,
            };
            let Some((handle, flavour)) = current else {
                reject(items, "the agent is stopping");
                continue;
            };
            let mut p = flavour.publish(body, "ingest", topic.as_deref());
            for (k, v) in props {
                p = p.property(k, v);
            }
            match handle.enqueue(p).await {
                Ok(_) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    metrics.messages.with_label_values(&["ingest", "accepted"]).inc();
                    metrics.ingest_lines.with_label_values(&["accepted"]).inc_by(n);
                    items.into_iter().for_each(|(_, a)| a.accept());
                }
                Err(e @ PublishError::StoreFull { .. }) => {
                    metrics.messages.with_label_values(&["ingest", "refused"]).inc();
                    reject(items, &format!("{STORE_FULL}: {e}"));
                }
                Err(e) => {
                    metrics.messages.with_label_values(&["ingest", "refused"]).inc();
                    reject(items, &format!("not accepted: {e}"));
                }
            }
        }
    }
}
