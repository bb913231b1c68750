//! Draining: the queue sent onto the link within the in-flight window and the provider's
//! publish rate (pacing), in-flight messages put back at the head after a lost link, the
//! paced drain after a reconnect.

use super::*;

impl Publisher {
    /// Sends queued messages while the window has room.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.draining.is_some() {
            self.update_gauges();
            return;
        }
        self.send_some(usize::MAX, ctx);
    }

    pub(super) fn send_some(&mut self, mut budget: usize, ctx: &mut Context<Self>) {
        let Some((generation, link)) = self.link.clone() else {
            self.update_gauges();
            return;
        };
        let window = self.args.options.inflight_window;
        let mut now = None;
        let mut watched = None;
        while budget > 0 && self.inflight < window {
            if let Some(bucket) = &mut self.rate {
                let t = *now.get_or_insert_with(Instant::now);
                if !self.queue.is_empty() && !bucket.try_take(t) {
                    // Over the service's rate: send the rest when the next token is there.
                    if self.rate_retry.is_none() {
                        self.stats.paced_total += 1;
                        let wait = bucket.wait_time(t).max(Duration::from_millis(1));
                        self.rate_retry = Some(ctx.run_later(wait, |act, ctx| {
                            act.rate_retry = None;
                            act.pump(ctx);
                        }));
                    }
                    break;
                }
            }
            let Some(seq) = self.queue.pop() else { break };
            let Some(entry) = self.entries.get_mut(seq) else { continue };
            match link.publish(&entry.packet) {
                Ok(done) => {
                    entry.attempts += 1;
                    if entry.attempts > 1 {
                        self.stats.resent_total += 1;
                    }
                    let since = *now.get_or_insert_with(Instant::now);
                    entry.state = State::InFlight { generation, since };
                    self.inflight += 1;
                    self.inflight_bytes += entry.packet.size();
                    if entry.packet.qos != QoS::AtMostOnce {
                        self.watchdog.sent(seq, since);
                        watched = Some(since);
                    }
                    self.completions.push(seq, generation, done);
                    budget -= 1;
                }
                Err(TransportError::NotConnected) => {
                    // The link is going down; LinkDown will follow. Keep the message first.
                    self.queue.push_front_all(std::iter::once(seq));
                    break;
                }
                Err(TransportError::Busy) => {
                    // Back-pressure from the client library: retry shortly (or on the next
                    // completion, whichever comes first).
                    self.queue.push_front_all(std::iter::once(seq));
                    if self.busy_retry.is_none() {
                        self.busy_retry = Some(ctx.run_later(Duration::from_millis(5), |act, ctx| {
                            act.busy_retry = None;
                            act.pump(ctx);
                        }));
                    }
                    break;
                }
                Err(e) => {
                    warn!(seq, error = %e, "publish refused by the transport");
                    self.stats.failed_total += 1;
                    self.metrics().published("message", "failed");
                    self.discard(Discard::Failed, 1, ctx);
                    self.finish(seq, Err(PublishError::Transport(e)));
                }
            }
        }
        if let (Some(since), None) = (watched, self.watch_timer) {
            // Something is watched: look again when the oldest could first be overdue.
            let after = self.watchdog.stall_after().unwrap_or(self.args.options.ack_timeout);
            self.arm_watchdog(since + after.min(self.args.options.ack_timeout), ctx);
        }
        self.update_gauges();
    }

    pub(super) fn requeue_inflight(&mut self, generation: u64) {
        let mut back: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::InFlight { generation: g, .. } if g == generation))
            .map(|(s, _)| s)
            .collect();
        back.sort_unstable();
        for seq in &back {
            if let Some(e) = self.entries.get_mut(*seq) {
                e.state = State::Queued;
                self.inflight -= 1;
                self.inflight_bytes -= e.packet.size();
            }
        }
        self.queue.push_front_all(back.into_iter());
    }

    pub(super) fn start_draining(&mut self, ctx: &mut Context<Self>) {
        let Some(interval) = self.args.options.offline.drain_interval else {
            return;
        };
        if self.queue.is_empty() {
            return;
        }
        let h = ctx.run_interval(interval, |act, ctx| {
            act.send_some(1, ctx);
            if act.queue.is_empty() {
                if let Some(h) = act.draining.take() {
                    ctx.cancel_future(h);
                }
            }
        });
        self.draining = Some(h);
    }
}
