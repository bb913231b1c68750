//! MQTT topic names and topic filters: validation and matching (MQTT 3.1.1 §4.7).

use crate::error::TopicError;

/// The largest topic the MQTT wire format can carry, in bytes.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Checks a topic *name* (what a PUBLISH carries): non-empty, at most 65,535 bytes, no
/// wildcard characters, no NUL.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if let Some(pos) = topic.find(['+', '#']) {
        return Err(TopicError::WildcardInName { position: pos });
    }
    Ok(())
}

/// Checks a topic *filter* (what a SUBSCRIBE carries): `+` must occupy a whole level, `#`
/// must occupy the whole last level.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(TopicError::MisplacedMultiLevelWildcard { level: i });
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard { level: i });
        }
    }
    Ok(())
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong { len: s.len(), limit: MAX_TOPIC_BYTES });
    }
    if let Some(pos) = s.find('\0') {
        return Err(TopicError::NulCharacter { position: pos });
    }
    Ok(())
}

/// Whether `topic` matches `filter`. Both are assumed valid. Topics starting with `$` are
/// not matched by a filter starting with a wildcard (§4.7.2).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_topic_name("a/b/c").is_ok());
        assert!(validate_topic_name("/").is_ok());
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+/c"), Err(TopicError::WildcardInName { position: 2 }));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName { position: 2 }));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NulCharacter { position: 1 }));
        let long = "x".repeat(MAX_TOPIC_BYTES + 1);
        assert_eq!(
            validate_topic_name(&long),
            Err(TopicError::TooLong { len: MAX_TOPIC_BYTES + 1, limit: MAX_TOPIC_BYTES })
        );
    }

    #[test]
    fn filters_are_validated() {
        for ok in ["#", "+", "a/#", "a/+/c", "+/+", "/+", "$SYS/#"] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        let bad = [
            ("a/#/c", TopicError::MisplacedMultiLevelWildcard { level: 1 }),
            ("a#", TopicError::MisplacedMultiLevelWildcard { level: 0 }),
            ("a/b+", TopicError::MisplacedSingleLevelWildcard { level: 1 }),
            ("", TopicError::Empty),
        ];
        for (f, e) in bad {
            assert_eq!(validate_topic_filter(f), Err(e), "{f}");
        }
    }

    #[test]
    fn matching_follows_the_spec() {
        let table = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/x", true),
            ("+", "$SYS", false),
            ("#", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/c", false),
            ("a/b/c", "a/b", false),
        ];
        for (f, t, want) in table {
            assert_eq!(topic_matches(f, t), want, "{f} vs {t}");
        }
    }
}
