//! Real X.509 certificates for TLS tests, generated with OpenSSL.
//!
//! All keys are EC P-256 (fast to generate), all signatures SHA-256, validity runs from
//! one day in the past to 30 days in the future (but for the expired certificate), serial
//! numbers are random.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509};
use tempfile::TempDir;

/// Common name of [`TestPki::client_cert`]; mosquitto with `use_identity_as_username`
/// sees it as the MQTT user name.
pub const CLIENT_CN: &str = "test-client";

/// Host name that [`TestPki::wrong_host_cert`] is (only) valid for.
pub const WRONG_HOST: &str = "wrong.example";

/// A complete test PKI written as PEM files into its own temporary directory.
///
/// The directory lives as long as this value.
pub struct TestPki {
    /// Directory holding every file below.
    pub dir: PathBuf,
    /// The test CA's certificate.
    pub ca_cert: PathBuf,
    /// Server certificate signed by the CA: CN `localhost`, SANs DNS `localhost` and
    /// IP `127.0.0.1`, extendedKeyUsage serverAuth.
    pub server_cert: PathBuf,
    /// Private key of [`TestPki::server_cert`] (PKCS#8 PEM, unencrypted, mode 0600).
    pub server_key: PathBuf,
    /// Client certificate signed by the CA: CN [`CLIENT_CN`] (`test-client`),
    /// extendedKeyUsage clientAuth.
    pub client_cert: PathBuf,
    /// Private key of [`TestPki::client_cert`] (PKCS#8 PEM, unencrypted, mode 0600).
    pub client_key: PathBuf,
    /// Certificate of an unrelated CA, for "server signed by the wrong CA" tests.
    pub other_ca_cert: PathBuf,
    /// Server certificate signed by the CA but valid only for [`WRONG_HOST`]
    /// (`wrong.example`), for host-name verification tests.
    pub wrong_host_cert: PathBuf,
    /// Private key of [`TestPki::wrong_host_cert`] (PKCS#8 PEM, unencrypted, mode 0600).
    pub wrong_host_key: PathBuf,
    /// Server certificate like [`TestPki::server_cert`] but expired: valid from 30 days
    /// ago to 1 day ago.
    pub expired_cert: PathBuf,
    /// Private key of [`TestPki::expired_cert`] (PKCS#8 PEM, unencrypted, mode 0600).
    pub expired_key: PathBuf,
    _tmp: TempDir,
}

impl TestPki {
    /// Generates a fresh CA, server, client, foreign CA and wrong-host certificate in a
    /// new temporary directory.
    ///
    /// # Panics
    ///
    /// Panics when OpenSSL or the file system fails.
    pub fn generate() -> TestPki {
        let tmp = tempfile::Builder::new()
            .prefix("test-pki-")
            .tempdir()
            .expect("create temporary directory for the test PKI");
        let dir = tmp.path().to_path_buf();

        let (ca, ca_key) = generate_ca("Test CA");
        let (server, server_key) =
            issue_cert(&ca, &ca_key, "localhost", &["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], true);
        let (client, client_key) = issue_cert(&ca, &ca_key, CLIENT_CN, &[], &[], false);
        let (other_ca, _other_ca_key) = generate_ca("Unrelated Test CA");
        let (wrong, wrong_key) = issue_cert(&ca, &ca_key, WRONG_HOST, &[WRONG_HOST], &[], true);
        let (expired, expired_key) = issue_cert_valid(
            &ca,
            &ca_key,
            "localhost",
            &["localhost"],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            true,
            (-30 * DAY, -DAY),
        );

        let pki = TestPki {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca_cert: dir.join("other-ca.crt"),
            wrong_host_cert: dir.join("wrong-host.crt"),
            wrong_host_key: dir.join("wrong-host.key"),
            expired_cert: dir.join("expired.crt"),
            expired_key: dir.join("expired.key"),
            dir,
            _tmp: tmp,
        };
        write_cert(&pki.ca_cert, &ca);
        write_cert(&pki.server_cert, &server);
        write_key(&pki.server_key, &server_key);
        write_cert(&pki.client_cert, &client);
        write_key(&pki.client_key, &client_key);
        write_cert(&pki.other_ca_cert, &other_ca);
        write_cert(&pki.wrong_host_cert, &wrong);
        write_key(&pki.wrong_host_key, &wrong_key);
        write_cert(&pki.expired_cert, &expired);
        write_key(&pki.expired_key, &expired_key);
        pki
    }
}

/// Generates a self-signed CA certificate with common name `cn` and its key.
///
/// Extensions: basicConstraints critical CA:TRUE, keyUsage critical
/// keyCertSign+cRLSign, subjectKeyIdentifier, authorityKeyIdentifier.
///
/// # Panics
///
/// Panics when OpenSSL fails.
pub fn generate_ca(cn: &str) -> (X509, PKey<Private>) {
    let key = new_key();
    let name = name_with_cn(cn);
    let mut builder = base_builder(&name, &key, DEFAULT_VALIDITY);
    builder.set_issuer_name(&name).expect("set CA issuer name");
    builder
        .append_extension(BasicConstraints::new().critical().ca().build().expect("build basicConstraints"))
        .expect("add basicConstraints");
    builder
        .append_extension(
            KeyUsage::new().critical().key_cert_sign().crl_sign().build().expect("build keyUsage"),
        )
        .expect("add keyUsage");
    let ski = SubjectKeyIdentifier::new()
        .build(&builder.x509v3_context(None, None))
        .expect("build subjectKeyIdentifier");
    builder.append_extension(ski).expect("add subjectKeyIdentifier");
    // For a self-signed certificate the issuer is the certificate itself, whose
    // subjectKeyIdentifier was just added.
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .build(&builder.x509v3_context(None, None))
        .expect("build authorityKeyIdentifier");
    builder.append_extension(aki).expect("add authorityKeyIdentifier");
    builder.sign(&key, MessageDigest::sha256()).expect("self-sign CA certificate");
    (builder.build(), key)
}

/// Issues a leaf certificate signed by `ca`/`ca_key` for common name `cn` with the given
/// DNS and IP subject alternative names (no SAN extension when both are empty).
///
/// `server` selects extendedKeyUsage serverAuth, otherwise clientAuth. Other extensions:
/// basicConstraints critical CA:FALSE, keyUsage critical digitalSignature+keyAgreement,
/// subjectKeyIdentifier, authorityKeyIdentifier.
///
/// # Panics
///
/// Panics when OpenSSL fails.
pub fn issue_cert(
    ca: &X509,
    ca_key: &PKey<Private>,
    cn: &str,
    sans_dns: &[&str],
    sans_ip: &[IpAddr],
    server: bool,
) -> (X509, PKey<Private>) {
    issue_cert_valid(ca, ca_key, cn, sans_dns, sans_ip, server, DEFAULT_VALIDITY)
}

const DAY: i64 = 24 * 3600;
/// One day in the past to 30 days in the future (seconds from now).
const DEFAULT_VALIDITY: (i64, i64) = (-DAY, 30 * DAY);

/// [`issue_cert`] valid from `validity.0` to `validity.1` seconds from now.
fn issue_cert_valid(
    ca: &X509,
    ca_key: &PKey<Private>,
    cn: &str,
    sans_dns: &[&str],
    sans_ip: &[IpAddr],
    server: bool,
    validity: (i64, i64),
) -> (X509, PKey<Private>) {
    let key = new_key();
    let name = name_with_cn(cn);
    let mut builder = base_builder(&name, &key, validity);
    builder.set_issuer_name(ca.subject_name()).expect("set issuer name");
    builder
        .append_extension(BasicConstraints::new().critical().build().expect("build basicConstraints"))
        .expect("add basicConstraints");
    builder
        .append_extension(
            KeyUsage::new().critical().digital_signature().key_agreement().build().expect("build keyUsage"),
        )
        .expect("add keyUsage");
    let mut eku = ExtendedKeyUsage::new();
    if server {
        eku.server_auth();
    } else {
        eku.client_auth();
    }
    builder.append_extension(eku.build().expect("build extendedKeyUsage")).expect("add extendedKeyUsage");
    let ski = SubjectKeyIdentifier::new()
        .build(&builder.x509v3_context(Some(ca), None))
        .expect("build subjectKeyIdentifier");
    builder.append_extension(ski).expect("add subjectKeyIdentifier");
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .build(&builder.x509v3_context(Some(ca), None))
        .expect("build authorityKeyIdentifier");
    builder.append_extension(aki).expect("add authorityKeyIdentifier");
    if !sans_dns.is_empty() || !sans_ip.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for dns in sans_dns {
            san.dns(dns);
        }
        for ip in sans_ip {
            san.ip(&ip.to_string());
        }
        let san = san.build(&builder.x509v3_context(Some(ca), None)).expect("build subjectAltName");
        builder.append_extension(san).expect("add subjectAltName");
    }
    builder.sign(ca_key, MessageDigest::sha256()).expect("sign certificate with CA key");
    (builder.build(), key)
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256 curve");
    let ec = EcKey::generate(&group).expect("generate P-256 key");
    PKey::from_ec_key(ec).expect("wrap EC key")
}

fn name_with_cn(cn: &str) -> X509Name {
    let mut name = X509Name::builder().expect("X509 name builder");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("set common name");
    name.build()
}

/// Version, random serial, validity, subject and public key; the caller adds the
/// issuer and extensions and signs.
fn base_builder(subject: &X509Name, key: &PKey<Private>, validity: (i64, i64)) -> X509Builder {
    let mut builder = X509Builder::new().expect("X509 builder");
    builder.set_version(2).expect("set X509 v3");
    let mut serial = BigNum::new().expect("bignum");
    serial.rand(127, MsbOption::MAYBE_ZERO, false).expect("random serial");
    let serial = Asn1Integer::from_bn(&serial).expect("serial as ASN.1 integer");
    builder.set_serial_number(&serial).expect("set serial");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let now = i64::try_from(now).expect("time fits i64");
    let not_before = Asn1Time::from_unix(now + validity.0).expect("notBefore");
    let not_after = Asn1Time::from_unix(now + validity.1).expect("notAfter");
    builder.set_not_before(&not_before).expect("set notBefore");
    builder.set_not_after(&not_after).expect("set notAfter");
    builder.set_subject_name(subject).expect("set subject");
    builder.set_pubkey(key).expect("set public key");
    builder
}

fn write_cert(path: &Path, cert: &X509) {
    let pem = cert.to_pem().expect("certificate to PEM");
    fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn write_key(path: &Path, key: &PKey<Private>) {
    let pem = key.private_key_to_pem_pkcs8().expect("private key to PKCS#8 PEM");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(&pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::{X509Store, X509StoreBuilder};
    use openssl::x509::verify::X509VerifyParam;
    use openssl::x509::X509StoreContext;
    use std::os::unix::fs::PermissionsExt;

    fn load(path: &Path) -> X509 {
        X509::from_pem(&fs::read(path).expect("read cert")).expect("parse cert")
    }

    fn store(ca: &X509, host: Option<&str>) -> X509Store {
        let mut builder = X509StoreBuilder::new().expect("store builder");
        builder.add_cert(ca.clone()).expect("add CA");
        if let Some(host) = host {
            let mut param = X509VerifyParam::new().expect("verify param");
            param.set_host(host).expect("set host");
            builder.set_param(&param).expect("set param");
        }
        builder.build()
    }

    fn verifies(store: &X509Store, cert: &X509) -> bool {
        let chain = Stack::new().expect("empty chain");
        let mut ctx = X509StoreContext::new().expect("store context");
        ctx.init(store, cert, &chain, |c| c.verify_cert()).expect("run verification")
    }

    #[test]
    fn chain_verifies_against_ca_and_not_against_other_ca() {
        let pki = TestPki::generate();
        let ca = load(&pki.ca_cert);
        let other = load(&pki.other_ca_cert);
        let good = store(&ca, None);
        let bad = store(&other, None);
        for cert in [&pki.server_cert, &pki.client_cert, &pki.wrong_host_cert] {
            let cert = load(cert);
            assert!(verifies(&good, &cert), "chain must verify against the CA");
            assert!(!verifies(&bad, &cert), "chain must not verify against other CA");
        }
    }

    #[test]
    fn host_names_are_checked() {
        let pki = TestPki::generate();
        let ca = load(&pki.ca_cert);
        let server = load(&pki.server_cert);
        let wrong = load(&pki.wrong_host_cert);
        assert!(verifies(&store(&ca, Some("localhost")), &server));
        assert!(!verifies(&store(&ca, Some("localhost")), &wrong));
        assert!(verifies(&store(&ca, Some(WRONG_HOST)), &wrong));
        let cn = pki_cn(&load(&pki.client_cert));
        assert_eq!(cn, CLIENT_CN);
    }

    fn pki_cn(cert: &X509) -> String {
        cert.subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .expect("CN present")
            .data()
            .to_string()
            .expect("CN utf8")
    }

    #[test]
    fn keys_are_private_pkcs8_and_match_certs() {
        let pki = TestPki::generate();
        for (cert, key) in [
            (&pki.server_cert, &pki.server_key),
            (&pki.client_cert, &pki.client_key),
            (&pki.wrong_host_cert, &pki.wrong_host_key),
        ] {
            let mode = fs::metadata(key).expect("key metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{} mode", key.display());
            let pem = fs::read_to_string(key).expect("read key");
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
            let key = PKey::private_key_from_pem(pem.as_bytes()).expect("parse key");
            let cert = load(cert);
            assert!(cert.public_key().expect("pubkey").public_eq(&key));
        }
    }

    #[test]
    fn serials_are_random() {
        let (ca, key) = generate_ca("x");
        let (a, _) = issue_cert(&ca, &key, "a", &[], &[], false);
        let (b, _) = issue_cert(&ca, &key, "a", &[], &[], false);
        assert_ne!(a.serial_number().to_bn().expect("bn"), b.serial_number().to_bn().expect("bn"));
    }
}
