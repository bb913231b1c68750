//! State sync with real temp files: merge-patch and diff semantics, the desired mirror's
//! atomic writes and permissions, and the reported-file watcher's patches, errors and
//! recovery.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use connector_agent::state_sync::{
    diff, merge_patch, without_metadata, write_json_atomic, DesiredMirror, ReportedWatcher, StateError,
    MAX_STATE_BYTES,
};
use serde_json::{json, Value};
use test_support::{recv_within, wait_until_async};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn merge_patch_follows_rfc_7386() {
    // RFC 7386 appendix A.
    let cases = [
        (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
        (json!({"a":"b"}), json!({"a":null}), json!({})),
        (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
        (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
        (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
        (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a":"b"}), json!(["c"]), json!(["c"])),
        (json!({"a":"foo"}), json!(null), json!(null)),
        (json!({"a":"foo"}), json!("bar"), json!("bar")),
        (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
        (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
    ];
    for (target, patch, want) in cases {
        let mut t = target.clone();
        merge_patch(&mut t, &patch);
        assert_eq!(t, want, "{target} + {patch}");
    }
}

#[test]
fn diff_yields_only_changes_and_nulls_for_removals() {
    let old = json!({"fw":"1.0","net":{"ip":"10.0.0.2","up":true},"temp":20,"tags":["a"]});
    let new = json!({"fw":"1.1","net":{"ip":"10.0.0.2","up":false},"tags":["a"],"mode":"eco"});
    assert_eq!(diff(&old, &new), Some(json!({"fw":"1.1","net":{"up":false},"temp":null,"mode":"eco"})));
    assert_eq!(diff(&old, &old), None);
    assert_eq!(diff(&json!({"a":{"x":1}}), &json!({"a":{}})), Some(json!({"a":{"x":null}})));
    assert_eq!(diff(&json!({"a":1}), &json!({"a":null})), Some(json!({"a":null})), "null means absent");
    assert_eq!(diff(&json!({"a":null}), &json!({})), None);
    assert_eq!(diff(&json!({"a":[1,2]}), &json!({"a":[2,1]})), Some(json!({"a":[2,1]})));
    assert_eq!(diff(&json!({"a":1}), &json!({"a":{"b":null,"c":2}})), Some(json!({"a":{"c":2}})));
    // Applying the diff to the old document gives the new one.
    for (o, n) in [
        (old.clone(), new.clone()),
        (json!({}), json!({"a":{"b":{"c":1}}})),
        (json!({"a":{"b":{"c":1,"d":2}}}), json!({"a":{"b":{"d":3}},"e":[null]})),
        (json!({"x":"s"}), json!({"x":{"y":1}})),
    ] {
        let mut applied = o.clone();
        if let Some(p) = diff(&o, &n) {
            merge_patch(&mut applied, &p);
        }
        assert_eq!(applied, n, "{o} → {n}");
    }
}

#[test]
fn without_metadata_drops_dollar_keys() {
    let d = json!({"$version":4,"fan":{"speed":2,"$metadata":{}},"list":[{"$x":1,"y":2}]});
    assert_eq!(without_metadata(&d), json!({"fan":{"speed":2},"list":[{"y":2}]}));
}

fn read_json(p: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn desired_mirror_merges_patches_into_the_file_atomically_with_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.json");
    let mut m = DesiredMirror::new(&path, 0o644);
    assert!(m.apply_patch(&json!({"fan":{"speed":3,"mode":"auto"},"led":"on","$version":2})).unwrap());
    assert_eq!(read_json(&path), json!({"fan":{"speed":3,"mode":"auto"},"led":"on","$version":2}));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);

    assert!(m.apply_patch(&json!({"fan":{"speed":4},"led":null})).unwrap());
    assert_eq!(read_json(&path), json!({"fan":{"speed":4,"mode":"auto"},"$version":2}));
    assert_eq!(m.state(), &read_json(&path));

    let inode = std::fs::metadata(&path).unwrap().ino();
    assert!(!m.apply_patch(&json!({"fan":{"speed":4}})).unwrap(), "no change");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "an unchanged document is not rewritten");

    assert!(m.replace(&without_metadata(&json!({"$version":9,"only":true,"gone":null}))).unwrap());
    assert_eq!(read_json(&path), json!({"only":true}));

    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("desired.json")], "no temporary files left");

    let reopened = DesiredMirror::open(&path, 0o644).unwrap();
    assert_eq!(reopened.state(), &json!({"only":true}));
}

#[test]
fn configured_mode_is_applied_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    let mut m = DesiredMirror::new(&path, 0o600);
    m.apply_patch(&json!({"a":1})).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // Wider than a typical umask allows: still exact.
    write_json_atomic(&path, &json!({"b":2}), 0o666).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o666);
}

#[test]
fn readers_never_see_a_partial_desired_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.json");
    let mut m = DesiredMirror::new(&path, 0o644);
    m.apply_patch(&json!({"n":0})).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (path, stop, reads) = (path.clone(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let bytes = std::fs::read(&path).expect("the file always exists");
                let v: Value = serde_json::from_slice(&bytes).expect("always whole JSON");
                assert!(v["n"].is_u64());
                reads.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let big = "x".repeat(64 * 1024);
    for n in 1..=200u64 {
        m.apply_patch(&json!({"n": n, "pad": format!("{big}{n}")})).unwrap();
    }
    test_support::wait_until(WAIT, "the reader ran", || reads.load(Ordering::SeqCst) > 10);
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("the reader saw only whole documents");
}

#[test]
fn desired_write_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = DesiredMirror::new(dir.path().join("missing-dir/desired.json"), 0o644);
    assert!(matches!(m.apply_patch(&json!({"a":1})), Err(StateError::Write { .. })));
    std::fs::write(dir.path().join("bad.json"), "[1]").unwrap();
    assert!(matches!(
        DesiredMirror::open(dir.path().join("bad.json"), 0o644),
        Err(StateError::NotAnObject { .. })
    ));
}

#[test]
fn watcher_yields_patches_for_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reported.json");
    let mut w = ReportedWatcher::new(&path);
    assert_eq!(w.poll().unwrap(), None, "missing file: nothing to report");

    std::fs::write(&path, r#"{"fw":"1.0","temp":20,"net":{"up":true}}"#).unwrap();
    assert_eq!(w.poll().unwrap(), Some(json!({"fw":"1.0","temp":20,"net":{"up":true}})));
    assert_eq!(w.poll().unwrap(), None, "unchanged");

    // Same document, different bytes: no patch.
    std::fs::write(&path, "{\n  \"net\": {\"up\": true}, \"temp\": 20, \"fw\": \"1.0\"\n}\n").unwrap();
    assert_eq!(w.poll().unwrap(), None);

    std::fs::write(&path, r#"{"fw":"1.1","net":{"up":true},"mode":"eco","gone":null}"#).unwrap();
    assert_eq!(w.poll().unwrap(), Some(json!({"fw":"1.1","temp":null,"mode":"eco"})));
    assert_eq!(w.last_reported(), &json!({"fw":"1.1","net":{"up":true},"mode":"eco"}));
}

#[test]
fn watcher_with_a_baseline_reports_only_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reported.json");
    std::fs::write(&path, r#"{"fw":"1.0","temp":21}"#).unwrap();
    let mut w = ReportedWatcher::with_baseline(&path, json!({"fw":"1.0","temp":20,"old":1}));
    assert_eq!(w.poll().unwrap(), Some(json!({"temp":21,"old":null})));
}

#[test]
fn malformed_file_errors_once_keeps_last_good_state_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reported.json");
    let mut w = ReportedWatcher::new(&path);
    std::fs::write(&path, r#"{"a":1,"b":2}"#).unwrap();
    w.poll().unwrap();

    std::fs::write(&path, r#"{"a":1,"b":"#).unwrap();
    match w.poll() {
        Err(StateError::Parse { path: p, detail }) => {
            assert_eq!(p, path);
            assert!(detail.contains("line 1"), "{detail}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }
    assert!(w.is_broken());
    assert_eq!(w.poll().unwrap(), None, "the same bad content is reported once");
    assert_eq!(w.last_reported(), &json!({"a":1,"b":2}), "last good state kept");

    std::fs::write(&path, "[1,2]").unwrap();
    assert!(matches!(w.poll(), Err(StateError::NotAnObject { .. })));

    std::fs::write(&path, r#"{"a":1,"b":3}"#).unwrap();
    assert_eq!(w.poll().unwrap(), Some(json!({"b":3})), "diffed against the last good state");
    assert!(!w.is_broken());

    let huge = format!("{{\"x\":\"{}\"}}", "y".repeat(MAX_STATE_BYTES as usize));
    std::fs::write(&path, huge).unwrap();
    assert!(matches!(w.poll(), Err(StateError::TooLarge { .. })));
    assert_eq!(w.poll().unwrap(), None);
}

/// Counts `warn` events and "still unusable" debug events.
#[derive(Clone, Default)]
struct Counts {
    warns: Arc<AtomicUsize>,
    repeats: Arc<AtomicUsize>,
}

impl<S: tracing::Subscriber> Layer<S> for Counts {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Msg(String::new());
        event.record(&mut m);
        if *event.metadata().level() == tracing::Level::WARN {
            self.warns.fetch_add(1, Ordering::SeqCst);
        } else if m.0.contains("still unusable") {
            self.repeats.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Writes like careful device software: a temporary file renamed over the target, so the
/// polling task never reads a half-written file.
fn put(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn watcher_task_sends_patches_logs_a_bad_file_once_and_recovers() {
    let counts = Counts::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(counts.clone()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reported.json");
    let mut rx = ReportedWatcher::new(&path).spawn(Duration::from_millis(10), 4);

    put(&path, r#"{"state":"booting"}"#);
    assert_eq!(recv_within(&mut rx, WAIT, "the first patch").await, json!({"state":"booting"}));

    put(&path, "{not json");
    wait_until_async(WAIT, "the bad file is noticed", || counts.warns.load(Ordering::SeqCst) == 1).await;
    put(&path, "{still not json");
    wait_until_async(WAIT, "the second bad content is seen", || counts.repeats.load(Ordering::SeqCst) >= 1)
        .await;

    put(&path, r#"{"state":"running"}"#);
    assert_eq!(recv_within(&mut rx, WAIT, "the patch after the fix").await, json!({"state":"running"}));
    assert_eq!(counts.warns.load(Ordering::SeqCst), 1, "one warning for the whole bad spell");
}
