//! DPS topics (`azure-dps.md` §4), one enum with one assemble and one match function.
//!
//! | variant | topic |
//! |---|---|
//! | [`DpsTopic::ResponsesFilter`] | `$dps/registrations/res/#` |
//! | [`DpsTopic::Register`] | `$dps/registrations/PUT/iotdps-register/?$rid={rid}` |
//! | [`DpsTopic::PollStatus`] | `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}` |
//! | [`DpsTopic::Response`] | `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]` |

use std::time::Duration;

use crate::encoding::percent_encode;
use crate::error::DpsError;
use crate::properties::PropertyBag;

const RES: &str = "$dps/registrations/res/";
const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/";
const POLL: &str = "$dps/registrations/GET/iotdps-get-operationstatus/";

/// A topic of the DPS device protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpsTopic {
    /// The responses subscription.
    ResponsesFilter,
    /// The register request.
    Register {
        /// `$rid`.
        request_id: String,
    },
    /// The operation-status poll.
    PollStatus {
        /// `$rid`.
        request_id: String,
        /// `operationId` from the 202 response.
        operation_id: String,
    },
    /// A response from DPS.
    Response {
        /// HTTP-like status.
        status: u16,
        /// `$rid` of the request.
        request_id: String,
        /// `retry-after`, whole seconds.
        retry_after: Option<Duration>,
    },
}

impl DpsTopic {
    /// The topic (or filter) text.
    pub fn assemble(&self) -> String {
        match self {
            Self::ResponsesFilter => format!("{RES}#"),
            Self::Register { request_id } => format!("{REGISTER}?$rid={}", percent_encode(request_id)),
            Self::PollStatus { request_id, operation_id } => format!(
                "{POLL}?$rid={}&operationId={}",
                percent_encode(request_id),
                percent_encode(operation_id)
            ),
            Self::Response { status, request_id, retry_after } => {
                let mut t = format!("{RES}{status}/?$rid={}", percent_encode(request_id));
                if let Some(r) = retry_after {
                    t.push_str(&format!("&retry-after={}", r.as_secs()));
                }
                t
            }
        }
    }

    /// Matches a DPS topic.
    pub fn parse(topic: &str) -> Result<Self, DpsError> {
        if topic == "$dps/registrations/res/#" {
            return Ok(Self::ResponsesFilter);
        }
        if let Some(query) = topic.strip_prefix(REGISTER) {
            let q = query_bag(query)?;
            return Ok(Self::Register { request_id: required(&q, "$rid")? });
        }
        if let Some(query) = topic.strip_prefix(POLL) {
            let q = query_bag(query)?;
            return Ok(Self::PollStatus {
                request_id: required(&q, "$rid")?,
                operation_id: required(&q, "operationId")?,
            });
        }
        let rest = topic.strip_prefix(RES).ok_or(DpsError::UnknownTopic)?;
        let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
        let status = decimal(status)
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| DpsError::InvalidStatus { value: status.chars().take(32).collect() })?;
        let q = query_bag(query)?;
        let retry_after = match q.get("retry-after") {
            None => None,
            Some(v) => {
                let v = v.unwrap_or_default();
                let secs = decimal(v)
                    .ok_or_else(|| DpsError::InvalidRetryAfter { value: v.chars().take(32).collect() })?;
                Some(Duration::from_secs(secs))
            }
        };
        Ok(Self::Response { status, request_id: required(&q, "$rid")?, retry_after })
    }
}

fn query_bag(query: &str) -> Result<PropertyBag, DpsError> {
    if !query.is_empty() && !query.starts_with('?') {
        return Err(DpsError::UnknownTopic);
    }
    Ok(PropertyBag::parse(query)?)
}

fn required(q: &PropertyBag, name: &'static str) -> Result<String, DpsError> {
    match q.get(name) {
        Some(Some(v)) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(DpsError::MissingParameter(name)),
    }
}

fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_assemble_and_parse_back() {
        let table = [
            (DpsTopic::ResponsesFilter, "$dps/registrations/res/#"),
            (DpsTopic::Register { request_id: "1".into() }, "$dps/registrations/PUT/iotdps-register/?$rid=1"),
            (
                DpsTopic::PollStatus {
                    request_id: "2".into(),
                    operation_id: "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d".into(),
                },
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d",
            ),
            (
                DpsTopic::Response { status: 202, request_id: "1".into(), retry_after: Some(Duration::from_secs(3)) },
                "$dps/registrations/res/202/?$rid=1&retry-after=3",
            ),
            (DpsTopic::Response { status: 200, request_id: "1".into(), retry_after: None }, "$dps/registrations/res/200/?$rid=1"),
        ];
        for (t, text) in table {
            assert_eq!(t.assemble(), text);
            assert_eq!(DpsTopic::parse(text).unwrap(), t, "{text}");
        }
    }

    #[test]
    fn malformed_topics_are_typed_errors() {
        let table = [
            ("$dps/other", DpsError::UnknownTopic),
            ("$dps/registrations/res/2x/?$rid=1", DpsError::InvalidStatus { value: "2x".into() }),
            ("$dps/registrations/res/70000/?$rid=1", DpsError::InvalidStatus { value: "70000".into() }),
            ("$dps/registrations/res/202/?retry-after=3", DpsError::MissingParameter("$rid")),
            (
                "$dps/registrations/res/202/?$rid=1&retry-after=3.5",
                DpsError::InvalidRetryAfter { value: "3.5".into() },
            ),
            (
                "$dps/registrations/res/202/?$rid=1&retry-after",
                DpsError::InvalidRetryAfter { value: String::new() },
            ),
            ("$dps/registrations/res/202/x", DpsError::UnknownTopic),
            (
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1",
                DpsError::MissingParameter("operationId"),
            ),
        ];
        for (topic, want) in table {
            assert_eq!(DpsTopic::parse(topic), Err(want), "{topic}");
        }
    }
}
