//! The AWS IoT MQTT 3.1.1 server on the internal relay listener (see
//! `aws/transport.rs`): CONNECT authentication from what the transport registered,
//! SUBSCRIBE/UNSUBSCRIBE, PUBLISH routing to [`AwsCore::on_publish`], and the task that
//! owns each connection's outbound side, and the start of the services' one-second tick
//! ([`crate::aws::start_ticker`]). MQTT 5 CONNECTs are refused (ntex-mqtt's default
//! protocol handler closes them); QoS 2 closes the connection.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::mpsc::{unbounded, UnboundedReceiver};
use futures::StreamExt as _;
use ntex_io::types::PeerAddr;
use ntex_io::{Filter, Io, IoRef};
use ntex_mqtt::{v3, MqttError, MqttServer, QoS};
use ntex_service::cfg::SharedCfg;
use ntex_service::{fn_factory_with_config, fn_service, ServiceFactory};
use ntex_util::time::Seconds;

use super::ServerError;
use crate::aws::transport::AwsRelayPeers;
use crate::aws::{connack, AwsCmd, AwsCore, AwsLive, Principal};

/// Keep-alive range AWS IoT honours; out-of-range values become the nearest bound.
const KEEP_ALIVE_RANGE: (u32, u32) = (30, 1200);

struct Will {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
}

/// Per-connection state.
pub(crate) struct AwsConn {
    id: u64,
    client_id: String,
    principal: Principal,
    graceful: Cell<bool>,
    will: Option<Will>,
}

type AwsConnRef = Rc<AwsConn>;

fn qos_u8(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// The MQTT service of the internal AWS listener.
pub(crate) fn aws_mqtt_service<F: Filter>(
    core: Arc<AwsCore>,
    peers: Arc<AwsRelayPeers>,
) -> impl ServiceFactory<Io<F>, SharedCfg, Response = (), Error = MqttError<ServerError>, InitError = ()> {
    crate::aws::start_ticker(&core);
    let (c_hs, c_ctl, c_pub) = (core.clone(), core.clone(), core);
    MqttServer::new().v3(
        v3::MqttServer::new(async move |hs: v3::Handshake| handshake(&c_hs, &peers, hs).await)
            .control(fn_factory_with_config(async move |session: v3::Session<AwsConnRef>| {
                let core = c_ctl.clone();
                let conn = session.state().clone();
                Ok::<_, ServerError>(fn_service(async move |ctl: v3::Control<ServerError>| {
                    control(&core, &conn, ctl).await
                }))
            }))
            .publish(fn_factory_with_config(async move |session: v3::Session<AwsConnRef>| {
                let core = c_pub.clone();
                let conn = session.state().clone();
                Ok::<_, ServerError>(fn_service(async move |p: v3::Publish| {
                    let topic = p.publish_topic().to_string();
                    let size = p.payload_size();
                    if size > crate::aws::MAX_PAYLOAD_BYTES {
                        return Err(ServerError::TooLarge { size, limit: crate::aws::MAX_PAYLOAD_BYTES });
                    }
                    let payload = p.read_all().await.map_err(|e| ServerError::Payload(e.to_string()))?;
                    core.on_publish(&conn.client_id, &conn.principal, &topic, &payload, qos_u8(p.qos()), p.retain())
                        .map_err(|reason| {
                            tracing::info!(client_id = %conn.client_id, topic = %topic, reason = %reason, "publish refused, closing");
                            ServerError::Topic { topic, reason }
                        })
                }))
            })),
    )
}

async fn handshake(
    core: &Arc<AwsCore>,
    peers: &AwsRelayPeers,
    hs: v3::Handshake,
) -> Result<v3::HandshakeAck<AwsConnRef>, ServerError> {
    let from = hs.io().query::<PeerAddr>().as_ref().map(|a| a.0);
    let Some(peer) = from.and_then(|a| peers.get(a)) else {
        tracing::warn!(peer = ?from, "connection to the AWS relay listener not from the relay refused");
        return Ok(hs.not_authorized());
    };
    let pkt = hs.packet();
    let client_id = pkt.client_id.to_string();
    let username = pkt.username.as_deref().map(str::to_owned);
    let will =
        pkt.last_will.as_ref().map(|w| (w.topic.to_string(), w.message.to_vec(), qos_u8(w.qos), w.retain));
    let keep_alive = u32::from(pkt.keep_alive);
    let clean_session = pkt.clean_session;
    let (tx, rx) = unbounded();
    let conn_id = core.next_id();
    let accepted = {
        let mut st = core.lock();
        let result =
            core.authenticate(&mut st, &peer, &client_id, username.as_deref()).and_then(|p| match &will {
                Some((topic, _, qos, retain)) => {
                    let ok = !retain
                        && *qos < 2
                        && matches!(
                            crate::aws::topics::classify(topic),
                            Ok(crate::aws::topics::AwsPublish::User)
                        );
                    if ok {
                        Ok(p)
                    } else {
                        Err((
                            connack::NOT_AUTHORIZED,
                            "Will must be a non-retained QoS 0/1 user topic".into(),
                        ))
                    }
                }
                None => Ok(p),
            });
        if let Ok(p) = &result {
            let live = AwsLive { conn_id, tx, principal: p.clone(), subs: Vec::new() };
            core.register(&mut st, &client_id, live);
        }
        result
    };
    let principal = match accepted {
        Ok(p) => p,
        Err((code, reason)) => {
            tracing::info!(client_id = %client_id, code, reason = %reason, "AWS connection refused");
            return Ok(match code {
                connack::IDENTIFIER_REJECTED => hs.identifier_rejected(),
                connack::SERVER_UNAVAILABLE => hs.service_unavailable(),
                connack::BAD_CREDENTIALS => hs.bad_username_or_pwd(),
                _ => hs.not_authorized(),
            });
        }
    };
    tracing::info!(
        client_id = %client_id, conn = conn_id, auth = principal.auth, principal = %principal.id, clean_session,
        keep_alive, "AWS connection accepted"
    );
    let conn = Rc::new(AwsConn {
        id: conn_id,
        client_id,
        principal,
        graceful: Cell::new(false),
        will: will.map(|(topic, payload, qos, _)| Will { topic, payload, qos }),
    });
    ntex_rt::spawn(run(core.clone(), conn.clone(), hs.sink(), hs.io().get_ref(), rx));
    let ka = if keep_alive == 0 {
        KEEP_ALIVE_RANGE.1
    } else {
        keep_alive.clamp(KEEP_ALIVE_RANGE.0, KEEP_ALIVE_RANGE.1)
    };
    let idle = u16::try_from(ka + ka / 2).unwrap_or(u16::MAX);
    // Persistent sessions are not kept: session-present is always 0.
    Ok(hs.ack(conn, false).idle_timeout(Seconds(idle)))
}

async fn run(
    core: Arc<AwsCore>,
    conn: AwsConnRef,
    sink: v3::MqttSink,
    io: IoRef,
    mut rx: UnboundedReceiver<AwsCmd>,
) {
    let disconnected = io.on_disconnect();
    tokio::pin!(disconnected);
    loop {
        tokio::select! {
            biased;
            () = &mut disconnected => break,
            cmd = rx.next() => match cmd {
                Some(AwsCmd::Publish { topic, payload, qos }) => super::conn::publish(&sink, topic, payload, qos),
                Some(AwsCmd::Close(reason)) => {
                    tracing::info!(client_id = %conn.client_id, conn = conn.id, reason, "closing the AWS connection");
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
    core.connection_closed(&conn.client_id, conn.id);
    if let (false, Some(w)) = (conn.graceful.get(), &conn.will) {
        if let Err(e) = core.on_publish(&conn.client_id, &conn.principal, &w.topic, &w.payload, w.qos, false)
        {
            tracing::info!(client_id = %conn.client_id, error = %e, "Will not published");
        }
    }
    tracing::debug!(client_id = %conn.client_id, conn = conn.id, "AWS connection ended");
}

async fn control(
    core: &Arc<AwsCore>,
    conn: &AwsConnRef,
    ctl: v3::Control<ServerError>,
) -> Result<v3::ControlAck, ServerError> {
    Ok(match ctl {
        v3::Control::Subscribe(mut s) => {
            let filters: Vec<(String, u8)> =
                s.iter_mut().map(|sub| (sub.topic().to_string(), qos_u8(sub.qos()))).collect();
            let granted = core.subscribe(&conn.client_id, conn.id, &filters);
            for ((mut sub, g), (filter, _)) in s.iter_mut().zip(granted).zip(&filters) {
                match g {
                    Some(0) => sub.confirm(QoS::AtMostOnce),
                    Some(_) => sub.confirm(QoS::AtLeastOnce),
                    None => {
                        tracing::info!(client_id = %conn.client_id, filter = %filter, "subscription refused");
                        sub.fail();
                    }
                }
            }
            s.ack()
        }
        v3::Control::Unsubscribe(u) => {
            let filters: Vec<String> = u.iter().map(|f| f.to_string()).collect();
            core.unsubscribe(&conn.client_id, conn.id, &filters);
            u.ack()
        }
        v3::Control::Disconnect(d) => {
            conn.graceful.set(true);
            d.ack()
        }
        v3::Control::Error(e) => {
            tracing::info!(client_id = %conn.client_id, reason = %e.get_ref(), "closing the AWS connection");
            e.ack()
        }
        v3::Control::ProtocolError(e) => {
            tracing::info!(client_id = %conn.client_id, reason = %e.get_ref(), "protocol error, closing");
            e.ack()
        }
        v3::Control::Ping(p) => p.ack(),
        v3::Control::PeerGone(p) => p.ack(),
        v3::Control::Closed(c) => c.ack(),
        v3::Control::WrBackpressure(w) => w.ack(),
        v3::Control::PublishRelease(r) => r.ack(),
    })
}
