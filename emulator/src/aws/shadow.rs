//! The Device Shadow service, as a pure state machine (`shared/protocols/aws-shadow.md`
//! §4 and §8): requests in, documents to publish out. No I/O and no clock: the caller
//! passes `now` (seconds) and publishes what comes back on `{prefix}/{suffix}`.
//!
//! * Merge: only the fields sent change; `null` deletes a key (and its metadata);
//!   objects merge recursively; anything else (arrays included) replaces.
//! * Metadata mirrors `desired`/`reported`; every leaf written gets `{"timestamp": now}`,
//!   an array gets one entry per element.
//! * Delta = desired keys whose value differs from reported (deep; arrays whole),
//!   published on every accepted update while non-empty, always complete.
//! * Version +1 per accepted update (1 for a new shadow, or the deleted version + 1 when
//!   recreated within 48 h); `version` in a request is an optimistic lock (409).
//! * Limits: 8 KB request payload and 8 KB resulting state (413), nesting ≤ 6 levels
//!   inside `desired`/`reported` (arrays count as a level), `clientToken` ≤ 64 bytes,
//!   no `null` inside arrays (400 `State contains an invalid node`).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Largest request payload and largest resulting state (desired + reported), bytes.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 8 * 1024;
/// Largest nesting inside `desired` or `reported`.
pub(crate) const MAX_DEPTH: usize = 6;
/// Largest `clientToken`, bytes.
pub(crate) const MAX_CLIENT_TOKEN: usize = 64;
/// How long a deleted shadow's version is remembered (48 h).
const VERSION_MEMORY_SECS: u64 = 48 * 3600;

/// A shadow: the thing and the shadow name (`None`: the classic shadow).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ShadowKey {
    pub thing: String,
    pub name: Option<String>,
}

impl ShadowKey {
    /// `$aws/things/{thing}/shadow[/name/{name}]`.
    pub fn prefix(&self) -> String {
        match &self.name {
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", self.thing),
            None => format!("$aws/things/{}/shadow", self.thing),
        }
    }

    /// The name in a 404 message: the shadow name, or the thing name for the classic one.
    fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.thing)
    }
}

/// A shadow operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShadowOp {
    Get,
    Update,
    Delete,
}

impl ShadowOp {
    /// The topic level of the operation.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOp::Get => "get",
            ShadowOp::Update => "update",
            ShadowOp::Delete => "delete",
        }
    }
}

/// A rejected request: HTTP-like code and the exact message of the docs (§5).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub(crate) struct ShadowError {
    pub code: u16,
    pub message: String,
}

impl ShadowError {
    pub fn new(code: u16, message: impl Into<String>) -> ShadowError {
        ShadowError { code, message: message.into() }
    }

    fn bad(message: &str) -> ShadowError {
        ShadowError::new(400, message)
    }

    /// The error document (`*/rejected`).
    pub fn document(&self, client_token: Option<&str>, now: u64) -> Value {
        let mut d = json!({ "code": self.code, "message": self.message, "timestamp": now });
        if let Some(t) = client_token {
            d["clientToken"] = json!(t);
        }
        d
    }
}

/// One message to publish: topic suffix under the shadow prefix (`update/accepted`, …)
/// and its JSON document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outgoing {
    pub suffix: &'static str,
    pub document: Value,
}

/// One stored shadow.
#[derive(Clone, Debug, Default)]
struct Shadow {
    desired: Option<Map<String, Value>>,
    reported: Option<Map<String, Value>>,
    meta_desired: Map<String, Value>,
    meta_reported: Map<String, Value>,
    version: u64,
}

/// The version of a deleted shadow and when it was deleted.
#[derive(Clone, Copy, Debug)]
struct Deleted {
    version: u64,
    at: u64,
}

/// Every shadow of the emulator.
#[derive(Debug, Default)]
pub(crate) struct Shadows {
    live: HashMap<ShadowKey, Shadow>,
    deleted: HashMap<ShadowKey, Deleted>,
}

impl Shadows {
    /// Handles a device request; returns what to publish (an error becomes the
    /// `{op}/rejected` document).
    pub fn handle(&mut self, key: &ShadowKey, op: ShadowOp, payload: &[u8], now: u64) -> Vec<Outgoing> {
        let result = match op {
            ShadowOp::Get => {
                self.get(key, payload, now).map(|d| vec![Outgoing { suffix: "get/accepted", document: d }])
            }
            ShadowOp::Update => self.update(key, payload, now),
            ShadowOp::Delete => self.delete(key, payload, now),
        };
        result.unwrap_or_else(|(e, token)| vec![rejected(op, &e, token.as_deref(), now)])
    }

    /// The full document (`get/accepted` body).
    pub fn get(
        &self,
        key: &ShadowKey,
        payload: &[u8],
        now: u64,
    ) -> Result<Value, (ShadowError, Option<String>)> {
        let token = simple_request(payload)?;
        let s = self.live.get(key).ok_or_else(|| (not_found(key), token.clone()))?;
        let mut state = Map::new();
        let mut metadata = Map::new();
        if let Some(d) = &s.desired {
            state.insert("desired".into(), Value::Object(d.clone()));
            metadata.insert("desired".into(), Value::Object(s.meta_desired.clone()));
        }
        if let Some(r) = &s.reported {
            state.insert("reported".into(), Value::Object(r.clone()));
            metadata.insert("reported".into(), Value::Object(s.meta_reported.clone()));
        }
        let delta = s.delta();
        if !delta.is_empty() {
            state.insert("delta".into(), Value::Object(delta));
        }
        let mut doc = json!({ "state": state, "metadata": metadata, "version": s.version, "timestamp": now });
        if let Some(t) = token {
            doc["clientToken"] = json!(t);
        }
        Ok(doc)
    }

    /// Names of the thing's shadows (`None` = classic).
    pub fn list(&self, thing: &str) -> Vec<Option<String>> {
        let mut v: Vec<Option<String>> =
            self.live.keys().filter(|k| k.thing == thing).map(|k| k.name.clone()).collect();
        v.sort();
        v
    }

    /// Forgets every shadow of a deleted thing.
    pub fn remove_thing(&mut self, thing: &str) {
        self.live.retain(|k, _| k.thing != thing);
        self.deleted.retain(|k, _| k.thing != thing);
    }

    /// An update (§8). `Err` carries the error and the request's clientToken, if valid.
    pub fn update(
        &mut self,
        key: &ShadowKey,
        payload: &[u8],
        now: u64,
    ) -> Result<Vec<Outgoing>, (ShadowError, Option<String>)> {
        if payload.len() > MAX_DOCUMENT_BYTES {
            return Err((ShadowError::new(413, "The payload exceeds the maximum size allowed"), None));
        }
        let text = std::str::from_utf8(payload).map_err(|_| {
            (ShadowError::new(415, "Unsupported documented encoding; supported encoding is UTF-8"), None)
        })?;
        let req: Value = serde_json::from_str(text).map_err(|_| (ShadowError::bad("Invalid JSON"), None))?;
        let Value::Object(req) = req else { return Err((ShadowError::bad("Invalid JSON"), None)) };
        let token = client_token(&req)?;
        let fail = |m: &str| (ShadowError::bad(m), token.clone());
        let expected = match req.get("version") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| fail("Invalid version"))?),
        };
        let state = req.get("state").ok_or_else(|| fail("Missing required node: state"))?;
        let sections: Map<String, Value> = match state {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => return Err(fail("State node must be an object")),
        };
        for (k, v) in &sections {
            let what = match k.as_str() {
                "desired" => "Desired node must be an object",
                "reported" => "Reported node must be an object",
                _ => return Err(fail("State contains an invalid node")),
            };
            match v {
                Value::Null => {}
                Value::Object(m) => {
                    if depth_of_map(m) > MAX_DEPTH {
                        return Err(fail("JSON contains too many levels of nesting; maximum is 6"));
                    }
                    if has_null_in_array(v) {
                        return Err(fail("State contains an invalid node"));
                    }
                }
                _ => return Err(fail(what)),
            }
        }
        let existing = self.live.get(key);
        let current_version = existing.map(|s| s.version);
        if let Some(v) = expected {
            if Some(v) != current_version {
                return Err((ShadowError::new(409, "Version conflict"), token));
            }
        }
        let previous = existing.cloned();
        let mut next = previous.clone().unwrap_or_default();
        let mut meta_echo = Map::new();
        for (k, v) in &sections {
            let (data, meta) = if k == "desired" {
                (&mut next.desired, &mut next.meta_desired)
            } else {
                (&mut next.reported, &mut next.meta_reported)
            };
            match v {
                Value::Null => {
                    *data = None;
                    meta.clear();
                }
                Value::Object(patch) => {
                    let target = data.get_or_insert_with(Map::new);
                    merge(target, meta, patch, now);
                }
                _ => {}
            }
            meta_echo.insert(k.clone(), metadata_of(v, now));
        }
        if next.state_size() > MAX_DOCUMENT_BYTES {
            return Err((ShadowError::new(413, "The payload exceeds the maximum size allowed"), token));
        }
        next.version = match (&previous, self.deleted.get(key)) {
            (Some(p), _) => p.version + 1,
            (None, Some(d)) if now.saturating_sub(d.at) < VERSION_MEMORY_SECS => d.version + 1,
            (None, _) => 1,
        };
        self.deleted.remove(key);
        let with_token = |mut d: Value| {
            if let Some(t) = &token {
                d["clientToken"] = json!(t);
            }
            d
        };
        let mut out = vec![Outgoing {
            suffix: "update/accepted",
            document: with_token(json!({
                "state": Value::Object(sections),
                "metadata": meta_echo,
                "version": next.version,
                "timestamp": now,
            })),
        }];
        let mut documents = json!({ "current": next.document(), "timestamp": now });
        if let Some(p) = &previous {
            documents["previous"] = p.document();
        }
        out.push(Outgoing { suffix: "update/documents", document: with_token(documents) });
        let delta = next.delta();
        if !delta.is_empty() {
            let meta = delta_metadata(&delta, &next.meta_desired);
            out.push(Outgoing {
                suffix: "update/delta",
                document: with_token(json!({
                    "version": next.version,
                    "timestamp": now,
                    "state": delta,
                    "metadata": meta,
                })),
            });
        }
        self.live.insert(key.clone(), next);
        Ok(out)
    }

    /// A delete: the version is kept for 48 h.
    pub fn delete(
        &mut self,
        key: &ShadowKey,
        payload: &[u8],
        now: u64,
    ) -> Result<Vec<Outgoing>, (ShadowError, Option<String>)> {
        let token = simple_request(payload)?;
        let s = self.live.remove(key).ok_or_else(|| (not_found(key), token.clone()))?;
        self.deleted.insert(key.clone(), Deleted { version: s.version, at: now });
        let mut d = json!({ "version": s.version, "timestamp": now });
        if let Some(t) = token {
            d["clientToken"] = json!(t);
        }
        Ok(vec![Outgoing { suffix: "delete/accepted", document: d }])
    }
}

impl Shadow {
    fn delta(&self) -> Map<String, Value> {
        match (&self.desired, &self.reported) {
            (Some(d), Some(r)) => delta(d, r),
            (Some(d), None) => d.clone(),
            _ => Map::new(),
        }
    }

    /// `{"state":{desired,reported},"metadata":{…},"version"}` (no delta).
    fn document(&self) -> Value {
        let mut state = Map::new();
        let mut metadata = Map::new();
        if let Some(d) = &self.desired {
            state.insert("desired".into(), Value::Object(d.clone()));
            metadata.insert("desired".into(), Value::Object(self.meta_desired.clone()));
        }
        if let Some(r) = &self.reported {
            state.insert("reported".into(), Value::Object(r.clone()));
            metadata.insert("reported".into(), Value::Object(self.meta_reported.clone()));
        }
        json!({ "state": state, "metadata": metadata, "version": self.version })
    }

    fn state_size(&self) -> usize {
        let size = |m: &Option<Map<String, Value>>| {
            m.as_ref().map_or(0, |m| serde_json::to_vec(m).map_or(usize::MAX / 2, |v| v.len()))
        };
        size(&self.desired) + size(&self.reported)
    }
}

fn rejected(op: ShadowOp, e: &ShadowError, token: Option<&str>, now: u64) -> Outgoing {
    let suffix = match op {
        ShadowOp::Get => "get/rejected",
        ShadowOp::Update => "update/rejected",
        ShadowOp::Delete => "delete/rejected",
    };
    Outgoing { suffix, document: e.document(token, now) }
}

/// The `{op}/rejected` message for an error decided outside the store (429, 404 thing).
pub(crate) fn rejection(op: ShadowOp, e: &ShadowError, payload: &[u8], now: u64) -> Outgoing {
    let token = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("clientToken").and_then(Value::as_str).map(str::to_owned))
        .filter(|t| t.len() <= MAX_CLIENT_TOKEN);
    rejected(op, e, token.as_deref(), now)
}

fn not_found(key: &ShadowKey) -> ShadowError {
    ShadowError::new(404, format!("No shadow exists with name: '{}'", key.display_name()))
}

/// Get/delete bodies: empty, or an object with an optional clientToken.
fn simple_request(payload: &[u8]) -> Result<Option<String>, (ShadowError, Option<String>)> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text = std::str::from_utf8(payload).map_err(|_| {
        (ShadowError::new(415, "Unsupported documented encoding; supported encoding is UTF-8"), None)
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => client_token(&m),
        _ => Err((ShadowError::bad("Invalid JSON"), None)),
    }
}

fn client_token(req: &Map<String, Value>) -> Result<Option<String>, (ShadowError, Option<String>)> {
    match req.get("clientToken") {
        None => Ok(None),
        Some(Value::String(t)) if t.len() <= MAX_CLIENT_TOKEN => Ok(Some(t.clone())),
        Some(_) => Err((ShadowError::bad("Invalid clientToken"), None)),
    }
}

/// Nesting of a `desired`/`reported` object: its keys are level 1.
fn depth_of_map(m: &Map<String, Value>) -> usize {
    1 + m.values().map(depth_of_value).max().unwrap_or(0)
}

fn depth_of_value(v: &Value) -> usize {
    match v {
        Value::Object(m) => depth_of_map(m),
        Value::Array(a) => 1 + a.iter().map(depth_of_value).max().unwrap_or(0),
        _ => 0,
    }
}

fn has_null_in_array(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().any(has_null_in_array),
        Value::Array(a) => a.iter().any(|e| e.is_null() || has_null_in_array(e)),
        _ => false,
    }
}

/// Merges `patch` into `data`, keeping `meta` in step (§4.1, §4.2).
fn merge(data: &mut Map<String, Value>, meta: &mut Map<String, Value>, patch: &Map<String, Value>, now: u64) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                data.remove(k);
                meta.remove(k);
            }
            Value::Object(sub) => {
                if !matches!(data.get(k), Some(Value::Object(_))) {
                    data.insert(k.clone(), Value::Object(Map::new()));
                    meta.insert(k.clone(), Value::Object(Map::new()));
                }
                if !matches!(meta.get(k), Some(Value::Object(_))) {
                    meta.insert(k.clone(), Value::Object(Map::new()));
                }
                if let (Some(Value::Object(d)), Some(Value::Object(m))) = (data.get_mut(k), meta.get_mut(k)) {
                    merge(d, m, sub, now);
                }
            }
            _ => {
                data.insert(k.clone(), v.clone());
                meta.insert(k.clone(), metadata_of(v, now));
            }
        }
    }
}

/// Metadata of a value as written: leaves (and `null`) get `{"timestamp": now}`.
fn metadata_of(v: &Value, now: u64) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), metadata_of(v, now))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|e| metadata_of(e, now)).collect()),
        _ => json!({ "timestamp": now }),
    }
}

/// `delta(D, R)` of §4.3.
pub(crate) fn delta(d: &Map<String, Value>, r: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, dv) in d {
        match (dv, r.get(k)) {
            (_, None) => {
                out.insert(k.clone(), dv.clone());
            }
            (Value::Object(ds), Some(Value::Object(rs))) => {
                let sub = delta(ds, rs);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (_, Some(rv)) if rv != dv => {
                out.insert(k.clone(), dv.clone());
            }
            _ => {}
        }
    }
    out
}

/// The desired metadata of exactly the delta's fields.
fn delta_metadata(delta: &Map<String, Value>, meta: &Map<String, Value>) -> Map<String, Value> {
    delta
        .iter()
        .filter_map(|(k, v)| {
            let m = meta.get(k)?;
            Some(match (v, m) {
                (Value::Object(dv), Value::Object(mm)) => (k.clone(), Value::Object(delta_metadata(dv, mm))),
                _ => (k.clone(), m.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: Option<&str>) -> ShadowKey {
        ShadowKey { thing: "lamp".into(), name: name.map(str::to_owned) }
    }

    fn update(s: &mut Shadows, k: &ShadowKey, body: Value, now: u64) -> Vec<Outgoing> {
        s.handle(k, ShadowOp::Update, body.to_string().as_bytes(), now)
    }

    fn find<'a>(out: &'a [Outgoing], suffix: &str) -> Option<&'a Value> {
        out.iter().find(|o| o.suffix == suffix).map(|o| &o.document)
    }

    #[test]
    fn worked_sequence_of_the_docs() {
        let mut s = Shadows::default();
        let k = key(None);
        let out = update(
            &mut s,
            &k,
            json!({"state":{"reported":{"ID":"SmartLamp21","ColorRGB":[128,128,128]}},"clientToken":"t1"}),
            100,
        );
        let acc = find(&out, "update/accepted").unwrap();
        assert_eq!(acc["version"], 1);
        assert_eq!(acc["clientToken"], "t1");
        assert_eq!(
            acc["metadata"]["reported"]["ColorRGB"],
            json!([{"timestamp":100},{"timestamp":100},{"timestamp":100}])
        );
        assert!(find(&out, "update/delta").is_none());
        assert!(find(&out, "update/documents").unwrap().get("previous").is_none());
        let out =
            update(&mut s, &k, json!({"state":{"desired":{"ColorRGB":[255,255,0]}},"clientToken":"t2"}), 101);
        let delta = find(&out, "update/delta").unwrap();
        assert_eq!(delta["state"], json!({"ColorRGB":[255,255,0]}));
        assert_eq!(delta["version"], 2);
        assert_eq!(delta["clientToken"], "t2");
        assert_eq!(delta["metadata"]["ColorRGB"][0], json!({"timestamp":101}));
        let out = update(&mut s, &k, json!({"state":{"reported":{"ColorRGB":[255,255,0]}}}), 102);
        assert!(find(&out, "update/delta").is_none());
        let docs = find(&out, "update/documents").unwrap();
        assert_eq!(docs["previous"]["version"], 2);
        assert_eq!(docs["previous"]["state"]["reported"]["ColorRGB"], json!([128, 128, 128]));
        assert_eq!(docs["current"]["version"], 3);
        assert!(docs["current"]["state"].get("delta").is_none());
        let out = update(&mut s, &k, json!({"state":{"reported":{"x":1}},"version":2}), 103);
        assert_eq!(find(&out, "update/rejected").unwrap()["code"], 409);
        assert_eq!(find(&out, "update/rejected").unwrap()["message"], "Version conflict");
        let out = update(&mut s, &k, json!({"state":{"reported":{"x":1}},"version":3}), 103);
        assert_eq!(find(&out, "update/accepted").unwrap()["version"], 4);
    }

    #[test]
    fn merge_null_delete_nested_delta_and_arrays() {
        let mut s = Shadows::default();
        let k = key(Some("cfg"));
        update(
            &mut s,
            &k,
            json!({"state":{"desired":{"lights":{"color":{"r":255,"g":255,"b":255}},"list":[1,2,3],"gone":1},
                             "reported":{"lights":{"color":{"r":255,"g":0,"b":255}},"list":[1,2,3,4]}}}),
            1,
        );
        let doc = s.get(&k, b"", 2).unwrap();
        assert_eq!(doc["state"]["delta"], json!({"lights":{"color":{"g":255}},"list":[1,2,3],"gone":1}));
        update(
            &mut s,
            &k,
            json!({"state":{"desired":{"gone":null,"list":[9],"lights":{"color":{"b":0}}}}}),
            3,
        );
        let doc = s.get(&k, b"", 4).unwrap();
        assert_eq!(doc["state"]["desired"], json!({"lights":{"color":{"r":255,"g":255,"b":0}},"list":[9]}));
        assert!(doc["metadata"]["desired"].get("gone").is_none());
        assert_eq!(doc["metadata"]["desired"]["lights"]["color"]["b"], json!({"timestamp":3}));
        assert_eq!(doc["metadata"]["desired"]["lights"]["color"]["r"], json!({"timestamp":1}));
        // Whole section removed.
        update(&mut s, &k, json!({"state":{"desired":null}}), 5);
        let doc = s.get(&k, b"", 6).unwrap();
        assert!(doc["state"].get("desired").is_none() && doc["state"].get("delta").is_none());
        assert_eq!(doc["version"], 3);
    }

    #[test]
    fn validation_errors_have_the_documented_messages() {
        let mut s = Shadows::default();
        let k = key(None);
        let cases: Vec<(&[u8], u16, &str)> = vec![
            (b"not json", 400, "Invalid JSON"),
            (br#"{"clientToken":"a"}"#, 400, "Missing required node: state"),
            (br#"{"state":1}"#, 400, "State node must be an object"),
            (br#"{"state":{"desired":1}}"#, 400, "Desired node must be an object"),
            (br#"{"state":{"reported":[1]}}"#, 400, "Reported node must be an object"),
            (br#"{"state":{"delta":{}}}"#, 400, "State contains an invalid node"),
            (br#"{"state":{"reported":{"a":[1,null]}}}"#, 400, "State contains an invalid node"),
            (br#"{"state":{},"version":"x"}"#, 400, "Invalid version"),
            (b"\xff\xfe", 415, "Unsupported documented encoding; supported encoding is UTF-8"),
            (
                br#"{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#,
                400,
                "JSON contains too many levels of nesting; maximum is 6",
            ),
        ];
        for (body, code, msg) in cases {
            let out = s.handle(&k, ShadowOp::Update, body, 1);
            let rej = find(&out, "update/rejected").unwrap_or_else(|| panic!("{body:?}"));
            assert_eq!((rej["code"].as_u64().unwrap() as u16, rej["message"].as_str().unwrap()), (code, msg));
        }
        let ok = br#"{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}"#;
        assert!(find(&s.handle(&k, ShadowOp::Update, ok, 1), "update/accepted").is_some());
        let long = json!({"state":{},"clientToken":"x".repeat(65)});
        let out = update(&mut s, &k, long, 1);
        assert_eq!(find(&out, "update/rejected").unwrap()["message"], "Invalid clientToken");
        let big = json!({"state":{"reported":{"a":"x".repeat(9000)}}});
        assert_eq!(find(&update(&mut s, &k, big, 1), "update/rejected").unwrap()["code"], 413);
        // Below the request limit, above the state limit once merged.
        update(&mut s, &k, json!({"state":{"reported":{"a":"x".repeat(5000)}}}), 1);
        let out = update(&mut s, &k, json!({"state":{"desired":{"b":"y".repeat(5000)}}}), 1);
        assert_eq!(find(&out, "update/rejected").unwrap()["code"], 413);
    }

    #[test]
    fn delete_then_get_is_404_and_the_version_continues() {
        let mut s = Shadows::default();
        let k = key(None);
        update(&mut s, &k, json!({"state":{"reported":{"a":1}}}), 1);
        update(&mut s, &k, json!({"state":{"reported":{"a":2}}}), 2);
        let out = s.handle(&k, ShadowOp::Delete, br#"{"clientToken":"d"}"#, 3);
        assert_eq!(
            find(&out, "delete/accepted").unwrap(),
            &json!({"version":2,"timestamp":3,"clientToken":"d"})
        );
        let out = s.handle(&k, ShadowOp::Get, br#"{"clientToken":"g"}"#, 4);
        assert_eq!(
            find(&out, "get/rejected").unwrap(),
            &json!({"code":404,"message":"No shadow exists with name: 'lamp'","clientToken":"g","timestamp":4})
        );
        let out = s.handle(&key(Some("n1")), ShadowOp::Delete, b"", 4);
        assert_eq!(find(&out, "delete/rejected").unwrap()["message"], "No shadow exists with name: 'n1'");
        let out = update(&mut s, &k, json!({"state":{"reported":{"a":3}}}), 5);
        assert_eq!(find(&out, "update/accepted").unwrap()["version"], 3);
        s.handle(&k, ShadowOp::Delete, b"", 6);
        let out = update(&mut s, &k, json!({"state":{"reported":{"a":3}}}), 6 + VERSION_MEMORY_SECS);
        assert_eq!(find(&out, "update/accepted").unwrap()["version"], 1);
    }
}
