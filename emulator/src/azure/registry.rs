//! The identity registry: devices, modules, shared access policies, CA certificates and
//! DPS enrollments. This is what the state directory persists (`registry.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Identity;
use crate::auth::connect::{valid_id, valid_registration_id};
use crate::ca::normalize_thumbprint;
use crate::control::api::{
    Attestation, Authentication, DeviceStatus, Enrollment, EnrollmentGroup, IdentitySpec, Policy,
    SymmetricKey, X509Thumbprint,
};
use crate::util::{b64_decode, new_key};

/// A device and its modules.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRecord {
    pub authentication: Authentication,
    pub status: DeviceStatus,
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleRecord>,
}

/// A module.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModuleRecord {
    pub authentication: Authentication,
    pub status: DeviceStatus,
}

/// Everything persisted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Registry {
    #[serde(default)]
    pub devices: BTreeMap<String, DeviceRecord>,
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
    /// Registered CA certificates (name → PEM).
    #[serde(default)]
    pub certificates: BTreeMap<String, String>,
    #[serde(default)]
    pub enrollments: BTreeMap<String, Enrollment>,
    #[serde(default)]
    pub enrollment_groups: BTreeMap<String, EnrollmentGroup>,
}

/// A refused registry request (answered with 400 or 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
}

impl Registry {
    /// A fresh registry with the two policies that grant DeviceConnect on a real hub
    /// (`iothubowner`, `device`), keys generated.
    pub fn with_default_policies() -> Registry {
        let mut r = Registry::default();
        for (name, rights) in [
            ("iothubowner", vec!["RegistryWrite", "ServiceConnect", "DeviceConnect"]),
            ("device", vec!["DeviceConnect"]),
        ] {
            let policy = Policy {
                symmetric_key: SymmetricKey { primary_key: new_key(), secondary_key: new_key() },
                rights: rights.into_iter().map(str::to_string).collect(),
            };
            r.policies.insert(name.to_string(), policy);
        }
        r
    }

    /// Authentication and status of an identity.
    pub fn lookup(&self, id: &Identity) -> Option<(&Authentication, DeviceStatus)> {
        let dev = self.devices.get(&id.device_id)?;
        match &id.module_id {
            None => Some((&dev.authentication, dev.status)),
            Some(m) => {
                let module = dev.modules.get(m)?;
                // A disabled device disables its modules.
                let status = if dev.status == DeviceStatus::Disabled { dev.status } else { module.status };
                Some((&module.authentication, status))
            }
        }
    }

    /// Creates or updates a device or module from a control request.
    pub fn upsert(&mut self, id: &Identity, spec: IdentitySpec) -> Result<(), RegistryError> {
        if !valid_id(&id.device_id) || id.module_id.as_deref().is_some_and(|m| !valid_id(m)) {
            return Err(RegistryError::Invalid(format!("invalid identity {id}")));
        }
        let status = spec.status.unwrap_or_default();
        match &id.module_id {
            None => {
                let previous = self.devices.get(&id.device_id);
                let auth = match spec.authentication {
                    Some(a) => normalize_auth(a)?,
                    None => match previous {
                        Some(p) => p.authentication.clone(),
                        None => normalize_auth(Authentication::default())?,
                    },
                };
                let modules = previous.map(|p| p.modules.clone()).unwrap_or_default();
                self.devices
                    .insert(id.device_id.clone(), DeviceRecord { authentication: auth, status, modules });
            }
            Some(m) => {
                let dev = self
                    .devices
                    .get_mut(&id.device_id)
                    .ok_or_else(|| RegistryError::NotFound(format!("device {}", id.device_id)))?;
                let auth = match spec.authentication {
                    Some(Authentication::CertificateAuthority) => {
                        return Err(RegistryError::Invalid(
                            "certificateAuthority authentication of modules is not implemented".into(),
                        ))
                    }
                    Some(a) => normalize_auth(a)?,
                    None => match dev.modules.get(m) {
                        Some(p) => p.authentication.clone(),
                        None => normalize_auth(Authentication::default())?,
                    },
                };
                dev.modules.insert(m.clone(), ModuleRecord { authentication: auth, status });
            }
        }
        Ok(())
    }

    /// Deletes a device (with its modules) or a module.
    pub fn remove(&mut self, id: &Identity) -> Result<(), RegistryError> {
        let missing = || RegistryError::NotFound(format!("identity {id}"));
        match &id.module_id {
            None => self.devices.remove(&id.device_id).map(|_| ()).ok_or_else(missing),
            Some(m) => self
                .devices
                .get_mut(&id.device_id)
                .and_then(|d| d.modules.remove(m))
                .map(|_| ())
                .ok_or_else(missing),
        }
    }

    /// Sets a policy (keys generated when empty).
    pub fn set_policy(&mut self, name: &str, mut policy: Policy) -> Result<(), RegistryError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
            return Err(RegistryError::Invalid(format!("invalid policy name {name:?}")));
        }
        fill_keys(&mut policy.symmetric_key)?;
        self.policies.insert(name.to_string(), policy);
        Ok(())
    }

    /// Validates and stores an individual enrollment.
    pub fn set_enrollment(&mut self, registration_id: &str, mut e: Enrollment) -> Result<(), RegistryError> {
        if !valid_registration_id(registration_id) {
            return Err(RegistryError::Invalid(format!("invalid registration id {registration_id:?}")));
        }
        if e.device_id.as_deref().is_some_and(|d| !valid_id(d)) {
            return Err(RegistryError::Invalid("invalid deviceId".into()));
        }
        match &mut e.attestation {
            Attestation::SymmetricKey { symmetric_key } => fill_keys(symmetric_key)?,
            Attestation::X509 { x509 } => {
                if x509.ca_certificate_pem.is_some() {
                    return Err(RegistryError::Invalid(
                        "individual enrollments take clientCertificateThumbprint, not a CA".into(),
                    ));
                }
                let t = x509.client_certificate_thumbprint.as_mut().ok_or_else(|| {
                    RegistryError::Invalid("clientCertificateThumbprint is required".into())
                })?;
                normalize_thumbprints(t)?;
            }
        }
        self.enrollments.insert(registration_id.to_string(), e);
        Ok(())
    }

    /// Validates and stores an enrollment group.
    pub fn set_group(&mut self, group_id: &str, mut g: EnrollmentGroup) -> Result<(), RegistryError> {
        if group_id.is_empty() || !group_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(RegistryError::Invalid(format!("invalid group id {group_id:?}")));
        }
        match &mut g.attestation {
            Attestation::SymmetricKey { symmetric_key } => fill_keys(symmetric_key)?,
            Attestation::X509 { x509 } => {
                if x509.client_certificate_thumbprint.is_some() {
                    return Err(RegistryError::Invalid("enrollment groups take caCertificatePem".into()));
                }
                let pem = x509
                    .ca_certificate_pem
                    .as_deref()
                    .ok_or_else(|| RegistryError::Invalid("caCertificatePem is required".into()))?;
                if crate::ca::parse_pem(pem).is_none() {
                    return Err(RegistryError::Invalid("caCertificatePem is not a PEM certificate".into()));
                }
            }
        }
        self.enrollment_groups.insert(group_id.to_string(), g);
        Ok(())
    }
}

/// Fills missing keys and checks the given ones.
pub(crate) fn normalize_auth(auth: Authentication) -> Result<Authentication, RegistryError> {
    Ok(match auth {
        Authentication::Sas { mut symmetric_key } => {
            fill_keys(&mut symmetric_key)?;
            Authentication::Sas { symmetric_key }
        }
        Authentication::SelfSigned { mut x509_thumbprint } => {
            normalize_thumbprints(&mut x509_thumbprint)?;
            Authentication::SelfSigned { x509_thumbprint }
        }
        Authentication::CertificateAuthority => Authentication::CertificateAuthority,
    })
}

fn fill_keys(k: &mut SymmetricKey) -> Result<(), RegistryError> {
    for key in [&mut k.primary_key, &mut k.secondary_key] {
        if key.is_empty() {
            *key = new_key();
        } else if !b64_decode(key).is_some_and(|b| (16..=64).contains(&b.len())) {
            return Err(RegistryError::Invalid("keys must be base64 of 16 to 64 bytes".into()));
        }
    }
    Ok(())
}

fn normalize_thumbprints(t: &mut X509Thumbprint) -> Result<(), RegistryError> {
    let norm = |v: &mut Option<String>| -> Result<(), RegistryError> {
        if let Some(s) = v.take().filter(|s| !s.is_empty()) {
            *v = Some(normalize_thumbprint(&s).ok_or_else(|| {
                RegistryError::Invalid(format!("thumbprint {s:?} is not SHA-1 or SHA-256 hex"))
            })?);
        }
        Ok(())
    };
    norm(&mut t.primary_thumbprint)?;
    norm(&mut t.secondary_thumbprint)?;
    if t.primary_thumbprint.is_none() && t.secondary_thumbprint.is_none() {
        return Err(RegistryError::Invalid("a thumbprint is required".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_and_checked() {
        let mut r = Registry::with_default_policies();
        r.upsert(&Identity::device("d1"), IdentitySpec::default()).unwrap();
        let (auth, status) = r.lookup(&Identity::device("d1")).unwrap();
        assert_eq!(status, DeviceStatus::Enabled);
        let Authentication::Sas { symmetric_key } = auth else { panic!() };
        assert_eq!(b64_decode(&symmetric_key.primary_key).unwrap().len(), 32);
        let bad = IdentitySpec {
            authentication: Some(Authentication::Sas {
                symmetric_key: SymmetricKey { primary_key: "c2hvcnQ=".into(), secondary_key: String::new() },
            }),
            status: None,
        };
        assert!(matches!(r.upsert(&Identity::device("d2"), bad), Err(RegistryError::Invalid(_))));
        assert!(matches!(
            r.upsert(&Identity::module("nope", "m"), IdentitySpec::default()),
            Err(RegistryError::NotFound(_))
        ));
        r.upsert(&Identity::module("d1", "m"), IdentitySpec::default()).unwrap();
        assert!(r.lookup(&Identity::module("d1", "m")).is_some());
        r.remove(&Identity::device("d1")).unwrap();
        assert!(r.lookup(&Identity::module("d1", "m")).is_none());
        assert!(r.policies.contains_key("device"));
    }

    #[test]
    fn thumbprints_are_required_and_normalised() {
        let mut r = Registry::default();
        let spec = |p: &str| IdentitySpec {
            authentication: Some(Authentication::SelfSigned {
                x509_thumbprint: X509Thumbprint {
                    primary_thumbprint: Some(p.into()),
                    secondary_thumbprint: None,
                },
            }),
            status: None,
        };
        assert!(r.upsert(&Identity::device("d"), spec("zz")).is_err());
        r.upsert(&Identity::device("d"), spec(&"ab".repeat(20))).unwrap();
        let (auth, _) = r.lookup(&Identity::device("d")).unwrap();
        assert_eq!(
            auth,
            &Authentication::SelfSigned {
                x509_thumbprint: X509Thumbprint {
                    primary_thumbprint: Some("AB".repeat(20)),
                    secondary_thumbprint: None
                }
            }
        );
    }
}
