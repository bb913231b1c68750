//! The other AWS authentication types of `[aws]` (`aws.auth`), against an emulator in the
//! test process: a thing certificate on the 443-style port with ALPN `x-amzn-mqtt-ca`,
//! SigV4 over WebSocket with an access key read from files, and a custom authorizer with a
//! token signed from a key file. The agent connects with each, its device stats reach the
//! emulator's telemetry, the emulator saw the expected kind of authentication, and no
//! secret appears in `--check-config` or in the agent's output (logging at TRACE).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{rt, Agent, WITHIN};
use connector_emulator::control::aws_api::{Authorizer, CreateCertificate};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use nix::sys::signal::Signal;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use test_support::wait_until;

fn emulator() -> EmulatorHandle {
    let cfg = EmulatorConfig::ephemeral();
    assert!(cfg.aws_port.is_some(), "the ephemeral emulator serves the 443-style AWS port");
    Emulator::start(cfg).unwrap()
}

fn private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn common_sections(state: &Path) -> String {
    format!("[agent]\nstate_dir = {state:?}\nstatus_interval = \"300ms\"\n[metrics]\nenabled = false\n[logging]\nlevel = \"trace\"\n")
}

/// `--check-config` accepts `config` and describes it with `describes` (and no secret),
/// then the agent runs on it until device stats of `thing` reach the emulator; the
/// emulator's connection of `thing` used `auth`; nothing in `secrets` was printed.
fn runs(
    emu: &EmulatorHandle,
    dir: &Path,
    config: String,
    thing: &str,
    describes: &str,
    auth: &str,
    secrets: &[&str],
) {
    let cfg = dir.join("agent.toml");
    std::fs::write(&cfg, config).unwrap();
    let (code, out) = common::run_to_end(&["--check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(describes), "{out}");
    for s in secrets {
        assert!(!out.contains(s), "a secret in --check-config: {out}");
    }

    let rt = rt();
    let ctl = emu.control();
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap(), "--telemetry-interval", "200ms"]);
    let identity = format!("identity: device {thing} on localhost (configured credentials)");
    agent.wait_line(&identity, |l| l == identity);
    agent.wait_line("connected", |l| l.starts_with("status: connected"));
    let topic = format!("dt/{thing}/telemetry");
    wait_until(WITHIN, "device stats at the emulator", || {
        rt.block_on(ctl.aws_telemetry(Some(thing), None)).unwrap().iter().any(|m| m.topic == topic)
    });
    let conns = rt.block_on(ctl.aws_connections()).unwrap();
    assert!(conns.iter().any(|c| c.client_id == thing && c.auth == auth), "{conns:?}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    let out = agent.output();
    for s in secrets {
        assert!(!out.contains(s), "a secret in the agent's output: {out}");
    }
    assert!(!dir.join("state/identity/identity.json").exists(), "nothing was provisioned");
}

#[test]
fn certificate_with_alpn_on_the_443_port() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let rt = rt();
    let ctl = emu.control();
    rt.block_on(ctl.aws_create_thing("agent-alpn")).unwrap();
    let issued = rt
        .block_on(ctl.aws_create_certificate(&CreateCertificate {
            thing_name: Some("agent-alpn".into()),
            ..Default::default()
        }))
        .unwrap();
    let (cert_file, key_file) = (dir.path().join("device.pem.crt"), dir.path().join("private.pem.key"));
    private(&cert_file, &issued.certificate_pem);
    let key_pem = issued.private_key_pem.unwrap();
    private(&key_file, &key_pem);
    // The 443-style port: plain MQTT/TLS (no ALPN) would not be served there.
    let config = format!(
        "{}[aws]\nendpoint = {:?}\nport = {}\nauth = \"certificate-alpn\"\nthing_name = \"agent-alpn\"\nca_file = {:?}\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\n",
        common_sections(&dir.path().join("state")),
        emu.aws_endpoint(),
        emu.aws_port().unwrap(),
        emu.ca_path(),
    );
    let key_body = key_pem.lines().nth(1).unwrap().to_owned();
    runs(
        &emu,
        dir.path(),
        config,
        "agent-alpn",
        "certificate of thing agent-alpn (ALPN x-amzn-mqtt-ca on 443)",
        "x509",
        &[&key_body],
    );
}

#[test]
fn sigv4_with_an_access_key_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let rt = rt();
    let key = rt.block_on(emu.control().aws_create_access_key()).unwrap();
    assert!(!key.secret_access_key.is_empty());
    let (secret_file, token_file) = (dir.path().join("secret-access-key"), dir.path().join("session-token"));
    private(&secret_file, &format!("{}\n", key.secret_access_key));
    // The emulator does not sign the session token (like AWS IoT): it only travels.
    let token = "FwoGZXIvYXdzEXAMPLEagentSessionToken";
    private(&token_file, token);
    let config = format!(
        "{}[aws]\nendpoint = {:?}\nport = {}\nauth = \"sigv4\"\nthing_name = \"agent-sigv4\"\nca_file = {:?}\n[aws.sigv4]\nregion = {:?}\nsource = \"files\"\naccess_key_id = {:?}\nsecret_access_key_file = {secret_file:?}\nsession_token_file = {token_file:?}\n",
        common_sections(&dir.path().join("state")),
        emu.aws_endpoint(),
        emu.aws_port().unwrap(),
        emu.ca_path(),
        emu.aws_region(),
        key.access_key_id,
    );
    let describes = format!(
        "SigV4 over WebSocket as thing agent-sigv4, region {}, credentials from files (access key id {})",
        emu.aws_region(),
        key.access_key_id
    );
    runs(&emu, dir.path(), config, "agent-sigv4", &describes, "sigv4", &[&key.secret_access_key, token]);
}

#[test]
fn custom_authorizer_with_a_token_signed_from_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let rt = rt();
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let public = String::from_utf8(rsa.public_key_to_pem().unwrap()).unwrap();
    let token = "agent-token-never-printed";
    let authorizer = Authorizer {
        token_key_name: "token".into(),
        token_signing_public_key: Some(public),
        allowed_tokens: vec![token.into()],
        default: false,
    };
    rt.block_on(emu.control().aws_put_authorizer("agent-auth", &authorizer)).unwrap();
    let (token_file, signing_key_file, password_file) =
        (dir.path().join("token"), dir.path().join("signing.key"), dir.path().join("password"));
    private(&token_file, token);
    private(&signing_key_file, &String::from_utf8(rsa.private_key_to_pem_pkcs8().unwrap()).unwrap());
    let password = "agent-password-never-printed";
    private(&password_file, password);
    let config = format!(
        "{}[aws]\nendpoint = {:?}\nport = {}\nauth = \"custom-authorizer\"\nthing_name = \"agent-ca\"\nca_file = {:?}\n[aws.custom_authorizer]\nauthorizer_name = \"agent-auth\"\ntoken_file = {token_file:?}\ntoken_key_name = \"token\"\nsigning_key_file = {signing_key_file:?}\nusername = \"device\"\npassword_file = {password_file:?}\n",
        common_sections(&dir.path().join("state")),
        emu.aws_endpoint(),
        emu.aws_port().unwrap(),
        emu.ca_path(),
    );
    runs(
        &emu,
        dir.path(),
        config,
        "agent-ca",
        "custom authorizer agent-auth over MQTT (ALPN mqtt) as thing agent-ca, token token, signed",
        "custom-auth",
        &[token, password],
    );
}
