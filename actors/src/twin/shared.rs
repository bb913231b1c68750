//! What the supervisor keeps for the TwinActor across restarts, and what it is built from.

use super::*;

/// Watchers and the last delivered desired version: owned by the supervisor, so they
/// survive TwinActor restarts.
#[derive(Debug, Default)]
pub(crate) struct TwinShared {
    pub(super) inner: Mutex<SharedInner>,
    /// What the provider's desired pushes carry.
    pub(crate) pushes: Option<connector_core::DesiredPushes>,
}

#[derive(Debug, Default)]
pub(super) struct SharedInner {
    pub(super) next_id: u64,
    /// Watchers of desired changes, each of one document (`None`: the classic one).
    pub(super) watchers: BTreeMap<u64, (Option<String>, DesiredSink)>,
    /// Watchers of `update/documents` (all documents).
    pub(super) documents: BTreeMap<u64, mpsc::Sender<StateDocuments>>,
    /// The newest desired version delivered, per document.
    pub(super) versions: BTreeMap<Option<String>, u64>,
    /// Named documents in use: subscribed once, kept, caught up on every connection.
    pub(super) named: BTreeSet<String>,
}

impl SharedInner {
    pub(super) fn last(&self, shadow: &Option<String>) -> Option<u64> {
        self.versions.get(shadow).copied()
    }
}

impl TwinShared {
    /// Empty, for a provider whose desired pushes carry `pushes`.
    pub(crate) fn for_pushes(pushes: Option<connector_core::DesiredPushes>) -> Self {
        Self { pushes, ..Self::default() }
    }

    pub(super) fn watch(&self, shadow: Option<String>, sink: DesiredSink) -> WatchId {
        let mut g = self.inner.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.watchers.insert(id, (shadow, sink));
        WatchId(id)
    }

    pub(super) fn watch_documents(&self, tx: mpsc::Sender<StateDocuments>) -> WatchId {
        let mut g = self.inner.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.documents.insert(id, tx);
        WatchId(id)
    }

    pub(super) fn unwatch(&self, id: WatchId) -> bool {
        let mut g = self.inner.lock();
        g.watchers.remove(&id.0).is_some() || g.documents.remove(&id.0).is_some()
    }
}

/// What the TwinActor is built from, kept by the supervisor to rebuild it.
#[derive(Clone)]
pub(crate) struct TwinSettings {
    pub provider: Arc<dyn Provider>,
    pub timeout: Duration,
    pub retry: TwinRetry,
    pub shared: Arc<TwinShared>,
    pub metrics: ConnectionMetrics,
}

/// [`TwinSettings`] with the siblings' slots.
#[derive(Clone)]
pub(crate) struct TwinArgs {
    pub settings: TwinSettings,
    pub publisher: PublisherSlot,
    pub subscriber: Slot<Subscriber>,
}
