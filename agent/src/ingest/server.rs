//! The listener, the per-connection reader and writer, and the batcher.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::line::{parse_line, read_line_capped, LineError, LineRead};
use super::slots::{Admission, Phase, Slot, Slots};
use super::{Acker, Batch, IngestCounters, IngestError, IngestMessage, IngestOptions};

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    connections_refused: AtomicU64,
    connections_evicted: AtomicU64,
    idle_timeouts: AtomicU64,
    partial_line_timeouts: AtomicU64,
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
            connections_evicted: g(&c.connections_evicted),
            idle_timeouts: g(&c.idle_timeouts),
            partial_line_timeouts: g(&c.partial_line_timeouts),
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
    let slots = Slots::default();
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
        let Some((slot, admission)) = slots.admit(next_id + 1, opts.max_connections) else {
            bump(&counters.connections_refused);
            tracing::warn!(
                limit = opts.max_connections,
                "ingest connection refused: too many open, all busy"
            );
            tokio::spawn(async move {
                let line = err_line(None, "too many connections") + "\n";
                let _ = stream.write_all(line.as_bytes()).await;
            });
            continue;
        };
        next_id += 1;
        if let Admission::Evicted { victim, phase } = admission {
            bump(&counters.connections_evicted);
            tracing::warn!(
                limit = opts.max_connections,
                evicted = victim,
                waiting = ?phase,
                "ingest connection limit reached: evicted the longest-waiting connection"
            );
        }
        bump(&counters.connections);
        let conn =
            connection(stream, slot, next_id, items.clone(), opts.clone(), counters.clone(), stop.clone());
        tokio::spawn(conn);
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

async fn connection(
    stream: UnixStream,
    slot: Slot,
    id: u64,
    items: mpsc::Sender<Item>,
    opts: Arc<IngestOptions>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) {
    tracing::debug!(connection = id, "ingest producer connected");
    let (rd, mut wr) = stream.into_split();
    let (answers, mut answers_rx) = mpsc::channel::<Answer>(opts.queue_capacity);
    let idle = opts.idle_timeout;
    let reader = read_loop(BufReader::new(rd), slot, id, items, answers, opts, counters, stop);
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
            match tokio::time::timeout(idle, wr.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(connection = id, error = %e, "ingest producer went away before its answers");
                    return;
                }
                Err(_) => {
                    tracing::debug!(connection = id, after = ?idle, "ingest producer reads no answers; closing");
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
    tracing::debug!(connection = id, "ingest producer disconnected");
}

/// How waiting for the next line ended, besides data arriving.
enum Wait {
    /// Data (or end of stream) is there to read.
    Ready,
    /// The read failed.
    Failed(io::Error),
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The server is stopping.
    Stopped,
    /// Evicted for a newcomer.
    Evicted,
}

async fn wait_for_data<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    slot: &mut Slot,
    idle: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Wait {
    tokio::select! {
        r = tokio::time::timeout(idle, rd.fill_buf()) => match r {
            Ok(Ok(_)) => Wait::Ready,
            Ok(Err(e)) => Wait::Failed(e),
            Err(_) => Wait::Idle,
        },
        _ = stopped(stop) => Wait::Stopped,
        _ = &mut slot.evict => Wait::Evicted,
    }
}

#[allow(clippy::too_many_arguments)]
async fn read_loop<R: AsyncBufRead + Unpin>(
    mut rd: R,
    mut slot: Slot,
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
        slot.enter(Phase::Idle);
        match wait_for_data(&mut rd, &mut slot, opts.idle_timeout, &mut stop).await {
            Wait::Ready => {}
            Wait::Failed(e) => {
                tracing::debug!(connection = id, error = %e, "ingest read failed");
                return;
            }
            Wait::Idle => {
                bump(&counters.idle_timeouts);
                tracing::debug!(connection = id, after = ?opts.idle_timeout, "ingest producer idle; closing");
                return;
            }
            Wait::Stopped => return,
            Wait::Evicted => {
                let _ = answers
                    .send(Answer::Now(err_line(
                        None,
                        "evicted: the connection limit was reached and this connection was the longest idle",
                    )))
                    .await;
                return;
            }
        }
        slot.enter(Phase::Partial);
        let read = tokio::select! {
            r = tokio::time::timeout(opts.partial_line_timeout, read_line_capped(&mut rd, &mut buf, opts.max_line_bytes)) => r,
            _ = stopped(&mut stop) => return,
            _ = &mut slot.evict => {
                let _ = answers
                    .send(Answer::Now(err_line(Some(seq + 1), "evicted: the connection limit was reached and this line was the oldest incomplete one")))
                    .await;
                return;
            }
        };
        let Ok(read) = read else {
            bump(&counters.partial_line_timeouts);
            tracing::debug!(connection = id, after = ?opts.partial_line_timeout, "ingest line incomplete; closing");
            let why = format!("incomplete line: no newline within {:?}", opts.partial_line_timeout);
            let _ = answers.send(Answer::Now(err_line(Some(seq + 1), &why))).await;
            return;
        };
        slot.enter(Phase::Busy);
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
        // Waiting for room among the answers is the producer's doing (it does not read
        // them): evictable, and the writer gives up after the idle timeout.
        slot.enter(Phase::Idle);
        let sent = tokio::select! {
            s = answers.send(answer) => s.is_ok(),
            _ = &mut slot.evict => false,
        };
        if !sent {
            return;
        }
    }
}
