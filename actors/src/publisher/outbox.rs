//! The Publisher's table of accepted messages and their deadlines (expiries and callers'
//! waits; acknowledgement timeouts are the watchdog's).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use connector_core::OutboundPacket;

use super::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Queued,
    InFlight { generation: u64, since: Instant },
}

pub(crate) struct Entry {
    pub packet: OutboundPacket,
    pub reply: Option<Reply>,
    pub state: State,
    pub attempts: u32,
    pub persisted: bool,
    /// The expiry that removes it, if it has one.
    pub expiry: Option<Duration>,
    /// The same as stored with it: milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
    /// How long its caller waits, if the caller bounded the wait.
    pub wait: Option<Duration>,
}

/// Sequence numbers are unique and dense: a multiplicative hash is enough.
#[derive(Default)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Accepted, not completed messages by sequence number.
#[derive(Default)]
pub(crate) struct Outbox {
    map: HashMap<u64, Entry, BuildHasherDefault<SeqHasher>>,
}

impl Outbox {
    pub fn insert(&mut self, seq: u64, e: Entry) {
        self.map.insert(seq, e);
    }
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        self.map.get(&seq)
    }
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        self.map.get_mut(&seq)
    }
    pub fn remove(&mut self, seq: u64) -> Option<Entry> {
        self.map.remove(&seq)
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.map.iter().map(|(s, e)| (*s, e))
    }
    pub fn seqs(&self) -> Vec<u64> {
        self.map.keys().copied().collect()
    }
}

/// What comes due at a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    /// The message's expiry: it is removed.
    Expiry,
    /// The caller's wait ends: the caller is answered, the message stays.
    Wait,
}

/// Deadlines: expiries of the Publisher's default length arrive in order (a FIFO); every
/// other deadline goes to a heap. Deadlines of completed messages are skipped when they come
/// due.
pub(crate) struct Deadlines {
    default: Option<Duration>,
    fifo: VecDeque<(Instant, u64)>,
    heap: BinaryHeap<Reverse<(Instant, u64, Due)>>,
}

impl Deadlines {
    /// `default`: the Publisher's default expiry, whose deadlines come in order.
    pub fn new(default: Option<Duration>) -> Self {
        Self { default, fifo: VecDeque::new(), heap: BinaryHeap::new() }
    }

    /// Adds a deadline of `length` ending at `at`.
    pub fn push(&mut self, at: Instant, seq: u64, due: Due, length: Duration) {
        let in_order = due == Due::Expiry && Some(length) == self.default;
        if in_order && self.fifo.back().is_none_or(|(last, _)| *last <= at) {
            self.fifo.push_back((at, seq));
        } else {
            self.heap.push(Reverse((at, seq, due)));
        }
    }

    pub fn next(&self) -> Option<Instant> {
        let a = self.fifo.front().map(|(t, _)| *t);
        let b = self.heap.peek().map(|Reverse((t, _, _))| *t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many deadlines are held (completed messages' included, until pruned).
    pub fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    /// Drops deadlines of messages that completed: the FIFO's completed head (completions
    /// come mostly in order, so this is amortised O(1)) and, when the heap holds mostly dead
    /// entries, the heap's.
    pub fn prune(&mut self, live: impl Fn(u64) -> bool) {
        while self.fifo.front().is_some_and(|(_, s)| !live(*s)) {
            self.fifo.pop_front();
        }
        if self.fifo.len() > 2 * 1024 {
            self.fifo.retain(|(_, s)| live(*s));
        }
        if self.heap.len() > 1024 {
            let kept: BinaryHeap<_> = self.heap.drain().filter(|Reverse((_, s, _))| live(*s)).collect();
            self.heap = kept;
        }
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<(u64, Due)> {
        let fifo = self.fifo.front().map(|(t, _)| *t).filter(|t| *t <= now);
        let heap = self.heap.peek().map(|Reverse((t, _, _))| *t).filter(|t| *t <= now);
        match (fifo, heap) {
            (Some(a), Some(b)) if b < a => self.heap.pop().map(|Reverse((_, s, d))| (s, d)),
            (Some(_), _) => self.fifo.pop_front().map(|(_, s)| (s, Due::Expiry)),
            (None, Some(_)) => self.heap.pop().map(|Reverse((_, s, d))| (s, d)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_due_in_time_order_across_fifo_and_heap() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let mut dl = Deadlines::new(Some(d));
        dl.push(t0 + d, 1, Due::Expiry, d);
        dl.push(t0 + Duration::from_secs(1), 2, Due::Wait, Duration::from_secs(1));
        dl.push(t0 + d + Duration::from_secs(1), 3, Due::Expiry, d);
        dl.push(t0 + Duration::from_secs(5), 4, Due::Expiry, Duration::from_secs(5));
        assert_eq!(dl.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(dl.pop_due(t0), None);
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(2)), Some((2, Due::Wait)));
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(2)), None);
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(20)), Some((4, Due::Expiry)));
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(20)), Some((1, Due::Expiry)));
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(20)), Some((3, Due::Expiry)));
        assert_eq!(dl.next(), None);
    }

    #[test]
    fn completed_deadlines_are_pruned() {
        let t0 = Instant::now();
        let d = Duration::from_secs(60);
        let mut dl = Deadlines::new(Some(d));
        for seq in 0..10_000u64 {
            dl.push(t0 + d, seq, Due::Expiry, d);
        }
        // Everything but 9,999 completed.
        dl.prune(|s| s == 9_999);
        assert_eq!(dl.len(), 1);
        assert_eq!(dl.pop_due(t0 + d), Some((9_999, Due::Expiry)));
    }
}
