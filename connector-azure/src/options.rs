//! Options of the IoT Hub provider and the DPS codec, with the transport choice.

use connector_core::provider::redact_userinfo;
use std::time::Duration;

use connector_core::PemSource;

use crate::x509::X509Identity;

/// The api-version sent in the CONNECT user name: the one the IoT Hub MQTT docs use (and
/// recommend always sending); Plug and Play needs at least `2020-09-30`.
pub const DEFAULT_API_VERSION: &str = "2021-04-12";

/// The oldest api-version that accepts `model-id`.
pub const MIN_PNP_API_VERSION: &str = "2020-09-30";

/// The largest useful keep-alive: the hub times out at 1.5 × keep-alive, capped at 1767 s.
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(1177);

/// How the MQTT connection is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over TLS, port 8883.
    #[default]
    Mqtt,
    /// MQTT over secure WebSocket, port 443, path `/$iothub/websocket`.
    WebSocket,
}

impl Transport {
    /// The service's port for this transport.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Mqtt => 8883,
            Transport::WebSocket => 443,
        }
    }

    /// The broker URI for `host` (and `port`, or the default).
    pub fn uri(self, host: &str, port: Option<u16>) -> String {
        let port = port.unwrap_or(self.default_port());
        match self {
            Transport::Mqtt => format!("mqtts://{host}:{port}"),
            Transport::WebSocket => format!("wss://{host}:{port}/$iothub/websocket"),
        }
    }
}

/// Options of [`AzureProvider`](crate::AzureProvider). `Default` gives MQTT over TLS on
/// 8883, system trust roots, one-hour SAS tokens, api-version [`DEFAULT_API_VERSION`], a
/// 60 s keep-alive (the Python SDK's; the C SDK's 240 s leaves an idle dead link unnoticed
/// for up to six minutes) and a 10 s connect timeout (see `docs/adr/007`).
#[derive(Clone, PartialEq, Eq)]
pub struct AzureOptions {
    /// Lifetime of each generated SAS token; a fresh one is made for every connect and the
    /// connection renews before it ends.
    pub sas_ttl: Duration,
    /// `api-version` of the user name.
    pub api_version: String,
    /// IoT Plug and Play model id (DTMI), announced as `model-id` in the user name.
    pub model_id: Option<String>,
    /// Product string sent as `DeviceClientType` (e.g. `my-agent/1.2.0`).
    pub product_info: Option<String>,
    /// MQTT over TLS or over WebSocket.
    pub transport: Transport,
    /// Overrides the transport's port (emulators, gateways on other ports).
    pub port: Option<u16>,
    /// MQTT keep-alive, 1 to 1177 s.
    pub keep_alive: Duration,
    /// TCP + TLS + CONNACK time limit.
    pub connect_timeout: Duration,
    /// Trust roots (PEM); `None` uses the system's.
    pub trust_roots: Option<PemSource>,
    /// OpenSSL cipher list; `None` keeps OpenSSL's defaults.
    pub ciphers: Option<String>,
    /// The client certificate for `x509=true` connection strings.
    pub x509: Option<X509Identity>,
    /// Proxy for MQTT over TLS and over WebSocket: `http://[user:password@]host:port`
    /// (HTTP CONNECT) or `socks5://[user:password@]host:port` (SOCKS5; the native transport
    /// only — paho refuses it with a typed connect failure). Redacted in `Debug`.
    pub http_proxy: Option<String>,
}

/// A proxy URL's credentials (`user:password@`) are never shown.
impl std::fmt::Debug for AzureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureOptions")
            .field("sas_ttl", &self.sas_ttl)
            .field("api_version", &self.api_version)
            .field("model_id", &self.model_id)
            .field("product_info", &self.product_info)
            .field("transport", &self.transport)
            .field("port", &self.port)
            .field("keep_alive", &self.keep_alive)
            .field("connect_timeout", &self.connect_timeout)
            .field("trust_roots", &self.trust_roots)
            .field("ciphers", &self.ciphers)
            .field("x509", &self.x509)
            .field("http_proxy", &self.http_proxy.as_deref().map(redact_userinfo))
            .finish()
    }
}

impl Default for AzureOptions {
    fn default() -> Self {
        Self {
            sas_ttl: Duration::from_secs(3600),
            api_version: DEFAULT_API_VERSION.to_owned(),
            model_id: None,
            product_info: None,
            transport: Transport::Mqtt,
            port: None,
            keep_alive: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            trust_roots: None,
            ciphers: None,
            x509: None,
            http_proxy: None,
        }
    }
}

impl AzureOptions {
    /// Sets the SAS token lifetime.
    pub fn sas_ttl(mut self, ttl: Duration) -> Self {
        self.sas_ttl = ttl;
        self
    }
    /// Announces a Plug and Play model.
    pub fn model_id(mut self, dtmi: impl Into<String>) -> Self {
        self.model_id = Some(dtmi.into());
        self
    }
    /// Sets the transport.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }
    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Sets the trust roots.
    pub fn trust_roots(mut self, ca: PemSource) -> Self {
        self.trust_roots = Some(ca);
        self
    }
    /// Sets the X.509 client identity.
    pub fn x509(mut self, identity: X509Identity) -> Self {
        self.x509 = Some(identity);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_uris() {
        let o = AzureOptions::default();
        assert_eq!(
            (o.sas_ttl.as_secs(), o.api_version.as_str(), o.transport),
            (3600, "2021-04-12", Transport::Mqtt)
        );
        assert_eq!(Transport::Mqtt.uri("h", None), "mqtts://h:8883");
        assert_eq!(Transport::WebSocket.uri("h", None), "wss://h:443/$iothub/websocket");
        assert_eq!(Transport::Mqtt.uri("127.0.0.1", Some(1234)), "mqtts://127.0.0.1:1234");
    }

    #[test]
    fn debug_hides_the_credentials_of_a_proxy_url() {
        let o = AzureOptions {
            http_proxy: Some("http://me:s3cret@proxy:3128".into()),
            ..AzureOptions::default()
        };
        let d = crate::dps::DpsOptions { http_proxy: o.http_proxy.clone(), ..Default::default() };
        for shown in [format!("{o:?}"), format!("{d:?}")] {
            assert!(!shown.contains("s3cret") && shown.contains("<redacted>@proxy:3128"), "{shown}");
        }
    }
}
