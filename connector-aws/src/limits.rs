//! AWS IoT Core's limits (`aws-iot-core.md` §7–§8) and name rules, checked before anything
//! is sent.
//!
//! ```
//! use connector_aws::limits::{check_publish_topic, validate_client_id};
//! assert!(check_publish_topic("dt/lamp/telemetry").is_ok());
//! assert!(check_publish_topic("a/b/c/d/e/f/g/h/i").is_err()); // 8 slashes
//! assert!(check_publish_topic("$aws/rules/ingest/a/b/c/d/e/f/g/h").is_ok()); // prefix not counted
//! assert!(validate_client_id(&"x".repeat(129)).is_err());
//! ```

use connector_core::topic::validate_topic_name;
use connector_core::{ProviderError, TopicError};

/// Largest PUBLISH payload: 128 KB (above it AWS IoT disconnects the client).
pub const MAX_PAYLOAD: usize = 128 * 1024;
/// Longest topic in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// Most topic levels (7 slashes), not counting a `$aws/rules/{rule}/` or `$share/{g}/`
/// prefix.
pub const MAX_TOPIC_LEVELS: usize = 8;
/// Longest client id in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// PUBLISHes per second on one connection.
pub const DEFAULT_PUBLISH_RATE: u32 = 100;
/// Topic filters per SUBSCRIBE.
pub const MAX_FILTERS_PER_SUBSCRIBE: usize = 8;
/// Longest `clientToken` in bytes (shadow and jobs).
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;
/// Largest shadow state (`desired` + `reported`, metadata excluded).
pub const MAX_SHADOW_STATE: usize = 8 * 1024;
/// The keep-alive range the service accepts.
pub const KEEP_ALIVE_RANGE_SECS: std::ops::RangeInclusive<u64> = 30..=1200;

/// The part of a topic the length and depth limits count: without a Basic Ingest
/// `$aws/rules/{rule}/` or a shared-subscription `$share/{group}/` prefix.
pub fn counted_part(topic: &str) -> &str {
    for prefix in ["$aws/rules/", "$share/"] {
        if let Some(rest) = topic.strip_prefix(prefix) {
            return rest.split_once('/').map_or("", |(_, r)| r);
        }
    }
    topic
}

/// Checks a PUBLISH topic name against the MQTT rules and AWS IoT's length (256 bytes) and
/// depth (7 slashes) limits, counted per [`counted_part`].
pub fn check_topic_shape(topic: &str) -> Result<(), TopicError> {
    validate_topic_name(topic)?;
    let counted = counted_part(topic);
    if counted.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: counted.len(), limit: MAX_TOPIC_LEN });
    }
    let levels = counted.split('/').count();
    if levels > MAX_TOPIC_LEVELS {
        return Err(TopicError::TooDeep { levels, limit: MAX_TOPIC_LEVELS });
    }
    Ok(())
}

/// Checks a topic a device may publish user data to: [`check_topic_shape`], and no
/// reserved (`$`) topic except Basic Ingest `$aws/rules/{rule}/…` (shadow and jobs
/// requests go through the provider's codecs, not through telemetry).
pub fn check_publish_topic(topic: &str) -> Result<(), ProviderError> {
    check_topic_shape(topic)?;
    if topic.starts_with('$') {
        let ingest = topic
            .strip_prefix("$aws/rules/")
            .and_then(|r| r.split_once('/'))
            .is_some_and(|(rule, rest)| valid_rule_name(rule) && !rest.is_empty());
        if !ingest {
            return Err(ProviderError::Unsupported {
                what: format!(
                    "publishing to the reserved topic `{topic}` (only Basic Ingest `$aws/rules/{{rule}}/…`; use the shadow and jobs codecs for `$aws/things/…`)"
                ),
            });
        }
    }
    Ok(())
}

fn valid_rule_name(rule: &str) -> bool {
    !rule.is_empty() && rule.len() <= 128 && rule.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a client id: 1–128 bytes of UTF-8 without control characters (AWS IoT closes
/// an older connection with the same id; ids with `#` or `+` get no lifecycle events).
pub fn validate_client_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.len() > MAX_CLIENT_ID_LEN {
        return Err("longer than 128 bytes");
    }
    if id.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

/// Checks a thing name: `[a-zA-Z0-9:_-]`, 1–128 characters.
pub fn validate_thing_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1–128 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-')) {
        return Err("only [a-zA-Z0-9:_-] are allowed");
    }
    Ok(())
}

/// Checks a shadow name: `[$a-zA-Z0-9:_-]`, 1–64 characters.
pub fn validate_shadow_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1–64 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b':' | b'_' | b'-')) {
        return Err("only [$a-zA-Z0-9:_-] are allowed");
    }
    Ok(())
}

/// Checks a request id used as `clientToken`: 1–64 bytes.
pub fn validate_client_token(token: &str) -> Result<(), crate::error::RequestError> {
    use crate::error::RequestError;
    if token.is_empty() {
        return Err(RequestError::RequestId { reason: "empty" });
    }
    if token.len() > MAX_CLIENT_TOKEN_LEN {
        return Err(RequestError::RequestId { reason: "a clientToken is at most 64 bytes" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_limits_follow_the_service() {
        let ok = [
            "a",
            "a/b/c/d/e/f/g/h",
            "$aws/rules/my_rule/a/b/c/d/e/f/g/h",
            "$aws/rules/r/x",
            &"x".repeat(256),
        ];
        for t in ok {
            assert_eq!(check_publish_topic(t), Ok(()), "{t}");
        }
        assert_eq!(
            check_publish_topic("a/b/c/d/e/f/g/h/i"),
            Err(ProviderError::Topic(TopicError::TooDeep { levels: 9, limit: 8 }))
        );
        assert_eq!(
            check_publish_topic(&"x".repeat(257)),
            Err(ProviderError::Topic(TopicError::TooLong { len: 257, limit: 256 }))
        );
        assert!(check_publish_topic(&format!("$aws/rules/r/{}", "x".repeat(256))).is_ok());
        for reserved in [
            "$aws/things/lamp/shadow/update",
            "$aws/rules/r",
            "$aws/rules/r/",
            "$aws/rules/bad-rule/x",
            "$SYS/x",
            "$aws/events/presence/connected/x",
        ] {
            assert!(
                matches!(check_publish_topic(reserved), Err(ProviderError::Unsupported { .. })),
                "{reserved}"
            );
        }
        assert!(matches!(check_publish_topic("a/+"), Err(ProviderError::Topic(_))));
        assert!(matches!(check_publish_topic(""), Err(ProviderError::Topic(TopicError::Empty))));
        assert_eq!(counted_part("$share/g/a/b"), "a/b");
    }

    #[test]
    fn names_and_ids() {
        assert!(validate_client_id("lamp-1").is_ok());
        assert!(validate_client_id(&"é".repeat(64)).is_ok());
        assert!(validate_client_id(&"é".repeat(65)).is_err(), "130 bytes");
        assert!(validate_client_id("").is_err());
        assert!(validate_client_id("a\nb").is_err());
        assert!(validate_thing_name("Lamp:1_a-b").is_ok());
        for bad in ["", "a/b", "a b", "$x", &"x".repeat(129)] {
            assert!(validate_thing_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_shadow_name("$cfg").is_ok());
        for bad in ["", "a/b", "+", &"x".repeat(65)] {
            assert!(validate_shadow_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_client_token(&"t".repeat(64)).is_ok());
        assert!(validate_client_token(&"t".repeat(65)).is_err());
        assert!(validate_client_token("").is_err());
    }
}
