//! Completions: the transports' PUBLISH completions polled from one `FuturesUnordered`,
//! matched to their entries, answered to callers, recorded in the store; the table
//! compacted.

use super::*;

/// A completion future tagged with its message (no second allocation, unlike `map` + box).
struct Tagged {
    seq: u64,
    generation: u64,
    fut: crate::transport::PublishCompletion,
}

impl std::future::Future for Tagged {
    type Output = Done;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Done> {
        let (seq, generation) = (self.seq, self.generation);
        self.fut.as_mut().poll(cx).map(|r| (seq, generation, r))
    }
}

/// The completion futures of in-flight messages, polled as one stream of the Publisher's
/// context. It never ends: empty, it waits to be woken by the next push.
#[derive(Clone, Default)]
pub(super) struct Completions {
    set: Rc<RefCell<FuturesUnordered<Tagged>>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Completions {
    pub(super) fn push(&self, seq: u64, generation: u64, fut: crate::transport::PublishCompletion) {
        self.set.borrow_mut().push(Tagged { seq, generation, fut });
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Forgets every pending completion (their link is gone).
    pub(super) fn clear(&self) {
        *self.set.borrow_mut() = FuturesUnordered::new();
    }
}

impl Stream for Completions {
    type Item = Done;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Done>> {
        match self.set.borrow_mut().poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(Some(done)),
            _ => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Publisher {
    pub(super) fn on_completion(&mut self, (seq, generation, result): Done, ctx: &mut Context<Self>) {
        let Some(entry) = self.entries.get(seq) else { return };
        let State::InFlight { since, generation: g } = entry.state else { return };
        if g != generation {
            return;
        }
        match result {
            Ok(()) => {
                if entry.packet.qos == QoS::AtMostOnce {
                    self.metrics().sent_qos0.inc();
                } else {
                    let now = Instant::now();
                    let latency = now.saturating_duration_since(since);
                    self.metrics().acked.inc();
                    self.metrics().ack_latency.observe(latency.as_secs_f64());
                    self.watchdog.heard(now, Some(latency));
                }
                self.stats.acked_total += 1;
                self.finish(seq, Ok(()));
                let entries = &self.entries;
                self.watchdog.prune(|s, at| in_flight_since(entries, s, generation, at));
            }
            Err(TransportError::NotConnected) => {
                // Stays in flight until LinkDown puts it back in the queue.
                debug!(seq, "publish interrupted by disconnect");
                return;
            }
            Err(e) => {
                if entry.attempts < 3 {
                    debug!(seq, error = %e, "publish failed; retrying");
                    let size = entry.packet.size();
                    if let Some(entry) = self.entries.get_mut(seq) {
                        entry.state = State::Queued;
                    }
                    self.inflight -= 1;
                    self.inflight_bytes -= size;
                    self.queue.push_front_all(std::iter::once(seq));
                } else {
                    self.stats.failed_total += 1;
                    self.metrics().published("message", "failed");
                    self.discard(Discard::Failed, 1, ctx);
                    self.finish(seq, Err(PublishError::Transport(e)));
                }
            }
        }
        if self.store.as_ref().is_some_and(Store::wants_compaction) {
            self.compact();
        }
        self.pump(ctx);
    }

    /// Completes an entry with an outcome: replies, updates counters and the store.
    pub(super) fn finish(&mut self, seq: u64, outcome: Result<(), PublishError>) {
        let Some(entry) = self.entries.remove(seq) else { return };
        self.incomplete_bytes -= entry.packet.size();
        if let State::InFlight { .. } = entry.state {
            self.inflight -= 1;
            self.inflight_bytes -= entry.packet.size();
        }
        if entry.persisted {
            if let Some(store) = &mut self.store {
                if let Err(e) = store.complete(seq) {
                    warn!(error = %e, seq, "store: completion not recorded; message may be sent again after a restart");
                }
            }
        }
        if let Some(reply) = entry.reply {
            reply.send(outcome.map(|()| PublishAck { id: MessageId(seq), attempts: entry.attempts }));
        }
    }

    pub(super) fn compact(&mut self) {
        let Some(store) = &mut self.store else { return };
        let mut live: Vec<(u64, &OutboundPacket, Option<u64>)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.persisted)
            .map(|(s, e)| (s, &e.packet, e.expires_ms))
            .collect();
        live.sort_by_key(|(s, _, _)| *s);
        if let Err(e) = store.compact(live.into_iter()) {
            warn!(error = %e, "store: compaction failed");
        }
    }
}
