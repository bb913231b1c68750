//! What the typed per-cloud devices (`connector_azure::device`, `connector_aws::device`)
//! share: their error type and JSON telemetry. Cloud-neutral: no document shape here.

use serde::Serialize;

use crate::{ConnectorError, JobError, PublishError, PublisherHandle, SubscribeError, TwinError};
use connector_core::{Publish, QoS};

/// What a typed device call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A document did not serialize, or the service's did not deserialize into the type.
    #[error("document: {0}")]
    Json(#[from] serde_json::Error),
    /// The device-state request failed (timeout, refused, throttled past its retries,
    /// stopped).
    #[error(transparent)]
    State(#[from] TwinError),
    /// The jobs request failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The publish failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The subscription failed.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// The connector did not connect or has stopped.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// `body` as a QoS 1 telemetry message (JSON); a provider adds what its cloud carries
/// (Azure: the content type).
pub fn json_telemetry<T: Serialize + ?Sized>(body: &T) -> Result<Publish, DeviceError> {
    Ok(Publish::telemetry(serde_json::to_vec(body)?).qos(QoS::AtLeastOnce))
}

/// Sends `p` and waits for its acknowledgement.
pub async fn send(publisher: &PublisherHandle, p: Publish) -> Result<(), DeviceError> {
    publisher.publish(p).await?;
    Ok(())
}
