//! The AWS IoT Core device endpoint's back end: registry (things, certificates, access
//! keys, custom authorizers), live connections and their subscriptions, the Device
//! Shadow service, captured telemetry and faults. The transport (TLS, ALPN, WebSocket
//! with SigV4) is in [`transport`]; the MQTT wiring in `broker/aws.rs`.
//!
//! All state sits behind one mutex in [`AwsCore`], never held across an `.await`;
//! connections are reached through their command channel ([`AwsCmd`]).
//!
//! # Service dispatch
//! PUBLISHes on `$aws/things/{thing}/shadow/...` go to [`shadow`]. Jobs
//! (`$aws/things/{thing}/jobs/...`) and fleet provisioning (`$aws/certificates/...`,
//! `$aws/provisioning-templates/...`) reach [`unwired_service`], the one place where
//! those services are to be plugged in; today it refuses them with
//! [`ServiceRefusal::NotImplemented`], which closes the connection (what AWS IoT does
//! for an unsupported reserved topic). Their SUBSCRIBE filters are already accepted.

pub(crate) mod shadow;
pub(crate) mod sigv4;
pub(crate) mod topics;
pub(crate) mod transport;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::mpsc::UnboundedSender;
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use parking_lot::{Mutex, MutexGuard};

use self::shadow::{ShadowError, ShadowKey, ShadowOp, Shadows};
use self::topics::{AwsPublish, Unwired};
use crate::ca::CertificateAuthority;
use crate::control::aws_api::{
    AccessKey, Authorizer, AwsConnection, AwsFaults, AwsTelemetry, CertificateStatus,
};
use crate::util::{b64, b64_decode, unix_secs};

/// Largest PUBLISH payload (128 KB); above it the connection is closed.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// CONNACK return codes used for refusals.
pub(crate) mod connack {
    /// Identifier rejected.
    pub const IDENTIFIER_REJECTED: u8 = 2;
    /// Server unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 3;
    /// Bad user name or password.
    pub const BAD_CREDENTIALS: u8 = 4;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 5;
}

/// Settings from the emulator configuration.
#[derive(Clone, Debug)]
pub(crate) struct AwsSettings {
    /// Region of the SigV4 credential scope.
    pub region: String,
    /// Host names accepted in SNI, lower case.
    pub host_names: Vec<String>,
    /// Captured telemetry kept.
    pub telemetry_capacity: usize,
}

/// A command for the task that owns a connection's MQTT sink.
#[derive(Debug)]
pub(crate) enum AwsCmd {
    /// Publish to the client at QoS 0 or 1.
    Publish { topic: String, payload: Vec<u8>, qos: u8 },
    /// Close the connection, with the reason logged.
    Close(&'static str),
}

/// How a connection reached the broker (decided by the transport, before CONNECT).
#[derive(Clone, Debug)]
pub(crate) enum Transport {
    /// MQTT over TLS with a client certificate (8883, or 443 with ALPN `x-amzn-mqtt-ca`).
    Mtls,
    /// MQTT over TLS with ALPN `mqtt`: custom authorizer credentials in CONNECT.
    CustomAuthMqtt,
    /// MQTT over WebSocket, the upgrade verified with SigV4.
    SigV4 { access_key_id: String },
    /// MQTT over WebSocket authenticated by a custom authorizer in the upgrade request.
    CustomAuthWs { authorizer: String },
}

/// What the transport learned about a connection.
#[derive(Clone, Debug)]
pub(crate) struct PeerInfo {
    pub cert: Option<X509>,
    pub transport: Transport,
}

/// An accepted connection's identity.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    /// `x509`, `sigv4`, `custom-auth`.
    pub auth: &'static str,
    /// Certificate id, access key id or authorizer name.
    pub id: String,
    /// Things of the certificate.
    pub things: Vec<String>,
}

/// A live connection.
#[derive(Debug)]
pub(crate) struct AwsLive {
    pub conn_id: u64,
    pub tx: UnboundedSender<AwsCmd>,
    pub principal: Principal,
    pub subs: Vec<(String, u8)>,
}

/// A registered certificate.
#[derive(Clone, Debug)]
pub(crate) struct CertRecord {
    pub pem: String,
    pub status: CertificateStatus,
    pub things: BTreeSet<String>,
}

/// Everything mutable.
#[derive(Default)]
pub(crate) struct AwsState {
    pub things: BTreeMap<String, BTreeMap<String, String>>,
    pub certs: BTreeMap<String, CertRecord>,
    pub keys: BTreeMap<String, String>,
    pub authorizers: BTreeMap<String, Authorizer>,
    pub shadows: Shadows,
    pub conns: HashMap<String, AwsLive>,
    pub telemetry: VecDeque<AwsTelemetry>,
    pub faults: HashMap<String, AwsFaults>,
}

/// Why a reserved service refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ServiceRefusal {
    /// The service is not wired into this emulator (yet).
    #[error("the {service} service is not implemented by the emulator")]
    NotImplemented { service: &'static str },
}

/// The dispatch point of the jobs and fleet-provisioning services: returns the
/// messages to publish (topic, payload), or a refusal that closes the connection.
pub(crate) fn unwired_service(
    _core: &AwsCore,
    _st: &mut AwsState,
    request: &Unwired,
    _payload: &[u8],
) -> Result<Vec<(String, Vec<u8>)>, ServiceRefusal> {
    match request {
        Unwired::Jobs { .. } => Err(ServiceRefusal::NotImplemented { service: "jobs" }),
        Unwired::Provisioning { .. } => Err(ServiceRefusal::NotImplemented { service: "fleet provisioning" }),
    }
}

/// The shared back end.
pub(crate) struct AwsCore {
    pub settings: AwsSettings,
    pub ca: CertificateAuthority,
    state: Mutex<AwsState>,
    next_id: AtomicU64,
}

/// Lower-case hex SHA-256 of the DER certificate: the certificate id.
pub(crate) fn certificate_id(cert: &X509) -> String {
    cert.digest(MessageDigest::sha256())
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// Query parameters of a `user?k=v&…` CONNECT user name (values percent-decoded).
pub(crate) fn username_params(username: &str) -> Vec<(String, String)> {
    let Some((_, q)) = username.split_once('?') else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), crate::util::pct_decode(v).unwrap_or_else(|| v.to_string()))
        })
        .collect()
}

impl AwsCore {
    pub fn new(settings: AwsSettings, ca: CertificateAuthority) -> AwsCore {
        AwsCore { settings, ca, state: Mutex::new(AwsState::default()), next_id: AtomicU64::new(1) }
    }

    /// Locks the state. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, AwsState> {
        self.state.lock()
    }

    /// A process-unique number.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        unix_secs(SystemTime::now())
    }

    /// True when `host` is one of the endpoint's host names (SNI check).
    pub fn accepts_host(&self, host: &str) -> bool {
        self.settings.host_names.contains(&host.to_ascii_lowercase())
    }

    /// Authenticates a CONNECT; `Err` is the CONNACK code and a reason for the log.
    pub fn authenticate(
        &self,
        st: &mut AwsState,
        peer: &PeerInfo,
        client_id: &str,
        username: Option<&str>,
    ) -> Result<Principal, (u8, String)> {
        if client_id.is_empty() || client_id.len() > 128 {
            return Err((connack::IDENTIFIER_REJECTED, "client id must be 1 to 128 bytes".into()));
        }
        if let Some(code) = consume_refusal(&mut st.faults, client_id) {
            return Err((code, "refused by fault injection".into()));
        }
        match &peer.transport {
            Transport::Mtls => {
                let cert = peer
                    .cert
                    .as_ref()
                    .ok_or((connack::NOT_AUTHORIZED, "no client certificate".to_string()))?;
                if !crate::ca::currently_valid(cert) {
                    return Err((
                        connack::NOT_AUTHORIZED,
                        "client certificate is not currently valid".into(),
                    ));
                }
                let id = certificate_id(cert);
                let rec = st
                    .certs
                    .get(&id)
                    .ok_or((connack::NOT_AUTHORIZED, "certificate is not registered".to_string()))?;
                if rec.status != CertificateStatus::Active {
                    return Err((connack::NOT_AUTHORIZED, "certificate is not ACTIVE".into()));
                }
                Ok(Principal { auth: "x509", id, things: rec.things.iter().cloned().collect() })
            }
            Transport::SigV4 { access_key_id } => {
                Ok(Principal { auth: "sigv4", id: access_key_id.clone(), things: Vec::new() })
            }
            Transport::CustomAuthWs { authorizer } => {
                Ok(Principal { auth: "custom-auth", id: authorizer.clone(), things: Vec::new() })
            }
            Transport::CustomAuthMqtt => {
                let params = username_params(username.unwrap_or_default());
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                let name = custom_authorize(
                    &st.authorizers,
                    get("x-amz-customauthorizer-name"),
                    get("x-amz-customauthorizer-signature"),
                    |key| get(key).map(str::to_owned),
                )
                .map_err(|r| (connack::NOT_AUTHORIZED, r))?;
                Ok(Principal { auth: "custom-auth", id: name, things: Vec::new() })
            }
        }
    }

    /// Registers an accepted connection, closing an older one with the same client id.
    pub fn register(&self, st: &mut AwsState, client_id: &str, live: AwsLive) {
        if let Some(old) = st.conns.insert(client_id.to_string(), live) {
            tracing::info!(
                client_id,
                old_conn = old.conn_id,
                "new connection replaces the existing one (DUPLICATE_CLIENTID)"
            );
            let _ = old.tx.unbounded_send(AwsCmd::Close("duplicate client id"));
        }
    }

    /// Forgets an ended connection (no effect when it was already replaced).
    pub fn connection_closed(&self, client_id: &str, conn_id: u64) {
        let mut st = self.lock();
        if st.conns.get(client_id).is_some_and(|l| l.conn_id == conn_id) {
            st.conns.remove(client_id);
        }
    }

    /// Applies a SUBSCRIBE; the granted QoS per filter (`None`: failure).
    pub fn subscribe(&self, client_id: &str, conn_id: u64, filters: &[(String, u8)]) -> Vec<Option<u8>> {
        let mut st = self.lock();
        let Some(live) = st.conns.get_mut(client_id).filter(|l| l.conn_id == conn_id) else {
            return vec![None; filters.len()];
        };
        filters
            .iter()
            .enumerate()
            .map(|(i, (f, q))| {
                // At most 8 filters per SUBSCRIBE.
                if i >= 8 || !topics::filter_allowed(f) {
                    return None;
                }
                let q = (*q).min(1);
                live.subs.retain(|(s, _)| s != f);
                live.subs.push((f.clone(), q));
                Some(q)
            })
            .collect()
    }

    /// Applies an UNSUBSCRIBE.
    pub fn unsubscribe(&self, client_id: &str, conn_id: u64, filters: &[String]) {
        let mut st = self.lock();
        if let Some(live) = st.conns.get_mut(client_id).filter(|l| l.conn_id == conn_id) {
            live.subs.retain(|(s, _)| !filters.contains(s));
        }
    }

    /// Sends a message to every connection subscribed to `topic` (one copy each, at the
    /// highest QoS among its matching filters). Returns how many received it.
    pub fn deliver(&self, st: &AwsState, topic: &str, payload: &[u8]) -> usize {
        let mut n = 0;
        for live in st.conns.values() {
            let qos = live.subs.iter().filter(|(f, _)| topics::matches(f, topic)).map(|(_, q)| *q).max();
            if let Some(qos) = qos {
                let cmd = AwsCmd::Publish { topic: topic.to_string(), payload: payload.to_vec(), qos };
                if live.tx.unbounded_send(cmd).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Handles a device PUBLISH; `Err` closes the connection with that reason.
    pub fn on_publish(
        &self,
        client_id: &str,
        principal: &Principal,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
    ) -> Result<(), String> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(format!("payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}", payload.len()));
        }
        if retain {
            return Err("retained messages are not implemented by the emulator".into());
        }
        let kind = topics::classify(topic).map_err(|e| e.to_string())?;
        let now = self.now();
        let mut st = self.lock();
        match kind {
            AwsPublish::User => {
                let seq = self.next_id();
                let cap = self.settings.telemetry_capacity;
                st.telemetry.push_back(AwsTelemetry {
                    sequence_number: seq,
                    client_id: client_id.to_string(),
                    things: principal.things.clone(),
                    topic: topic.to_string(),
                    payload: std::str::from_utf8(payload).ok().map(str::to_owned),
                    payload_base64: b64(payload),
                    qos,
                    received_at_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                });
                while st.telemetry.len() > cap {
                    st.telemetry.pop_front();
                }
                self.deliver(&st, topic, payload);
                Ok(())
            }
            AwsPublish::Shadow { key, op } => {
                let throttled = consume_throttle(&mut st.faults, client_id);
                let out = if throttled {
                    vec![shadow::rejection(op, &ShadowError::new(429, "Too Many Requests"), payload, now)]
                } else if !st.things.contains_key(&key.thing) {
                    vec![shadow::rejection(op, &ShadowError::new(404, "Thing not found"), payload, now)]
                } else {
                    st.shadows.handle(&key, op, payload, now)
                };
                tracing::debug!(client_id, thing = %key.thing, shadow = ?key.name, op = op.as_str(), "shadow request");
                self.publish_shadow(&st, &key, &out);
                Ok(())
            }
            AwsPublish::Service(req) => {
                let out = unwired_service(self, &mut st, &req, payload).map_err(|e| e.to_string())?;
                for (t, p) in out {
                    self.deliver(&st, &t, &p);
                }
                Ok(())
            }
        }
    }

    /// Publishes shadow service output under the shadow's prefix.
    pub fn publish_shadow(&self, st: &AwsState, key: &ShadowKey, out: &[shadow::Outgoing]) {
        let prefix = key.prefix();
        for o in out {
            self.deliver(st, &format!("{prefix}/{}", o.suffix), o.document.to_string().as_bytes());
        }
    }

    /// A shadow request from the control API (a cloud application): same service;
    /// updates and deletes publish to MQTT subscribers as device requests do. `Ok` is the accepted document, `Err` the error document's
    /// code and document.
    pub fn service_shadow(
        &self,
        key: &ShadowKey,
        op: ShadowOp,
        payload: &[u8],
    ) -> Result<serde_json::Value, (u16, serde_json::Value)> {
        let now = self.now();
        let mut st = self.lock();
        if !st.things.contains_key(&key.thing) {
            let e = ShadowError::new(404, "Thing not found");
            return Err((404, e.document(None, now)));
        }
        let out = st.shadows.handle(key, op, payload, now);
        // An HTTP get answers the caller only; updates and deletes publish as from MQTT.
        if op != ShadowOp::Get {
            self.publish_shadow(&st, key, &out);
        }
        let first = out.first().map(|o| (o.suffix, o.document.clone()));
        match first {
            Some((suffix, doc)) if suffix.ends_with("/accepted") => Ok(doc),
            Some((_, doc)) => {
                Err((doc["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(500), doc))
            }
            None => Err((500, serde_json::json!({"code": 500, "message": "Internal service failure"}))),
        }
    }

    /// Closes the connections whose principal is `id` (deactivated certificate, …).
    pub fn close_principal(&self, st: &AwsState, id: &str, reason: &'static str) {
        for live in st.conns.values().filter(|l| l.principal.id == id) {
            let _ = live.tx.unbounded_send(AwsCmd::Close(reason));
        }
    }

    /// Live connections for the control API.
    pub fn connections(&self) -> Vec<AwsConnection> {
        let st = self.lock();
        let mut v: Vec<AwsConnection> = st
            .conns
            .iter()
            .map(|(c, l)| AwsConnection {
                client_id: c.clone(),
                auth: l.principal.auth.to_string(),
                principal: l.principal.id.clone(),
                subscriptions: l.subs.iter().map(|(f, _)| f.clone()).collect(),
            })
            .collect();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        v
    }

    /// A new access key pair.
    pub fn create_access_key(&self) -> AccessKey {
        let id = format!("AKIA{}", crate::util::random_hex(8).to_ascii_uppercase());
        let secret = b64(&crate::util::random_bytes(30));
        self.lock().keys.insert(id.clone(), secret.clone());
        AccessKey { access_key_id: id, secret_access_key: secret }
    }
}

/// Uses up a refusal fault; the CONNACK code while it applies.
fn consume_refusal(faults: &mut HashMap<String, AwsFaults>, client_id: &str) -> Option<u8> {
    let f = faults.get_mut(client_id)?;
    let code = f.refuse_connect?;
    consume(faults, client_id).then_some(code)
}

/// Uses up a throttle fault; true while it applies.
fn consume_throttle(faults: &mut HashMap<String, AwsFaults>, client_id: &str) -> bool {
    if !faults.get(client_id).is_some_and(|f| f.throttle_shadow) {
        return false;
    }
    consume(faults, client_id)
}

fn consume(faults: &mut HashMap<String, AwsFaults>, client_id: &str) -> bool {
    let Some(f) = faults.get_mut(client_id) else { return false };
    let active = match &mut f.count {
        None => true,
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
    };
    if f.count == Some(0) {
        faults.remove(client_id);
    }
    active
}

/// The custom authorizer "Lambda": picks the named (or default) authorizer, verifies the
/// token signature when the authorizer has a signing key, and accepts tokens on its
/// allow-list. Returns the authorizer name.
pub(crate) fn custom_authorize(
    authorizers: &BTreeMap<String, Authorizer>,
    name: Option<&str>,
    signature: Option<&str>,
    token_of: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let (name, auth) = match name {
        Some(n) => (n.to_string(), authorizers.get(n).ok_or_else(|| format!("no authorizer {n:?}"))?),
        None => authorizers
            .iter()
            .find(|(_, a)| a.default)
            .map(|(n, a)| (n.clone(), a))
            .ok_or_else(|| "no authorizer named and no default authorizer".to_string())?,
    };
    let token = token_of(&auth.token_key_name).ok_or_else(|| format!("no {} token", auth.token_key_name))?;
    if let Some(pem) = &auth.token_signing_public_key {
        let sig = signature.and_then(b64_decode).ok_or("token signature missing or not base64")?;
        let ok = (|| -> Result<bool, openssl::error::ErrorStack> {
            let key = openssl::pkey::PKey::public_key_from_pem(pem.as_bytes())?;
            let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &key)?;
            v.update(token.as_bytes())?;
            v.verify(&sig)
        })()
        .unwrap_or(false);
        if !ok {
            return Err("token signature does not verify".into());
        }
    }
    if auth.allowed_tokens.iter().any(|t| crate::util::ct_eq(t.as_bytes(), token.as_bytes())) {
        Ok(name)
    } else {
        Err("the authorizer denied the token".into())
    }
}
