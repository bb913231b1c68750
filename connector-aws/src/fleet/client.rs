//! The fleet-provisioning client: the claim exchange run over MQTT through the real actor
//! tree ([`Connector`]), the identity store, then the device connection.
//!
//! * [`FleetProvider`]: the claim connection as the connection actor sees it (the claim
//!   provider's connect parameters; answers on the fleet topics classified as messages).
//! * [`provision`]: connect with the claim, subscribe to the accepted/rejected topics
//!   *before* publishing, CreateKeysAndCertificate or CreateCertificateFromCsr, then
//!   RegisterThing with the ownership token and the template parameters, all bounded by
//!   [`ProvisioningOptions::timeout`]; returns the [`FleetIdentity`] or a typed
//!   [`ProvisioningError`]. The claim connection is always stopped.
//! * [`provision_or_load`]: the stored identity when the store holds a valid one,
//!   otherwise [`provision`] and save.
//! * [`provision_then_connect`]: the above, then a started [`Connector`] connected as the
//!   thing with its new certificate.
//!
//! Everything here runs inside an actix system (`#[actix_rt::main]`, `actix_rt::System`).
//!
//! ```no_run
//! use connector_aws::fleet::client::{provision_then_connect, FleetRequest, ProvisioningOptions};
//! use connector_aws::fleet::{IdentityStore, TemplateName};
//! use connector_aws::{AwsAuth, AwsOptions, X509Credentials};
//! use connector_core::Publish;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let claim_cert = X509Credentials::from_files("claim.cert.pem", "claim.private.key");
//! // The claim connection's client id; the device later connects as its thing.
//! let endpoint = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";
//! let claim = AwsOptions::new(endpoint, "claim-0042", AwsAuth::Certificate(claim_cert));
//! let request = FleetRequest::new(TemplateName::new("SensorFleet")?).parameter("SerialNumber", "0042");
//! let store = IdentityStore::new("/var/lib/sensor/aws-identity");
//! let done = provision_then_connect(&claim, &request, &store, &ProvisioningOptions::default()).await?;
//! println!("{:?} thing {}", done.origin, done.identity.thing_name);
//! done.connector.wait_connected(std::time::Duration::from_secs(30)).await?;
//! done.connector.publisher().publish(Publish::telemetry(&b"{\"t\":21.5}"[..])).await?;
//! done.connector.stop().await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use connector_actors::{Connector, ConnectorBuilder};
use connector_core::{
    BackoffPolicy, ConnectFailure, ConnectParams, Inbound, InboundMessage, Limits, MqttVersion, Provider,
    ProviderError, Publish, SubscriptionSpec,
};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::codec::ErrorDocument;
use super::error::{FleetError, KeyError, StoreError};
use super::exchange::Exchange;
use super::keys::{KeyAlgorithm, KeyPair};
use super::store::{FleetIdentity, IdentityStore};
use super::topics::{FleetApi, FleetTopic, TemplateName, TopicKind};
use crate::error::AwsError;
use crate::options::{AwsAuth, AwsOptions};
use crate::provider::AwsProvider;
use crate::x509::X509Credentials;

/// The claim connection as a [`Provider`]: connect parameters, limits and protocol
/// version of the claim provider; fleet answers stay [`Inbound::Message`] (routed by
/// topic to the waiting client), anything else is [`Inbound::Malformed`]. Telemetry has
/// no meaning here and is refused.
#[derive(Clone)]
pub struct FleetProvider {
    claim: Arc<dyn Provider>,
}

impl std::fmt::Debug for FleetProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetProvider").field("claim", &self.claim.name()).finish()
    }
}

impl FleetProvider {
    /// The fleet-provisioning view of the claim connection.
    pub fn new(claim: impl Provider) -> Self {
        Self { claim: Arc::new(claim) }
    }
}

impl Provider for FleetProvider {
    fn name(&self) -> &'static str {
        "aws-fleet"
    }

    fn connect_params(&self, now: SystemTime) -> Result<ConnectParams, ProviderError> {
        let mut p = self.claim.connect_params(now)?;
        // Nothing to resume: the exchange starts over on a new connection.
        p.clean_session = true;
        Ok(p)
    }

    fn telemetry_topic(&self, _publish: &Publish) -> Result<String, ProviderError> {
        Err(ProviderError::Unsupported { what: "telemetry on a fleet-provisioning claim connection".into() })
    }

    fn mqtt_version(&self) -> MqttVersion {
        self.claim.mqtt_version()
    }

    fn limits(&self) -> Limits {
        self.claim.limits()
    }

    /// None: the client subscribes to exactly the answers it waits for.
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        Vec::new()
    }

    fn classify(&self, message: InboundMessage) -> Inbound {
        match FleetTopic::parse(&message.topic) {
            Ok(FleetTopic { kind: TopicKind::Accepted | TopicKind::Rejected, .. }) => {
                Inbound::Message(message)
            }
            Ok(_) => Inbound::Malformed {
                topic: message.topic,
                reason: "a fleet-provisioning request topic, not expected inbound".into(),
            },
            Err(e) => Inbound::Malformed { topic: message.topic, reason: e.to_string() },
        }
    }
}

/// How the device obtains its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateRequest {
    /// CreateKeysAndCertificate: AWS generates the key pair (the key crosses the network
    /// once, inside TLS).
    CreateKeysAndCertificate,
    /// CreateCertificateFromCsr: the key pair is generated here and never leaves the device.
    FromCsr {
        /// The key's algorithm.
        algorithm: KeyAlgorithm,
        /// The CSR subject's CN.
        common_name: String,
    },
}

/// What to provision: the template, its parameters and the certificate method.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetRequest {
    /// The provisioning template.
    pub template: TemplateName,
    /// RegisterThing `parameters`.
    pub parameters: BTreeMap<String, String>,
    /// How the certificate is obtained.
    pub certificate: CertificateRequest,
}

impl FleetRequest {
    /// CreateKeysAndCertificate then RegisterThing through `template`, no parameters.
    pub fn new(template: TemplateName) -> Self {
        Self {
            template,
            parameters: BTreeMap::new(),
            certificate: CertificateRequest::CreateKeysAndCertificate,
        }
    }

    /// Adds a template parameter.
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.insert(name.into(), value.into());
        self
    }

    /// Uses CreateCertificateFromCsr with a new key of `algorithm` and subject CN
    /// `common_name`.
    pub fn from_csr(mut self, algorithm: KeyAlgorithm, common_name: impl Into<String>) -> Self {
        self.certificate = CertificateRequest::FromCsr { algorithm, common_name: common_name.into() };
        self
    }
}

/// How the exchange runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProvisioningOptions {
    /// Bound on the whole exchange: connecting, both requests and their answers
    /// (default 60 s).
    pub timeout: Duration,
    /// Reconnect backoff of the claim connection.
    pub backoff: BackoffPolicy,
}

impl Default for ProvisioningOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(60), backoff: BackoffPolicy::default() }
    }
}

impl ProvisioningOptions {
    /// Sets the bound on the whole exchange.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets the reconnect backoff of the claim connection.
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.backoff = backoff;
        self
    }
}

/// Why provisioning (or connecting after it) failed. No message carries a private key or
/// an ownership token.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    /// An API answered on its `/rejected` topic.
    #[error("{api} rejected ({status_code} {error_code}): {error_message}")]
    Rejected {
        /// `CreateKeysAndCertificate`, `CreateCertificateFromCsr` or `RegisterThing`.
        api: &'static str,
        /// `statusCode`.
        status_code: u16,
        /// `errorCode`.
        error_code: String,
        /// `errorMessage`.
        error_message: String,
    },
    /// The claim certificate was refused: CONNACK 4 or 5.
    #[error("claim connection not authorized: {reason}")]
    Unauthorized {
        /// The CONNACK reason.
        reason: String,
    },
    /// The broker refused the CONNECT for another reason that retrying cannot fix.
    #[error("claim connection refused (code {code}): {reason}")]
    Refused {
        /// CONNACK return code.
        code: u8,
        /// Its meaning.
        reason: String,
    },
    /// The claim provider could not produce connect parameters.
    #[error("claim credentials: {message}")]
    Credentials {
        /// What the provider said.
        message: String,
    },
    /// The exchange did not finish within [`ProvisioningOptions::timeout`].
    #[error("provisioning timed out after {after:?} while {stage}{}", last_failure.as_ref().map(|f| format!(" (last connect failure: {f})")).unwrap_or_default())]
    Timeout {
        /// The time allowed.
        after: Duration,
        /// What the client was doing: `connecting`, `waiting for the RegisterThing answer`, …
        stage: &'static str,
        /// The last failed connect attempt, when there was one.
        last_failure: Option<ConnectFailure>,
    },
    /// An answer could not be understood.
    #[error("malformed answer")]
    Malformed(#[from] FleetError),
    /// The issued certificate is unusable: unreadable, or not for the device's key.
    #[error("issued certificate")]
    Certificate(#[source] KeyError),
    /// The key pair or CSR could not be made.
    #[error("key pair")]
    Key(#[from] KeyError),
    /// Subscribing or publishing through the claim connection failed.
    #[error("claim connection: {message}")]
    Connector {
        /// What failed.
        message: String,
    },
    /// The identity store could not be read or written.
    #[error("identity store")]
    Store(#[from] StoreError),
    /// The claim connection could not be configured (unreadable claim certificate, bad
    /// endpoint…).
    #[error("claim configuration")]
    Claim(#[source] AwsError),
    /// The device connection could not be configured from the identity.
    #[error("device configuration")]
    Device(#[source] AwsError),
}

impl ProvisioningError {
    pub(super) fn rejected(api: &FleetApi, e: ErrorDocument) -> Self {
        Self::Rejected {
            api: api.name(),
            status_code: e.status_code,
            error_code: e.error_code,
            error_message: e.error_message,
        }
    }
}

/// Runs the claim exchange over a connection made with `claim` (an X.509 provider with the
/// claim certificate) and returns the new identity. Needs a running actix system. The
/// claim connection is stopped before this returns, whatever the outcome.
pub async fn provision(
    claim: impl Provider,
    request: &FleetRequest,
    opts: &ProvisioningOptions,
) -> Result<FleetIdentity, ProvisioningError> {
    // A bound past what the clock can hold (`Duration::MAX` for "no limit") is a far
    // future, not an overflow panic.
    let now = Instant::now();
    let deadline = now.checked_add(opts.timeout).unwrap_or_else(|| now + FAR_FUTURE);
    // The key (CSR flow) is made before connecting: the claim's window stays short.
    let own_key = match &request.certificate {
        CertificateRequest::CreateKeysAndCertificate => None,
        CertificateRequest::FromCsr { algorithm, common_name } => {
            let key = KeyPair::generate(*algorithm)?;
            let csr = key.csr_pem(common_name)?;
            Some((key, csr))
        }
    };
    let (tx, events) = mpsc::channel(64);
    let conn =
        Connector::builder(FleetProvider::new(claim)).backoff(opts.backoff.clone()).events_to(tx).start();
    info!(template = %request.template, csr = own_key.is_some(), "fleet provisioning started");
    let mut exchange = Exchange::new(&conn, opts, events, deadline);
    let result = exchange.run(request, own_key).await;
    conn.stop().await;
    match &result {
        Ok(id) => info!(
            thing_name = %id.thing_name,
            certificate_id = %id.certificate_id,
            "fleet provisioning done"
        ),
        Err(e) => warn!(template = %request.template, error = %e, "fleet provisioning failed"),
    }
    result
}

/// The deadline of an exchange whose timeout the clock cannot hold (about 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Whether [`provision_or_load`] provisioned or reused a stored identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Provisioned now (and saved).
    Provisioned,
    /// Loaded from the store; no request was made.
    Stored,
}

/// The identity in `store` when it holds one that is valid now; otherwise [`provision`]
/// and save the result. A store that cannot be read (corrupt, incomplete, files others
/// may read) is an error, never silently replaced; an expired certificate is provisioned
/// anew.
pub async fn provision_or_load(
    claim: impl Provider,
    request: &FleetRequest,
    store: &IdentityStore,
    opts: &ProvisioningOptions,
) -> Result<(FleetIdentity, Origin), ProvisioningError> {
    if let Some(id) = stored(store)? {
        return Ok((id, Origin::Stored));
    }
    let id = provision(claim, request, opts).await?;
    store.save(&id)?;
    Ok((id, Origin::Provisioned))
}

/// The stored identity when it is valid now.
fn stored(store: &IdentityStore) -> Result<Option<FleetIdentity>, ProvisioningError> {
    let Some(id) = store.load()? else { return Ok(None) };
    if id.is_valid_at(SystemTime::now()) {
        info!(thing_name = %id.thing_name, dir = %store.dir().display(), "using the stored fleet identity");
        return Ok(Some(id));
    }
    warn!(thing_name = %id.thing_name, "the stored certificate is not valid now; provisioning again");
    Ok(None)
}

/// The device's connection options: the claim's (endpoint, port, trust roots, protocol,
/// timeouts, telemetry topic…) with the thing as client id and its new certificate.
/// A claim on 443 with ALPN stays there; any other claim auth gives MQTT/TLS on 8883.
pub fn device_options(claim: &AwsOptions, identity: &FleetIdentity) -> AwsOptions {
    let credentials =
        X509Credentials::from_pem(identity.certificate_pem.clone(), identity.private_key.expose());
    let mut opts = claim.clone();
    opts.thing_name = identity.thing_name.clone();
    opts.client_id = None;
    opts.auth = match &claim.auth {
        AwsAuth::CertificateAlpn(_) => AwsAuth::CertificateAlpn(credentials),
        AwsAuth::Certificate(_) => AwsAuth::Certificate(credentials),
        _ => {
            opts.port = None;
            AwsAuth::Certificate(credentials)
        }
    };
    opts
}

/// A provisioned device: its identity, where it came from, and its running connection.
#[derive(Debug)]
#[non_exhaustive]
pub struct Provisioned {
    /// The identity the device connects with.
    pub identity: FleetIdentity,
    /// Provisioned now or loaded from the store.
    pub origin: Origin,
    /// The started device connection (it may still be connecting: see
    /// [`Connector::wait_connected`]).
    pub connector: Connector,
}

/// Provisions (or reuses the stored identity), then starts the device connection with
/// default connector settings (see [`provision_then_connect_with`]).
pub async fn provision_then_connect(
    claim: &AwsOptions,
    request: &FleetRequest,
    store: &IdentityStore,
    opts: &ProvisioningOptions,
) -> Result<Provisioned, ProvisioningError> {
    provision_then_connect_with(claim, request, store, opts, |b| b).await
}

/// The identity in `store` when valid, else the claim exchange with a provider built from
/// `claim` (only then: the claim certificate need not exist once the device is
/// provisioned) and the result saved; then an [`AwsProvider`] with [`device_options`]
/// and a [`Connector`] on it, after `configure` has set the builder (backoff, offline
/// queue, metrics…).
pub async fn provision_then_connect_with(
    claim: &AwsOptions,
    request: &FleetRequest,
    store: &IdentityStore,
    opts: &ProvisioningOptions,
    configure: impl FnOnce(ConnectorBuilder) -> ConnectorBuilder,
) -> Result<Provisioned, ProvisioningError> {
    let (identity, origin) = match stored(store)? {
        Some(id) => (id, Origin::Stored),
        None => {
            let provider = AwsProvider::new(claim.clone()).map_err(ProvisioningError::Claim)?;
            let id = provision(provider, request, opts).await?;
            store.save(&id)?;
            (id, Origin::Provisioned)
        }
    };
    let provider = AwsProvider::new(device_options(claim, &identity)).map_err(ProvisioningError::Device)?;
    info!(
        thing_name = %identity.thing_name,
        endpoint = %claim.endpoint,
        origin = ?origin,
        "connecting with the fleet identity"
    );
    let connector = configure(Connector::builder(provider)).start();
    Ok(Provisioned { identity, origin, connector })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::exchange::check_issued;
    use connector_core::{MqttOptions, MqttProvider, QoS, Secret};

    fn claim() -> FleetProvider {
        FleetProvider::new(MqttProvider::new(MqttOptions::new("tcp://127.0.0.1:1883", "claim-1")).unwrap())
    }

    #[test]
    fn the_provider_keeps_answers_and_refuses_the_rest() {
        let p = claim();
        assert_eq!(p.name(), "aws-fleet");
        assert!(p.subscriptions().is_empty(), "only the answers the client waits for");
        assert_eq!(p.connect_params(SystemTime::now()).unwrap().client_id, "claim-1");
        let msg = |t: &str| InboundMessage::new(t, &b"{}"[..], QoS::AtLeastOnce);
        for t in [
            "$aws/certificates/create/json/accepted",
            "$aws/certificates/create-from-csr/json/rejected",
            "$aws/provisioning-templates/T/provision/json/accepted",
        ] {
            assert!(matches!(p.classify(msg(t)), Inbound::Message(_)), "{t}");
        }
        for t in ["$aws/certificates/create/json", "$aws/things/x/shadow/get/accepted", "dt/x"] {
            assert!(matches!(p.classify(msg(t)), Inbound::Malformed { .. }), "{t}");
        }
        assert!(matches!(
            p.telemetry_topic(&Publish::telemetry("x")),
            Err(ProviderError::Unsupported { .. })
        ));
        assert_eq!(format!("{p:?}"), "FleetProvider { claim: \"mqtt\" }");
    }

    #[test]
    fn requests_and_options_build() {
        let r = FleetRequest::new(TemplateName::new("T").unwrap())
            .parameter("SerialNumber", "1")
            .from_csr(KeyAlgorithm::Rsa2048, "dev-1");
        assert_eq!(r.parameters.get("SerialNumber").map(String::as_str), Some("1"));
        assert_eq!(
            r.certificate,
            CertificateRequest::FromCsr { algorithm: KeyAlgorithm::Rsa2048, common_name: "dev-1".into() }
        );
        let o = ProvisioningOptions::default().timeout(Duration::from_secs(5));
        assert_eq!(o.timeout, Duration::from_secs(5));
    }

    #[test]
    fn device_options_keep_the_claims_transport() {
        let id = FleetIdentity::new(
            "sensor-1",
            "ab".repeat(32),
            "-----BEGIN CERTIFICATE-----\n",
            Secret::new("-----BEGIN PRIVATE KEY-----\nsecret"),
            BTreeMap::new(),
        );
        let claim_cert = X509Credentials::from_files("claim.pem", "claim.key");
        let claim = AwsOptions::new("h.example", "claim-1", AwsAuth::CertificateAlpn(claim_cert.clone()))
            .client_id("claim-client")
            .port(8443);
        let d = device_options(&claim, &id);
        assert_eq!(
            (d.thing_name.as_str(), d.effective_client_id(), d.port),
            ("sensor-1", "sensor-1", Some(8443))
        );
        let AwsAuth::CertificateAlpn(c) = &d.auth else { panic!("{:?}", d.auth) };
        assert_eq!(
            c,
            &X509Credentials::from_pem(id.certificate_pem.clone(), "-----BEGIN PRIVATE KEY-----\nsecret")
        );
        assert!(!format!("{d:?}").contains("secret"));
        let plain = AwsOptions::new("h.example", "claim-1", AwsAuth::Certificate(claim_cert));
        assert!(matches!(device_options(&plain, &id).auth, AwsAuth::Certificate(_)));
    }

    #[test]
    fn errors_read_well_and_name_no_secret() {
        let e = ProvisioningError::Rejected {
            api: "RegisterThing",
            status_code: 404,
            error_code: "ResourceNotFound".into(),
            error_message: "Template T not found".into(),
        };
        assert_eq!(e.to_string(), "RegisterThing rejected (404 ResourceNotFound): Template T not found");
        let e = ProvisioningError::Timeout {
            after: Duration::from_secs(5),
            stage: "waiting for the RegisterThing answer",
            last_failure: Some(ConnectFailure::Timeout),
        };
        assert_eq!(
            e.to_string(),
            "provisioning timed out after 5s while waiting for the RegisterThing answer (last connect failure: timed out waiting for CONNACK)"
        );
        assert!(matches!(
            check_issued("garbage", &Secret::new("secret-key")),
            Err(ProvisioningError::Certificate(KeyError::InvalidCertificate { .. }))
        ));
    }
}
