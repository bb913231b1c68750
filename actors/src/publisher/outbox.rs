//! The Publisher's table of accepted messages and their deadlines.

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
    pub timeout: Duration,
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

/// Deadlines: those with the default timeout arrive in order (a FIFO); per-message
/// overrides go to a heap. Entries of completed messages are skipped when they come due.
pub(crate) struct Deadlines {
    default: Duration,
    fifo: VecDeque<(Instant, u64)>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Deadlines {
    pub fn new(default: Duration) -> Self {
        Self { default, fifo: VecDeque::new(), heap: BinaryHeap::new() }
    }

    pub fn push(&mut self, at: Instant, seq: u64, timeout: Duration) {
        if timeout == self.default && self.fifo.back().is_none_or(|(last, _)| *last <= at) {
            self.fifo.push_back((at, seq));
        } else {
            self.heap.push(Reverse((at, seq)));
        }
    }

    pub fn next(&self) -> Option<Instant> {
        let a = self.fifo.front().map(|(t, _)| *t);
        let b = self.heap.peek().map(|Reverse((t, _))| *t);
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
            let kept: BinaryHeap<_> = self.heap.drain().filter(|Reverse((_, s))| live(*s)).collect();
            self.heap = kept;
        }
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<u64> {
        if self.fifo.front().is_some_and(|(t, _)| *t <= now) {
            return self.fifo.pop_front().map(|(_, s)| s);
        }
        if self.heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            return self.heap.pop().map(|Reverse((_, s))| s);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_due_in_time_order_across_fifo_and_heap() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let mut dl = Deadlines::new(d);
        dl.push(t0 + d, 1, d);
        dl.push(t0 + Duration::from_secs(1), 2, Duration::from_secs(1));
        dl.push(t0 + d + Duration::from_secs(1), 3, d);
        assert_eq!(dl.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(dl.pop_due(t0), None);
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(2)), Some(2));
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(2)), None);
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(20)), Some(1));
        assert_eq!(dl.pop_due(t0 + Duration::from_secs(20)), Some(3));
        assert_eq!(dl.next(), None);
    }

    #[test]
    fn completed_deadlines_are_pruned() {
        let t0 = Instant::now();
        let d = Duration::from_secs(60);
        let mut dl = Deadlines::new(d);
        for seq in 0..10_000u64 {
            dl.push(t0 + d, seq, d);
        }
        // Everything but 9,999 completed.
        dl.prune(|s| s == 9_999);
        assert_eq!(dl.len(), 1);
        assert_eq!(dl.pop_due(t0 + d), Some(9_999));
    }
}
