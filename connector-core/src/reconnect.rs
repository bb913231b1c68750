//! Whether to try again: the reconnect policy beside the [`crate::BackoffPolicy`].
//!
//! After every failed connect attempt and every lost connection the ConnectionActor asks
//! its [`ReconnectPolicy`] what to do, giving it a [`ReconnectContext`]: how many attempts
//! failed in a row, how long the device has been offline and the delay the backoff
//! proposes. The policy answers [`ReconnectDecision::RetryAfter`] (usually that delay) or
//! [`ReconnectDecision::GiveUp`]; giving up emits `ConnectionEvent::GaveUp` and stops the
//! connector, so its callers get their errors instead of waiting for ever.
//!
//! [`RetryLimits`] is the built-in policy (the default retries for ever, as the vendors'
//! SDKs do); the Azure C and .NET SDKs' "maximum attempts" and "give up after" are its two
//! limits. Any `Fn(&ReconnectContext) -> ReconnectDecision` is a policy too.
//!
//! ```
//! use std::time::Duration;
//! use connector_core::reconnect::{ReconnectContext, ReconnectDecision, ReconnectPolicy, RetryLimits};
//!
//! let limits = RetryLimits { max_attempts: Some(3), give_up_after: None };
//! let cx = |failures| ReconnectContext { failures, offline_for: Duration::ZERO, backoff: Duration::from_secs(1) };
//! assert_eq!(limits.decide(&cx(2)), ReconnectDecision::RetryAfter(Duration::from_secs(1)));
//! assert!(matches!(limits.decide(&cx(3)), ReconnectDecision::GiveUp(_)));
//!
//! // Your own: never wait more than 5 s, give up on the tenth failure.
//! let mine = |cx: &ReconnectContext| {
//!     if cx.failures >= 10 {
//!         ReconnectDecision::GiveUp("ten failures".into())
//!     } else {
//!         ReconnectDecision::RetryAfter(cx.backoff.min(Duration::from_secs(5)))
//!     }
//! };
//! assert_eq!(mine.decide(&cx(4)), ReconnectDecision::RetryAfter(Duration::from_secs(1)));
//! ```

use std::time::Duration;

/// What the connection knows when it asks whether to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectContext {
    /// Connect attempts that failed in a row since the last connection (0 when an
    /// established connection has just been lost).
    pub failures: u32,
    /// How long the device has been without a connection: since the last one ended, or
    /// since the connector started when it never connected.
    pub offline_for: Duration,
    /// The delay the backoff policy proposes before the next attempt.
    pub backoff: Duration,
}

/// A [`ReconnectPolicy`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconnectDecision {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Stop trying; the connector stops. The text says why (it is in the `GaveUp` event
    /// and the log).
    GiveUp(String),
}

/// Decides, after each failure, whether and when to try again.
pub trait ReconnectPolicy: Send + Sync + 'static {
    /// The decision for `cx`.
    fn decide(&self, cx: &ReconnectContext) -> ReconnectDecision;
}

impl<F> ReconnectPolicy for F
where
    F: Fn(&ReconnectContext) -> ReconnectDecision + Send + Sync + 'static,
{
    fn decide(&self, cx: &ReconnectContext) -> ReconnectDecision {
        self(cx)
    }
}

/// The built-in policy: the backoff's delay, until a limit is reached. The default has no
/// limit (retry for ever).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryLimits {
    /// Give up when this many connect attempts have failed in a row (at least 1).
    pub max_attempts: Option<u32>,
    /// Give up when the device has been offline this long (checked after each failure, so
    /// the stop comes at the first failure past it).
    pub give_up_after: Option<Duration>,
}

impl RetryLimits {
    /// Retry for ever (the default).
    pub fn forever() -> Self {
        Self::default()
    }
}

impl ReconnectPolicy for RetryLimits {
    fn decide(&self, cx: &ReconnectContext) -> ReconnectDecision {
        if let Some(max) = self.max_attempts {
            if cx.failures >= max.max(1) {
                return ReconnectDecision::GiveUp(format!(
                    "{} connect attempts failed in a row",
                    cx.failures
                ));
            }
        }
        if let Some(limit) = self.give_up_after {
            if cx.offline_for >= limit {
                return ReconnectDecision::GiveUp(format!(
                    "offline for {:.1} s (limit {:.1} s)",
                    cx.offline_for.as_secs_f64(),
                    limit.as_secs_f64()
                ));
            }
        }
        ReconnectDecision::RetryAfter(cx.backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(failures: u32, offline_s: u64) -> ReconnectContext {
        ReconnectContext {
            failures,
            offline_for: Duration::from_secs(offline_s),
            backoff: Duration::from_millis(700),
        }
    }

    #[test]
    fn the_default_retries_for_ever_with_the_backoffs_delay() {
        let p = RetryLimits::forever();
        for (f, s) in [(0, 0), (1, 1), (10_000, 86_400 * 30)] {
            assert_eq!(p.decide(&cx(f, s)), ReconnectDecision::RetryAfter(Duration::from_millis(700)));
        }
    }

    #[test]
    fn limits_give_up_exactly_at_their_bound() {
        let p = RetryLimits { max_attempts: Some(3), give_up_after: None };
        assert!(matches!(p.decide(&cx(2, 999)), ReconnectDecision::RetryAfter(_)));
        assert!(
            matches!(p.decide(&cx(3, 0)), ReconnectDecision::GiveUp(w) if w.contains("3 connect attempts"))
        );
        let p = RetryLimits { max_attempts: None, give_up_after: Some(Duration::from_secs(60)) };
        assert!(matches!(p.decide(&cx(50, 59)), ReconnectDecision::RetryAfter(_)));
        assert!(
            matches!(p.decide(&cx(0, 60)), ReconnectDecision::GiveUp(w) if w.contains("offline for 60.0 s"))
        );
        // A zero attempt limit means one attempt, not none.
        let p = RetryLimits { max_attempts: Some(0), give_up_after: None };
        assert!(matches!(p.decide(&cx(0, 0)), ReconnectDecision::RetryAfter(_)));
        assert!(matches!(p.decide(&cx(1, 0)), ReconnectDecision::GiveUp(_)));
    }
}
