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

/// Whether a log line is a DEBUG or TRACE event of one of the MQTT client library's
/// targets (`paho_mqtt`, `paho_mqtt::…`, `paho_mqtt_c`).
fn paho_debug_line(line: &str) -> bool {
    let l = common::strip_ansi(line);
    let mut words = l.split_whitespace().skip_while(|w| *w != "DEBUG" && *w != "TRACE");
    words.next().is_some() && words.next().is_some_and(|target| target.starts_with("paho_mqtt"))
}

/// What a log must never show: the enrollment key, and any SAS token or signature.
fn assert_no_secret(dir: &std::path::Path, out: &str, filter: &str) {
    let key = std::fs::read_to_string(dir.join("emulator").join("agent-enrollment.key")).unwrap();
    let key = key.trim();
    assert!(key.len() >= 40, "the enrollment key file holds a key");
    assert!(!out.contains(key), "{filter}: the enrollment key is in the output");
    assert!(!out.contains("sig="), "{filter}: a SAS signature is in the output");
    assert!(!out.contains("SharedAccessSignature"), "{filter}: a SAS token is in the output");
    // The library prints the password as a list of byte values.
    for text in ["SharedAccessSignature", "sig="] {
        let bytes = text.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
        assert!(!out.contains(&bytes), "{filter}: {text} as bytes is in the output");
    }
    let paho: Vec<&str> = out.lines().filter(|l| paho_debug_line(l)).collect();
    assert!(paho.is_empty(), "{filter}: DEBUG/TRACE lines of the MQTT client library: {paho:#?}");
}

#[test]
fn secrets_never_reach_the_logs_even_at_trace_level() {
    // The MQTT client library prints its connect options (the SAS token is the password)
    // at DEBUG and TRACE: its targets stay at INFO whatever the filter says, however
    // specific the directive.
    let filters = [
        "trace",
        "trace,paho_mqtt=trace,paho_mqtt_c=trace",
        "paho_mqtt::async_client=trace,paho_mqtt::token=trace,paho_mqtt::connect_options=trace,paho_mqtt_c=trace,trace",
        "info,[{device}]=trace,paho_mqtt[]=trace,paho_mqtt::async_client[{x}]=trace,paho_mqtt_c[]=trace",
        "paho_mqtt=trace",
    ];
    for filter in filters {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_str().unwrap();
        let mut agent = Agent::start(&[
            "--state-dir",
            state,
            "--metrics-addr",
            "off",
            "--log-level",
            filter,
            "--status-interval",
            "300ms",
            "--telemetry-interval",
            "200ms",
        ]);
        agent.wait_line("connected", |l| l.starts_with("status: connected"));
        agent.wait_line("a device-stats publish", |l| l.starts_with("status: ") && !l.contains("sent=0"));
        agent.signal(Signal::SIGTERM);
        assert_eq!(agent.wait_exit().code(), Some(0), "{filter}: {}", agent.output());
        let out = agent.output();
        if filter.starts_with("trace") || filter.ends_with(",trace") {
            assert!(
                out.lines().count() > 20 && out.contains("TRACE"),
                "{filter}: trace logging is on: {out}"
            );
        }
        // The library's INFO lines and up still show.
        assert_no_secret(dir.path(), &out, filter);
    }
}

#[test]
fn the_mqtt_library_cap_holds_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    let write = |level: &str| {
        let state = dir.path();
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nstate_dir = {state:?}\nstatus_interval = \"300ms\"\n[telemetry]\ninterval = \"200ms\"\n\
                 [metrics]\nenabled = false\n[logging]\nlevel = \"{level}\"\n"
            ),
        )
        .unwrap();
    };
    write("info");
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    let url = agent.wait_value("emulator: control API ");
    let ctl = ControlClient::new(url.split(',').next().unwrap()).unwrap();
    agent.wait_line("connected", |l| l.starts_with("status: connected"));
    let filter = "trace,paho_mqtt=trace,paho_mqtt::async_client=trace,paho_mqtt_c=trace";
    write(filter);
    agent.signal(Signal::SIGHUP);
    agent.wait_line("the reload", |l| l == "reload: configuration applied");
    // A new connection under the new filter: the library logs its connect options (with
    // the SAS token) at DEBUG, were it not capped.
    rt().block_on(ctl.drop_connection("connector-agent", None)).unwrap();
    agent.wait_line("a reconnect logged at DEBUG", |l| {
        let l = common::strip_ansi(l);
        l.contains(" DEBUG ") && l.contains("lifecycle") && l.contains("event=Connected")
    });
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    assert_no_secret(dir.path(), &agent.output(), filter);
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
