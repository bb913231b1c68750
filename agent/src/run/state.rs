//! Desired/reported state files against the twin or shadow, per session.

use std::time::Duration;

use connector_actors::TwinHandle;
use futures::StreamExt;
use tracing::warn;

use super::interval;
use crate::config;
use crate::metrics::AgentMetrics;
use crate::state_sync::ReportedWatcher;
use crate::state_sync::{without_metadata, DesiredMirror};

/// Mirrors desired state to the desired file and reports changes of the reported file,
/// for one session. Reports that fail (offline, throttled) are merged and retried.
///
/// `delta_catch_up`: the catch-up after a reconnect is a delta (AWS shadows), not the
/// whole desired document (Azure twins); the whole document is fetched instead.
pub(crate) async fn state_sync(
    twin: TwinHandle,
    st: config::StateSettings,
    metrics: AgentMetrics,
    delta_catch_up: bool,
) {
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
                let full = if u.catch_up && delta_catch_up {
                    twin.get().await.ok().and_then(|d| d.desired().cloned())
                } else if u.catch_up {
                    Some(u.body.clone())
                } else {
                    None
                };
                let r = match full {
                    Some(doc) => mirror.replace(&without_metadata(&doc)),
                    None => mirror.apply_patch(&without_metadata(&u.body)),
                };
                match r {
                    Ok(changed) => {
                        metrics.state_sync.with_label_values(&["desired", "ok"]).inc();
                        if changed {
                            say!(
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

pub(crate) async fn report_pending(
    twin: &TwinHandle,
    pending: &mut Option<serde_json::Value>,
    metrics: &AgentMetrics,
) {
    let Some(p) = pending.take() else { return };
    match twin.report(&p).await {
        Ok(r) => {
            metrics.state_sync.with_label_values(&["reported", "ok"]).inc();
            say!("reported: v{}", r.version.map_or_else(|| "?".to_owned(), |v| v.to_string()));
        }
        Err(e) => {
            metrics.state_sync.with_label_values(&["reported", "error"]).inc();
            warn!(error = %e, "reporting the state file failed; retrying");
            *pending = Some(p);
        }
    }
}
