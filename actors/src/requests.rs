//! What the request/response actors (the TwinActor, the JobsActor) share: which pending
//! requests wait for a link, which went out on the current one, the link epochs that tell
//! the two apart, the deadline timer, and handing a request's packet to the Publisher.
//!
//! A request is sent only while a link is up and after the Subscriber has handled that
//! link (so the SUBSCRIBE for its answers precedes it on the wire). When a link drops, the
//! requests sent on it go back to wait for the next one and are sent again with the same
//! id: their answers were lost with the link. A request the Publisher acknowledged on a
//! link that has gone down since is sent again too (a second answer is ignored).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use connector_core::OutboundPacket;

use crate::error::PublishError;
use crate::messages::{Barrier, PublishPacket};
use crate::publisher::Publisher;
use crate::subscriber::Subscriber;

pub(crate) use crate::deadline::deadline_after;

/// Why a request's packet could not be handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendFailure {
    /// No link, and the Publisher refused to wait for one.
    Disconnected,
    /// The Publisher (or the connection) stopped.
    Stopped,
    /// The Publisher failed it otherwise.
    Publish(PublishError),
}

/// An actor that correlates requests with answers over the connection's links.
pub(crate) trait Requester: Actor<Context = Context<Self>> {
    /// Its link bookkeeping.
    fn links(&mut self) -> &mut Links;
    /// Whether `rid` still waits for its answer.
    fn is_pending(&self, rid: &str) -> bool;
    /// The earliest deadline of the pending requests.
    fn next_deadline(&self) -> Option<Instant>;
    /// Encodes and hands a pending request to the Publisher (see [`hand_over`]).
    fn send(&mut self, rid: String, ctx: &mut Context<Self>);
    /// The request could not be sent: answer its caller.
    fn send_failed(&mut self, rid: &str, failure: SendFailure);
    /// Fails the requests whose deadline has passed.
    fn expire(&mut self, ctx: &mut Context<Self>);
    /// The link of `epoch` is ready (the Subscriber handled it); pending requests were sent.
    fn ready(&mut self, ctx: &mut Context<Self>);
    /// The broker acknowledged `rid`'s packet: `true` when that completed the pending
    /// request (a platform that does not answer it), so no answer is awaited; `false` for
    /// a request that is not pending.
    fn acknowledged(&mut self, rid: &str) -> bool {
        let _ = rid;
        false
    }
}

/// Link state of a [`Requester`].
#[derive(Debug, Default)]
pub(crate) struct Links {
    /// Request ids to send once a link is ready (made offline, or lost with a link).
    unsent: BTreeSet<String>,
    /// Request ids whose packet the Publisher completed on the current link.
    sent: BTreeSet<String>,
    online: bool,
    epoch: u64,
    timer: Option<(Instant, SpawnHandle)>,
}

impl Links {
    /// Whether a link is up and ready.
    pub fn online(&self) -> bool {
        self.online
    }

    /// A new request: `true` if it is to be sent now, else it waits for the next link.
    pub fn admit(&mut self, rid: &str) -> bool {
        if !self.online {
            self.unsent.insert(rid.to_owned());
        }
        self.online
    }

    /// The request ended (answered, failed, expired).
    pub fn forget(&mut self, rid: &str) {
        self.sent.remove(rid);
        self.unsent.remove(rid);
    }

    /// Everything ended.
    pub fn clear(&mut self) {
        self.sent.clear();
        self.unsent.clear();
    }

    /// The link went down: what was sent on it waits for the next one.
    pub fn down(&mut self) {
        self.epoch += 1;
        self.online = false;
        let lost = std::mem::take(&mut self.sent);
        self.unsent.extend(lost);
    }
}

/// A link came up: once the Subscriber has handled it (the barrier), the actor sends what
/// waits and its [`Requester::ready`] runs.
pub(crate) fn link_up<A: Requester>(act: &mut A, subscriber: &Addr<Subscriber>, ctx: &mut Context<A>) {
    let links = act.links();
    links.epoch += 1;
    let epoch = links.epoch;
    let fut = subscriber.send(Barrier);
    ctx.spawn(fut.into_actor(act).map(move |_, act, ctx| {
        let links = act.links();
        if epoch != links.epoch {
            return;
        }
        links.online = true;
        for rid in std::mem::take(&mut links.unsent) {
            act.send(rid, ctx);
        }
        act.ready(ctx);
    }));
}

/// Hands a request's packet to the Publisher with what is left of its deadline, and
/// records on which link it went out.
pub(crate) fn hand_over<A: Requester>(
    act: &mut A,
    publisher: &Addr<Publisher>,
    rid: String,
    packet: OutboundPacket,
    deadline: Instant,
    ctx: &mut Context<A>,
) {
    // Worth sending only while its requester waits: it expires with the request.
    let expiry = Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
    let fut = publisher.send(PublishPacket { packet, expiry });
    let epoch = act.links().epoch;
    ctx.spawn(fut.into_actor(act).map(move |res, act, ctx| {
        let failure = match res {
            Ok(Ok(_)) => {
                if act.acknowledged(&rid) {
                    act.links().forget(&rid);
                } else if !act.is_pending(&rid) {
                    // Answered before the acknowledgement was seen.
                } else if epoch == act.links().epoch {
                    act.links().sent.insert(rid);
                } else if act.links().online {
                    // Acknowledged, but perhaps on the link that went down since, with its
                    // answer: ask again.
                    act.send(rid, ctx);
                } else {
                    act.links().unsent.insert(rid);
                }
                return;
            }
            Ok(Err(PublishError::Expired { .. })) => return, // the deadline reports it
            Ok(Err(PublishError::NotConnected)) => SendFailure::Disconnected,
            Ok(Err(PublishError::Stopped)) | Err(_) => SendFailure::Stopped,
            Ok(Err(e)) => SendFailure::Publish(e),
        };
        act.links().forget(&rid);
        act.send_failed(&rid, failure);
    }));
}

/// Arms the deadline timer for the earliest pending deadline (unless an earlier one is
/// armed); when it fires, [`Requester::expire`] runs.
pub(crate) fn arm_timer<A: Requester>(act: &mut A, ctx: &mut Context<A>) {
    let Some(at) = act.next_deadline() else { return };
    let links = act.links();
    if let Some((armed, _)) = links.timer {
        if armed <= at {
            return;
        }
    }
    if let Some((_, h)) = links.timer.take() {
        ctx.cancel_future(h);
    }
    let h = ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
        act.links().timer = None;
        act.expire(ctx);
        arm_timer(act, ctx);
    });
    act.links().timer = Some((at, h));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let before = Instant::now();
        assert!(deadline_after(Duration::from_secs(1)) > before);
        let far = deadline_after(Duration::MAX);
        assert!(far > before + Duration::from_secs(50 * 365 * 24 * 3600));
    }
}
