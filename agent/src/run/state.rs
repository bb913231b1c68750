//! Desired/reported state files against the twin or shadows, per session: one task per
//! document (the twin or classic shadow, and each configured AWS named shadow).

use std::path::PathBuf;
use std::time::Duration;

use connector_actors::twin::{DesiredUpdate, WatchId};
use connector_actors::TwinHandle;
use connector_core::DesiredPushes;
use futures::stream::LocalBoxStream;
use futures::StreamExt;
use tracing::{debug, warn};

use super::interval;
use crate::config;
use crate::metrics::AgentMetrics;
use crate::state_sync::ReportedWatcher;
use crate::state_sync::{without_metadata, DesiredMirror};

/// One document mirrored to a pair of files.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    /// `None`: the Azure twin or the AWS classic shadow; `Some(name)`: an AWS named shadow.
    pub shadow: Option<String>,
    /// Where its desired state is written.
    pub desired_file: PathBuf,
    /// Where its reported state is read from.
    pub reported_file: PathBuf,
}

impl Document {
    /// The classic document, then each named shadow, as configured.
    pub(crate) fn all(st: &config::StateSettings) -> Vec<Document> {
        let classic = Document {
            shadow: None,
            desired_file: st.desired_file.clone(),
            reported_file: st.reported_file.clone(),
        };
        let named = st.named_shadows.iter().map(|n| Document {
            shadow: Some(n.name.clone()),
            desired_file: n.desired_file.clone(),
            reported_file: n.reported_file.clone(),
        });
        std::iter::once(classic).chain(named).collect()
    }

    /// The `shadow` label of `connector_agent_state_sync_total`: empty for the classic
    /// document, else the shadow's name (so as many values as configured shadows).
    fn label(&self) -> &str {
        self.shadow.as_deref().unwrap_or("")
    }

    /// ` (shadow NAME)` for a named shadow, for the lines the agent prints.
    fn suffix(&self) -> String {
        self.shadow.as_deref().map_or_else(String::new, |n| format!(" (shadow {n})"))
    }
}

/// Desired updates of `doc`, registered at once. A named shadow is watched through the
/// TwinActor (its subscriptions are made once and kept, and every connection catches up on
/// it); should that fail (the actor is restarting), it is tried again every `retry`.
async fn watch(
    twin: &TwinHandle,
    doc: &Document,
    retry: Duration,
) -> (WatchId, LocalBoxStream<'static, DesiredUpdate>) {
    let Some(name) = doc.shadow.as_deref() else {
        let (id, updates) = twin.desired(64);
        return (id, updates.boxed_local());
    };
    loop {
        match twin.shadow_desired(Some(name), 64).await {
            Ok((id, updates)) => return (id, updates.boxed_local()),
            Err(e) => {
                warn!(shadow = name, error = %e, "watching the named shadow failed; retrying");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Mirrors the desired state of `doc` to its desired file and reports changes of its
/// reported file, for one session. Reports that fail (offline, throttled) are merged and
/// retried.
///
/// Where the provider's desired pushes are deltas ([`DesiredPushes::Deltas`]: AWS
/// shadows, classic or named) rather than patches (Azure twins), a delta is merged only when
/// it directly follows the version the file is known to match ([`Known`]); a catch-up after
/// a reconnect brings the whole desired state along (the tree has just fetched the
/// document), and only a gap between deltas makes this task fetch the document itself.
pub(crate) async fn state_sync(
    twin: TwinHandle,
    doc: Document,
    poll_interval: Duration,
    metrics: AgentMetrics,
) {
    let deltas = twin.desired_pushes() == Some(DesiredPushes::Deltas);
    let shadow = doc.shadow.as_deref();
    let mut mirror = match DesiredMirror::open(&doc.desired_file, 0o644) {
        Ok(m) => m,
        Err(e) => {
            warn!(shadow, error = %e, "desired state file unreadable; starting from an empty document");
            DesiredMirror::new(&doc.desired_file, 0o644)
        }
    };
    let retry_every = poll_interval.max(Duration::from_secs(1));
    let (watch_id, mut desired) = watch(&twin, &doc, retry_every).await;
    let mut patches = ReportedWatcher::new(&doc.reported_file).spawn(poll_interval, 16);
    let mut pending: Option<serde_json::Value> = None;
    let mut retry = interval(retry_every);
    let mut known = Known::default();
    let count = |direction: &str, outcome: &str| {
        metrics.state_sync.with_label_values(&[direction, outcome, doc.label()]).inc();
    };
    loop {
        tokio::select! {
            update = desired.next() => {
                let Some(u) = update else { break };
                let full = if !deltas {
                    // Patches: a catch-up is the whole desired section, anything else a patch.
                    u.catch_up.then(|| u.body.clone())
                } else if let (true, Some(desired)) = (u.catch_up, &u.desired) {
                    // The catch-up carries the document the tree just fetched.
                    known = Known(u.version);
                    Some(desired.clone())
                } else {
                    match known.step(u.version, u.catch_up) {
                        Step::Skip => continue,
                        Step::Patch => {
                            known.follow(u.version);
                            None
                        }
                        Step::Fetch => match twin.get_shadow(shadow).await {
                            Ok(d) => {
                                known = Known(d.version.or_else(|| d.desired_version()));
                                Some(d.desired().cloned().unwrap_or_else(|| serde_json::json!({})))
                            }
                            Err(e) => {
                                debug!(shadow, error = %e, "fetching the whole document failed; applying the delta");
                                known = Known::default();
                                None
                            }
                        },
                    }
                };
                let r = match full {
                    Some(full) => mirror.replace(&without_metadata(&full)),
                    None => mirror.apply_patch(&without_metadata(&u.body)),
                };
                match r {
                    Ok(changed) => {
                        count("desired", "ok");
                        if changed {
                            say!(
                                "desired{}: v{} written to {}",
                                doc.suffix(),
                                u.version.map_or_else(|| "?".to_owned(), |v| v.to_string()),
                                mirror.path().display()
                            );
                        }
                    }
                    Err(e) => {
                        count("desired", "error");
                        warn!(shadow, error = %e, "writing the desired state file failed");
                    }
                }
            }
            patch = patches.recv() => {
                let Some(p) = patch else { break };
                match &mut pending {
                    Some(acc) => merge_patch_keep_nulls(acc, &p),
                    None => pending = Some(p),
                }
                report_pending(&twin, &doc, &mut pending, &mut known, &count).await;
            }
            _ = retry.tick(), if pending.is_some() => report_pending(&twin, &doc, &mut pending, &mut known, &count).await,
        }
    }
    twin.unwatch(watch_id);
}

/// The shadow version whose whole desired state the desired file holds (AWS), if known.
///
/// An AWS delta only names the desired keys that differ from the reported ones: it says
/// nothing of keys removed from the desired state, nor of what changed at versions it
/// skipped. So a delta is applied as a patch only when it directly follows the known
/// version; otherwise the whole document is fetched. That is the case of the first delta
/// after a start (the file may be from before the agent stopped), of the catch-up after a
/// reconnect, and of a delta published after versions this task did not see (such as the
/// one answering the agent's own report when it reaches the service before the catch-up).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Known(Option<u64>);

/// What to do with a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The file already holds it (its version is not newer than the known one).
    Skip,
    /// Merge it into the file.
    Patch,
    /// Fetch the whole document and rewrite the file from its desired section.
    Fetch,
}

impl Known {
    fn step(self, version: Option<u64>, catch_up: bool) -> Step {
        match (self.0, version) {
            _ if catch_up => Step::Fetch,
            (Some(k), Some(v)) if v <= k => Step::Skip,
            (Some(k), Some(v)) if k.checked_add(1) == Some(v) => Step::Patch,
            _ => Step::Fetch,
        }
    }

    /// Moves on to `version` when it directly follows the known one (a delta merged, or an
    /// update that left the desired state alone); a gap stays a gap.
    fn follow(&mut self, version: Option<u64>) {
        if let (Some(k), Some(v)) = (self.0, version) {
            if k.checked_add(1) == Some(v) {
                self.0 = Some(v);
            }
        }
    }
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

/// Reports what is pending to `doc`'s reported state; keeps it on failure, for the retry.
async fn report_pending(
    twin: &TwinHandle,
    doc: &Document,
    pending: &mut Option<serde_json::Value>,
    known: &mut Known,
    count: &impl Fn(&str, &str),
) {
    let Some(p) = pending.take() else { return };
    match twin.report_shadow(doc.shadow.as_deref(), &p).await {
        Ok(r) => {
            // A reported update leaves the desired state as it was.
            known.follow(r.version);
            count("reported", "ok");
            say!(
                "reported{}: v{}",
                doc.suffix(),
                r.version.map_or_else(|| "?".to_owned(), |v| v.to_string())
            );
        }
        Err(e) => {
            count("reported", "error");
            warn!(shadow = doc.shadow.as_deref(), error = %e, "reporting the state file failed; retrying");
            *pending = Some(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Document, Known, Step};
    use crate::config::{NamedShadowSettings, StateSettings};
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn one_document_per_configured_pair_classic_first() {
        let st = StateSettings {
            enabled: true,
            desired_file: "/s/desired.json".into(),
            reported_file: "/s/reported.json".into(),
            poll_interval: Duration::from_secs(1),
            named_shadows: vec![NamedShadowSettings {
                name: "config".into(),
                desired_file: "/s/shadow-config.desired.json".into(),
                reported_file: "/s/c.json".into(),
            }],
        };
        let docs = Document::all(&st);
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].shadow.as_deref(), docs[0].label(), docs[0].suffix()), (None, "", String::new()));
        assert_eq!(docs[0].desired_file, PathBuf::from("/s/desired.json"));
        assert_eq!(
            (docs[1].shadow.as_deref(), docs[1].label(), docs[1].suffix()),
            (Some("config"), "config", " (shadow config)".to_owned())
        );
        assert_eq!(docs[1].reported_file, PathBuf::from("/s/c.json"));
    }

    #[test]
    fn a_delta_is_merged_only_right_after_the_known_version() {
        // Nothing known (a start): fetch; a catch-up always fetches.
        assert_eq!(Known(None).step(Some(1), false), Step::Fetch);
        assert_eq!(Known(Some(4)).step(Some(5), true), Step::Fetch);
        assert_eq!(Known(Some(4)).step(Some(5), false), Step::Patch);
        assert_eq!(Known(Some(4)).step(Some(4), false), Step::Skip);
        assert_eq!(Known(Some(4)).step(Some(2), false), Step::Skip);
        assert_eq!(Known(Some(4)).step(Some(6), false), Step::Fetch, "a version was missed");
        assert_eq!(Known(Some(4)).step(None, false), Step::Fetch);
        assert_eq!(Known(Some(u64::MAX)).step(Some(u64::MAX), false), Step::Skip);
        // Following: only the next version; a gap (the agent's report after a change it
        // missed) keeps what is known, so the next delta fetches.
        let mut k = Known(Some(4));
        k.follow(Some(5));
        assert_eq!(k, Known(Some(5)));
        k.follow(Some(7));
        assert_eq!(k, Known(Some(5)));
        assert_eq!(k.step(Some(7), false), Step::Fetch);
        k.follow(None);
        assert_eq!(k, Known(Some(5)));
        let mut k = Known(None);
        k.follow(Some(1));
        assert_eq!(k, Known(None));
    }
}
