//! The protocol files' test vectors, one case per line in `tests/data/`, checked byte for
//! byte against the public API.

use std::time::{Duration, UNIX_EPOCH};

use connector_azure::dps::{DpsAuth, DpsOptions, DpsRegistration, DpsTopic};
use connector_azure::sas::{encode_resource_uri, string_to_sign, SasKey, SasToken};
use connector_azure::{AzureOptions, AzureProvider, ConnectionString, PropertyBag};
use connector_core::{Inbound, InboundMessage, Provider, Publish, QoS};
use serde_json::Value;

/// The non-comment lines of a data file.
fn lines(name: &str) -> Vec<String> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases: Vec<String> =
        text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
    assert!(!cases.is_empty(), "{name} has no cases");
    cases
}

fn fields(line: &str, n: usize) -> Vec<&str> {
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), n, "{line}");
    f
}

fn opt(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

fn json_lines(name: &str) -> Vec<Value> {
    lines(name).iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[test]
fn sas_tokens_match_byte_for_byte() {
    for line in lines("sas_tokens.txt") {
        let f = fields(&line, 8);
        let (name, key, resource, se, skn, to_sign, sig, token) =
            (f[0], f[1], f[2], f[3], opt(f[4]), f[5], f[6], f[7]);
        let key = SasKey::from_base64(key).unwrap();
        let expiry: u64 = se.parse().unwrap();
        let sr = encode_resource_uri(resource);
        assert_eq!(string_to_sign(&sr, se), to_sign.replace("\\n", "\n"), "{name}: stringToSign");
        assert_eq!(key.sign(to_sign.replace("\\n", "\n").as_bytes()).unwrap().expose(), sig, "{name}: sig");
        let t = SasToken::generate(&key, resource, expiry, skn).unwrap();
        assert_eq!(t.expose(), token, "{name}: token");
        let ttl = SasToken::generate_with_ttl(
            &key,
            resource,
            UNIX_EPOCH + Duration::from_secs(expiry - 3600),
            Duration::from_secs(3600),
            skn,
        )
        .unwrap();
        assert_eq!(ttl.expose(), token, "{name}: token from now + TTL");
        let parsed: SasToken = token.parse().unwrap();
        assert_eq!(
            (parsed.resource_uri(), parsed.expiry_unix(), parsed.policy()),
            (resource, expiry, skn),
            "{name}"
        );
        assert!(parsed.verify(&key), "{name}: verify");
        assert!(parsed.covers(resource), "{name}: covers");
    }
}

#[test]
fn each_sr_spelling_verifies_only_with_its_own_signature() {
    let cases: Vec<Vec<String>> = lines("sas_sr_spellings.txt")
        .iter()
        .map(|l| fields(l, 4).into_iter().map(str::to_owned).collect())
        .collect();
    for (i, c) in cases.iter().enumerate() {
        let key = SasKey::from_base64(&c[0]).unwrap();
        assert_eq!(key.sign(string_to_sign(&c[1], &c[2]).as_bytes()).unwrap().expose(), c[3], "{}", c[1]);
        for (j, other) in cases.iter().enumerate() {
            let sig = other[3].replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
            let token: SasToken =
                format!("SharedAccessSignature sr={}&sig={sig}&se={}", c[1], c[2]).parse().unwrap();
            assert_eq!(token.resource_uri(), "myhub.azure-devices.net/devices/device-01");
            assert_eq!(token.verify(&key), i == j, "sr {} with the signature of {}", c[1], other[1]);
        }
    }
}

#[test]
fn hmac_sanity_vector() {
    for line in lines("hmac.txt") {
        let f = fields(&line, 3);
        assert_eq!(SasKey::from_base64(f[0]).unwrap().sign(f[1].as_bytes()).unwrap().expose(), f[2]);
    }
}

#[test]
fn dps_group_keys_derive() {
    for line in lines("dps_derived_keys.txt") {
        let f = fields(&line, 3);
        let derived = SasKey::from_base64(f[0]).unwrap().derive(f[1]).unwrap();
        assert_eq!(derived.to_base64().expose(), f[2], "{}", f[1]);
    }
}

#[test]
fn dps_tokens_through_the_registration() {
    for line in lines("dps_tokens.txt") {
        let f = fields(&line, 6);
        let key = SasKey::from_base64(f[1]).unwrap();
        let auth = match f[0] {
            "individual" => DpsAuth::SymmetricKey(key),
            "group" => DpsAuth::GroupKey(key),
            other => panic!("{other}"),
        };
        let dps = DpsRegistration::new(f[2], f[3], auth, DpsOptions::default()).unwrap();
        let se: u64 = f[4].parse().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(se - 3600);
        assert_eq!(dps.sas_token(now).unwrap().unwrap().expose(), f[5], "{}", f[0]);
        let params = dps.connect_params(now).unwrap();
        assert_eq!(params.password.unwrap().expose(), f[5]);
    }
}

#[test]
fn dps_usernames() {
    let key = || {
        DpsAuth::SymmetricKey(SasKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap())
    };
    for line in lines("dps_connect.txt") {
        let f = fields(&line, 4);
        let opts = DpsOptions { product_info: opt(f[2]).map(str::to_owned), ..DpsOptions::default() };
        let dps = DpsRegistration::new(f[0], f[1], key(), opts).unwrap();
        assert_eq!(dps.username(), f[3]);
    }
}

#[test]
fn dps_topics() {
    for line in lines("dps_topics.txt") {
        let f = fields(&line, 4);
        let want = DpsTopic::Response {
            status: f[1].parse().unwrap(),
            request_id: f[2].into(),
            retry_after: opt(f[3]).map(|s| Duration::from_secs(s.parse().unwrap())),
        };
        assert_eq!(DpsTopic::parse(f[0]).unwrap(), want, "{}", f[0]);
        assert_eq!(want.assemble(), f[0]);
    }
}

#[test]
fn connect_client_ids_and_usernames() {
    for line in lines("connect.txt") {
        let f = fields(&line, 6);
        let cs: ConnectionString = f[0].parse().unwrap();
        let mut opts = AzureOptions::default();
        if let Some(v) = opt(f[1]) {
            opts.api_version = v.into();
        }
        opts.product_info = opt(f[2]).map(str::to_owned);
        opts.model_id = opt(f[3]).map(str::to_owned);
        let p = AzureProvider::new(cs, opts).unwrap();
        let params = p.connect_params(UNIX_EPOCH + Duration::from_secs(1_735_686_000)).unwrap();
        assert_eq!(params.client_id, f[4]);
        assert_eq!(params.username.as_deref(), Some(f[5]));
    }
}

#[test]
fn telemetry_topics() {
    for case in json_lines("telemetry.jsonl") {
        let s = |k: &str| case[k].as_str().map(str::to_owned);
        let mut publish = Publish::telemetry(&b"{}"[..]);
        if let Some(v) = s("message_id") {
            publish = publish.message_id(v);
        }
        if let Some(v) = s("content_type") {
            publish = publish.content_type(v);
        }
        if let Some(v) = s("content_encoding") {
            publish = publish.content_encoding(v);
        }
        for p in case["properties"].as_array().unwrap() {
            publish = publish.property(p[0].as_str().unwrap(), p[1].as_str().unwrap());
        }
        let p = AzureProvider::from_connection_string(&s("connection").unwrap()).unwrap();
        let packet = p.encode_publish(&publish).unwrap();
        assert_eq!(packet.topic, s("topic").unwrap(), "{}", case["case"]);
        assert!(packet.properties.is_empty());
    }
}

#[test]
fn c2d_bags_decode() {
    for case in json_lines("c2d.jsonl") {
        let topic = case["topic"].as_str().unwrap();
        let device = case["device"].as_str().unwrap();
        let bag_text = topic.split_once("/devicebound/").map_or("", |(_, b)| b);
        let bag = PropertyBag::parse(bag_text).unwrap();
        let want: Vec<(String, Option<String>)> = case["bag"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().map(str::to_owned)))
            .collect();
        assert_eq!(bag.clone().into_pairs(), want, "{}", case["case"]);

        let p = AzureProvider::from_connection_string(&format!(
            "HostName=h;DeviceId={device};SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        ))
        .unwrap();
        let Inbound::C2d(m) = p.classify(InboundMessage::new(topic, &b"body"[..], QoS::AtLeastOnce)) else {
            panic!("{}", case["case"]);
        };
        let (system, app) = bag.split_system();
        assert_eq!((m.system_properties, m.properties), (system, app), "{}", case["case"]);
    }
}

#[test]
fn inbound_topics_classify() {
    let p = AzureProvider::from_connection_string(
        "HostName=h;DeviceId=device-01;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .unwrap();
    for case in json_lines("inbound.jsonl") {
        let topic = case["topic"].as_str().unwrap();
        let inbound = p.classify(InboundMessage::new(topic, &b"{}"[..], QoS::AtMostOnce));
        assert_eq!(inbound.kind().as_str(), case["kind"].as_str().unwrap(), "{}", case["case"]);
        match inbound {
            Inbound::MethodRequest(m) => {
                assert_eq!(
                    (m.name.as_str(), m.request_id.as_str()),
                    (case["name"].as_str().unwrap(), case["request_id"].as_str().unwrap())
                )
            }
            Inbound::StateResponse(r) => {
                assert_eq!(u64::from(r.status), case["status"].as_u64().unwrap());
                assert_eq!(r.request_id, case["request_id"].as_str().unwrap());
                assert_eq!(r.version, case["version"].as_u64());
            }
            Inbound::DesiredPatch(d) => assert_eq!(d.version, case["version"].as_u64()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn outbound_request_topics() {
    let p = AzureProvider::from_connection_string(
        "HostName=h;DeviceId=device-01;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .unwrap();
    let twin = p.state().unwrap();
    for line in lines("outbound.txt") {
        let f = fields(&line, 4);
        let packet = match f[0] {
            "method_response" => p.method_response(f[1], f[2].parse().unwrap(), bytes::Bytes::new()).unwrap(),
            "twin_get" => twin.get(f[1]).unwrap(),
            "twin_report" => twin.report(f[1], b"{}").unwrap(),
            other => panic!("{other}"),
        };
        assert_eq!(packet.topic, f[3]);
    }
}
