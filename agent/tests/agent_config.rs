//! Bad configurations are refused up front: the binary exits 2 with a message naming the
//! source (file, environment variable or flag), the key and the reason, and never a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::run_to_end;

/// A connection-string key that must never be printed.
const SECRET: &str = "c2VjcmV0LWtleS1uZXZlci1wcmludGVkLTEyMzQ=";

/// The start of an `[aws]` section the AWS cases complete.
const AWS: &str = "[aws]\nendpoint = \"abc-ats.iot.eu-west-1.amazonaws.com\"\nthing_name = \"t\"\n";

/// The embedded AWS flavour and the start of a `[[state.named_shadows]]` entry.
const AWS_SHADOWS: &str = "[cloud]\nprovider = \"aws\"\n[[state.named_shadows]]\n";
/// One more `[[state.named_shadows]]` entry.
const SHADOW: &str = "[[state.named_shadows]]\n";

#[test]
fn bad_files_are_named_errors_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("cs");
    std::fs::write(&secret_file, format!("HostName=hub.example;SharedAccessKey={SECRET}")).unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "not base64 !!").unwrap();
    let cs = format!("{secret_file:?}");
    let good_cs_file = dir.path().join("good-cs");
    std::fs::write(&good_cs_file, format!("HostName=hub.example;DeviceId=d;SharedAccessKey={SECRET}"))
        .unwrap();
    let good_cs = format!("{good_cs_file:?}");
    let key = format!("{key_file:?}");
    // (file body, key named, words of the reason)
    let table: Vec<(String, &str, &str)> = vec![
        ("[telemetry\ninterval = 1".into(), "", "not valid TOML"),
        ("[telemetry]\nintervall = \"1s\"\n".into(), "telemetry", "unknown field `intervall`"),
        ("[telemetry]\ninterval = \"soon\"\n".into(), "telemetry.interval", "invalid duration"),
        ("[telemetry]\ninterval = \"10ms\"\n".into(), "telemetry.interval", "at least 100ms"),
        ("[store]\nmax_messages = \"many\"\n".into(), "store.max_messages", "invalid type"),
        ("[store]\ndrop_policy = \"random\"\n".into(), "store.drop_policy", "expected `oldest` or `newest`"),
        ("[store]\nmax_bytes = 10\n".into(), "store.max_bytes", "at least 1024"),
        ("[cloud]\nprovider = \"gcp\"\n".into(), "cloud.provider", "unknown provider"),
        ("[metrics]\naddr = \"localhost\"\n".into(), "metrics.addr", "not an address:port"),
        ("[logging]\nlevel = \"info,=[\"\n".into(), "logging.level", ""),
        ("[ingest]\nbatch_max_messages = 0\n".into(), "ingest.batch_max_messages", "at least 1"),
        ("[ingest]\nidle_timeout = \"10ms\"\n".into(), "ingest.idle_timeout", "at least 100ms"),
        ("[ingest]\nsocket = \"/tmp\"\n".into(), "ingest.socket", "/tmp exists and is a directory"),
        (format!("[ingest]\nsocket = {cs}\n"), "ingest.socket", "exists and is not a socket"),
        (
            "[ingest]\nsocket = \"/nonexistent-4711/ingest.sock\"\n".into(),
            "ingest.socket",
            "directory /nonexistent-4711 does not exist",
        ),
        (format!("[ingest]\nsocket = \"{}/x.sock\"\n", secret_file.display()), "ingest.socket", "is not a directory"),
        ("[ingest]\npartial_line_timeout = 0\n".into(), "ingest.partial_line_timeout", "at least 100ms"),
        ("[handlers]\nallow = [\"reboot\"]\n".into(), "handlers.dir", "missing"),
        ("[handlers]\ndir = \"/tmp\"\nallow = [\"../bin/sh\"]\n".into(), "handlers.allow", "not a plain file name"),
        ("[handlers]\ndir = \"/tmp\"\nrun_as = \"no-such-user-4711\"\n".into(), "handlers.run_as", "no such user"),
        ("[state]\ndesired_file = \"/tmp/x.json\"\nreported_file = \"/tmp/x.json\"\n".into(), "state.reported_file", "must differ"),
        ("[azure]\n".into(), "azure", "no credentials"),
        ("[azure]\nconnection_string_file = \"/nonexistent/cs\"\n".into(), "azure.connection_string_file", "cannot read"),
        (format!("[azure]\nconnection_string_file = {cs}\n"), "azure.connection_string_file", "not a device connection string"),
        (
            format!("[azure]\nconnection_string_file = {cs}\n[azure.dps]\nid_scope = \"0ne0\"\nregistration_id = \"r\"\nsymmetric_key_file = {key}\n"),
            "azure.dps",
            "choose one",
        ),
        ("[azure.dps]\nregistration_id = \"r\"\nsymmetric_key_env = \"K\"\n".into(), "azure.dps.id_scope", "missing"),
        ("[azure.dps]\nid_scope = \"0ne0\"\nregistration_id = \"r\"\n".into(), "azure.dps", "no attestation"),
        (
            format!("[azure.dps]\nid_scope = \"0ne0\"\nregistration_id = \"r\"\nsymmetric_key_file = {key}\n"),
            "azure.dps.symmetric_key_file",
            "not a base64 symmetric key",
        ),
        (
            "[azure.dps]\nid_scope = \"0ne0\"\nregistration_id = \"r\"\nsymmetric_key_env = \"CONNECTOR_TEST_UNSET_KEY\"\n".into(),
            "azure.dps.symmetric_key_env",
            "is not set",
        ),
        ("[aws]\nendpoint = \"x.iot.amazonaws.com\"\ncert_file = \"/c\"\n".into(), "aws.key_file", "missing"),
        ("[cloud]\nembedded = true\n[azure]\nconnection_string_env = \"X\"\n".into(), "cloud.embedded", "remove one"),
        (format!("{AWS}auth = \"password\"\n"), "aws.auth", "expected `certificate`, `certificate-alpn`"),
        (format!("{AWS}auth = \"sigv4\"\n"), "aws.sigv4", "missing"),
        (format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nregion = \"eu-west-1\"\n"), "aws.sigv4.source", "missing"),
        (format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"vault\"\n"), "aws.sigv4.source", "expected `environment`"),
        (format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"files\"\n"), "aws.sigv4.access_key_id", "missing"),
        (
            format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"files\"\naccess_key_id = \"AKIAEXAMPLE\"\n"),
            "aws.sigv4.secret_access_key_file",
            "missing",
        ),
        (
            format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"files\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key_file = \"/nonexistent/secret\"\n"),
            "aws.sigv4.secret_access_key_file",
            "cannot read",
        ),
        (
            format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"files\"\naccess_key_id = \"AK/X\"\nsecret_access_key_file = {cs}\n"),
            "aws.sigv4.access_key_id",
            "invalid access key id",
        ),
        (
            format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"files\"\nprofile = \"dev\"\n"),
            "aws.sigv4.profile",
            "only used with aws.sigv4.source = \"profile\"",
        ),
        (
            format!("{AWS}auth = \"sigv4\"\n[aws.sigv4]\nsource = \"profile\"\ncredentials_file = \"/nonexistent/credentials\"\n"),
            "aws.sigv4.credentials_file",
            "cannot read",
        ),
        (
            "[aws]\nendpoint = \"localhost\"\nthing_name = \"t\"\nauth = \"sigv4\"\n[aws.sigv4]\nsource = \"environment\"\n".into(),
            "aws.sigv4.region",
            "the endpoint names no region",
        ),
        (format!("{AWS}auth = \"sigv4\"\ncert_file = \"/c\"\n"), "aws.cert_file", "not used with aws.auth = \"sigv4\""),
        (
            format!("{AWS}auth = \"certificate-alpn\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n[aws.sigv4]\nsource = \"environment\"\n"),
            "aws.sigv4",
            "not used with aws.auth = \"certificate-alpn\"",
        ),
        (format!("{AWS}auth = \"custom-authorizer\"\n"), "aws.custom_authorizer", "missing"),
        (format!("{AWS}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\nauthorizer_name = \"a\"\n"), "aws.custom_authorizer", "no credentials"),
        (
            format!("{AWS}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\ntoken_file = {cs}\n"),
            "aws.custom_authorizer.token_key_name",
            "missing",
        ),
        (
            format!("{AWS}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\ntoken_env = \"CONNECTOR_TEST_UNSET_TOKEN\"\ntoken_key_name = \"tok\"\n"),
            "aws.custom_authorizer.token_env",
            "is not set",
        ),
        (
            format!("{AWS}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\ntoken_file = {cs}\ntoken_key_name = \"tok\"\nsigning_key_file = {key}\n"),
            "aws.custom_authorizer.signing_key_file",
            "not an RSA private key",
        ),
        (
            format!("{AWS}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\nusername = \"u\"\npassword_file = \"/nonexistent/password\"\n"),
            "aws.custom_authorizer.password_file",
            "cannot read",
        ),
        (
            format!("{AWS}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\nauthorizer_name = \"bad name!\"\nusername = \"u\"\n"),
            "aws.custom_authorizer.authorizer_name",
            "1–128 characters",
        ),
        (
            format!("{AWS}auth = \"custom-authorizer\"\n[aws.custom_authorizer]\nusername = \"u\"\ntransport = \"http\"\n"),
            "aws.custom_authorizer.transport",
            "expected `mqtt` or `websocket`",
        ),
        (format!("{AWS}topic_aliases = 70000\n"), "aws.topic_aliases", "from 0 (off) to 65535"),
        (format!("{AWS}topic_aliases = -1\n"), "aws.topic_aliases", "from 0 (off) to 65535"),
        (format!("{AWS}topic_aliases = \"many\"\n"), "aws.topic_aliases", "invalid type"),
        // AWS named shadows: the AWS flavour only, valid distinct names, files of their own.
        ("[[state.named_shadows]]\nname = \"config\"\n".into(), "state.named_shadows", "the cloud is the embedded azure emulator"),
        (
            format!("[cloud]\nprovider = \"azure\"\n[azure]\nconnection_string_file = {good_cs}\n[[state.named_shadows]]\nname = \"config\"\n"),
            "state.named_shadows",
            "named shadows are an AWS IoT feature but the cloud is azure",
        ),
        (format!("{AWS_SHADOWS}name = \"bad/name\"\n"), "state.named_shadows[0].name", "`bad/name` is not a shadow name"),
        (format!("{AWS_SHADOWS}name = \"{}\"\n", "x".repeat(65)), "state.named_shadows[0].name", "1–64 characters"),
        (format!("{AWS_SHADOWS}desired_file = \"/tmp/n.json\"\n"), "state.named_shadows[0].name", "missing"),
        (format!("{AWS_SHADOWS}name = \"config\"\nfile = \"/tmp/n.json\"\n"), "state.named_shadows[0].file", "unknown field `file`"),
        (
            format!("{AWS_SHADOWS}name = \"config\"\n{SHADOW}name = \"config\"\n"),
            "state.named_shadows[1].name",
            "`config` is listed twice (also state.named_shadows[0])",
        ),
        (
            format!("[state]\ndesired_file = \"/tmp/d.json\"\n{AWS_SHADOWS}name = \"config\"\nreported_file = \"/tmp/d.json\"\n"),
            "state.named_shadows[0].reported_file",
            "/tmp/d.json is also state.desired_file",
        ),
        (
            format!("{AWS_SHADOWS}name = \"a\"\ndesired_file = \"/tmp/n.json\"\n{SHADOW}name = \"b\"\ndesired_file = \"/tmp/n.json\"\n"),
            "state.named_shadows[1].desired_file",
            "is also state.named_shadows[0].desired_file",
        ),
        (
            format!("{AWS_SHADOWS}name = \"a\"\ndesired_file = \"/tmp/n.json\"\nreported_file = \"/tmp/n.json\"\n"),
            "state.named_shadows[0].reported_file",
            "is also state.named_shadows[0].desired_file: every document needs its own files",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (body, key, reason)) in table.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, body).unwrap();
        let (code, out) = run_to_end(
            &[
                "--check-config",
                "--config",
                file.to_str().unwrap(),
                "--state-dir",
                dir.path().to_str().unwrap(),
            ],
            &[],
        );
        let file_named = out.contains(&file.display().to_string());
        let key_named = key.is_empty() || out.contains(&format!("`{key}`"));
        // The reason is given once (not repeated by an error's chain).
        let once = reason.is_empty() || out.matches(reason).count() == 1;
        if code != 2 || !file_named || !key_named || !once || out.contains(SECRET) {
            failures.push(format!("case {i} ({body:?}): exit {code}, output:\n{out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn environment_and_flags_are_named_too() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let (code, out) = run_to_end(
        &["--check-config", "--state-dir", state],
        &[("CONNECTOR_AGENT_STORE_MAX_MESSAGES", "lots")],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("environment variable CONNECTOR_AGENT_STORE_MAX_MESSAGES")
            && out.contains("`store.max_messages`"),
        "{out}"
    );

    let (code, out) = run_to_end(
        &["--check-config", "--state-dir", state],
        &[("CONNECTOR_AGENT_TELEMETRY_INTERVALL", "1s")],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("CONNECTOR_AGENT_TELEMETRY_INTERVALL") && out.contains("no such configuration key"),
        "{out}"
    );

    let (code, out) =
        run_to_end(&["--check-config", "--state-dir", state, "--telemetry-interval", "fast"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("flag --telemetry-interval") && out.contains("`telemetry.interval`"), "{out}");

    let missing = dir.path().join("missing.toml");
    let (code, out) = run_to_end(&["--check-config", "--config", missing.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&missing.display().to_string()) && out.contains("cannot read"), "{out}");
}

#[test]
fn good_files_check_ok_without_printing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("cs");
    std::fs::write(&secret_file, format!("HostName=hub.example;DeviceId=dev-1;SharedAccessKey={SECRET}\n"))
        .unwrap();
    let file = dir.path().join("ok.toml");
    std::fs::write(
        &file,
        format!("[azure]\nconnection_string_file = {secret_file:?}\n[store]\ndrop_policy = \"newest\"\n"),
    )
    .unwrap();
    let (code, out) = run_to_end(
        &["--check-config", "--config", file.to_str().unwrap(), "--state-dir", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("configuration ok: cloud azure, connection string"), "{out}");
    assert!(out.contains("drop Newest") && !out.contains(SECRET), "{out}");
    // The example configurations shipped with the agent are valid (their secret and
    // certificate files pointed at stand-ins by environment overrides).
    let key = dir.path().join("dps-key");
    std::fs::write(&key, "c2VjcmV0LWtleS1uZXZlci1wcmludGVkLTEyMzQ=").unwrap();
    let pem = dir.path().join("stand-in.pem");
    std::fs::write(&pem, "not read by --check-config").unwrap();
    // The examples' handler directory, stood in for by a trusted one.
    let handlers = common::trusted_tempdir();
    let handlers = handlers.path().to_str().unwrap();
    // And their socket directory (/run/connector-agent exists only while the service runs).
    let socket = dir.path().join("ingest.sock");
    let socket = socket.to_str().unwrap();
    let (key, pem) = (key.to_str().unwrap(), pem.to_str().unwrap());
    type Example<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let examples: [Example; 3] = [
        ("embedded.toml", vec![], "cloud embedded azure emulator"),
        (
            "azure.toml",
            vec![
                ("CONNECTOR_AGENT_AZURE_DPS_SYMMETRIC_KEY_FILE", key),
                ("CONNECTOR_AGENT_HANDLERS_DIR", handlers),
                ("CONNECTOR_AGENT_INGEST_SOCKET", socket),
            ],
            "cloud azure, DPS",
        ),
        (
            "aws.toml",
            vec![
                ("CONNECTOR_AGENT_AWS_CA_FILE", pem),
                ("CONNECTOR_AGENT_AWS_CERT_FILE", pem),
                ("CONNECTOR_AGENT_AWS_KEY_FILE", pem),
                ("CONNECTOR_AGENT_HANDLERS_DIR", handlers),
                ("CONNECTOR_AGENT_INGEST_SOCKET", socket),
            ],
            "cloud aws, endpoint",
        ),
    ];
    for (example, env, expect) in examples {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(example);
        let (code, out) = run_to_end(
            &[
                "--check-config",
                "--config",
                path.to_str().unwrap(),
                "--state-dir",
                dir.path().to_str().unwrap(),
            ],
            &env,
        );
        assert_eq!(code, 0, "{example}: {out}");
        assert!(out.contains(expect), "{example}: {out}");
    }
}

#[test]
fn an_untrusted_handler_directory_fails_the_check_and_the_start() {
    // Under /tmp (world-writable, sticky): anyone could have put something there.
    let dir = tempfile::tempdir().unwrap();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir(&handlers).unwrap();
    let state = dir.path().join("state");
    let env = [("CONNECTOR_AGENT_HANDLERS_DIR", handlers.to_str().unwrap())];
    for check in [true, false] {
        let mut args = vec!["--state-dir", state.to_str().unwrap(), "--metrics-addr", "off"];
        if check {
            args.push("--check-config");
        }
        let (code, out) = run_to_end(&args, &env);
        assert_eq!(code, 2, "check {check}: {out}");
        let tmp = std::env::temp_dir().canonicalize().unwrap();
        let why =
            format!("handler directory is not trusted: {} is writable by group or others", tmp.display());
        assert_eq!(out.matches(&why).count(), 1, "check {check}: the reason, once: {out}");
    }
}

#[test]
fn a_secret_file_readable_by_others_is_warned_about_in_the_log_and_the_check() {
    use std::os::unix::fs::PermissionsExt;
    let rt = common::rt();
    let dir = tempfile::tempdir().unwrap();
    let cloud = common::ExternalCloud::start(&rt, dir.path(), "loose-key");
    std::fs::set_permissions(&cloud.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, cloud.config(&dir.path().join("state"), "")).unwrap();
    let key_file = cloud.key_file.display().to_string();

    let (code, out) = run_to_end(&["--check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    let warning = format!(
        "warning: `azure.dps.symmetric_key_file`: secret file {key_file} is readable by group or others (mode 0644); chmod 600 it"
    );
    assert_eq!(out.matches(&warning).count(), 1, "{out}");

    // The agent logs it (at its configured level, warn) once its logger exists.
    let mut agent = common::Agent::start(&["--config", cfg.to_str().unwrap()]);
    let line = agent.wait_line("the warning in the log", |l| {
        let l = common::strip_ansi(l);
        l.starts_with("E: ") && l.contains("WARN") && l.contains("secret file is readable by group or others")
    });
    let line = common::strip_ansi(&line);
    assert!(line.contains(&format!("file={key_file}")) && line.contains("mode=0644"), "{line}");
    assert!(line.contains("key=\"azure.dps.symmetric_key_file\""), "{line}");
    agent.wait_line("connected", |l| l.starts_with("status: connected"));
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
    let out = agent.output();
    assert_eq!(out.matches("secret file is readable").count(), 1, "once: {out}");

    // A 0600 file: no warning.
    std::fs::set_permissions(&cloud.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = run_to_end(&["--check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning:"), "{out}");
}

#[test]
fn a_start_failure_is_reported_once_and_config_errors_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    // A directory as the socket: a configuration error, also when starting for real.
    let (code, out) = run_to_end(
        &["--state-dir", state, "--metrics-addr", "off"],
        &[("CONNECTOR_AGENT_INGEST_SOCKET", "/tmp")],
    );
    assert_eq!(code, 2, "{out}");
    assert_eq!(out.matches("/tmp exists and is a directory").count(), 1, "once: {out}");
    assert!(out.contains("environment variable CONNECTOR_AGENT_INGEST_SOCKET: `ingest.socket`"), "{out}");
    // A socket another process listens on is only found at start: exit 1, the reason once.
    let taken = dir.path().join("taken.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&taken).unwrap();
    let (code, out) = run_to_end(
        &["--state-dir", state, "--metrics-addr", "off"],
        &[("CONNECTOR_AGENT_INGEST_SOCKET", taken.to_str().unwrap())],
    );
    assert_eq!(code, 1, "{out}");
    let why = format!("ingestion socket: ingest socket {} is in use by another listener", taken.display());
    assert!(out.contains(&why), "{out}");
    assert_eq!(out.matches("is in use by another listener").count(), 1, "once: {out}");
}

#[test]
fn a_metrics_address_beyond_loopback_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let (code, out) =
        run_to_end(&["--check-config", "--state-dir", state, "--metrics-addr", "0.0.0.0:0"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("warning: `metrics.addr`: 0.0.0.0:0 is not a loopback address").count(),
        1,
        "{out}"
    );
    let (code, out) =
        run_to_end(&["--check-config", "--state-dir", state, "--metrics-addr", "127.0.0.1:0"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning:"), "{out}");
    // And in the log at start.
    let mut agent = common::Agent::start(&[
        "--state-dir",
        state,
        "--metrics-addr",
        "0.0.0.0:0",
        "--log-level",
        "warn",
        "--exit-after",
        "60s",
    ]);
    let line = agent.wait_line("the warning in the log", |l| {
        let l = common::strip_ansi(l);
        l.starts_with("E: ") && l.contains("WARN") && l.contains("metrics endpoint listens beyond loopback")
    });
    assert!(common::strip_ansi(&line).contains("addr=0.0.0.0:0"), "{line}");
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(agent.wait_exit().code(), Some(0), "{}", agent.output());
}
