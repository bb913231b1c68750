//! Provider-neutral core of the cloud connector. No actix, no sockets: plain data, pure
//! policies and the provider boundary, all unit-tested.
//!
//! | module | what |
//! |---|---|
//! | [`provider`] | the [`Provider`] trait, [`ConnectParams`], the plain [`MqttProvider`] |
//! | [`model`] | [`Publish`], [`InboundMessage`], [`Inbound`], [`ConnectionEvent`] |
//! | [`backoff`] | reconnect backoff with jitter, reset after a stable period |
//! | [`offline`] | the offline queue and its drop policy |
//! | [`correlation`] | request/response correlation with deadlines |
//! | [`rate`] | the token bucket that paces publishes to a service's per-connection rate |
//! | [`topic`] | topic name/filter validation and matching |
//! | [`topic_alias`] | outbound MQTT 5 topic aliases (least recently used) |
//! | [`metrics`] | Prometheus metric families |
//! | [`secret`] | [`Secret`], redacted in `Debug` and `Display` |
//! | [`clock`] | injected time and randomness |
//!
//! ```
//! use connector_core::{MqttOptions, MqttProvider, Provider, Publish};
//! let provider = MqttProvider::new(MqttOptions::new("tcp://127.0.0.1:1883", "device-1"))?;
//! let packet = provider.encode_publish(&Publish::telemetry(&b"{\"t\":21.5}"[..]))?;
//! assert_eq!(packet.topic, "devices/device-1/telemetry");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backoff;
pub mod clock;
pub mod correlation;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod provider;
pub mod rate;
pub mod reconnect;
pub mod secret;
pub mod topic;
pub mod topic_alias;

pub use backoff::{Backoff, BackoffPolicy, Jitter};
pub use clock::{Clock, ManualClock, Random, SeqRandom, SystemClock, ThreadRandom};
pub use correlation::{CorrelationTable, RequestIds};
pub use error::{ConfigError, ProviderError, TopicError};
pub use metrics::{ConnectionMetrics, ConnectorMetrics, GaugeShare};
pub use model::{
    C2dMessage, ConnectFailure, ConnectionEvent, ConnectionState, DesiredPatch, DisconnectReason, Inbound,
    InboundKind, InboundMessage, JobNotification, JobOp, JobResponse, MethodRequest, OutboundPacket,
    ProxyRefusal, Publish, QoS, StateDocuments, StateResponse, Target, TlsRefusal, WireProperties,
};
pub use offline::{DropPolicy, OfflinePolicy, OfflineQueue, PushOutcome, Qos0Offline};
pub use provider::{
    BrokerUri, ConnectParams, DesiredPushes, JobsCodec, Limits, MqttOptions, MqttProvider, MqttVersion,
    PemSource, Provider, Scheme, StateCodec, StateSections, SubscriptionSpec, TlsOptions,
};
pub use secret::Secret;
pub use topic_alias::TopicAliasing;
