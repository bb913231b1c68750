//! TLS against a mosquitto TLS listener with a CA made by openssl: verification of the
//! chain and of the host name is always on; client certificates authenticate; a refusal
//! names its reason (unknown CA, host name, expiry, a required client certificate).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use connector_actors::Connector;
use connector_core::{
    ConnectFailure, ConnectionEvent, MqttOptions, MqttProvider, PemSource, TlsOptions, TlsRefusal,
};
use test_support::{Mosquitto, MosquittoConfig, TestPki, TlsListener};

fn tls_broker(pki: &TestPki, cert: &Path, key: &Path, require_certificate: bool) -> Option<Mosquitto> {
    Mosquitto::start_with(MosquittoConfig {
        tls: Some(TlsListener {
            ca_file: pki.ca_cert.clone(),
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
            require_certificate,
        }),
        ..Default::default()
    })
}

fn tls_provider(host: &str, port: u16, name: &str, tls: TlsOptions) -> MqttProvider {
    let o = MqttOptions::new(format!("mqtts://{host}:{port}"), test_support::unique_client_id(name)).tls(tls);
    MqttProvider::new(o).unwrap()
}

fn trusting(ca: &Path) -> TlsOptions {
    TlsOptions { ca: Some(PemSource::File(ca.to_owned())), ..Default::default() }
}

/// Starts a connector and returns the first connect outcome.
async fn first_outcome(p: MqttProvider) -> ConnectionEvent {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let conn = Connector::builder(p).backoff(fast_backoff()).events_to(tx).start();
    let mut events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let e = event_matching(&mut events, WAIT, "a connect outcome", |e| {
        matches!(e, ConnectionEvent::Connected { .. } | ConnectionEvent::ConnectionFailed { .. })
    })
    .await;
    conn.stop().await;
    e
}

#[actix_rt::test]
async fn tls_with_the_right_ca_connects() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.server_cert, &pki.server_key, false) else { return };
    let e = first_outcome(tls_provider(
        "localhost",
        broker.tls_port().unwrap(),
        "tls-ok",
        trusting(&pki.ca_cert),
    ))
    .await;
    assert!(matches!(e, ConnectionEvent::Connected { .. }), "{e:?}");
}

#[actix_rt::test]
async fn tls_with_a_wrong_ca_is_rejected() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.server_cert, &pki.server_key, false) else { return };
    let e = first_outcome(tls_provider(
        "localhost",
        broker.tls_port().unwrap(),
        "tls-wrong-ca",
        trusting(&pki.other_ca_cert),
    ))
    .await;
    let detail = refused_for(&e, TlsRefusal::UnknownCa);
    assert!(detail.starts_with("certificate verify failed: "), "{detail}");
}

/// The detail of a TLS refusal for `want`, or a panic naming what happened instead.
fn refused_for(e: &ConnectionEvent, want: TlsRefusal) -> String {
    match e {
        ConnectionEvent::ConnectionFailed { reason: f @ ConnectFailure::Tls { reason, detail }, .. }
            if *reason == want =>
        {
            assert_eq!(f.label(), want.label());
            assert!(f.label().starts_with("tls_"), "{}", f.label());
            assert!(f.to_string().contains(&want.to_string()), "{f}");
            detail.clone()
        }
        other => panic!("expected a TLS refusal {want:?}, got {other:?}"),
    }
}

#[actix_rt::test]
async fn tls_with_a_host_name_mismatch_is_rejected() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.wrong_host_cert, &pki.wrong_host_key, false) else { return };
    let e = first_outcome(tls_provider(
        "localhost",
        broker.tls_port().unwrap(),
        "tls-wrong-host",
        trusting(&pki.ca_cert),
    ))
    .await;
    let detail = refused_for(&e, TlsRefusal::HostnameMismatch);
    assert!(detail.contains("hostname mismatch"), "{detail}");
}

#[actix_rt::test]
async fn tls_with_an_expired_server_certificate_is_rejected() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.expired_cert, &pki.expired_key, false) else { return };
    let e = first_outcome(tls_provider(
        "localhost",
        broker.tls_port().unwrap(),
        "tls-expired",
        trusting(&pki.ca_cert),
    ))
    .await;
    let detail = refused_for(&e, TlsRefusal::CertificateExpired);
    assert!(detail.contains("certificate has expired"), "{detail}");
}

#[actix_rt::test]
async fn client_certificate_auth_is_accepted_and_required() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.server_cert, &pki.server_key, true) else { return };
    let port = broker.tls_port().unwrap();
    let with_cert = TlsOptions {
        client_cert: Some(PemSource::File(pki.client_cert.clone())),
        client_key: Some(PemSource::Pem(std::fs::read_to_string(&pki.client_key).unwrap().into())),
        ..trusting(&pki.ca_cert)
    };
    let e = first_outcome(tls_provider("localhost", port, "tls-client-cert", with_cert)).await;
    assert!(matches!(e, ConnectionEvent::Connected { .. }), "{e:?}");

    let e =
        first_outcome(tls_provider("localhost", port, "tls-no-client-cert", trusting(&pki.ca_cert))).await;
    let detail = refused_for(&e, TlsRefusal::ClientCertificateRequired);
    assert!(detail.contains("certificate required"), "{detail}");
}
