//! The emulator's own certificate authority.
//!
//! At start the emulator loads `ca.pem` / `ca-key.pem` from its state directory, or
//! generates them (EC P-256, SHA-256, 10 years) and writes them there, so a restart keeps
//! the CA that clients were told to trust. The TLS server certificate is issued fresh at
//! every start for `localhost`, `127.0.0.1`, `::1` and the configured host names, and is
//! written next to the CA (`server.pem`, `server-key.pem`) for inspection.
//!
//! Also here: certificate thumbprints and verification of a client certificate against
//! registered CA certificates (X.509 CA authentication).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509Builder, X509Name, X509StoreContext, X509};

use crate::error::EmulatorError;

/// File names inside the state directory.
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server-key.pem";

/// The CA certificate and key.
pub(crate) struct CertificateAuthority {
    cert: X509,
    key: PKey<Private>,
}

/// A certificate with its private key, as PEM.
pub(crate) struct IssuedCert {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, or generates one and stores it there.
    pub fn load_or_create(dir: &Path) -> Result<CertificateAuthority, EmulatorError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            let cert_pem = read(&cert_path)?;
            let key_pem = read(&key_path)?;
            let cert = X509::from_pem(&cert_pem).map_err(|e| EmulatorError::tls("read ca.pem", e))?;
            let key =
                PKey::private_key_from_pem(&key_pem).map_err(|e| EmulatorError::tls("read ca-key.pem", e))?;
            return Ok(CertificateAuthority { cert, key });
        }
        let ca = Self::generate().map_err(|e| EmulatorError::tls("generate the CA", e))?;
        write(
            &key_path,
            &ca.key.private_key_to_pem_pkcs8().map_err(|e| EmulatorError::tls("encode CA key", e))?,
            true,
        )?;
        write(&cert_path, &ca.cert_pem()?, false)?;
        Ok(ca)
    }

    fn generate() -> Result<CertificateAuthority, ErrorStack> {
        let key = ec_key()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "connector-emulator")?;
        name.append_entry_by_nid(Nid::COMMONNAME, "connector-emulator CA")?;
        let name = name.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = serial()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
        b.set_not_before(&from)?;
        b.set_not_after(&until)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(CertificateAuthority { cert: b.build(), key })
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> Result<Vec<u8>, EmulatorError> {
        self.cert.to_pem().map_err(|e| EmulatorError::tls("encode CA certificate", e))
    }

    /// Issues the TLS server certificate for `hosts` (DNS names or IP addresses) and
    /// writes it into `dir`.
    pub fn issue_server(&self, hosts: &[String], dir: &Path) -> Result<IssuedCert, EmulatorError> {
        let issued = self
            .issue("localhost", hosts, true)
            .map_err(|e| EmulatorError::tls("issue the server certificate", e))?;
        let key_pem =
            issued.key.private_key_to_pem_pkcs8().map_err(|e| EmulatorError::tls("encode server key", e))?;
        let cert_pem =
            issued.cert.to_pem().map_err(|e| EmulatorError::tls("encode server certificate", e))?;
        write(&dir.join(SERVER_KEY_FILE), &key_pem, true)?;
        write(&dir.join(SERVER_CERT_FILE), &cert_pem, false)?;
        Ok(issued)
    }

    /// Issues a client certificate (extendedKeyUsage clientAuth) with the given CN.
    pub fn issue_client(&self, common_name: &str) -> Result<IssuedCert, ErrorStack> {
        self.issue(common_name, &[], false)
    }

    /// Signs a client certificate (extendedKeyUsage clientAuth) with the given CN for a
    /// public key from elsewhere (a CSR, a key generated by fleet provisioning).
    pub fn sign_client<T: HasPublic>(&self, common_name: &str, key: &PKeyRef<T>) -> Result<X509, ErrorStack> {
        self.sign(common_name, &[], false, key)
    }

    fn issue(&self, cn: &str, hosts: &[String], server: bool) -> Result<IssuedCert, ErrorStack> {
        let key = ec_key()?;
        let cert = self.sign(cn, hosts, server, &key)?;
        Ok(IssuedCert { cert, key })
    }

    fn sign<T: HasPublic>(
        &self,
        cn: &str,
        hosts: &[String],
        server: bool,
        key: &PKeyRef<T>,
    ) -> Result<X509, ErrorStack> {
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        let name = name.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = serial()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_pubkey(key)?;
        let (from, until) =
            (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(if server { 825 } else { 365 })?);
        b.set_not_before(&from)?;
        b.set_not_after(&until)?;
        b.append_extension(BasicConstraints::new().build()?)?;
        b.append_extension(KeyUsage::new().critical().digital_signature().key_agreement().build()?)?;
        let eku = if server {
            ExtendedKeyUsage::new().server_auth().build()?
        } else {
            ExtendedKeyUsage::new().client_auth().build()?
        };
        b.append_extension(eku)?;
        if !hosts.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for h in hosts {
                if h.parse::<IpAddr>().is_ok() {
                    san.ip(h);
                } else {
                    san.dns(h);
                }
            }
            let ext = san.build(&b.x509v3_context(Some(&self.cert), None))?;
            b.append_extension(ext)?;
        }
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(ski)?;
        let aki =
            AuthorityKeyIdentifier::new().keyid(false).build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(aki)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok(b.build())
    }
}

fn ec_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> Result<Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

fn read(path: &Path) -> Result<Vec<u8>, EmulatorError> {
    fs::read(path).map_err(|source| EmulatorError::StateDir { path: path.to_path_buf(), source })
}

/// Writes a file (mode 0600 for secrets) through a temporary file and rename.
pub(crate) fn write(path: &Path, data: &[u8], secret: bool) -> Result<(), EmulatorError> {
    let err = |source| EmulatorError::StateDir { path: path.to_path_buf(), source };
    let tmp: PathBuf = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// Upper-case hex SHA-1 and SHA-256 thumbprints of a certificate (DER digest).
pub(crate) fn thumbprints(cert: &X509) -> (String, String) {
    let hex = |d: MessageDigest| {
        cert.digest(d).map(|b| b.iter().map(|x| format!("{x:02X}")).collect::<String>()).unwrap_or_default()
    };
    (hex(MessageDigest::sha1()), hex(MessageDigest::sha256()))
}

/// Normalises a thumbprint given by a user: hex digits only, upper case (`:` and spaces
/// dropped). `None` unless it is 40 (SHA-1) or 64 (SHA-256) hex digits.
pub(crate) fn normalize_thumbprint(s: &str) -> Option<String> {
    let t: String =
        s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    (matches!(t.len(), 40 | 64) && t.bytes().all(|b| b.is_ascii_hexdigit())).then_some(t)
}

/// True when `cert` matches one of the (normalised) thumbprints, by SHA-1 or SHA-256.
pub(crate) fn matches_thumbprint(cert: &X509, accepted: &[&str]) -> bool {
    let (sha1, sha256) = thumbprints(cert);
    accepted.iter().any(|t| !t.is_empty() && (*t == sha1 || *t == sha256))
}

/// The subject common name.
pub(crate) fn common_name(cert: &X509) -> Option<String> {
    cert.subject_name().entries_by_nid(Nid::COMMONNAME).next().and_then(|e| e.data().to_string().ok())
}

/// True when `now` lies inside the certificate's validity period.
pub(crate) fn currently_valid(cert: &X509) -> bool {
    let Ok(now) = Asn1Time::days_from_now(0) else { return false };
    cert.not_before() <= now && cert.not_after() >= now
}

/// Verifies `leaf` (with the peer's `chain` as untrusted intermediates) against the
/// trusted `cas`.
pub(crate) fn verify_chain(leaf: &X509, chain: &[X509], cas: &[X509]) -> bool {
    let run = || -> Result<bool, ErrorStack> {
        let mut store = X509StoreBuilder::new()?;
        for ca in cas {
            store.add_cert(ca.clone())?;
        }
        let store = store.build();
        let mut untrusted = Stack::new()?;
        for c in chain {
            untrusted.push(c.clone())?;
        }
        let mut ctx = X509StoreContext::new()?;
        ctx.init(&store, leaf, &untrusted, |c| c.verify_cert())
    };
    !cas.is_empty() && run().unwrap_or(false)
}

/// Parses a PEM certificate.
pub(crate) fn parse_pem(pem: &str) -> Option<X509> {
    X509::from_pem(pem.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_issues_verifiable_certs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let again = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.cert_pem().unwrap(), again.cert_pem().unwrap());
        let server = ca.issue_server(&["localhost".into(), "127.0.0.1".into()], dir.path()).unwrap();
        assert!(verify_chain(&server.cert, &[], std::slice::from_ref(&ca.cert)));
        let client = ca.issue_client("dev-1").unwrap();
        assert_eq!(common_name(&client.cert).as_deref(), Some("dev-1"));
        assert!(verify_chain(&client.cert, &[], std::slice::from_ref(&ca.cert)));
        let other = CertificateAuthority::generate().unwrap();
        assert!(!verify_chain(&client.cert, &[], std::slice::from_ref(&other.cert)));
        assert!(!verify_chain(&client.cert, &[], &[]));
        let (sha1, sha256) = thumbprints(&client.cert);
        assert_eq!((sha1.len(), sha256.len()), (40, 64));
        assert!(matches_thumbprint(&client.cert, &[&sha1]));
        assert!(matches_thumbprint(&client.cert, &[&sha256]));
        assert!(!matches_thumbprint(&client.cert, &[""]));
        assert!(currently_valid(&client.cert));
    }

    #[test]
    fn thumbprints_are_normalised() {
        let t = "ab:cd".repeat(10).replace(':', "");
        assert_eq!(normalize_thumbprint(&t).as_deref(), Some("ABCD".repeat(10).as_str()));
        assert_eq!(normalize_thumbprint("xyz"), None);
    }
}
