//! The packets a native link sends and receives, through rumqttc's MQTT 3.1.1 and 5 codec
//! (`rumqttc::mqttbytes`): only the encoding and decoding, mapped to and from the
//! connector's own types, with reason codes as numbers.

use bytes::{Bytes, BytesMut};
use connector_core::topic_alias::AliasUse;
use connector_core::{ConnectParams, InboundMessage, MqttVersion, OutboundPacket, QoS};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// The largest packet read (a cloud's limit is far below it).
pub(super) const MAX_PACKET: usize = 16 * 1024 * 1024;

/// The protocol version of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    V4,
    V5,
}

impl Proto {
    pub(super) fn of(v: MqttVersion) -> Self {
        match v {
            MqttVersion::V5 => Proto::V5,
            _ => Proto::V4,
        }
    }
}

/// An encoding failure (a packet too large for the server, a property out of range).
pub(super) type EncodeError = String;

fn q4(q: QoS) -> rumqttc::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::mqttbytes::QoS::AtLeastOnce,
    }
}

fn q5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    }
}

/// What the CONNECT asks of the server (MQTT 5).
#[derive(Debug, Clone, Copy)]
pub(super) struct Asks {
    /// Most QoS 1 messages the server may have in flight towards us.
    pub receive_max: u16,
    /// Most topic aliases the server may use towards us.
    pub topic_alias_max: u16,
}

pub(super) fn connect(
    buf: &mut BytesMut,
    p: &ConnectParams,
    proto: Proto,
    asks: Asks,
) -> Result<(), EncodeError> {
    let keep_alive = u16::try_from(p.keep_alive.as_secs()).unwrap_or(u16::MAX);
    let password = p.password.as_ref().map(|s| s.expose().to_owned());
    match proto {
        Proto::V4 => {
            let login = (p.username.is_some() || password.is_some()).then(|| v4::Login {
                username: p.username.clone().unwrap_or_default(),
                password: password.unwrap_or_default(),
            });
            let c = v4::Connect {
                protocol: rumqttc::mqttbytes::Protocol::V4,
                keep_alive,
                client_id: p.client_id.clone(),
                clean_session: p.clean_session,
                last_will: None,
                login,
            };
            v4::Packet::Connect(c).write(buf, MAX_PACKET).map(drop).map_err(|e| e.to_string())
        }
        Proto::V5 => {
            let login = (p.username.is_some() || password.is_some()).then(|| v5::Login {
                username: p.username.clone().unwrap_or_default(),
                password: password.unwrap_or_default(),
            });
            let mut props = v5::ConnectProperties::new();
            // Keep the session for as long as the broker allows, as the paho link asks.
            props.session_expiry_interval = (!p.clean_session).then_some(u32::MAX);
            props.receive_maximum = Some(asks.receive_max.max(1));
            props.topic_alias_max = Some(asks.topic_alias_max);
            props.max_packet_size = Some(MAX_PACKET as u32);
            let c = v5::Connect {
                keep_alive,
                client_id: p.client_id.clone(),
                clean_start: p.clean_session,
                properties: Some(props),
            };
            v5::Packet::Connect(c, None, login).write(buf, None).map(drop).map_err(|e| e.to_string())
        }
    }
}

/// A PUBLISH; `pkid` 0 for QoS 0.
pub(super) fn publish(
    buf: &mut BytesMut,
    proto: Proto,
    pkid: u16,
    p: &OutboundPacket,
    alias: AliasUse,
    server_max: Option<u32>,
) -> Result<(), EncodeError> {
    match proto {
        Proto::V4 => {
            let mut m = v4::Publish::from_bytes(p.topic.as_str(), q4(p.qos), p.payload.clone());
            m.pkid = pkid;
            m.retain = p.retain;
            v4::Packet::Publish(m)
                .write(buf, server_max.map_or(MAX_PACKET, |m| m as usize))
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Proto::V5 => {
            let w = &p.properties;
            let (topic, alias) = match alias {
                AliasUse::Off => (Bytes::copy_from_slice(p.topic.as_bytes()), None),
                AliasUse::Bind(a) => (Bytes::copy_from_slice(p.topic.as_bytes()), Some(a)),
                AliasUse::Reuse(a) => (Bytes::new(), Some(a)),
            };
            let props = (!w.is_empty() || alias.is_some()).then(|| v5::PublishProperties {
                payload_format_indicator: None,
                message_expiry_interval: w.message_expiry_secs,
                topic_alias: alias,
                response_topic: w.response_topic.clone(),
                correlation_data: w.correlation_data.clone(),
                user_properties: w.user.clone(),
                subscription_identifiers: Vec::new(),
                content_type: w.content_type.clone(),
            });
            let m = v5::Publish {
                dup: false,
                qos: q5(p.qos),
                retain: p.retain,
                topic,
                pkid,
                payload: p.payload.clone(),
                properties: props,
            };
            v5::Packet::Publish(m).write(buf, server_max).map(drop).map_err(|e| e.to_string())
        }
    }
}

pub(super) fn puback(buf: &mut BytesMut, proto: Proto, pkid: u16) {
    // Encoding a PUBACK cannot fail.
    match proto {
        Proto::V4 => drop(v4::Packet::PubAck(v4::PubAck::new(pkid)).write(buf, MAX_PACKET)),
        Proto::V5 => drop(v5::Packet::PubAck(v5::PubAck::new(pkid, None)).write(buf, None)),
    }
}

pub(super) fn subscribe(
    buf: &mut BytesMut,
    proto: Proto,
    pkid: u16,
    filters: &[(String, QoS)],
) -> Result<(), EncodeError> {
    match proto {
        Proto::V4 => {
            let filters = filters.iter().map(|(f, q)| v4::SubscribeFilter::new(f.clone(), q4(*q))).collect();
            v4::Packet::Subscribe(v4::Subscribe { pkid, filters })
                .write(buf, MAX_PACKET)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Proto::V5 => {
            let filters = filters.iter().map(|(f, q)| v5::Filter::new(f.clone(), q5(*q))).collect();
            v5::Packet::Subscribe(v5::Subscribe { pkid, filters, properties: None })
                .write(buf, None)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

pub(super) fn unsubscribe(
    buf: &mut BytesMut,
    proto: Proto,
    pkid: u16,
    filters: &[String],
) -> Result<(), EncodeError> {
    match proto {
        Proto::V4 => v4::Packet::Unsubscribe(v4::Unsubscribe { pkid, topics: filters.to_vec() })
            .write(buf, MAX_PACKET)
            .map(drop)
            .map_err(|e| e.to_string()),
        Proto::V5 => {
            v5::Packet::Unsubscribe(v5::Unsubscribe { pkid, filters: filters.to_vec(), properties: None })
                .write(buf, None)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

pub(super) fn pingreq(buf: &mut BytesMut, proto: Proto) {
    match proto {
        Proto::V4 => drop(v4::Packet::PingReq.write(buf, MAX_PACKET)),
        Proto::V5 => drop(v5::Packet::PingReq(v5::PingReq).write(buf, None)),
    }
}

pub(super) fn disconnect(buf: &mut BytesMut, proto: Proto) {
    match proto {
        Proto::V4 => drop(v4::Packet::Disconnect.write(buf, MAX_PACKET)),
        Proto::V5 => drop(
            v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::NormalDisconnection))
                .write(buf, None),
        ),
    }
}

/// What the server granted at CONNACK.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Granted {
    pub session_present: bool,
    /// Topic aliases the server takes from us (0: none).
    pub topic_alias_max: u16,
    /// QoS 1 messages the server takes in flight from us.
    pub receive_max: Option<u16>,
    /// The largest packet the server takes.
    pub max_packet: Option<u32>,
}

/// A packet from the server.
#[derive(Debug)]
pub(super) enum Incoming {
    /// CONNACK: granted, or refused with a code and its meaning.
    ConnAck(Result<Granted, (u8, String)>),
    /// PUBLISH: its packet id (0 for QoS 0), topic alias, and the message (its topic empty
    /// when the alias stands for it).
    Publish {
        pkid: u16,
        alias: Option<u16>,
        message: InboundMessage,
    },
    /// PUBACK: refused (a reason code of 0x80 or more) or not.
    PubAck {
        pkid: u16,
        refused: Option<u8>,
    },
    /// SUBACK: the QoS granted per filter (`None`: refused).
    SubAck {
        pkid: u16,
        granted: Vec<Option<QoS>>,
    },
    UnsubAck {
        pkid: u16,
    },
    PingResp,
    /// DISCONNECT from the server (MQTT 5), with its reason code.
    Disconnect {
        code: u8,
    },
    /// Anything else (QoS 2 flows, AUTH): nothing to do.
    Other,
}

/// Takes one packet off `buf`; `Ok(None)` when more bytes are needed.
pub(super) fn read(buf: &mut BytesMut, proto: Proto) -> Result<Option<Incoming>, String> {
    match proto {
        Proto::V4 => match v4::Packet::read(buf, MAX_PACKET) {
            Ok(p) => Ok(Some(from_v4(p))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        Proto::V5 => match v5::Packet::read(buf, Some(MAX_PACKET as u32)) {
            Ok(p) => Ok(Some(from_v5(p))),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
    }
}

fn qos_of(q: u8) -> QoS {
    if q == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

fn from_v4(p: v4::Packet) -> Incoming {
    match p {
        v4::Packet::ConnAck(a) => Incoming::ConnAck(match a.code {
            v4::ConnectReturnCode::Success => {
                Ok(Granted { session_present: a.session_present, ..Granted::default() })
            }
            code => {
                let c = code as u8;
                Err((c, connector_core::ConnectFailure::v3_reason(c).to_owned()))
            }
        }),
        v4::Packet::Publish(m) => {
            let mut msg = InboundMessage::new(m.topic, m.payload, qos_of(m.qos as u8));
            msg.retain = m.retain;
            msg.duplicate = m.dup;
            Incoming::Publish { pkid: m.pkid, alias: None, message: msg }
        }
        v4::Packet::PubAck(a) => Incoming::PubAck { pkid: a.pkid, refused: None },
        v4::Packet::SubAck(a) => Incoming::SubAck {
            pkid: a.pkid,
            granted: a
                .return_codes
                .iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(q) => Some(qos_of(*q as u8).min(QoS::AtLeastOnce)),
                    v4::SubscribeReasonCode::Failure => None,
                })
                .collect(),
        },
        v4::Packet::UnsubAck(a) => Incoming::UnsubAck { pkid: a.pkid },
        v4::Packet::PingResp => Incoming::PingResp,
        v4::Packet::Disconnect => Incoming::Disconnect { code: 0 },
        _ => Incoming::Other,
    }
}

fn from_v5(p: v5::Packet) -> Incoming {
    match p {
        v5::Packet::ConnAck(a) => Incoming::ConnAck(match a.code {
            v5::ConnectReturnCode::Success => {
                let p = a.properties.as_ref();
                Ok(Granted {
                    session_present: a.session_present,
                    topic_alias_max: p.and_then(|p| p.topic_alias_max).unwrap_or(0),
                    receive_max: p.and_then(|p| p.receive_max),
                    max_packet: p.and_then(|p| p.max_packet_size),
                })
            }
            code => {
                let c = connack_code(code);
                Err((c, format!("{code:?}")))
            }
        }),
        v5::Packet::Publish(m) => {
            let props = m.properties.unwrap_or_default();
            let topic = String::from_utf8_lossy(&m.topic).into_owned();
            let mut msg = InboundMessage::new(topic, m.payload, qos_of(m.qos as u8));
            msg.retain = m.retain;
            msg.duplicate = m.dup;
            msg.content_type = props.content_type;
            msg.correlation_data = props.correlation_data;
            msg.user_properties = props.user_properties;
            Incoming::Publish { pkid: m.pkid, alias: props.topic_alias, message: msg }
        }
        v5::Packet::PubAck(a) => {
            let code = puback_code(&a.reason);
            Incoming::PubAck { pkid: a.pkid, refused: (code >= 0x80).then_some(code) }
        }
        v5::Packet::SubAck(a) => Incoming::SubAck {
            pkid: a.pkid,
            granted: a
                .return_codes
                .iter()
                .map(|c| match c {
                    v5::SubscribeReasonCode::Success(q) => Some(qos_of(*q as u8).min(QoS::AtLeastOnce)),
                    _ => None,
                })
                .collect(),
        },
        v5::Packet::UnsubAck(a) => Incoming::UnsubAck { pkid: a.pkid },
        v5::Packet::PingResp(_) => Incoming::PingResp,
        v5::Packet::Disconnect(d) => Incoming::Disconnect { code: d.reason_code as u8 },
        _ => Incoming::Other,
    }
}

/// The MQTT 5 reason code of a CONNACK (MQTT 5 §3.2.2.2; 3.1.1's codes 1–3 as they were).
fn connack_code(c: v5::ConnectReturnCode) -> u8 {
    use v5::ConnectReturnCode as C;
    match c {
        C::Success => 0x00,
        C::RefusedProtocolVersion => 0x01,
        C::BadClientId => 0x02,
        C::ServiceUnavailable => 0x03,
        C::UnspecifiedError => 0x80,
        C::MalformedPacket => 0x81,
        C::ProtocolError => 0x82,
        C::ImplementationSpecificError => 0x83,
        C::UnsupportedProtocolVersion => 0x84,
        C::ClientIdentifierNotValid => 0x85,
        C::BadUserNamePassword => 0x86,
        C::NotAuthorized => 0x87,
        C::ServerUnavailable => 0x88,
        C::ServerBusy => 0x89,
        C::Banned => 0x8A,
        C::BadAuthenticationMethod => 0x8C,
        C::TopicNameInvalid => 0x90,
        C::PacketTooLarge => 0x95,
        C::QuotaExceeded => 0x97,
        C::PayloadFormatInvalid => 0x99,
        C::RetainNotSupported => 0x9A,
        C::QoSNotSupported => 0x9B,
        C::UseAnotherServer => 0x9C,
        C::ServerMoved => 0x9D,
        C::ConnectionRateExceeded => 0x9F,
    }
}

/// The reason code of a PUBACK (MQTT 5 §3.4.2.1).
fn puback_code(r: &v5::PubAckReason) -> u8 {
    use v5::PubAckReason as R;
    match r {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(topic: &str) -> OutboundPacket {
        OutboundPacket {
            topic: topic.to_owned(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }
    }

    #[test]
    fn what_is_encoded_reads_back_in_both_versions() {
        for proto in [Proto::V4, Proto::V5] {
            let mut buf = BytesMut::new();
            publish(&mut buf, proto, 7, &packet("a/b"), AliasUse::Off, None)
                .unwrap_or_else(|e| panic!("{e}"));
            // A partial packet asks for more bytes and consumes nothing.
            let mut half = BytesMut::from(&buf[..buf.len() - 2]);
            assert!(matches!(read(&mut half, proto), Ok(None)));
            assert_eq!(half.len(), buf.len() - 2);
            match read(&mut buf, proto) {
                Ok(Some(Incoming::Publish { pkid: 7, message, .. })) => {
                    assert_eq!((message.topic.as_str(), &message.payload[..]), ("a/b", &b"hello"[..]));
                }
                other => panic!("{proto:?}: {other:?}"),
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn an_alias_reuse_sends_no_topic_and_the_alias() {
        let mut buf = BytesMut::new();
        publish(&mut buf, Proto::V5, 1, &packet("a/b"), AliasUse::Reuse(3), None)
            .unwrap_or_else(|e| panic!("{e}"));
        match read(&mut buf, Proto::V5) {
            Ok(Some(Incoming::Publish { alias: Some(3), message, .. })) => assert!(message.topic.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_packet_over_the_servers_maximum_is_refused_before_it_is_sent() {
        let mut p = packet("a/b");
        p.payload = Bytes::from(vec![0u8; 2000]);
        let mut buf = BytesMut::new();
        assert!(publish(&mut buf, Proto::V5, 1, &p, AliasUse::Off, Some(1000)).is_err());
        assert!(publish(&mut buf, Proto::V4, 1, &p, AliasUse::Off, Some(1000)).is_err());
    }
}
