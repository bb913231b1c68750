//! Device Provisioning Service over MQTT (`azure-dps.md`): connect parameters, requests and
//! response parsing as a pure codec, and (feature `runtime`, on by default) the client that
//! runs the register-then-poll flow through the actor tree.
//!
//! | module | what |
//! |---|---|
//! | [`topics`] | [`DpsTopic`]: responses filter, register, poll, response |
//! | [`codec`] | register body, [`DpsResponse`], [`NextStep`] |
//! | `client` | `provision`, `provision_then_connect`, `DpsProvider` (feature `runtime`) |
//!
//! ```
//! use connector_azure::dps::{DpsAuth, DpsOptions, DpsRegistration};
//! use connector_azure::sas::SasKey;
//! let group = SasKey::from_base64("Mkq90sxtvhE4+illsJ1STOM54LSDXv9NmixoAhsW4C3cMhSayPmlfCNmnrph8Gh/kjQLhPdEdCXaXN6mwREiZw==")?;
//! let dps = DpsRegistration::new("0ne00000A0A", "device-01", DpsAuth::GroupKey(group), DpsOptions::default())?;
//! assert_eq!(dps.username(), "0ne00000A0A/registrations/device-01/api-version=2019-03-31");
//! assert_eq!(dps.register("1", None).topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "runtime")]
pub mod client;
pub mod codec;
pub mod topics;

use connector_core::provider::redact_userinfo;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use connector_core::{
    BrokerUri, ConnectParams, OutboundPacket, PemSource, ProviderError, QoS, SubscriptionSpec, TlsOptions,
    WireProperties,
};
use serde_json::Value;

pub use codec::{Assignment, DpsResponse, NextStep, OperationStatus, ResponseBody};
pub use topics::DpsTopic;

use crate::connection_string::{ConnectionString, Credential};
use crate::encoding::percent_encode;
use crate::error::{AzureError, DpsError};
use crate::options::Transport;
use crate::sas::{SasKey, SasToken};
use crate::x509::X509Identity;

/// The global device endpoint.
pub const GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";

/// The DPS api-version every SDK sends.
pub const API_VERSION: &str = "2019-03-31";

/// The `skn` of every DPS token.
pub const POLICY: &str = "registration";

/// How the device attests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpsAuth {
    /// An individual enrollment's symmetric key.
    SymmetricKey(SasKey),
    /// An enrollment group's key: the device key is derived from it (HMAC of the
    /// registration id), and the group key itself never goes on the wire.
    GroupKey(SasKey),
    /// A client certificate whose CN is the registration id.
    X509(X509Identity),
}

/// Options of [`DpsRegistration`]; `Default` is the global endpoint over MQTT/TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct DpsOptions {
    /// The DPS host.
    pub endpoint: String,
    /// MQTT over TLS or over WebSocket.
    pub transport: Transport,
    /// Overrides the transport's port.
    pub port: Option<u16>,
    /// The api-version of the user name.
    pub api_version: String,
    /// Lifetime of the SAS token.
    pub sas_ttl: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Connect time limit.
    pub connect_timeout: Duration,
    /// Trust roots; `None` uses the system's.
    pub trust_roots: Option<PemSource>,
    /// OpenSSL cipher list.
    pub ciphers: Option<String>,
    /// Proxy, as [`AzureOptions::http_proxy`](crate::AzureOptions::http_proxy).
    pub http_proxy: Option<String>,
    /// Product string sent as `ClientVersion`.
    pub product_info: Option<String>,
}

/// A proxy URL's credentials (`user:password@`) are never shown.
impl std::fmt::Debug for DpsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpsOptions")
            .field("endpoint", &self.endpoint)
            .field("transport", &self.transport)
            .field("port", &self.port)
            .field("api_version", &self.api_version)
            .field("sas_ttl", &self.sas_ttl)
            .field("keep_alive", &self.keep_alive)
            .field("connect_timeout", &self.connect_timeout)
            .field("trust_roots", &self.trust_roots)
            .field("ciphers", &self.ciphers)
            .field("http_proxy", &self.http_proxy.as_deref().map(redact_userinfo))
            .field("product_info", &self.product_info)
            .finish()
    }
}

impl Default for DpsOptions {
    fn default() -> Self {
        Self {
            endpoint: GLOBAL_ENDPOINT.to_owned(),
            transport: Transport::Mqtt,
            port: None,
            api_version: API_VERSION.to_owned(),
            sas_ttl: Duration::from_secs(3600),
            keep_alive: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            trust_roots: None,
            ciphers: None,
            http_proxy: None,
            product_info: None,
        }
    }
}

/// One device's registration with DPS.
#[derive(Debug, Clone)]
pub struct DpsRegistration {
    id_scope: String,
    registration_id: String,
    auth: DpsAuth,
    device_key: Option<SasKey>,
    opts: DpsOptions,
    uri: BrokerUri,
}

impl DpsRegistration {
    /// Validates the ID scope, registration id and options, and derives a group member's
    /// key.
    pub fn new(
        id_scope: impl Into<String>,
        registration_id: impl Into<String>,
        auth: DpsAuth,
        opts: DpsOptions,
    ) -> Result<Self, AzureError> {
        let (id_scope, registration_id) = (id_scope.into(), registration_id.into());
        check_id_scope(&id_scope)
            .map_err(|reason| AzureError::Config { field: "id_scope", reason: reason.into() })?;
        check_registration_id(&registration_id)
            .map_err(|reason| AzureError::Config { field: "registration_id", reason: reason.into() })?;
        if opts.sas_ttl.as_secs() == 0 {
            return Err(AzureError::Config {
                field: "sas_ttl",
                reason: "must be at least one second".into(),
            });
        }
        let device_key = match &auth {
            DpsAuth::SymmetricKey(k) => Some(k.clone()),
            DpsAuth::GroupKey(g) => Some(g.derive(&registration_id)?),
            DpsAuth::X509(_) => None,
        };
        let uri: BrokerUri = opts.transport.uri(&opts.endpoint, opts.port).parse().map_err(
            |e: connector_core::ConfigError| AzureError::Config { field: "endpoint", reason: e.to_string() },
        )?;
        let reg = Self { id_scope, registration_id, auth, device_key, opts, uri };
        reg.skeleton()
            .validate()
            .map_err(|e| AzureError::Config { field: "connect", reason: e.to_string() })?;
        Ok(reg)
    }

    /// The ID scope.
    pub fn id_scope(&self) -> &str {
        &self.id_scope
    }

    /// The registration id (also the MQTT client id).
    pub fn registration_id(&self) -> &str {
        &self.registration_id
    }

    /// How the device attests.
    pub fn auth(&self) -> &DpsAuth {
        &self.auth
    }

    /// The options.
    pub fn options(&self) -> &DpsOptions {
        &self.opts
    }

    /// The symmetric key this device uses, for DPS and for the assigned hub (derived for
    /// group members); `None` with X.509.
    pub fn device_key(&self) -> Option<&SasKey> {
        self.device_key.as_ref()
    }

    /// The token resource: `{idScope}/registrations/{registrationId}`.
    pub fn resource_uri(&self) -> String {
        format!("{}/registrations/{}", self.id_scope, self.registration_id)
    }

    /// `{idScope}/registrations/{registrationId}/api-version=…[&ClientVersion=…]` (no `?`).
    pub fn username(&self) -> String {
        let mut u = format!("{}/api-version={}", self.resource_uri(), percent_encode(&self.opts.api_version));
        if let Some(p) = &self.opts.product_info {
            u.push_str("&ClientVersion=");
            u.push_str(&percent_encode(p));
        }
        u
    }

    /// A SAS token for DPS (`skn=registration`) valid until `now + sas_ttl`; `None` with X.509.
    pub fn sas_token(&self, now: SystemTime) -> Result<Option<SasToken>, DpsError> {
        self.device_key
            .as_ref()
            .map(|k| {
                SasToken::generate_with_ttl(k, &self.resource_uri(), now, self.opts.sas_ttl, Some(POLICY))
            })
            .transpose()
            .map_err(DpsError::from)
    }

    fn skeleton(&self) -> ConnectParams {
        let mut p = ConnectParams::new(self.uri.clone(), self.registration_id.clone());
        p.username = Some(self.username());
        let mut tls = TlsOptions {
            ca: self.opts.trust_roots.clone(),
            ciphers: self.opts.ciphers.clone(),
            ..TlsOptions::default()
        };
        if let DpsAuth::X509(id) = &self.auth {
            id.apply(&mut tls);
        }
        p.tls = Some(tls);
        p.keep_alive = self.opts.keep_alive;
        p.clean_session = true;
        p.connect_timeout = self.opts.connect_timeout;
        p.http_proxy = self.opts.http_proxy.clone();
        p
    }

    /// Parameters for connecting to DPS at `now` (clean session: DPS keeps none).
    pub fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError> {
        let mut p = self.skeleton();
        if let Some(t) =
            self.sas_token(now).map_err(|e| ProviderError::Credentials { reason: e.to_string() })?
        {
            p.credentials_expire = Some(t.expires_at());
            p.password = Some(t.into_secret());
        }
        Ok(p)
    }

    /// The one subscription: `$dps/registrations/res/#` at QoS 1.
    pub fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        vec![SubscriptionSpec { filter: DpsTopic::ResponsesFilter.assemble(), qos: QoS::AtLeastOnce }]
    }

    /// The register request; `payload` goes to custom allocation (see
    /// [`codec::model_id_payload`] for Plug and Play).
    pub fn register(&self, request_id: &str, payload: Option<&Value>) -> OutboundPacket {
        let body = codec::register_body(&self.registration_id, payload);
        packet(DpsTopic::Register { request_id: request_id.to_owned() }, body.into())
    }

    /// The operation-status poll (empty body).
    pub fn poll(&self, request_id: &str, operation_id: &str) -> OutboundPacket {
        let topic =
            DpsTopic::PollStatus { request_id: request_id.to_owned(), operation_id: operation_id.to_owned() };
        packet(topic, Bytes::new())
    }

    /// The hub identity after assignment: the assigned hub and device id with this device's
    /// key (or `x509=true`).
    pub fn hub_connection_string(&self, assignment: &Assignment) -> Result<ConnectionString, AzureError> {
        let credential = match &self.device_key {
            Some(k) => Credential::DeviceKey(k.clone()),
            None => Credential::X509,
        };
        Ok(ConnectionString::new(assignment.assigned_hub.clone(), assignment.device_id.clone(), credential)?)
    }
}

fn packet(topic: DpsTopic, payload: Bytes) -> OutboundPacket {
    OutboundPacket {
        topic: topic.assemble(),
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WireProperties::default(),
    }
}

fn check_id_scope(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("an ID scope is up to 64 ASCII letters and digits (e.g. 0ne00000A0A)");
    }
    Ok(())
}

/// Registration ids: 1–128 ASCII alphanumerics or `- . _ :`.
fn check_registration_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 128 {
        return Err("longer than 128 characters");
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')) {
        return Err("only ASCII letters, digits and `- . _ :` are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::from_unix_secs;
    use connector_core::Secret;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn individual() -> DpsRegistration {
        let key = SasKey::from_base64(KEY).unwrap();
        DpsRegistration::new("0ne00000A0A", "device-01", DpsAuth::SymmetricKey(key), DpsOptions::default())
            .unwrap()
    }

    #[test]
    fn connect_params_follow_the_spec() {
        let p = individual().connect_params(from_unix_secs(1_735_686_000)).unwrap();
        assert_eq!(p.uri.to_string(), "mqtts://global.azure-devices-provisioning.net:8883");
        assert_eq!(p.client_id, "device-01");
        assert_eq!(p.username.as_deref(), Some("0ne00000A0A/registrations/device-01/api-version=2019-03-31"));
        assert_eq!(
            p.password.as_ref().map(Secret::expose),
            Some("SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fdevice-01&sig=Pa8h4L2s50u%2B9b528N%2FdRI4xgnNs8K8Z7OK99SBM5F8%3D&se=1735689600&skn=registration")
        );
        assert_eq!(p.credentials_expire, Some(from_unix_secs(1_735_689_600)));
        assert!(p.clean_session && p.tls.is_some());
        assert!(!format!("{p:?} {:?}", individual()).contains("Pa8h4L2s"));
    }

    #[test]
    fn usernames_websocket_and_requests() {
        let key = SasKey::from_base64(KEY).unwrap();
        let opts = DpsOptions {
            transport: Transport::WebSocket,
            product_info: Some("azure-iot-device-provisioning-py/2.14.0".into()),
            ..DpsOptions::default()
        };
        let dps = DpsRegistration::new("0ne00000A0A", "device-01", DpsAuth::SymmetricKey(key), opts).unwrap();
        assert_eq!(
            dps.username(),
            "0ne00000A0A/registrations/device-01/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0"
        );
        assert_eq!(
            dps.connect_params(SystemTime::now()).unwrap().uri.to_string(),
            "wss://global.azure-devices-provisioning.net:443/$iothub/websocket"
        );
        let poll = dps.poll("2", "op-1");
        assert_eq!(poll.topic, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op-1");
        assert!(poll.payload.is_empty());
        let reg = dps.register("1", Some(&codec::model_id_payload("dtmi:com:example:Thermostat;1")));
        assert_eq!(
            &reg.payload[..],
            br#"{"registrationId":"device-01","payload":{"modelId":"dtmi:com:example:Thermostat;1"}}"#
        );
        assert_eq!(dps.subscriptions()[0].filter, "$dps/registrations/res/#");
    }

    #[test]
    fn ids_are_validated() {
        let key = || DpsAuth::SymmetricKey(SasKey::from_base64(KEY).unwrap());
        for (scope, reg, field) in [
            ("", "d", "id_scope"),
            ("0ne/x", "d", "id_scope"),
            ("0ne00000A0A", "", "registration_id"),
            ("0ne00000A0A", "a/b", "registration_id"),
            ("0ne00000A0A", "a+b", "registration_id"),
        ] {
            match DpsRegistration::new(scope, reg, key(), DpsOptions::default()) {
                Err(AzureError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{scope} {reg}: {other:?}"),
            }
        }
    }

    #[test]
    fn assignment_becomes_a_hub_identity_with_the_derived_key() {
        let group = SasKey::from_base64(
            "Mkq90sxtvhE4+illsJ1STOM54LSDXv9NmixoAhsW4C3cMhSayPmlfCNmnrph8Gh/kjQLhPdEdCXaXN6mwREiZw==",
        )
        .unwrap();
        let dps =
            DpsRegistration::new("0ne00000A0A", "device-01", DpsAuth::GroupKey(group), DpsOptions::default())
                .unwrap();
        let a = Assignment {
            assigned_hub: "contoso.azure-devices.net".into(),
            device_id: "device-01".into(),
            substatus: None,
            payload: None,
        };
        let cs = dps.hub_connection_string(&a).unwrap();
        assert_eq!(cs.host_name(), "contoso.azure-devices.net");
        assert_eq!(
            cs.shared_access_key().unwrap().to_base64().expose(),
            "FOtnBnNffdiNWaqSDkC6QVxQOBHFzd7/+Ck6VQo6ri4="
        );
    }
}
