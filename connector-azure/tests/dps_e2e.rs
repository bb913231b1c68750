//! The DPS provisioning client against the emulator's DPS endpoint over TLS, through the
//! real actor tree: individual and group symmetric-key enrollments, X.509, `retry-after`
//! bounded by the total timeout, typed failures, and provision-then-connect with telemetry
//! read back under the assigned device id.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use connector_azure::dps::client::{
    provision, provision_then_connect_with, ProvisioningError, ProvisioningOptions,
};
use connector_azure::dps::{DpsAuth, DpsOptions, DpsRegistration};
use connector_azure::{AzureOptions, SasKey, X509Identity};
use connector_core::{BackoffPolicy, Jitter, PemSource, Publish, QoS};
use connector_emulator::control::api::{
    Attestation, DeviceStatus, Enrollment, EnrollmentGroup, IssuedCertificate, SymmetricKey, X509Attestation,
    X509Thumbprint,
};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use hyper::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The azure-dps.md D3 vector: a group key and the key derived from it for `device-01`.
const GROUP_KEY: &str =
    "Mkq90sxtvhE4+illsJ1STOM54LSDXv9NmixoAhsW4C3cMhSayPmlfCNmnrph8Gh/kjQLhPdEdCXaXN6mwREiZw==";
const DERIVED_KEY: &str = "FOtnBnNffdiNWaqSDkC6QVxQOBHFzd7/+Ck6VQo6ri4=";

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

fn dps_options(emu: &EmulatorHandle) -> DpsOptions {
    DpsOptions {
        endpoint: "localhost".into(),
        port: Some(emu.mqtt_port()),
        trust_roots: Some(PemSource::File(emu.ca_path().to_owned())),
        ..DpsOptions::default()
    }
}

fn registration(emu: &EmulatorHandle, reg: &str, auth: DpsAuth) -> DpsRegistration {
    DpsRegistration::new(emu.dps_id_scope(), reg, auth, dps_options(emu)).unwrap()
}

fn hub_options(emu: &EmulatorHandle) -> AzureOptions {
    AzureOptions::default().port(emu.mqtt_port())
}

fn key_enrollment(key: &str, device_id: Option<&str>, status: DeviceStatus) -> Enrollment {
    Enrollment {
        attestation: Attestation::SymmetricKey {
            symmetric_key: SymmetricKey { primary_key: key.into(), secondary_key: String::new() },
        },
        device_id: device_id.map(str::to_owned),
        provisioning_status: status,
    }
}

#[actix_rt::test]
async fn individual_symmetric_key_enrollment_is_assigned() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    emu.control()
        .put_enrollment("reg-1", &key_enrollment(KEY, Some("assigned-1"), DeviceStatus::Enabled))
        .await
        .unwrap();
    // Before provisioning the hub has no such device.
    assert!(emu.control().identity("assigned-1", None).await.is_err());
    let reg = registration(&emu, "reg-1", DpsAuth::SymmetricKey(SasKey::from_base64(KEY).unwrap()));
    let a = provision(&reg, &fast()).await.unwrap();
    assert_eq!(a.assigned_hub, emu.hub_host_name());
    assert_eq!(a.device_id, "assigned-1");
    assert_eq!(a.substatus.as_deref(), Some("initialAssignment"));
    // The emulator assigns on the poll of the operation: the device now exists.
    emu.control().identity("assigned-1", None).await.unwrap();
    emu.shutdown();
}

#[actix_rt::test]
async fn group_enrollment_uses_the_derived_key_for_dps_and_the_hub() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let group = EnrollmentGroup {
        attestation: Attestation::SymmetricKey {
            symmetric_key: SymmetricKey { primary_key: GROUP_KEY.into(), secondary_key: String::new() },
        },
        provisioning_status: DeviceStatus::Enabled,
    };
    emu.control().put_enrollment_group("fleet", &group).await.unwrap();
    let reg = registration(&emu, "device-01", DpsAuth::GroupKey(SasKey::from_base64(GROUP_KEY).unwrap()));
    assert_eq!(reg.device_key().unwrap().to_base64().expose(), DERIVED_KEY);
    let done = provision_then_connect_with(&reg, hub_options(&emu), &fast(), |b| b.backoff(fast_backoff()))
        .await
        .unwrap();
    assert_eq!(done.assignment.device_id, "device-01");
    done.connector.wait_connected(WAIT).await.unwrap();
    done.connector.publisher().publish(Publish::telemetry("from the group")).await.unwrap();
    let got = emu.control().telemetry("device-01", None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.as_deref(), Some("from the group"));
    done.connector.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn x509_enrollment_provisions_and_the_same_certificate_opens_the_hub() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    let issued: IssuedCertificate = emu
        .control()
        .request(Method::POST, "/certificates/issue", Some(&json!({"commonName": "x509-reg"})))
        .await
        .unwrap();
    let enrollment = Enrollment {
        attestation: Attestation::X509 {
            x509: X509Attestation {
                client_certificate_thumbprint: Some(X509Thumbprint {
                    primary_thumbprint: Some(issued.thumbprint_sha256.clone()),
                    secondary_thumbprint: None,
                }),
                ca_certificate_pem: None,
            },
        },
        device_id: None,
        provisioning_status: DeviceStatus::Enabled,
    };
    emu.control().put_enrollment("x509-reg", &enrollment).await.unwrap();
    let id = X509Identity::from_pem(
        issued.certificate_pem.as_bytes(),
        issued.private_key_pem.as_bytes(),
        None,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let reg = registration(&emu, "x509-reg", DpsAuth::X509(id));
    assert!(reg.device_key().is_none());
    let done = provision_then_connect_with(&reg, hub_options(&emu), &fast(), |b| b.backoff(fast_backoff()))
        .await
        .unwrap();
    assert_eq!(done.assignment.device_id, "x509-reg");
    done.connector.wait_connected(WAIT).await.unwrap();
    done.connector.publisher().publish(Publish::telemetry("over x509")).await.unwrap();
    let got = emu.control().telemetry("x509-reg", None).await.unwrap();
    assert_eq!(got.iter().filter_map(|m| m.payload.as_deref()).collect::<Vec<_>>(), ["over x509"]);
    let conns = emu.control().connections().await.unwrap();
    let hub: Vec<_> = conns
        .iter()
        .filter(|c| c.endpoint == "hub")
        .map(|c| (c.client_id.as_str(), c.auth.as_str()))
        .collect();
    assert_eq!(hub, [("x509-reg", "x509")]);
    done.connector.stop().await;
    emu.shutdown();
}

/// The emulator answers the register with `assigning` and `retry-after=30`: the client
/// waits that long before polling, so within a 3 s total it never polls, and reports a
/// timeout instead of polling early (the device is never assigned).
#[actix_rt::test]
async fn retry_after_is_honoured_within_the_total_timeout() {
    let mut config = EmulatorConfig::ephemeral();
    config.dps_retry_after_secs = 30;
    let emu = Emulator::start(config).unwrap();
    emu.control()
        .put_enrollment("slow-reg", &key_enrollment(KEY, None, DeviceStatus::Enabled))
        .await
        .unwrap();
    let reg = registration(&emu, "slow-reg", DpsAuth::SymmetricKey(SasKey::from_base64(KEY).unwrap()));
    let err = provision(&reg, &fast().timeout(Duration::from_secs(3))).await.unwrap_err();
    match err {
        ProvisioningError::Timeout { stage, last_failure, .. } => {
            assert_eq!(stage, "waiting for retry-after");
            assert_eq!(last_failure, None);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(emu.control().identity("slow-reg", None).await.is_err(), "never polled, never assigned");
    emu.shutdown();
}

#[actix_rt::test]
async fn disabled_enrollments_and_wrong_keys_are_typed_errors() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    emu.control()
        .put_enrollment("off-reg", &key_enrollment(KEY, None, DeviceStatus::Disabled))
        .await
        .unwrap();
    let reg = registration(&emu, "off-reg", DpsAuth::SymmetricKey(SasKey::from_base64(KEY).unwrap()));
    match provision(&reg, &fast()).await {
        Err(ProvisioningError::Disabled { registration_id }) => assert_eq!(registration_id, "off-reg"),
        other => panic!("expected Disabled, got {other:?}"),
    }
    // A key that is not the enrollment's: DPS refuses the CONNECT, no retrying until the timeout.
    emu.control().put_enrollment("on-reg", &key_enrollment(KEY, None, DeviceStatus::Enabled)).await.unwrap();
    let wrong = SasKey::from_base64(DERIVED_KEY).unwrap();
    let reg = registration(&emu, "on-reg", DpsAuth::SymmetricKey(wrong));
    match provision(&reg, &fast()).await {
        Err(ProvisioningError::Unauthorized { reason }) => {
            assert!(reason.contains("not authorized"), "{reason}")
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // An unknown registration with no group to fall back on: unauthorized too.
    let reg = registration(&emu, "nobody", DpsAuth::SymmetricKey(SasKey::from_base64(KEY).unwrap()));
    assert!(matches!(provision(&reg, &fast()).await, Err(ProvisioningError::Unauthorized { .. })));
    assert!(emu.control().identity("off-reg", None).await.is_err());
    assert!(emu.control().identity("on-reg", None).await.is_err());
    emu.shutdown();
}

#[actix_rt::test]
async fn provision_then_connect_sends_telemetry_under_the_assigned_device_id() {
    let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
    emu.control()
        .put_enrollment("thermostat-reg", &key_enrollment(KEY, Some("thermostat-7"), DeviceStatus::Enabled))
        .await
        .unwrap();
    let reg = registration(&emu, "thermostat-reg", DpsAuth::SymmetricKey(SasKey::from_base64(KEY).unwrap()));
    let opts = fast().payload(json!({"modelId": "dtmi:com:example:Thermostat;1"}));
    let done = provision_then_connect_with(&reg, hub_options(&emu), &opts, |b| b.backoff(fast_backoff()))
        .await
        .unwrap();
    assert_eq!(done.assignment.device_id, "thermostat-7");
    done.connector.wait_connected(WAIT).await.unwrap();
    for i in 0..3 {
        done.connector
            .publisher()
            .publish(Publish::telemetry(format!(r#"{{"t":{i}}}"#)).qos(QoS::AtLeastOnce))
            .await
            .unwrap();
    }
    let got = emu.control().telemetry("thermostat-7", None).await.unwrap();
    let payloads: Vec<_> = got.iter().filter_map(|m| m.payload.as_deref()).collect();
    assert_eq!(payloads, [r#"{"t":0}"#, r#"{"t":1}"#, r#"{"t":2}"#]);
    assert!(got.iter().all(|m| m.device_id == "thermostat-7"));
    // Nothing was captured under the registration id.
    assert!(emu.control().telemetry("thermostat-reg", None).await.unwrap().is_empty());
    done.connector.stop().await;
    emu.shutdown();
}
