//! Errors of the actors.

use std::time::Duration;

use connector_core::{ConfigError, ProviderError};
use thiserror::Error;

use crate::transport::TransportError;

/// Why a publish did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The provider refused to map it (bad topic, too large, unsupported property).
    #[error("invalid message")]
    Invalid(#[from] ProviderError),
    /// Not connected, and the policy fails QoS 0 while offline.
    #[error("not connected")]
    NotConnected,
    /// The offline queue is full and the policy refuses the newest message.
    #[error("offline queue full ({capacity} messages)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The message does not fit under the byte cap on accepted, unacknowledged messages
    /// ([`connector_core::OfflinePolicy::max_bytes`]): the policy refuses the newest, or
    /// evicting every queued message would not make room (messages in flight fill the cap,
    /// or the message alone is larger than it).
    #[error("store full ({size} more bytes would exceed the cap of {max_bytes})")]
    StoreFull {
        /// The refused message's size (topic + payload bytes).
        size: usize,
        /// The byte cap.
        max_bytes: usize,
    },
    /// Evicted from the offline queue by a newer message (drop-oldest policy, at the
    /// queue's capacity or its byte cap).
    #[error("dropped from the offline queue by a newer message")]
    Dropped,
    /// The caller's wait ([`connector_core::Publish::timeout`]) ended before the outcome.
    /// The message is still accepted and is delivered at least once, unless the caller
    /// cancels it ([`crate::PublisherHandle::cancel`] with `id`) or its expiry removes it.
    #[error("no outcome within {after:?}; message {id:?} stays queued")]
    Timeout {
        /// The wait that ended.
        after: Duration,
        /// The message, to cancel it with.
        id: crate::messages::MessageId,
    },
    /// The message's expiry ([`connector_core::Publish::expire_after`], or the Publisher's
    /// default expiry) passed before it was acknowledged: it was removed.
    #[error("expired after {after:?} without an acknowledgement")]
    Expired {
        /// The expiry that passed.
        after: Duration,
    },
    /// Removed at its caller's request ([`crate::PublisherHandle::cancel`]).
    #[error("cancelled")]
    Cancelled,
    /// The transport failed the publish for good.
    #[error("transport failure")]
    Transport(#[source] TransportError),
    /// Writing to the on-disk store failed, so the message was not accepted.
    #[error("persistence failure: {0}")]
    Persistence(String),
    /// The connection was stopped before the message completed.
    #[error("connection stopped")]
    Stopped,
    /// The Publisher actor is gone (restarting or stopped).
    #[error("publisher unavailable")]
    Unavailable(#[from] actix::MailboxError),
}

impl PublishError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PublishError::Invalid(_) => "invalid",
            PublishError::NotConnected => "not_connected",
            PublishError::QueueFull { .. } => "rejected",
            PublishError::StoreFull { .. } => "store_full",
            PublishError::Dropped => "dropped",
            PublishError::Timeout { .. } => "timeout",
            PublishError::Expired { .. } => "expired",
            PublishError::Cancelled => "cancelled",
            PublishError::Transport(_) => "failed",
            PublishError::Persistence(_) => "persistence",
            PublishError::Stopped => "stopped",
            PublishError::Unavailable(_) => "unavailable",
        }
    }
}

/// Why a subscription failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The filter is not a valid MQTT topic filter.
    #[error("invalid topic filter")]
    InvalidFilter(#[from] connector_core::TopicError),
    /// The broker refused the filter in its SUBACK.
    #[error("subscription to `{filter}` refused by the broker")]
    Refused {
        /// The filter.
        filter: String,
    },
    /// The transport failed.
    #[error("transport failure")]
    Transport(#[source] TransportError),
    /// No SUBACK/UNSUBACK in time.
    #[error("no acknowledgement after {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The Subscriber actor is gone.
    #[error("subscriber unavailable")]
    Unavailable(#[from] actix::MailboxError),
}

/// Errors of the connector as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// Not connected within the time allowed.
    #[error("not connected after {after:?}")]
    ConnectTimeout {
        /// The time allowed.
        after: Duration,
    },
    /// The connection was stopped.
    #[error("connection stopped")]
    Stopped,
    /// Bad configuration.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// I/O (metrics listener, persistence directory).
    #[error("i/o: {0}")]
    Io(String),
}
