//! Fault injection: refused CONNECTs, throttling; dropped connections and early token
//! expiry are immediate actions (see `Hub::close`).

use std::collections::{BTreeSet, HashMap};

use super::Identity;
use crate::auth::SERVER_UNAVAILABLE;
use crate::control::api::{FaultInfo, RefuseConnect, Throttle};

/// Active faults per identity.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub refuse: HashMap<Identity, RefuseConnect>,
    pub throttle: HashMap<Identity, Throttle>,
}

/// Uses up one unit of a counted fault; true while the fault applies.
fn consume(count: &mut Option<u32>) -> bool {
    match count {
        None => true,
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
    }
}

impl Faults {
    /// CONNACK code to refuse a CONNECT of `id` with, if a fault says so.
    pub fn connect_refusal(&mut self, id: &Identity) -> Option<u8> {
        if let Some(f) = self.refuse.get_mut(id) {
            let code = f.code;
            let active = consume(&mut f.count);
            if f.count == Some(0) {
                self.refuse.remove(id);
            }
            if active {
                return Some(code);
            }
        }
        if let Some(t) = self.throttle.get_mut(id).filter(|t| t.connect) {
            let active = consume(&mut t.count);
            if t.count == Some(0) {
                self.throttle.remove(id);
            }
            if active {
                return Some(SERVER_UNAVAILABLE);
            }
        }
        None
    }

    /// True when a twin operation of `id` must be answered with 429.
    pub fn throttle_twin(&mut self, id: &Identity) -> bool {
        let Some(t) = self.throttle.get_mut(id).filter(|t| t.twin) else { return false };
        let active = consume(&mut t.count);
        if t.count == Some(0) {
            self.throttle.remove(id);
        }
        active
    }

    /// Removes every fault of `id`, or all faults.
    pub fn clear(&mut self, id: Option<&Identity>) {
        match id {
            Some(id) => {
                self.refuse.remove(id);
                self.throttle.remove(id);
            }
            None => {
                self.refuse.clear();
                self.throttle.clear();
            }
        }
    }

    /// Active faults for the control API.
    pub fn list(&self) -> Vec<FaultInfo> {
        let ids: BTreeSet<&Identity> = self.refuse.keys().chain(self.throttle.keys()).collect();
        ids.into_iter()
            .map(|id| FaultInfo {
                device_id: id.device_id.clone(),
                module_id: id.module_id.clone(),
                refuse_connect: self.refuse.get(id).cloned(),
                throttle: self.throttle.get(id).cloned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out() {
        let mut f = Faults::default();
        let id = Identity::device("d");
        f.refuse.insert(id.clone(), RefuseConnect { code: 4, count: Some(2) });
        assert_eq!(f.connect_refusal(&id), Some(4));
        assert_eq!(f.connect_refusal(&id), Some(4));
        assert_eq!(f.connect_refusal(&id), None);
        f.throttle.insert(id.clone(), Throttle { twin: true, connect: false, count: Some(1) });
        assert!(f.throttle_twin(&id));
        assert!(!f.throttle_twin(&id));
        f.throttle.insert(id.clone(), Throttle { twin: false, connect: true, count: None });
        assert_eq!(f.connect_refusal(&id), Some(3));
        assert!(!f.throttle_twin(&id));
        assert_eq!(f.list().len(), 1);
        f.clear(None);
        assert_eq!(f.connect_refusal(&id), None);
    }
}
