//! The device agent's state files: two documents separated by a NUL. `diff` and
//! `merge_patch` rebuild the second from the first (`null` counts as absent); and the first
//! written as the reported file, polled by a `ReportedWatcher` whose baseline is the second,
//! is refused with a typed error unless it is a JSON object, in which case the patch it
//! yields turns the baseline into it.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use connector_agent::state_sync::{diff, merge_patch, ReportedWatcher, StateError, MAX_STATE_BYTES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect(),
        ),
        other => other.clone(),
    }
}

fn reported_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("connector-agent-fuzz-reported-{}.json", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (first, second) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let a = serde_json::from_slice::<Value>(first).ok();
    let b = serde_json::from_slice::<Value>(second).ok();
    if let (Some(a), Some(b)) = (&a, &b) {
        let (a0, b0) = (strip_nulls(a), strip_nulls(b));
        let patch = diff(&a0, &b0);
        assert_eq!(patch.is_none(), a0 == b0);
        let mut t = a0.clone();
        if let Some(p) = &patch {
            merge_patch(&mut t, p);
        }
        assert_eq!(t, b0);
        let mut t = a0;
        if let Some(p) = diff(a, b) {
            merge_patch(&mut t, &p);
        }
        assert_eq!(strip_nulls(&t), b0);
    }
    let path = reported_file();
    std::fs::write(path, first).expect("temporary file");
    let baseline = b.filter(Value::is_object).unwrap_or_else(|| Value::Object(Default::default()));
    let mut watcher = ReportedWatcher::with_baseline(path, baseline.clone());
    match watcher.poll() {
        Ok(patch) => {
            let doc = strip_nulls(&a.expect("accepted content is JSON"));
            assert!(doc.is_object());
            let mut t = strip_nulls(&baseline);
            if let Some(p) = &patch {
                merge_patch(&mut t, p);
            }
            assert_eq!(t, doc);
            assert_eq!(watcher.last_reported(), &doc);
        }
        Err(StateError::Parse { .. }) => assert!(a.is_none()),
        Err(StateError::NotAnObject { .. }) => assert!(a.is_some_and(|v| !v.is_object())),
        Err(StateError::TooLarge { .. }) => assert!(first.len() as u64 > MAX_STATE_BYTES),
        Err(e) => panic!("{e:?}"),
    }
});
