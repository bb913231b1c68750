//! Bodies of the AWS IoT control API routes (`/aws/…`, listed in the crate docs).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A thing (`PUT /aws/things/{name}` body and answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thing {
    /// Thing name (set from the path).
    #[serde(default)]
    pub thing_name: String,
    /// Attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Ids of the certificates attached to it.
    #[serde(default)]
    pub principals: Vec<String>,
}

/// Certificate status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// Accepted for connections.
    #[default]
    Active,
    /// Registered but refused.
    Inactive,
}

/// Body of `POST /aws/certificates`: issue a client certificate from the emulator CA
/// and register it, or (with `certificatePem`) register one issued elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCertificate {
    /// Subject CN of an issued certificate (default: the thing name, or `aws-device`).
    #[serde(default)]
    pub common_name: Option<String>,
    /// Register this PEM certificate instead of issuing one.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    /// Status (default `ACTIVE`).
    #[serde(default)]
    pub status: CertificateStatus,
    /// Attach it to this (existing) thing.
    #[serde(default)]
    pub thing_name: Option<String>,
}

/// A registered certificate. `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// Certificate id: lower-case hex SHA-256 of the DER certificate.
    pub certificate_id: String,
    /// PEM certificate.
    pub certificate_pem: String,
    /// PEM private key (PKCS#8), only in the answer that issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// Status.
    pub status: CertificateStatus,
    /// Things it is attached to.
    #[serde(default)]
    pub things: Vec<String>,
}

impl fmt::Debug for CertificateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateInfo")
            .field("certificate_id", &self.certificate_id)
            .field("status", &self.status)
            .field("things", &self.things)
            .finish_non_exhaustive()
    }
}

/// Body of `PUT /aws/certificates/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateUpdate {
    /// New status (connections of a deactivated certificate are closed).
    pub status: CertificateStatus,
}

/// An IAM-like access key for SigV4 (`POST /aws/access-keys`). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    /// Access key id (`AKIA…`).
    pub access_key_id: String,
    /// Secret access key (empty in listings).
    #[serde(default)]
    pub secret_access_key: String,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// A custom authorizer (`PUT /aws/authorizers/{name}`). The Lambda is replaced by an
/// allow-list: a connection is authenticated when its token is in `allowedTokens` (and,
/// with `tokenSigningPublicKey`, its signature verifies). `Debug` hides the tokens.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorizer {
    /// Name of the token's query parameter / header (e.g. `token`).
    pub token_key_name: String,
    /// PEM public key verifying `x-amz-customauthorizer-signature` (base64 RSA-SHA256 of
    /// the token); `None` disables signing.
    #[serde(default)]
    pub token_signing_public_key: Option<String>,
    /// Tokens the "Lambda" accepts.
    #[serde(default)]
    pub allowed_tokens: Vec<String>,
    /// Used when the client names no authorizer.
    #[serde(default)]
    pub default: bool,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("token_key_name", &self.token_key_name)
            .field("signing", &self.token_signing_public_key.is_some())
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

/// A captured PUBLISH on a user topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsTelemetry {
    /// Increasing number.
    pub sequence_number: u64,
    /// Sender's client id.
    pub client_id: String,
    /// Things of the sender's certificate (empty for SigV4 / custom auth).
    pub things: Vec<String>,
    /// Topic.
    pub topic: String,
    /// Payload as UTF-8, when it is.
    pub payload: Option<String>,
    /// Payload, base64.
    pub payload_base64: String,
    /// QoS.
    pub qos: u8,
    /// Receive time, Unix milliseconds.
    pub received_at_ms: u64,
}

/// A live AWS connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsConnection {
    /// Client id.
    pub client_id: String,
    /// `x509`, `sigv4`, `custom-auth`.
    pub auth: String,
    /// Principal: certificate id, access key id, or authorizer/token principal.
    pub principal: String,
    /// Subscribed filters.
    pub subscriptions: Vec<String>,
}

/// Faults of one client id (`PUT /aws/faults/{clientId}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsFaults {
    /// Refuse CONNECT with this CONNACK code (1–5).
    #[serde(default)]
    pub refuse_connect: Option<u8>,
    /// Answer shadow requests with 429.
    #[serde(default)]
    pub throttle_shadow: bool,
    /// Number of refusals/throttled requests before the fault clears (`None`: until cleared).
    #[serde(default)]
    pub count: Option<u32>,
}

/// Answer of a shadow route: the document, or the error document with its `code`.
pub type ShadowDocument = Value;
