//! Cloud-to-device queues: one per device, delivered at the subscription's QoS on
//! `devices/{id}/messages/devicebound/{bag}`, completed by the device's PUBACK and sent
//! again on the next connection while unacknowledged (§7).

use std::collections::VecDeque;

use super::properties::{self, Bag};
use super::topics::SubKind;
use super::{ConnCmd, Hub, Identity, Peer};
use crate::control::api::{C2dAccepted, C2dRequest, PendingC2d};
use crate::util::{b64, b64_decode};

/// C2D messages are limited to 64 KB (body plus properties).
pub(crate) const MAX_C2D_BYTES: usize = 64 * 1024;

/// A queued message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub seq: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    /// Connection it was sent on and not yet acknowledged.
    pub in_flight: Option<u64>,
    pub delivery_count: u32,
}

/// A device's queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub messages: VecDeque<Message>,
}

impl Queue {
    /// Messages sent on `conn_id` become deliverable again.
    pub fn release(&mut self, conn_id: u64) {
        for m in &mut self.messages {
            if m.in_flight == Some(conn_id) {
                m.in_flight = None;
            }
        }
    }
}

/// A refused C2D send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum C2dError {
    #[error("device {0} not found")]
    DeviceNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("message of {size} bytes exceeds {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("device queue holds the maximum of {0} messages")]
    QueueFull(usize),
}

/// One send to perform on a connection.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub seq: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
}

impl Hub {
    /// Queues a C2D message and pokes the device's connection.
    pub fn send_c2d(&self, device_id: &str, req: C2dRequest) -> Result<C2dAccepted, C2dError> {
        let payload = match (&req.payload, &req.payload_base64) {
            (Some(_), Some(_)) => {
                return Err(C2dError::Invalid("give payload or payloadBase64, not both".into()))
            }
            (Some(p), None) => p.as_bytes().to_vec(),
            (None, Some(b)) => {
                b64_decode(b).ok_or_else(|| C2dError::Invalid("payloadBase64 is not base64".into()))?
            }
            (None, None) => Vec::new(),
        };
        if let Some(ack) = &req.ack {
            if !["none", "positive", "negative", "full"].contains(&ack.as_str()) {
                return Err(C2dError::Invalid("ack must be none, positive, negative or full".into()));
            }
        }
        let mut bag: Bag = Vec::new();
        for (name, value) in [
            ("$.mid", &req.message_id),
            ("$.cid", &req.correlation_id),
            ("$.uid", &req.user_id),
            ("$.ct", &req.content_type),
            ("$.ce", &req.content_encoding),
        ] {
            if let Some(v) = value {
                bag.push((name.to_string(), Some(v.clone())));
            }
        }
        bag.push(("$.to".into(), Some(format!("/devices/{device_id}/messages/deviceBound"))));
        if let Some(ack) = &req.ack {
            bag.push(("iothub-ack".into(), Some(ack.clone())));
        }
        for (name, value) in &req.properties {
            if name.is_empty() || name.starts_with("$.") || name.starts_with("iothub-") {
                return Err(C2dError::Invalid(format!("application property name {name:?} is reserved")));
            }
            bag.push((name.clone(), value.clone()));
        }
        let size = payload.len() + properties::size(&bag);
        if size > MAX_C2D_BYTES {
            return Err(C2dError::TooLarge { size, limit: MAX_C2D_BYTES });
        }
        let topic = format!("devices/{device_id}/messages/devicebound/{}", properties::encode(&bag));
        let mut st = self.lock();
        if !st.registry.devices.contains_key(device_id) {
            return Err(C2dError::DeviceNotFound(device_id.to_string()));
        }
        let max = self.settings.c2d_max_pending;
        let queue = st.c2d.entry(device_id.to_string()).or_default();
        if queue.messages.len() >= max {
            return Err(C2dError::QueueFull(max));
        }
        let seq = self.next_id();
        queue.messages.push_back(Message { seq, topic, payload, in_flight: None, delivery_count: 0 });
        let pending = queue.messages.len();
        self.send(&st, &Peer::Hub(Identity::device(device_id)), ConnCmd::DeliverC2d);
        Ok(C2dAccepted { sequence_number: seq, pending })
    }

    /// Messages to send now on connection `conn_id` of `id`: everything not in flight on
    /// that connection, if the device is subscribed. QoS 0 deliveries leave the queue here.
    pub fn take_c2d(&self, id: &Identity, conn_id: u64) -> Vec<Delivery> {
        let mut st = self.lock();
        let peer = Peer::Hub(id.clone());
        if id.module_id.is_some() || st.conns.get(&peer).is_none_or(|l| l.conn_id != conn_id) {
            return Vec::new();
        }
        let Some(qos) = self.subscribed(&st, &peer, SubKind::C2d) else { return Vec::new() };
        let Some(queue) = st.c2d.get_mut(&id.device_id) else { return Vec::new() };
        let mut out = Vec::new();
        for m in queue.messages.iter_mut().filter(|m| m.in_flight != Some(conn_id)) {
            m.in_flight = Some(conn_id);
            m.delivery_count += 1;
            out.push(Delivery { seq: m.seq, topic: m.topic.clone(), payload: m.payload.clone(), qos });
        }
        if qos == 0 {
            queue.messages.retain(|m| m.in_flight != Some(conn_id));
        }
        out
    }

    /// PUBACK received: the message is complete.
    pub fn c2d_completed(&self, device_id: &str, seq: u64) {
        if let Some(q) = self.lock().c2d.get_mut(device_id) {
            q.messages.retain(|m| m.seq != seq);
        }
    }

    /// The send failed (connection gone): deliverable again on the next connection.
    pub fn c2d_failed(&self, device_id: &str, seq: u64, conn_id: u64) {
        if let Some(q) = self.lock().c2d.get_mut(device_id) {
            for m in q.messages.iter_mut().filter(|m| m.seq == seq && m.in_flight == Some(conn_id)) {
                m.in_flight = None;
            }
        }
    }

    /// Pending messages of a device (`None`: unknown device).
    pub fn pending_c2d(&self, device_id: &str) -> Option<Vec<PendingC2d>> {
        let st = self.lock();
        st.registry.devices.get(device_id)?;
        let live = st.conns.get(&Peer::Hub(Identity::device(device_id))).map(|l| l.conn_id);
        Some(
            st.c2d
                .get(device_id)
                .map(|q| {
                    q.messages
                        .iter()
                        .map(|m| PendingC2d {
                            sequence_number: m.seq,
                            topic: m.topic.clone(),
                            payload_base64: b64(&m.payload),
                            in_flight: m.in_flight.is_some() && m.in_flight == live,
                            delivery_count: m.delivery_count,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
}
