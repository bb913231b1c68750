//! Topic names and filters: validation and matching never panic; a valid name matches
//! itself as a filter and is matched by `#` unless it starts with `$`.
#![no_main]
use connector_core::topic::{topic_matches, validate_topic_filter, validate_topic_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (a, b) = s.split_once('\n').unwrap_or((s, s));
    let name_ok = validate_topic_name(a).is_ok();
    let _ = validate_topic_filter(b);
    if name_ok {
        assert!(validate_topic_filter(a).is_ok());
        assert!(topic_matches(a, a));
        assert_eq!(topic_matches("#", a), !a.starts_with('$'));
    }
    if validate_topic_filter(b).is_ok() && name_ok {
        let _ = topic_matches(b, a);
    }
});
