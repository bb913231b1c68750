//! The provisioning client: the DPS register-then-poll exchange run over MQTT through the
//! real actor tree ([`Connector`]), then the hub connection for the assignment.
//!
//! * [`DpsProvider`]: a [`DpsRegistration`] behind the [`Provider`] trait (connect
//!   parameters, the `$dps/registrations/res/#` subscription, response classification).
//! * [`provision`]: connect, subscribe, `iotdps-register`, poll the operation honouring
//!   `retry-after`, all bounded by [`ProvisioningOptions::timeout`]; returns the
//!   [`Assignment`] or a typed [`ProvisioningError`]. The DPS connection is always stopped.
//! * [`provision_then_connect`]: the above, then an [`AzureProvider`] for the assigned hub
//!   (the registration's symmetric key, or the same X.509 identity) and a started
//!   [`Connector`].
//!
//! Everything here runs inside an actix system (`#[actix_rt::main]`, `actix_rt::System`).
//!
//! ```no_run
//! use connector_azure::dps::client::{provision_then_connect, ProvisioningOptions};
//! use connector_azure::dps::{DpsAuth, DpsOptions, DpsRegistration};
//! use connector_azure::{AzureOptions, SasKey};
//! use connector_core::Publish;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SasKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let reg = DpsRegistration::new("0ne00000A0A", "device-01", DpsAuth::SymmetricKey(key), DpsOptions::default())?;
//! let done = provision_then_connect(&reg, AzureOptions::default(), &ProvisioningOptions::default()).await?;
//! println!("assigned to {} as {}", done.assignment.assigned_hub, done.assignment.device_id);
//! done.connector.wait_connected(std::time::Duration::from_secs(30)).await?;
//! done.connector.publisher().publish(Publish::telemetry(&b"{\"t\":21.5}"[..])).await?;
//! done.connector.stop().await;
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, SystemTime};

use connector_actors::{Connector, ConnectorBuilder, PublishError};
use connector_core::{
    BackoffPolicy, ConnectFailure, ConnectParams, ConnectionEvent, Inbound, InboundMessage, Provider,
    ProviderError, Publish, QoS, SubscriptionSpec,
};
use futures::{Stream, StreamExt};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::codec::{Assignment, DpsResponse, NextStep, OperationStatus, ResponseBody};
use super::topics::DpsTopic;
use super::{DpsAuth, DpsRegistration};
use crate::error::{AzureError, DpsError};
use crate::options::AzureOptions;
use crate::provider::AzureProvider;

/// A [`DpsRegistration`] as a [`Provider`]: the DPS device endpoint as the connection
/// actor sees it. Telemetry has no meaning here and is refused.
#[derive(Debug, Clone)]
pub struct DpsProvider {
    registration: DpsRegistration,
}

impl DpsProvider {
    /// The provider of `registration`.
    pub fn new(registration: DpsRegistration) -> Self {
        Self { registration }
    }

    /// The registration.
    pub fn registration(&self) -> &DpsRegistration {
        &self.registration
    }
}

impl Provider for DpsProvider {
    fn name(&self) -> &'static str {
        "azure-dps"
    }

    fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError> {
        self.registration.connect_params(now)
    }

    fn telemetry_topic(&self, _publish: &connector_core::Publish) -> Result<String, ProviderError> {
        Err(ProviderError::Unsupported { what: "telemetry on a DPS connection".into() })
    }

    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        self.registration.subscriptions()
    }

    /// Response topics stay [`Inbound::Message`] (routed by topic to the waiting client,
    /// which parses them with [`DpsResponse::parse`]); anything else is
    /// [`Inbound::Malformed`] with the reason.
    fn classify(&self, message: InboundMessage) -> Inbound {
        match DpsTopic::parse(&message.topic) {
            Ok(DpsTopic::Response { .. }) => Inbound::Message(message),
            Ok(_) => Inbound::Malformed {
                topic: message.topic,
                reason: "a DPS request topic, not expected inbound".into(),
            },
            Err(e) => Inbound::Malformed { topic: message.topic, reason: e.to_string() },
        }
    }
}

/// How [`provision`] runs the exchange.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProvisioningOptions {
    /// Bound on the whole exchange: connecting, registering and polling (default 60 s).
    pub timeout: Duration,
    /// How long to wait for the answer to one request before sending it again (default
    /// 15 s): covers a response lost with a dropped connection.
    pub response_timeout: Duration,
    /// Reconnect backoff of the DPS connection.
    pub backoff: BackoffPolicy,
    /// The register `payload` (custom allocation data; see
    /// [`model_id_payload`](super::codec::model_id_payload) for Plug and Play).
    pub payload: Option<Value>,
}

impl Default for ProvisioningOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            response_timeout: Duration::from_secs(15),
            backoff: BackoffPolicy::default(),
            payload: None,
        }
    }
}

impl ProvisioningOptions {
    /// Sets the bound on the whole exchange.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets the per-request response timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
    /// Sets the reconnect backoff of the DPS connection.
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.backoff = backoff;
        self
    }
    /// Sets the register payload.
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }
}

/// Why provisioning (or connecting after it) failed. No message carries a key, token or
/// private key.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    /// DPS refused the credentials: CONNACK 4 or 5, or a 401/403 response (wrong key,
    /// unknown registration, certificate not enrolled).
    #[error("not authorized by DPS: {reason}")]
    Unauthorized {
        /// The CONNACK reason or the response message.
        reason: String,
    },
    /// DPS refused the CONNECT for another reason that retrying cannot fix (bad protocol
    /// version, client id rejected).
    #[error("DPS refused the connection (code {code}): {reason}")]
    Refused {
        /// CONNACK return code.
        code: u8,
        /// Its meaning.
        reason: String,
    },
    /// The enrollment (or its group) is disabled.
    #[error("the enrollment of `{registration_id}` is disabled")]
    Disabled {
        /// The registration id.
        registration_id: String,
    },
    /// The registration failed: an error response, or an operation that ended `failed`
    /// or `unassigned`.
    #[error("registration failed with status {status} (error code {error_code:?}): {message}")]
    Failed {
        /// The response status.
        status: u16,
        /// `errorCode`, when given.
        error_code: Option<u64>,
        /// The service's message.
        message: String,
    },
    /// The exchange did not finish within [`ProvisioningOptions::timeout`].
    #[error("provisioning timed out after {after:?} while {stage}{}", last_failure.as_ref().map(|f| format!(" (last connect failure: {f})")).unwrap_or_default())]
    Timeout {
        /// The time allowed.
        after: Duration,
        /// What the client was doing: `connecting`, `waiting for a response`, …
        stage: &'static str,
        /// The last failed connect attempt, when there was one.
        last_failure: Option<ConnectFailure>,
    },
    /// The connect parameters could not be produced (an unusable key, for instance).
    #[error("credentials: {message}")]
    Credentials {
        /// What the provider said.
        message: String,
    },
    /// A response DPS sent could not be understood.
    #[error("unexpected DPS response")]
    Protocol(#[from] DpsError),
    /// Subscribing or publishing through the connector failed.
    #[error("connector: {message}")]
    Connector {
        /// What failed.
        message: String,
    },
    /// The hub connection could not be configured from the assignment.
    #[error("hub configuration")]
    Hub(#[from] AzureError),
}

/// Runs the DPS exchange for `registration` and returns the assignment. Needs a running
/// actix system. The DPS connection is stopped before this returns, whatever the outcome.
pub async fn provision(
    registration: &DpsRegistration,
    opts: &ProvisioningOptions,
) -> Result<Assignment, ProvisioningError> {
    let deadline = Instant::now() + opts.timeout;
    let (tx, events) = mpsc::channel(64);
    let conn = Connector::builder(DpsProvider::new(registration.clone()))
        .backoff(opts.backoff.clone())
        .events_to(tx)
        .start();
    info!(registration_id = %registration.registration_id(), id_scope = %registration.id_scope(), "dps provisioning started");
    let mut exchange =
        Exchange { conn: &conn, reg: registration, opts, events, deadline, next_rid: 0, last_failure: None };
    let result = exchange.run().await;
    conn.stop().await;
    match &result {
        Ok(a) => info!(
            registration_id = %registration.registration_id(),
            assigned_hub = %a.assigned_hub,
            device_id = %a.device_id,
            "dps device assigned"
        ),
        Err(e) => {
            warn!(registration_id = %registration.registration_id(), error = %e, "dps provisioning failed")
        }
    }
    result
}

/// The hub provider for an assignment: the assigned hub and device id with the
/// registration's symmetric key (derived for group members), or with its X.509 identity
/// when `hub_options` has none. Trust roots and ciphers unset in `hub_options` are taken
/// from the registration's [`DpsOptions`](super::DpsOptions).
pub fn hub_provider(
    registration: &DpsRegistration,
    assignment: &Assignment,
    mut hub_options: AzureOptions,
) -> Result<AzureProvider, AzureError> {
    let cs = registration.hub_connection_string(assignment)?;
    if let (DpsAuth::X509(id), None) = (registration.auth(), &hub_options.x509) {
        hub_options.x509 = Some(id.clone());
    }
    let dps = registration.options();
    if hub_options.trust_roots.is_none() {
        hub_options.trust_roots = dps.trust_roots.clone();
    }
    if hub_options.ciphers.is_none() {
        hub_options.ciphers = dps.ciphers.clone();
    }
    AzureProvider::new(cs, hub_options)
}

/// A provisioned device: where it was assigned and its running hub connection.
#[derive(Debug)]
#[non_exhaustive]
pub struct Provisioned {
    /// The assignment DPS returned.
    pub assignment: Assignment,
    /// The started hub connection (it may still be connecting: see
    /// [`Connector::wait_connected`]).
    pub connector: Connector,
}

/// Provisions, then starts the hub connection for the assignment with default connector
/// settings (see [`provision_then_connect_with`]).
pub async fn provision_then_connect(
    registration: &DpsRegistration,
    hub_options: AzureOptions,
    opts: &ProvisioningOptions,
) -> Result<Provisioned, ProvisioningError> {
    provision_then_connect_with(registration, hub_options, opts, |b| b).await
}

/// Provisions, builds the [`AzureProvider`] for the assigned hub ([`hub_provider`]) and
/// starts a [`Connector`] on it, after `configure` has set the builder (backoff, offline
/// queue, metrics…).
pub async fn provision_then_connect_with(
    registration: &DpsRegistration,
    hub_options: AzureOptions,
    opts: &ProvisioningOptions,
    configure: impl FnOnce(ConnectorBuilder) -> ConnectorBuilder,
) -> Result<Provisioned, ProvisioningError> {
    let assignment = provision(registration, opts).await?;
    let provider = hub_provider(registration, &assignment, hub_options)?;
    info!(
        device_id = %assignment.device_id,
        broker = %provider.broker_uri(),
        "connecting to the assigned hub"
    );
    let connector = configure(Connector::builder(provider)).start();
    Ok(Provisioned { assignment, connector })
}

/// The request in progress.
#[derive(Debug, Clone)]
enum Request {
    Register,
    Poll(String),
}

struct Exchange<'a> {
    conn: &'a Connector,
    reg: &'a DpsRegistration,
    opts: &'a ProvisioningOptions,
    events: mpsc::Receiver<ConnectionEvent>,
    deadline: Instant,
    next_rid: u64,
    last_failure: Option<ConnectFailure>,
}

impl Exchange<'_> {
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
            None => Err(ProvisioningError::Connector { message: "the DPS connection stopped".into() }),
            Some(ConnectionEvent::Connected { .. }) => Ok(true),
            Some(ConnectionEvent::ConnectionFailed { reason, retry_in }) => {
                debug!(reason = %reason, retry_in = ?retry_in, "dps connect attempt failed");
                match reason {
                    ConnectFailure::Refused { code: 4 | 5, reason } => {
                        Err(ProvisioningError::Unauthorized { reason })
                    }
                    ConnectFailure::Refused { code: code @ (1 | 2), reason } => {
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
            Some(ConnectionEvent::Stopped { reason }) => {
                Err(ProvisioningError::Connector { message: format!("the DPS connection stopped: {reason}") })
            }
            Some(_) => Ok(false),
        }
    }

    async fn until_connected(&mut self) -> Result<(), ProvisioningError> {
        loop {
            let event = tokio::time::timeout_at(self.deadline, self.events.recv())
                .await
                .map_err(|_| self.timeout("connecting"))?;
            if self.on_event(event)? {
                return Ok(());
            }
        }
    }

    async fn run(&mut self) -> Result<Assignment, ProvisioningError> {
        self.until_connected().await?;
        let (_, mut responses) = self
            .conn
            .subscriber()
            .stream(DpsTopic::ResponsesFilter.assemble(), QoS::AtLeastOnce, 16)
            .await
            .map_err(|e| ProvisioningError::Connector { message: format!("subscribe: {e}") })?;
        let mut request = Request::Register;
        loop {
            let rid = {
                self.next_rid += 1;
                self.next_rid.to_string()
            };
            let packet = match &request {
                Request::Register => self.reg.register(&rid, self.opts.payload.as_ref()),
                Request::Poll(op) => self.reg.poll(&rid, op),
            };
            debug!(request = ?request, rid = %rid, "dps request");
            let published = self
                .conn
                .publisher()
                .publish(Publish::to_topic(packet.topic, packet.payload).qos(QoS::AtLeastOnce));
            match tokio::time::timeout_at(self.deadline, published).await {
                Err(_) => return Err(self.timeout("sending a request")),
                Ok(Err(
                    e @ (PublishError::Invalid(_) | PublishError::Stopped | PublishError::Persistence(_)),
                )) => {
                    return Err(ProvisioningError::Connector { message: format!("publish: {e}") });
                }
                Ok(Err(e)) => {
                    // No PUBACK (link lost, ack timeout): the request may still have
                    // arrived. Wait for its answer; it is sent again after a reconnect or
                    // the response timeout.
                    debug!(error = %e, "dps request not acknowledged");
                }
                Ok(Ok(_)) => {}
            }
            let Some(response) = self.response(&rid, &mut responses).await? else {
                continue;
            };
            match response.next_step()? {
                NextStep::Assigned(a) => return Ok(a),
                NextStep::Poll { operation_id, after } => {
                    debug!(operation_id = %operation_id, retry_after = ?after, "dps assigning; polling");
                    request = Request::Poll(operation_id);
                    self.wait(after).await?;
                }
                NextStep::Retry { after } => {
                    debug!(status = response.status, retry_after = ?after, "dps asked to retry");
                    self.wait(after).await?;
                }
                NextStep::Failed { status, error_code, message } => {
                    let disabled = matches!(&response.body,
                        ResponseBody::Operation(op) if op.status == OperationStatus::Disabled);
                    return Err(if disabled {
                        ProvisioningError::Disabled { registration_id: self.reg.registration_id().to_owned() }
                    } else if matches!(status, 401 | 403) {
                        ProvisioningError::Unauthorized { reason: message }
                    } else {
                        ProvisioningError::Failed { status, error_code, message }
                    });
                }
            }
        }
    }

    /// Waits `after` (DPS's `retry-after`) unless that passes the deadline.
    async fn wait(&mut self, after: Duration) -> Result<(), ProvisioningError> {
        if Instant::now() + after > self.deadline {
            return Err(self.timeout("waiting for retry-after"));
        }
        tokio::time::sleep(after).await;
        Ok(())
    }

    /// The response to request `rid` (responses to earlier requests are skipped), or
    /// `None` when the request should be sent again: the link dropped and came back, or
    /// no answer came within the response timeout.
    async fn response(
        &mut self,
        rid: &str,
        responses: &mut (impl Stream<Item = Inbound> + Unpin),
    ) -> Result<Option<DpsResponse>, ProvisioningError> {
        let resend_at = (Instant::now() + self.opts.response_timeout).min(self.deadline);
        let mut dropped = false;
        loop {
            tokio::select! {
                event = self.events.recv() => {
                    if matches!(event, Some(ConnectionEvent::Disconnected { .. })) {
                        debug!("dps connection dropped while waiting for a response");
                        dropped = true;
                    } else if self.on_event(event)? && dropped {
                        return Ok(None);
                    }
                }
                inbound = responses.next() => {
                    let Some(Inbound::Message(m)) = inbound else {
                        return Err(ProvisioningError::Connector { message: "the response stream ended".into() });
                    };
                    let r = DpsResponse::parse(&m.topic, &m.payload)?;
                    if r.request_id == rid {
                        debug!(status = r.status, rid = %rid, "dps response");
                        return Ok(Some(r));
                    }
                    debug!(rid = %r.request_id, expected = %rid, "stale dps response skipped");
                }
                () = tokio::time::sleep_until(resend_at) => {
                    if resend_at >= self.deadline {
                        return Err(self.timeout("waiting for a response"));
                    }
                    debug!(rid = %rid, "no dps response in time; sending the request again");
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dps::DpsOptions;
    use crate::sas::SasKey;

    fn provider() -> DpsProvider {
        let key = SasKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        DpsProvider::new(
            DpsRegistration::new(
                "0ne00000A0A",
                "device-01",
                DpsAuth::SymmetricKey(key),
                DpsOptions::default(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn the_provider_subscribes_to_responses_and_classifies_them() {
        let p = provider();
        assert_eq!(p.name(), "azure-dps");
        assert_eq!(p.subscriptions()[0].filter, "$dps/registrations/res/#");
        let params = p.connect_params(SystemTime::now()).unwrap();
        assert_eq!(params.client_id, "device-01");
        assert!(params.password.is_some());
        let res = InboundMessage::new(
            "$dps/registrations/res/202/?$rid=1&retry-after=3",
            &b"{}"[..],
            QoS::AtLeastOnce,
        );
        assert!(matches!(p.classify(res), Inbound::Message(_)));
        let req = InboundMessage::new(
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            &b"{}"[..],
            QoS::AtLeastOnce,
        );
        assert!(matches!(p.classify(req), Inbound::Malformed { .. }));
        let other = InboundMessage::new("devices/d/messages/devicebound/", &b""[..], QoS::AtLeastOnce);
        assert!(matches!(p.classify(other), Inbound::Malformed { .. }));
        assert!(matches!(
            p.encode_publish(&Publish::telemetry(&b"x"[..])),
            Err(ProviderError::Unsupported { .. })
        ));
        let register = p.registration().register("1", None);
        let packet =
            p.encode_publish(&Publish::to_topic(register.topic.clone(), register.payload.clone())).unwrap();
        assert_eq!(packet.topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
    }

    #[test]
    fn errors_name_no_secret_and_options_build() {
        let opts = ProvisioningOptions::default()
            .timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(1))
            .payload(serde_json::json!({"modelId": "dtmi:com:example:Thermostat;1"}));
        assert_eq!(opts.timeout, Duration::from_secs(5));
        let e = ProvisioningError::Timeout {
            after: opts.timeout,
            stage: "connecting",
            last_failure: Some(ConnectFailure::Timeout),
        };
        assert_eq!(
            e.to_string(),
            "provisioning timed out after 5s while connecting (last connect failure: timed out waiting for CONNACK)"
        );
    }
}
