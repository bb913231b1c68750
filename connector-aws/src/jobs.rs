//! AWS IoT Jobs (`aws-jobs.md`) as the provider's [`JobsCodec`]: the four device APIs with
//! the request id as `clientToken`, bodies from [`connector_core::jobs`]; and the
//! classification of their answers and of `notify` / `notify-next`.
//!
//! ```
//! use connector_aws::jobs::AwsJobsCodec;
//! use connector_core::jobs::{JobStatus, JobUpdate};
//! use connector_core::provider::JobsCodec;
//! let codec = AwsJobsCodec::new("lamp")?;
//! let p = codec.update("r1", "job-1", &JobUpdate::new(JobStatus::Succeeded))?;
//! assert_eq!(p.topic, "$aws/things/lamp/jobs/job-1/update");
//! assert_eq!(&p.payload[..], br#"{"status":"SUCCEEDED","clientToken":"r1"}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use connector_core::jobs::{validate_status_details, DescribeRequest, JobUpdate, StartNextRequest};
use connector_core::provider::JobsCodec;
use connector_core::{
    Inbound, JobNotification, JobResponse, OutboundPacket, ProviderError, QoS, SubscriptionSpec,
    WireProperties,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::RequestError;
use crate::limits::{validate_client_token, validate_thing_name};
use crate::topics::{AwsTopic, JobsApi, Reply};

/// Jobs requests and subscriptions of one thing. Stateless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsJobsCodec {
    thing: String,
}

/// A request body: the typed fields, then `clientToken`.
#[derive(Serialize)]
struct Request<'a, T: Serialize> {
    #[serde(flatten)]
    fields: &'a T,
    #[serde(rename = "clientToken")]
    client_token: &'a str,
}

#[derive(Serialize)]
struct Empty {}

fn jobs_error(e: connector_core::jobs::JobsError) -> ProviderError {
    RequestError::Body { what: "jobs request", reason: e.to_string() }.into()
}

impl AwsJobsCodec {
    /// The codec of `thing`.
    pub fn new(thing: impl Into<String>) -> Result<Self, crate::AwsError> {
        let thing = thing.into();
        validate_thing_name(&thing).map_err(|r| crate::AwsError::config("thing_name", r))?;
        Ok(Self { thing })
    }

    /// The thing.
    pub fn thing(&self) -> &str {
        &self.thing
    }

    fn packet<T: Serialize>(
        &self,
        api: JobsApi,
        request_id: &str,
        fields: &T,
    ) -> Result<OutboundPacket, ProviderError> {
        validate_client_token(request_id)?;
        let topic = AwsTopic::JobsRequest { thing: self.thing.clone(), api }
            .assemble()
            .map_err(|e| RequestError::Body { what: "job id", reason: e.to_string() })?;
        let payload = serde_json::to_vec(&Request { fields, client_token: request_id })
            .map_err(|e| RequestError::Body { what: "jobs request", reason: e.to_string() })?;
        Ok(OutboundPacket {
            topic,
            payload: Bytes::from(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WireProperties::default(),
        })
    }

    /// Classifies a message on one of this thing's jobs topics (`None`: not a jobs answer
    /// or event).
    pub fn classify(&self, topic: &AwsTopic, raw_topic: &str, payload: &Bytes) -> Option<Inbound> {
        let object = || match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("malformed jobs document: not a JSON object".to_string()),
            Err(e) => Err(format!("malformed jobs document: {e}")),
        };
        let malformed = |reason: String| Inbound::Malformed { topic: raw_topic.to_owned(), reason };
        Some(match topic {
            AwsTopic::JobsReply { api, reply, .. } => match object() {
                Ok(doc) => match reply_problem(&doc, *reply) {
                    Some(reason) => malformed(reason.into()),
                    None => Inbound::JobResponse(JobResponse {
                        request_id: doc
                            .get("clientToken")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        op: api.op(),
                        job_id: api.job_id().map(str::to_owned),
                        accepted: *reply == Reply::Accepted,
                        body: payload.clone(),
                    }),
                },
                Err(reason) => malformed(reason),
            },
            AwsTopic::JobsNotify { .. } | AwsTopic::JobsNotifyNext { .. } => match object() {
                Ok(_) => Inbound::JobNotification(JobNotification {
                    next: matches!(topic, AwsTopic::JobsNotifyNext { .. }),
                    body: payload.clone(),
                }),
                Err(reason) => malformed(reason),
            },
            _ => return None,
        })
    }
}

/// What makes a reply unusable: a `clientToken` that is not a string, a rejection without
/// a string `code`.
fn reply_problem(doc: &Map<String, Value>, reply: Reply) -> Option<&'static str> {
    if doc.get("clientToken").is_some_and(|t| !t.is_string()) {
        return Some("malformed jobs document: clientToken is not a string");
    }
    if reply == Reply::Rejected && !doc.get("code").is_some_and(Value::is_string) {
        return Some("malformed jobs error document: `code` is not a string");
    }
    None
}

impl JobsCodec for AwsJobsCodec {
    /// `notify`, `notify-next`, and the replies of every API in four filters
    /// (`{T}/+/accepted|rejected`, `{T}/+/+/accepted|rejected`): six filters, QoS 1.
    fn subscriptions(&self) -> Vec<SubscriptionSpec> {
        let thing = || self.thing.clone();
        [
            AwsTopic::JobsNotify { thing: thing() },
            AwsTopic::JobsNotifyNext { thing: thing() },
            AwsTopic::JobsReplyFilter { thing: thing(), per_job: false, reply: Reply::Accepted },
            AwsTopic::JobsReplyFilter { thing: thing(), per_job: false, reply: Reply::Rejected },
            AwsTopic::JobsReplyFilter { thing: thing(), per_job: true, reply: Reply::Accepted },
            AwsTopic::JobsReplyFilter { thing: thing(), per_job: true, reply: Reply::Rejected },
        ]
        .iter()
        .filter_map(|t| t.assemble().ok())
        .map(|filter| SubscriptionSpec { filter, qos: QoS::AtLeastOnce })
        .collect()
    }

    /// `{T}/get` with `{"clientToken":…}`.
    fn get_pending(&self, request_id: &str) -> Result<OutboundPacket, ProviderError> {
        self.packet(JobsApi::GetPending, request_id, &Empty {})
    }

    /// `{T}/start-next`; status details and the step timeout (1–10080 min) are checked.
    fn start_next(
        &self,
        request_id: &str,
        request: &StartNextRequest,
    ) -> Result<OutboundPacket, ProviderError> {
        if let Some(d) = &request.status_details {
            validate_status_details(d).map_err(jobs_error)?;
        }
        if let Some(t) = request.step_timeout_in_minutes {
            if !(1..=10_080).contains(&t) {
                return Err(RequestError::Body {
                    what: "stepTimeoutInMinutes",
                    reason: "1–10080 minutes".into(),
                }
                .into());
            }
        }
        self.packet(JobsApi::StartNext, request_id, request)
    }

    /// `{T}/{jobId}/get` (`$next` allowed).
    fn describe(
        &self,
        request_id: &str,
        job_id: &str,
        request: &DescribeRequest,
    ) -> Result<OutboundPacket, ProviderError> {
        self.packet(JobsApi::Describe { job_id: job_id.to_owned() }, request_id, request)
    }

    /// `{T}/{jobId}/update`; the update is checked with [`JobUpdate::validate`].
    fn update(
        &self,
        request_id: &str,
        job_id: &str,
        request: &JobUpdate,
    ) -> Result<OutboundPacket, ProviderError> {
        request.validate().map_err(jobs_error)?;
        self.packet(JobsApi::Update { job_id: job_id.to_owned() }, request_id, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_core::jobs::JobStatus;
    use connector_core::JobOp;

    fn codec() -> AwsJobsCodec {
        AwsJobsCodec::new("lamp").unwrap()
    }

    fn classify(topic: &str, body: &str) -> Inbound {
        let t = AwsTopic::parse(topic).unwrap();
        codec().classify(&t, topic, &Bytes::copy_from_slice(body.as_bytes())).unwrap()
    }

    #[test]
    fn requests() {
        let c = codec();
        let p = c.get_pending("r1").unwrap();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("$aws/things/lamp/jobs/get", &br#"{"clientToken":"r1"}"#[..])
        );
        let req = StartNextRequest {
            status_details: Some([("step".to_string(), "download".to_string())].into()),
            step_timeout_in_minutes: Some(10),
        };
        let p = c.start_next("r2", &req).unwrap();
        assert_eq!(p.topic, "$aws/things/lamp/jobs/start-next");
        assert_eq!(
            &p.payload[..],
            br#"{"statusDetails":{"step":"download"},"stepTimeoutInMinutes":10,"clientToken":"r2"}"#
        );
        let p = c
            .describe(
                "r3",
                "$next",
                &DescribeRequest { execution_number: None, include_job_document: Some(true) },
            )
            .unwrap();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("$aws/things/lamp/jobs/$next/get", &br#"{"includeJobDocument":true,"clientToken":"r3"}"#[..])
        );
        let filters: Vec<String> = c.subscriptions().into_iter().map(|s| s.filter).collect();
        assert_eq!(
            filters,
            [
                "$aws/things/lamp/jobs/notify",
                "$aws/things/lamp/jobs/notify-next",
                "$aws/things/lamp/jobs/+/accepted",
                "$aws/things/lamp/jobs/+/rejected",
                "$aws/things/lamp/jobs/+/+/accepted",
                "$aws/things/lamp/jobs/+/+/rejected"
            ]
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let c = codec();
        assert!(c.update("r", "$next", &JobUpdate::new(JobStatus::Succeeded)).is_err());
        assert!(c.update("r", "j", &JobUpdate::new(JobStatus::Canceled)).is_err());
        assert!(c.update("", "j", &JobUpdate::new(JobStatus::Succeeded)).is_err());
        assert!(c.describe("r", "bad id", &DescribeRequest::default()).is_err());
        let req = StartNextRequest { status_details: None, step_timeout_in_minutes: Some(0) };
        assert!(c.start_next("r", &req).is_err());
    }

    #[test]
    fn answers_and_events() {
        let body = r#"{"executionState":{"status":"IN_PROGRESS","versionNumber":3},"timestamp":1,"clientToken":"c-7"}"#;
        assert_eq!(
            classify("$aws/things/lamp/jobs/job1/update/accepted", body),
            Inbound::JobResponse(JobResponse {
                request_id: "c-7".into(),
                op: JobOp::Update,
                job_id: Some("job1".into()),
                accepted: true,
                body: Bytes::from(body)
            })
        );
        let Inbound::JobResponse(r) =
            classify("$aws/things/lamp/jobs/start-next/rejected", r#"{"code":"InvalidJson","message":"m"}"#)
        else {
            panic!()
        };
        assert_eq!((r.op, r.accepted, r.request_id.as_str(), r.job_id), (JobOp::StartNext, false, "", None));
        let Inbound::JobNotification(n) = classify("$aws/things/lamp/jobs/notify-next", r#"{"timestamp":1}"#)
        else {
            panic!()
        };
        assert!(n.next);
        for (topic, body) in [
            ("$aws/things/lamp/jobs/get/accepted", "nope"),
            ("$aws/things/lamp/jobs/get/accepted", r#"{"clientToken":5}"#),
            ("$aws/things/lamp/jobs/get/rejected", r#"{"code":404}"#),
            ("$aws/things/lamp/jobs/notify", "[]"),
        ] {
            assert!(matches!(classify(topic, body), Inbound::Malformed { .. }), "{topic} {body}");
        }
    }
}
