//! The device's own key pair and its certificate signing request (for
//! CreateCertificateFromCsr), made with OpenSSL, and the checks a received or stored
//! certificate goes through.
//!
//! ```
//! use connector_aws::fleet::{KeyAlgorithm, KeyPair};
//! let key = KeyPair::generate(KeyAlgorithm::EcP256)?;
//! let csr = key.csr_pem("sensor-0042")?;
//! assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
//! assert_eq!(format!("{key:?}"), "KeyPair { algorithm: EcP256, private_key: Secret(<redacted>) }");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use connector_core::Secret;
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509ReqBuilder, X509};

use super::error::KeyError;

/// The algorithm of a generated key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (prime256v1): small and fast; AWS IoT accepts it.
    #[default]
    EcP256,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
}

/// A private key held as PEM (PKCS#8). `Debug` never shows it.
#[derive(Debug, Clone)]
pub struct KeyPair {
    algorithm: KeyAlgorithm,
    private_key: Secret,
}

fn crypto(op: &'static str) -> impl Fn(openssl::error::ErrorStack) -> KeyError {
    move |e| KeyError::Crypto { op, reason: e.to_string() }
}

impl KeyPair {
    /// Generates a new key pair.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let op = "generate the key pair";
        let pkey = match algorithm {
            KeyAlgorithm::EcP256 => {
                let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(crypto(op))?;
                PKey::from_ec_key(EcKey::generate(&group).map_err(crypto(op))?).map_err(crypto(op))?
            }
            KeyAlgorithm::Rsa2048 => {
                PKey::from_rsa(Rsa::generate(2048).map_err(crypto(op))?).map_err(crypto(op))?
            }
        };
        let pem = pkey.private_key_to_pem_pkcs8().map_err(crypto("encode the private key"))?;
        let pem = String::from_utf8(pem).map_err(|_| KeyError::InvalidPrivateKey)?;
        Ok(Self { algorithm, private_key: Secret::new(pem) })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The private key, PEM.
    pub fn private_key(&self) -> &Secret {
        &self.private_key
    }

    /// A PKCS#10 CSR, PEM, with subject `CN={common_name}`, signed with SHA-256.
    pub fn csr_pem(&self, common_name: &str) -> Result<String, KeyError> {
        if common_name.is_empty() || common_name.len() > 64 {
            return Err(KeyError::InvalidCommonName { reason: "must be 1 to 64 bytes".into() });
        }
        let pkey = private_key(&self.private_key)?;
        let op = "build the CSR";
        let mut name = X509NameBuilder::new().map_err(crypto(op))?;
        name.append_entry_by_nid(Nid::COMMONNAME, common_name)
            .map_err(|e| KeyError::InvalidCommonName { reason: e.to_string() })?;
        let name = name.build();
        let mut req = X509ReqBuilder::new().map_err(crypto(op))?;
        req.set_version(0).map_err(crypto(op))?;
        req.set_subject_name(&name).map_err(crypto(op))?;
        req.set_pubkey(&pkey).map_err(crypto(op))?;
        req.sign(&pkey, MessageDigest::sha256()).map_err(crypto("sign the CSR"))?;
        let pem = req.build().to_pem().map_err(crypto("encode the CSR"))?;
        String::from_utf8(pem).map_err(|_| KeyError::Crypto { op, reason: "PEM is not UTF-8".into() })
    }
}

/// Parses a PEM private key (any format OpenSSL reads).
pub(crate) fn private_key(pem: &Secret) -> Result<PKey<Private>, KeyError> {
    PKey::private_key_from_pem(pem.expose().as_bytes()).map_err(|_| KeyError::InvalidPrivateKey)
}

/// Parses the first certificate of a PEM text.
pub(crate) fn certificate(pem: &str) -> Result<X509, KeyError> {
    X509::from_pem(pem.as_bytes()).map_err(|e| KeyError::InvalidCertificate { reason: e.to_string() })
}

/// Whether `key` is the private key of `certificate`'s public key.
pub(crate) fn key_matches(certificate: &X509, key: &PKey<Private>) -> Result<bool, KeyError> {
    let public = certificate.public_key().map_err(crypto("read the certificate's public key"))?;
    Ok(public.public_eq(key))
}

/// Whether `certificate` is within its validity period at `now`.
pub(crate) fn valid_at(certificate: &X509, now: SystemTime) -> Result<bool, KeyError> {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let now = Asn1Time::from_unix(secs).map_err(crypto("read the clock"))?;
    Ok(certificate.not_before() <= now && now < certificate.not_after())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509Req;

    #[test]
    fn keys_and_csrs_of_both_algorithms() {
        for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::Rsa2048] {
            let key = KeyPair::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            assert!(key.private_key().expose().starts_with("-----BEGIN PRIVATE KEY-----"));
            let csr = X509Req::from_pem(key.csr_pem("sensor-7").unwrap().as_bytes()).unwrap();
            let pkey = private_key(key.private_key()).unwrap();
            assert!(csr.verify(&csr.public_key().unwrap()).unwrap(), "self-signed");
            assert!(csr.public_key().unwrap().public_eq(&pkey));
            let cn = csr.subject_name().entries_by_nid(Nid::COMMONNAME).next().unwrap();
            assert_eq!(cn.data().to_string().unwrap(), "sensor-7");
            let bits = match alg {
                KeyAlgorithm::EcP256 => 256,
                KeyAlgorithm::Rsa2048 => 2048,
            };
            assert_eq!(pkey.bits(), bits);
            assert!(!format!("{key:?}").contains("PRIVATE KEY"));
        }
    }

    #[test]
    fn bad_names_keys_and_certificates_are_typed_errors() {
        let key = KeyPair::generate(KeyAlgorithm::EcP256).unwrap();
        assert!(matches!(key.csr_pem(""), Err(KeyError::InvalidCommonName { .. })));
        assert!(matches!(key.csr_pem(&"x".repeat(65)), Err(KeyError::InvalidCommonName { .. })));
        assert_eq!(private_key(&Secret::new("garbage")).err(), Some(KeyError::InvalidPrivateKey));
        assert!(matches!(certificate("garbage"), Err(KeyError::InvalidCertificate { .. })));
    }
}
