use std::time::UNIX_EPOCH;

use bytes::Bytes;
use connector_core::{QoS, Scheme, Secret, TopicError};

use super::*;
use crate::credentials::CredentialsSource;
use crate::options::SigV4Auth;
use crate::x509::tests::{cert, key, NOW};

const ENDPOINT: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn pem_creds() -> X509Credentials {
    let k = key();
    let c = cert(&k, NOW - 10, NOW + 86_400);
    X509Credentials::from_pem(
        String::from_utf8(c.to_pem().unwrap()).unwrap(),
        String::from_utf8(k.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    )
}

fn creds() -> AwsCredentials {
    AwsCredentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        .unwrap()
        .with_session_token("FwoGZXIvYXdzEXAMPLE/session+token==")
}

fn provider(auth: AwsAuth) -> AwsProvider {
    AwsProvider::new_at(AwsOptions::new(ENDPOINT, "lamp", auth), now()).unwrap()
}

#[test]
fn certificate_auth_on_8883_and_443_alpn() {
    let p = provider(AwsAuth::Certificate(pem_creds()));
    let c = p.connect_params(now()).unwrap();
    assert_eq!((c.uri.scheme(), c.uri.host(), c.uri.port()), (Scheme::Mqtts, ENDPOINT, 8883));
    assert_eq!(c.client_id, "lamp");
    let tls = c.tls.as_ref().unwrap();
    assert!(tls.client_cert.is_some() && tls.client_key.is_some() && tls.alpn.is_empty());
    assert!(c.username.is_none() && c.password.is_none() && c.credentials_expire.is_none());
    assert_eq!(p.certificate_id().map(str::len), Some(64));
    let p = provider(AwsAuth::CertificateAlpn(pem_creds()));
    let c = p.connect_params(now()).unwrap();
    assert_eq!((c.uri.port(), c.tls.unwrap().alpn), (443, vec!["x-amzn-mqtt-ca".to_string()]));
}

#[test]
fn sigv4_is_resigned_for_every_attempt_at_its_time() {
    let p = provider(AwsAuth::SigV4(SigV4Auth::explicit(creds())));
    assert_eq!(p.region(), Some("us-east-1"));
    let a = p.connect_params(now()).unwrap();
    let b = p.connect_params(now() + Duration::from_secs(60)).unwrap();
    assert_eq!((a.uri.scheme(), a.uri.port()), (Scheme::Wss, 443));
    assert!(a.uri.path().starts_with("/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&"));
    assert!(a.uri.path().contains("X-Amz-Date=20250101T000000Z"));
    assert!(b.uri.path().contains("X-Amz-Date=20250101T000100Z"));
    assert!(a.uri.path().ends_with("&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Fsession%2Btoken%3D%3D"));
    assert_eq!(a.credentials_expire, Some(now() + SIGV4_CONNECTION_LIFETIME));
    assert!(a.tls.as_ref().unwrap().client_cert.is_none());
    // Signed over the Host header paho sends: host and port.
    let expected = presign(&Presign {
        credentials: &creds(),
        region: "us-east-1",
        host: &format!("{ENDPOINT}:443"),
        time: now(),
        expires: Some(Duration::from_secs(300)),
        signed_headers: SignedHeaders::Host,
    })
    .unwrap();
    assert_eq!(a.uri.path(), expected.path_and_query().expose());
    // The region must come from somewhere.
    let opts = AwsOptions::new("localhost", "lamp", AwsAuth::SigV4(SigV4Auth::explicit(creds())));
    assert!(matches!(AwsProvider::new_at(opts, now()), Err(AwsError::Config { field: "region", .. })));
    let opts = AwsOptions::new(
        "localhost",
        "lamp",
        AwsAuth::SigV4(SigV4Auth::explicit(creds()).region("eu-west-1")),
    );
    assert_eq!(AwsProvider::new_at(opts, now()).unwrap().region(), Some("eu-west-1"));
}

#[test]
fn custom_authorizer_over_mqtt_and_websocket() {
    let auth = CustomAuth::new(Some("my-auth")).token("token", "tok-1").signature("c2ln").password("pw");
    let p = provider(AwsAuth::CustomAuthorizer(auth.clone()));
    let c = p.connect_params(now()).unwrap();
    assert_eq!((c.uri.scheme(), c.uri.port()), (Scheme::Mqtts, 443));
    assert_eq!(c.tls.as_ref().unwrap().alpn, ["mqtt"]);
    assert_eq!(
        c.username.as_deref(),
        Some("?x-amz-customauthorizer-name=my-auth&x-amz-customauthorizer-signature=c2ln&token=tok-1")
    );
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw"));
    let p = provider(AwsAuth::CustomAuthorizer(auth.over_websocket()));
    let c = p.connect_params(now()).unwrap();
    assert_eq!((c.uri.scheme(), c.uri.path()), (Scheme::Wss, "/mqtt"));
    let names: Vec<&str> = c.http_headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["x-amz-customauthorizer-name", "x-amz-customauthorizer-signature", "token"]);
    assert!(c.tls.unwrap().alpn.is_empty());
}

#[test]
fn options_are_checked_once() {
    let base = || AwsOptions::new(ENDPOINT, "lamp", AwsAuth::Certificate(pem_creds()));
    let table: Vec<(AwsOptions, &str)> = vec![
        (AwsOptions { endpoint: "mqtts://x".into(), ..base() }, "endpoint"),
        (AwsOptions { thing_name: "a/b".into(), ..base() }, "thing_name"),
        (base().client_id("x".repeat(129)), "client_id"),
        (base().client_id(""), "client_id"),
        (base().port(0), "port"),
        (base().keep_alive(Duration::from_secs(10)), "keep_alive"),
        (base().keep_alive(Duration::from_secs(1201)), "keep_alive"),
        (base().connect_timeout(Duration::ZERO), "connect_timeout"),
        (base().publish_rate(0), "publish_rate"),
        (base().topic_aliasing(connector_core::TopicAliasing::Lru { max: 8 }), "topic_aliasing"),
        (base().http_proxy("ftp://p:1080"), "http_proxy"),
        (base().http_proxy("p:1080"), "http_proxy"),
        (base().telemetry_topic("$aws/things/{thing}/shadow/update"), "telemetry_topic"),
        (base().telemetry_topic("dt/{device}/t"), "telemetry_topic"),
        (base().telemetry_topic("a/+/b"), "telemetry_topic"),
        (base().telemetry_topic("a/b/c/d/e/f/g/h/{thing}"), "telemetry_topic"),
    ];
    for (opts, field) in table {
        match AwsProvider::new_at(opts, now()) {
            Err(AwsError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let p = AwsProvider::new_at(base().telemetry_topic("fleet/{client_id}/{thing}").client_id("c1"), now())
        .unwrap();
    assert_eq!(p.telemetry_topic_name(), "fleet/c1/lamp");
}

#[test]
fn publishes_are_checked_against_the_limits() {
    let p = provider(AwsAuth::Certificate(pem_creds()));
    let t = p.encode_publish(&Publish::telemetry(&b"x"[..])).unwrap();
    assert_eq!((t.topic.as_str(), t.qos), ("dt/lamp/telemetry", QoS::AtLeastOnce));
    let big = Bytes::from(vec![0u8; MAX_PAYLOAD + 1]);
    assert_eq!(
        p.encode_publish(&Publish::telemetry(big)),
        Err(ProviderError::PayloadTooLarge { size: MAX_PAYLOAD + 1, limit: MAX_PAYLOAD })
    );
    assert!(p.encode_publish(&Publish::telemetry(Bytes::from(vec![0u8; MAX_PAYLOAD]))).is_ok());
    assert_eq!(
        p.encode_publish(&Publish::to_topic("a/b/c/d/e/f/g/h/i", &b"x"[..])),
        Err(ProviderError::Topic(TopicError::TooDeep { levels: 9, limit: 8 }))
    );
    assert!(matches!(
        p.encode_publish(&Publish::to_topic("$aws/things/lamp/shadow/update", &b"{}"[..])),
        Err(ProviderError::Unsupported { .. })
    ));
    assert!(p.encode_publish(&Publish::to_topic("$aws/rules/ingest/a/b/c/d/e/f/g/h", &b"x"[..])).is_ok());
    assert!(matches!(
        p.encode_publish(&Publish::to_topic("$aws/rules/ingest/a", &b"x"[..]).retain(true)),
        Err(ProviderError::Unsupported { .. })
    ));
    // Properties need MQTT 5.
    let with_props = Publish::telemetry(&b"x"[..]).user_property("k", "v");
    assert!(matches!(p.encode_publish(&with_props), Err(ProviderError::Unsupported { .. })));
    assert!(matches!(
        p.encode_request(&Publish::telemetry(&b"x"[..]), "r/t"),
        Err(ProviderError::Unsupported { .. })
    ));
    let limits = p.limits();
    assert_eq!(
        (
            limits.max_payload,
            limits.max_topic_len,
            limits.max_topic_levels,
            limits.max_publish_rate,
            limits.max_filters_per_subscribe
        ),
        (131_072, 256, Some(8), Some(100), Some(8))
    );
}

#[test]
fn mqtt5_properties_go_on_the_wire() {
    let opts = AwsOptions::new(ENDPOINT, "lamp", AwsAuth::Certificate(pem_creds()))
        .mqtt_version(MqttVersion::V5)
        .publish_rate(20);
    let p = AwsProvider::new_at(opts, now()).unwrap();
    assert_eq!(p.connect_params(now()).unwrap().mqtt_version, MqttVersion::V5);
    assert_eq!(p.limits().max_publish_rate, Some(20));
    let publish = Publish::telemetry(&b"x"[..])
        .user_property("k", "v")
        .content_type("application/json")
        .correlation_id("c-1")
        .message_expiry(Duration::from_secs(30));
    let w = p.encode_request(&publish, "replies/lamp").unwrap();
    assert_eq!(w.properties.user, [("k".to_string(), "v".to_string())]);
    assert_eq!(w.properties.content_type.as_deref(), Some("application/json"));
    assert_eq!(w.properties.correlation_data.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(w.properties.message_expiry_secs, Some(30));
    assert_eq!(w.properties.response_topic.as_deref(), Some("replies/lamp"));
    assert!(p.encode_request(&publish, "bad/+").is_err());
}

#[test]
fn classification_by_topic() {
    let p = provider(AwsAuth::Certificate(pem_creds()));
    let msg =
        |t: &str, b: &str| InboundMessage::new(t, Bytes::copy_from_slice(b.as_bytes()), QoS::AtLeastOnce);
    assert!(matches!(p.classify(msg("sensors/x", "1")), Inbound::Message(_)));
    assert!(matches!(p.classify(msg("$aws/certificates/create/json/accepted", "{}")), Inbound::Message(_)));
    assert!(matches!(p.classify(msg("$aws/things/other/shadow/get/accepted", "{}")), Inbound::Message(_)));
    assert!(matches!(
        p.classify(msg("$aws/things/lamp/shadow/get/accepted", r#"{"clientToken":"r"}"#)),
        Inbound::StateResponse(_)
    ));
    assert!(matches!(p.classify(msg("$aws/things/lamp/jobs/notify", "{}")), Inbound::JobNotification(_)));
    assert!(matches!(p.classify(msg("$aws/things/lamp/shadow/bogus", "{}")), Inbound::Malformed { .. }));
    assert!(matches!(p.classify(msg("$aws/things/lamp/shadow/get/+", "{}")), Inbound::Malformed { .. }));
    assert!(matches!(p.classify(msg("$aws/things/lamp/shadow/update", "{}")), Inbound::Message(_)));
    assert!(p.state().is_some() && p.jobs().is_some() && p.subscriptions().is_empty());
}

#[test]
fn debug_never_shows_a_secret() {
    let key_pem = match &pem_creds().key {
        connector_core::PemSource::Pem(s) => s.expose().to_owned(),
        connector_core::PemSource::File(_) => unreachable!(),
    };
    let providers = [
        provider(AwsAuth::Certificate(pem_creds().passphrase("pass-phrase-1"))),
        provider(AwsAuth::SigV4(SigV4Auth::explicit(creds()))),
        provider(AwsAuth::CustomAuthorizer(
            CustomAuth::new(Some("a"))
                .token("token", "tok-secret-1")
                .signature("sig-secret-1")
                .password("pw-secret-1"),
        )),
    ];
    let mut shown = String::new();
    for p in &providers {
        shown.push_str(&format!("{p:?} {:?} {:?}", p.options(), p.connect_params(now()).unwrap()));
    }
    shown.push_str(&format!("{:?}", CredentialsSource::Explicit(creds())));
    for secret in [
        "wJalrXUtnFEMI",
        "FwoGZXIvYXdz",
        "X-Amz-Signature=",
        "PRIVATE KEY",
        &key_pem[40..80],
        "pass-phrase-1",
        "tok-secret-1",
        "sig-secret-1",
        "pw-secret-1",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"), "the key id is not secret");
}
