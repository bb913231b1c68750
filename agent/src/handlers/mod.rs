//! Direct methods and jobs run allow-listed executables from a handler directory, in the
//! manner of the AWS IoT Device Client.
//!
//! # Lookup
//!
//! A handler is named by the method name or the job document's `operation`. It runs only
//! when all of these hold, checked in this order (the first failure is the
//! [`HandlerError`]):
//! 1. the name is 1–128 characters of `[A-Za-z0-9._-]` and does not start with `.` (so no
//!    `/`, no `..`, no hidden files) — [`HandlerError::InvalidName`];
//! 2. the name is in the allow-list — [`HandlerError::NotAllowed`];
//! 3. `<dir>/<name>` exists — [`HandlerError::NotFound`]; a symlink is followed only when its
//!    target stays inside the (canonical) handler directory — [`HandlerError::OutsideDir`];
//! 4. the target is a regular file — [`HandlerError::NotRegularFile`], with an execute bit —
//!    [`HandlerError::NotExecutable`], not writable by group or others —
//!    [`HandlerError::UnsafePermissions`], owned by root or the agent's effective user —
//!    [`HandlerError::Untrusted`];
//! 5. every directory above it, up to `/`, is owned by root or the agent's effective user
//!    and not writable by group or others (a sticky world-writable directory such as
//!    `/tmp` is refused too) — [`HandlerError::Untrusted`]. Otherwise a user who can write
//!    a directory on the path could rename their own file into place and have it run as
//!    the agent's user.
//!
//! These checks run again on the open file before it runs, and what runs is that open
//! file, not the path (see [`CheckedHandler`]): a rename or replacement of the file
//! between the check and the execution changes nothing. [`HandlerRunner::new`] checks the
//! directory chain once at start-up ([`HandlerError::UntrustedDirectory`]), so a
//! misplaced handler directory stops the agent (and fails `--check-config`) rather than
//! every handler being refused later. Handlers run through `/proc/self/fd/N`, so `/proc`
//! must be mounted.
//!
//! # Arguments
//!
//! - Method payload ([`method_invocation`]): `null` → no arguments; an array of strings →
//!   the arguments; an object → no arguments, the object's compact JSON plus a newline on
//!   **stdin** (kept out of `argv`, which other users can read in `ps`); a string, number or
//!   boolean → one argument (its text). Any other shape is
//!   [`HandlerError::BadArguments`].
//! - Job document ([`job_invocation`]): `{"operation":"<handler>","args":["…"]}` (the
//!   Device Client's legacy job-document schema); `args` is optional and must hold strings.
//!
//! # Running
//!
//! The executable starts in the handler directory, in its own process group, with stdin
//! closed (or fed as above), a clean environment (`PATH`, and `HOME`, `USER`, `LOGNAME`
//! of the run-as user when one is set: the agent's own environment, which may hold
//! secrets, is not inherited), stdout and stderr captured up to
//! [`HandlerOptions::max_output_bytes`] each (more is read and discarded). When it overruns
//! [`HandlerOptions::timeout`] its whole process group gets `SIGKILL`; when it exits, any
//! processes it left in its group are killed too. With [`HandlerOptions::run_as`] the child
//! runs under that user's uid and primary gid (supplementary groups dropped); this needs the
//! agent to run as root ([`HandlerError::RunAsNeedsRoot`]).
//!
//! # Status mapping
//!
//! | outcome | method status | job status |
//! |---|---|---|
//! | exit 0 | 200 | `SUCCEEDED` |
//! | exit ≠ 0 or killed by a signal | 500 | `FAILED` |
//! | timeout | 504 | `FAILED` with `reason: timeout` (`TIMED_OUT` is set only by the service) |
//! | invalid name, not allow-listed, outside the directory, not executable, not trusted… | 403 | `REJECTED` |
//! | handler file missing | 404 | `REJECTED` |
//! | bad arguments | 400 | `REJECTED` |
//! | spawn failure | 500 | `FAILED` |
//!
//! Method payloads carry `exitCode` (or `signal`), `stdout`, `stderr`, `truncated`, or
//! `error`; job `statusDetails` carry `exitCode`, `stdout`, `stderr` (the last 1024
//! characters, control characters replaced by spaces, as the Jobs API requires) and `reason`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), connector_agent::handlers::HandlerError> {
//! use connector_agent::handlers::{HandlerOptions, HandlerRunner};
//! let runner = HandlerRunner::new(HandlerOptions::new("/etc/agent/handlers", ["reboot", "collect-logs"]))?;
//! let answer = runner.run_method("collect-logs", &serde_json::json!(["--since", "1h"])).await;
//! println!("{} {}", answer.status, answer.payload);
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use connector_core::jobs::{JobStatus, StatusDetails};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

mod error;
mod process;
mod trust;

pub use error::{Distrust, HandlerError};
use process::{collect, kill_group, outcome_of, read_capped, Capture, GroupGuard};
pub use trust::CheckedHandler;
use trust::{check_dirs, check_file, DirRefusal};

/// Longest handler name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest `statusDetails` value the Jobs API accepts.
pub const MAX_DETAIL_CHARS: usize = 1024;
/// `PATH` given to handlers.
pub const HANDLER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where handlers live and how they run.
#[derive(Debug, Clone)]
pub struct HandlerOptions {
    /// The handler directory.
    pub dir: PathBuf,
    /// Names that may run.
    pub allow: BTreeSet<String>,
    /// Longest run before the process group is killed (default 60 s).
    pub timeout: Duration,
    /// Captured bytes per stream (default 64 KiB).
    pub max_output_bytes: usize,
    /// Run as this user (needs root).
    pub run_as: Option<String>,
}

impl HandlerOptions {
    /// Handlers in `dir`, only those named in `allow`, 60 s timeout, 64 KiB output each.
    pub fn new<S: Into<String>>(dir: impl Into<PathBuf>, allow: impl IntoIterator<Item = S>) -> Self {
        Self {
            dir: dir.into(),
            allow: allow.into_iter().map(Into::into).collect(),
            timeout: Duration::from_secs(60),
            max_output_bytes: 64 * 1024,
            run_as: None,
        }
    }
}

/// What to pass to a handler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// Command-line arguments.
    pub args: Vec<String>,
    /// Bytes written to its stdin (closed after them); `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
}

fn string_args(v: &[Value], what: &str) -> Result<Vec<String>, HandlerError> {
    v.iter()
        .map(|a| match a {
            Value::String(s) => Ok(s.clone()),
            _ => Err(HandlerError::BadArguments { reason: format!("{what} must hold only strings") }),
        })
        .collect()
}

/// Arguments from a direct-method payload (see the module docs).
pub fn method_invocation(payload: &Value) -> Result<Invocation, HandlerError> {
    Ok(match payload {
        Value::Null => Invocation::default(),
        Value::Array(a) => Invocation { args: string_args(a, "a payload array")?, stdin: None },
        Value::Object(_) => {
            let mut bytes = payload.to_string().into_bytes();
            bytes.push(b'\n');
            Invocation { args: Vec::new(), stdin: Some(bytes) }
        }
        Value::String(s) => Invocation { args: vec![s.clone()], stdin: None },
        Value::Number(_) | Value::Bool(_) => Invocation { args: vec![payload.to_string()], stdin: None },
    })
}

/// The handler name and arguments of a job document `{"operation":…,"args":[…]}`.
pub fn job_invocation(document: &Value) -> Result<(String, Invocation), HandlerError> {
    let bad = |reason: &str| HandlerError::BadArguments { reason: reason.into() };
    let doc = document.as_object().ok_or_else(|| bad("the job document is not an object"))?;
    let op = match doc.get("operation") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("operation must be a string")),
        None => return Err(bad("the job document has no operation")),
    };
    let args = match doc.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => string_args(a, "args")?,
        Some(_) => return Err(bad("args must be an array of strings")),
    };
    Ok((op, Invocation { args, stdin: None }))
}

/// How a handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It overran the timeout and its process group was killed.
    TimedOut,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// How it ended.
    pub outcome: Outcome,
    /// Captured stdout (lossy UTF-8), at most `max_output_bytes`.
    pub stdout: String,
    /// Captured stderr (lossy UTF-8), at most `max_output_bytes`.
    pub stderr: String,
    /// Whether either stream had more than was kept.
    pub truncated: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// A direct-method answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResult {
    /// HTTP-like status (200, 400, 403, 404, 500, 504).
    pub status: u16,
    /// The JSON payload.
    pub payload: Value,
}

/// A job execution's final update.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    /// `SUCCEEDED`, `FAILED` or `REJECTED`.
    pub status: JobStatus,
    /// `exitCode`, `stdout`, `stderr`, `reason` (only non-empty values).
    pub status_details: StatusDetails,
}

#[derive(Debug, Clone)]
struct RunAs {
    uid: u32,
    gid: u32,
    name: String,
    home: PathBuf,
}

/// Runs handlers per a fixed [`HandlerOptions`].
#[derive(Debug, Clone)]
pub struct HandlerRunner {
    opts: HandlerOptions,
    dir: PathBuf,
    run_as: Option<RunAs>,
    euid: u32,
}

fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl HandlerRunner {
    /// Checks the directory (it must exist and be a directory) and resolves the run-as
    /// user, so configuration errors show at start-up.
    pub fn new(opts: HandlerOptions) -> Result<Self, HandlerError> {
        let dir_err = |reason: String| HandlerError::Directory { path: opts.dir.clone(), reason };
        let dir = std::fs::canonicalize(&opts.dir).map_err(|e| dir_err(e.to_string()))?;
        if !dir.is_dir() {
            return Err(dir_err("not a directory".into()));
        }
        let euid = nix::unistd::geteuid().as_raw();
        match check_dirs(&dir, euid) {
            Ok(()) => {}
            Err(DirRefusal::Untrusted(path, reason)) => {
                return Err(HandlerError::UntrustedDirectory { path, reason })
            }
            Err(DirRefusal::Io(e)) => return Err(dir_err(e.to_string())),
        }
        let run_as = match &opts.run_as {
            None => None,
            Some(user) => {
                if !nix::unistd::geteuid().is_root() {
                    return Err(HandlerError::RunAsNeedsRoot { user: user.clone() });
                }
                let u = nix::unistd::User::from_name(user)
                    .ok()
                    .flatten()
                    .ok_or_else(|| HandlerError::UnknownUser { user: user.clone() })?;
                Some(RunAs { uid: u.uid.as_raw(), gid: u.gid.as_raw(), name: u.name, home: u.dir })
            }
        };
        Ok(Self { opts, dir, run_as, euid })
    }

    /// The executable a name refers to, or why it is refused (see the module docs).
    pub fn resolve(&self, name: &str) -> Result<PathBuf, HandlerError> {
        if !valid_name(name) {
            return Err(HandlerError::InvalidName { name: short(name) });
        }
        if !self.opts.allow.contains(name) {
            return Err(HandlerError::NotAllowed { name: name.into() });
        }
        let candidate = self.dir.join(name);
        let real = match std::fs::canonicalize(&candidate) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HandlerError::NotFound { name: name.into() })
            }
            Err(source) => return Err(HandlerError::Spawn { name: name.into(), source }),
        };
        if !real.starts_with(&self.dir) {
            return Err(HandlerError::OutsideDir { name: name.into() });
        }
        let meta =
            std::fs::metadata(&real).map_err(|source| HandlerError::Spawn { name: name.into(), source })?;
        check_file(name, &real, &meta, self.euid)?;
        if let Some(parent) = real.parent() {
            match check_dirs(parent, self.euid) {
                Ok(()) => {}
                Err(DirRefusal::Untrusted(path, reason)) => {
                    return Err(HandlerError::Untrusted { name: name.into(), path, reason })
                }
                Err(DirRefusal::Io(source)) => return Err(HandlerError::Spawn { name: name.into(), source }),
            }
        }
        Ok(real)
    }

    /// Resolves a name ([`resolve`](Self::resolve)), opens the file and checks the open
    /// file again: the result runs exactly what was checked ([`run_checked`](Self::run_checked)).
    pub fn check(&self, name: &str) -> Result<CheckedHandler, HandlerError> {
        let path = self.resolve(name)?;
        CheckedHandler::open(name, &path, self.euid)
    }

    /// The canonical handler directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks and runs a handler ([`check`](Self::check), then
    /// [`run_checked`](Self::run_checked)).
    pub async fn run(&self, name: &str, inv: &Invocation) -> Result<Execution, HandlerError> {
        let checked = self.check(name)?;
        self.run_checked(&checked, inv).await
    }

    /// Runs a checked handler: the file that was opened and checked, whatever its path
    /// holds now.
    pub async fn run_checked(
        &self,
        checked: &CheckedHandler,
        inv: &Invocation,
    ) -> Result<Execution, HandlerError> {
        let name = checked.name();
        let spawn_err = |source| HandlerError::Spawn { name: name.into(), source };
        let (mut cmd, inheritable) = checked.command().map_err(spawn_err)?;
        cmd.args(&inv.args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", HANDLER_PATH)
            .stdin(if inv.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(u) = &self.run_as {
            cmd.uid(u.uid).gid(u.gid).env("HOME", &u.home).env("USER", &u.name).env("LOGNAME", &u.name);
        }
        let started = Instant::now();
        let mut spawned = cmd.spawn();
        // "Text file busy": some process holds the file open for writing — typically another
        // thread's child between its fork and its exec, holding a copy of a descriptor being
        // written (a handler just installed). It passes in moments: try a few times.
        for _ in 0..5 {
            match &spawned {
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    spawned = cmd.spawn();
                }
                _ => break,
            }
        }
        // The child has its copy (or failed to start): the agent's inheritable one goes now.
        drop(inheritable);
        let mut child = spawned.map_err(spawn_err)?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        // If this future is dropped mid-run (the caller gave up), the group dies with it.
        let mut guard = GroupGuard(pgid);
        tracing::info!(handler = name, path = %checked.path().display(), args = inv.args.len(), pid = pgid, "handler started");
        let cap = self.opts.max_output_bytes;
        let (out_buf, err_buf) = (Capture::default(), Capture::default());
        let out = tokio::spawn(read_capped(child.stdout.take(), cap, out_buf.clone()));
        let err = tokio::spawn(read_capped(child.stderr.take(), cap, err_buf.clone()));
        if let (Some(mut sin), Some(bytes)) = (child.stdin.take(), inv.stdin.clone()) {
            // A handler that does not read its stdin must not block us: EPIPE is ignored.
            tokio::spawn(async move {
                let _ = sin.write_all(&bytes).await;
            });
        }
        let waited = tokio::time::timeout(self.opts.timeout, child.wait()).await;
        kill_group(guard.0.take());
        let outcome = match waited {
            Ok(status) => outcome_of(status.map_err(spawn_err)?),
            Err(_) => {
                let _ = child.wait().await;
                Outcome::TimedOut
            }
        };
        let (stdout, t1) = collect(out, &out_buf).await;
        let (stderr, t2) = collect(err, &err_buf).await;
        let elapsed = started.elapsed();
        tracing::info!(handler = name, outcome = ?outcome, elapsed_ms = elapsed.as_millis() as u64, "handler finished");
        Ok(Execution { outcome, stdout, stderr, truncated: t1 || t2, elapsed })
    }

    /// Runs the handler named like the method with the payload's arguments and maps the
    /// result to a method answer (see the module's table).
    pub async fn run_method(&self, method: &str, payload: &Value) -> MethodResult {
        let result = match method_invocation(payload) {
            Ok(inv) => self.run(method, &inv).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) => {
                tracing::warn!(method, path = e.path().map(|p| p.display().to_string()), error = %e, "method handler refused");
                MethodResult { status: e.method_status(), payload: json!({ "error": e.to_string() }) }
            }
            Ok(x) => {
                let mut p = json!({ "stdout": x.stdout, "stderr": x.stderr, "truncated": x.truncated });
                let status = match x.outcome {
                    Outcome::Exited(code) => {
                        p["exitCode"] = json!(code);
                        if code == 0 {
                            200
                        } else {
                            500
                        }
                    }
                    Outcome::Signaled(sig) => {
                        p["signal"] = json!(sig);
                        500
                    }
                    Outcome::TimedOut => {
                        p["error"] = json!(format!("timed out after {:?}", self.opts.timeout));
                        504
                    }
                };
                MethodResult { status, payload: p }
            }
        }
    }

    /// Runs the job document's `operation` with its `args` and maps the result to the
    /// execution's final status and `statusDetails` (see the module's table).
    pub async fn run_job(&self, document: &Value) -> JobResult {
        let result = match job_invocation(document) {
            Ok((op, inv)) => self.run(&op, &inv).await,
            Err(e) => Err(e),
        };
        let mut details = StatusDetails::new();
        let mut put = |k: &str, v: &str| {
            let v = detail_value(v);
            if !v.is_empty() {
                details.insert(k.to_string(), v);
            }
        };
        let status = match result {
            Err(e) => {
                tracing::warn!(path = e.path().map(|p| p.display().to_string()), error = %e, "job handler refused");
                put("reason", &e.to_string());
                e.job_status()
            }
            Ok(x) => {
                put("stdout", &x.stdout);
                put("stderr", &x.stderr);
                match x.outcome {
                    Outcome::Exited(code) => {
                        put("exitCode", &code.to_string());
                        if code == 0 {
                            JobStatus::Succeeded
                        } else {
                            put("reason", "handler exited with a non-zero code");
                            JobStatus::Failed
                        }
                    }
                    Outcome::Signaled(sig) => {
                        put("reason", &format!("handler killed by signal {sig}"));
                        JobStatus::Failed
                    }
                    Outcome::TimedOut => {
                        put("reason", "timeout");
                        JobStatus::Failed
                    }
                }
            }
        };
        JobResult { status, status_details: details }
    }
}

/// A `statusDetails` value: control characters become spaces, surrounding whitespace is
/// trimmed, and only the last [`MAX_DETAIL_CHARS`] characters are kept (prefixed `...`
/// when cut).
pub fn detail_value(s: &str) -> String {
    let clean: Vec<char> = s.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.len() <= MAX_DETAIL_CHARS {
        return clean.into_iter().collect();
    }
    let tail = &clean[clean.len() - (MAX_DETAIL_CHARS - 3)..];
    std::iter::once("...").chain(std::iter::once(tail.iter().collect::<String>().as_str())).collect()
}
