//! Offline behaviour: a bounded queue of accepted-but-unsent messages with a drop policy,
//! and an optional cap on the bytes of every accepted, unacknowledged message.
//!
//! Semantics follow the AWS IoT Device SDK's offline publish queue: when the queue is full,
//! [`DropPolicy::Oldest`] evicts the oldest queued request to make room and
//! [`DropPolicy::Newest`] refuses the new one. Either way the dropped message's caller is
//! told (it gets an error), so nothing accepted vanishes silently, and every drop is counted.
//!
//! The byte cap ([`OfflinePolicy::max_bytes`]) applies the same drop policy to bytes, exactly:
//! [`OfflinePolicy::byte_verdict`] decides, for each new message, whether it fits, fits once
//! some queued messages are evicted (oldest first), or is refused.

use std::collections::VecDeque;
use std::time::Duration;

/// Which message goes when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DropPolicy {
    /// Evict the oldest queued message (its caller gets `Dropped`) and queue the new one.
    /// Under the byte cap, as many of the oldest queued messages as it takes (messages in
    /// flight are never evicted); when even that is not enough, the new one is refused.
    Oldest,
    /// Refuse the new message (its caller gets `QueueFull`, or `StoreFull` at the byte cap);
    /// the queue is untouched.
    #[default]
    Newest,
}

impl DropPolicy {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropPolicy::Oldest => "oldest",
            DropPolicy::Newest => "newest",
        }
    }
}

/// What happens to a QoS 0 publish while the connection is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Qos0Offline {
    /// Fail it at once with `NotConnected` (the AWS V2 SDKs' default).
    #[default]
    Fail,
    /// Queue it like QoS 1 (the AWS V1 SDK's behaviour); it is never persisted to disk.
    Queue,
}

/// The offline policy of the Publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflinePolicy {
    /// How many accepted messages may wait to be sent (offline, or behind a full in-flight
    /// window). Messages already handed to the broker are bounded by the window instead.
    pub capacity: usize,
    /// Which message goes when the queue is full, or when a new message would exceed
    /// `max_bytes`.
    pub drop: DropPolicy,
    /// An exact cap on the bytes of every accepted message not yet completed (acknowledged,
    /// or failed), queued *and* in flight, measured as topic + payload bytes
    /// ([`crate::OutboundPacket::size`], the measure of the Publisher's `incomplete_bytes`).
    /// A new message that would take the total beyond it is refused ([`DropPolicy::Newest`])
    /// or makes room by evicting queued messages oldest first ([`DropPolicy::Oldest`]; it is
    /// refused if that is not enough, when messages in flight alone fill the cap). A message
    /// larger than the whole cap is always refused. Messages recovered from the on-disk store
    /// at start and messages put back in the queue after a lost connection were accepted
    /// earlier and are never refused, so the total can stand above the cap until they
    /// complete; new messages are then refused (or evict) as above. `None` (the default):
    /// no byte cap.
    pub max_bytes: Option<usize>,
    /// QoS 0 while disconnected.
    pub qos0: Qos0Offline,
    /// After a reconnect, send queued messages no faster than one per interval (AWS V1's
    /// "draining frequency"; its 2 Hz is `Some(500 ms)`). `None` drains as fast as the
    /// in-flight window allows.
    pub drain_interval: Option<Duration>,
}

impl Default for OfflinePolicy {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            drop: DropPolicy::Newest,
            max_bytes: None,
            qos0: Qos0Offline::Fail,
            drain_interval: None,
        }
    }
}

/// What the byte cap ([`OfflinePolicy::max_bytes`]) makes of a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteVerdict {
    /// It fits as things stand (or there is no byte cap).
    Fits,
    /// It fits once this many queued messages, oldest first, are evicted (drop-oldest).
    FitsEvicting(usize),
    /// It does not fit: refuse it.
    Refused,
}

impl OfflinePolicy {
    /// Applies the byte cap to a new message of `size` bytes, when `incomplete` bytes are
    /// accepted and not yet completed (queued and in flight) and `queued` lists the sizes of
    /// the queued messages, oldest first (the only ones drop-oldest may evict; it is read only
    /// as far as needed).
    pub fn byte_verdict(
        &self,
        size: usize,
        incomplete: usize,
        queued: impl IntoIterator<Item = usize>,
    ) -> ByteVerdict {
        let Some(max) = self.max_bytes else { return ByteVerdict::Fits };
        if size > max {
            return ByteVerdict::Refused;
        }
        let mut over = incomplete.saturating_add(size).saturating_sub(max);
        if over == 0 {
            return ByteVerdict::Fits;
        }
        match self.drop {
            DropPolicy::Newest => ByteVerdict::Refused,
            DropPolicy::Oldest => {
                for (i, s) in queued.into_iter().enumerate() {
                    over = over.saturating_sub(s);
                    if over == 0 {
                        return ByteVerdict::FitsEvicting(i + 1);
                    }
                }
                ByteVerdict::Refused
            }
        }
    }
}

/// The result of offering an item to a full or non-full queue.
#[derive(Debug, PartialEq, Eq)]
pub enum PushOutcome<T> {
    /// Queued; nothing dropped.
    Queued,
    /// Queued, and the oldest item was evicted to make room.
    QueuedEvicting(T),
    /// Not queued: the queue is full and the policy keeps the old items.
    Rejected(T),
}

/// A bounded FIFO with a drop policy. Items pushed back to the front (messages whose
/// connection died before they were acknowledged) are never refused: they were accepted
/// long ago and keep their place at the head.
#[derive(Debug)]
pub struct OfflineQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
    policy: DropPolicy,
}

impl<T> OfflineQueue<T> {
    /// An empty queue. A capacity of zero queues nothing.
    pub fn new(capacity: usize, policy: DropPolicy) -> Self {
        Self { items: VecDeque::new(), capacity, policy }
    }

    /// Offers an item at the back.
    pub fn push(&mut self, item: T) -> PushOutcome<T> {
        if self.items.len() < self.capacity {
            self.items.push_back(item);
            return PushOutcome::Queued;
        }
        match self.policy {
            DropPolicy::Newest => PushOutcome::Rejected(item),
            DropPolicy::Oldest => match self.items.pop_front() {
                Some(old) => {
                    self.items.push_back(item);
                    PushOutcome::QueuedEvicting(old)
                }
                None => PushOutcome::Rejected(item),
            },
        }
    }

    /// Puts items back at the head in the given order (the first ends up first).
    pub fn push_front_all(&mut self, items: impl DoubleEndedIterator<Item = T>) {
        for item in items.rev() {
            self.items.push_front(item);
        }
    }

    /// Takes the head.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Removes every item for which `f` is true, returning them in queue order.
    pub fn remove_where(&mut self, mut f: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut kept = VecDeque::with_capacity(self.items.len());
        let mut removed = Vec::new();
        for item in self.items.drain(..) {
            if f(&item) {
                removed.push(item);
            } else {
                kept.push_back(item);
            }
        }
        self.items = kept;
        removed
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Iterates the queued items, head first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS SDK's documented example: capacity 5, seven requests.
    #[test]
    fn drop_oldest_keeps_the_newest_five() {
        let mut q = OfflineQueue::new(5, DropPolicy::Oldest);
        let mut evicted = vec![];
        for i in 1..=7 {
            match q.push(i) {
                PushOutcome::Queued => {}
                PushOutcome::QueuedEvicting(old) => evicted.push(old),
                PushOutcome::Rejected(_) => panic!("oldest policy never rejects"),
            }
        }
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), [3, 4, 5, 6, 7]);
        assert_eq!(evicted, [1, 2]);
    }

    #[test]
    fn drop_newest_refuses_the_sixth_and_seventh() {
        let mut q = OfflineQueue::new(5, DropPolicy::Newest);
        let mut rejected = vec![];
        for i in 1..=7 {
            if let PushOutcome::Rejected(r) = q.push(i) {
                rejected.push(r);
            }
        }
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(rejected, [6, 7]);
    }

    #[test]
    fn requeued_items_go_first_in_order() {
        let mut q = OfflineQueue::new(3, DropPolicy::Newest);
        q.push(10);
        q.push_front_all([1, 2, 3].into_iter());
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), [1, 2, 3, 10]);
        // Over capacity after a requeue: new items are refused, none of the old lost.
        assert_eq!(q.push(11), PushOutcome::Rejected(11));
        assert_eq!(q.pop(), Some(1));
    }

    #[test]
    fn zero_capacity_queues_nothing() {
        let mut q = OfflineQueue::new(0, DropPolicy::Oldest);
        assert_eq!(q.push(1), PushOutcome::Rejected(1));
        assert!(q.is_empty());
    }

    fn capped(max: usize, drop: DropPolicy) -> OfflinePolicy {
        OfflinePolicy { max_bytes: Some(max), drop, ..OfflinePolicy::default() }
    }

    #[test]
    fn no_byte_cap_by_default() {
        let p = OfflinePolicy::default();
        assert_eq!(p.max_bytes, None);
        assert_eq!(p.byte_verdict(usize::MAX, usize::MAX, []), ByteVerdict::Fits);
    }

    /// (policy, size, incomplete, queued sizes oldest first, verdict) under a cap of 100.
    #[test]
    fn byte_verdicts() {
        use ByteVerdict::*;
        use DropPolicy::*;
        let table: &[(DropPolicy, usize, usize, &[usize], ByteVerdict)] = &[
            // Fits exactly at the cap, with either policy.
            (Newest, 40, 60, &[30, 30], Fits),
            (Oldest, 40, 60, &[30, 30], Fits),
            (Newest, 100, 0, &[], Fits),
            // One byte over: newest refuses, oldest evicts the oldest queued.
            (Newest, 41, 60, &[30, 30], Refused),
            (Oldest, 41, 60, &[30, 30], FitsEvicting(1)),
            // Oldest evicts as many as it takes, and no more.
            (Oldest, 70, 60, &[10, 10, 10, 30], FitsEvicting(3)),
            (Oldest, 70, 60, &[30, 30], FitsEvicting(1)),
            // In flight (incomplete but not queued) alone fills the cap: nothing to evict.
            (Oldest, 10, 100, &[], Refused),
            // Queued messages are not enough to make room: refused, nothing evicted.
            (Oldest, 50, 90, &[10, 20], Refused),
            // Larger than the whole cap: always refused, even when empty.
            (Newest, 101, 0, &[], Refused),
            (Oldest, 101, 0, &[], Refused),
            (Oldest, 101, 100, &[100], Refused),
            // Above the cap already (recovered or requeued messages): refused or evicting.
            (Newest, 1, 250, &[100, 100, 50], Refused),
            (Oldest, 1, 250, &[100, 100, 50], FitsEvicting(2)),
            (Oldest, 51, 250, &[100, 100, 50], FitsEvicting(3)),
        ];
        for (i, &(drop, size, incomplete, queued, want)) in table.iter().enumerate() {
            let got = capped(100, drop).byte_verdict(size, incomplete, queued.iter().copied());
            assert_eq!(got, want, "case {i}: {drop:?} size {size} incomplete {incomplete} queued {queued:?}");
        }
    }

    #[test]
    fn byte_verdict_reads_the_queue_only_as_far_as_needed() {
        let mut read = 0;
        let sizes = std::iter::repeat_with(|| {
            read += 1;
            10
        });
        assert_eq!(
            capped(100, DropPolicy::Oldest).byte_verdict(25, 100, sizes),
            ByteVerdict::FitsEvicting(3)
        );
        assert_eq!(read, 3);
    }

    #[test]
    fn remove_where_keeps_order() {
        let mut q = OfflineQueue::new(10, DropPolicy::Newest);
        for i in 0..6 {
            q.push(i);
        }
        assert_eq!(q.remove_where(|i| i % 2 == 0), [0, 2, 4]);
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), [1, 3, 5]);
    }
}
