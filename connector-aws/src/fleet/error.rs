//! The typed errors of fleet provisioning's pure parts: topics and answers
//! ([`FleetError`]), keys and CSRs ([`KeyError`]) and the identity store ([`StoreError`]).
//! The client's own error (`ProvisioningError`, feature `runtime`) wraps them.
//!
//! No message carries a private key or an ownership token.

use std::path::PathBuf;

use thiserror::Error;

/// A fleet-provisioning topic or answer that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A topic outside the fleet-provisioning API (or in the CBOR format, which this
    /// client does not speak).
    #[error("not a fleet-provisioning topic: `{topic}`")]
    UnknownTopic {
        /// The topic (at most 128 characters of it).
        topic: String,
    },
    /// A request topic where an answer (`/accepted`, `/rejected`) was expected.
    #[error("`{topic}` is a request topic, not an answer")]
    NotAnAnswer {
        /// The topic.
        topic: String,
    },
    /// A provisioning template name outside `^[0-9A-Za-z_-]{{1,36}}$`.
    #[error("invalid provisioning template name `{name}`: {reason}")]
    InvalidTemplateName {
        /// The name (at most 64 characters of it).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The answer's body is not the JSON document of its API.
    #[error("malformed {api} answer: {reason}")]
    MalformedAnswer {
        /// `CreateKeysAndCertificate`, `CreateCertificateFromCsr` or `RegisterThing`.
        api: &'static str,
        /// What is wrong (a serde message; never the body itself).
        reason: String,
    },
    /// A required field of an answer is absent or empty.
    #[error("{api} answer without `{field}`")]
    MissingField {
        /// The API.
        api: &'static str,
        /// The field.
        field: &'static str,
    },
}

/// A key pair, CSR or certificate that could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// OpenSSL failed to generate a key or sign a CSR.
    #[error("could not {op}: {reason}")]
    Crypto {
        /// What was being done: `generate the key pair`, `build the CSR`, …
        op: &'static str,
        /// OpenSSL's error stack.
        reason: String,
    },
    /// A subject common name OpenSSL refuses (empty, too long, or not UTF-8 text).
    #[error("invalid subject common name: {reason}")]
    InvalidCommonName {
        /// What is wrong.
        reason: String,
    },
    /// PEM text that is not a private key.
    #[error("not a PEM private key")]
    InvalidPrivateKey,
    /// PEM text that is not an X.509 certificate.
    #[error("not a PEM X.509 certificate: {reason}")]
    InvalidCertificate {
        /// OpenSSL's reason.
        reason: String,
    },
}

/// The identity directory could not be read or written, or holds something unusable.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing or creating a file or the directory failed.
    #[error("{op} `{}`", path.display())]
    Io {
        /// `read`, `write`, `create directory`, …
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Some but not all of the identity files exist.
    #[error("incomplete identity in `{}`: `{missing}` is missing", dir.display())]
    Incomplete {
        /// The directory.
        dir: PathBuf,
        /// The missing file.
        missing: &'static str,
    },
    /// A file's contents are not what the store wrote.
    #[error("corrupt identity file `{}`: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's contents).
        reason: String,
    },
    /// A file holding a secret is readable by group or others (Unix).
    #[error("`{}` has mode {mode:o}; it must be 600 (readable by its owner only)", path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}
