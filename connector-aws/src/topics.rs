//! Every Device Shadow and Jobs device topic as one enum, with one assemble and one parse
//! function (`aws-shadow.md` §1, `aws-jobs.md` §1).
//!
//! | variant | topic |
//! |---|---|
//! | [`AwsTopic::ShadowRequest`] | `{P}/get`, `{P}/update`, `{P}/delete` |
//! | [`AwsTopic::ShadowReply`] | `{P}/{op}/accepted`, `{P}/{op}/rejected` |
//! | [`AwsTopic::ShadowDelta`] | `{P}/update/delta` |
//! | [`AwsTopic::ShadowDocuments`] | `{P}/update/documents` |
//! | [`AwsTopic::ShadowFilter`] | `{P}/{op}/+` (replies, delta and documents of one operation) |
//! | [`AwsTopic::JobsRequest`] | `{T}/get`, `{T}/start-next`, `{T}/{jobId}/get`, `{T}/{jobId}/update` |
//! | [`AwsTopic::JobsReply`] | the request topic + `/accepted` or `/rejected` |
//! | [`AwsTopic::JobsNotify`] | `{T}/notify` |
//! | [`AwsTopic::JobsNotifyNext`] | `{T}/notify-next` |
//! | [`AwsTopic::JobsReplyFilter`] | `{T}/+/{reply}` (get, start-next) and `{T}/+/+/{reply}` (per job) |
//!
//! `{P}` = `$aws/things/{thing}/shadow` or `$aws/things/{thing}/shadow/name/{shadow}`;
//! `{T}` = `$aws/things/{thing}/jobs`. Names are checked against the service's rules both
//! ways.
//!
//! ```
//! use connector_aws::topics::{AwsTopic, Reply, ShadowOp};
//! let t = AwsTopic::parse("$aws/things/lamp/shadow/name/cfg/update/rejected")?;
//! assert_eq!(t, AwsTopic::ShadowReply { thing: "lamp".into(), shadow: Some("cfg".into()), op: ShadowOp::Update, reply: Reply::Rejected });
//! assert_eq!(t.assemble()?, "$aws/things/lamp/shadow/name/cfg/update/rejected");
//! # Ok::<(), connector_aws::TopicParseError>(())
//! ```

use crate::error::TopicParseError;
use crate::limits::{validate_shadow_name, validate_thing_name};

/// A shadow operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShadowOp {
    /// `get`.
    Get,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
}

impl ShadowOp {
    /// The topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOp::Get => "get",
            ShadowOp::Update => "update",
            ShadowOp::Delete => "delete",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "get" => ShadowOp::Get,
            "update" => ShadowOp::Update,
            "delete" => ShadowOp::Delete,
            _ => return None,
        })
    }
}

/// `accepted` or `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `accepted`.
    Accepted,
    /// `rejected`.
    Rejected,
}

impl Reply {
    /// The topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Reply::Accepted => "accepted",
            Reply::Rejected => "rejected",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Reply::Accepted),
            "rejected" => Some(Reply::Rejected),
            _ => None,
        }
    }
}

/// A jobs API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobsApi {
    /// GetPendingJobExecutions (`{T}/get`).
    GetPending,
    /// StartNextPendingJobExecution (`{T}/start-next`).
    StartNext,
    /// DescribeJobExecution (`{T}/{jobId}/get`; `$next` allowed).
    Describe {
        /// The job id.
        job_id: String,
    },
    /// UpdateJobExecution (`{T}/{jobId}/update`).
    Update {
        /// The job id.
        job_id: String,
    },
}

impl JobsApi {
    /// The operation as the core names it.
    pub fn op(&self) -> connector_core::JobOp {
        use connector_core::JobOp;
        match self {
            JobsApi::GetPending => JobOp::GetPending,
            JobsApi::StartNext => JobOp::StartNext,
            JobsApi::Describe { .. } => JobOp::Describe,
            JobsApi::Update { .. } => JobOp::Update,
        }
    }
    /// The job id of per-job APIs.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            JobsApi::Describe { job_id } | JobsApi::Update { job_id } => Some(job_id),
            JobsApi::GetPending | JobsApi::StartNext => None,
        }
    }
}

/// A shadow or jobs device topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AwsTopic {
    /// A request the device publishes.
    ShadowRequest {
        /// The thing.
        thing: String,
        /// The named shadow (`None`: classic).
        shadow: Option<String>,
        /// The operation.
        op: ShadowOp,
    },
    /// The answer to a request.
    ShadowReply {
        /// The thing.
        thing: String,
        /// The named shadow.
        shadow: Option<String>,
        /// The operation.
        op: ShadowOp,
        /// Accepted or rejected.
        reply: Reply,
    },
    /// Desired differs from reported after an update.
    ShadowDelta {
        /// The thing.
        thing: String,
        /// The named shadow.
        shadow: Option<String>,
    },
    /// Previous and current documents after an update.
    ShadowDocuments {
        /// The thing.
        thing: String,
        /// The named shadow.
        shadow: Option<String>,
    },
    /// `{P}/{op}/+`: everything answering one operation (update: also delta and documents).
    ShadowFilter {
        /// The thing.
        thing: String,
        /// The named shadow.
        shadow: Option<String>,
        /// The operation.
        op: ShadowOp,
    },
    /// A jobs request.
    JobsRequest {
        /// The thing.
        thing: String,
        /// The API.
        api: JobsApi,
    },
    /// The answer to a jobs request.
    JobsReply {
        /// The thing.
        thing: String,
        /// The API.
        api: JobsApi,
        /// Accepted or rejected.
        reply: Reply,
    },
    /// The pending list changed.
    JobsNotify {
        /// The thing.
        thing: String,
    },
    /// The next pending execution changed.
    JobsNotifyNext {
        /// The thing.
        thing: String,
    },
    /// Replies of the thing-level APIs (`{T}/+/{reply}`) or of the per-job APIs
    /// (`{T}/+/+/{reply}`).
    JobsReplyFilter {
        /// The thing.
        thing: String,
        /// Per-job APIs (describe, update) rather than get and start-next.
        per_job: bool,
        /// Accepted or rejected.
        reply: Reply,
    },
}

/// Who publishes on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// The device publishes.
    DeviceToService,
    /// The service publishes.
    ServiceToDevice,
    /// A subscription filter.
    Filter,
}

fn shadow_prefix(thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        Some(s) => format!("$aws/things/{thing}/shadow/name/{s}"),
        None => format!("$aws/things/{thing}/shadow"),
    }
}

fn check_thing(thing: &str) -> Result<(), TopicParseError> {
    validate_thing_name(thing).map_err(|reason| TopicParseError::InvalidName { what: "thing name", reason })
}

fn check_shadow(shadow: Option<&str>) -> Result<(), TopicParseError> {
    match shadow {
        Some(s) => validate_shadow_name(s)
            .map_err(|reason| TopicParseError::InvalidName { what: "shadow name", reason }),
        None => Ok(()),
    }
}

fn check_job(job_id: &str, allow_next: bool) -> Result<(), TopicParseError> {
    connector_core::jobs::validate_job_id(job_id, allow_next).map_err(|_| TopicParseError::InvalidName {
        what: "job id",
        reason: if allow_next {
            "[a-zA-Z0-9_-], 1–64 characters, or $next"
        } else {
            "[a-zA-Z0-9_-], 1–64 characters"
        },
    })
}

fn jobs_api_path(api: &JobsApi) -> Result<String, TopicParseError> {
    Ok(match api {
        JobsApi::GetPending => "get".into(),
        JobsApi::StartNext => "start-next".into(),
        JobsApi::Describe { job_id } => {
            check_job(job_id, true)?;
            format!("{job_id}/get")
        }
        JobsApi::Update { job_id } => {
            check_job(job_id, false)?;
            format!("{job_id}/update")
        }
    })
}

impl AwsTopic {
    /// The thing the topic belongs to.
    pub fn thing(&self) -> &str {
        match self {
            AwsTopic::ShadowRequest { thing, .. }
            | AwsTopic::ShadowReply { thing, .. }
            | AwsTopic::ShadowDelta { thing, .. }
            | AwsTopic::ShadowDocuments { thing, .. }
            | AwsTopic::ShadowFilter { thing, .. }
            | AwsTopic::JobsRequest { thing, .. }
            | AwsTopic::JobsReply { thing, .. }
            | AwsTopic::JobsNotify { thing }
            | AwsTopic::JobsNotifyNext { thing }
            | AwsTopic::JobsReplyFilter { thing, .. } => thing,
        }
    }

    /// Who publishes on it.
    pub fn direction(&self) -> Direction {
        match self {
            AwsTopic::ShadowRequest { .. } | AwsTopic::JobsRequest { .. } => Direction::DeviceToService,
            AwsTopic::ShadowFilter { .. } | AwsTopic::JobsReplyFilter { .. } => Direction::Filter,
            AwsTopic::ShadowReply { .. }
            | AwsTopic::ShadowDelta { .. }
            | AwsTopic::ShadowDocuments { .. }
            | AwsTopic::JobsReply { .. }
            | AwsTopic::JobsNotify { .. }
            | AwsTopic::JobsNotifyNext { .. } => Direction::ServiceToDevice,
        }
    }

    /// The topic text; names are checked first.
    pub fn assemble(&self) -> Result<String, TopicParseError> {
        check_thing(self.thing())?;
        let thing = self.thing();
        Ok(match self {
            AwsTopic::ShadowRequest { shadow, op, .. } => {
                check_shadow(shadow.as_deref())?;
                format!("{}/{}", shadow_prefix(thing, shadow.as_deref()), op.as_str())
            }
            AwsTopic::ShadowReply { shadow, op, reply, .. } => {
                check_shadow(shadow.as_deref())?;
                format!("{}/{}/{}", shadow_prefix(thing, shadow.as_deref()), op.as_str(), reply.as_str())
            }
            AwsTopic::ShadowDelta { shadow, .. } => {
                check_shadow(shadow.as_deref())?;
                format!("{}/update/delta", shadow_prefix(thing, shadow.as_deref()))
            }
            AwsTopic::ShadowDocuments { shadow, .. } => {
                check_shadow(shadow.as_deref())?;
                format!("{}/update/documents", shadow_prefix(thing, shadow.as_deref()))
            }
            AwsTopic::ShadowFilter { shadow, op, .. } => {
                check_shadow(shadow.as_deref())?;
                format!("{}/{}/+", shadow_prefix(thing, shadow.as_deref()), op.as_str())
            }
            AwsTopic::JobsRequest { api, .. } => format!("$aws/things/{thing}/jobs/{}", jobs_api_path(api)?),
            AwsTopic::JobsReply { api, reply, .. } => {
                format!("$aws/things/{thing}/jobs/{}/{}", jobs_api_path(api)?, reply.as_str())
            }
            AwsTopic::JobsNotify { .. } => format!("$aws/things/{thing}/jobs/notify"),
            AwsTopic::JobsNotifyNext { .. } => format!("$aws/things/{thing}/jobs/notify-next"),
            AwsTopic::JobsReplyFilter { per_job, reply, .. } => {
                let levels = if *per_job { "+/+" } else { "+" };
                format!("$aws/things/{thing}/jobs/{levels}/{}", reply.as_str())
            }
        })
    }

    /// Parses a topic. [`TopicParseError::Unknown`] means "not under a thing's shadow or
    /// jobs prefix" (a user topic, or another `$aws/` service); every other error is a
    /// malformed topic inside those namespaces.
    pub fn parse(topic: &str) -> Result<Self, TopicParseError> {
        let parts: Vec<&str> = topic.split('/').collect();
        let ["$aws", "things", thing, service @ ("shadow" | "jobs"), rest @ ..] = parts.as_slice() else {
            return Err(TopicParseError::Unknown);
        };
        check_thing(thing)?;
        let thing = (*thing).to_owned();
        if *service == "shadow" {
            let (shadow, rest) = match rest {
                ["name", name, rest @ ..] if !rest.is_empty() => {
                    check_shadow(Some(name))?;
                    (Some((*name).to_owned()), rest)
                }
                _ => (None, rest),
            };
            let unknown = TopicParseError::UnknownOperation { service: "shadow" };
            let (op, tail) = match rest {
                [op] => (ShadowOp::parse(op).ok_or(unknown)?, None),
                [op, tail] => (ShadowOp::parse(op).ok_or(unknown)?, Some(*tail)),
                _ => return Err(unknown),
            };
            return match (op, tail) {
                (op, None) => Ok(AwsTopic::ShadowRequest { thing, shadow, op }),
                (op, Some("+")) => Ok(AwsTopic::ShadowFilter { thing, shadow, op }),
                (ShadowOp::Update, Some("delta")) => Ok(AwsTopic::ShadowDelta { thing, shadow }),
                (ShadowOp::Update, Some("documents")) => Ok(AwsTopic::ShadowDocuments { thing, shadow }),
                (_, Some("delta" | "documents")) => {
                    Err(TopicParseError::Invalid("only update has delta and documents"))
                }
                (op, Some(r)) => {
                    let reply =
                        Reply::parse(r).ok_or(TopicParseError::UnknownOperation { service: "shadow" })?;
                    Ok(AwsTopic::ShadowReply { thing, shadow, op, reply })
                }
            };
        }
        let unknown = TopicParseError::UnknownOperation { service: "jobs" };
        let api = |id: &str, op: &str| -> Result<JobsApi, TopicParseError> {
            match op {
                "get" => {
                    check_job(id, true)?;
                    Ok(JobsApi::Describe { job_id: id.to_owned() })
                }
                "update" => {
                    check_job(id, false)?;
                    Ok(JobsApi::Update { job_id: id.to_owned() })
                }
                _ => Err(TopicParseError::UnknownOperation { service: "jobs" }),
            }
        };
        match rest {
            ["notify"] => Ok(AwsTopic::JobsNotify { thing }),
            ["notify-next"] => Ok(AwsTopic::JobsNotifyNext { thing }),
            ["get"] => Ok(AwsTopic::JobsRequest { thing, api: JobsApi::GetPending }),
            ["start-next"] => Ok(AwsTopic::JobsRequest { thing, api: JobsApi::StartNext }),
            ["+", r] => {
                let reply = Reply::parse(r).ok_or(unknown)?;
                Ok(AwsTopic::JobsReplyFilter { thing, per_job: false, reply })
            }
            ["+", "+", r] => {
                let reply = Reply::parse(r).ok_or(unknown)?;
                Ok(AwsTopic::JobsReplyFilter { thing, per_job: true, reply })
            }
            [op @ ("get" | "start-next"), r] if Reply::parse(r).is_some() => {
                let api = if *op == "get" { JobsApi::GetPending } else { JobsApi::StartNext };
                Ok(AwsTopic::JobsReply { thing, api, reply: Reply::parse(r).ok_or(unknown)? })
            }
            [id, op] => Ok(AwsTopic::JobsRequest { thing, api: api(id, op)? }),
            [id, op, r] => {
                let reply = Reply::parse(r).ok_or(unknown)?;
                Ok(AwsTopic::JobsReply { thing, api: api(id, op)?, reply })
            }
            _ => Err(unknown),
        }
    }
}

#[cfg(test)]
mod tests;
