//! DPS payloads (`azure-dps.md` §5–§6): the register request, the operation status and
//! error bodies, and what the device does next.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::topics::DpsTopic;
use crate::error::DpsError;

/// The poll interval when a response has no `retry-after` (the Python SDK's default).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceRegistration<'a> {
    registration_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
}

/// The register request body: `{"registrationId":"…"[,"payload":…]}`.
pub fn register_body(registration_id: &str, payload: Option<&Value>) -> Vec<u8> {
    // Serializing a struct of a string and a JSON value cannot fail.
    serde_json::to_vec(&DeviceRegistration { registration_id, payload }).unwrap_or_default()
}

/// The Plug and Play register payload `{"modelId":"…"}`.
pub fn model_id_payload(model_id: &str) -> Value {
    serde_json::json!({ "modelId": model_id })
}

/// `status` of an operation or registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
#[non_exhaustive]
pub enum OperationStatus {
    /// `unassigned`.
    Unassigned,
    /// `assigning`: poll again.
    Assigning,
    /// `assigned`: done, see the registration state.
    Assigned,
    /// `failed`.
    Failed,
    /// `disabled`.
    Disabled,
    /// Anything else, kept verbatim.
    Other(String),
}

impl From<String> for OperationStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "unassigned" => Self::Unassigned,
            "assigning" => Self::Assigning,
            "assigned" => Self::Assigned,
            "failed" => Self::Failed,
            "disabled" => Self::Disabled,
            _ => Self::Other(s),
        }
    }
}

/// `registrationState` (DeviceRegistrationResult).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct RegistrationState {
    /// `registrationId`.
    pub registration_id: Option<String>,
    /// `assignedHub`: the IoT Hub host name.
    pub assigned_hub: Option<String>,
    /// `deviceId` on the assigned hub.
    pub device_id: Option<String>,
    /// `status`.
    pub status: Option<OperationStatus>,
    /// `substatus` (`initialAssignment`, `deviceDataMigrated`, …).
    pub substatus: Option<String>,
    /// `errorCode` of a failed assignment.
    pub error_code: Option<u64>,
    /// `errorMessage` of a failed assignment.
    pub error_message: Option<String>,
    /// `createdDateTimeUtc`.
    pub created_date_time_utc: Option<String>,
    /// `lastUpdatedDateTimeUtc`.
    pub last_updated_date_time_utc: Option<String>,
    /// `etag`.
    pub etag: Option<String>,
    /// `payload` returned by a custom allocation policy.
    pub payload: Option<Value>,
}

/// RegistrationOperationStatus: the body of 200 and 202 responses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OperationState {
    /// `operationId`, for polling.
    pub operation_id: String,
    /// `status`.
    pub status: OperationStatus,
    /// `registrationState`.
    #[serde(default)]
    pub registration_state: Option<RegistrationState>,
}

/// The error body of 4xx/5xx responses (fields absent when the body is not one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct ErrorBody {
    /// `errorCode`, six digits whose first three are the HTTP status.
    pub error_code: Option<u64>,
    /// `trackingId`.
    pub tracking_id: Option<String>,
    /// `message`.
    pub message: Option<String>,
    /// `timestampUtc`.
    pub timestamp_utc: Option<String>,
}

/// A response body.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResponseBody {
    /// An operation status (200, 202).
    Operation(Box<OperationState>),
    /// An error (status ≥ 300).
    Error(ErrorBody),
}

/// A parsed DPS response: topic and body.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DpsResponse {
    /// HTTP-like status.
    pub status: u16,
    /// `$rid` of the request it answers.
    pub request_id: String,
    /// `retry-after`.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: ResponseBody,
}

/// The hub identity DPS assigned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Assignment {
    /// `assignedHub`: the IoT Hub host name.
    pub assigned_hub: String,
    /// `deviceId` on that hub.
    pub device_id: String,
    /// `substatus`.
    pub substatus: Option<String>,
    /// Custom allocation `payload`.
    pub payload: Option<Value>,
}

/// What the device does after a response (the Python SDK's rules).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NextStep {
    /// Still assigning: poll `operation_id` after the delay.
    Poll {
        /// `operationId`.
        operation_id: String,
        /// `retry-after`, or [`DEFAULT_RETRY_AFTER`].
        after: Duration,
    },
    /// Throttled (429) or server error (≥ 500): repeat the last request after the delay.
    Retry {
        /// `retry-after`, or [`DEFAULT_RETRY_AFTER`].
        after: Duration,
    },
    /// Assigned: connect to the hub.
    Assigned(Assignment),
    /// A final failure: a client error (300–428), or an operation that ended `failed`,
    /// `disabled` or `unassigned`.
    Failed {
        /// The response status.
        status: u16,
        /// `errorCode`, when given.
        error_code: Option<u64>,
        /// The message (`message` or `errorMessage`, else the operation status).
        message: String,
    },
}

impl DpsResponse {
    /// Parses a response topic and its body.
    pub fn parse(topic: &str, payload: &[u8]) -> Result<Self, DpsError> {
        let DpsTopic::Response { status, request_id, retry_after } = DpsTopic::parse(topic)? else {
            return Err(DpsError::UnknownTopic);
        };
        let body = if status < 300 {
            ResponseBody::Operation(Box::new(
                serde_json::from_slice(payload)
                    .map_err(|e| DpsError::InvalidBody { reason: e.to_string() })?,
            ))
        } else {
            // Error bodies are informative only: anything unreadable leaves the fields empty.
            ResponseBody::Error(serde_json::from_slice(payload).unwrap_or_default())
        };
        Ok(Self { status, request_id, retry_after, body })
    }

    /// What to do next.
    pub fn next_step(&self) -> Result<NextStep, DpsError> {
        let after = self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
        let op = match &self.body {
            _ if self.status >= 429 => return Ok(NextStep::Retry { after }),
            ResponseBody::Error(e) => {
                return Ok(NextStep::Failed {
                    status: self.status,
                    error_code: e.error_code,
                    message: e.message.clone().unwrap_or_else(|| format!("status {}", self.status)),
                })
            }
            ResponseBody::Operation(op) if self.status >= 300 => {
                return Ok(NextStep::Failed {
                    status: self.status,
                    error_code: None,
                    message: format!("status {} for operation {}", self.status, op.operation_id),
                })
            }
            ResponseBody::Operation(op) => op,
        };
        match &op.status {
            OperationStatus::Assigning => Ok(NextStep::Poll { operation_id: op.operation_id.clone(), after }),
            OperationStatus::Assigned => {
                let state = op.registration_state.as_ref().ok_or_else(|| DpsError::InvalidBody {
                    reason: "`assigned` without `registrationState`".into(),
                })?;
                match (&state.assigned_hub, &state.device_id) {
                    (Some(hub), Some(device)) => Ok(NextStep::Assigned(Assignment {
                        assigned_hub: hub.clone(),
                        device_id: device.clone(),
                        substatus: state.substatus.clone(),
                        payload: state.payload.clone(),
                    })),
                    (Some(_), None) => {
                        Err(DpsError::IncompleteAssignment { present: "assignedHub", missing: "deviceId" })
                    }
                    (None, Some(_)) => {
                        Err(DpsError::IncompleteAssignment { present: "deviceId", missing: "assignedHub" })
                    }
                    (None, None) => {
                        Err(DpsError::InvalidBody { reason: "`assigned` without `assignedHub`".into() })
                    }
                }
            }
            other => {
                let state = op.registration_state.as_ref();
                Ok(NextStep::Failed {
                    status: self.status,
                    error_code: state.and_then(|s| s.error_code),
                    message: state
                        .and_then(|s| s.error_message.clone())
                        .unwrap_or_else(|| format!("registration ended {other:?}")),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSIGNED: &str = r#"{"operationId":"4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d","status":"assigned",
 "registrationState":{
   "x509":{},
   "registrationId":"paho-sample-device1",
   "createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z",
   "assignedHub":"contoso.azure-devices.net",
   "deviceId":"paho-sample-device1",
   "status":"assigned",
   "substatus":"initialAssignment",
   "lastUpdatedDateTimeUtc":"2020-04-10T03:11:13.2096201Z",
   "etag":"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI="}}"#;

    fn step(topic: &str, body: &str) -> Result<NextStep, DpsError> {
        DpsResponse::parse(topic, body.as_bytes())?.next_step()
    }

    #[test]
    fn register_bodies() {
        assert_eq!(
            String::from_utf8(register_body("device-01", None)).unwrap(),
            r#"{"registrationId":"device-01"}"#
        );
        let payload = model_id_payload("dtmi:com:example:Thermostat;1");
        assert_eq!(
            String::from_utf8(register_body("device-01", Some(&payload))).unwrap(),
            r#"{"registrationId":"device-01","payload":{"modelId":"dtmi:com:example:Thermostat;1"}}"#
        );
    }

    #[test]
    fn the_flow_of_the_spec() {
        let op = "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d";
        assert_eq!(
            step(
                "$dps/registrations/res/202/?$rid=1&retry-after=3",
                &format!(r#"{{"operationId":"{op}","status":"assigning"}}"#)
            )
            .unwrap(),
            NextStep::Poll { operation_id: op.into(), after: Duration::from_secs(3) }
        );
        let with_state = format!(
            r#"{{"operationId":"{op}","status":"assigning","registrationState":{{"registrationId":"paho-sample-device1","status":"assigning"}}}}"#
        );
        assert_eq!(
            step("$dps/registrations/res/202/?$rid=2", &with_state).unwrap(),
            NextStep::Poll { operation_id: op.into(), after: DEFAULT_RETRY_AFTER }
        );
        let r = DpsResponse::parse("$dps/registrations/res/200/?$rid=3", ASSIGNED.as_bytes()).unwrap();
        let ResponseBody::Operation(state) = &r.body else { panic!("{r:?}") };
        assert_eq!(
            state.registration_state.as_ref().unwrap().etag.as_deref(),
            Some("IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=")
        );
        assert_eq!(
            r.next_step().unwrap(),
            NextStep::Assigned(Assignment {
                assigned_hub: "contoso.azure-devices.net".into(),
                device_id: "paho-sample-device1".into(),
                substatus: Some("initialAssignment".into()),
                payload: None,
            })
        );
    }

    #[test]
    fn errors_retries_and_failures() {
        let err = r#"{"errorCode":401002,"trackingId":"8ad0463c-6427-4479-9dfa-3e8bb7003e9b","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"}"#;
        assert_eq!(
            step("$dps/registrations/res/401/?$rid=1", err).unwrap(),
            NextStep::Failed {
                status: 401,
                error_code: Some(401_002),
                message: "Invalid certificate.".into()
            }
        );
        assert_eq!(
            step("$dps/registrations/res/429/?$rid=1&retry-after=7", "").unwrap(),
            NextStep::Retry { after: Duration::from_secs(7) }
        );
        assert_eq!(
            step("$dps/registrations/res/503/?$rid=1", "garbage").unwrap(),
            NextStep::Retry { after: DEFAULT_RETRY_AFTER }
        );
        let failed = r#"{"operationId":"o","status":"failed","registrationState":{"status":"failed","errorCode":400209,"errorMessage":"Custom allocation failed"}}"#;
        assert_eq!(
            step("$dps/registrations/res/200/?$rid=1", failed).unwrap(),
            NextStep::Failed {
                status: 200,
                error_code: Some(400_209),
                message: "Custom allocation failed".into()
            }
        );
        assert!(matches!(
            step("$dps/registrations/res/200/?$rid=1", r#"{"operationId":"o","status":"disabled"}"#),
            Ok(NextStep::Failed { .. })
        ));
        assert!(matches!(
            step("$dps/registrations/res/200/?$rid=1", "not json"),
            Err(DpsError::InvalidBody { .. })
        ));
        assert_eq!(
            step(
                "$dps/registrations/res/200/?$rid=1",
                r#"{"operationId":"o","status":"assigned","registrationState":{"assignedHub":"h"}}"#
            ),
            Err(DpsError::IncompleteAssignment { present: "assignedHub", missing: "deviceId" })
        );
        assert_eq!(
            step(
                "$dps/registrations/res/200/?$rid=1",
                r#"{"operationId":"o","status":"assigned","registrationState":{"deviceId":"d"}}"#
            ),
            Err(DpsError::IncompleteAssignment { present: "deviceId", missing: "assignedHub" })
        );
        assert!(matches!(
            step("$dps/registrations/res/200/?$rid=1", r#"{"operationId":"o","status":"assigned"}"#),
            Err(DpsError::InvalidBody { .. })
        ));
        assert_eq!(DpsResponse::parse("$dps/registrations/res/#", b""), Err(DpsError::UnknownTopic));
        let other: OperationStatus = String::from("weird").into();
        assert_eq!(other, OperationStatus::Other("weird".into()));
    }
}
