//! Live connections, one per identity, and their MQTT sessions (subscriptions).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use futures::channel::mpsc::UnboundedSender;

use super::topics::SubKind;
use super::{Hub, Identity, State};
use crate::control::api::ConnectionInfo;
use crate::util::iso8601;

/// Who is connected: an IoT Hub identity or a DPS registration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    Hub(Identity),
    Dps(String),
}

/// The client id.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Hub(id) => id.fmt(f),
            Peer::Dps(r) => f.write_str(r),
        }
    }
}

/// Why the hub closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// A new CONNECT for the same identity (400027 ConnectionForcefullyClosedOnNewConnection).
    Replaced,
    /// The SAS token expired (or was expired early by fault injection).
    TokenExpired,
    /// Dropped by fault injection.
    Dropped,
    /// The identity was deleted or disabled.
    IdentityRemoved,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Replaced => "replaced by a new connection",
            CloseReason::TokenExpired => "token expired",
            CloseReason::Dropped => "dropped by fault injection",
            CloseReason::IdentityRemoved => "identity removed",
        }
    }
}

/// A command for the task that owns a connection's MQTT sink.
#[derive(Debug)]
pub(crate) enum ConnCmd {
    /// Publish to the device at QoS 0 or 1.
    Publish { topic: String, payload: Vec<u8>, qos: u8 },
    /// Send whatever C2D messages are deliverable.
    DeliverC2d,
    /// Close the connection.
    Close(CloseReason),
}

/// A live connection.
#[derive(Debug)]
pub(crate) struct Live {
    pub conn_id: u64,
    pub tx: UnboundedSender<ConnCmd>,
    pub auth: String,
    pub token_expiry: Option<u64>,
    pub clean_session: bool,
    pub connected_at: SystemTime,
}

/// Subscriptions of a session: kind → (filter as subscribed, granted QoS).
#[derive(Debug, Default, Clone)]
pub(crate) struct Session {
    pub subs: BTreeMap<SubKind, (String, u8)>,
}

impl Hub {
    /// Registers an accepted connection, closing any previous one of the same peer.
    /// Returns the CONNACK session-present flag.
    pub fn register(&self, state: &mut State, peer: Peer, live: Live) -> bool {
        let clean = live.clean_session || matches!(peer, Peer::Dps(_));
        if let Some(old) = state.conns.insert(peer.clone(), live) {
            tracing::info!(client_id = %peer, old_conn = old.conn_id, "new connection replaces the existing one");
            let _ = old.tx.unbounded_send(ConnCmd::Close(CloseReason::Replaced));
        }
        if clean {
            state.sessions.insert(peer, Session::default());
            false
        } else {
            let present = state.sessions.contains_key(&peer);
            state.sessions.entry(peer).or_default();
            present
        }
    }

    /// Forgets a connection that has ended (no effect if it was already replaced).
    pub fn connection_closed(&self, peer: &Peer, conn_id: u64) {
        let mut st = self.lock();
        if st.conns.get(peer).is_some_and(|l| l.conn_id == conn_id) {
            if let Some(live) = st.conns.remove(peer) {
                if live.clean_session || matches!(peer, Peer::Dps(_)) {
                    st.sessions.remove(peer);
                }
            }
        }
        if let Peer::Hub(id) = peer {
            if id.module_id.is_none() {
                if let Some(q) = st.c2d.get_mut(&id.device_id) {
                    q.release(conn_id);
                }
            }
        }
    }

    /// Applies a SUBSCRIBE; returns the granted QoS per filter (`None`: failure).
    pub fn subscribe(&self, peer: &Peer, conn_id: u64, filters: &[(String, u8)]) -> Vec<Option<u8>> {
        let mut st = self.lock();
        let live = st.conns.get(peer).is_some_and(|l| l.conn_id == conn_id);
        let mut granted = Vec::with_capacity(filters.len());
        let mut c2d = false;
        for (filter, qos) in filters {
            let kind = match peer {
                Peer::Hub(id) => super::topics::hub_filter(filter, id),
                Peer::Dps(_) => super::topics::dps_filter(filter),
            };
            match (kind, live) {
                (Some(kind), true) => {
                    let q = (*qos).min(1);
                    if let Some(s) = st.sessions.get_mut(peer) {
                        s.subs.insert(kind, (filter.clone(), q));
                    }
                    c2d |= kind == SubKind::C2d;
                    granted.push(Some(q));
                }
                _ => granted.push(None),
            }
        }
        if c2d {
            self.send(&st, peer, ConnCmd::DeliverC2d);
        }
        granted
    }

    /// Applies an UNSUBSCRIBE.
    pub fn unsubscribe(&self, peer: &Peer, conn_id: u64, filters: &[String]) {
        let mut st = self.lock();
        if st.conns.get(peer).is_none_or(|l| l.conn_id != conn_id) {
            return;
        }
        if let Some(s) = st.sessions.get_mut(peer) {
            s.subs.retain(|_, (f, _)| !filters.contains(f));
        }
    }

    /// QoS of `peer`'s subscription of `kind`, if `peer` is connected and subscribed.
    pub fn subscribed(&self, state: &State, peer: &Peer, kind: SubKind) -> Option<u8> {
        state.conns.get(peer)?;
        state.sessions.get(peer)?.subs.get(&kind).map(|(_, q)| *q)
    }

    /// Sends a command to `peer`'s connection; false when it is not connected.
    pub fn send(&self, state: &State, peer: &Peer, cmd: ConnCmd) -> bool {
        state.conns.get(peer).is_some_and(|l| l.tx.unbounded_send(cmd).is_ok())
    }

    /// Closes `peer`'s connection; false when it is not connected.
    pub fn close(&self, peer: &Peer, reason: CloseReason) -> bool {
        let st = self.lock();
        self.send(&st, peer, ConnCmd::Close(reason))
    }

    /// Live connections for the control API.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let st = self.lock();
        let mut out: Vec<ConnectionInfo> = st
            .conns
            .iter()
            .map(|(peer, l)| ConnectionInfo {
                endpoint: match peer {
                    Peer::Hub(_) => "hub".into(),
                    Peer::Dps(_) => "dps".into(),
                },
                client_id: peer.to_string(),
                auth: l.auth.clone(),
                token_expiry: l.token_expiry,
                clean_session: l.clean_session,
                subscriptions: st
                    .sessions
                    .get(peer)
                    .map(|s| s.subs.values().map(|(f, _)| f.clone()).collect())
                    .unwrap_or_default(),
                connected_at: iso8601(l.connected_at),
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }
}
