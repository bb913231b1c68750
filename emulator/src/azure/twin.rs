//! The twin store: desired and reported sections with separate `$version` counters,
//! `$metadata` with `$lastUpdated` for every object, merge rules and validation (§10).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::util::iso8601;

/// Largest integer accepted in twin documents.
const MAX_INT: i64 = 4_503_599_627_370_495;
/// Smallest integer accepted in twin documents.
const MIN_INT: i64 = -4_503_599_627_370_496;
/// Limits of §10.3.
const MAX_KEY_BYTES: usize = 1024;
const MAX_STRING_BYTES: usize = 4096;
const MAX_DEPTH: usize = 10;
/// Desired and reported sections are each limited to 32 KB.
pub(crate) const MAX_SECTION_BYTES: usize = 32 * 1024;
/// Tags are limited to 8 KB.
pub(crate) const MAX_TAGS_BYTES: usize = 8 * 1024;

/// Why a twin update was refused; `status()` is the device-facing status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TwinError {
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("property name {0:?} is not allowed")]
    BadKey(String),
    #[error("value of {0:?} is not allowed")]
    BadValue(String),
    #[error("nesting deeper than 10 levels")]
    TooDeep,
    #[error("section would exceed {limit} bytes")]
    TooLarge { limit: usize },
}

impl TwinError {
    /// 400 for malformed documents, 413 for size limits.
    pub fn status(&self) -> u16 {
        match self {
            TwinError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone)]
struct Meta {
    updated: SystemTime,
    version: u64,
    children: BTreeMap<String, Meta>,
}

impl Meta {
    fn for_value(v: &Value, now: SystemTime, version: u64) -> Meta {
        let children = match v {
            Value::Object(o) => {
                o.iter().map(|(k, v)| (k.clone(), Meta::for_value(v, now, version))).collect()
            }
            _ => BTreeMap::new(),
        };
        Meta { updated: now, version, children }
    }

    fn render(&self, with_version: bool) -> Value {
        let mut m = Map::new();
        m.insert("$lastUpdated".into(), Value::String(iso8601(self.updated)));
        if with_version {
            m.insert("$lastUpdatedVersion".into(), Value::from(self.version));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.render(with_version));
        }
        Value::Object(m)
    }
}

/// One section (desired or reported).
#[derive(Debug, Clone)]
pub(crate) struct Section {
    props: Map<String, Value>,
    version: u64,
    meta: Meta,
}

impl Section {
    fn new(now: SystemTime) -> Section {
        Section {
            props: Map::new(),
            version: 1,
            meta: Meta { updated: now, version: 1, children: BTreeMap::new() },
        }
    }

    /// Current `$version`.
    #[cfg(test)]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Validates and merges `patch` (a JSON object); the version goes up by one.
    pub fn merge(&mut self, patch: &Value, now: SystemTime) -> Result<u64, TwinError> {
        let patch = validate(patch)?;
        let mut props = self.props.clone();
        merge_map(&mut props, patch);
        check_size(&props, MAX_SECTION_BYTES)?;
        self.version += 1;
        merge_meta(&mut self.meta, &self.props, patch, now, self.version);
        self.props = props;
        Ok(self.version)
    }

    /// Replaces the whole section; the version goes up by one.
    pub fn replace(&mut self, doc: &Value, now: SystemTime) -> Result<u64, TwinError> {
        let doc = validate(doc)?;
        let props = strip_nulls(doc);
        check_size(&props, MAX_SECTION_BYTES)?;
        self.version += 1;
        self.meta = Meta::for_value(&Value::Object(props.clone()), now, self.version);
        self.props = props;
        Ok(self.version)
    }

    /// Properties plus `$version` (what the device sees).
    pub fn device_view(&self) -> Value {
        let mut m = self.props.clone();
        m.insert("$version".into(), Value::from(self.version));
        Value::Object(m)
    }

    /// Properties plus `$metadata` and `$version` (what the back end sees).
    fn service_view(&self, desired: bool) -> Value {
        let mut m = self.props.clone();
        m.insert("$metadata".into(), self.meta.render(desired));
        m.insert("$version".into(), Value::from(self.version));
        Value::Object(m)
    }
}

/// The twin of one device or module.
#[derive(Debug, Clone)]
pub(crate) struct Twin {
    /// Desired properties (written by the back end).
    pub desired: Section,
    /// Reported properties (written by the device).
    pub reported: Section,
    tags: Map<String, Value>,
    /// Twin version: +1 for every change of any part.
    version: u64,
}

impl Twin {
    /// A new, empty twin (both section versions 1).
    pub fn new(now: SystemTime) -> Twin {
        Twin { desired: Section::new(now), reported: Section::new(now), tags: Map::new(), version: 1 }
    }

    /// Applies a back-end update: desired properties and tags, merged or (`replace`)
    /// replaced.
    /// Returns the notification body for the device (the change plus `$version`), when
    /// desired properties changed.
    pub fn update_from_service(
        &mut self,
        desired: Option<&Value>,
        tags: Option<&Value>,
        replace: bool,
        now: SystemTime,
    ) -> Result<Option<Value>, TwinError> {
        // Validate everything before changing anything.
        let new_tags = match tags {
            Some(t) => {
                let t = validate(t)?;
                let mut merged = if replace { Map::new() } else { self.tags.clone() };
                merge_map(&mut merged, t);
                check_size(&merged, MAX_TAGS_BYTES)?;
                Some(merged)
            }
            None => None,
        };
        let mut notification = None;
        if let Some(d) = desired {
            let mut section = self.desired.clone();
            let version = if replace { section.replace(d, now)? } else { section.merge(d, now)? };
            let mut body = if replace { section.props.clone() } else { validate(d)?.clone() };
            body.insert("$version".into(), Value::from(version));
            notification = Some(Value::Object(body));
            self.desired = section;
            self.version += 1;
        }
        if let Some(t) = new_tags {
            self.tags = t;
            self.version += 1;
        }
        Ok(notification)
    }

    /// Device-side reported patch; returns the new reported version.
    pub fn patch_reported(&mut self, patch: &Value, now: SystemTime) -> Result<u64, TwinError> {
        let v = self.reported.merge(patch, now)?;
        self.version += 1;
        Ok(v)
    }

    /// Body of a device GET: `{"desired":{…,"$version"},"reported":{…,"$version"}}`.
    pub fn device_document(&self) -> Value {
        serde_json::json!({ "desired": self.desired.device_view(), "reported": self.reported.device_view() })
    }

    /// Service-side parts: (`tags`, `properties`, `version`).
    pub fn service_parts(&self) -> (Value, Value, u64) {
        (
            Value::Object(self.tags.clone()),
            serde_json::json!({
                "desired": self.desired.service_view(true),
                "reported": self.reported.service_view(false),
            }),
            self.version,
        )
    }
}

/// Merge rule: `null` deletes, object into object merges, anything else replaces.
fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => match target.get_mut(k) {
                Some(Value::Object(t)) => merge_map(t, p),
                _ => {
                    target.insert(k.clone(), Value::Object(strip_nulls(p)));
                }
            },
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

fn merge_meta(
    meta: &mut Meta,
    old: &Map<String, Value>,
    patch: &Map<String, Value>,
    now: SystemTime,
    version: u64,
) {
    meta.updated = now;
    meta.version = version;
    for (k, v) in patch {
        match (v, old.get(k)) {
            (Value::Null, _) => {
                meta.children.remove(k);
            }
            (Value::Object(p), Some(Value::Object(old_child))) => {
                let child = meta
                    .children
                    .entry(k.clone())
                    .or_insert_with(|| Meta::for_value(&Value::Object(old_child.clone()), now, version));
                merge_meta(child, old_child, p, now, version);
            }
            (Value::Object(p), _) => {
                meta.children
                    .insert(k.clone(), Meta::for_value(&Value::Object(strip_nulls(p)), now, version));
            }
            (other, _) => {
                meta.children.insert(k.clone(), Meta::for_value(other, now, version));
            }
        }
    }
}

fn strip_nulls(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Object(o) => Value::Object(strip_nulls(o)),
                v => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Checks a patch/document against §10.3 and returns it as an object.
fn validate(v: &Value) -> Result<&Map<String, Value>, TwinError> {
    let Value::Object(m) = v else { return Err(TwinError::NotAnObject) };
    check_object(m, 0)?;
    Ok(m)
}

fn check_object(m: &Map<String, Value>, depth: usize) -> Result<(), TwinError> {
    for (k, v) in m {
        if k.is_empty()
            || k.len() > MAX_KEY_BYTES
            || k.chars().any(|c| c.is_control() || c == '.' || c == '$' || c == ' ')
        {
            return Err(TwinError::BadKey(k.clone()));
        }
        check_value(k, v, depth)?;
    }
    Ok(())
}

fn check_value(k: &str, v: &Value, depth: usize) -> Result<(), TwinError> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if !(MIN_INT..=MAX_INT).contains(&i) {
                    return Err(TwinError::BadValue(k.to_string()));
                }
            } else if n.as_u64().is_some() {
                return Err(TwinError::BadValue(k.to_string()));
            }
            Ok(())
        }
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(TwinError::BadValue(k.to_string())),
        Value::Object(o) => {
            if depth + 1 > MAX_DEPTH {
                return Err(TwinError::TooDeep);
            }
            check_object(o, depth + 1)
        }
        Value::Array(a) => {
            if depth + 1 > MAX_DEPTH {
                return Err(TwinError::TooDeep);
            }
            a.iter().try_for_each(|v| check_value(k, v, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Size as the hub counts it: key lengths plus value lengths, numbers 8, booleans 4.
fn doc_size(m: &Map<String, Value>) -> usize {
    m.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 4,
        Value::Number(_) => 8,
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(value_size).sum(),
        Value::Object(o) => doc_size(o),
    }
}

fn check_size(m: &Map<String, Value>, limit: usize) -> Result<(), TwinError> {
    if doc_size(m) > limit {
        Err(TwinError::TooLarge { limit })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_630_918_364)
    }

    #[test]
    fn merge_rules_and_versions() {
        let mut t = Twin::new(now());
        assert_eq!(t.device_document(), json!({"desired":{"$version":1},"reported":{"$version":1}}));
        assert_eq!(t.patch_reported(&json!({"a":1,"o":{"x":1,"y":2},"gone":true}), now()), Ok(2));
        assert_eq!(t.patch_reported(&json!({"o":{"y":null,"z":3},"gone":null,"a":[1,2]}), now()), Ok(3));
        assert_eq!(t.device_document()["reported"], json!({"a":[1,2],"o":{"x":1,"z":3},"$version":3}));
        // A scalar replaced by an object, nulls inside the new object dropped.
        t.patch_reported(&json!({"a":{"b":null,"c":1}}), now()).unwrap();
        assert_eq!(t.device_document()["reported"]["a"], json!({"c":1}));
        assert_eq!(t.desired.version(), 1);
    }

    #[test]
    fn desired_notification_carries_patch_and_version() {
        let mut t = Twin::new(now());
        let n = t.update_from_service(Some(&json!({"rate":5,"route":null})), None, false, now()).unwrap();
        assert_eq!(n, Some(json!({"rate":5,"route":null,"$version":2})));
        let n = t.update_from_service(Some(&json!({"only":1})), None, true, now()).unwrap();
        assert_eq!(n, Some(json!({"only":1,"$version":3})));
        let (_, props, version) = t.service_parts();
        assert_eq!(version, 3);
        let meta = &props["desired"]["$metadata"];
        assert_eq!(meta["$lastUpdated"], "2021-09-06T08:52:44.0000000Z");
        assert_eq!(meta["$lastUpdatedVersion"], 3);
        assert_eq!(meta["only"]["$lastUpdatedVersion"], 3);
        assert!(props["reported"]["$metadata"].get("$lastUpdatedVersion").is_none());
    }

    #[test]
    fn metadata_follows_nested_objects() {
        let mut t = Twin::new(now());
        t.patch_reported(&json!({"o":{"x":{"deep":1}}}), now()).unwrap();
        let later = now() + std::time::Duration::from_secs(60);
        t.patch_reported(&json!({"o":{"y":2}}), later).unwrap();
        let (_, props, _) = t.service_parts();
        let m = &props["reported"]["$metadata"];
        assert_eq!(m["o"]["$lastUpdated"], iso8601(later));
        assert_eq!(m["o"]["x"]["$lastUpdated"], iso8601(now()));
        assert_eq!(m["o"]["x"]["deep"]["$lastUpdated"], iso8601(now()));
        assert_eq!(m["o"]["y"]["$lastUpdated"], iso8601(later));
    }

    #[test]
    fn validation_refuses_bad_documents_without_changing_anything() {
        let mut t = Twin::new(now());
        for (doc, status) in [
            (json!([1]), 400),
            (json!("x"), 400),
            (json!({"a.b":1}), 400),
            (json!({"$version":1}), 400),
            (json!({"a b":1}), 400),
            (json!({"big": 4_503_599_627_370_496_i64}), 400),
            (json!({"s": "x".repeat(4097)}), 400),
            (json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":1}}}}}}}}}}}}), 400),
            (
                json!({"a":"x".repeat(4000),"b":"x".repeat(4000),"c":"x".repeat(4000),"d":"x".repeat(4000),
                    "e":"x".repeat(4000),"f":"x".repeat(4000),"g":"x".repeat(4000),"h":"x".repeat(4000),
                    "i":"x".repeat(1000)}),
                413,
            ),
        ] {
            let err = t.patch_reported(&doc, now()).unwrap_err();
            assert_eq!(err.status(), status, "{doc}");
        }
        assert_eq!(t.reported.version(), 1);
        // Ten levels below the root is allowed.
        let ok = json!({"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"9":{"10":{"p":"v"}}}}}}}}}}});
        assert!(t.patch_reported(&ok, now()).is_ok());
    }
}
