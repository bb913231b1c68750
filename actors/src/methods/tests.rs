#![allow(clippy::unwrap_used)]
use super::*;

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Args {
    delay: u64,
}

#[test]
fn malformed_payloads_are_typed_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty payload"),
        (b"  \n", "empty payload"),
        (b"{not json", "key must be a string"),
        (b"\xff\xfe", "expected value"),
        (b"\"a string\"", "invalid type"),
        (b"{\"delay\":\"soon\"}", "invalid type"),
        (b"{\"delay\":-1}", "invalid value"),
        (b"{}", "missing field"),
        (b"{\"delay\":1} trailing", "trailing characters"),
    ];
    for (payload, want) in cases {
        let call = MethodCall::new("m", "1", Bytes::copy_from_slice(payload));
        match call.json::<Args>() {
            Err(MethodError::InvalidPayload { method, reason }) => {
                assert_eq!(method, "m");
                assert!(reason.contains(want), "{payload:?}: {reason}");
            }
            other => panic!("{payload:?}: {other:?}"),
        }
    }
    let ok = MethodCall::new("m", "1", &b"{\"delay\":5}"[..]);
    assert_eq!(ok.json::<Args>().unwrap(), Args { delay: 5 });
}

#[test]
fn responses_build_json_bodies() {
    let r = MethodResponse::error(418, "teapot");
    assert_eq!((r.status, &r.payload[..]), (418, &br#"{"error":"teapot"}"#[..]));
    assert_eq!(MethodResponse::ok(json!({"a": 1})).payload, Bytes::from_static(br#"{"a":1}"#));
    assert!(MethodResponse::empty(204).payload.is_empty());
    let mut bad = HashMap::new();
    bad.insert(vec![1u8], 1);
    assert!(matches!(MethodResponse::json(200, &bad), Err(MethodError::Serialize { .. })));
}
