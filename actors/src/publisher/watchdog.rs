//! The stall watchdog: dead-link detection from acknowledgements.
//!
//! A link that silently stops forwarding (a NAT that forgot the mapping, a cellular path
//! gone quiet) is noticed by the keep-alive only after one to two keep-alive intervals, and
//! the client library may never notice while it keeps writing into its socket. The
//! Publisher sees it sooner: its oldest QoS 1 PUBLISH stops being acknowledged. The
//! watchdog keeps the current link's QoS 1 sends in order and, when the oldest has waited
//! for the stall threshold with nothing heard from the broker since it was sent, asks the
//! ConnectionActor to probe the link ([`Suspicion::Stalled`]); a probe that goes unanswered
//! ends the link. Independently, a PUBLISH unacknowledged for the acknowledgement timeout
//! ([`Suspicion::AckTimeout`]) means the link is not delivering it even if the broker is
//! alive: the link is replaced and the message resent. Neither ever removes a message.
//!
//! The threshold adapts to the link: it is the larger of the configured threshold and a
//! retransmission timeout computed from the observed acknowledgement latency as TCP does
//! (RFC 6298: smoothed latency + 4 × its mean deviation), and never more than the
//! acknowledgement timeout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::messages::Suspicion;

/// The stall watchdog's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallPolicy {
    /// How long the oldest QoS 1 PUBLISH may wait for its PUBACK, with nothing heard from
    /// the broker, before the link is probed (raised to the observed acknowledgement
    /// latency's retransmission timeout when that is longer).
    pub threshold: Duration,
    /// How long the probe waits for the broker before the link is declared dead.
    pub probe_timeout: Duration,
}

impl Default for StallPolicy {
    /// 5 s threshold, 5 s probe: a link that stopped forwarding is replaced within about
    /// 10 s of its first unanswered PUBLISH.
    fn default() -> Self {
        Self { threshold: Duration::from_secs(5), probe_timeout: Duration::from_secs(5) }
    }
}

/// The watchdog's state for the current link.
#[derive(Debug)]
pub(crate) struct Watchdog {
    policy: Option<StallPolicy>,
    ack_timeout: Duration,
    /// QoS 1 sends on the current link, in send order (completed ones are skipped lazily).
    sent: VecDeque<(u64, Instant)>,
    /// When the broker was last heard from (an acknowledgement on the current link).
    last_heard: Option<Instant>,
    /// When a stall was last reported on this link.
    suspected_at: Option<Instant>,
    /// Whether an acknowledgement timeout was reported on this link.
    ack_timeout_reported: bool,
    /// Smoothed acknowledgement latency and its mean deviation, in seconds.
    rtt: Option<(f64, f64)>,
}

impl Watchdog {
    pub(crate) fn new(policy: Option<StallPolicy>, ack_timeout: Duration) -> Self {
        Self {
            policy,
            ack_timeout,
            sent: VecDeque::new(),
            last_heard: None,
            suspected_at: None,
            ack_timeout_reported: false,
            rtt: None,
        }
    }

    /// A new link, or none: forget the old one's sends and reports (the latency estimate
    /// stays: it describes the path more than the connection).
    pub(crate) fn reset(&mut self) {
        self.sent.clear();
        self.last_heard = None;
        self.suspected_at = None;
        self.ack_timeout_reported = false;
    }

    /// A QoS 1 PUBLISH was handed to the link at `at`.
    pub(crate) fn sent(&mut self, seq: u64, at: Instant) {
        self.sent.push_back((seq, at));
    }

    /// The broker was heard from at `at`; `latency` is the acknowledged message's.
    pub(crate) fn heard(&mut self, at: Instant, latency: Option<Duration>) {
        self.last_heard = Some(at);
        if let Some(l) = latency {
            let r = l.as_secs_f64();
            self.rtt = Some(match self.rtt {
                None => (r, r / 2.0),
                Some((srtt, var)) => (0.875 * srtt + 0.125 * r, 0.75 * var + 0.25 * (srtt - r).abs()),
            });
        }
    }

    /// Drops completed sends from the front; `live(seq, since)` says whether that send is
    /// still waiting for its acknowledgement.
    pub(crate) fn prune(&mut self, live: impl Fn(u64, Instant) -> bool) {
        while self.sent.front().is_some_and(|(s, t)| !live(*s, *t)) {
            self.sent.pop_front();
        }
    }

    /// Whether any send is being watched.
    #[cfg(test)]
    pub(crate) fn watching(&self) -> bool {
        !self.sent.is_empty()
    }

    /// How long the oldest PUBLISH may wait in silence before a probe.
    pub(crate) fn stall_after(&self) -> Option<Duration> {
        let p = self.policy?;
        let rto = self.rtt.map_or(Duration::ZERO, |(srtt, var)| {
            Duration::try_from_secs_f64(srtt + 4.0 * var).unwrap_or(Duration::MAX)
        });
        Some(p.threshold.max(rto).min(self.ack_timeout))
    }

    /// Looks at the oldest waiting send (after `prune`): what to report now, if anything,
    /// and when to look again (`None`: nothing to watch).
    pub(crate) fn check(&mut self, now: Instant) -> (Option<Suspicion>, Option<Instant>) {
        let Some(&(_, since)) = self.sent.front() else { return (None, None) };
        let mut report = None;
        let ack_due = since + self.ack_timeout;
        if now >= ack_due && !self.ack_timeout_reported {
            self.ack_timeout_reported = true;
            report = Some(Suspicion::AckTimeout { after: self.ack_timeout });
        }
        let mut next = (!self.ack_timeout_reported).then_some(ack_due);
        if let (Some(policy), Some(stall_after)) = (self.policy, self.stall_after()) {
            let quiet = [Some(since), self.last_heard, self.suspected_at].into_iter().flatten().max();
            let due = quiet.unwrap_or(since) + stall_after;
            let at = if now >= due && report.is_none() {
                self.suspected_at = Some(now);
                report = Some(Suspicion::Stalled {
                    unacked_for: now.saturating_duration_since(since),
                    probe_timeout: policy.probe_timeout,
                });
                now + stall_after
            } else {
                due.max(now)
            };
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        (report, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn dog() -> Watchdog {
        Watchdog::new(Some(StallPolicy { threshold: 5 * S, probe_timeout: 2 * S }), 60 * S)
    }

    #[test]
    fn a_silent_oldest_publish_asks_for_one_probe_per_threshold() {
        let t0 = Instant::now();
        let mut w = dog();
        w.sent(1, t0);
        assert_eq!(w.check(t0 + S), (None, Some(t0 + 5 * S)));
        let (r, next) = w.check(t0 + 5 * S);
        assert!(
            matches!(r, Some(Suspicion::Stalled { unacked_for, probe_timeout }) if unacked_for == 5 * S && probe_timeout == 2 * S)
        );
        assert_eq!(next, Some(t0 + 10 * S));
        // Reported: quiet again only one threshold after the report.
        assert_eq!(w.check(t0 + 6 * S).0, None);
        assert!(matches!(w.check(t0 + 10 * S).0, Some(Suspicion::Stalled { .. })));
    }

    #[test]
    fn acknowledgements_keep_a_busy_link_unsuspected() {
        let t0 = Instant::now();
        let mut w = dog();
        w.sent(1, t0);
        w.sent(2, t0 + 3 * S);
        // 1 is acknowledged at 4 s: 2 becomes the oldest, and the broker was just heard.
        w.heard(t0 + 4 * S, Some(4 * S));
        w.prune(|s, _| s != 1);
        assert_eq!(w.check(t0 + 6 * S).0, None);
        // Observed latency 4 s: RTO 4 + 4 × 2 = 12 s, above the 5 s threshold.
        assert_eq!(w.stall_after(), Some(12 * S));
        assert_eq!(w.check(t0 + 15 * S).0, None);
        assert!(matches!(w.check(t0 + 16 * S).0, Some(Suspicion::Stalled { .. })));
    }

    #[test]
    fn the_ack_timeout_is_reported_once_per_link_and_caps_the_threshold() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Some(StallPolicy { threshold: 90 * S, probe_timeout: S }), 30 * S);
        assert_eq!(w.stall_after(), Some(30 * S));
        w.sent(7, t0);
        assert!(matches!(w.check(t0 + 30 * S).0, Some(Suspicion::AckTimeout { after }) if after == 30 * S));
        assert!(!matches!(w.check(t0 + 31 * S).0, Some(Suspicion::AckTimeout { .. })));
        w.reset();
        assert!(!w.watching());
        assert_eq!(w.check(t0 + 100 * S), (None, None));
    }

    #[test]
    fn without_a_policy_only_the_ack_timeout_is_watched() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(None, 10 * S);
        w.sent(1, t0);
        assert_eq!(w.check(t0 + 9 * S), (None, Some(t0 + 10 * S)));
        assert!(matches!(w.check(t0 + 10 * S), (Some(Suspicion::AckTimeout { .. }), None)));
    }
}
