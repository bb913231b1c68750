//! Options of [`AwsProvider`](crate::AwsProvider) and the authentication choice.

use std::fmt;
use std::time::Duration;

use connector_core::provider::redact_userinfo;
use connector_core::{MqttVersion, PemSource, TopicAliasing};

use crate::credentials::{AwsCredentials, CredentialsSource};
use crate::custom_auth::CustomAuth;
use crate::limits::DEFAULT_PUBLISH_RATE;
use crate::sigv4::SignedHeaders;
use crate::x509::X509Credentials;

/// The default telemetry topic: `dt/{thing}/telemetry` (the `dt/` "data telemetry" prefix
/// of AWS's MQTT topic design guidance; any non-reserved topic works).
pub const DEFAULT_TELEMETRY_TOPIC: &str = "dt/{thing}/telemetry";

/// How the device authenticates, which also fixes the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AwsAuth {
    /// X.509 mutual TLS, MQTT over TLS on 8883.
    Certificate(X509Credentials),
    /// X.509 mutual TLS on 443 with ALPN `x-amzn-mqtt-ca` (for networks that only open 443).
    CertificateAlpn(X509Credentials),
    /// MQTT over WebSocket (`wss://{host}/mqtt`) with a SigV4 presigned URL, re-signed for
    /// every connect attempt.
    SigV4(SigV4Auth),
    /// A custom authorizer: ALPN `mqtt` on 443, or WebSocket headers.
    CustomAuthorizer(CustomAuth),
}

/// SigV4 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Auth {
    /// Where the credentials come from (read once, when the provider is built).
    pub credentials: CredentialsSource,
    /// The region of the credential scope; `None` takes it from the endpoint
    /// (`*.iot.{region}.amazonaws.com`).
    pub region: Option<String>,
    /// `X-Amz-Expires` of each URL (it only has to last until the upgrade); `None` omits it.
    pub expires: Option<Duration>,
    /// The headers signed (`host`, or `connection;host` like the AWS CRT).
    pub signed_headers: SignedHeaders,
}

impl SigV4Auth {
    /// `credentials` with the region from the endpoint, 5-minute URLs, `host` signed.
    pub fn new(credentials: CredentialsSource) -> Self {
        Self {
            credentials,
            region: None,
            expires: Some(Duration::from_secs(300)),
            signed_headers: SignedHeaders::Host,
        }
    }
    /// Explicit credentials.
    pub fn explicit(credentials: AwsCredentials) -> Self {
        Self::new(CredentialsSource::Explicit(credentials))
    }
    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
}

/// Options of [`AwsProvider`](crate::AwsProvider). [`AwsOptions::new`] gives MQTT 3.1.1,
/// the auth's standard port, system trust roots, a 60 s keep-alive (the SDK v2's 1200 s
/// relies on a ping timeout paho cannot set; see `docs/adr/007`), clean sessions, a 10 s
/// connect timeout, 100 publishes per second and [`DEFAULT_TELEMETRY_TOPIC`].
/// `Debug` shows no secret (nor the password of a proxy URL).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsOptions {
    /// The device data endpoint host (`{prefix}-ats.iot.{region}.amazonaws.com`).
    pub endpoint: String,
    /// Overrides the auth's port (8883 for [`AwsAuth::Certificate`], else 443).
    pub port: Option<u16>,
    /// The thing name (shadow and jobs topics).
    pub thing_name: String,
    /// The MQTT client id; `None` uses the thing name.
    pub client_id: Option<String>,
    /// Authentication and transport.
    pub auth: AwsAuth,
    /// Trust roots (PEM, e.g. AmazonRootCA1); `None` uses the system's.
    pub trust_roots: Option<PemSource>,
    /// MQTT 3.1.1 or 5.
    pub mqtt_version: MqttVersion,
    /// MQTT keep-alive, 30–1200 s (the service's range).
    pub keep_alive: Duration,
    /// Clean session (3.1.1) / clean start (5). A persistent session needs the IoT policy
    /// to allow it and lasts one hour by default on the service side.
    pub clean_session: bool,
    /// TCP + TLS (+ WebSocket upgrade) + CONNACK time limit.
    pub connect_timeout: Duration,
    /// Proxy: `http://[user:password@]host:port` (HTTP CONNECT, basic authentication) or
    /// `socks5://[user:password@]host:port` (SOCKS5, RFC 1929 authentication; the native
    /// transport only — paho refuses it with a typed connect failure). Redacted in `Debug`.
    pub http_proxy: Option<String>,
    /// PUBLISHes per second on one connection (the service allows 100); reported as
    /// [`Limits::max_publish_rate`](connector_core::Limits::max_publish_rate) and paced by
    /// the Publisher.
    pub publish_rate: u32,
    /// The telemetry topic template: `{thing}` and `{client_id}` are replaced.
    pub telemetry_topic: String,
    /// OpenSSL cipher list; `None` keeps OpenSSL's defaults.
    pub ciphers: Option<String>,
    /// Outbound MQTT 5 topic aliases (off by default, as in the AWS IoT Device SDK v2).
    /// The service allows 8 per connection.
    pub topic_aliasing: TopicAliasing,
}

impl fmt::Debug for AwsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsOptions")
            .field("endpoint", &self.endpoint)
            .field("port", &self.port)
            .field("thing_name", &self.thing_name)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("trust_roots", &self.trust_roots)
            .field("mqtt_version", &self.mqtt_version)
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("connect_timeout", &self.connect_timeout)
            .field("http_proxy", &self.http_proxy.as_deref().map(redact_userinfo))
            .field("publish_rate", &self.publish_rate)
            .field("telemetry_topic", &self.telemetry_topic)
            .field("ciphers", &self.ciphers)
            .field("topic_aliasing", &self.topic_aliasing)
            .finish()
    }
}

impl AwsOptions {
    /// Options for `thing_name` at `endpoint` with `auth`.
    pub fn new(endpoint: impl Into<String>, thing_name: impl Into<String>, auth: AwsAuth) -> Self {
        Self {
            endpoint: endpoint.into(),
            port: None,
            thing_name: thing_name.into(),
            client_id: None,
            auth,
            trust_roots: None,
            mqtt_version: MqttVersion::V311,
            keep_alive: Duration::from_secs(60),
            clean_session: true,
            connect_timeout: Duration::from_secs(10),
            http_proxy: None,
            publish_rate: DEFAULT_PUBLISH_RATE,
            telemetry_topic: DEFAULT_TELEMETRY_TOPIC.to_owned(),
            ciphers: None,
            topic_aliasing: TopicAliasing::Disabled,
        }
    }
    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Sets the client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }
    /// Sets the trust roots.
    pub fn trust_roots(mut self, ca: PemSource) -> Self {
        self.trust_roots = Some(ca);
        self
    }
    /// Sets the MQTT version.
    pub fn mqtt_version(mut self, v: MqttVersion) -> Self {
        self.mqtt_version = v;
        self
    }
    /// Sets outbound topic aliasing (MQTT 5 only): e.g. `TopicAliasing::Lru { max: 8 }`.
    pub fn topic_aliasing(mut self, aliasing: TopicAliasing) -> Self {
        self.topic_aliasing = aliasing;
        self
    }
    /// Sets the keep-alive.
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }
    /// Sets clean session.
    pub fn clean_session(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }
    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets the HTTP proxy.
    pub fn http_proxy(mut self, proxy: impl Into<String>) -> Self {
        self.http_proxy = Some(proxy.into());
        self
    }
    /// Sets the publish rate.
    pub fn publish_rate(mut self, per_second: u32) -> Self {
        self.publish_rate = per_second;
        self
    }
    /// Sets the telemetry topic template.
    pub fn telemetry_topic(mut self, template: impl Into<String>) -> Self {
        self.telemetry_topic = template.into();
        self
    }

    /// The port: the override, else 8883 for [`AwsAuth::Certificate`], else 443.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.auth {
            AwsAuth::Certificate(_) => crate::endpoint::MQTT_TLS_PORT,
            _ => crate::endpoint::HTTPS_PORT,
        })
    }

    /// The client id: the override, else the thing name.
    pub fn effective_client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or(&self.thing_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password_of_a_proxy_url() {
        let auth = AwsAuth::CustomAuthorizer(CustomAuth::default());
        let o = AwsOptions::new("h", "lamp", auth).http_proxy("http://proxy-user:pr0xy-pw@proxy:3128");
        let shown = format!("{o:?}");
        assert!(!shown.contains("pr0xy-pw") && !shown.contains("proxy-user"), "{shown}");
        assert!(shown.contains(r#"http_proxy: Some("http://<redacted>@proxy:3128")"#), "{shown}");
        assert_eq!(redact_userinfo("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(redact_userinfo("http://u:p@w@proxy:3128/x@y"), "http://<redacted>@proxy:3128/x@y");
    }

    #[test]
    fn defaults_and_ports() {
        let cert = X509Credentials::from_files("c.pem", "k.pem");
        let o = AwsOptions::new("h", "lamp", AwsAuth::Certificate(cert.clone()));
        assert_eq!((o.effective_port(), o.effective_client_id(), o.publish_rate), (8883, "lamp", 100));
        assert_eq!(o.telemetry_topic, "dt/{thing}/telemetry");
        let o = AwsOptions::new("h", "lamp", AwsAuth::CertificateAlpn(cert)).client_id("c-1");
        assert_eq!((o.effective_port(), o.effective_client_id()), (443, "c-1"));
        let o = AwsOptions::new("h", "lamp", AwsAuth::CustomAuthorizer(CustomAuth::default())).port(9443);
        assert_eq!(o.effective_port(), 9443);
    }
}
