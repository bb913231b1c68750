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
//! From a shell, with `socat` (the answers come back on stdout):
//!
//! ```text
//! $ printf '%s\n' '{"t":21.5}' '{"topic":"engine","payload":{"rpm":900}}' \
//!     | socat -t 5 - UNIX-CONNECT:/run/connector-agent/ingest.sock
//! {"ok":true,"seq":1}
//! {"ok":true,"seq":2}
//! ```
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
//! # Slow, idle and stuck producers
//!
//! A connection that sends nothing at a line boundary for
//! [`IngestOptions::idle_timeout`] is closed, and so is one whose line is not complete
//! [`IngestOptions::partial_line_timeout`] after its first byte (that line is answered
//! `{"ok":false,"seq":N,"error":"incomplete line: …"}` first). Answers still owed for
//! earlier lines are written before the connection closes. When
//! [`IngestOptions::max_connections`] are open, a newcomer is never turned away for the sake
//! of a connection that is only waiting: the connection that has waited longest — at a line
//! boundary, or since the first byte of an incomplete line — is evicted (told
//! `{"ok":false,"error":"evicted: …"}` and closed, after its owed answers) and the newcomer
//! served. Only when every open connection is busy (its line being handed on, or held up by
//! backpressure) is the newcomer answered `{"ok":false,"error":"too many connections"}`.
//! So connections that each hold a partial line and stay idle cannot lock producers out.
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

mod line;
mod server;
mod slots;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::oneshot;

pub use line::{parse_line, LineError, ParsedLine, MAX_PROPERTIES, MAX_TOPIC_BYTES};
pub use server::IngestServer;

/// Default [`IngestOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`IngestOptions::partial_line_timeout`].
pub const DEFAULT_PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Most simultaneous producer connections (default 64). A newcomer beyond them evicts
    /// the connection that has waited longest between lines or inside a line (see the
    /// module docs); only when every connection is busy is it answered with an error line
    /// and closed.
    pub max_connections: usize,
    /// A connection that sends nothing for this long at a line boundary is closed (default
    /// 30 s).
    pub idle_timeout: Duration,
    /// A line must be complete (its newline received) this long after its first byte, or
    /// it is answered with an error and the connection closed (default 10 s).
    pub partial_line_timeout: Duration,
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
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            partial_line_timeout: DEFAULT_PARTIAL_LINE_TIMEOUT,
        }
    }

    pub(super) fn validate(&self) -> Result<(), IngestError> {
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
        if self.idle_timeout.is_zero() || self.partial_line_timeout.is_zero() {
            return bad("idle_timeout and partial_line_timeout must be positive");
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
    pub(super) tx: oneshot::Sender<Result<(), String>>,
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
    pub(super) items: Vec<(IngestMessage, Acker)>,
    pub(super) bytes: usize,
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
    /// Connections refused because `max_connections` were open and none could be evicted.
    pub connections_refused: u64,
    /// Connections closed to make room for a newcomer (the longest idle, or the one with
    /// the oldest incomplete line).
    pub connections_evicted: u64,
    /// Connections closed after [`IngestOptions::idle_timeout`] without a byte.
    pub idle_timeouts: u64,
    /// Connections closed because a line was not complete within
    /// [`IngestOptions::partial_line_timeout`].
    pub partial_line_timeouts: u64,
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
