//! Every way into the hub, through every kind of proxy, over both transports where the
//! transport speaks the proxy: MQTT over TLS with a SAS token, X.509 mutual TLS (a
//! self-signed certificate made with openssl in the test, registered by thumbprint) and
//! MQTT over secure WebSocket with a SAS token; each through an HTTP CONNECT proxy (paho
//! and the native transport) and a SOCKS5 proxy without and with user name and password
//! (the native transport; paho has no SOCKS5). Each row connects through the real actor
//! tree to the emulator over real TLS, publishes one QoS 1 message the hub captured under
//! the device with the expected authentication, and checks the proxy's record: every
//! tunnel went to `localhost:<port>` of that listener, by domain name, so a connection that
//! bypassed the proxy fails its row. Then wrong SOCKS5 credentials: a typed failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{fast_backoff, sas_device, start, WAIT};
use connector_actors::transport::{NativeTransport, PahoTransport, Transport as MqttTransport};
use connector_actors::Connector;
use connector_azure::{AzureOptions, AzureProvider, ConnectionString, Transport, X509Identity};
use connector_core::{ConnectFailure, ConnectionEvent, PemSource, ProxyRefusal, Publish, QoS};
use connector_emulator::control::api::{Authentication, IdentitySpec, X509Thumbprint};
use connector_emulator::EmulatorHandle;
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509Builder, X509NameBuilder};
use test_support::{HttpProxy, Socks5Address, Socks5Proxy};

/// How the device connects.
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// MQTT over TLS on the MQTT port, SAS token as the password.
    SasMqtt,
    /// MQTT over TLS on the MQTT port, a client certificate.
    X509,
    /// MQTT over secure WebSocket on the WebSocket port, SAS token.
    SasWss,
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

fn transport(c: Client) -> Arc<dyn MqttTransport> {
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
            Via::Socks5Auth => Proxy::Socks5(Socks5Proxy::with_credentials("hub-user", "pr0xy:p@ss")),
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

/// A self-signed identity for `device`, registered with the hub by its thumbprint.
async fn x509_device(emu: &EmulatorHandle, device: &str) -> X509Identity {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, device).unwrap();
    let name = name.build();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + 86_400).unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let thumbprint: String =
        cert.digest(MessageDigest::sha256()).unwrap().iter().map(|b| format!("{b:02X}")).collect();
    let spec = IdentitySpec {
        authentication: Some(Authentication::SelfSigned {
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: Some(thumbprint),
                secondary_thumbprint: None,
            },
        }),
        status: None,
    };
    emu.control().put_identity(device, None, &spec).await.unwrap();
    X509Identity::from_pem(
        &cert.to_pem().unwrap(),
        &key.private_key_to_pem_pkcs8().unwrap(),
        None,
        SystemTime::now(),
    )
    .unwrap()
}

/// The provider for a new `device` connecting with `auth` through `proxy`, the port it
/// connects to and the authentication the hub should record.
async fn provider(
    emu: &EmulatorHandle,
    device: &str,
    auth: Auth,
    proxy: &str,
) -> (AzureProvider, u16, &'static str) {
    let ca = PemSource::File(emu.ca_path().to_owned());
    let (cs, mut opts, port, recorded): (ConnectionString, _, _, _) = match auth {
        Auth::SasMqtt => {
            let cs = sas_device(emu, device).await.parse().unwrap();
            (cs, AzureOptions::default().port(emu.mqtt_port()), emu.mqtt_port(), "sas")
        }
        Auth::X509 => {
            let id = x509_device(emu, device).await;
            let cs = format!("HostName={};DeviceId={device};x509=true", emu.hub_host_name()).parse().unwrap();
            (cs, AzureOptions::default().port(emu.mqtt_port()).x509(id), emu.mqtt_port(), "x509")
        }
        Auth::SasWss => {
            let port = emu.ws_port().expect("ephemeral enables WebSocket");
            let cs = sas_device(emu, device).await.parse().unwrap();
            let mut opts = AzureOptions::default().port(port);
            opts.transport = Transport::WebSocket;
            (cs, opts, port, "sas")
        }
    };
    opts = opts.trust_roots(ca);
    opts.keep_alive = Duration::from_secs(30);
    opts.http_proxy = Some(proxy.to_owned());
    (AzureProvider::new(cs, opts).unwrap(), port, recorded)
}

/// One row: connect `auth` through `via` over `client`, publish, check the hub's and the
/// proxy's record.
async fn row(auth: Auth, via: Via, client: Client) {
    let name = format!("{auth:?}/{via:?}/{client:?}");
    let device = format!("{auth:?}-{via:?}-{client:?}").to_lowercase();
    let emu = start();
    let proxy = Proxy::start(via);
    let (provider, port, recorded) = provider(&emu, &device, auth, &proxy.url()).await;
    let conn = Connector::builder(provider).backoff(fast_backoff()).transport(transport(client)).start();
    conn.wait_connected(WAIT).await.unwrap_or_else(|e| panic!("{name}: not connected: {e}"));
    let body = format!("from {name}");
    conn.publisher()
        .publish(Publish::telemetry(body.clone()).qos(QoS::AtLeastOnce))
        .await
        .unwrap_or_else(|e| panic!("{name}: publish: {e}"));
    let got = emu.control().telemetry(&device, None).await.unwrap();
    let payloads: Vec<Option<&str>> = got.iter().map(|m| m.payload.as_deref()).collect();
    assert_eq!(payloads, [Some(body.as_str())], "{name}: the hub captured the message");
    let conns = emu.control().connections().await.unwrap();
    let hub: Vec<(&str, &str)> = conns
        .iter()
        .filter(|c| c.endpoint == "hub")
        .map(|c| (c.client_id.as_str(), c.auth.as_str()))
        .collect();
    assert_eq!(hub, [(device.as_str(), recorded)], "{name}: the hub's connection record");
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
    sas_mqtt_tls_http_connect_paho: SasMqtt, Http, Paho;
    sas_mqtt_tls_http_connect_native: SasMqtt, Http, Native;
    sas_mqtt_tls_socks5_native: SasMqtt, Socks5, Native;
    sas_mqtt_tls_socks5_password_native: SasMqtt, Socks5Auth, Native;
    x509_mtls_http_connect_paho: X509, Http, Paho;
    x509_mtls_http_connect_native: X509, Http, Native;
    x509_mtls_socks5_native: X509, Socks5, Native;
    x509_mtls_socks5_password_native: X509, Socks5Auth, Native;
    sas_wss_http_connect_paho: SasWss, Http, Paho;
    sas_wss_http_connect_native: SasWss, Http, Native;
    sas_wss_socks5_native: SasWss, Socks5, Native;
    sas_wss_socks5_password_native: SasWss, Socks5Auth, Native;
}

/// Wrong SOCKS5 credentials: every attempt fails as a typed proxy refusal, nothing reaches
/// the hub, and the password is in neither the failure nor its `Debug`.
#[actix_rt::test]
async fn socks5_refusing_credentials_is_a_typed_connect_failure() {
    let emu = start();
    let proxy = Socks5Proxy::with_credentials("hub-user", "the-right-one");
    let (provider, _, _) =
        provider(&emu, "socks-wrong", Auth::SasWss, &proxy.url_with("hub-user", "s3cret-but-wrong")).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let conn = Connector::builder(provider)
        .backoff(fast_backoff())
        .transport(transport(Client::Native))
        .events_to(tx)
        .start();
    let mut failed = 0;
    while failed < 2 {
        match tokio::time::timeout(WAIT, rx.recv()).await.expect("lifecycle events").unwrap() {
            ConnectionEvent::ConnectionFailed { reason, .. } => {
                assert!(
                    matches!(
                        reason,
                        ConnectFailure::Proxy { reason: ProxyRefusal::AuthenticationFailed, .. }
                    ),
                    "{reason:?}"
                );
                assert!(!format!("{reason} {reason:?}").contains("s3cret-but-wrong"), "{reason:?}");
                failed += 1;
            }
            ConnectionEvent::AttemptingConnect { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    conn.stop().await;
    assert_eq!(proxy.auth_failures(), 2);
    assert_eq!(proxy.tunnels(), 0);
    assert!(emu.control().connections().await.unwrap().iter().all(|c| c.endpoint != "hub"));
    emu.shutdown();
}
