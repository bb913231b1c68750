//! Why a handler was refused or could not run, and how that maps to method and job statuses.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use connector_core::jobs::JobStatus;
use thiserror::Error;

/// Why a file or directory on a handler's path is not trusted: someone other than root and
/// the agent's effective user could change what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Distrust {
    /// Owned by this uid, which is neither root nor the agent's effective user.
    Owner {
        /// The owner.
        uid: u32,
    },
    /// Writable by its group or by others (a sticky bit does not help: such a directory,
    /// like `/tmp`, is refused too).
    Writable {
        /// The permission bits (with set-id and sticky bits).
        mode: u32,
    },
    /// A path component above the handler is not a directory (a symlink swapped in).
    NotADirectory,
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distrust::Owner { uid } => {
                write!(f, "is owned by uid {uid}, neither root nor the agent's user")
            }
            Distrust::Writable { mode } => write!(f, "is writable by group or others (mode {mode:04o})"),
            Distrust::NotADirectory => f.write_str("is not a directory"),
        }
    }
}

/// Why a handler was refused or could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The handler directory cannot be used.
    #[error("handler directory {path} is unusable: {reason}")]
    Directory {
        /// The configured directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The handler directory, or a directory above it, could be changed by another user.
    #[error("handler directory is not trusted: {} {reason}", path.display())]
    UntrustedDirectory {
        /// The offending directory (the handler directory or one above it).
        path: PathBuf,
        /// Why.
        reason: Distrust,
    },
    /// The name has characters outside `[A-Za-z0-9._-]`, starts with `.`, or is too long.
    #[error("invalid handler name {name:?}")]
    InvalidName {
        /// The name (at most 64 characters of it).
        name: String,
    },
    /// The name is not in the allow-list.
    #[error("handler {name:?} is not allow-listed")]
    NotAllowed {
        /// The name.
        name: String,
    },
    /// No such file in the handler directory.
    #[error("handler {name:?} not found")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A symlink that leads outside the handler directory.
    #[error("handler {name:?} resolves outside the handler directory")]
    OutsideDir {
        /// The name.
        name: String,
    },
    /// Not a regular file.
    #[error("handler {name:?} is not a regular file")]
    NotRegularFile {
        /// The name.
        name: String,
    },
    /// No execute permission bit.
    #[error("handler {name:?} is not executable")]
    NotExecutable {
        /// The name.
        name: String,
    },
    /// Writable by group or others.
    #[error("handler {name:?} is writable by group or others")]
    UnsafePermissions {
        /// The name.
        name: String,
    },
    /// The handler file, or a directory on its path, could be changed by a user other
    /// than root and the agent's effective user.
    #[error("handler {name:?} is not trusted: {} {reason}", path.display())]
    Untrusted {
        /// The name.
        name: String,
        /// The offending file or directory.
        path: PathBuf,
        /// Why.
        reason: Distrust,
    },
    /// The method payload or job document does not give usable arguments.
    #[error("bad handler arguments: {reason}")]
    BadArguments {
        /// What is wrong.
        reason: String,
    },
    /// `run_as` is set but the agent is not root.
    #[error("running handlers as user {user:?} needs the agent to run as root")]
    RunAsNeedsRoot {
        /// The configured user.
        user: String,
    },
    /// `run_as` names no user.
    #[error("run-as user {user:?} does not exist")]
    UnknownUser {
        /// The configured user.
        user: String,
    },
    /// Starting or waiting for the process failed.
    #[error("handler {name:?} could not run")]
    Spawn {
        /// The name.
        name: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl HandlerError {
    /// The direct-method status for this refusal or failure (see the module's table).
    pub fn method_status(&self) -> u16 {
        match self {
            HandlerError::NotFound { .. } => 404,
            HandlerError::BadArguments { .. } => 400,
            HandlerError::InvalidName { .. }
            | HandlerError::NotAllowed { .. }
            | HandlerError::OutsideDir { .. }
            | HandlerError::NotRegularFile { .. }
            | HandlerError::NotExecutable { .. }
            | HandlerError::UnsafePermissions { .. }
            | HandlerError::Untrusted { .. } => 403,
            HandlerError::Directory { .. }
            | HandlerError::UntrustedDirectory { .. }
            | HandlerError::RunAsNeedsRoot { .. }
            | HandlerError::UnknownUser { .. }
            | HandlerError::Spawn { .. } => 500,
        }
    }

    /// The job status: `REJECTED` when the device refuses the job, `FAILED` when it could
    /// not run it.
    pub fn job_status(&self) -> JobStatus {
        match self.method_status() {
            500 => JobStatus::Failed,
            _ => JobStatus::Rejected,
        }
    }

    /// The file or directory a trust refusal is about.
    pub fn path(&self) -> Option<&Path> {
        match self {
            HandlerError::Untrusted { path, .. }
            | HandlerError::UntrustedDirectory { path, .. }
            | HandlerError::Directory { path, .. } => Some(path),
            _ => None,
        }
    }
}
