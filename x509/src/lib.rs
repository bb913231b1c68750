//! X.509 client identities shared by the provider crates: a certificate (chain) and its
//! private key, loaded with openssl, checked (passphrase, key/certificate match, validity at
//! a given instant) and re-encoded as PEM for [`connector_core::TlsOptions`]. Encrypted keys
//! are decrypted here, so the transport never needs the passphrase.
//!
//! `connector-core` stays free of openssl types; this crate is where they meet the core's
//! [`PemSource`] and [`Secret`]. PEM files and PKCS#12 archives load here;
//! `connector-azure` adds the common name, `connector-aws` the certificate id, both on top
//! of [`CheckedIdentity`]; their tests
//! (`connector-azure/src/x509.rs`, `connector-aws/src/x509.rs`) cover every error here.
//!
//! ```
//! use connector_x509::{load_key, X509Error};
//! assert!(matches!(load_key(b"not a key", None), Err(X509Error::InvalidKey { .. })));
//! ```

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_core::{PemSource, Secret};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::error::ErrorStack;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use thiserror::Error;

/// An X.509 identity that cannot be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum X509Error {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate (chain) does not parse.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// OpenSSL's message.
        reason: String,
    },
    /// The private key does not parse.
    #[error("invalid private key: {reason}")]
    InvalidKey {
        /// OpenSSL's message (never the key).
        reason: String,
    },
    /// The key or archive is encrypted and no passphrase was given.
    #[error("the private key is encrypted and no passphrase was given")]
    PassphraseRequired,
    /// The passphrase does not decrypt the key or archive.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The certificate's validity period ended.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// Its `notAfter`, as OpenSSL prints it.
        not_after: String,
    },
    /// The certificate's validity period has not begun.
    #[error("certificate is not valid before {not_before}")]
    NotYetValid {
        /// Its `notBefore`, as OpenSSL prints it.
        not_before: String,
    },
    /// A PKCS#12 archive without a certificate or key.
    #[error("the PKCS#12 archive has no {missing}")]
    Incomplete {
        /// `certificate` or `private key`.
        missing: &'static str,
    },
    /// Re-encoding the material as PEM failed.
    #[error("cannot encode as PEM: {reason}")]
    Encode {
        /// OpenSSL's message.
        reason: String,
    },
}

impl X509Error {
    /// [`X509Error::InvalidCertificate`] from OpenSSL's error.
    pub fn invalid_certificate(e: &ErrorStack) -> Self {
        X509Error::InvalidCertificate { reason: e.to_string() }
    }
}

/// A checked identity: the chain and the unencrypted key as PEM, and the leaf certificate
/// for what a provider derives from it (AWS's certificate id, Azure's common name).
/// `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct CheckedIdentity {
    /// The certificate chain, leaf first, as PEM.
    pub cert_chain: PemSource,
    /// The private key, unencrypted PKCS#8 PEM.
    pub key: PemSource,
    /// The leaf certificate.
    pub leaf: X509,
    /// The end of the leaf's validity.
    pub not_after: SystemTime,
}

impl CheckedIdentity {
    /// From PEM text; `key_pem` is decrypted with `passphrase` when encrypted.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        passphrase: Option<&Secret>,
        now: SystemTime,
    ) -> Result<Self, X509Error> {
        let chain = X509::stack_from_pem(cert_pem).map_err(|e| X509Error::invalid_certificate(&e))?;
        let key = load_key(key_pem, passphrase)?;
        Self::check(chain, key, now)
    }

    /// From a DER-encoded PKCS#12 archive (`.pfx`, `.p12`) and its passphrase: the key, the
    /// leaf certificate and the CA certificates it holds (the chain after the leaf).
    /// A passphrase that does not open the archive is [`X509Error::WrongPassphrase`];
    /// bytes that are not an archive [`X509Error::InvalidCertificate`].
    pub fn from_pkcs12(der: &[u8], passphrase: &Secret, now: SystemTime) -> Result<Self, X509Error> {
        let archive = Pkcs12::from_der(der).map_err(|e| X509Error::invalid_certificate(&e))?;
        let parsed = archive.parse2(passphrase.expose()).map_err(|_| X509Error::WrongPassphrase)?;
        let key = parsed.pkey.ok_or(X509Error::Incomplete { missing: "private key" })?;
        let leaf = parsed.cert.ok_or(X509Error::Incomplete { missing: "certificate" })?;
        let mut chain = vec![leaf];
        chain.extend(parsed.ca.into_iter().flatten());
        Self::check(chain, key, now)
    }

    /// From a PKCS#12 file (read once, here).
    pub fn from_pkcs12_file(path: &Path, passphrase: &Secret, now: SystemTime) -> Result<Self, X509Error> {
        Self::from_pkcs12(&Zeroing(read(path)?).0, passphrase, now)
    }

    /// Checks that `key` is the leaf's (the first of `chain`) and that the leaf is valid at
    /// `now`, then re-encodes both as PEM.
    pub fn check(chain: Vec<X509>, key: PKey<Private>, now: SystemTime) -> Result<Self, X509Error> {
        let invalid = |e: ErrorStack| X509Error::invalid_certificate(&e);
        let leaf =
            chain.first().ok_or(X509Error::InvalidCertificate { reason: "no certificate found".into() })?;
        if !leaf.public_key().map_err(invalid)?.public_eq(&key) {
            return Err(X509Error::KeyMismatch);
        }
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let now_asn1 = Asn1Time::from_unix(i64::try_from(secs).unwrap_or(i64::MAX)).map_err(invalid)?;
        if leaf.not_after().compare(&now_asn1).map_err(invalid)? == Ordering::Less {
            return Err(X509Error::Expired { not_after: leaf.not_after().to_string() });
        }
        if leaf.not_before().compare(&now_asn1).map_err(invalid)? == Ordering::Greater {
            return Err(X509Error::NotYetValid { not_before: leaf.not_before().to_string() });
        }
        let not_after = unix_time(leaf.not_after()).map_err(invalid)?;
        let encode = |e: ErrorStack| X509Error::Encode { reason: e.to_string() };
        let mut pem = Vec::new();
        for cert in &chain {
            pem.extend(cert.to_pem().map_err(encode)?);
        }
        let key_pem = Zeroing(key.private_key_to_pem_pkcs8().map_err(encode)?);
        Ok(Self {
            cert_chain: PemSource::Pem(Secret::new(String::from_utf8_lossy(&pem))),
            key: PemSource::Pem(Secret::new(String::from_utf8_lossy(&key_pem.0))),
            leaf: leaf.clone(),
            not_after,
        })
    }
}

/// Bytes that may hold a private key: overwritten when dropped.
pub struct Zeroing(pub Vec<u8>);

impl Drop for Zeroing {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
    }
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, X509Error> {
    std::fs::read(path).map_err(|source| X509Error::Read { path: path.to_owned(), source })
}

/// Loads a PEM private key. The passphrase callback is always installed, so OpenSSL never
/// falls back to prompting on a terminal.
pub fn load_key(pem: &[u8], passphrase: Option<&Secret>) -> Result<PKey<Private>, X509Error> {
    let mut asked = false;
    let result = PKey::private_key_from_pem_callback(pem, |buf| {
        asked = true;
        let p = passphrase.ok_or_else(ErrorStack::get)?.expose().as_bytes();
        if p.len() > buf.len() {
            return Err(ErrorStack::get());
        }
        buf[..p.len()].copy_from_slice(p);
        Ok(p.len())
    });
    match result {
        Ok(k) => Ok(k),
        Err(_) if asked && passphrase.is_none() => Err(X509Error::PassphraseRequired),
        Err(_) if asked => Err(X509Error::WrongPassphrase),
        Err(e) => Err(X509Error::InvalidKey { reason: e.to_string() }),
    }
}

fn unix_time(t: &Asn1TimeRef) -> Result<SystemTime, ErrorStack> {
    let diff = Asn1Time::from_unix(0)?.diff(t)?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Ok(match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    })
}
