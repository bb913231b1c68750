//! The device agent's ingest lines: `parse_line` never panics; an accepted line's topic and
//! properties obey the protocol's limits, its payload is compact valid JSON, and the line
//! re-enveloped parses to the same thing.
#![no_main]
use connector_agent::ingest::{parse_line, MAX_PROPERTIES, MAX_TOPIC_BYTES};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = parse_line(data) else { return };
    let payload: Value = serde_json::from_slice(&p.payload).expect("the payload is JSON");
    assert_eq!(payload.to_string().as_bytes(), &p.payload[..]);
    if let Some(t) = &p.topic {
        assert!(!t.is_empty() && t.len() <= MAX_TOPIC_BYTES);
        assert!(!t.chars().any(|c| c.is_control() || c == '+' || c == '#'));
    }
    assert!(p.properties.len() <= MAX_PROPERTIES);
    assert!(p.properties.keys().all(|k| !k.is_empty()));
    let mut env = Map::new();
    if let Some(t) = &p.topic {
        env.insert("topic".into(), json!(t));
    }
    if !p.properties.is_empty() {
        env.insert("properties".into(), json!(p.properties));
    }
    env.insert("payload".into(), payload);
    let again = Value::Object(env).to_string();
    assert_eq!(parse_line(again.as_bytes()).as_ref(), Ok(&p));
});
