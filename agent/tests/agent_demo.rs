//! `--demo` (the README's first command): the agent plays its embedded emulator's back
//! end and every step shows in its output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Agent;
use nix::sys::signal::Signal;

fn demo(cloud: &str, steps: &[&str]) {
    let dir = common::trusted_tempdir();
    let state = dir.path().to_str().unwrap();
    let mut agent = Agent::start(&[
        "--demo",
        "--cloud",
        cloud,
        "--state-dir",
        state,
        "--metrics-addr",
        "127.0.0.1:0",
        "--exit-after",
        "60s",
        "--log-level",
        "error",
    ]);
    for step in steps {
        agent.wait_line(step, |l| l.starts_with("demo: ") && l.contains(step));
    }
    let received =
        agent.wait_line("the telemetry count", |l| l.starts_with("demo: ") && l.contains("received"));
    let n: usize = received.split_whitespace().find_map(|w| w.parse().ok()).unwrap();
    assert!(n >= 1, "{received}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    let out = agent.output();
    assert!(!out.contains("did not"), "{out}");
}

#[test]
fn azure_demo_shows_every_feature() {
    demo(
        "azure",
        &[
            "desired.json now holds demo",
            "reported.json reached",
            "method hello → 200",
            "hello from the device: world",
            "method format-disk → 403",
        ],
    );
}

#[test]
fn aws_demo_shows_every_feature() {
    demo(
        "aws",
        &[
            "desired.json now holds demo",
            "reported.json reached",
            "job demo-hello (hello) → Succeeded",
            "job demo-format-disk (format-disk) → Rejected",
        ],
    );
}

#[test]
fn demo_needs_the_embedded_emulator() {
    let dir = common::trusted_tempdir();
    let cs = dir.path().join("cs");
    std::fs::write(&cs, "HostName=h.example;DeviceId=d;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0").unwrap();
    let (code, out) = common::run_to_end(
        &["--demo", "--state-dir", dir.path().to_str().unwrap()],
        &[("CONNECTOR_AGENT_AZURE_CONNECTION_STRING_FILE", cs.to_str().unwrap())],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("flag --demo") && out.contains("embedded emulator"), "{out}");
}
