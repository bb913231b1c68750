//! Runs the `connector-cli` binary against the protocol files' vectors.

use std::process::{Command, Output};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const V1: &str = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600";

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connector-cli")).args(args).output().expect("run connector-cli")
}

fn ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

fn fails(args: &[&str]) -> String {
    let out = cli(args);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    String::from_utf8(out.stderr).expect("UTF-8 stderr")
}

#[test]
fn sas_from_key_and_resource_matches_the_vectors() {
    let table = [
        ("myhub.azure-devices.net/devices/device-01", KEY, None, V1),
        (
            "myhub.azure-devices.net/devices/device-01/modules/module-a",
            KEY,
            None,
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01%2Fmodules%2Fmodule-a&sig=GJ4x%2Fa%2FSQIskF6gX0VEExfHQfUuuN2zokt3CB2KZSUs%3D&se=1735689600",
        ),
        (
            "myhub.azure-devices.net/devices/device-01",
            "c2hhcmVkLWFjY2Vzcy1wb2xpY3kta2V5LTEyMzQ1Ng==",
            Some("device"),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=Tcpg1liqRwHfQYZraOJ%2BNrSRa7V%2Fbk9%2B%2FRLtvUWrjWo%3D&se=1735689600&skn=device",
        ),
        (
            "0ne00000A0A/registrations/device-01",
            KEY,
            Some("registration"),
            "SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fdevice-01&sig=Pa8h4L2s50u%2B9b528N%2FdRI4xgnNs8K8Z7OK99SBM5F8%3D&se=1735689600&skn=registration",
        ),
    ];
    for (resource, key, policy, want) in table {
        let mut args = vec!["azure", "sas", "--key", key, "--resource", resource, "--expiry", "1735689600"];
        if let Some(p) = policy {
            args.extend(["--policy", p]);
        }
        assert_eq!(ok(&args), format!("{want}\n"));
    }
}

#[test]
fn sas_from_connection_strings() {
    let cs = format!("HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKey={KEY}");
    assert_eq!(
        ok(&["azure", "sas", "--connection-string", &cs, "--expiry", "1735689600"]),
        format!("{V1}\n")
    );
    let policy = "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKeyName=device;SharedAccessKey=c2hhcmVkLWFjY2Vzcy1wb2xpY3kta2V5LTEyMzQ1Ng==";
    assert!(ok(&["azure", "sas", "--connection-string", policy, "--expiry", "1735689600"])
        .ends_with("&se=1735689600&skn=device\n"));
    let fresh = ok(&["azure", "sas", "--connection-string", &cs, "--ttl", "60"]);
    let se: u64 = fresh.trim().rsplit("se=").next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(se > now && se <= now + 61, "{se} vs {now}");
    let given = format!("HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessSignature={V1}");
    assert_eq!(ok(&["azure", "sas", "--connection-string", &given]), format!("{V1}\n"));
}

#[test]
fn derive_key_matches_the_dps_vectors() {
    let table = [
        (
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=",
        ),
        (
            "Mkq90sxtvhE4+illsJ1STOM54LSDXv9NmixoAhsW4C3cMhSayPmlfCNmnrph8Gh/kjQLhPdEdCXaXN6mwREiZw==",
            "device-01",
            "FOtnBnNffdiNWaqSDkC6QVxQOBHFzd7/+Ck6VQo6ri4=",
        ),
    ];
    for (group, reg, want) in table {
        assert_eq!(
            ok(&["azure", "derive-key", "--group-key", group, "--registration-id", reg]),
            format!("{want}\n")
        );
    }
}

#[test]
fn info_lists_the_connection_and_topics() {
    let cs = format!("HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKey={KEY}");
    let out = ok(&["azure", "info", "--connection-string", &cs]);
    for want in [
        "uri: mqtts://myhub.azure-devices.net:8883\n",
        "host: myhub.azure-devices.net\n",
        "port: 8883\n",
        "client id: device-01\n",
        "username: myhub.azure-devices.net/device-01/?api-version=2021-04-12\n",
        "telemetry: devices/device-01/messages/events/\n",
        "subscribe c2d: devices/device-01/messages/devicebound/#\n",
        "subscribe methods: $iothub/methods/POST/#\n",
        "subscribe twin responses: $iothub/twin/res/#\n",
        "subscribe twin desired: $iothub/twin/PATCH/properties/desired/#\n",
        "method response: $iothub/methods/res/{status}/?$rid={rid}\n",
        "twin get: $iothub/twin/GET/?$rid={rid}\n",
        "twin reported: $iothub/twin/PATCH/properties/reported/?$rid={rid}\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("AAECAw"), "{out}");

    let module = format!(
        "HostName=myhub.azure-devices.net;DeviceId=device-01;ModuleId=module-a;GatewayHostName=edge.local;SharedAccessKey={KEY}"
    );
    let out = ok(&[
        "azure",
        "info",
        "--connection-string",
        &module,
        "--websocket",
        "--api-version",
        "2020-09-30",
        "--model-id",
        "dtmi:com:example:Thermostat;1",
    ]);
    for want in [
        "uri: wss://edge.local:443/$iothub/websocket\n",
        "client id: device-01/module-a\n",
        "username: myhub.azure-devices.net/device-01/module-a/?api-version=2020-09-30&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1\n",
        "telemetry: devices/device-01/modules/module-a/messages/events/\n",
        "subscribe module inputs: devices/device-01/modules/module-a/inputs/#\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let x509 = ok(&["azure", "info", "--connection-string", "HostName=h;DeviceId=d;x509=true"]);
    assert!(x509.contains("auth: X.509 client certificate (no password)\n"), "{x509}");
}

#[test]
fn errors_exit_non_zero_with_the_typed_message_and_no_secret() {
    let err = fails(&["azure", "info", "--connection-string", &format!("DeviceId=d;SharedAccessKey={KEY}")]);
    assert_eq!(err, "error: invalid connection string: missing `HostName`\n");
    let err = fails(&[
        "azure",
        "sas",
        "--connection-string",
        &format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};x509=true"),
    ]);
    assert_eq!(err, "error: invalid connection string: `SharedAccessKey` cannot be combined with `x509`\n");
    let err = fails(&["azure", "sas", "--key", "not base64!", "--resource", "h/devices/d", "--expiry", "1"]);
    assert_eq!(err, "error: invalid shared access key: not valid base64\n");
    let err = fails(&["azure", "sas", "--connection-string", "HostName=h;DeviceId=d;x509=true"]);
    assert!(err.contains("x509=true"), "{err}");
    let err = fails(&["azure", "sas", "--connection-string", &format!("HostName=h;DeviceId=d;{KEY}")]);
    assert!(!err.contains("AAECAw"), "{err}");
    let usage = fails(&["azure", "sas", "--key", KEY]);
    assert!(usage.contains("--resource"), "{usage}");
}

/// What the tool prints is what the hub accepts: a raw paho client (no connector code) logs
/// in to the emulator with the printed client id, username and SAS token, and a token
/// signed with a wrong key is refused.
#[test]
fn printed_credentials_are_accepted_by_the_emulator() {
    use connector_emulator::control::api::Authentication;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let emu = connector_emulator::Emulator::start(connector_emulator::EmulatorConfig::ephemeral()).unwrap();
    let info = rt.block_on(emu.control().create_device("cli-dev")).unwrap();
    let Authentication::Sas { symmetric_key } = info.authentication else { panic!("a SAS device") };
    let cs = format!(
        "HostName={};DeviceId=cli-dev;SharedAccessKey={}",
        emu.hub_host_name(),
        symmetric_key.primary_key
    );
    let out = ok(&["azure", "info", "--connection-string", &cs]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_string()
    };
    let (client_id, username) = (field("client id"), field("username"));
    let token = ok(&["azure", "sas", "--connection-string", &cs, "--ttl", "300"]).trim().to_string();
    let connect = |password: &str| {
        let uri = format!("ssl://127.0.0.1:{}", emu.mqtt_port());
        let client = paho_mqtt::Client::new(
            paho_mqtt::CreateOptionsBuilder::new().server_uri(uri).client_id(&client_id).finalize(),
        )
        .unwrap();
        let ssl = paho_mqtt::SslOptionsBuilder::new()
            .trust_store(emu.ca_path())
            .unwrap()
            .verify(true)
            .enable_server_cert_auth(true)
            .finalize();
        let opts = paho_mqtt::ConnectOptionsBuilder::new_v3()
            .ssl_options(ssl)
            .user_name(&username)
            .password(password)
            .connect_timeout(std::time::Duration::from_secs(10))
            .finalize();
        let result = client.connect(opts).map(|_| ());
        if result.is_ok() {
            client.disconnect(None).unwrap();
        }
        result
    };
    connect(&token).expect("the printed token is accepted");
    let wrong_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let forged = ok(&[
        "azure",
        "sas",
        "--key",
        wrong_key,
        "--resource",
        &format!("{}/devices/cli-dev", emu.hub_host_name()),
        "--ttl",
        "300",
    ]);
    let err = connect(forged.trim()).expect_err("a token signed with another key is refused");
    assert!(
        matches!(err, paho_mqtt::Error::ConnectReturn(paho_mqtt::ConnectReturnCode::NotAuthorized)),
        "refused at CONNACK as not authorized, got {err:?}"
    );
    println!("cli credentials: accepted with the printed token; forged token refused with {err:?}");
    emu.shutdown();
}

const AWS_ENDPOINT: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";
const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AWS_W1: &str = "wss://a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20250101%2Fus-east-1%2Fiotdevicegateway%2Faws4_request&X-Amz-Date=20250101T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=bffc5d5aaaad0873a368752b5bf9fe36a7850fc6c79990e0c8b65ec5e7b569d5&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Fsession%2Btoken%3D%3D";

#[test]
fn aws_presign_matches_the_sigv4_vectors() {
    let w1 = ok(&[
        "aws",
        "presign",
        "--endpoint",
        AWS_ENDPOINT,
        "--access-key-id",
        AWS_KEY_ID,
        "--secret-access-key",
        AWS_SECRET,
        "--session-token",
        "FwoGZXIvYXdzEXAMPLE/session+token==",
        "--time",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(w1, format!("{AWS_W1}\n"));
    // W2: the secret from a file, Unix time, X-Amz-Expires, the region given explicitly.
    let dir = std::env::temp_dir().join(format!("connector-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{AWS_SECRET}\n")).unwrap();
    let w2 = ok(&[
        "aws",
        "presign",
        "--endpoint",
        AWS_ENDPOINT,
        "--region",
        "us-east-1",
        "--access-key-id",
        AWS_KEY_ID,
        "--secret-access-key-file",
        secret_file.to_str().unwrap(),
        "--time",
        "1735689600",
        "--expires",
        "86400",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(w2.contains("&X-Amz-Expires=86400&"), "{w2}");
    assert!(
        w2.ends_with("&X-Amz-Signature=899c689bb51f71e6a901a1d58e925552bb2a961d0ac366d6d620f16d39039aa8\n"),
        "{w2}"
    );
    // W3: connection;host.
    let w3 = ok(&[
        "aws",
        "presign",
        "--endpoint",
        AWS_ENDPOINT,
        "--access-key-id",
        AWS_KEY_ID,
        "--secret-access-key",
        AWS_SECRET,
        "--time",
        "2025-01-01T00:00:00Z",
        "--sign-connection",
    ]);
    assert!(w3.contains("X-Amz-SignedHeaders=connection%3Bhost"), "{w3}");
    assert!(
        w3.contains("X-Amz-Signature=273b1b2fa3497c608e91aab2a2377a447d0e6acceaccbdb659b2f534823225e7"),
        "{w3}"
    );
}

#[test]
fn aws_presign_errors_name_the_problem_and_no_secret() {
    let base = ["aws", "presign", "--access-key-id", AWS_KEY_ID, "--secret-access-key", AWS_SECRET];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }
    let err = fails(&with(&base, &["--endpoint", "localhost"]));
    assert_eq!(err, "error: --region is needed: the endpoint does not name one\n");
    let err = fails(&with(&base, &["--endpoint", AWS_ENDPOINT, "--time", "yesterday"]));
    assert!(err.starts_with("error: invalid --time `yesterday`"), "{err}");
    let err = fails(&with(&base, &["--endpoint", AWS_ENDPOINT, "--expires", "0"]));
    assert_eq!(err, "error: invalid expires: whole seconds from 1 s to 7 days\n");
    let err = fails(&with(&base, &["--endpoint", "wss://x/mqtt"]));
    assert!(err.starts_with("error: invalid --endpoint"), "{err}");
    let err = fails(&[
        "aws",
        "presign",
        "--endpoint",
        AWS_ENDPOINT,
        "--access-key-id",
        AWS_KEY_ID,
        "--secret-access-key-file",
        "/nonexistent/secret",
    ]);
    assert!(err.contains("cannot read /nonexistent/secret"), "{err}");
    assert!(!err.contains("wJalr"), "{err}");
    let usage = fails(&["aws", "presign", "--endpoint", AWS_ENDPOINT, "--access-key-id", AWS_KEY_ID]);
    assert!(usage.contains("--secret-access-key"), "{usage}");
}

#[test]
fn aws_topics_lists_shadow_and_jobs_topics() {
    let out = ok(&["aws", "topics", "--thing", "lamp"]);
    for want in [
        "shadow get: $aws/things/lamp/shadow/get\n",
        "shadow update accepted: $aws/things/lamp/shadow/update/accepted\n",
        "shadow update delta: $aws/things/lamp/shadow/update/delta\n",
        "shadow update documents: $aws/things/lamp/shadow/update/documents\n",
        "shadow delete rejected: $aws/things/lamp/shadow/delete/rejected\n",
        "subscribe shadow update: $aws/things/lamp/shadow/update/+\n",
        "jobs get pending: $aws/things/lamp/jobs/get\n",
        "jobs start next accepted: $aws/things/lamp/jobs/start-next/accepted\n",
        "jobs describe: $aws/things/lamp/jobs/{jobId}/get\n",
        "jobs update rejected: $aws/things/lamp/jobs/{jobId}/update/rejected\n",
        "jobs notify next: $aws/things/lamp/jobs/notify-next\n",
        "subscribe jobs per job accepted: $aws/things/lamp/jobs/+/+/accepted\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let named = ok(&["aws", "topics", "--thing", "lamp", "--shadow", "cfg"]);
    assert!(named.contains("shadow get: $aws/things/lamp/shadow/name/cfg/get\n"), "{named}");
    let err = fails(&["aws", "topics", "--thing", "a/b"]);
    assert_eq!(err, "error: invalid --thing: only [a-zA-Z0-9:_-] are allowed\n");
    let err = fails(&["aws", "topics", "--thing", "lamp", "--shadow", "a b"]);
    assert!(err.starts_with("error: invalid --shadow"), "{err}");
}

/// The printed presigned URL is what the emulator's SigV4 verifier accepts: a raw paho
/// client (no connector code) opens the WebSocket with it; a URL signed with another
/// secret is refused.
#[test]
fn aws_presigned_url_is_accepted_by_the_emulator() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let emu = connector_emulator::Emulator::start(connector_emulator::EmulatorConfig::ephemeral()).unwrap();
    let key = rt.block_on(emu.control().aws_create_access_key()).unwrap();
    let port = emu.aws_port().unwrap().to_string();
    let presign = |secret: &str| {
        ok(&[
            "aws",
            "presign",
            "--endpoint",
            emu.aws_endpoint(),
            "--port",
            &port,
            "--region",
            emu.aws_region(),
            "--access-key-id",
            &key.access_key_id,
            "--secret-access-key",
            secret,
            "--expires",
            "300",
        ])
        .trim()
        .to_string()
    };
    let connect = |url: &str| {
        let client = paho_mqtt::Client::new(
            paho_mqtt::CreateOptionsBuilder::new().server_uri(url).client_id("cli-ws").finalize(),
        )
        .unwrap();
        let ssl = paho_mqtt::SslOptionsBuilder::new()
            .trust_store(emu.ca_path())
            .unwrap()
            .verify(true)
            .enable_server_cert_auth(true)
            .finalize();
        let opts = paho_mqtt::ConnectOptionsBuilder::new_v3()
            .ssl_options(ssl)
            .connect_timeout(std::time::Duration::from_secs(10))
            .finalize();
        let result = client.connect(opts).map(|_| ());
        if result.is_ok() {
            client.disconnect(None).unwrap();
        }
        result
    };
    let url = presign(&key.secret_access_key);
    assert!(url.starts_with(&format!("wss://localhost:{port}/mqtt?")), "{url}");
    connect(&url).expect("the printed URL is accepted");
    connect(&presign("not-the-secret")).expect_err("a URL signed with another secret is refused");
    emu.shutdown();
}
