//! Trusting a handler: only root and the agent's effective user may be able to change the
//! file or any directory above it, and what runs is the very file that was checked.
//!
//! The file is opened (`O_RDONLY | O_NOFOLLOW | O_NONBLOCK`, close-on-exec), the open
//! descriptor is checked with `fstat` (regular file, an execute bit, not group- or
//! other-writable, owned by root or the agent's user), and the child executes that
//! descriptor through `/proc/self/fd/N`: a rename or replacement of the path after the
//! check changes nothing. For the child to find the descriptor (an ELF binary is opened
//! by the kernel through it; a `#!` script's interpreter opens `/proc/self/fd/N` itself),
//! an inheritable duplicate (`dup(2)`, without `FD_CLOEXEC`) exists only while the child
//! is spawned and is closed in the agent right after. The handler keeps that read-only
//! descriptor of its own file; a script sees `/proc/self/fd/N` as `$0`.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::{Distrust, HandlerError};

/// Permission bits that let the group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;

/// Whether root or `euid` owns it and nobody else may write it.
fn trusted(meta: &Metadata, euid: u32) -> Result<(), Distrust> {
    let uid = meta.uid();
    if uid != 0 && uid != euid {
        return Err(Distrust::Owner { uid });
    }
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OTHER_WRITE != 0 {
        return Err(Distrust::Writable { mode });
    }
    Ok(())
}

/// Why a directory chain was refused.
pub(super) enum DirRefusal {
    /// This directory is not trusted.
    Untrusted(PathBuf, Distrust),
    /// It could not be inspected.
    Io(io::Error),
}

/// Checks `dir` and every directory above it, up to `/`, without following symlinks
/// (`dir` is canonical). Returns the first offending directory and why.
pub(super) fn check_dirs(dir: &Path, euid: u32) -> Result<(), DirRefusal> {
    for d in dir.ancestors() {
        let meta = std::fs::symlink_metadata(d).map_err(DirRefusal::Io)?;
        if !meta.is_dir() {
            return Err(DirRefusal::Untrusted(d.to_owned(), Distrust::NotADirectory));
        }
        trusted(&meta, euid).map_err(|r| DirRefusal::Untrusted(d.to_owned(), r))?;
    }
    Ok(())
}

/// A handler file opened and checked through its descriptor, ready to run.
#[derive(Debug)]
pub struct CheckedHandler {
    name: String,
    path: PathBuf,
    file: File,
}

impl CheckedHandler {
    /// Opens `path` (canonical, inside the handler directory) for handler `name` and checks
    /// the open file: see the module docs. `euid` is the agent's effective uid.
    pub(super) fn open(name: &str, path: &Path, euid: u32) -> Result<Self, HandlerError> {
        let spawn_err = |source| HandlerError::Spawn { name: name.into(), source };
        let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
        let file = std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path).map_err(
            |e| match e.raw_os_error() {
                // A symlink swapped in after the path was resolved.
                Some(code) if code == nix::errno::Errno::ELOOP as i32 => {
                    HandlerError::NotRegularFile { name: name.into() }
                }
                Some(code) if code == nix::errno::Errno::ENOENT as i32 => {
                    HandlerError::NotFound { name: name.into() }
                }
                _ => spawn_err(e),
            },
        )?;
        let meta = file.metadata().map_err(spawn_err)?;
        check_file(name, path, &meta, euid)?;
        Ok(Self { name: name.into(), path: path.to_owned(), file })
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path it was opened at (what runs is the open file, whatever the path holds now).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command executing the open file, and the inheritable duplicate of its descriptor
    /// that must stay open until the child is spawned (then drop it).
    pub(super) fn command(&self) -> io::Result<(tokio::process::Command, OwnedFd)> {
        let inheritable = nix::unistd::dup(&self.file).map_err(io::Error::from)?;
        let mut cmd = tokio::process::Command::new(format!("/proc/self/fd/{}", inheritable.as_raw_fd()));
        cmd.arg0(&self.name);
        Ok((cmd, inheritable))
    }
}

/// The checks of a handler file's metadata, in the order of the module docs.
pub(super) fn check_file(name: &str, path: &Path, meta: &Metadata, euid: u32) -> Result<(), HandlerError> {
    if !meta.is_file() {
        return Err(HandlerError::NotRegularFile { name: name.into() });
    }
    let mode = meta.mode();
    if mode & 0o111 == 0 {
        return Err(HandlerError::NotExecutable { name: name.into() });
    }
    if mode & GROUP_OTHER_WRITE != 0 {
        return Err(HandlerError::UnsafePermissions { name: name.into() });
    }
    trusted(meta, euid).map_err(|reason| HandlerError::Untrusted {
        name: name.into(),
        path: path.to_owned(),
        reason,
    })
}
