//! The SigV4 presigned URL of an MQTT-over-WebSocket connection (`aws-iot-core.md` §3):
//! `GET /mqtt?X-Amz-…` signed for the `iotdevicegateway` service. Pure: credentials,
//! region, host, signing time and expiry in, URL out; it matches the protocol's vectors
//! W1–W3 byte for byte (`tests/sigv4_vectors.rs`).
//!
//! The session token of temporary credentials is **not** signed: it is appended after the
//! signature as `X-Amz-Security-Token` (AWS IoT rejects URLs whose signature covers it).
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use connector_aws::credentials::AwsCredentials;
//! use connector_aws::sigv4::{presign, Presign, SignedHeaders};
//! let creds = AwsCredentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")?;
//! let p = presign(&Presign {
//!     credentials: &creds,
//!     region: "us-east-1",
//!     host: "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
//!     time: UNIX_EPOCH + Duration::from_secs(1_735_689_600), // 2025-01-01T00:00:00Z
//!     expires: None,
//!     signed_headers: SignedHeaders::Host,
//! })?;
//! assert!(p.url().expose().ends_with("X-Amz-Signature=bffc5d5aaaad0873a368752b5bf9fe36a7850fc6c79990e0c8b65ec5e7b569d5"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_core::Secret;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::credentials::AwsCredentials;
use crate::error::SigV4Error;

/// The service of the credential scope.
pub const SERVICE: &str = "iotdevicegateway";
/// The WebSocket path.
pub const PATH: &str = "/mqtt";
/// The algorithm.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of the empty payload.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Longest `X-Amz-Expires` SigV4 allows (7 days).
pub const MAX_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything but the unreserved characters `A-Z a-z 0-9 - _ . ~` is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes with SigV4's rules (unreserved kept, everything else `%XX`).
pub fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// Which request headers the signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignedHeaders {
    /// `host` only (JS v1, Python v1 and most hand-rolled signers).
    #[default]
    Host,
    /// `connection;host` with `Connection: Upgrade` (what the AWS CRT signs).
    ConnectionHost,
}

impl SignedHeaders {
    /// The `X-Amz-SignedHeaders` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedHeaders::Host => "host",
            SignedHeaders::ConnectionHost => "connection;host",
        }
    }
}

/// The inputs of a presigned URL.
#[derive(Debug, Clone)]
pub struct Presign<'a> {
    /// The credentials (the session token, if any, is appended unsigned).
    pub credentials: &'a AwsCredentials,
    /// The region of the credential scope (`us-east-1`).
    pub region: &'a str,
    /// The `Host` header value exactly as the client sends it (paho sends `host:port`,
    /// always with the port).
    pub host: &'a str,
    /// The signing time (`X-Amz-Date`).
    pub time: SystemTime,
    /// `X-Amz-Expires`, whole seconds from 1 s to 7 days; `None` omits it.
    pub expires: Option<Duration>,
    /// Which headers are signed.
    pub signed_headers: SignedHeaders,
}

/// A presigned request. Everything holding the signature or the session token is a
/// [`Secret`].
#[derive(Debug, Clone)]
pub struct Presigned {
    host: String,
    path_and_query: Secret,
    canonical_request: String,
    string_to_sign: String,
    signature: Secret,
    signed_at: SystemTime,
}

impl Presigned {
    /// `/mqtt?X-Amz-Algorithm=…&X-Amz-Signature=…[&X-Amz-Security-Token=…]`.
    pub fn path_and_query(&self) -> &Secret {
        &self.path_and_query
    }
    /// `wss://{host}/mqtt?…` with the host as signed.
    pub fn url(&self) -> Secret {
        Secret::new(format!("wss://{}{}", self.host, self.path_and_query.expose()))
    }
    /// The canonical request (no secret in it: the token is never part of it).
    pub fn canonical_request(&self) -> &str {
        &self.canonical_request
    }
    /// The string to sign.
    pub fn string_to_sign(&self) -> &str {
        &self.string_to_sign
    }
    /// The signature, lower-case hex.
    pub fn signature(&self) -> &Secret {
        &self.signature
    }
    /// The signing time.
    pub fn signed_at(&self) -> SystemTime {
        self.signed_at
    }
}

/// Computes the presigned URL.
pub fn presign(p: &Presign<'_>) -> Result<Presigned, SigV4Error> {
    check_region(p.region)?;
    if p.host.is_empty() || p.host.bytes().any(|b| !b.is_ascii_graphic() || b == b'/') {
        return Err(SigV4Error::Invalid {
            field: "host",
            reason: "a host name (and port), no spaces or `/`",
        });
    }
    let date = amz_date(p.time)?;
    let day = &date[..8];
    let scope = format!("{day}/{}/{SERVICE}/aws4_request", p.region);
    let credential = format!("{}/{scope}", p.credentials.access_key_id());
    let mut params: Vec<(&str, String)> = vec![
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", date.clone()),
        ("X-Amz-SignedHeaders", p.signed_headers.as_str().to_owned()),
    ];
    if let Some(e) = p.expires {
        if e.subsec_nanos() != 0 || e.as_secs() == 0 || e > MAX_EXPIRES {
            return Err(SigV4Error::Invalid { field: "expires", reason: "whole seconds from 1 s to 7 days" });
        }
        params.push(("X-Amz-Expires", e.as_secs().to_string()));
    }
    params.sort_by(|a, b| a.0.cmp(b.0));
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let headers = match p.signed_headers {
        SignedHeaders::Host => format!("host:{}\n", p.host.trim()),
        SignedHeaders::ConnectionHost => format!("connection:Upgrade\nhost:{}\n", p.host.trim()),
    };
    let canonical_request =
        format!("GET\n{PATH}\n{query}\n{headers}\n{}\n{EMPTY_PAYLOAD_SHA256}", p.signed_headers.as_str());
    let string_to_sign =
        format!("{ALGORITHM}\n{date}\n{scope}\n{}", hex(&openssl::sha::sha256(canonical_request.as_bytes())));
    let key = signing_key(p.credentials.secret_access_key(), day, p.region, SERVICE)?;
    let signature = hex(&hmac(&key, string_to_sign.as_bytes())?);
    let mut pq = format!("{PATH}?{query}&X-Amz-Signature={signature}");
    if let Some(token) = p.credentials.session_token() {
        pq.push_str("&X-Amz-Security-Token=");
        pq.push_str(&uri_encode(token.expose()));
    }
    Ok(Presigned {
        host: p.host.to_owned(),
        path_and_query: Secret::new(pq),
        canonical_request,
        string_to_sign,
        signature: Secret::new(signature),
        signed_at: p.time,
    })
}

/// The derived signing key `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, day), region), service), "aws4_request")`.
pub fn signing_key(secret: &Secret, day: &str, region: &str, service: &str) -> Result<Vec<u8>, SigV4Error> {
    let k = Secret::new(format!("AWS4{}", secret.expose()));
    let k = hmac(k.expose().as_bytes(), day.as_bytes())?;
    let k = hmac(&k, region.as_bytes())?;
    let k = hmac(&k, service.as_bytes())?;
    hmac(&k, b"aws4_request")
}

fn check_region(region: &str) -> Result<(), SigV4Error> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SigV4Error::Invalid {
            field: "region",
            reason: "lower-case letters, digits and `-` (e.g. us-east-1)",
        })
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, SigV4Error> {
    let crypto = |e: openssl::error::ErrorStack| SigV4Error::Crypto { reason: e.to_string() };
    let pkey = PKey::hmac(key).map_err(crypto)?;
    let mut signer = Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).map_err(crypto)?;
    signer.update(data).map_err(crypto)?;
    signer.sign_to_vec().map_err(crypto)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` of `t` (UTC), as `X-Amz-Date` wants it.
pub fn amz_date(t: SystemTime) -> Result<String, SigV4Error> {
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| SigV4Error::Time)?.as_secs();
    let days = i64::try_from(secs / 86_400).map_err(|_| SigV4Error::Time)?;
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return Err(SigV4Error::Time);
    }
    let rem = secs % 86_400;
    Ok(format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60))
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01; the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> AwsCredentials {
        AwsCredentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dates_and_signing_key() {
        assert_eq!(amz_date(at(1_735_689_600)).unwrap(), "20250101T000000Z");
        assert_eq!(amz_date(at(951_782_400 + 3661)).unwrap(), "20000229T010101Z");
        assert_eq!(amz_date(at(0)).unwrap(), "19700101T000000Z");
        assert!(amz_date(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        for days in [-1000, 0, 59, 60, 11_016, 20_089, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let k = signing_key(creds().secret_access_key(), "20250101", "us-east-1", SERVICE).unwrap();
        assert_eq!(hex(&k), "de1b80b19de3a5e26c7932f2789356a721eb57cf0d53e41fe8b271383cae8acd");
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let c = creds();
        let base = Presign {
            credentials: &c,
            region: "us-east-1",
            host: "h",
            time: at(1_735_689_600),
            expires: None,
            signed_headers: SignedHeaders::Host,
        };
        for region in ["", "US-EAST-1", "us east"] {
            assert!(matches!(
                presign(&Presign { region, ..base.clone() }),
                Err(SigV4Error::Invalid { field: "region", .. })
            ));
        }
        for host in ["", "a b", "h/x"] {
            assert!(matches!(
                presign(&Presign { host, ..base.clone() }),
                Err(SigV4Error::Invalid { field: "host", .. })
            ));
        }
        for e in [Duration::ZERO, Duration::from_millis(1500), MAX_EXPIRES + Duration::from_secs(1)] {
            assert!(matches!(
                presign(&Presign { expires: Some(e), ..base.clone() }),
                Err(SigV4Error::Invalid { field: "expires", .. })
            ));
        }
        assert_eq!(
            presign(&Presign { time: UNIX_EPOCH - Duration::from_secs(5), ..base }).unwrap_err(),
            SigV4Error::Time
        );
    }

    #[test]
    fn the_session_token_is_appended_unsigned_and_never_in_debug() {
        let with = creds().with_session_token("FwoGZXIvYXdzEXAMPLE/session+token==");
        let c = creds();
        let p = |creds| {
            presign(&Presign {
                credentials: creds,
                region: "us-east-1",
                host: "h:443",
                time: at(1_735_689_600),
                expires: Some(Duration::from_secs(60)),
                signed_headers: SignedHeaders::Host,
            })
            .unwrap()
        };
        let (a, b) = (p(&c), p(&with));
        assert_eq!(a.signature(), b.signature());
        assert!(b
            .path_and_query()
            .expose()
            .ends_with("&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Fsession%2Btoken%3D%3D"));
        assert!(!a.canonical_request().contains("Security-Token"));
        let shown = format!("{b:?}");
        assert!(!shown.contains(b.signature().expose()) && !shown.contains("FwoGZ"), "{shown}");
    }
}
