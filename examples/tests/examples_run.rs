//! Every example binary runs against the emulator by default: each is started as a
//! process with no cloud configured, must exit 0 within its deadline, and must print the
//! line that shows it did its whole job.
#![allow(clippy::unwrap_used)]

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `exe` with no cloud configuration; returns its stdout after a successful exit.
fn run(exe: &str) -> String {
    run_with(exe, &[])
}

/// [`run`] with arguments.
fn run_with(exe: &str, args: &[&str]) -> String {
    let mut child = Command::new(exe)
        .args(args)
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

/// The simulator's final line, e.g. `fleet: done: 40/40 connected at the end, telemetry
/// acked=120 failed=0, methods answered 10/10`.
fn fleet_summary(out: &str) -> (usize, usize, u64, u64, String) {
    let line =
        out.lines().find(|l| l.starts_with("fleet: done:")).unwrap_or_else(|| panic!("no summary: {out}"));
    let num = |after: &str| -> u64 {
        let rest = &line[line.find(after).unwrap_or_else(|| panic!("{after} in {line}")) + after.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
    };
    let (up, n) = line["fleet: done: ".len()..].split_once(" connected").unwrap().0.split_once('/').unwrap();
    let answered = line.rsplit(' ').next().unwrap().to_owned();
    (up.parse().unwrap(), n.parse().unwrap(), num("acked="), num("failed="), answered)
}

#[test]
fn fleet_simulator_runs_an_azure_fleet_on_the_emulator() {
    let exe = env!("CARGO_BIN_EXE_fleet_simulator");
    let out = run_with(exe, &["--devices", "40", "--rate", "2", "--duration", "3"]);
    let (up, n, acked, failed, answered) = fleet_summary(&out);
    assert_eq!((up, n, failed), (40, 40, 0), "{out}");
    assert!(acked >= 40, "every device sent telemetry: {out}");
    assert_eq!(answered, "10/10", "{out}");
}

#[test]
fn fleet_simulator_runs_an_aws_fleet_on_the_emulator() {
    let exe = env!("CARGO_BIN_EXE_fleet_simulator");
    let out = run_with(exe, &["--cloud", "aws", "--devices", "30", "--rate", "2", "--duration", "3"]);
    let (up, n, acked, failed, answered) = fleet_summary(&out);
    assert_eq!((up, n, failed), (30, 30, 0), "{out}");
    assert!(acked >= 30, "every device sent telemetry: {out}");
    assert_eq!(answered, "10/10", "{out}");
}
