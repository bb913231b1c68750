//! MQTT over secure WebSocket (`wss://…/$iothub/websocket`, subprotocol `mqtt`) against
//! the emulator's WebSocket listener over real TLS: telemetry and C2D through the real
//! actor tree, the same through an HTTP CONNECT proxy, the listener's refusals of what is
//! not the hub's upgrade, and `GatewayHostName` (connect to the gateway, authenticate
//! against the hub).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use connector_actors::messages::{RouteKey, Sink, Subscribe};
use connector_actors::Connector;
use connector_azure::{AzureOptions, AzureProvider, ConnectionString, Transport};
use connector_core::{Inbound, PemSource, Publish, QoS};
use connector_emulator::control::api::C2dRequest;
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use openssl::ssl::{SslConnector, SslMethod};
use test_support::HttpProxy;

use common::{fast_backoff, sas_device as device, start, WAIT};

/// WebSocket options on the emulator's WebSocket port, trusting its CA.
fn ws_options(emu: &EmulatorHandle) -> AzureOptions {
    let mut opts = AzureOptions::default().port(emu.ws_port().expect("ephemeral enables WebSocket"));
    opts.transport = Transport::WebSocket;
    opts.trust_roots = Some(PemSource::File(emu.ca_path().to_owned()));
    opts.keep_alive = Duration::from_secs(30);
    opts
}

/// Connects, publishes one telemetry message with properties and checks the emulator
/// captured it as sent.
async fn telemetry_round_trip(emu: &EmulatorHandle, provider: AzureProvider, id: &str) -> Connector {
    let conn = Connector::builder(provider).backoff(fast_backoff()).start();
    conn.wait_connected(WAIT).await.unwrap();
    conn.publisher()
        .publish(
            Publish::telemetry(r#"{"t":19.5}"#)
                .qos(QoS::AtLeastOnce)
                .property("unit", "C")
                .property("via", "web socket")
                .content_type("application/json")
                .message_id("ws-1"),
        )
        .await
        .unwrap();
    let got = emu.control().telemetry(id, None).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.payload.as_deref(), Some(r#"{"t":19.5}"#));
    assert_eq!(m.properties.get("unit"), Some(&Some("C".to_string())));
    assert_eq!(m.properties.get("via"), Some(&Some("web socket".to_string())));
    assert_eq!(m.system_properties.get("$.ct"), Some(&Some("application/json".to_string())));
    assert_eq!(m.system_properties.get("$.mid"), Some(&Some("ws-1".to_string())));
    assert_eq!(m.qos, 1);
    conn
}

#[actix_rt::test]
async fn sas_device_over_websocket_sends_telemetry_and_receives_c2d() {
    let emu = start();
    assert_ne!(emu.ws_port(), Some(emu.mqtt_port()));
    let cs: ConnectionString = device(&emu, "ws-dev").await.parse().unwrap();
    let provider = AzureProvider::new(cs, ws_options(&emu)).unwrap();
    assert_eq!(
        provider.broker_uri().to_string(),
        format!("wss://localhost:{}/$iothub/websocket", emu.ws_port().unwrap())
    );
    let conn = telemetry_round_trip(&emu, provider, "ws-dev").await;

    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    conn.subscriber()
        .subscribe(Subscribe {
            key: RouteKey::Kind(connector_core::InboundKind::C2d),
            sink: Sink::Channel(tx),
        })
        .await
        .unwrap();
    let mut properties = BTreeMap::new();
    properties.insert("colour".to_string(), Some("sea green".to_string()));
    let req = C2dRequest {
        payload: Some("over the socket".into()),
        properties,
        message_id: Some("c2d-ws-1".into()),
        ..Default::default()
    };
    emu.control().send_c2d("ws-dev", &req).await.unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv()).await.expect("the C2D message arrives").unwrap();
    let Inbound::C2d(m) = got else { panic!("a typed C2D message, got {got:?}") };
    assert_eq!(&m.payload[..], b"over the socket");
    assert_eq!(m.property("colour"), Some("sea green"));
    assert_eq!(m.system_property("$.mid"), Some("c2d-ws-1"));
    // Completed by the device's PUBACK, relayed back over the socket.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !emu.control().pending_c2d("ws-dev").await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the C2D message is completed within {WAIT:?}");
        // Poll interval against the deadline (as test_support::wait_until_async does).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn websocket_through_an_http_proxy_tunnels_to_the_emulator() {
    let emu = start();
    let proxy = HttpProxy::start();
    let cs: ConnectionString = device(&emu, "proxied-dev").await.parse().unwrap();
    let mut opts = ws_options(&emu);
    opts.http_proxy = Some(proxy.url());
    let provider = AzureProvider::new(cs, opts).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "proxied-dev").await;
    let target = format!("localhost:{}", emu.ws_port().unwrap());
    let targets = proxy.connect_targets();
    assert!(!targets.is_empty() && targets.iter().all(|t| *t == target), "{targets:?}, expected {target}");
    assert!(proxy.tunnels() >= 1);
    conn.stop().await;
    emu.shutdown();
}

/// Sends `request` over TLS (trusting the emulator CA, SNI `localhost`) to the WebSocket
/// port and returns the response head.
fn raw_upgrade(emu: &EmulatorHandle, request: &str) -> String {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(emu.ca_path()).unwrap();
    let connector = b.build();
    let tcp = TcpStream::connect(("127.0.0.1", emu.ws_port().unwrap())).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = connector.connect("localhost", tcp).unwrap();
    tls.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn upgrade_request(path: &str, protocol: Option<&str>) -> String {
    let protocol = protocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
    )
}

fn status(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or_default()
}

#[test]
fn the_websocket_listener_refuses_other_paths_and_subprotocols() {
    let emu = start();
    // The hub's request is upgraded (with the RFC 6455 accept key and the subprotocol)…
    let ok = raw_upgrade(&emu, &upgrade_request("/$iothub/websocket", Some("mqtt")));
    assert_eq!(status(&ok), "101", "{ok}");
    assert!(ok.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{ok}");
    assert!(ok.contains("Sec-WebSocket-Protocol: mqtt"), "{ok}");
    // …anything else is refused with a 4xx.
    let wrong_path = raw_upgrade(&emu, &upgrade_request("/mqtt", Some("mqtt")));
    assert_eq!(status(&wrong_path), "404", "{wrong_path}");
    let no_protocol = raw_upgrade(&emu, &upgrade_request("/$iothub/websocket", None));
    assert_eq!(status(&no_protocol), "400", "{no_protocol}");
    let other_protocol = raw_upgrade(&emu, &upgrade_request("/$iothub/websocket", Some("wamp")));
    assert_eq!(status(&other_protocol), "400", "{other_protocol}");
    emu.shutdown();
}

/// `GatewayHostName`: the connection goes to the gateway host while the user name and the
/// SAS resource stay the hub's. The hub's name here does not resolve, so connecting at all
/// proves the gateway was used; the emulator accepting the SAS proves the resource was the
/// hub's.
#[actix_rt::test]
async fn gateway_host_name_is_where_the_websocket_goes_and_the_hub_is_what_is_signed() {
    let mut config = EmulatorConfig::ephemeral();
    config.hub_host_name = "ws-hub.example.invalid".into();
    let emu = Emulator::start(config).unwrap();
    let cs = format!("{};GatewayHostName=localhost", device(&emu, "gw-dev").await);
    let cs: ConnectionString = cs.parse().unwrap();
    let provider = AzureProvider::new(cs, ws_options(&emu)).unwrap();
    assert_eq!(
        provider.broker_uri().to_string(),
        format!("wss://localhost:{}/$iothub/websocket", emu.ws_port().unwrap())
    );
    assert!(provider.username().starts_with("ws-hub.example.invalid/gw-dev/?api-version="));
    let conn = telemetry_round_trip(&emu, provider, "gw-dev").await;
    let live = emu.control().connections().await.unwrap();
    assert!(live.iter().any(|c| c.client_id == "gw-dev" && c.auth == "sas"), "{live:?}");
    conn.stop().await;
    emu.shutdown();
}
