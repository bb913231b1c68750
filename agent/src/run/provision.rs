//! Obtaining an identity: static credentials, the cache, or provisioning (Azure DPS, AWS
//! fleet provisioning by claim).

use std::time::{Instant, SystemTime};

use connector_actors::{Connector, ConnectorBuilder};
use connector_aws::fleet::client::{
    device_options, provision as fleet_provision, FleetRequest, ProvisioningOptions as FleetOptions,
};
use connector_aws::fleet::{IdentityStore, TemplateName};
use connector_aws::{AwsOptions, AwsProvider, SigV4Auth, X509Credentials};
use connector_azure::dps::client::{provision, ProvisioningOptions};
use connector_azure::dps::{DpsAuth, DpsOptions, DpsRegistration};
use connector_azure::{
    AzureOptions, AzureProvider, ConnectionString, Credential, SasKey, Transport, X509Identity,
};
use connector_core::{BackoffPolicy, ConnectionEvent, MqttVersion, PemSource, TopicAliasing};
use std::time::Duration;
use tracing::warn;

use super::session::{is_auth_refusal, Session};
use super::telemetry::Flavour;
use crate::config::{self, AwsAuth, AwsSettings, AzureAuth, AzureSettings, Cloud, DpsAttestation};
use crate::identity::{CachedIdentity, IdentityCache};
use crate::metrics::AgentMetrics;

/// The fleet identity store's directory inside the identity cache.
pub const FLEET_DIR: &str = "aws-fleet";

/// An identity the connector can run on.
pub(crate) struct Obtained {
    /// A connector builder on the identity's provider.
    pub builder: ConnectorBuilder,
    /// How telemetry is addressed.
    pub flavour: Flavour,
    /// Device id / thing name.
    pub device: String,
    /// Hub / endpoint.
    pub hub: String,
    /// `dps`, `fleet`, `cache` or `static`.
    pub source: &'static str,
    /// Provisioned (DPS, fleet): a refusal re-provisions.
    pub provisioned: bool,
}

/// Forgets every cached identity (the next start provisions again).
pub(crate) fn forget(cache: &IdentityCache) {
    if let Err(e) = cache.clear() {
        warn!(error = %e, "cannot clear the identity cache");
    }
    if let Err(e) = IdentityStore::new(cache.dir().join(FLEET_DIR)).remove() {
        warn!(error = %e, "cannot clear the fleet identity");
    }
}

fn azure(
    provider: AzureProvider,
    device: String,
    hub: String,
    source: &'static str,
    provisioned: bool,
) -> Obtained {
    Obtained {
        builder: Connector::builder(provider),
        flavour: Flavour::Azure,
        device,
        hub,
        source,
        provisioned,
    }
}

fn azure_options(a: &AzureSettings) -> AzureOptions {
    let mut o = AzureOptions::default();
    if let Some(p) = a.port {
        o = o.port(p);
    }
    if let Some(ca) = &a.ca_file {
        o = o.trust_roots(PemSource::File(ca.clone()));
    }
    if let Some(m) = &a.model_id {
        o = o.model_id(m.clone());
    }
    if a.websocket {
        o = o.transport(Transport::WebSocket);
    }
    o.http_proxy = a.proxy.as_ref().map(|p| p.expose().to_owned());
    o
}

fn dps_registration(a: &AzureSettings, d: &config::DpsSettings) -> Result<DpsRegistration, String> {
    let auth = match &d.attestation {
        DpsAttestation::SymmetricKey(k) => {
            DpsAuth::SymmetricKey(SasKey::from_base64(k.expose()).map_err(|e| e.to_string())?)
        }
        DpsAttestation::GroupKey(k) => {
            DpsAuth::GroupKey(SasKey::from_base64(k.expose()).map_err(|e| e.to_string())?)
        }
        DpsAttestation::X509 { cert_file, key_file } => DpsAuth::X509(
            X509Identity::from_pem_files(cert_file, key_file, None, SystemTime::now())
                .map_err(|e| e.to_string())?,
        ),
    };
    let opts = DpsOptions {
        endpoint: d.endpoint.clone(),
        port: d.port,
        trust_roots: a.ca_file.clone().map(PemSource::File),
        http_proxy: a.proxy.as_ref().map(|p| p.expose().to_owned()),
        ..DpsOptions::default()
    };
    DpsRegistration::new(d.id_scope.clone(), d.registration_id.clone(), auth, opts).map_err(|e| e.to_string())
}

/// The hub provider for an assignment (as `dps::client::hub_provider`, from cached parts).
fn hub_provider(
    a: &AzureSettings,
    reg: &DpsRegistration,
    hub: &str,
    device: &str,
) -> Result<AzureProvider, String> {
    let mut opts = azure_options(a);
    let credential = match reg.device_key() {
        Some(k) => Credential::DeviceKey(k.clone()),
        None => Credential::X509,
    };
    if let DpsAuth::X509(id) = reg.auth() {
        opts = opts.x509(id.clone());
    }
    let cs = ConnectionString::new(hub, device, credential).map_err(|e| e.to_string())?;
    AzureProvider::new(cs, opts).map_err(|e| e.to_string())
}

/// One attempt at an identity for Azure.
async fn azure_identity(
    a: &AzureSettings,
    cache: &IdentityCache,
    use_cache: bool,
) -> Result<Obtained, String> {
    match &a.auth {
        AzureAuth::ConnectionString(cs) => {
            let parsed: ConnectionString =
                cs.expose().parse().map_err(|e: connector_azure::ConnectionStringError| e.to_string())?;
            let device = parsed.device_id().to_owned();
            let hub = parsed.host_name().to_owned();
            let provider = AzureProvider::new(parsed, azure_options(a)).map_err(|e| e.to_string())?;
            Ok(azure(provider, device, hub, "static", false))
        }
        AzureAuth::X509 { host_name, device_id, cert_file, key_file } => {
            let id = X509Identity::from_pem_files(cert_file, key_file, None, SystemTime::now())
                .map_err(|e| e.to_string())?;
            let cs = ConnectionString::new(host_name.clone(), device_id.clone(), Credential::X509)
                .map_err(|e| e.to_string())?;
            let provider = AzureProvider::new(cs, azure_options(a).x509(id)).map_err(|e| e.to_string())?;
            Ok(azure(provider, device_id.clone(), host_name.clone(), "static", false))
        }
        AzureAuth::Dps(d) => {
            let reg = dps_registration(a, d)?;
            let key = format!("azure-dps:{}:{}/{}", d.endpoint, d.id_scope, d.registration_id);
            if use_cache {
                if let Some(c) = cache.load(&key) {
                    let provider = hub_provider(a, &reg, &c.hub, &c.device_id)?;
                    return Ok(azure(provider, c.device_id, c.hub, "cache", true));
                }
            }
            let popts = ProvisioningOptions::default().timeout(d.timeout);
            let assignment = provision(&reg, &popts).await.map_err(|e| format!("DPS: {e}"))?;
            let id = CachedIdentity::new("azure", &key, &assignment.assigned_hub, &assignment.device_id);
            if let Err(e) = cache.store(&id) {
                warn!(error = %e, dir = %cache.dir().display(), "cannot cache the provisioned identity");
            }
            let provider = hub_provider(a, &reg, &assignment.assigned_hub, &assignment.device_id)?;
            Ok(azure(provider, assignment.device_id, assignment.assigned_hub, "dps", true))
        }
    }
}

/// Retries [`azure_identity`] with backoff until it succeeds (the caller races it with
/// the shutdown signals).
fn aws_options(a: &AwsSettings, thing: &str, auth: connector_aws::AwsAuth) -> AwsOptions {
    let mut o = AwsOptions::new(a.endpoint.clone(), thing, auth);
    if let Some(p) = a.port {
        o = o.port(p);
    }
    if let Some(ca) = &a.ca_file {
        o = o.trust_roots(PemSource::File(ca.clone()));
    }
    if let Some(p) = &a.proxy {
        o = o.http_proxy(p.expose());
    }
    o
}

/// A certificate identity over 8883, or 443 with ALPN (`aws.auth = "certificate-alpn"`).
fn certificate(a: &AwsSettings, creds: X509Credentials) -> connector_aws::AwsAuth {
    if a.alpn {
        connector_aws::AwsAuth::CertificateAlpn(creds)
    } else {
        connector_aws::AwsAuth::Certificate(creds)
    }
}

/// Options of configured (not provisioned) credentials: the thing name, else the client id.
fn configured(a: &AwsSettings, auth: connector_aws::AwsAuth) -> AwsOptions {
    let thing = a.thing_name.clone().or_else(|| a.client_id.clone()).unwrap_or_default();
    let mut opts = aws_options(a, &thing, auth);
    if let Some(c) = &a.client_id {
        opts = opts.client_id(c.clone());
    }
    opts
}

/// The device connection: MQTT 5 (message properties travel as user properties), with up
/// to `aws.topic_aliases` topic aliases. Set here rather than in [`aws_options`]: the claim
/// connection of fleet provisioning is MQTT 3.1.1, which has no topic aliases.
fn aws(
    opts: AwsOptions,
    a: &AwsSettings,
    source: &'static str,
    provisioned: bool,
) -> Result<Obtained, String> {
    let thing = opts.thing_name.clone();
    let opts = opts.mqtt_version(MqttVersion::V5).topic_aliasing(topic_aliasing(a.topic_aliases));
    let provider = AwsProvider::new(opts).map_err(|e| e.to_string())?;
    Ok(Obtained {
        builder: Connector::builder(provider),
        flavour: Flavour::Aws { thing: thing.clone() },
        device: thing,
        hub: a.endpoint.clone(),
        source,
        provisioned,
    })
}

/// `aws.topic_aliases`: 0 is off.
fn topic_aliasing(max: u16) -> TopicAliasing {
    match max {
        0 => TopicAliasing::Disabled,
        max => TopicAliasing::Lru { max },
    }
}

/// One attempt at an identity for AWS IoT Core.
async fn aws_identity(a: &AwsSettings, cache: &IdentityCache, use_cache: bool) -> Result<Obtained, String> {
    match &a.auth {
        AwsAuth::Certificate { cert_file, key_file } => aws(
            configured(a, certificate(a, X509Credentials::from_files(cert_file, key_file))),
            a,
            "static",
            false,
        ),
        AwsAuth::SigV4(v) => {
            let auth = SigV4Auth::new(v.credentials.source()).region(v.region.clone());
            aws(configured(a, connector_aws::AwsAuth::SigV4(auth)), a, "static", false)
        }
        AwsAuth::CustomAuthorizer(c) => {
            aws(configured(a, connector_aws::AwsAuth::CustomAuthorizer(c.clone())), a, "static", false)
        }
        AwsAuth::FleetProvisioning {
            template_name,
            claim_cert_file,
            claim_key_file,
            parameters,
            timeout,
        } => {
            let store = IdentityStore::new(cache.dir().join(FLEET_DIR));
            let stored = if use_cache {
                store
                    .load()
                    .map_err(|e| format!("fleet identity store: {e}"))?
                    .filter(|id| id.is_valid_at(SystemTime::now()))
            } else {
                None
            };
            // Claim connections of many devices share the claim certificate: distinct ids.
            let claim_id = format!("claim-{}", a.thing_name.as_deref().unwrap_or("connector-agent"));
            let claim_auth = certificate(a, X509Credentials::from_files(claim_cert_file, claim_key_file));
            let claim = aws_options(a, &claim_id, claim_auth);
            let (identity, source) = match stored {
                Some(id) => (id, "cache"),
                None => {
                    let template = TemplateName::new(template_name.clone()).map_err(|e| e.to_string())?;
                    let mut request = FleetRequest::new(template);
                    for (k, v) in parameters {
                        request = request.parameter(k.clone(), v.clone());
                    }
                    let provider = AwsProvider::new(claim.clone()).map_err(|e| e.to_string())?;
                    let id = fleet_provision(provider, &request, &FleetOptions::default().timeout(*timeout))
                        .await
                        .map_err(|e| format!("fleet provisioning: {e}"))?;
                    store.save(&id).map_err(|e| format!("fleet identity store: {e}"))?;
                    (id, "fleet")
                }
            };
            aws(device_options(&claim, &identity), a, source, true)
        }
    }
}

pub(crate) async fn obtain(
    cloud: &Cloud,
    cache: &IdentityCache,
    use_cache: bool,
    metrics: &AgentMetrics,
) -> Obtained {
    let mut backoff = connector_core::Backoff::new(BackoffPolicy::default());
    let mut use_cache = use_cache;
    loop {
        let r = match cloud {
            Cloud::Azure(a) => azure_identity(a, cache, use_cache).await,
            Cloud::Aws(a) => aws_identity(a, cache, use_cache).await,
            Cloud::Embedded(_) => Err("the embedded emulator is resolved before provisioning".to_owned()),
        };
        match r {
            Ok(o) => {
                metrics.provisioning.with_label_values(&[o.source, "ok"]).inc();
                return o;
            }
            Err(e) => {
                metrics.provisioning.with_label_values(&[cloud.kind().as_str(), "error"]).inc();
                let wait = backoff.next_delay(Instant::now(), &mut connector_core::ThreadRandom);
                warn!(error = %e, retry_in = ?wait, "obtaining the device identity failed");
                say_err!("identity: {e}; retrying in {:.0?}", wait);
                use_cache = true;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Whether a connection event means the service no longer accepts the provisioned
/// identity: a CONNACK refusal (not authorised, bad credentials) of a cached identity, or
/// of a fresh one provisioned more than a minute ago; or, before the first connection of a
/// cached identity, three TLS-level refusals in a row (AWS IoT refuses an unknown or
/// inactive certificate in the handshake, not with a CONNACK).
pub(crate) fn identity_refused(ev: &ConnectionEvent, s: &Session, last_provision: Option<Instant>) -> bool {
    let recent = last_provision.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
    refused(ev, s.source == "cache", recent, s.connected_once, s.early_failures)
}

/// [`identity_refused`] on plain facts: whether the identity came from the cache, was
/// provisioned in the last minute, has connected in this session, and how many attempts
/// failed in a row before that.
fn refused(
    ev: &ConnectionEvent,
    cached: bool,
    recent: bool,
    connected_once: bool,
    early_failures: u32,
) -> bool {
    if is_auth_refusal(ev) {
        return cached || !recent;
    }
    let tls = match ev {
        // The server refusing our certificate; a server certificate we do not accept says
        // nothing about our identity.
        ConnectionEvent::ConnectionFailed {
            reason: connector_core::ConnectFailure::Tls { reason, .. },
            ..
        } => {
            use connector_core::TlsRefusal as R;
            matches!(
                reason,
                R::ClientCertificateRejected | R::ClientCertificateRequired | R::HandshakeFailure
            )
        }
        ConnectionEvent::ConnectionFailed {
            reason: connector_core::ConnectFailure::Transport { message },
            ..
        } => {
            let m = message.to_ascii_lowercase();
            ["ssl", "tls", "certificate", "handshake"].iter().any(|w| m.contains(w))
        }
        _ => return false,
    };
    tls && cached && !connected_once && early_failures >= 3
}

#[cfg(test)]
mod tests {
    use super::{refused, topic_aliasing};
    use connector_core::TopicAliasing;
    use connector_core::{ConnectFailure, ConnectionEvent, TlsRefusal};
    use std::time::Duration;

    fn failed(reason: ConnectFailure) -> ConnectionEvent {
        ConnectionEvent::ConnectionFailed { reason, retry_in: Duration::from_secs(1) }
    }

    #[test]
    fn which_failures_mean_the_identity_is_gone() {
        let not_authorized = failed(ConnectFailure::Refused { code: 5, reason: "not authorized".into() });
        let bad_credentials = failed(ConnectFailure::Refused { code: 0x86, reason: "bad".into() });
        let unavailable = failed(ConnectFailure::Refused { code: 3, reason: "server unavailable".into() });
        let tls = failed(ConnectFailure::Transport { message: "SSL routines: handshake failure".into() });
        let down = failed(ConnectFailure::Transport { message: "connection refused".into() });
        // CONNACK refusals: a cached identity at once; a fresh one only after a minute.
        assert!(refused(&not_authorized, true, false, false, 0));
        assert!(refused(&bad_credentials, true, true, true, 0));
        assert!(!refused(&not_authorized, false, true, false, 0));
        assert!(refused(&not_authorized, false, false, true, 0));
        // Other refusals never.
        assert!(!refused(&unavailable, true, false, false, 9));
        // TLS-level refusals of a cached certificate: three in a row before any connection.
        assert!(!refused(&tls, true, false, false, 2));
        assert!(refused(&tls, true, false, false, 3));
        assert!(!refused(&tls, true, false, true, 3));
        assert!(!refused(&tls, false, false, false, 3));
        // Named TLS refusals: of our certificate, yes; of the server's, never.
        let tls_failed = |reason| failed(ConnectFailure::Tls { reason, detail: "x".into() });
        assert!(refused(&tls_failed(TlsRefusal::ClientCertificateRejected), true, false, false, 3));
        assert!(!refused(&tls_failed(TlsRefusal::ClientCertificateRejected), true, false, false, 2));
        assert!(!refused(&tls_failed(TlsRefusal::UnknownCa), true, false, false, 9));
        assert!(!refused(&tls_failed(TlsRefusal::CertificateExpired), true, false, false, 9));
        // A network that is down is not a refusal.
        assert!(!refused(&down, true, false, false, 10));
    }

    #[test]
    fn topic_aliases_zero_is_off() {
        assert_eq!(topic_aliasing(0), TopicAliasing::Disabled);
        assert_eq!(topic_aliasing(16), TopicAliasing::Lru { max: 16 });
        assert_eq!(topic_aliasing(u16::MAX), TopicAliasing::Lru { max: u16::MAX });
    }
}
