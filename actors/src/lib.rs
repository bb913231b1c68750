//! The actix supervision tree of the cloud connector, over paho-mqtt.
//!
//! | item | what |
//! |---|---|
//! | [`Connector`] | `Connector::builder(provider)…start()`, and the handle to the running tree |
//! | [`ConnectionActor`] | the connection state machine; supervises the children |
//! | [`Publisher`] | outbound: QoS 0/1, acknowledgements, offline queue, on-disk store |
//! | [`Subscriber`] | inbound: subscription table, re-subscription, typed routing |
//! | [`TwinActor`] | device state (Azure twin, AWS shadow): get, report, desired changes, catch-up; AWS named shadows, update, delete, documents |
//! | [`JobsActor`] | device jobs (AWS IoT Jobs): requests, notifications, a handler registry that runs job documents |
//! | [`messages`] | the actix messages |
//! | [`methods`] | direct methods: handlers by name, a default, streams with responders |
//! | [`MetricsServer`] | `/metrics`, `/healthz`, `/readyz` |
//! | [`transport`] | the seam between the actors and the MQTT client library: paho-mqtt, or the native async transport |
//! | [`fleet`] | gateway / fleet mode: many devices sharing a transport, aggregated metrics, connect pacing |
//!
//! ```no_run
//! use connector_actors::Connector;
//! use connector_core::{MqttOptions, MqttProvider, Publish};
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let provider = MqttProvider::new(MqttOptions::new("tcp://127.0.0.1:1883", "device-1"))?;
//!     let conn = Connector::builder(provider).start();
//!     conn.wait_connected(std::time::Duration::from_secs(10)).await?;
//!     conn.publisher().publish(Publish::telemetry(&b"{\"t\":21.5}"[..])).await?;
//!     conn.stop().await;
//!     Ok(())
//! }
//! ```

mod connection;
mod connector;
mod deadline;
pub mod device;
pub mod error;
pub mod fleet;
pub mod jobs;
pub mod messages;
pub mod methods;
mod metrics_exporter;
mod publisher;
mod requests;
mod slots;
mod subscriber;
pub mod supervision;
pub mod transport;
pub mod twin;

pub use connection::{AddListener, ConnectionActor, DropLink, EventSink, GetState, Stop};
pub use connector::{Connector, ConnectorBuilder, PublisherHandle, SubscriberHandle};
pub use error::{ConnectorError, PublishError, SubscribeError};
pub use fleet::{ConnectPacer, Fleet, FleetBuilder};
pub use jobs::{JobError, JobEvent, JobOutcome, JobRun, JobsActor, JobsHandle, JobsOptions};
pub use methods::{MethodCall, MethodError, MethodResponse, MethodsActor, MethodsHandle};
pub use metrics_exporter::{MetricsServer, DEFAULT_METRICS_ADDR};
pub use publisher::{Publisher, PublisherOptions, StallPolicy};
pub use subscriber::Subscriber;
pub use supervision::RestartPolicy;
pub use twin::{TwinActor, TwinError, TwinHandle, TwinRetry};

/// Mailbox capacity of the tree's own actors. Large, so that `send` never defers (a
/// deferred send could reorder publishes); the bounds that matter are the offline queue and
/// the in-flight window. (actix overflows on `usize::MAX`.)
pub(crate) const MAILBOX_CAPACITY: usize = 1 << 20;
