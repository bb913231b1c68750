//! The provisioned identity on disk: one directory holding `certificate.pem`,
//! `private.key` and `identity.json` (thing name, certificate id, device configuration),
//! each written with mode 0600 through a temporary file and a rename.
//!
//! `identity.json` is written last and removed first, so it marks a complete identity:
//! without it the directory holds none (leftovers of an interrupted save are overwritten
//! by the next one); with it every file must be present, readable by its owner only and
//! consistent (the key is the certificate's), or loading fails with a typed
//! [`StoreError`] rather than silently provisioning again.
//!
//! ```no_run
//! use connector_aws::fleet::IdentityStore;
//! let store = IdentityStore::new("/var/lib/my-device/aws-identity");
//! match store.load()? {
//!     Some(id) if id.is_valid_at(std::time::SystemTime::now()) => println!("thing {}", id.thing_name),
//!     _ => println!("not provisioned yet"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use connector_core::{PemSource, Secret};
use serde::{Deserialize, Serialize};

use super::error::{KeyError, StoreError};
use super::keys;

/// The certificate file.
pub const CERTIFICATE_FILE: &str = "certificate.pem";
/// The private key file.
pub const PRIVATE_KEY_FILE: &str = "private.key";
/// The identity document.
pub const IDENTITY_FILE: &str = "identity.json";

/// What fleet provisioning gave this device. `Debug` shows neither the private key nor
/// the certificate's PEM.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetIdentity {
    /// The registered thing (the client id to connect with).
    pub thing_name: String,
    /// The certificate id.
    pub certificate_id: String,
    /// The device certificate, PEM.
    pub certificate_pem: String,
    /// Its private key, PEM.
    pub private_key: Secret,
    /// The template's `DeviceConfiguration`.
    pub device_configuration: BTreeMap<String, String>,
}

impl fmt::Debug for FleetIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetIdentity")
            .field("thing_name", &self.thing_name)
            .field("certificate_id", &self.certificate_id)
            .field("private_key", &self.private_key)
            .field("device_configuration", &self.device_configuration)
            .finish_non_exhaustive()
    }
}

impl FleetIdentity {
    /// An identity from its parts.
    pub fn new(
        thing_name: impl Into<String>,
        certificate_id: impl Into<String>,
        certificate_pem: impl Into<String>,
        private_key: Secret,
        device_configuration: BTreeMap<String, String>,
    ) -> Self {
        Self {
            thing_name: thing_name.into(),
            certificate_id: certificate_id.into(),
            certificate_pem: certificate_pem.into(),
            private_key,
            device_configuration,
        }
    }

    /// Checks that the certificate and key parse and belong together.
    pub fn check(&self) -> Result<(), KeyError> {
        let cert = keys::certificate(&self.certificate_pem)?;
        let key = keys::private_key(&self.private_key)?;
        if !keys::key_matches(&cert, &key)? {
            return Err(KeyError::InvalidCertificate {
                reason: "the private key does not belong to the certificate".into(),
            });
        }
        Ok(())
    }

    /// Whether the identity is usable at `now`: consistent ([`FleetIdentity::check`]) and
    /// the certificate within its validity period.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.check().is_ok()
            && keys::certificate(&self.certificate_pem).and_then(|c| keys::valid_at(&c, now)).unwrap_or(false)
    }

    /// The certificate as TLS client material.
    pub fn certificate_source(&self) -> PemSource {
        PemSource::Pem(Secret::new(self.certificate_pem.clone()))
    }

    /// The private key as TLS client material.
    pub fn private_key_source(&self) -> PemSource {
        PemSource::Pem(self.private_key.clone())
    }
}

/// `identity.json`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IdentityDocument {
    thing_name: String,
    certificate_id: String,
    #[serde(default)]
    device_configuration: BTreeMap<String, String>,
}

/// A directory holding one [`FleetIdentity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityStore {
    dir: PathBuf,
}

impl IdentityStore {
    /// The store in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored identity; `None` when there is none (no `identity.json`).
    pub fn load(&self) -> Result<Option<FleetIdentity>, StoreError> {
        let Some(doc) = self.read(IDENTITY_FILE)? else { return Ok(None) };
        let incomplete = |missing| StoreError::Incomplete { dir: self.dir.clone(), missing };
        let certificate_pem = self.read(CERTIFICATE_FILE)?.ok_or_else(|| incomplete(CERTIFICATE_FILE))?;
        let key = Secret::new(self.read(PRIVATE_KEY_FILE)?.ok_or_else(|| incomplete(PRIVATE_KEY_FILE))?);
        let corrupt = |file: &str, reason: String| StoreError::Corrupt { path: self.dir.join(file), reason };
        let doc: IdentityDocument =
            serde_json::from_str(&doc).map_err(|e| corrupt(IDENTITY_FILE, e.to_string()))?;
        if doc.thing_name.is_empty() || doc.certificate_id.is_empty() {
            return Err(corrupt(IDENTITY_FILE, "empty `thingName` or `certificateId`".into()));
        }
        let cert =
            keys::certificate(&certificate_pem).map_err(|e| corrupt(CERTIFICATE_FILE, e.to_string()))?;
        let pkey = keys::private_key(&key).map_err(|e| corrupt(PRIVATE_KEY_FILE, e.to_string()))?;
        if !keys::key_matches(&cert, &pkey).map_err(|e| corrupt(CERTIFICATE_FILE, e.to_string()))? {
            return Err(corrupt(PRIVATE_KEY_FILE, "not the private key of `certificate.pem`".into()));
        }
        Ok(Some(FleetIdentity {
            thing_name: doc.thing_name,
            certificate_id: doc.certificate_id,
            certificate_pem,
            private_key: key,
            device_configuration: doc.device_configuration,
        }))
    }

    /// Writes `identity` (replacing any stored one): the directory is created (0700 on
    /// Unix) if needed, every file gets mode 0600.
    pub fn save(&self, identity: &FleetIdentity) -> Result<(), StoreError> {
        create_dir(&self.dir)?;
        self.remove_file(IDENTITY_FILE)?;
        let doc = IdentityDocument {
            thing_name: identity.thing_name.clone(),
            certificate_id: identity.certificate_id.clone(),
            device_configuration: identity.device_configuration.clone(),
        };
        // Serializing strings and a string map cannot fail.
        let doc = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        self.write(CERTIFICATE_FILE, identity.certificate_pem.as_bytes())?;
        self.write(PRIVATE_KEY_FILE, identity.private_key.expose().as_bytes())?;
        self.write(IDENTITY_FILE, &doc)
    }

    /// Forgets the stored identity (the next provisioning call provisions again).
    pub fn remove(&self) -> Result<(), StoreError> {
        for file in [IDENTITY_FILE, PRIVATE_KEY_FILE, CERTIFICATE_FILE] {
            self.remove_file(file)?;
        }
        Ok(())
    }

    fn remove_file(&self, name: &str) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::Io { op: "remove", path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Reads a file, `None` when absent; refuses files others may read.
    fn read(&self, name: &str) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(name);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { op: "read", path, source: e }),
        };
        check_mode(&path, &meta)?;
        let bytes =
            fs::read(&path).map_err(|e| StoreError::Io { op: "read", path: path.clone(), source: e })?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| StoreError::Corrupt { path, reason: "not UTF-8 text".into() })
    }

    /// Writes `name` atomically with mode 0600: a temporary file, synced, then renamed.
    fn write(&self, name: &str, contents: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
            move |e| StoreError::Io { op, path: path.to_owned(), source: e }
        }
        let _ = fs::remove_file(&tmp);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp).map_err(io("create", &tmp))?;
        file.write_all(contents).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io("rename into", &path))
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| StoreError::Io {
        op: "create directory",
        path: dir.to_owned(),
        source: e,
    })
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::keys::{KeyAlgorithm, KeyPair};
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::x509::{X509NameBuilder, X509};
    use std::time::Duration;

    /// A self-signed certificate for `key`, valid for `days` from now.
    fn self_signed(key: &KeyPair, days: u32) -> String {
        let pkey = keys::private_key(key.private_key()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "thing-1").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&pkey).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(days).unwrap()).unwrap();
        b.sign(&pkey, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    }

    fn identity() -> FleetIdentity {
        let key = KeyPair::generate(KeyAlgorithm::EcP256).unwrap();
        let cert = self_signed(&key, 30);
        FleetIdentity::new(
            "thing-1",
            "ab".repeat(32),
            cert,
            key.private_key().clone(),
            BTreeMap::from([("Foo".to_owned(), "Bar".to_owned())]),
        )
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trip_with_owner_only_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IdentityStore::new(tmp.path().join("nested/identity"));
        assert!(store.load().unwrap().is_none(), "nothing stored yet");
        let id = identity();
        store.save(&id).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back, id);
        assert!(back.is_valid_at(SystemTime::now()));
        #[cfg(unix)]
        {
            for f in [CERTIFICATE_FILE, PRIVATE_KEY_FILE, IDENTITY_FILE] {
                assert_eq!(mode(&store.dir().join(f)), 0o600, "{f}");
            }
            assert_eq!(mode(store.dir()), 0o700);
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&fs::read(store.dir().join(IDENTITY_FILE)).unwrap()).unwrap();
        assert_eq!(doc["thingName"], "thing-1");
        assert_eq!(doc["deviceConfiguration"]["Foo"], "Bar");
        assert!(!doc.to_string().contains("PRIVATE KEY"), "the key is only in private.key");
        // Saving again replaces the identity; removing forgets it.
        let other = identity();
        store.save(&other).unwrap();
        assert_eq!(store.load().unwrap().unwrap(), other);
        store.remove().unwrap();
        assert!(store.load().unwrap().is_none());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let id = identity();
        let shown = format!("{id:?}");
        assert!(!shown.contains("PRIVATE KEY") && !shown.contains("CERTIFICATE"), "{shown}");
        assert!(shown.contains("thing-1") && shown.contains("<redacted>"), "{shown}");
        assert!(!format!("{:?}", id.private_key_source()).contains("PRIVATE"));
    }

    #[test]
    fn validity_follows_the_certificate() {
        let id = identity();
        assert!(id.is_valid_at(SystemTime::now()));
        assert!(!id.is_valid_at(SystemTime::now() + Duration::from_secs(31 * 86_400)), "expired");
        assert!(!id.is_valid_at(SystemTime::now() - Duration::from_secs(86_400)), "not yet valid");
        let mut wrong = identity();
        wrong.private_key = KeyPair::generate(KeyAlgorithm::EcP256).unwrap().private_key().clone();
        assert!(matches!(wrong.check(), Err(KeyError::InvalidCertificate { .. })));
        assert!(!wrong.is_valid_at(SystemTime::now()));
    }

    #[test]
    fn corrupt_incomplete_and_exposed_files_are_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IdentityStore::new(tmp.path());
        let id = identity();
        let reset = || {
            store.remove().unwrap();
            store.save(&id).unwrap();
        };
        let overwrite = |file: &str, text: &str| {
            let p = store.dir().join(file);
            fs::write(&p, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            }
        };
        let corrupt_file = |store: &IdentityStore| match store.load() {
            Err(StoreError::Corrupt { path, .. }) => path.file_name().unwrap().to_string_lossy().into_owned(),
            other => panic!("expected Corrupt, got {other:?}"),
        };

        reset();
        overwrite(IDENTITY_FILE, "{not json");
        assert_eq!(corrupt_file(&store), IDENTITY_FILE);
        reset();
        overwrite(IDENTITY_FILE, r#"{"thingName":"","certificateId":"x"}"#);
        assert_eq!(corrupt_file(&store), IDENTITY_FILE);
        reset();
        overwrite(CERTIFICATE_FILE, "-----BEGIN CERTIFICATE-----\ngarbage\n");
        assert_eq!(corrupt_file(&store), CERTIFICATE_FILE);
        reset();
        overwrite(PRIVATE_KEY_FILE, "not a key");
        assert_eq!(corrupt_file(&store), PRIVATE_KEY_FILE);
        reset();
        overwrite(PRIVATE_KEY_FILE, KeyPair::generate(KeyAlgorithm::EcP256).unwrap().private_key().expose());
        assert_eq!(corrupt_file(&store), PRIVATE_KEY_FILE, "another key than the certificate's");
        // The corrupt key's text never reaches the error.
        reset();
        overwrite(PRIVATE_KEY_FILE, "secret-garbage");
        assert!(!store.load().unwrap_err().to_string().contains("secret-garbage"));

        reset();
        fs::remove_file(store.dir().join(PRIVATE_KEY_FILE)).unwrap();
        assert!(matches!(store.load(), Err(StoreError::Incomplete { missing: PRIVATE_KEY_FILE, .. })));
        // Without identity.json the leftovers are no identity (an interrupted save).
        reset();
        fs::remove_file(store.dir().join(IDENTITY_FILE)).unwrap();
        assert!(store.load().unwrap().is_none());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            reset();
            let key = store.dir().join(PRIVATE_KEY_FILE);
            fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
            match store.load() {
                Err(StoreError::InsecurePermissions { path, mode }) => {
                    assert_eq!((path, mode), (key, 0o644));
                }
                other => panic!("expected InsecurePermissions, got {other:?}"),
            }
            // Saving again restores owner-only files.
            store.save(&id).unwrap();
            assert_eq!(store.load().unwrap().unwrap(), id);
        }
    }
}
