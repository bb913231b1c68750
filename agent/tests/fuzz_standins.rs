//! Cheap stand-ins for the agent's fuzz targets (`fuzz/fuzz_targets/agent_*.rs`, which need
//! a nightly toolchain) that run in every `cargo test`: seeded random and mutated inputs for
//! each parser of outside input never panic, errors are typed, and what is accepted
//! satisfies the parser's invariant.
//!
//! - configuration ([`config::load_str`] + `CONNECTOR_AGENT_…` variables): neither an error
//!   nor the accepted settings show a secret read from a `*_file` or `*_env` key;
//! - ingest lines ([`parse_line`]): an accepted line's payload is valid JSON and the line
//!   re-enveloped parses to the same thing;
//! - state: `merge_patch(a, diff(a, b)) == b`, and a [`ReportedWatcher`] polling a file of
//!   mutated documents reports exactly the patches that rebuild the last good document;
//! - `/proc` parsers ([`connector_agent::stats`]): mutated fixtures are parsed or refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use connector_agent::config::{self, ConfigError, Overrides, ENV_KEYS};
use connector_agent::ingest::{parse_line, LineError, ParsedLine, MAX_PROPERTIES, MAX_TOPIC_BYTES};
use connector_agent::state_sync::{diff, merge_patch, ReportedWatcher, StateError};
use connector_agent::stats::{self, StatsError};
use serde_json::{json, Map, Value};

/// A small deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.next() % one_in == 0
    }
}

/// Up to `max_edits` insertions (of a byte or a whole token), deletions, replacements and
/// duplications of a span.
fn mutate(rng: &mut Rng, seed: &[u8], alphabet: &[u8], tokens: &[&str], max_edits: usize) -> Vec<u8> {
    let mut s = seed.to_vec();
    for _ in 0..rng.below(max_edits + 1) {
        let pos = rng.below(s.len() + 1);
        match rng.below(6) {
            0 => s.insert(pos, *rng.pick(alphabet)),
            1 if !tokens.is_empty() => {
                let t = rng.pick(tokens).as_bytes();
                s.splice(pos..pos, t.iter().copied());
            }
            2 if pos < s.len() => {
                let end = (pos + 1 + rng.below(8)).min(s.len());
                s.drain(pos..end);
            }
            3 if pos < s.len() => s[pos] = *rng.pick(alphabet),
            4 if pos < s.len() => {
                let end = (pos + 1 + rng.below(16)).min(s.len());
                let span: Vec<u8> = s[pos..end].to_vec();
                s.splice(end..end, span);
            }
            _ => {}
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// The device key in the connection string (base64 of `cs-secret-MARKER-4242-key!`).
const CS_KEY: &str = "Y3Mtc2VjcmV0LU1BUktFUi00MjQyLWtleSE=";
/// The DPS symmetric key (base64 of `dps-secret-MARKER-9191-key-32byt`).
const DPS_KEY: &str = "ZHBzLXNlY3JldC1NQVJLRVItOTE5MS1rZXktMzJieXQ=";

/// What must never be shown: each key's base64 text without its padding, and the decoded
/// marker (in case something decodes and echoes it).
fn secret_markers() -> Vec<&'static str> {
    vec![
        CS_KEY.trim_end_matches('='),
        DPS_KEY.trim_end_matches('='),
        "cs-secret-MARKER-4242",
        "dps-secret-MARKER-9191",
    ]
}

/// Secret files: well-formed, and the malformed shapes a person might leave in them.
fn write_secret_files(dir: &Path) {
    let cs = format!("HostName=hub.example.net;DeviceId=dev-1;SharedAccessKey={CS_KEY}");
    let files: &[(&str, String)] = &[
        ("cs", format!("{cs}\n")),
        ("cs_extra", format!("{cs};Extra\n")),
        ("cs_nodevice", format!("HostName=hub.example.net;SharedAccessKey={CS_KEY}")),
        ("cs_typo", format!("HostName=hub.example.net;DeviceId=dev-1;SharedAccessKey:{CS_KEY}")),
        ("cs_bare", CS_KEY.to_owned()),
        ("dps", format!("{DPS_KEY}\n")),
        ("dps_bad", format!("{DPS_KEY}!!")),
        ("dps_cs", cs),
        ("empty", String::new()),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn config_seeds() -> Vec<String> {
    vec![
        // A connection string from a file.
        "[agent]\nstate_dir = \"@DIR@/state\"\n[cloud]\nprovider = \"azure\"\n[azure]\nconnection_string_file = \"@DIR@/cs\"\ntransport = \"mqtt\"\n".into(),
        // A connection string from a variable.
        "[agent]\nstate_dir = \"@DIR@/state\"\n[azure]\nconnection_string_env = \"DEVICE_CS\"\nport = 8883\n[telemetry]\ninterval = \"10s\"\n".into(),
        // DPS with a symmetric key file.
        "[agent]\nstate_dir = \"@DIR@/state\"\n[azure.dps]\nid_scope = \"0ne00000000\"\nregistration_id = \"dev-1\"\nsymmetric_key_file = \"@DIR@/dps\"\ntimeout = \"60s\"\n".into(),
        // DPS with a group key from a variable.
        "[agent]\nstate_dir = \"@DIR@/state\"\n[azure.dps]\nid_scope = \"0ne00000000\"\nregistration_id = \"dev-1\"\ngroup_key_env = \"DPS_KEY\"\n".into(),
        // AWS with a certificate (the secret files stand in for the PEM files).
        "[agent]\nstate_dir = \"@DIR@/state\"\n[aws]\nendpoint = \"a1-ats.iot.eu-west-1.amazonaws.com\"\nthing_name = \"lamp\"\ncert_file = \"@DIR@/cs\"\nkey_file = \"@DIR@/dps\"\n".into(),
        // The embedded default with every other section.
        "[agent]\nstate_dir = \"@DIR@/state\"\nstatus_interval = \"1s\"\n[emulator]\ndevice_id = \"dev-1\"\n[ingest]\nbatch_max_messages = 10\nbatch_max_bytes = 4096\nbatch_max_delay = \"200ms\"\n[state]\npoll_interval = \"1s\"\n[handlers]\ndir = \"@DIR@\"\nallow = [\"reboot\"]\ntimeout = \"5s\"\n[store]\nmax_messages = 100\nmax_bytes = 65536\ndrop_policy = \"newest\"\n[metrics]\naddr = \"127.0.0.1:0\"\n[logging]\nlevel = \"debug\"\njson = true\n".into(),
    ]
}

const CONFIG_TOKENS: &[&str] = &[
    "\nconnection_string_file = \"@DIR@/cs\"\n",
    "\nconnection_string_file = \"@DIR@/cs_extra\"\n",
    "\nconnection_string_file = \"@DIR@/cs_nodevice\"\n",
    "\nconnection_string_file = \"@DIR@/cs_typo\"\n",
    "\nconnection_string_file = \"@DIR@/cs_bare\"\n",
    "\nconnection_string_file = \"@DIR@/dps\"\n",
    "\nconnection_string_file = \"@DIR@/empty\"\n",
    "\nconnection_string_env = \"DEVICE_CS\"\n",
    "\nconnection_string_env = \"DPS_KEY\"\n",
    "\nsymmetric_key_file = \"@DIR@/dps\"\n",
    "\nsymmetric_key_file = \"@DIR@/dps_bad\"\n",
    "\nsymmetric_key_file = \"@DIR@/dps_cs\"\n",
    "\ngroup_key_file = \"@DIR@/cs\"\n",
    "\nsymmetric_key_env = \"DEVICE_CS\"\n",
    "\ngroup_key_env = \"DPS_KEY\"\n",
    "\n[azure]\n",
    "\n[azure.dps]\n",
    "\n[azure.x509]\ncert_file = \"@DIR@/cs\"\nkey_file = \"@DIR@/dps\"\n",
    "\n[aws]\n",
    "\n[aws.fleet_provisioning]\ntemplate_name = \"t\"\nclaim_cert_file = \"@DIR@/cs\"\nclaim_key_file = \"@DIR@/dps\"\n",
    "\n[emulator]\n",
    "\n[cloud]\nembedded = false\n",
    "\nprovider = \"aws\"\n",
    "\nx509 = true\n",
    "\nid_scope = \"0ne00000000\"\nregistration_id = \"dev-1\"\n",
    "\nhost_name = \"hub.example.net\"\ndevice_id = \"dev-1\"\n",
    "\nendpoint = \"e\"\n",
    "\nca_file = \"@DIR@/dps\"\n",
    "\ninterval = \"0s\"\n",
    "\ninterval = 1e400\n",
    "\nrun_as = \"nobody-here\"\n",
    "\nallow = [\"..\", \"a/b\"]\n",
    "99999999999999999999",
    "\"1d\"",
    "\"5y\"",
    "[[x]]",
    "{a=1}",
];

const ENV_VALUES: &[&str] = &[
    "",
    "1",
    "no",
    "maybe",
    "10s",
    "0",
    "-5",
    "99999999999999999999",
    "@DIR@/cs",
    "@DIR@/dps",
    "@DIR@/cs_typo",
    "DEVICE_CS",
    "DPS_KEY",
    "aws",
    "azure",
    "a, b,,",
    "127.0.0.1:0",
    "debug",
    "x{",
    "0ne00000000",
];

fn check_no_secret(what: &str, text: &str, input: &str) {
    for m in secret_markers() {
        assert!(!text.contains(m), "{what} shows secret {m:?}:\n{text}\n--- input ---\n{input}");
    }
}

#[test]
fn random_configurations_never_panic_and_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    write_secret_files(dir.path());
    let d = dir.path().to_str().unwrap();
    let seeds: Vec<String> = config_seeds().iter().map(|s| s.replace("@DIR@", d)).collect();
    let tokens: Vec<String> = CONFIG_TOKENS.iter().map(|s| s.replace("@DIR@", d)).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let file = dir.path().join("agent.toml");
    let alphabet = b"\"=[]._\n #,{}0123456789azxystrue-\x00\\\xc3\xa9";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut errors) = (0usize, BTreeMap::<&str, usize>::new());
    for i in 0..5000 {
        let seed = &seeds[i % seeds.len()];
        let bytes = mutate(&mut rng, seed.as_bytes(), alphabet, &tokens, 6);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut env = vec![
            ("HOME".to_owned(), d.to_owned()),
            (
                "DEVICE_CS".to_owned(),
                format!("HostName=hub.example.net;DeviceId=dev-1;SharedAccessKey={CS_KEY}"),
            ),
            ("DPS_KEY".to_owned(), DPS_KEY.to_owned()),
        ];
        for _ in 0..rng.below(4) {
            let var = if rng.chance(20) {
                "CONNECTOR_AGENT_NO_SUCH_KEY".to_owned()
            } else {
                config::env_var_for(rng.pick(ENV_KEYS).0)
            };
            env.push((var, rng.pick(ENV_VALUES).replace("@DIR@", d)));
        }
        let input = format!("{text}\n--- env ---\n{env:?}");
        match config::load_str(&text, &file, &env, &Overrides::default()) {
            Ok(settings) => {
                accepted += 1;
                check_no_secret("Settings Debug", &format!("{settings:?}"), &input);
                // Loading is deterministic: the same input gives the same settings.
                let again = config::load_str(&text, &file, &env, &Overrides::default())
                    .unwrap_or_else(|e| panic!("accepted once, then {e}\n{input}"));
                assert_eq!(format!("{settings:?}"), format!("{again:?}"));
            }
            Err(e) => {
                check_no_secret("ConfigError Display", &e.to_string(), &input);
                check_no_secret("ConfigError Debug", &format!("{e:?}"), &input);
                assert!(!e.to_string().is_empty());
                let kind = match &e {
                    ConfigError::Syntax { .. } => "syntax",
                    ConfigError::Invalid { key, .. } => {
                        assert_eq!(e.key(), Some(key.as_str()));
                        "invalid"
                    }
                    ConfigError::File { .. } => "file",
                    ConfigError::UnknownEnv { .. } => "env",
                    _ => "other",
                };
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
    // Every secret file behind every secret key, without mutation: each malformed one is
    // refused naming the key, and none shows the secret.
    let env = vec![("HOME".to_owned(), d.to_owned())];
    for f in ["cs_extra", "cs_nodevice", "cs_typo", "cs_bare", "dps", "dps_bad", "dps_cs", "empty"] {
        for (section, key) in [
            ("[azure]", "connection_string_file"),
            ("[azure.dps]\nid_scope = \"0ne00000000\"\nregistration_id = \"dev-1\"", "symmetric_key_file"),
            ("[azure.dps]\nid_scope = \"0ne00000000\"\nregistration_id = \"dev-1\"", "group_key_file"),
        ] {
            let text = format!("[agent]\nstate_dir = \"{d}/state\"\n{section}\n{key} = \"{d}/{f}\"\n");
            let input = format!("{f}: {text}");
            match config::load_str(&text, &file, &env, &Overrides::default()) {
                Ok(s) => {
                    assert!(
                        if key == "connection_string_file" {
                            f == "dps_cs"
                        } else {
                            ["dps", "cs_bare"].contains(&f)
                        },
                        "{input} accepted"
                    );
                    check_no_secret("Settings Debug", &format!("{s:?}"), &input);
                }
                Err(e) => {
                    assert!(e.key().is_some_and(|k| k.ends_with(key)), "{input}: {e}");
                    check_no_secret("ConfigError Display", &e.to_string(), &input);
                    check_no_secret("ConfigError Debug", &format!("{e:?}"), &input);
                }
            }
        }
    }
    // The mutations reach every stage: some inputs load, and each kind of error occurs.
    assert!(accepted >= 100, "only {accepted} of 5000 accepted ({errors:?})");
    for kind in ["syntax", "invalid", "file", "env"] {
        assert!(errors.get(kind).copied().unwrap_or(0) > 0, "no {kind} error ({errors:?})");
    }
}

// ---------------------------------------------------------------------------------------
// Ingest lines
// ---------------------------------------------------------------------------------------

fn check_parsed(line: &[u8], p: &ParsedLine) {
    let payload: Value = serde_json::from_slice(&p.payload).unwrap_or_else(|e| {
        panic!("{:?}: payload {:?} is not JSON: {e}", String::from_utf8_lossy(line), p.payload)
    });
    // The payload is compact: serialising its value gives the same bytes.
    assert_eq!(payload.to_string().as_bytes(), &p.payload[..]);
    if let Some(t) = &p.topic {
        assert!(!t.is_empty() && t.len() <= MAX_TOPIC_BYTES);
        assert!(!t.chars().any(|c| c.is_control() || c == '+' || c == '#'), "{t:?}");
    }
    assert!(p.properties.len() <= MAX_PROPERTIES);
    assert!(p.properties.keys().all(|k| !k.is_empty()));
    // Re-enveloped, the line parses to the same thing.
    let mut env = Map::new();
    if let Some(t) = &p.topic {
        env.insert("topic".into(), json!(t));
    }
    if !p.properties.is_empty() {
        env.insert("properties".into(), json!(p.properties));
    }
    env.insert("payload".into(), payload);
    let again = Value::Object(env).to_string();
    assert_eq!(parse_line(again.as_bytes()).as_ref(), Ok(p), "{again}");
}

fn random_json(rng: &mut Rng, depth: usize, keys: &[&str]) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => json!((rng.next() as i64) >> rng.below(64)),
        3 => json!(rng.pick(&["", "x", "é\u{1}\"\\", "#", "+/a", "a\nb", "\u{10ffff}"])),
        4 => json!(rng.pick(&[0.5, -1e300, 1.0e-7, 123.456])),
        5 => Value::Array((0..rng.below(4)).map(|_| random_json(rng, depth - 1, keys)).collect()),
        _ => Value::Object(
            (0..rng.below(5))
                .map(|_| ((*rng.pick(keys)).to_owned(), random_json(rng, depth - 1, keys)))
                .collect(),
        ),
    }
}

/// Found by cargo-fuzz (`agent_ingest_line`): without serde_json's `float_roundtrip`, an
/// integer too large for 64 bits parsed to an f64 one step away from the nearest, so the
/// compacted payload changed the device's value and did not re-parse to itself.
#[test]
fn large_numbers_keep_their_value_through_the_agent() {
    for line in [
        "211105555555555555555555555555",
        "{\"v\":1.7976931348623157e308,\"w\":5e-324}",
        "[0.1,0.30000000000000004]",
    ] {
        let p = parse_line(line.as_bytes()).unwrap();
        check_parsed(line.as_bytes(), &p);
        let sent: Value = serde_json::from_slice(&p.payload).unwrap();
        let original: Value = serde_json::from_str(line).unwrap();
        assert_eq!(sent, original, "{line}");
    }
}

#[test]
fn random_ingest_lines_never_panic_and_accepted_ones_round_trip() {
    let seeds: &[&[u8]] = &[
        br#"{"t":21.5}"#,
        br#"{"topic":"engine","properties":{"unit":"C"},"payload":{"rpm":900}}"#,
        br#"{"payload":[1,2,{"a":null}],"topic":null,"properties":null}"#,
        br#"{"topic":"a/b","payload":"text \u00e9 \ud83d\ude00"}"#,
        br#"[1, 2.5e10, -0, true, null, "x"]"#,
        br#""just a string""#,
        b"42",
        br#"{"payload":{},"properties":{"k":"v","k2":""}}"#,
    ];
    let alphabet = b"{}[]\":,\\ 0123456789.eE-+#/tnfaxu\x00\x01\n\r\t\xff\xc3\xa9";
    let tokens = [
        "\"payload\":",
        "\"topic\":",
        "\"properties\":",
        "\"\\u0000\"",
        "null",
        "{\"a\":\"b\"}",
        "1e400",
        "\"#\"",
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut ok, mut envelopes) = (0usize, 0usize);
    let mut kinds = [0usize; 2];
    for i in 0..10000 {
        let line = if i % 3 == 0 {
            // A generated envelope or raw value.
            let mut v = random_json(&mut rng, 3, &["payload", "topic", "properties", "k", "a"]);
            if rng.chance(2) {
                v = json!({"payload": v});
                if rng.chance(2) {
                    v["topic"] = random_json(&mut rng, 1, &["x"]);
                }
                if rng.chance(2) {
                    v["properties"] = random_json(&mut rng, 1, &["k", "", "u"]);
                }
            }
            v.to_string().into_bytes()
        } else {
            mutate(&mut rng, seeds[i % seeds.len()], alphabet, &tokens, 5)
        };
        match parse_line(&line) {
            Ok(p) => {
                ok += 1;
                envelopes += usize::from(p.topic.is_some() || !p.properties.is_empty());
                check_parsed(&line, &p);
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                match e {
                    LineError::Malformed { .. } => kinds[0] += 1,
                    LineError::Envelope { .. } => kinds[1] += 1,
                    other => panic!("parse_line gave {other:?}"),
                }
            }
        }
    }
    assert!(ok > 1000 && envelopes > 100, "{ok} accepted, {envelopes} envelopes");
    assert!(kinds[0] > 100 && kinds[1] > 100, "{kinds:?}");
    // Deep nesting is refused, not a stack overflow.
    for open in [b'[', b'{'] {
        let deep: Vec<u8> = if open == b'[' { vec![b'['; 100_000] } else { b"{\"a\":".repeat(50_000) };
        assert!(matches!(parse_line(&deep), Err(LineError::Malformed { .. })));
    }
}

// ---------------------------------------------------------------------------------------
// State files
// ---------------------------------------------------------------------------------------

/// `v` with `null` object values removed at every depth (not inside arrays), as the state
/// sync reads files.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect(),
        ),
        other => other.clone(),
    }
}

/// `b` as a variation of `a`: some keys changed, removed or added.
fn vary(rng: &mut Rng, a: &Value, keys: &[&str]) -> Value {
    match a {
        Value::Object(m) if !rng.chance(8) => {
            let mut out = Map::new();
            for (k, v) in m {
                match rng.below(5) {
                    0 => {}
                    1 => {
                        out.insert(k.clone(), random_json(rng, 2, keys));
                    }
                    2 | 3 => {
                        out.insert(k.clone(), vary(rng, v, keys));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            if rng.chance(3) {
                out.insert((*rng.pick(keys)).to_owned(), random_json(rng, 2, keys));
            }
            Value::Object(out)
        }
        _ if rng.chance(2) => a.clone(),
        _ => random_json(rng, 2, keys),
    }
}

fn random_object(rng: &mut Rng, keys: &[&str]) -> Value {
    loop {
        let v = random_json(rng, 3, keys);
        if v.is_object() {
            return v;
        }
    }
}

#[test]
fn merge_patch_of_diff_rebuilds_the_new_document() {
    let keys = ["a", "b", "c", "$version", "x"];
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut changed = 0usize;
    for i in 0..10000 {
        let a = if i % 2 == 0 { random_object(&mut rng, &keys) } else { random_json(&mut rng, 3, &keys) };
        let b = if rng.chance(2) { vary(&mut rng, &a, &keys) } else { random_json(&mut rng, 3, &keys) };
        let patch = diff(&a, &b);
        // Null-free documents: the patch turns a into b exactly, and is absent iff equal.
        let (a0, b0) = (strip_nulls(&a), strip_nulls(&b));
        let patch0 = diff(&a0, &b0);
        assert_eq!(patch0.is_none(), a0 == b0, "{a0} → {b0}: {patch0:?}");
        let mut t = a0.clone();
        if let Some(p) = &patch0 {
            changed += 1;
            merge_patch(&mut t, p);
            // Applying a merge patch twice changes nothing more.
            let once = t.clone();
            merge_patch(&mut t, p);
            assert_eq!(t, once);
        }
        assert_eq!(t, b0, "{a0} → {b0}: {patch0:?}");
        // With nulls (which count as absent): the same, on the documents without them.
        let mut t = a0.clone();
        if let Some(p) = &patch {
            merge_patch(&mut t, p);
        }
        assert_eq!(strip_nulls(&t), b0, "{a} → {b}: {patch:?}");
    }
    assert!(changed > 2500, "{changed}");
}

#[test]
fn reported_watcher_survives_mutated_files_and_rebuilds_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("reported.json");
    let keys = ["fan", "led", "speed", "$meta", "x"];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut watcher = ReportedWatcher::new(&path);
    // What the cloud holds: the patches the watcher yielded, applied in order.
    let mut cloud = json!({});
    let mut last_good = json!({});
    let mut doc = random_object(&mut rng, &keys);
    let mut prev: Option<Vec<u8>> = None;
    let alphabet = b"{}[]\":,\\ 0123456789nulltrue\x00\xff";
    let (mut good, mut bad) = (0usize, 0usize);
    for _ in 0..2000 {
        doc = if rng.chance(4) { random_object(&mut rng, &keys) } else { vary(&mut rng, &doc, &keys) };
        let pretty = serde_json::to_vec_pretty(&doc).unwrap();
        let bytes = if rng.chance(3) {
            mutate(&mut rng, &pretty, alphabet, &["null", "[]", "\"a\":"], 3)
        } else {
            pretty
        };
        std::fs::write(&path, &bytes).unwrap();
        let parsed = serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object);
        let same = prev.as_deref() == Some(&bytes[..]);
        match watcher.poll() {
            Ok(patch) => {
                if let Some(p) = &patch {
                    merge_patch(&mut cloud, p);
                }
                if !same {
                    let parsed =
                        parsed.unwrap_or_else(|| panic!("accepted {:?}", String::from_utf8_lossy(&bytes)));
                    last_good = strip_nulls(&parsed);
                    good += 1;
                }
                assert!(!same || patch.is_none(), "unchanged content gave {patch:?}");
            }
            Err(e) => {
                assert!(!same, "the same bad content was reported twice");
                assert!(parsed.is_none(), "refused a valid object: {e}");
                assert!(matches!(e, StateError::Parse { .. } | StateError::NotAnObject { .. }), "{e:?}");
                assert!(watcher.is_broken());
                bad += 1;
            }
        }
        assert_eq!(watcher.last_reported(), &last_good);
        assert_eq!(cloud, last_good);
        prev = Some(bytes);
    }
    assert!(good > 500 && bad > 100, "{good} good, {bad} bad");
}

// ---------------------------------------------------------------------------------------
// /proc parsers
// ---------------------------------------------------------------------------------------

fn check_stats_error(e: &StatsError) {
    assert!(!e.to_string().is_empty());
    match e {
        StatsError::BadNumber { value, .. } => assert!(value.chars().count() <= 32, "{value:?}"),
        StatsError::Missing { .. } => {}
        other => panic!("a parser gave {other:?}"),
    }
}

#[test]
fn proc_parsers_never_panic_on_mutated_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
    let fixtures: Vec<String> = ["stat", "meminfo", "uptime", "loadavg", "self/status"]
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
        .collect();
    let alphabet = b" \t\n:.-+0123456789eEkBcpuinfNa\xc3\xa9";
    let tokens = [
        "99999999999999999999",
        "18446744073709551615",
        "1e20",
        "1e300",
        "-1",
        "NaN",
        "inf",
        "\ncpu ",
        "\nMemTotal:",
        "\nMemAvailable: 1",
        "\nVmRSS:",
        " MB",
        " kB",
        "\n",
    ];
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    let mut accepted = [0usize; 5];
    for i in 0..8000 {
        let seed = fixtures[i % fixtures.len()].as_bytes();
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed, alphabet, &tokens, 4)).into_owned();
        match stats::parse_proc_stat(&text) {
            Ok(cpu) => {
                accepted[0] += 1;
                assert!(cpu.idle_total() <= cpu.total());
                let earlier = stats::parse_proc_stat(&fixtures[0]).unwrap();
                if let Some(p) = cpu.percent_busy_since(&earlier) {
                    assert!((0.0..=100.0).contains(&p), "{p}");
                }
            }
            Err(e) => check_stats_error(&e),
        }
        match stats::parse_meminfo(&text) {
            Ok(_) => accepted[1] += 1,
            Err(e) => check_stats_error(&e),
        }
        match stats::parse_uptime(&text) {
            Ok(_) => accepted[2] += 1,
            Err(e) => check_stats_error(&e),
        }
        match stats::parse_loadavg(&text) {
            Ok(l) => {
                accepted[3] += 1;
                for v in [l.one, l.five, l.fifteen] {
                    assert!(v.is_finite() && v >= 0.0, "{l:?}");
                }
            }
            Err(e) => check_stats_error(&e),
        }
        match stats::parse_status_rss(&text) {
            Ok(_) => accepted[4] += 1,
            Err(e) => check_stats_error(&e),
        }
    }
    assert!(accepted.iter().all(|&n| n > 100), "{accepted:?}");
    // Found by this test: an uptime beyond what a Duration holds is refused, not a panic.
    for text in ["1e20 1", "18446744073709551616.5 0", "1e300"] {
        assert!(matches!(stats::parse_uptime(text), Err(StatsError::BadNumber { .. })), "{text}");
    }
}
