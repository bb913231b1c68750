//! What the end-to-end tests against the emulator's AWS IoT endpoint share: starting it,
//! things with certificates, options that trust its CA, a fast backoff, a telemetry round
//! trip through the real actor tree, and collecting failed connect attempts.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use connector_actors::Connector;
use connector_aws::{AwsAuth, AwsOptions, AwsProvider, X509Credentials};
use connector_core::{
    BackoffPolicy, ConnectParams, ConnectionEvent, Inbound, InboundMessage, Jitter, Limits, OutboundPacket,
    PemSource, Provider, ProviderError, Publish, QoS, SubscriptionSpec,
};
use connector_emulator::control::aws_api::CreateCertificate;
use connector_emulator::control::client::ControlClient;
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

/// How long a test waits for anything that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// An emulator on ephemeral ports (AWS endpoint `localhost`, region `us-east-1`).
pub fn start() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::ephemeral()).unwrap()
}

/// Reconnects within 50–500 ms, full jitter.
pub fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_millis(50),
        max: Duration::from_millis(500),
        stable_after: Duration::from_secs(5),
        jitter: Jitter::Full,
    }
}

/// A thing with an ACTIVE certificate issued by the emulator and attached to it, as
/// in-memory PEM.
pub async fn thing_with_cert(emu: &EmulatorHandle, thing: &str) -> X509Credentials {
    emu.control().aws_create_thing(thing).await.unwrap();
    let c = emu
        .control()
        .aws_create_certificate(&CreateCertificate { thing_name: Some(thing.into()), ..Default::default() })
        .await
        .unwrap();
    X509Credentials::from_pem(c.certificate_pem, c.private_key_pem.unwrap())
}

/// Options for `thing` on the emulator's AWS endpoint with `auth`: the port that auth
/// uses there (8883-style for certificates on 8883, else the 443-style port), its CA
/// trusted.
pub fn options(emu: &EmulatorHandle, thing: &str, auth: AwsAuth) -> AwsOptions {
    let port = match auth {
        AwsAuth::Certificate(_) => emu.aws_mqtt_port().unwrap(),
        _ => emu.aws_port().unwrap(),
    };
    AwsOptions::new(emu.aws_endpoint(), thing, auth)
        .port(port)
        .trust_roots(PemSource::File(emu.ca_path().to_owned()))
}

/// Connects `provider` through the actor tree, publishes one QoS 1 telemetry message and
/// checks the emulator captured it under `client_id` on `topic`. Returns the connector.
pub async fn telemetry_round_trip(emu: &EmulatorHandle, provider: AwsProvider, topic: &str) -> Connector {
    let client_id = provider.client_id().to_owned();
    let conn = Connector::builder(provider).backoff(fast_backoff()).start();
    conn.wait_connected(WAIT).await.unwrap();
    let body = format!("{{\"from\":\"{client_id}\"}}");
    conn.publisher().publish(Publish::telemetry(body.clone()).qos(QoS::AtLeastOnce)).await.unwrap();
    let got = emu.control().aws_telemetry(Some(&client_id), None).await.unwrap();
    let seen: Vec<(&str, Option<&str>, u8)> =
        got.iter().map(|t| (t.topic.as_str(), t.payload.as_deref(), t.qos)).collect();
    assert_eq!(seen, [(topic, Some(body.as_str()), 1)]);
    conn
}

/// The emulator's record of `client_id`'s connection: (auth, principal).
pub async fn connection_of(emu: &EmulatorHandle, client_id: &str) -> (String, String) {
    let conns = emu.control().aws_connections().await.unwrap();
    let c =
        conns.iter().find(|c| c.client_id == client_id).unwrap_or_else(|| panic!("{client_id} in {conns:?}"));
    (c.auth.clone(), c.principal.clone())
}

/// Starts a connector and returns every lifecycle event up to its `n`-th failed attempt;
/// panics if it connects.
pub async fn failures(provider: impl Provider, n: usize) -> Vec<ConnectionEvent> {
    let (tx, mut rx) = mpsc::channel(64);
    let conn = Connector::builder(provider).backoff(fast_backoff()).events_to(tx).start();
    let mut seen = Vec::new();
    let mut failed = 0;
    while failed < n {
        let e = tokio::time::timeout(WAIT, rx.recv()).await.expect("lifecycle events").unwrap();
        assert!(!matches!(e, ConnectionEvent::Connected { .. }), "connected: {seen:?}");
        if matches!(e, ConnectionEvent::ConnectionFailed { .. }) {
            failed += 1;
        }
        seen.push(e);
    }
    conn.stop().await;
    seen
}

/// A provider whose connect parameters are computed as if the clock read `skew` earlier
/// (a SigV4 URL signed in the past); everything else is the inner provider's.
pub struct Skewed {
    /// The provider.
    pub inner: AwsProvider,
    /// How far back.
    pub skew: Duration,
}

impl Provider for Skewed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError> {
        self.inner.connect_params(now - self.skew)
    }
    fn telemetry_topic(&self, publish: &Publish) -> Result<String, ProviderError> {
        self.inner.telemetry_topic(publish)
    }
    fn encode_publish(&self, publish: &Publish) -> Result<OutboundPacket, ProviderError> {
        self.inner.encode_publish(publish)
    }
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        self.inner.subscriptions()
    }
    fn classify(&self, message: InboundMessage) -> Inbound {
        self.inner.classify(message)
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
}

/// An emulator with its control client, for tests that drive devices through the tree.
pub struct AwsEnv {
    /// The emulator.
    pub emu: EmulatorHandle,
    /// Its control API.
    pub ctl: ControlClient,
}

/// A connected device.
pub struct Device {
    /// The running tree.
    pub conn: Connector,
    /// Its MQTT client id.
    pub client_id: String,
}

impl AwsEnv {
    /// An emulator on ephemeral ports.
    pub async fn start() -> AwsEnv {
        let emu = start();
        let ctl = emu.control();
        AwsEnv { emu, ctl }
    }

    /// A device for a new thing with a fresh certificate, connected over mutual TLS with a
    /// 5 s operation timeout.
    pub async fn device(&self, thing: &str) -> Device {
        let creds = thing_with_cert(&self.emu, thing).await;
        let opts = options(&self.emu, thing, AwsAuth::Certificate(creds)).keep_alive(Duration::from_secs(30));
        let provider = AwsProvider::new(opts).unwrap();
        let client_id = provider.client_id().to_owned();
        let conn = Connector::builder(provider)
            .backoff(fast_backoff())
            .operation_timeout(Duration::from_secs(5))
            .start();
        conn.wait_connected(WAIT).await.unwrap();
        Device { conn, client_id }
    }
}

/// Waits for a `Disconnected` event.
pub async fn wait_disconnected(events: &mut (impl Stream<Item = ConnectionEvent> + Unpin)) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ConnectionEvent::Disconnected { .. })) => return,
            Ok(Some(_)) => {}
            Ok(None) => panic!("events ended before a disconnect"),
            Err(_) => panic!("no disconnect within {WAIT:?}"),
        }
    }
}

/// Polls `probe` until it returns `Some`, failing after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() <= deadline, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
