//! The MQTT 3.1.1 server: ntex-mqtt (packet codec, sessions, keep-alive, in-flight
//! windows) over ntex's openssl TLS acceptor, or plain TCP. This module only wires the
//! server; behaviour lives in [`conn`] and [`publish`] on top of [`crate::azure::Hub`].
//!
//! MQTT 5 CONNECTs are refused (ntex-mqtt's default protocol handler closes them);
//! QoS 2 PUBLISHes close the connection (`max_qos` = 1).

pub(crate) mod aws;
pub(crate) mod conn;
pub(crate) mod publish;

use std::sync::Arc;

use ntex_io::{Filter, Io};
use ntex_mqtt::{v3, MqttError, MqttServer, MqttServiceConfig, QoS};
use ntex_service::cfg::SharedCfg;
use ntex_service::{fn_factory_with_config, fn_service, ServiceFactory};
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;

use crate::azure::telemetry::MAX_D2C_BYTES;
use crate::azure::Hub;
use crate::error::EmulatorError;
use crate::ws::RelayPeers;

/// Why the server closes a connection (logged, never sent: MQTT 3.1.1 cannot say).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerError {
    #[error("publish to {topic:?} refused: {reason}")]
    Topic { topic: String, reason: String },
    #[error("message of {size} bytes exceeds {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("payload: {0}")]
    Payload(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("service setup")]
    Setup,
}

impl From<()> for ServerError {
    fn from(_: ()) -> Self {
        ServerError::Setup
    }
}

/// The openssl acceptor: TLS ≥ 1.2, the emulator's server certificate, and a client
/// certificate requested but not required (accepted as is; authentication decides).
pub(crate) fn tls_acceptor(
    cert: &X509,
    key: &PKey<Private>,
    ca: &X509,
) -> Result<SslAcceptor, EmulatorError> {
    let build = || -> Result<SslAcceptor, openssl::error::ErrorStack> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        b.set_private_key(key)?;
        b.set_certificate(cert)?;
        b.add_extra_chain_cert(ca.clone())?;
        b.check_private_key()?;
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        b.set_session_id_context(b"connector-emulator")?;
        Ok(b.build())
    };
    build().map_err(|e| EmulatorError::tls("configure TLS", e))
}

/// ntex-mqtt settings: QoS ≤ 1, a packet ceiling a little above the 256 KB message limit
/// (so the exact limit is checked with the property bag), 10 s to send CONNECT.
pub(crate) fn mqtt_config() -> SharedCfg {
    SharedCfg::new("MQTT")
        .add(
            MqttServiceConfig::new()
                .set_max_qos(QoS::AtLeastOnce)
                .set_max_size(u32::try_from(MAX_D2C_BYTES * 2).unwrap_or(u32::MAX))
                .set_max_receive_size(MAX_D2C_BYTES * 4)
                .set_max_payload_buffer_size(MAX_D2C_BYTES * 2)
                .set_connect_timeout(ntex_util::time::Seconds(10)),
        )
        .into()
}

/// The MQTT service for one accepted (plain or TLS) stream; with `relayed`, the stream
/// comes from the WebSocket relay, which registered its client certificate there.
pub(crate) fn mqtt_service<F: Filter>(
    hub: Arc<Hub>,
    relayed: Option<Arc<RelayPeers>>,
) -> impl ServiceFactory<Io<F>, SharedCfg, Response = (), Error = MqttError<ServerError>, InitError = ()> {
    let (h_hs, h_ctl, h_pub) = (hub.clone(), hub.clone(), hub);
    MqttServer::new().v3(v3::MqttServer::new(async move |hs: v3::Handshake| {
        conn::handshake(&h_hs, hs, relayed.as_deref()).await
    })
    .control(fn_factory_with_config(async move |session: v3::Session<conn::ConnRef>| {
        let hub = h_ctl.clone();
        let conn = session.state().clone();
        Ok::<_, ServerError>(fn_service(async move |ctl: v3::Control<ServerError>| {
            conn::control(&hub, &conn, ctl).await
        }))
    }))
    .publish(fn_factory_with_config(async move |session: v3::Session<conn::ConnRef>| {
        let hub = h_pub.clone();
        let conn = session.state().clone();
        let sink = session.sink().clone();
        Ok::<_, ServerError>(fn_service(async move |p: v3::Publish| {
            publish::on_publish(&hub, &conn, &sink, p).await
        }))
    })))
}
