//! Deadline-bounded waiting helpers.
//!
//! Every helper either returns as soon as its condition holds or panics with a message
//! naming what was awaited. None of them sleeps as a means of synchronisation: the only
//! pauses are the short gaps between polls of a condition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{Receiver, UnboundedReceiver};

/// Gap between two polls of a condition in [`wait_until`] and [`wait_until_async`].
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Receives the next value from `rx`, waiting at most `within`.
///
/// # Panics
///
/// Panics with `timed out after {within:?} waiting for {what}` when nothing arrives in
/// time, and with `channel closed while waiting for {what}` when every sender is gone.
pub async fn recv_within<T>(rx: &mut Receiver<T>, within: Duration, what: &str) -> T {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Some(value)) => value,
        Ok(None) => panic!("channel closed while waiting for {what}"),
        Err(_) => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// Receives the next value from the unbounded `rx`, waiting at most `within`.
///
/// # Panics
///
/// Same messages as [`recv_within`].
pub async fn recv_within_unbounded<T>(rx: &mut UnboundedReceiver<T>, within: Duration, what: &str) -> T {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Some(value)) => value,
        Ok(None) => panic!("channel closed while waiting for {what}"),
        Err(_) => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// Blocks the current thread until `cond` returns true, polling every 10 ms.
///
/// The condition is always evaluated at least once, and once more at the deadline.
///
/// # Panics
///
/// Panics with `timed out after {within:?} waiting until {what}` when the deadline passes.
/// Do not call this from inside an async task: it blocks the thread (use
/// [`wait_until_async`] there).
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {within:?} waiting until {what}");
        }
        std::thread::sleep(POLL_EVERY.min(deadline - now));
    }
}

/// Async variant of [`wait_until`]: polls `cond` every 10 ms with `tokio::time::sleep`
/// between polls, so the runtime keeps running other tasks meanwhile.
///
/// # Panics
///
/// Panics with `timed out after {within:?} waiting until {what}` when the deadline passes.
pub async fn wait_until_async(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {within:?} waiting until {what}");
        }
        tokio::time::sleep(POLL_EVERY.min(deadline - now)).await;
    }
}

/// A client id unique within this machine's test run: `{test}-{pid}-{counter}`.
///
/// The process id separates concurrently running test binaries that share a broker;
/// the counter separates calls within one process.
pub fn unique_client_id(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{test}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[tokio::test]
    async fn recv_within_returns_value() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        tx.send(7u32).await.expect("send");
        assert_eq!(recv_within(&mut rx, Duration::from_secs(1), "seven").await, 7);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 20ms waiting for nothing")]
    async fn recv_within_times_out() {
        let (_tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
        recv_within(&mut rx, Duration::from_millis(20), "nothing").await;
    }

    #[tokio::test]
    #[should_panic(expected = "channel closed while waiting for a value")]
    async fn recv_within_reports_closed_channel() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
        drop(tx);
        recv_within(&mut rx, Duration::from_secs(1), "a value").await;
    }

    #[tokio::test]
    async fn recv_within_unbounded_returns_value() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send("x").expect("send");
        assert_eq!(recv_within_unbounded(&mut rx, Duration::from_secs(1), "x").await, "x");
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 20ms waiting for silence")]
    async fn recv_within_unbounded_times_out() {
        let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        recv_within_unbounded(&mut rx, Duration::from_millis(20), "silence").await;
    }

    #[test]
    fn wait_until_sees_condition_set_by_other_thread() {
        let flag = Arc::new(AtomicUsize::new(0));
        let setter = {
            let flag = flag.clone();
            std::thread::spawn(move || flag.store(1, Ordering::SeqCst))
        };
        wait_until(Duration::from_secs(5), "flag set", || flag.load(Ordering::SeqCst) == 1);
        setter.join().expect("setter thread");
    }

    #[test]
    #[should_panic(expected = "waiting until never")]
    fn wait_until_panics_at_deadline() {
        wait_until(Duration::from_millis(30), "never", || false);
    }

    #[tokio::test]
    async fn wait_until_async_sees_condition_set_by_task() {
        let flag = Arc::new(AtomicUsize::new(0));
        let setter = {
            let flag = flag.clone();
            tokio::spawn(async move { flag.store(1, Ordering::SeqCst) })
        };
        wait_until_async(Duration::from_secs(5), "flag set", || flag.load(Ordering::SeqCst) == 1).await;
        setter.await.expect("setter task");
    }

    #[tokio::test]
    #[should_panic(expected = "waiting until never")]
    async fn wait_until_async_panics_at_deadline() {
        wait_until_async(Duration::from_millis(30), "never", || false).await;
    }

    #[test]
    fn unique_client_ids_differ() {
        let a = unique_client_id("t");
        let b = unique_client_id("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())));
    }
}
