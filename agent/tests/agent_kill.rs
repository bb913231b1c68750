//! SIGKILL mid-stream and restart: every line the agent acknowledged on its ingestion
//! socket (it answers `{"ok":true}` only once the Publisher accepted and stored the
//! message) reaches the hub after the restart. The emulator runs in the test process, so
//! it outlives the killed agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{rt, Agent, ExternalCloud, WITHIN};
use nix::sys::signal::Signal;
use test_support::wait_until;

const DEVICE: &str = "agent-kill";
const MAX_LINES: u64 = 50_000;

#[test]
fn sigkill_mid_stream_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cloud = ExternalCloud::start(&rt, dir.path(), DEVICE);
    let state = dir.path().join("s");
    let socket = dir.path().join("in.sock");
    let cfg = dir.path().join("agent.toml");
    let extra = format!(
        "[telemetry]\ndevice_stats = false\n[ingest]\nsocket = {socket:?}\nbatch_max_messages = 20\nbatch_max_delay = \"20ms\"\n"
    );
    std::fs::write(&cfg, cloud.config(&state, &extra)).unwrap();
    let args = ["--config", cfg.to_str().unwrap()];

    let mut agent = Agent::start(&args);
    agent.wait_line("connected", |l| l.starts_with("status: connected device=agent-kill"));

    // A producer writing numbered lines as fast as the agent takes them; the agent's
    // answers are read on another thread.
    let stream = UnixStream::connect(&socket).unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (acked, refused) = (acked.clone(), refused.clone());
        let r = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let seq = v["seq"].as_u64().unwrap();
                if v["ok"] == true {
                    acked.lock().unwrap().insert(seq - 1); // line N carries n = N - 1
                } else {
                    refused.lock().unwrap().push(line);
                }
            }
        })
    };
    let writer = {
        let stop = stop.clone();
        let mut w = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < MAX_LINES {
                if writeln!(w, "{{\"n\":{n}}}").is_err() {
                    break;
                }
                n += 1;
            }
            n
        })
    };

    wait_until(WITHIN, "300 lines acknowledged", || acked.lock().unwrap().len() >= 300);
    agent.signal(Signal::SIGKILL);
    let st = agent.wait_exit();
    assert_eq!(st.code(), None, "killed by a signal");
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    reader.join().unwrap();
    let accepted: BTreeSet<u64> = acked.lock().unwrap().clone();
    assert!(written > accepted.len() as u64 || written == MAX_LINES, "the kill came mid-stream");

    // Restart on the same state directory: the store is replayed.
    let mut agent = Agent::start(&args);
    agent.wait_line("connected again", |l| l.starts_with("status: connected device=agent-kill"));
    let ctl = cloud.emu.control();
    let mut delivered = BTreeSet::new();
    let mut duplicates = 0usize;
    let mut last = (0usize, 0usize);
    wait_until(WITHIN, "every accepted line at the hub", || {
        let msgs = rt.block_on(ctl.telemetry(DEVICE, None)).unwrap();
        delivered.clear();
        duplicates = 0;
        for m in &msgs {
            let batch: Vec<serde_json::Value> = serde_json::from_str(m.payload.as_deref().unwrap()).unwrap();
            for v in batch {
                if !delivered.insert(v["n"].as_u64().unwrap()) {
                    duplicates += 1;
                }
            }
        }
        last = (msgs.len(), delivered.len());
        accepted.is_subset(&delivered)
    });
    let lost = accepted.difference(&delivered).count();
    println!(
        "accepted {}, delivered {}, lost {lost} (duplicates {duplicates}, messages {}, written {written}, refused {})",
        accepted.len(),
        accepted.intersection(&delivered).count(),
        last.0,
        refused.lock().unwrap().len()
    );
    assert_eq!(lost, 0);
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}
