//! [`ControlClient`]: an async client of the control API (what the CLI and tests use).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::api::{
    C2dAccepted, C2dRequest, ConnectionInfo, Enrollment, EnrollmentGroup, IdentityInfo, IdentitySpec, Info,
    MethodInvocation, MethodResult, PendingC2d, RefuseConnect, TelemetryMessage, Throttle, TwinUpdate,
};
use super::aws_api::{
    AccessKey, AdvanceClock, Authorizer, AwsConnection, AwsFaults, AwsTelemetry, CancelJob, CertificateInfo,
    CertificateStatus, CertificateUpdate, CreateCertificate, CreateJob, JobExecutionInfo, JobInfo,
    JobsSettings, ProvisioningTemplate, ServiceClock, Thing,
};
use crate::error::ControlError;
use crate::util::pct_encode;

/// Client of the control API. Needs a tokio runtime (actix has one).
///
/// Identities are given as `(device_id, Option<module_id>)`.
/// Every request is bounded by a timeout ([`DEFAULT_TIMEOUT`], see
/// [`ControlClient::with_timeout`]): a peer that accepts but never answers is an error,
/// not a hang.
#[derive(Clone, Debug)]
pub struct ControlClient {
    addr: SocketAddr,
    timeout: Duration,
}

/// How long a request may take by default: longer than the longest a route waits on a
/// device (a method invocation's 300 s response timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(330);

fn identity_path(device: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("/devices/{}/modules/{}", pct_encode(device), pct_encode(m)),
        None => format!("/devices/{}", pct_encode(device)),
    }
}

impl ControlClient {
    /// A client for `http://127.0.0.1:{port}`-style URLs.
    pub fn new(url: &str) -> Result<ControlClient, ControlError> {
        let bad = || ControlError::Url { url: url.to_string() };
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let hostport = rest.trim_end_matches('/');
        let addr = hostport
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| {
                hostport
                    .strip_prefix("localhost:")
                    .and_then(|p| p.parse::<u16>().ok())
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            })
            .ok_or_else(bad)?;
        Ok(ControlClient::from_addr(addr))
    }

    /// A client for a socket address.
    pub fn from_addr(addr: SocketAddr) -> ControlClient {
        ControlClient { addr, timeout: DEFAULT_TIMEOUT }
    }

    /// The same client with every request bounded by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> ControlClient {
        self.timeout = timeout;
        self
    }

    /// Sends a request with an optional JSON body and decodes the JSON answer.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ControlError> {
        let value = self
            .request_value(
                method,
                path,
                body.map(serde_json::to_value).transpose().map_err(ControlError::Decode)?,
            )
            .await?;
        serde_json::from_value(value).map_err(ControlError::Decode)
    }

    async fn request_value(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ControlError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ControlError::Connect(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {} within {:?}", self.addr, self.timeout),
            )))),
        }
    }

    async fn exchange(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ControlError> {
        let connect = |e: Box<dyn std::error::Error + Send + Sync>| ControlError::Connect(e);
        let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| connect(e.into()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| connect(e.into()))?;
        let conn = tokio::spawn(conn);
        let body = match body {
            Some(v) => Bytes::from(v.to_string()),
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| connect(e.into()))?;
        let resp = sender.send_request(req).await.map_err(|e| connect(e.into()))?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| connect(e.into()))?.to_bytes();
        conn.abort();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(ControlError::Decode)?
        };
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(ControlError::Status {
                status,
                error_code: value.get("errorCode").and_then(Value::as_u64),
                message: value.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
            })
        }
    }

    /// `GET /info`.
    pub async fn info(&self) -> Result<Info, ControlError> {
        self.request(Method::GET, "/info", None::<&()>).await
    }

    /// `PUT /devices/{d}[/modules/{m}]`: creates or updates a device or module.
    pub async fn put_identity(
        &self,
        device: &str,
        module: Option<&str>,
        spec: &IdentitySpec,
    ) -> Result<IdentityInfo, ControlError> {
        self.request(Method::PUT, &identity_path(device, module), Some(spec)).await
    }

    /// Creates a SAS device with generated keys.
    pub async fn create_device(&self, device: &str) -> Result<IdentityInfo, ControlError> {
        self.put_identity(device, None, &IdentitySpec::default()).await
    }

    /// `GET /devices/{d}[/modules/{m}]`.
    pub async fn identity(&self, device: &str, module: Option<&str>) -> Result<IdentityInfo, ControlError> {
        self.request(Method::GET, &identity_path(device, module), None::<&()>).await
    }

    /// `GET /devices`.
    pub async fn devices(&self) -> Result<Vec<IdentityInfo>, ControlError> {
        self.request(Method::GET, "/devices", None::<&()>).await
    }

    /// `DELETE /devices/{d}[/modules/{m}]`.
    pub async fn delete_identity(&self, device: &str, module: Option<&str>) -> Result<(), ControlError> {
        self.request::<Value>(Method::DELETE, &identity_path(device, module), None::<&()>).await.map(|_| ())
    }

    /// `GET .../twin`: the service-side twin (with `$metadata`).
    pub async fn twin(&self, device: &str, module: Option<&str>) -> Result<Value, ControlError> {
        self.request(Method::GET, &format!("{}/twin", identity_path(device, module)), None::<&()>).await
    }

    /// `PATCH .../twin` with `{"properties":{"desired": patch}}`; the device is notified.
    pub async fn patch_desired(
        &self,
        device: &str,
        module: Option<&str>,
        patch: Value,
    ) -> Result<Value, ControlError> {
        let update =
            TwinUpdate { properties: Some(super::api::TwinProperties { desired: Some(patch) }), tags: None };
        self.request(Method::PATCH, &format!("{}/twin", identity_path(device, module)), Some(&update)).await
    }

    /// `POST .../methods`.
    pub async fn invoke(
        &self,
        device: &str,
        module: Option<&str>,
        inv: &MethodInvocation,
    ) -> Result<MethodResult, ControlError> {
        self.request(Method::POST, &format!("{}/methods", identity_path(device, module)), Some(inv)).await
    }

    /// `POST /devices/{d}/messages/devicebound`.
    pub async fn send_c2d(&self, device: &str, msg: &C2dRequest) -> Result<C2dAccepted, ControlError> {
        self.request(
            Method::POST,
            &format!("{}/messages/devicebound", identity_path(device, None)),
            Some(msg),
        )
        .await
    }

    /// `GET /devices/{d}/messages/devicebound`: messages not yet acknowledged.
    pub async fn pending_c2d(&self, device: &str) -> Result<Vec<PendingC2d>, ControlError> {
        self.request(
            Method::GET,
            &format!("{}/messages/devicebound", identity_path(device, None)),
            None::<&()>,
        )
        .await
    }

    /// `GET .../messages/events`: telemetry of one device (not its modules) or module.
    pub async fn telemetry(
        &self,
        device: &str,
        module: Option<&str>,
    ) -> Result<Vec<TelemetryMessage>, ControlError> {
        self.request(Method::GET, &format!("{}/messages/events", identity_path(device, module)), None::<&()>)
            .await
    }

    /// `DELETE .../messages/events`.
    pub async fn clear_telemetry(&self, device: &str, module: Option<&str>) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::DELETE,
            &format!("{}/messages/events", identity_path(device, module)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// `GET /connections`.
    pub async fn connections(&self) -> Result<Vec<ConnectionInfo>, ControlError> {
        self.request(Method::GET, "/connections", None::<&()>).await
    }

    /// `POST .../faults/drop`: closes the connection now.
    pub async fn drop_connection(&self, device: &str, module: Option<&str>) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::POST,
            &format!("{}/faults/drop", identity_path(device, module)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// `POST .../faults/expire-token`: closes the connection as if its token expired.
    pub async fn expire_token(&self, device: &str, module: Option<&str>) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::POST,
            &format!("{}/faults/expire-token", identity_path(device, module)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// `PUT .../faults/refuse-connect`.
    pub async fn refuse_connect(
        &self,
        device: &str,
        module: Option<&str>,
        f: &RefuseConnect,
    ) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::PUT,
            &format!("{}/faults/refuse-connect", identity_path(device, module)),
            Some(f),
        )
        .await
        .map(|_| ())
    }

    /// `PUT .../faults/throttle`.
    pub async fn throttle(
        &self,
        device: &str,
        module: Option<&str>,
        f: &Throttle,
    ) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::PUT,
            &format!("{}/faults/throttle", identity_path(device, module)),
            Some(f),
        )
        .await
        .map(|_| ())
    }

    /// `DELETE .../faults`.
    pub async fn clear_faults(&self, device: &str, module: Option<&str>) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::DELETE,
            &format!("{}/faults", identity_path(device, module)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// `PUT /dps/enrollments/{registrationId}`.
    pub async fn put_enrollment(
        &self,
        registration_id: &str,
        e: &Enrollment,
    ) -> Result<Enrollment, ControlError> {
        self.request(Method::PUT, &format!("/dps/enrollments/{}", pct_encode(registration_id)), Some(e)).await
    }

    /// `PUT /dps/enrollmentGroups/{groupId}`.
    pub async fn put_enrollment_group(
        &self,
        group_id: &str,
        g: &EnrollmentGroup,
    ) -> Result<EnrollmentGroup, ControlError> {
        self.request(Method::PUT, &format!("/dps/enrollmentGroups/{}", pct_encode(group_id)), Some(g)).await
    }

    /// `PUT /aws/things/{name}`: creates (or updates) a thing.
    pub async fn aws_create_thing(&self, name: &str) -> Result<Thing, ControlError> {
        self.request(Method::PUT, &format!("/aws/things/{}", pct_encode(name)), Some(&Thing::default())).await
    }

    /// `GET /aws/things`.
    pub async fn aws_things(&self) -> Result<Vec<Thing>, ControlError> {
        self.request(Method::GET, "/aws/things", None::<&()>).await
    }

    /// `DELETE /aws/things/{name}` (its shadows go with it).
    pub async fn aws_delete_thing(&self, name: &str) -> Result<(), ControlError> {
        self.request::<Value>(Method::DELETE, &format!("/aws/things/{}", pct_encode(name)), None::<&()>)
            .await
            .map(|_| ())
    }

    /// `POST /aws/certificates`: issues (or registers) a certificate, optionally attached
    /// to a thing. The answer carries the private key of an issued certificate.
    pub async fn aws_create_certificate(
        &self,
        req: &CreateCertificate,
    ) -> Result<CertificateInfo, ControlError> {
        self.request(Method::POST, "/aws/certificates", Some(req)).await
    }

    /// `PUT /aws/certificates/{id}`: sets the status (deactivating closes connections).
    pub async fn aws_set_certificate_status(
        &self,
        id: &str,
        status: CertificateStatus,
    ) -> Result<CertificateInfo, ControlError> {
        self.request(
            Method::PUT,
            &format!("/aws/certificates/{}", pct_encode(id)),
            Some(&CertificateUpdate { status }),
        )
        .await
    }

    /// `PUT /aws/certificates/{id}/things/{thing}`: attaches a certificate to a thing.
    pub async fn aws_attach(&self, id: &str, thing: &str) -> Result<CertificateInfo, ControlError> {
        self.request(
            Method::PUT,
            &format!("/aws/certificates/{}/things/{}", pct_encode(id), pct_encode(thing)),
            None::<&()>,
        )
        .await
    }

    /// `POST /aws/access-keys`: a new SigV4 access key pair.
    pub async fn aws_create_access_key(&self) -> Result<AccessKey, ControlError> {
        self.request(Method::POST, "/aws/access-keys", None::<&()>).await
    }

    /// `PUT /aws/authorizers/{name}`: registers a custom authorizer.
    pub async fn aws_put_authorizer(&self, name: &str, a: &Authorizer) -> Result<(), ControlError> {
        self.request::<Value>(Method::PUT, &format!("/aws/authorizers/{}", pct_encode(name)), Some(a))
            .await
            .map(|_| ())
    }

    fn shadow_path(thing: &str, shadow: Option<&str>) -> String {
        match shadow {
            Some(n) => format!("/aws/things/{}/shadow?name={}", pct_encode(thing), pct_encode(n)),
            None => format!("/aws/things/{}/shadow", pct_encode(thing)),
        }
    }

    /// `GET /aws/things/{thing}/shadow[?name=]`: the full shadow document.
    pub async fn aws_shadow(&self, thing: &str, shadow: Option<&str>) -> Result<Value, ControlError> {
        self.request(Method::GET, &Self::shadow_path(thing, shadow), None::<&()>).await
    }

    /// `POST /aws/things/{thing}/shadow[?name=]` with `{"state":{"desired": desired}}`, as
    /// a cloud application: subscribers get `update/accepted`, `documents` and `delta`.
    pub async fn aws_update_desired(
        &self,
        thing: &str,
        shadow: Option<&str>,
        desired: Value,
    ) -> Result<Value, ControlError> {
        let body = serde_json::json!({ "state": { "desired": desired } });
        self.request(Method::POST, &Self::shadow_path(thing, shadow), Some(&body)).await
    }

    /// `DELETE /aws/things/{thing}/shadow[?name=]`.
    pub async fn aws_delete_shadow(&self, thing: &str, shadow: Option<&str>) -> Result<Value, ControlError> {
        self.request(Method::DELETE, &Self::shadow_path(thing, shadow), None::<&()>).await
    }

    /// `GET /aws/telemetry?clientId=&topic=`: captured PUBLISHes on user topics.
    pub async fn aws_telemetry(
        &self,
        client_id: Option<&str>,
        topic_filter: Option<&str>,
    ) -> Result<Vec<AwsTelemetry>, ControlError> {
        let mut q = Vec::new();
        if let Some(c) = client_id {
            q.push(format!("clientId={}", pct_encode(c)));
        }
        if let Some(t) = topic_filter {
            q.push(format!("topic={}", pct_encode(t)));
        }
        self.request(Method::GET, &format!("/aws/telemetry?{}", q.join("&")), None::<&()>).await
    }

    /// `GET /aws/connections`.
    pub async fn aws_connections(&self) -> Result<Vec<AwsConnection>, ControlError> {
        self.request(Method::GET, "/aws/connections", None::<&()>).await
    }

    /// `POST /aws/connections/{clientId}/drop`.
    pub async fn aws_drop(&self, client_id: &str) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::POST,
            &format!("/aws/connections/{}/drop", pct_encode(client_id)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// `GET /aws/certificates/{id}`.
    pub async fn aws_certificate(&self, id: &str) -> Result<CertificateInfo, ControlError> {
        self.request(Method::GET, &format!("/aws/certificates/{}", pct_encode(id)), None::<&()>).await
    }

    /// `GET /aws/things/{name}`: the thing with its attributes and certificates.
    pub async fn aws_thing(&self, name: &str) -> Result<Thing, ControlError> {
        self.request(Method::GET, &format!("/aws/things/{}", pct_encode(name)), None::<&()>).await
    }

    /// `POST /aws/jobs`: creates a job; each target thing gets a QUEUED execution and its
    /// subscribers `notify` / `notify-next`.
    pub async fn aws_create_job(&self, job: &CreateJob) -> Result<JobInfo, ControlError> {
        self.request(Method::POST, "/aws/jobs", Some(job)).await
    }

    /// `GET /aws/jobs`.
    pub async fn aws_jobs(&self) -> Result<Vec<JobInfo>, ControlError> {
        self.request(Method::GET, "/aws/jobs", None::<&()>).await
    }

    /// `GET /aws/jobs/{jobId}`.
    pub async fn aws_job(&self, job_id: &str) -> Result<JobInfo, ControlError> {
        self.request(Method::GET, &format!("/aws/jobs/{}", pct_encode(job_id)), None::<&()>).await
    }

    /// `POST /aws/jobs/{jobId}/cancel`: QUEUED executions (and IN_PROGRESS ones with
    /// `force`) become CANCELED.
    pub async fn aws_cancel_job(&self, job_id: &str, force: bool) -> Result<JobInfo, ControlError> {
        self.request(
            Method::POST,
            &format!("/aws/jobs/{}/cancel", pct_encode(job_id)),
            Some(&CancelJob { force }),
        )
        .await
    }

    /// `GET /aws/things/{thing}/jobs`: every execution of the thing (terminal ones too).
    pub async fn aws_job_executions(&self, thing: &str) -> Result<Vec<JobExecutionInfo>, ControlError> {
        self.request(Method::GET, &format!("/aws/things/{}/jobs", pct_encode(thing)), None::<&()>).await
    }

    /// `GET /aws/things/{thing}/jobs/{jobId}[?executionNumber=]`: one execution (default:
    /// the latest attempt).
    pub async fn aws_job_execution(
        &self,
        thing: &str,
        job_id: &str,
        execution_number: Option<u64>,
    ) -> Result<JobExecutionInfo, ControlError> {
        let mut path = format!("/aws/things/{}/jobs/{}", pct_encode(thing), pct_encode(job_id));
        if let Some(n) = execution_number {
            path.push_str(&format!("?executionNumber={n}"));
        }
        self.request(Method::GET, &path, None::<&()>).await
    }

    /// `POST /aws/things/{thing}/jobs/{jobId}/cancel`: the latest execution becomes
    /// CANCELED (an IN_PROGRESS one only with `force`, else 409).
    pub async fn aws_cancel_job_execution(
        &self,
        thing: &str,
        job_id: &str,
        force: bool,
    ) -> Result<JobExecutionInfo, ControlError> {
        self.request(
            Method::POST,
            &format!("/aws/things/{}/jobs/{}/cancel", pct_encode(thing), pct_encode(job_id)),
            Some(&CancelJob { force }),
        )
        .await
    }

    /// `DELETE /aws/things/{thing}/jobs/{jobId}`: the latest execution becomes REMOVED
    /// (the thing left the job's targets).
    pub async fn aws_remove_job_execution(
        &self,
        thing: &str,
        job_id: &str,
    ) -> Result<JobExecutionInfo, ControlError> {
        self.request(
            Method::DELETE,
            &format!("/aws/things/{}/jobs/{}", pct_encode(thing), pct_encode(job_id)),
            None::<&()>,
        )
        .await
    }

    /// `PUT /aws/jobs-settings`: jobs service settings (`notify` on QUEUED → IN_PROGRESS).
    pub async fn aws_jobs_settings(&self, settings: &JobsSettings) -> Result<JobsSettings, ControlError> {
        self.request(Method::PUT, "/aws/jobs-settings", Some(settings)).await
    }

    /// `PUT /aws/provisioning-templates/{name}`: creates or replaces a fleet-provisioning
    /// template (checked by evaluating it; 400 with the reason otherwise).
    pub async fn aws_put_provisioning_template(
        &self,
        name: &str,
        template: &ProvisioningTemplate,
    ) -> Result<ProvisioningTemplate, ControlError> {
        self.request(
            Method::PUT,
            &format!("/aws/provisioning-templates/{}", pct_encode(name)),
            Some(template),
        )
        .await
    }

    /// `GET /aws/provisioning-templates`.
    pub async fn aws_provisioning_templates(&self) -> Result<Vec<ProvisioningTemplate>, ControlError> {
        self.request(Method::GET, "/aws/provisioning-templates", None::<&()>).await
    }

    /// `DELETE /aws/provisioning-templates/{name}`.
    pub async fn aws_delete_provisioning_template(&self, name: &str) -> Result<(), ControlError> {
        self.request::<Value>(
            Method::DELETE,
            &format!("/aws/provisioning-templates/{}", pct_encode(name)),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// `POST /aws/clock`: moves the jobs / provisioning service clock forward by
    /// `seconds` and applies what expired (step and in-progress timers, ownership tokens).
    pub async fn aws_advance_clock(&self, seconds: u64) -> Result<ServiceClock, ControlError> {
        self.request(Method::POST, "/aws/clock", Some(&AdvanceClock { advance_seconds: seconds })).await
    }

    /// `PUT /aws/faults/{clientId}`: refuse CONNECT and/or throttle shadow (429), jobs
    /// (`RequestThrottled`) or provisioning (429 `Throttling`) requests.
    pub async fn aws_faults(&self, client_id: &str, f: &AwsFaults) -> Result<(), ControlError> {
        self.request::<Value>(Method::PUT, &format!("/aws/faults/{}", pct_encode(client_id)), Some(f))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(ControlClient::new("http://127.0.0.1:8990").is_ok());
        assert!(ControlClient::new("http://127.0.0.1:8990/").is_ok());
        assert!(ControlClient::new("http://localhost:8990").is_ok());
        assert!(ControlClient::new("https://127.0.0.1:8990").is_err());
        assert!(ControlClient::new("http://example.com:8990").is_err());
    }
}
