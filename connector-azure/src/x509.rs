//! X.509 client identities: a certificate (chain) and its private key, loaded once from PEM
//! files or a PKCS#12 archive, checked (passphrase, key/certificate match, validity at the
//! given instant) and held in memory as PEM for [`TlsOptions`]. Encrypted keys are
//! decrypted here, so the transport never needs the passphrase.
//!
//! ```no_run
//! use connector_azure::x509::X509Identity;
//! use connector_core::Secret;
//! let id = X509Identity::from_pem_files(
//!     "device.pem",
//!     "device.key",
//!     Some(&Secret::new("passphrase")),
//!     std::time::SystemTime::now(),
//! )?;
//! println!("CN = {:?}, expires {:?}", id.common_name(), id.expires_at());
//! # Ok::<(), connector_azure::X509Error>(())
//! ```

use std::path::Path;
use std::time::SystemTime;

use connector_core::{PemSource, Secret, TlsOptions};
use connector_x509::{read, CheckedIdentity, Zeroing};
use openssl::nid::Nid;

use crate::error::X509Error;

/// A client certificate (leaf first) and its unencrypted private key, in memory.
/// `Debug` never shows the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Identity {
    cert_chain: PemSource,
    key: PemSource,
    common_name: Option<String>,
    not_after: SystemTime,
}

impl X509Identity {
    /// From PEM text: `cert_pem` holds the leaf certificate, optionally followed by its
    /// chain; `key_pem` the private key, decrypted with `passphrase` when encrypted.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        passphrase: Option<&Secret>,
        now: SystemTime,
    ) -> Result<Self, X509Error> {
        Ok(Self::from_checked(CheckedIdentity::from_pem(cert_pem, key_pem, passphrase, now)?))
    }

    /// From a PEM certificate file and a PEM key file.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        passphrase: Option<&Secret>,
        now: SystemTime,
    ) -> Result<Self, X509Error> {
        let cert = read(cert.as_ref())?;
        let key = Zeroing(read(key.as_ref())?);
        Self::from_pem(&cert, &key.0, passphrase, now)
    }

    /// From a DER-encoded PKCS#12 archive (`.pfx`, `.p12`) with its passphrase.
    pub fn from_pkcs12(der: &[u8], passphrase: &Secret, now: SystemTime) -> Result<Self, X509Error> {
        Ok(Self::from_checked(CheckedIdentity::from_pkcs12(der, passphrase, now)?))
    }

    /// From a PKCS#12 file.
    pub fn from_pkcs12_file(
        path: impl AsRef<Path>,
        passphrase: &Secret,
        now: SystemTime,
    ) -> Result<Self, X509Error> {
        Ok(Self::from_checked(CheckedIdentity::from_pkcs12_file(path.as_ref(), passphrase, now)?))
    }

    fn from_checked(id: CheckedIdentity) -> Self {
        let common_name = id
            .leaf
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        Self { cert_chain: id.cert_chain, key: id.key, common_name, not_after: id.not_after }
    }

    /// The certificate chain, leaf first, as PEM.
    pub fn cert_chain(&self) -> &PemSource {
        &self.cert_chain
    }

    /// The private key as unencrypted PKCS#8 PEM (a [`PemSource::Pem`], redacted in `Debug`).
    pub fn key(&self) -> &PemSource {
        &self.key
    }

    /// The leaf's subject common name (the device id, or the DPS registration id).
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The leaf's `notAfter`.
    pub fn expires_at(&self) -> SystemTime {
        self.not_after
    }

    /// Sets the client certificate and key of `tls` (no passphrase needed: the key is
    /// already decrypted).
    pub fn apply(&self, tls: &mut TlsOptions) {
        tls.client_cert = Some(self.cert_chain.clone());
        tls.client_key = Some(self.key.clone());
        tls.key_password = None;
    }

    /// TLS options with this identity and the given trust roots (`None`: system roots).
    pub fn tls_options(&self, trust_roots: Option<PemSource>) -> TlsOptions {
        let mut tls = TlsOptions { ca: trust_roots, ..TlsOptions::default() };
        self.apply(&mut tls);
        tls
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::pkcs12::Pkcs12;
    use openssl::pkey::{PKey, Private};
    use openssl::symm::Cipher;
    use openssl::x509::X509;
    use openssl::x509::{X509Builder, X509NameBuilder};
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) const NOW: u64 = 1_735_689_600;

    pub(crate) fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    /// A self-signed certificate for `cn`, valid from `from` to `to` (Unix seconds).
    pub(crate) fn cert(key: &PKey<Private>, cn: &str, from: u64, to: u64) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(from as i64).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::from_unix(to as i64).unwrap()).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn pem(p: &PemSource) -> &str {
        match p {
            PemSource::Pem(s) => s.expose(),
            PemSource::File(_) => panic!("expected in-memory PEM"),
        }
    }

    #[test]
    fn plain_and_encrypted_pem_keys_load() {
        let k = key();
        let c = cert(&k, "device-01", NOW - 86_400, NOW + 86_400);
        let cert_pem = c.to_pem().unwrap();
        let pass = Secret::new("s3cret-pass");
        let plain = k.private_key_to_pem_pkcs8().unwrap();
        let pkcs8 = k.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"s3cret-pass").unwrap();
        let legacy =
            k.ec_key().unwrap().private_key_to_pem_passphrase(Cipher::aes_128_cbc(), b"s3cret-pass").unwrap();
        assert!(String::from_utf8_lossy(&legacy).contains("Proc-Type: 4,ENCRYPTED"));
        for key_pem in [&plain, &pkcs8, &legacy] {
            let id = X509Identity::from_pem(&cert_pem, key_pem, Some(&pass), now()).unwrap();
            assert_eq!(id.common_name(), Some("device-01"));
            assert_eq!(id.expires_at(), UNIX_EPOCH + Duration::from_secs(NOW + 86_400));
            assert!(pem(id.key()).starts_with("-----BEGIN PRIVATE KEY-----"), "decrypted PKCS#8");
            assert!(pem(id.cert_chain()).starts_with("-----BEGIN CERTIFICATE-----"));
            let tls = id.tls_options(None);
            assert!(tls.client_cert.is_some() && tls.client_key.is_some() && tls.key_password.is_none());
        }
        for key_pem in [&pkcs8, &legacy] {
            assert!(matches!(
                X509Identity::from_pem(&cert_pem, key_pem, None, now()),
                Err(X509Error::PassphraseRequired)
            ));
            let wrong = Secret::new("wrong");
            assert!(matches!(
                X509Identity::from_pem(&cert_pem, key_pem, Some(&wrong), now()),
                Err(X509Error::WrongPassphrase)
            ));
        }
    }

    #[test]
    fn bad_material_is_refused_with_a_reason() {
        let k = key();
        let cert_pem = cert(&k, "d", NOW - 10, NOW + 10).to_pem().unwrap();
        let other = key().private_key_to_pem_pkcs8().unwrap();
        assert!(matches!(
            X509Identity::from_pem(&cert_pem, &other, None, now()),
            Err(X509Error::KeyMismatch)
        ));
        let key_pem = k.private_key_to_pem_pkcs8().unwrap();
        let expired = cert(&k, "d", NOW - 20, NOW - 10).to_pem().unwrap();
        assert!(matches!(
            X509Identity::from_pem(&expired, &key_pem, None, now()),
            Err(X509Error::Expired { .. })
        ));
        let future = cert(&k, "d", NOW + 10, NOW + 20).to_pem().unwrap();
        assert!(matches!(
            X509Identity::from_pem(&future, &key_pem, None, now()),
            Err(X509Error::NotYetValid { .. })
        ));
        assert!(matches!(
            X509Identity::from_pem(b"junk", &key_pem, None, now()),
            Err(X509Error::InvalidCertificate { .. })
        ));
        assert!(matches!(
            X509Identity::from_pem(&cert_pem, b"junk", None, now()),
            Err(X509Error::InvalidKey { .. })
        ));
        assert!(matches!(
            X509Identity::from_pem_files("/nonexistent/c.pem", "/nonexistent/k.pem", None, now()),
            Err(X509Error::Read { .. })
        ));
    }

    #[test]
    fn pkcs12_archives_load_with_their_passphrase() {
        let k = key();
        let c = cert(&k, "device-p12", NOW - 10, NOW + 10);
        let der =
            Pkcs12::builder().name("device").pkey(&k).cert(&c).build2("p12-pass").unwrap().to_der().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.pfx");
        std::fs::write(&path, &der).unwrap();
        let id = X509Identity::from_pkcs12_file(&path, &Secret::new("p12-pass"), now()).unwrap();
        assert_eq!(id.common_name(), Some("device-p12"));
        assert!(matches!(
            X509Identity::from_pkcs12(&der, &Secret::new("nope"), now()),
            Err(X509Error::WrongPassphrase)
        ));
        assert!(matches!(
            X509Identity::from_pkcs12(b"junk", &Secret::new("x"), now()),
            Err(X509Error::InvalidCertificate { .. })
        ));
    }

    #[test]
    fn pem_files_load_and_debug_hides_the_key() {
        let k = key();
        let dir = tempfile::tempdir().unwrap();
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cp, cert(&k, "d", NOW - 10, NOW + 10).to_pem().unwrap()).unwrap();
        std::fs::write(&kp, k.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let id = X509Identity::from_pem_files(&cp, &kp, None, now()).unwrap();
        let shown = format!("{id:?} {:?}", id.tls_options(None));
        assert!(!shown.contains("PRIVATE KEY") && !shown.contains("CERTIFICATE"), "{shown}");
    }
}
