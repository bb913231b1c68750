//! The typed Azure device: a [`Connector`] whose accessors are only what IoT Hub gives a
//! device — telemetry, the twin, direct methods, cloud-to-device messages — in one style
//! (async where a round trip happens, `Serialize`/`DeserializeOwned` for documents).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use connector_azure::device::AzureDevice;
//! use connector_azure::{AzureOptions, AzureProvider};
//! use futures::StreamExt;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Default, Debug)]
//! struct Desired { interval_s: Option<u64> }
//! #[derive(Serialize)]
//! struct Reported { firmware: &'static str }
//!
//! let cs = "HostName=my-hub.azure-devices.net;DeviceId=lamp-1;SharedAccessKey=c2VjcmV0".parse()?;
//! let device = AzureDevice::start(AzureProvider::new(cs, AzureOptions::default())?);
//! device.wait_connected(std::time::Duration::from_secs(30)).await?;
//! device.send_telemetry(&serde_json::json!({"temperature": 21.5})).await?;
//! let twin = device.twin();
//! let doc = twin.get::<Desired, serde_json::Value>().await?;
//! println!("interval {:?} at desired version {:?}", doc.desired.interval_s, doc.desired_version);
//! twin.report(&Reported { firmware: "1.2.0" }).await?;
//! let mut patches = twin.desired_patches::<Desired>(16).await?;
//! while let Some(patch) = patches.next().await {
//!     let patch = patch?; // a patch that does not fit `Desired` is an error, not skipped
//!     println!("desired {:?} → {:?}", patch.version, patch.body.interval_s);
//! }
//! device.stop().await;
//! # Ok(()) }
//! ```
//!
//! [`AzureDevice::connector`] is the erased form (what the agent uses, which picks the
//! cloud at run time).

use std::time::Duration;

use connector_actors::messages::{RouteKey, Sink, Subscribe};
use connector_actors::{Connector, ConnectorBuilder, MethodsHandle, PublisherHandle, TwinHandle};
use connector_core::C2dMessage;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::AzureProvider;

pub use connector_actors::device::DeviceError;

/// An Azure IoT Hub device (or module) connection.
pub struct AzureDevice {
    conn: Connector,
    twin: TwinHandle,
}

impl std::fmt::Debug for AzureDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDevice").field("state", &self.conn.state()).finish_non_exhaustive()
    }
}

impl AzureDevice {
    /// Starts the connector with the defaults.
    pub fn start(provider: AzureProvider) -> Self {
        Self::start_with(provider, |b| b)
    }

    /// Starts the connector after `configure` adjusted its builder (backoff, persistence,
    /// metrics, offline queue, …).
    pub fn start_with(
        provider: AzureProvider,
        configure: impl FnOnce(ConnectorBuilder) -> ConnectorBuilder,
    ) -> Self {
        let conn = configure(Connector::builder(provider)).start();
        let twin = conn.twin().unwrap_or_else(|| unreachable!("the Azure provider always has a twin"));
        Self { conn, twin }
    }

    /// Waits until connected (or `within` passes).
    pub async fn wait_connected(&self, within: Duration) -> Result<(), DeviceError> {
        Ok(self.conn.wait_connected(within).await?)
    }

    /// Sends `body` as JSON telemetry (QoS 1) and waits for the hub's acknowledgement.
    pub async fn send_telemetry<T: Serialize + ?Sized>(&self, body: &T) -> Result<(), DeviceError> {
        let p = connector_actors::device::json_telemetry(body)?.content_type("application/json");
        connector_actors::device::send(&self.conn.publisher(), p).await
    }

    /// The Publisher, for telemetry with properties, QoS 0, expiry or fire-and-forget.
    pub fn publisher(&self) -> PublisherHandle {
        self.conn.publisher()
    }

    /// The device twin.
    pub fn twin(&self) -> AzureTwin {
        AzureTwin { handle: self.twin.clone() }
    }

    /// Direct methods: register handlers (closures, streams or actors).
    pub fn methods(&self) -> MethodsHandle {
        self.conn.methods()
    }

    /// Cloud-to-device messages from now on, `capacity` buffered (a full buffer holds the
    /// next message back, never drops it: at-least-once).
    pub async fn c2d(&self, capacity: usize) -> Result<impl Stream<Item = C2dMessage> + Unpin, DeviceError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let key = RouteKey::Kind(connector_core::InboundKind::C2d);
        self.conn.subscriber().subscribe(Subscribe { key, sink: Sink::Channel(tx) }).await?;
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(stream.filter_map(|m| {
            futures::future::ready(match m {
                connector_core::Inbound::C2d(m) => Some(m),
                _ => None,
            })
        }))
    }

    /// The erased connector (events, state, metrics, everything not cloud-specific).
    pub fn connector(&self) -> &Connector {
        &self.conn
    }

    /// Disconnects and stops.
    pub async fn stop(&self) {
        self.conn.stop().await;
    }
}

/// The twin as the device sees it: typed desired and reported sections and their versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Twin<D, R> {
    /// The desired properties.
    pub desired: D,
    /// The desired section's `$version`.
    pub desired_version: Option<u64>,
    /// The reported properties.
    pub reported: R,
    /// The reported section's `$version`.
    pub reported_version: Option<u64>,
}

/// A desired-properties patch (or, after a reconnect whose version moved, the whole desired
/// section: `catch_up`).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPatch<D> {
    /// The patch.
    pub body: D,
    /// The desired version after it.
    pub version: Option<u64>,
    /// Whether this is the whole desired section fetched after a reconnect.
    pub catch_up: bool,
}

/// The device twin of an [`AzureDevice`].
#[derive(Debug, Clone)]
pub struct AzureTwin {
    handle: TwinHandle,
}

/// A section without its `$version` (and `$metadata`), and that version.
fn section(doc: &Value, name: &str) -> (Value, Option<u64>) {
    let mut s = doc.get(name).cloned().unwrap_or_else(|| Value::Object(Default::default()));
    let version = s.get("$version").and_then(Value::as_u64);
    if let Some(o) = s.as_object_mut() {
        o.remove("$version");
        o.remove("$metadata");
    }
    (s, version)
}

impl AzureTwin {
    /// Fetches the twin.
    pub async fn get<D: DeserializeOwned, R: DeserializeOwned>(&self) -> Result<Twin<D, R>, DeviceError> {
        let doc = self.handle.get().await?;
        let (desired, desired_version) = section(&doc.body, "desired");
        let (reported, reported_version) = section(&doc.body, "reported");
        Ok(Twin {
            desired: serde_json::from_value(desired)?,
            desired_version,
            reported: serde_json::from_value(reported)?,
            reported_version,
        })
    }

    /// Patches the reported properties; returns the reported version the hub answered.
    pub async fn report<T: Serialize + ?Sized>(&self, patch: &T) -> Result<Option<u64>, DeviceError> {
        let patch = serde_json::to_value(patch)?;
        Ok(self.handle.report(&patch).await?.version)
    }

    /// Desired patches from now on, `capacity` buffered. A patch that does not deserialize
    /// into `D` is an item of its own, [`DeviceError::Json`]: never skipped unseen.
    pub async fn desired_patches<D: DeserializeOwned + 'static>(
        &self,
        capacity: usize,
    ) -> Result<impl Stream<Item = Result<DesiredPatch<D>, DeviceError>> + Unpin, DeviceError> {
        let (_, updates) = self.handle.desired(capacity);
        Ok(updates.map(|u| {
            let mut body = u.body;
            if let Some(o) = body.as_object_mut() {
                o.remove("$version");
            }
            let body = serde_json::from_value(body)?;
            Ok(DesiredPatch { body, version: u.version, catch_up: u.catch_up })
        }))
    }

    /// The erased handle (actor messages, recipients).
    pub fn handle(&self) -> &TwinHandle {
        &self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sections_lose_their_version_and_metadata() {
        let doc = json!({"desired": {"a": 1, "$version": 7, "$metadata": {}}, "reported": {"$version": 2}});
        assert_eq!(section(&doc, "desired"), (json!({"a": 1}), Some(7)));
        assert_eq!(section(&doc, "reported"), (json!({}), Some(2)));
        assert_eq!(section(&json!({}), "desired"), (json!({}), None));
    }
}
