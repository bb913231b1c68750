//! Fleet-provisioning documents (`aws-fleet-provisioning.md` §2–§5), JSON format: the
//! three request bodies, their typed answers and the error document of `/rejected`.
//!
//! Private keys and ownership tokens are [`Secret`]s: no `Debug` or error shows them.
//!
//! ```
//! use connector_aws::fleet::{FleetAnswer, FleetApi};
//! let answer = FleetAnswer::parse(
//!     "$aws/provisioning-templates/FleetTemplate/provision/json/rejected",
//!     br#"{"statusCode":404,"errorCode":"ResourceNotFound","errorMessage":"No template"}"#,
//! )?;
//! let FleetAnswer::Rejected { api, error } = answer else { unreachable!() };
//! assert_eq!(api.name(), "RegisterThing");
//! assert_eq!((error.status_code, error.error_code.as_str()), (404, "ResourceNotFound"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use connector_core::Secret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::FleetError;
use super::topics::{FleetApi, FleetTopic, TemplateName, TopicKind};

/// The CreateKeysAndCertificate request body: `{}` (what the AWS SDKs send).
pub fn create_keys_body() -> Vec<u8> {
    b"{}".to_vec()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CsrRequest<'a> {
    certificate_signing_request: &'a str,
}

/// The CreateCertificateFromCsr request body: `{"certificateSigningRequest":"…"}`.
pub fn create_from_csr_body(csr_pem: &str) -> Vec<u8> {
    // Serializing a struct of one string cannot fail.
    serde_json::to_vec(&CsrRequest { certificate_signing_request: csr_pem }).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest<'a> {
    certificate_ownership_token: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    parameters: &'a BTreeMap<String, String>,
}

/// The RegisterThing request body:
/// `{"certificateOwnershipToken":"…"[,"parameters":{…}]}` (no `parameters` when empty).
pub fn register_thing_body(ownership_token: &Secret, parameters: &BTreeMap<String, String>) -> Vec<u8> {
    let body = RegisterRequest { certificate_ownership_token: ownership_token.expose(), parameters };
    // Serializing strings and a string map cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The CreateKeysAndCertificate answer. `Debug` hides the key and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeysAndCertificate {
    /// `certificateId` (64 hex characters on AWS).
    pub certificate_id: String,
    /// `certificatePem`.
    pub certificate_pem: String,
    /// `privateKey` (PEM).
    pub private_key: Secret,
    /// `certificateOwnershipToken`, for RegisterThing.
    pub ownership_token: Secret,
}

/// The CreateCertificateFromCsr answer. `Debug` hides the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateFromCsr {
    /// `certificateId`.
    pub certificate_id: String,
    /// `certificatePem`.
    pub certificate_pem: String,
    /// `certificateOwnershipToken`, for RegisterThing.
    pub ownership_token: Secret,
}

/// The RegisterThing answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThingRegistered {
    /// `thingName`: the thing created or updated (the device's client id from now on).
    pub thing_name: String,
    /// `deviceConfiguration`: the template's flat key → value section (non-string values
    /// are kept as their JSON text).
    pub device_configuration: BTreeMap<String, String>,
}

/// The error document of every `/rejected` topic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct ErrorDocument {
    /// `statusCode` (HTTP-like: 400, 404, 429, 500).
    pub status_code: u16,
    /// `errorCode` (`InvalidPayload`, `ResourceNotFound`, …).
    pub error_code: String,
    /// `errorMessage`.
    pub error_message: String,
}

/// A parsed answer of the fleet-provisioning API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetAnswer {
    /// CreateKeysAndCertificate accepted.
    KeysAndCertificate(KeysAndCertificate),
    /// CreateCertificateFromCsr accepted.
    CertificateFromCsr(CertificateFromCsr),
    /// RegisterThing accepted.
    ThingRegistered {
        /// The template the request named.
        template: TemplateName,
        /// The answer.
        answer: ThingRegistered,
    },
    /// Any of the three rejected.
    Rejected {
        /// The API that refused.
        api: FleetApi,
        /// Its error document.
        error: ErrorDocument,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCertificate {
    #[serde(default)]
    certificate_id: String,
    #[serde(default)]
    certificate_pem: String,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    certificate_ownership_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRegistered {
    #[serde(default)]
    thing_name: String,
    #[serde(default)]
    device_configuration: Option<BTreeMap<String, Value>>,
}

impl FleetAnswer {
    /// The API this answers.
    pub fn api(&self) -> FleetApi {
        match self {
            Self::KeysAndCertificate(_) => FleetApi::CreateKeysAndCertificate,
            Self::CertificateFromCsr(_) => FleetApi::CreateCertificateFromCsr,
            Self::ThingRegistered { template, .. } => FleetApi::RegisterThing(template.clone()),
            Self::Rejected { api, .. } => api.clone(),
        }
    }

    /// Parses an `/accepted` or `/rejected` message of any of the three APIs.
    pub fn parse(topic: &str, payload: &[u8]) -> Result<Self, FleetError> {
        let FleetTopic { api, kind } = FleetTopic::parse(topic)?;
        let name = api.name();
        let malformed =
            |e: serde_json::Error| FleetError::MalformedAnswer { api: name, reason: redacted(&e) };
        match kind {
            TopicKind::Request => Err(FleetError::NotAnAnswer { topic: topic.chars().take(128).collect() }),
            TopicKind::Rejected => {
                let error: ErrorDocument = serde_json::from_slice(payload).map_err(malformed)?;
                Ok(Self::Rejected { api, error })
            }
            TopicKind::Accepted => match api {
                FleetApi::RegisterThing(template) => {
                    let raw: RawRegistered = serde_json::from_slice(payload).map_err(malformed)?;
                    if raw.thing_name.is_empty() {
                        return Err(FleetError::MissingField { api: name, field: "thingName" });
                    }
                    let device_configuration = raw
                        .device_configuration
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| match v {
                            Value::String(s) => (k, s),
                            other => (k, other.to_string()),
                        })
                        .collect();
                    Ok(Self::ThingRegistered {
                        template,
                        answer: ThingRegistered { thing_name: raw.thing_name, device_configuration },
                    })
                }
                FleetApi::CreateKeysAndCertificate | FleetApi::CreateCertificateFromCsr => {
                    let raw: RawCertificate = serde_json::from_slice(payload).map_err(malformed)?;
                    let required = |value: &str, field| {
                        if value.is_empty() {
                            Err(FleetError::MissingField { api: name, field })
                        } else {
                            Ok(())
                        }
                    };
                    required(&raw.certificate_id, "certificateId")?;
                    required(&raw.certificate_pem, "certificatePem")?;
                    required(&raw.certificate_ownership_token, "certificateOwnershipToken")?;
                    let ownership_token = Secret::new(raw.certificate_ownership_token);
                    if api == FleetApi::CreateCertificateFromCsr {
                        return Ok(Self::CertificateFromCsr(CertificateFromCsr {
                            certificate_id: raw.certificate_id,
                            certificate_pem: raw.certificate_pem,
                            ownership_token,
                        }));
                    }
                    let private_key = match raw.private_key {
                        Some(k) if !k.is_empty() => Secret::new(k),
                        _ => return Err(FleetError::MissingField { api: name, field: "privateKey" }),
                    };
                    Ok(Self::KeysAndCertificate(KeysAndCertificate {
                        certificate_id: raw.certificate_id,
                        certificate_pem: raw.certificate_pem,
                        private_key,
                        ownership_token,
                    }))
                }
            },
        }
    }
}

/// serde's message with every quoted string value blanked out: an answer may carry a
/// private key or a token in a field of the wrong type (or a whole answer double-encoded
/// as one JSON string), and serde quotes such values with `{:?}`, escaping inner quotes
/// as `\"`: an escaped quote does not end the blanked value.
fn redacted(e: &serde_json::Error) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in e.to_string().chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"…");
            }
            (_, true) if escaped => escaped = false,
            ('\\', true) => escaped = true,
            ('"', true) => {
                quoted = false;
                out.push('"');
            }
            (c, false) => out.push(c),
            (_, true) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE_ACCEPTED: &str = "$aws/certificates/create/json/accepted";
    const CSR_ACCEPTED: &str = "$aws/certificates/create-from-csr/json/accepted";
    const PROVISION_ACCEPTED: &str = "$aws/provisioning-templates/FleetTemplate/provision/json/accepted";
    const ID: &str = "0e3b8e3f9a2d4c1b7f6e5d4c3b2a19080706050403020100ffeeddccbbaa9988";

    fn keys_doc() -> String {
        format!(
            r#"{{"certificateId":"{ID}",
 "certificatePem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
 "privateKey":"-----BEGIN RSA PRIVATE KEY-----\nsecret-key-material\n-----END RSA PRIVATE KEY-----\n",
 "certificateOwnershipToken":"token-opaque-123"}}"#
        )
    }

    #[test]
    fn request_bodies() {
        assert_eq!(create_keys_body(), b"{}");
        assert_eq!(
            String::from_utf8(create_from_csr_body("-----BEGIN CERTIFICATE REQUEST-----\nX\n")).unwrap(),
            r#"{"certificateSigningRequest":"-----BEGIN CERTIFICATE REQUEST-----\nX\n"}"#
        );
        let params = BTreeMap::from([
            ("SerialNumber".to_owned(), "1".to_owned()),
            ("DeviceLocation".to_owned(), "Seattle".to_owned()),
        ]);
        assert_eq!(
            String::from_utf8(register_thing_body(&Secret::new("tok"), &params)).unwrap(),
            r#"{"certificateOwnershipToken":"tok","parameters":{"DeviceLocation":"Seattle","SerialNumber":"1"}}"#
        );
        assert_eq!(
            String::from_utf8(register_thing_body(&Secret::new("tok"), &BTreeMap::new())).unwrap(),
            r#"{"certificateOwnershipToken":"tok"}"#
        );
    }

    #[test]
    fn accepted_documents_parse_and_hide_secrets() {
        let FleetAnswer::KeysAndCertificate(k) =
            FleetAnswer::parse(CREATE_ACCEPTED, keys_doc().as_bytes()).unwrap()
        else {
            panic!("keys and certificate expected")
        };
        assert_eq!(k.certificate_id, ID);
        assert!(k.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(k.private_key.expose().contains("secret-key-material"));
        assert_eq!(k.ownership_token.expose(), "token-opaque-123");
        let shown = format!("{k:?}");
        assert!(!shown.contains("secret-key-material") && !shown.contains("token-opaque"), "{shown}");

        let csr = format!(
            r#"{{"certificateOwnershipToken":"tok-2","certificateId":"{ID}","certificatePem":"-----BEGIN CERTIFICATE-----\n"}}"#
        );
        match FleetAnswer::parse(CSR_ACCEPTED, csr.as_bytes()).unwrap() {
            FleetAnswer::CertificateFromCsr(c) => {
                assert_eq!((c.certificate_id.as_str(), c.ownership_token.expose()), (ID, "tok-2"));
                assert!(!format!("{c:?}").contains("tok-2"));
            }
            other => panic!("{other:?}"),
        }

        let registered =
            r#"{"deviceConfiguration":{"Foo":"Bar","Interval":30,"On":true},"thingName":"thing-1"}"#;
        match FleetAnswer::parse(PROVISION_ACCEPTED, registered.as_bytes()).unwrap() {
            FleetAnswer::ThingRegistered { template, answer } => {
                assert_eq!(template.as_str(), "FleetTemplate");
                assert_eq!(answer.thing_name, "thing-1");
                assert_eq!(
                    answer.device_configuration,
                    BTreeMap::from([
                        ("Foo".to_owned(), "Bar".to_owned()),
                        ("Interval".to_owned(), "30".to_owned()),
                        ("On".to_owned(), "true".to_owned()),
                    ])
                );
            }
            other => panic!("{other:?}"),
        }
        // `deviceConfiguration` is optional.
        assert!(matches!(
            FleetAnswer::parse(PROVISION_ACCEPTED, br#"{"thingName":"t"}"#),
            Ok(FleetAnswer::ThingRegistered { .. })
        ));
    }

    #[test]
    fn rejected_documents_of_every_api() {
        let doc = br#"{"statusCode":400,"errorCode":"InvalidCertificateOwnershipToken","errorMessage":"Certificate ownership token cannot be empty."}"#;
        for (topic, api) in [
            ("$aws/certificates/create/json/rejected", "CreateKeysAndCertificate"),
            ("$aws/certificates/create-from-csr/json/rejected", "CreateCertificateFromCsr"),
            ("$aws/provisioning-templates/T/provision/json/rejected", "RegisterThing"),
        ] {
            let answer = FleetAnswer::parse(topic, doc).unwrap();
            assert_eq!(answer.api().name(), api);
            let FleetAnswer::Rejected { error, .. } = answer else {
                panic!("a rejection expected on {topic}")
            };
            assert_eq!(
                error,
                ErrorDocument {
                    status_code: 400,
                    error_code: "InvalidCertificateOwnershipToken".into(),
                    error_message: "Certificate ownership token cannot be empty.".into(),
                }
            );
        }
    }

    #[test]
    fn malformed_answers_are_typed_errors() {
        let malformed = |topic: &str, body: &str| match FleetAnswer::parse(topic, body.as_bytes()) {
            Err(FleetError::MalformedAnswer { api, reason }) => (api, reason),
            other => panic!("{topic} {body}: {other:?}"),
        };
        assert_eq!(malformed(CREATE_ACCEPTED, "not json").0, "CreateKeysAndCertificate");
        assert_eq!(malformed(CSR_ACCEPTED, "").0, "CreateCertificateFromCsr");
        assert_eq!(malformed(PROVISION_ACCEPTED, "[1,2]").0, "RegisterThing");
        malformed(PROVISION_ACCEPTED, r#"{"thingName":7}"#);
        malformed(CREATE_ACCEPTED, r#"{"certificateId":{"x":1}}"#);
        let (_, reason) =
            malformed("$aws/certificates/create/json/rejected", r#"{"statusCode":"four hundred"}"#);
        assert_eq!(reason, "invalid type: string \"…\", expected u16 at line 1 column 28");
        let (_, reason) = malformed(PROVISION_ACCEPTED, r#"{"deviceConfiguration":"secret-ish"}"#);
        assert!(!reason.contains("secret-ish"), "{reason}");
        malformed("$aws/certificates/create/json/rejected", r#"{"statusCode":70000}"#);
        malformed("$aws/certificates/create/json/rejected", "<html>");
        // A secret in a malformed body never reaches the error text.
        let (_, reason) = malformed(CREATE_ACCEPTED, r#"{"privateKey":"very-secret-key""#);
        assert!(!reason.contains("very-secret"), "{reason}");
        // A double-encoded answer (the document as one JSON string): serde quotes it with
        // its inner quotes escaped, and nothing after them may show.
        let doubled = serde_json::to_string(&keys_doc()).unwrap();
        let (_, reason) = malformed(CREATE_ACCEPTED, &doubled);
        assert!(reason.starts_with("invalid type: string \"…\", expected"), "{reason}");
        assert!(!reason.contains("secret-key-material") && !reason.contains("token-opaque"), "{reason}");

        let missing = |topic: &str, body: String| match FleetAnswer::parse(topic, body.as_bytes()) {
            Err(FleetError::MissingField { field, .. }) => field,
            other => panic!("{topic} {body}: {other:?}"),
        };
        assert_eq!(missing(CREATE_ACCEPTED, keys_doc().replace("privateKey", "other")), "privateKey");
        assert_eq!(missing(CREATE_ACCEPTED, keys_doc().replace(ID, "")), "certificateId");
        assert_eq!(missing(CSR_ACCEPTED, format!(r#"{{"certificateId":"{ID}"}}"#)), "certificatePem");
        assert_eq!(
            missing(CSR_ACCEPTED, format!(r#"{{"certificateId":"{ID}","certificatePem":"p"}}"#)),
            "certificateOwnershipToken"
        );
        assert_eq!(missing(PROVISION_ACCEPTED, r#"{"deviceConfiguration":{}}"#.into()), "thingName");

        assert!(matches!(
            FleetAnswer::parse("$aws/certificates/create/json", b"{}"),
            Err(FleetError::NotAnAnswer { .. })
        ));
        assert!(matches!(
            FleetAnswer::parse("$aws/things/t/shadow/get/accepted", b"{}"),
            Err(FleetError::UnknownTopic { .. })
        ));
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// A cheap stand-in for the `aws_fleet_response` fuzz target that runs in every
    /// `cargo test`: mutated topics and bodies never panic, and parsed topics round-trip.
    #[test]
    fn mutated_answers_never_panic() {
        let seeds = [
            (
                "$aws/certificates/create/json/accepted",
                r#"{"certificateId":"a","certificatePem":"p","privateKey":"k","certificateOwnershipToken":"t"}"#,
            ),
            (
                "$aws/certificates/create-from-csr/json/accepted",
                r#"{"certificateId":"a","certificatePem":"p","certificateOwnershipToken":"t"}"#,
            ),
            (
                "$aws/provisioning-templates/T-1/provision/json/accepted",
                r#"{"thingName":"x","deviceConfiguration":{"a":1}}"#,
            ),
            (
                "$aws/provisioning-templates/T/provision/json/rejected",
                r#"{"statusCode":404,"errorCode":"c","errorMessage":"m"}"#,
            ),
        ];
        let alphabet: Vec<char> = "$/{}[]\":,0123456789aejnrstu\\ \u{0}é".chars().collect();
        let mut next = test_support::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut mutate = |s: &str| {
            let mut v: Vec<char> = s.chars().collect();
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
            v.into_iter().collect::<String>()
        };
        let mut parsed = 0;
        for i in 0..20_000 {
            let (topic, body) = seeds[i % seeds.len()];
            let (topic, body) =
                if i % 2 == 0 { (mutate(topic), body.to_owned()) } else { (topic.to_owned(), mutate(body)) };
            if FleetAnswer::parse(&topic, body.as_bytes()).is_ok() {
                parsed += 1;
            }
            if let Ok(t) = FleetTopic::parse(&topic) {
                assert_eq!(FleetTopic::parse(&t.assemble()).ok(), Some(t), "{topic:?}");
            }
        }
        assert!(parsed > 0, "some mutations stay valid");
    }
}
