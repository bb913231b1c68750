//! Errors of the provider-neutral core.

use thiserror::Error;

/// A topic name or filter that MQTT would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is the empty string.
    #[error("topic is empty")]
    Empty,
    /// Longer than the wire format or the provider allows.
    #[error("topic is {len} bytes, over the limit of {limit}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// More levels than the provider allows.
    #[error("topic has {levels} levels, over the limit of {limit}")]
    TooDeep {
        /// Its number of `/`-separated levels.
        levels: usize,
        /// The limit.
        limit: usize,
    },
    /// A `+` or `#` in a topic name (only filters may hold wildcards).
    #[error("wildcard in a topic name at byte {position}")]
    WildcardInName {
        /// Byte offset of the wildcard.
        position: usize,
    },
    /// `#` not alone in the last level.
    #[error("`#` must be the whole last level (level {level})")]
    MisplacedMultiLevelWildcard {
        /// Zero-based level index.
        level: usize,
    },
    /// `+` not alone in its level.
    #[error("`+` must be a whole level (level {level})")]
    MisplacedSingleLevelWildcard {
        /// Zero-based level index.
        level: usize,
    },
    /// A NUL character.
    #[error("NUL character at byte {position}")]
    NulCharacter {
        /// Byte offset.
        position: usize,
    },
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A broker URI that does not parse.
    #[error("invalid broker URI `{uri}`: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field with an unusable value.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The option's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Errors a provider returns while mapping messages or computing connect parameters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The topic would be refused.
    #[error("invalid topic")]
    Topic(#[from] TopicError),
    /// The payload is larger than the provider accepts.
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    PayloadTooLarge {
        /// Payload size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A configuration error.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// Credentials could not be produced (expired, unreadable, malformed).
    #[error("credentials unavailable: {reason}")]
    Credentials {
        /// What went wrong, with no secret in it.
        reason: String,
    },
    /// A feature this provider or protocol version does not offer.
    #[error("not supported: {what}")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
}
