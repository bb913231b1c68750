//! The provisioned identity is cached (0600) and reused on restart without a second DPS
//! registration; when the hub refuses the cached identity the agent provisions again.
//! The emulator runs in the test process, the agent is pointed at it by configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{rt, Agent, ExternalCloud, WITHIN};
use nix::sys::signal::Signal;
use test_support::wait_until;

#[test]
fn identity_is_cached_reused_and_reprovisioned_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cloud = ExternalCloud::start(&rt, dir.path(), "agent-ident");
    let state = dir.path().join("state");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, cloud.config(&state, "[telemetry]\ninterval = \"200ms\"\n")).unwrap();
    let args = ["--config", cfg.to_str().unwrap()];

    // 1. First start: provisions through DPS and caches the identity.
    let mut a = Agent::start(&args);
    a.wait_line("provisioned through DPS", |l| {
        l == "identity: device agent-ident on localhost (provisioned through DPS)"
    });
    a.wait_line("connected", |l| l.starts_with("status: connected device=agent-ident"));
    a.signal(Signal::SIGTERM);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.output());
    let cached = state.join("identity").join("identity.json");
    let mode = std::fs::metadata(&cached).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "identity file mode {mode:o}");
    let id: serde_json::Value = serde_json::from_slice(&std::fs::read(&cached).unwrap()).unwrap();
    assert_eq!(id["device_id"], "agent-ident");
    assert!(!String::from_utf8_lossy(&std::fs::read(&cached).unwrap())
        .contains(&std::fs::read_to_string(&cloud.key_file).unwrap()));

    // 2. Restart with the enrollment disabled: a second DPS registration would be refused,
    // so connecting proves the cached identity was used.
    cloud.set_enrollment(&rt, false);
    let before = rt.block_on(cloud.emu.control().telemetry("agent-ident", None)).unwrap().len();
    let mut a = Agent::start(&args);
    a.wait_line("the cached identity", |l| {
        l == "identity: device agent-ident on localhost (cached identity)"
    });
    a.wait_line("connected", |l| l.starts_with("status: connected device=agent-ident"));
    wait_until(WITHIN, "telemetry after the restart", || {
        rt.block_on(cloud.emu.control().telemetry("agent-ident", None)).unwrap().len() > before
    });
    a.signal(Signal::SIGTERM);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.output());
    assert!(!a.output().contains("provisioned through DPS"), "{}", a.output());

    // 3. The hub forgets the device: the cached identity is refused, the agent provisions
    // again (the enrollment is enabled again) and connects as the re-created device.
    rt.block_on(cloud.emu.control().delete_identity("agent-ident", None)).unwrap();
    cloud.set_enrollment(&rt, true);
    let mut a = Agent::start(&args);
    a.wait_line("the cached identity first", |l| l.ends_with("(cached identity)"));
    a.wait_line("a refusal", |l| l.starts_with("identity: refused by the service"));
    a.wait_line("provisioning again", |l| l.ends_with("(provisioned through DPS)"));
    a.wait_line("connected", |l| l.starts_with("status: connected device=agent-ident"));
    a.signal(Signal::SIGTERM);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.output());
}

#[test]
fn enrollment_group_key_from_the_environment() {
    use connector_emulator::control::api::{Attestation, DeviceStatus, EnrollmentGroup, SymmetricKey};
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cloud = ExternalCloud::start(&rt, dir.path(), "unused-individual");
    let group = EnrollmentGroup {
        attestation: Attestation::SymmetricKey { symmetric_key: SymmetricKey::default() },
        provisioning_status: DeviceStatus::Enabled,
    };
    let created = rt.block_on(cloud.emu.control().put_enrollment_group("agents", &group)).unwrap();
    let Attestation::SymmetricKey { symmetric_key } = created.attestation else { panic!("attestation") };
    let state = dir.path().join("state");
    let cfg = dir.path().join("agent.toml");
    // The individual enrollment's key file is replaced by the group key from a variable.
    let text =
        cloud
            .config(&state, "")
            .replace("registration_id = \"unused-individual\"", "registration_id = \"agent-g1\"")
            .lines()
            .map(|l| {
                if l.starts_with("symmetric_key_file") {
                    "group_key_env = \"AGENT_TEST_GROUP_KEY\""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    std::fs::write(&cfg, text).unwrap();
    let mut a = Agent::start_env(
        &["--config", cfg.to_str().unwrap()],
        &[("AGENT_TEST_GROUP_KEY", symmetric_key.primary_key.as_str())],
    );
    a.wait_line("provisioned through DPS", |l| {
        l == "identity: device agent-g1 on localhost (provisioned through DPS)"
    });
    a.wait_line("connected", |l| l.starts_with("status: connected device=agent-g1"));
    a.signal(Signal::SIGTERM);
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.output());
    assert!(!a.output().contains(&symmetric_key.primary_key), "the group key was printed");
}
