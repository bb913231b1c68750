//! Malformed input never panics and always ends in a typed error: shadow and jobs
//! documents on the provider's topics become `Inbound::Malformed` with a reason, topics
//! under the shadow and jobs prefixes that do not parse likewise, bad requests and
//! options are refused before anything is sent, and random mutations of valid topics and
//! documents are survived.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use connector_aws::credentials::{parse_credentials_file, CredentialsSource};
use connector_aws::shadow::{parse, parse_error, DeltaDocument, ShadowDocument, UpdateDocuments};
use connector_aws::{
    AwsAuth, AwsCredentials, AwsError, AwsOptions, AwsProvider, AwsTopic, CredentialsError, CustomAuth,
    SigV4Auth, TopicParseError, X509Credentials,
};
use connector_core::jobs::{JobStatus, JobUpdate, StartNextRequest};
use connector_core::{Inbound, InboundMessage, Provider, ProviderError, Publish, QoS};

fn provider() -> AwsProvider {
    let creds = AwsCredentials::new("AKID", "secret").unwrap();
    let opts =
        AwsOptions::new("localhost", "lamp", AwsAuth::SigV4(SigV4Auth::explicit(creds).region("us-east-1")));
    AwsProvider::new(opts).unwrap()
}

fn classify(p: &AwsProvider, topic: &str, payload: &[u8]) -> Inbound {
    p.classify(InboundMessage::new(topic, Bytes::copy_from_slice(payload), QoS::AtLeastOnce))
}

#[test]
fn malformed_documents_on_provider_topics_are_malformed_with_a_reason() {
    let p = provider();
    let table: &[(&str, &[u8], &str)] = &[
        ("$aws/things/lamp/shadow/get/accepted", b"", "EOF"),
        ("$aws/things/lamp/shadow/get/accepted", b"\xff\xfe", "expected value"),
        ("$aws/things/lamp/shadow/update/accepted", b"[1,2]", "not a JSON object"),
        ("$aws/things/lamp/shadow/update/accepted", br#"{"clientToken":7}"#, ""),
        ("$aws/things/lamp/shadow/update/rejected", br#"{"message":"no code"}"#, "code"),
        ("$aws/things/lamp/shadow/update/rejected", br#"{"code":"409"}"#, "u16"),
        ("$aws/things/lamp/shadow/update/rejected", br#"{"code":70000}"#, ""),
        ("$aws/things/lamp/shadow/delete/rejected", br#"{"code":99}"#, "HTTP status"),
        ("$aws/things/lamp/shadow/update/delta", br#"{"version":1}"#, "state"),
        ("$aws/things/lamp/shadow/update/delta", br#"{"state":"on"}"#, ""),
        ("$aws/things/lamp/shadow/name/cfg/update/delta", br#"{"state":{},"version":"1"}"#, ""),
        ("$aws/things/lamp/shadow/update/documents", br#"{"previous":{"version":1}}"#, "current"),
        ("$aws/things/lamp/shadow/update/documents", br#"{"current":{"state":[]}}"#, ""),
        ("$aws/things/lamp/jobs/get/accepted", b"{", "EOF"),
        ("$aws/things/lamp/jobs/start-next/accepted", b"null", "not a JSON object"),
        ("$aws/things/lamp/jobs/j1/update/accepted", br#"{"clientToken":["x"]}"#, "clientToken"),
        ("$aws/things/lamp/jobs/j1/update/rejected", br#"{"code":400,"message":"m"}"#, "code"),
        ("$aws/things/lamp/jobs/notify", b"\"text\"", "not a JSON object"),
        ("$aws/things/lamp/jobs/notify-next", b"", "EOF"),
    ];
    for (topic, payload, needle) in table {
        match classify(&p, topic, payload) {
            Inbound::Malformed { topic: t, reason } => {
                assert_eq!(t, *topic);
                assert!(reason.contains(needle), "{topic} {payload:?}: {reason}");
            }
            other => panic!("{topic} {payload:?}: {other:?}"),
        }
    }
    // The state-document parsers reject the same with typed errors.
    assert!(parse::<ShadowDocument>(b"[]").is_err());
    assert!(parse::<DeltaDocument>(br#"{"state":1}"#).is_err());
    assert!(parse::<UpdateDocuments>(b"{}").is_err());
    assert!(parse_error(br#"{"code":-1}"#).is_err());
}

#[test]
fn malformed_topics_under_service_prefixes_are_malformed() {
    let p = provider();
    for (topic, error) in [
        ("$aws/things/lamp/shadow", TopicParseError::UnknownOperation { service: "shadow" }),
        (
            "$aws/things/lamp/shadow/get/accepted/extra",
            TopicParseError::UnknownOperation { service: "shadow" },
        ),
        (
            "$aws/things/lamp/shadow/delete/delta",
            TopicParseError::Invalid("only update has delta and documents"),
        ),
        ("$aws/things/lamp/jobs/j1/cancel/accepted", TopicParseError::UnknownOperation { service: "jobs" }),
        ("$aws/things/lamp/jobs/a/b/c/d", TopicParseError::UnknownOperation { service: "jobs" }),
    ] {
        assert_eq!(AwsTopic::parse(topic), Err(error.clone()), "{topic}");
        assert_eq!(
            classify(&p, topic, b"{}"),
            Inbound::Malformed { topic: topic.into(), reason: error.to_string() }
        );
    }
    for topic in ["$aws/things/l mp/shadow/get/accepted", "$aws/things/lamp/jobs/bad!id/get/accepted"] {
        assert!(matches!(AwsTopic::parse(topic), Err(TopicParseError::InvalidName { .. })), "{topic}");
        assert!(matches!(classify(&p, topic, b"{}"), Inbound::Malformed { .. }), "{topic}");
    }
}

#[test]
fn bad_requests_are_refused_before_sending() {
    let p = provider();
    let shadow = p.state().unwrap();
    let jobs = p.jobs().unwrap();
    let refused: Vec<(&str, Result<_, ProviderError>)> = vec![
        ("report not JSON", shadow.report("r", b"{oops")),
        ("report array", shadow.report("r", b"[]")),
        ("empty request id", shadow.get("")),
        ("long request id", shadow.get(&"r".repeat(65))),
        ("update with metadata", shadow.update(None, "r", br#"{"metadata":{}}"#, None)),
        ("update desired scalar", shadow.update(None, "r", br#"{"desired":"x"}"#, Some(1))),
        ("bad shadow name", shadow.delete(Some("a b"), "r")),
        ("long shadow name", shadow.get_named(Some(&"s".repeat(65)), "r")),
        ("update $next", jobs.update("r", "$next", &JobUpdate::new(JobStatus::InProgress))),
        ("update queued", jobs.update("r", "j", &JobUpdate::new(JobStatus::Queued))),
        (
            "start-next bad timeout",
            jobs.start_next(
                "r",
                &StartNextRequest { status_details: None, step_timeout_in_minutes: Some(10_081) },
            ),
        ),
        ("describe bad id", jobs.describe("r", "a/b", &Default::default())),
        ("publish reserved", p.encode_publish(&Publish::to_topic("$aws/things/lamp/jobs/get", &b"{}"[..]))),
        ("publish wildcard", p.encode_publish(&Publish::to_topic("a/#", &b"{}"[..]))),
        ("publish too long", p.encode_publish(&Publish::to_topic("t".repeat(257), &b"{}"[..]))),
        ("publish too big", p.encode_publish(&Publish::telemetry(vec![0u8; 128 * 1024 + 1]))),
        ("properties on 3.1.1", p.encode_publish(&Publish::telemetry(&b"x"[..]).content_type("a/b"))),
    ];
    for (what, r) in refused {
        assert!(r.is_err(), "{what}: {r:?}");
    }
}

#[test]
fn bad_options_are_typed_errors() {
    let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    let sig =
        || AwsAuth::SigV4(SigV4Auth::explicit(AwsCredentials::new("AKID", "s").unwrap()).region("us-east-1"));
    let bad_region =
        AwsAuth::SigV4(SigV4Auth::explicit(AwsCredentials::new("AKID", "s").unwrap()).region("US East"));
    let mut long_expiry = SigV4Auth::explicit(AwsCredentials::new("AKID", "s").unwrap()).region("us-east-1");
    long_expiry.expires = Some(Duration::from_secs(8 * 24 * 3600));
    let table: Vec<(AwsOptions, &str)> = vec![
        (AwsOptions::new("", "lamp", sig()), "endpoint"),
        (AwsOptions::new("h/x", "lamp", sig()), "endpoint"),
        (AwsOptions::new("h", "", sig()), "thing_name"),
        (AwsOptions::new("h", "lamp", sig()).client_id("a\u{0}b"), "client_id"),
        (AwsOptions::new("h", "lamp", bad_region), "auth"),
        (AwsOptions::new("h", "lamp", AwsAuth::SigV4(long_expiry)), "auth"),
        (
            AwsOptions::new("h", "lamp", AwsAuth::CustomAuthorizer(CustomAuth::new(Some("a b")))),
            "custom_auth.authorizer",
        ),
        (
            AwsOptions::new("h", "lamp", AwsAuth::CustomAuthorizer(CustomAuth::new(None).signature("s"))),
            "custom_auth.signature",
        ),
        (AwsOptions::new("h", "lamp", sig()).telemetry_topic(""), "telemetry_topic"),
    ];
    for (opts, field) in table {
        match AwsProvider::new_at(opts, now) {
            Err(AwsError::Config { field: f, reason }) => assert_eq!(f, field, "{reason}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    let missing = AwsOptions::new(
        "h",
        "lamp",
        AwsAuth::Certificate(X509Credentials::from_files("/nonexistent/c", "/nonexistent/k")),
    );
    assert!(matches!(AwsProvider::new_at(missing, now), Err(AwsError::Certificate(_))));
    let junk = AwsOptions::new("h", "lamp", AwsAuth::Certificate(X509Credentials::from_pem("junk", "junk")));
    assert!(matches!(AwsProvider::new_at(junk, now), Err(AwsError::Certificate(_))));
    let no_profile = CredentialsSource::Profile {
        name: Some("nope".into()),
        file: Some("/nonexistent/credentials".into()),
    };
    let opts = AwsOptions::new("h", "lamp", AwsAuth::SigV4(SigV4Auth::new(no_profile).region("us-east-1")));
    assert!(matches!(
        AwsProvider::new_at(opts, now),
        Err(AwsError::Credentials(CredentialsError::Read { .. }))
    ));
    for bad in ["[", "[default]\nno equals", "[default]\naws_access_key_id=\n"] {
        assert!(parse_credentials_file(bad, "default").is_err(), "{bad:?}");
    }
}

/// xorshift mutations of valid topics and documents: classification never panics, a
/// topic under a shadow or jobs prefix is never a plain message for the own thing unless
/// it is a request topic, and what parses re-assembles to the same topic.
#[test]
fn random_mutations_never_panic() {
    let p = provider();
    let topics = [
        "$aws/things/lamp/shadow/get/accepted",
        "$aws/things/lamp/shadow/name/cfg/update/delta",
        "$aws/things/lamp/shadow/update/documents",
        "$aws/things/lamp/jobs/j1/update/rejected",
        "$aws/things/lamp/jobs/notify-next",
        "sensors/lamp/t",
    ];
    let bodies: [&[u8]; 4] = [
        br#"{"state":{"color":"red"},"version":4,"clientToken":"c"}"#,
        br#"{"code":409,"message":"Version conflict","clientToken":"c"}"#,
        br#"{"previous":{"state":{}},"current":{"state":{"reported":{"a":[1,2]}},"version":5}}"#,
        br#"{"execution":{"jobId":"j","status":"QUEUED"},"timestamp":1}"#,
    ];
    let alphabet = b"$/+#a-z0{}[]\":,\x00\xff";
    let mut next = test_support::xorshift(0x9e37_79b9_7f4a_7c15u64);
    for i in 0..20_000 {
        let mut t = topics[i % topics.len()].as_bytes().to_vec();
        let mut b = bodies[i % bodies.len()].to_vec();
        for v in [&mut t, &mut b] {
            for _ in 0..(next() % 4) {
                let pos = (next() as usize) % (v.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => v.insert(pos, c),
                    1 if pos < v.len() => {
                        v.remove(pos);
                    }
                    _ if pos < v.len() => v[pos] = c,
                    _ => {}
                }
            }
        }
        let Ok(topic) = String::from_utf8(t) else { continue };
        if let Ok(parsed) = AwsTopic::parse(&topic) {
            assert_eq!(parsed.assemble().as_deref(), Ok(topic.as_str()), "{topic}");
        }
        let _ = classify(&p, &topic, &b);
    }
}
