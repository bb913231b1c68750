//! Operations: direct methods run allow-listed handlers (others refused), SIGHUP reloads
//! the allow-list, the telemetry interval and the log level, systemd hears READY/WATCHDOG/
//! STOPPING on $NOTIFY_SOCKET, and --log-json logs JSON lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::{rt, Agent, WITHIN};
use connector_emulator::control::api::MethodInvocation;
use connector_emulator::ControlClient;
use nix::sys::signal::Signal;
use serde_json::json;
use test_support::wait_until;

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn invoke(
    rt: &tokio::runtime::Runtime,
    ctl: &ControlClient,
    name: &str,
    payload: serde_json::Value,
) -> (i64, serde_json::Value) {
    let inv = MethodInvocation {
        method_name: name.into(),
        payload: Some(payload),
        response_timeout_in_seconds: Some(20),
        timeout_ms: None,
    };
    let r = rt.block_on(ctl.invoke("connector-agent", None, &inv)).unwrap();
    (r.status, r.payload)
}

#[test]
fn methods_run_allow_listed_handlers_and_sighup_reloads() {
    let dir = common::trusted_tempdir();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir(&handlers).unwrap();
    script(&handlers, "hello", "echo \"hello $1\"");
    script(&handlers, "fail", "echo oops >&2; exit 3");
    script(&handlers, "secret", "echo should-not-run");
    // Allow-listed, but owned by another user (who could rewrite it): refused, with a
    // warning naming the file and the reason.
    script(&handlers, "theirs", "echo should-not-run");
    let root = nix::unistd::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(handlers.join("theirs"), Some(65534), Some(65534)).unwrap();
    }
    let state = dir.path().join("state");
    let cfg = dir.path().join("agent.toml");
    let write_cfg = |allow: &str, interval: &str, level: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nstate_dir = {state:?}\nstatus_interval = \"300ms\"\n[cloud]\nembedded = true\n\
                 [telemetry]\ninterval = \"{interval}\"\n[handlers]\ndir = {handlers:?}\nallow = [{allow}]\ntimeout = \"10s\"\n\
                 [metrics]\nenabled = false\n[logging]\nlevel = \"{level}\"\n"
            ),
        )
        .unwrap();
    };
    write_cfg("\"hello\", \"fail\", \"theirs\"", "1h", "warn");
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    let url = agent.wait_value("emulator: control API ");
    let ctl = ControlClient::new(url.split(',').next().unwrap()).unwrap();
    agent.wait_line("connected", |l| l.starts_with("status: connected"));
    let rt = rt();

    let (status, payload) = invoke(&rt, &ctl, "hello", json!(["world"]));
    assert_eq!((status, payload["stdout"].as_str()), (200, Some("hello world\n")), "{payload}");
    let (status, payload) = invoke(&rt, &ctl, "fail", json!(null));
    assert_eq!((status, payload["exitCode"].as_i64()), (500, Some(3)), "{payload}");
    assert_eq!(payload["stderr"], "oops\n");
    // Present in the directory but not allow-listed: refused, and it did not run.
    let (status, payload) = invoke(&rt, &ctl, "secret", json!(null));
    assert_eq!(status, 403, "{payload}");
    assert!(payload["error"].as_str().unwrap().contains("not allow-listed"), "{payload}");
    let (status, _) = invoke(&rt, &ctl, ".hidden", json!(null));
    assert_eq!(status, 403);
    if root {
        let (status, payload) = invoke(&rt, &ctl, "theirs", json!(null));
        assert_eq!(status, 403, "{payload}");
        assert!(payload["error"].as_str().unwrap().contains("owned by uid 65534"), "{payload}");
        let file = handlers.canonicalize().unwrap().join("theirs");
        agent.wait_line("the refusal's warning", |l| {
            let l = common::strip_ansi(l);
            l.starts_with("E: ")
                && l.contains("WARN")
                && l.contains("method handler refused")
                && l.contains(&format!("path=\"{}\"", file.display()))
                && l.contains("neither root nor the agent's user")
        });
    }

    // At most the first device-stats sample (1 s after start; the interval is an hour).
    let stats = |ctl: &ControlClient| {
        rt.block_on(ctl.telemetry("connector-agent", None))
            .unwrap()
            .iter()
            .filter(|m| m.properties.get("source").cloned().flatten().as_deref() == Some("device-stats"))
            .count()
    };
    let before = stats(&ctl);
    assert!(before <= 1, "{before} samples");

    // SIGHUP: the allow-list, the telemetry interval and the log level change in place.
    write_cfg("\"hello\", \"secret\"", "200ms", "debug");
    agent.signal(Signal::SIGHUP);
    agent.wait_line("the reload", |l| l == "reload: configuration applied");
    let (status, payload) = invoke(&rt, &ctl, "secret", json!(null));
    assert_eq!(status, 200, "{payload}");
    let (status, _) = invoke(&rt, &ctl, "fail", json!(null));
    assert_eq!(status, 403);
    wait_until(WITHIN, "device stats at the new interval", || stats(&ctl) >= before + 2);
    agent.wait_line("a debug log line", |l| l.starts_with("E: ") && l.contains("DEBUG"));

    // A broken file on SIGHUP keeps the running configuration.
    std::fs::write(&cfg, "[telemetry]\ninterval = \"never\"\n").unwrap();
    agent.signal(Signal::SIGHUP);
    agent
        .wait_line("the refused reload", |l| l.contains("reload failed") && l.contains("telemetry.interval"));
    let (status, _) = invoke(&rt, &ctl, "hello", json!("again"));
    assert_eq!(status, 200);

    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let dir = common::trusted_tempdir();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let state = dir.path().join("state");
    let mut agent = Agent::start_env(
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--metrics-addr",
            "off",
            "--log-level",
            "warn",
            "--log-json",
        ],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")],
    );
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv = |seen: &mut Vec<String>| {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    wait_until(WITHIN, "READY=1 then two WATCHDOG=1", || {
        recv(&mut seen);
        seen.iter().any(|m| m.contains("READY=1"))
            && seen.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() >= 2
    });
    wait_until(WITHIN, "a STATUS= with the status line", || {
        recv(&mut seen);
        seen.iter().any(|m| m.starts_with("STATUS=status: "))
    });
    agent.signal(Signal::SIGTERM);
    wait_until(WITHIN, "STOPPING=1", || {
        recv(&mut seen);
        seen.iter().any(|m| m == "STOPPING=1")
    });
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    // --log-json: every log line on stderr is a JSON object.
    let out = agent.output();
    let logs: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("E: ")).collect();
    for l in &logs {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
}
