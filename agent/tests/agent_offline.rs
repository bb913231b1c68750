//! Offline: the on-disk store's caps from the configuration apply while the hub refuses
//! the agent (`store.max_messages` with `drop_policy = "newest"` refuses the newest;
//! `store.max_bytes` is exact: `newest` refuses new telemetry at the cap, `oldest` drops the
//! oldest lines to make room), and what was accepted (and not dropped) is delivered once
//! the hub takes the agent back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use common::{rt, Agent, ExternalCloud, WITHIN};
use connector_emulator::control::api::RefuseConnect;
use nix::sys::signal::Signal;
use test_support::wait_until;

const DEVICE: &str = "agent-offline";

/// Starts the agent with `store` settings, connects, then makes the hub refuse it.
fn offline_agent(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    cloud: &ExternalCloud,
    store: &str,
) -> (Agent, UnixStream) {
    let state = dir.join("s");
    let socket = dir.join("in.sock");
    let cfg = dir.join("agent.toml");
    let extra = format!(
        "[telemetry]\ndevice_stats = false\n[ingest]\nsocket = {socket:?}\nbatch_max_messages = 1\nbatch_max_delay = \"10ms\"\n[store]\n{store}\n"
    );
    std::fs::write(&cfg, cloud.config(&state, &extra)).unwrap();
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    agent.wait_line("connected", |l| l.starts_with("status: connected device=agent-offline"));
    let ctl = cloud.emu.control();
    rt.block_on(ctl.refuse_connect(DEVICE, None, &RefuseConnect { code: 3, count: None })).unwrap();
    rt.block_on(ctl.drop_connection(DEVICE, None)).unwrap();
    agent.wait_line("offline", |l| {
        l.starts_with("status: reconnecting") || l.starts_with("status: connecting")
    });
    let stream = UnixStream::connect(&socket).unwrap();
    (agent, stream)
}

/// Writes one line and returns the agent's answer.
fn send(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, line: &str) -> serde_json::Value {
    writeln!(stream, "{line}").unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn newest_policy_refuses_beyond_max_messages_and_delivers_the_rest_later() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cloud = ExternalCloud::start(&rt, dir.path(), DEVICE);
    let (mut agent, mut stream) =
        offline_agent(dir.path(), &rt, &cloud, "max_messages = 5\ndrop_policy = \"newest\"");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let answers: Vec<serde_json::Value> =
        (0..8).map(|n| send(&mut stream, &mut reader, &format!("{{\"n\":{n}}}"))).collect();
    let ok: Vec<bool> = answers.iter().map(|a| a["ok"] == true).collect();
    assert_eq!(ok, [true, true, true, true, true, false, false, false], "{answers:?}");
    assert!(answers[5]["error"].as_str().unwrap().contains("not accepted"), "{answers:?}");

    // The hub takes the agent back: the five accepted lines arrive, the refused ones never.
    let ctl = cloud.emu.control();
    rt.block_on(ctl.clear_faults(DEVICE, None)).unwrap();
    let mut got = Vec::new();
    wait_until(WITHIN, "the five accepted lines at the hub", || {
        got = rt
            .block_on(ctl.telemetry(DEVICE, None))
            .unwrap()
            .iter()
            .flat_map(|m| {
                serde_json::from_str::<Vec<serde_json::Value>>(m.payload.as_deref().unwrap()).unwrap()
            })
            .map(|v| v["n"].as_u64().unwrap())
            .collect();
        got.len() >= 5
    });
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}

/// The numbers of the lines the hub has received so far (each message is a JSON array of lines).
fn received(rt: &tokio::runtime::Runtime, cloud: &ExternalCloud) -> Vec<u64> {
    rt.block_on(cloud.emu.control().telemetry(DEVICE, None))
        .unwrap()
        .iter()
        .flat_map(|m| serde_json::from_str::<Vec<serde_json::Value>>(m.payload.as_deref().unwrap()).unwrap())
        .map(|v| v["n"].as_u64().unwrap())
        .collect()
}

/// A line of about 200 bytes.
fn padded(n: u64) -> String {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200))
}

#[test]
fn max_bytes_refuses_new_telemetry_exactly_at_the_cap_with_newest() {
    const CAP: usize = 2048;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cloud = ExternalCloud::start(&rt, dir.path(), DEVICE);
    let (mut agent, mut stream) = offline_agent(
        dir.path(),
        &rt,
        &cloud,
        &format!("max_messages = 1000\nmax_bytes = {CAP}\ndrop_policy = \"newest\""),
    );
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut accepted = Vec::new();
    let mut body_bytes = 0;
    let mut refusal = None;
    for n in 0..100 {
        let line = padded(n);
        let a = send(&mut stream, &mut reader, &line);
        if a["ok"] == true {
            accepted.push(n);
            // Each line travels alone as `[line]`; its topic comes on top.
            body_bytes += line.len() + 2;
        } else {
            refusal = Some((n, a["error"].as_str().unwrap_or_default().to_owned()));
            break;
        }
    }
    let (refused, why) = refusal.expect("a line refused for store.max_bytes");
    println!("store.max_bytes {CAP}, newest: accepted {} lines ({body_bytes} payload bytes), refused line {refused}", accepted.len());
    assert!(why.contains("store.max_bytes"), "{why}");
    // Exact: the accepted payloads alone fit under the cap (the 1-second poll this replaces
    // let a burst of lines through), and no refusal came before the cap was near.
    assert!(body_bytes <= CAP, "accepted {} lines, {body_bytes} payload bytes", accepted.len());
    assert!(accepted.len() >= 3, "accepted only {} lines", accepted.len());

    // The hub takes the agent back: exactly the accepted lines arrive.
    rt.block_on(cloud.emu.control().clear_faults(DEVICE, None)).unwrap();
    let mut got = Vec::new();
    wait_until(WITHIN, "the accepted lines at the hub", || {
        got = received(&rt, &cloud);
        got.len() >= accepted.len()
    });
    got.sort_unstable();
    assert_eq!(got, accepted, "line {refused} was refused");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}

#[test]
fn max_bytes_drops_the_oldest_telemetry_with_oldest() {
    const CAP: usize = 2048;
    const LINES: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cloud = ExternalCloud::start(&rt, dir.path(), DEVICE);
    let (mut agent, mut stream) = offline_agent(
        dir.path(),
        &rt,
        &cloud,
        &format!("max_messages = 1000\nmax_bytes = {CAP}\ndrop_policy = \"oldest\""),
    );
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // Every line is taken: older ones make room.
    for n in 0..LINES {
        let a = send(&mut stream, &mut reader, &padded(n));
        assert_eq!(a["ok"], true, "line {n}: {a}");
    }

    // Back online: the newest lines arrive, in order, and the oldest were dropped.
    rt.block_on(cloud.emu.control().clear_faults(DEVICE, None)).unwrap();
    let mut got = Vec::new();
    wait_until(WITHIN, "the last line at the hub", || {
        got = received(&rt, &cloud);
        got.contains(&(LINES - 1))
    });
    let kept = got.len();
    let first = LINES - kept as u64;
    println!(
        "store.max_bytes {CAP}, oldest: offered {LINES} lines, delivered the newest {kept}, dropped {first}"
    );
    assert_eq!(got, (first..LINES).collect::<Vec<_>>(), "a contiguous run of the newest lines");
    assert!(first > 0, "nothing was dropped");
    assert!(kept * (padded(0).len() + 2) <= CAP, "{kept} lines kept under a cap of {CAP} bytes");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}
