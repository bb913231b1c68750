//! Every way into AWS IoT Core against the emulator over real TLS, through the real actor
//! tree (`connector_actors::Connector`): X.509 on the 8883-style port, X.509 with ALPN
//! `x-amzn-mqtt-ca` on the 443-style port, SigV4 WebSockets (explicit credentials, with a
//! session token, CRT-style `connection;host`, through an HTTP proxy), custom authorizers
//! (ALPN `mqtt` with the token in the user name, signed and unsigned; WebSocket headers
//! through an HTTP proxy); each publishes QoS 1 telemetry the emulator captured. Expired
//! and forged signatures and denied tokens end in typed connection failures; MQTT 5
//! properties reach the service and a subscriber; no secret reaches the logs.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use connector_aws::sigv4::SignedHeaders;
use connector_aws::{AwsAuth, AwsCredentials, AwsProvider, CredentialsSource, CustomAuth, SigV4Auth};
use connector_core::{ConnectFailure, ConnectionEvent, Publish};
use connector_emulator::control::aws_api::Authorizer;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use test_support::HttpProxy;

fn only_failures(events: &[ConnectionEvent], check: impl Fn(&ConnectFailure) -> bool) {
    assert!(events.iter().any(|e| matches!(e, ConnectionEvent::ConnectionFailed { .. })));
    for e in events {
        match e {
            ConnectionEvent::AttemptingConnect { .. } => {}
            ConnectionEvent::ConnectionFailed { reason, .. } => {
                assert!(check(reason), "{reason:?} in {events:?}")
            }
            other => panic!("unexpected {other:?} in {events:?}"),
        }
    }
}

async fn access_key(emu: &connector_emulator::EmulatorHandle) -> AwsCredentials {
    let k = emu.control().aws_create_access_key().await.unwrap();
    AwsCredentials::new(k.access_key_id, k.secret_access_key).unwrap()
}

fn sigv4(emu: &connector_emulator::EmulatorHandle, creds: AwsCredentials) -> SigV4Auth {
    SigV4Auth::explicit(creds).region(emu.aws_region())
}

#[actix_rt::test]
async fn x509_on_the_mqtt_port() {
    let emu = start();
    let creds = thing_with_cert(&emu, "lamp-1").await;
    let provider = AwsProvider::new(options(&emu, "lamp-1", AwsAuth::Certificate(creds))).unwrap();
    let id = provider.certificate_id().unwrap().to_owned();
    let conn = telemetry_round_trip(&emu, provider, "dt/lamp-1/telemetry").await;
    assert_eq!(connection_of(&emu, "lamp-1").await, ("x509".to_string(), id));
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn x509_with_alpn_on_the_443_port_and_a_custom_client_id_and_topic() {
    let emu = start();
    let creds = thing_with_cert(&emu, "lamp-2").await;
    let opts = options(&emu, "lamp-2", AwsAuth::CertificateAlpn(creds))
        .client_id("lamp-2-client")
        .telemetry_topic("fleet/{thing}/{client_id}");
    let provider = AwsProvider::new(opts).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "fleet/lamp-2/lamp-2-client").await;
    assert_eq!(connection_of(&emu, "lamp-2-client").await.0, "x509");
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn sigv4_websocket_with_explicit_credentials() {
    let emu = start();
    let creds = access_key(&emu).await;
    let key_id = creds.access_key_id().to_owned();
    let provider = AwsProvider::new(options(&emu, "ws-1", AwsAuth::SigV4(sigv4(&emu, creds)))).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "dt/ws-1/telemetry").await;
    assert_eq!(connection_of(&emu, "ws-1").await, ("sigv4".to_string(), key_id));
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn sigv4_with_a_session_token_crt_style_through_a_proxy() {
    let emu = start();
    let proxy = HttpProxy::start();
    let creds = access_key(&emu).await.with_session_token("FwoGZXIvYXdzEXAMPLE/session+token==");
    let mut auth = sigv4(&emu, creds);
    auth.signed_headers = SignedHeaders::ConnectionHost;
    auth.expires = None;
    let opts = options(&emu, "ws-2", AwsAuth::SigV4(auth)).http_proxy(proxy.url());
    let provider = AwsProvider::new(opts).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "dt/ws-2/telemetry").await;
    assert_eq!(connection_of(&emu, "ws-2").await.0, "sigv4");
    let target = format!("localhost:{}", emu.aws_port().unwrap());
    assert!(proxy.connect_targets().iter().all(|t| *t == target), "{:?}", proxy.connect_targets());
    assert!(proxy.tunnels() >= 1);
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn sigv4_expired_or_forged_signatures_are_refused() {
    let emu = start();
    let creds = access_key(&emu).await;
    // Signed two hours ago, valid for five minutes.
    let provider =
        AwsProvider::new(options(&emu, "ws-3", AwsAuth::SigV4(sigv4(&emu, creds.clone())))).unwrap();
    let events = failures(Skewed { inner: provider, skew: Duration::from_secs(7200) }, 2).await;
    only_failures(&events, |f| matches!(f, ConnectFailure::Transport { .. }));
    // The right key id with a secret that is not its own.
    let forged = AwsCredentials::new(creds.access_key_id(), "not-the-secret").unwrap();
    let provider = AwsProvider::new(options(&emu, "ws-3", AwsAuth::SigV4(sigv4(&emu, forged)))).unwrap();
    let events = failures(provider, 2).await;
    only_failures(&events, |f| matches!(f, ConnectFailure::Transport { .. }));
    assert!(emu.control().aws_connections().await.unwrap().is_empty());
    emu.shutdown();
}

fn authorizer(tokens: &[&str], signing_key: Option<String>) -> Authorizer {
    Authorizer {
        token_key_name: "token".into(),
        token_signing_public_key: signing_key,
        allowed_tokens: tokens.iter().map(|t| t.to_string()).collect(),
        default: false,
    }
}

#[actix_rt::test]
async fn custom_authorizer_unsigned_token_in_the_user_name() {
    let emu = start();
    emu.control().aws_put_authorizer("plain-auth", &authorizer(&["good-token"], None)).await.unwrap();
    let auth =
        CustomAuth::new(Some("plain-auth")).token("token", "good-token").username("device").password("pw");
    let provider = AwsProvider::new(options(&emu, "ca-1", AwsAuth::CustomAuthorizer(auth))).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "dt/ca-1/telemetry").await;
    assert_eq!(connection_of(&emu, "ca-1").await, ("custom-auth".to_string(), "plain-auth".to_string()));
    conn.stop().await;
    // A token the authorizer denies: CONNACK not authorized.
    let auth = CustomAuth::new(Some("plain-auth")).token("token", "bad-token");
    let provider = AwsProvider::new(options(&emu, "ca-1", AwsAuth::CustomAuthorizer(auth))).unwrap();
    let events = failures(provider, 2).await;
    only_failures(&events, |f| matches!(f, ConnectFailure::Refused { code: 5, .. }));
    emu.shutdown();
}

#[actix_rt::test]
async fn custom_authorizer_signed_token_over_mqtt_and_websocket_through_a_proxy() {
    let emu = start();
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let public = String::from_utf8(rsa.public_key_to_pem().unwrap()).unwrap();
    let private = rsa.private_key_to_pem_pkcs8().unwrap();
    emu.control()
        .aws_put_authorizer("signed-auth", &authorizer(&["signed-token"], Some(public)))
        .await
        .unwrap();
    let signed =
        CustomAuth::new(Some("signed-auth")).token("token", "signed-token").sign_with(&private).unwrap();
    // ALPN `mqtt`, signature in the user name.
    let provider =
        AwsProvider::new(options(&emu, "ca-2", AwsAuth::CustomAuthorizer(signed.clone()))).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "dt/ca-2/telemetry").await;
    conn.stop().await;
    // WebSocket headers, through a proxy.
    let proxy = HttpProxy::start();
    let opts = options(&emu, "ca-3", AwsAuth::CustomAuthorizer(signed.clone().over_websocket()))
        .http_proxy(proxy.url());
    let conn = telemetry_round_trip(&emu, AwsProvider::new(opts).unwrap(), "dt/ca-3/telemetry").await;
    assert_eq!(connection_of(&emu, "ca-3").await, ("custom-auth".to_string(), "signed-auth".to_string()));
    assert!(proxy.tunnels() >= 1);
    conn.publisher().publish(Publish::to_topic("sensors/ca-3/extra", &b"2"[..])).await.unwrap();
    let extra = emu.control().aws_telemetry(Some("ca-3"), Some("sensors/#")).await.unwrap();
    assert_eq!(extra.len(), 1);
    conn.stop().await;
    // A signature made with another key does not verify.
    let other = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap().private_key_to_pem_pkcs8().unwrap();
    let forged =
        CustomAuth::new(Some("signed-auth")).token("token", "signed-token").sign_with(&other).unwrap();
    let provider = AwsProvider::new(options(&emu, "ca-4", AwsAuth::CustomAuthorizer(forged))).unwrap();
    only_failures(&failures(provider, 2).await, |f| matches!(f, ConnectFailure::Refused { code: 5, .. }));
    emu.shutdown();
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every log line of a SigV4 and a custom-authorizer connection, at TRACE: neither the
/// signature, the session token, the authorizer token nor the password appears.
#[actix_rt::test]
async fn secrets_never_reach_the_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let emu = start();
    let creds = access_key(&emu).await.with_session_token("session-token-in-logs?");
    let secret = creds.secret_access_key().expose().to_owned();
    let provider = AwsProvider::new(options(&emu, "log-1", AwsAuth::SigV4(sigv4(&emu, creds)))).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "dt/log-1/telemetry").await;
    conn.stop().await;
    emu.control()
        .aws_put_authorizer("log-auth", &authorizer(&["authorizer-token-in-logs"], None))
        .await
        .unwrap();
    let auth = CustomAuth::new(Some("log-auth"))
        .token("token", "authorizer-token-in-logs")
        .password("password-in-logs");
    let provider = AwsProvider::new(options(&emu, "log-2", AwsAuth::CustomAuthorizer(auth))).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "dt/log-2/telemetry").await;
    conn.stop().await;
    emu.shutdown();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("connect"), "the connections were logged: {logs}");
    for s in
        ["X-Amz-Signature=", "session-token-in-logs", "authorizer-token-in-logs", "password-in-logs", &secret]
    {
        assert!(!logs.contains(s), "{s} in the logs:\n{logs}");
    }
}

/// SigV4 credentials from a profile of a shared credentials file (read once, when the
/// provider is built).
#[actix_rt::test]
async fn sigv4_with_credentials_from_a_shared_file_profile() {
    let emu = start();
    let k = emu.control().aws_create_access_key().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = other\n\n[device]\n\
             aws_access_key_id = {}\naws_secret_access_key = {}\n",
            k.access_key_id, k.secret_access_key
        ),
    )
    .unwrap();
    let source = CredentialsSource::Profile { name: Some("device".into()), file: Some(file) };
    let auth = SigV4Auth::new(source).region(emu.aws_region());
    let provider = AwsProvider::new(options(&emu, "ws-profile", AwsAuth::SigV4(auth))).unwrap();
    drop(dir); // read once: the file is no longer needed
    let conn = telemetry_round_trip(&emu, provider, "dt/ws-profile/telemetry").await;
    assert_eq!(connection_of(&emu, "ws-profile").await, ("sigv4".to_string(), k.access_key_id));
    conn.stop().await;
    emu.shutdown();
}

/// An MQTT 5 provider for a new thing with a certificate.
async fn v5_provider(
    emu: &connector_emulator::EmulatorHandle,
    thing: &str,
    f: impl FnOnce(connector_aws::AwsOptions) -> connector_aws::AwsOptions,
) -> AwsProvider {
    let auth = AwsAuth::Certificate(thing_with_cert(emu, thing).await);
    AwsProvider::new(f(options(emu, thing, auth).mqtt_version(connector_core::MqttVersion::V5))).unwrap()
}

/// A connected MQTT 5 connector for a new thing, subscribed to `filter`: what it receives.
async fn v5_receiver(
    emu: &connector_emulator::EmulatorHandle,
    thing: &str,
    filter: &str,
) -> (connector_actors::Connector, tokio::sync::mpsc::UnboundedReceiver<connector_core::Inbound>) {
    use connector_actors::messages::Subscribe;
    let conn = connector_actors::Connector::builder(v5_provider(emu, thing, |o| o).await)
        .backoff(fast_backoff())
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    conn.subscriber()
        .subscribe(Subscribe::handler(
            filter,
            connector_core::QoS::AtLeastOnce,
            move |i: &connector_core::Inbound| {
                let _ = tx.send(i.clone());
            },
        ))
        .await
        .unwrap();
    (conn, rx)
}

/// MQTT 5 end to end: the provider connects with MQTT 5; user properties, content type,
/// correlation data and message expiry go on the wire from `Publish`, the response topic
/// from `encode_request`; the emulator captures them and a second MQTT 5 connector
/// subscribed to the topic receives them. On MQTT 3.1.1 the same publish is refused
/// before sending.
#[actix_rt::test]
async fn mqtt5_properties_reach_the_service_and_subscribers() {
    use connector_actors::Connector;
    use connector_core::{Inbound, Provider};

    let emu = start();
    let sender = v5_provider(&emu, "v5-sender", |o| o).await;
    let (rx_conn, mut rx) = v5_receiver(&emu, "v5-receiver", "dt/v5-sender/telemetry").await;
    let publish = Publish::telemetry(&b"{\"t\":1}"[..])
        .user_property("unit", "C")
        .user_property("unit", "K")
        .content_type("application/json")
        .correlation_id("corr-1")
        .message_expiry(Duration::from_secs(60));
    let packet = sender.encode_request(&publish, "replies/v5-sender").unwrap();
    assert_eq!(packet.properties.response_topic.as_deref(), Some("replies/v5-sender"));
    let tx_conn = Connector::builder(sender).backoff(fast_backoff()).start();
    tx_conn.wait_connected(WAIT).await.unwrap();
    tx_conn.publisher().publish_packet(packet).await.unwrap();
    let captured = emu.control().aws_telemetry(Some("v5-sender"), None).await.unwrap();
    assert_eq!(captured.len(), 1);
    assert_eq!(
        captured[0].user_properties,
        [("unit".to_string(), "C".to_string()), ("unit".to_string(), "K".to_string())]
    );
    assert_eq!(captured[0].content_type.as_deref(), Some("application/json"));
    let got = tokio::time::timeout(WAIT, rx.recv()).await.expect("the subscriber receives it").unwrap();
    let Inbound::Message(m) = got else { panic!("a user message: {got:?}") };
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    assert_eq!(m.correlation_data.as_deref(), Some(&b"corr-1"[..]));
    assert_eq!(m.user_properties.len(), 2);
    tx_conn.stop().await;
    rx_conn.stop().await;
    // The same publish from an MQTT 3.1.1 provider is refused before anything is sent.
    let v311 = AwsProvider::new(options(&emu, "v3", AwsAuth::Certificate(thing_with_cert(&emu, "v3").await)))
        .unwrap();
    assert!(matches!(v311.encode_publish(&publish), Err(connector_core::ProviderError::Unsupported { .. })));
    emu.shutdown();
}

/// Without `x-amz-customauthorizer-name` the domain's default authorizer decides.
#[actix_rt::test]
async fn custom_authorizer_default_when_none_is_named() {
    let emu = start();
    let mut default = authorizer(&["default-token"], None);
    default.default = true;
    emu.control().aws_put_authorizer("the-default", &default).await.unwrap();
    let auth = CustomAuth::new(None).token("token", "default-token");
    let provider = AwsProvider::new(options(&emu, "ca-default", AwsAuth::CustomAuthorizer(auth))).unwrap();
    let conn = telemetry_round_trip(&emu, provider, "dt/ca-default/telemetry").await;
    assert_eq!(
        connection_of(&emu, "ca-default").await,
        ("custom-auth".to_string(), "the-default".to_string())
    );
    conn.stop().await;
    emu.shutdown();
}

/// Outbound MQTT 5 topic aliases against the emulator (which, like AWS IoT Core, allows 8):
/// asked for 16, the client uses the server's 8; every PUBLISH carries the alias the
/// least-recently-used table gives (checked against the table itself), the emulator
/// resolves each one to the topic that was sent, a subscriber gets the full topics, and
/// after the connection is dropped the new connection binds its aliases afresh (an alias
/// reused from the old connection would be a protocol error and the message would never
/// be captured).
#[actix_rt::test]
async fn topic_aliases_are_bound_reused_and_reset_on_reconnect() {
    use connector_actors::Connector;
    use connector_core::topic_alias::{AliasUse, TopicAliasCache};
    use connector_core::{QoS, TopicAliasing};
    use futures::StreamExt as _;

    let emu = start();
    let sender =
        v5_provider(&emu, "alias-sender", |o| o.topic_aliasing(TopicAliasing::Lru { max: 16 })).await;
    let (rx_conn, mut rx) = v5_receiver(&emu, "alias-receiver", "alias/#").await;
    let tx_conn = Connector::builder(sender).backoff(fast_backoff()).start();
    tx_conn.wait_connected(WAIT).await.unwrap();

    // Ten topics through eight aliases: binds, reuses, and least-recently-used rebinds.
    let order: Vec<usize> = (0..8).chain(0..8).chain([8, 9, 0, 3, 1, 9, 8, 2]).collect();
    let mut model = TopicAliasCache::new(8);
    let mut sent = Vec::new();
    for (n, i) in order.iter().enumerate() {
        let topic = format!("alias/t{i}");
        tx_conn
            .publisher()
            .publish(Publish::to_topic(&topic, format!("{n}").into_bytes()).qos(QoS::AtLeastOnce))
            .await
            .unwrap();
        sent.push((topic.clone(), model.resolve(&topic)));
    }
    let captured = emu.control().aws_telemetry(Some("alias-sender"), None).await.unwrap();
    let got: Vec<(String, Option<u16>)> = captured.iter().map(|c| (c.topic.clone(), c.topic_alias)).collect();
    let want: Vec<(String, Option<u16>)> = sent
        .iter()
        .map(|(t, u)| match u {
            AliasUse::Bind(a) | AliasUse::Reuse(a) => (t.clone(), Some(*a)),
            AliasUse::Off => (t.clone(), None),
        })
        .collect();
    assert_eq!(got, want);
    assert!(sent.iter().filter(|(_, u)| matches!(u, AliasUse::Reuse(_))).count() >= 9, "{sent:?}");
    for (topic, _) in &sent {
        let t = tokio::time::timeout(WAIT, rx.recv()).await.expect("the subscriber receives it").unwrap();
        assert_eq!(t.topic(), topic);
    }

    // A new connection starts a new table: the first PUBLISH binds alias 1 again.
    let mut events = tx_conn.events(16);
    emu.control().aws_drop("alias-sender").await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.expect("a reconnect") {
            Some(ConnectionEvent::Connected { .. }) => break,
            Some(_) => {}
            None => panic!("events ended"),
        }
    }
    for topic in ["alias/t3", "alias/t3", "alias/t7"] {
        tx_conn
            .publisher()
            .publish(Publish::to_topic(topic, &b"again"[..]).qos(QoS::AtLeastOnce))
            .await
            .unwrap();
    }
    let captured = emu.control().aws_telemetry(Some("alias-sender"), None).await.unwrap();
    let tail: Vec<(String, Option<u16>)> =
        captured[order.len()..].iter().map(|c| (c.topic.clone(), c.topic_alias)).collect();
    assert_eq!(
        tail,
        [
            ("alias/t3".to_string(), Some(1)),
            ("alias/t3".to_string(), Some(1)),
            ("alias/t7".to_string(), Some(2))
        ]
    );
    tx_conn.stop().await;
    rx_conn.stop().await;
}

/// A thing's certificate and key as PKCS#12 archives made with openssl (the library, and
/// the `openssl pkcs12 -export` command where it is installed), loaded with their
/// passphrase: mutual TLS on the 8883-style port with the archive's identity. A wrong
/// passphrase and bytes that are no archive are typed errors.
#[actix_rt::test]
async fn x509_from_a_pkcs12_archive() {
    use connector_aws::{CertificateError, X509Credentials};
    use connector_core::Secret;
    use connector_emulator::control::aws_api::CreateCertificate;
    use openssl::pkcs12::Pkcs12;
    use openssl::x509::X509;
    use std::time::SystemTime;

    let emu = start();
    let dir = tempfile::tempdir().unwrap();
    let pass = Secret::new("p12 pass");
    let mut archives = Vec::new();
    for (n, thing) in ["p12-lib", "p12-cli"].into_iter().enumerate() {
        emu.control().aws_create_thing(thing).await.unwrap();
        let c = emu
            .control()
            .aws_create_certificate(&CreateCertificate {
                thing_name: Some(thing.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let key_pem = c.private_key_pem.unwrap();
        let path = dir.path().join(format!("{thing}.p12"));
        if n == 0 {
            let cert = X509::from_pem(c.certificate_pem.as_bytes()).unwrap();
            let key = PKey::private_key_from_pem(key_pem.as_bytes()).unwrap();
            let der = Pkcs12::builder()
                .name(thing)
                .pkey(&key)
                .cert(&cert)
                .build2(pass.expose())
                .unwrap()
                .to_der()
                .unwrap();
            std::fs::write(&path, der).unwrap();
        } else {
            let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
            std::fs::write(&cert_file, &c.certificate_pem).unwrap();
            std::fs::write(&key_file, &key_pem).unwrap();
            let made = std::process::Command::new("openssl")
                .args(["pkcs12", "-export", "-in"])
                .arg(&cert_file)
                .arg("-inkey")
                .arg(&key_file)
                .arg("-out")
                .arg(&path)
                .args(["-passout", "env:P12_PASS"])
                .env("P12_PASS", pass.expose())
                .status();
            match made {
                Ok(s) if s.success() => {}
                other if std::env::var_os("CI").is_none() => {
                    eprintln!("SKIP the `openssl pkcs12 -export` archive: {other:?}");
                    continue;
                }
                other => panic!("openssl pkcs12 -export: {other:?}"),
            }
        }
        archives.push((thing, path));
    }
    for (thing, path) in &archives {
        let creds = X509Credentials::from_pkcs12_file(path, &pass, SystemTime::now()).unwrap();
        let provider = AwsProvider::new(options(&emu, thing, AwsAuth::Certificate(creds))).unwrap();
        let id = provider.certificate_id().unwrap().to_owned();
        let conn = telemetry_round_trip(&emu, provider, &format!("dt/{thing}/telemetry")).await;
        assert_eq!(connection_of(&emu, thing).await, ("x509".to_string(), id));
        conn.stop().await;
    }
    let (_, path) = &archives[0];
    assert!(matches!(
        X509Credentials::from_pkcs12_file(path, &Secret::new("wrong"), SystemTime::now()),
        Err(CertificateError::WrongPassphrase)
    ));
    assert!(matches!(
        X509Credentials::from_pkcs12(b"not an archive", &pass, SystemTime::now()),
        Err(CertificateError::InvalidCertificate { .. })
    ));
    emu.shutdown();
}
