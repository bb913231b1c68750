//! What the shadow and jobs end-to-end tests share: an emulator with its AWS endpoint, and
//! devices (a thing with an ACTIVE certificate from the emulator CA) connected through the
//! real actor tree over mutual TLS.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use connector_actors::Connector;
use connector_aws::{AwsAuth, AwsOptions, AwsProvider, X509Credentials};
use connector_core::{BackoffPolicy, ConnectionEvent, Jitter, PemSource};
use connector_emulator::control::aws_api::CreateCertificate;
use connector_emulator::control::client::ControlClient;
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use futures::{Stream, StreamExt};

/// How long a test waits for anything that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// An emulator on ephemeral ports and its control client.
pub struct AwsEnv {
    pub emu: EmulatorHandle,
    pub ctl: ControlClient,
}

/// A connected device.
pub struct Device {
    pub conn: Connector,
    pub client_id: String,
    pub thing: String,
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

impl AwsEnv {
    pub async fn start() -> AwsEnv {
        let emu = Emulator::start(EmulatorConfig::ephemeral()).unwrap();
        let ctl = emu.control();
        AwsEnv { emu, ctl }
    }

    /// Options for `thing` on the emulator's mTLS port with a fresh certificate.
    pub async fn options(&self, thing: &str) -> AwsOptions {
        self.ctl.aws_create_thing(thing).await.unwrap();
        let c = self
            .ctl
            .aws_create_certificate(&CreateCertificate {
                thing_name: Some(thing.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let creds = X509Credentials::from_pem(c.certificate_pem, c.private_key_pem.unwrap());
        AwsOptions::new(self.emu.aws_endpoint(), thing, AwsAuth::Certificate(creds))
            .port(self.emu.aws_mqtt_port().unwrap())
            .trust_roots(PemSource::File(self.emu.ca_path().to_owned()))
            .keep_alive(Duration::from_secs(30))
    }

    /// A device for a new thing, connected.
    pub async fn device(&self, thing: &str) -> Device {
        let opts = self.options(thing).await;
        self.device_with(opts, |b| b).await
    }

    /// A device from `opts`, its builder adjusted by `f`, connected.
    pub async fn device_with(
        &self,
        opts: AwsOptions,
        f: impl FnOnce(connector_actors::ConnectorBuilder) -> connector_actors::ConnectorBuilder,
    ) -> Device {
        let thing = opts.thing_name.clone();
        let provider = AwsProvider::new(opts).unwrap();
        let client_id = provider.client_id().to_owned();
        let conn =
            f(Connector::builder(provider).backoff(fast_backoff()).operation_timeout(Duration::from_secs(5)))
                .start();
        conn.wait_connected(WAIT).await.unwrap();
        Device { conn, client_id, thing }
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
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
