//! `--demo`: the embedded emulator's back end, played by the agent itself, so that one
//! command shows every feature end to end: a desired change reaching `desired.json`, the
//! device's `reported.json` reaching the twin or shadow, a direct method (Azure) or a job
//! (AWS) running an allow-listed handler, one that is not allow-listed refused, and the
//! telemetry the cloud received.
//!
//! It writes a `hello` handler into `<state_dir>/demo-handlers` and allow-lists it (unless
//! handlers are configured), and starts once the first session is connected.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_emulator::control::api::MethodInvocation;
use connector_emulator::control::aws_api::{CreateJob, JobExecutionStatus};
use connector_emulator::ControlClient;
use serde_json::{json, Value};

use crate::config::{Cloud, CloudKind, ConfigError, Origin, Settings};

const HELLO: &str = "#!/bin/sh\necho \"hello from the device: $*\"\n";

/// Checks that the cloud is the embedded emulator and installs the demo handler.
pub fn prepare(settings: &mut Settings) -> Result<(), ConfigError> {
    if !matches!(settings.cloud, Cloud::Embedded(_)) {
        return Err(ConfigError::Invalid {
            origin: Origin::Flag("--demo"),
            key: "cloud.embedded".into(),
            reason: "--demo plays the back end of the embedded emulator: run it without [azure]/[aws]".into(),
        });
    }
    if settings.handlers.dir.is_some() {
        return Ok(());
    }
    let dir = settings.state_dir.join("demo-handlers");
    let io = |error| ConfigError::File {
        origin: Origin::Flag("--demo"),
        key: "handlers.dir".into(),
        path: dir.clone(),
        error,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    let script = dir.join("hello");
    std::fs::write(&script, HELLO).map_err(io)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    settings.handlers.dir = Some(dir);
    settings.handlers.allow = vec!["hello".into()];
    Ok(())
}

/// Polls `f` every 100 ms for up to 15 s.
async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn read_json(p: &Path) -> Option<Value> {
    std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Plays the back end against the running agent (printing `demo:` lines).
pub async fn play(
    control_url: String,
    flavour: CloudKind,
    device: String,
    desired: PathBuf,
    reported: PathBuf,
) {
    let ctl = match ControlClient::new(&control_url) {
        Ok(c) => c,
        Err(e) => {
            say!("demo: cannot reach the emulator's control API: {e}");
            return;
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let want = json!({"fan": 2, "mode": "eco"});
    let patched = match flavour {
        CloudKind::Azure => ctl.patch_desired(&device, None, json!({"demo": want})).await.map(|_| ()),
        CloudKind::Aws => ctl.aws_update_desired(&device, None, json!({"demo": want})).await.map(|_| ()),
    };
    match patched {
        Ok(()) => say!("demo: back end set desired demo = {want}"),
        Err(e) => say!("demo: desired change failed: {e}"),
    }
    if eventually(|| async { read_json(&desired).is_some_and(|v| v["demo"] == want) }).await {
        say!("demo: {} now holds demo = {want}", desired.display());
    } else {
        say!("demo: the desired change did not reach {}", desired.display());
    }
    let ack = json!({"fan": 2, "mode": "eco", "applied": true});
    if let Err(e) = std::fs::write(&reported, json!({"demo": ack}).to_string()) {
        say!("demo: cannot write {}: {e}", reported.display());
    }
    let reported_ok = eventually(|| async {
        let doc = match flavour {
            CloudKind::Azure => ctl
                .twin(&device, None)
                .await
                .ok()
                .and_then(|t| t.pointer("/properties/reported/demo").cloned()),
            CloudKind::Aws => ctl
                .aws_shadow(&device, None)
                .await
                .ok()
                .and_then(|s| s.pointer("/state/reported/demo").cloned()),
        };
        doc.as_ref() == Some(&ack)
    })
    .await;
    say!(
        "demo: {} {} the cloud's reported state",
        reported.display(),
        if reported_ok { "reached" } else { "did not reach" }
    );
    match flavour {
        CloudKind::Azure => {
            for (name, payload) in [("hello", json!(["world"])), ("format-disk", json!(null))] {
                let inv = MethodInvocation {
                    method_name: name.into(),
                    payload: Some(payload),
                    response_timeout_in_seconds: Some(15),
                    timeout_ms: None,
                };
                match ctl.invoke(&device, None, &inv).await {
                    Ok(r) => say!("demo: back end invoked method {name} → {} {}", r.status, r.payload),
                    Err(e) => say!("demo: method {name} failed: {e}"),
                }
            }
            let mut n = 0;
            for _ in 0..150 {
                n = ctl.telemetry(&device, None).await.map_or(0, |t| t.len());
                if n > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            say!("demo: the hub received {n} telemetry message(s) from {device}");
        }
        CloudKind::Aws => {
            for (id, op) in [("demo-hello", "hello"), ("demo-format-disk", "format-disk")] {
                let job =
                    CreateJob::new(id, json!({"operation": op, "args": ["world"]}), vec![device.clone()]);
                if let Err(e) = ctl.aws_create_job(&job).await {
                    say!("demo: creating job {id} failed: {e}");
                    continue;
                }
                let mut last = None;
                for _ in 0..150 {
                    last = ctl.aws_job_execution(&device, id, None).await.ok();
                    if last.as_ref().is_some_and(|e| {
                        !matches!(e.status, JobExecutionStatus::Queued | JobExecutionStatus::InProgress)
                    }) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                match last {
                    Some(e) => {
                        say!("demo: back end job {id} ({op}) → {:?} {:?}", e.status, e.status_details)
                    }
                    None => say!("demo: job {id} did not finish"),
                }
            }
            let mut n = 0;
            for _ in 0..150 {
                n = ctl.aws_telemetry(Some(&device), None).await.map_or(0, |t| t.len());
                if n > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            say!("demo: AWS IoT received {n} telemetry message(s) from {device}");
        }
    }
}
