//! Where handles and children find a child's current address: the slots the supervisor
//! rewrites on every restart, and the Publisher's command channel. A module of its own so
//! that children and handles depend on it, not on the supervisor (`connection`) or the
//! façade (`connector`).

use std::sync::Arc;

use actix::Addr;
use parking_lot::RwLock;

use crate::error::PublishError;
use crate::messages::PublishAck;
use crate::publisher::{Command, PublisherPort};

/// The shared slot through which handles find a child's current address.
pub(crate) type Slot<A> = Arc<RwLock<Addr<A>>>;

/// The Publisher's slot: its address and its command channel.
pub(crate) type PublisherSlot = Arc<RwLock<PublisherPort>>;

/// Hands a wire packet to the current Publisher; the future resolves with its outcome.
pub(crate) fn send_packet(
    slot: &PublisherSlot,
    packet: connector_core::OutboundPacket,
) -> impl std::future::Future<Output = Result<PublishAck, PublishError>> + 'static {
    let answer = command(slot, move |tx| Command::Packet(packet, tx));
    async move { answer.await? }
}

/// Sends a command to the current Publisher now; the future gives its answer, or
/// `Unavailable` when the Publisher is gone.
pub(crate) fn command<T: Send + 'static>(
    slot: &PublisherSlot,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Command,
) -> impl std::future::Future<Output = Result<T, PublishError>> + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = slot.read().commands.send(make(tx)).is_ok();
    async move {
        if !sent {
            return Err(PublishError::Unavailable(actix::MailboxError::Closed));
        }
        rx.await.map_err(|_| PublishError::Unavailable(actix::MailboxError::Closed))
    }
}
