//! The provisioned identity, cached in `<state_dir>/identity/` (directory 0700, files
//! 0600) so that a restart connects straight to the assigned hub instead of registering
//! again. The cache is keyed by what the configuration provisions with (ID scope,
//! registration id, endpoint): a different configuration ignores it. It is cleared when the
//! hub refuses the cached identity (CONNACK not authorised), which re-provisions.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ops::write_private;

const FILE: &str = "identity.json";

/// An identity obtained by provisioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedIdentity {
    /// `azure` or `aws`.
    pub cloud: String,
    /// What it was provisioned with (see [`IdentityCache::load`]).
    pub key: String,
    /// The assigned hub (Azure) or endpoint (AWS).
    pub hub: String,
    /// The device id (Azure) or thing name (AWS).
    pub device_id: String,
    /// When, in seconds since the epoch.
    pub provisioned_at: u64,
}

impl CachedIdentity {
    /// A new identity, stamped now.
    pub fn new(cloud: &str, key: &str, hub: &str, device_id: &str) -> Self {
        let provisioned_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            cloud: cloud.into(),
            key: key.into(),
            hub: hub.into(),
            device_id: device_id.into(),
            provisioned_at,
        }
    }
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct IdentityCache {
    dir: PathBuf,
}

impl IdentityCache {
    /// The cache in `<state_dir>/identity`.
    pub fn new(state_dir: &Path) -> Self {
        Self { dir: state_dir.join("identity") }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)
    }

    /// The cached identity if there is one for `key`; a cache for another key (the
    /// configuration changed) or an unreadable one is ignored.
    pub fn load(&self, key: &str) -> Option<CachedIdentity> {
        let bytes = std::fs::read(self.dir.join(FILE)).ok()?;
        match serde_json::from_slice::<CachedIdentity>(&bytes) {
            Ok(id) if id.key == key => Some(id),
            Ok(id) => {
                tracing::info!(cached = %id.key, configured = %key, "identity cache is for another configuration; ignoring it");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity cache unreadable; ignoring it");
                None
            }
        }
    }

    /// Stores `id` (0600).
    pub fn store(&self, id: &CachedIdentity) -> std::io::Result<()> {
        self.ensure_dir()?;
        let bytes = serde_json::to_vec_pretty(id).map_err(std::io::Error::other)?;
        write_private(&self.dir.join(FILE), &bytes)
    }

    /// Writes a secret file beside the identity (a private key, an issued certificate):
    /// 0600, returns its path.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        self.ensure_dir()?;
        let p = self.dir.join(name);
        write_private(&p, bytes)?;
        Ok(p)
    }

    /// Path of a file written with [`IdentityCache::write_file`].
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Forgets the identity (the next start provisions again).
    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join(FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_keyed_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let c = IdentityCache::new(dir.path());
        assert_eq!(c.load("k"), None);
        let id = CachedIdentity::new("azure", "k", "hub", "dev");
        c.store(&id).unwrap();
        assert_eq!(c.load("k"), Some(id));
        assert_eq!(c.load("other"), None);
        let mode = std::fs::metadata(c.dir().join(FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(c.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        c.clear().unwrap();
        assert_eq!(c.load("k"), None);
        c.clear().unwrap();
    }
}
