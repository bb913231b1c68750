//! The ingestion endpoint over real Unix sockets: envelopes and raw values, acknowledgements
//! after the consumer accepts, batch boundaries by count, bytes and time, many producers,
//! malformed, oversized and unterminated lines, backpressure, and the socket file's life.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_agent::ingest::{parse_line, Batch, IngestError, IngestOptions, IngestServer, LineError};
use serde_json::{json, Value};
use test_support::{recv_within, wait_until_async};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(5);

fn opts(dir: &Path) -> IngestOptions {
    let mut o = IngestOptions::new(dir.join("ingest.sock"));
    o.max_delay = Duration::from_millis(50);
    o
}

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

    async fn answer(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.answers.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("connection open");
        serde_json::from_str(&line).unwrap()
    }

    /// `n` answers keyed by seq.
    async fn answers(&mut self, n: usize) -> BTreeMap<u64, Value> {
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let a = self.answer().await;
            m.insert(a["seq"].as_u64().expect("seq"), a);
        }
        m
    }

    async fn no_answer_within(&mut self, d: Duration) {
        if let Ok(line) = tokio::time::timeout(d, self.answers.next_line()).await {
            panic!("unexpected answer {line:?}");
        }
    }
}

async fn batch(rx: &mut Receiver<Batch>, what: &str) -> Batch {
    recv_within(rx, WAIT, what).await
}

#[test]
fn parse_line_table() {
    let raw = parse_line(br#" {"t": 21.5, "u": "C"} "#).unwrap();
    assert_eq!((raw.topic, raw.properties.len()), (None, 0));
    assert_eq!(&raw.payload[..], br#"{"t":21.5,"u":"C"}"#);

    let env = parse_line(br#"{"topic":"engine/1","properties":{"unit":"C"},"payload":{"t":1}}"#).unwrap();
    assert_eq!(env.topic.as_deref(), Some("engine/1"));
    assert_eq!(env.properties.get("unit").map(String::as_str), Some("C"));
    assert_eq!(&env.payload[..], br#"{"t":1}"#);

    // An object with other keys beside payload is a raw value.
    let not_env = parse_line(br#"{"payload":1,"other":2}"#).unwrap();
    assert_eq!(not_env.topic, None);
    assert_eq!(&not_env.payload[..], br#"{"other":2,"payload":1}"#);
    // Scalars and arrays are raw values; envelopes may carry them.
    assert_eq!(&parse_line(b"42").unwrap().payload[..], b"42");
    assert_eq!(&parse_line(br#"{"payload":"hi"}"#).unwrap().payload[..], br#""hi""#);

    for (line, want) in [
        (&b"{bad"[..], "malformed"),
        (b"", "malformed"),
        (b"\xff\xfe", "malformed"),
        (br#"{"a":1} {"b":2}"#, "malformed"),
        (br#"{"topic":"a/#","payload":1}"#, "envelope"),
        (br#"{"topic":"a/+/b","payload":1}"#, "envelope"),
        (br#"{"topic":"","payload":1}"#, "envelope"),
        (br#"{"topic":"a\u0000b","payload":1}"#, "envelope"),
        (br#"{"topic":7,"payload":1}"#, "envelope"),
        (br#"{"properties":{"n":1},"payload":1}"#, "envelope"),
        (br#"{"properties":[],"payload":1}"#, "envelope"),
        (br#"{"properties":{"":"x"},"payload":1}"#, "envelope"),
    ] {
        let got = parse_line(line);
        let ok = matches!(
            (&got, want),
            (Err(LineError::Malformed { .. }), "malformed") | (Err(LineError::Envelope { .. }), "envelope")
        );
        assert!(ok, "{:?} → {got:?}, want {want}", String::from_utf8_lossy(line));
    }
    let long_topic = format!(r#"{{"topic":"{}","payload":1}}"#, "t".repeat(257));
    assert!(matches!(parse_line(long_topic.as_bytes()), Err(LineError::Envelope { .. })));
    let props: serde_json::Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let many = json!({"properties": props, "payload": 1}).to_string();
    assert!(matches!(parse_line(many.as_bytes()), Err(LineError::Envelope { .. })));
}

#[tokio::test]
async fn acknowledges_only_after_the_consumer_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = IngestServer::bind(opts(dir.path())).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    p.send("{\"t\":1}\n{\"topic\":\"engine\",\"properties\":{\"unit\":\"C\"},\"payload\":[1,2]}\n").await;

    let b = batch(&mut rx, "a batch of two").await;
    let msgs: Vec<_> = b.messages().cloned().collect();
    assert_eq!(msgs.len(), 2);
    assert_eq!((msgs[0].seq, msgs[0].topic.as_deref(), &msgs[0].payload[..]), (1, None, &b"{\"t\":1}"[..]));
    assert_eq!(msgs[1].seq, 2);
    assert_eq!(msgs[1].topic.as_deref(), Some("engine"));
    assert_eq!(msgs[1].properties.get("unit").map(String::as_str), Some("C"));
    assert_eq!(&msgs[1].payload[..], b"[1,2]");
    assert_eq!(msgs[0].connection, msgs[1].connection);
    assert_eq!(b.payload_bytes(), 7 + 5);

    p.no_answer_within(Duration::from_millis(100)).await;
    b.accept_all();
    let answers = p.answers(2).await;
    assert_eq!(answers[&1], json!({"ok": true, "seq": 1}));
    assert_eq!(answers[&2], json!({"ok": true, "seq": 2}));
    server.shutdown().await;
}

#[tokio::test]
async fn rejected_and_dropped_messages_are_answered_with_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = IngestServer::bind(opts(dir.path())).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    p.send("1\n2\n3\n").await;
    let mut parts = batch(&mut rx, "three lines").await.into_parts();
    assert_eq!(parts.len(), 3);
    let (_, third) = parts.pop().unwrap();
    let (_, second) = parts.pop().unwrap();
    let (_, first) = parts.pop().unwrap();
    first.accept();
    second.reject("queue full");
    drop(third);
    let a = p.answers(3).await;
    assert_eq!(a[&1], json!({"ok": true, "seq": 1}));
    assert_eq!(a[&2], json!({"ok": false, "seq": 2, "error": "queue full"}));
    assert_eq!(a[&3]["ok"], false);
    assert!(a[&3]["error"].as_str().unwrap().contains("dropped"), "{}", a[&3]);
    server.shutdown().await;
}

#[tokio::test]
async fn batches_close_at_max_messages_and_shutdown_flushes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_batch_messages = 10;
    o.max_delay = Duration::from_secs(600);
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    let text: String = (1..=25).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    p.send(&text).await;

    let b1 = batch(&mut rx, "first full batch").await;
    let b2 = batch(&mut rx, "second full batch").await;
    assert_eq!((b1.len(), b2.len()), (10, 10));
    let seqs: Vec<u64> = b1.messages().chain(b2.messages()).map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    b1.accept_all();
    b2.accept_all();
    assert_eq!(p.answers(20).await.len(), 20);
    // The last five wait for the ten-minute deadline; all 25 were read once 5 are queued.
    wait_until_async(WAIT, "all 25 lines read", || server.counters().lines == 25).await;
    assert!(rx.try_recv().is_err(), "no batch before the deadline");
    server.shutdown().await;
    let b3 = batch(&mut rx, "the partial batch flushed by shutdown").await;
    assert_eq!(b3.messages().map(|m| m.seq).collect::<Vec<_>>(), (21..=25).collect::<Vec<_>>());
    b3.accept_all();
    assert_eq!(p.answers(5).await.keys().copied().collect::<Vec<_>>(), (21..=25).collect::<Vec<_>>());
    assert!(recv_within_closed(&mut rx).await, "channel closes after the last batch");
}

async fn recv_within_closed(rx: &mut Receiver<Batch>) -> bool {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("channel closes in time").is_none()
}

#[tokio::test]
async fn batches_close_before_exceeding_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_batch_bytes = 100;
    o.max_delay = Duration::from_secs(600);
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    // Payloads of 30 bytes: three fit (90), a fourth would make 120.
    let line = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(30 - 16));
    assert_eq!(line(1).len() - 1, 30);
    let text: String = (1..=7).map(line).collect();
    p.send(&text).await;
    let b1 = batch(&mut rx, "first batch by bytes").await;
    let b2 = batch(&mut rx, "second batch by bytes").await;
    assert_eq!((b1.len(), b1.payload_bytes()), (3, 90));
    assert_eq!((b2.len(), b2.payload_bytes()), (3, 90));
    // A single message over the limit travels alone.
    p.send(&format!("\"{}\"\n", "y".repeat(200))).await;
    wait_until_async(WAIT, "all 8 lines read", || server.counters().lines == 8).await;
    server.shutdown().await;
    let b3 = batch(&mut rx, "the seventh message").await;
    let b4 = batch(&mut rx, "the oversized message alone").await;
    assert_eq!(b3.len(), 1);
    assert_eq!((b4.len(), b4.payload_bytes()), (1, 202));
}

#[tokio::test]
async fn a_lone_message_is_delivered_after_max_delay() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_delay = Duration::from_millis(100);
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    p.send("{\"only\":true}\n").await;
    let b = batch(&mut rx, "a batch closed by its deadline").await;
    assert_eq!(b.len(), 1);
    b.accept_all();
    assert_eq!(p.answer().await, json!({"ok": true, "seq": 1}));
    // A second message later starts a new batch with a new deadline.
    p.send("{\"again\":true}\n").await;
    let b = batch(&mut rx, "the next deadline batch").await;
    assert_eq!(b.messages().next().unwrap().seq, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn many_producers_every_line_delivered_once_and_acknowledged() {
    const PRODUCERS: usize = 8;
    const LINES: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_batch_messages = 37;
    o.queue_capacity = 16;
    o.batch_capacity = 2;
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let consumer = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        while let Some(b) = rx.recv().await {
            assert!(b.len() <= 37);
            for m in b.messages() {
                let v: Value = serde_json::from_slice(&m.payload).unwrap();
                assert!(seen.insert((v["p"].as_u64().unwrap(), v["i"].as_u64().unwrap())), "duplicate {v}");
            }
            b.accept_all();
        }
        seen
    });
    let mut tasks = Vec::new();
    for pi in 0..PRODUCERS {
        let path = server.path().to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut p = Producer::connect(&path).await;
            for i in 1..=LINES {
                p.send(&format!("{{\"p\":{pi},\"i\":{i}}}\n")).await;
            }
            let a = p.answers(LINES as usize).await;
            assert!(a.values().all(|v| v["ok"] == true), "all accepted");
            assert_eq!(a.keys().copied().collect::<Vec<_>>(), (1..=LINES).collect::<Vec<_>>());
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(20), t).await.expect("producer finishes").unwrap();
    }
    assert_eq!(server.counters().lines, PRODUCERS as u64 * LINES);
    assert_eq!(server.counters().connections, PRODUCERS as u64);
    server.shutdown().await;
    let seen = tokio::time::timeout(WAIT, consumer).await.expect("consumer ends").unwrap();
    assert_eq!(seen.len(), PRODUCERS * LINES as usize);
}

#[tokio::test]
async fn malformed_lines_are_answered_and_the_connection_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = IngestServer::bind(opts(dir.path())).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    p.send("{\"a\":1}\n{bad json\n\n   \n{\"topic\":\"x/#\",\"payload\":1}\r\n{\"b\":2}\r\n").await;
    // Errors come at once, before the batch is accepted.
    let e2 = p.answer().await;
    assert_eq!((e2["ok"].clone(), e2["seq"].clone()), (json!(false), json!(2)));
    assert!(e2["error"].as_str().unwrap().starts_with("malformed JSON"), "{e2}");
    let e3 = p.answer().await;
    assert_eq!(e3["seq"], 3, "blank lines are not counted");
    assert!(e3["error"].as_str().unwrap().starts_with("bad envelope"), "{e3}");
    let b = batch(&mut rx, "the two good lines").await;
    assert_eq!(b.messages().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 4]);
    assert_eq!(&b.messages().nth(1).unwrap().payload[..], b"{\"b\":2}");
    b.accept_all();
    let ok = p.answers(2).await;
    assert_eq!(ok.keys().copied().collect::<Vec<_>>(), vec![1, 4]);
    assert_eq!(server.counters().malformed, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_lines_are_answered_and_the_connection_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_line_bytes = 64;
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    let exactly = format!("\"{}\"", "e".repeat(62));
    assert_eq!(exactly.len(), 64);
    let huge = format!("\"{}\"", "h".repeat(100_000));
    p.send(&format!("{huge}\n{exactly}\r\n{}\n1\n", "x".repeat(65))).await;
    let a1 = p.answer().await;
    assert_eq!(a1["seq"], 1);
    assert_eq!(a1["error"], "line too long: 100002 bytes, limit 64");
    let a3 = p.answer().await;
    assert_eq!(
        (a3["seq"].clone(), a3["error"].clone()),
        (json!(3), json!("line too long: 65 bytes, limit 64"))
    );
    let b = batch(&mut rx, "the lines within the limit").await;
    assert_eq!(b.messages().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(b.messages().next().unwrap().payload.len(), 64);
    b.accept_all();
    assert_eq!(p.answers(2).await.len(), 2);
    assert_eq!(server.counters().oversized, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_producer_closing_inside_a_line_loses_only_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = IngestServer::bind(opts(dir.path())).await.unwrap();
    {
        let mut gone = Producer::connect(server.path()).await;
        gone.send("{\"whole\":1}\n{\"half\":").await;
        // Dropping both halves closes the connection mid-line.
    }
    wait_until_async(WAIT, "the partial line is noticed", || server.counters().partial == 1).await;
    let mut p = Producer::connect(server.path()).await;
    p.send("{\"next\":2}\n").await;
    let mut payloads = Vec::new();
    while payloads.len() < 2 {
        let b = batch(&mut rx, "the whole lines").await;
        payloads.extend(b.messages().map(|m| String::from_utf8(m.payload.to_vec()).unwrap()));
        b.accept_all();
    }
    assert_eq!(payloads, vec!["{\"whole\":1}", "{\"next\":2}"]);
    assert_eq!(p.answer().await, json!({"ok": true, "seq": 1}));
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_consumer_blocks_producers_and_nothing_is_lost() {
    const LINES: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_batch_messages = 10;
    o.queue_capacity = 8;
    o.batch_capacity = 1;
    let (server, mut rx) = IngestServer::bind(o).await.unwrap();
    let (rd, mut wr) = UnixStream::connect(server.path()).await.unwrap().into_split();
    let pad = "p".repeat(200);
    let text: String = (0..LINES).map(|i| format!("{{\"i\":{i},\"pad\":\"{pad}\"}}\n")).collect();
    let writer = tokio::spawn(async move {
        wr.write_all(text.as_bytes()).await.unwrap();
        wr
    });
    // Answers must be read, or the server stops on a full answer pipe; count them.
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(rd).lines();
        let mut ok = 0usize;
        while ok < LINES {
            let l = lines.next_line().await.unwrap().expect("open");
            assert!(l.contains("\"ok\":true"), "{l}");
            ok += 1;
        }
        ok
    });
    // With nobody consuming, the producer's 4 MB cannot all be taken in.
    let mut writer = writer;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut writer).await.is_err(),
        "the producer must block while the consumer is idle"
    );
    let taken = server.counters().lines;
    assert!(taken <= 8 + 2 * 10 + 1, "only the bounded queues fill: {taken}");
    let mut got = 0usize;
    while got < LINES {
        let b = batch(&mut rx, "batches once the consumer runs").await;
        got += b.len();
        b.accept_all();
    }
    assert_eq!(got, LINES);
    tokio::time::timeout(WAIT, writer).await.expect("writer completes").unwrap();
    assert_eq!(tokio::time::timeout(WAIT, reader).await.expect("all answered").unwrap(), LINES);
    server.shutdown().await;
}

#[tokio::test]
async fn socket_file_has_the_mode_and_is_removed_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _rx) = IngestServer::bind(opts(dir.path())).await.unwrap();
    let path = server.path().to_path_buf();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    server.shutdown().await;
    assert!(!path.exists());

    let mut o = opts(dir.path());
    o.mode = 0o600;
    let (server, _rx) = IngestServer::bind(o).await.unwrap();
    assert_eq!(std::fs::metadata(server.path()).unwrap().permissions().mode() & 0o777, 0o600);
    server.shutdown().await;
}

#[tokio::test]
async fn stale_socket_is_replaced_live_one_refused_other_files_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("ingest.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a stale socket file is left behind");
    let (server, mut rx) = IngestServer::bind(opts(dir.path())).await.unwrap();

    match IngestServer::bind(opts(dir.path())).await {
        Err(IngestError::InUse { path: p }) => assert_eq!(p, path),
        other => panic!("expected InUse, got {other:?}"),
    }
    // The refused second bind left the live server working.
    let mut p = Producer::connect(&path).await;
    p.send("1\n").await;
    batch(&mut rx, "a line through the surviving server").await.accept_all();
    assert_eq!(p.answer().await["ok"], true);
    server.shutdown().await;

    std::fs::write(&path, "precious").unwrap();
    assert!(matches!(IngestServer::bind(opts(dir.path())).await, Err(IngestError::NotASocket { .. })));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for tweak in [
        (|o: &mut IngestOptions| o.max_batch_messages = 0) as fn(&mut IngestOptions),
        |o| o.max_line_bytes = 0,
        |o| o.max_delay = Duration::ZERO,
        |o| o.mode = 0o4777,
        |o| o.queue_capacity = 0,
        |o| o.idle_timeout = Duration::ZERO,
        |o| o.partial_line_timeout = Duration::ZERO,
    ] {
        let mut o = opts(dir.path());
        tweak(&mut o);
        assert!(matches!(IngestServer::bind(o).await, Err(IngestError::InvalidOptions { .. })));
    }
    assert!(!dir.path().join("ingest.sock").exists());
}

#[tokio::test]
async fn a_dropped_batch_receiver_answers_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (server, rx) = IngestServer::bind(opts(dir.path())).await.unwrap();
    drop(rx);
    let mut p = Producer::connect(server.path()).await;
    p.send("1\n").await;
    let a = p.answer().await;
    assert_eq!(a["ok"], false);
    assert_eq!(a["seq"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_producer_that_half_closes_still_gets_its_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = IngestServer::bind(opts(dir.path())).await.unwrap();
    let mut p = Producer::connect(server.path()).await;
    p.send("{\"t\":21.5}\n{\"topic\":\"engine\",\"payload\":{\"rpm\":900}}\n").await;
    p.wr.shutdown().await.unwrap();
    let b = batch(&mut rx, "the lines sent before the half-close").await;
    assert_eq!(b.len(), 2);
    b.accept_all();
    let answers = p.answers(2).await;
    assert_eq!(answers.len(), 2);
    assert!(answers.values().all(|a| a["ok"] == true));
    let end = tokio::time::timeout(WAIT, p.answers.next_line()).await.expect("closed in time").unwrap();
    assert_eq!(end, None, "the server closes once every answer is written");
    server.shutdown().await;
}
