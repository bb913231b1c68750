//! Expiry and removals: the user's per-message expiry and the default expiry, drop-oldest
//! evictions, cancellations; each removal counted and logged through the discard log.

use super::*;

impl Publisher {
    pub(super) fn schedule_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.deadlines.next() else { return };
        if let Some((armed, _)) = self.timer {
            if armed <= at {
                return;
            }
        }
        if let Some((_, h)) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let h = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.expire(ctx);
        });
        self.timer = Some((at, h));
    }

    /// Expiries and callers' waits that came due.
    pub(super) fn expire(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut expired_queued = Vec::new();
        let mut expired = 0;
        while let Some((seq, due)) = self.deadlines.pop_due(now) {
            let Some(entry) = self.entries.get_mut(seq) else { continue };
            match due {
                Due::Wait => {
                    // The caller stops waiting; the message stays.
                    if let (Some(reply), Some(after)) = (entry.reply.take(), entry.wait) {
                        self.stats.timed_out_total += 1;
                        reply.send(Err(PublishError::Timeout { after, id: MessageId(seq) }));
                    }
                }
                Due::Expiry => {
                    let after = entry.expiry.unwrap_or_default();
                    if entry.state == State::Queued {
                        expired_queued.push(seq);
                    }
                    self.stats.expired_total += 1;
                    self.metrics().published("message", "expired");
                    expired += 1;
                    self.finish(seq, Err(PublishError::Expired { after }));
                }
            }
        }
        if !expired_queued.is_empty() {
            self.queue.remove_where(|s| expired_queued.contains(s));
        }
        if expired > 0 {
            self.discard(Discard::Expired, expired, ctx);
        }
        self.update_gauges();
        self.schedule_timer(ctx);
        self.pump(ctx);
    }

    /// Drops a queued message to make room for a newer one (drop-oldest): its caller gets
    /// `Dropped`, and the drop is counted.
    pub(super) fn evict(&mut self, seq: u64, ctx: &mut Context<Self>) {
        self.stats.dropped_oldest_total += 1;
        self.metrics().queue_dropped("oldest", 1);
        self.discard(Discard::Evicted, 1, ctx);
        self.finish(seq, Err(PublishError::Dropped));
    }

    /// Counts and logs removals of accepted messages.
    pub(super) fn discard(&mut self, why: Discard, n: u64, ctx: &mut Context<Self>) {
        self.metrics().discarded(why.label(), n);
        if let Some(wait) = self.discards.note(why, n, Instant::now()) {
            ctx.run_later(wait, |act, _| act.discards.flush(Instant::now()));
        }
    }

    /// Withdraws an accepted message at its caller's request.
    pub(super) fn cancel(&mut self, seq: u64, ctx: &mut Context<Self>) -> Cancelled {
        let Some(entry) = self.entries.get(seq) else { return Cancelled::Unknown };
        let sent = entry.attempts > 0;
        if entry.state == State::Queued {
            self.queue.remove_where(|s| *s == seq);
        }
        self.stats.cancelled_total += 1;
        self.discard(Discard::Cancelled, 1, ctx);
        self.finish(seq, Err(PublishError::Cancelled));
        self.update_gauges();
        self.pump(ctx);
        if sent {
            Cancelled::Abandoned
        } else {
            Cancelled::Withdrawn
        }
    }
}
