//! [`EmulatorConfig`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Default TLS MQTT port (the IoT Hub port).
pub const DEFAULT_MQTT_PORT: u16 = 8883;
/// Default MQTT-over-WebSocket port of a standalone emulator (the hub's 443 needs
/// privileges; pass it explicitly to use it).
pub const DEFAULT_WS_PORT: u16 = 8443;
/// Default control API port.
pub const DEFAULT_CONTROL_PORT: u16 = 8990;
/// Default AWS certificate MQTT port of a standalone emulator (AWS's is 8883, taken by
/// the hub here).
pub const DEFAULT_AWS_MQTT_PORT: u16 = 8884;
/// Default AWS ALPN / WebSocket port of a standalone emulator (AWS's is 443).
pub const DEFAULT_AWS_PORT: u16 = 8445;
/// Default AWS region.
pub const DEFAULT_AWS_REGION: &str = "us-east-1";
/// Default DPS ID scope.
pub const DEFAULT_ID_SCOPE: &str = "0ne00000EMU";

/// How to run the emulator. Start from [`EmulatorConfig::default`] (fixed ports, for a
/// standalone emulator) or [`EmulatorConfig::ephemeral`] (port 0 everywhere, for tests)
/// and set fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmulatorConfig {
    /// Address of the MQTT listeners (default `127.0.0.1`). The control API always
    /// listens on `127.0.0.1`.
    pub bind_address: IpAddr,
    /// TLS MQTT port (IoT Hub and DPS); 0 picks a free port.
    pub mqtt_port: u16,
    /// Plain-TCP MQTT port; `None` (default) disables plain TCP.
    pub plain_mqtt_port: Option<u16>,
    /// MQTT over secure WebSocket port (`wss://…/$iothub/websocket`, subprotocol `mqtt`);
    /// 0 picks a free port, `None` disables it. Default [`DEFAULT_WS_PORT`].
    pub ws_port: Option<u16>,
    /// Control API port; 0 picks a free port.
    pub control_port: u16,
    /// Directory for the CA, the server certificate and `registry.json`; `None` uses a
    /// temporary directory removed at shutdown (a new CA every start).
    pub state_dir: Option<PathBuf>,
    /// The hub's `HostName` (default `localhost`): SAS resources, user names and DPS
    /// `assignedHub` use it.
    pub hub_host_name: String,
    /// More host names accepted by the hub and put in the server certificate (besides
    /// `localhost`, `127.0.0.1`, `::1` and `hub_host_name`).
    pub extra_host_names: Vec<String>,
    /// DPS ID scope (default [`DEFAULT_ID_SCOPE`]).
    pub dps_id_scope: String,
    /// `retry-after` (seconds) in DPS 202 answers (default 1).
    pub dps_retry_after_secs: u32,
    /// Method timeout when the caller gives none (default 30 s, the service default).
    pub method_default_timeout: Duration,
    /// Captured telemetry messages kept (oldest dropped; default 10 000).
    pub telemetry_capacity: usize,
    /// C2D messages pending per device (default 50, the hub's limit).
    pub c2d_max_pending: usize,
    /// AWS IoT certificate MQTT port (AWS's 8883: MQTT over TLS with a client
    /// certificate); 0 picks a free port, `None` disables it.
    pub aws_mqtt_port: Option<u16>,
    /// AWS IoT port routed by ALPN (AWS's 443): `x-amzn-mqtt-ca` certificate MQTT,
    /// `mqtt` custom-authorizer MQTT, otherwise `wss://…/mqtt` (SigV4 or custom
    /// authorizer); 0 picks a free port, `None` disables it.
    pub aws_port: Option<u16>,
    /// AWS IoT endpoint host name clients connect to and send as SNI (default
    /// `localhost`; e.g. `abc123-ats.iot.us-east-1.amazonaws.com` with a hosts entry).
    /// The server certificate covers it; other SNI names are refused.
    pub aws_endpoint: String,
    /// AWS region of the SigV4 credential scope (default `us-east-1`).
    pub aws_region: String,
    /// Stop on SIGINT/SIGTERM (default off: an embedding program keeps its signals).
    pub handle_signals: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_port: DEFAULT_MQTT_PORT,
            plain_mqtt_port: None,
            ws_port: Some(DEFAULT_WS_PORT),
            control_port: DEFAULT_CONTROL_PORT,
            state_dir: None,
            hub_host_name: "localhost".to_string(),
            extra_host_names: Vec::new(),
            dps_id_scope: DEFAULT_ID_SCOPE.to_string(),
            dps_retry_after_secs: 1,
            method_default_timeout: Duration::from_secs(30),
            telemetry_capacity: 10_000,
            c2d_max_pending: 50,
            aws_mqtt_port: Some(DEFAULT_AWS_MQTT_PORT),
            aws_port: Some(DEFAULT_AWS_PORT),
            aws_endpoint: "localhost".to_string(),
            aws_region: DEFAULT_AWS_REGION.to_string(),
            handle_signals: false,
        }
    }
}

impl EmulatorConfig {
    /// Defaults with every port 0 (WebSocket and AWS included) (the OS picks free ports): what tests use.
    pub fn ephemeral() -> Self {
        EmulatorConfig {
            mqtt_port: 0,
            ws_port: Some(0),
            control_port: 0,
            aws_mqtt_port: Some(0),
            aws_port: Some(0),
            ..EmulatorConfig::default()
        }
    }

    /// Host names of the server certificate and of the hub, lower case, de-duplicated.
    pub(crate) fn host_names(&self) -> Vec<String> {
        let mut hosts: Vec<String> =
            ["localhost", "127.0.0.1", "::1"].iter().map(|s| s.to_string()).collect();
        hosts.push(self.hub_host_name.to_ascii_lowercase());
        hosts.extend(self.extra_host_names.iter().map(|h| h.to_ascii_lowercase()));
        hosts.push(self.aws_endpoint.to_ascii_lowercase());
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|h| !h.is_empty() && seen.insert(h.clone()));
        hosts
    }
}
