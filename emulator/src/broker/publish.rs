//! PUBLISH from devices: telemetry, twin requests and method responses on IoT Hub
//! connections; register and poll on DPS connections. A topic the hub does not serve
//! closes the connection (MQTT 3.1.1 has no other way to refuse a PUBLISH).

use std::sync::Arc;

use ntex_mqtt::v3;
use ntex_mqtt::QoS;

use super::conn::{hub_identity, publish, ConnRef};
use super::ServerError;
use crate::azure::dps::DpsReply;
use crate::azure::telemetry::{Sender, MAX_D2C_BYTES};
use crate::azure::topics::{classify_dps, classify_hub, DpsPublish, HubPublish, SubKind};
use crate::azure::{properties, Hub, Identity, Peer};

/// Handles one PUBLISH; `Err` closes the connection.
pub(crate) async fn on_publish(
    hub: &Arc<Hub>,
    conn: &ConnRef,
    sink: &v3::MqttSink,
    p: v3::Publish,
) -> Result<(), ServerError> {
    let topic = p.publish_topic().to_string();
    let size = p.payload_size();
    if size > MAX_D2C_BYTES {
        return Err(ServerError::TooLarge { size, limit: MAX_D2C_BYTES });
    }
    let payload = p.read_all().await.map_err(|e| ServerError::Payload(e.to_string()))?;
    match (&conn.peer, hub_identity(conn)) {
        (Peer::Hub(_), Some(id)) => on_hub_publish(hub, conn, sink, id, &topic, &payload, &p),
        _ => on_dps_publish(hub, conn, sink, &topic, &payload),
    }
}

fn on_hub_publish(
    hub: &Arc<Hub>,
    conn: &ConnRef,
    sink: &v3::MqttSink,
    id: &Identity,
    topic: &str,
    payload: &[u8],
    p: &v3::Publish,
) -> Result<(), ServerError> {
    let kind = classify_hub(topic, id)
        .map_err(|e| ServerError::Topic { topic: topic.to_string(), reason: e.to_string() })?;
    match kind {
        HubPublish::Telemetry { bag } => {
            let bag = properties::parse(bag).ok_or_else(|| ServerError::Topic {
                topic: topic.to_string(),
                reason: "malformed property bag".into(),
            })?;
            let size = payload.len() + properties::size(&bag);
            if size > MAX_D2C_BYTES {
                return Err(ServerError::TooLarge { size, limit: MAX_D2C_BYTES });
            }
            let qos = match p.qos() {
                QoS::AtMostOnce => 0,
                _ => 1,
            };
            let extra: &[(&str, &str)] = if p.retain() { &[("mqtt-retain", "true")] } else { &[] };
            let sender = Sender { identity: id, auth: &conn.auth, model_id: conn.model_id.as_deref() };
            hub.record_telemetry(&sender, topic, payload, bag, qos, extra);
            tracing::debug!(client_id = %id, bytes = payload.len(), "telemetry");
        }
        HubPublish::TwinGet { rid } => {
            let reply = {
                let mut st = hub.lock();
                if st.faults.throttle_twin(id) {
                    Err(429)
                } else {
                    Ok(hub.twin_mut(&mut st, id).device_document())
                }
            };
            match reply {
                Ok(doc) => twin_reply(hub, conn, sink, 200, &rid, None, doc.to_string().into_bytes()),
                Err(status) => twin_reply(hub, conn, sink, status, &rid, None, Vec::new()),
            }
        }
        HubPublish::TwinPatchReported { rid } => {
            let reply = match serde_json::from_slice::<serde_json::Value>(payload) {
                Err(_) => Err(400),
                Ok(patch) => {
                    let mut st = hub.lock();
                    if st.faults.throttle_twin(id) {
                        Err(429)
                    } else {
                        let now = hub.now();
                        hub.twin_mut(&mut st, id).patch_reported(&patch, now).map_err(|e| {
                            tracing::debug!(client_id = %id, reason = %e, "reported patch refused");
                            e.status()
                        })
                    }
                }
            };
            match reply {
                Ok(version) => twin_reply(hub, conn, sink, 204, &rid, Some(version), Vec::new()),
                Err(status) => twin_reply(hub, conn, sink, status, &rid, None, Vec::new()),
            }
        }
        HubPublish::MethodResponse { status, rid } => {
            if !hub.method_response(id, &rid, status, payload.to_vec()) {
                tracing::debug!(client_id = %id, rid = %rid, "method response for no pending call, dropped");
            }
        }
    }
    Ok(())
}

/// Answers a twin request on `$iothub/twin/res/{status}/?$rid=…[&$version=…]`, if the
/// device subscribed to `$iothub/twin/res/#` (otherwise the answer is lost, as on the hub).
#[allow(clippy::too_many_arguments)]
fn twin_reply(
    hub: &Arc<Hub>,
    conn: &ConnRef,
    sink: &v3::MqttSink,
    status: u16,
    rid: &str,
    version: Option<u64>,
    body: Vec<u8>,
) {
    let qos = hub.subscribed(&hub.lock(), &conn.peer, SubKind::TwinResponses);
    let Some(qos) = qos else {
        tracing::debug!(client_id = %conn.peer, status, "twin response dropped: not subscribed to $iothub/twin/res/#");
        return;
    };
    let topic = match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    };
    publish(sink, topic, body, qos);
}

fn on_dps_publish(
    hub: &Arc<Hub>,
    conn: &ConnRef,
    sink: &v3::MqttSink,
    topic: &str,
    payload: &[u8],
) -> Result<(), ServerError> {
    let Some(auth) = &conn.dps else {
        return Err(ServerError::Topic { topic: topic.to_string(), reason: "not a DPS connection".into() });
    };
    let kind = classify_dps(topic)
        .map_err(|e| ServerError::Topic { topic: topic.to_string(), reason: e.to_string() })?;
    let (rid, reply): (String, DpsReply) = match kind {
        DpsPublish::Register { rid } => (rid, hub.dps_register(auth, payload)),
        DpsPublish::Poll { rid, operation_id } => (rid, hub.dps_poll(auth, &operation_id)),
    };
    let qos = hub.subscribed(&hub.lock(), &conn.peer, SubKind::DpsResponses);
    let Some(qos) = qos else {
        tracing::debug!(client_id = %conn.peer, "dps response dropped: not subscribed to $dps/registrations/res/#");
        return Ok(());
    };
    let topic = match reply.retry_after {
        Some(r) => format!("$dps/registrations/res/{}/?$rid={rid}&retry-after={r}", reply.status),
        None => format!("$dps/registrations/res/{}/?$rid={rid}", reply.status),
    };
    publish(sink, topic, reply.body.to_string().into_bytes(), qos);
    Ok(())
}
