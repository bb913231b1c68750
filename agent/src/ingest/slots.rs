//! The open producer connections, what each is doing and since when: admitting a newcomer
//! at the connection limit by evicting the one that has waited longest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// At a line boundary, waiting for the first byte of the next line.
    Idle,
    /// Inside a line (its first byte has arrived, its newline not yet).
    Partial,
    /// Handing a line on (possibly held up by backpressure): never evicted.
    Busy,
}

struct Entry {
    phase: Phase,
    /// When the phase began, as a tick of [`Registry::clock`] (ticks order events exactly,
    /// which instants of a clock need not).
    since: u64,
    /// Taken when the connection is told to go; it then no longer counts.
    evict: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Registry {
    clock: u64,
    open: HashMap<u64, Entry>,
}

impl Registry {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// The registry of open connections.
#[derive(Clone, Default)]
pub(super) struct Slots {
    inner: Arc<Mutex<Registry>>,
}

/// How a newcomer was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// There was room.
    Room,
    /// The connection that had waited longest was told to go.
    Evicted {
        /// Its id.
        victim: u64,
        /// What it was waiting in.
        phase: Phase,
    },
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits connection `id` when fewer than `max` connections count (those not told to
    /// go); otherwise evicts the idle or partial one whose phase began earliest. `None`:
    /// every counted connection is busy.
    pub(super) fn admit(&self, id: u64, max: usize) -> Option<(Slot, Admission)> {
        let mut r = self.lock();
        let since = r.tick();
        let m = &mut r.open;
        let counted = m.values().filter(|e| e.evict.is_some()).count();
        let mut admission = Admission::Room;
        if counted >= max {
            let (victim, phase) = m
                .iter()
                .filter(|(_, e)| e.evict.is_some() && e.phase != Phase::Busy)
                .min_by_key(|(_, e)| e.since)
                .map(|(id, e)| (*id, e.phase))?;
            if let Some(tx) = m.get_mut(&victim).and_then(|e| e.evict.take()) {
                let _ = tx.send(());
            }
            admission = Admission::Evicted { victim, phase };
        }
        let (tx, rx) = oneshot::channel();
        m.insert(id, Entry { phase: Phase::Idle, since, evict: Some(tx) });
        Some((Slot { id, slots: self.clone(), evict: rx }, admission))
    }
}

/// One admitted connection's place in the registry; dropping it frees the place.
pub(super) struct Slot {
    id: u64,
    slots: Slots,
    /// Completes when the connection is evicted.
    pub(super) evict: oneshot::Receiver<()>,
}

impl Slot {
    /// The connection now does `phase`, from now on.
    pub(super) fn enter(&self, phase: Phase) {
        let mut r = self.slots.lock();
        let since = r.tick();
        if let Some(e) = r.open.get_mut(&self.id) {
            e.phase = phase;
            e.since = since;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_evicts_the_longest_waiting_unless_all_are_busy() {
        let slots = Slots::default();
        let (mut a, r) = slots.admit(1, 2).expect("room");
        assert_eq!(r, Admission::Room);
        let (b, _) = slots.admit(2, 2).expect("room");
        a.enter(Phase::Busy);
        b.enter(Phase::Busy);
        assert!(slots.admit(3, 2).is_none(), "every connection is busy");
        // b waits inside a line, then a at a line boundary: b has waited longest.
        b.enter(Phase::Partial);
        a.enter(Phase::Idle);
        let (mut c, r) = slots.admit(3, 2).expect("evicts");
        assert_eq!(r, Admission::Evicted { victim: 2, phase: Phase::Partial });
        assert!(a.evict.try_recv().is_err(), "a stays");
        // b is told to go and no longer counts, though it is still open.
        let (_d, r) = slots.admit(4, 2).expect("evicts again");
        assert_eq!(r, Admission::Evicted { victim: 1, phase: Phase::Idle });
        assert!(a.evict.try_recv().is_ok(), "a is told to go");
        assert!(c.evict.try_recv().is_err());
        drop(b);
        c.enter(Phase::Busy);
        assert_eq!(slots.lock().open.len(), 3, "a (told to go), c, d");
    }
}
