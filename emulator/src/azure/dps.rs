//! DPS registration: `iotdps-register` creates an operation answered with 202
//! `assigning`; polling it with `iotdps-get-operationstatus` assigns the device to this
//! hub, creates (or updates) it in the registry with the attested credential, and answers
//! 200 `assigned` (azure-dps.md §4–§5).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::registry::DeviceRecord;
use super::Hub;
use crate::control::api::{
    Attestation, Authentication, DeviceStatus, RegistrationInfo, SymmetricKey, X509Thumbprint,
};
use crate::util::{iso8601, random_hex};

/// Which enrollment authenticated the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnrollmentRef {
    Individual,
    Group(String),
}

impl fmt::Display for EnrollmentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrollmentRef::Individual => f.write_str("individual"),
            EnrollmentRef::Group(g) => write!(f, "group:{g}"),
        }
    }
}

/// The credential the device proved; the assigned device gets the same one.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum DpsCredential {
    /// Enrollment key (individual) or derived keys (group).
    SymmetricKey { primary: String, secondary: String },
    /// Certificate matched an individual enrollment's thumbprint.
    X509Thumbprint { sha256: String },
    /// Certificate chained to a group's CA.
    X509Ca,
}

impl fmt::Debug for DpsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpsCredential::SymmetricKey { .. } => f.write_str("SymmetricKey { .. }"),
            DpsCredential::X509Thumbprint { sha256 } => write!(f, "X509Thumbprint({sha256})"),
            DpsCredential::X509Ca => f.write_str("X509Ca"),
        }
    }
}

/// An authenticated DPS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DpsAuth {
    pub registration_id: String,
    pub source: EnrollmentRef,
    pub credential: DpsCredential,
}

#[derive(Debug)]
struct Operation {
    registration_id: String,
    created: SystemTime,
    /// The final answer, once assigned.
    result: Option<Value>,
}

/// Operations in progress and finished registrations.
#[derive(Debug, Default)]
pub(crate) struct Operations {
    ops: HashMap<String, Operation>,
    pub registrations: BTreeMap<String, RegistrationInfo>,
}

/// An answer on `$dps/registrations/res/{status}/?$rid=…[&retry-after=…]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DpsReply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u32>,
}

impl DpsReply {
    fn error(status: u16, message: &str) -> DpsReply {
        DpsReply {
            status,
            body: json!({
                "errorCode": u64::from(status) * 1000,
                "trackingId": random_hex(16),
                "message": message,
                "timestampUtc": iso8601(SystemTime::now()),
            }),
            retry_after: None,
        }
    }
}

impl Hub {
    /// `iotdps-register`: validates the body and starts an operation.
    pub fn dps_register(&self, auth: &DpsAuth, body: &[u8]) -> DpsReply {
        let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
            return DpsReply::error(400, "request body is not a JSON object");
        };
        if req.get("registrationId").and_then(Value::as_str) != Some(auth.registration_id.as_str()) {
            return DpsReply::error(400, "registrationId must equal the registration id of the connection");
        }
        if req.contains_key("tpm") {
            return DpsReply::error(400, "TPM attestation is not supported over MQTT");
        }
        let operation_id = format!("4.{}.{}", random_hex(8), random_hex(16));
        let mut st = self.lock();
        st.dps.ops.insert(
            operation_id.clone(),
            Operation { registration_id: auth.registration_id.clone(), created: self.now(), result: None },
        );
        tracing::info!(registration_id = %auth.registration_id, operation_id = %operation_id, "dps registration started");
        DpsReply {
            status: 202,
            body: json!({ "operationId": operation_id, "status": "assigning" }),
            retry_after: Some(self.settings.dps_retry_after),
        }
    }

    /// `iotdps-get-operationstatus`: assigns on the first poll, then repeats the answer.
    pub fn dps_poll(&self, auth: &DpsAuth, operation_id: &str) -> DpsReply {
        let mut st = self.lock();
        let now = self.now();
        let created = match st.dps.ops.get(operation_id) {
            Some(op) if op.registration_id == auth.registration_id => {
                if let Some(result) = &op.result {
                    return DpsReply { status: 200, body: result.clone(), retry_after: None };
                }
                op.created
            }
            _ => return DpsReply::error(404, "operation not found"),
        };
        let reg = auth.registration_id.clone();
        let mut state = json!({
            "registrationId": reg,
            "createdDateTimeUtc": iso8601(created),
            "lastUpdatedDateTimeUtc": iso8601(now),
            "etag": random_hex(16),
        });
        // The enrollment may have changed since CONNECT: look it up again.
        let (enabled, device_id) = match &auth.source {
            EnrollmentRef::Individual => match st.registry.enrollments.get(&reg) {
                Some(e) => (
                    e.provisioning_status == DeviceStatus::Enabled,
                    e.device_id.clone().unwrap_or(reg.clone()),
                ),
                None => return DpsReply::error(404, "enrollment not found"),
            },
            EnrollmentRef::Group(g) => match st.registry.enrollment_groups.get(g) {
                Some(e) => (e.provisioning_status == DeviceStatus::Enabled, reg.clone()),
                None => return DpsReply::error(404, "enrollment group not found"),
            },
        };
        let result = if !enabled {
            state["status"] = json!("disabled");
            json!({ "operationId": operation_id, "status": "disabled", "registrationState": state })
        } else {
            let authentication = match &auth.credential {
                DpsCredential::SymmetricKey { primary, secondary } => Authentication::Sas {
                    symmetric_key: SymmetricKey {
                        primary_key: primary.clone(),
                        secondary_key: secondary.clone(),
                    },
                },
                DpsCredential::X509Thumbprint { sha256 } => {
                    let enrolled = st
                        .registry
                        .enrollments
                        .get(&reg)
                        .and_then(|e| match &e.attestation {
                            Attestation::X509 { x509 } => x509.client_certificate_thumbprint.clone(),
                            Attestation::SymmetricKey { .. } => None,
                        })
                        .unwrap_or(X509Thumbprint {
                            primary_thumbprint: Some(sha256.clone()),
                            secondary_thumbprint: None,
                        });
                    Authentication::SelfSigned { x509_thumbprint: enrolled }
                }
                DpsCredential::X509Ca => {
                    if let EnrollmentRef::Group(g) = &auth.source {
                        let pem = st.registry.enrollment_groups.get(g).and_then(|e| match &e.attestation {
                            Attestation::X509 { x509 } => x509.ca_certificate_pem.clone(),
                            Attestation::SymmetricKey { .. } => None,
                        });
                        if let Some(pem) = pem {
                            st.registry.certificates.insert(format!("dps-group-{g}"), pem);
                        }
                    }
                    Authentication::CertificateAuthority
                }
            };
            let modules = st.registry.devices.get(&device_id).map(|d| d.modules.clone()).unwrap_or_default();
            st.registry.devices.insert(
                device_id.clone(),
                DeviceRecord { authentication, status: DeviceStatus::Enabled, modules },
            );
            self.persist(&st);
            let hub = self.settings.host_name.clone();
            state["assignedHub"] = json!(hub);
            state["deviceId"] = json!(device_id);
            state["status"] = json!("assigned");
            state["substatus"] = json!("initialAssignment");
            if !matches!(auth.credential, DpsCredential::SymmetricKey { .. }) {
                state["x509"] = json!({});
            }
            st.dps.registrations.insert(
                reg.clone(),
                RegistrationInfo {
                    registration_id: reg.clone(),
                    device_id: device_id.clone(),
                    assigned_hub: hub,
                    enrollment: match &auth.source {
                        EnrollmentRef::Individual => format!("individual:{reg}"),
                        EnrollmentRef::Group(g) => format!("group:{g}"),
                    },
                    assigned_at: iso8601(now),
                },
            );
            tracing::info!(registration_id = %reg, device_id = %device_id, enrollment = %auth.source, "dps device assigned");
            json!({ "operationId": operation_id, "status": "assigned", "registrationState": state })
        };
        if let Some(op) = st.dps.ops.get_mut(operation_id) {
            op.result = Some(result.clone());
        }
        DpsReply { status: 200, body: result, retry_after: None }
    }
}
