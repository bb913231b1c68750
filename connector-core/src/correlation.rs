//! Request/response correlation with deadlines: the `$rid` of the Azure twin, the
//! `clientToken` of AWS shadows and jobs.
//!
//! A [`CorrelationTable`] maps a request id to whatever the requester waits with (a reply
//! channel, typically). Every entry has a deadline; [`CorrelationTable::expire`] removes the
//! overdue ones so that their waiters can be told `Timeout` rather than hang.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;

/// A concurrent table of pending requests with deadlines.
#[derive(Debug)]
pub struct CorrelationTable<K: Eq + Hash, V> {
    pending: DashMap<K, (Instant, V)>,
}

impl<K: Eq + Hash + Clone, V> Default for CorrelationTable<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone, V> CorrelationTable<K, V> {
    /// An empty table.
    pub fn new() -> Self {
        Self { pending: DashMap::new() }
    }

    /// Registers a pending request. Returns the value it displaced if the id was in use.
    pub fn insert(&self, id: K, deadline: Instant, value: V) -> Option<V> {
        self.pending.insert(id, (deadline, value)).map(|(_, v)| v)
    }

    /// Completes a request: removes and returns its value if it is pending (late or unknown
    /// responses return `None`).
    pub fn complete(&self, id: &K) -> Option<V> {
        self.pending.remove(id).map(|(_, (_, v))| v)
    }

    /// `f` of the entry `id`, if pending.
    pub fn with<R>(&self, id: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.pending.get(id).map(|e| f(&e.value().1))
    }

    /// Whether a request is pending.
    pub fn contains(&self, id: &K) -> bool {
        self.pending.contains_key(id)
    }

    /// Removes and returns every request whose deadline is at or before `now`.
    pub fn expire(&self, now: Instant) -> Vec<(K, V)> {
        let overdue: Vec<K> =
            self.pending.iter().filter(|e| e.value().0 <= now).map(|e| e.key().clone()).collect();
        overdue.into_iter().filter_map(|k| self.pending.remove(&k).map(|(k, (_, v))| (k, v))).collect()
    }

    /// Removes every pending request (the connection is gone and they cannot complete).
    pub fn drain(&self) -> Vec<(K, V)> {
        let keys: Vec<K> = self.pending.iter().map(|e| e.key().clone()).collect();
        keys.into_iter().filter_map(|k| self.pending.remove(&k).map(|(k, (_, v))| (k, v))).collect()
    }

    /// The earliest deadline, to arm a timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|e| e.value().0).min()
    }

    /// Number of pending requests.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A source of unique request ids (decimal strings, as `$rid` and `clientToken` are).
#[derive(Debug, Default)]
pub struct RequestIds {
    next: AtomicU64,
}

impl RequestIds {
    /// Starts at 1.
    pub fn new() -> Self {
        Self { next: AtomicU64::new(1) }
    }

    /// The next id.
    pub fn next_id(&self) -> String {
        self.next.fetch_add(1, Ordering::Relaxed).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn complete_returns_the_waiter_once() {
        let t = CorrelationTable::new();
        let now = Instant::now();
        t.insert("1".to_string(), now + Duration::from_secs(5), "waiter");
        assert_eq!(t.complete(&"1".to_string()), Some("waiter"));
        assert_eq!(t.complete(&"1".to_string()), None, "a second response is late");
        assert!(t.is_empty());
    }

    #[test]
    fn expire_removes_only_overdue_requests() {
        let t = CorrelationTable::new();
        let now = Instant::now();
        t.insert(1u32, now + Duration::from_secs(1), 'a');
        t.insert(2u32, now + Duration::from_secs(3), 'b');
        t.insert(3u32, now + Duration::from_secs(2), 'c');
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(1)));
        let mut gone = t.expire(now + Duration::from_secs(2));
        gone.sort();
        assert_eq!(gone, [(1, 'a'), (3, 'c')]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.drain(), [(2, 'b')]);
    }

    #[test]
    fn ids_are_unique_and_increasing() {
        let ids = RequestIds::new();
        assert_eq!(ids.next_id(), "1");
        assert_eq!(ids.next_id(), "2");
    }
}
