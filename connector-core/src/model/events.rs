use std::fmt;
use std::time::Duration;

/// Lifecycle events the ConnectionActor broadcasts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connect attempt starts (attempt counts from 1 after each success).
    AttemptingConnect {
        /// Attempt number since the last successful connection.
        attempt: u32,
    },
    /// The broker accepted the connection.
    Connected {
        /// Whether the broker kept the previous session.
        session_present: bool,
    },
    /// A connect attempt failed; another follows after `retry_in` unless stopped.
    ConnectionFailed {
        /// Why.
        reason: ConnectFailure,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// An established connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The reconnect policy gave up (`ConnectorBuilder::reconnect_policy`): no further
    /// attempt; `Stopped` follows and the connector's callers get their errors.
    GaveUp {
        /// Connect attempts that had failed in a row (0: the connection was just lost).
        failures: u32,
        /// How long the device had been without a connection.
        offline_for: Duration,
        /// The policy's reason.
        reason: String,
    },
    /// The connection was stopped for good (by request, by the restart policy or because
    /// the reconnect policy gave up).
    Stopped {
        /// Why, in words.
        reason: String,
    },
}

/// Why a connect attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The broker answered CONNACK with a refusal.
    Refused {
        /// The CONNACK return code (3.1.1) or reason code (5).
        code: u8,
        /// The code's meaning.
        reason: String,
    },
    /// TCP, TLS or WebSocket failure before CONNACK, when no more precise reason is known.
    Transport {
        /// What the transport said.
        message: String,
    },
    /// The TLS handshake was refused, for a known reason (a certificate the client does not
    /// accept, or the server refusing the client).
    Tls {
        /// Why.
        reason: TlsRefusal,
        /// What TLS said (the verification error or the alert, in OpenSSL's words).
        detail: String,
    },
    /// The proxy (`http://` CONNECT or `socks5://`) would not open the tunnel to the
    /// broker, for a known reason.
    Proxy {
        /// Why.
        reason: ProxyRefusal,
        /// What the proxy answered (a status line or reply code; never the credentials).
        detail: String,
    },
    /// No CONNACK within the connect timeout.
    Timeout,
    /// The provider could not produce connect parameters (expired credentials, bad key).
    Credentials {
        /// What the provider said.
        message: String,
    },
}

impl ConnectFailure {
    /// A stable low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnectFailure::Refused { code, .. } => match code {
                1 | 0x84 => "unsupported_protocol",
                2 | 0x85 => "client_id_rejected",
                3 | 0x88 => "server_unavailable",
                4 | 0x86 => "bad_credentials",
                5 | 0x87 => "not_authorized",
                0x89 | 0x97 => "throttled",
                _ => "refused",
            },
            ConnectFailure::Transport { .. } => "transport",
            ConnectFailure::Tls { reason, .. } => reason.label(),
            ConnectFailure::Proxy { reason, .. } => reason.label(),
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Credentials { .. } => "credentials",
        }
    }

    /// The MQTT 3.1.1 meaning of a CONNACK return code.
    pub fn v3_reason(code: u8) -> &'static str {
        match code {
            1 => "unacceptable protocol version",
            2 => "identifier rejected",
            3 => "server unavailable",
            4 => "bad user name or password",
            5 => "not authorized",
            _ => "unknown return code",
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused { code, reason } => write!(f, "refused ({code}): {reason}"),
            ConnectFailure::Transport { message } => write!(f, "transport: {message}"),
            ConnectFailure::Tls { reason, detail } => write!(f, "TLS: {reason} ({detail})"),
            ConnectFailure::Proxy { reason, detail } => write!(f, "proxy: {reason} ({detail})"),
            ConnectFailure::Timeout => f.write_str("timed out waiting for CONNACK"),
            ConnectFailure::Credentials { message } => write!(f, "credentials: {message}"),
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsRefusal {
    /// The server's certificate does not chain to a trusted CA (includes self-signed).
    UnknownCa,
    /// The server's certificate is not for the host name (or address) connected to.
    HostnameMismatch,
    /// The server's certificate (or one in its chain) has expired.
    CertificateExpired,
    /// The server's certificate (or one in its chain) is not valid yet.
    CertificateNotYetValid,
    /// The server's certificate is unacceptable for another reason.
    BadServerCertificate,
    /// The server requires a client certificate and none was given.
    ClientCertificateRequired,
    /// The server refused the client certificate given.
    ClientCertificateRejected,
    /// No TLS version (1.2 or later) in common.
    ProtocolVersion,
    /// Another handshake failure, or an alert from the server.
    HandshakeFailure,
}

impl TlsRefusal {
    /// A stable label for metrics (`tls_unknown_ca`, …).
    pub fn label(&self) -> &'static str {
        match self {
            TlsRefusal::UnknownCa => "tls_unknown_ca",
            TlsRefusal::HostnameMismatch => "tls_hostname_mismatch",
            TlsRefusal::CertificateExpired => "tls_certificate_expired",
            TlsRefusal::CertificateNotYetValid => "tls_certificate_not_yet_valid",
            TlsRefusal::BadServerCertificate => "tls_bad_server_certificate",
            TlsRefusal::ClientCertificateRequired => "tls_client_certificate_required",
            TlsRefusal::ClientCertificateRejected => "tls_client_certificate_rejected",
            TlsRefusal::ProtocolVersion => "tls_protocol_version",
            TlsRefusal::HandshakeFailure => "tls_handshake_failure",
        }
    }
}

impl fmt::Display for TlsRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsRefusal::UnknownCa => "the server's certificate is not signed by a trusted CA",
            TlsRefusal::HostnameMismatch => "the server's certificate is for another host name",
            TlsRefusal::CertificateExpired => "the server's certificate has expired",
            TlsRefusal::CertificateNotYetValid => "the server's certificate is not valid yet",
            TlsRefusal::BadServerCertificate => "the server's certificate is not acceptable",
            TlsRefusal::ClientCertificateRequired => "the server requires a client certificate",
            TlsRefusal::ClientCertificateRejected => "the server refused the client certificate",
            TlsRefusal::ProtocolVersion => "no TLS version in common with the server",
            TlsRefusal::HandshakeFailure => "the TLS handshake failed",
        })
    }
}

/// Why a proxy would not open the tunnel to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyRefusal {
    /// The proxy refused the user name and password (SOCKS5 RFC 1929 failure status,
    /// HTTP `407 Proxy Authentication Required`).
    AuthenticationFailed,
    /// The proxy accepts none of the authentication methods offered (SOCKS5 `0xFF`: it
    /// wants credentials and none were given).
    NoAcceptableMethod,
    /// The proxy answered the tunnel request with a refusal (a SOCKS5 reply code other
    /// than success, an HTTP status other than 2xx).
    TunnelRefused,
}

impl ProxyRefusal {
    /// A stable label for metrics (`proxy_authentication_failed`, …).
    pub fn label(&self) -> &'static str {
        match self {
            ProxyRefusal::AuthenticationFailed => "proxy_authentication_failed",
            ProxyRefusal::NoAcceptableMethod => "proxy_no_acceptable_method",
            ProxyRefusal::TunnelRefused => "proxy_tunnel_refused",
        }
    }
}

impl fmt::Display for ProxyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyRefusal::AuthenticationFailed => "the proxy refused the user name and password",
            ProxyRefusal::NoAcceptableMethod => {
                "the proxy accepts none of the authentication methods offered"
            }
            ProxyRefusal::TunnelRefused => "the proxy refused to open the tunnel",
        })
    }
}

/// Why an established connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The network link died (broker gone, keep-alive expired, socket error).
    ConnectionLost,
    /// The broker sent DISCONNECT (MQTT 5) with a reason code.
    ServerDisconnect {
        /// The reason code.
        code: u8,
    },
    /// We disconnected to present fresh credentials before the old ones expire.
    CredentialRenewal,
    /// We were asked to stop.
    Requested,
    /// The link was declared dead by the stall watchdog: the oldest QoS 1 PUBLISH went
    /// unacknowledged for the stall threshold with nothing heard from the broker, and the
    /// probe that followed went unanswered too.
    Stalled {
        /// How long the oldest PUBLISH had been waiting for its PUBACK.
        unacked_for: Duration,
    },
    /// A PUBLISH went unacknowledged for the acknowledgement timeout on a link that was
    /// otherwise alive: the message is sent again on a new link.
    AckTimeout {
        /// The acknowledgement timeout.
        after: Duration,
    },
}

impl DisconnectReason {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            DisconnectReason::ConnectionLost => "connection_lost",
            DisconnectReason::ServerDisconnect { .. } => "server_disconnect",
            DisconnectReason::CredentialRenewal => "credential_renewal",
            DisconnectReason::Requested => "requested",
            DisconnectReason::Stalled { .. } => "stalled",
            DisconnectReason::AckTimeout { .. } => "ack_timeout",
        }
    }
}

/// The ConnectionActor's state, as exported in the `connector_connection_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected and not trying.
    Disconnected = 0,
    /// A connect attempt is under way.
    Connecting = 1,
    /// Connected.
    Connected = 2,
    /// Waiting before the next attempt.
    Backoff = 3,
    /// Stopped for good.
    Stopped = 4,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_refusals_have_distinct_stable_labels_and_say_why() {
        let all = [
            TlsRefusal::UnknownCa,
            TlsRefusal::HostnameMismatch,
            TlsRefusal::CertificateExpired,
            TlsRefusal::CertificateNotYetValid,
            TlsRefusal::BadServerCertificate,
            TlsRefusal::ClientCertificateRequired,
            TlsRefusal::ClientCertificateRejected,
            TlsRefusal::ProtocolVersion,
            TlsRefusal::HandshakeFailure,
        ];
        let labels: std::collections::BTreeSet<_> = all.iter().map(TlsRefusal::label).collect();
        assert_eq!(labels.len(), all.len());
        assert!(labels
            .iter()
            .all(|l| l.starts_with("tls_") && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        let f = ConnectFailure::Tls {
            reason: TlsRefusal::CertificateExpired,
            detail: "certificate verify failed: certificate has expired".into(),
        };
        assert_eq!(f.label(), "tls_certificate_expired");
        let p =
            ConnectFailure::Proxy { reason: ProxyRefusal::AuthenticationFailed, detail: "status 1".into() };
        assert_eq!(p.label(), "proxy_authentication_failed");
        assert_eq!(p.to_string(), "proxy: the proxy refused the user name and password (status 1)");
        assert_eq!(
            f.to_string(),
            "TLS: the server's certificate has expired (certificate verify failed: certificate has expired)"
        );
    }
}
