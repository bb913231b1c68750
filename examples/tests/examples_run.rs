//! Every example binary runs against the emulator by default: each is started as a
//! process with no cloud configured, must exit 0 within its deadline, and must print the
//! line that shows it did its whole job.
#![allow(clippy::unwrap_used)]

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `exe` with no cloud configuration; returns its stdout after a successful exit.
fn run(exe: &str) -> String {
    let mut child = Command::new(exe)
        .env_remove("AZURE_IOT_CONNECTION_STRING")
        .env_remove("AWS_IOT_ENDPOINT")
        .env_remove("DPS_ID_SCOPE")
        .env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{exe} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{exe} failed with {status}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

#[test]
fn azure_device_runs_on_the_emulator() {
    let out = run(env!("CARGO_BIN_EXE_azure_device"));
    assert!(out.contains("telemetry message(s) received from"), "{out}");
}

#[test]
fn dps_then_connect_runs_on_the_emulator() {
    let out = run(env!("CARGO_BIN_EXE_dps_then_connect"));
    assert!(out.contains("the emulator received"), "{out}");
}

#[test]
fn fleet_provisioning_runs_on_the_emulator() {
    let out = run(env!("CARGO_BIN_EXE_fleet_provisioning"));
    assert!(out.contains("the emulator received"), "{out}");
}

#[test]
fn aws_shadow_sync_runs_on_the_emulator() {
    let out = run(env!("CARGO_BIN_EXE_aws_shadow_sync"));
    assert!(out.contains("in sync: desired and reported agree on both shadows"), "{out}");
}

#[test]
fn aws_jobs_runner_runs_on_the_emulator() {
    let out = run(env!("CARGO_BIN_EXE_aws_jobs_runner"));
    assert!(out.contains("all jobs ended as expected"), "{out}");
    for line in ["install-2-1: Succeeded", "buggy-1: Failed", "format-disk-1: Rejected"] {
        assert!(out.contains(line), "{line}: {out}");
    }
}
