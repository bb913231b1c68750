//! The Device Shadow (`aws-shadow.md`) as the provider's [`StateCodec`]: get, report,
//! update (with an optional version) and delete of the classic and named shadows, the
//! request id as `clientToken`; typed response documents; and the classification of
//! accepted/rejected/delta/documents messages.
//!
//! ```
//! use connector_aws::shadow::ShadowCodec;
//! use connector_core::provider::StateCodec;
//! let codec = ShadowCodec::new("lamp")?;
//! let p = codec.report("r1", br#"{"power":"on"}"#)?;
//! assert_eq!(p.topic, "$aws/things/lamp/shadow/update");
//! assert_eq!(&p.payload[..], br#"{"state":{"reported":{"power":"on"}},"clientToken":"r1"}"#);
//! let g = codec.get_named(Some("cfg"), "r2")?;
//! assert_eq!(g.topic, "$aws/things/lamp/shadow/name/cfg/get");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use connector_core::provider::StateCodec;
use connector_core::StateSections;
use connector_core::{
    DesiredPatch, Inbound, OutboundPacket, ProviderError, QoS, StateDocuments, StateResponse,
    SubscriptionSpec, WireProperties,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{RequestError, ShadowDocumentError};
use crate::limits::{validate_client_token, validate_thing_name, MAX_SHADOW_STATE};
use crate::topics::{AwsTopic, Reply, ShadowOp};

/// Shadow requests and subscriptions of one thing. Stateless: request ids come from the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowCodec {
    thing: String,
}

/// The `state` of a shadow document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct ShadowState {
    /// Desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
    /// Reported state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Value>,
    /// Desired minus reported (get/accepted only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Value>,
}

/// A full shadow document (`get/accepted`, `update/accepted`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowDocument {
    /// The state.
    #[serde(default)]
    pub state: ShadowState,
    /// Per-field `{"timestamp": t}` of `desired` and `reported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The document version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The request's `clientToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// An `update/delta` document: `state` is the delta object itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaDocument {
    /// The fields whose desired value differs from the reported one.
    pub state: Map<String, Value>,
    /// Desired metadata of exactly those fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The document version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The `clientToken` of the update that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// One side of an `update/documents` message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct ShadowSnapshot {
    /// The state (never with `delta`).
    #[serde(default)]
    pub state: ShadowState,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// An `update/documents` message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDocuments {
    /// Before the update (absent when the update created the shadow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ShadowSnapshot>,
    /// After the update.
    pub current: ShadowSnapshot,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The update's `clientToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// serde would build a struct from a JSON array too: documents are objects only.
macro_rules! from_object {
    ($ty:ident, $raw:ident { $($field:ident: $t:ty),* }) => {
        #[derive(Deserialize)]
        struct $raw {
            $(#[serde(default)] $field: $t,)*
        }
        impl TryFrom<Map<String, Value>> for $ty {
            type Error = serde_json::Error;
            fn try_from(m: Map<String, Value>) -> Result<Self, Self::Error> {
                let raw: $raw = serde_json::from_value(Value::Object(m))?;
                Ok(Self { $($field: raw.$field),* })
            }
        }
    };
}

from_object!(ShadowState, RawState { desired: Option<Value>, reported: Option<Value>, delta: Option<Value> });
from_object!(ShadowSnapshot, RawSnapshot { state: ShadowState, metadata: Option<Value>, version: Option<u64> });

/// A `delete/accepted` message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAccepted {
    /// The version of the deleted document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// The request's `clientToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// A `*/rejected` error document: `code` is the HTTP status (400, 401, 403, 404, 409, 413,
/// 415, 429, 500).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowErrorDocument {
    /// HTTP-like status.
    pub code: u16,
    /// The service's message.
    #[serde(default)]
    pub message: String,
    /// The request's `clientToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Seconds since the epoch (not in every error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// What every accepted answer (get, update, delete) carries: the correlation and version.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedHead {
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    version: Option<u64>,
}

/// Parses a shadow document (a JSON object) into `T`.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ShadowDocumentError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => {
            serde_json::from_value(v).map_err(|e| ShadowDocumentError::Malformed { reason: e.to_string() })
        }
        Ok(_) => Err(ShadowDocumentError::Malformed { reason: "not a JSON object".into() }),
        Err(e) => Err(ShadowDocumentError::Malformed { reason: e.to_string() }),
    }
}

/// Parses an error document, checking the code is an HTTP status.
pub fn parse_error(body: &[u8]) -> Result<ShadowErrorDocument, ShadowDocumentError> {
    let doc: ShadowErrorDocument = parse(body)?;
    if !(100..=599).contains(&doc.code) {
        return Err(ShadowDocumentError::Field { field: "code", reason: "an HTTP status from 100 to 599" });
    }
    Ok(doc)
}

impl ShadowCodec {
    /// The codec of `thing`.
    pub fn new(thing: impl Into<String>) -> Result<Self, crate::AwsError> {
        let thing = thing.into();
        validate_thing_name(&thing).map_err(|r| crate::AwsError::config("thing_name", r))?;
        Ok(Self { thing })
    }

    /// The thing.
    pub fn thing(&self) -> &str {
        &self.thing
    }

    fn packet(
        &self,
        shadow: Option<&str>,
        op: ShadowOp,
        body: &Request<'_>,
    ) -> Result<OutboundPacket, ProviderError> {
        validate_client_token(body.client_token)?;
        let topic =
            AwsTopic::ShadowRequest { thing: self.thing.clone(), shadow: shadow.map(str::to_owned), op }
                .assemble()
                .map_err(|e| RequestError::Body { what: "shadow name", reason: e.to_string() })?;
        let payload = serde_json::to_vec(body)
            .map_err(|e| RequestError::Body { what: "shadow request", reason: e.to_string() })?;
        Ok(OutboundPacket {
            topic,
            payload: Bytes::from(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WireProperties::default(),
        })
    }

    fn filters(&self, shadow: Option<&str>) -> Vec<SubscriptionSpec> {
        [ShadowOp::Get, ShadowOp::Update, ShadowOp::Delete]
            .into_iter()
            .filter_map(|op| {
                AwsTopic::ShadowFilter { thing: self.thing.clone(), shadow: shadow.map(str::to_owned), op }
                    .assemble()
                    .ok()
            })
            .map(|filter| SubscriptionSpec { filter, qos: QoS::AtLeastOnce })
            .collect()
    }

    /// Classifies a message on one of this thing's shadow topics (`None`: not a shadow
    /// response topic).
    pub fn classify(&self, topic: &AwsTopic, raw_topic: &str, payload: &Bytes) -> Option<Inbound> {
        let malformed = |reason: String| Inbound::Malformed { topic: raw_topic.to_owned(), reason };
        Some(match topic {
            AwsTopic::ShadowReply { reply: Reply::Accepted, .. } => match parse::<AcceptedHead>(payload) {
                Ok(doc) => Inbound::StateResponse(StateResponse {
                    request_id: doc.client_token.unwrap_or_default(),
                    status: 200,
                    version: doc.version,
                    body: payload.clone(),
                }),
                Err(e) => malformed(e.to_string()),
            },
            AwsTopic::ShadowReply { reply: Reply::Rejected, .. } => match parse_error(payload) {
                Ok(doc) => Inbound::StateResponse(StateResponse {
                    request_id: doc.client_token.unwrap_or_default(),
                    status: doc.code,
                    version: None,
                    body: payload.clone(),
                }),
                Err(e) => malformed(e.to_string()),
            },
            AwsTopic::ShadowDelta { shadow, .. } => match parse::<DeltaDocument>(payload) {
                Ok(doc) => match serde_json::to_vec(&doc.state) {
                    Ok(body) => Inbound::DesiredPatch(DesiredPatch {
                        shadow: shadow.clone(),
                        version: doc.version,
                        body: Bytes::from(body),
                    }),
                    Err(e) => malformed(e.to_string()),
                },
                Err(e) => malformed(e.to_string()),
            },
            AwsTopic::ShadowDocuments { shadow, .. } => match parse::<UpdateDocuments>(payload) {
                Ok(doc) => Inbound::StateDocuments(StateDocuments {
                    shadow: shadow.clone(),
                    version: doc.current.version,
                    body: payload.clone(),
                }),
                Err(e) => malformed(e.to_string()),
            },
            _ => return None,
        })
    }
}

/// A request body, fields in the order the protocol documents show.
#[derive(Serialize)]
struct Request<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a Value>,
    #[serde(rename = "clientToken")]
    client_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

impl<'a> Request<'a> {
    fn token(client_token: &'a str) -> Self {
        Self { state: None, client_token, version: None }
    }
}

fn json_object(what: &'static str, bytes: &[u8]) -> Result<Map<String, Value>, RequestError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RequestError::Body { what, reason: "not a JSON object".into() }),
        Err(e) => Err(RequestError::Body { what, reason: format!("not JSON: {e}") }),
    }
}

fn check_state_size(state: &Value) -> Result<(), ProviderError> {
    let size = serde_json::to_vec(state).map_or(0, |v| v.len());
    if size > MAX_SHADOW_STATE {
        return Err(ProviderError::PayloadTooLarge { size, limit: MAX_SHADOW_STATE });
    }
    Ok(())
}

fn check_named(shadow: Option<&str>) -> Result<(), ProviderError> {
    if let Some(s) = shadow {
        crate::limits::validate_shadow_name(s)
            .map_err(|r| RequestError::Body { what: "shadow name", reason: r.into() })?;
    }
    Ok(())
}

impl StateCodec for ShadowCodec {
    fn desired_pushes(&self) -> connector_core::DesiredPushes {
        connector_core::DesiredPushes::Deltas
    }

    /// `{"state":{"desired":…,"reported":…,"delta":…},"version":…}`; pushes are deltas, so
    /// a catch-up delivers the current delta (none when reported already matches).
    fn read_document(&self, document: &serde_json::Value, version: Option<u64>) -> StateSections {
        let state = document.get("state");
        let section = |name: &str| state.and_then(|s| s.get(name)).filter(|v| !v.is_null()).cloned();
        let delta = section("delta").filter(|d| d.as_object().is_some_and(|m| !m.is_empty()));
        StateSections {
            desired: section("desired"),
            reported: section("reported"),
            desired_version: document.get("version").and_then(serde_json::Value::as_u64).or(version),
            reported_version: None,
            catch_up: delta,
        }
    }

    /// `{P}/get` with `{"clientToken":…}`.
    fn get(&self, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        self.get_named(None, request_id)
    }

    /// `{P}/update` with `{"state":{"reported":patch},"clientToken":…}`; the patch must be
    /// a JSON object (`null` members delete).
    fn report(&self, request_id: &str, patch: &[u8]) -> Result<OutboundPacket, ProviderError> {
        self.report_named(None, request_id, patch)
    }

    /// The classic shadow's `get/+`, `update/+` (accepted, rejected, delta, documents) and
    /// `delete/+`, at QoS 1: three filters.
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        self.filters(None)
    }

    fn get_named(&self, shadow: Option<&str>, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        check_named(shadow)?;
        self.packet(shadow, ShadowOp::Get, &Request::token(request_id))
    }

    fn report_named(
        &self,
        shadow: Option<&str>,
        request_id: &str,
        patch: &[u8],
    ) -> Result<OutboundPacket, ProviderError> {
        check_named(shadow)?;
        let mut state = Map::new();
        state.insert("reported".into(), Value::Object(json_object("reported patch", patch)?));
        let state = Value::Object(state);
        check_state_size(&state)?;
        self.packet(
            shadow,
            ShadowOp::Update,
            &Request { state: Some(&state), client_token: request_id, version: None },
        )
    }

    /// `{P}/update` with `{"state":state,"clientToken":…[,"version":v]}`: `state` may hold
    /// only `desired` and `reported`, each an object or `null`.
    fn update(
        &self,
        shadow: Option<&str>,
        request_id: &str,
        state: &[u8],
        version: Option<u64>,
    ) -> Result<OutboundPacket, ProviderError> {
        check_named(shadow)?;
        let parsed = json_object("shadow state", state)?;
        for (k, v) in &parsed {
            if !matches!(k.as_str(), "desired" | "reported") {
                return Err(RequestError::Body {
                    what: "shadow state",
                    reason: format!("`{k}`: only `desired` and `reported` may be set"),
                }
                .into());
            }
            if !(v.is_object() || v.is_null()) {
                return Err(RequestError::Body {
                    what: "shadow state",
                    reason: format!("`{k}` must be an object or null"),
                }
                .into());
            }
        }
        let state = Value::Object(parsed);
        check_state_size(&state)?;
        self.packet(
            shadow,
            ShadowOp::Update,
            &Request { state: Some(&state), client_token: request_id, version },
        )
    }

    /// `{P}/delete` with `{"clientToken":…}`.
    fn delete(&self, shadow: Option<&str>, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        check_named(shadow)?;
        self.packet(shadow, ShadowOp::Delete, &Request::token(request_id))
    }

    /// The named shadow's `get/+`, `update/+`, `delete/+`; nothing for an invalid name
    /// (its requests are refused).
    fn named_subscriptions(&self, shadow: &str) -> Vec<SubscriptionSpec> {
        if check_named(Some(shadow)).is_err() {
            return Vec::new();
        }
        self.filters(Some(shadow))
    }
}

#[cfg(test)]
mod tests;
