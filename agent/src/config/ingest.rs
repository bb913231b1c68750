//! The `[ingest]` section: the socket path (checked up front, so the agent does not die at
//! start on it) and the connection limits.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use super::ctx::Ctx;
use super::raw::RawIngest;
use super::{ConfigError, IngestSettings};

pub(super) fn ingest(raw: RawIngest, state_dir: &Path, ctx: &Ctx) -> Result<IngestSettings, ConfigError> {
    let ingest = IngestSettings {
        enabled: raw.enabled.unwrap_or(true),
        socket: raw.socket.unwrap_or_else(|| state_dir.join("ingest.sock")),
        batch_max_messages: raw.batch_max_messages.unwrap_or(100),
        batch_max_bytes: raw.batch_max_bytes.unwrap_or(64 * 1024),
        batch_max_delay: raw.batch_max_delay.map_or(Duration::from_secs(1), |d| d.0),
        idle_timeout: raw.idle_timeout.map_or(crate::ingest::DEFAULT_IDLE_TIMEOUT, |d| d.0),
        partial_line_timeout: raw
            .partial_line_timeout
            .map_or(crate::ingest::DEFAULT_PARTIAL_LINE_TIMEOUT, |d| d.0),
    };
    for (key, d) in [
        ("ingest.idle_timeout", ingest.idle_timeout),
        ("ingest.partial_line_timeout", ingest.partial_line_timeout),
    ] {
        if d < Duration::from_millis(100) {
            return Err(ctx.invalid(key, "must be at least 100ms"));
        }
    }
    if ingest.batch_max_messages == 0 {
        return Err(ctx.invalid("ingest.batch_max_messages", "must be at least 1"));
    }
    if ingest.batch_max_bytes < 64 {
        return Err(ctx.invalid("ingest.batch_max_bytes", "must be at least 64"));
    }
    if ingest.enabled {
        check_socket_path(&ingest.socket, state_dir, ctx)?;
    }
    Ok(ingest)
}

/// The socket must be creatable: at most 107 bytes (`sun_path` holds 108 with its NUL), not
/// an existing non-socket (a live or stale socket is the server's to judge), in an existing
/// directory (the state directory, which the agent creates, excepted).
fn check_socket_path(socket: &Path, state_dir: &Path, ctx: &Ctx) -> Result<(), ConfigError> {
    const KEY: &str = "ingest.socket";
    if socket.as_os_str().len() > 107 {
        return Err(ctx.invalid(KEY, "a Unix socket path must be at most 107 bytes"));
    }
    let shown = socket.display();
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => return Ok(()),
        Ok(m) => {
            let what = if m.is_dir() { "a directory" } else { "not a socket" };
            return Err(ctx.invalid(KEY, format!("{shown} exists and is {what}")));
        }
        // Nothing there, or a file where a directory should be (reported below).
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {}
        Err(e) => return Err(ctx.invalid(KEY, format!("cannot inspect {shown}: {e}"))),
    }
    let parent = match socket.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if parent == state_dir {
        return Ok(());
    }
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ctx.invalid(KEY, format!("{} is not a directory", parent.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(ctx.invalid(KEY, format!("directory {} does not exist", parent.display())))
        }
        Err(e) => Err(ctx.invalid(KEY, format!("cannot inspect {}: {e}", parent.display()))),
    }
}
