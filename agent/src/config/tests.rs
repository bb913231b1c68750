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

const AWS_ENDPOINT: &str = "[aws]\nendpoint = \"abc-ats.iot.eu-west-1.amazonaws.com\"\nthing_name = \"t\"\n";

#[test]
fn aws_auth_defaults_to_a_certificate_and_alpn_is_chosen_by_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("c.pem");
    std::fs::write(&pem, "x").unwrap();
    let file = dir.path().join("a.toml");
    let toml = format!("{AWS_ENDPOINT}cert_file = {pem:?}\nkey_file = {pem:?}\n");
    let s = load_str(&toml, &file, &base(), &Overrides::default()).unwrap();
    let Cloud::Aws(a) = &s.cloud else { panic!("{:?}", s.cloud) };
    assert!(matches!(a.auth, AwsAuth::Certificate { .. }) && !a.alpn);
    assert!(s.describe().contains("certificate of thing t;"), "{}", s.describe());
    let mut e = base();
    e.push(("CONNECTOR_AGENT_AWS_AUTH".into(), "certificate-alpn".into()));
    let s = load_str(&toml, &file, &e, &Overrides::default()).unwrap();
    let Cloud::Aws(a) = &s.cloud else { panic!("{:?}", s.cloud) };
    assert!(matches!(a.auth, AwsAuth::Certificate { .. }) && a.alpn);
    assert!(s.describe().contains("(ALPN x-amzn-mqtt-ca on 443)"), "{}", s.describe());
    // The error of an environment value names the variable.
    let mut e = base();
    e.push(("CONNECTOR_AGENT_AWS_AUTH".into(), "kerberos".into()));
    let err = load_str(&toml, &file, &e, &Overrides::default()).unwrap_err();
    assert_eq!(err.key(), Some("aws.auth"));
    assert!(err.to_string().contains("environment variable CONNECTOR_AGENT_AWS_AUTH"), "{err}");
}

#[test]
fn aws_sigv4_sources_region_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.toml");
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
    let token = "FwoGZXIvYXdzSESSIONTOKEN";
    let (sf, tf) = (dir.path().join("secret"), dir.path().join("token"));
    std::fs::write(&sf, format!("{secret}\n")).unwrap();
    std::fs::write(&tf, token).unwrap();
    // Files, with everything from environment overrides and the region from the endpoint.
    let mut e = base();
    e.extend(env(&[
        ("CONNECTOR_AGENT_AWS_AUTH", "sigv4"),
        ("CONNECTOR_AGENT_AWS_SIGV4_SOURCE", "files"),
        ("CONNECTOR_AGENT_AWS_SIGV4_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("CONNECTOR_AGENT_AWS_SIGV4_SECRET_ACCESS_KEY_FILE", sf.to_str().unwrap()),
        ("CONNECTOR_AGENT_AWS_SIGV4_SESSION_TOKEN_FILE", tf.to_str().unwrap()),
    ]));
    let s = load_str(AWS_ENDPOINT, &file, &e, &Overrides::default()).unwrap();
    let Cloud::Aws(a) = &s.cloud else { panic!("{:?}", s.cloud) };
    let AwsAuth::SigV4(v) = &a.auth else { panic!("{:?}", a.auth) };
    assert_eq!(v.region, "eu-west-1");
    let AwsCredentialsSetting::Files(c) = &v.credentials else { panic!("{:?}", v.credentials) };
    assert_eq!((c.access_key_id(), c.secret_access_key().expose()), ("AKIAEXAMPLE", secret));
    assert_eq!(c.session_token().map(|t| t.expose()), Some(token));
    let (dbg, described) = (format!("{s:?}"), s.describe());
    for text in [&dbg, &described] {
        assert!(!text.contains(secret) && !text.contains(token) && !text.contains("SECRETKEY"), "{text}");
    }
    assert!(described.contains("SigV4 over WebSocket as thing t, region eu-west-1, credentials from files (access key id AKIAEXAMPLE)"), "{described}");

    // The environment source reads AWS_* when the configuration is loaded.
    let toml = format!(
        "{AWS_ENDPOINT}auth = \"sigv4\"\n[aws.sigv4]\nregion = \"us-east-2\"\nsource = \"environment\"\n"
    );
    let err = load_str(&toml, &file, &base(), &Overrides::default()).unwrap_err();
    assert_eq!(err.key(), Some("aws.sigv4.source"));
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
    let mut e = base();
    e.extend(env(&[("AWS_ACCESS_KEY_ID", "AKIAENV"), ("AWS_SECRET_ACCESS_KEY", secret)]));
    let s = load_str(&toml, &file, &e, &Overrides::default()).unwrap();
    let Cloud::Aws(a) = &s.cloud else { panic!("{:?}", s.cloud) };
    let AwsAuth::SigV4(v) = &a.auth else { panic!("{:?}", a.auth) };
    assert_eq!(v.region, "us-east-2");
    assert!(matches!(v.credentials, AwsCredentialsSetting::Environment));
    assert!(matches!(v.credentials.source(), connector_aws::CredentialsSource::Environment));

    // A profile of a named file.
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!("[dev]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let toml = format!("{AWS_ENDPOINT}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"profile\"\nprofile = \"dev\"\ncredentials_file = {creds:?}\n");
    let s = load_str(&toml, &file, &base(), &Overrides::default()).unwrap();
    assert!(s.describe().contains(&format!("profile dev of {}", creds.display())), "{}", s.describe());
    let toml = toml.replace("\"dev\"", "\"prod\"");
    let err = load_str(&toml, &file, &base(), &Overrides::default()).unwrap_err();
    assert_eq!(err.key(), Some("aws.sigv4.credentials_file"));
    assert!(
        err.to_string().contains("profile `prod` not found") && !err.to_string().contains(secret),
        "{err}"
    );
}

#[test]
fn aws_custom_authorizer_secrets_stay_out_of_debug_and_description() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.toml");
    let (token, password, signature) = ("tok-SECRET-1", "pw-SECRET-2", "c2lnLVNFQ1JFVC0z");
    let (pf, sigf) = (dir.path().join("pw"), dir.path().join("sig"));
    std::fs::write(&pf, password).unwrap();
    std::fs::write(&sigf, signature).unwrap();
    let toml = format!(
        "{AWS_ENDPOINT}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\nauthorizer_name = \"my-auth\"\ntoken_env = \"MY_TOKEN\"\ntoken_key_name = \"token\"\nsignature_file = {sigf:?}\nusername = \"dev\"\npassword_file = {pf:?}\ntransport = \"websocket\"\n"
    );
    let mut e = base();
    e.push(("MY_TOKEN".into(), token.into()));
    let s = load_str(&toml, &file, &e, &Overrides::default()).unwrap();
    let Cloud::Aws(a) = &s.cloud else { panic!("{:?}", s.cloud) };
    let AwsAuth::CustomAuthorizer(c) = &a.auth else { panic!("{:?}", a.auth) };
    assert_eq!(c.authorizer.as_deref(), Some("my-auth"));
    assert_eq!(c.token.as_ref().map(|(k, t)| (k.as_str(), t.expose())), Some(("token", token)));
    assert_eq!(c.signature.as_ref().map(|s| s.expose()), Some(signature));
    assert_eq!(c.password.as_ref().map(|p| p.expose()), Some(password));
    assert_eq!(c.transport, connector_aws::CustomAuthTransport::WebSocket);
    let (dbg, described) = (format!("{s:?}"), s.describe());
    for text in [&dbg, &described] {
        assert!(!text.contains("SECRET") && !text.contains(signature), "{text}");
    }
    assert!(
        described.contains("custom authorizer my-auth over WebSocket as thing t, token token, signed"),
        "{described}"
    );
    // A signature without the token it signs.
    let toml = format!("{AWS_ENDPOINT}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\nusername = \"dev\"\nsignature_file = {sigf:?}\n");
    let err = load_str(&toml, &file, &base(), &Overrides::default()).unwrap_err();
    assert_eq!(err.key(), Some("aws.custom_authorizer.signature_file"), "{err}");
    assert!(!err.to_string().contains(signature), "{err}");
}

#[test]
fn named_shadows_default_their_files_beside_the_classic_pair_and_need_aws() {
    let file = Path::new("agent.toml");
    let shadows = "[[state.named_shadows]]\nname = \"config\"\n[[state.named_shadows]]\nname = \"fw:ota_1\"\ndesired_file = \"/etc/fw.json\"\nreported_file = \"/run/fw-reported.json\"\n";
    let toml = format!("[agent]\nstate_dir = \"/s\"\n[cloud]\nprovider = \"aws\"\n{shadows}");
    let s = load_str(&toml, file, &base(), &Overrides::default()).unwrap();
    let want = [
        ("config", "/s/shadow-config.desired.json", "/s/shadow-config.reported.json"),
        ("fw:ota_1", "/etc/fw.json", "/run/fw-reported.json"),
    ];
    let got: Vec<_> = s
        .state
        .named_shadows
        .iter()
        .map(|n| (n.name.as_str(), n.desired_file.to_str().unwrap(), n.reported_file.to_str().unwrap()))
        .collect();
    assert_eq!(got, want);
    assert!(s.describe().contains("; named shadows config, fw:ota_1;"), "{}", s.describe());
    // None by default; refused on Azure (the embedded default too), whatever the origin.
    assert!(load(None, &base(), &Overrides::default()).unwrap().state.named_shadows.is_empty());
    let err =
        load_str(&format!("[agent]\nstate_dir = \"/s\"\n{shadows}"), file, &base(), &Overrides::default())
            .unwrap_err();
    assert_eq!(err.key(), Some("state.named_shadows"));
    assert!(err.to_string().contains("the embedded azure emulator"), "{err}");
    let o = Overrides { cloud: Some("azure".into()), ..Overrides::default() };
    let err = load_str(&toml, file, &base(), &o).unwrap_err();
    assert_eq!(err.key(), Some("state.named_shadows"));
    // Lists of tables have no environment variable.
    let mut e = base();
    e.push(("CONNECTOR_AGENT_STATE_NAMED_SHADOWS".into(), "config".into()));
    assert!(matches!(load(None, &e, &Overrides::default()), Err(ConfigError::UnknownEnv { .. })));
    assert!(!ENV_KEYS.iter().any(|(k, _)| k.starts_with("state.named_shadows")));
}

#[test]
fn aws_topic_aliases_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("c.pem");
    std::fs::write(&pem, "x").unwrap();
    let file = dir.path().join("a.toml");
    let toml = format!("{AWS_ENDPOINT}cert_file = {pem:?}\nkey_file = {pem:?}\n");
    let aliases = |s: &Settings| match &s.cloud {
        Cloud::Aws(a) => a.topic_aliases,
        other => panic!("{other:?}"),
    };
    let s = load_str(&toml, &file, &base(), &Overrides::default()).unwrap();
    assert_eq!(aliases(&s), 0, "off by default");
    assert!(!s.describe().contains("topic aliases"), "{}", s.describe());
    let s = load_str(&format!("{toml}topic_aliases = 16\n"), &file, &base(), &Overrides::default()).unwrap();
    assert_eq!(aliases(&s), 16);
    assert!(s.describe().contains("certificate of thing t, up to 16 topic aliases;"), "{}", s.describe());
    let mut e = base();
    e.push(("CONNECTOR_AGENT_AWS_TOPIC_ALIASES".into(), "65535".into()));
    assert_eq!(aliases(&load_str(&toml, &file, &e, &Overrides::default()).unwrap()), 65535);
    for bad in ["65536", "-1"] {
        let mut e = base();
        e.push(("CONNECTOR_AGENT_AWS_TOPIC_ALIASES".into(), bad.into()));
        let err = load_str(&toml, &file, &e, &Overrides::default()).unwrap_err();
        assert_eq!(err.key(), Some("aws.topic_aliases"));
        let msg = err.to_string();
        assert!(
            msg.contains("environment variable CONNECTOR_AGENT_AWS_TOPIC_ALIASES")
                && msg.contains("from 0 (off) to 65535"),
            "{msg}"
        );
    }
}

#[test]
fn connection_and_expiry_settings_with_their_defaults_and_bounds() {
    let file = Path::new("agent.toml");
    let load = |toml: &str, e: &[(String, String)]| load_str(toml, file, e, &Overrides::default());
    let s = load("", &base()).unwrap();
    assert_eq!(s.store.expiry, None, "no expiry unless asked for");
    assert_eq!(s.connection.stall, Some(connector_actors::StallPolicy::default()));
    assert_eq!(s.connection.ack_timeout, Duration::from_secs(60));
    assert_eq!(s.connection.backoff, connector_core::BackoffPolicy::default());

    let toml = "[store]\nexpiry = \"1h\"\n[connection]\nstall_threshold = \"2s\"\nprobe_timeout = \"500ms\"\nbackoff_min = \"100ms\"\nbackoff_max = \"5s\"\n";
    let s = load(toml, &base()).unwrap();
    assert_eq!(s.store.expiry, Some(Duration::from_secs(3600)));
    let stall = s.connection.stall.unwrap();
    assert_eq!((stall.threshold, stall.probe_timeout), (Duration::from_secs(2), Duration::from_millis(500)));
    assert_eq!(
        (s.connection.backoff.min, s.connection.backoff.max),
        (Duration::from_millis(100), Duration::from_secs(5))
    );

    let mut e = base();
    e.extend(env(&[("CONNECTOR_AGENT_CONNECTION_STALL_WATCHDOG", "false")]));
    assert_eq!(load("", &e).unwrap().connection.stall, None);

    use connector_actors::transport::TransportKind;
    assert_eq!(s.connection.transport, None, "the library's default unless named");
    let s = load("[connection]\ntransport = \"paho\"\n", &base()).unwrap();
    assert_eq!(s.connection.transport, Some(TransportKind::Paho));
    let mut e = base();
    e.extend(env(&[("CONNECTOR_AGENT_CONNECTION_TRANSPORT", "native")]));
    assert_eq!(load("", &e).unwrap().connection.transport, Some(TransportKind::Native));

    for (toml, key) in [
        ("[store]\nexpiry = \"0s\"\n", "store.expiry"),
        ("[connection]\nstall_threshold = 0\n", "connection.stall_threshold"),
        ("[connection]\nprobe_timeout = \"0ms\"\n", "connection.probe_timeout"),
        ("[connection]\nbackoff_min = \"10s\"\nbackoff_max = \"1s\"\n", "connection.backoff_max"),
        ("[connection]\nstall = \"1s\"\n", "stall"),
        ("[connection]\ntransport = \"rumqttc\"\n", "connection.transport"),
    ] {
        let msg = load(toml, &base()).unwrap_err().to_string();
        assert!(msg.contains(key), "{toml}: {msg}");
    }
}

#[test]
fn proxies_are_checked_and_their_credentials_stay_out_of_debug_errors_and_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("c.pem");
    std::fs::write(&pem, "x").unwrap();
    let file = dir.path().join("a.toml");
    let aws =
        |proxy: &str| format!("{AWS_ENDPOINT}cert_file = {pem:?}\nkey_file = {pem:?}\nproxy = {proxy:?}\n");
    for url in ["http://u:pr0xy-pw@proxy:3128", "socks5://u:pr0xy-pw@10.0.0.1:1080", "SOCKS5H://proxy:1080"] {
        let s = load_str(&aws(url), &file, &base(), &Overrides::default()).unwrap();
        let Cloud::Aws(a) = &s.cloud else { panic!("{:?}", s.cloud) };
        assert_eq!(a.proxy.as_ref().map(|p| p.expose()), Some(url));
        let (dbg, described) = (format!("{s:?}"), s.describe());
        assert!(!dbg.contains("pr0xy-pw") && !described.contains("pr0xy-pw"), "{dbg}\n{described}");
        assert!(described.contains(", through proxy "), "{described}");
    }
    for (url, why) in [
        ("ftp://u:pr0xy-pw@proxy:21", "scheme `ftp`"),
        ("u:pr0xy-pw@proxy:3128", "expected http://"),
        ("http://u:pr0xy-pw@proxy", "no host:port"),
        ("socks5://u:pr0xy-pw@:1080", "no host:port"),
        ("http://proxy:0", "no host:port"),
    ] {
        let err = load_str(&aws(url), &file, &base(), &Overrides::default()).unwrap_err();
        assert_eq!(err.key(), Some("aws.proxy"), "{url}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(why) && !msg.contains("pr0xy-pw"), "{url}: {msg}");
    }
    // Azure, from the environment.
    let cs = dir.path().join("cs");
    std::fs::write(&cs, "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0")
        .unwrap();
    let toml = format!("[azure]\nconnection_string_file = {cs:?}\n");
    let mut e = base();
    e.push(("CONNECTOR_AGENT_AZURE_PROXY".into(), "http://me:pr0xy-pw@proxy:3128".into()));
    let s = load_str(&toml, &file, &e, &Overrides::default()).unwrap();
    let Cloud::Azure(a) = &s.cloud else { panic!("{:?}", s.cloud) };
    assert_eq!(a.proxy.as_ref().map(|p| p.expose()), Some("http://me:pr0xy-pw@proxy:3128"));
    assert!(
        s.describe().contains("connection string, through proxy http://<redacted>@proxy:3128;"),
        "{}",
        s.describe()
    );
    // SOCKS5 and a paho transport chosen in the file: refused when loaded, not at connect.
    let toml = format!("{}[connection]\ntransport = \"paho\"\n", aws("socks5://u:pr0xy-pw@proxy:1080"));
    let err = load_str(&toml, &file, &base(), &Overrides::default()).unwrap_err();
    assert_eq!(err.key(), Some("aws.proxy"), "{err}");
    assert!(
        err.to_string().contains("needs the native transport") && !err.to_string().contains("pr0xy-pw"),
        "{err}"
    );
    let toml = format!("{}[connection]\ntransport = \"paho\"\n", aws("http://u:pr0xy-pw@proxy:3128"));
    assert!(load_str(&toml, &file, &base(), &Overrides::default()).is_ok());
}
