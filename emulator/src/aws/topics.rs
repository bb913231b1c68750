//! AWS IoT topics: what a device PUBLISH is for, which SUBSCRIBE filters are served,
//! and filter matching with AWS IoT's rules (`shared/protocols/aws-iot-core.md` §6–§8).

use super::shadow::{ShadowKey, ShadowOp};

/// Longest topic, bytes.
pub(crate) const MAX_TOPIC_BYTES: usize = 256;
/// Most levels of a topic or filter (7 slashes).
pub(crate) const MAX_TOPIC_LEVELS: usize = 8;

/// A fleet-provisioning API (`aws-fleet-provisioning.md` §1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProvisioningApi {
    /// `$aws/certificates/create/{fmt}`.
    CreateKeysAndCertificate,
    /// `$aws/certificates/create-from-csr/{fmt}`.
    CreateCertificateFromCsr,
    /// `$aws/provisioning-templates/{template}/provision/{fmt}`.
    RegisterThing { template: String },
}

/// A request to a reserved service other than the shadow, routed by
/// [`super::dispatch_service`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// `$aws/things/{thing}/jobs/{rest}`.
    Jobs { thing: String, rest: String },
    /// Fleet provisioning; `cbor` is the payload format (`json` otherwise).
    Provisioning { api: ProvisioningApi, cbor: bool, topic: String },
}

/// What a device PUBLISH is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AwsPublish {
    /// A Device Shadow request.
    Shadow { key: ShadowKey, op: ShadowOp },
    /// Jobs or fleet provisioning.
    Service(Service),
    /// An ordinary (non-`$`) topic: telemetry, delivered to subscribers too.
    User,
}

/// Why a PUBLISH topic is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TopicError {
    #[error("topic is empty, above 256 bytes or deeper than 8 levels")]
    Shape,
    #[error("wildcards are not allowed in a publish topic")]
    Wildcard,
    #[error("reserved topic not served: {0}")]
    Reserved(String),
    #[error("invalid thing or shadow name")]
    Name,
}

/// Thing names: `[a-zA-Z0-9:_-]`, 1–128 characters.
pub(crate) fn valid_thing_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b))
}

/// Shadow names: `[$a-zA-Z0-9:_-]`, 1–64 characters.
pub(crate) fn valid_shadow_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"$:_-".contains(&b))
}

fn user_shape(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_BYTES && topic.split('/').count() <= MAX_TOPIC_LEVELS
}

/// Classifies a PUBLISH topic.
pub(crate) fn classify(topic: &str) -> Result<AwsPublish, TopicError> {
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::Shape);
    }
    if !topic.starts_with('$') {
        return if user_shape(topic) { Ok(AwsPublish::User) } else { Err(TopicError::Shape) };
    }
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        ["$aws", "things", thing, "shadow", rest @ ..] => {
            if !valid_thing_name(thing) {
                return Err(TopicError::Name);
            }
            let (name, op) = match rest {
                [op] => (None, *op),
                ["name", n, op] => {
                    if !valid_shadow_name(n) {
                        return Err(TopicError::Name);
                    }
                    (Some(n.to_string()), *op)
                }
                _ => return Err(TopicError::Reserved(topic.into())),
            };
            let op = match op {
                "get" => ShadowOp::Get,
                "update" => ShadowOp::Update,
                "delete" => ShadowOp::Delete,
                _ => return Err(TopicError::Reserved(topic.into())),
            };
            Ok(AwsPublish::Shadow { key: ShadowKey { thing: thing.to_string(), name }, op })
        }
        ["$aws", "things", thing, "jobs", rest @ ..] if !rest.is_empty() => {
            if !valid_thing_name(thing) {
                return Err(TopicError::Name);
            }
            Ok(AwsPublish::Service(Service::Jobs { thing: thing.to_string(), rest: rest.join("/") }))
        }
        ["$aws", "certificates", api @ ("create" | "create-from-csr"), fmt @ ("json" | "cbor")] => {
            let api = if *api == "create" {
                ProvisioningApi::CreateKeysAndCertificate
            } else {
                ProvisioningApi::CreateCertificateFromCsr
            };
            Ok(AwsPublish::Service(Service::Provisioning { api, cbor: *fmt == "cbor", topic: topic.into() }))
        }
        ["$aws", "provisioning-templates", t, "provision", fmt @ ("json" | "cbor")] => {
            let api = ProvisioningApi::RegisterThing { template: t.to_string() };
            Ok(AwsPublish::Service(Service::Provisioning { api, cbor: *fmt == "cbor", topic: topic.into() }))
        }
        _ => Err(TopicError::Reserved(topic.into())),
    }
}

/// True when a SUBSCRIBE filter is well formed and served: any non-`$` filter, and
/// filters under `$aws/things/{thing}/shadow/`, `$aws/things/{thing}/jobs/`,
/// `$aws/certificates/` and `$aws/provisioning-templates/` (`{thing}` may be `+`).
pub(crate) fn filter_allowed(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_BYTES || filter.split('/').count() > MAX_TOPIC_LEVELS {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if (l.contains('#') && (*l != "#" || i + 1 != levels.len())) || (l.contains('+') && *l != "+") {
            return false;
        }
    }
    if !filter.starts_with('$') {
        return true;
    }
    matches!(
        levels.as_slice(),
        ["$aws", "things", _, "shadow" | "jobs", _, ..]
            | ["$aws", "certificates", _, ..]
            | ["$aws", "provisioning-templates", _, ..]
    )
}

/// MQTT filter matching as AWS IoT does it: `+` one level, `#` the rest — but `a/#`
/// does not match `a`; wildcards in the first level do not match `$` topics.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), Some(_)) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_publish_topics() {
        assert_eq!(
            classify("$aws/things/lamp/shadow/update"),
            Ok(AwsPublish::Shadow {
                key: ShadowKey { thing: "lamp".into(), name: None },
                op: ShadowOp::Update
            })
        );
        assert_eq!(
            classify("$aws/things/lamp/shadow/name/cfg/get"),
            Ok(AwsPublish::Shadow {
                key: ShadowKey { thing: "lamp".into(), name: Some("cfg".into()) },
                op: ShadowOp::Get
            })
        );
        assert_eq!(
            classify("$aws/things/lamp/jobs/j1/update"),
            Ok(AwsPublish::Service(Service::Jobs { thing: "lamp".into(), rest: "j1/update".into() }))
        );
        assert_eq!(
            classify("$aws/provisioning-templates/t/provision/cbor"),
            Ok(AwsPublish::Service(Service::Provisioning {
                api: ProvisioningApi::RegisterThing { template: "t".into() },
                cbor: true,
                topic: "$aws/provisioning-templates/t/provision/cbor".into()
            }))
        );
        assert!(matches!(
            classify("$aws/certificates/create-from-csr/json"),
            Ok(AwsPublish::Service(Service::Provisioning {
                api: ProvisioningApi::CreateCertificateFromCsr,
                cbor: false,
                ..
            }))
        ));
        assert!(matches!(classify("$aws/certificates/create/xml"), Err(TopicError::Reserved(_))));
        assert!(matches!(classify("$aws/things/lamp/jobs"), Err(TopicError::Reserved(_))));
        assert_eq!(classify("sensors/lamp/temp"), Ok(AwsPublish::User));
        assert_eq!(classify("a/+/b"), Err(TopicError::Wildcard));
        assert!(matches!(classify("$aws/things/lamp/shadow/update/accepted"), Err(TopicError::Reserved(_))));
        assert!(matches!(classify("$aws/things/lamp/defender/metrics/json"), Err(TopicError::Reserved(_))));
        assert!(matches!(classify("$SYS/x"), Err(TopicError::Reserved(_))));
        assert_eq!(classify("a/b/c/d/e/f/g/h/i"), Err(TopicError::Shape));
        assert_eq!(classify(&"x".repeat(257)), Err(TopicError::Shape));
        assert_eq!(classify("$aws/things/l%mp/shadow/get"), Err(TopicError::Name));
    }

    #[test]
    fn filters_and_matching() {
        assert!(filter_allowed("$aws/things/lamp/shadow/update/delta"));
        assert!(filter_allowed("$aws/things/lamp/shadow/name/+/update/+"));
        assert!(filter_allowed("sensors/#"));
        assert!(!filter_allowed("$aws/events/presence/connected/x"));
        assert!(!filter_allowed("a/#/b"));
        assert!(!filter_allowed("a/b+"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/#", "a"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("#", "$aws/things/x/shadow/get/accepted"));
        assert!(matches("$aws/things/lamp/shadow/get/+", "$aws/things/lamp/shadow/get/accepted"));
    }
}
