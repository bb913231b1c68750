//! Injected time and randomness, so that backoff, renewal and deadlines are testable.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot_free::Mutex;

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now, for deadlines and durations.
    fn now(&self) -> Instant;
    /// Wall-clock now, for credentials (token expiry, signing time).
    fn wall(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to: for tests of time-dependent policies.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(Instant, SystemTime)>>,
}

impl ManualClock {
    /// A manual clock starting at the real current time.
    pub fn new() -> Self {
        Self { inner: Arc::new(Mutex::new((Instant::now(), SystemTime::now()))) }
    }

    /// Moves both clocks forward.
    pub fn advance(&self, by: Duration) {
        let mut g = self.inner.lock();
        g.0 += by;
        g.1 += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.lock().0
    }
    fn wall(&self) -> SystemTime {
        self.inner.lock().1
    }
}

/// A source of uniform random numbers in `[0, 1)`, injected into jittered policies.
pub trait Random: Send + 'static {
    /// The next uniform sample in `[0, 1)`.
    fn next_f64(&mut self) -> f64;
}

/// Randomness from the thread-local generator of `rand`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandom;

impl Random for ThreadRandom {
    fn next_f64(&mut self) -> f64 {
        rand::random::<f64>()
    }
}

/// A deterministic sequence, cycled: for tests.
#[derive(Debug, Clone)]
pub struct SeqRandom {
    values: Vec<f64>,
    next: usize,
}

impl SeqRandom {
    /// Cycles through `values` (each clamped into `[0, 1)`); an empty list yields `0.5`.
    pub fn new(values: impl Into<Vec<f64>>) -> Self {
        Self { values: values.into(), next: 0 }
    }
}

impl Random for SeqRandom {
    fn next_f64(&mut self) -> f64 {
        if self.values.is_empty() {
            return 0.5;
        }
        let v = self.values[self.next % self.values.len()];
        self.next += 1;
        v.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

mod parking_lot_free {
    //! A tiny poison-free wrapper over `std::sync::Mutex`.
    #[derive(Debug, Default)]
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}
