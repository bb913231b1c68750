//! Errors of the Azure provider. Every parser returns one of these, never panics, and no
//! message ever contains a key, a token or a signature.

use thiserror::Error;

/// A connection string that cannot be used (`HostName=…;DeviceId=…;SharedAccessKey=…`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// Nothing but whitespace.
    #[error("connection string is empty")]
    Empty,
    /// A `;`-separated segment without `=` (segments count from 0; its text is not shown,
    /// it may be a key).
    #[error("segment {index} is not a `key=value` pair")]
    MalformedPair {
        /// Zero-based index of the segment.
        index: usize,
    },
    /// A key this client does not know (keys are case-sensitive).
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    /// A key given twice.
    #[error("duplicate key `{0}`")]
    DuplicateKey(&'static str),
    /// `Key=` with nothing after it.
    #[error("empty value for `{0}`")]
    EmptyValue(&'static str),
    /// A required key is absent.
    #[error("missing `{0}`")]
    MissingField(&'static str),
    /// Two keys that exclude each other.
    #[error("`{a}` cannot be combined with `{b}`")]
    Conflict {
        /// The first key.
        a: &'static str,
        /// The key it conflicts with.
        b: &'static str,
    },
    /// None of `SharedAccessKey`, `SharedAccessSignature`, `x509=true`.
    #[error("no credential: expected `SharedAccessKey`, `SharedAccessSignature` or `x509=true`")]
    MissingCredential,
    /// A value that is not acceptable for its key.
    #[error("invalid `{key}`: {reason}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// What is wrong (never the value of a secret).
        reason: String,
    },
}

/// SAS token generation or parsing failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SasError {
    /// A shared access key that is not usable.
    #[error("invalid shared access key: {reason}")]
    InvalidKey {
        /// What is wrong (the key itself is never shown).
        reason: &'static str,
    },
    /// An empty resource URI.
    #[error("empty resource URI")]
    EmptyResource,
    /// The token does not start with `SharedAccessSignature `.
    #[error("token does not start with `SharedAccessSignature `")]
    MissingPrefix,
    /// A `&`-separated field without `=`.
    #[error("token field {index} is not a `name=value` pair")]
    MalformedField {
        /// Zero-based index of the field.
        index: usize,
    },
    /// A field other than `sr`, `sig`, `se`, `skn`.
    #[error("unknown token field `{0}`")]
    UnknownField(String),
    /// A field given twice.
    #[error("duplicate token field `{0}`")]
    DuplicateField(&'static str),
    /// A required field (`sr`, `sig`, `se`) is absent.
    #[error("token field `{0}` is missing")]
    MissingField(&'static str),
    /// A field with an empty value.
    #[error("token field `{0}` is empty")]
    EmptyField(&'static str),
    /// A field whose percent-encoding is broken (`%` without two hex digits, not UTF-8).
    #[error("token field `{0}` is not validly percent-encoded")]
    BadEncoding(&'static str),
    /// `se` is not a decimal number of seconds.
    #[error("token expiry `se` is not a decimal number of seconds")]
    InvalidExpiry,
    /// `sig` does not decode to base64.
    #[error("token signature is not base64")]
    InvalidSignature,
    /// The clock reads before 1970, or expiry overflows.
    #[error("cannot compute an expiry from the clock: {reason}")]
    Clock {
        /// What is wrong.
        reason: &'static str,
    },
    /// OpenSSL refused to compute the HMAC.
    #[error("HMAC-SHA256 failed: {reason}")]
    Crypto {
        /// OpenSSL's message.
        reason: String,
    },
}

/// A malformed property bag (`name=value&name&…`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PropertyBagError {
    /// A pair with an empty name (`=v`, `a&&b`, a trailing `&`).
    #[error("property {index} has an empty name")]
    EmptyName {
        /// Zero-based index of the pair.
        index: usize,
    },
    /// A `%` without two hex digits.
    #[error("property {index}: `%` not followed by two hex digits at byte {position}")]
    BadEscape {
        /// Zero-based index of the pair.
        index: usize,
        /// Byte offset of the `%` in the name or value.
        position: usize,
    },
    /// Decoded bytes that are not UTF-8.
    #[error("property {index} does not decode to UTF-8")]
    NotUtf8 {
        /// Zero-based index of the pair.
        index: usize,
    },
    /// A name starting with `$.` that is not a settable system property.
    #[error("`{name}` is a reserved system property name")]
    Reserved {
        /// The name.
        name: String,
    },
}

/// A topic that is not a well-formed IoT Hub device topic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicParseError {
    /// Not a topic of the IoT Hub device protocol.
    #[error("not an IoT Hub device topic")]
    Unknown,
    /// An empty or invalid id, name or status segment.
    #[error("invalid {what}: {reason}")]
    InvalidSegment {
        /// Which segment (`device id`, `method name`, …).
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A query parameter the topic must carry (`$rid`).
    #[error("missing `{0}` parameter")]
    MissingParameter(&'static str),
    /// A query parameter given twice.
    #[error("duplicate `{0}` parameter")]
    DuplicateParameter(&'static str),
    /// A status that is not a decimal number from 0 to 65535.
    #[error("invalid status `{value}`")]
    InvalidStatus {
        /// The text found.
        value: String,
    },
    /// A `$version` that is not a decimal `u64`.
    #[error("invalid `$version` `{value}`")]
    InvalidVersion {
        /// The text found.
        value: String,
    },
    /// The query or property bag is malformed.
    #[error("malformed properties")]
    Properties(#[from] PropertyBagError),
}

/// An X.509 identity that cannot be loaded (shared with the AWS provider).
pub use connector_x509::X509Error;

/// A provider or DPS configuration that cannot work.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AzureError {
    /// The connection string is invalid.
    #[error("invalid connection string")]
    ConnectionString(#[from] ConnectionStringError),
    /// An option has an unusable value.
    #[error("invalid `{field}`: {reason}")]
    Config {
        /// The option.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The X.509 identity cannot be loaded.
    #[error("X.509 identity")]
    X509(#[from] X509Error),
    /// A SAS token cannot be produced.
    #[error("SAS token")]
    Sas(#[from] SasError),
}

/// A DPS message or parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DpsError {
    /// An invalid ID scope or registration id.
    #[error("invalid {what}: {reason}")]
    InvalidId {
        /// `ID scope` or `registration id`.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A topic that is not a DPS response topic.
    #[error("not a DPS response topic")]
    UnknownTopic,
    /// A response topic without `$rid`.
    #[error("missing `{0}` parameter")]
    MissingParameter(&'static str),
    /// A status that is not a number from 0 to 65535.
    #[error("invalid status `{value}`")]
    InvalidStatus {
        /// The text found.
        value: String,
    },
    /// A `retry-after` that is not a decimal number of seconds.
    #[error("invalid `retry-after` `{value}`")]
    InvalidRetryAfter {
        /// The text found.
        value: String,
    },
    /// The topic's query is malformed.
    #[error("malformed response topic query")]
    Query(#[from] PropertyBagError),
    /// The response body is not the expected JSON.
    #[error("invalid response body: {reason}")]
    InvalidBody {
        /// What is wrong.
        reason: String,
    },
    /// `assignedHub` without `deviceId` or the other way round.
    #[error("assignment has `{present}` but no `{missing}`")]
    IncompleteAssignment {
        /// The field present.
        present: &'static str,
        /// The field missing.
        missing: &'static str,
    },
    /// A SAS token cannot be produced.
    #[error("SAS token")]
    Sas(#[from] SasError),
}
