//! Handlers with real scripts in temp directories: lookup refusals (allow-list, names,
//! traversal, symlink escape, permissions), arguments from methods and jobs, exit-status
//! mapping, timeouts that kill the whole process group, output caps, run-as; trust (owner
//! and modes of the file and of every directory above it) and running exactly the file that
//! was checked.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use connector_agent::handlers::{
    detail_value, job_invocation, method_invocation, HandlerError, HandlerOptions, HandlerRunner, Invocation,
    Outcome, MAX_DETAIL_CHARS,
};
use connector_core::jobs::JobStatus;
use serde_json::json;
use test_support::{wait_until, wait_until_async};

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn runner(dir: &Path, allow: &[&str]) -> HandlerRunner {
    let mut o = HandlerOptions::new(dir, allow.iter().copied());
    o.timeout = Duration::from_secs(10);
    HandlerRunner::new(o).unwrap()
}

#[tokio::test]
async fn success_passes_array_arguments_and_captures_output() {
    let dir = common::trusted_tempdir();
    script(
        dir.path(),
        "greet",
        r#"echo "hello $1 and $2"; echo "$#" >&2; echo "PATH=$PATH HOME=${HOME:-none}""#,
    );
    let r = runner(dir.path(), &["greet"]);
    let x = r.run("greet", &Invocation { args: vec!["a b".into(), "c".into()], stdin: None }).await.unwrap();
    assert_eq!(x.outcome, Outcome::Exited(0));
    assert!(x.stdout.starts_with("hello a b and c\n"), "{}", x.stdout);
    assert!(x.stdout.contains("HOME=none"), "the agent's environment is not inherited: {}", x.stdout);
    assert_eq!(x.stderr, "2\n");
    assert!(!x.truncated);

    let m = r.run_method("greet", &json!(["x", "y"])).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.payload["exitCode"], 0);
    assert!(m.payload["stdout"].as_str().unwrap().starts_with("hello x and y"));

    let j = r.run_job(&json!({"operation": "greet", "args": ["j1", "j2"]})).await;
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(j.status_details["exitCode"], "0");
    assert!(j.status_details["stdout"].starts_with("hello j1 and j2 PATH="), "{:?}", j.status_details);
}

#[tokio::test]
async fn object_payload_goes_to_stdin_and_scalars_become_one_argument() {
    let dir = common::trusted_tempdir();
    script(
        dir.path(),
        "echo-in",
        r#"printf 'args=%s;' "$#"; for a in "$@"; do printf '%s;' "$a"; done; cat"#,
    );
    let r = runner(dir.path(), &["echo-in"]);
    let m = r.run_method("echo-in", &json!({"level": 3})).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.payload["stdout"], "args=0;{\"level\":3}\n");
    let m = r.run_method("echo-in", &json!("one arg")).await;
    assert_eq!(m.payload["stdout"], "args=1;one arg;");
    let m = r.run_method("echo-in", &json!(7)).await;
    assert_eq!(m.payload["stdout"], "args=1;7;");
    let m = r.run_method("echo-in", &json!(null)).await;
    assert_eq!(m.payload["stdout"], "args=0;");
}

#[test]
fn argument_shapes_are_validated() {
    assert!(matches!(method_invocation(&json!(["a", 1])), Err(HandlerError::BadArguments { .. })));
    assert_eq!(method_invocation(&json!(true)).unwrap().args, vec!["true"]);
    assert!(matches!(job_invocation(&json!([])), Err(HandlerError::BadArguments { .. })));
    assert!(matches!(job_invocation(&json!({"args": []})), Err(HandlerError::BadArguments { .. })));
    assert!(matches!(job_invocation(&json!({"operation": 5})), Err(HandlerError::BadArguments { .. })));
    assert!(matches!(
        job_invocation(&json!({"operation": "x", "args": "a"})),
        Err(HandlerError::BadArguments { .. })
    ));
    assert!(matches!(
        job_invocation(&json!({"operation": "x", "args": [null]})),
        Err(HandlerError::BadArguments { .. })
    ));
    let (op, inv) = job_invocation(&json!({"operation": "x", "version": "1.0"})).unwrap();
    assert_eq!((op.as_str(), inv.args.len(), inv.stdin), ("x", 0, None));
}

#[tokio::test]
async fn bad_arguments_answer_400_and_reject_the_job() {
    let dir = common::trusted_tempdir();
    script(dir.path(), "ok", "exit 0");
    let r = runner(dir.path(), &["ok"]);
    assert_eq!(r.run_method("ok", &json!([1, 2])).await.status, 400);
    let j = r.run_job(&json!({"operation": "ok", "args": [1]})).await;
    assert_eq!(j.status, JobStatus::Rejected);
    assert!(j.status_details["reason"].contains("bad handler arguments"));
}

#[tokio::test]
async fn non_zero_exit_is_500_and_failed_with_output() {
    let dir = common::trusted_tempdir();
    script(dir.path(), "fail", "echo partial; echo 'disk\nfull' >&2; exit 3");
    let r = runner(dir.path(), &["fail"]);
    let m = r.run_method("fail", &json!(null)).await;
    assert_eq!(m.status, 500);
    assert_eq!(m.payload["exitCode"], 3);
    assert_eq!(m.payload["stdout"], "partial\n");
    let j = r.run_job(&json!({"operation": "fail"})).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.status_details["exitCode"], "3");
    assert_eq!(j.status_details["stderr"], "disk full", "control characters replaced");
    assert!(j.status_details.contains_key("reason"));
}

#[tokio::test]
async fn killed_by_signal_is_a_failure() {
    let dir = common::trusted_tempdir();
    script(dir.path(), "suicide", "kill -TERM $$");
    let r = runner(dir.path(), &["suicide"]);
    let x = r.run("suicide", &Invocation::default()).await.unwrap();
    assert_eq!(x.outcome, Outcome::Signaled(15));
    assert_eq!(r.run_method("suicide", &json!(null)).await.payload["signal"], 15);
    assert_eq!(r.run_job(&json!({"operation": "suicide"})).await.status, JobStatus::Failed);
}

fn gone(pid: i32) -> bool {
    // Dead, or a zombie waiting for a reaper: either way no longer running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn timeout_kills_the_handler_and_its_children() {
    let dir = common::trusted_tempdir();
    let pidfile = dir.path().join("grandchild.pid");
    script(
        dir.path(),
        "hang",
        &format!("sleep 300 & echo $! > {}; echo started; sleep 300", pidfile.display()),
    );
    let mut o = HandlerOptions::new(dir.path(), ["hang"]);
    o.timeout = Duration::from_secs(1);
    let r = HandlerRunner::new(o).unwrap();
    let x = r.run("hang", &Invocation::default()).await.unwrap();
    assert_eq!(x.outcome, Outcome::TimedOut);
    assert_eq!(x.stdout, "started\n");
    let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_until(Duration::from_secs(5), "the background child is killed", || gone(grandchild));

    let m = r.run_method("hang", &json!(null)).await;
    assert_eq!(m.status, 504);
    assert!(m.payload["error"].as_str().unwrap().contains("timed out"));
    let j = r.run_job(&json!({"operation": "hang"})).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.status_details["reason"], "timeout");
}

#[tokio::test]
async fn leftover_background_processes_are_killed_when_the_handler_exits() {
    let dir = common::trusted_tempdir();
    let pidfile = dir.path().join("bg.pid");
    script(dir.path(), "spawner", &format!("sleep 300 & echo $! > {}; echo done", pidfile.display()));
    let r = runner(dir.path(), &["spawner"]);
    let x = r.run("spawner", &Invocation::default()).await.unwrap();
    assert_eq!((x.outcome, x.stdout.as_str()), (Outcome::Exited(0), "done\n"));
    let bg: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_until(Duration::from_secs(5), "the left-over background process is killed", || gone(bg));
}

#[tokio::test]
async fn not_allow_listed_is_refused_403_and_rejected() {
    let dir = common::trusted_tempdir();
    let marker = dir.path().join("ran");
    script(dir.path(), "secret", &format!("touch {}", marker.display()));
    let r = runner(dir.path(), &["other"]);
    assert!(matches!(r.resolve("secret"), Err(HandlerError::NotAllowed { .. })));
    let m = r.run_method("secret", &json!(null)).await;
    assert_eq!(m.status, 403);
    assert!(m.payload["error"].as_str().unwrap().contains("not allow-listed"));
    let j = r.run_job(&json!({"operation": "secret"})).await;
    assert_eq!(j.status, JobStatus::Rejected);
    assert!(j.status_details["reason"].contains("not allow-listed"));
    assert!(!marker.exists(), "a refused handler never runs");
}

#[tokio::test]
async fn traversal_and_bad_names_are_refused_even_if_allow_listed() {
    let outer = common::trusted_tempdir();
    let dir = outer.path().join("handlers");
    std::fs::create_dir(&dir).unwrap();
    script(outer.path(), "x", "exit 0");
    script(&dir, ".hidden", "exit 0");
    let names = ["../x", "..", "sub/x", "/bin/sh", "", ".hidden", "a b", "x;rm", "é"];
    let r = runner(&dir, &names);
    for n in names {
        assert!(matches!(r.resolve(n), Err(HandlerError::InvalidName { .. })), "{n:?}");
        assert_eq!(r.run_method(n, &json!(null)).await.status, 403, "{n:?}");
    }
    let long = "a".repeat(129);
    assert!(matches!(runner(&dir, &[&long]).resolve(&long), Err(HandlerError::InvalidName { .. })));
}

#[tokio::test]
async fn symlinks_may_not_escape_the_handler_directory() {
    let outer = common::trusted_tempdir();
    let dir = outer.path().join("handlers");
    std::fs::create_dir(&dir).unwrap();
    script(outer.path(), "outside", "echo escaped");
    script(&dir, "inside", "echo inside");
    std::os::unix::fs::symlink(outer.path().join("outside"), dir.join("escape")).unwrap();
    std::os::unix::fs::symlink("/bin/sh", dir.join("shell")).unwrap();
    std::os::unix::fs::symlink("inside", dir.join("alias")).unwrap();
    std::os::unix::fs::symlink("missing", dir.join("dangling")).unwrap();
    let r = runner(&dir, &["escape", "shell", "alias", "dangling"]);
    assert!(matches!(r.resolve("escape"), Err(HandlerError::OutsideDir { .. })));
    assert!(matches!(r.resolve("shell"), Err(HandlerError::OutsideDir { .. })));
    assert_eq!(r.run_method("escape", &json!(null)).await.status, 403);
    assert!(matches!(r.resolve("dangling"), Err(HandlerError::NotFound { .. })));
    let m = r.run_method("alias", &json!(null)).await;
    assert_eq!(
        (m.status, m.payload["stdout"].as_str()),
        (200, Some("inside\n")),
        "a link within the dir is fine"
    );
}

#[tokio::test]
async fn missing_non_executable_non_regular_and_writable_files_are_refused() {
    let dir = common::trusted_tempdir();
    std::fs::write(dir.path().join("plain"), "#!/bin/sh\necho no\n").unwrap();
    std::fs::set_permissions(dir.path().join("plain"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    script(dir.path(), "loose", "echo loose");
    std::fs::set_permissions(dir.path().join("loose"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = runner(dir.path(), &["plain", "adir", "loose", "absent"]);
    assert!(matches!(r.resolve("plain"), Err(HandlerError::NotExecutable { .. })));
    assert!(matches!(r.resolve("adir"), Err(HandlerError::NotRegularFile { .. })));
    assert!(matches!(r.resolve("loose"), Err(HandlerError::UnsafePermissions { .. })));
    assert!(matches!(r.resolve("absent"), Err(HandlerError::NotFound { .. })));
    assert_eq!(r.run_method("plain", &json!(null)).await.status, 403);
    assert_eq!(r.run_method("absent", &json!(null)).await.status, 404);
    assert_eq!(r.run_job(&json!({"operation": "absent"})).await.status, JobStatus::Rejected);
}

#[tokio::test]
async fn large_output_is_capped_and_the_handler_is_not_blocked() {
    let dir = common::trusted_tempdir();
    // 2 MB on each stream: far more than a pipe buffer, so reading must go on past the cap.
    script(
        dir.path(),
        "chatty",
        "head -c 2000000 /dev/zero | tr '\\0' o; head -c 2000000 /dev/zero | tr '\\0' e >&2; echo; exit 0",
    );
    let mut o = HandlerOptions::new(dir.path(), ["chatty"]);
    o.max_output_bytes = 5000;
    o.timeout = Duration::from_secs(20);
    let r = HandlerRunner::new(o).unwrap();
    let x = r.run("chatty", &Invocation::default()).await.unwrap();
    assert_eq!(x.outcome, Outcome::Exited(0));
    assert_eq!((x.stdout.len(), x.stderr.len()), (5000, 5000));
    assert!(x.truncated);
    let m = r.run_method("chatty", &json!(null)).await;
    assert_eq!(m.payload["truncated"], true);
    let j = r.run_job(&json!({"operation": "chatty"})).await;
    assert_eq!(j.status_details["stdout"].chars().count(), MAX_DETAIL_CHARS);
}

#[test]
fn detail_values_follow_the_jobs_api_rules() {
    assert_eq!(detail_value("a\tb\nc\u{7f}"), "a b c ");
    assert_eq!(detail_value("  \n"), "");
    let long: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let v = detail_value(&long);
    assert_eq!(v.chars().count(), MAX_DETAIL_CHARS);
    assert!(v.starts_with("...") && long.ends_with(&v[3..]), "keeps the tail");
}

#[test]
fn a_missing_handler_directory_is_a_configuration_error() {
    let dir = common::trusted_tempdir();
    let e = HandlerRunner::new(HandlerOptions::new(dir.path().join("nope"), ["x"])).unwrap_err();
    assert!(matches!(e, HandlerError::Directory { .. }), "{e:?}");
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert!(matches!(
        HandlerRunner::new(HandlerOptions::new(&file, ["x"])),
        Err(HandlerError::Directory { .. })
    ));
}

#[tokio::test]
async fn run_as_needs_root_and_switches_user_when_root() {
    let dir = common::trusted_tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    script(dir.path(), "whoami", "id -u; id -g");
    let mut o = HandlerOptions::new(dir.path(), ["whoami"]);
    o.run_as = Some("nobody".into());
    if !nix::unistd::geteuid().is_root() {
        match HandlerRunner::new(o) {
            Err(e @ HandlerError::RunAsNeedsRoot { .. }) => assert!(e.to_string().contains("root")),
            other => panic!("expected RunAsNeedsRoot, got {other:?}"),
        }
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody user");
    let r = HandlerRunner::new(o).unwrap();
    let x = r.run("whoami", &Invocation::default()).await.unwrap();
    assert_eq!(x.outcome, Outcome::Exited(0), "{x:?}");
    assert_eq!(x.stdout, format!("{}\n{}\n", nobody.uid, nobody.gid));

    let mut o = HandlerOptions::new(dir.path(), ["whoami"]);
    o.run_as = Some("no-such-user-here".into());
    assert!(matches!(HandlerRunner::new(o), Err(HandlerError::UnknownUser { .. })));
}

#[tokio::test]
async fn a_run_given_up_by_its_caller_kills_the_process_group() {
    let dir = common::trusted_tempdir();
    let pids = dir.path().join("pids");
    script(dir.path(), "stuck", &format!("sleep 300 & echo $$ $! > {}; wait", pids.display()));
    let r = runner(dir.path(), &["stuck"]);
    let path = pids.clone();
    let inv = Invocation::default();
    let mut run = Box::pin(r.run("stuck", &inv));
    // Drive the run until the script has written its pids, then drop it.
    let written = tokio::select! {
        _ = &mut run => false,
        _ = wait_until_async(Duration::from_secs(5), "the pids are written", move || {
            std::fs::read_to_string(&path).is_ok_and(|s| s.ends_with('\n'))
        }) => true,
    };
    assert!(written, "the handler must still be running");
    drop(run);
    let text = std::fs::read_to_string(&pids).unwrap();
    let ids: Vec<i32> = text.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    for pid in ids {
        wait_until(Duration::from_secs(5), "the abandoned handler's processes are killed", || gone(pid));
    }
}
