//! The local ingestion endpoint: other processes on the device publish through the agent by
//! writing JSON lines to a Unix socket.
//!
//! # Protocol
//!
//! A producer connects to the socket and writes one JSON value per line (`\n`-terminated,
//! an optional `\r` before it is ignored; lines holding only whitespace are skipped and not
//! counted). Lines are numbered per connection from 1 (`seq`). Each line is either
//!
//! - an **envelope**: an object that has a `payload` key and no keys other than `payload`,
//!   `topic` and `properties`:
//!   `{"topic":"engine","properties":{"unit":"C"},"payload":{"t":21.5}}`. `topic` (optional)
//!   is a channel name, 1–256 bytes, no control characters and no MQTT wildcards (`+`, `#`),
//!   which the agent maps onto its cloud (a topic suffix, a message property…);
//!   `properties` (optional) is an object of at most 32 string values (application
//!   properties); `payload` is any JSON value; or
//! - a **raw value**: any other JSON value, which is the payload itself, with no topic and
//!   no properties (to send an object that looks like an envelope, wrap it in one).
//!
//! The payload handed on is the value's compact JSON serialisation.
//!
//! For every line the server writes one JSON line back on the same connection:
//! `{"ok":true,"seq":N}` once the consumer of the batch holding line `N` has
//! [accepted](Acker::accept) it (the agent acknowledges after its publisher took the
//! message), or `{"ok":false,"seq":N,"error":"…"}` when the line was malformed, longer than
//! [`IngestOptions::max_line_bytes`], [rejected](Acker::reject) or dropped by the consumer,
//! or the agent is stopping. Answers to different lines may come out of order (an error is
//! written at once, an acknowledgement waits for the batch). A bad line never closes the
//! connection and never affects other lines. A last line without its newline when the
//! producer closes is not delivered (an error answer is attempted).
//!
//! # Batching and backpressure
//!
//! Valid lines from all connections are gathered into [`Batch`]es delivered on an mpsc
//! channel. A batch is closed when it holds [`IngestOptions::max_batch_messages`]
//! messages, when the next message would take its payload bytes past
//! [`IngestOptions::max_batch_bytes`], or [`IngestOptions::max_delay`] after its first
//! message arrived. When the consumer falls behind, the bounded channels fill up, the
//! connections stop reading, and producers block in `write` (the kernel's socket buffer is
//! the last queue): nothing is dropped.
//!
//! # Socket file
//!
//! The socket is created with [`IngestOptions::mode`] (0660 by default: owner and group may
//! write). A stale socket file (nobody listening) is replaced; a socket another live process
//! listens on is refused with [`IngestError::InUse`]; a path that is not a socket is never
//! removed ([`IngestError::NotASocket`]). The file is removed when the server shuts down.
//!
//! ```no_run
//! # async fn demo() -> Result<(), connector_agent::ingest::IngestError> {
//! use connector_agent::ingest::{IngestOptions, IngestServer};
//! let (server, mut batches) = IngestServer::bind(IngestOptions::new("/run/agent/ingest.sock")).await?;
//! while let Some(batch) = batches.recv().await {
//!     for (msg, ack) in batch.into_parts() {
//!         // publish msg.payload (with msg.topic / msg.properties), then:
//!         ack.accept();
//!     }
//! }
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::time::Instant;

/// Most properties an envelope may carry.
pub const MAX_PROPERTIES: usize = 32;
/// Longest envelope topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// Settings of the ingestion endpoint.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Where the socket file is created.
    pub path: PathBuf,
    /// Permission bits of the socket file (default `0o660`).
    pub mode: u32,
    /// Longest accepted line in bytes, without its newline (default 64 KiB).
    pub max_line_bytes: usize,
    /// Most messages in one batch (default 100).
    pub max_batch_messages: usize,
    /// Most payload bytes in one batch (default 256 KiB); a single larger message travels
    /// alone.
    pub max_batch_bytes: usize,
    /// Longest time a message waits for its batch to fill (default 1 s).
    pub max_delay: Duration,
    /// Valid lines buffered between the connections and the batcher (default 1024).
    pub queue_capacity: usize,
    /// Batches waiting for the consumer (default 4).
    pub batch_capacity: usize,
    /// Most simultaneous producer connections (default 64); more are answered with an
    /// error line and closed.
    pub max_connections: usize,
}

impl IngestOptions {
    /// Defaults (see each field) for a socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: 0o660,
            max_line_bytes: 64 * 1024,
            max_batch_messages: 100,
            max_batch_bytes: 256 * 1024,
            max_delay: Duration::from_secs(1),
            queue_capacity: 1024,
            batch_capacity: 4,
            max_connections: 64,
        }
    }

    fn validate(&self) -> Result<(), IngestError> {
        let bad = |reason: &'static str| Err(IngestError::InvalidOptions { reason });
        if self.max_line_bytes == 0 {
            return bad("max_line_bytes must be at least 1");
        }
        if self.max_batch_messages == 0 {
            return bad("max_batch_messages must be at least 1");
        }
        if self.max_batch_bytes == 0 {
            return bad("max_batch_bytes must be at least 1");
        }
        if self.max_delay.is_zero() {
            return bad("max_delay must be positive");
        }
        if self.queue_capacity == 0 || self.batch_capacity == 0 {
            return bad("queue_capacity and batch_capacity must be at least 1");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.mode & !0o777 != 0 {
            return bad("mode may only hold permission bits (0o777)");
        }
        Ok(())
    }
}

/// Why the endpoint could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The options are inconsistent.
    #[error("invalid ingest options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// Another live process listens on the socket.
    #[error("ingest socket {path} is in use by another listener")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket exists at the path; it is left alone.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Inspecting, removing or binding the socket failed.
    #[error("cannot {op} ingest socket {path}")]
    Io {
        /// `inspect`, `remove stale`, `bind`, `set permissions of`.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Why a single line was refused (the text goes back to the producer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LineError {
    /// Not valid JSON (or not UTF-8).
    #[error("malformed JSON: {detail}")]
    Malformed {
        /// serde_json's description, with line and column.
        detail: String,
    },
    /// An envelope with a bad `topic` or `properties`.
    #[error("bad envelope: {reason}")]
    Envelope {
        /// What is wrong.
        reason: String,
    },
    /// Longer than `max_line_bytes`.
    #[error("line too long: {len} bytes, limit {limit}")]
    TooLong {
        /// Bytes read before the newline.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A validated line: what the agent publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    /// The envelope's channel name, if any.
    pub topic: Option<String>,
    /// The envelope's properties (empty for a raw value).
    pub properties: BTreeMap<String, String>,
    /// Compact JSON of the payload value.
    pub payload: Bytes,
}

fn envelope_error(reason: impl Into<String>) -> LineError {
    LineError::Envelope { reason: reason.into() }
}

fn check_topic(t: &str) -> Result<(), LineError> {
    if t.is_empty() || t.len() > MAX_TOPIC_BYTES {
        return Err(envelope_error(format!("topic must be 1-{MAX_TOPIC_BYTES} bytes")));
    }
    if t.chars().any(|c| c.is_control() || c == '+' || c == '#') {
        return Err(envelope_error("topic holds a control character or an MQTT wildcard"));
    }
    Ok(())
}

/// Validates one line (without its newline) per the [module's protocol](self).
pub fn parse_line(line: &[u8]) -> Result<ParsedLine, LineError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| LineError::Malformed { detail: e.to_string() })?;
    let is_envelope = value.as_object().is_some_and(|o| {
        o.contains_key("payload")
            && o.keys().all(|k| matches!(k.as_str(), "payload" | "topic" | "properties"))
    });
    if !is_envelope {
        let payload = Bytes::from(value.to_string());
        return Ok(ParsedLine { topic: None, properties: BTreeMap::new(), payload });
    }
    let Value::Object(mut o) = value else {
        return Err(envelope_error("not an object"));
    };
    let topic = match o.remove("topic") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => {
            check_topic(&t)?;
            Some(t)
        }
        Some(_) => return Err(envelope_error("topic must be a string")),
    };
    let mut properties = BTreeMap::new();
    match o.remove("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) => {
            if p.len() > MAX_PROPERTIES {
                return Err(envelope_error(format!("more than {MAX_PROPERTIES} properties")));
            }
            for (k, v) in p {
                if k.is_empty() {
                    return Err(envelope_error("empty property name"));
                }
                match v {
                    Value::String(s) => {
                        properties.insert(k, s);
                    }
                    _ => return Err(envelope_error(format!("property {k:?} is not a string"))),
                }
            }
        }
        Some(_) => return Err(envelope_error("properties must be an object of strings")),
    }
    let payload = o.remove("payload").map(|p| p.to_string()).unwrap_or_default();
    Ok(ParsedLine { topic, properties, payload: Bytes::from(payload) })
}

/// One accepted line, as the consumer of a [`Batch`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestMessage {
    /// The producer connection (numbered from 1 per server).
    pub connection: u64,
    /// The line number on that connection (from 1), as in the answer to the producer.
    pub seq: u64,
    /// The envelope's channel name, if any.
    pub topic: Option<String>,
    /// The envelope's properties.
    pub properties: BTreeMap<String, String>,
    /// Compact JSON of the payload.
    pub payload: Bytes,
}

/// Completes one message's acknowledgement. Dropping it without a decision answers the
/// producer `{"ok":false,…,"error":"dropped by the agent before it was accepted"}`.
#[derive(Debug)]
pub struct Acker {
    tx: oneshot::Sender<Result<(), String>>,
}

impl Acker {
    /// The agent took responsibility for the message: the producer gets `{"ok":true,…}`.
    pub fn accept(self) {
        let _ = self.tx.send(Ok(()));
    }

    /// The agent refused it: the producer gets `{"ok":false,…,"error":reason}`.
    pub fn reject(self, reason: impl Into<String>) {
        let _ = self.tx.send(Err(reason.into()));
    }
}

/// Messages gathered by size and time, each with its [`Acker`].
#[derive(Debug)]
pub struct Batch {
    items: Vec<(IngestMessage, Acker)>,
    bytes: usize,
}

impl Batch {
    /// Number of messages.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Never true for a delivered batch.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sum of the payload sizes.
    pub fn payload_bytes(&self) -> usize {
        self.bytes
    }

    /// The messages, oldest first.
    pub fn messages(&self) -> impl Iterator<Item = &IngestMessage> {
        self.items.iter().map(|(m, _)| m)
    }

    /// The messages with their ackers, oldest first.
    pub fn into_parts(self) -> Vec<(IngestMessage, Acker)> {
        self.items
    }

    /// Accepts every message.
    pub fn accept_all(self) {
        self.items.into_iter().for_each(|(_, a)| a.accept());
    }

    /// Rejects every message with `reason`.
    pub fn reject_all(self, reason: &str) {
        self.items.into_iter().for_each(|(_, a)| a.reject(reason));
    }
}

/// Counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestCounters {
    /// Producer connections accepted.
    pub connections: u64,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: u64,
    /// Valid lines handed to the batcher.
    pub lines: u64,
    /// Lines refused as malformed JSON or bad envelopes.
    pub malformed: u64,
    /// Lines refused as too long.
    pub oversized: u64,
    /// Unterminated last lines of closed connections.
    pub partial: u64,
    /// Batches delivered.
    pub batches: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    connections_refused: AtomicU64,
    lines: AtomicU64,
    malformed: AtomicU64,
    oversized: AtomicU64,
    partial: AtomicU64,
    batches: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A running endpoint. Dropping it stops it like [`shutdown`](Self::shutdown) without
/// waiting.
#[derive(Debug)]
pub struct IngestServer {
    path: PathBuf,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

struct Item {
    message: IngestMessage,
    ack: oneshot::Sender<Result<(), String>>,
}

enum Answer {
    Now(String),
    Later(u64, oneshot::Receiver<Result<(), String>>),
}

fn ok_line(seq: u64) -> String {
    json!({"ok": true, "seq": seq}).to_string()
}

fn err_line(seq: Option<u64>, error: &str) -> String {
    match seq {
        Some(seq) => json!({"ok": false, "seq": seq, "error": error}).to_string(),
        None => json!({"ok": false, "error": error}).to_string(),
    }
}

async fn prepare_path(path: &Path) -> Result<(), IngestError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(IngestError::Io { op: "inspect", path: path.into(), source }),
    };
    if !meta.file_type().is_socket() {
        return Err(IngestError::NotASocket { path: path.into() });
    }
    match tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(path)).await {
        Ok(Ok(_)) | Err(_) => Err(IngestError::InUse { path: path.into() }),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing stale ingest socket");
            std::fs::remove_file(path).map_err(|source| IngestError::Io {
                op: "remove stale",
                path: path.into(),
                source,
            })
        }
        Ok(Err(source)) => Err(IngestError::Io { op: "inspect", path: path.into(), source }),
    }
}

impl IngestServer {
    /// Creates the socket and starts serving on the current tokio runtime; returns the
    /// server and the channel its batches arrive on. When that receiver is dropped, lines
    /// still arriving are answered with an error.
    pub async fn bind(opts: IngestOptions) -> Result<(IngestServer, mpsc::Receiver<Batch>), IngestError> {
        opts.validate()?;
        let path = opts.path.clone();
        prepare_path(&path).await?;
        let listener = UnixListener::bind(&path).map_err(|source| IngestError::Io {
            op: "bind",
            path: path.clone(),
            source,
        })?;
        let set_mode = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(opts.mode))
            .and_then(|_| std::fs::symlink_metadata(&path));
        let identity = match set_mode {
            Ok(m) => (m.dev(), m.ino()),
            Err(source) => {
                let _ = std::fs::remove_file(&path);
                return Err(IngestError::Io { op: "set permissions of", path, source });
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let (item_tx, item_rx) = mpsc::channel(opts.queue_capacity);
        let (batch_tx, batch_rx) = mpsc::channel(opts.batch_capacity);
        let counters = Arc::new(Counters::default());
        let opts = Arc::new(opts);
        tokio::spawn(batcher(item_rx, batch_tx, opts.clone(), counters.clone()));
        let accept =
            tokio::spawn(accept_loop(listener, identity, item_tx, opts.clone(), counters.clone(), stop_rx));
        tracing::info!(path = %path.display(), mode = format_args!("{:o}", opts.mode), "ingest socket listening");
        Ok((IngestServer { path, stop, accept, counters }, batch_rx))
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> IngestCounters {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngestCounters {
            connections: g(&c.connections),
            connections_refused: g(&c.connections_refused),
            lines: g(&c.lines),
            malformed: g(&c.malformed),
            oversized: g(&c.oversized),
            partial: g(&c.partial),
            batches: g(&c.batches),
        }
    }

    /// Stops accepting connections and reading lines, removes the socket file, and returns
    /// once it is gone. Lines already read still reach the batch channel (the partial batch
    /// is flushed at once), which then closes; their producers still get their answers
    /// while they stay connected.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let IngestServer { accept, .. } = self;
        let _ = accept.await;
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn accept_loop(
    listener: UnixListener,
    identity: (u64, u64),
    items: mpsc::Sender<Item>,
    opts: Arc<IngestOptions>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => break,
        };
        let mut stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ingest accept failed");
                // Out of descriptors and similar: yield before retrying.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            bump(&counters.connections_refused);
            tracing::warn!(limit = opts.max_connections, "ingest connection refused: too many open");
            tokio::spawn(async move {
                let line = err_line(None, "too many connections") + "\n";
                let _ = stream.write_all(line.as_bytes()).await;
            });
            continue;
        };
        next_id += 1;
        bump(&counters.connections);
        let conn = connection(stream, next_id, items.clone(), opts.clone(), counters.clone(), stop.clone());
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let ours = std::fs::symlink_metadata(&opts.path).map(|m| (m.dev(), m.ino()) == identity).unwrap_or(false);
    if ours {
        let _ = std::fs::remove_file(&opts.path);
    }
    tracing::info!(path = %opts.path.display(), "ingest socket closed");
}

async fn batcher(
    mut rx: mpsc::Receiver<Item>,
    out: mpsc::Sender<Batch>,
    opts: Arc<IngestOptions>,
    counters: Arc<Counters>,
) {
    let mut cur: Vec<(IngestMessage, Acker)> = Vec::new();
    let mut bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => tokio::select! {
                i = rx.recv() => Some(i),
                _ = tokio::time::sleep_until(d) => None,
            },
            None => Some(rx.recv().await),
        };
        let item = match next {
            None => {
                flush(&out, &mut cur, &mut bytes, &mut deadline, &counters).await;
                continue;
            }
            Some(None) => {
                flush(&out, &mut cur, &mut bytes, &mut deadline, &counters).await;
                return;
            }
            Some(Some(i)) => i,
        };
        let size = item.message.payload.len();
        if !cur.is_empty() && bytes.saturating_add(size) > opts.max_batch_bytes {
            flush(&out, &mut cur, &mut bytes, &mut deadline, &counters).await;
        }
        if cur.is_empty() {
            deadline = Some(Instant::now() + opts.max_delay);
        }
        bytes += size;
        cur.push((item.message, Acker { tx: item.ack }));
        if cur.len() >= opts.max_batch_messages || bytes >= opts.max_batch_bytes {
            flush(&out, &mut cur, &mut bytes, &mut deadline, &counters).await;
        }
    }
}

async fn flush(
    out: &mpsc::Sender<Batch>,
    cur: &mut Vec<(IngestMessage, Acker)>,
    bytes: &mut usize,
    deadline: &mut Option<Instant>,
    counters: &Counters,
) {
    *deadline = None;
    if cur.is_empty() {
        return;
    }
    let batch = Batch { items: std::mem::take(cur), bytes: std::mem::take(bytes) };
    let n = batch.len();
    // A closed receiver drops the batch: its ackers answer the producers with an error.
    if out.send(batch).await.is_ok() {
        bump(&counters.batches);
        tracing::debug!(messages = n, "ingest batch delivered");
    }
}

/// How reading one line ended.
enum LineRead {
    /// A whole line is in the buffer.
    Line,
    /// A line longer than the limit was skipped; its length.
    TooLong(usize),
    /// End of stream at a line boundary.
    Eof,
    /// End of stream inside a line.
    EofPartial,
}

async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut total = 0usize;
    let mut overflow = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if total == 0 { LineRead::Eof } else { LineRead::EofPartial });
        }
        let (chunk, found) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (&avail[..i], true),
            None => (avail, false),
        };
        total += chunk.len();
        // Room for one byte past the limit: a `\r` before the newline.
        if !overflow && buf.len() + chunk.len() > max.saturating_add(1) {
            overflow = true;
            buf.clear();
            buf.shrink_to(max.min(64 * 1024));
        } else if !overflow {
            buf.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(found);
        r.consume(used);
        if found {
            if !overflow && buf.last() == Some(&b'\r') {
                buf.pop();
                total -= 1;
            }
            if overflow || buf.len() > max {
                return Ok(LineRead::TooLong(total));
            }
            return Ok(LineRead::Line);
        }
    }
}

async fn connection(
    stream: UnixStream,
    id: u64,
    items: mpsc::Sender<Item>,
    opts: Arc<IngestOptions>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) {
    tracing::debug!(connection = id, "ingest producer connected");
    let (rd, mut wr) = stream.into_split();
    let (answers, mut answers_rx) = mpsc::channel::<Answer>(opts.queue_capacity);
    let reader = read_loop(BufReader::new(rd), id, items, answers, opts, counters, stop);
    let writer = async move {
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        while open || !pending.is_empty() {
            let line = tokio::select! {
                a = answers_rx.recv(), if open => match a {
                    Some(Answer::Now(l)) => l,
                    Some(Answer::Later(seq, rx)) => {
                        pending.push(async move {
                            match rx.await {
                                Ok(Ok(())) => ok_line(seq),
                                Ok(Err(e)) => err_line(Some(seq), &e),
                                Err(_) => err_line(Some(seq), "dropped by the agent before it was accepted"),
                            }
                        });
                        continue;
                    }
                    None => {
                        open = false;
                        continue;
                    }
                },
                Some(l) = pending.next(), if !pending.is_empty() => l,
            };
            let mut bytes = line.into_bytes();
            bytes.push(b'\n');
            if let Err(e) = wr.write_all(&bytes).await {
                tracing::debug!(connection = id, error = %e, "ingest producer went away before its answers");
                return;
            }
        }
    };
    tokio::join!(reader, writer);
    tracing::debug!(connection = id, "ingest producer disconnected");
}

async fn read_loop<R: AsyncBufRead + Unpin>(
    mut rd: R,
    id: u64,
    items: mpsc::Sender<Item>,
    answers: mpsc::Sender<Answer>,
    opts: Arc<IngestOptions>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    let mut seq = 0u64;
    loop {
        let read = tokio::select! {
            r = read_line_capped(&mut rd, &mut buf, opts.max_line_bytes) => r,
            _ = stopped(&mut stop) => return,
        };
        let answer = match read {
            Err(e) => {
                tracing::debug!(connection = id, error = %e, "ingest read failed");
                return;
            }
            Ok(LineRead::Eof) => return,
            Ok(LineRead::EofPartial) => {
                bump(&counters.partial);
                tracing::debug!(connection = id, "ingest producer closed inside a line; line dropped");
                let _ = answers
                    .send(Answer::Now(err_line(
                        Some(seq + 1),
                        "incomplete line at end of stream (no newline)",
                    )))
                    .await;
                return;
            }
            Ok(LineRead::TooLong(len)) => {
                seq += 1;
                bump(&counters.oversized);
                let e = LineError::TooLong { len, limit: opts.max_line_bytes };
                Answer::Now(err_line(Some(seq), &e.to_string()))
            }
            Ok(LineRead::Line) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                seq += 1;
                match parse_line(&buf) {
                    Err(e) => {
                        bump(&counters.malformed);
                        Answer::Now(err_line(Some(seq), &e.to_string()))
                    }
                    Ok(p) => {
                        let (ack, ack_rx) = oneshot::channel();
                        let message = IngestMessage {
                            connection: id,
                            seq,
                            topic: p.topic,
                            properties: p.properties,
                            payload: p.payload,
                        };
                        let sent = tokio::select! {
                            s = items.send(Item { message, ack }) => s.is_ok(),
                            _ = stopped(&mut stop) => return,
                        };
                        if sent {
                            bump(&counters.lines);
                            Answer::Later(seq, ack_rx)
                        } else {
                            Answer::Now(err_line(Some(seq), "the agent is not accepting messages"))
                        }
                    }
                }
            }
        };
        if answers.send(answer).await.is_err() {
            return;
        }
    }
}
