//! The typed AWS IoT device: a [`Connector`] whose accessors are only what AWS IoT Core
//! gives a thing — telemetry, classic and named shadows, jobs — in the style of the Azure
//! device (`connector_azure::device`): async where a round trip happens,
//! `Serialize`/`DeserializeOwned` for documents.
//!
//! ```no_run
//! # async fn f(opts: connector_aws::AwsOptions) -> Result<(), Box<dyn std::error::Error>> {
//! use connector_aws::device::AwsDevice;
//! use connector_aws::AwsProvider;
//! use futures::StreamExt;
//!
//! let device = AwsDevice::start(AwsProvider::new(opts)?);
//! device.wait_connected(std::time::Duration::from_secs(30)).await?;
//! device.send_telemetry(&serde_json::json!({"temperature": 21.5})).await?;
//! let config = device.shadow(Some("config"));
//! config.report(&serde_json::json!({"interval": 5})).await?;
//! let mut deltas = config.deltas::<serde_json::Value>(16).await?;
//! while let Some(delta) = deltas.next().await {
//!     config.report(&delta?.body).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! [`AwsDevice::connector`] is the erased form.

use std::time::Duration;

use connector_actors::{Connector, ConnectorBuilder, JobsHandle, PublisherHandle, TwinHandle};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::AwsProvider;

pub use connector_actors::device::DeviceError;

/// An AWS IoT thing's connection.
pub struct AwsDevice {
    conn: Connector,
    state: TwinHandle,
    jobs: JobsHandle,
}

impl std::fmt::Debug for AwsDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsDevice").field("state", &self.conn.state()).finish_non_exhaustive()
    }
}

impl AwsDevice {
    /// Starts the connector with the defaults.
    pub fn start(provider: AwsProvider) -> Self {
        Self::start_with(provider, |b| b)
    }

    /// Starts the connector after `configure` adjusted its builder.
    pub fn start_with(
        provider: AwsProvider,
        configure: impl FnOnce(ConnectorBuilder) -> ConnectorBuilder,
    ) -> Self {
        let conn = configure(Connector::builder(provider)).start();
        let state = conn.twin().unwrap_or_else(|| unreachable!("the AWS provider always has shadows"));
        let jobs = conn.jobs().unwrap_or_else(|| unreachable!("the AWS provider always has jobs"));
        Self { conn, state, jobs }
    }

    /// Waits until connected (or `within` passes).
    pub async fn wait_connected(&self, within: Duration) -> Result<(), DeviceError> {
        Ok(self.conn.wait_connected(within).await?)
    }

    /// Sends `body` as JSON telemetry (QoS 1) on the provider's telemetry topic and waits
    /// for the PUBACK.
    pub async fn send_telemetry<T: Serialize + ?Sized>(&self, body: &T) -> Result<(), DeviceError> {
        connector_actors::device::send(
            &self.conn.publisher(),
            connector_actors::device::json_telemetry(body)?,
        )
        .await
    }

    /// The Publisher, for other topics, QoS 0, user properties, expiry.
    pub fn publisher(&self) -> PublisherHandle {
        self.conn.publisher()
    }

    /// A shadow: `None` the classic one, `Some(name)` a named shadow.
    pub fn shadow(&self, name: Option<&str>) -> Shadow {
        Shadow { state: self.state.clone(), name: name.map(str::to_owned) }
    }

    /// Jobs: register handlers per operation, or drive executions yourself.
    pub fn jobs(&self) -> JobsHandle {
        self.jobs.clone()
    }

    /// The erased connector.
    pub fn connector(&self) -> &Connector {
        &self.conn
    }

    /// Disconnects and stops.
    pub async fn stop(&self) {
        self.conn.stop().await;
    }
}

/// A shadow document as the device sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowState<D, R> {
    /// `state.desired`, if the document has one.
    pub desired: Option<D>,
    /// `state.reported`, if the document has one.
    pub reported: Option<R>,
    /// The document's version.
    pub version: Option<u64>,
}

/// A delta: the desired state that differs from the reported one (or, after a reconnect
/// whose version moved, the document's current delta: `catch_up`).
#[derive(Debug, Clone, PartialEq)]
pub struct Delta<D> {
    /// The delta.
    pub body: D,
    /// The document's version after it.
    pub version: Option<u64>,
    /// Whether this is the current delta fetched after a reconnect.
    pub catch_up: bool,
}

/// One shadow of an [`AwsDevice`].
#[derive(Debug, Clone)]
pub struct Shadow {
    state: TwinHandle,
    name: Option<String>,
}

fn typed<T: DeserializeOwned>(v: Option<&Value>) -> Result<Option<T>, serde_json::Error> {
    v.filter(|v| !v.is_null()).map(|v| serde_json::from_value(v.clone())).transpose()
}

impl Shadow {
    /// The shadow's name (`None`: classic).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Fetches the document.
    pub async fn get<D: DeserializeOwned, R: DeserializeOwned>(
        &self,
    ) -> Result<ShadowState<D, R>, DeviceError> {
        let doc = self.state.get_shadow(self.name()).await?;
        let state = doc.body.get("state");
        Ok(ShadowState {
            desired: typed(state.and_then(|s| s.get("desired")))?,
            reported: typed(state.and_then(|s| s.get("reported")))?,
            version: doc.version,
        })
    }

    /// Merges `patch` into `state.reported`; returns the version after it.
    pub async fn report<T: Serialize + ?Sized>(&self, patch: &T) -> Result<Option<u64>, DeviceError> {
        let patch = serde_json::to_value(patch)?;
        Ok(self.state.report_shadow(self.name(), &patch).await?.version)
    }

    /// Merges `desired` and/or `reported` into the document, at `version` when given (a
    /// newer document refuses it with a version conflict).
    pub async fn update<D: Serialize + ?Sized, R: Serialize + ?Sized>(
        &self,
        desired: Option<&D>,
        reported: Option<&R>,
        version: Option<u64>,
    ) -> Result<Option<u64>, DeviceError> {
        let mut state = serde_json::Map::new();
        if let Some(d) = desired {
            state.insert("desired".into(), serde_json::to_value(d)?);
        }
        if let Some(r) = reported {
            state.insert("reported".into(), serde_json::to_value(r)?);
        }
        Ok(self.state.update_shadow(self.name(), &Value::Object(state), version).await?.version)
    }

    /// Deletes the document.
    pub async fn delete(&self) -> Result<(), DeviceError> {
        self.state.delete_shadow(self.name()).await?;
        Ok(())
    }

    /// Deltas from now on, `capacity` buffered (for a named shadow its subscriptions are
    /// made now and kept across reconnects). A delta that does not deserialize into `D` is
    /// an item of its own, [`DeviceError::Json`]: never skipped unseen.
    pub async fn deltas<D: DeserializeOwned + 'static>(
        &self,
        capacity: usize,
    ) -> Result<impl Stream<Item = Result<Delta<D>, DeviceError>> + Unpin, DeviceError> {
        let (_, updates) = self.state.shadow_desired(self.name(), capacity).await?;
        Ok(updates.map(|u| {
            let body = serde_json::from_value(u.body)?;
            Ok(Delta { body, version: u.version, catch_up: u.catch_up })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_and_null_sections_are_none_and_others_typed() {
        assert_eq!(typed::<u8>(None).unwrap(), None);
        assert_eq!(typed::<u8>(Some(&Value::Null)).unwrap(), None);
        assert_eq!(typed::<Value>(Some(&json!({"a": 1}))).unwrap(), Some(json!({"a": 1})));
        assert!(typed::<u8>(Some(&json!("x"))).is_err());
    }
}
