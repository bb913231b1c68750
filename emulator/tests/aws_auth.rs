//! AWS IoT endpoint authentication over real TLS (paho as the device): mutual TLS
//! against the certificate registry, ALPN on the 443-style port, SigV4 presigned
//! WebSocket upgrades (computed here), and custom authorizers.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use connector_emulator::control::aws_api::{Authorizer, CertificateStatus, CreateCertificate};
use connector_emulator::ALPN_MQTT_CA;

#[tokio::test]
async fn mtls_accepts_registered_active_certificates_only() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (id, cert, key) = aws_thing_with_cert(&env, "lamp", dir.path()).await;
    assert_eq!(id.len(), 64);
    let dev = env.aws_cert_connect("lamp", &cert, &key).await.unwrap();
    let conns = env.ctl.aws_connections().await.unwrap();
    assert_eq!(
        (conns[0].client_id.as_str(), conns[0].auth.as_str(), conns[0].principal.as_str()),
        ("lamp", "x509", id.as_str())
    );
    // Deactivating closes the connection and refuses the next CONNECT.
    env.ctl.aws_set_certificate_status(&id, CertificateStatus::Inactive).await.unwrap();
    dev.lost("certificate deactivated").await;
    let err = env.aws_cert_connect("lamp", &cert, &key).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(5));
    // A certificate from the same CA that was never registered.
    let issued: connector_emulator::control::api::IssuedCertificate = env
        .ctl
        .request(
            hyper::Method::POST,
            "/certificates/issue",
            Some(&serde_json::json!({"commonName": "ghost"})),
        )
        .await
        .unwrap();
    let gc = write_pem(dir.path(), "ghost.pem", &issued.certificate_pem);
    let gk = write_pem(dir.path(), "ghost.key", &issued.private_key_pem);
    let err = env.aws_cert_connect("ghost", &gc, &gk).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(5));
    // Registered INACTIVE from the start, then activated.
    let reg = env
        .ctl
        .aws_create_certificate(&CreateCertificate {
            certificate_pem: Some(issued.certificate_pem.clone()),
            status: CertificateStatus::Inactive,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(env.aws_cert_connect("ghost", &gc, &gk).await.is_err());
    env.ctl.aws_set_certificate_status(&reg.certificate_id, CertificateStatus::Active).await.unwrap();
    env.aws_cert_connect("ghost", &gc, &gk).await.unwrap().disconnect().await;
    // No certificate at all.
    let c = AwsConnect { uri: env.aws_mqtt_uri(), client_id: "nocert", user: "", cert: None, alpn: None };
    assert_eq!(connack_code(&aws_connect(env.emu.ca_path(), c).await.err().unwrap()), Some(5));
}

#[tokio::test]
async fn alpn_routes_certificate_mqtt_on_the_443_style_port() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = aws_thing_with_cert(&env, "alpn-1", dir.path()).await;
    let uri = format!("ssl://localhost:{}", env.emu.aws_port().unwrap());
    let c = AwsConnect {
        uri: uri.clone(),
        client_id: "alpn-1",
        user: "",
        cert: Some((&cert, &key)),
        alpn: Some(ALPN_MQTT_CA),
    };
    let dev = aws_connect(env.emu.ca_path(), c).await.unwrap();
    assert_eq!(env.ctl.aws_connections().await.unwrap()[0].auth, "x509");
    dev.disconnect().await;
    // Without ALPN the port speaks HTTP (WebSocket upgrade): MQTT does not get through.
    let c = AwsConnect { uri, client_id: "alpn-1", user: "", cert: Some((&cert, &key)), alpn: None };
    assert!(aws_connect(env.emu.ca_path(), c).await.is_err());
}

#[tokio::test]
async fn sigv4_websocket_accepts_valid_and_refuses_expired_or_badly_signed_urls() {
    let env = Env::start();
    let key = env.ctl.aws_create_access_key().await.unwrap();
    let port = env.emu.aws_port().unwrap();
    let host = format!("localhost:{port}");
    let region = env.emu.aws_region().to_string();
    let connect = |path: String| {
        let env = &env;
        async move {
            let c = AwsConnect {
                uri: format!("wss://localhost:{port}{path}"),
                client_id: "ws-sig",
                user: "",
                cert: None,
                alpn: None,
            };
            aws_connect(env.emu.ca_path(), c).await
        }
    };
    let good = presign(&host, &region, &key.access_key_id, &key.secret_access_key, now(), Some(300));
    let dev = connect(good).await.unwrap();
    let conns = env.ctl.aws_connections().await.unwrap();
    assert_eq!((conns[0].auth.as_str(), conns[0].principal.as_str()), ("sigv4", key.access_key_id.as_str()));
    // Telemetry crosses the socket.
    dev.publish("sensors/ws-sig/temp", "21.5", 1).await.unwrap();
    let t = env.ctl.aws_telemetry(Some("ws-sig"), None).await.unwrap();
    assert_eq!((t[0].topic.as_str(), t[0].payload.as_deref()), ("sensors/ws-sig/temp", Some("21.5")));
    dev.disconnect().await;
    // Expired: signed an hour ago, valid for 60 s.
    let expired = presign(&host, &region, &key.access_key_id, &key.secret_access_key, now() - 3600, Some(60));
    assert!(connect(expired).await.is_err());
    // Wrong secret.
    let bad = presign(&host, &region, &key.access_key_id, "not-the-secret", now(), Some(300));
    assert!(connect(bad).await.is_err());
    // Signed for another host than the one sent.
    let other = presign("elsewhere:443", &region, &key.access_key_id, &key.secret_access_key, now(), None);
    assert!(connect(other).await.is_err());
    assert!(env.ctl.aws_connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn custom_authorizer_allows_listed_tokens_and_denies_others() {
    let env = Env::start();
    let auth = Authorizer {
        token_key_name: "token".into(),
        token_signing_public_key: None,
        allowed_tokens: vec!["good-token".into()],
        default: false,
    };
    env.ctl.aws_put_authorizer("my-auth", &auth).await.unwrap();
    let uri = format!("ssl://localhost:{}", env.emu.aws_port().unwrap());
    let user = |t: &str| format!("device?x-amz-customauthorizer-name=my-auth&token={t}");
    let good = user("good-token");
    let c = AwsConnect { uri: uri.clone(), client_id: "ca-1", user: &good, cert: None, alpn: Some("mqtt") };
    let dev = aws_connect(env.emu.ca_path(), c).await.unwrap();
    assert_eq!(env.ctl.aws_connections().await.unwrap()[0].auth, "custom-auth");
    dev.disconnect().await;
    for bad in [
        user("bad-token"),
        "device?x-amz-customauthorizer-name=nobody&token=good-token".to_string(),
        "device".to_string(),
    ] {
        let c =
            AwsConnect { uri: uri.clone(), client_id: "ca-1", user: &bad, cert: None, alpn: Some("mqtt") };
        let err = aws_connect(env.emu.ca_path(), c).await.err().unwrap();
        assert_eq!(connack_code(&err), Some(5), "{bad}");
    }
}
