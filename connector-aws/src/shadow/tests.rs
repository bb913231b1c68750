use super::*;

fn codec() -> ShadowCodec {
    ShadowCodec::new("lamp").unwrap()
}

fn classify(topic: &str, payload: &str) -> Inbound {
    let t = AwsTopic::parse(topic).unwrap();
    codec().classify(&t, topic, &Bytes::copy_from_slice(payload.as_bytes())).unwrap()
}

#[test]
fn requests_carry_the_client_token() {
    let c = codec();
    let g = c.get("r1").unwrap();
    assert_eq!(
        (g.topic.as_str(), &g.payload[..]),
        ("$aws/things/lamp/shadow/get", &br#"{"clientToken":"r1"}"#[..])
    );
    let u = c.update(Some("cfg"), "r2", br#"{"desired":{"a":1},"reported":null}"#, Some(7)).unwrap();
    assert_eq!(u.topic, "$aws/things/lamp/shadow/name/cfg/update");
    assert_eq!(
        &u.payload[..],
        br#"{"state":{"desired":{"a":1},"reported":null},"clientToken":"r2","version":7}"#
    );
    let d = c.delete(Some("cfg"), "r3").unwrap();
    assert_eq!(
        (d.topic.as_str(), &d.payload[..]),
        ("$aws/things/lamp/shadow/name/cfg/delete", &br#"{"clientToken":"r3"}"#[..])
    );
    let filters: Vec<String> = c.subscriptions().into_iter().map(|s| s.filter).collect();
    assert_eq!(
        filters,
        [
            "$aws/things/lamp/shadow/get/+",
            "$aws/things/lamp/shadow/update/+",
            "$aws/things/lamp/shadow/delete/+"
        ]
    );
    assert_eq!(c.named_subscriptions("cfg")[1].filter, "$aws/things/lamp/shadow/name/cfg/update/+");
    assert!(c.named_subscriptions("bad/name").is_empty());
}

#[test]
fn bad_requests_are_refused_before_sending() {
    let c = codec();
    assert!(c.report("r", b"[1]").is_err());
    assert!(c.report("r", b"{").is_err());
    assert!(c.report("", b"{}").is_err());
    assert!(c.report(&"r".repeat(65), b"{}").is_err());
    assert!(c.update(None, "r", br#"{"delta":{}}"#, None).is_err());
    assert!(c.update(None, "r", br#"{"desired":1}"#, None).is_err());
    assert!(c.get_named(Some("a/b"), "r").is_err());
    let big = format!(r#"{{"x":"{}"}}"#, "y".repeat(MAX_SHADOW_STATE));
    assert!(matches!(c.report("r", big.as_bytes()), Err(ProviderError::PayloadTooLarge { limit: 8192, .. })));
}

#[test]
fn responses_are_classified() {
    let accepted =
        r#"{"state":{"reported":{"a":1}},"metadata":{},"version":5,"timestamp":1,"clientToken":"r1"}"#;
    assert_eq!(
        classify("$aws/things/lamp/shadow/update/accepted", accepted),
        Inbound::StateResponse(StateResponse {
            request_id: "r1".into(),
            status: 200,
            version: Some(5),
            body: Bytes::from(accepted)
        })
    );
    let rejected = r#"{"code":409,"message":"Version conflict","clientToken":"r2"}"#;
    let Inbound::StateResponse(r) = classify("$aws/things/lamp/shadow/name/cfg/update/rejected", rejected)
    else {
        panic!()
    };
    assert_eq!((r.request_id.as_str(), r.status, r.version), ("r2", 409, None));
    for code in [400, 401, 403, 404, 413, 429, 500] {
        let body = format!(r#"{{"code":{code},"message":"m"}}"#);
        let Inbound::StateResponse(r) = classify("$aws/things/lamp/shadow/get/rejected", &body) else {
            panic!()
        };
        assert_eq!((r.status, r.request_id.as_str()), (code, ""));
    }
    let delta = r#"{"version":4,"timestamp":1,"state":{"color":"red"},"metadata":{"color":{"timestamp":1}}}"#;
    assert_eq!(
        classify("$aws/things/lamp/shadow/name/cfg/update/delta", delta),
        Inbound::DesiredPatch(DesiredPatch {
            shadow: Some("cfg".into()),
            version: Some(4),
            body: Bytes::from(r#"{"color":"red"}"#)
        })
    );
    let docs = r#"{"previous":{"state":{},"version":4},"current":{"state":{"reported":{"a":1}},"version":5},"timestamp":1}"#;
    let Inbound::StateDocuments(d) = classify("$aws/things/lamp/shadow/update/documents", docs) else {
        panic!()
    };
    assert_eq!((d.shadow, d.version), (None, Some(5)));
}

#[test]
fn malformed_documents_become_malformed() {
    for (topic, body) in [
        ("$aws/things/lamp/shadow/get/accepted", "not json"),
        ("$aws/things/lamp/shadow/get/accepted", "[]"),
        ("$aws/things/lamp/shadow/get/rejected", r#"{"code":"409"}"#),
        ("$aws/things/lamp/shadow/get/rejected", r#"{"code":99999}"#),
        ("$aws/things/lamp/shadow/get/rejected", r#"{"code":42}"#),
        ("$aws/things/lamp/shadow/update/delta", r#"{"state":[1]}"#),
        ("$aws/things/lamp/shadow/update/delta", r#"{"version":-1,"state":{}}"#),
        ("$aws/things/lamp/shadow/update/documents", r#"{"previous":{}}"#),
    ] {
        assert!(matches!(classify(topic, body), Inbound::Malformed { .. }), "{topic} {body}");
    }
}

#[test]
fn typed_documents_parse() {
    let doc: ShadowDocument = parse(
        br#"{"state":{"desired":{"color":"RED"},"reported":{"color":"GREEN"},"delta":{"color":"RED"}},
            "metadata":{"desired":{"color":{"timestamp":12345}}},"version":17,"timestamp":123456789}"#,
    )
    .unwrap();
    assert_eq!(doc.version, Some(17));
    assert_eq!(doc.state.delta, Some(serde_json::json!({"color":"RED"})));
    let del: DeleteAccepted = parse(br#"{"version":4,"timestamp":1591057529}"#).unwrap();
    assert_eq!(del.version, Some(4));
    let err = parse_error(br#"{"code":404,"message":"No shadow exists with name: 'lamp'"}"#).unwrap();
    assert_eq!((err.code, err.client_token), (404, None));
}

#[test]
fn a_document_is_read_as_sections_and_the_delta_is_the_catch_up() {
    let doc = serde_json::json!({"state": {"desired": {"a": 2}, "reported": {"a": 1}, "delta": {"a": 2}}, "version": 9});
    let s = codec().read_document(&doc, None);
    assert_eq!((s.desired_version, s.reported_version), (Some(9), None));
    assert_eq!(
        (s.desired, s.reported),
        (Some(serde_json::json!({"a": 2})), Some(serde_json::json!({"a": 1})))
    );
    assert_eq!(s.catch_up, Some(serde_json::json!({"a": 2})));
    // Reported matches desired: no delta, nothing to catch up on.
    let doc = serde_json::json!({"state": {"desired": {"a": 2}, "reported": {"a": 2}}, "version": 10});
    assert_eq!(codec().read_document(&doc, None).catch_up, None);
    let doc = serde_json::json!({"state": {"desired": {"a": 2}, "delta": {}}, "version": 10});
    assert_eq!(codec().read_document(&doc, None).catch_up, None);
}
