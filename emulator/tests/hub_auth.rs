//! CONNECT authentication against the running emulator over TLS (paho as the device).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use common::*;
use connector_emulator::control::api::{Authentication, IdentitySpec, X509Thumbprint};
use hyper::Method;
use serde_json::json;

#[tokio::test]
async fn sas_device_connects_and_is_listed() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let dev = env.connect("dev-1", &key).await;
    let conns = env.ctl.connections().await.unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].client_id, "dev-1");
    assert_eq!(conns[0].auth, "sas");
    assert_eq!(env.ctl.identity("dev-1", None).await.unwrap().connection_state, "Connected");
    dev.disconnect().await;
}

#[tokio::test]
async fn every_sr_spelling_verifies_as_signed() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let host = env.host().to_string();
    let se = now() + 600;
    for sr in [
        format!("{host}%2Fdevices%2Fdev-1"),
        format!("{host}%2fdevices%2fdev-1"),
        format!("{host}/devices/dev-1"),
        format!("{}%2Fdevices%2Fdev-1", host.to_uppercase()),
    ] {
        let token = sas_with_sr(&sr, &key, se, None);
        let dev = env.connect_with("dev-1", &hub_user(&host, "dev-1"), Some(&token), None, true).await;
        let dev = dev.unwrap_or_else(|e| panic!("sr {sr}: {e}"));
        dev.disconnect().await;
    }
}

#[tokio::test]
async fn bad_credentials_are_refused_with_the_right_code() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let other_key = env.device("dev-2").await;
    let host = env.host().to_string();
    let user = hub_user(&host, "dev-1");
    let res = format!("{host}/devices/dev-1");
    let cases: Vec<(&str, String, String, String, i32)> = vec![
        ("wrong key", "dev-1".into(), user.clone(), sas(&res, &other_key, now() + 600, None), 5),
        ("expired token", "dev-1".into(), user.clone(), sas(&res, &key, now() - 1, None), 5),
        (
            "unknown device",
            "ghost".into(),
            hub_user(&host, "ghost"),
            sas(&format!("{host}/devices/ghost"), &key, now() + 600, None),
            5,
        ),
        (
            "token for another device",
            "dev-1".into(),
            user.clone(),
            sas(&format!("{host}/devices/dev-2"), &key, now() + 600, None),
            5,
        ),
        (
            "wrong host",
            "dev-1".into(),
            hub_user("other.example", "dev-1"),
            sas(&res, &key, now() + 600, None),
            5,
        ),
        (
            "signature over another sr spelling",
            "dev-1".into(),
            user.clone(),
            {
                let good = sas(&res, &key, now() + 600, None);
                good.replace("%2F", "%2f")
            },
            5,
        ),
        (
            "no api-version",
            "dev-1".into(),
            format!("{host}/dev-1/?DeviceClientType=x"),
            sas(&res, &key, now() + 600, None),
            4,
        ),
        ("not a SAS token", "dev-1".into(), user.clone(), "password".into(), 4),
        ("client id mismatch", "dev-2".into(), user.clone(), sas(&res, &key, now() + 600, None), 2),
    ];
    for (what, client_id, user, password, code) in cases {
        let err = env.connect_with(&client_id, &user, Some(&password), None, true).await.err();
        let err = err.unwrap_or_else(|| panic!("{what}: connected"));
        assert_eq!(connack_code(&err), Some(code), "{what}: {err}");
    }
    assert!(env.ctl.connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn token_expiry_closes_the_connection() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let token = sas(&format!("{}/devices/dev-1", env.host()), &key, now() + 2, None);
    let dev =
        env.connect_with("dev-1", &hub_user(env.host(), "dev-1"), Some(&token), None, true).await.unwrap();
    let expiry = env.ctl.connections().await.unwrap()[0].token_expiry;
    assert!(expiry.is_some());
    dev.lost("the hub closes the connection at token expiry").await;
    assert!(env.ctl.connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn policy_token_with_skn_connects() {
    let env = Env::start();
    env.device("dev-1").await;
    let policies: serde_json::Value = env.ctl.request(Method::GET, "/policies", None::<&()>).await.unwrap();
    let key = policies["device"]["symmetricKey"]["primaryKey"].as_str().unwrap().to_string();
    // A hub-wide resource covers every device.
    let token = sas(env.host(), &key, now() + 600, Some("device"));
    let dev =
        env.connect_with("dev-1", &hub_user(env.host(), "dev-1"), Some(&token), None, true).await.unwrap();
    assert_eq!(env.ctl.connections().await.unwrap()[0].auth, "policy:device");
    dev.disconnect().await;
    // A policy without DeviceConnect is refused.
    let p: serde_json::Value = env
        .ctl
        .request(Method::PUT, "/policies/readonly", Some(&json!({"rights": ["RegistryRead"]})))
        .await
        .unwrap();
    let key = p["symmetricKey"]["primaryKey"].as_str().unwrap();
    let token = sas(env.host(), key, now() + 600, Some("readonly"));
    let err = env
        .connect_with("dev-1", &hub_user(env.host(), "dev-1"), Some(&token), None, true)
        .await
        .err()
        .unwrap();
    assert_eq!(connack_code(&err), Some(5));
}

#[tokio::test]
async fn a_new_connection_replaces_the_old_one() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let first = env.connect("dev-1", &key).await;
    let second = env.connect("dev-1", &key).await;
    first.lost("the first connection is closed").await;
    assert!(second.client.is_connected());
    assert_eq!(env.ctl.connections().await.unwrap().len(), 1);
    second.disconnect().await;
}

#[tokio::test]
async fn modules_use_their_own_keys() {
    let env = Env::start();
    let device_key = env.device("dev-1").await;
    let module_key = common::key_of(
        &env.ctl.put_identity("dev-1", Some("mod-a"), &IdentitySpec::default()).await.unwrap(),
    );
    let host = env.host().to_string();
    let res = format!("{host}/devices/dev-1/modules/mod-a");
    let user = hub_user(&host, "dev-1/mod-a");
    let m = env
        .connect_with("dev-1/mod-a", &user, Some(&sas(&res, &module_key, now() + 600, None)), None, true)
        .await
        .unwrap();
    assert_eq!(env.ctl.connections().await.unwrap()[0].client_id, "dev-1/mod-a");
    m.disconnect().await;
    let err = env
        .connect_with("dev-1/mod-a", &user, Some(&sas(&res, &device_key, now() + 600, None)), None, true)
        .await
        .err();
    assert_eq!(connack_code(&err.unwrap()), Some(5));
    // A device token does not open a module connection.
    let dev_token = sas(&format!("{host}/devices/dev-1"), &module_key, now() + 600, None);
    let err = env.connect_with("dev-1/mod-a", &user, Some(&dev_token), None, true).await.err();
    assert_eq!(connack_code(&err.unwrap()), Some(5));
}

#[tokio::test]
async fn x509_by_thumbprint_and_by_registered_ca() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    // Thumbprint: a certificate from the emulator's CA endpoint, registered by SHA-256.
    let issued: connector_emulator::control::api::IssuedCertificate = env
        .ctl
        .request(Method::POST, "/certificates/issue", Some(&json!({"commonName": "x509-dev"})))
        .await
        .unwrap();
    let cert = write_pem(dir.path(), "dev.pem", &issued.certificate_pem);
    let key = write_pem(dir.path(), "dev.key", &issued.private_key_pem);
    let spec = IdentitySpec {
        authentication: Some(Authentication::SelfSigned {
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: Some(issued.thumbprint_sha256.clone()),
                secondary_thumbprint: None,
            },
        }),
        status: None,
    };
    env.ctl.put_identity("x509-dev", None, &spec).await.unwrap();
    let user = hub_user(env.host(), "x509-dev");
    let dev = env.connect_with("x509-dev", &user, None, Some((&cert, &key)), true).await.unwrap();
    assert_eq!(env.ctl.connections().await.unwrap()[0].auth, "x509");
    dev.disconnect().await;
    // SHA-1 thumbprints work too.
    let spec = IdentitySpec {
        authentication: Some(Authentication::SelfSigned {
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: None,
                secondary_thumbprint: Some(issued.thumbprint_sha1.clone()),
            },
        }),
        status: None,
    };
    env.ctl.put_identity("x509-dev", None, &spec).await.unwrap();
    env.connect_with("x509-dev", &user, None, Some((&cert, &key)), true).await.unwrap().disconnect().await;
    // No certificate and no password: refused.
    let err = env.connect_with("x509-dev", &user, None, None, true).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(4));

    // CA: a device CA of the test's own, registered with the hub; CN must be the device id.
    let (ca, ca_key) = test_support::generate_ca("device CA");
    let (leaf, leaf_key) = test_support::issue_cert(&ca, &ca_key, "ca-dev", &[], &[], false);
    let (wrong_cn, wrong_cn_key) = test_support::issue_cert(&ca, &ca_key, "someone-else", &[], &[], false);
    let pem = |x: &openssl::x509::X509| String::from_utf8(x.to_pem().unwrap()).unwrap();
    let kpem = |k: &openssl::pkey::PKey<openssl::pkey::Private>| {
        String::from_utf8(k.private_key_to_pem_pkcs8().unwrap()).unwrap()
    };
    let leaf_cert = write_pem(dir.path(), "leaf.pem", &pem(&leaf));
    let leaf_key = write_pem(dir.path(), "leaf.key", &kpem(&leaf_key));
    let wrong_cert = write_pem(dir.path(), "wrong.pem", &pem(&wrong_cn));
    let wrong_key = write_pem(dir.path(), "wrong.key", &kpem(&wrong_cn_key));
    let spec = IdentitySpec { authentication: Some(Authentication::CertificateAuthority), status: None };
    env.ctl.put_identity("ca-dev", None, &spec).await.unwrap();
    let user = hub_user(env.host(), "ca-dev");
    let err =
        env.connect_with("ca-dev", &user, None, Some((&leaf_cert, &leaf_key)), true).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(5), "CA not registered yet");
    let _: serde_json::Value = env
        .ctl
        .request(Method::PUT, "/certificates/device-ca", Some(&json!({"pem": pem(&ca)})))
        .await
        .unwrap();
    let dev = env.connect_with("ca-dev", &user, None, Some((&leaf_cert, &leaf_key)), true).await.unwrap();
    assert_eq!(env.ctl.connections().await.unwrap()[0].auth, "x509ca");
    dev.disconnect().await;
    let err =
        env.connect_with("ca-dev", &user, None, Some((&wrong_cert, &wrong_key)), true).await.err().unwrap();
    assert_eq!(connack_code(&err), Some(5), "CN is not the device id");
}

#[tokio::test]
async fn disabled_devices_are_refused_and_disconnected() {
    let env = Env::start();
    let key = env.device("dev-1").await;
    let dev = env.connect("dev-1", &key).await;
    let info = env.ctl.identity("dev-1", None).await.unwrap();
    let spec = IdentitySpec {
        authentication: Some(info.authentication.clone()),
        status: Some(connector_emulator::control::api::DeviceStatus::Disabled),
    };
    env.ctl.put_identity("dev-1", None, &spec).await.unwrap();
    dev.lost("disabling the device closes its connection").await;
    let token = sas(&format!("{}/devices/dev-1", env.host()), &key, now() + 600, None);
    let err = env
        .connect_with("dev-1", &hub_user(env.host(), "dev-1"), Some(&token), None, true)
        .await
        .err()
        .unwrap();
    assert_eq!(connack_code(&err), Some(5));
}
