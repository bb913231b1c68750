//! Errors of the AWS provider. Every parser returns one of these, never panics, and no
//! message ever contains a secret access key, session token, signature, private key or
//! authorizer token.

use std::path::PathBuf;

use connector_core::{ConfigError, ProviderError};
use thiserror::Error;

/// Options, credentials or certificates that cannot make a working [`AwsProvider`](crate::AwsProvider).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AwsError {
    /// An option with an unusable value.
    #[error("invalid `{field}`: {reason}")]
    Config {
        /// The option's name.
        field: &'static str,
        /// What is wrong with it (never a secret).
        reason: String,
    },
    /// SigV4 credentials could not be found or read.
    #[error("AWS credentials")]
    Credentials(#[from] CredentialsError),
    /// The client certificate or its key cannot be used.
    #[error("client certificate")]
    Certificate(#[from] CertificateError),
    /// A presigned URL could not be computed.
    #[error("SigV4 signing")]
    SigV4(#[from] SigV4Error),
}

impl AwsError {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        AwsError::Config { field, reason: reason.into() }
    }
}

/// The causes of an error as one line (`outer: inner: …`), for places that only carry text.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl From<AwsError> for ProviderError {
    fn from(e: AwsError) -> Self {
        match e {
            AwsError::Config { field, reason } => {
                ProviderError::Config(ConfigError::Invalid { field, reason })
            }
            other => ProviderError::Credentials { reason: chain(&other) },
        }
    }
}

/// Where SigV4 credentials come from, and what went wrong there.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// An environment variable the source needs is not set (or empty).
    #[error("environment variable {name} is not set")]
    MissingVariable {
        /// The variable.
        name: &'static str,
    },
    /// No home directory to find `~/.aws/credentials` in.
    #[error("no home directory for ~/.aws/credentials (set AWS_SHARED_CREDENTIALS_FILE)")]
    NoHome,
    /// The shared credentials file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The profile is not in the file.
    #[error("profile `{profile}` not found in the shared credentials file")]
    ProfileNotFound {
        /// The profile.
        profile: String,
    },
    /// The profile lacks a key.
    #[error("profile `{profile}` has no `{key}`")]
    MissingKey {
        /// The profile.
        profile: String,
        /// The key (`aws_access_key_id`, `aws_secret_access_key`).
        key: &'static str,
    },
    /// A line of the file that is neither a section, a `key = value` pair nor a comment
    /// (1-based line number; its text is not shown, it may hold a key).
    #[error("line {line} of the shared credentials file is malformed")]
    Malformed {
        /// The line number.
        line: usize,
    },
    /// An access key id that AWS would not issue.
    #[error("invalid access key id: {reason}")]
    InvalidAccessKeyId {
        /// What is wrong.
        reason: &'static str,
    },
}

/// A client certificate or private key that cannot be used (shared with the Azure provider).
pub use connector_x509::X509Error as CertificateError;

/// A presigned URL that cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// An input with an unusable value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The input.
        field: &'static str,
        /// What is wrong (never a secret).
        reason: &'static str,
    },
    /// The signing time is before 1970 or after 9999.
    #[error("signing time out of range")]
    Time,
    /// OpenSSL refused to compute a digest or an HMAC.
    #[error("crypto: {reason}")]
    Crypto {
        /// OpenSSL's message.
        reason: String,
    },
}

/// A topic that is not a well-formed AWS IoT shadow or jobs device topic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicParseError {
    /// Not under `$aws/things/{thing}/shadow` or `$aws/things/{thing}/jobs`.
    #[error("not an AWS IoT shadow or jobs topic")]
    Unknown,
    /// A thing, shadow or job name that breaks the service's rules.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        /// `thing name`, `shadow name`, `job id`.
        what: &'static str,
        /// The rule.
        reason: &'static str,
    },
    /// Under the shadow or jobs prefix but no operation the service has.
    #[error("unknown {service} operation")]
    UnknownOperation {
        /// `shadow` or `jobs`.
        service: &'static str,
    },
    /// A combination the service never uses (`get/delta`, a reply filter on a request).
    #[error("{0}")]
    Invalid(&'static str),
}

/// A shadow document (accepted, rejected, delta, documents) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShadowDocumentError {
    /// Not UTF-8 JSON, or not an object.
    #[error("malformed shadow document: {reason}")]
    Malformed {
        /// serde's message.
        reason: String,
    },
    /// A field with the wrong type or value.
    #[error("invalid shadow document field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// The rule.
        reason: &'static str,
    },
}

/// A request this client refuses to send, before it reaches the service.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request id cannot be a `clientToken` (1–64 bytes).
    #[error("invalid request id: {reason}")]
    RequestId {
        /// The rule.
        reason: &'static str,
    },
    /// A body that is not what the operation takes.
    #[error("invalid {what}: {reason}")]
    Body {
        /// What was given.
        what: &'static str,
        /// The rule.
        reason: String,
    },
}

impl From<RequestError> for ProviderError {
    fn from(e: RequestError) -> Self {
        let field = match &e {
            RequestError::RequestId { .. } => "request_id",
            RequestError::Body { what, .. } => what,
        };
        ProviderError::Config(ConfigError::Invalid { field, reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_into_provider_errors_with_their_causes() {
        let e: ProviderError = AwsError::config("port", "zero").into();
        assert_eq!(e, ProviderError::Config(ConfigError::Invalid { field: "port", reason: "zero".into() }));
        let e: ProviderError =
            AwsError::from(CredentialsError::MissingVariable { name: "AWS_ACCESS_KEY_ID" }).into();
        assert_eq!(
            e,
            ProviderError::Credentials {
                reason: "AWS credentials: environment variable AWS_ACCESS_KEY_ID is not set".into()
            }
        );
        let e: ProviderError = RequestError::RequestId { reason: "empty" }.into();
        assert!(matches!(e, ProviderError::Config(ConfigError::Invalid { field: "request_id", .. })));
    }
}
