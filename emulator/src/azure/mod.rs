//! The IoT Hub and DPS back end: registry, live connections and sessions, twins, C2D
//! queues, method calls, captured telemetry, DPS enrollments and operations, faults.
//!
//! All state sits behind one mutex in [`Hub`]; it is never held across an `.await`.
//! Connections are reached through their command channel ([`ConnCmd`]), so the control
//! API (on another thread) never touches an MQTT sink directly.

pub(crate) mod c2d;
pub(crate) mod connections;
pub(crate) mod dps;
pub(crate) mod faults;
pub(crate) mod methods;
pub(crate) mod properties;
pub(crate) mod registry;
pub(crate) mod telemetry;
pub(crate) mod topics;
pub(crate) mod twin;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, MutexGuard};

use crate::ca::CertificateAuthority;

pub(crate) use self::connections::{CloseReason, ConnCmd, Live, Peer};

/// A device or module identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Identity {
    pub device_id: String,
    pub module_id: Option<String>,
}

impl Identity {
    pub fn device(device_id: impl Into<String>) -> Identity {
        Identity { device_id: device_id.into(), module_id: None }
    }

    pub fn module(device_id: impl Into<String>, module_id: impl Into<String>) -> Identity {
        Identity { device_id: device_id.into(), module_id: Some(module_id.into()) }
    }

    /// Path segments of the SAS resource: `devices/{d}[/modules/{m}]`.
    pub fn resource_path(&self) -> Vec<&str> {
        let mut p = vec!["devices", self.device_id.as_str()];
        if let Some(m) = &self.module_id {
            p.extend(["modules", m.as_str()]);
        }
        p
    }
}

/// `device` or `device/module` (the MQTT client id).
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.module_id {
            Some(m) => write!(f, "{}/{}", self.device_id, m),
            None => f.write_str(&self.device_id),
        }
    }
}

/// Settings of the hub taken from the emulator configuration.
#[derive(Clone, Debug)]
pub(crate) struct HubSettings {
    /// Primary host name (DPS `assignedHub`).
    pub host_name: String,
    /// Every accepted host name (user name and SAS host), lower case.
    pub host_names: Vec<String>,
    pub id_scope: String,
    pub dps_retry_after: u32,
    pub method_default_timeout: Duration,
    pub telemetry_capacity: usize,
    pub c2d_max_pending: usize,
}

/// Everything mutable.
pub(crate) struct State {
    pub registry: registry::Registry,
    pub twins: HashMap<Identity, twin::Twin>,
    pub c2d: HashMap<String, c2d::Queue>,
    pub telemetry: telemetry::Store,
    pub conns: HashMap<Peer, Live>,
    pub sessions: HashMap<Peer, connections::Session>,
    pub methods: methods::Pending,
    pub faults: faults::Faults,
    pub dps: dps::Operations,
    /// Model id announced by each identity at its last CONNECT.
    pub model_ids: HashMap<Identity, String>,
}

/// The shared back end.
pub(crate) struct Hub {
    pub settings: HubSettings,
    pub ca: CertificateAuthority,
    state: Mutex<State>,
    registry_file: Option<PathBuf>,
    next_id: AtomicU64,
}

impl Hub {
    pub fn new(
        settings: HubSettings,
        ca: CertificateAuthority,
        registry: registry::Registry,
        registry_file: Option<PathBuf>,
    ) -> Hub {
        let telemetry = telemetry::Store::new(settings.telemetry_capacity);
        Hub {
            settings,
            ca,
            state: Mutex::new(State {
                registry,
                twins: HashMap::new(),
                c2d: HashMap::new(),
                telemetry,
                conns: HashMap::new(),
                sessions: HashMap::new(),
                methods: methods::Pending::default(),
                faults: faults::Faults::default(),
                dps: dps::Operations::default(),
                model_ids: HashMap::new(),
            }),
            registry_file,
            next_id: AtomicU64::new(1),
        }
    }

    /// Locks the state. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// A process-unique number (connection ids, method `$rid`s, sequence numbers).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Current time (one place, so the clock is easy to find).
    pub fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// True when `host` is one of the hub's host names (case-insensitive).
    pub fn accepts_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.settings.host_names.contains(&host)
    }

    /// Writes the registry file, if the emulator has a state directory. Failures are
    /// logged; the in-memory state stays authoritative.
    pub fn persist(&self, state: &State) {
        let Some(path) = &self.registry_file else { return };
        match serde_json::to_vec_pretty(&state.registry) {
            Ok(bytes) => {
                if let Err(e) = crate::ca::write(path, &bytes, true) {
                    tracing::error!(error = %e, path = %path.display(), "cannot write the registry file");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the registry"),
        }
    }

    /// The twin of `id`, created on first use.
    pub fn twin_mut<'a>(&self, state: &'a mut State, id: &Identity) -> &'a mut twin::Twin {
        let now = self.now();
        state.twins.entry(id.clone()).or_insert_with(|| twin::Twin::new(now))
    }
}
