//! [`AwsProvider`]: AWS IoT Core behind the provider-neutral [`Provider`] trait.

use std::path::Path;
use std::time::{Duration, SystemTime};

use connector_core::provider::{encode_with_mqtt5_properties, JobsCodec, StateCodec};
use connector_core::{
    BrokerUri, ConnectParams, Inbound, InboundMessage, Limits, MqttVersion, OutboundPacket, Provider,
    ProviderError, Publish, Target, TlsOptions, TopicAliasing,
};

use crate::credentials::AwsCredentials;
use crate::custom_auth::{CustomAuth, CustomAuthTransport};
use crate::endpoint::{region_of, validate_host, ALPN_MQTT, ALPN_MQTT_CA, WS_PATH};
use crate::error::AwsError;
use crate::jobs::AwsJobsCodec;
use crate::limits::{
    check_publish_topic, check_topic_shape, validate_client_id, validate_thing_name, KEEP_ALIVE_RANGE_SECS,
    MAX_FILTERS_PER_SUBSCRIBE, MAX_PAYLOAD, MAX_TOPIC_LEN, MAX_TOPIC_LEVELS,
};
use crate::options::{AwsAuth, AwsOptions};
use crate::shadow::ShadowCodec;
use crate::sigv4::{presign, Presign, SignedHeaders};
use crate::topics::{AwsTopic, Direction};
use crate::x509::{ClientCertificate, X509Credentials};

/// How long AWS IoT keeps a SigV4 WebSocket connection open: the connection reconnects
/// with a fresh signature before that.
pub const SIGV4_CONNECTION_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The authentication, with its files and credentials read.
#[derive(Debug, Clone)]
enum Resolved {
    Certificate {
        cert: ClientCertificate,
        alpn: bool,
    },
    SigV4 {
        credentials: AwsCredentials,
        region: String,
        expires: Option<Duration>,
        signed_headers: SignedHeaders,
    },
    Custom(CustomAuth),
}

/// A thing on AWS IoT Core: connect parameters for the four ways in (X.509 on 8883 or
/// 443/ALPN, SigV4 WebSocket re-signed on every attempt, custom authorizers), telemetry
/// within the service's limits, the Device Shadow as [`StateCodec`] and Jobs as
/// [`JobsCodec`]. Files and credentials are read once, in the constructor; `Debug` never
/// shows a secret.
#[derive(Debug, Clone)]
pub struct AwsProvider {
    opts: AwsOptions,
    auth: Resolved,
    client_id: String,
    telemetry_topic: String,
    shadow: ShadowCodec,
    jobs: AwsJobsCodec,
}

impl AwsProvider {
    /// X.509 mutual TLS on 8883 with a certificate and key from PEM files (system trust
    /// roots; set [`AwsOptions::trust_roots`] through [`AwsProvider::new`] otherwise).
    pub fn from_pem_files(
        endpoint: &str,
        thing: &str,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, AwsError> {
        Self::new(AwsOptions::new(
            endpoint,
            thing,
            AwsAuth::Certificate(X509Credentials::from_files(cert, key)),
        ))
    }

    /// A provider with `opts`, validated once: names and limits, the telemetry template,
    /// and the auth's material (the certificate and key are read, decrypted and checked
    /// at the current time; SigV4 credentials are resolved from their source).
    pub fn new(opts: AwsOptions) -> Result<Self, AwsError> {
        Self::new_at(opts, SystemTime::now())
    }

    /// [`AwsProvider::new`] checking certificate validity at `now`.
    pub fn new_at(opts: AwsOptions, now: SystemTime) -> Result<Self, AwsError> {
        validate_host(&opts.endpoint).map_err(|r| AwsError::config("endpoint", r))?;
        validate_thing_name(&opts.thing_name).map_err(|r| AwsError::config("thing_name", r))?;
        let client_id = opts.effective_client_id().to_owned();
        validate_client_id(&client_id).map_err(|r| AwsError::config("client_id", r))?;
        if opts.port == Some(0) {
            return Err(AwsError::config("port", "must be from 1 to 65535"));
        }
        if !KEEP_ALIVE_RANGE_SECS.contains(&opts.keep_alive.as_secs()) || opts.keep_alive.subsec_nanos() != 0
        {
            return Err(AwsError::config(
                "keep_alive",
                "whole seconds from 30 to 1200 (the service's range)",
            ));
        }
        if opts.connect_timeout.is_zero() {
            return Err(AwsError::config("connect_timeout", "must be positive"));
        }
        if opts.publish_rate == 0 {
            return Err(AwsError::config("publish_rate", "at least one publish per second"));
        }
        if opts.mqtt_version == MqttVersion::V311 && opts.topic_aliasing != TopicAliasing::Disabled {
            return Err(AwsError::config("topic_aliasing", "topic aliases need MQTT 5"));
        }
        if let Some(p) = &opts.http_proxy {
            let scheme = p.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            if !matches!(scheme.as_deref(), Some("http" | "socks5" | "socks5h")) {
                return Err(AwsError::config(
                    "http_proxy",
                    "an http://host:port (CONNECT) or socks5://host:port URL",
                ));
            }
        }
        let telemetry_topic = expand_template(&opts.telemetry_topic, &opts.thing_name, &client_id)?;
        let auth = match &opts.auth {
            AwsAuth::Certificate(c) => Resolved::Certificate { cert: c.load(now)?, alpn: false },
            AwsAuth::CertificateAlpn(c) => Resolved::Certificate { cert: c.load(now)?, alpn: true },
            AwsAuth::SigV4(s) => {
                let region = match &s.region {
                    Some(r) => r.clone(),
                    None => region_of(&opts.endpoint).map(str::to_owned).ok_or_else(|| {
                        AwsError::config(
                            "region",
                            "not an *.iot.{region}.amazonaws.com endpoint: give the region",
                        )
                    })?,
                };
                Resolved::SigV4 {
                    credentials: s.credentials.resolve()?,
                    region,
                    expires: s.expires,
                    signed_headers: s.signed_headers,
                }
            }
            AwsAuth::CustomAuthorizer(c) => {
                c.validate()?;
                Resolved::Custom(c.clone())
            }
        };
        let provider = Self {
            shadow: ShadowCodec::new(&opts.thing_name)?,
            jobs: AwsJobsCodec::new(&opts.thing_name)?,
            opts,
            auth,
            client_id,
            telemetry_topic,
        };
        // A first signature proves the SigV4 inputs (region, expiry) before any connect.
        provider
            .connect_params(now)
            .map_err(|e| AwsError::config("auth", e.to_string()))?
            .validate()
            .map_err(|e| AwsError::config("connect", e.to_string()))?;
        Ok(provider)
    }

    /// The options.
    pub fn options(&self) -> &AwsOptions {
        &self.opts
    }

    /// The thing name.
    pub fn thing_name(&self) -> &str {
        &self.opts.thing_name
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The expanded telemetry topic.
    pub fn telemetry_topic_name(&self) -> &str {
        &self.telemetry_topic
    }

    /// The SigV4 region, for SigV4 auth.
    pub fn region(&self) -> Option<&str> {
        match &self.auth {
            Resolved::SigV4 { region, .. } => Some(region),
            _ => None,
        }
    }

    /// The AWS certificate id (SHA-256 of the DER certificate, hex), for X.509 auth.
    pub fn certificate_id(&self) -> Option<&str> {
        match &self.auth {
            Resolved::Certificate { cert, .. } => Some(cert.certificate_id()),
            _ => None,
        }
    }

    /// The shadow codec.
    pub fn shadow(&self) -> &ShadowCodec {
        &self.shadow
    }

    /// The jobs codec.
    pub fn jobs_codec(&self) -> &AwsJobsCodec {
        &self.jobs
    }

    /// [`Provider::encode_publish`] with an MQTT 5 response topic (request/response
    /// patterns); refused on MQTT 3.1.1.
    pub fn encode_request(
        &self,
        publish: &Publish,
        response_topic: &str,
    ) -> Result<OutboundPacket, ProviderError> {
        if self.opts.mqtt_version == MqttVersion::V311 {
            return Err(ProviderError::Unsupported {
                what: "a response topic on MQTT 3.1.1 (use MQTT 5)".into(),
            });
        }
        check_topic_shape(response_topic)?;
        let mut packet = self.encode_publish(publish)?;
        packet.properties.response_topic = Some(response_topic.to_owned());
        Ok(packet)
    }

    fn host_port(&self) -> String {
        let host = &self.opts.endpoint;
        let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        format!("{host}:{}", self.opts.effective_port())
    }

    fn uri(&self, websocket: bool, path: &str) -> Result<BrokerUri, ProviderError> {
        let scheme = if websocket { "wss" } else { "mqtts" };
        format!("{scheme}://{}{path}", self.host_port()).parse::<BrokerUri>().map_err(ProviderError::from)
    }
}

/// Expands `{thing}` and `{client_id}` in a telemetry template and checks the result is a
/// topic the device may publish to.
fn expand_template(template: &str, thing: &str, client_id: &str) -> Result<String, AwsError> {
    let topic = template.replace("{thing}", thing).replace("{client_id}", client_id);
    if topic.contains(['{', '}']) {
        return Err(AwsError::config(
            "telemetry_topic",
            "unknown placeholder (only {thing} and {client_id})",
        ));
    }
    check_publish_topic(&topic).map_err(|e| AwsError::config("telemetry_topic", crate::error::chain(&e)))?;
    Ok(topic)
}

impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    /// X.509: `mqtts://{endpoint}:8883` (or `:443` with ALPN `x-amzn-mqtt-ca`) with the
    /// client certificate. SigV4: `wss://{endpoint}:443/mqtt?…` presigned at `now` over the
    /// `Host` header paho sends (`{endpoint}:{port}`), the session token appended unsigned;
    /// renewed before [`SIGV4_CONNECTION_LIFETIME`]. Custom authorizer: ALPN `mqtt` with
    /// the credentials in the user name and password, or `wss://…/mqtt` with them as
    /// headers. TLS always on, certificate and host name verified.
    fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError> {
        let mut tls = TlsOptions {
            ca: self.opts.trust_roots.clone(),
            ciphers: self.opts.ciphers.clone(),
            ..TlsOptions::default()
        };
        let mut p = match &self.auth {
            Resolved::Certificate { cert, alpn } => {
                cert.apply(&mut tls);
                if *alpn {
                    tls.alpn = vec![ALPN_MQTT_CA.to_owned()];
                }
                ConnectParams::new(self.uri(false, "")?, &self.client_id)
            }
            Resolved::SigV4 { credentials, region, expires, signed_headers } => {
                let host = self.host_port();
                let signed = presign(&Presign {
                    credentials,
                    region,
                    host: &host,
                    time: now,
                    expires: *expires,
                    signed_headers: *signed_headers,
                })
                .map_err(|e| ProviderError::Credentials { reason: format!("SigV4 signing: {e}") })?;
                let mut p =
                    ConnectParams::new(self.uri(true, signed.path_and_query().expose())?, &self.client_id);
                p.credentials_expire = Some(now + SIGV4_CONNECTION_LIFETIME);
                p
            }
            Resolved::Custom(c) => match c.transport {
                CustomAuthTransport::Mqtt => {
                    tls.alpn = vec![ALPN_MQTT.to_owned()];
                    let mut p = ConnectParams::new(self.uri(false, "")?, &self.client_id);
                    p.username = Some(c.mqtt_username().expose().to_owned());
                    p.password = c.password.clone();
                    p
                }
                CustomAuthTransport::WebSocket => {
                    let mut p = ConnectParams::new(self.uri(true, WS_PATH)?, &self.client_id);
                    p.http_headers = c.websocket_headers();
                    p.username = c.username.clone();
                    p.password = c.password.clone();
                    p
                }
            },
        };
        p.tls = Some(tls);
        p.mqtt_version = self.opts.mqtt_version;
        p.keep_alive = self.opts.keep_alive;
        p.clean_session = self.opts.clean_session;
        p.connect_timeout = self.opts.connect_timeout;
        p.http_proxy = self.opts.http_proxy.clone();
        p.topic_aliasing = self.opts.topic_aliasing;
        Ok(p)
    }

    fn telemetry_topic(&self, _publish: &Publish) -> Result<String, ProviderError> {
        Ok(self.telemetry_topic.clone())
    }

    /// Telemetry goes to the template topic, [`Publish::to_topic`] anywhere a device may
    /// publish (no reserved `$` topic but Basic Ingest `$aws/rules/…`; shadow and jobs
    /// requests go through their codecs). Limits: 256-byte topics, 7 slashes, 128 KB
    /// payloads, no retained reserved topics. Properties become MQTT 5 properties (user
    /// properties, content type, message expiry, correlation data) and are refused on
    /// MQTT 3.1.1.
    fn encode_publish(&self, publish: &Publish) -> Result<OutboundPacket, ProviderError> {
        let topic = match publish.target() {
            Target::Telemetry => self.telemetry_topic.clone(),
            Target::Topic(t) => t.clone(),
            #[allow(unreachable_patterns)]
            _ => return Err(ProviderError::Unsupported { what: "publish target".into() }),
        };
        check_publish_topic(&topic)?;
        if publish.is_retain() && topic.starts_with('$') {
            return Err(ProviderError::Unsupported { what: "a retained publish to a reserved topic".into() });
        }
        let size = publish.payload().len();
        if size > MAX_PAYLOAD {
            return Err(ProviderError::PayloadTooLarge { size, limit: MAX_PAYLOAD });
        }
        // Shape and size are checked above with AWS's rules (prefixes not counted).
        let relaxed = Limits { max_payload: MAX_PAYLOAD, ..Limits::default() };
        encode_with_mqtt5_properties(topic, publish, self.opts.mqtt_version, &relaxed)
    }

    fn mqtt_version(&self) -> MqttVersion {
        self.opts.mqtt_version
    }

    /// Shadow responses, deltas and documents of this thing; jobs answers and events;
    /// anything else (user topics, other `$aws/` services such as fleet provisioning,
    /// another thing's topics) as a plain message. A malformed topic under a shadow or
    /// jobs prefix, or an unparsable document, is [`Inbound::Malformed`].
    fn classify(&self, message: InboundMessage) -> Inbound {
        let topic = match AwsTopic::parse(&message.topic) {
            Ok(t) => t,
            Err(crate::TopicParseError::Unknown) => return Inbound::Message(message),
            Err(e) => return Inbound::Malformed { topic: message.topic, reason: e.to_string() },
        };
        if topic.thing() != self.opts.thing_name {
            return Inbound::Message(message);
        }
        if let Some(i) = self.shadow.classify(&topic, &message.topic, &message.payload) {
            return i;
        }
        if let Some(i) = self.jobs.classify(&topic, &message.topic, &message.payload) {
            return i;
        }
        match topic.direction() {
            Direction::Filter => Inbound::Malformed {
                topic: message.topic,
                reason: "a subscription filter, not a topic name".into(),
            },
            _ => Inbound::Message(message),
        }
    }

    /// 128 KB payloads, 256-byte topics of at most 8 levels, 8 filters per SUBSCRIBE, and
    /// the configured publish rate (100/s by default, the service's limit).
    fn limits(&self) -> Limits {
        Limits {
            max_payload: MAX_PAYLOAD,
            max_topic_len: MAX_TOPIC_LEN,
            max_topic_levels: Some(MAX_TOPIC_LEVELS),
            max_publish_rate: Some(self.opts.publish_rate),
            max_filters_per_subscribe: Some(MAX_FILTERS_PER_SUBSCRIBE),
        }
    }

    fn state(&self) -> Option<&dyn StateCodec> {
        Some(&self.shadow)
    }

    fn jobs(&self) -> Option<&dyn JobsCodec> {
        Some(&self.jobs)
    }
}

#[cfg(test)]
mod tests;
