//! The AWS IoT MQTT server (3.1.1 and 5) on the internal relay listener (see
//! `aws/transport.rs`): CONNECT authentication from what the transport registered,
//! SUBSCRIBE/UNSUBSCRIBE, PUBLISH routing to [`AwsCore::on_publish`], the task that owns
//! each connection's outbound side, and the start of the services' one-second tick
//! ([`crate::aws::start_ticker`]). QoS 2 closes the connection.
//!
//! MQTT 5: the same rules with reason codes (CONNACK 0x85 client id, 0x86 credentials,
//! 0x87 not authorized, 0x88 unavailable; SUBACK 0x8F for refused filters; DISCONNECT
//! with a reason string when the server closes: 0x8E when a newer connection took the
//! client id, 0x98 otherwise). CONNACK advertises Maximum QoS 1, no
//! retain, no shared subscriptions or subscription identifiers, Topic Alias Maximum 8,
//! Receive Maximum 100 (AWS's in-flight QoS 1 limit),
//! and Server Keep Alive when the client's value was clamped. Inbound topic aliases are
//! resolved. User properties, content type, response topic, correlation data and the
//! payload format indicator of a PUBLISH (and of a Will) reach MQTT 5 subscribers
//! unchanged and are captured with telemetry; MQTT 3.1.1 subscribers get the bare message.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::mpsc::{unbounded, UnboundedReceiver};
use futures::StreamExt as _;
use ntex_bytes::ByteString;
use ntex_io::types::PeerAddr;
use ntex_io::{Filter, Io, IoRef};
use ntex_mqtt::{v3, v5, MqttError, MqttServer, QoS};
use ntex_service::cfg::SharedCfg;
use ntex_service::{fn_factory_with_config, fn_service, ServiceFactory};
use ntex_util::time::Seconds;

use super::ServerError;
use crate::aws::transport::AwsRelayPeers;
use crate::aws::{connack, AwsCmd, AwsCore, AwsLive, MessageProps, Principal};

/// Keep-alive range AWS IoT honours; out-of-range values become the nearest bound.
const KEEP_ALIVE_RANGE: (u32, u32) = (30, 1200);
/// Topic Alias Maximum in the MQTT 5 CONNACK (the value observed from AWS IoT).
const TOPIC_ALIAS_MAX: u16 = 8;
/// Receive Maximum in the MQTT 5 CONNACK: AWS IoT's 100 unacknowledged inbound QoS 1.
const RECEIVE_MAX: std::num::NonZeroU16 = std::num::NonZeroU16::new(100).expect("100 is not zero");

struct Will {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    props: MessageProps,
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

/// Errors of the v5 publish service close the connection (DISCONNECT with a reason).
impl TryFrom<ServerError> for v5::PublishAck {
    type Error = ServerError;

    fn try_from(e: ServerError) -> Result<Self, ServerError> {
        Err(e)
    }
}

/// The MQTT service of the internal AWS listener.
pub(crate) fn aws_mqtt_service<F: Filter>(
    core: Arc<AwsCore>,
    peers: Arc<AwsRelayPeers>,
) -> impl ServiceFactory<Io<F>, SharedCfg, Response = (), Error = MqttError<ServerError>, InitError = ()> {
    crate::aws::start_ticker(&core);
    let (c_hs, c_ctl, c_pub) = (core.clone(), core.clone(), core.clone());
    let (c5_hs, c5_ctl, c5_pub, peers5) = (core.clone(), core.clone(), core, peers.clone());
    MqttServer::new()
        .v3(v3::MqttServer::new(async move |hs: v3::Handshake| handshake(&c_hs, &peers, hs).await)
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
                    let payload = read_payload(size, p.read_all()).await?;
                    on_publish(
                        &core,
                        &conn,
                        topic,
                        &payload,
                        qos_u8(p.qos()),
                        p.retain(),
                        &MessageProps::default(),
                    )
                }))
            })))
        .v5(v5::MqttServer::new(async move |hs: v5::Handshake| handshake_v5(&c5_hs, &peers5, hs).await)
            .control(fn_factory_with_config(async move |session: v5::Session<AwsConnRef>| {
                let core = c5_ctl.clone();
                let conn = session.state().clone();
                Ok::<_, ServerError>(fn_service(async move |ctl: v5::Control<ServerError>| {
                    control_v5(&core, &conn, ctl).await
                }))
            }))
            .publish(fn_factory_with_config(async move |session: v5::Session<AwsConnRef>| {
                let core = c5_pub.clone();
                let conn = session.state().clone();
                Ok::<_, ServerError>(fn_service(async move |p: v5::Publish| {
                    let topic = p.publish_topic().to_string();
                    let props = props_from_v5(&p.packet().properties);
                    let payload = read_payload(p.payload_size(), p.read_all()).await?;
                    on_publish(&core, &conn, topic, &payload, qos_u8(p.qos()), p.retain(), &props)?;
                    Ok::<_, ServerError>(p.ack())
                }))
            })))
}

async fn read_payload<E: std::fmt::Display>(
    size: usize,
    read: impl std::future::Future<Output = Result<ntex_bytes::Bytes, E>>,
) -> Result<ntex_bytes::Bytes, ServerError> {
    if size > crate::aws::MAX_PAYLOAD_BYTES {
        return Err(ServerError::TooLarge { size, limit: crate::aws::MAX_PAYLOAD_BYTES });
    }
    read.await.map_err(|e| ServerError::Payload(e.to_string()))
}

fn on_publish(
    core: &AwsCore,
    conn: &AwsConn,
    topic: String,
    payload: &[u8],
    qos: u8,
    retain: bool,
    props: &MessageProps,
) -> Result<(), ServerError> {
    core.on_publish(&conn.client_id, &conn.principal, &topic, payload, qos, retain, props).map_err(|reason| {
        tracing::info!(client_id = %conn.client_id, topic = %topic, reason = %reason, "publish refused, closing");
        ServerError::Topic { topic, reason }
    })
}

fn props_from_v5(p: &v5::codec::PublishProperties) -> MessageProps {
    MessageProps {
        user_properties: p.user_properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        content_type: p.content_type.as_ref().map(|c| c.to_string()),
        response_topic: p.response_topic.as_ref().map(|t| t.to_string()),
        correlation_data: p.correlation_data.as_ref().map(|d| d.to_vec()),
        utf8_payload: p.is_utf8_payload,
        topic_alias: p.topic_alias.map(|a| a.get()),
    }
}

/// What both protocol versions' CONNECT carry.
struct Hello {
    client_id: String,
    username: Option<String>,
    /// The Will and its retain flag.
    will: Option<(Will, bool)>,
    keep_alive: u16,
    clean: bool,
    version: u8,
}

/// An accepted connection: its state, the command stream of its task, the keep-alive
/// granted (seconds) and the idle timeout.
struct Accepted {
    conn: AwsConnRef,
    rx: UnboundedReceiver<AwsCmd>,
    keep_alive: u16,
    idle: u16,
}

/// Authentication and registration, shared by both versions; `Err` is the 3.1.1
/// CONNACK code and the reason.
fn accept(
    core: &Arc<AwsCore>,
    peers: &AwsRelayPeers,
    from: Option<std::net::SocketAddr>,
    hello: Hello,
) -> Result<Accepted, (u8, String)> {
    let Some(peer) = from.and_then(|a| peers.get(a)) else {
        tracing::warn!(peer = ?from, "connection to the AWS relay listener not from the relay refused");
        return Err((connack::NOT_AUTHORIZED, "not from the relay".into()));
    };
    let (tx, rx) = unbounded();
    let conn_id = core.next_id();
    let Hello { client_id, username, will, keep_alive, clean, version } = hello;
    let accepted = {
        let mut st = core.lock();
        let result =
            core.authenticate(&mut st, &peer, &client_id, username.as_deref()).and_then(|p| match &will {
                Some((w, retain)) => {
                    let ok = !retain
                        && w.qos < 2
                        && matches!(
                            crate::aws::topics::classify(&w.topic),
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
    let principal = accepted.inspect_err(|(code, reason)| {
        tracing::info!(client_id = %client_id, code, reason = %reason, "AWS connection refused");
    })?;
    tracing::info!(
        client_id = %client_id, conn = conn_id, auth = principal.auth, principal = %principal.id, clean_session = clean,
        keep_alive, mqtt = version, "AWS connection accepted"
    );
    let conn = Rc::new(AwsConn {
        id: conn_id,
        client_id,
        principal,
        graceful: Cell::new(false),
        will: will.map(|(w, _)| w),
    });
    let ka = if keep_alive == 0 {
        KEEP_ALIVE_RANGE.1
    } else {
        u32::from(keep_alive).clamp(KEEP_ALIVE_RANGE.0, KEEP_ALIVE_RANGE.1)
    };
    let idle = u16::try_from(ka + ka / 2).unwrap_or(u16::MAX);
    Ok(Accepted { conn, rx, keep_alive: u16::try_from(ka).unwrap_or(u16::MAX), idle })
}

async fn handshake(
    core: &Arc<AwsCore>,
    peers: &AwsRelayPeers,
    hs: v3::Handshake,
) -> Result<v3::HandshakeAck<AwsConnRef>, ServerError> {
    let from = hs.io().query::<PeerAddr>().as_ref().map(|a| a.0);
    let pkt = hs.packet();
    let hello = Hello {
        client_id: pkt.client_id.to_string(),
        username: pkt.username.as_deref().map(str::to_owned),
        will: pkt.last_will.as_ref().map(|w| {
            let will = Will {
                topic: w.topic.to_string(),
                payload: w.message.to_vec(),
                qos: qos_u8(w.qos),
                props: MessageProps::default(),
            };
            (will, w.retain)
        }),
        keep_alive: pkt.keep_alive,
        clean: pkt.clean_session,
        version: 4,
    };
    match accept(core, peers, from, hello) {
        Ok(a) => {
            ntex_rt::spawn(run(core.clone(), a.conn.clone(), Sink::V3(hs.sink()), hs.io().get_ref(), a.rx));
            // Persistent sessions are not kept: session-present is always 0.
            Ok(hs.ack(a.conn, false).idle_timeout(Seconds(a.idle)))
        }
        Err((code, _)) => Ok(match code {
            connack::IDENTIFIER_REJECTED => hs.identifier_rejected(),
            connack::SERVER_UNAVAILABLE => hs.service_unavailable(),
            connack::BAD_CREDENTIALS => hs.bad_username_or_pwd(),
            _ => hs.not_authorized(),
        }),
    }
}

async fn handshake_v5(
    core: &Arc<AwsCore>,
    peers: &AwsRelayPeers,
    hs: v5::Handshake,
) -> Result<v5::HandshakeAck<AwsConnRef>, ServerError> {
    use v5::codec::ConnectAckReason as R;
    let from = hs.io().query::<PeerAddr>().as_ref().map(|a| a.0);
    let pkt = hs.packet();
    let hello = Hello {
        client_id: pkt.client_id.to_string(),
        username: pkt.username.as_deref().map(str::to_owned),
        will: pkt.last_will.as_ref().map(|w| {
            let props = MessageProps {
                user_properties: w
                    .user_properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                content_type: w.content_type.as_ref().map(|c| c.to_string()),
                response_topic: w.response_topic.as_ref().map(|t| t.to_string()),
                correlation_data: w.correlation_data.as_ref().map(|d| d.to_vec()),
                utf8_payload: w.is_utf8_payload.unwrap_or(false),
                topic_alias: None,
            };
            let will =
                Will { topic: w.topic.to_string(), payload: w.message.to_vec(), qos: qos_u8(w.qos), props };
            (will, w.retain)
        }),
        keep_alive: pkt.keep_alive,
        clean: pkt.clean_start,
        version: 5,
    };
    let asked = pkt.keep_alive;
    match accept(core, peers, from, hello) {
        Ok(a) => {
            ntex_rt::spawn(run(core.clone(), a.conn.clone(), Sink::V5(hs.sink()), hs.io().get_ref(), a.rx));
            let granted = a.keep_alive;
            Ok(hs.ack(a.conn).keep_alive(a.idle).with(|ack| {
                ack.retain_available = false;
                ack.shared_subscription_available = false;
                ack.subscription_identifiers_available = false;
                ack.topic_alias_max = TOPIC_ALIAS_MAX;
                ack.receive_max = RECEIVE_MAX;
                // Tell the client when its keep-alive was clamped.
                ack.server_keepalive_sec = (granted != asked).then_some(granted);
            }))
        }
        Err((code, reason)) => {
            let rc = match code {
                connack::IDENTIFIER_REJECTED => R::ClientIdentifierNotValid,
                connack::SERVER_UNAVAILABLE => R::ServerUnavailable,
                connack::BAD_CREDENTIALS => R::BadUserNameOrPassword,
                _ => R::NotAuthorized,
            };
            Ok(hs.fail_with(v5::codec::ConnectAck {
                reason_code: rc,
                reason_string: Some(reason.into()),
                ..Default::default()
            }))
        }
    }
}

/// The outbound side of a connection, by protocol version.
enum Sink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

impl Sink {
    fn publish(&self, topic: String, payload: Vec<u8>, qos: u8, props: &MessageProps) {
        match self {
            Sink::V3(s) => super::conn::publish(s, topic, payload, qos),
            Sink::V5(s) => {
                let builder = s.publish(ByteString::from(topic)).properties(|p| {
                    p.user_properties = props
                        .user_properties
                        .iter()
                        .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
                        .collect();
                    p.content_type = props.content_type.as_deref().map(ByteString::from);
                    p.response_topic = props.response_topic.as_deref().map(ByteString::from);
                    p.correlation_data = props.correlation_data.clone().map(ntex_bytes::Bytes::from);
                    p.is_utf8_payload = props.utf8_payload;
                });
                let payload = ntex_bytes::Bytes::from(payload);
                if qos == 0 {
                    if let Err(e) = builder.send_at_most_once(payload) {
                        tracing::debug!(error = %e, "publish to a closed connection");
                    }
                } else {
                    let fut = builder.send_at_least_once(payload);
                    ntex_rt::spawn(async move {
                        if let Err(e) = fut.await {
                            tracing::debug!(error = %e, "QoS 1 publish not acknowledged");
                        }
                    });
                }
            }
        }
    }

    /// Closes the connection (MQTT 5: DISCONNECT with the reason first).
    fn close(&self, io: &IoRef, reason: &'static str) {
        match self {
            Sink::V3(_) => io.force_close(),
            Sink::V5(s) => s.close_with_reason(v5::codec::Disconnect {
                reason_code: if reason == crate::aws::CLOSE_DUPLICATE {
                    v5::codec::DisconnectReasonCode::SessionTakenOver
                } else {
                    v5::codec::DisconnectReasonCode::AdministrativeAction
                },
                reason_string: Some(ByteString::from(reason)),
                ..Default::default()
            }),
        }
    }
}

async fn run(core: Arc<AwsCore>, conn: AwsConnRef, sink: Sink, io: IoRef, mut rx: UnboundedReceiver<AwsCmd>) {
    let disconnected = io.on_disconnect();
    tokio::pin!(disconnected);
    loop {
        tokio::select! {
            biased;
            () = &mut disconnected => break,
            cmd = rx.next() => match cmd {
                Some(AwsCmd::Publish { topic, payload, qos, props }) => sink.publish(topic, payload, qos, &props),
                Some(AwsCmd::Close(reason)) => {
                    tracing::info!(client_id = %conn.client_id, conn = conn.id, reason, "closing the AWS connection");
                    sink.close(&io, reason);
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
        if let Err(e) =
            core.on_publish(&conn.client_id, &conn.principal, &w.topic, &w.payload, w.qos, false, &w.props)
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

async fn control_v5(
    core: &Arc<AwsCore>,
    conn: &AwsConnRef,
    ctl: v5::Control<ServerError>,
) -> Result<v5::ControlAck, ServerError> {
    use v5::codec::{DisconnectReasonCode as D, SubscribeAckReason};
    Ok(match ctl {
        v5::Control::Subscribe(mut s) => {
            let filters: Vec<(String, u8)> =
                s.iter_mut().map(|sub| (sub.topic().to_string(), qos_u8(sub.options().qos))).collect();
            let granted = core.subscribe(&conn.client_id, conn.id, &filters);
            for ((mut sub, g), (filter, _)) in s.iter_mut().zip(granted).zip(&filters) {
                match g {
                    Some(0) => sub.confirm(QoS::AtMostOnce),
                    Some(_) => sub.confirm(QoS::AtLeastOnce),
                    None => {
                        tracing::info!(client_id = %conn.client_id, filter = %filter, "subscription refused");
                        sub.fail(SubscribeAckReason::TopicFilterInvalid);
                    }
                }
            }
            s.ack()
        }
        v5::Control::Unsubscribe(u) => {
            let filters: Vec<String> = u.iter().map(|f| f.to_string()).collect();
            core.unsubscribe(&conn.client_id, conn.id, &filters);
            u.ack()
        }
        v5::Control::Disconnect(d) => {
            // Reason 0x04 asks for the Will to be published anyway.
            conn.graceful.set(d.packet().reason_code != D::DisconnectWithWillMessage);
            d.ack()
        }
        v5::Control::Error(e) => {
            let reason = match e.get_ref() {
                ServerError::TooLarge { .. } => D::PacketTooLarge,
                ServerError::Topic { .. } => D::TopicNameInvalid,
                _ => D::ImplementationSpecificError,
            };
            tracing::info!(client_id = %conn.client_id, reason = %e.get_ref(), "closing the AWS connection");
            let text = ByteString::from(e.get_ref().to_string());
            e.reason_string(text).ack(reason)
        }
        v5::Control::ProtocolError(e) => {
            tracing::info!(client_id = %conn.client_id, reason = %e.get_ref(), "protocol error, closing");
            e.ack()
        }
        v5::Control::Auth(a) => {
            tracing::info!(client_id = %conn.client_id, "enhanced authentication is not supported, closing");
            a.ack(v5::codec::Auth::default())
        }
        v5::Control::Ping(p) => p.ack(),
        v5::Control::PeerGone(p) => p.ack(),
        v5::Control::Closed(c) => c.ack(),
        v5::Control::WrBackpressure(w) => w.ack(),
        v5::Control::PublishRelease(r) => r.ack(),
    })
}
