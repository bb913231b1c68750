//! Recovery: messages accepted before a restart read back from the store and queued again.

use super::*;

impl Publisher {
    pub(super) fn recover(&mut self, ctx: &mut Context<Self>) {
        let Some(dir) = self.args.options.persistence.clone() else {
            return;
        };
        match Store::open(&dir, self.args.options.fsync) {
            Ok((store, pending)) => {
                let n = pending.len();
                let now_ms = wall_ms(SystemTime::now());
                let mut seqs = Vec::with_capacity(n);
                for (seq, Stored { packet, expires_ms }) in pending {
                    self.incomplete_bytes += packet.size();
                    // No deadline from the time it was read: only its stored expiry applies.
                    let expiry = expires_ms.map(|at| Duration::from_millis(at.saturating_sub(now_ms)));
                    let entry = Entry {
                        packet,
                        reply: None,
                        state: State::Queued,
                        attempts: 0,
                        persisted: true,
                        expiry,
                        expires_ms,
                        wait: None,
                    };
                    self.entries.insert(seq, entry);
                    if let Some(left) = expiry {
                        self.deadlines.push(crate::deadline::deadline_after(left), seq, Due::Expiry, left);
                    }
                    self.next_seq = self.next_seq.max(seq + 1);
                    seqs.push(seq);
                }
                // Recovered messages were accepted before the restart: they go first and are
                // never refused by the capacity.
                self.queue.push_front_all(seqs.into_iter());
                if n > 0 {
                    tracing::info!(recovered = n, dir = %dir.display(), "store: recovered unsent messages");
                }
                self.store = Some(store);
                self.schedule_timer(ctx);
                self.update_gauges();
            }
            Err(e) => {
                error!(error = %e, dir = %dir.display(), "store: cannot open; persistence disabled");
            }
        }
    }
}
