//! The native transport's TLS hook ([`NativeTransport::with_tls_hook`]) against real TLS
//! servers with certificates made by openssl: a hook that adds a CA from memory makes a
//! broker trusted that is refused without it, and host names are still checked; a hook
//! that requires TLS 1.3 is refused by a TLS 1.2-only server (an openssl acceptor relaying
//! to mosquitto) with a typed protocol-version refusal, where without the hook the same
//! server connects over TLS 1.2; a hook that fails is a typed setup failure. (Paho has no
//! such hook: it builds its context inside the C library.)
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use common::*;
use connector_actors::transport::NativeTransport;
use connector_actors::Connector;
use connector_core::{
    ConnectFailure, ConnectionEvent, MqttOptions, MqttProvider, PemSource, TlsOptions, TlsRefusal,
};
use openssl::ssl::{Ssl, SslAcceptor, SslConnectorBuilder, SslFiletype, SslMethod, SslVersion};
use openssl::x509::X509;
use test_support::{Mosquitto, MosquittoConfig, TestPki, TlsListener};
use tokio_openssl::SslStream;

fn tls_broker(pki: &TestPki, cert: &Path, key: &Path) -> Option<Mosquitto> {
    Mosquitto::start_with(MosquittoConfig {
        tls: Some(TlsListener {
            ca_file: pki.ca_cert.clone(),
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
            require_certificate: false,
        }),
        ..Default::default()
    })
}

/// `mqtts://localhost:<port>` trusting only `ca`.
fn tls_provider(port: u16, name: &str, ca: &Path) -> MqttProvider {
    let tls = TlsOptions { ca: Some(PemSource::File(ca.to_owned())), ..Default::default() };
    let o =
        MqttOptions::new(format!("mqtts://localhost:{port}"), test_support::unique_client_id(name)).tls(tls);
    MqttProvider::new(o).unwrap()
}

/// The first connect outcome of `p` over `transport`.
async fn first_outcome(p: MqttProvider, transport: NativeTransport) -> ConnectionEvent {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let conn =
        Connector::builder(p).backoff(fast_backoff()).transport(Arc::new(transport)).events_to(tx).start();
    let mut events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let e = event_matching(&mut events, WAIT, "a connect outcome", |e| {
        matches!(e, ConnectionEvent::Connected { .. } | ConnectionEvent::ConnectionFailed { .. })
    })
    .await;
    conn.stop().await;
    e
}

fn tls_refusal(e: &ConnectionEvent) -> Option<TlsRefusal> {
    match e {
        ConnectionEvent::ConnectionFailed { reason: ConnectFailure::Tls { reason, .. }, .. } => Some(*reason),
        _ => None,
    }
}

/// A transport whose hook adds the PEM certificate `ca` (held in memory) to the trust store.
fn trusting_in_memory(ca: &Path) -> NativeTransport {
    let pem = std::fs::read(ca).unwrap();
    NativeTransport::new(64)
        .with_tls_hook(move |b: &mut SslConnectorBuilder| b.cert_store_mut().add_cert(X509::from_pem(&pem)?))
}

#[actix_rt::test]
async fn a_hook_adding_a_ca_from_memory_makes_the_broker_trusted() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.server_cert, &pki.server_key) else { return };
    let port = broker.tls_port().unwrap();
    // The configured trust store holds another CA only: refused.
    let e =
        first_outcome(tls_provider(port, "hook-no-ca", &pki.other_ca_cert), NativeTransport::new(64)).await;
    assert_eq!(tls_refusal(&e), Some(TlsRefusal::UnknownCa), "without the hook: {e:?}");
    // The hook adds the broker's CA from memory: connected.
    let e =
        first_outcome(tls_provider(port, "hook-ca", &pki.other_ca_cert), trusting_in_memory(&pki.ca_cert))
            .await;
    assert!(matches!(e, ConnectionEvent::Connected { .. }), "with the hook: {e:?}");
}

#[actix_rt::test]
async fn a_hook_extending_the_trust_store_leaves_host_names_checked() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.wrong_host_cert, &pki.wrong_host_key) else { return };
    let port = broker.tls_port().unwrap();
    let e =
        first_outcome(tls_provider(port, "hook-host", &pki.other_ca_cert), trusting_in_memory(&pki.ca_cert))
            .await;
    assert_eq!(tls_refusal(&e), Some(TlsRefusal::HostnameMismatch), "{e:?}");
}

/// An openssl TLS server that speaks TLS 1.2 at most (the test PKI's `localhost`
/// certificate) and relays each connection to `upstream` on 127.0.0.1; records the version
/// each handshake negotiated.
async fn tls12_relay(pki: &TestPki, upstream: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_certificate_chain_file(&pki.server_cert).unwrap();
    b.set_private_key_file(&pki.server_key, SslFiletype::PEM).unwrap();
    b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    let acceptor = Arc::new(b.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    actix_rt::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            actix_rt::spawn(async move {
                let mut tls = SslStream::new(Ssl::new(acceptor.context()).unwrap(), tcp).unwrap();
                if Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                seen.lock().unwrap().push(tls.ssl().version_str().to_owned());
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (port, versions)
}

#[actix_rt::test]
async fn a_hook_requiring_tls13_is_refused_by_a_tls12_only_server() {
    let pki = TestPki::generate();
    let Some(broker) = Mosquitto::start() else { return };
    let (port, versions) = tls12_relay(&pki, broker.port()).await;
    // Without the hook: TLS 1.2 is negotiated and the broker behind it answers.
    let e = first_outcome(tls_provider(port, "tls12-ok", &pki.ca_cert), NativeTransport::new(64)).await;
    assert!(matches!(e, ConnectionEvent::Connected { .. }), "without the hook: {e:?}");
    assert_eq!(versions.lock().unwrap().as_slice(), ["TLSv1.2"]);
    // With it: no version in common.
    let tls13 = NativeTransport::new(64)
        .with_tls_hook(|b: &mut SslConnectorBuilder| b.set_min_proto_version(Some(SslVersion::TLS1_3)));
    let e = first_outcome(tls_provider(port, "tls13-refused", &pki.ca_cert), tls13).await;
    assert_eq!(tls_refusal(&e), Some(TlsRefusal::ProtocolVersion), "with the hook: {e:?}");
    assert_eq!(versions.lock().unwrap().len(), 1, "no second handshake completed");
}

#[actix_rt::test]
async fn a_failing_hook_is_a_typed_setup_failure() {
    let pki = TestPki::generate();
    let Some(broker) = tls_broker(&pki, &pki.server_cert, &pki.server_key) else { return };
    let bad = NativeTransport::new(64)
        .with_tls_hook(|b: &mut SslConnectorBuilder| b.set_cipher_list("NO-SUCH-CIPHER"));
    let e = first_outcome(tls_provider(broker.tls_port().unwrap(), "hook-fails", &pki.ca_cert), bad).await;
    match e {
        ConnectionEvent::ConnectionFailed { reason: ConnectFailure::Credentials { message }, .. } => {
            assert!(message.starts_with("TLS hook: "), "{message}")
        }
        other => panic!("a typed setup failure, got {other:?}"),
    }
}
