//! The AWS IoT Core device endpoint's back end: registry (things, certificates, access
//! keys, custom authorizers), live connections and their subscriptions, the Device
//! Shadow, Jobs and Fleet Provisioning services, captured telemetry and faults. The
//! transport (TLS, ALPN, WebSocket with SigV4) is in [`transport`]; the MQTT wiring in
//! `broker/aws.rs`.
//!
//! All state sits behind one mutex in [`AwsCore`], never held across an `.await`;
//! connections are reached through their command channel ([`AwsCmd`]).
//!
//! # Service dispatch
//! PUBLISHes on `$aws/things/{thing}/shadow/...` go to [`shadow`]; jobs
//! (`$aws/things/{thing}/jobs/...`) and fleet provisioning (`$aws/certificates/...`,
//! `$aws/provisioning-templates/...`) reach [`dispatch_service`], which hands them to
//! [`jobs`] and [`provisioning`]. Shadow answers and jobs notifications go to every
//! subscriber; jobs and provisioning answers go to the requesting client only (when it
//! subscribed to them). Jobs timers and ownership-token expiry run on the service clock
//! ([`AwsCore::service_now`]: real time plus an offset the control API can advance),
//! checked before each request and by a one-second tick ([`start_ticker`]).

pub(crate) mod jobs;
pub(crate) mod provisioning;
pub(crate) mod shadow;
pub(crate) mod sigv4;
pub(crate) mod topics;
pub(crate) mod transport;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::mpsc::UnboundedSender;
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use parking_lot::{Mutex, MutexGuard};

use self::shadow::{ShadowError, ShadowKey, ShadowOp, Shadows};
use self::topics::{AwsPublish, Service};
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

/// MQTT 5 properties of an application message, forwarded unchanged to MQTT 5
/// subscribers (MQTT 3.1.1 subscribers get the message without them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MessageProps {
    /// User properties, in order (names may repeat).
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    /// Payload format indicator 1 (UTF-8).
    pub utf8_payload: bool,
    /// The Topic Alias the client sent the PUBLISH with (already resolved into the topic).
    /// Recorded with telemetry; never forwarded, aliases belong to one connection.
    pub topic_alias: Option<u16>,
}

/// The close reason of a connection replaced by a newer one with its client id (MQTT 5:
/// DISCONNECT 0x8E Session taken over).
pub(crate) const CLOSE_DUPLICATE: &str = "duplicate client id";

/// A command for the task that owns a connection's MQTT sink.
#[derive(Debug)]
pub(crate) enum AwsCmd {
    /// Publish to the client at QoS 0 or 1 (with MQTT 5 properties for v5 clients).
    Publish { topic: String, payload: Vec<u8>, qos: u8, props: MessageProps },
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
    pub jobs: jobs::Jobs,
    pub provisioning: provisioning::Provisioning,
    /// Seconds the service clock runs ahead of real time.
    pub clock_offset: u64,
}

/// The dispatch point of the jobs and fleet-provisioning services: hands the request
/// to its service and publishes the outcome (answers to `client_id` only).
pub(crate) fn dispatch_service(
    core: &AwsCore,
    st: &mut AwsState,
    client_id: &str,
    principal: &Principal,
    request: &Service,
    payload: &[u8],
    new_key: Option<provisioning::NewKey>,
) {
    let now = core.service_now(st);
    match request {
        Service::Jobs { thing, rest } => {
            let out = if consume_flag(&mut st.faults, client_id, |f| f.throttle_jobs) {
                let e = jobs::JobsError::new(jobs::Code::RequestThrottled, "Rate exceeded");
                vec![jobs::rejection(thing, rest, &e, payload, now)]
            } else {
                st.jobs.handle(thing, rest, payload, now)
            };
            tracing::debug!(client_id, thing = %thing, request = %rest, "jobs request");
            core.publish_jobs(st, Some(client_id), &out);
        }
        Service::Provisioning { api, cbor, topic } => {
            let (t, p) = if consume_flag(&mut st.faults, client_id, |f| f.throttle_provisioning) {
                let e = provisioning::ProvisioningError::new(429, "Throttling", "Rate exceeded");
                (format!("{topic}/rejected"), e.encode(*cbor))
            } else {
                provisioning::handle(&core.ca, new_key, st, &principal.id, api, *cbor, topic, payload, now)
            };
            if !core.reply(st, client_id, &t, &p) {
                tracing::info!(client_id, topic = %t, "provisioning answer dropped: no matching subscription");
            }
        }
    }
}

/// Starts the one-second tick that applies jobs timers and token expiry (once per core;
/// it ends with the runtime or when the core is dropped). Needs an ntex runtime.
pub(crate) fn start_ticker(core: &Arc<AwsCore>) {
    if core.ticker_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak: Weak<AwsCore> = Arc::downgrade(core);
    ntex_rt::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let Some(core) = weak.upgrade() else { break };
            core.tick();
        }
    });
}

/// The shared back end.
pub(crate) struct AwsCore {
    pub settings: AwsSettings,
    pub ca: CertificateAuthority,
    state: Mutex<AwsState>,
    next_id: AtomicU64,
    ticker_started: AtomicBool,
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
        AwsCore {
            settings,
            ca,
            state: Mutex::new(AwsState::default()),
            next_id: AtomicU64::new(1),
            ticker_started: AtomicBool::new(false),
        }
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

    /// Unix seconds on the service clock of jobs and provisioning (real time plus the
    /// offset set through the control API, saturating: the offset can be pushed as far as
    /// the control API is asked to).
    pub fn service_now(&self, st: &AwsState) -> u64 {
        self.now().saturating_add(st.clock_offset)
    }

    /// Moves the service clock forward and applies what expired; the new offset and time.
    pub fn advance_clock(&self, secs: u64) -> (u64, u64) {
        let mut st = self.lock();
        st.clock_offset = st.clock_offset.saturating_add(secs);
        let now = self.service_now(&st);
        self.expire(&mut st, now);
        (st.clock_offset, now)
    }

    /// The periodic tick: jobs timers and ownership-token expiry.
    pub fn tick(&self) {
        let mut st = self.lock();
        let now = self.service_now(&st);
        self.expire(&mut st, now);
    }

    fn expire(&self, st: &mut AwsState, now: u64) {
        let out = st.jobs.expire(now);
        self.publish_jobs(st, None, &out);
        provisioning::expire_tokens(st, now);
    }

    /// Publishes jobs service output: answers to `requester` only, notifications to
    /// every subscriber.
    pub fn publish_jobs(&self, st: &AwsState, requester: Option<&str>, out: &[jobs::Outgoing]) {
        for o in out {
            let payload = o.document.to_string();
            match (o.reply, requester) {
                (true, Some(c)) => {
                    if !self.reply(st, c, &o.topic, payload.as_bytes()) {
                        tracing::debug!(client_id = c, topic = %o.topic, "jobs answer dropped: no matching subscription");
                    }
                }
                (true, None) => {}
                (false, _) => {
                    self.deliver(st, &o.topic, payload.as_bytes());
                }
            }
        }
    }

    /// Sends a message to one client, when it has a matching subscription (at the
    /// highest QoS among them). True when sent.
    pub fn reply(&self, st: &AwsState, client_id: &str, topic: &str, payload: &[u8]) -> bool {
        let Some(live) = st.conns.get(client_id) else { return false };
        let qos = live.subs.iter().filter(|(f, _)| topics::matches(f, topic)).map(|(_, q)| *q).max();
        let Some(qos) = qos else { return false };
        let cmd = AwsCmd::Publish {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos,
            props: Default::default(),
        };
        live.tx.unbounded_send(cmd).is_ok()
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
            let _ = old.tx.unbounded_send(AwsCmd::Close(CLOSE_DUPLICATE));
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
        self.deliver_with(st, topic, payload, &MessageProps::default())
    }

    /// [`AwsCore::deliver`] with MQTT 5 message properties.
    pub fn deliver_with(&self, st: &AwsState, topic: &str, payload: &[u8], props: &MessageProps) -> usize {
        let mut n = 0;
        for live in st.conns.values() {
            let qos = live.subs.iter().filter(|(f, _)| topics::matches(f, topic)).map(|(_, q)| *q).max();
            if let Some(qos) = qos {
                let cmd = AwsCmd::Publish {
                    topic: topic.to_string(),
                    payload: payload.to_vec(),
                    qos,
                    props: props.clone(),
                };
                if live.tx.unbounded_send(cmd).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Handles a device PUBLISH; `Err` closes the connection with that reason.
    #[allow(clippy::too_many_arguments)]
    pub fn on_publish(
        &self,
        client_id: &str,
        principal: &Principal,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        props: &MessageProps,
    ) -> Result<(), String> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(format!("payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}", payload.len()));
        }
        if retain {
            return Err("retained messages are not implemented by the emulator".into());
        }
        let kind = topics::classify(topic).map_err(|e| e.to_string())?;
        // Slow work before the lock: the key pair of a CreateKeysAndCertificate.
        let new_key = match &kind {
            AwsPublish::Service(Service::Provisioning {
                api: topics::ProvisioningApi::CreateKeysAndCertificate,
                cbor: false,
                ..
            }) => provisioning::NewKey::generate().ok(),
            _ => None,
        };
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
                    user_properties: props.user_properties.clone(),
                    content_type: props.content_type.clone(),
                    topic_alias: props.topic_alias,
                    received_at_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                });
                while st.telemetry.len() > cap {
                    st.telemetry.pop_front();
                }
                self.deliver_with(&st, topic, payload, props);
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
                dispatch_service(self, &mut st, client_id, principal, &req, payload, new_key);
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
    consume_flag(faults, client_id, |f| f.throttle_shadow)
}

/// Uses up a fault selected by `flag`; true while it applies.
fn consume_flag(
    faults: &mut HashMap<String, AwsFaults>,
    client_id: &str,
    flag: impl Fn(&AwsFaults) -> bool,
) -> bool {
    if !faults.get(client_id).is_some_and(flag) {
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
