//! Routing and handlers of the control API (the routes are listed in the crate docs).

use std::sync::Arc;

use hyper::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::api::{
    Authentication, CaCertificate, DeviceStatus, Enrollment, EnrollmentGroup, IdentityInfo, IdentitySpec,
    Info, IssueCertificate, IssuedCertificate, MethodInvocation, Policy, RefuseConnect, Throttle, TwinUpdate,
};
use crate::azure::c2d::C2dError;
use crate::azure::registry::RegistryError;
use crate::azure::telemetry::Filter;
use crate::azure::topics::SubKind;
use crate::azure::{CloseReason, ConnCmd, Hub, Identity, Peer, State};
use crate::ca;

/// An error answer: HTTP status, 6-digit error code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: u64,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: u64, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, 400_000, message)
    }

    fn not_found(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(404, 404_001, format!("{what} not found"))
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(m) => ApiError::bad_request(m),
            RegistryError::NotFound(m) => ApiError::new(404, 404_001, format!("{m} not found")),
        }
    }
}

type Answer = Result<(u16, Value), ApiError>;

fn ok(v: impl serde::Serialize) -> Answer {
    serde_json::to_value(v).map(|v| (200, v)).map_err(|e| ApiError::new(500, 500_000, e.to_string()))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// Dispatches a request by method and (decoded) path segments.
pub(crate) async fn route(
    hub: &Arc<Hub>,
    info: &Info,
    m: &Method,
    segs: &[String],
    query: &str,
    body: &[u8],
) -> Answer {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (m.clone(), s.as_slice()) {
        (Method::GET, ["info"]) => ok(info),
        (Method::GET, ["devices"]) => {
            let st = hub.lock();
            let ids: Vec<Identity> = st.registry.devices.keys().map(Identity::device).collect();
            ok(ids.iter().filter_map(|id| identity_info(&st, id)).collect::<Vec<_>>())
        }
        (Method::GET, ["devices", d, "modules"]) => {
            let st = hub.lock();
            let dev =
                st.registry.devices.get(*d).ok_or_else(|| ApiError::not_found(format!("device {d}")))?;
            let ids: Vec<Identity> = dev.modules.keys().map(|m| Identity::module(*d, m.as_str())).collect();
            ok(ids.iter().filter_map(|id| identity_info(&st, id)).collect::<Vec<_>>())
        }
        (_, ["devices", d, "modules", md, rest @ ..]) => {
            identity_routes(hub, m, &Identity::module(*d, *md), rest, body).await
        }
        (_, ["devices", d, rest @ ..]) => identity_routes(hub, m, &Identity::device(*d), rest, body).await,
        (Method::GET, ["messages", "events"]) => ok(hub.telemetry(&query_filter(query))),
        (Method::DELETE, ["messages", "events"]) => {
            ok(json!({ "deleted": hub.clear_telemetry(&query_filter(query)) }))
        }
        (Method::GET, ["connections"]) => ok(hub.connections()),
        (Method::GET, ["faults"]) => ok(hub.lock().faults.list()),
        (Method::DELETE, ["faults"]) => {
            hub.lock().faults.clear(None);
            ok(json!({}))
        }
        (Method::GET, ["policies"]) => ok(&hub.lock().registry.policies),
        (Method::PUT, ["policies", name]) => {
            let policy: Policy = parse(body)?;
            let mut st = hub.lock();
            st.registry.set_policy(name, policy)?;
            hub.persist(&st);
            ok(&st.registry.policies[*name])
        }
        (Method::DELETE, ["policies", name]) => {
            let mut st = hub.lock();
            st.registry
                .policies
                .remove(*name)
                .ok_or_else(|| ApiError::not_found(format!("policy {name}")))?;
            hub.persist(&st);
            ok(json!({}))
        }
        (Method::GET, ["certificates"]) => ok(&hub.lock().registry.certificates),
        (Method::POST, ["certificates", "issue"]) => issue_certificate(hub, body),
        (Method::PUT, ["certificates", name]) => {
            let c: CaCertificate = parse(body)?;
            if ca::parse_pem(&c.pem).is_none() {
                return Err(ApiError::bad_request("pem is not a PEM certificate"));
            }
            let mut st = hub.lock();
            st.registry.certificates.insert(name.to_string(), c.pem);
            hub.persist(&st);
            ok(json!({}))
        }
        (Method::DELETE, ["certificates", name]) => {
            let mut st = hub.lock();
            st.registry
                .certificates
                .remove(*name)
                .ok_or_else(|| ApiError::not_found(format!("certificate {name}")))?;
            hub.persist(&st);
            ok(json!({}))
        }
        (Method::GET, ["dps", "enrollments"]) => ok(&hub.lock().registry.enrollments),
        (Method::GET, ["dps", "enrollments", r]) => {
            let st = hub.lock();
            ok(st
                .registry
                .enrollments
                .get(*r)
                .ok_or_else(|| ApiError::not_found(format!("enrollment {r}")))?)
        }
        (Method::PUT, ["dps", "enrollments", r]) => {
            let e: Enrollment = parse(body)?;
            let mut st = hub.lock();
            st.registry.set_enrollment(r, e)?;
            hub.persist(&st);
            ok(&st.registry.enrollments[*r])
        }
        (Method::DELETE, ["dps", "enrollments", r]) => {
            let mut st = hub.lock();
            st.registry
                .enrollments
                .remove(*r)
                .ok_or_else(|| ApiError::not_found(format!("enrollment {r}")))?;
            hub.persist(&st);
            ok(json!({}))
        }
        (Method::GET, ["dps", "enrollmentGroups"]) => ok(&hub.lock().registry.enrollment_groups),
        (Method::GET, ["dps", "enrollmentGroups", g]) => {
            let st = hub.lock();
            ok(st
                .registry
                .enrollment_groups
                .get(*g)
                .ok_or_else(|| ApiError::not_found(format!("enrollment group {g}")))?)
        }
        (Method::PUT, ["dps", "enrollmentGroups", g]) => {
            let e: EnrollmentGroup = parse(body)?;
            let mut st = hub.lock();
            st.registry.set_group(g, e)?;
            hub.persist(&st);
            ok(&st.registry.enrollment_groups[*g])
        }
        (Method::DELETE, ["dps", "enrollmentGroups", g]) => {
            let mut st = hub.lock();
            st.registry
                .enrollment_groups
                .remove(*g)
                .ok_or_else(|| ApiError::not_found(format!("enrollment group {g}")))?;
            hub.persist(&st);
            ok(json!({}))
        }
        (Method::GET, ["dps", "registrations"]) => ok(&hub.lock().dps.registrations),
        (Method::GET, ["dps", "registrations", r]) => {
            let st = hub.lock();
            ok(st
                .dps
                .registrations
                .get(*r)
                .ok_or_else(|| ApiError::not_found(format!("registration {r}")))?)
        }
        _ => Err(ApiError::new(404, 404_000, format!("no route {m} /{}", segs.join("/")))),
    }
}

/// Routes under `/devices/{d}` and `/devices/{d}/modules/{m}`.
async fn identity_routes(hub: &Arc<Hub>, m: &Method, id: &Identity, rest: &[&str], body: &[u8]) -> Answer {
    let peer = Peer::Hub(id.clone());
    match (m.clone(), rest) {
        (Method::GET, []) => ok(identity_info(&hub.lock(), id).ok_or_else(|| ApiError::not_found(id))?),
        (Method::PUT, []) => {
            let spec: IdentitySpec = parse(body)?;
            let disabled = spec.status == Some(DeviceStatus::Disabled);
            let mut st = hub.lock();
            st.registry.upsert(id, spec)?;
            hub.persist(&st);
            if disabled {
                close_identity(hub, &st, id);
            }
            ok(identity_info(&st, id))
        }
        (Method::DELETE, []) => {
            let mut st = hub.lock();
            st.registry.remove(id)?;
            hub.persist(&st);
            close_identity(hub, &st, id);
            let gone = |t: &Identity| t == id || (id.module_id.is_none() && t.device_id == id.device_id);
            st.twins.retain(|t, _| !gone(t));
            st.faults.refuse.retain(|t, _| !gone(t));
            st.faults.throttle.retain(|t, _| !gone(t));
            if id.module_id.is_none() {
                st.c2d.remove(&id.device_id);
            }
            ok(json!({}))
        }
        (Method::GET, ["twin"]) => {
            let mut st = hub.lock();
            service_twin(hub, &mut st, id)
        }
        (Method::PATCH | Method::PUT, ["twin"]) => {
            let update: TwinUpdate = parse(body)?;
            let replace = *m == Method::PUT;
            let desired = update.properties.and_then(|p| p.desired);
            let mut st = hub.lock();
            if st.registry.lookup(id).is_none() {
                return Err(ApiError::not_found(id));
            }
            let now = hub.now();
            let notification = hub
                .twin_mut(&mut st, id)
                .update_from_service(desired.as_ref(), update.tags.as_ref(), replace, now)
                .map_err(|e| ApiError::new(e.status(), u64::from(e.status()) * 1000, e.to_string()))?;
            if let Some(n) = notification {
                if let Some(qos) = hub.subscribed(&st, &peer, SubKind::TwinDesired) {
                    let version = n["$version"].as_u64().unwrap_or_default();
                    let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
                    hub.send(
                        &st,
                        &peer,
                        ConnCmd::Publish { topic, payload: n.to_string().into_bytes(), qos },
                    );
                }
            }
            service_twin(hub, &mut st, id)
        }
        (Method::POST, ["methods"]) => {
            let inv: MethodInvocation = parse(body)?;
            match hub.invoke_method(id, &inv).await {
                Ok(r) => ok(r),
                Err(e) => Err(ApiError::new((e.error_code() / 1000) as u16, e.error_code(), e.to_string())),
            }
        }
        (Method::GET, ["messages", "events"]) => ok(hub.telemetry(&identity_filter(id))),
        (Method::DELETE, ["messages", "events"]) => {
            ok(json!({ "deleted": hub.clear_telemetry(&identity_filter(id)) }))
        }
        (Method::POST, ["messages", "devicebound"]) if id.module_id.is_none() => {
            match hub.send_c2d(&id.device_id, parse(body)?) {
                Ok(a) => ok(a),
                Err(e) => Err(match e {
                    C2dError::DeviceNotFound(_) => ApiError::not_found(id),
                    C2dError::Invalid(m) => ApiError::bad_request(m),
                    C2dError::TooLarge { .. } => ApiError::new(413, 413_000, e.to_string()),
                    C2dError::QueueFull(_) => ApiError::new(403, 403_002, e.to_string()),
                }),
            }
        }
        (Method::GET, ["messages", "devicebound"]) if id.module_id.is_none() => {
            ok(hub.pending_c2d(&id.device_id).ok_or_else(|| ApiError::not_found(id))?)
        }
        (Method::POST, ["faults", "drop"]) => close_or_404(hub, &peer, CloseReason::Dropped),
        (Method::POST, ["faults", "expire-token"]) => close_or_404(hub, &peer, CloseReason::TokenExpired),
        (Method::PUT, ["faults", "refuse-connect"]) => {
            let f: RefuseConnect = parse(body)?;
            if !(2..=5).contains(&f.code) {
                return Err(ApiError::bad_request("code must be 2, 3, 4 or 5"));
            }
            hub.lock().faults.refuse.insert(id.clone(), f);
            ok(json!({}))
        }
        (Method::PUT, ["faults", "throttle"]) => {
            let f: Throttle = parse(body)?;
            hub.lock().faults.throttle.insert(id.clone(), f);
            ok(json!({}))
        }
        (Method::DELETE, ["faults"]) => {
            hub.lock().faults.clear(Some(id));
            ok(json!({}))
        }
        _ => Err(ApiError::new(404, 404_000, format!("no route {m} /devices/{id}/{}", rest.join("/")))),
    }
}

fn close_or_404(hub: &Hub, peer: &Peer, reason: CloseReason) -> Answer {
    if hub.close(peer, reason) {
        ok(json!({}))
    } else {
        Err(ApiError::new(404, 404_103, format!("{peer} is not connected")))
    }
}

/// Closes the connections of `id` (and of its modules, for a device).
fn close_identity(hub: &Hub, st: &State, id: &Identity) {
    for peer in st.conns.keys() {
        if let Peer::Hub(p) = peer {
            if p == id || (id.module_id.is_none() && p.device_id == id.device_id) {
                hub.send(st, peer, ConnCmd::Close(CloseReason::IdentityRemoved));
            }
        }
    }
}

fn identity_info(st: &State, id: &Identity) -> Option<IdentityInfo> {
    let (auth, status) = st.registry.lookup(id)?;
    Some(IdentityInfo {
        device_id: id.device_id.clone(),
        module_id: id.module_id.clone(),
        authentication: auth.clone(),
        status,
        connection_state: if st.conns.contains_key(&Peer::Hub(id.clone())) {
            "Connected"
        } else {
            "Disconnected"
        }
        .to_string(),
        model_id: st.model_ids.get(id).cloned(),
        cloud_to_device_message_count: match &id.module_id {
            None => st.c2d.get(&id.device_id).map_or(0, |q| q.messages.len()),
            Some(_) => 0,
        },
    })
}

/// The service-side twin document.
fn service_twin(hub: &Hub, st: &mut State, id: &Identity) -> Answer {
    let info = identity_info(st, id).ok_or_else(|| ApiError::not_found(id))?;
    let (tags, properties, version) = hub.twin_mut(st, id).service_parts();
    let authentication_type = match info.authentication {
        Authentication::Sas { .. } => "sas",
        Authentication::SelfSigned { .. } => "selfSigned",
        Authentication::CertificateAuthority => "certificateAuthority",
    };
    let mut twin = json!({
        "deviceId": id.device_id,
        "etag": crate::util::b64(version.to_string().as_bytes()),
        "version": version,
        "status": info.status,
        "connectionState": info.connection_state,
        "authenticationType": authentication_type,
        "modelId": info.model_id.unwrap_or_default(),
        "tags": tags,
        "properties": properties,
    });
    if let Some(m) = &id.module_id {
        twin["moduleId"] = json!(m);
    }
    Ok((200, twin))
}

fn issue_certificate(hub: &Hub, body: &[u8]) -> Answer {
    let req: IssueCertificate = parse(body)?;
    if req.common_name.is_empty() || req.common_name.len() > 64 {
        return Err(ApiError::bad_request("commonName must be 1 to 64 characters"));
    }
    let issued =
        hub.ca.issue_client(&req.common_name).map_err(|e| ApiError::new(500, 500_000, e.to_string()))?;
    let pem = |r: Result<Vec<u8>, openssl::error::ErrorStack>| {
        r.map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| ApiError::new(500, 500_000, e.to_string()))
    };
    let (sha1, sha256) = ca::thumbprints(&issued.cert);
    ok(IssuedCertificate {
        certificate_pem: pem(issued.cert.to_pem())?,
        private_key_pem: pem(issued.key.private_key_to_pem_pkcs8())?,
        thumbprint_sha1: sha1,
        thumbprint_sha256: sha256,
    })
}

fn identity_filter(id: &Identity) -> Filter {
    Filter { device_id: Some(id.device_id.clone()), module_id: Some(id.module_id.clone()) }
}

/// `?deviceId=…&moduleId=…` on `/messages/events`.
fn query_filter(query: &str) -> Filter {
    let mut f = Filter::default();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::util::pct_decode(v).unwrap_or_default();
        match k {
            "deviceId" => f.device_id = Some(v),
            "moduleId" => f.module_id = Some(Some(v)),
            _ => {}
        }
    }
    f
}
