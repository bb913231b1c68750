//! The periodic status line (stdout, and `STATUS=` to systemd):
//!
//! ```text
//! status: connected device=connector-agent sent=12 acked=12 queue=0 inflight=0 dropped=0 twin=v3 up=30s
//! ```
//!
//! `sent` counts telemetry messages the agent handed to the Publisher and it accepted
//! (device stats and ingested batches), `acked` every device message the cloud
//! acknowledged (telemetry, reported-state patches, method responses), `queue` messages
//! waiting to be sent, `inflight` those sent and not yet acknowledged, `dropped` accepted
//! messages removed before their acknowledgement by a limit of the configuration (evicted
//! at `store.max_messages` / `store.max_bytes` under `drop_policy = "oldest"`, expired by
//! `store.expiry`, or refused for good by the service), `twin` the last desired-state
//! version seen.

use std::fmt;
use std::time::Duration;

use connector_core::ConnectionState;

/// One status snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Connection state.
    pub state: ConnectionState,
    /// Device id / thing name (empty before provisioning).
    pub device: String,
    /// Messages accepted by the Publisher.
    pub sent: u64,
    /// Device messages acknowledged (telemetry, state reports, method responses).
    pub acked: u64,
    /// Messages waiting to be sent.
    pub queued: usize,
    /// Messages in flight.
    pub inflight: usize,
    /// Accepted messages removed before their acknowledgement.
    pub dropped: u64,
    /// Last desired version.
    pub twin_version: Option<u64>,
    /// Time since start.
    pub uptime: Duration,
}

/// The word for a connection state.
pub fn state_word(s: ConnectionState) -> &'static str {
    match s {
        ConnectionState::Disconnected => "disconnected",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Backoff => "reconnecting",
        ConnectionState::Stopped => "stopped",
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status: {} device={} sent={} acked={} queue={} inflight={} dropped={} twin={} up={}s",
            state_word(self.state),
            if self.device.is_empty() { "-" } else { &self.device },
            self.sent,
            self.acked,
            self.queued,
            self.inflight,
            self.dropped,
            self.twin_version.map_or_else(|| "-".to_owned(), |v| format!("v{v}")),
            self.uptime.as_secs(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_every_field() {
        let s = Status {
            state: ConnectionState::Connected,
            device: "d".into(),
            sent: 3,
            acked: 2,
            queued: 1,
            inflight: 0,
            dropped: 5,
            twin_version: Some(4),
            uptime: Duration::from_secs(9),
        };
        assert_eq!(
            s.to_string(),
            "status: connected device=d sent=3 acked=2 queue=1 inflight=0 dropped=5 twin=v4 up=9s"
        );
        let s = Status { twin_version: None, device: String::new(), state: ConnectionState::Backoff, ..s };
        assert!(
            s.to_string().starts_with("status: reconnecting device=- ") && s.to_string().contains("twin=-")
        );
    }
}
