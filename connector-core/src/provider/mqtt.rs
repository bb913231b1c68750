//! A provider for plain MQTT brokers: user topics, user name and password, TLS.

use std::time::{Duration, SystemTime};

use crate::error::{ConfigError, ProviderError};
use crate::model::{OutboundPacket, Publish};
use crate::secret::Secret;
use crate::topic::validate_topic_name;

use super::{BrokerUri, ConnectParams, Limits, MqttVersion, Provider, TlsOptions};

/// Options of the plain MQTT provider.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// Broker URI (`tcp://`, `mqtts://`, `ws://`, `wss://`).
    pub uri: String,
    /// Client id.
    pub client_id: String,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// TLS settings (required for `mqtts://` and `wss://`).
    pub tls: Option<TlsOptions>,
    /// Protocol version.
    pub mqtt_version: MqttVersion,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Clean session; `false` asks the broker to keep subscriptions and queued messages.
    pub clean_session: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// The topic that [`Publish::telemetry`] messages go to.
    pub telemetry_topic: String,
    /// Limits to enforce before sending.
    pub limits: Limits,
    /// Outbound MQTT 5 topic aliases (off by default).
    pub topic_aliasing: crate::topic_alias::TopicAliasing,
}

impl MqttOptions {
    /// Options with defaults: MQTT 3.1.1, keep-alive 60 s, clean session, telemetry to
    /// `devices/<client_id>/telemetry`.
    pub fn new(uri: impl Into<String>, client_id: impl Into<String>) -> Self {
        let client_id = client_id.into();
        Self {
            uri: uri.into(),
            telemetry_topic: format!("devices/{client_id}/telemetry"),
            client_id,
            username: None,
            password: None,
            tls: None,
            mqtt_version: MqttVersion::V311,
            keep_alive: Duration::from_secs(60),
            clean_session: true,
            connect_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            topic_aliasing: crate::topic_alias::TopicAliasing::Disabled,
        }
    }

    /// Sets user name and password.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Secret>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Sets TLS options.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets clean session.
    pub fn clean_session(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }

    /// Sets the keep-alive interval.
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }

    /// Sets the protocol version.
    pub fn mqtt_version(mut self, v: MqttVersion) -> Self {
        self.mqtt_version = v;
        self
    }

    /// Sets outbound topic aliasing (MQTT 5 only).
    pub fn topic_aliasing(mut self, aliasing: crate::topic_alias::TopicAliasing) -> Self {
        self.topic_aliasing = aliasing;
        self
    }
}

/// The plain MQTT provider.
#[derive(Debug, Clone)]
pub struct MqttProvider {
    opts: MqttOptions,
    uri: BrokerUri,
}

impl MqttProvider {
    /// Validates the options (URI, telemetry topic, TLS consistency) once.
    pub fn new(opts: MqttOptions) -> Result<Self, ConfigError> {
        let uri: BrokerUri = opts.uri.parse()?;
        validate_topic_name(&opts.telemetry_topic)
            .map_err(|e| ConfigError::Invalid { field: "telemetry_topic", reason: e.to_string() })?;
        let provider = Self { uri, opts };
        provider.params().validate()?;
        Ok(provider)
    }

    /// The options.
    pub fn options(&self) -> &MqttOptions {
        &self.opts
    }

    fn params(&self) -> ConnectParams {
        let o = &self.opts;
        let mut p = ConnectParams::new(self.uri.clone(), o.client_id.clone());
        p.username = o.username.clone();
        p.password = o.password.clone();
        p.tls = o.tls.clone();
        p.mqtt_version = o.mqtt_version;
        p.keep_alive = o.keep_alive;
        p.clean_session = o.clean_session;
        p.connect_timeout = o.connect_timeout;
        p.topic_aliasing = o.topic_aliasing;
        p
    }
}

impl Provider for MqttProvider {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn connect_params(&self, _now: SystemTime) -> Result<ConnectParams, ProviderError> {
        Ok(self.params())
    }

    fn telemetry_topic(&self, _publish: &Publish) -> Result<String, ProviderError> {
        Ok(self.opts.telemetry_topic.clone())
    }

    fn encode_owned(&self, publish: Publish) -> Result<OutboundPacket, ProviderError> {
        if publish.has_properties() {
            return self.encode_publish(&publish);
        }
        let (target, payload, qos, retain) = publish.into_parts();
        let topic = match target {
            crate::model::Target::Topic(t) => t,
            _ => self.opts.telemetry_topic.clone(),
        };
        let limits = &self.opts.limits;
        super::check_topic(&topic, limits)?;
        if payload.len() > limits.max_payload {
            return Err(ProviderError::PayloadTooLarge { size: payload.len(), limit: limits.max_payload });
        }
        Ok(OutboundPacket { topic, payload, qos, retain, properties: Default::default() })
    }

    fn mqtt_version(&self) -> MqttVersion {
        self.opts.mqtt_version
    }

    fn limits(&self) -> Limits {
        self.opts.limits.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Target;

    #[test]
    fn telemetry_goes_to_the_configured_topic() {
        let p = MqttProvider::new(MqttOptions::new("tcp://127.0.0.1:1883", "dev-1")).unwrap();
        let w = p.encode_publish(&Publish::telemetry(&b"{}"[..])).unwrap();
        assert_eq!(w.topic, "devices/dev-1/telemetry");
        let w = p.encode_publish(&Publish::to_topic("x/y", &b"{}"[..])).unwrap();
        assert_eq!(w.topic, "x/y");
        assert!(matches!(Publish::to_topic("x", &b""[..]).target(), Target::Topic(_)));
    }

    #[test]
    fn owned_and_borrowed_encodings_agree() {
        let p = MqttProvider::new(MqttOptions::new("tcp://h", "d")).unwrap();
        for publish in [
            Publish::to_topic("a/b", &b"x"[..]).retain(true),
            Publish::telemetry(&b"y"[..]).qos(crate::QoS::AtMostOnce),
            Publish::to_topic("a/+", &b"x"[..]),
        ] {
            assert_eq!(p.encode_owned(publish.clone()), p.encode_publish(&publish));
        }
    }

    #[test]
    fn bad_options_are_refused_up_front() {
        assert!(MqttProvider::new(MqttOptions::new("localhost", "c")).is_err());
        assert!(MqttProvider::new(MqttOptions::new("mqtts://h", "c")).is_err(), "TLS without options");
        let mut o = MqttOptions::new("tcp://h", "c");
        o.telemetry_topic = "a/#".into();
        assert!(matches!(MqttProvider::new(o), Err(ConfigError::Invalid { field: "telemetry_topic", .. })));
    }

    #[test]
    fn connect_params_carry_credentials_without_leaking_them() {
        let p = MqttProvider::new(MqttOptions::new("tcp://h", "c").credentials("u", "s3cr3t")).unwrap();
        let params = p.connect_params(SystemTime::now()).unwrap();
        assert_eq!(params.password.as_ref().map(Secret::expose), Some("s3cr3t"));
        assert!(!format!("{params:?} {p:?}").contains("s3cr3t"));
    }
}
