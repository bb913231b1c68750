//! Warnings for accepted messages removed before their acknowledgement.
//!
//! Every removal is counted in `connector_messages_discarded_total{reason}` as it happens;
//! the log gets a `warn` line with the counts by reason: the first removal at once, later
//! ones gathered into at most one line per [`INTERVAL`], so that a queue overflowing at a
//! thousand messages a second is reported, not echoed.

use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// The least time between two warnings.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Why an accepted message was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discard {
    /// Its expiry passed.
    Expired,
    /// Evicted by a newer message (drop-oldest at the queue's count or byte cap).
    Evicted,
    /// Its caller cancelled it.
    Cancelled,
    /// The broker or the transport refused it for good.
    Failed,
}

impl Discard {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Discard::Expired => "expired",
            Discard::Evicted => "evicted",
            Discard::Cancelled => "cancelled",
            Discard::Failed => "failed",
        }
    }
}

/// Counts waiting to be logged.
#[derive(Debug, Default)]
pub(crate) struct DiscardLog {
    expired: u64,
    evicted: u64,
    failed: u64,
    last: Option<Instant>,
    flush_pending: bool,
}

impl DiscardLog {
    /// Notes `n` removals; returns the delay after which [`DiscardLog::flush`] should run
    /// when the caller must schedule one.
    pub(crate) fn note(&mut self, why: Discard, n: u64, now: Instant) -> Option<Duration> {
        match why {
            Discard::Expired => self.expired += n,
            Discard::Evicted => self.evicted += n,
            Discard::Failed => self.failed += n,
            Discard::Cancelled => {
                // The caller asked for it: not a warning.
                debug!(cancelled = n, "accepted messages cancelled by their caller");
                return None;
            }
        }
        match self.last {
            Some(last) if now.saturating_duration_since(last) < INTERVAL => {
                if self.flush_pending {
                    None
                } else {
                    self.flush_pending = true;
                    Some(INTERVAL - now.saturating_duration_since(last))
                }
            }
            _ => {
                self.flush(now);
                None
            }
        }
    }

    /// Logs what was noted since the last line, if anything.
    pub(crate) fn flush(&mut self, now: Instant) {
        self.flush_pending = false;
        let (expired, evicted, failed) = (self.expired, self.evicted, self.failed);
        if expired + evicted + failed == 0 {
            return;
        }
        warn!(
            expired,
            evicted,
            failed,
            "accepted messages removed before their acknowledgement (expired: their expiry passed; evicted: \
             drop-oldest at the queue's or store's cap; failed: refused for good)"
        );
        *self = DiscardLog { last: Some(now), ..DiscardLog::default() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_removal_is_logged_at_once_and_later_ones_gathered() {
        let t0 = Instant::now();
        let mut log = DiscardLog::default();
        assert_eq!(log.note(Discard::Evicted, 1, t0), None);
        assert_eq!(log.evicted, 0, "flushed at once");
        let wait = log.note(Discard::Evicted, 5, t0 + Duration::from_secs(1));
        assert_eq!(wait, Some(Duration::from_secs(9)));
        assert_eq!(log.note(Discard::Expired, 2, t0 + Duration::from_secs(2)), None, "one flush pending");
        assert_eq!((log.evicted, log.expired), (5, 2));
        log.flush(t0 + Duration::from_secs(10));
        assert_eq!((log.evicted, log.expired, log.flush_pending), (0, 0, false));
        assert_eq!(log.note(Discard::Cancelled, 3, t0 + Duration::from_secs(11)), None);
        assert_eq!(log.expired + log.evicted + log.failed, 0, "cancellations are not warnings");
    }
}
