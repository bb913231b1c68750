//! The claim exchange itself (feature `runtime`): wait for the claim connection,
//! subscribe to every answer topic, then each request and its answer, all bounded by one
//! deadline. Driven by [`provision`](super::client::provision).

use connector_actors::{Connector, PublishError};
use connector_core::{ConnectFailure, ConnectionEvent, Inbound, Publish, QoS, Secret};
use futures::stream::{select_all, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::client::{FleetRequest, ProvisioningError, ProvisioningOptions};
use super::codec::{self, FleetAnswer, ThingRegistered};
use super::error::KeyError;
use super::keys::{self, KeyPair};
use super::store::FleetIdentity;
use super::topics::{FleetApi, FleetTopic, TopicKind};

pub(super) struct Exchange<'a> {
    conn: &'a Connector,
    opts: &'a ProvisioningOptions,
    events: mpsc::Receiver<ConnectionEvent>,
    deadline: Instant,
    last_failure: Option<ConnectFailure>,
}

impl<'a> Exchange<'a> {
    /// An exchange over `conn` whose lifecycle events arrive on `events`, ending at
    /// `deadline`.
    pub(super) fn new(
        conn: &'a Connector,
        opts: &'a ProvisioningOptions,
        events: mpsc::Receiver<ConnectionEvent>,
        deadline: Instant,
    ) -> Self {
        Self { conn, opts, events, deadline, last_failure: None }
    }

    fn timeout(&self, stage: &'static str) -> ProvisioningError {
        ProvisioningError::Timeout {
            after: self.opts.timeout,
            stage,
            last_failure: self.last_failure.clone(),
        }
    }

    /// Handles one lifecycle event: `Ok(true)` once connected, `Ok(false)` to keep waiting.
    fn on_event(&mut self, event: Option<ConnectionEvent>) -> Result<bool, ProvisioningError> {
        match event {
            None => Err(ProvisioningError::Connector { message: "the claim connection stopped".into() }),
            Some(ConnectionEvent::Connected { .. }) => Ok(true),
            Some(ConnectionEvent::ConnectionFailed { reason, retry_in }) => {
                debug!(reason = %reason, retry_in = ?retry_in, "claim connect attempt failed");
                match reason {
                    ConnectFailure::Refused { code: 4 | 5 | 0x86 | 0x87, reason } => {
                        Err(ProvisioningError::Unauthorized { reason })
                    }
                    ConnectFailure::Refused { code: code @ (1 | 2 | 0x84 | 0x85), reason } => {
                        Err(ProvisioningError::Refused { code, reason })
                    }
                    ConnectFailure::Credentials { message } => {
                        Err(ProvisioningError::Credentials { message })
                    }
                    other => {
                        self.last_failure = Some(other);
                        Ok(false)
                    }
                }
            }
            Some(ConnectionEvent::Stopped { reason }) => Err(ProvisioningError::Connector {
                message: format!("the claim connection stopped: {reason}"),
            }),
            Some(_) => Ok(false),
        }
    }

    async fn until_connected(&mut self) -> Result<(), ProvisioningError> {
        loop {
            let event = tokio::time::timeout_at(self.deadline, self.events.recv())
                .await
                .map_err(|_| self.timeout("connecting with the claim certificate"))?;
            if self.on_event(event)? {
                return Ok(());
            }
        }
    }

    pub(super) async fn run(
        &mut self,
        request: &FleetRequest,
        own_key: Option<(KeyPair, String)>,
    ) -> Result<FleetIdentity, ProvisioningError> {
        self.until_connected().await?;
        let create = match own_key {
            None => FleetApi::CreateKeysAndCertificate,
            Some(_) => FleetApi::CreateCertificateFromCsr,
        };
        let register = FleetApi::RegisterThing(request.template.clone());
        // Every answer topic is subscribed (SUBACK received) before the first request.
        let subscriber = self.conn.subscriber();
        let mut streams = Vec::new();
        for api in [&create, &register] {
            for kind in [TopicKind::Accepted, TopicKind::Rejected] {
                let filter = FleetTopic::new(api.clone(), kind).assemble();
                let subscribed = subscriber.stream(filter.clone(), QoS::AtLeastOnce, 8);
                let (_, stream) = tokio::time::timeout_at(self.deadline, subscribed)
                    .await
                    .map_err(|_| self.timeout("subscribing to the answer topics"))?
                    .map_err(|e| ProvisioningError::Connector {
                        message: format!("subscribe `{filter}`: {e}"),
                    })?;
                streams.push(stream);
            }
        }
        let mut answers = select_all(streams);

        let (certificate_id, certificate_pem, private_key, token) = match own_key {
            None => {
                let answer = self.call(&create, codec::create_keys_body(), &mut answers).await?;
                let FleetAnswer::KeysAndCertificate(k) = answer else {
                    return Err(unexpected(&create));
                };
                (k.certificate_id, k.certificate_pem, k.private_key, k.ownership_token)
            }
            Some((key, csr)) => {
                let answer = self.call(&create, codec::create_from_csr_body(&csr), &mut answers).await?;
                let FleetAnswer::CertificateFromCsr(c) = answer else {
                    return Err(unexpected(&create));
                };
                (c.certificate_id, c.certificate_pem, key.private_key().clone(), c.ownership_token)
            }
        };
        check_issued(&certificate_pem, &private_key)?;
        debug!(certificate_id = %certificate_id, "certificate issued; registering the thing");

        let body = codec::register_thing_body(&token, &request.parameters);
        let FleetAnswer::ThingRegistered { answer, .. } = self.call(&register, body, &mut answers).await?
        else {
            return Err(unexpected(&register));
        };
        let ThingRegistered { thing_name, device_configuration } = answer;
        Ok(FleetIdentity::new(thing_name, certificate_id, certificate_pem, private_key, device_configuration))
    }

    /// Publishes the request of `api` and waits for its answer; a rejection is an error.
    /// The request is sent again when the connection drops and comes back before the
    /// answer (AWS answers only on the connection that asked).
    async fn call(
        &mut self,
        api: &FleetApi,
        body: Vec<u8>,
        answers: &mut (impl Stream<Item = Inbound> + Unpin),
    ) -> Result<FleetAnswer, ProvisioningError> {
        loop {
            debug!(api = api.name(), "fleet request");
            let publish = Publish::to_topic(api.request_topic(), body.clone()).qos(QoS::AtLeastOnce);
            match tokio::time::timeout_at(self.deadline, self.conn.publisher().publish(publish)).await {
                Err(_) => return Err(self.timeout("sending a request")),
                Ok(Err(
                    e @ (PublishError::Invalid(_) | PublishError::Stopped | PublishError::Persistence(_)),
                )) => {
                    return Err(ProvisioningError::Connector { message: format!("publish: {e}") });
                }
                Ok(Err(e)) => {
                    // No PUBACK (link lost, ack timeout): the request may still have
                    // arrived. Wait for its answer; it is sent again after a reconnect.
                    debug!(error = %e, api = api.name(), "fleet request not acknowledged");
                }
                Ok(Ok(_)) => {}
            }
            if let Some(answer) = self.answer(api, answers).await? {
                return match answer {
                    FleetAnswer::Rejected { api, error } => Err(ProvisioningError::rejected(&api, error)),
                    accepted => Ok(accepted),
                };
            }
        }
    }

    /// The answer of `api` (answers of other APIs are skipped), or `None` when the request
    /// should be sent again because the link dropped and came back.
    async fn answer(
        &mut self,
        api: &FleetApi,
        answers: &mut (impl Stream<Item = Inbound> + Unpin),
    ) -> Result<Option<FleetAnswer>, ProvisioningError> {
        let stage = match api {
            FleetApi::CreateKeysAndCertificate => "waiting for the CreateKeysAndCertificate answer",
            FleetApi::CreateCertificateFromCsr => "waiting for the CreateCertificateFromCsr answer",
            _ => "waiting for the RegisterThing answer",
        };
        let mut dropped = false;
        loop {
            tokio::select! {
                event = self.events.recv() => {
                    if matches!(event, Some(ConnectionEvent::Disconnected { .. })) {
                        debug!(api = api.name(), "claim connection dropped while waiting for an answer");
                        dropped = true;
                    } else if self.on_event(event)? && dropped {
                        return Ok(None);
                    }
                }
                inbound = answers.next() => {
                    let Some(Inbound::Message(m)) = inbound else {
                        let message = "the answer stream ended".into();
                        return Err(ProvisioningError::Connector { message });
                    };
                    let answer = FleetAnswer::parse(&m.topic, &m.payload)?;
                    let of = answer.api();
                    if &of == api {
                        debug!(api = api.name(), topic = %m.topic, "fleet answer");
                        return Ok(Some(answer));
                    }
                    debug!(api = of.name(), expected = api.name(), "stale fleet answer skipped");
                }
                () = tokio::time::sleep_until(self.deadline) => return Err(self.timeout(stage)),
            }
        }
    }
}

fn unexpected(api: &FleetApi) -> ProvisioningError {
    // `answer` returns only answers of the API asked; kept typed rather than a panic.
    ProvisioningError::Connector { message: format!("an answer of another API than {}", api.name()) }
}

/// The issued certificate must parse and carry the public key of the private key.
pub(super) fn check_issued(certificate_pem: &str, private_key: &Secret) -> Result<(), ProvisioningError> {
    let cert = keys::certificate(certificate_pem).map_err(ProvisioningError::Certificate)?;
    let key = keys::private_key(private_key).map_err(ProvisioningError::Certificate)?;
    if !keys::key_matches(&cert, &key).map_err(ProvisioningError::Certificate)? {
        return Err(ProvisioningError::Certificate(KeyError::InvalidCertificate {
            reason: "the issued certificate is not for the device's key".into(),
        }));
    }
    Ok(())
}
