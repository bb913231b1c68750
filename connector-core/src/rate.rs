//! A token bucket: the per-connection publish rate a service enforces (AWS IoT Core: 100
//! PUBLISH packets per second), paced on the client so the service never has to throttle
//! or drop the connection. Time is an argument, so it is tested with plain instants.

use std::time::{Duration, Instant};

/// Tokens refill continuously at `rate` per second up to `burst`; each send takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling at `per_second` (both at least 1).
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: f64::from(per_second.max(1)), burst, tokens: burst, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (zero if one is).
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 100, t0);
        let taken = (0..150).filter(|_| b.try_take(t0)).count();
        assert_eq!(taken, 100, "the burst");
        assert!(!b.try_take(t0));
        assert_eq!(b.wait_time(t0), Duration::from_millis(10));
        // 50 ms later: 5 more tokens.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!((0..10).filter(|_| b.try_take(t1)).count(), 5);
        // A long idle period refills to the burst only.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..1000).filter(|_| b.try_take(t2)).count(), 100);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(1, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_millis(500)));
        assert_eq!(b.wait_time(t0), Duration::from_secs(1));
    }
}
