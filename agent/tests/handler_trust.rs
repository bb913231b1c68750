//! Who may change what a handler runs: the file and every directory above it must be owned
//! by root or the agent's user and not writable by group or others, and what runs is the
//! file that was checked, whatever its path holds by then. Real files, real owners (the
//! tests run as root and hand files to uid 65534), real processes.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_agent::handlers::{Distrust, HandlerError, HandlerOptions, HandlerRunner, Invocation, Outcome};
use connector_core::jobs::JobStatus;
use serde_json::json;

/// Not the agent's user: nobody on most systems.
const STRANGER: u32 = 65534;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An executable script that leaves `marker` behind when it runs.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    chmod(&p, 0o755);
    p
}

fn runner(dir: &Path, allow: &[&str]) -> HandlerRunner {
    let mut o = HandlerOptions::new(dir, allow.iter().copied());
    o.timeout = Duration::from_secs(10);
    HandlerRunner::new(o).unwrap()
}

fn only_root_can_test() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: handing files to another user needs root");
        assert!(std::env::var_os("CI").is_none(), "CI runs the tests as root");
        return false;
    }
    true
}

/// A refused handler answers 403 / REJECTED and never runs.
async fn refused_and_did_not_run(r: &HandlerRunner, name: &str, marker: &Path) {
    let m = r.run_method(name, &json!(null)).await;
    assert_eq!(m.status, 403, "{}", m.payload);
    assert!(m.payload["error"].as_str().unwrap().contains("not trusted"), "{}", m.payload);
    let j = r.run_job(&json!({ "operation": name })).await;
    assert_eq!(j.status, JobStatus::Rejected);
    assert!(j.status_details["reason"].contains("not trusted"), "{:?}", j.status_details);
    assert!(!marker.exists(), "a refused handler never runs");
}

#[tokio::test]
async fn a_handler_below_a_group_or_world_writable_directory_is_refused() {
    let base = common::trusted_tempdir();
    let marker = base.path().join("ran");
    // The handler directory itself becomes group-writable after start-up.
    let dir = base.path().join("handlers");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    script(&dir, "run", &format!("touch {}", marker.display()));
    let r = runner(&dir, &["run"]);
    chmod(&dir, 0o775);
    match r.resolve("run") {
        Err(HandlerError::Untrusted { path, reason: Distrust::Writable { mode: 0o775 }, .. }) => {
            assert_eq!(path, dir.canonicalize().unwrap())
        }
        other => panic!("expected Untrusted(Writable) for the directory, got {other:?}"),
    }
    refused_and_did_not_run(&r, "run", &marker).await;
    // And at start-up it is a configuration error.
    let e = HandlerRunner::new(HandlerOptions::new(&dir, ["run"])).unwrap_err();
    assert!(matches!(e, HandlerError::UntrustedDirectory { reason: Distrust::Writable { .. }, .. }), "{e:?}");

    // A sticky world-writable directory above (like /tmp) is refused too.
    let sticky = base.path().join("sticky");
    let below = sticky.join("handlers");
    std::fs::create_dir_all(&below).unwrap();
    chmod(&below, 0o755);
    script(&below, "run", &format!("touch {}", marker.display()));
    let r = runner(&below, &["run"]);
    chmod(&sticky, 0o1777);
    match r.resolve("run") {
        Err(HandlerError::Untrusted { path, reason: Distrust::Writable { mode: 0o1777 }, .. }) => {
            assert_eq!(path, sticky.canonicalize().unwrap())
        }
        other => panic!("expected Untrusted(Writable) for the sticky parent, got {other:?}"),
    }
    refused_and_did_not_run(&r, "run", &marker).await;

    // Handlers in a directory made in /tmp: refused from the start, naming /tmp.
    let in_tmp = tempfile::tempdir().unwrap();
    chmod(in_tmp.path(), 0o755);
    match HandlerRunner::new(HandlerOptions::new(in_tmp.path(), ["run"])) {
        Err(e @ HandlerError::UntrustedDirectory { .. }) => {
            assert!(e.to_string().contains("writable by group or others"), "{e}");
            assert_eq!(e.path(), Some(std::env::temp_dir().canonicalize().unwrap().as_path()));
        }
        other => panic!("expected UntrustedDirectory, got {other:?}"),
    }
}

#[tokio::test]
async fn a_handler_owned_by_another_user_is_refused() {
    if !only_root_can_test() {
        return;
    }
    let base = common::trusted_tempdir();
    let marker = base.path().join("ran");
    let dir = base.path().join("handlers");
    std::fs::create_dir(&dir).unwrap();
    // 0755 and in a trusted directory: only its owner makes it unsafe (its owner can
    // rewrite it and have the agent run their code).
    let theirs = script(&dir, "theirs", &format!("touch {}", marker.display()));
    std::os::unix::fs::chown(&theirs, Some(STRANGER), Some(STRANGER)).unwrap();
    let r = runner(&dir, &["theirs"]);
    match r.resolve("theirs") {
        Err(HandlerError::Untrusted { path, reason: Distrust::Owner { uid: STRANGER }, .. }) => {
            assert_eq!(path, theirs.canonicalize().unwrap())
        }
        other => panic!("expected Untrusted(Owner), got {other:?}"),
    }
    refused_and_did_not_run(&r, "theirs", &marker).await;

    // A directory on the path owned by another user: they can rename anything into it.
    let owned = base.path().join("owned");
    let below = owned.join("handlers");
    std::fs::create_dir_all(&below).unwrap();
    script(&below, "run", &format!("touch {}", marker.display()));
    let r = runner(&below, &["run"]);
    std::os::unix::fs::chown(&owned, Some(STRANGER), None).unwrap();
    assert!(matches!(
        r.resolve("run"),
        Err(HandlerError::Untrusted { reason: Distrust::Owner { uid: STRANGER }, .. })
    ));
    refused_and_did_not_run(&r, "run", &marker).await;
    assert!(matches!(
        HandlerRunner::new(HandlerOptions::new(&below, ["run"])),
        Err(HandlerError::UntrustedDirectory { reason: Distrust::Owner { uid: STRANGER }, .. })
    ));
}

#[tokio::test]
async fn group_or_other_writable_handler_files_are_refused() {
    let dir = common::trusted_tempdir();
    let marker = dir.path().join("ran");
    for (name, mode) in [("other-writable", 0o757), ("group-writable", 0o775)] {
        let p = script(dir.path(), name, &format!("touch {}", marker.display()));
        chmod(&p, mode);
        let r = runner(dir.path(), &[name]);
        assert!(matches!(r.resolve(name), Err(HandlerError::UnsafePermissions { .. })), "{name}");
        assert!(matches!(r.check(name), Err(HandlerError::UnsafePermissions { .. })), "{name}");
        assert_eq!(r.run_method(name, &json!(null)).await.status, 403, "{name}");
        assert_eq!(r.run_job(&json!({ "operation": name })).await.status, JobStatus::Rejected);
        assert!(!marker.exists(), "{name} must not run");
    }
}

#[tokio::test]
async fn a_file_swapped_after_the_check_still_runs_the_checked_content() {
    let dir = common::trusted_tempdir();
    script(dir.path(), "swap", "echo checked");
    let r = runner(dir.path(), &["swap"]);
    let checked = r.check("swap").unwrap();

    // Between the check and the execution the path gets other content, renamed over it
    // (here a world-writable file: it would be refused if it were looked at).
    let evil = script(dir.path(), "evil.tmp", "echo swapped");
    chmod(&evil, 0o777);
    std::fs::rename(&evil, dir.path().join("swap")).unwrap();
    let x = r.run_checked(&checked, &Invocation::default()).await.unwrap();
    assert_eq!((x.outcome, x.stdout.as_str()), (Outcome::Exited(0), "checked\n"));
    // Looked up afresh, the replacement is refused.
    assert!(matches!(r.check("swap"), Err(HandlerError::UnsafePermissions { .. })));

    // Replaced by a trusted file: a new check runs the new content; the old check still
    // runs the old one, even with the old file unlinked.
    script(dir.path(), "swap", "echo first");
    let checked = r.check("swap").unwrap();
    script(dir.path(), "next.tmp", "echo second");
    std::fs::rename(dir.path().join("next.tmp"), dir.path().join("swap")).unwrap();
    let x = r.run_checked(&checked, &Invocation { args: vec!["a".into()], stdin: None }).await.unwrap();
    assert_eq!(x.stdout, "first\n");
    let x = r.run("swap", &Invocation::default()).await.unwrap();
    assert_eq!(x.stdout, "second\n");
}

#[tokio::test]
async fn proper_handlers_run_elf_binaries_and_scripts() {
    let dir = common::trusted_tempdir();
    // An ELF binary (a copy of the system's printf, so the checked file is ours).
    let elf = dir.path().join("print");
    let printf = ["/usr/bin/printf", "/bin/printf"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    std::fs::copy(printf, &elf).unwrap();
    chmod(&elf, 0o755);
    assert_eq!(&std::fs::read(&elf).unwrap()[..4], b"\x7fELF");
    script(dir.path(), "script", r#"echo "script: $# $*"; cat"#);
    let r = runner(dir.path(), &["print", "script"]);

    let m = r.run_method("print", &json!(["%s-%s\n", "a b", "c"])).await;
    assert_eq!((m.status, m.payload["stdout"].as_str()), (200, Some("a b-c\n")), "{}", m.payload);
    let m = r.run_method("script", &json!(["x", "y"])).await;
    assert_eq!((m.status, m.payload["stdout"].as_str()), (200, Some("script: 2 x y\n")), "{}", m.payload);
    let m = r.run_method("script", &json!({"k": 1})).await;
    assert_eq!(m.payload["stdout"], "script: 0 \n{\"k\":1}\n", "stdin still reaches a script");
    let j = r.run_job(&json!({"operation": "print", "args": ["job %s", "ok"]})).await;
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(j.status_details["stdout"], "job ok");
}
