//! Fleet provisioning by claim against the emulator's AWS IoT endpoint over real TLS,
//! through the real actor tree: CreateKeysAndCertificate and CreateCertificateFromCsr
//! each followed by RegisterThing, the new identity connecting and publishing telemetry
//! the emulator captured, typed rejections (missing template parameter, unknown
//! template, throttling), a refused claim, a timeout, the stored identity reused without
//! a second registration, and the identity files readable by their owner only.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connector_actors::Connector;
use connector_aws::fleet::client::{
    provision, provision_or_load, provision_then_connect_with, FleetRequest, Origin, ProvisioningError,
    ProvisioningOptions,
};
use connector_aws::fleet::{FleetError, IdentityStore, KeyAlgorithm, StoreError, TemplateName};
use connector_aws::{AwsAuth, AwsOptions, AwsProvider, X509Credentials};
use connector_core::{BackoffPolicy, Inbound, Jitter, MqttOptions, MqttProvider, PemSource, Publish, QoS};
use connector_emulator::control::aws_api::{
    AwsFaults, CertificateInfo, CertificateStatus, CreateCertificate, ProvisioningTemplate,
};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use futures::stream::{select_all, StreamExt};
use serde_json::json;
use test_support::Mosquitto;

const WAIT: Duration = Duration::from_secs(10);
const TEMPLATE: &str = "SensorFleet";

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_millis(50),
        max: Duration::from_millis(500),
        stable_after: Duration::from_secs(5),
        jitter: Jitter::Full,
    }
}

fn fast() -> ProvisioningOptions {
    ProvisioningOptions::default().timeout(Duration::from_secs(20)).backoff(fast_backoff())
}

/// `sensor-{SerialNumber}`, located at `Location` (default `lab`), certificate activated.
fn template_body() -> serde_json::Value {
    json!({
        "Parameters": {
            "SerialNumber": {"Type": "String"},
            "Location": {"Type": "String", "Default": "lab"}
        },
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "Properties": {
                    "ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]},
                    "AttributePayload": {"location": {"Ref": "Location"}}
                }
            },
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}
            }
        },
        "DeviceConfiguration": {"Interval": "30", "Location": {"Ref": "Location"}}
    })
}

struct Env {
    emu: EmulatorHandle,
    claim: CertificateInfo,
    dir: tempfile::TempDir,
}

impl Env {
    /// An emulator with the template and a registered ACTIVE claim certificate.
    async fn start() -> Env {
        let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
        let ctl = emu.control();
        ctl.aws_put_provisioning_template(TEMPLATE, &ProvisioningTemplate::new(template_body()))
            .await
            .unwrap();
        let claim = ctl
            .aws_create_certificate(&CreateCertificate {
                common_name: Some("fleet-claim".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        Env { emu, claim, dir: tempfile::tempdir().unwrap() }
    }

    /// MQTT/TLS on the 8883-style port with the claim certificate, trusting the emulator CA.
    fn claim_options(&self, client_id: &str) -> AwsOptions {
        self.claim_with(client_id, AwsAuth::Certificate(self.claim_cert()), self.emu.aws_mqtt_port().unwrap())
    }

    /// The claim on the 443-style port with ALPN `x-amzn-mqtt-ca`.
    fn claim_options_alpn(&self, client_id: &str) -> AwsOptions {
        self.claim_with(client_id, AwsAuth::CertificateAlpn(self.claim_cert()), self.emu.aws_port().unwrap())
    }

    fn claim_cert(&self) -> X509Credentials {
        X509Credentials::from_pem(
            self.claim.certificate_pem.clone(),
            self.claim.private_key_pem.clone().unwrap(),
        )
    }

    fn claim_with(&self, client_id: &str, auth: AwsAuth, port: u16) -> AwsOptions {
        AwsOptions::new(self.emu.aws_endpoint(), client_id, auth)
            .port(port)
            .trust_roots(PemSource::File(self.emu.ca_path().to_owned()))
    }

    fn store(&self, name: &str) -> IdentityStore {
        IdentityStore::new(self.dir.path().join(name))
    }

    fn request(&self, serial: &str) -> FleetRequest {
        FleetRequest::new(TemplateName::new(TEMPLATE).unwrap()).parameter("SerialNumber", serial)
    }

    /// The payloads the emulator captured from client id `thing`.
    async fn telemetry_of(&self, thing: &str) -> Vec<String> {
        self.emu
            .control()
            .aws_telemetry(Some(thing), None)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| m.payload)
            .collect()
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn assert_owner_only(store: &IdentityStore) {
    for f in ["certificate.pem", "private.key", "identity.json"] {
        let p = store.dir().join(f);
        assert!(p.is_file(), "{f} written");
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600, "{f}");
    }
}

#[actix_rt::test]
async fn create_keys_register_thing_then_publish_as_the_new_thing() {
    let env = Env::start().await;
    let store = env.store("keys");
    let done = provision_then_connect_with(
        &env.claim_options("claim-1"),
        &env.request("0001").parameter("Location", "roof"),
        &store,
        &fast(),
        |b| b.backoff(fast_backoff()),
    )
    .await
    .unwrap();
    assert_eq!(done.origin, Origin::Provisioned);
    let id = &done.identity;
    assert_eq!(id.thing_name, "sensor-0001");
    assert_eq!(id.certificate_id.len(), 64);
    assert_eq!(
        id.device_configuration,
        BTreeMap::from([
            ("Interval".to_owned(), "30".to_owned()),
            ("Location".to_owned(), "roof".to_owned())
        ])
    );
    assert!(!format!("{done:?}").contains("PRIVATE KEY"));
    done.connector.wait_connected(WAIT).await.unwrap();
    done.connector
        .publisher()
        .publish(Publish::telemetry(r#"{"t":21.5}"#).qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(env.telemetry_of("sensor-0001").await, [r#"{"t":21.5}"#]);
    // The emulator knows the connection as the thing, authenticated by the new certificate.
    let ctl = env.emu.control();
    let conns = ctl.aws_connections().await.unwrap();
    let device: Vec<_> = conns.iter().filter(|c| c.client_id == "sensor-0001").collect();
    assert_eq!(device.len(), 1);
    assert_eq!((device[0].auth.as_str(), device[0].principal.as_str()), ("x509", id.certificate_id.as_str()));
    let things = ctl.aws_things().await.unwrap();
    let thing = things.iter().find(|t| t.thing_name == "sensor-0001").unwrap();
    assert_eq!(thing.principals, [id.certificate_id.as_str()]);
    assert_eq!(thing.attributes.get("location").map(String::as_str), Some("roof"));
    // The identity was saved, owner-only, and loads back equal.
    assert_owner_only(&store);
    assert_eq!(store.load().unwrap().as_ref(), Some(id));
    done.connector.stop().await;
    env.emu.shutdown();
}

/// Over 443 with ALPN for both the claim and the device connection.
#[actix_rt::test]
async fn certificate_from_csr_keeps_the_key_on_the_device() {
    let env = Env::start().await;
    let store = env.store("csr");
    let request = env.request("0002").from_csr(KeyAlgorithm::EcP256, "sensor-0002");
    let claim = env.claim_options_alpn("claim-2");
    let done = provision_then_connect_with(&claim, &request, &store, &fast(), |b| b.backoff(fast_backoff()))
        .await
        .unwrap();
    let id = &done.identity;
    assert_eq!(id.thing_name, "sensor-0002");
    // Our PKCS#8 EC key (the emulator's CreateKeysAndCertificate keys are PKCS#1 RSA).
    assert!(id.private_key.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
    let cert = openssl::x509::X509::from_pem(id.certificate_pem.as_bytes()).unwrap();
    let key = openssl::pkey::PKey::private_key_from_pem(id.private_key.expose().as_bytes()).unwrap();
    assert!(cert.public_key().unwrap().public_eq(&key));
    assert_eq!(key.id(), openssl::pkey::Id::EC);
    let cn = cert.subject_name().entries_by_nid(openssl::nid::Nid::COMMONNAME).next().unwrap();
    assert_eq!(cn.data().to_string().unwrap(), "sensor-0002");
    done.connector.wait_connected(WAIT).await.unwrap();
    done.connector.publisher().publish(Publish::telemetry("from csr").qos(QoS::AtLeastOnce)).await.unwrap();
    assert_eq!(env.telemetry_of("sensor-0002").await, ["from csr"]);
    assert_owner_only(&store);
    done.connector.stop().await;
    env.emu.shutdown();
}

#[actix_rt::test]
async fn rejections_are_typed_and_nothing_is_stored() {
    let env = Env::start().await;
    let store = env.store("rejected");
    let claim = env.claim_options("claim-3");
    // The template requires SerialNumber.
    let no_serial = FleetRequest::new(TemplateName::new(TEMPLATE).unwrap());
    match provision_then_connect_with(&claim, &no_serial, &store, &fast(), |b| b).await {
        Err(ProvisioningError::Rejected { api, status_code, error_code, error_message }) => {
            assert_eq!((api, status_code, error_code.as_str()), ("RegisterThing", 400, "InvalidPayload"));
            assert!(error_message.contains("SerialNumber"), "{error_message}");
        }
        other => panic!("expected a RegisterThing rejection, got {other:?}"),
    }
    // An unknown template.
    let unknown =
        FleetRequest::new(TemplateName::new("NoSuchTemplate").unwrap()).parameter("SerialNumber", "9");
    match provision(AwsProvider::new(claim.clone()).unwrap(), &unknown, &fast()).await {
        Err(ProvisioningError::Rejected { api, status_code, error_code, .. }) => {
            assert_eq!((api, status_code, error_code.as_str()), ("RegisterThing", 404, "ResourceNotFound"));
        }
        other => panic!("expected a RegisterThing rejection, got {other:?}"),
    }
    // A template reserved for another claim certificate.
    let mut reserved = ProvisioningTemplate::new(template_body());
    reserved.allowed_principals = vec!["ab".repeat(32)];
    env.emu.control().aws_put_provisioning_template("Reserved", &reserved).await.unwrap();
    let other = FleetRequest::new(TemplateName::new("Reserved").unwrap()).parameter("SerialNumber", "9");
    match provision(AwsProvider::new(claim.clone()).unwrap(), &other, &fast()).await {
        Err(ProvisioningError::Rejected { api, status_code, error_code, .. }) => {
            assert_eq!((api, status_code, error_code.as_str()), ("RegisterThing", 403, "AccessDenied"));
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    // Throttled certificate creation.
    let faults = AwsFaults { throttle_provisioning: true, count: Some(1), ..Default::default() };
    env.emu.control().aws_faults("claim-3", &faults).await.unwrap();
    match provision(AwsProvider::new(claim.clone()).unwrap(), &env.request("9"), &fast()).await {
        Err(ProvisioningError::Rejected { api, status_code, error_code, .. }) => {
            assert_eq!(
                (api, status_code, error_code.as_str()),
                ("CreateKeysAndCertificate", 429, "Throttling")
            );
        }
        other => panic!("expected a throttled CreateKeysAndCertificate, got {other:?}"),
    }
    assert!(store.load().unwrap().is_none(), "nothing stored after a failure");
    assert!(!store.dir().join("identity.json").exists());
    let things = env.emu.control().aws_things().await.unwrap();
    assert!(things.iter().all(|t| !t.thing_name.starts_with("sensor-")), "{things:?}");
    env.emu.shutdown();
}

#[actix_rt::test]
async fn the_stored_identity_is_reused_without_a_second_registration() {
    let env = Env::start().await;
    let store = env.store("reuse");
    let claim = env.claim_options("claim-4");
    let first = provision_then_connect_with(&claim, &env.request("0004"), &store, &fast(), |b| {
        b.backoff(fast_backoff())
    })
    .await
    .unwrap();
    assert_eq!(first.origin, Origin::Provisioned);
    first.connector.wait_connected(WAIT).await.unwrap();
    first.connector.stop().await;
    // Without a valid claim any provisioning attempt would now fail: deactivate it.
    let ctl = env.emu.control();
    ctl.aws_set_certificate_status(&env.claim.certificate_id, CertificateStatus::Inactive).await.unwrap();
    let second = provision_then_connect_with(&claim, &env.request("0004"), &store, &fast(), |b| {
        b.backoff(fast_backoff())
    })
    .await
    .unwrap();
    assert_eq!(second.origin, Origin::Stored);
    assert_eq!(second.identity, first.identity);
    second.connector.wait_connected(WAIT).await.unwrap();
    second.connector.publisher().publish(Publish::telemetry("again").qos(QoS::AtLeastOnce)).await.unwrap();
    assert_eq!(env.telemetry_of("sensor-0004").await, ["again"]);
    // One thing with one certificate: no second registration happened.
    let things = ctl.aws_things().await.unwrap();
    let sensors: Vec<_> = things.iter().filter(|t| t.thing_name.starts_with("sensor-")).collect();
    assert_eq!(sensors.len(), 1);
    assert_eq!(sensors[0].principals, [first.identity.certificate_id.as_str()]);
    // And with the claim refused, a real provisioning attempt is a typed error.
    let other_store = env.store("other");
    match provision_then_connect_with(&claim, &env.request("0005"), &other_store, &fast(), |b| b).await {
        Err(ProvisioningError::Unauthorized { .. }) => {}
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    second.connector.stop().await;
    env.emu.shutdown();
}

#[actix_rt::test]
async fn a_corrupt_store_is_an_error_not_a_new_registration() {
    let env = Env::start().await;
    let store = env.store("corrupt");
    std::fs::create_dir_all(store.dir()).unwrap();
    for (f, text) in [("identity.json", "{oops"), ("certificate.pem", "x"), ("private.key", "y")] {
        let p = store.dir().join(f);
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    match provision_then_connect_with(
        &env.claim_options("claim-5"),
        &env.request("0006"),
        &store,
        &fast(),
        |b| b,
    )
    .await
    {
        Err(ProvisioningError::Store(StoreError::Corrupt { path, .. })) => {
            assert!(path.ends_with("identity.json"), "{}", path.display())
        }
        other => panic!("expected a corrupt store, got {other:?}"),
    }
    assert!(env.emu.control().aws_things().await.unwrap().iter().all(|t| t.thing_name != "sensor-0006"));
    env.emu.shutdown();
}

#[actix_rt::test]
async fn an_unbounded_timeout_is_no_limit_not_a_panic() {
    let env = Env::start().await;
    let opts = fast().timeout(Duration::MAX);
    let claim = AwsProvider::new(env.claim_options("claim-max")).unwrap();
    let id = provision(claim, &env.request("0010"), &opts).await.unwrap();
    assert_eq!(id.thing_name, "sensor-0010");
    env.emu.shutdown();
}

#[actix_rt::test]
async fn an_unreachable_endpoint_times_out_with_the_last_failure() {
    let env = Env::start().await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let claim = env.claim_options("claim-6").port(port);
    let opts = fast().timeout(Duration::from_secs(2));
    match provision(AwsProvider::new(claim).unwrap(), &env.request("0007"), &opts).await {
        Err(ProvisioningError::Timeout { stage, last_failure, after }) => {
            assert_eq!(after, Duration::from_secs(2));
            assert!(stage.starts_with("connecting"), "{stage}");
            assert!(last_failure.is_some());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    env.emu.shutdown();
}

// ---- The client against a scripted service --------------------------------------------
//
// Answers the emulator never gives (malformed documents, a certificate for another key,
// silence, duplicates) come from a test client playing the service on a real mosquitto:
// it subscribes to the request topics and answers as scripted. The claim connection is a
// plain MQTT provider there (the client takes any provider for the claim).

type Script = Box<dyn Fn(&str, &[u8]) -> Vec<(String, Vec<u8>)>>;

/// Starts the scripted service on `broker`; each request gets the answers `script` returns.
async fn scripted_service(broker: &Mosquitto, script: Script) -> Connector {
    let provider = MqttProvider::new(MqttOptions::new(broker.url(), "fleet-service")).unwrap();
    let svc = Connector::builder(provider).backoff(fast_backoff()).start();
    svc.wait_connected(WAIT).await.unwrap();
    let mut streams = Vec::new();
    for filter in [
        "$aws/certificates/create/json",
        "$aws/certificates/create-from-csr/json",
        "$aws/provisioning-templates/+/provision/json",
    ] {
        streams.push(svc.subscriber().stream(filter, QoS::AtLeastOnce, 8).await.unwrap().1);
    }
    let publisher = svc.publisher();
    actix_rt::spawn(async move {
        let mut requests = select_all(streams);
        while let Some(Inbound::Message(m)) = requests.next().await {
            for (topic, body) in script(&m.topic, &m.payload) {
                publisher.publish(Publish::to_topic(topic, body).qos(QoS::AtLeastOnce)).await.unwrap();
            }
        }
    });
    svc
}

fn claim_on(broker: &Mosquitto) -> MqttProvider {
    MqttProvider::new(MqttOptions::new(broker.url(), "fleet-claim")).unwrap()
}

/// A certificate and its key (PKCS#8 PEM), signed by a throwaway CA.
fn issued(cn: &str) -> (String, String) {
    let (ca, ca_key) = test_support::pki::generate_ca("scripted-ca");
    let (cert, key) = test_support::pki::issue_cert(&ca, &ca_key, cn, &[], &[], false);
    (
        String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    )
}

fn keys_answer(cert: &str, key: &str) -> Vec<u8> {
    json!({
        "certificateId": "ab".repeat(32),
        "certificatePem": cert,
        "privateKey": key,
        "certificateOwnershipToken": "scripted-token"
    })
    .to_string()
    .into_bytes()
}

fn answer(topic: &str, kind: &str, body: impl Into<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    vec![(format!("{topic}/{kind}"), body.into())]
}

#[actix_rt::test]
async fn a_malformed_answer_is_a_typed_error() {
    let Some(broker) = Mosquitto::start() else { return };
    let svc = scripted_service(&broker, Box::new(|topic, _| answer(topic, "accepted", "{not json"))).await;
    match provision(claim_on(&broker), &FleetRequest::new(TemplateName::new("T").unwrap()), &fast()).await {
        Err(ProvisioningError::Malformed(FleetError::MalformedAnswer { api, .. })) => {
            assert_eq!(api, "CreateKeysAndCertificate")
        }
        other => panic!("expected a malformed answer, got {other:?}"),
    }
    svc.stop().await;
    // RegisterThing accepted without `thingName`.
    let (cert, key) = issued("t");
    let script: Script = Box::new(move |topic, _| {
        if topic.starts_with("$aws/certificates/") {
            answer(topic, "accepted", keys_answer(&cert, &key))
        } else {
            answer(topic, "accepted", r#"{"deviceConfiguration":{}}"#)
        }
    });
    let svc = scripted_service(&broker, script).await;
    match provision(claim_on(&broker), &FleetRequest::new(TemplateName::new("T").unwrap()), &fast()).await {
        Err(ProvisioningError::Malformed(FleetError::MissingField { api, field })) => {
            assert_eq!((api, field), ("RegisterThing", "thingName"))
        }
        other => panic!("expected a missing thingName, got {other:?}"),
    }
    svc.stop().await;
}

#[actix_rt::test]
async fn a_certificate_for_another_key_is_refused() {
    let Some(broker) = Mosquitto::start() else { return };
    let (cert, _) = issued("someone-else");
    let script: Script = Box::new(move |topic, _| {
        let body = json!({"certificateOwnershipToken": "t", "certificateId": "cd".repeat(32), "certificatePem": cert});
        answer(topic, "accepted", body.to_string())
    });
    let svc = scripted_service(&broker, script).await;
    let request = FleetRequest::new(TemplateName::new("T").unwrap()).from_csr(KeyAlgorithm::Rsa2048, "dev");
    match provision(claim_on(&broker), &request, &fast()).await {
        Err(ProvisioningError::Certificate(e)) => {
            assert!(e.to_string().contains("not for the device's key"), "{e}")
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    svc.stop().await;
}

#[actix_rt::test]
async fn no_answer_ends_in_a_timeout_naming_the_stage() {
    let Some(broker) = Mosquitto::start() else { return };
    let svc = scripted_service(&broker, Box::new(|_, _| Vec::new())).await;
    let opts = fast().timeout(Duration::from_secs(2));
    match provision(claim_on(&broker), &FleetRequest::new(TemplateName::new("T").unwrap()), &opts).await {
        Err(ProvisioningError::Timeout { stage, last_failure, .. }) => {
            assert_eq!(stage, "waiting for the CreateKeysAndCertificate answer");
            assert_eq!(last_failure, None);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    svc.stop().await;
}

/// A service answering every request twice, RegisterThing first with a duplicate of the
/// certificate answer: stale answers are skipped, the exchange completes.
#[actix_rt::test]
async fn duplicate_and_stale_answers_are_skipped() {
    let Some(broker) = Mosquitto::start() else { return };
    let (cert, key) = issued("dup");
    let script: Script = Box::new(move |topic, body| {
        if topic.starts_with("$aws/certificates/") {
            let a = keys_answer(&cert, &key);
            vec![(format!("{topic}/accepted"), a.clone()), (format!("{topic}/accepted"), a)]
        } else {
            let req: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(req["certificateOwnershipToken"], "scripted-token");
            assert_eq!(req["parameters"]["SerialNumber"], "42");
            answer(topic, "accepted", r#"{"thingName":"dup-thing","deviceConfiguration":{"k":"v"}}"#)
        }
    });
    let svc = scripted_service(&broker, script).await;
    let request = FleetRequest::new(TemplateName::new("T").unwrap()).parameter("SerialNumber", "42");
    let id = provision(claim_on(&broker), &request, &fast()).await.unwrap();
    assert_eq!(id.thing_name, "dup-thing");
    assert_eq!(id.device_configuration.get("k").map(String::as_str), Some("v"));
    svc.stop().await;
}

/// `provision_or_load` with any claim provider: the first call provisions and saves, the
/// second loads the identity and sends the service nothing.
#[actix_rt::test]
async fn provision_or_load_asks_the_service_once() {
    let Some(broker) = Mosquitto::start() else { return };
    let (cert, key) = issued("once");
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let script: Script = Box::new(move |topic, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        if topic.starts_with("$aws/certificates/") {
            answer(topic, "accepted", keys_answer(&cert, &key))
        } else {
            answer(topic, "accepted", r#"{"thingName":"once-thing"}"#)
        }
    });
    let svc = scripted_service(&broker, script).await;
    let dir = tempfile::tempdir().unwrap();
    let store = IdentityStore::new(dir.path().join("id"));
    let request = FleetRequest::new(TemplateName::new("T").unwrap());
    let (first, origin) = provision_or_load(claim_on(&broker), &request, &store, &fast()).await.unwrap();
    assert_eq!((first.thing_name.as_str(), origin), ("once-thing", Origin::Provisioned));
    assert_eq!(requests.load(Ordering::SeqCst), 2, "CreateKeysAndCertificate and RegisterThing");
    assert_owner_only(&store);
    let (second, origin) = provision_or_load(claim_on(&broker), &request, &store, &fast()).await.unwrap();
    assert_eq!((second, origin), (first, Origin::Stored));
    assert_eq!(requests.load(Ordering::SeqCst), 2, "no request the second time");
    svc.stop().await;
}
