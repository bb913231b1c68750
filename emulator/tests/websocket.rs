//! The MQTT-over-secure-WebSocket listener (paho over `wss://…/$iothub/websocket` as the
//! device): the same hub behind it as behind the TLS listener, client certificates
//! included, and hub-side closes reaching the WebSocket client.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use common::*;
use connector_emulator::control::api::{Authentication, IdentitySpec, X509Thumbprint};
use connector_emulator::{EmulatorConfig, WS_PATH};
use hyper::Method;
use serde_json::json;

#[tokio::test]
async fn sas_device_over_websocket_reaches_the_hub_and_hub_closes_reach_it() {
    let env = Env::start();
    assert_eq!(env.ctl.info().await.unwrap().ws_port, env.emu.ws_port());
    assert!(env.ws_uri().ends_with(WS_PATH));
    let key = env.device("ws-1").await;
    let token = sas(&format!("{}/devices/ws-1", env.host()), &key, now() + 3600, None);
    let dev = env.connect_ws_with("ws-1", &hub_user(env.host(), "ws-1"), Some(&token), None).await.unwrap();
    let conns = env.ctl.connections().await.unwrap();
    assert_eq!((conns.len(), conns[0].client_id.as_str(), conns[0].auth.as_str()), (1, "ws-1", "sas"));
    // Twin round trip: request and response both cross the socket.
    assert_eq!(dev.subscribe("$iothub/twin/res/#", 1).await, 1);
    dev.publish("$iothub/twin/GET/?$rid=7", "", 1).await.unwrap();
    let rsp = dev.recv("twin response").await;
    assert!(rsp.topic().starts_with("$iothub/twin/res/200/"), "{}", rsp.topic());
    assert_eq!(param(rsp.topic(), "$rid").as_deref(), Some("7"));
    // A wrong key is refused over WebSocket as over TLS.
    let other_key = openssl::base64::encode_block(&[7u8; 32]);
    let bad = sas(&format!("{}/devices/ws-1", env.host()), &other_key, now() + 3600, None);
    let err = env.connect_ws_with("ws-1", &hub_user(env.host(), "ws-1"), Some(&bad), None).await;
    assert_eq!(connack_code(&err.err().unwrap()), Some(5));
    // Closing the hub's connection closes the WebSocket client's.
    env.ctl.drop_connection("ws-1", None).await.unwrap();
    dev.lost("dropped by the hub").await;
}

#[tokio::test]
async fn x509_client_certificates_authenticate_over_websocket() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let issued: connector_emulator::control::api::IssuedCertificate = env
        .ctl
        .request(Method::POST, "/certificates/issue", Some(&json!({"commonName": "ws-x509"})))
        .await
        .unwrap();
    let cert = write_pem(dir.path(), "dev.pem", &issued.certificate_pem);
    let key = write_pem(dir.path(), "dev.key", &issued.private_key_pem);
    let spec = IdentitySpec {
        authentication: Some(Authentication::SelfSigned {
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: Some(issued.thumbprint_sha256.clone()),
                secondary_thumbprint: None,
            },
        }),
        status: None,
    };
    env.ctl.put_identity("ws-x509", None, &spec).await.unwrap();
    let user = hub_user(env.host(), "ws-x509");
    // Without the certificate: no credentials at all.
    let err = env.connect_ws_with("ws-x509", &user, None, None).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(4));
    // With it: the TLS certificate of the WebSocket connection is what the hub checks.
    let dev = env.connect_ws_with("ws-x509", &user, None, Some((&cert, &key))).await.unwrap();
    assert_eq!(env.ctl.connections().await.unwrap()[0].auth, "x509");
    dev.disconnect().await;
}

#[tokio::test]
async fn websocket_listener_can_be_disabled() {
    let mut config = EmulatorConfig::ephemeral();
    config.ws_port = None;
    let env = Env::with(config);
    assert_eq!(env.emu.ws_port(), None);
    assert_eq!(env.ctl.info().await.unwrap().ws_port, None);
}
