//! X.509 client certificates for mutual TLS (ports 8883 and 443 with ALPN
//! `x-amzn-mqtt-ca`): a certificate (chain) and its private key from PEM files, PEM in
//! memory or a PKCS#12 archive, loaded once, checked (passphrase, key/certificate match,
//! validity) and held in memory as PEM. Encrypted keys and archives are decrypted here, so
//! the transport never needs the passphrase.
//!
//! ```no_run
//! use connector_aws::X509Credentials;
//! use connector_core::Secret;
//! let creds = X509Credentials::from_pkcs12_file(
//!     "device.p12",
//!     &Secret::new("passphrase"),
//!     std::time::SystemTime::now(),
//! )?;
//! # let _ = creds;
//! # Ok::<(), connector_aws::CertificateError>(())
//! ```

use std::path::Path;
use std::time::SystemTime;

use connector_core::{PemSource, Secret, TlsOptions};
use connector_x509::CheckedIdentity;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;

use crate::error::CertificateError;

/// Where a client certificate and its key come from. `Debug` never shows in-memory PEM
/// or the passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Credentials {
    /// The certificate, optionally followed by its chain.
    pub cert: PemSource,
    /// The private key (PKCS#8, PKCS#1 or SEC1 PEM, possibly encrypted).
    pub key: PemSource,
    /// The passphrase of an encrypted key.
    pub passphrase: Option<Secret>,
}

impl X509Credentials {
    /// From PEM files.
    pub fn from_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        Self {
            cert: PemSource::File(cert.as_ref().to_owned()),
            key: PemSource::File(key.as_ref().to_owned()),
            passphrase: None,
        }
    }

    /// From PEM text in memory (e.g. a certificate fleet provisioning just issued).
    pub fn from_pem(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Self {
            cert: PemSource::Pem(Secret::new(cert_pem.into())),
            key: PemSource::Pem(Secret::new(key_pem.into())),
            passphrase: None,
        }
    }

    /// From a DER-encoded PKCS#12 archive (`.pfx`, `.p12`) with its passphrase, opened and
    /// checked at `now`: the chain and the decrypted key are held in memory as PEM (no
    /// passphrase left to give).
    pub fn from_pkcs12(der: &[u8], passphrase: &Secret, now: SystemTime) -> Result<Self, CertificateError> {
        Ok(ClientCertificate::from_pkcs12(der, passphrase, now)?.into())
    }

    /// From a PKCS#12 file, read once, here.
    pub fn from_pkcs12_file(
        path: impl AsRef<Path>,
        passphrase: &Secret,
        now: SystemTime,
    ) -> Result<Self, CertificateError> {
        Ok(ClientCertificate::from_pkcs12_file(path, passphrase, now)?.into())
    }

    /// Sets the key's passphrase.
    pub fn passphrase(mut self, passphrase: impl Into<Secret>) -> Self {
        self.passphrase = Some(passphrase.into());
        self
    }

    /// Reads and checks the certificate and key at `now`.
    pub fn load(&self, now: SystemTime) -> Result<ClientCertificate, CertificateError> {
        let cert = read_pem(&self.cert)?;
        let key = read_pem(&self.key)?;
        ClientCertificate::from_pem(
            cert.expose().as_bytes(),
            key.expose().as_bytes(),
            self.passphrase.as_ref(),
            now,
        )
    }
}

fn read_pem(src: &PemSource) -> Result<Secret, CertificateError> {
    match src {
        PemSource::Pem(s) => Ok(s.clone()),
        PemSource::File(p) => std::fs::read_to_string(p)
            .map(Secret::new)
            .map_err(|source| CertificateError::Read { path: p.clone(), source }),
    }
}

impl From<ClientCertificate> for X509Credentials {
    /// The loaded chain and decrypted key, in memory.
    fn from(c: ClientCertificate) -> Self {
        Self { cert: c.cert_chain, key: c.key, passphrase: None }
    }
}

/// A loaded client certificate: the chain (leaf first) and the decrypted key as PEM in
/// memory, with the AWS certificate id (SHA-256 of the DER leaf, hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    cert_chain: PemSource,
    key: PemSource,
    certificate_id: String,
}

impl ClientCertificate {
    /// From PEM text; `key_pem` is decrypted with `passphrase` when encrypted.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        passphrase: Option<&Secret>,
        now: SystemTime,
    ) -> Result<Self, CertificateError> {
        Self::from_checked(CheckedIdentity::from_pem(cert_pem, key_pem, passphrase, now)?)
    }

    /// From a DER-encoded PKCS#12 archive (`.pfx`, `.p12`) with its passphrase.
    pub fn from_pkcs12(der: &[u8], passphrase: &Secret, now: SystemTime) -> Result<Self, CertificateError> {
        Self::from_checked(CheckedIdentity::from_pkcs12(der, passphrase, now)?)
    }

    /// From a PKCS#12 file.
    pub fn from_pkcs12_file(
        path: impl AsRef<Path>,
        passphrase: &Secret,
        now: SystemTime,
    ) -> Result<Self, CertificateError> {
        Self::from_checked(CheckedIdentity::from_pkcs12_file(path.as_ref(), passphrase, now)?)
    }

    fn from_checked(id: CheckedIdentity) -> Result<Self, CertificateError> {
        let invalid = |e: ErrorStack| CertificateError::invalid_certificate(&e);
        let der = id.leaf.to_der().map_err(invalid)?;
        let certificate_id =
            crate::sigv4::hex(&openssl::hash::hash(MessageDigest::sha256(), &der).map_err(invalid)?);
        Ok(Self { cert_chain: id.cert_chain, key: id.key, certificate_id })
    }

    /// The certificate id AWS IoT shows (SHA-256 of the DER leaf certificate, lower-case hex).
    pub fn certificate_id(&self) -> &str {
        &self.certificate_id
    }

    /// Sets the client certificate and key of `tls`.
    pub fn apply(&self, tls: &mut TlsOptions) {
        tls.client_cert = Some(self.cert_chain.clone());
        tls.client_key = Some(self.key.clone());
        tls.key_password = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
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

    pub(crate) fn cert(key: &PKey<Private>, from: u64, to: u64) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "lamp").unwrap();
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

    #[test]
    fn loads_plain_and_encrypted_keys_and_hides_them() {
        let k = key();
        let c = cert(&k, NOW - 10, NOW + 10);
        let cert_pem = c.to_pem().unwrap();
        let enc = k.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"pass").unwrap();
        let id = ClientCertificate::from_pem(&cert_pem, &enc, Some(&Secret::new("pass")), now()).unwrap();
        let expected = crate::sigv4::hex(&c.digest(MessageDigest::sha256()).unwrap());
        assert_eq!(id.certificate_id(), expected);
        let mut tls = TlsOptions::default();
        id.apply(&mut tls);
        assert!(tls.client_cert.is_some() && tls.client_key.is_some() && tls.key_password.is_none());
        let shown = format!("{id:?} {tls:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(matches!(
            ClientCertificate::from_pem(&cert_pem, &enc, None, now()),
            Err(CertificateError::PassphraseRequired)
        ));
        assert!(matches!(
            ClientCertificate::from_pem(&cert_pem, &enc, Some(&Secret::new("no")), now()),
            Err(CertificateError::WrongPassphrase)
        ));
    }

    #[test]
    fn pkcs12_archives_load_with_their_passphrase_and_refuse_junk() {
        use openssl::pkcs12::Pkcs12;
        let k = key();
        let c = cert(&k, NOW - 10, NOW + 10);
        let der =
            Pkcs12::builder().name("lamp").pkey(&k).cert(&c).build2("p12-pass").unwrap().to_der().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lamp.p12");
        std::fs::write(&path, &der).unwrap();
        let pass = Secret::new("p12-pass");
        let id = ClientCertificate::from_pkcs12_file(&path, &pass, now()).unwrap();
        let expected = crate::sigv4::hex(&c.digest(MessageDigest::sha256()).unwrap());
        assert_eq!(id.certificate_id(), expected);
        // As credentials: in-memory PEM that loads again, with no passphrase needed.
        let creds = X509Credentials::from_pkcs12(&der, &pass, now()).unwrap();
        assert!(creds.passphrase.is_none());
        assert_eq!(creds.load(now()).unwrap().certificate_id(), expected);
        assert!(!format!("{creds:?}").contains("PRIVATE KEY"));
        assert!(matches!(
            X509Credentials::from_pkcs12(&der, &Secret::new("nope"), now()),
            Err(CertificateError::WrongPassphrase)
        ));
        assert!(matches!(
            ClientCertificate::from_pkcs12(b"junk", &pass, now()),
            Err(CertificateError::InvalidCertificate { .. })
        ));
        assert!(matches!(
            X509Credentials::from_pkcs12_file(dir.path().join("missing.p12"), &pass, now()),
            Err(CertificateError::Read { .. })
        ));
        let expired = Pkcs12::builder()
            .name("lamp")
            .pkey(&k)
            .cert(&cert(&k, NOW - 20, NOW - 10))
            .build2("p12-pass")
            .unwrap()
            .to_der()
            .unwrap();
        assert!(matches!(
            X509Credentials::from_pkcs12(&expired, &pass, now()),
            Err(CertificateError::Expired { .. })
        ));
    }

    #[test]
    fn bad_material_is_refused() {
        let k = key();
        let key_pem = k.private_key_to_pem_pkcs8().unwrap();
        let ok = cert(&k, NOW - 10, NOW + 10).to_pem().unwrap();
        let other = key().private_key_to_pem_pkcs8().unwrap();
        assert!(matches!(
            ClientCertificate::from_pem(&ok, &other, None, now()),
            Err(CertificateError::KeyMismatch)
        ));
        let old = cert(&k, NOW - 20, NOW - 10).to_pem().unwrap();
        assert!(matches!(
            ClientCertificate::from_pem(&old, &key_pem, None, now()),
            Err(CertificateError::Expired { .. })
        ));
        let new = cert(&k, NOW + 10, NOW + 20).to_pem().unwrap();
        assert!(matches!(
            ClientCertificate::from_pem(&new, &key_pem, None, now()),
            Err(CertificateError::NotYetValid { .. })
        ));
        assert!(matches!(
            ClientCertificate::from_pem(b"junk", &key_pem, None, now()),
            Err(CertificateError::InvalidCertificate { .. })
        ));
        assert!(matches!(
            ClientCertificate::from_pem(&ok, b"junk", None, now()),
            Err(CertificateError::InvalidKey { .. })
        ));
        let missing = X509Credentials::from_files("/nonexistent/c.pem", "/nonexistent/k.pem");
        assert!(matches!(missing.load(now()), Err(CertificateError::Read { .. })));
        let mem =
            X509Credentials::from_pem(String::from_utf8(ok).unwrap(), String::from_utf8(key_pem).unwrap())
                .passphrase("unused");
        assert!(mem.load(now()).is_ok());
        assert!(!format!("{mem:?}").contains("BEGIN"));
    }
}
