//! IoT Plug and Play conventions (`azure-iot-hub.md` §12): model ids (DTMI), component
//! telemetry, component-marked reported properties, writable-property acknowledgements and
//! component commands.
//!
//! ```
//! use connector_azure::pnp::{ack_document, WritableAck};
//! let doc = ack_document(Some("thermostat1"), "targetTemperature", &WritableAck::accepted(23.into(), 3).description("complete"));
//! let spec: serde_json::Value = serde_json::from_str(
//!     r#"{"thermostat1":{"__t":"c","targetTemperature":{"value":23,"ac":200,"av":3,"ad":"complete"}}}"#,
//! )?;
//! assert_eq!(doc, spec);
//! # Ok::<(), serde_json::Error>(())
//! ```

use connector_core::Publish;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::properties::SystemProperty;

/// The separator of component commands: `{component}*{command}`.
pub const COMMAND_SEPARATOR: char = '*';

/// The longest DTMI accepted, in characters.
pub const MAX_DTMI_LEN: usize = 2048;

/// Checks a Digital Twin Model Identifier: `dtmi:` then `:`-separated segments (a letter,
/// then letters, digits or `_`, not ending in `_`), then `;` and a version (1–999999999,
/// optionally `.minor`).
pub fn validate_dtmi(dtmi: &str) -> Result<(), &'static str> {
    if dtmi.len() > MAX_DTMI_LEN {
        return Err("longer than 2048 characters");
    }
    let rest = dtmi.strip_prefix("dtmi:").ok_or("must start with `dtmi:`")?;
    let (path, version) = rest.rsplit_once(';').ok_or("missing `;version`")?;
    for segment in path.split(':') {
        let mut bytes = segment.bytes();
        if !bytes.next().is_some_and(|b| b.is_ascii_alphabetic()) {
            return Err("each path segment must start with a letter");
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || segment.ends_with('_') {
            return Err("path segments hold letters, digits and `_`, not at the end");
        }
    }
    let (major, minor) = match version.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (version, None),
    };
    let number = |s: &str| {
        !s.is_empty() && s.len() <= 9 && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !number(major) || minor.is_some_and(|m| !number(m)) {
        return Err("the version is a number from 1 to 999999999 (with an optional `.minor`)");
    }
    Ok(())
}

/// Marks telemetry as coming from `component` (`$.sub` in the property bag).
pub fn component_telemetry(publish: Publish, component: &str) -> Publish {
    publish.property(SystemProperty::ComponentName.wire_name(), component)
}

/// Sends module telemetry to an IoT Edge output (`$.on` in the property bag).
pub fn output_telemetry(publish: Publish, output: &str) -> Publish {
    publish.property(SystemProperty::OutputName.wire_name(), output)
}

/// A reported-properties patch for a component: `{"thermostat1":{"__t":"c", …}}`.
pub fn reported_component(component: &str, properties: Map<String, Value>) -> Value {
    let mut inner = Map::new();
    inner.insert("__t".into(), Value::from("c"));
    inner.extend(properties);
    let mut outer = Map::new();
    outer.insert(component.to_owned(), Value::Object(inner));
    Value::Object(outer)
}

/// The acknowledgement of a writable property: `{"value":…,"ac":…,"av":…,"ad":…}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WritableAck {
    /// The value in use.
    pub value: Value,
    /// HTTP-like status: 200 accepted, 202 in progress, 203 set by the device, 400 rejected,
    /// 500 failed.
    pub ac: u16,
    /// The desired `$version` acknowledged (0 for values the device set on its own).
    pub av: u64,
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ad: Option<String>,
}

impl WritableAck {
    /// 200: the desired value of version `av` was applied.
    pub fn accepted(value: Value, av: u64) -> Self {
        Self { value, ac: 200, av, ad: None }
    }
    /// 202: still applying version `av`; `value` is what is in effect so far.
    pub fn in_progress(value: Value, av: u64) -> Self {
        Self { value, ac: 202, av, ad: None }
    }
    /// 203 with version 0: a value the device chose, with no desired value behind it.
    pub fn device_default(value: Value) -> Self {
        Self { value, ac: 203, av: 0, ad: None }
    }
    /// 400: version `av` was refused; `value` is what stays in effect.
    pub fn rejected(value: Value, av: u64) -> Self {
        Self { value, ac: 400, av, ad: None }
    }
    /// 500: applying version `av` failed; `value` is what stays in effect.
    pub fn failed(value: Value, av: u64) -> Self {
        Self { value, ac: 500, av, ad: None }
    }
    /// Adds a description (`ad`).
    pub fn description(mut self, ad: impl Into<String>) -> Self {
        self.ad = Some(ad.into());
        self
    }
    /// The acknowledgement as JSON (member order is not significant; `serde_json::to_string`
    /// of the struct itself keeps the documented `value, ac, av, ad`).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("value".into(), self.value.clone());
        m.insert("ac".into(), self.ac.into());
        m.insert("av".into(), self.av.into());
        if let Some(ad) = &self.ad {
            m.insert("ad".into(), ad.clone().into());
        }
        Value::Object(m)
    }
}

/// A reported patch acknowledging `property`: at the root for the default component, or
/// under `component` with the `"__t":"c"` marker.
pub fn ack_document(component: Option<&str>, property: &str, ack: &WritableAck) -> Value {
    let mut props = Map::new();
    props.insert(property.to_owned(), ack.to_value());
    match component {
        Some(c) => reported_component(c, props),
        None => Value::Object(props),
    }
}

/// Splits a method name into (component, command): `thermostat1*getMaxMinReport` →
/// `(Some("thermostat1"), "getMaxMinReport")`; `reboot` → `(None, "reboot")`.
pub fn split_command(method_name: &str) -> (Option<&str>, &str) {
    match method_name.split_once(COMMAND_SEPARATOR) {
        Some((component, command)) => (Some(component), command),
        None => (None, method_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmis_are_validated() {
        for ok in ["dtmi:com:example:Thermostat;1", "dtmi:a;999999999", "dtmi:a_b:c1;2.3"] {
            assert_eq!(validate_dtmi(ok), Ok(()), "{ok}");
        }
        for bad in [
            "com:example;1",
            "dtmi:com:example",
            "dtmi:1com;1",
            "dtmi:com_;1",
            "dtmi:com::x;1",
            "dtmi:com;0",
            "dtmi:com;01",
            "dtmi:com;1234567890",
            "dtmi:com;1.",
            "dtmi:co m;1",
            "dtmi:;1",
        ] {
            assert!(validate_dtmi(bad).is_err(), "{bad}");
        }
        assert!(validate_dtmi(&format!("dtmi:{};1", "a".repeat(MAX_DTMI_LEN))).is_err());
    }

    #[test]
    fn component_documents_match_the_spec() {
        let mut m = Map::new();
        m.insert("maxTempSinceLastReboot".into(), 38.2.into());
        assert_eq!(
            serde_json::to_string(&reported_component("thermostat1", m)).unwrap(),
            r#"{"thermostat1":{"__t":"c","maxTempSinceLastReboot":38.2}}"#
        );
        let ack = WritableAck::device_default(Value::from(20));
        assert_eq!(ack_document(None, "t", &ack), serde_json::json!({"t":{"value":20,"ac":203,"av":0}}));
        assert_eq!(serde_json::to_string(&ack).unwrap(), r#"{"value":20,"ac":203,"av":0}"#);
        assert_eq!(serde_json::to_value(&ack).unwrap(), ack.to_value());
        for (a, code) in [
            (WritableAck::accepted(1.into(), 2), 200),
            (WritableAck::in_progress(1.into(), 2), 202),
            (WritableAck::rejected(1.into(), 2), 400),
            (WritableAck::failed(1.into(), 2), 500),
        ] {
            assert_eq!((a.ac, a.av), (code, 2));
        }
    }

    #[test]
    fn commands_and_telemetry_helpers() {
        assert_eq!(split_command("thermostat1*getMaxMinReport"), (Some("thermostat1"), "getMaxMinReport"));
        assert_eq!(split_command("reboot"), (None, "reboot"));
        let p = output_telemetry(component_telemetry(Publish::telemetry(&b"{}"[..]), "thermostat1"), "out");
        assert_eq!(
            p.properties(),
            [("$.sub".to_string(), "thermostat1".to_string()), ("$.on".into(), "out".into())]
        );
    }
}
