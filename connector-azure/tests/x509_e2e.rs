//! X.509 hub authentication against the emulator over TLS, through the real actor tree:
//! certificates made with OpenSSL in the test (self-signed by thumbprint, signed by a
//! registered CA with CN = device id), PKCS#12 and encrypted PEM keys with passphrases,
//! refusals as typed not-authorized failures, a client trust root that did not sign the
//! server's certificate, and the cipher list option.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_actors::Connector;
use connector_azure::{AzureOptions, AzureProvider, ConnectionString, X509Error, X509Identity};
use connector_core::{
    BackoffPolicy, ConnectFailure, ConnectionEvent, Jitter, PemSource, Publish, Secret, TlsRefusal,
};
use connector_emulator::control::api::{Authentication, IdentitySpec, X509Thumbprint};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use hyper::Method;
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_millis(50),
        max: Duration::from_millis(300),
        stable_after: Duration::from_secs(5),
        jitter: Jitter::Full,
    }
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A self-signed certificate for `cn`, valid from an hour ago for a day.
fn self_signed(cn: &str) -> (X509, PKey<Private>) {
    let key = key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
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
    (b.build(), key)
}

fn sha256_thumbprint(cert: &X509) -> String {
    cert.digest(MessageDigest::sha256()).unwrap().iter().map(|b| format!("{b:02X}")).collect()
}

fn identity(cert: &X509, key: &PKey<Private>) -> X509Identity {
    X509Identity::from_pem(
        &cert.to_pem().unwrap(),
        &key.private_key_to_pem_pkcs8().unwrap(),
        None,
        SystemTime::now(),
    )
    .unwrap()
}

/// Registers `device` as self-signed with `cert`'s thumbprint.
async fn enroll_thumbprint(emu: &EmulatorHandle, device: &str, cert: &X509) {
    let spec = IdentitySpec {
        authentication: Some(Authentication::SelfSigned {
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: Some(sha256_thumbprint(cert)),
                secondary_thumbprint: None,
            },
        }),
        status: None,
    };
    emu.control().put_identity(device, None, &spec).await.unwrap();
}

fn options(emu: &EmulatorHandle, id: X509Identity) -> AzureOptions {
    AzureOptions::default()
        .port(emu.mqtt_port())
        .trust_roots(PemSource::File(emu.ca_path().to_owned()))
        .x509(id)
}

fn provider(emu: &EmulatorHandle, device: &str, opts: AzureOptions) -> AzureProvider {
    let cs: ConnectionString =
        format!("HostName={};DeviceId={device};x509=true", emu.hub_host_name()).parse().unwrap();
    AzureProvider::new(cs, opts).unwrap()
}

/// Connects, sends one message and checks the hub captured it under `device`, and that the
/// hub authenticated the connection with `auth` (`x509`: thumbprint, `x509ca`: CA).
async fn connects_and_sends(emu: &EmulatorHandle, device: &str, auth: &str, opts: AzureOptions) {
    let conn = Connector::builder(provider(emu, device, opts)).backoff(fast_backoff()).start();
    conn.wait_connected(WAIT).await.unwrap();
    conn.publisher().publish(Publish::telemetry(format!("hello from {device}"))).await.unwrap();
    let got = emu.control().telemetry(device, None).await.unwrap();
    let expected = format!("hello from {device}");
    assert_eq!(got.iter().filter_map(|m| m.payload.as_deref()).collect::<Vec<_>>(), [expected.as_str()]);
    let conns = emu.control().connections().await.unwrap();
    let hub: Vec<_> = conns
        .iter()
        .filter(|c| c.endpoint == "hub")
        .map(|c| (c.client_id.as_str(), c.auth.as_str()))
        .collect();
    assert_eq!(hub, [(device, auth)]);
    conn.stop().await;
}

/// Starts a connector and returns every lifecycle event up to its `n`-th failed attempt;
/// panics if it connects.
async fn failures(emu: &EmulatorHandle, device: &str, opts: AzureOptions, n: usize) -> Vec<ConnectionEvent> {
    let (tx, mut rx) = mpsc::channel(64);
    let conn = Connector::builder(provider(emu, device, opts)).backoff(fast_backoff()).events_to(tx).start();
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

/// Every event is an attempt or a failure whose reason satisfies `check`.
fn only_failures(events: &[ConnectionEvent], check: impl Fn(&ConnectFailure) -> bool) {
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

fn not_authorized(f: &ConnectFailure) -> bool {
    matches!(f, ConnectFailure::Refused { code: 5, .. }) && f.label() == "not_authorized"
}

#[actix_rt::test]
async fn self_signed_certificate_is_accepted_by_thumbprint() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let (cert, key) = self_signed("self-dev");
    enroll_thumbprint(&emu, "self-dev", &cert).await;
    connects_and_sends(&emu, "self-dev", "x509", options(&emu, identity(&cert, &key))).await;
    emu.shutdown();
}

#[actix_rt::test]
async fn ca_signed_certificate_with_the_device_id_as_cn_is_accepted() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let (ca, ca_key) = test_support::generate_ca("device CA");
    let (leaf, leaf_key) = test_support::issue_cert(&ca, &ca_key, "ca-dev", &[], &[], false);
    let _: serde_json::Value = emu
        .control()
        .request(
            Method::PUT,
            "/certificates/device-ca",
            Some(&json!({"pem": String::from_utf8(ca.to_pem().unwrap()).unwrap()})),
        )
        .await
        .unwrap();
    let spec = IdentitySpec { authentication: Some(Authentication::CertificateAuthority), status: None };
    emu.control().put_identity("ca-dev", None, &spec).await.unwrap();
    connects_and_sends(&emu, "ca-dev", "x509ca", options(&emu, identity(&leaf, &leaf_key))).await;
    // Signed by the same CA but with another CN: not this device.
    let (other, other_key) = test_support::issue_cert(&ca, &ca_key, "someone-else", &[], &[], false);
    let events = failures(&emu, "ca-dev", options(&emu, identity(&other, &other_key)), 2).await;
    only_failures(&events, not_authorized);
    emu.shutdown();
}

#[actix_rt::test]
async fn pkcs12_archive_with_a_passphrase() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let (cert, key) = self_signed("p12-dev");
    enroll_thumbprint(&emu, "p12-dev", &cert).await;
    let der = Pkcs12::builder()
        .name("p12-dev")
        .pkey(&key)
        .cert(&cert)
        .build2("p12-pass")
        .unwrap()
        .to_der()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.pfx");
    std::fs::write(&path, der).unwrap();
    assert!(matches!(
        X509Identity::from_pkcs12_file(&path, &Secret::new("wrong"), SystemTime::now()),
        Err(X509Error::WrongPassphrase)
    ));
    let id = X509Identity::from_pkcs12_file(&path, &Secret::new("p12-pass"), SystemTime::now()).unwrap();
    assert_eq!(id.common_name(), Some("p12-dev"));
    connects_and_sends(&emu, "p12-dev", "x509", options(&emu, id)).await;
    emu.shutdown();
}

#[actix_rt::test]
async fn encrypted_pem_key_with_a_passphrase() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let (cert, key) = self_signed("enc-dev");
    enroll_thumbprint(&emu, "enc-dev", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("enc-dev.pem"), dir.path().join("enc-dev.key"));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    let encrypted = key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"pem-pass").unwrap();
    assert!(String::from_utf8_lossy(&encrypted).contains("ENCRYPTED PRIVATE KEY"));
    std::fs::write(&key_path, encrypted).unwrap();
    assert!(matches!(
        X509Identity::from_pem_files(&cert_path, &key_path, None, SystemTime::now()),
        Err(X509Error::PassphraseRequired)
    ));
    let id = X509Identity::from_pem_files(
        &cert_path,
        &key_path,
        Some(&Secret::new("pem-pass")),
        SystemTime::now(),
    )
    .unwrap();
    connects_and_sends(&emu, "enc-dev", "x509", options(&emu, id)).await;
    emu.shutdown();
}

#[actix_rt::test]
async fn wrong_thumbprint_and_untrusted_ca_are_refused_as_not_authorized() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    // Enrolled with one certificate, connecting with another.
    let (enrolled, _) = self_signed("thumb-dev");
    enroll_thumbprint(&emu, "thumb-dev", &enrolled).await;
    let (other, other_key) = self_signed("thumb-dev");
    let events = failures(&emu, "thumb-dev", options(&emu, identity(&other, &other_key)), 2).await;
    only_failures(&events, not_authorized);
    // CN = device id, but signed by a CA the hub does not know.
    let (ca, ca_key) = test_support::generate_ca("unregistered CA");
    let (leaf, leaf_key) = test_support::issue_cert(&ca, &ca_key, "untrusted-dev", &[], &[], false);
    let spec = IdentitySpec { authentication: Some(Authentication::CertificateAuthority), status: None };
    emu.control().put_identity("untrusted-dev", None, &spec).await.unwrap();
    let events = failures(&emu, "untrusted-dev", options(&emu, identity(&leaf, &leaf_key)), 2).await;
    only_failures(&events, not_authorized);
    assert!(emu.control().connections().await.unwrap().is_empty());
    assert!(emu.control().telemetry("thumb-dev", None).await.unwrap().is_empty());
    emu.shutdown();
}

#[actix_rt::test]
async fn a_trust_root_that_did_not_sign_the_server_certificate_fails_tls() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let (cert, key) = self_signed("tls-dev");
    enroll_thumbprint(&emu, "tls-dev", &cert).await;
    let (other_ca, _) = test_support::generate_ca("not the emulator's CA");
    let opts = options(&emu, identity(&cert, &key))
        .trust_roots(PemSource::Pem(Secret::new(String::from_utf8(other_ca.to_pem().unwrap()).unwrap())));
    let events = failures(&emu, "tls-dev", opts, 2).await;
    // The transport names the reason (a diagnostic handshake after paho's generic error).
    only_failures(&events, |f| matches!(f, ConnectFailure::Tls { reason: TlsRefusal::UnknownCa, .. }));
    assert!(emu.control().connections().await.unwrap().is_empty());
    emu.shutdown();
}

#[actix_rt::test]
async fn the_cipher_list_reaches_openssl() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let (cert, key) = self_signed("cipher-dev");
    enroll_thumbprint(&emu, "cipher-dev", &cert).await;
    // A list OpenSSL knows (ECDSA suites for the emulator's EC server key): connects.
    let mut opts = options(&emu, identity(&cert, &key));
    opts.ciphers = Some("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384".into());
    connects_and_sends(&emu, "cipher-dev", "x509", opts).await;
    // A list matching no cipher: the TLS context cannot be set up, nothing connects.
    let mut opts = options(&emu, identity(&cert, &key));
    opts.ciphers = Some("NO-SUCH-CIPHER".into());
    let events = failures(&emu, "cipher-dev", opts, 2).await;
    // paho reports it as a transport failure; the native transport as the TLS setup failing.
    only_failures(&events, |f| match f {
        ConnectFailure::Transport { .. } => true,
        ConnectFailure::Credentials { message } => message.contains("cipher"),
        _ => false,
    });
    emu.shutdown();
}
