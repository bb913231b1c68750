//! Producers that hold connections without finishing lines cannot lock others out of the
//! ingestion socket: at the connection limit the longest-waiting connection is evicted for
//! a newcomer, an idle connection is closed after `idle_timeout` and an incomplete line
//! after `partial_line_timeout`. Real Unix sockets; waits are for what the producer sees
//! (an answer, the end of stream), never sleeps.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use connector_agent::ingest::{Batch, IngestOptions, IngestServer};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use test_support::{recv_within, wait_until_async};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

struct Producer {
    answers: Lines<BufReader<OwnedReadHalf>>,
    wr: OwnedWriteHalf,
}

impl Producer {
    async fn connect(path: &Path) -> Producer {
        let (rd, wr) = UnixStream::connect(path).await.unwrap().into_split();
        Producer { answers: BufReader::new(rd).lines(), wr }
    }

    async fn send(&mut self, text: &str) {
        self.wr.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next answer line, or `None` at the end of stream.
    async fn next(&mut self) -> Option<Value> {
        let line =
            tokio::time::timeout(WAIT, self.answers.next_line()).await.expect("an answer or EOF in time");
        line.unwrap().map(|l| serde_json::from_str(&l).unwrap())
    }

    async fn answer(&mut self) -> Value {
        self.next().await.expect("an answer, not the end of stream")
    }

    async fn closed(&mut self) {
        assert_eq!(self.next().await, None, "the server closes the connection");
    }
}

async fn batch(rx: &mut Receiver<Batch>, what: &str) -> Batch {
    recv_within(rx, WAIT, what).await
}

fn opts(dir: &Path) -> IngestOptions {
    let mut o = IngestOptions::new(dir.join("ingest.sock"));
    o.max_delay = Duration::from_millis(20);
    o
}

#[tokio::test]
async fn connections_holding_partial_lines_do_not_lock_out_a_producer() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    // Long timeouts: what lets the newcomer in is eviction, not a timer.
    o.idle_timeout = HOUR;
    o.partial_line_timeout = HOUR;
    let max = o.max_connections;
    assert_eq!(max, 64, "the default limit");
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    // The limit's worth of connections: most hold the start of a line, some sent nothing.
    let mut holders = Vec::new();
    for i in 0..max {
        let mut p = Producer::connect(server.path()).await;
        if i % 4 != 0 {
            p.send("{\"t\":").await;
        }
        holders.push(p);
    }
    wait_until_async(WAIT, "every holder is admitted", || server.counters().connections == max as u64).await;

    let mut good = Producer::connect(server.path()).await;
    good.send("{\"t\":21.5}\n").await;
    let b = batch(&mut rx, "the well-behaved producer's line").await;
    assert_eq!(b.messages().next().unwrap().payload, "{\"t\":21.5}");
    b.accept_all();
    assert_eq!(good.answer().await, json!({"ok": true, "seq": 1}));

    // Exactly one holder made room: it is told why, then closed.
    let (idx, first) = {
        let mut reads: FuturesUnordered<_> = holders
            .iter_mut()
            .enumerate()
            .map(|(i, p)| async move { (i, p.answers.next_line().await.unwrap()) })
            .collect();
        tokio::time::timeout(WAIT, reads.next()).await.expect("the evicted holder hears").unwrap()
    };
    let first: Value = serde_json::from_str(&first.expect("an answer before the end")).unwrap();
    assert_eq!(first["ok"], false, "{first}");
    assert!(first["error"].as_str().unwrap().starts_with("evicted"), "{first}");
    holders[idx].closed().await;
    let c = server.counters();
    assert_eq!((c.connections, c.connections_evicted, c.connections_refused), (max as u64 + 1, 1, 0));

    // And again: every newcomer gets in while the holders only wait.
    let mut second = Producer::connect(server.path()).await;
    second.send("2\n").await;
    batch(&mut rx, "the second newcomer's line").await.accept_all();
    assert_eq!(second.answer().await["ok"], true);
    assert_eq!(server.counters().connections_evicted, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn at_the_limit_the_waiting_connection_makes_room_after_its_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_connections = 1;
    o.idle_timeout = HOUR;
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let mut first = Producer::connect(server.path()).await;
    first.send("1\n").await;
    let b = batch(&mut rx, "first connection's line").await;
    // The first connection now waits between lines: a newcomer evicts it.
    let mut second = Producer::connect(server.path()).await;
    let evicted = first.answer().await;
    assert!(evicted["error"].as_str().unwrap().starts_with("evicted"), "{evicted}");
    // The answer it is owed still comes, then the end of stream.
    b.accept_all();
    assert_eq!(first.answer().await, json!({"ok": true, "seq": 1}));
    first.closed().await;
    second.send("2\n").await;
    batch(&mut rx, "the newcomer's line").await.accept_all();
    assert_eq!(second.answer().await, json!({"ok": true, "seq": 1}));
    assert_eq!(server.counters().connections_evicted, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.idle_timeout = Duration::from_millis(300);
    o.partial_line_timeout = HOUR;
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    p.send("{\"n\":1}\n").await;
    batch(&mut rx, "the line before going quiet").await.accept_all();
    assert_eq!(p.answer().await, json!({"ok": true, "seq": 1}));
    // Then nothing: the server hangs up.
    p.closed().await;
    assert_eq!(server.counters().idle_timeouts, 1);
    // A connection that never sends a byte too.
    let mut silent = Producer::connect(server.path()).await;
    silent.closed().await;
    assert_eq!(server.counters().idle_timeouts, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn an_incomplete_line_is_refused_after_the_partial_line_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.idle_timeout = HOUR;
    o.partial_line_timeout = Duration::from_millis(300);
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    p.send("1\n{\"t\":").await;
    batch(&mut rx, "the complete line").await.accept_all();
    let mut got = [p.answer().await, p.answer().await];
    got.sort_by_key(|a| a["seq"].as_u64());
    assert_eq!(got[0], json!({"ok": true, "seq": 1}));
    assert_eq!(got[1]["seq"], 2);
    assert_eq!(got[1]["ok"], false);
    assert!(got[1]["error"].as_str().unwrap().starts_with("incomplete line"), "{}", got[1]);
    p.closed().await;
    assert_eq!(server.counters().partial_line_timeouts, 1);
    assert_eq!(server.counters().lines, 1, "the incomplete line was not delivered");
    server.shutdown().await;
}
