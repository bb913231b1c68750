//! JSON bodies of the control API (see the crate documentation for the routes).
//!
//! Field names are camelCase on the wire and follow the IoT Hub / DPS service APIs where
//! those have an equivalent (`deviceId`, `authentication.symmetricKey.primaryKey`,
//! `methodName`, `responseTimeoutInSeconds`, …). Unknown fields in requests are refused
//! with 400 rather than ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A pair of base64 symmetric keys. Empty keys in a request are generated (32 random
/// bytes). `Debug` does not show the keys.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SymmetricKey {
    /// Primary key (base64, 16–64 bytes).
    #[serde(default)]
    pub primary_key: String,
    /// Secondary key (base64, 16–64 bytes).
    #[serde(default)]
    pub secondary_key: String,
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey { .. }")
    }
}

/// X.509 thumbprints (SHA-1 or SHA-256 of the DER certificate, hex; `:` allowed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509Thumbprint {
    /// Primary thumbprint.
    #[serde(default)]
    pub primary_thumbprint: Option<String>,
    /// Secondary thumbprint.
    #[serde(default)]
    pub secondary_thumbprint: Option<String>,
}

/// How a device or module authenticates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Authentication {
    /// SAS tokens signed with one of the two symmetric keys.
    #[serde(rename = "sas")]
    Sas {
        /// The keys (generated when empty).
        #[serde(rename = "symmetricKey", default)]
        symmetric_key: SymmetricKey,
    },
    /// A TLS client certificate matched by thumbprint.
    #[serde(rename = "selfSigned")]
    SelfSigned {
        /// Accepted thumbprints.
        #[serde(rename = "x509Thumbprint")]
        x509_thumbprint: X509Thumbprint,
    },
    /// A TLS client certificate whose CN is the device id, signed by a registered CA.
    #[serde(rename = "certificateAuthority")]
    CertificateAuthority,
}

impl Default for Authentication {
    fn default() -> Self {
        Authentication::Sas { symmetric_key: SymmetricKey::default() }
    }
}

/// Whether an identity may connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// May connect.
    #[default]
    Enabled,
    /// Refused at CONNECT (return code 5).
    Disabled,
}

/// Body of `PUT /devices/{id}` and `PUT /devices/{id}/modules/{mid}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentitySpec {
    /// Authentication; default SAS with generated keys.
    #[serde(default)]
    pub authentication: Option<Authentication>,
    /// Status; default enabled.
    #[serde(default)]
    pub status: Option<DeviceStatus>,
}

/// A device or module as the control API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityInfo {
    /// Device id.
    pub device_id: String,
    /// Module id, for modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// Authentication (including the keys).
    pub authentication: Authentication,
    /// Enabled or disabled.
    pub status: DeviceStatus,
    /// `Connected` or `Disconnected`.
    pub connection_state: String,
    /// Model id announced at the last CONNECT (`model-id` in the user name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// C2D messages waiting for the device (devices only).
    #[serde(default)]
    pub cloud_to_device_message_count: usize,
}

/// Body of `PATCH` / `PUT .../twin`: desired properties and tags. `PATCH` merges
/// (`null` deletes), `PUT` replaces the desired section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TwinUpdate {
    /// `{"desired": {...}}`.
    #[serde(default)]
    pub properties: Option<TwinProperties>,
    /// Tags (merged).
    #[serde(default)]
    pub tags: Option<Value>,
}

/// The `properties` part of a [`TwinUpdate`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TwinProperties {
    /// Desired properties.
    #[serde(default)]
    pub desired: Option<Value>,
}

/// Body of `POST .../methods`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodInvocation {
    /// Method name.
    pub method_name: String,
    /// JSON payload sent to the device (absent: empty body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Seconds to wait for the answer (5–300, default 30), as in the service API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_in_seconds: Option<u64>,
    /// Emulator extension for tests: timeout in milliseconds (1–300 000); wins over
    /// `responseTimeoutInSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl MethodInvocation {
    /// A call of `method_name` with `payload` and the default timeout.
    pub fn new(method_name: impl Into<String>, payload: Option<Value>) -> Self {
        MethodInvocation {
            method_name: method_name.into(),
            payload,
            response_timeout_in_seconds: None,
            timeout_ms: None,
        }
    }
}

/// The device's answer to a method call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodResult {
    /// Status the device chose.
    pub status: i64,
    /// Response payload (`null` when the device sent an empty body).
    pub payload: Value,
}

/// Body of `POST /devices/{id}/messages/devicebound`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct C2dRequest {
    /// Body as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Body as base64 (instead of `payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// Application properties (`null` value: name without `=`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Option<String>>,
    /// `$.mid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `$.cid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// `$.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `$.ct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `$.ce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `iothub-ack` (`none`, `positive`, `negative`, `full`); carried, feedback is not
    /// implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
}

/// Answer to a C2D send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dAccepted {
    /// Sequence number of the message in the device queue.
    pub sequence_number: u64,
    /// Messages now pending for the device.
    pub pending: usize,
}

/// A C2D message not yet acknowledged by the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingC2d {
    /// Sequence number.
    pub sequence_number: u64,
    /// Topic it is (or will be) delivered on.
    pub topic: String,
    /// Body, base64.
    pub payload_base64: String,
    /// Sent on the current connection, PUBACK outstanding.
    pub in_flight: bool,
    /// How many times it was sent.
    pub delivery_count: u32,
}

/// A telemetry message the hub accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryMessage {
    /// Hub-wide sequence number.
    pub sequence_number: u64,
    /// Sender device.
    pub device_id: String,
    /// Sender module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The PUBLISH topic as received.
    pub topic: String,
    /// Body as text when it is UTF-8.
    #[serde(default)]
    pub payload: Option<String>,
    /// Body, base64.
    pub payload_base64: String,
    /// System properties by wire name (`$.mid`, `$.ct`, …), decoded.
    pub system_properties: BTreeMap<String, Option<String>>,
    /// Application properties, decoded (`null`: name without value). Includes
    /// `mqtt-retain` for RETAIN publishes and `iothub-MessageType=Will` for Will messages.
    pub properties: BTreeMap<String, Option<String>>,
    /// Hub-stamped properties (`iothub-connection-device-id`, `iothub-enqueuedtime`, …).
    pub annotations: BTreeMap<String, String>,
    /// QoS of the PUBLISH.
    pub qos: u8,
}

/// Body of `PUT .../faults/refuse-connect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefuseConnect {
    /// CONNACK return code to answer with (2–5).
    pub code: u8,
    /// How many CONNECTs to refuse (absent: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// Body of `PUT .../faults/throttle`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Throttle {
    /// Twin GET / reported PATCH answered with 429.
    #[serde(default)]
    pub twin: bool,
    /// CONNECT refused with return code 3 (server unavailable).
    #[serde(default)]
    pub connect: bool,
    /// How many operations to throttle (absent: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// An active fault, as listed by `GET /faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultInfo {
    /// Device id.
    pub device_id: String,
    /// Module id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// Refusal of CONNECTs, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_connect: Option<RefuseConnect>,
    /// Throttling, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
}

/// A live MQTT connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// `hub` or `dps`.
    pub endpoint: String,
    /// Client id (`device`, `device/module` or the registration id).
    pub client_id: String,
    /// `sas`, `x509` (thumbprint), `x509ca` or `policy:{name}`.
    pub auth: String,
    /// SAS expiry (Unix seconds); the connection is closed then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expiry: Option<u64>,
    /// CleanSession flag of the CONNECT.
    pub clean_session: bool,
    /// Active subscriptions (topic filters as granted).
    pub subscriptions: Vec<String>,
    /// When the connection was accepted.
    pub connected_at: String,
}

/// A shared access policy (keys used with `skn`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Keys (generated when empty).
    #[serde(default)]
    pub symmetric_key: SymmetricKey,
    /// Rights; only `DeviceConnect` matters to the emulator.
    #[serde(default)]
    pub rights: Vec<String>,
}

/// Body of `PUT /certificates/{name}`: a CA certificate for X.509 CA authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaCertificate {
    /// PEM certificate.
    pub pem: String,
}

/// Body of `POST /certificates/issue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssueCertificate {
    /// Subject CN (the device id or registration id for CA authentication).
    pub common_name: String,
}

/// A client certificate issued by the emulator's CA. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCertificate {
    /// PEM certificate.
    pub certificate_pem: String,
    /// PEM private key (PKCS#8).
    pub private_key_pem: String,
    /// SHA-1 thumbprint (upper-case hex).
    pub thumbprint_sha1: String,
    /// SHA-256 thumbprint (upper-case hex).
    pub thumbprint_sha256: String,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("thumbprint_sha256", &self.thumbprint_sha256)
            .finish_non_exhaustive()
    }
}

/// How a DPS enrollment attests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Attestation {
    /// Symmetric key: the enrollment key (individual) or the group key from which device
    /// keys are derived (group).
    #[serde(rename = "symmetricKey")]
    SymmetricKey {
        /// Keys (generated when empty).
        #[serde(rename = "symmetricKey", default)]
        symmetric_key: SymmetricKey,
    },
    /// X.509: individual enrollments by certificate thumbprint, groups by CA certificate.
    #[serde(rename = "x509")]
    X509 {
        /// The certificate reference.
        x509: X509Attestation,
    },
}

/// X.509 attestation details.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509Attestation {
    /// Individual enrollments: thumbprints of the device certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_thumbprint: Option<X509Thumbprint>,
    /// Enrollment groups: PEM of the CA that signs device certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_pem: Option<String>,
}

/// An individual enrollment (`PUT /dps/enrollments/{registrationId}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Enrollment {
    /// Attestation.
    pub attestation: Attestation,
    /// Device id to assign (default: the registration id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `enabled` or `disabled` (disabled: registration answers `status: disabled`).
    #[serde(default)]
    pub provisioning_status: DeviceStatus,
}

/// An enrollment group (`PUT /dps/enrollmentGroups/{groupId}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentGroup {
    /// Attestation.
    pub attestation: Attestation,
    /// `enabled` or `disabled`.
    #[serde(default)]
    pub provisioning_status: DeviceStatus,
}

/// A finished DPS registration (`GET /dps/registrations/{registrationId}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationInfo {
    /// Registration id.
    pub registration_id: String,
    /// Assigned device id.
    pub device_id: String,
    /// Assigned hub host.
    pub assigned_hub: String,
    /// `individual:{registrationId}` or `group:{groupId}`.
    pub enrollment: String,
    /// When it was assigned.
    pub assigned_at: String,
}

/// `GET /info`: where the emulator listens and what clients need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// `HostName` to use in connection strings and SAS resources.
    pub hub_host_name: String,
    /// Every host name the hub accepts (and the TLS certificate covers).
    pub host_names: Vec<String>,
    /// TLS MQTT port (IoT Hub and DPS).
    pub mqtt_port: u16,
    /// Plain TCP MQTT port, if enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_mqtt_port: Option<u16>,
    /// MQTT over secure WebSocket port (path `/$iothub/websocket`), if enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_port: Option<u16>,
    /// DPS ID scope.
    pub dps_id_scope: String,
    /// Path of the CA certificate (PEM) clients must trust.
    pub ca_path: String,
    /// AWS IoT endpoint host name (the server certificate covers it).
    #[serde(default)]
    pub aws_endpoint: String,
    /// AWS region of SigV4 credential scopes.
    #[serde(default)]
    pub aws_region: String,
    /// AWS certificate MQTT port (AWS's 8883), if enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_mqtt_port: Option<u16>,
    /// AWS ALPN / WebSocket port (AWS's 443), if enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_port: Option<u16>,
}

/// Error body of every non-2xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// HTTP status × 1000 + detail (e.g. 404103 device not online, 504101 timeout).
    pub error_code: u64,
    /// What went wrong.
    pub message: String,
}
