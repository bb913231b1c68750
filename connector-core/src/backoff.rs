//! Reconnect backoff: exponential with jitter, reset only after a stable connected period.
//!
//! The defaults follow the AWS IoT Device SDK's progressive backoff (base 1 s, maximum
//! 32 s, a connection is stable after 20 s) with full jitter as in the V2 SDKs.

use std::time::{Duration, Instant};

use crate::clock::Random;

/// How randomness spreads the delays of many devices reconnecting at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// `min(max, base · 2^n)`: the plain progressive backoff.
    None,
    /// Uniform in `[0, min(max, base · 2^n)]`, never below `base`'s tenth.
    #[default]
    Full,
    /// `min(max, uniform(base, previous · 3))` (AWS "decorrelated jitter").
    Decorrelated,
}

/// The backoff policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// The first delay (and the floor of every delay but full jitter's).
    pub min: Duration,
    /// The ceiling of every delay.
    pub max: Duration,
    /// How long a connection must stay up before the next failure starts again from `min`.
    pub stable_after: Duration,
    /// Jitter mode.
    pub jitter: Jitter,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(32),
            stable_after: Duration::from_secs(20),
            jitter: Jitter::Full,
        }
    }
}

impl BackoffPolicy {
    /// Checks the policy's numbers.
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        if self.min.is_zero() || self.max < self.min {
            return Err(crate::error::ConfigError::Invalid {
                field: "backoff",
                reason: format!("need 0 < min <= max, got min {:?} max {:?}", self.min, self.max),
            });
        }
        Ok(())
    }
}

/// The running state of a backoff policy: how many failures in a row, the previous delay,
/// and when the current connection came up.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    previous: Duration,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A fresh state.
    pub fn new(policy: BackoffPolicy) -> Self {
        let previous = policy.min;
        Self { policy, attempt: 0, previous, connected_at: None }
    }

    /// The policy.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Failures in a row since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Records that a connection came up at `now`.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// Records a failure (a refused attempt or a lost connection) at `now` and returns the
    /// delay before the next attempt. A connection that had been up for at least
    /// `stable_after` resets the sequence first.
    pub fn next_delay(&mut self, now: Instant, rng: &mut dyn Random) -> Duration {
        if let Some(up) = self.connected_at.take() {
            if now.saturating_duration_since(up) >= self.policy.stable_after {
                self.reset();
            }
        }
        let p = &self.policy;
        let exp = p.min.saturating_mul(1u32 << self.attempt.min(20)).min(p.max);
        let delay = match p.jitter {
            Jitter::None => exp,
            Jitter::Full => {
                let floor = p.min / 10;
                floor.max(exp.mul_f64(rng.next_f64()))
            }
            Jitter::Decorrelated => {
                let upper = self.previous.saturating_mul(3).min(p.max).max(p.min);
                let span = upper - p.min;
                (p.min + span.mul_f64(rng.next_f64())).min(p.max)
            }
        };
        self.attempt = self.attempt.saturating_add(1);
        self.previous = delay;
        delay
    }

    /// Starts the sequence again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = self.policy.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock, SeqRandom};

    fn policy(j: Jitter) -> BackoffPolicy {
        BackoffPolicy {
            min: Duration::from_secs(1),
            max: Duration::from_secs(32),
            stable_after: Duration::from_secs(20),
            jitter: j,
        }
    }

    #[test]
    fn no_jitter_doubles_up_to_the_maximum() {
        let clock = ManualClock::new();
        let mut b = Backoff::new(policy(Jitter::None));
        let mut rng = SeqRandom::new([0.0]);
        let got: Vec<u64> = (0..8).map(|_| b.next_delay(clock.now(), &mut rng).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 32, 32]);
    }

    #[test]
    fn full_jitter_stays_within_the_growing_envelope() {
        let clock = ManualClock::new();
        let mut b = Backoff::new(policy(Jitter::Full));
        let mut rng = SeqRandom::new([0.5]);
        let got: Vec<f64> = (0..7).map(|_| b.next_delay(clock.now(), &mut rng).as_secs_f64()).collect();
        assert_eq!(got, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 16.0]);
        // A different sample gives a different delay: the jitter is real.
        let mut b2 = Backoff::new(policy(Jitter::Full));
        let mut rng2 = SeqRandom::new([0.9]);
        assert_eq!(b2.next_delay(clock.now(), &mut rng2), Duration::from_millis(900));
        // The floor keeps a zero sample from hammering the broker.
        let mut b3 = Backoff::new(policy(Jitter::Full));
        let mut rng3 = SeqRandom::new([0.0]);
        assert_eq!(b3.next_delay(clock.now(), &mut rng3), Duration::from_millis(100));
    }

    #[test]
    fn decorrelated_jitter_grows_from_the_previous_delay() {
        let clock = ManualClock::new();
        let mut b = Backoff::new(policy(Jitter::Decorrelated));
        let mut rng = SeqRandom::new([0.99]);
        let mut prev = Duration::ZERO;
        for _ in 0..6 {
            let d = b.next_delay(clock.now(), &mut rng);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(32), "{d:?}");
            assert!(d >= prev || d == Duration::from_secs(32) || prev.is_zero(), "{d:?} < {prev:?}");
            prev = d;
        }
        assert!(prev > Duration::from_secs(20), "grew to {prev:?}");
    }

    #[test]
    fn resets_only_after_a_stable_period() {
        let clock = ManualClock::new();
        let mut b = Backoff::new(policy(Jitter::None));
        let mut rng = SeqRandom::new([0.0]);
        for _ in 0..3 {
            b.next_delay(clock.now(), &mut rng);
        }
        // Up for 5 s, then lost: not stable, the sequence continues.
        b.connected(clock.now());
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.next_delay(clock.now(), &mut rng), Duration::from_secs(8));
        // Up for 20 s: stable, the sequence starts again.
        b.connected(clock.now());
        clock.advance(Duration::from_secs(20));
        assert_eq!(b.next_delay(clock.now(), &mut rng), Duration::from_secs(1));
        assert_eq!(b.attempt(), 1);
    }

    #[test]
    fn invalid_policies_are_refused() {
        let mut p = policy(Jitter::None);
        p.min = Duration::ZERO;
        assert!(p.validate().is_err());
        let mut p = policy(Jitter::None);
        p.max = Duration::from_millis(10);
        assert!(p.validate().is_err());
        assert!(policy(Jitter::Full).validate().is_ok());
    }
}
