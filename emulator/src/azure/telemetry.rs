//! Captured device-to-cloud telemetry (a bounded in-memory log, oldest dropped first).

use std::collections::{BTreeMap, VecDeque};

use super::properties::{is_system, Bag};
use super::{Hub, Identity};
use crate::control::api::TelemetryMessage;
use crate::util::{b64, iso8601};

/// D2C messages are limited to 256 KB (body plus properties).
pub(crate) const MAX_D2C_BYTES: usize = 256 * 1024;

/// The log.
#[derive(Debug)]
pub(crate) struct Store {
    capacity: usize,
    messages: VecDeque<TelemetryMessage>,
    dropped: u64,
}

impl Store {
    pub fn new(capacity: usize) -> Store {
        Store { capacity: capacity.max(1), messages: VecDeque::new(), dropped: 0 }
    }
}

/// Which messages a read or clear applies to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub device_id: Option<String>,
    /// `Some(None)`: device messages only (no module); `Some(Some(m))`: module `m`.
    pub module_id: Option<Option<String>>,
}

impl Filter {
    fn matches(&self, m: &TelemetryMessage) -> bool {
        self.device_id.as_ref().is_none_or(|d| *d == m.device_id)
            && self.module_id.as_ref().is_none_or(|mm| *mm == m.module_id)
    }
}

/// What the connection knows about the sender.
pub(crate) struct Sender<'a> {
    pub identity: &'a Identity,
    /// `sas`, `x509`, …
    pub auth: &'a str,
    pub model_id: Option<&'a str>,
}

impl Hub {
    /// Records an accepted telemetry message.
    pub fn record_telemetry(
        &self,
        from: &Sender<'_>,
        topic: &str,
        payload: &[u8],
        bag: Bag,
        qos: u8,
        extra: &[(&str, &str)],
    ) {
        let mut system = BTreeMap::new();
        let mut props = BTreeMap::new();
        for (n, v) in bag {
            if is_system(&n) {
                system.insert(n, v);
            } else {
                props.insert(n, v);
            }
        }
        for (n, v) in extra {
            props.insert((*n).to_string(), Some((*v).to_string()));
        }
        let now = self.now();
        let mut annotations = BTreeMap::new();
        annotations.insert("iothub-connection-device-id".to_string(), from.identity.device_id.clone());
        if let Some(m) = &from.identity.module_id {
            annotations.insert("iothub-connection-module-id".to_string(), m.clone());
        }
        let scope = if from.identity.module_id.is_some() { "module" } else { "device" };
        let kind = match from.auth {
            "x509" => "x509Certificate",
            "x509ca" => "x509CA",
            _ => "sas",
        };
        annotations.insert(
            "iothub-connection-auth-method".to_string(),
            format!(r#"{{"scope":"{scope}","type":"{kind}","issuer":"iothub"}}"#),
        );
        annotations.insert("iothub-enqueuedtime".to_string(), iso8601(now));
        if let Some(model) = from.model_id {
            annotations.insert("dt-dataschema".to_string(), model.to_string());
        }
        let msg = TelemetryMessage {
            sequence_number: self.next_id(),
            device_id: from.identity.device_id.clone(),
            module_id: from.identity.module_id.clone(),
            topic: topic.to_string(),
            payload: std::str::from_utf8(payload).ok().map(str::to_string),
            payload_base64: b64(payload),
            system_properties: system,
            properties: props,
            annotations,
            qos,
        };
        let mut st = self.lock();
        let store = &mut st.telemetry;
        if store.messages.len() >= store.capacity {
            store.messages.pop_front();
            store.dropped += 1;
        }
        store.messages.push_back(msg);
    }

    /// Captured messages matching `filter`, oldest first.
    pub fn telemetry(&self, filter: &Filter) -> Vec<TelemetryMessage> {
        self.lock().telemetry.messages.iter().filter(|m| filter.matches(m)).cloned().collect()
    }

    /// Deletes captured messages matching `filter`; returns how many.
    pub fn clear_telemetry(&self, filter: &Filter) -> usize {
        let mut st = self.lock();
        let before = st.telemetry.messages.len();
        st.telemetry.messages.retain(|m| !filter.matches(m));
        before - st.telemetry.messages.len()
    }
}
