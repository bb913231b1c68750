//! Errors of the emulator's lifecycle and of its control client.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Boxed source error (keeps openssl and hyper types out of public signatures).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failure to start or stop the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A listener could not be bound.
    #[error("cannot bind the {what} listener on {addr}")]
    Bind {
        /// Which listener (`mqtt`, `mqtt-plain`, `control`).
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory could not be read or written.
    #[error("state directory {path}")]
    StateDir {
        /// The file or directory concerned.
        path: PathBuf,
        /// The file-system error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate authority or the TLS context could not be created or loaded.
    #[error("certificate authority: {op}")]
    Tls {
        /// What was being done.
        op: &'static str,
        /// The underlying (openssl) error.
        #[source]
        source: BoxError,
    },
    /// A persisted registry file is not valid.
    #[error("registry file {path} is invalid")]
    Registry {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The runtime thread could not be started or died during start-up.
    #[error("emulator runtime: {reason}")]
    Runtime {
        /// What went wrong.
        reason: String,
    },
    /// A configuration value is not acceptable.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl EmulatorError {
    pub(crate) fn tls(op: &'static str, source: impl Into<BoxError>) -> Self {
        EmulatorError::Tls { op, source: source.into() }
    }
}

/// Failure of a [`ControlClient`](crate::ControlClient) request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The control URL is not `http://host:port`.
    #[error("invalid control url {url:?}")]
    Url {
        /// The URL given.
        url: String,
    },
    /// The connection to the control API failed.
    #[error("control API connection")]
    Connect(#[source] BoxError),
    /// The control API answered with an error status.
    #[error("control API answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Emulator error code (HTTP status × 1000 + detail), when the body had one.
        error_code: Option<u64>,
        /// Error message from the body.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("control API answer is not valid JSON")]
    Decode(#[source] serde_json::Error),
}

impl ControlError {
    /// HTTP status of a [`ControlError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ControlError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
