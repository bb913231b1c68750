//! Plain data exchanged with the actors: outbound publishes, inbound messages, lifecycle
//! events. No actix here; the actors crate wraps these in its message types.

mod events;
mod inbound;
mod outbound;

pub use events::{
    ConnectFailure, ConnectionEvent, ConnectionState, DisconnectReason, ProxyRefusal, TlsRefusal,
};
pub use inbound::{
    C2dMessage, DesiredPatch, Inbound, InboundKind, InboundMessage, JobNotification, JobOp, JobResponse,
    MethodRequest, StateDocuments, StateResponse,
};
pub use outbound::{OutboundPacket, Publish, QoS, Target, WireProperties};
