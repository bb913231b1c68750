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
    /// The connection was stopped for good (by request or by the restart policy).
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
    /// TCP, TLS or WebSocket failure before CONNACK (includes certificate rejections).
    Transport {
        /// What the transport said.
        message: String,
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
            ConnectFailure::Timeout => f.write_str("timed out waiting for CONNACK"),
            ConnectFailure::Credentials { message } => write!(f, "credentials: {message}"),
        }
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
