//! What the supervisor keeps for the JobsActor across restarts (watchers, handlers), and what it is built from.

use super::*;

/// Watchers and handlers: owned by the supervisor, so they survive JobsActor restarts.
#[derive(Default)]
pub(crate) struct JobsShared {
    pub(super) inner: Mutex<SharedInner>,
}

#[derive(Default)]
pub(super) struct SharedInner {
    pub(super) next_id: u64,
    pub(super) watchers: BTreeMap<u64, mpsc::Sender<JobEvent>>,
    pub(super) handlers: BTreeMap<String, JobHandlerFn>,
    pub(super) runner: bool,
    pub(super) options: JobsOptions,
}

impl JobsShared {
    pub(super) fn watch(&self, tx: mpsc::Sender<JobEvent>) -> u64 {
        let mut g = self.inner.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.watchers.insert(id, tx);
        id
    }

    pub(super) fn broadcast(&self, event: &JobEvent, metrics: &ConnectionMetrics) {
        self.inner.lock().watchers.retain(|_, tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.inbound_dropped("job_watcher_full");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

/// What the JobsActor is built from, kept by the supervisor to rebuild it.
#[derive(Clone)]
pub(crate) struct JobsSettings {
    pub provider: Arc<dyn Provider>,
    pub timeout: Duration,
    pub shared: Arc<JobsShared>,
    pub metrics: ConnectionMetrics,
}

/// [`JobsSettings`] with the siblings' slots.
#[derive(Clone)]
pub(crate) struct JobsArgs {
    pub settings: JobsSettings,
    pub publisher: PublisherSlot,
    pub subscriber: Slot<Subscriber>,
}
