//! CONNECT authentication for IoT Hub and DPS connections.
//!
//! * IoT Hub, SAS: the token's HMAC is checked with the identity's keys (no `skn`) or
//!   with the named policy's keys (`skn`, policy must grant `DeviceConnect`), then the
//!   decoded resource must cover `{host}/devices/{d}[/modules/{m}]` and `se` must lie in
//!   the future. The connection is closed when `se` passes.
//! * IoT Hub, X.509 (no password, client certificate presented): thumbprint match for
//!   `selfSigned` identities, chain to a registered CA plus CN = device id for
//!   `certificateAuthority` devices.
//! * DPS, SAS with `skn=registration`: individual enrollment key, else the key derived
//!   from a group key; X.509: CN = registration id, thumbprint (individual) or CA (group).
//!
//! CONNACK codes: 2 client id / user name mismatch, 3 throttled, 4 malformed user name or
//! credentials, 5 unknown identity, bad signature, expired token, disabled identity.

pub(crate) mod connect;
pub(crate) mod sas;

use openssl::x509::X509;

use self::connect::{ConnectTarget, DpsUser, HubUser};
use self::sas::SasToken;
use crate::azure::dps::{DpsAuth, DpsCredential, EnrollmentRef};
use crate::azure::{Hub, Identity, State};
use crate::ca;
use crate::control::api::{Attestation, Authentication, DeviceStatus};
use crate::util::derive_device_key;

/// CONNACK return codes used for refusals.
pub(crate) const IDENTIFIER_REJECTED: u8 = 2;
pub(crate) const SERVER_UNAVAILABLE: u8 = 3;
pub(crate) const BAD_CREDENTIALS: u8 = 4;
pub(crate) const NOT_AUTHORIZED: u8 = 5;

/// What the CONNECT carried.
pub(crate) struct ConnectRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub cert: Option<&'a X509>,
    pub chain: &'a [X509],
    /// Seconds since the Unix epoch.
    pub now: u64,
}

/// An accepted CONNECT.
#[derive(Debug, Clone)]
pub(crate) enum Accepted {
    Hub {
        identity: Identity,
        /// `sas`, `policy:{name}`, `x509`, `x509ca`.
        method: String,
        expiry: Option<u64>,
        model_id: Option<String>,
    },
    Dps {
        auth: DpsAuth,
        method: String,
        expiry: Option<u64>,
    },
}

/// A refused CONNECT: return code and a reason for the log (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: u8,
    pub reason: String,
}

fn refuse(code: u8, reason: impl Into<String>) -> Refusal {
    Refusal { code, reason: reason.into() }
}

/// Authenticates a CONNECT against the registry (and consumes connect faults).
pub(crate) fn authenticate(
    hub: &Hub,
    state: &mut State,
    req: &ConnectRequest<'_>,
) -> Result<Accepted, Refusal> {
    let target = connect::parse(req.client_id, req.username).map_err(|e| {
        let code = match e {
            connect::ConnectError::ClientIdMismatch | connect::ConnectError::BadIdentity => {
                IDENTIFIER_REJECTED
            }
            _ => BAD_CREDENTIALS,
        };
        refuse(code, e.to_string())
    })?;
    let password = match req.password {
        Some(p) if !p.is_empty() => {
            Some(std::str::from_utf8(p).map_err(|_| refuse(BAD_CREDENTIALS, "password is not UTF-8"))?)
        }
        _ => None,
    };
    match target {
        ConnectTarget::Hub(user) => authenticate_hub(hub, state, req, &user, password),
        ConnectTarget::Dps(user) => authenticate_dps(hub, state, req, &user, password),
    }
}

fn authenticate_hub(
    hub: &Hub,
    state: &mut State,
    req: &ConnectRequest<'_>,
    user: &HubUser,
    password: Option<&str>,
) -> Result<Accepted, Refusal> {
    if !hub.accepts_host(&user.host) {
        return Err(refuse(NOT_AUTHORIZED, "host name is not this hub"));
    }
    let id = &user.identity;
    if let Some(code) = state.faults.connect_refusal(id) {
        return Err(refuse(code, "refused by fault injection"));
    }
    let (auth, status) =
        state.registry.lookup(id).ok_or_else(|| refuse(NOT_AUTHORIZED, "unknown identity"))?;
    if status == DeviceStatus::Disabled {
        return Err(refuse(NOT_AUTHORIZED, "identity is disabled"));
    }
    let accepted = |method: String, expiry| Accepted::Hub {
        identity: id.clone(),
        method,
        expiry,
        model_id: user.model_id.clone(),
    };
    match (password, req.cert) {
        (Some(p), _) => {
            let token = SasToken::parse(p).map_err(|e| refuse(BAD_CREDENTIALS, e.to_string()))?;
            let (keys, method) = match &token.skn {
                None => match auth {
                    Authentication::Sas { symmetric_key } => (
                        vec![symmetric_key.primary_key.clone(), symmetric_key.secondary_key.clone()],
                        "sas".to_string(),
                    ),
                    _ => return Err(refuse(NOT_AUTHORIZED, "identity does not use SAS")),
                },
                Some(name) => {
                    let policy = state
                        .registry
                        .policies
                        .get(name)
                        .filter(|p| p.rights.iter().any(|r| r == "DeviceConnect"))
                        .ok_or_else(|| refuse(NOT_AUTHORIZED, "no policy with DeviceConnect by that name"))?;
                    (
                        vec![
                            policy.symmetric_key.primary_key.clone(),
                            policy.symmetric_key.secondary_key.clone(),
                        ],
                        format!("policy:{name}"),
                    )
                }
            };
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            token.verify(&keys, req.now).map_err(|e| refuse(NOT_AUTHORIZED, e.to_string()))?;
            if !token.covers(&user.host, &id.resource_path(), token.skn.is_some()) {
                return Err(refuse(NOT_AUTHORIZED, "token resource does not cover the identity"));
            }
            Ok(accepted(method, Some(token.expiry)))
        }
        (None, Some(cert)) => {
            if !ca::currently_valid(cert) {
                return Err(refuse(NOT_AUTHORIZED, "client certificate is not currently valid"));
            }
            match auth {
                Authentication::SelfSigned { x509_thumbprint } => {
                    let prints: Vec<&str> =
                        [&x509_thumbprint.primary_thumbprint, &x509_thumbprint.secondary_thumbprint]
                            .into_iter()
                            .filter_map(|t| t.as_deref())
                            .collect();
                    if ca::matches_thumbprint(cert, &prints) {
                        Ok(accepted("x509".into(), None))
                    } else {
                        Err(refuse(NOT_AUTHORIZED, "certificate thumbprint does not match"))
                    }
                }
                Authentication::CertificateAuthority => {
                    if ca::common_name(cert).as_deref() != Some(id.device_id.as_str()) {
                        return Err(refuse(NOT_AUTHORIZED, "certificate CN is not the device id"));
                    }
                    let cas: Vec<X509> =
                        state.registry.certificates.values().filter_map(|p| ca::parse_pem(p)).collect();
                    if ca::verify_chain(cert, req.chain, &cas) {
                        Ok(accepted("x509ca".into(), None))
                    } else {
                        Err(refuse(NOT_AUTHORIZED, "certificate is not signed by a registered CA"))
                    }
                }
                Authentication::Sas { .. } => {
                    Err(refuse(NOT_AUTHORIZED, "identity uses SAS, no token given"))
                }
            }
        }
        (None, None) => Err(refuse(BAD_CREDENTIALS, "neither a SAS token nor a client certificate")),
    }
}

fn authenticate_dps(
    hub: &Hub,
    state: &mut State,
    req: &ConnectRequest<'_>,
    user: &DpsUser,
    password: Option<&str>,
) -> Result<Accepted, Refusal> {
    if user.id_scope != hub.settings.id_scope {
        return Err(refuse(NOT_AUTHORIZED, "unknown ID scope"));
    }
    let reg = user.registration_id.as_str();
    let reg_ref = &state.registry;
    match (password, req.cert) {
        (Some(p), _) => {
            let token = SasToken::parse(p).map_err(|e| refuse(BAD_CREDENTIALS, e.to_string()))?;
            if token.skn.as_deref() != Some("registration") {
                return Err(refuse(NOT_AUTHORIZED, "DPS tokens must carry skn=registration"));
            }
            if !token.covers(&user.id_scope, &["registrations", reg], false) {
                return Err(refuse(NOT_AUTHORIZED, "token resource does not cover the registration"));
            }
            // Individual enrollment first, then groups (derived keys).
            let mut candidates: Vec<(EnrollmentRef, [String; 2])> = Vec::new();
            if let Some(e) = reg_ref.enrollments.get(reg) {
                if let Attestation::SymmetricKey { symmetric_key: k } = &e.attestation {
                    candidates
                        .push((EnrollmentRef::Individual, [k.primary_key.clone(), k.secondary_key.clone()]));
                }
            } else {
                for (gid, g) in &reg_ref.enrollment_groups {
                    if let Attestation::SymmetricKey { symmetric_key: k } = &g.attestation {
                        let derive = |key: &str| derive_device_key(key, reg).unwrap_or_default();
                        candidates.push((
                            EnrollmentRef::Group(gid.clone()),
                            [derive(&k.primary_key), derive(&k.secondary_key)],
                        ));
                    }
                }
            }
            let mut last = refuse(NOT_AUTHORIZED, "no symmetric-key enrollment for the registration");
            for (source, keys) in candidates {
                match token.verify(&[&keys[0], &keys[1]], req.now) {
                    Ok(()) => {
                        let credential = DpsCredential::SymmetricKey {
                            primary: keys[0].clone(),
                            secondary: keys[1].clone(),
                        };
                        return Ok(Accepted::Dps {
                            auth: DpsAuth { registration_id: reg.to_string(), source, credential },
                            method: "sas".into(),
                            expiry: Some(token.expiry),
                        });
                    }
                    Err(e) => last = refuse(NOT_AUTHORIZED, e.to_string()),
                }
            }
            Err(last)
        }
        (None, Some(cert)) => {
            if ca::common_name(cert).as_deref() != Some(reg) {
                return Err(refuse(NOT_AUTHORIZED, "certificate CN is not the registration id"));
            }
            if !ca::currently_valid(cert) {
                return Err(refuse(NOT_AUTHORIZED, "client certificate is not currently valid"));
            }
            let (_, sha256) = ca::thumbprints(cert);
            if let Some(e) = reg_ref.enrollments.get(reg) {
                if let Attestation::X509 { x509 } = &e.attestation {
                    let t = x509.client_certificate_thumbprint.clone().unwrap_or_default();
                    let prints: Vec<&str> = [&t.primary_thumbprint, &t.secondary_thumbprint]
                        .into_iter()
                        .filter_map(|t| t.as_deref())
                        .collect();
                    if ca::matches_thumbprint(cert, &prints) {
                        return Ok(Accepted::Dps {
                            auth: DpsAuth {
                                registration_id: reg.to_string(),
                                source: EnrollmentRef::Individual,
                                credential: DpsCredential::X509Thumbprint { sha256 },
                            },
                            method: "x509".into(),
                            expiry: None,
                        });
                    }
                }
                return Err(refuse(NOT_AUTHORIZED, "certificate does not match the individual enrollment"));
            }
            for (gid, g) in &reg_ref.enrollment_groups {
                if let Attestation::X509 { x509 } = &g.attestation {
                    let Some(ca_cert) = x509.ca_certificate_pem.as_deref().and_then(ca::parse_pem) else {
                        continue;
                    };
                    if ca::verify_chain(cert, req.chain, &[ca_cert]) {
                        return Ok(Accepted::Dps {
                            auth: DpsAuth {
                                registration_id: reg.to_string(),
                                source: EnrollmentRef::Group(gid.clone()),
                                credential: DpsCredential::X509Ca,
                            },
                            method: "x509ca".into(),
                            expiry: None,
                        });
                    }
                }
            }
            Err(refuse(NOT_AUTHORIZED, "no enrollment group CA signed the certificate"))
        }
        (None, None) => Err(refuse(BAD_CREDENTIALS, "neither a SAS token nor a client certificate")),
    }
}
