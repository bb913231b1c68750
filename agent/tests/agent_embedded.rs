//! The embedded default end to end: the agent binary with no configuration starts the
//! emulator in-process, provisions through DPS, connects over TLS, sends device stats,
//! serves /metrics, and stops on SIGTERM with exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http_get, parse_prometheus, rt, sample, Agent, WITHIN};
use connector_emulator::ControlClient;
use nix::sys::signal::Signal;
use test_support::wait_until;

#[test]
fn embedded_default_sends_stats_serves_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let mut agent = Agent::start(&[
        "--state-dir",
        state,
        "--metrics-addr",
        "127.0.0.1:0",
        "--telemetry-interval",
        "200ms",
        "--status-interval",
        "300ms",
        "--log-level",
        "warn",
    ]);
    let url = agent.wait_value("emulator: control API ");
    let url = url.split(',').next().unwrap().to_owned();
    let metrics = agent.wait_value("metrics: http://");
    let metrics_addr = metrics.trim_end_matches("/metrics").to_owned();
    agent.wait_line("provisioned through DPS", |l| {
        l.starts_with("identity: device connector-agent") && l.contains("DPS")
    });
    agent.wait_line("a connected status line", |l| l.starts_with("status: connected device=connector-agent"));

    // Device stats reach the hub as telemetry.
    let rt = rt();
    let ctl = ControlClient::new(&url).unwrap();
    let mut stats = Vec::new();
    wait_until(WITHIN, "two device-stats messages at the emulator", || {
        let got = rt.block_on(ctl.telemetry("connector-agent", None)).unwrap();
        stats = got
            .into_iter()
            .filter(|m| m.properties.get("source").cloned().flatten().as_deref() == Some("device-stats"))
            .collect();
        stats.len() >= 2
    });
    let body: serde_json::Value = serde_json::from_str(stats[1].payload.as_deref().unwrap()).unwrap();
    for key in ["mem_total_bytes", "disk_free_bytes", "uptime_secs", "process_rss_bytes"] {
        assert!(body[key].as_u64().is_some(), "{key} in {body}");
    }
    assert!(body["cpu_percent"].is_number(), "{body}");

    // The twin carries the agent's reported state.
    let twin = rt.block_on(ctl.twin("connector-agent", None)).unwrap();
    let mut reported = twin.pointer("/properties/reported/agent/version").cloned();
    wait_until(WITHIN, "the agent's reported state", || {
        if reported.is_none() {
            let t = rt.block_on(ctl.twin("connector-agent", None)).unwrap();
            reported = t.pointer("/properties/reported/agent/version").cloned();
        }
        reported.is_some()
    });

    // A desired change reaches the local file; the device software's reported file
    // reaches the twin.
    rt.block_on(ctl.patch_desired("connector-agent", None, serde_json::json!({"fan": {"speed": 3}})))
        .unwrap();
    let desired_file = dir.path().join("desired.json");
    wait_until(WITHIN, "the desired change in desired.json", || {
        std::fs::read(&desired_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v.pointer("/fan/speed") == Some(&serde_json::json!(3)))
    });
    let desired: serde_json::Value = serde_json::from_slice(&std::fs::read(&desired_file).unwrap()).unwrap();
    assert!(desired.get("$version").is_none(), "{desired}");
    std::fs::write(dir.path().join("reported.json"), r#"{"firmware":"1.2.3"}"#).unwrap();
    wait_until(WITHIN, "the reported file in the twin", || {
        let t = rt.block_on(ctl.twin("connector-agent", None)).unwrap();
        t.pointer("/properties/reported/firmware") == Some(&serde_json::json!("1.2.3"))
    });
    agent.wait_line("a status line with the new desired version", |l| {
        l.starts_with("status: connected") && l.contains("twin=v2")
    });

    // /metrics parses as Prometheus text and shows the connection and the agent's counters.
    let (code, text) = http_get(&metrics_addr, "/metrics");
    assert_eq!(code, 200);
    let samples = parse_prometheus(&text);
    assert_eq!(
        sample(&samples, "connector_connected", &[("client", "connector-agent")]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &samples,
            "connector_agent_messages_total",
            &[("source", "device_stats"), ("outcome", "accepted")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&samples, "connector_agent_info", &[("cloud", "azure"), ("device", "connector-agent")]),
        Some(1.0)
    );
    assert_eq!(http_get(&metrics_addr, "/healthz").0, 200);
    assert_eq!(http_get(&metrics_addr, "/readyz").0, 200);

    // SIGTERM: flush, DISCONNECT, exit 0.
    agent.signal(Signal::SIGTERM);
    let st = agent.wait_exit();
    let out = agent.output();
    assert_eq!(st.code(), Some(0), "{out}");
    let stopped = out.lines().find(|l| l.starts_with("stopped (SIGTERM)")).unwrap_or_else(|| panic!("{out}"));
    assert!(stopped.contains("pending=0"), "{stopped}");
    // The lock and the socket are released: the directory can be used again at once.
    assert!(!dir.path().join("ingest.sock").exists());
}

#[test]
fn a_second_instance_on_the_same_state_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let args = ["--state-dir", state, "--metrics-addr", "off", "--log-level", "warn"];
    let mut first = Agent::start(&args);
    first.wait_line("the first agent connected", |l| l.starts_with("status: connected"));
    let (code, out) = common::run_to_end(&args, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("another connector-agent")
            && out.contains(&format!("pid {}", first.pid()))
            && out.contains("refusing to start"),
        "{out}"
    );
    first.signal(Signal::SIGINT);
    assert_eq!(first.wait_exit().code(), Some(0), "{}", first.output());
}

#[test]
fn exit_after_bounds_a_demo_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let mut agent = Agent::start(&[
        "--state-dir",
        state,
        "--metrics-addr",
        "off",
        "--exit-after",
        "3s",
        "--log-level",
        "warn",
    ]);
    let st = agent.wait_exit();
    let out = agent.output();
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(out.lines().any(|l| l.starts_with("stopped (--exit-after)")), "{out}");
}

#[test]
fn secrets_never_reach_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let mut agent = Agent::start(&[
        "--state-dir",
        state,
        "--metrics-addr",
        "off",
        "--log-level",
        "trace",
        "--status-interval",
        "300ms",
        "--telemetry-interval",
        "200ms",
    ]);
    agent.wait_line("connected", |l| l.starts_with("status: connected"));
    agent.wait_line("a device-stats publish", |l| l.starts_with("status: ") && !l.contains("sent=0"));
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0));
    let out = agent.output();
    let key = std::fs::read_to_string(dir.path().join("emulator").join("agent-enrollment.key")).unwrap();
    let key = key.trim();
    assert!(key.len() >= 40, "the enrollment key file holds a key");
    // (The MQTT client library's own lines stay at info whatever the level: they print
    // connect options and URLs that carry credentials.)
    assert!(out.lines().count() > 20 && out.contains("TRACE"), "trace logging is on: {out}");
    assert!(!out.contains(key), "the enrollment key is in the output");
    assert!(!out.contains("sig="), "a SAS signature is in the output");
}

#[test]
fn a_closed_stdout_does_not_stop_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .args(["--state-dir", dir.path().to_str().unwrap(), "--metrics-addr", "off", "--log-level", "warn"])
        .args(["--status-interval", "200ms", "--exit-after", "3s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads the status lines: every write after this fails with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
