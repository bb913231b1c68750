//! Offline: the on-disk store's caps from the configuration apply while the hub refuses
//! the agent (`store.max_messages` with `drop_policy = "newest"` refuses the newest,
//! `store.max_bytes` refuses new telemetry), and what was accepted is delivered once the
//! hub takes the agent back.
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

#[test]
fn max_bytes_refuses_new_telemetry_while_offline() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cloud = ExternalCloud::start(&rt, dir.path(), DEVICE);
    let (mut agent, mut stream) =
        offline_agent(dir.path(), &rt, &cloud, "max_messages = 1000\nmax_bytes = 2048");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let filler = "x".repeat(200);
    let mut accepted = 0usize;
    let mut refusal = None;
    let mut n = 0;
    wait_until(WITHIN, "a line refused for store.max_bytes", || {
        let a = send(&mut stream, &mut reader, &format!("{{\"n\":{n},\"pad\":\"{filler}\"}}"));
        n += 1;
        if a["ok"] == true {
            accepted += 1;
        } else {
            refusal = a["error"].as_str().map(str::to_owned);
        }
        refusal.is_some()
    });
    let refusal = refusal.unwrap();
    assert!(refusal.contains("store.max_bytes"), "{refusal}");
    // At least the cap's worth was taken before refusing.
    assert!(accepted * 200 >= 2048, "accepted {accepted} lines");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}
