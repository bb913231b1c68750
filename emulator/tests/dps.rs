//! DPS registration over MQTT, then connecting to the assigned hub.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use common::*;
use connector_emulator::control::api::DeviceStatus;
use connector_emulator::control::api::{
    Attestation, Enrollment, EnrollmentGroup, SymmetricKey, X509Attestation, X509Thumbprint,
};
use hyper::Method;
use serde_json::{json, Value};

const API: &str = "api-version=2019-03-31";

fn dps_user(scope: &str, reg: &str) -> String {
    format!("{scope}/registrations/{reg}/{API}")
}

/// Registers `reg` on an open DPS connection: 202 assigning, then 200 assigned.
async fn register(dps: &Device, reg: &str) -> Value {
    assert_eq!(dps.subscribe("$dps/registrations/res/#", 1).await, 1);
    dps.publish(
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        json!({"registrationId": reg, "payload": null}).to_string(),
        1,
    )
    .await
    .unwrap();
    let r = dps.recv("register response").await;
    assert!(r.topic().starts_with("$dps/registrations/res/202/?$rid=1&retry-after="), "{}", r.topic());
    let body: Value = serde_json::from_slice(r.payload()).unwrap();
    assert_eq!(body["status"], "assigning");
    let op = body["operationId"].as_str().unwrap().to_string();
    dps.publish(
        &format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId={op}"),
        "",
        1,
    )
    .await
    .unwrap();
    let r = dps.recv("operation status").await;
    assert_eq!(r.topic(), "$dps/registrations/res/200/?$rid=2");
    let body: Value = serde_json::from_slice(r.payload()).unwrap();
    assert_eq!(body["operationId"], op.as_str());
    body
}

#[tokio::test]
async fn individual_symmetric_key_enrollment_registers_and_connects() {
    let env = Env::start();
    let scope = env.emu.dps_id_scope().to_string();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let enrollment = Enrollment {
        attestation: Attestation::SymmetricKey {
            symmetric_key: SymmetricKey { primary_key: key.into(), secondary_key: String::new() },
        },
        device_id: Some("assigned-1".into()),
        provisioning_status: DeviceStatus::Enabled,
    };
    env.ctl.put_enrollment("reg-1", &enrollment).await.unwrap();
    // A token without skn=registration, or for another registration, is refused.
    let res = format!("{scope}/registrations/reg-1");
    let err = env
        .connect_with(
            "reg-1",
            &dps_user(&scope, "reg-1"),
            Some(&sas(&res, key, now() + 600, None)),
            None,
            true,
        )
        .await;
    assert_eq!(connack_code(&err.err().unwrap()), Some(5));
    let token = sas(&res, key, now() + 600, Some("registration"));
    let dps = env.connect_with("reg-1", &dps_user(&scope, "reg-1"), Some(&token), None, true).await.unwrap();
    let body = register(&dps, "reg-1").await;
    assert_eq!(body["status"], "assigned");
    let state = &body["registrationState"];
    assert_eq!(state["assignedHub"], env.host());
    assert_eq!(state["deviceId"], "assigned-1");
    assert_eq!(state["registrationId"], "reg-1");
    assert_eq!(state["substatus"], "initialAssignment");
    dps.disconnect().await;
    // The device now exists in the hub with the enrollment key.
    let hub = env.connect("assigned-1", key).await;
    hub.disconnect().await;
    let reg: Value = env.ctl.request(Method::GET, "/dps/registrations/reg-1", None::<&()>).await.unwrap();
    assert_eq!(reg["deviceId"], "assigned-1");
}

#[tokio::test]
async fn group_enrollment_derives_the_device_key() {
    let env = Env::start();
    let scope = env.emu.dps_id_scope().to_string();
    // The azure-dps.md D3 vector: group key → derived key for device-01.
    let group_key =
        "Mkq90sxtvhE4+illsJ1STOM54LSDXv9NmixoAhsW4C3cMhSayPmlfCNmnrph8Gh/kjQLhPdEdCXaXN6mwREiZw==";
    let derived = "FOtnBnNffdiNWaqSDkC6QVxQOBHFzd7/+Ck6VQo6ri4=";
    assert_eq!(hmac_b64(group_key, "device-01"), derived);
    let group = EnrollmentGroup {
        attestation: Attestation::SymmetricKey {
            symmetric_key: SymmetricKey { primary_key: group_key.into(), secondary_key: String::new() },
        },
        provisioning_status: DeviceStatus::Enabled,
    };
    env.ctl.put_enrollment_group("fleet", &group).await.unwrap();
    let res = format!("{scope}/registrations/device-01");
    // The group key itself never authenticates.
    let err = env
        .connect_with(
            "device-01",
            &dps_user(&scope, "device-01"),
            Some(&sas(&res, group_key, now() + 600, Some("registration"))),
            None,
            true,
        )
        .await;
    assert_eq!(connack_code(&err.err().unwrap()), Some(5));
    // Lower-case %2f in sr, as azure-sdk-for-c sends it: verified as sent.
    let token = sas_with_sr(
        &format!("{scope}%2fregistrations%2fdevice-01"),
        derived,
        now() + 600,
        Some("registration"),
    );
    let dps = env
        .connect_with("device-01", &dps_user(&scope, "device-01"), Some(&token), None, true)
        .await
        .unwrap();
    let body = register(&dps, "device-01").await;
    assert_eq!(body["registrationState"]["deviceId"], "device-01");
    dps.disconnect().await;
    let hub = env.connect("device-01", derived).await;
    hub.disconnect().await;
    let reg: Value = env.ctl.request(Method::GET, "/dps/registrations/device-01", None::<&()>).await.unwrap();
    assert_eq!(reg["enrollment"], "group:fleet");
}

#[tokio::test]
async fn x509_individual_enrollment_and_bad_requests() {
    let env = Env::start();
    let scope = env.emu.dps_id_scope().to_string();
    let dir = tempfile::tempdir().unwrap();
    let issued: connector_emulator::control::api::IssuedCertificate = env
        .ctl
        .request(Method::POST, "/certificates/issue", Some(&json!({"commonName": "x509-reg"})))
        .await
        .unwrap();
    let cert = write_pem(dir.path(), "c.pem", &issued.certificate_pem);
    let key = write_pem(dir.path(), "c.key", &issued.private_key_pem);
    let enrollment = Enrollment {
        attestation: Attestation::X509 {
            x509: X509Attestation {
                client_certificate_thumbprint: Some(X509Thumbprint {
                    primary_thumbprint: Some(issued.thumbprint_sha1.clone()),
                    secondary_thumbprint: None,
                }),
                ca_certificate_pem: None,
            },
        },
        device_id: None,
        provisioning_status: DeviceStatus::Enabled,
    };
    env.ctl.put_enrollment("x509-reg", &enrollment).await.unwrap();
    let dps = env
        .connect_with("x509-reg", &dps_user(&scope, "x509-reg"), None, Some((&cert, &key)), true)
        .await
        .unwrap();
    dps.subscribe("$dps/registrations/res/#", 1).await;
    // Wrong registrationId in the body: 400 with an error body.
    dps.publish("$dps/registrations/PUT/iotdps-register/?$rid=9", r#"{"registrationId":"other"}"#, 1)
        .await
        .unwrap();
    let r = dps.recv("400").await;
    assert_eq!(r.topic(), "$dps/registrations/res/400/?$rid=9");
    let body: Value = serde_json::from_slice(r.payload()).unwrap();
    assert_eq!(body["errorCode"], 400000);
    // Unknown operation: 404.
    dps.publish("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=10&operationId=nope", "", 1)
        .await
        .unwrap();
    assert_eq!(dps.recv("404").await.topic(), "$dps/registrations/res/404/?$rid=10");
    let body = register(&dps, "x509-reg").await;
    assert_eq!(body["registrationState"]["deviceId"], "x509-reg");
    assert!(body["registrationState"]["x509"].is_object());
    dps.disconnect().await;
    // The same certificate opens the hub connection.
    let hub = env
        .connect_with("x509-reg", &hub_user(env.host(), "x509-reg"), None, Some((&cert, &key)), true)
        .await
        .unwrap();
    hub.disconnect().await;
}
