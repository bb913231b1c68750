//! Connect parameters: what a provider hands the transport for one connect attempt.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::error::ConfigError;
use crate::secret::Secret;

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MqttVersion {
    /// MQTT 3.1.1 (what Azure IoT Hub speaks).
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

/// The transport scheme of a broker URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP (`tcp://`, `mqtt://`).
    Mqtt,
    /// TLS (`ssl://`, `mqtts://`).
    Mqtts,
    /// WebSocket (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
}

impl Scheme {
    /// Whether the scheme runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }
    /// Whether the scheme is a WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
    /// The default port.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
}

/// A parsed broker URI: `scheme://host[:port][/path?query]` (a path only for WebSockets).
///
/// ```
/// use connector_core::{BrokerUri, Scheme};
/// let u: BrokerUri = "mqtts://hub.example.net".parse().unwrap();
/// assert_eq!((u.scheme(), u.host(), u.port()), (Scheme::Mqtts, "hub.example.net", 8883));
/// assert!("ftp://x".parse::<BrokerUri>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUri {
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
}

impl BrokerUri {
    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// The host name or address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The path and query (WebSockets only; empty otherwise).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{}://{}:{}{}", self.scheme.as_str(), host, self.port, self.path)
    }
}

/// URIs can carry a presigned query string (SigV4 signatures, tokens): `Debug` shows the
/// path but never the query.
impl fmt::Debug for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match self.path.split_once('?') {
            Some((p, _)) => format!("{p}?<redacted>"),
            None => self.path.clone(),
        };
        write!(f, "BrokerUri({}://{}:{}{})", self.scheme.as_str(), self.host, self.port, path)
    }
}

impl FromStr for BrokerUri {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ConfigError::InvalidUri { uri: redact_query(s), reason };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| err("missing `scheme://`"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "tcp" | "mqtt" => Scheme::Mqtt,
            "ssl" | "mqtts" | "tls" => Scheme::Mqtts,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => return Err(err("unknown scheme (expected tcp, mqtt, ssl, mqtts, ws or wss)")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !path.is_empty() && !matches!(scheme, Scheme::Ws | Scheme::Wss) {
            return Err(err("a path is only allowed for ws:// and wss://"));
        }
        if authority.contains('@') {
            return Err(err("credentials in the URI are not allowed; use the username and password options"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| err("unclosed `[` in IPv6 host"))?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or_else(|| err("junk after IPv6 host"))?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("host contains whitespace or control characters"));
        }
        let bracketed = authority.starts_with('[');
        let valid = if bracketed {
            host.contains(':') && host.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        } else {
            host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        if !valid {
            return Err(err("host is not a DNS name, an IPv4 address or a bracketed IPv6 address"));
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(err("port must be a number from 1 to 65535")),
                Ok(p) => p,
            },
        };
        Ok(BrokerUri { scheme, host: host.to_owned(), port, path: path.to_owned() })
    }
}

/// A URL with its user information (`user:password@` before the host) replaced by
/// `<redacted>`, for `Debug` and logs of proxy URLs that may carry basic-auth credentials.
///
/// ```
/// use connector_core::provider::redact_userinfo;
/// assert_eq!(redact_userinfo("http://u:pw@proxy:3128"), "http://<redacted>@proxy:3128");
/// assert_eq!(redact_userinfo("http://proxy:3128"), "http://proxy:3128");
/// ```
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("<redacted>@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn redact_query(s: &str) -> String {
    match s.split_once('?') {
        Some((p, _)) => format!("{p}?<redacted>"),
        None => s.to_owned(),
    }
}

/// PEM material: a file path, or PEM text held in memory.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A PEM file on disk.
    File(PathBuf),
    /// PEM text (a private key is secret: it is redacted in `Debug`).
    Pem(Secret),
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(p) => write!(f, "File({})", p.display()),
            PemSource::Pem(_) => f.write_str("Pem(<redacted>)"),
        }
    }
}

/// TLS settings. Certificate and host name verification are always on; TLS 1.2 is the
/// minimum.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// Trust roots; `None` uses the system's default roots.
    pub ca: Option<PemSource>,
    /// Client certificate (chain) for mutual TLS.
    pub client_cert: Option<PemSource>,
    /// The client certificate's private key.
    pub client_key: Option<PemSource>,
    /// Passphrase of an encrypted private key.
    pub key_password: Option<Secret>,
    /// ALPN protocols to offer (`x-amzn-mqtt-ca`, `mqtt`).
    pub alpn: Vec<String>,
    /// OpenSSL cipher list; `None` keeps OpenSSL's defaults.
    pub ciphers: Option<String>,
}

/// Everything one connect attempt needs. A provider computes these anew before every
/// attempt, so renewed credentials (SAS tokens, SigV4 URLs) and reconnects are one path.
///
/// `Debug` redacts the query of the URI and of the user name (AWS custom authorizers carry
/// their token and signature there), and the password and header values.
#[derive(Clone)]
pub struct ConnectParams {
    /// Where to connect.
    pub uri: BrokerUri,
    /// MQTT client id.
    pub client_id: String,
    /// User name.
    pub username: Option<String>,
    /// Password (a SAS token for Azure).
    pub password: Option<Secret>,
    /// TLS settings; required for `mqtts`/`wss`.
    pub tls: Option<TlsOptions>,
    /// Protocol version.
    pub mqtt_version: MqttVersion,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Clean session (3.1.1) / clean start (5). `false` keeps subscriptions and queued
    /// messages across reconnects.
    pub clean_session: bool,
    /// Time allowed for TCP + TLS + CONNACK.
    pub connect_timeout: Duration,
    /// HTTP proxy for the connection (`http://host:port`).
    pub http_proxy: Option<String>,
    /// Extra HTTP headers for the WebSocket upgrade (values may carry tokens: secret).
    pub http_headers: Vec<(String, Secret)>,
    /// When these credentials stop working: the connection renews them (reconnects with
    /// fresh parameters) before that instant.
    pub credentials_expire: Option<SystemTime>,
    /// Outbound MQTT 5 topic aliases (off by default; ignored on 3.1.1).
    pub topic_aliasing: crate::topic_alias::TopicAliasing,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("uri", &self.uri)
            .field("client_id", &self.client_id)
            .field("username", &self.username.as_deref().map(redact_query))
            .field("password", &self.password)
            .field("tls", &self.tls)
            .field("mqtt_version", &self.mqtt_version)
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("connect_timeout", &self.connect_timeout)
            .field("http_proxy", &self.http_proxy.as_deref().map(redact_userinfo))
            .field("http_headers", &self.http_headers)
            .field("credentials_expire", &self.credentials_expire)
            .field("topic_aliasing", &self.topic_aliasing)
            .finish()
    }
}

impl ConnectParams {
    /// Parameters with the defaults: 3.1.1, keep-alive 60 s, clean session, 30 s connect
    /// timeout, no credentials.
    pub fn new(uri: BrokerUri, client_id: impl Into<String>) -> Self {
        Self {
            uri,
            client_id: client_id.into(),
            username: None,
            password: None,
            tls: None,
            mqtt_version: MqttVersion::V311,
            keep_alive: Duration::from_secs(60),
            clean_session: true,
            connect_timeout: Duration::from_secs(10),
            http_proxy: None,
            http_headers: Vec::new(),
            credentials_expire: None,
            topic_aliasing: crate::topic_alias::TopicAliasing::Disabled,
        }
    }

    /// Checks consistency: TLS schemes need TLS settings, client ids are non-empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.is_empty() && !self.clean_session {
            return Err(ConfigError::Invalid {
                field: "client_id",
                reason: "a persistent session needs a client id".into(),
            });
        }
        if self.uri.scheme().is_tls() && self.tls.is_none() {
            return Err(ConfigError::Invalid {
                field: "tls",
                reason: format!("scheme of {} needs TLS options", self.uri),
            });
        }
        if !self.uri.scheme().is_tls() && self.tls.is_some() {
            return Err(ConfigError::Invalid {
                field: "tls",
                reason: format!("TLS options given for the plain URI {}", self.uri),
            });
        }
        // paho (with OpenSSL >= 1.1) ignores its TLS version option; OpenSSL 3 allows TLS
        // below 1.2 only at security level 0, so a cipher list may not lower the level.
        if self
            .tls
            .as_ref()
            .and_then(|t| t.ciphers.as_deref())
            .is_some_and(|c| c.to_ascii_uppercase().contains("@SECLEVEL=0"))
        {
            return Err(ConfigError::Invalid {
                field: "tls.ciphers",
                reason: "security level 0 would allow TLS below 1.2".into(),
            });
        }
        if self.tls.as_ref().is_some_and(|t| t.client_cert.is_some() != t.client_key.is_some()) {
            return Err(ConfigError::Invalid {
                field: "tls",
                reason: "a client certificate needs its private key and vice versa".into(),
            });
        }
        if self.mqtt_version == MqttVersion::V311
            && self.topic_aliasing != crate::topic_alias::TopicAliasing::Disabled
        {
            return Err(ConfigError::Invalid {
                field: "topic_aliasing",
                reason: "topic aliases need MQTT 5".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_aliasing_needs_mqtt5() {
        let mut p = ConnectParams::new("tcp://h:1883".parse().unwrap(), "c");
        p.topic_aliasing = crate::topic_alias::TopicAliasing::Lru { max: 8 };
        assert!(matches!(p.validate(), Err(ConfigError::Invalid { field: "topic_aliasing", .. })));
        p.mqtt_version = MqttVersion::V5;
        assert!(p.validate().is_ok());
    }

    #[test]
    fn proxy_credentials_never_reach_debug() {
        let mut p = ConnectParams::new("wss://h/mqtt".parse().unwrap(), "c");
        p.http_proxy = Some("http://proxy-user:pr0xy-pw@proxy:3128".into());
        let shown = format!("{p:?}");
        assert!(!shown.contains("pr0xy-pw") && !shown.contains("proxy-user"), "{shown}");
        assert!(shown.contains("http://<redacted>@proxy:3128"), "{shown}");
        for (url, want) in [
            ("http://proxy:3128", "http://proxy:3128"),
            ("http://u@p:1/a@b", "http://<redacted>@p:1/a@b"),
            ("u:p@proxy:3128", "<redacted>@proxy:3128"),
            ("", ""),
        ] {
            assert_eq!(redact_userinfo(url), want, "{url}");
        }
    }

    #[test]
    fn uris_parse_with_default_ports() {
        let table = [
            ("tcp://127.0.0.1:1884", Scheme::Mqtt, "127.0.0.1", 1884, ""),
            ("mqtt://broker", Scheme::Mqtt, "broker", 1883, ""),
            ("ssl://h", Scheme::Mqtts, "h", 8883, ""),
            ("MQTTS://h:443", Scheme::Mqtts, "h", 443, ""),
            ("wss://hub.net/$iothub/websocket", Scheme::Wss, "hub.net", 443, "/$iothub/websocket"),
            ("ws://[::1]:8080/mqtt?x=1", Scheme::Ws, "::1", 8080, "/mqtt?x=1"),
            ("tcp://[::1]", Scheme::Mqtt, "::1", 1883, ""),
        ];
        for (s, scheme, host, port, path) in table {
            let u: BrokerUri = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((u.scheme(), u.host(), u.port(), u.path()), (scheme, host, port, path), "{s}");
        }
    }

    #[test]
    fn malformed_uris_are_typed_errors() {
        let table = [
            ("localhost:1883", "missing `scheme://`"),
            ("ftp://h", "unknown scheme (expected tcp, mqtt, ssl, mqtts, ws or wss)"),
            ("tcp://", "empty host"),
            ("tcp://:1883", "empty host"),
            ("tcp://h:0", "port must be a number from 1 to 65535"),
            ("tcp://h:70000", "port must be a number from 1 to 65535"),
            ("tcp://h:x", "port must be a number from 1 to 65535"),
            ("tcp://h/path", "a path is only allowed for ws:// and wss://"),
            ("tcp://u:p@h", "credentials in the URI are not allowed; use the username and password options"),
            ("tcp://[::1", "unclosed `[` in IPv6 host"),
            ("tcp://[::1]x", "junk after IPv6 host"),
            ("tcp://a b", "host contains whitespace or control characters"),
        ];
        for (s, want) in table {
            match s.parse::<BrokerUri>() {
                Err(ConfigError::InvalidUri { reason, .. }) => assert_eq!(reason, want, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn presigned_queries_never_reach_debug_or_errors() {
        let u: BrokerUri = "wss://h/mqtt?X-Amz-Signature=abc123".parse().unwrap();
        assert!(!format!("{u:?}").contains("abc123"));
        let e = "wss://h:99999/mqtt?X-Amz-Signature=abc123".parse::<BrokerUri>().unwrap_err();
        assert!(!e.to_string().contains("abc123"), "{e}");
    }

    #[test]
    fn params_are_checked_for_consistency() {
        let plain: BrokerUri = "tcp://h".parse().unwrap();
        let tls: BrokerUri = "mqtts://h".parse().unwrap();
        assert!(ConnectParams::new(plain.clone(), "c").validate().is_ok());
        assert!(ConnectParams::new(tls.clone(), "c").validate().is_err());
        let mut p = ConnectParams::new(tls, "c");
        p.tls = Some(TlsOptions { client_cert: Some(PemSource::File("c.pem".into())), ..Default::default() });
        assert!(p.validate().is_err(), "cert without key");
        let mut p = ConnectParams::new(plain, "");
        p.clean_session = false;
        assert!(p.validate().is_err());
        let mut p = ConnectParams::new("mqtts://h".parse().unwrap(), "c");
        p.tls = Some(TlsOptions { ciphers: Some("DEFAULT:@SECLEVEL=0".into()), ..Default::default() });
        assert!(matches!(p.validate(), Err(ConfigError::Invalid { field: "tls.ciphers", .. })));
    }

    #[test]
    fn debug_redacts_user_name_queries() {
        let mut p = ConnectParams::new("mqtts://h:443".parse().unwrap(), "c");
        p.username = Some("dev?x-amz-customauthorizer-name=a&token=tok-123".into());
        p.password = Some(Secret::new("pw-123"));
        let shown = format!("{p:?}");
        assert!(shown.contains("dev?<redacted>"), "{shown}");
        assert!(!shown.contains("tok-123") && !shown.contains("pw-123"), "{shown}");
    }

    #[test]
    fn pem_text_is_redacted() {
        let p = PemSource::Pem(Secret::new("-----BEGIN PRIVATE KEY-----abc"));
        assert_eq!(format!("{p:?}"), "Pem(<redacted>)");
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// A cheap stand-in for the fuzz target that runs in every `cargo test`: random and
    /// mutated inputs never panic, and what parses round-trips.
    #[test]
    fn random_uris_never_panic_and_round_trip() {
        let seeds = ["tcp://h:1", "wss://[::1]:443/p?q", "mqtts://a.b", "ws://x/y", "ssl://h:65535"];
        let alphabet: Vec<char> = "tcpmqsw:/[]?@.0123456789h \u{0}é".chars().collect();
        let mut next = test_support::xorshift(0x2545_f491_4f6c_dd1du64);
        for i in 0..20_000 {
            let mut s: Vec<char> = seeds[i % seeds.len()].chars().collect();
            for _ in 0..(next() % 4) {
                let pos = (next() as usize) % (s.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => s.insert(pos, c),
                    1 if pos < s.len() => {
                        s.remove(pos);
                    }
                    _ if pos < s.len() => s[pos] = c,
                    _ => {}
                }
            }
            let s: String = s.into_iter().collect();
            if let Ok(u) = s.parse::<BrokerUri>() {
                let again: BrokerUri = u.to_string().parse().unwrap_or_else(|e| panic!("{s:?} → {u} → {e}"));
                assert_eq!(u, again, "{s:?}");
            }
        }
    }
}
