use std::time::{Duration, UNIX_EPOCH};

use connector_core::{PemSource, Provider};

use super::*;
use crate::options::Transport;
use crate::x509::X509Identity;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NOW: u64 = 1_735_686_000;
const V1: &str = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn device() -> AzureProvider {
    AzureProvider::from_connection_string(&format!(
        "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKey={KEY}"
    ))
    .unwrap()
}

fn module(gateway: bool) -> AzureProvider {
    let gw = if gateway { ";GatewayHostName=edge.local" } else { "" };
    AzureProvider::from_connection_string(&format!(
        "HostName=myhub.azure-devices.net;DeviceId=device-01;ModuleId=module-a;SharedAccessKey={KEY}{gw}"
    ))
    .unwrap()
}

fn inbound(topic: &str, payload: &'static [u8]) -> Inbound {
    device().classify(InboundMessage::new(topic, payload, QoS::AtLeastOnce))
}

#[test]
fn connect_params_for_a_device_key() {
    let p = device().connect_params(now()).unwrap();
    assert_eq!(p.uri.to_string(), "mqtts://myhub.azure-devices.net:8883");
    assert_eq!(p.client_id, "device-01");
    assert_eq!(p.username.as_deref(), Some("myhub.azure-devices.net/device-01/?api-version=2021-04-12"));
    assert_eq!(p.password.as_ref().map(Secret::expose), Some(V1), "V1 at now + 3600 s");
    assert_eq!(p.credentials_expire, Some(UNIX_EPOCH + Duration::from_secs(1_735_689_600)));
    assert!(!p.clean_session);
    assert_eq!(p.keep_alive, Duration::from_secs(60));
    let tls = p.tls.as_ref().unwrap();
    assert!(tls.ca.is_none() && tls.client_cert.is_none());
    p.validate().unwrap();
    let shown = format!("{p:?} {:?}", device());
    assert!(!shown.contains("vH1TWHoM") && !shown.contains("AAECAw"), "{shown}");
}

#[test]
fn connect_params_for_a_module_behind_a_gateway_over_websocket() {
    let cs: ConnectionString = format!(
        "HostName=myhub.azure-devices.net;DeviceId=device-01;ModuleId=module-a;SharedAccessKey={KEY};GatewayHostName=edge.local"
    )
    .parse()
    .unwrap();
    let mut opts =
        AzureOptions::default().transport(Transport::WebSocket).trust_roots(PemSource::File("ca.pem".into()));
    opts.http_proxy = Some("http://proxy:3128".into());
    let p = AzureProvider::new(cs, opts).unwrap().connect_params(now()).unwrap();
    assert_eq!(p.uri.to_string(), "wss://edge.local:443/$iothub/websocket");
    assert_eq!(p.client_id, "device-01/module-a");
    assert_eq!(
        p.username.as_deref(),
        Some("myhub.azure-devices.net/device-01/module-a/?api-version=2021-04-12")
    );
    let token: SasToken = p.password.as_ref().unwrap().expose().parse().unwrap();
    assert_eq!(token.resource_uri(), "myhub.azure-devices.net/devices/device-01/modules/module-a");
    assert_eq!(p.tls.unwrap().ca, Some(PemSource::File("ca.pem".into())));
    assert_eq!(p.http_proxy.as_deref(), Some("http://proxy:3128"));
}

#[test]
fn username_carries_product_and_model() {
    let cs: ConnectionString =
        format!("HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKey={KEY}").parse().unwrap();
    let mut opts = AzureOptions::default().model_id("dtmi:com:example:Thermostat;1");
    opts.api_version = "2020-09-30".into();
    opts.product_info = Some("azsdk-c/1.5.0".into());
    let p = AzureProvider::new(cs.clone(), opts.clone()).unwrap();
    assert_eq!(
        p.username(),
        "myhub.azure-devices.net/device-01/?api-version=2020-09-30&DeviceClientType=azsdk-c%2F1.5.0&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"
    );
    opts.api_version = "2019-10-01".into();
    assert!(matches!(
        AzureProvider::new(cs.clone(), opts),
        Err(AzureError::Config { field: "api_version", .. })
    ));
    let bad = AzureOptions::default().model_id("not-a-dtmi");
    assert!(matches!(AzureProvider::new(cs, bad), Err(AzureError::Config { field: "model_id", .. })));
}

#[test]
fn options_are_validated_up_front() {
    let cs: ConnectionString = format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}").parse().unwrap();
    let table = [
        (AzureOptions::default().sas_ttl(Duration::ZERO), "sas_ttl"),
        (AzureOptions { keep_alive: Duration::ZERO, ..AzureOptions::default() }, "keep_alive"),
        (AzureOptions { keep_alive: Duration::from_secs(1178), ..AzureOptions::default() }, "keep_alive"),
        (AzureOptions { api_version: String::new(), ..AzureOptions::default() }, "api_version"),
        (AzureOptions { ciphers: Some("ALL:@SECLEVEL=0".into()), ..AzureOptions::default() }, "connect"),
    ];
    for (opts, field) in table {
        match AzureProvider::new(cs.clone(), opts) {
            Err(AzureError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let x509: ConnectionString = "HostName=h;DeviceId=d;x509=true".parse().unwrap();
    assert!(matches!(
        AzureProvider::new(x509, AzureOptions::default()),
        Err(AzureError::Config { field: "x509", .. })
    ));
    let p = AzureProvider::new(cs, AzureOptions::default().port(18883)).unwrap();
    assert_eq!(p.broker_uri().port(), 18883);
}

#[test]
fn a_given_signature_is_used_as_is_until_it_expires() {
    let p = AzureProvider::from_connection_string(&format!(
        "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessSignature={V1}"
    ))
    .unwrap();
    let params = p.connect_params(now()).unwrap();
    assert_eq!(params.password.as_ref().map(Secret::expose), Some(V1));
    assert_eq!(params.credentials_expire, Some(UNIX_EPOCH + Duration::from_secs(1_735_689_600)));
    let late = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    match p.connect_params(late) {
        Err(ProviderError::Credentials { reason }) => {
            assert!(reason.contains("cannot be renewed") && !reason.contains("vH1TWHoM"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn policy_keys_sign_with_skn() {
    let p = AzureProvider::from_connection_string(
        "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKeyName=device;SharedAccessKey=c2hhcmVkLWFjY2Vzcy1wb2xpY3kta2V5LTEyMzQ1Ng==",
    )
    .unwrap();
    let password = p.connect_params(now()).unwrap().password.unwrap();
    assert_eq!(
        password.expose(),
        "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=Tcpg1liqRwHfQYZraOJ%2BNrSRa7V%2Fbk9%2B%2FRLtvUWrjWo%3D&se=1735689600&skn=device"
    );
}

#[test]
fn x509_connections_have_no_password_and_carry_the_identity() {
    let k = crate::x509::tests::key();
    let c = crate::x509::tests::cert(&k, "device-01", NOW - 10, NOW + 10);
    let id =
        X509Identity::from_pem(&c.to_pem().unwrap(), &k.private_key_to_pem_pkcs8().unwrap(), None, now())
            .unwrap();
    let cs: ConnectionString = "HostName=h;DeviceId=device-01;x509=true".parse().unwrap();
    let p = AzureProvider::new(cs, AzureOptions::default().x509(id)).unwrap();
    let params = p.connect_params(now()).unwrap();
    assert!(params.password.is_none() && params.credentials_expire.is_none());
    let tls = params.tls.as_ref().unwrap();
    assert!(matches!(tls.client_key, Some(PemSource::Pem(_))) && tls.client_cert.is_some());
    assert!(!format!("{params:?}").contains("PRIVATE KEY"));
}

#[test]
fn telemetry_gets_a_property_bag_and_the_size_limit() {
    let p = device();
    let publish = Publish::telemetry(&b"{}"[..])
        .message_id("msg-1")
        .content_type("application/json")
        .content_encoding("utf-8")
        .property("level", "critical")
        .property("temp alert", "a/b");
    let w = p.encode_publish(&publish).unwrap();
    assert_eq!(
        w.topic,
        "devices/device-01/messages/events/%24.mid=msg-1&%24.ct=application%2Fjson&%24.ce=utf-8&level=critical&temp%20alert=a%2Fb"
    );
    assert!(w.properties.is_empty());
    assert_eq!(
        p.telemetry_topic(&Publish::telemetry(&b""[..])).unwrap(),
        "devices/device-01/messages/events/"
    );
    let m = module(false)
        .encode_publish(&crate::pnp::output_telemetry(Publish::telemetry(&b"x"[..]), "out1"))
        .unwrap();
    assert_eq!(m.topic, "devices/device-01/modules/module-a/messages/events/%24.on=out1");

    let exactly = Publish::telemetry(vec![0u8; MAX_TELEMETRY_SIZE - 4]).property("k", "vvv");
    assert!(p.encode_publish(&exactly).is_ok());
    let over = Publish::telemetry(vec![0u8; MAX_TELEMETRY_SIZE - 3]).property("k", "vvv");
    assert_eq!(
        p.encode_publish(&over),
        Err(ProviderError::PayloadTooLarge { size: MAX_TELEMETRY_SIZE + 1, limit: MAX_TELEMETRY_SIZE })
    );
}

#[test]
fn what_iot_hub_cannot_carry_is_refused() {
    let p = device();
    let refused = [
        Publish::telemetry(&b""[..]).user_property("k", "v"),
        Publish::telemetry(&b""[..]).message_expiry(Duration::from_secs(5)),
        Publish::telemetry(&b""[..]).property("$.mid", "x"),
        Publish::telemetry(&b""[..]).property("", "x"),
        Publish::to_topic("custom/topic", &b""[..]),
        Publish::to_topic("devices/other/messages/events/", &b""[..]),
        Publish::to_topic("$iothub/twin/GET/?$rid=1", &b""[..]).property("a", "b"),
        Publish::to_topic("$iothub/twin/res/#", &b""[..]),
    ];
    for publish in refused {
        assert!(matches!(p.encode_publish(&publish), Err(ProviderError::Unsupported { .. })), "{publish:?}");
    }
    let ok =
        p.encode_publish(&Publish::to_topic("devices/device-01/messages/events/a=1", &b"x"[..])).unwrap();
    assert_eq!(ok.topic, "devices/device-01/messages/events/a=1");
    assert!(p.encode_publish(&Publish::to_topic("$iothub/methods/res/200/?$rid=1", &b"{}"[..])).is_ok());
    let big = Publish::to_topic("$iothub/methods/res/200/?$rid=1", vec![b' '; MAX_METHOD_PAYLOAD + 1]);
    assert!(matches!(p.encode_publish(&big), Err(ProviderError::PayloadTooLarge { .. })));
}

#[test]
fn subscriptions_per_identity() {
    let filters =
        |p: &AzureProvider| p.subscriptions().into_iter().map(|s| (s.filter, s.qos)).collect::<Vec<_>>();
    let q1 = QoS::AtLeastOnce;
    let common = [
        ("$iothub/methods/POST/#".to_string(), QoS::AtMostOnce),
        ("$iothub/twin/res/#".into(), q1),
        ("$iothub/twin/PATCH/properties/desired/#".into(), q1),
    ];
    let mut want = vec![("devices/device-01/messages/devicebound/#".to_string(), q1)];
    want.extend(common.clone());
    assert_eq!(filters(&device()), want);
    let mut want = vec![("devices/device-01/modules/module-a/inputs/#".to_string(), q1)];
    want.extend(common.clone());
    assert_eq!(filters(&module(true)), want);
    assert_eq!(filters(&module(false)), common);
    let twin: Vec<_> = device().state().unwrap().subscriptions().into_iter().map(|s| s.filter).collect();
    assert!(twin.iter().all(|f| device().subscriptions().iter().any(|s| &s.filter == f)));
}

#[test]
fn inbound_topics_are_classified() {
    match inbound("devices/device-01/messages/devicebound/%24.mid=m1&%24.to=%2Fdevices%2Fdevice-01%2Fmessages%2FdeviceBound&color=red", b"hi") {
        Inbound::C2d(m) => {
            assert_eq!(m.system_property("$.mid"), Some("m1"));
            assert_eq!(m.property("color"), Some("red"));
            assert_eq!(&m.payload[..], b"hi");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        inbound("$iothub/methods/POST/reboot/?$rid=1", b"{}"),
        Inbound::MethodRequest(connector_core::MethodRequest {
            name: "reboot".into(),
            request_id: "1".into(),
            payload: Bytes::from_static(b"{}")
        })
    );
    assert_eq!(
        inbound("$iothub/twin/res/204/?$rid=5&$version=124", b""),
        Inbound::StateResponse(connector_core::StateResponse {
            request_id: "5".into(),
            status: 204,
            version: Some(124),
            body: Bytes::new()
        })
    );
    match inbound("$iothub/twin/PATCH/properties/desired/?$version=8", br#"{"a":1,"$version":8}"#) {
        Inbound::DesiredPatch(d) => assert_eq!(d.version, Some(8)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(inbound("some/user/topic", b""), Inbound::Message(_)));
    let m = module(true).classify(InboundMessage::new(
        "devices/device-01/modules/module-a/inputs/in1/k=v",
        &b"x"[..],
        QoS::AtLeastOnce,
    ));
    match m {
        Inbound::C2d(m) => assert_eq!((m.input.as_deref(), m.property("k")), (Some("in1"), Some("v"))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unparseable_hub_topics_are_malformed_never_dropped() {
    let table = [
        ("$iothub/methods/POST/reboot/", "missing `$rid` parameter"),
        ("$iothub/twin/res/abc/?$rid=1", "invalid status `abc`"),
        (
            "$iothub/twin/res/200/?$rid=%zz",
            "malformed properties: property 0: `%` not followed by two hex digits at byte 5",
        ),
        ("$iothub/unknown", "not an IoT Hub device topic"),
        (
            "devices/device-01/messages/devicebound/a=%",
            "malformed properties: property 0: `%` not followed by two hex digits at byte 2",
        ),
        ("devices/other/messages/devicebound/", "addressed to another identity than device-01"),
        ("devices/device-01/modules/m/inputs/in/", "addressed to another identity than device-01"),
        ("devices/device-01/nothing", "not an IoT Hub device topic"),
        ("$iothub/twin/GET/?$rid=1", "a device-to-hub topic, not expected inbound"),
        ("$iothub/twin/res/#", "a subscription filter, not a topic name"),
    ];
    for (topic, want) in table {
        match inbound(topic, b"") {
            Inbound::Malformed { topic: t, reason } => {
                assert_eq!(t, topic);
                assert_eq!(reason, want, "{topic}");
            }
            other => panic!("{topic}: {other:?}"),
        }
    }
}

#[test]
fn methods_and_twin_go_through_the_provider() {
    let p = device();
    let r = p.method_response("1", 200, Bytes::from_static(br#"{"ok":true}"#)).unwrap();
    assert_eq!(
        (r.topic.as_str(), &r.payload[..]),
        ("$iothub/methods/res/200/?$rid=1", &br#"{"ok":true}"#[..])
    );
    let twin = p.state().unwrap();
    assert_eq!(twin.get("7").unwrap().topic, "$iothub/twin/GET/?$rid=7");
    assert_eq!(twin.report("8", b"{}").unwrap().topic, "$iothub/twin/PATCH/properties/reported/?$rid=8");
    assert_eq!(p.name(), "azure");
    assert_eq!(p.limits().max_payload, 262_144);
}

#[test]
fn classify_never_panics_on_random_topics() {
    let p = module(true);
    let seeds = [
        "$iothub/twin/res/200/?$rid=1",
        "devices/device-01/modules/module-a/inputs/i/a=1",
        "$iothub/methods/POST/m/?$rid=2",
    ];
    let alphabet: Vec<char> = "/?&=$%#+1ad \u{0}é".chars().collect();
    let mut next = test_support::xorshift(0x5151_f00d_1234_abcdu64);
    for i in 0..10_000 {
        let mut s: Vec<char> = seeds[i % seeds.len()].chars().collect();
        for _ in 0..(1 + next() % 4) {
            let pos = (next() as usize) % (s.len() + 1);
            s.insert(pos, alphabet[(next() as usize) % alphabet.len()]);
        }
        let topic: String = s.into_iter().collect();
        let kind =
            p.classify(InboundMessage::new(topic.clone(), &b"{}"[..], QoS::AtMostOnce)).kind().as_str();
        if topic.starts_with("$iothub/") || topic.starts_with("devices/") {
            assert_ne!(kind, "message", "{topic}");
        }
    }
}
