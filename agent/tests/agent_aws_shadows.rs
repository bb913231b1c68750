//! AWS named shadows (`[[state.named_shadows]]`) and MQTT 5 topic aliases
//! (`aws.topic_aliases`): each named shadow's desired state reaches its own file and its
//! reported file reaches that shadow, beside the classic shadow and without mixing them;
//! a named shadow catches up on what changed while the agent was down by fetching the
//! whole document; with topic aliases the telemetry still arrives, its PUBLISHes carrying
//! an alias.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{http_get, parse_prometheus, rt, sample, Agent, WITHIN};
use connector_emulator::control::aws_api::CreateCertificate;
use connector_emulator::{ControlClient, Emulator, EmulatorConfig, EmulatorHandle};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use test_support::wait_until;

/// The embedded emulator's thing (the agent's default device id).
const THING: &str = "connector-agent";

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Waits until `path` holds exactly `want`.
fn wait_file(path: &Path, want: &Value) {
    let mut last = None;
    wait_until(WITHIN, &format!("{} to hold {want}", path.display()), || {
        last = read_json(path);
        last.as_ref() == Some(want)
    });
}

/// The reported section of a shadow (`None` while it does not exist).
fn reported(
    rt: &tokio::runtime::Runtime,
    ctl: &ControlClient,
    thing: &str,
    shadow: Option<&str>,
) -> Option<Value> {
    rt.block_on(ctl.aws_shadow(thing, shadow)).ok().and_then(|s| s.pointer("/state/reported").cloned())
}

/// Waits until the broker granted the agent's subscriptions to the update topics of every
/// document in `shadows` (so that a desired change made now is delivered, not missed).
fn wait_subscribed(rt: &tokio::runtime::Runtime, ctl: &ControlClient, thing: &str, shadows: &[Option<&str>]) {
    let prefixes: Vec<String> = shadows
        .iter()
        .map(|s| match s {
            Some(name) => format!("$aws/things/{thing}/shadow/name/{name}/update/"),
            None => format!("$aws/things/{thing}/shadow/update/"),
        })
        .collect();
    wait_until(WITHIN, &format!("subscriptions of {prefixes:?}"), || {
        rt.block_on(ctl.aws_connections()).unwrap().iter().any(|c| {
            c.client_id == thing
                && prefixes.iter().all(|p| c.subscriptions.iter().any(|f| f.starts_with(p.as_str())))
        })
    });
}

#[test]
fn named_shadows_sync_beside_the_classic_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (fw_desired, fw_reported) = (dir.path().join("fw-desired.json"), dir.path().join("fw-reported.json"));
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = {state:?}\nstatus_interval = \"300ms\"\n[cloud]\nprovider = \"aws\"\n[logging]\nlevel = \"warn\"\n\
             [state]\npoll_interval = \"100ms\"\n\
             [[state.named_shadows]]\nname = \"config\"\n\
             [[state.named_shadows]]\nname = \"fw\"\ndesired_file = {fw_desired:?}\nreported_file = {fw_reported:?}\n"
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap(), "--metrics-addr", "127.0.0.1:0"]);
    let url = agent.wait_value("emulator: control API ");
    let ctl = ControlClient::new(url.split(',').next().unwrap()).unwrap();
    let metrics = agent.wait_value("metrics: http://");
    let metrics_addr = metrics.trim_end_matches("/metrics").to_owned();
    agent.wait_line("connected", |l| l.starts_with("status: connected device=connector-agent"));
    let rt = rt();
    wait_subscribed(&rt, &ctl, THING, &[None, Some("config"), Some("fw")]);

    // Desired: each document to its own file (default names in the state directory for
    // `config`), `$version`/`$metadata` stripped, nothing of one in another.
    rt.block_on(ctl.aws_update_desired(THING, Some("config"), json!({"interval": 5, "mode": "eco"})))
        .unwrap();
    rt.block_on(ctl.aws_update_desired(THING, None, json!({"led": "on"}))).unwrap();
    rt.block_on(ctl.aws_update_desired(THING, Some("fw"), json!({"version": "2.1"}))).unwrap();
    let config_desired = state.join("shadow-config.desired.json");
    wait_file(&config_desired, &json!({"interval": 5, "mode": "eco"}));
    wait_file(&state.join("desired.json"), &json!({"led": "on"}));
    wait_file(&fw_desired, &json!({"version": "2.1"}));
    agent.wait_line("the named shadow's desired line", |l| {
        l.starts_with("desired (shadow config): v") && l.ends_with(&config_desired.display().to_string())
    });

    // Reported: each file to its own document.
    std::fs::write(state.join("shadow-config.reported.json"), r#"{"interval":5,"mode":"eco","uptime":1}"#)
        .unwrap();
    std::fs::write(state.join("reported.json"), r#"{"led":"on"}"#).unwrap();
    std::fs::write(&fw_reported, r#"{"version":"2.1"}"#).unwrap();
    wait_until(WITHIN, "the config file in the config shadow", || {
        reported(&rt, &ctl, THING, Some("config"))
            .is_some_and(|r| r["uptime"] == 1 && r["mode"] == "eco" && r["interval"] == 5)
    });
    wait_until(WITHIN, "the fw file in the fw shadow", || {
        reported(&rt, &ctl, THING, Some("fw")).is_some_and(|r| r["version"] == "2.1")
    });
    wait_until(WITHIN, "the classic file in the classic shadow", || {
        reported(&rt, &ctl, THING, None).is_some_and(|r| r["led"] == "on")
    });
    let classic = reported(&rt, &ctl, THING, None).unwrap();
    assert!(classic.get("uptime").is_none() && classic.get("version").is_none(), "{classic}");
    let config = reported(&rt, &ctl, THING, Some("config")).unwrap();
    assert!(config.get("led").is_none() && config.get("version").is_none(), "{config}");

    // A key removed from the named reported file is removed from the shadow (reported null).
    std::fs::write(state.join("shadow-config.reported.json"), r#"{"interval":5,"mode":"eco"}"#).unwrap();
    wait_until(WITHIN, "uptime removed from the config shadow", || {
        reported(&rt, &ctl, THING, Some("config"))
            .is_some_and(|r| r.get("uptime").is_none() && r["mode"] == "eco")
    });

    // Metrics: one `shadow` label value per document (empty for the classic one). A report
    // is counted when the agent reads the service's answer, which may come after the shadow
    // already shows the change: wait for the counts rather than read them once.
    let counted = |body: &str| {
        let samples = parse_prometheus(body);
        let count = |shadow: &str, direction: &str| {
            sample(
                &samples,
                "connector_agent_state_sync_total",
                &[("shadow", shadow), ("direction", direction), ("outcome", "ok")],
            )
            .unwrap_or(0.0)
        };
        count("config", "reported") >= 2.0
            && count("config", "desired") >= 1.0
            && count("fw", "desired") >= 1.0
            && count("fw", "reported") >= 1.0
            && count("", "desired") >= 1.0
            && count("", "reported") >= 1.0
    };
    wait_until(WITHIN, "every document's sync counted under its own shadow label", || {
        let (code, body) = http_get(&metrics_addr, "/metrics");
        code == 200 && counted(&body)
    });

    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}

/// An emulator in the test process (it outlives the agent) with thing `thing` and its
/// certificate; returns it and the configuration text for an agent on that certificate.
fn external(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    thing: &str,
    extra_aws: &str,
    tail: &str,
) -> (EmulatorHandle, String) {
    let mut cfg = EmulatorConfig::ephemeral();
    cfg.ws_port = None;
    cfg.aws_port = None;
    let emu = Emulator::start(cfg).unwrap();
    let ctl = emu.control();
    rt.block_on(ctl.aws_create_thing(thing)).unwrap();
    let issued = rt
        .block_on(ctl.aws_create_certificate(&CreateCertificate {
            thing_name: Some(thing.into()),
            ..Default::default()
        }))
        .unwrap();
    let (cert, key) = (dir.join("device.pem.crt"), dir.join("private.pem.key"));
    std::fs::write(&cert, &issued.certificate_pem).unwrap();
    std::fs::write(&key, issued.private_key_pem.unwrap()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "[agent]\nstate_dir = {state:?}\nstatus_interval = \"300ms\"\n\
         [aws]\nendpoint = {endpoint:?}\nport = {port}\nthing_name = {thing:?}\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}\n{extra_aws}\
         [metrics]\nenabled = false\n[logging]\nlevel = \"warn\"\n{tail}",
        state = dir.join("state"),
        endpoint = emu.aws_endpoint(),
        port = emu.aws_mqtt_port().unwrap(),
        ca = emu.ca_path(),
    );
    (emu, text)
}

#[test]
fn a_named_shadow_catches_up_on_the_whole_document_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let thing = "shadows-dev-1";
    let (emu, text) = external(
        dir.path(),
        &rt,
        thing,
        "",
        "[state]\npoll_interval = \"100ms\"\n[[state.named_shadows]]\nname = \"config\"\n",
    );
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, text).unwrap();
    let ctl = emu.control();
    let desired_file = dir.path().join("state/shadow-config.desired.json");

    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    agent.wait_line("connected", |l| l.starts_with(&format!("status: connected device={thing}")));
    wait_subscribed(&rt, &ctl, thing, &[Some("config")]);
    rt.block_on(ctl.aws_update_desired(thing, Some("config"), json!({"a": 1, "b": 2}))).unwrap();
    wait_file(&desired_file, &json!({"a": 1, "b": 2}));
    std::fs::write(dir.path().join("state/shadow-config.reported.json"), r#"{"a":1}"#).unwrap();
    wait_until(WITHIN, "the reported file in the config shadow", || {
        reported(&rt, &ctl, thing, Some("config")).is_some_and(|r| r["a"] == 1)
    });
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());

    // While the agent is down, `b` is removed and `c` added. The delta the catch-up
    // delivers is only `{"c":3}` (reported has `a`, and deletions are no delta): the file
    // loses `b` only because the agent fetches the whole document.
    rt.block_on(ctl.aws_update_desired(thing, Some("config"), json!({"b": null, "c": 3}))).unwrap();
    let delta = rt.block_on(ctl.aws_shadow(thing, Some("config"))).unwrap();
    assert_eq!(delta.pointer("/state/delta"), Some(&json!({"c": 3})), "{delta}");
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    agent.wait_line("connected", |l| l.starts_with(&format!("status: connected device={thing}")));
    wait_file(&desired_file, &json!({"a": 1, "c": 3}));
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}

#[test]
fn telemetry_with_topic_aliases_arrives_aliased() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let thing = "aliases-dev-1";
    let (emu, text) = external(dir.path(), &rt, thing, "topic_aliases = 8\n", "");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, text).unwrap();
    let (code, out) = common::run_to_end(&["--check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("certificate of thing {thing}, up to 8 topic aliases;")), "{out}");

    let ctl = emu.control();
    let mut agent = Agent::start(&["--config", cfg.to_str().unwrap(), "--telemetry-interval", "200ms"]);
    agent.wait_line("connected", |l| l.starts_with(&format!("status: connected device={thing}")));
    // The first PUBLISH on a topic carries it with a new alias, the next ones the alias
    // alone (the emulator resolves the topic either way).
    let topic = format!("dt/{thing}/telemetry");
    let mut aliased = Vec::new();
    wait_until(WITHIN, "device stats published with a topic alias", || {
        aliased = rt
            .block_on(ctl.aws_telemetry(Some(thing), None))
            .unwrap()
            .into_iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.topic_alias)
            .collect();
        aliased.iter().filter(|a| a.is_some()).count() >= 3
    });
    assert!(aliased.iter().all(Option::is_some), "every device-stats PUBLISH carried an alias: {aliased:?}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}
