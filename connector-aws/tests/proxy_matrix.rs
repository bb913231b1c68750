//! Every way into AWS IoT Core, through every kind of proxy, over both transports where
//! the transport speaks the proxy: X.509 on the 8883-style port, X.509 with ALPN
//! `x-amzn-mqtt-ca` on the 443-style port, SigV4 WebSockets, a custom authorizer over MQTT
//! (ALPN `mqtt`) and over WebSockets; each through an HTTP CONNECT proxy (paho and the
//! native transport) and a SOCKS5 proxy without and with user name and password (the
//! native transport; paho has no SOCKS5). Each row connects through the real actor tree
//! to the emulator over real TLS, publishes one QoS 1 message the emulator captured, and
//! checks the proxy's record: every tunnel went to the endpoint's `localhost:<port>`, by
//! domain name, so a connection that bypassed the proxy fails its row. Then the refusals:
//! wrong SOCKS5 credentials, none where the proxy wants them, and paho given a SOCKS5
//! proxy, each a typed connect failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use connector_actors::transport::{NativeTransport, PahoTransport, Transport};
use connector_actors::Connector;
use connector_aws::{AwsAuth, AwsProvider, CustomAuth, SigV4Auth};
use connector_core::{ConnectFailure, ConnectionEvent, ProxyRefusal, Publish, QoS};
use connector_emulator::control::aws_api::Authorizer;
use connector_emulator::EmulatorHandle;
use test_support::{HttpProxy, Socks5Address, Socks5Proxy};

/// How the device authenticates (and so which port and stream it uses).
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// X.509 on the 8883-style port.
    Mtls,
    /// X.509 with ALPN `x-amzn-mqtt-ca` on the 443-style port.
    MtlsAlpn,
    /// SigV4-presigned WebSocket.
    SigV4,
    /// Custom authorizer, token in the user name, ALPN `mqtt`.
    CustomMqtt,
    /// Custom authorizer, token in the WebSocket upgrade's headers.
    CustomWss,
}

/// The proxy a row goes through.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5, no authentication.
    Socks5,
    /// SOCKS5 with RFC 1929 user name and password.
    Socks5Auth,
}

/// Which transport carries the row.
#[derive(Debug, Clone, Copy)]
enum Client {
    Paho,
    Native,
}

fn transport(c: Client) -> Arc<dyn Transport> {
    match c {
        Client::Paho => Arc::new(PahoTransport::new(64)),
        Client::Native => Arc::new(NativeTransport::new(64)),
    }
}

/// A running proxy of either kind, with what it recorded.
enum Proxy {
    Http(HttpProxy),
    Socks5(Socks5Proxy),
}

impl Proxy {
    fn start(via: Via) -> Proxy {
        match via {
            Via::Http => Proxy::Http(HttpProxy::start()),
            Via::Socks5 => Proxy::Socks5(Socks5Proxy::start()),
            Via::Socks5Auth => Proxy::Socks5(Socks5Proxy::with_credentials("dev:ice", "pr0xy p@ss")),
        }
    }

    fn url(&self) -> String {
        match self {
            Proxy::Http(p) => p.url(),
            Proxy::Socks5(p) => p.url(),
        }
    }

    /// Panics unless every tunnel went to `target` (a domain-name request for SOCKS5)
    /// and at least one was opened.
    fn assert_tunnelled_to(&self, target: &str, row: &str) {
        let (targets, tunnels) = match self {
            Proxy::Http(p) => (p.connect_targets(), p.tunnels()),
            Proxy::Socks5(p) => {
                let requests = p.connect_requests();
                assert!(
                    requests.iter().all(|(kind, _)| *kind == Socks5Address::Domain),
                    "{row}: SOCKS5 requests by domain name, got {requests:?}"
                );
                (p.connect_targets(), p.tunnels())
            }
        };
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t == target),
            "{row}: every tunnel to {target}, the proxy saw {targets:?} (bypassed?)"
        );
        assert!(tunnels >= 1, "{row}: no tunnel established");
    }
}

fn authorizer(name_tokens: &[&str]) -> Authorizer {
    Authorizer {
        token_key_name: "token".into(),
        token_signing_public_key: None,
        allowed_tokens: name_tokens.iter().map(|t| t.to_string()).collect(),
        default: false,
    }
}

/// The provider for thing `thing` authenticating with `auth` on the emulator, and the port
/// its connection goes to.
async fn provider(emu: &EmulatorHandle, thing: &str, auth: Auth, proxy: &str) -> (AwsProvider, u16) {
    let auth = match auth {
        Auth::Mtls => AwsAuth::Certificate(thing_with_cert(emu, thing).await),
        Auth::MtlsAlpn => AwsAuth::CertificateAlpn(thing_with_cert(emu, thing).await),
        Auth::SigV4 => {
            let k = emu.control().aws_create_access_key().await.unwrap();
            let creds = connector_aws::AwsCredentials::new(k.access_key_id, k.secret_access_key).unwrap();
            AwsAuth::SigV4(SigV4Auth::explicit(creds).region(emu.aws_region()))
        }
        Auth::CustomMqtt | Auth::CustomWss => {
            emu.control().aws_put_authorizer("matrix-auth", &authorizer(&["matrix-token"])).await.unwrap();
            let c = CustomAuth::new(Some("matrix-auth")).token("token", "matrix-token");
            AwsAuth::CustomAuthorizer(if matches!(auth, Auth::CustomWss) { c.over_websocket() } else { c })
        }
    };
    let opts = options(emu, thing, auth).http_proxy(proxy);
    let port = opts.port.expect("options() sets the port");
    (AwsProvider::new(opts).unwrap(), port)
}

/// One row: connect `auth` through `via` over `client`, publish, check the proxy's record.
async fn row(auth: Auth, via: Via, client: Client) {
    let name = format!("{auth:?}/{via:?}/{client:?}");
    let thing = format!("{auth:?}-{via:?}-{client:?}").to_lowercase();
    let emu = start();
    let proxy = Proxy::start(via);
    let (provider, port) = provider(&emu, &thing, auth, &proxy.url()).await;
    let client_id = provider.client_id().to_owned();
    let conn = Connector::builder(provider).backoff(fast_backoff()).transport(transport(client)).start();
    conn.wait_connected(WAIT).await.unwrap_or_else(|e| panic!("{name}: not connected: {e}"));
    let body = format!("{{\"row\":\"{name}\"}}");
    conn.publisher()
        .publish(Publish::telemetry(body.clone()).qos(QoS::AtLeastOnce))
        .await
        .unwrap_or_else(|e| panic!("{name}: publish: {e}"));
    let got = emu.control().aws_telemetry(Some(&client_id), None).await.unwrap();
    let payloads: Vec<Option<&str>> = got.iter().map(|t| t.payload.as_deref()).collect();
    assert_eq!(payloads, [Some(body.as_str())], "{name}: the emulator captured the message");
    proxy.assert_tunnelled_to(&format!("localhost:{port}"), &name);
    conn.stop().await;
    emu.shutdown();
}

/// One `#[actix_rt::test]` per row, named after it.
macro_rules! rows {
    ($($test:ident: $auth:ident, $via:ident, $client:ident;)*) => {$(
        #[actix_rt::test]
        async fn $test() {
            row(Auth::$auth, Via::$via, Client::$client).await;
        }
    )*};
}

rows! {
    mtls_8883_http_connect_paho: Mtls, Http, Paho;
    mtls_8883_http_connect_native: Mtls, Http, Native;
    mtls_8883_socks5_native: Mtls, Socks5, Native;
    mtls_8883_socks5_password_native: Mtls, Socks5Auth, Native;
    mtls_alpn_443_http_connect_paho: MtlsAlpn, Http, Paho;
    mtls_alpn_443_http_connect_native: MtlsAlpn, Http, Native;
    mtls_alpn_443_socks5_native: MtlsAlpn, Socks5, Native;
    mtls_alpn_443_socks5_password_native: MtlsAlpn, Socks5Auth, Native;
    wss_sigv4_http_connect_paho: SigV4, Http, Paho;
    wss_sigv4_http_connect_native: SigV4, Http, Native;
    wss_sigv4_socks5_native: SigV4, Socks5, Native;
    wss_sigv4_socks5_password_native: SigV4, Socks5Auth, Native;
    custom_authorizer_mqtt_http_connect_paho: CustomMqtt, Http, Paho;
    custom_authorizer_mqtt_http_connect_native: CustomMqtt, Http, Native;
    custom_authorizer_mqtt_socks5_native: CustomMqtt, Socks5, Native;
    custom_authorizer_mqtt_socks5_password_native: CustomMqtt, Socks5Auth, Native;
    custom_authorizer_wss_http_connect_paho: CustomWss, Http, Paho;
    custom_authorizer_wss_http_connect_native: CustomWss, Http, Native;
    custom_authorizer_wss_socks5_native: CustomWss, Socks5, Native;
    custom_authorizer_wss_socks5_password_native: CustomWss, Socks5Auth, Native;
}

/// Every lifecycle event up to the `n`-th failed attempt of `provider` over `client`;
/// panics if it connects.
async fn failures_over(provider: AwsProvider, client: Client, n: usize) -> Vec<ConnectionEvent> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let conn = Connector::builder(provider)
        .backoff(fast_backoff())
        .transport(transport(client))
        .events_to(tx)
        .start();
    let mut seen = Vec::new();
    let mut failed = 0;
    while failed < n {
        let e = tokio::time::timeout(WAIT, rx.recv()).await.expect("lifecycle events").unwrap();
        assert!(!matches!(e, ConnectionEvent::Connected { .. }), "connected: {seen:?}");
        if matches!(e, ConnectionEvent::ConnectionFailed { .. }) {
            failed += 1;
        }
        seen.push(e);
    }
    conn.stop().await;
    seen
}

/// The reasons of the failed attempts among `events`.
fn reasons(events: &[ConnectionEvent]) -> Vec<ConnectFailure> {
    events
        .iter()
        .filter_map(|e| match e {
            ConnectionEvent::ConnectionFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// A SOCKS5 proxy that refuses the credentials given, or wants some and gets none: each
/// attempt fails as a typed proxy refusal (no tunnel, nothing reaches the endpoint), and the
/// password appears in neither the failure nor its `Debug`.
#[actix_rt::test]
async fn socks5_refusing_credentials_is_a_typed_connect_failure() {
    let emu = start();
    let proxy = Socks5Proxy::with_credentials("device", "the-right-one");
    let wrong = proxy.url_with("device", "s3cret-but-wrong");
    let (p, _) = provider(&emu, "socks-wrong", Auth::Mtls, &wrong).await;
    let got = reasons(&failures_over(p, Client::Native, 2).await);
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert!(
            matches!(r, ConnectFailure::Proxy { reason: ProxyRefusal::AuthenticationFailed, .. }),
            "wrong credentials: {r:?}"
        );
        assert!(!format!("{r} {r:?}").contains("s3cret-but-wrong"), "{r:?}");
    }
    // No credentials where the proxy wants some.
    let bare = format!("socks5://127.0.0.1:{}", proxy.port());
    let (p, _) = provider(&emu, "socks-none", Auth::Mtls, &bare).await;
    for r in reasons(&failures_over(p, Client::Native, 1).await) {
        assert!(matches!(r, ConnectFailure::Proxy { reason: ProxyRefusal::NoAcceptableMethod, .. }), "{r:?}");
    }
    assert_eq!(proxy.auth_failures(), 3);
    assert_eq!(proxy.tunnels(), 0);
    assert!(proxy.connect_targets().is_empty());
    assert!(emu.control().aws_connections().await.unwrap().is_empty());
    emu.shutdown();
}

/// Paho speaks no SOCKS5: it refuses the proxy before connecting, as a typed failure that
/// names the native transport and not the proxy's password.
#[actix_rt::test]
async fn paho_refuses_a_socks5_proxy() {
    let emu = start();
    let proxy = Socks5Proxy::with_credentials("device", "paho-pw");
    let (p, _) = provider(&emu, "socks-paho", Auth::Mtls, &proxy.url()).await;
    for r in reasons(&failures_over(p, Client::Paho, 1).await) {
        let ConnectFailure::Credentials { message } = &r else { panic!("a typed refusal: {r:?}") };
        assert!(message.contains("native transport") && !message.contains("paho-pw"), "{message}");
    }
    assert_eq!(proxy.tunnels() + proxy.auth_failures(), 0, "paho never talked to the proxy");
    emu.shutdown();
}
