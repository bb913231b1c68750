//! A minimal blocking MQTT 3.1.1 client for this crate's own tests, built on
//! `rumqttc::mqttbytes::v4` so that no packet is encoded by hand.

use std::io::{self, Read, Write};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::{Error, QoS};

const MAX_PACKET: usize = 1 << 20;

pub(crate) struct RawClient<S: Read + Write> {
    stream: S,
    buf: BytesMut,
}

impl<S: Read + Write> RawClient<S> {
    pub(crate) fn new(stream: S) -> Self {
        RawClient { stream, buf: BytesMut::with_capacity(4096) }
    }

    /// CONNECT and wait for the CONNACK; panics on any I/O or protocol error.
    pub(crate) fn connect(stream: S, id: &str, clean: bool, login: Option<(&str, &str)>) -> (Self, ConnAck) {
        Self::try_connect(stream, id, clean, login).unwrap_or_else(|e| panic!("MQTT connect as {id}: {e}"))
    }

    pub(crate) fn try_connect(
        stream: S,
        id: &str,
        clean: bool,
        login: Option<(&str, &str)>,
    ) -> io::Result<(Self, ConnAck)> {
        let mut client = Self::new(stream);
        let mut connect = Connect::new(id);
        connect.clean_session = clean;
        if let Some((u, p)) = login {
            connect.set_login(u, p);
        }
        client.try_send(Packet::Connect(connect))?;
        match client.try_recv()? {
            Packet::ConnAck(ack) => Ok((client, ack)),
            other => Err(io::Error::other(format!("expected CONNACK, got {other:?}"))),
        }
    }

    pub(crate) fn send(&mut self, packet: Packet) {
        self.try_send(packet).expect("send MQTT packet");
    }

    pub(crate) fn try_send(&mut self, packet: Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        packet.write(&mut out, MAX_PACKET).map_err(|e| io::Error::other(e.to_string()))?;
        self.stream.write_all(&out)?;
        self.stream.flush()
    }

    pub(crate) fn recv(&mut self) -> Packet {
        self.try_recv().expect("receive MQTT packet")
    }

    pub(crate) fn try_recv(&mut self) -> io::Result<Packet> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Next raw bytes as they arrive (for malformed-packet tests).
    pub(crate) fn read_raw(&mut self) -> io::Result<Vec<u8>> {
        if !self.buf.is_empty() {
            return Ok(self.buf.split().to_vec());
        }
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        Ok(chunk[..n].to_vec())
    }

    pub(crate) fn subscribe(&mut self, filter: &str, qos: QoS) {
        let mut sub = Subscribe::new(filter, qos);
        sub.pkid = 1; // packet id 0 is invalid; mosquitto drops the connection
        self.send(Packet::Subscribe(sub));
        match self.recv() {
            Packet::SubAck(_) => {}
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub(crate) fn publish_qos1(&mut self, topic: &str, payload: &[u8], pkid: u16) {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
        p.pkid = pkid;
        self.send(Packet::Publish(p));
        match self.recv() {
            Packet::PubAck(ack) => assert_eq!(ack.pkid, pkid),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}
