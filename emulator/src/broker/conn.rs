//! One MQTT connection: CONNECT authentication, SUBSCRIBE/UNSUBSCRIBE, PUBLISH routing and
//! the task that owns the connection's outbound side.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures::channel::mpsc::{unbounded, UnboundedReceiver};
use futures::StreamExt as _;
use ntex_bytes::Bytes;
use ntex_io::types::PeerAddr;
use ntex_io::IoRef;
use ntex_mqtt::v3;
use ntex_mqtt::QoS;
use ntex_tls::openssl::{PeerCert, PeerCertChain};
use ntex_util::time::Seconds;
use openssl::x509::X509;

use super::ServerError;
use crate::auth::{self, Accepted, ConnectRequest, NOT_AUTHORIZED};
use crate::azure::dps::DpsAuth;
use crate::azure::topics::{classify_hub, HubPublish};
use crate::azure::{properties, ConnCmd, Hub, Identity, Live, Peer};
use crate::util::unix_secs;
use crate::ws::RelayPeers;

/// Largest server-side keep-alive: the Azure load balancer's idle timeout (1767 s).
const MAX_IDLE_SECS: u32 = 1767;

/// A Will message kept until the connection ends.
#[derive(Debug, Clone)]
struct Will {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
}

/// Per-connection state (the ntex-mqtt session state).
pub(crate) struct Conn {
    pub id: u64,
    pub peer: Peer,
    /// `sas`, `x509`, …
    pub auth: String,
    pub model_id: Option<String>,
    pub dps: Option<DpsAuth>,
    /// The client sent DISCONNECT: no Will.
    graceful: Cell<bool>,
    will: Option<Will>,
}

pub(crate) type ConnRef = Rc<Conn>;

fn qos_u8(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// Authenticates a CONNECT and starts the connection task.
pub(crate) async fn handshake(
    hub: &Arc<Hub>,
    hs: v3::Handshake,
    relayed: Option<&RelayPeers>,
) -> Result<v3::HandshakeAck<ConnRef>, ServerError> {
    let (cert, chain): (Option<X509>, Vec<X509>) = match relayed {
        None => (
            hs.io().query::<PeerCert>().as_ref().map(|c| c.0.clone()),
            hs.io().query::<PeerCertChain>().as_ref().map(|c| c.0.clone()).unwrap_or_default(),
        ),
        Some(peers) => {
            let from = hs.io().query::<PeerAddr>().as_ref().map(|a| a.0);
            match from.and_then(|a| peers.get(a)) {
                Some(p) => (p.cert, p.chain),
                None => {
                    tracing::warn!(peer = ?from, "connection to the WebSocket relay listener not from the relay refused");
                    return Ok(hs.not_authorized());
                }
            }
        }
    };
    let pkt = hs.packet();
    let now = hub.now();
    let client_id = pkt.client_id.to_string();
    let will = pkt.last_will.as_ref().map(|w| Will {
        topic: w.topic.to_string(),
        payload: w.message.to_vec(),
        qos: qos_u8(w.qos),
        retain: w.retain,
    });
    let req = ConnectRequest {
        client_id: &client_id,
        username: pkt.username.as_deref(),
        password: pkt.password.as_deref(),
        cert: cert.as_ref(),
        chain: &chain,
        now: unix_secs(now),
    };
    let result = {
        let mut st = hub.lock();
        auth::authenticate(hub, &mut st, &req)
    };
    let result = result.and_then(|a| check_will(&a, will.as_ref()).map(|()| a));
    let accepted = match result {
        Ok(a) => a,
        Err(refusal) => {
            tracing::info!(client_id = %client_id, code = refusal.code, reason = %refusal.reason, "connection refused");
            return Ok(match refusal.code {
                auth::IDENTIFIER_REJECTED => hs.identifier_rejected(),
                auth::SERVER_UNAVAILABLE => hs.service_unavailable(),
                auth::BAD_CREDENTIALS => hs.bad_username_or_pwd(),
                _ => hs.not_authorized(),
            });
        }
    };
    let (peer, method, expiry, model_id, dps) = match accepted {
        Accepted::Hub { identity, method, expiry, model_id } => {
            (Peer::Hub(identity), method, expiry, model_id, None)
        }
        Accepted::Dps { auth, method, expiry } => {
            (Peer::Dps(auth.registration_id.clone()), method, expiry, None, Some(auth))
        }
    };
    let clean_session = pkt.clean_session;
    let keep_alive = u32::from(pkt.keep_alive);
    let conn_id = hub.next_id();
    let (tx, rx) = unbounded();
    let (session_present, c2d_pending) = {
        let mut st = hub.lock();
        if let (Peer::Hub(id), Some(m)) = (&peer, &model_id) {
            st.model_ids.insert(id.clone(), m.clone());
        }
        let live = Live {
            conn_id,
            tx,
            auth: method.clone(),
            token_expiry: expiry,
            clean_session,
            connected_at: now,
        };
        let present = hub.register(&mut st, peer.clone(), live);
        let c2d =
            st.sessions.get(&peer).is_some_and(|s| s.subs.contains_key(&crate::azure::topics::SubKind::C2d));
        (present, c2d)
    };
    tracing::info!(
        client_id = %client_id, conn = conn_id, auth = %method, clean_session, session_present, keep_alive,
        "connection accepted"
    );
    let conn =
        Rc::new(Conn { id: conn_id, peer, auth: method, model_id, dps, graceful: Cell::new(false), will });
    let io = hs.io().get_ref();
    let sink = hs.sink();
    if c2d_pending {
        let _ = hub.lock().conns.get(&conn.peer).map(|l| l.tx.unbounded_send(ConnCmd::DeliverC2d));
    }
    ntex_rt::spawn(run(hub.clone(), conn.clone(), sink, io, rx, expiry));
    let idle = if keep_alive == 0 { MAX_IDLE_SECS } else { (keep_alive + keep_alive / 2).min(MAX_IDLE_SECS) };
    let idle = u16::try_from(idle).unwrap_or(u16::MAX);
    Ok(hs.ack(conn, session_present).idle_timeout(Seconds(idle)))
}

/// A Will must be the identity's own telemetry topic at QoS 0/1 (DPS: no Will).
fn check_will(accepted: &Accepted, will: Option<&Will>) -> Result<(), auth::Refusal> {
    let Some(will) = will else { return Ok(()) };
    let ok = match accepted {
        Accepted::Hub { identity, .. } => {
            will.qos < 2 && matches!(classify_hub(&will.topic, identity), Ok(HubPublish::Telemetry { .. }))
        }
        Accepted::Dps { .. } => false,
    };
    if ok {
        Ok(())
    } else {
        Err(auth::Refusal {
            code: NOT_AUTHORIZED,
            reason: "Will topic is not the identity's telemetry topic".into(),
        })
    }
}

/// The task owning a connection's outbound side: commands from the hub, token expiry,
/// and the clean-up when the connection ends.
async fn run(
    hub: Arc<Hub>,
    conn: ConnRef,
    sink: v3::MqttSink,
    io: IoRef,
    mut rx: UnboundedReceiver<ConnCmd>,
    expiry: Option<u64>,
) {
    let disconnected = io.on_disconnect();
    let expires = async move {
        match expiry {
            Some(se) => {
                let at = UNIX_EPOCH + Duration::from_secs(se);
                let left = at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
                tokio::time::sleep(left).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(disconnected, expires);
    loop {
        tokio::select! {
            biased;
            () = &mut disconnected => break,
            () = &mut expires => {
                tracing::info!(client_id = %conn.peer, conn = conn.id, "token expired, closing the connection");
                io.force_close();
                break;
            }
            cmd = rx.next() => match cmd {
                Some(ConnCmd::Publish { topic, payload, qos }) => publish(&sink, topic, payload, qos),
                Some(ConnCmd::DeliverC2d) => deliver_c2d(&hub, &conn, &sink),
                Some(ConnCmd::Close(reason)) => {
                    tracing::info!(client_id = %conn.peer, conn = conn.id, reason = reason.as_str(), "closing the connection");
                    io.force_close();
                    break;
                }
                None => {
                    io.force_close();
                    break;
                }
            },
        }
    }
    hub.connection_closed(&conn.peer, conn.id);
    if let (false, Some(will), Peer::Hub(id)) = (conn.graceful.get(), &conn.will, &conn.peer) {
        if let Ok(HubPublish::Telemetry { bag }) = classify_hub(&will.topic, id) {
            let bag = properties::parse(bag).unwrap_or_default();
            let mut extra = vec![("iothub-MessageType", "Will")];
            if will.retain {
                extra.push(("mqtt-retain", "true"));
            }
            let sender = crate::azure::telemetry::Sender {
                identity: id,
                auth: &conn.auth,
                model_id: conn.model_id.as_deref(),
            };
            hub.record_telemetry(&sender, &will.topic, &will.payload, bag, will.qos, &extra);
        }
    }
    tracing::debug!(client_id = %conn.peer, conn = conn.id, "connection ended");
}

/// Publishes to the device; QoS 1 sends complete in the background.
pub(crate) fn publish(sink: &v3::MqttSink, topic: String, payload: Vec<u8>, qos: u8) {
    let builder = sink.publish(topic);
    if qos == 0 {
        if let Err(e) = builder.send_at_most_once(Bytes::from(payload)) {
            tracing::debug!(error = %e, "publish to a closed connection");
        }
    } else {
        let fut = builder.send_at_least_once(Bytes::from(payload));
        ntex_rt::spawn(async move {
            if let Err(e) = fut.await {
                tracing::debug!(error = %e, "QoS 1 publish not acknowledged");
            }
        });
    }
}

/// Sends deliverable C2D messages; each completes on PUBACK.
fn deliver_c2d(hub: &Arc<Hub>, conn: &ConnRef, sink: &v3::MqttSink) {
    let Peer::Hub(id) = &conn.peer else { return };
    for d in hub.take_c2d(id, conn.id) {
        tracing::debug!(client_id = %id, seq = d.seq, qos = d.qos, "c2d delivery");
        let builder = sink.publish(d.topic);
        if d.qos == 0 {
            let _ = builder.send_at_most_once(Bytes::from(d.payload));
            continue;
        }
        let fut = builder.send_at_least_once(Bytes::from(d.payload));
        let (hub, device, conn_id) = (hub.clone(), id.device_id.clone(), conn.id);
        ntex_rt::spawn(async move {
            match fut.await {
                Ok(()) => hub.c2d_completed(&device, d.seq),
                Err(_) => hub.c2d_failed(&device, d.seq, conn_id),
            }
        });
    }
}

/// SUBSCRIBE, UNSUBSCRIBE, DISCONNECT and errors.
pub(crate) async fn control(
    hub: &Arc<Hub>,
    conn: &ConnRef,
    ctl: v3::Control<ServerError>,
) -> Result<v3::ControlAck, ServerError> {
    Ok(match ctl {
        v3::Control::Subscribe(mut s) => {
            let filters: Vec<(String, u8)> =
                s.iter_mut().map(|sub| (sub.topic().to_string(), qos_u8(sub.qos()))).collect();
            let granted = hub.subscribe(&conn.peer, conn.id, &filters);
            for ((mut sub, g), (filter, _)) in s.iter_mut().zip(granted).zip(&filters) {
                match g {
                    Some(0) => sub.confirm(QoS::AtMostOnce),
                    Some(_) => sub.confirm(QoS::AtLeastOnce),
                    None => {
                        tracing::info!(client_id = %conn.peer, filter = %filter, "subscription refused");
                        sub.fail();
                    }
                }
            }
            s.ack()
        }
        v3::Control::Unsubscribe(u) => {
            let filters: Vec<String> = u.iter().map(|f| f.to_string()).collect();
            hub.unsubscribe(&conn.peer, conn.id, &filters);
            u.ack()
        }
        v3::Control::Disconnect(d) => {
            conn.graceful.set(true);
            d.ack()
        }
        v3::Control::Error(e) => {
            tracing::info!(client_id = %conn.peer, conn = conn.id, reason = %e.get_ref(), "closing the connection");
            e.ack()
        }
        v3::Control::ProtocolError(e) => {
            tracing::info!(client_id = %conn.peer, conn = conn.id, reason = %e.get_ref(), "protocol error, closing");
            e.ack()
        }
        v3::Control::Ping(p) => p.ack(),
        v3::Control::PeerGone(p) => p.ack(),
        v3::Control::Closed(c) => c.ack(),
        v3::Control::WrBackpressure(w) => w.ack(),
        v3::Control::PublishRelease(r) => r.ack(),
    })
}

/// Identity of a hub connection (for the PUBLISH handlers).
pub(crate) fn hub_identity(conn: &Conn) -> Option<&Identity> {
    match &conn.peer {
        Peer::Hub(id) => Some(id),
        Peer::Dps(_) => None,
    }
}
