//! Fleet provisioning by claim over MQTT (paho with a claim certificate): keys or CSR
//! signed by the emulator CA, RegisterThing through a template from the control API,
//! then a connection with the issued certificate. CSRs are made here with openssl.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use connector_emulator::control::aws_api::{AwsFaults, CertificateStatus, ProvisioningTemplate};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509ReqBuilder, X509};
use serde_json::{json, Value};

const CREATE: &str = "$aws/certificates/create/json";
const CSR: &str = "$aws/certificates/create-from-csr/json";

fn provision(template: &str) -> String {
    format!("$aws/provisioning-templates/{template}/provision/json")
}

fn fleet_template(allowed: Vec<String>) -> ProvisioningTemplate {
    let mut t = ProvisioningTemplate::new(json!({
        "Parameters": {
            "SerialNumber": {"Type": "String"},
            "Location": {"Type": "String", "Default": "lab"}
        },
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": {"Fn::Join": ["", ["dev-", {"Ref": "SerialNumber"}]]},
                "AttributePayload": {"location": {"Ref": "Location"}}
            }},
            "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"
            }},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "DevicePolicy"}}
        },
        "DeviceConfiguration": {"FallbackUrl": "https://example.com/fw", "Serial": {"Ref": "SerialNumber"}}
    }));
    t.allowed_principals = allowed;
    t
}

/// A claim connection subscribed to every provisioning answer.
async fn claim(env: &Env, dir: &std::path::Path, allowed_only: bool) -> (String, Device) {
    let (id, cert, key) = aws_claim_cert(env, "claim", dir).await;
    let allowed = if allowed_only { vec![id.clone()] } else { Vec::new() };
    env.ctl.aws_put_provisioning_template("fleet", &fleet_template(allowed)).await.unwrap();
    let dev = env.aws_cert_connect("claim-1", &cert, &key).await.unwrap();
    for f in ["$aws/certificates/+/json/+", "$aws/provisioning-templates/+/provision/json/+"] {
        assert_eq!(dev.subscribe(f, 1).await, 1, "{f}");
    }
    (id, dev)
}

async fn call(dev: &Device, topic: &str, body: Value) -> (String, Value) {
    dev.publish(topic, body.to_string(), 1).await.unwrap();
    let (t, v) = dev.recv_json(topic).await;
    let kind = t.strip_prefix(&format!("{topic}/")).unwrap_or_else(|| panic!("answer on {t}")).to_string();
    (kind, v)
}

fn csr_pem(key: &PKey<Private>, cn: &str) -> String {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let mut req = X509ReqBuilder::new().unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(key).unwrap();
    req.sign(key, MessageDigest::sha256()).unwrap();
    String::from_utf8(req.build().to_pem().unwrap()).unwrap()
}

#[tokio::test]
async fn create_keys_register_thing_then_connect_with_the_new_certificate() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, dev) = claim(&env, dir.path(), true).await;
    let (kind, keys) = call(&dev, CREATE, json!({})).await;
    assert_eq!(kind, "accepted");
    let id = keys["certificateId"].as_str().unwrap().to_string();
    let token = keys["certificateOwnershipToken"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert!(keys["privateKey"].as_str().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    // The certificate is the emulator CA's, with the id AWS uses (hex SHA-256 of the DER).
    let cert = X509::from_pem(keys["certificatePem"].as_str().unwrap().as_bytes()).unwrap();
    let ca = X509::from_pem(&std::fs::read(env.emu.ca_path()).unwrap()).unwrap();
    assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
    assert_eq!(hex(&cert.digest(MessageDigest::sha256()).unwrap()), id);
    assert_eq!(env.ctl.aws_certificate(&id).await.unwrap().status, CertificateStatus::PendingActivation);
    let cert_path = write_pem(dir.path(), "new.pem", keys["certificatePem"].as_str().unwrap());
    let key_path = write_pem(dir.path(), "new.key", keys["privateKey"].as_str().unwrap());
    assert_eq!(
        connack_code(&env.aws_cert_connect("dev-0042", &cert_path, &key_path).await.err().unwrap()),
        Some(5)
    );

    // Rejections: empty and unknown tokens, a missing required parameter, an unknown template.
    let (kind, r) = call(&dev, &provision("fleet"), json!({"parameters": {"SerialNumber": "0042"}})).await;
    assert_eq!(
        (kind.as_str(), r),
        (
            "rejected",
            json!({"statusCode": 400, "errorCode": "InvalidCertificateOwnershipToken",
                   "errorMessage": "Certificate ownership token cannot be empty."})
        )
    );
    let (_, r) = call(&dev, &provision("fleet"), json!({"certificateOwnershipToken": "forged"})).await;
    assert_eq!(r["errorCode"], "InvalidCertificateOwnershipToken");
    let (kind, r) =
        call(&dev, &provision("fleet"), json!({"certificateOwnershipToken": token, "parameters": {}})).await;
    assert_eq!(
        (kind.as_str(), r["statusCode"].as_u64(), r["errorCode"].as_str()),
        ("rejected", Some(400), Some("InvalidPayload"))
    );
    assert!(r["errorMessage"].as_str().unwrap().contains("SerialNumber"));
    let (_, r) = call(&dev, &provision("nope"), json!({"certificateOwnershipToken": token})).await;
    assert_eq!((r["statusCode"].as_u64(), r["errorCode"].as_str()), (Some(404), Some("ResourceNotFound")));

    // The token survived those; now it registers the thing.
    let body = json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "0042"}});
    let (kind, r) = call(&dev, &provision("fleet"), body.clone()).await;
    assert_eq!(kind, "accepted");
    assert_eq!(
        r,
        json!({"thingName": "dev-0042", "deviceConfiguration": {"FallbackUrl": "https://example.com/fw", "Serial": "0042"}})
    );
    let c = env.ctl.aws_certificate(&id).await.unwrap();
    assert_eq!((c.status, c.things), (CertificateStatus::Active, vec!["dev-0042".to_string()]));
    let thing = env.ctl.aws_thing("dev-0042").await.unwrap();
    assert_eq!(
        (thing.attributes.get("location").map(String::as_str), thing.principals),
        (Some("lab"), vec![id.clone()])
    );
    // Single use.
    let (_, r) = call(&dev, &provision("fleet"), body).await;
    assert_eq!(r["errorCode"], "InvalidCertificateOwnershipToken");
    dev.disconnect().await;

    // The device reconnects with its own certificate and key.
    let own = env.aws_cert_connect("dev-0042", &cert_path, &key_path).await.unwrap();
    let conns = env.ctl.aws_connections().await.unwrap();
    let mine = conns.iter().find(|c| c.client_id == "dev-0042").unwrap();
    assert_eq!((mine.auth.as_str(), mine.principal.as_str()), ("x509", id.as_str()));
    assert_eq!(own.subscribe("$aws/things/dev-0042/shadow/get/+", 1).await, 1);
    own.disconnect().await;
}

#[tokio::test]
async fn create_certificate_from_an_openssl_csr() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, dev) = claim(&env, dir.path(), false).await;
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
    )
    .unwrap();
    let (kind, r) = call(&dev, CSR, json!({"certificateSigningRequest": csr_pem(&key, "sensor-7")})).await;
    assert_eq!(kind, "accepted");
    assert!(r.get("privateKey").is_none());
    let pem = r["certificatePem"].as_str().unwrap();
    let cert = X509::from_pem(pem.as_bytes()).unwrap();
    assert!(cert.public_key().unwrap().public_eq(&key));
    let cn = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next().unwrap().data().to_string().unwrap();
    assert_eq!(cn, "sensor-7");
    let ca = X509::from_pem(&std::fs::read(env.emu.ca_path()).unwrap()).unwrap();
    assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
    let token = r["certificateOwnershipToken"].as_str().unwrap();
    let body =
        json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "7", "Location": "dock"}});
    let (kind, r) = call(&dev, &provision("fleet"), body).await;
    assert_eq!((kind.as_str(), r["thingName"].as_str()), ("accepted", Some("dev-7")));
    let cert_path = write_pem(dir.path(), "csr.pem", pem);
    let key_path = write_pem(
        dir.path(),
        "csr.key",
        &String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    );
    env.aws_cert_connect("dev-7", &cert_path, &key_path).await.unwrap().disconnect().await;

    // Refused CSRs: not PEM, a 1024-bit RSA key, a CSR whose signature does not verify.
    let (kind, r) = call(&dev, CSR, json!({"certificateSigningRequest": "garbage"})).await;
    assert_eq!((kind.as_str(), r["errorCode"].as_str()), ("rejected", Some("InvalidPayload")));
    let weak = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
    let (kind, r) = call(&dev, CSR, json!({"certificateSigningRequest": csr_pem(&weak, "weak")})).await;
    assert_eq!((kind.as_str(), r["statusCode"].as_u64()), ("rejected", Some(400)));
    let other = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
    )
    .unwrap();
    let forged = {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "forged").unwrap();
        let mut req = X509ReqBuilder::new().unwrap();
        req.set_subject_name(&name.build()).unwrap();
        req.set_pubkey(&key).unwrap();
        req.sign(&other, MessageDigest::sha256()).unwrap();
        String::from_utf8(req.build().to_pem().unwrap()).unwrap()
    };
    let (kind, r) = call(&dev, CSR, json!({"certificateSigningRequest": forged})).await;
    assert_eq!(
        (kind.as_str(), r["errorMessage"].as_str()),
        ("rejected", Some("the CSR signature does not verify"))
    );
    dev.disconnect().await;
}

#[tokio::test]
async fn expired_tokens_principals_cbor_and_throttling() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, dev) = claim(&env, dir.path(), false).await;
    // A token expires after an hour (service clock) and takes its unused certificate along.
    let (_, keys) = call(&dev, CREATE, json!({})).await;
    let id = keys["certificateId"].as_str().unwrap();
    env.ctl.aws_advance_clock(3601).await.unwrap();
    assert_eq!(env.ctl.aws_certificate(id).await.err().unwrap().status(), Some(404));
    let body = json!({"certificateOwnershipToken": keys["certificateOwnershipToken"], "parameters": {"SerialNumber": "1"}});
    let (_, r) = call(&dev, &provision("fleet"), body).await;
    assert_eq!(r["errorCode"], "InvalidCertificateOwnershipToken");
    // A template limited to another claim certificate.
    env.ctl
        .aws_put_provisioning_template("fleet", &fleet_template(vec!["someone-else".into()]))
        .await
        .unwrap();
    let (_, keys) = call(&dev, CREATE, json!({})).await;
    let body = json!({"certificateOwnershipToken": keys["certificateOwnershipToken"], "parameters": {"SerialNumber": "1"}});
    let (_, r) = call(&dev, &provision("fleet"), body).await;
    assert_eq!((r["statusCode"].as_u64(), r["errorCode"].as_str()), (Some(403), Some("AccessDenied")));
    // CBOR is refused in CBOR.
    assert_eq!(dev.subscribe("$aws/certificates/create/cbor/+", 1).await, 1);
    dev.publish("$aws/certificates/create/cbor", Vec::new(), 1).await.unwrap();
    let m = dev.recv("cbor answer").await;
    assert_eq!(m.topic(), "$aws/certificates/create/cbor/rejected");
    assert_eq!(m.payload()[0], 0xa3);
    assert!(String::from_utf8_lossy(m.payload()).contains("CBOR payloads are not implemented"));
    // Throttled once by a fault.
    env.ctl
        .aws_faults(
            "claim-1",
            &AwsFaults { throttle_provisioning: true, count: Some(1), ..Default::default() },
        )
        .await
        .unwrap();
    let (kind, r) = call(&dev, CREATE, json!({})).await;
    assert_eq!(
        (kind.as_str(), r["statusCode"].as_u64(), r["errorCode"].as_str()),
        ("rejected", Some(429), Some("Throttling"))
    );
    assert_eq!(call(&dev, CREATE, json!({})).await.0, "accepted");
    // Templates through the control API: listed, refused when invalid, deleted.
    assert_eq!(env.ctl.aws_provisioning_templates().await.unwrap()[0].template_name, "fleet");
    let bad = ProvisioningTemplate::new(json!({"Resources": {}}));
    assert_eq!(env.ctl.aws_put_provisioning_template("bad", &bad).await.err().unwrap().status(), Some(400));
    env.ctl.aws_delete_provisioning_template("fleet").await.unwrap();
    assert!(env.ctl.aws_provisioning_templates().await.unwrap().is_empty());
    dev.disconnect().await;
}
