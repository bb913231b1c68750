//! Admission: what happens when a message is accepted — the queue's capacity and the byte
//! cap under the drop policy, the QoS 0 offline rule, the store append.

use super::*;

impl Publisher {
    /// Accepts a message: returns its sequence number, or why not.
    pub(super) fn accept(
        &mut self,
        publish: connector_core::Publish,
        reply: Option<Reply>,
        ctx: &mut Context<Self>,
    ) -> Result<u64, (PublishError, Option<Reply>)> {
        let limits = Limits { wait: publish.get_timeout(), expiry: publish.get_expiry() };
        let packet = match self.args.provider.encode_owned(publish) {
            Ok(p) => p,
            Err(e) => {
                self.metrics().published("message", "invalid");
                return Err((PublishError::Invalid(e), reply));
            }
        };
        self.accept_packet(packet, limits, reply, ctx)
    }

    /// Accepts a packet already mapped onto the wire (the provider's own requests: twin,
    /// method responses): the same queue, window, store and limits as a publish.
    pub(super) fn accept_packet(
        &mut self,
        packet: OutboundPacket,
        limits: Limits,
        reply: Option<Reply>,
        ctx: &mut Context<Self>,
    ) -> Result<u64, (PublishError, Option<Reply>)> {
        let expiry = limits.expiry.or(self.args.options.default_expiry);
        let qos0 = packet.qos == QoS::AtMostOnce;
        if qos0 && self.link.is_none() && self.args.options.offline.qos0 == Qos0Offline::Fail {
            self.metrics().published("message", "not_connected");
            return Err((PublishError::NotConnected, reply));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = packet.size();
        let entries = &self.entries;
        let queued = self.queue.iter().map(|s| entries.get(*s).map_or(0, |e| e.packet.size()));
        match self.args.options.offline.byte_verdict(size, self.incomplete_bytes, queued) {
            ByteVerdict::Fits => {}
            ByteVerdict::FitsEvicting(n) => {
                for _ in 0..n {
                    if let Some(old) = self.queue.pop() {
                        self.evict(old, ctx);
                    }
                }
            }
            ByteVerdict::Refused => {
                let max_bytes = self.args.options.offline.max_bytes.unwrap_or(0);
                self.stats.rejected_newest_total += 1;
                self.metrics().queue_dropped("newest", 1);
                self.metrics().published("message", "store_full");
                debug!(size, max_bytes, incomplete = self.incomplete_bytes, "byte cap: message refused");
                return Err((PublishError::StoreFull { size, max_bytes }, reply));
            }
        }
        match self.queue.push(seq) {
            PushOutcome::Queued => {}
            PushOutcome::QueuedEvicting(old) => self.evict(old, ctx),
            PushOutcome::Rejected(_) => {
                self.stats.rejected_newest_total += 1;
                self.metrics().queue_dropped("newest", 1);
                self.metrics().published("message", "rejected");
                return Err((PublishError::QueueFull { capacity: self.queue.capacity() }, reply));
            }
        }
        let mut persisted = false;
        let mut expires_ms = None;
        if !qos0 {
            if let Some(store) = &mut self.store {
                expires_ms = expiry.map(|d| wall_ms(SystemTime::now()).saturating_add(millis(d)));
                if let Err(e) = store.append(seq, &packet, expires_ms) {
                    error!(error = %e, "store: append failed; message refused");
                    self.queue.remove_where(|s| *s == seq);
                    return Err((PublishError::Persistence(e.to_string()), reply));
                }
                persisted = true;
            }
        }
        self.incomplete_bytes += size;
        let wait = limits.wait.filter(|_| reply.is_some());
        let entry =
            Entry { packet, reply, state: State::Queued, attempts: 0, persisted, expiry, expires_ms, wait };
        self.entries.insert(seq, entry);
        if expiry.is_some() || wait.is_some() {
            if let Some(d) = expiry {
                self.deadlines.push(crate::deadline::deadline_after(d), seq, Due::Expiry, d);
            }
            if let Some(w) = wait {
                self.deadlines.push(crate::deadline::deadline_after(w), seq, Due::Wait, w);
            }
            if self.deadlines.len() > 2 * self.entries.len() + 1024 {
                let entries = &self.entries;
                self.deadlines.prune(|s| entries.get(s).is_some());
            }
            self.schedule_timer(ctx);
        }
        self.pump(ctx);
        Ok(seq)
    }
}
