//! Unit tests of loading and validation.
#![allow(clippy::unwrap_used)]
use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn base() -> Vec<(String, String)> {
    env(&[("HOME", "/home/x")])
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
    assert!(parse_duration("ten").unwrap_err().contains("invalid duration"));
    assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("").is_err());
}

#[test]
fn durations_as_integers_are_bounded_like_strings() {
    let file = Path::new("agent.toml");
    let load = |toml: &str| load_str(toml, file, &base(), &Overrides::default());
    let s = load("[agent]\nshutdown_timeout = 1000000000\n").unwrap();
    assert_eq!(s.shutdown_timeout, Duration::from_secs(MAX_DURATION_SECS));
    // Longer would overflow `Instant::now() + timeout` (a panic at shutdown, or when fleet
    // provisioning starts): refused like the same value written as a string.
    for toml in [
        "[agent]\nshutdown_timeout = 9223372036854775807\n",
        "[agent]\nshutdown_timeout = \"9223372036854775807s\"\n",
        "[aws]\nendpoint = \"e\"\n[aws.fleet_provisioning]\ntimeout = 1000000001\n",
    ] {
        let err = load(toml).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }) && msg.contains("out of range"), "{toml}: {msg}");
    }
}

#[test]
fn no_configuration_is_the_embedded_azure_default() {
    let s = load(None, &base(), &Overrides::default()).unwrap();
    let Cloud::Embedded(e) = &s.cloud else { panic!("{:?}", s.cloud) };
    assert_eq!(e.flavour, CloudKind::Azure);
    assert_eq!(e.device_id, "connector-agent");
    assert!(s.state_dir.ends_with("connector-agent"));
    assert_eq!(s.store.drop_policy, DropPolicy::Oldest);
    assert_eq!(s.metrics, Some("127.0.0.1:9898".parse().unwrap()));
    let o = Overrides { cloud: Some("aws".into()), ..Overrides::default() };
    assert_eq!(load(None, &base(), &o).unwrap().cloud.kind(), CloudKind::Aws);
}

#[test]
fn environment_and_flags_override_in_order() {
    let mut e = base();
    e.extend(env(&[
        ("CONNECTOR_AGENT_TELEMETRY_INTERVAL", "3s"),
        ("CONNECTOR_AGENT_LOGGING_LEVEL", "debug"),
        ("CONNECTOR_AGENT_HANDLERS_ALLOW", "a, b"),
        ("CONNECTOR_AGENT_HANDLERS_DIR", "/h"),
        ("CONNECTOR_AGENT_STORE_MAX_MESSAGES", "5"),
    ]));
    let o = Overrides {
        log_level: Some("warn".into()),
        metrics_addr: Some("off".into()),
        ..Overrides::default()
    };
    let s = load(None, &e, &o).unwrap();
    assert_eq!(s.telemetry.interval, Duration::from_secs(3));
    assert_eq!(s.logging.level, "warn");
    assert_eq!(s.handlers.allow, vec!["a", "b"]);
    assert_eq!(s.store.max_messages, 5);
    assert_eq!(s.metrics, None);
}

#[test]
fn errors_name_the_source_and_key() {
    let mut e = base();
    e.push(("CONNECTOR_AGENT_TELEMETRY_INTERVAL".into(), "soon".into()));
    let err = load(None, &e, &Overrides::default()).unwrap_err();
    assert_eq!(err.key(), Some("telemetry.interval"));
    let msg = err.to_string();
    assert!(msg.contains("CONNECTOR_AGENT_TELEMETRY_INTERVAL") && msg.contains("invalid duration"), "{msg}");

    let mut e = base();
    e.push(("CONNECTOR_AGENT_TELEMETRY_INTERVALL".into(), "1s".into()));
    assert!(matches!(load(None, &e, &Overrides::default()), Err(ConfigError::UnknownEnv { .. })));

    let o = Overrides { cloud: Some("gcp".into()), ..Overrides::default() };
    let msg = load(None, &base(), &o).unwrap_err().to_string();
    assert!(msg.contains("flag --cloud") && msg.contains("cloud.provider"), "{msg}");
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cs = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0";
    let csf = dir.path().join("cs");
    std::fs::write(&csf, cs).unwrap();
    let file = dir.path().join("a.toml");
    std::fs::write(&file, format!("[azure]\nconnection_string_file = {:?}\n", csf)).unwrap();
    let s = load(Some(&file), &base(), &Overrides::default()).unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("c2VjcmV0") && dbg.contains("redacted"), "{dbg}");
    // A connection string that does not parse: the error names the key, not the value.
    std::fs::write(&csf, "HostName=h;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0").unwrap();
    let msg = load(Some(&file), &base(), &Overrides::default()).unwrap_err().to_string();
    assert!(msg.contains("azure.connection_string_file") && !msg.contains("c2VjcmV0"), "{msg}");
}
