//! The handle users hold to the current TwinActor.

use super::*;

/// A handle to the current TwinActor (it survives restarts; watchers registered through it
/// are kept by the supervisor).
#[derive(Clone)]
pub struct TwinHandle {
    pub(crate) slot: Slot<TwinActor>,
    pub(crate) shared: Arc<TwinShared>,
}

impl std::fmt::Debug for TwinHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinHandle").field("last_desired_version", &self.last_desired_version()).finish()
    }
}

impl TwinHandle {
    /// The TwinActor's current address, for actor code. A supervised restart replaces the actor, and
    /// this address with it: keep the handle (it always reaches the current one) and call
    /// this when sending, rather than keeping the address.
    pub fn addr(&self) -> Addr<TwinActor> {
        self.slot.read().clone()
    }

    /// Sends a message to the current TwinActor (`conn.twin()?.send(GetTwin).await??`).
    pub fn send<M>(
        &self,
        msg: M,
    ) -> impl std::future::Future<Output = Result<M::Result, MailboxError>> + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        TwinActor: Handler<M>,
    {
        self.slot.read().send(msg)
    }

    /// What the provider's desired pushes carry (patches or deltas), `None` without device
    /// state.
    pub fn desired_pushes(&self) -> Option<connector_core::DesiredPushes> {
        self.shared.pushes
    }

    /// Fetches the whole document.
    pub async fn get(&self) -> Result<TwinDocument, TwinError> {
        self.send(GetTwin).await?
    }

    /// Patches the reported state with a JSON object.
    pub async fn report(&self, patch: &Value) -> Result<Reported, TwinError> {
        self.send(ReportState::json(patch)).await?
    }

    /// Patches the reported state with raw bytes (checked to be JSON first).
    pub async fn report_bytes(&self, patch: impl Into<Bytes>) -> Result<Reported, TwinError> {
        self.send(ReportState(patch.into())).await?
    }

    /// Desired changes from now on as a stream with `capacity` slots (when it is full,
    /// further updates are dropped and counted). Registered at once, so the catch-up of the
    /// next connection reaches it.
    pub fn desired(&self, capacity: usize) -> (WatchId, impl Stream<Item = DesiredUpdate> + Unpin) {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        let id = self.shared.watch(None, DesiredSink::Channel(tx));
        (id, futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// Desired changes to an actor.
    pub fn watch(&self, recipient: Recipient<DesiredChanged>) -> WatchId {
        self.shared.watch(None, DesiredSink::Recipient(recipient))
    }

    /// Fetches a document (`None`: the classic one; `Some(name)`: an AWS named shadow).
    pub async fn get_shadow(&self, shadow: Option<&str>) -> Result<TwinDocument, TwinError> {
        self.send(GetShadow { shadow: shadow.map(str::to_owned) }).await?
    }

    /// Patches a document's reported state.
    pub async fn report_shadow(&self, shadow: Option<&str>, patch: &Value) -> Result<Reported, TwinError> {
        let patch = Bytes::from(patch.to_string());
        self.send(ReportShadow { shadow: shadow.map(str::to_owned), patch }).await?
    }

    /// Updates a document with a `{"desired":…,"reported":…}` state, at `version` if given.
    pub async fn update_shadow(
        &self,
        shadow: Option<&str>,
        state: &Value,
        version: Option<u64>,
    ) -> Result<Reported, TwinError> {
        let state = Bytes::from(state.to_string());
        self.send(UpdateShadow { shadow: shadow.map(str::to_owned), state, version }).await?
    }

    /// Deletes a document.
    pub async fn delete_shadow(&self, shadow: Option<&str>) -> Result<Reported, TwinError> {
        self.send(DeleteShadow { shadow: shadow.map(str::to_owned) }).await?
    }

    /// Desired changes (AWS deltas) of one document as a stream. For a named shadow its
    /// subscriptions are made once and kept, and every (re)connection catches up on it.
    pub async fn shadow_desired(
        &self,
        shadow: Option<&str>,
        capacity: usize,
    ) -> Result<(WatchId, impl Stream<Item = DesiredUpdate> + Unpin), TwinError> {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        let id = self
            .send(WatchShadow { shadow: shadow.map(str::to_owned), sink: DesiredSink::Channel(tx) })
            .await?;
        Ok((id, futures::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }

    /// The previous and current documents after every accepted update (AWS
    /// `update/documents`) of the documents in use, as a stream.
    pub fn documents(&self, capacity: usize) -> (WatchId, impl Stream<Item = StateDocuments> + Unpin) {
        let (tx, mut rx) = mpsc::channel(capacity.max(1));
        let id = self.shared.watch_documents(tx);
        (id, futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// Stops a watcher; `false` if the id was unknown.
    pub fn unwatch(&self, id: WatchId) -> bool {
        self.shared.unwatch(id)
    }

    /// The newest desired version delivered to watchers so far (of the classic document).
    pub fn last_desired_version(&self) -> Option<u64> {
        self.shared.inner.lock().last(&None)
    }

    /// The newest desired version seen of a document.
    pub fn shadow_version(&self, shadow: Option<&str>) -> Option<u64> {
        self.shared.inner.lock().last(&shadow.map(str::to_owned))
    }
}
