//! Fleet provisioning by claim (`shared/protocols/aws-fleet-provisioning.md`):
//! CreateKeysAndCertificate, CreateCertificateFromCsr and RegisterThing over MQTT, with
//! provisioning templates from the control API. Requests in, one answer out (for the
//! requesting client only); `now` is passed in.
//!
//! * Certificates are signed by the emulator CA (an RSA 2048 key generated here, or the
//!   CSR's key after its signature verifies), registered `PENDING_ACTIVATION`, and come
//!   with an opaque single-use ownership token valid for one hour; an expired token takes
//!   its certificate with it while the certificate is still unattached and inactive.
//! * RegisterThing evaluates the template (`Ref`, `Fn::Join`; parameters with defaults,
//!   required otherwise, plus `AWS::IoT::Certificate::Id` / `…::CommonName`), creates
//!   (or updates) the thing, attaches the certificate and sets its status (`ACTIVE` unless
//!   the template says otherwise), so the device can reconnect with it.
//! * Errors: `{"statusCode","errorCode","errorMessage"}` — 400 `InvalidPayload` /
//!   `InvalidCertificateOwnershipToken`, 403 `AccessDenied` (principal not allowed by the
//!   template), 404 `ResourceNotFound` (unknown or disabled template), 429 `Throttling`
//!   (fault), 500 `InternalFailure`.
//! * CBOR: not implemented; such requests get a CBOR-encoded 400 on `…/rejected` saying so.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::X509Req;
use serde_json::{json, Map, Value};

use super::topics::{valid_thing_name, ProvisioningApi};
use super::{certificate_id, AwsState, CertRecord};
use crate::ca::CertificateAuthority;
use crate::control::aws_api::{CertificateStatus, ProvisioningTemplate};

/// Lifetime of a certificate ownership token.
pub(crate) const TOKEN_LIFETIME_SECS: u64 = 3600;
/// Subject CN of certificates from CreateKeysAndCertificate.
const CREATED_CN: &str = "AWS IoT Certificate";
const CERT_ID_PARAM: &str = "AWS::IoT::Certificate::Id";
const CERT_CN_PARAM: &str = "AWS::IoT::Certificate::CommonName";

/// What an ownership token stands for. `Debug` never shows the token (it is the key of
/// the map, not a field).
#[derive(Clone, Debug)]
struct OwnershipToken {
    certificate_id: String,
    expires_at: u64,
}

/// Templates and live ownership tokens.
#[derive(Default)]
pub(crate) struct Provisioning {
    pub templates: BTreeMap<String, ProvisioningTemplate>,
    tokens: HashMap<String, OwnershipToken>,
}

impl fmt::Debug for Provisioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioning")
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens.values().collect::<Vec<_>>())
            .finish()
    }
}

/// A rejected request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct ProvisioningError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ProvisioningError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ProvisioningError {
        ProvisioningError { status, code, message: message.into() }
    }

    fn payload(message: impl Into<String>) -> ProvisioningError {
        ProvisioningError::new(400, "InvalidPayload", message)
    }

    fn token(message: impl Into<String>) -> ProvisioningError {
        ProvisioningError::new(400, "InvalidCertificateOwnershipToken", message)
    }

    fn internal(e: impl fmt::Display) -> ProvisioningError {
        tracing::warn!(error = %e, "fleet provisioning failed");
        ProvisioningError::new(500, "InternalFailure", "Internal failure")
    }

    /// The `…/rejected` payload in the request's format.
    pub fn encode(&self, cbor: bool) -> Vec<u8> {
        if cbor {
            cbor_error(self.status, self.code, &self.message)
        } else {
            json!({ "statusCode": self.status, "errorCode": self.code, "errorMessage": self.message })
                .to_string()
                .into_bytes()
        }
    }
}

/// A key pair for CreateKeysAndCertificate, generated before the state is locked (RSA
/// generation takes a while). `Debug` hides the key.
pub(crate) struct NewKey {
    key: PKey<Private>,
    pem: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewKey { .. }")
    }
}

impl NewKey {
    /// An RSA 2048 key pair (the PEM is `BEGIN RSA PRIVATE KEY`, as AWS sends it).
    pub fn generate() -> Result<NewKey, ProvisioningError> {
        let rsa = Rsa::generate(2048).map_err(ProvisioningError::internal)?;
        let pem = String::from_utf8(rsa.private_key_to_pem().map_err(ProvisioningError::internal)?)
            .map_err(ProvisioningError::internal)?;
        let key = PKey::from_rsa(rsa).map_err(ProvisioningError::internal)?;
        Ok(NewKey { key, pem })
    }
}

/// Handles a request; returns the answer topic and payload. `key` is the key pair
/// prepared for a CreateKeysAndCertificate (one is generated here when absent).
#[allow(clippy::too_many_arguments)]
pub(crate) fn handle(
    ca: &CertificateAuthority,
    key: Option<NewKey>,
    st: &mut AwsState,
    principal: &str,
    api: &ProvisioningApi,
    cbor: bool,
    topic: &str,
    payload: &[u8],
    now: u64,
) -> (String, Vec<u8>) {
    expire_tokens(st, now);
    let result = if cbor {
        Err(ProvisioningError::payload(
            "CBOR payloads are not implemented by the emulator; use the json topics",
        ))
    } else {
        match api {
            ProvisioningApi::CreateKeysAndCertificate => create_keys(ca, key, st, payload, now),
            ProvisioningApi::CreateCertificateFromCsr => create_from_csr(ca, st, payload, now),
            ProvisioningApi::RegisterThing { template } => register_thing(st, principal, template, payload),
        }
    };
    match result {
        Ok(v) => (format!("{topic}/accepted"), v.to_string().into_bytes()),
        Err(e) => {
            tracing::debug!(topic, error = %e, "fleet provisioning request rejected");
            (format!("{topic}/rejected"), e.encode(cbor))
        }
    }
}

/// Forgets expired tokens, deleting their certificates while still unattached and
/// `PENDING_ACTIVATION`.
pub(crate) fn expire_tokens(st: &mut AwsState, now: u64) {
    let expired: Vec<String> =
        st.provisioning.tokens.iter().filter(|(_, t)| t.expires_at <= now).map(|(k, _)| k.clone()).collect();
    for k in expired {
        let Some(t) = st.provisioning.tokens.remove(&k) else { continue };
        let unused = st
            .certs
            .get(&t.certificate_id)
            .is_some_and(|c| c.status == CertificateStatus::PendingActivation && c.things.is_empty());
        if unused {
            tracing::info!(certificate = %t.certificate_id, "ownership token expired; certificate deleted");
            st.certs.remove(&t.certificate_id);
        }
    }
}

/// Request body: empty, or a JSON object.
fn object(payload: &[u8]) -> Result<Map<String, Value>, ProvisioningError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ProvisioningError::payload("The payload is not a valid JSON object")),
    }
}

/// Registers a new certificate `PENDING_ACTIVATION` and returns its id, PEM and token.
fn register_new(
    st: &mut AwsState,
    cert: &openssl::x509::X509,
    now: u64,
) -> Result<(String, String, String), ProvisioningError> {
    let pem = String::from_utf8(cert.to_pem().map_err(ProvisioningError::internal)?)
        .map_err(ProvisioningError::internal)?;
    let id = certificate_id(cert);
    st.certs.insert(
        id.clone(),
        CertRecord {
            pem: pem.clone(),
            status: CertificateStatus::PendingActivation,
            things: Default::default(),
        },
    );
    let token = crate::util::b64(&crate::util::random_bytes(48));
    st.provisioning.tokens.insert(
        token.clone(),
        OwnershipToken { certificate_id: id.clone(), expires_at: now.saturating_add(TOKEN_LIFETIME_SECS) },
    );
    Ok((id, pem, token))
}

fn create_keys(
    ca: &CertificateAuthority,
    key: Option<NewKey>,
    st: &mut AwsState,
    payload: &[u8],
    now: u64,
) -> Result<Value, ProvisioningError> {
    object(payload)?;
    let key = match key {
        Some(k) => k,
        None => NewKey::generate()?,
    };
    let cert = ca.sign_client(CREATED_CN, &key.key).map_err(ProvisioningError::internal)?;
    let (id, pem, token) = register_new(st, &cert, now)?;
    tracing::info!(certificate = %id, "CreateKeysAndCertificate");
    Ok(json!({
        "certificateId": id, "certificatePem": pem, "privateKey": key.pem, "certificateOwnershipToken": token,
    }))
}

fn create_from_csr(
    ca: &CertificateAuthority,
    st: &mut AwsState,
    payload: &[u8],
    now: u64,
) -> Result<Value, ProvisioningError> {
    let req = object(payload)?;
    let Some(Value::String(csr)) = req.get("certificateSigningRequest") else {
        return Err(ProvisioningError::payload("certificateSigningRequest (a PEM string) is required"));
    };
    let csr = X509Req::from_pem(csr.as_bytes()).map_err(|_| {
        ProvisioningError::payload("certificateSigningRequest is not a PEM certificate request")
    })?;
    let key = csr.public_key().map_err(|_| ProvisioningError::payload("the CSR has no usable public key"))?;
    if !csr.verify(&key).unwrap_or(false) {
        return Err(ProvisioningError::payload("the CSR signature does not verify"));
    }
    let supported = match key.id() {
        Id::RSA => key.bits() >= 2048,
        Id::EC => key
            .ec_key()
            .ok()
            .and_then(|k| k.group().curve_name())
            .is_some_and(|c| matches!(c, Nid::X9_62_PRIME256V1 | Nid::SECP384R1 | Nid::SECP521R1)),
        _ => false,
    };
    if !supported {
        return Err(ProvisioningError::payload(
            "the CSR key must be RSA of 2048 bits or more, or EC P-256/384/521",
        ));
    }
    let cn = csr
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .unwrap_or_else(|| CREATED_CN.to_string());
    let cert = ca.sign_client(&cn, &key).map_err(ProvisioningError::internal)?;
    let (id, pem, token) = register_new(st, &cert, now)?;
    tracing::info!(certificate = %id, "CreateCertificateFromCsr");
    Ok(json!({ "certificateOwnershipToken": token, "certificateId": id, "certificatePem": pem }))
}

fn register_thing(
    st: &mut AwsState,
    principal: &str,
    template_name: &str,
    payload: &[u8],
) -> Result<Value, ProvisioningError> {
    let req = object(payload)?;
    let token = match req.get("certificateOwnershipToken") {
        None | Some(Value::Null) => "",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(ProvisioningError::payload("certificateOwnershipToken must be a string")),
    };
    if token.is_empty() {
        return Err(ProvisioningError::token("Certificate ownership token cannot be empty."));
    }
    let owned = st
        .provisioning
        .tokens
        .iter()
        .find(|(k, _)| crate::util::ct_eq(k.as_bytes(), token.as_bytes()))
        .map(|(k, t)| (k.clone(), t.certificate_id.clone()));
    let Some((token_key, cert_id)) = owned else {
        return Err(ProvisioningError::token("Certificate ownership token is invalid, used or expired."));
    };
    let Some(cert_pem) = st.certs.get(&cert_id).map(|c| c.pem.clone()) else {
        return Err(ProvisioningError::token("The certificate of this ownership token no longer exists."));
    };
    let not_found =
        || ProvisioningError::new(404, "ResourceNotFound", format!("Template {template_name} not found"));
    let template =
        st.provisioning.templates.get(template_name).filter(|t| t.enabled).ok_or_else(not_found)?;
    if !template.allowed_principals.is_empty() && !template.allowed_principals.iter().any(|p| p == principal)
    {
        return Err(ProvisioningError::new(403, "AccessDenied", "This principal may not use the template"));
    }
    let given: BTreeMap<String, String> = match req.get("parameters") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect::<Option<_>>()
            .ok_or_else(|| ProvisioningError::payload("parameters must map names to strings"))?,
        Some(_) => return Err(ProvisioningError::payload("parameters must be an object")),
    };
    let cn = crate::ca::parse_pem(&cert_pem).and_then(|c| crate::ca::common_name(&c)).unwrap_or_default();
    let plan = evaluate(&template.template_body, &given, &cert_id, &cn, false)
        .map_err(ProvisioningError::payload)?;
    let rec =
        st.certs.get_mut(&cert_id).ok_or_else(|| ProvisioningError::internal("certificate vanished"))?;
    rec.status = plan.certificate_status;
    rec.things.insert(plan.thing_name.clone());
    st.things.entry(plan.thing_name.clone()).or_default().extend(plan.attributes);
    st.provisioning.tokens.remove(&token_key);
    tracing::info!(thing = %plan.thing_name, certificate = %cert_id, template = template_name, "RegisterThing");
    Ok(json!({ "deviceConfiguration": plan.device_configuration, "thingName": plan.thing_name }))
}

/// What a template evaluates to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub thing_name: String,
    pub attributes: BTreeMap<String, String>,
    pub certificate_status: CertificateStatus,
    pub device_configuration: BTreeMap<String, String>,
}

/// Checks a template from the control API (a JSON string body is parsed in place) by
/// evaluating it with every parameter set.
pub(crate) fn check_template(t: &mut ProvisioningTemplate) -> Result<(), String> {
    if let Value::String(s) = &t.template_body {
        t.template_body = serde_json::from_str(s).map_err(|e| format!("templateBody is not JSON: {e}"))?;
    }
    let names = declared(&t.template_body)?;
    let all: BTreeMap<String, String> = names.keys().map(|k| (k.clone(), "x".to_string())).collect();
    evaluate(&t.template_body, &all, "0", "x", true).map(|_| ())
}

/// Declared parameters and their defaults.
fn declared(body: &Value) -> Result<BTreeMap<String, Option<String>>, String> {
    if !body.is_object() {
        return Err("templateBody must be a JSON object".into());
    }
    let mut out = BTreeMap::new();
    match body.get("Parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, decl) in m {
                let default = match decl.get("Default") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(v) if v.is_number() || v.is_boolean() => Some(v.to_string()),
                    Some(_) => return Err(format!("Parameters.{k}.Default must be a string")),
                };
                if !decl.is_object() {
                    return Err(format!("Parameters.{k} must be an object"));
                }
                out.insert(k.clone(), default);
            }
        }
        Some(_) => return Err("Parameters must be an object".into()),
    }
    Ok(out)
}

/// Evaluates a template for a registration.
pub(crate) fn evaluate(
    body: &Value,
    given: &BTreeMap<String, String>,
    cert_id: &str,
    cert_cn: &str,
    checking: bool,
) -> Result<Plan, String> {
    let mut params = BTreeMap::new();
    for (k, default) in declared(body)? {
        let v =
            given.get(&k).cloned().or(default).ok_or_else(|| format!("Missing required parameter: {k}"))?;
        params.insert(k, v);
    }
    params.insert(CERT_ID_PARAM.to_string(), cert_id.to_string());
    params.insert(CERT_CN_PARAM.to_string(), cert_cn.to_string());
    let resources = body.get("Resources").and_then(Value::as_object).ok_or("Resources must be an object")?;
    let of_type = |ty: &'static str| {
        resources.values().filter(move |r| r.get("Type").and_then(Value::as_str) == Some(ty))
    };
    let things: Vec<&Value> = of_type("AWS::IoT::Thing").collect();
    let [thing] = things.as_slice() else {
        return Err("the template must have exactly one AWS::IoT::Thing resource".into());
    };
    let props = thing.get("Properties").ok_or("the AWS::IoT::Thing resource has no Properties")?;
    let thing_name =
        eval(props.get("ThingName").ok_or("the AWS::IoT::Thing resource has no ThingName")?, &params)?;
    if !valid_thing_name(&thing_name) {
        return Err(format!("ThingName {thing_name:?} is not 1-128 characters of [a-zA-Z0-9:_-]"));
    }
    let mut attributes = BTreeMap::new();
    match props.get("AttributePayload") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                attributes.insert(k.clone(), eval(v, &params)?);
            }
        }
        Some(_) => return Err("AttributePayload must be an object".into()),
    }
    let mut certificate_status = CertificateStatus::Active;
    for c in of_type("AWS::IoT::Certificate") {
        if let Some(s) = c.get("Properties").and_then(|p| p.get("Status")) {
            certificate_status = match eval(s, &params)?.as_str() {
                "ACTIVE" => CertificateStatus::Active,
                "INACTIVE" => CertificateStatus::Inactive,
                // A Ref checked with placeholder values.
                _ if checking && !s.is_string() => CertificateStatus::Active,
                other => return Err(format!("certificate Status {other:?} is not ACTIVE or INACTIVE")),
            };
        }
    }
    let mut device_configuration = BTreeMap::new();
    match body.get("DeviceConfiguration") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                device_configuration.insert(k.clone(), eval(v, &params)?);
            }
        }
        Some(_) => return Err("DeviceConfiguration must be a flat object".into()),
    }
    Ok(Plan { thing_name, attributes, certificate_status, device_configuration })
}

/// A value: a string (numbers and booleans as text), `{"Ref": name}` or
/// `{"Fn::Join": [separator, [values…]]}`.
fn eval(v: &Value, params: &BTreeMap<String, String>) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((f, Value::String(name))) if f == "Ref" => {
                params.get(name).cloned().ok_or_else(|| format!("Ref to an undeclared parameter: {name}"))
            }
            Some((f, Value::Array(a))) if f == "Fn::Join" => match a.as_slice() {
                [Value::String(sep), Value::Array(parts)] => {
                    let parts = parts.iter().map(|p| eval(p, params)).collect::<Result<Vec<_>, _>>()?;
                    Ok(parts.join(sep))
                }
                _ => Err("Fn::Join takes [separator, [values]]".into()),
            },
            Some((f, _)) => Err(format!("unsupported intrinsic function {f} (Ref and Fn::Join are)")),
            None => Err("empty object".into()),
        },
        _ => Err("values must be strings, Ref or Fn::Join (nested objects are not supported)".into()),
    }
}

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((n.min(u64::from(u32::MAX)) as u32).to_be_bytes());
        }
    }
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len() as u64);
    out.extend(s.as_bytes());
}

/// `{"statusCode": n, "errorCode": code, "errorMessage": message}` in CBOR.
fn cbor_error(status: u16, code: &str, message: &str) -> Vec<u8> {
    let mut out = vec![0xa3];
    cbor_text(&mut out, "statusCode");
    cbor_head(&mut out, 0, u64::from(status));
    cbor_text(&mut out, "errorCode");
    cbor_text(&mut out, code);
    cbor_text(&mut out, "errorMessage");
    cbor_text(&mut out, message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        json!({
            "Parameters": {
                "SerialNumber": {"Type": "String"},
                "Location": {"Type": "String", "Default": "lab"}
            },
            "Resources": {
                "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                    "ThingName": {"Fn::Join": ["-", ["dev", {"Ref": "SerialNumber"}]]},
                    "AttributePayload": {"location": {"Ref": "Location"}, "cert": {"Ref": CERT_ID_PARAM}}
                }},
                "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                    "CertificateId": {"Ref": CERT_ID_PARAM}, "Status": "ACTIVE"
                }},
                "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "DevicePolicy"}}
            },
            "DeviceConfiguration": {"Fallback": "https://example.com", "Owner": {"Ref": CERT_CN_PARAM}}
        })
    }

    fn params(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn templates_evaluate_ref_join_defaults_and_device_configuration() {
        let plan = evaluate(&template(), &params(&[("SerialNumber", "42")]), "abc", "claim", false).unwrap();
        assert_eq!(plan.thing_name, "dev-42");
        assert_eq!(plan.attributes, params(&[("cert", "abc"), ("location", "lab")]));
        assert_eq!(plan.certificate_status, CertificateStatus::Active);
        assert_eq!(
            plan.device_configuration,
            params(&[("Fallback", "https://example.com"), ("Owner", "claim")])
        );
        let given = params(&[("SerialNumber", "7"), ("Location", "dock"), ("Unused", "x")]);
        assert_eq!(evaluate(&template(), &given, "abc", "", false).unwrap().attributes["location"], "dock");
        // Errors, by table: (mutation of the template, parameters, expected message part).
        type Case = (Value, &'static [(&'static str, &'static str)], &'static str);
        let cases: Vec<Case> = vec![
            (template(), &[], "Missing required parameter: SerialNumber"),
            (template(), &[("SerialNumber", "a b")], "is not 1-128 characters"),
            (json!({"Resources": {}}), &[], "exactly one AWS::IoT::Thing"),
            (
                json!({"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Fn::Sub": "x"}}}}}),
                &[],
                "unsupported intrinsic function Fn::Sub",
            ),
            (
                json!({"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "Nope"}}}}}),
                &[],
                "undeclared parameter: Nope",
            ),
            (
                json!({"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "a"}}},
                       "DeviceConfiguration": {"nested": {"a": "b", "c": "d"}}}),
                &[],
                "nested objects are not supported",
            ),
            (
                json!({"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "a"}},
                       "c": {"Type": "AWS::IoT::Certificate", "Properties": {"Status": "REVOKED"}}}}),
                &[],
                "is not ACTIVE or INACTIVE",
            ),
            (json!([1]), &[], "must be a JSON object"),
        ];
        for (body, p, want) in cases {
            let err = evaluate(&body, &params(p), "id", "cn", false).unwrap_err();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let inactive = json!({"Resources": {"t": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "a"}},
                                "c": {"Type": "AWS::IoT::Certificate", "Properties": {"Status": "INACTIVE"}}}});
        assert_eq!(
            evaluate(&inactive, &params(&[]), "i", "c", false).unwrap().certificate_status,
            CertificateStatus::Inactive
        );
    }

    #[test]
    fn check_template_parses_string_bodies_and_refuses_bad_ones() {
        let mut t = ProvisioningTemplate::new(Value::String(template().to_string()));
        check_template(&mut t).unwrap();
        assert!(t.template_body.is_object());
        let mut bad = ProvisioningTemplate::new(json!({"Resources": {}}));
        assert!(check_template(&mut bad).is_err());
        let mut not_json = ProvisioningTemplate::new(json!("{"));
        assert!(check_template(&mut not_json).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn keys_token_register_flow_and_single_use_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let mut st = AwsState::default();
        let mut t = ProvisioningTemplate::new(template());
        t.allowed_principals = vec!["claim".into()];
        st.provisioning.templates.insert("fleet".into(), t);
        let create = ProvisioningApi::CreateKeysAndCertificate;
        let (topic, body) =
            handle(&ca, None, &mut st, "claim", &create, false, "$aws/certificates/create/json", b"", 10);
        assert_eq!(topic, "$aws/certificates/create/json/accepted");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let id = v["certificateId"].as_str().unwrap().to_string();
        assert!(v["privateKey"].as_str().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(st.certs[&id].status, CertificateStatus::PendingActivation);
        let token = v["certificateOwnershipToken"].as_str().unwrap().to_string();
        // The token never shows in Debug.
        assert!(!format!("{:?}", st.provisioning).contains(&token));
        let k = NewKey::generate().unwrap();
        assert_eq!(format!("{k:?}"), "NewKey { .. }");
        let register = |st: &mut AwsState, who: &str, tpl: &str, body: Value| {
            let api = ProvisioningApi::RegisterThing { template: tpl.into() };
            let topic = format!("$aws/provisioning-templates/{tpl}/provision/json");
            let (t, b) = handle(&ca, None, st, who, &api, false, &topic, body.to_string().as_bytes(), 20);
            (t.rsplit('/').next().unwrap().to_string(), serde_json::from_slice::<Value>(&b).unwrap())
        };
        let good = json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "9"}});
        let cases = [
            (
                "claim",
                "fleet",
                json!({"parameters": {"SerialNumber": "9"}}),
                400,
                "InvalidCertificateOwnershipToken",
            ),
            (
                "claim",
                "fleet",
                json!({"certificateOwnershipToken": "nope"}),
                400,
                "InvalidCertificateOwnershipToken",
            ),
            ("claim", "fleet", json!({"certificateOwnershipToken": token}), 400, "InvalidPayload"),
            (
                "claim",
                "fleet",
                json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": 9}}),
                400,
                "InvalidPayload",
            ),
            ("claim", "other", good.clone(), 404, "ResourceNotFound"),
            ("intruder", "fleet", good.clone(), 403, "AccessDenied"),
        ];
        for (who, tpl, body, status, code) in cases {
            let (kind, v) = register(&mut st, who, tpl, body.clone());
            assert_eq!(
                (kind.as_str(), v["statusCode"].as_u64(), v["errorCode"].as_str()),
                ("rejected", Some(status), Some(code)),
                "{body}"
            );
        }
        let (kind, v) = register(&mut st, "claim", "fleet", good.clone());
        assert_eq!(
            (kind.as_str(), &v),
            (
                "accepted",
                &json!({"thingName": "dev-9", "deviceConfiguration": {"Fallback": "https://example.com", "Owner": CREATED_CN}})
            )
        );
        assert_eq!(st.certs[&id].status, CertificateStatus::Active);
        assert!(st.certs[&id].things.contains("dev-9"));
        assert_eq!(st.things["dev-9"]["cert"], id);
        // Single use.
        assert_eq!(
            register(&mut st, "claim", "fleet", good).1["errorCode"],
            "InvalidCertificateOwnershipToken"
        );
    }

    #[test]
    fn expired_tokens_delete_unused_certificates_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let mut st = AwsState::default();
        let create = ProvisioningApi::CreateKeysAndCertificate;
        let topic = "$aws/certificates/create/json";
        let (_, a) = handle(&ca, None, &mut st, "c", &create, false, topic, b"{}", 0);
        let (_, b) = handle(&ca, None, &mut st, "c", &create, false, topic, b"{}", 0);
        let id = |b: &[u8]| {
            serde_json::from_slice::<Value>(b).unwrap()["certificateId"].as_str().unwrap().to_string()
        };
        let (a, b) = (id(&a), id(&b));
        st.certs.get_mut(&b).unwrap().status = CertificateStatus::Active;
        expire_tokens(&mut st, TOKEN_LIFETIME_SECS - 1);
        assert!(st.certs.contains_key(&a));
        expire_tokens(&mut st, TOKEN_LIFETIME_SECS);
        assert!(!st.certs.contains_key(&a) && st.certs.contains_key(&b));
        assert!(st.provisioning.tokens.is_empty());
        // Bad request bodies.
        let (t, body) = handle(&ca, None, &mut st, "c", &create, false, topic, b"[1]", 0);
        assert_eq!(
            (t.as_str(), serde_json::from_slice::<Value>(&body).unwrap()["errorCode"].as_str()),
            ("$aws/certificates/create/json/rejected", Some("InvalidPayload"))
        );
        let csr = ProvisioningApi::CreateCertificateFromCsr;
        for body in [&br#"{}"#[..], br#"{"certificateSigningRequest":"garbage"}"#] {
            let (t, _) = handle(
                &ca,
                None,
                &mut st,
                "c",
                &csr,
                false,
                "$aws/certificates/create-from-csr/json",
                body,
                0,
            );
            assert!(t.ends_with("/rejected"));
        }
    }

    #[test]
    fn cbor_requests_get_a_cbor_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let mut st = AwsState::default();
        let api = ProvisioningApi::CreateKeysAndCertificate;
        let (t, body) = handle(&ca, None, &mut st, "c", &api, true, "$aws/certificates/create/cbor", b"", 0);
        assert_eq!(t, "$aws/certificates/create/cbor/rejected");
        // {"statusCode": 400, ...}: map(3), text(10) "statusCode", uint8 400.
        assert_eq!(&body[..15], b"\xa3\x6astatusCode\x19\x01\x90");
        assert!(String::from_utf8_lossy(&body).contains("CBOR payloads are not implemented"));
        assert!(st.certs.is_empty());
        assert_eq!(
            cbor_error(200, "a", ""),
            b"\xa3\x6astatusCode\x18\xc8\x69errorCode\x61a\x6cerrorMessage\x60"
        );
    }
}
