//! [`AzureProvider`]: IoT Hub behind the provider-neutral [`Provider`] trait.

use std::time::SystemTime;

use bytes::Bytes;
use connector_core::provider::{check_topic, StateCodec};
use connector_core::{
    BrokerUri, ConnectParams, Inbound, InboundMessage, Limits, OutboundPacket, ProviderError, Publish,
    SubscriptionSpec, Target, TlsOptions, WireProperties,
};
use connector_core::{Provider, QoS, Secret};

use crate::c2d::c2d_message;
use crate::connection_string::{ConnectionString, Credential};
use crate::encoding::percent_encode;
use crate::error::{AzureError, TopicParseError};
use crate::methods::{self, MAX_METHOD_PAYLOAD};
use crate::options::{AzureOptions, MAX_KEEP_ALIVE, MIN_PNP_API_VERSION};
use crate::pnp::validate_dtmi;
use crate::properties::PropertyBag;
use crate::sas::SasToken;
use crate::topics::{DeviceTopic, Direction};
use crate::twin::{desired_patch, state_response, TwinCodec};

/// The largest device-to-cloud message (body plus properties), in bytes.
pub const MAX_TELEMETRY_SIZE: usize = 256 * 1024;

/// An IoT Hub device or module identity with its options: connect parameters with fresh
/// SAS tokens, telemetry with property bags, C2D, direct methods and the twin.
#[derive(Debug, Clone)]
pub struct AzureProvider {
    cs: ConnectionString,
    opts: AzureOptions,
    uri: BrokerUri,
    username: String,
    twin: TwinCodec,
}

impl AzureProvider {
    /// Parses a connection string and uses the default options.
    pub fn from_connection_string(connection_string: &str) -> Result<Self, AzureError> {
        Self::new(connection_string.parse()?, AzureOptions::default())
    }

    /// A provider for `cs` with `opts`, validated once (credential, options, URI).
    pub fn new(cs: ConnectionString, opts: AzureOptions) -> Result<Self, AzureError> {
        let config = |field, reason: &str| AzureError::Config { field, reason: reason.into() };
        if cs.is_x509() && opts.x509.is_none() {
            return Err(config(
                "x509",
                "the connection string says x509=true but no X.509 identity was given",
            ));
        }
        if opts.sas_ttl.as_secs() == 0 {
            return Err(config("sas_ttl", "must be at least one second"));
        }
        if opts.keep_alive.as_secs() == 0 || opts.keep_alive > MAX_KEEP_ALIVE {
            return Err(config(
                "keep_alive",
                "must be from 1 to 1177 seconds (the hub allows 1.5 × keep-alive up to 1767 s)",
            ));
        }
        if opts.api_version.is_empty() {
            return Err(config("api_version", "empty"));
        }
        if let Some(model) = &opts.model_id {
            validate_dtmi(model).map_err(|reason| config("model_id", reason))?;
            if opts.api_version.as_str() < MIN_PNP_API_VERSION {
                return Err(config("api_version", "model-id needs api-version 2020-09-30 or later"));
            }
        }
        let host = cs.gateway_host_name().unwrap_or(cs.host_name());
        let uri: BrokerUri =
            opts.transport.uri(host, opts.port).parse().map_err(|e: connector_core::ConfigError| {
                AzureError::Config { field: "uri", reason: e.to_string() }
            })?;
        let username = username(&cs, &opts);
        let provider = Self { cs, opts, uri, username, twin: TwinCodec };
        provider
            .skeleton()
            .validate()
            .map_err(|e| AzureError::Config { field: "connect", reason: e.to_string() })?;
        Ok(provider)
    }

    /// The connection string.
    pub fn connection_string(&self) -> &ConnectionString {
        &self.cs
    }

    /// The options.
    pub fn options(&self) -> &AzureOptions {
        &self.opts
    }

    /// Where the connection goes: `GatewayHostName` if set, else `HostName`.
    pub fn broker_uri(&self) -> &BrokerUri {
        &self.uri
    }

    /// The MQTT client id: `{device}` or `{device}/{module}`.
    pub fn client_id(&self) -> String {
        client_id(&self.cs)
    }

    /// The MQTT user name: `{HostName}/{device}[/{module}]/?api-version=…[&DeviceClientType=…][&model-id=…]`.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The telemetry topic with the bag of `publish`.
    pub fn telemetry(&self, publish: &Publish) -> Result<DeviceTopic, ProviderError> {
        let properties = PropertyBag::from_publish(publish)
            .map_err(|e| ProviderError::Unsupported { what: e.to_string() })?;
        Ok(DeviceTopic::Telemetry {
            device_id: self.cs.device_id().to_owned(),
            module_id: self.cs.module_id().map(str::to_owned),
            properties,
        })
    }

    /// The topics this identity subscribes to (see [`Provider::subscriptions`]).
    pub fn subscription_topics(&self) -> Vec<DeviceTopic> {
        subscription_topics(&self.cs)
    }

    fn skeleton(&self) -> ConnectParams {
        let mut p = ConnectParams::new(self.uri.clone(), self.client_id());
        p.username = Some(self.username.clone());
        let mut tls = TlsOptions {
            ca: self.opts.trust_roots.clone(),
            ciphers: self.opts.ciphers.clone(),
            ..TlsOptions::default()
        };
        if let Some(id) = &self.opts.x509 {
            id.apply(&mut tls);
        }
        p.tls = Some(tls);
        p.keep_alive = self.opts.keep_alive;
        p.clean_session = false;
        p.connect_timeout = self.opts.connect_timeout;
        p.http_proxy = self.opts.http_proxy.clone();
        p
    }

    fn credentials(&self, now: SystemTime) -> Result<(Option<Secret>, Option<SystemTime>), ProviderError> {
        let creds = |e: crate::SasError| ProviderError::Credentials { reason: e.to_string() };
        let ttl = self.opts.sas_ttl;
        Ok(match self.cs.credential() {
            Credential::DeviceKey(key) => {
                let t = SasToken::generate_with_ttl(key, &self.cs.resource_uri(), now, ttl, None)
                    .map_err(creds)?;
                (Some(t.as_secret().clone()), Some(t.expires_at()))
            }
            Credential::PolicyKey { name, key } => {
                let t = SasToken::generate_with_ttl(key, &self.cs.resource_uri(), now, ttl, Some(name))
                    .map_err(creds)?;
                (Some(t.as_secret().clone()), Some(t.expires_at()))
            }
            Credential::Signature(t) if t.is_expired(now) => {
                return Err(ProviderError::Credentials {
                    reason: format!(
                        "the connection string's SharedAccessSignature expired (se={}) and cannot be renewed",
                        t.expiry_unix()
                    ),
                })
            }
            Credential::Signature(t) => (Some(t.as_secret().clone()), Some(t.expires_at())),
            Credential::X509 => (None, None),
        })
    }

    fn packet(&self, topic: String, publish: &Publish) -> Result<OutboundPacket, ProviderError> {
        check_topic(&topic, &self.limits())?;
        Ok(OutboundPacket {
            topic,
            payload: publish.payload().clone(),
            qos: publish.get_qos(),
            retain: publish.is_retain(),
            properties: WireProperties::default(),
        })
    }

    fn classify_topic(&self, message: InboundMessage, topic: DeviceTopic) -> Inbound {
        let malformed = |m: InboundMessage, reason: String| Inbound::Malformed { topic: m.topic, reason };
        let own = |d: &str| d == self.cs.device_id();
        match topic {
            DeviceTopic::C2d { device_id, properties } if own(&device_id) => {
                Inbound::C2d(c2d_message(message.topic, message.payload, properties, None))
            }
            DeviceTopic::Input { device_id, module_id, input, properties }
                if own(&device_id) && self.cs.module_id() == Some(module_id.as_str()) =>
            {
                Inbound::C2d(c2d_message(message.topic, message.payload, properties, Some(input)))
            }
            DeviceTopic::C2d { .. } | DeviceTopic::Input { .. } => {
                malformed(message, format!("addressed to another identity than {}", self.client_id()))
            }
            DeviceTopic::MethodRequest { name, request_id } => {
                Inbound::MethodRequest(methods::method_request(name, request_id, message.payload))
            }
            DeviceTopic::TwinResponse { status, request_id, version } => {
                Inbound::StateResponse(state_response(status, request_id, version, message.payload))
            }
            DeviceTopic::TwinDesiredPatch { version } => {
                Inbound::DesiredPatch(desired_patch(version, message.payload))
            }
            other => {
                let reason = match other.direction() {
                    Direction::Filter => "a subscription filter, not a topic name",
                    _ => "a device-to-hub topic, not expected inbound",
                };
                malformed(message, reason.into())
            }
        }
    }
}

/// The MQTT client id of an identity: `{device}` or `{device}/{module}`.
pub fn client_id(cs: &ConnectionString) -> String {
    match cs.module_id() {
        Some(m) => format!("{}/{m}", cs.device_id()),
        None => cs.device_id().to_owned(),
    }
}

/// The topics an identity subscribes to: C2D for devices, module inputs for modules behind
/// a gateway (IoT Edge delivers them; the cloud hub has no C2D for modules), then direct
/// methods, twin responses and desired-property changes.
pub fn subscription_topics(cs: &ConnectionString) -> Vec<DeviceTopic> {
    let device_id = cs.device_id().to_owned();
    let mut topics = Vec::with_capacity(4);
    match (cs.module_id(), cs.gateway_host_name()) {
        (None, _) => topics.push(DeviceTopic::C2dFilter { device_id }),
        (Some(m), Some(_)) => topics.push(DeviceTopic::InputsFilter { device_id, module_id: m.to_owned() }),
        (Some(_), None) => {}
    }
    topics.extend([
        DeviceTopic::MethodsFilter,
        DeviceTopic::TwinResponsesFilter,
        DeviceTopic::TwinDesiredFilter,
    ]);
    topics
}

/// The MQTT user name of an identity with its options:
/// `{HostName}/{device}[/{module}]/?api-version=…[&DeviceClientType=…][&model-id=…]`, the
/// query values percent-encoded, host and ids literal.
pub fn username(cs: &ConnectionString, opts: &AzureOptions) -> String {
    let mut u = format!("{}/{}/", cs.host_name(), cs.device_id());
    if let Some(m) = cs.module_id() {
        u.push_str(m);
        u.push('/');
    }
    u.push_str("?api-version=");
    u.push_str(&percent_encode(&opts.api_version));
    if let Some(p) = &opts.product_info {
        u.push_str("&DeviceClientType=");
        u.push_str(&percent_encode(p));
    }
    if let Some(m) = &opts.model_id {
        u.push_str("&model-id=");
        u.push_str(&percent_encode(m));
    }
    u
}

impl Provider for AzureProvider {
    fn name(&self) -> &'static str {
        "azure"
    }

    /// A fresh SAS token valid until `now + sas_ttl` (renewed by reconnecting before
    /// `credentials_expire`), a given `SharedAccessSignature` as is (it cannot be renewed:
    /// refused once expired), or no password with X.509. Clean session is off, TLS always on.
    fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError> {
        let mut p = self.skeleton();
        let (password, expires) = self.credentials(now)?;
        p.password = password;
        p.credentials_expire = expires;
        Ok(p)
    }

    fn telemetry_topic(&self, publish: &Publish) -> Result<String, ProviderError> {
        self.telemetry(publish)?.assemble().map_err(|e| ProviderError::Unsupported { what: e.to_string() })
    }

    /// Telemetry gets the property-bag topic; the 256 KB limit (body plus properties) is
    /// checked here. An explicit topic must be one the hub accepts from this identity and
    /// carries no properties. MQTT 5 user properties and message expiry are refused.
    fn encode_publish(&self, publish: &Publish) -> Result<OutboundPacket, ProviderError> {
        if !publish.user_properties().is_empty() {
            return Err(ProviderError::Unsupported {
                what: "MQTT 5 user properties on IoT Hub (MQTT 3.1.1); use Publish::property for the property bag".into(),
            });
        }
        if publish.get_message_expiry().is_some() {
            return Err(ProviderError::Unsupported {
                what: "a relative message expiry on IoT Hub; set the `$.exp` property to an absolute ISO 8601 time".into(),
            });
        }
        match publish.target() {
            Target::Telemetry => {
                let topic = self.telemetry(publish)?;
                let DeviceTopic::Telemetry { properties, .. } = &topic else {
                    return Err(ProviderError::Unsupported { what: "telemetry topic".into() });
                };
                let size = publish.payload().len() + properties.accounted_size();
                if size > MAX_TELEMETRY_SIZE {
                    return Err(ProviderError::PayloadTooLarge { size, limit: MAX_TELEMETRY_SIZE });
                }
                let text =
                    topic.assemble().map_err(|e| ProviderError::Unsupported { what: e.to_string() })?;
                self.packet(text, publish)
            }
            Target::Topic(t) => {
                if publish.has_properties() {
                    return Err(ProviderError::Unsupported {
                        what: "properties on an explicit topic; send them as telemetry".into(),
                    });
                }
                let refused =
                    || ProviderError::Unsupported { what: format!("publishing to `{t}` on IoT Hub") };
                let limit = match DeviceTopic::parse(t).map_err(|_| refused())? {
                    DeviceTopic::Telemetry { device_id, module_id, properties }
                        if device_id == self.cs.device_id()
                            && module_id.as_deref() == self.cs.module_id() =>
                    {
                        MAX_TELEMETRY_SIZE.saturating_sub(properties.accounted_size())
                    }
                    DeviceTopic::MethodResponse { .. } => MAX_METHOD_PAYLOAD,
                    DeviceTopic::TwinGet { .. } | DeviceTopic::TwinPatchReported { .. } => MAX_TELEMETRY_SIZE,
                    _ => return Err(refused()),
                };
                if publish.payload().len() > limit {
                    return Err(ProviderError::PayloadTooLarge { size: publish.payload().len(), limit });
                }
                self.packet(t.clone(), publish)
            }
            #[allow(unreachable_patterns)]
            _ => Err(ProviderError::Unsupported { what: "publish target".into() }),
        }
    }

    /// C2D (devices) or module inputs (modules behind a gateway) at QoS 1, direct methods
    /// at QoS 0, twin responses and desired changes at QoS 1: at most four of the hub's five.
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        self.subscription_topics()
            .into_iter()
            .filter_map(|t| {
                let qos = if t == DeviceTopic::MethodsFilter { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                t.assemble().ok().map(|filter| SubscriptionSpec { filter, qos })
            })
            .collect()
    }

    /// Every hub topic to its [`Inbound`] variant; a `$iothub/…` or `devices/…` topic
    /// that does not parse becomes [`Inbound::Malformed`] with the reason.
    fn classify(&self, message: InboundMessage) -> Inbound {
        match DeviceTopic::parse(&message.topic) {
            Ok(topic) => self.classify_topic(message, topic),
            Err(TopicParseError::Unknown)
                if !message.topic.starts_with("$iothub/") && !message.topic.starts_with("devices/") =>
            {
                Inbound::Message(message)
            }
            Err(e) => {
                let reason = match std::error::Error::source(&e) {
                    Some(s) => format!("{e}: {s}"),
                    None => e.to_string(),
                };
                Inbound::Malformed { topic: message.topic, reason }
            }
        }
    }

    fn limits(&self) -> Limits {
        Limits { max_payload: MAX_TELEMETRY_SIZE, ..Limits::default() }
    }

    fn method_response(
        &self,
        request_id: &str,
        status: u16,
        payload: Bytes,
    ) -> Result<OutboundPacket, ProviderError> {
        methods::response_packet(request_id, status, payload)
    }

    fn state(&self) -> Option<&dyn StateCodec> {
        Some(&self.twin)
    }
}

#[cfg(test)]
mod tests;
