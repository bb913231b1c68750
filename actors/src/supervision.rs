//! Supervision as data: a restart policy (at most `max_restarts` in `window`), a tracker,
//! and the guard each child carries so that its supervisor learns of its end.
//!
//! actix's `Supervisor` restarts an actor that stops but does not see panics: a panic in a
//! handler unwinds out of the actor's task and the actor is dropped. The `ChildGuard`
//! lives inside the child, so its `Drop` runs on that path too and tells the supervisor,
//! which rebuilds the child from its arguments (shared state such as the subscription
//! table survives, so registrations come back).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::Recipient;

/// Which child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    /// The Publisher.
    Publisher,
    /// The Subscriber.
    Subscriber,
    /// The TwinActor (device state).
    Twin,
    /// The direct-method dispatcher.
    Methods,
    /// The JobsActor (device jobs).
    Jobs,
}

impl ChildKind {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ChildKind::Publisher => "publisher",
            ChildKind::Subscriber => "subscriber",
            ChildKind::Twin => "twin",
            ChildKind::Methods => "methods",
            ChildKind::Jobs => "jobs",
        }
    }
}

/// How many restarts are tolerated before the supervisor gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Most restarts of one child within `window`.
    pub max_restarts: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self { max_restarts: 10, window: Duration::from_secs(60) }
    }
}

/// Restarts seen in the sliding window.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// Records a restart at `now`; `false` if it exceeds the policy.
    pub fn allow(&mut self, policy: &RestartPolicy, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) > policy.window) {
            self.recent.pop_front();
        }
        if self.recent.len() >= policy.max_restarts as usize {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

/// Carried by a child actor; tells the supervisor when the child is dropped.
pub(crate) struct ChildGuard {
    pub kind: ChildKind,
    pub incarnation: u64,
    pub supervisor: Recipient<ChildExited>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.supervisor.do_send(ChildExited { kind: self.kind, incarnation: self.incarnation });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_limited_per_window() {
        let policy = RestartPolicy { max_restarts: 2, window: Duration::from_secs(10) };
        let mut t = RestartTracker::default();
        let t0 = Instant::now();
        assert!(t.allow(&policy, t0));
        assert!(t.allow(&policy, t0 + Duration::from_secs(1)));
        assert!(!t.allow(&policy, t0 + Duration::from_secs(2)), "third within the window");
        assert!(t.allow(&policy, t0 + Duration::from_secs(12)), "the first two have aged out");
    }
}

/// Sent by a child's guard when the child's actor is dropped (stopped or panicked).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(crate) struct ChildExited {
    pub kind: ChildKind,
    pub incarnation: u64,
}
