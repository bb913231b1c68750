//! Process plumbing: exit statuses, process-group kills, capped output capture.

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::Outcome;

/// How long captured output may keep flowing after the handler's group was killed (a
/// descendant that left the group may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

pub(super) fn outcome_of(status: ExitStatus) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exited(code),
        (None, Some(sig)) => Outcome::Signaled(sig),
        (None, None) => Outcome::Signaled(0),
    }
}

/// Kills the process group it holds when dropped.
pub(super) struct GroupGuard(pub(super) Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0.take());
    }
}

pub(super) fn kill_group(pgid: Option<i32>) {
    if let Some(p) = pgid {
        // ESRCH (nobody left in the group) is the usual answer after a clean exit.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Output captured so far, shared with the task reading it.
pub(super) type Capture = Arc<Mutex<(Vec<u8>, bool)>>;

pub(super) async fn read_capped<R: AsyncRead + Unpin>(r: Option<R>, cap: usize, into: Capture) {
    let Some(mut r) = r else { return };
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut g = into.lock().unwrap_or_else(|p| p.into_inner());
                let room = cap.saturating_sub(g.0.len());
                if n > room {
                    g.1 = true;
                }
                g.0.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Waits (at most [`OUTPUT_GRACE`]) for the reader to see end of stream, then takes what
/// it captured.
pub(super) async fn collect(task: tokio::task::JoinHandle<()>, capture: &Capture) -> (String, bool) {
    let abort = task.abort_handle();
    if tokio::time::timeout(OUTPUT_GRACE, task).await.is_err() {
        abort.abort();
    }
    let g = capture.lock().unwrap_or_else(|p| p.into_inner());
    (String::from_utf8_lossy(&g.0).into_owned(), g.1)
}
