//! Tables of malformed input to every public parser of the Azure provider: each row must
//! come back as the typed error it names (never a panic, never a secret in the message).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use connector_azure::dps::codec::DpsResponse;
use connector_azure::error::{
    ConnectionStringError as Cs, DpsError, PropertyBagError as Pb, SasError, TopicParseError as Tp,
};
use connector_azure::methods::response_packet;
use connector_azure::{ConnectionString, DeviceTopic, PropertyBag, SasKey, SasToken, TwinCodec};
use connector_core::provider::StateCodec;
use connector_core::ProviderError;

/// A row's check: does the error have the expected shape?
type Check<E> = fn(&E) -> bool;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[test]
fn connection_strings() {
    let h = "HostName=h.azure-devices.net";
    let rows: Vec<(String, Check<Cs>)> = vec![
        (String::new(), |e| *e == Cs::Empty),
        ("   ".into(), |e| *e == Cs::Empty),
        (format!("{h};DeviceId"), |e| *e == Cs::MalformedPair { index: 1 }),
        (format!("{h};DeviceId=d;Colour=blue;SharedAccessKey={KEY}"), |e| matches!(e, Cs::UnknownKey(k) if k == "Colour")),
        (format!("{h};deviceid=d;SharedAccessKey={KEY}"), |e| matches!(e, Cs::UnknownKey(_))),
        (format!("{h};DeviceId=a;DeviceId=b;SharedAccessKey={KEY}"), |e| *e == Cs::DuplicateKey("DeviceId")),
        (format!("{h};DeviceId=;SharedAccessKey={KEY}"), |e| *e == Cs::EmptyValue("DeviceId")),
        (format!("DeviceId=d;SharedAccessKey={KEY}"), |e| *e == Cs::MissingField("HostName")),
        (format!("{h};SharedAccessKey={KEY}"), |e| *e == Cs::MissingField("DeviceId")),
        (format!("{h};DeviceId=d"), |e| *e == Cs::MissingCredential),
        (format!("{h};DeviceId=d;SharedAccessKey={KEY};x509=true"), |e| matches!(e, Cs::Conflict { .. })),
        (
            format!("{h};DeviceId=d;SharedAccessKey={KEY};SharedAccessSignature=SharedAccessSignature sr=a&sig=b&se=1"),
            |e| matches!(e, Cs::Conflict { .. }),
        ),
        (format!("{h};DeviceId=d;SharedAccessKey=not*base64"), |e| matches!(e, Cs::InvalidValue { key: "SharedAccessKey", .. })),
        (format!("{h};DeviceId=d;x509=maybe"), |e| matches!(e, Cs::InvalidValue { key: "x509", .. })),
        (format!("{h};DeviceId=d;SharedAccessSignature=garbage"), |e| matches!(e, Cs::InvalidValue { .. })),
        (format!("{h};DeviceId=d;SharedAccessKeyName=policy"), |e| matches!(e, Cs::MissingCredential | Cs::MissingField(_))),
        (format!("HostName=;DeviceId=d;SharedAccessKey={KEY}"), |e| *e == Cs::EmptyValue("HostName")),
        (format!("HostName=bad host;DeviceId=d;SharedAccessKey={KEY}"), |e| matches!(e, Cs::InvalidValue { key: "HostName", .. })),
    ];
    for (input, expected) in &rows {
        let err = input.parse::<ConnectionString>().expect_err(input);
        assert!(expected(&err), "{input:?} gave {err:?}");
        assert!(!err.to_string().contains(KEY), "the key leaked into {err}");
        println!("connection string {input:?} -> {err}");
    }
    println!("malformed connection strings: {} rows, all typed errors", rows.len());
}

#[test]
fn property_bags() {
    let rows: Vec<(&str, Check<Pb>)> = vec![
        ("=v", |e| matches!(e, Pb::EmptyName { .. })),
        ("a=1&=2", |e| matches!(e, Pb::EmptyName { .. })),
        ("a=%zz", |e| matches!(e, Pb::BadEscape { .. })),
        ("a=%4", |e| matches!(e, Pb::BadEscape { .. })),
        ("a%=1", |e| matches!(e, Pb::BadEscape { .. })),
        ("a=%ff%fe", |e| matches!(e, Pb::NotUtf8 { .. })),
    ];
    for (input, expected) in &rows {
        let err = PropertyBag::parse(input).expect_err(input);
        assert!(expected(&err), "{input:?} gave {err:?}");
        println!("property bag {input:?} -> {err}");
    }
    // The same bags inside a C2D topic come back as the topic parser's typed error.
    for (input, _) in &rows {
        let topic = format!("devices/d/messages/devicebound/{input}");
        let err = DeviceTopic::parse(&topic).expect_err(&topic);
        assert!(matches!(err, Tp::Properties(_)), "{topic:?} gave {err:?}");
    }
    println!("malformed property bags: {} rows, all typed errors", rows.len());
}

#[test]
fn device_topics() {
    let rows: Vec<(&str, Check<Tp>)> = vec![
        ("", |e| *e == Tp::Unknown),
        ("devices", |e| *e == Tp::Unknown),
        ("$iothub/unknown/thing", |e| *e == Tp::Unknown),
        ("$iothub/twin/res/abc/?$rid=1", |e| matches!(e, Tp::InvalidStatus { .. })),
        ("$iothub/twin/res/200/", |e| matches!(e, Tp::MissingParameter(_))),
        ("$iothub/twin/res/200/?$rid=1&$rid=2", |e| matches!(e, Tp::DuplicateParameter(_))),
        ("$iothub/twin/res/200/?$rid=1&$version=x", |e| matches!(e, Tp::InvalidVersion { .. })),
        ("$iothub/methods/POST/reboot/", |e| matches!(e, Tp::MissingParameter(_))),
        ("$iothub/methods/POST/reboot/?$rid=%zz", |e| matches!(e, Tp::Properties(_))),
    ];
    for (input, expected) in &rows {
        let err = DeviceTopic::parse(input).expect_err(input);
        assert!(expected(&err), "{input:?} gave {err:?}");
    }
    println!("malformed device topics: {} rows, all typed errors", rows.len());
}

#[test]
fn sas_tokens_and_keys() {
    let rows: Vec<(&str, Check<SasError>)> = vec![
        ("", |e| *e == SasError::MissingPrefix),
        ("sr=a&sig=b&se=1", |e| *e == SasError::MissingPrefix),
        ("SharedAccessSignature sr=a&sig", |e| matches!(e, SasError::MalformedField { index: 1 })),
        ("SharedAccessSignature sr=a&sig=b&se=1&colour=red", |e| matches!(e, SasError::UnknownField(_))),
        ("SharedAccessSignature sr=a&sr=a&sig=b&se=1", |e| matches!(e, SasError::DuplicateField(_))),
        ("SharedAccessSignature sig=b&se=1", |e| matches!(e, SasError::MissingField("sr"))),
        ("SharedAccessSignature sr=a&sig=AAAA&se=soon", |e| *e == SasError::InvalidExpiry),
        ("SharedAccessSignature sr=%zz&sig=b&se=1", |e| matches!(e, SasError::BadEncoding(_))),
    ];
    for (input, expected) in &rows {
        let err = input.parse::<SasToken>().expect_err(input);
        assert!(expected(&err), "{input:?} gave {err:?}");
    }
    for bad in ["", "not*base64", "===="] {
        assert!(matches!(SasKey::from_base64(bad), Err(SasError::InvalidKey { .. })), "{bad:?}");
    }
    // A well-formed token signed with another key does not verify.
    let key = SasKey::from_base64(KEY).unwrap();
    let other = SasKey::from_base64("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=").unwrap();
    let token = SasToken::generate(&other, "h.azure-devices.net/devices/d", 1_700_000_060, None).unwrap();
    let parsed = token.expose().parse::<SasToken>().unwrap();
    assert!(parsed.verify(&other));
    assert!(!parsed.verify(&key));
    println!("malformed SAS tokens: {} rows, all typed errors", rows.len());
}

#[test]
fn twin_documents_and_method_payloads() {
    let codec = TwinCodec;
    for bad in [&b""[..], b"null", b"[1,2]", b"\"text\"", b"42", b"{\"a\":", b"\xff\xfe", b"{} trailing"] {
        let err = codec.report("1", bad).expect_err(&String::from_utf8_lossy(bad));
        assert!(matches!(err, ProviderError::Unsupported { .. }), "{bad:?} gave {err:?}");
    }
    assert!(codec.get("").is_err());
    for bad in [&b"{not json"[..], b"\xff", b"[1,", b"{\"a\":1}}"] {
        let err = response_packet("1", 200, Bytes::copy_from_slice(bad)).expect_err("not JSON");
        assert!(matches!(err, ProviderError::Unsupported { .. }), "{bad:?} gave {err:?}");
    }
    let big = Bytes::from(vec![b' '; 128 * 1024 + 1]);
    assert!(matches!(response_packet("1", 200, big), Err(ProviderError::PayloadTooLarge { .. })));
    println!("malformed twin documents and method payloads: all typed errors");
}

#[test]
fn dps_responses() {
    let ok_topic = "$dps/registrations/res/202/?$rid=1&retry-after=3";
    let rows: Vec<(&str, &[u8], Check<DpsError>)> = vec![
        ("$dps/other", b"{}", |e| matches!(e, DpsError::UnknownTopic)),
        ("$dps/registrations/res/abc/?$rid=1", b"{}", |e| matches!(e, DpsError::InvalidStatus { .. })),
        ("$dps/registrations/res/202/", b"{}", |e| matches!(e, DpsError::MissingParameter(_))),
        ("$dps/registrations/res/202/?$rid=1&retry-after=later", b"{}", |e| {
            matches!(e, DpsError::InvalidRetryAfter { .. })
        }),
        ("$dps/registrations/res/202/?$rid=%zz", b"{}", |e| matches!(e, DpsError::Query(_))),
        (ok_topic, b"{not json", |e| matches!(e, DpsError::InvalidBody { .. })),
        (ok_topic, b"\xff", |e| matches!(e, DpsError::InvalidBody { .. })),
    ];
    for (topic, body, expected) in &rows {
        let err = DpsResponse::parse(topic, body).expect_err(topic);
        assert!(expected(&err), "{topic:?} {body:?} gave {err:?}");
    }
    println!("malformed DPS responses: {} rows, all typed errors", rows.len());
}
