//! Configured (not provisioned) credentials against an emulator in the test process: an
//! Azure connection string from a file, an Azure X.509 device certificate, an AWS thing
//! certificate. The agent connects with them, sends device stats, and never provisions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{rt, Agent, WITHIN};
use connector_emulator::control::api::{Authentication, IdentitySpec, X509Thumbprint};
use connector_emulator::control::aws_api::CreateCertificate;
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use nix::sys::signal::Signal;
use openssl::hash::MessageDigest;
use test_support::wait_until;

fn emulator() -> EmulatorHandle {
    let mut cfg = EmulatorConfig::ephemeral();
    cfg.aws_port = None;
    Emulator::start(cfg).unwrap()
}

fn private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs the agent on `config` until `telemetry` (polled) is true, then SIGTERM.
fn runs(dir: &Path, config: String, expect_identity: &str, telemetry: impl FnMut() -> bool) {
    let cfg = dir.join("agent.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap(), "--telemetry-interval", "200ms"]);
    agent.wait_line(expect_identity, |l| l == expect_identity);
    agent.wait_line("connected", |l| l.starts_with("status: connected"));
    wait_until(WITHIN, "device stats at the emulator", telemetry);
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    assert!(!dir.join("state/identity/identity.json").exists(), "nothing was provisioned");
}

fn common_sections(state: &Path) -> String {
    format!("[agent]\nstate_dir = {state:?}\nstatus_interval = \"300ms\"\n[metrics]\nenabled = false\n[logging]\nlevel = \"warn\"\n")
}

#[test]
fn azure_connection_string_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let rt = rt();
    let info = rt.block_on(emu.control().create_device("agent-cs")).unwrap();
    let Authentication::Sas { symmetric_key } = info.authentication else { panic!("SAS device") };
    let cs_file = dir.path().join("cs");
    private(
        &cs_file,
        &format!(
            "HostName={};DeviceId=agent-cs;SharedAccessKey={}\n",
            emu.hub_host_name(),
            symmetric_key.primary_key
        ),
    );
    let config = format!(
        "{}[azure]\nconnection_string_file = {cs_file:?}\nca_file = {:?}\nport = {}\n",
        common_sections(&dir.path().join("state")),
        emu.ca_path(),
        emu.mqtt_port()
    );
    let ctl = emu.control();
    runs(dir.path(), config, "identity: device agent-cs on localhost (configured credentials)", || {
        !rt.block_on(ctl.telemetry("agent-cs", None)).unwrap().is_empty()
    });
}

#[test]
fn azure_x509_device_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let rt = rt();
    let (ca, ca_key) = test_support::generate_ca("agent test CA");
    let (cert, key) = test_support::issue_cert(&ca, &ca_key, "agent-x509", &[], &[], false);
    let thumbprint: String =
        cert.digest(MessageDigest::sha256()).unwrap().iter().map(|b| format!("{b:02X}")).collect();
    let spec = IdentitySpec {
        authentication: Some(Authentication::SelfSigned {
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: Some(thumbprint),
                secondary_thumbprint: None,
            },
        }),
        status: None,
    };
    rt.block_on(emu.control().put_identity("agent-x509", None, &spec)).unwrap();
    let (cert_file, key_file) = (dir.path().join("device.crt"), dir.path().join("device.key"));
    private(&cert_file, &String::from_utf8(cert.to_pem().unwrap()).unwrap());
    private(&key_file, &String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap());
    let config = format!(
        "{}[azure]\nhost_name = {:?}\ndevice_id = \"agent-x509\"\nca_file = {:?}\nport = {}\n[azure.x509]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\n",
        common_sections(&dir.path().join("state")),
        emu.hub_host_name(),
        emu.ca_path(),
        emu.mqtt_port()
    );
    let ctl = emu.control();
    runs(dir.path(), config, "identity: device agent-x509 on localhost (configured credentials)", || {
        !rt.block_on(ctl.telemetry("agent-x509", None)).unwrap().is_empty()
    });
}

#[test]
fn aws_thing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let rt = rt();
    let ctl = emu.control();
    rt.block_on(ctl.aws_create_thing("agent-thing")).unwrap();
    let issued = rt
        .block_on(ctl.aws_create_certificate(&CreateCertificate {
            thing_name: Some("agent-thing".into()),
            ..Default::default()
        }))
        .unwrap();
    let (cert_file, key_file) = (dir.path().join("device.pem.crt"), dir.path().join("private.pem.key"));
    private(&cert_file, &issued.certificate_pem);
    private(&key_file, issued.private_key_pem.as_deref().unwrap());
    let config = format!(
        "{}[aws]\nendpoint = {:?}\nport = {}\nthing_name = \"agent-thing\"\nca_file = {:?}\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\n",
        common_sections(&dir.path().join("state")),
        emu.aws_endpoint(),
        emu.aws_mqtt_port().unwrap(),
        emu.ca_path(),
    );
    runs(dir.path(), config, "identity: device agent-thing on localhost (configured credentials)", || {
        rt.block_on(ctl.aws_telemetry(Some("agent-thing"), None))
            .unwrap()
            .iter()
            .any(|m| m.topic == "dt/agent-thing/telemetry")
    });
}

#[test]
fn azure_connection_string_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let rt = rt();
    let info = rt.block_on(emu.control().create_device("agent-ws")).unwrap();
    let Authentication::Sas { symmetric_key } = info.authentication else { panic!("SAS device") };
    let config = format!(
        "{}[azure]\nconnection_string_env = \"AGENT_TEST_CS\"\ntransport = \"websocket\"\nca_file = {:?}\nport = {}\n",
        common_sections(&dir.path().join("state")),
        emu.ca_path(),
        emu.ws_port().unwrap()
    );
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config).unwrap();
    let cs = format!(
        "HostName={};DeviceId=agent-ws;SharedAccessKey={}",
        emu.hub_host_name(),
        symmetric_key.primary_key
    );
    let mut agent = Agent::start_env(
        &["--config", cfg.to_str().unwrap(), "--telemetry-interval", "200ms"],
        &[("AGENT_TEST_CS", cs.as_str())],
    );
    agent.wait_line("connected", |l| l.starts_with("status: connected device=agent-ws"));
    let ctl = emu.control();
    wait_until(WITHIN, "device stats over wss", || {
        !rt.block_on(ctl.telemetry("agent-ws", None)).unwrap().is_empty()
    });
    // (The port is the emulator's WebSocket listener: plain MQTT/TLS there would fail.)
    let conns = rt.block_on(ctl.connections()).unwrap();
    assert!(conns.iter().any(|c| c.client_id == "agent-ws" && c.auth == "sas"), "{conns:?}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    assert!(!agent.output().contains(&symmetric_key.primary_key));
}

#[test]
fn a_tls_refusal_names_its_reason_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator();
    let cs_file = dir.path().join("cs");
    private(
        &cs_file,
        &format!(
            "HostName={};DeviceId=agent-tls;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0\n",
            emu.hub_host_name()
        ),
    );
    // A CA that did not sign the emulator's certificate.
    let (other_ca, _) = test_support::generate_ca("unrelated CA");
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, other_ca.to_pem().unwrap()).unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[azure]\nconnection_string_file = {cs_file:?}\nca_file = {ca_file:?}\nport = {}\n",
            common_sections(&dir.path().join("state")),
            emu.mqtt_port()
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    let why = "TLS: the server's certificate is not signed by a trusted CA (certificate verify failed: ";
    let warn = agent.wait_line("the connect failed warning", |l| {
        let l = common::strip_ansi(l);
        l.starts_with("E: ") && l.contains("WARN") && l.contains("connect failed") && l.contains(why)
    });
    assert!(!warn.contains("TCP/TLS connect failure"), "{warn}");
    agent.wait_line("the agent's line", |l| l.starts_with("E: connect: ") && l.contains(why));
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    let out = agent.output();
    assert_eq!(out.lines().filter(|l| l.starts_with("E: connect: ")).count(), 1, "once per reason: {out}");
}
