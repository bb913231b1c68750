//! Handlers of the `/aws/…` control routes (listed in the crate docs).

use hyper::Method;
use serde_json::{json, Value};

use super::aws_api::{
    AdvanceClock, Authorizer, AwsFaults, CancelJob, CertificateInfo, CertificateStatus, CertificateUpdate,
    CreateCertificate, CreateJob, JobExecutionStatus, JobsSettings, ProvisioningTemplate, ServiceClock,
    Thing,
};
use super::routes::ApiError;
use crate::aws::jobs::AdminError;
use crate::aws::shadow::{ShadowKey, ShadowOp};
use crate::aws::topics::{valid_shadow_name, valid_thing_name};
use crate::aws::{certificate_id, AwsCore, AwsState, CertRecord};

type Answer = Result<(u16, Value), ApiError>;

fn ok(v: impl serde::Serialize) -> Answer {
    serde_json::to_value(v).map(|v| (200, v)).map_err(|e| ApiError::new(500, 500_000, e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(404, 404_001, format!("{what} not found"))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == name).then(|| crate::util::pct_decode(v).unwrap_or_default())
    })
}

fn thing_info(st: &AwsState, name: &str) -> Option<Thing> {
    let attributes = st.things.get(name)?.clone();
    let principals =
        st.certs.iter().filter(|(_, c)| c.things.contains(name)).map(|(id, _)| id.clone()).collect();
    Some(Thing { thing_name: name.to_string(), attributes, principals })
}

fn cert_info(id: &str, c: &CertRecord) -> CertificateInfo {
    CertificateInfo {
        certificate_id: id.to_string(),
        certificate_pem: c.pem.clone(),
        private_key_pem: None,
        status: c.status,
        things: c.things.iter().cloned().collect(),
    }
}

/// Dispatches `/aws/{rest…}`.
pub(crate) fn route(core: &AwsCore, m: &Method, rest: &[&str], query: &str, body: &[u8]) -> Answer {
    match (m.clone(), rest) {
        (Method::GET, ["things"]) => {
            let st = core.lock();
            ok(st.things.keys().filter_map(|t| thing_info(&st, t)).collect::<Vec<_>>())
        }
        (Method::PUT, ["things", t]) => {
            if !valid_thing_name(t) {
                return Err(ApiError::bad_request("thing names are 1-128 characters of [a-zA-Z0-9:_-]"));
            }
            let spec: Thing = parse(body)?;
            let mut st = core.lock();
            st.things.insert(t.to_string(), spec.attributes);
            ok(thing_info(&st, t))
        }
        (Method::GET, ["things", t]) => {
            ok(thing_info(&core.lock(), t).ok_or_else(|| not_found(format!("thing {t}")))?)
        }
        (Method::DELETE, ["things", t]) => {
            let mut st = core.lock();
            st.things.remove(*t).ok_or_else(|| not_found(format!("thing {t}")))?;
            for c in st.certs.values_mut() {
                c.things.remove(*t);
            }
            st.shadows.remove_thing(t);
            st.jobs.remove_thing(t);
            ok(json!({}))
        }
        (Method::GET, ["things", t, "shadow"]) => shadow(core, t, query, ShadowOp::Get, b""),
        (Method::POST, ["things", t, "shadow"]) => shadow(core, t, query, ShadowOp::Update, body),
        (Method::DELETE, ["things", t, "shadow"]) => shadow(core, t, query, ShadowOp::Delete, b""),
        (Method::GET, ["things", t, "shadows"]) => {
            let st = core.lock();
            if !st.things.contains_key(*t) {
                return Err(not_found(format!("thing {t}")));
            }
            ok(st.shadows.list(t))
        }
        (Method::GET, ["certificates"]) => {
            let st = core.lock();
            ok(st.certs.iter().map(|(id, c)| cert_info(id, c)).collect::<Vec<_>>())
        }
        (Method::POST, ["certificates"]) => create_certificate(core, parse(body)?),
        (Method::GET, ["certificates", id]) => {
            let st = core.lock();
            ok(st
                .certs
                .get(*id)
                .map(|c| cert_info(id, c))
                .ok_or_else(|| not_found(format!("certificate {id}")))?)
        }
        (Method::PUT, ["certificates", id]) => {
            let u: CertificateUpdate = parse(body)?;
            let mut st = core.lock();
            let c = st.certs.get_mut(*id).ok_or_else(|| not_found(format!("certificate {id}")))?;
            c.status = u.status;
            let info = cert_info(id, c);
            if u.status != CertificateStatus::Active {
                core.close_principal(&st, id, "certificate deactivated");
            }
            ok(info)
        }
        (Method::DELETE, ["certificates", id]) => {
            let mut st = core.lock();
            st.certs.remove(*id).ok_or_else(|| not_found(format!("certificate {id}")))?;
            core.close_principal(&st, id, "certificate deleted");
            ok(json!({}))
        }
        (Method::PUT | Method::DELETE, ["certificates", id, "things", t]) => {
            let mut st = core.lock();
            if !st.things.contains_key(*t) {
                return Err(not_found(format!("thing {t}")));
            }
            let c = st.certs.get_mut(*id).ok_or_else(|| not_found(format!("certificate {id}")))?;
            if *m == Method::PUT {
                c.things.insert(t.to_string());
            } else {
                c.things.remove(*t);
            }
            ok(cert_info(id, c))
        }
        (Method::POST, ["access-keys"]) => ok(core.create_access_key()),
        (Method::GET, ["access-keys"]) => ok(core.lock().keys.keys().cloned().collect::<Vec<_>>()),
        (Method::DELETE, ["access-keys", k]) => {
            let mut st = core.lock();
            st.keys.remove(*k).ok_or_else(|| not_found(format!("access key {k}")))?;
            core.close_principal(&st, k, "access key deleted");
            ok(json!({}))
        }
        (Method::GET, ["authorizers"]) => ok(core.lock().authorizers.keys().cloned().collect::<Vec<_>>()),
        (Method::PUT, ["authorizers", name]) => {
            let a: Authorizer = parse(body)?;
            if a.token_key_name.is_empty() {
                return Err(ApiError::bad_request("tokenKeyName must not be empty"));
            }
            if let Some(pem) = &a.token_signing_public_key {
                openssl::pkey::PKey::public_key_from_pem(pem.as_bytes())
                    .map_err(|_| ApiError::bad_request("tokenSigningPublicKey is not a PEM public key"))?;
            }
            let mut st = core.lock();
            if a.default {
                for other in st.authorizers.values_mut() {
                    other.default = false;
                }
            }
            st.authorizers.insert(name.to_string(), a);
            ok(json!({ "authorizerName": name }))
        }
        (Method::DELETE, ["authorizers", name]) => {
            core.lock().authorizers.remove(*name).ok_or_else(|| not_found(format!("authorizer {name}")))?;
            ok(json!({}))
        }
        (Method::GET, ["telemetry"]) => {
            let st = core.lock();
            let client = query_param(query, "clientId");
            let thing = query_param(query, "thingName");
            let topic = query_param(query, "topic");
            ok(st
                .telemetry
                .iter()
                .filter(|t| client.as_ref().is_none_or(|c| &t.client_id == c))
                .filter(|t| thing.as_ref().is_none_or(|th| t.things.contains(th)))
                .filter(|t| topic.as_ref().is_none_or(|f| crate::aws::topics::matches(f, &t.topic)))
                .cloned()
                .collect::<Vec<_>>())
        }
        (Method::DELETE, ["telemetry"]) => {
            let mut st = core.lock();
            let n = st.telemetry.len();
            st.telemetry.clear();
            ok(json!({ "deleted": n }))
        }
        (Method::GET, ["connections"]) => ok(core.connections()),
        (Method::POST, ["connections", c, "drop"]) => {
            let st = core.lock();
            let live = st
                .conns
                .get(*c)
                .ok_or_else(|| ApiError::new(404, 404_103, format!("{c} is not connected")))?;
            let _ = live.tx.unbounded_send(crate::aws::AwsCmd::Close("dropped by fault injection"));
            ok(json!({}))
        }
        (Method::GET, ["jobs"]) => ok(core.lock().jobs.list()),
        (Method::GET, ["jobs-settings"]) => {
            ok(JobsSettings { notify_on_start: core.lock().jobs.notify_on_start })
        }
        (Method::PUT, ["jobs-settings"]) => {
            let j: JobsSettings = parse(body)?;
            core.lock().jobs.notify_on_start = j.notify_on_start;
            ok(j)
        }
        (Method::POST, ["jobs"]) => create_job(core, parse(body)?),
        (Method::GET, ["jobs", id]) => {
            ok(core.lock().jobs.job(id).ok_or_else(|| not_found(format!("job {id}")))?)
        }
        (Method::POST, ["jobs", id, "cancel"]) => {
            let c: CancelJob = parse(body)?;
            let mut st = core.lock();
            let now = core.service_now(&st);
            let (info, out) = st.jobs.cancel_job(id, c.force, now).map_err(admin)?;
            core.publish_jobs(&st, None, &out);
            ok(info)
        }
        (Method::GET, ["things", t, "jobs"]) => {
            let st = core.lock();
            if !st.things.contains_key(*t) {
                return Err(not_found(format!("thing {t}")));
            }
            ok(st.jobs.executions(t, core.service_now(&st)))
        }
        (Method::GET, ["things", t, "jobs", id]) => {
            let number = match query_param(query, "executionNumber") {
                Some(n) => Some(
                    n.parse::<u64>()
                        .map_err(|_| ApiError::bad_request("executionNumber must be a number"))?,
                ),
                None => None,
            };
            let st = core.lock();
            let now = core.service_now(&st);
            ok(st
                .jobs
                .execution(t, id, number, now)
                .ok_or_else(|| not_found(format!("execution of job {id} on {t}")))?)
        }
        (Method::POST, ["things", t, "jobs", id, "cancel"]) => {
            let c: CancelJob = parse(body)?;
            end_execution(core, t, id, JobExecutionStatus::Canceled, c.force)
        }
        (Method::DELETE, ["things", t, "jobs", id]) => {
            end_execution(core, t, id, JobExecutionStatus::Removed, true)
        }
        (Method::GET, ["provisioning-templates"]) => {
            ok(core.lock().provisioning.templates.values().cloned().collect::<Vec<_>>())
        }
        (Method::PUT, ["provisioning-templates", name]) => {
            let valid = !name.is_empty()
                && name.len() <= 36
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
            if !valid {
                return Err(ApiError::bad_request("template names are 1-36 characters of [0-9A-Za-z_-]"));
            }
            let mut t: ProvisioningTemplate = parse(body)?;
            t.template_name = name.to_string();
            crate::aws::provisioning::check_template(&mut t).map_err(ApiError::bad_request)?;
            core.lock().provisioning.templates.insert(name.to_string(), t.clone());
            ok(t)
        }
        (Method::GET, ["provisioning-templates", name]) => ok(core
            .lock()
            .provisioning
            .templates
            .get(*name)
            .cloned()
            .ok_or_else(|| not_found(format!("provisioning template {name}")))?),
        (Method::DELETE, ["provisioning-templates", name]) => {
            core.lock()
                .provisioning
                .templates
                .remove(*name)
                .ok_or_else(|| not_found(format!("provisioning template {name}")))?;
            ok(json!({}))
        }
        (Method::POST, ["clock"]) => {
            let a: AdvanceClock = parse(body)?;
            let (offset_seconds, now) = core.advance_clock(a.advance_seconds);
            ok(ServiceClock { offset_seconds, now })
        }
        (Method::GET, ["clock"]) => {
            let st = core.lock();
            ok(ServiceClock { offset_seconds: st.clock_offset, now: core.service_now(&st) })
        }
        (Method::GET, ["faults"]) => ok(&core.lock().faults),
        (Method::PUT, ["faults", c]) => {
            let f: AwsFaults = parse(body)?;
            if f.refuse_connect.is_some_and(|c| !(1..=5).contains(&c)) {
                return Err(ApiError::bad_request("refuseConnect must be a CONNACK code 1 to 5"));
            }
            core.lock().faults.insert(c.to_string(), f);
            ok(json!({}))
        }
        (Method::DELETE, ["faults", c]) => {
            core.lock().faults.remove(*c);
            ok(json!({}))
        }
        _ => Err(ApiError::new(404, 404_000, format!("no route {m} /aws/{}", rest.join("/")))),
    }
}

fn admin(e: AdminError) -> ApiError {
    match e {
        AdminError::NotFound(what) => not_found(what),
        AdminError::Conflict(m) => ApiError::new(409, 409_000, m),
        AdminError::Invalid(m) => ApiError::bad_request(m),
    }
}

fn create_job(core: &AwsCore, spec: CreateJob) -> Answer {
    let mut st = core.lock();
    if let Some(t) = spec.targets.iter().find(|t| !st.things.contains_key(*t)) {
        return Err(not_found(format!("thing {t}")));
    }
    let now = core.service_now(&st);
    let (info, out) = st.jobs.create_job(&spec, now).map_err(admin)?;
    tracing::info!(job = %spec.job_id, targets = ?spec.targets, "job created");
    core.publish_jobs(&st, None, &out);
    ok(info)
}

fn end_execution(core: &AwsCore, thing: &str, id: &str, status: JobExecutionStatus, force: bool) -> Answer {
    let mut st = core.lock();
    let now = core.service_now(&st);
    let (info, out) = st.jobs.end_execution(thing, id, status, force, now).map_err(admin)?;
    core.publish_jobs(&st, None, &out);
    ok(info)
}

fn shadow(core: &AwsCore, thing: &str, query: &str, op: ShadowOp, body: &[u8]) -> Answer {
    let name = query_param(query, "name").filter(|n| !n.is_empty());
    if name.as_deref().is_some_and(|n| !valid_shadow_name(n)) {
        return Err(ApiError::bad_request("shadow names are 1-64 characters of [$a-zA-Z0-9:_-]"));
    }
    let key = ShadowKey { thing: thing.to_string(), name };
    match core.service_shadow(&key, op, body) {
        Ok(doc) => Ok((200, doc)),
        Err((status, doc)) => Err(ApiError::new(
            status,
            u64::from(status) * 1000,
            doc["message"].as_str().unwrap_or("shadow request rejected").to_string(),
        )),
    }
}

fn create_certificate(core: &AwsCore, req: CreateCertificate) -> Answer {
    if let Some(t) = &req.thing_name {
        if !core.lock().things.contains_key(t) {
            return Err(not_found(format!("thing {t}")));
        }
    }
    let (pem, key_pem) = match &req.certificate_pem {
        Some(pem) => (pem.clone(), None),
        None => {
            let cn = req
                .common_name
                .clone()
                .or_else(|| req.thing_name.clone())
                .unwrap_or_else(|| "aws-device".into());
            if cn.is_empty() || cn.len() > 64 {
                return Err(ApiError::bad_request("commonName must be 1 to 64 characters"));
            }
            let issued = core.ca.issue_client(&cn).map_err(|e| ApiError::new(500, 500_000, e.to_string()))?;
            let s = |r: Result<Vec<u8>, openssl::error::ErrorStack>| {
                r.map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| ApiError::new(500, 500_000, e.to_string()))
            };
            (s(issued.cert.to_pem())?, Some(s(issued.key.private_key_to_pem_pkcs8())?))
        }
    };
    let cert = crate::ca::parse_pem(&pem)
        .ok_or_else(|| ApiError::bad_request("certificatePem is not a PEM certificate"))?;
    let id = certificate_id(&cert);
    let mut st = core.lock();
    let rec = st.certs.entry(id.clone()).or_insert_with(|| CertRecord {
        pem: pem.clone(),
        status: req.status,
        things: Default::default(),
    });
    rec.status = req.status;
    if let Some(t) = &req.thing_name {
        rec.things.insert(t.clone());
    }
    let mut info = cert_info(&id, rec);
    info.private_key_pem = key_pem;
    ok(info)
}
