//! State sync between the cloud's device state (Azure twin, AWS shadow) and two local JSON
//! files shared with the device software.
//!
//! - **Desired → file** ([`DesiredMirror`]): each desired update is applied to the mirrored
//!   document and the whole document is written to the desired file atomically (a temporary
//!   file in the same directory, `fsync`, permissions set, `rename`, directory `fsync`), so a
//!   reader never sees a half-written file. Patches use JSON merge-patch semantics (RFC 7386,
//!   [`merge_patch`]): a `null` value deletes the key, an object merges key by key into an
//!   object (recursively), anything else (scalars, arrays) replaces the old value. A full
//!   desired document (the catch-up after a reconnect) replaces the mirror
//!   ([`DesiredMirror::replace`]). Keys starting with `$` (`$version`, `$metadata`) are cloud
//!   bookkeeping: pass documents through [`without_metadata`] if the file should not show
//!   them.
//! - **File → reported** ([`ReportedWatcher`]): the device software writes the reported
//!   file (ideally atomically too); the watcher polls it on an interval, reading and hashing
//!   its content (timestamps are not trusted: some file systems keep them to the second),
//!   parses it, diffs it against the last reported document and yields a merge patch with
//!   only the changed keys and `null` for removed ones ([`diff`]). `null` values in the file
//!   mean "absent". A missing file yields nothing. A malformed file (bad JSON, not an object,
//!   larger than [`MAX_STATE_BYTES`]) is a typed [`StateError`], logged once; the last good
//!   document is kept and the watcher recovers when the file is fixed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), connector_agent::state_sync::StateError> {
//! use connector_agent::state_sync::{DesiredMirror, ReportedWatcher};
//! use std::time::Duration;
//! let mut desired = DesiredMirror::open("/var/lib/agent/desired.json", 0o644)?;
//! desired.apply_patch(&serde_json::json!({"fan": {"speed": 3}, "led": null}))?;
//! let mut patches = ReportedWatcher::new("/var/lib/agent/reported.json").spawn(Duration::from_secs(2), 8);
//! while let Some(patch) = patches.recv().await {
//!     // twin.report(&patch) / shadow reported update
//!     let _ = patch;
//! }
//! # Ok(()) }
//! ```

use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;
use tokio::sync::mpsc;

/// Largest state file read, in bytes.
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// Why a state file could not be read, parsed or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading the file failed.
    #[error("cannot read state file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing (temporary file, permissions, rename) failed.
    #[error("cannot write state file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The content is not valid JSON.
    #[error("state file {path} is not valid JSON: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_json's description, with line and column.
        detail: String,
    },
    /// The JSON is valid but not an object.
    #[error("state file {path} does not hold a JSON object")]
    NotAnObject {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_STATE_BYTES`].
    #[error("state file {path} is too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// Applies `patch` to `target` with JSON merge-patch semantics (RFC 7386): an object patch
/// merges into an object target key by key (a `null` value removes the key), any other
/// patch replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge patch that turns `old` into `new`, or `None` when they are equal: for two
/// objects, the keys whose values differ (recursing into objects on both sides), plus
/// `null` for keys that `new` lacks; otherwise `new` itself. `null` values inside `new`
/// count as absent.
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                if nv.is_null() {
                    continue;
                }
                match o.get(k) {
                    Some(ov) if !ov.is_null() => {
                        if let Some(d) = diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    _ => {
                        patch.insert(k.clone(), without_nulls(nv));
                    }
                }
            }
            for (k, ov) in o {
                if !ov.is_null() && n.get(k).is_none_or(Value::is_null) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ if old == new => None,
        _ => Some(without_nulls(new)),
    }
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        other => other.clone(),
    }
}

/// A copy of `v` without object keys that start with `$` (at any depth), such as Azure's
/// `$version` and `$metadata`.
pub fn without_metadata(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_metadata(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_metadata).collect()),
        other => other.clone(),
    }
}

/// Writes `value` as pretty JSON (plus a newline) to `path` atomically, with permission
/// bits `mode`: a temporary file beside it is written, synced and renamed over it.
pub fn write_json_atomic(path: &Path, value: &Value, mode: u32) -> Result<(), StateError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let werr = |source| StateError::Write { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| werr(io::Error::other("the path has no file name")))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp.{}.{n}", name.to_string_lossy(), std::process::id()));
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| werr(io::Error::other(e)))?;
    bytes.push(b'\n');
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(&bytes)?;
        // The umask narrowed the mode at creation: set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(werr)
}

fn read_object(path: &Path) -> Result<Option<(Vec<u8>, Value)>, StateError> {
    let rerr = |source| StateError::Read { path: path.to_path_buf(), source };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(rerr(e)),
    };
    if meta.len() > MAX_STATE_BYTES {
        return Err(StateError::TooLarge { path: path.into(), size: meta.len(), limit: MAX_STATE_BYTES });
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(rerr(e)),
    };
    let value = parse_object(path, &bytes)?;
    Ok(Some((bytes, value)))
}

fn parse_object(path: &Path, bytes: &[u8]) -> Result<Value, StateError> {
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(StateError::TooLarge {
            path: path.into(),
            size: bytes.len() as u64,
            limit: MAX_STATE_BYTES,
        });
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| StateError::Parse { path: path.into(), detail: e.to_string() })?;
    if !v.is_object() {
        return Err(StateError::NotAnObject { path: path.into() });
    }
    Ok(v)
}

/// The desired state mirrored to a local file.
#[derive(Debug, Clone)]
pub struct DesiredMirror {
    path: PathBuf,
    mode: u32,
    state: Value,
}

impl DesiredMirror {
    /// An empty mirror (`{}`) for `path`, written with permission bits `mode` (`0o644` lets
    /// any local user read it); nothing is written until the first change.
    pub fn new(path: impl Into<PathBuf>, mode: u32) -> Self {
        Self { path: path.into(), mode, state: Value::Object(Map::new()) }
    }

    /// Like [`new`](Self::new), starting from the file's current content when it exists
    /// (so a restart keeps the last known desired state).
    pub fn open(path: impl Into<PathBuf>, mode: u32) -> Result<Self, StateError> {
        let mut m = Self::new(path, mode);
        if let Some((_, v)) = read_object(&m.path)? {
            m.state = v;
        }
        Ok(m)
    }

    /// The mirrored document.
    pub fn state(&self) -> &Value {
        &self.state
    }

    /// The file it is mirrored to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Merges a desired patch (see [`merge_patch`]) and writes the file if the document
    /// changed; returns whether it did. On a write error the in-memory document keeps the
    /// change, and the next successful write carries it.
    pub fn apply_patch(&mut self, patch: &Value) -> Result<bool, StateError> {
        let mut next = self.state.clone();
        merge_patch(&mut next, patch);
        if !next.is_object() {
            next = Value::Object(Map::new());
        }
        self.set(next)
    }

    /// Replaces the document with a full desired document (a non-object becomes `{}`;
    /// `null` values are dropped) and writes the file if it changed.
    pub fn replace(&mut self, full: &Value) -> Result<bool, StateError> {
        let next = if full.is_object() { without_nulls(full) } else { Value::Object(Map::new()) };
        self.set(next)
    }

    /// Writes the current document even if unchanged (e.g. at start-up).
    pub fn write(&self) -> Result<(), StateError> {
        write_json_atomic(&self.path, &self.state, self.mode)
    }

    fn set(&mut self, next: Value) -> Result<bool, StateError> {
        let changed = next != self.state || !self.path.exists();
        self.state = next;
        if changed {
            self.write()?;
            tracing::debug!(path = %self.path.display(), "desired state file written");
        }
        Ok(changed)
    }
}

/// Watches the reported-state file and yields merge patches against the last reported
/// document.
#[derive(Debug, Clone)]
pub struct ReportedWatcher {
    path: PathBuf,
    last: Value,
    seen: Option<u64>,
    bad: bool,
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl ReportedWatcher {
    /// Watches `path`, with nothing reported yet (`{}`): the file's first content yields a
    /// patch holding all of it.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_baseline(path, Value::Object(Map::new()))
    }

    /// Watches `path`, taking `reported` (e.g. the cloud's current reported document) as
    /// what was last reported. A non-object counts as `{}`.
    pub fn with_baseline(path: impl Into<PathBuf>, reported: Value) -> Self {
        let last = if reported.is_object() { without_nulls(&reported) } else { Value::Object(Map::new()) };
        Self { path: path.into(), last, seen: None, bad: false }
    }

    /// The last reported document (the last good content of the file).
    pub fn last_reported(&self) -> &Value {
        &self.last
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file's current content is unusable (the last good document is kept).
    pub fn is_broken(&self) -> bool {
        self.bad
    }

    /// Checks the file once: `Ok(Some(patch))` when its document differs from the last
    /// reported one (which it then becomes), `Ok(None)` when it is unchanged or missing,
    /// and an error when the content changed into something unusable — the same bad
    /// content is reported once, later polls return `Ok(None)` until it changes.
    pub fn poll(&mut self) -> Result<Option<Value>, StateError> {
        let rerr = |source| StateError::Read { path: self.path.clone(), source };
        let size = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(rerr(e)),
        };
        if size > MAX_STATE_BYTES {
            let marker = u64::MAX ^ size;
            if self.seen == Some(marker) {
                return Ok(None);
            }
            self.seen = Some(marker);
            self.bad = true;
            return Err(StateError::TooLarge { path: self.path.clone(), size, limit: MAX_STATE_BYTES });
        }
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(rerr(e)),
        };
        let hash = content_hash(&bytes);
        if self.seen == Some(hash) {
            return Ok(None);
        }
        self.seen = Some(hash);
        let parsed = parse_object(&self.path, &bytes);
        self.bad = parsed.is_err();
        let doc = without_nulls(&parsed?);
        let patch = diff(&self.last, &doc);
        self.last = doc;
        Ok(patch)
    }

    /// Polls every `interval` and sends each patch on `tx`, until its receiver is dropped.
    /// An error is logged (`warn`) once when the file turns bad, and `info` when it recovers.
    pub async fn run(mut self, interval: Duration, tx: mpsc::Sender<Value>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            let was_broken = self.bad;
            match self.poll() {
                Ok(patch) => {
                    if was_broken && !self.bad {
                        tracing::info!(path = %self.path.display(), "reported state file is valid again");
                    }
                    if let Some(p) = patch {
                        if tx.send(p).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) if was_broken => {
                    tracing::debug!(path = %self.path.display(), error = %e, "reported state file still unusable");
                }
                Err(e) => {
                    tracing::warn!(
                        path = %self.path.display(),
                        error = %e,
                        "reported state file unusable; keeping the last good state"
                    );
                }
            }
        }
    }

    /// Spawns [`run`](Self::run) on the current tokio runtime; returns the patch channel
    /// (`capacity` patches).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(self, interval: Duration, capacity: usize) -> mpsc::Receiver<Value> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(self.run(interval, tx));
        rx
    }
}
