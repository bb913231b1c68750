//! SigV4 verification of a presigned WebSocket upgrade (`GET /mqtt?X-Amz-…`), per
//! `shared/protocols/aws-iot-core.md` §3.2:
//!
//! * the canonical query is every parameter except `X-Amz-Signature` and
//!   `X-Amz-Security-Token` (IoT never signs the session token), percent-encoded with the
//!   unreserved set kept, sorted by key;
//! * the canonical headers are the ones `X-Amz-SignedHeaders` names, with the values
//!   actually received (clients differ: `host`, or `connection;host` for the CRT);
//! * the credential scope's service may be `iotdevicegateway` or `iotdata`; its region
//!   must be the emulator's;
//! * `X-Amz-Date` may be at most [`CLOCK_SKEW_SECS`] in the future; with `X-Amz-Expires`
//!   the URL is refused after date + expires (+ skew); without it, after
//!   [`DEFAULT_VALIDITY_SECS`] (clients that omit it sign right before connecting).

use std::collections::BTreeMap;

use openssl::hash::{hash, MessageDigest};

use crate::util::{ct_eq, hmac_sha256, pct_decode, pct_encode};

/// Clock skew tolerated either way.
pub(crate) const CLOCK_SKEW_SECS: u64 = 300;
/// Validity of a URL without `X-Amz-Expires` (the emulator's choice).
pub(crate) const DEFAULT_VALIDITY_SECS: u64 = 900;
/// SHA-256 of the empty payload.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why a presigned URL is refused (the WebSocket upgrade answers 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SigV4Error {
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    #[error("unsupported algorithm {0:?}")]
    Algorithm(String),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("credential scope region {0:?} is not the endpoint's")]
    Region(String),
    #[error("credential scope service {0:?} is not iotdevicegateway or iotdata")]
    Service(String),
    #[error("unknown access key")]
    UnknownKey,
    #[error("signed header {0:?} was not sent")]
    MissingHeader(String),
    #[error("the URL expired")]
    Expired,
    #[error("X-Amz-Date is in the future")]
    NotYetValid,
    #[error("signature does not match")]
    BadSignature,
}

/// A verified request: the access key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    pub access_key_id: String,
}

/// Verifies a presigned request. `query` is the raw query string, `headers` the received
/// headers (any case), `secret_of` finds an access key's secret, `now` is Unix seconds.
pub(crate) fn verify(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    region: &str,
    now: u64,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<Verified, SigV4Error> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = pct_decode(k).ok_or(SigV4Error::Malformed("query"))?;
        let v = pct_decode(v).ok_or(SigV4Error::Malformed("query"))?;
        params.insert(k, v);
    }
    let get = |k: &'static str| params.get(k).cloned().ok_or(SigV4Error::Missing(k));
    let algorithm = get("X-Amz-Algorithm")?;
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(SigV4Error::Algorithm(algorithm));
    }
    let credential = get("X-Amz-Credential")?;
    let amz_date = get("X-Amz-Date")?;
    let signed_headers = get("X-Amz-SignedHeaders")?;
    let signature = get("X-Amz-Signature")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key_id, day, cred_region, service, "aws4_request"] = parts.as_slice() else {
        return Err(SigV4Error::Malformed("X-Amz-Credential"));
    };
    if *cred_region != region {
        return Err(SigV4Error::Region(cred_region.to_string()));
    }
    if !matches!(*service, "iotdevicegateway" | "iotdata") {
        return Err(SigV4Error::Service(service.to_string()));
    }
    let signed_at = parse_amz_date(&amz_date).ok_or(SigV4Error::Malformed("X-Amz-Date"))?;
    if !amz_date.starts_with(day) || day.len() != 8 {
        return Err(SigV4Error::Malformed("X-Amz-Credential"));
    }
    if signed_at > now + CLOCK_SKEW_SECS {
        return Err(SigV4Error::NotYetValid);
    }
    let validity = match params.get("X-Amz-Expires") {
        Some(e) => e.parse::<u64>().map_err(|_| SigV4Error::Malformed("X-Amz-Expires"))?,
        None => DEFAULT_VALIDITY_SECS,
    };
    if now > signed_at + validity + CLOCK_SKEW_SECS {
        return Err(SigV4Error::Expired);
    }
    let secret = secret_of(key_id).ok_or(SigV4Error::UnknownKey)?;
    let canonical_query = params
        .iter()
        .filter(|(k, _)| k.as_str() != "X-Amz-Signature" && k.as_str() != "X-Amz-Security-Token")
        .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .ok_or_else(|| SigV4Error::MissingHeader(name.to_string()))?;
        canonical_headers.push_str(&format!("{}:{value}\n", name.to_ascii_lowercase()));
    }
    let canonical_request =
        format!("{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{EMPTY_SHA256}");
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let expected = signing_key(&secret, day, region, service)
        .and_then(|k| hmac_sha256(&k, string_to_sign.as_bytes()))
        .map(|s| hex(&s))
        .ok_or(SigV4Error::BadSignature)?;
    if ct_eq(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes()) {
        Ok(Verified { access_key_id: key_id.to_string() })
    } else {
        Err(SigV4Error::BadSignature)
    }
}

/// `kSigning` of the SigV4 key derivation.
pub(crate) fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> Option<Vec<u8>> {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes())?;
    let k = hmac_sha256(&k, region.as_bytes())?;
    let k = hmac_sha256(&k, service.as_bytes())?;
    hmac_sha256(&k, b"aws4_request")
}

fn sha256_hex(data: &[u8]) -> String {
    hash(MessageDigest::sha256(), data).map(|d| hex(&d)).unwrap_or_default()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` → Unix seconds.
pub(crate) fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as i64, d as i64);
    u64::try_from(days).ok().map(|days| days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com";
    const CRED: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20250101%2Fus-east-1%2Fiotdevicegateway%2Faws4_request&X-Amz-Date=20250101T000000Z";
    const TOKEN: &str = "X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Fsession%2Btoken%3D%3D";

    fn secret(k: &str) -> Option<String> {
        (k == "AKIAIOSFODNN7EXAMPLE").then(|| "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string())
    }

    fn at() -> u64 {
        parse_amz_date("20250101T000000Z").unwrap()
    }

    fn run(query: &str, headers: &[(&str, &str)], now: u64) -> Result<Verified, SigV4Error> {
        let h: Vec<(String, String)> = headers.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        verify("GET", "/mqtt", query, &h, "us-east-1", now, secret)
    }

    #[test]
    fn signing_key_and_date_match_the_vectors() {
        let k = signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20250101",
            "us-east-1",
            "iotdevicegateway",
        );
        assert_eq!(hex(&k.unwrap()), "de1b80b19de3a5e26c7932f2789356a721eb57cf0d53e41fe8b271383cae8acd");
        assert_eq!(at(), 1_735_689_600);
    }

    #[test]
    fn w1_w2_w3_verify() {
        let w1 = format!("{CRED}&X-Amz-SignedHeaders=host&X-Amz-Signature=bffc5d5aaaad0873a368752b5bf9fe36a7850fc6c79990e0c8b65ec5e7b569d5&{TOKEN}");
        assert!(run(&w1, &[("Host", HOST)], at() + 10).is_ok());
        let w2 = format!("{CRED}&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=899c689bb51f71e6a901a1d58e925552bb2a961d0ac366d6d620f16d39039aa8");
        assert!(run(&w2, &[("host", HOST)], at() + 80_000).is_ok());
        assert_eq!(
            run(&w2, &[("host", HOST)], at() + 86_400 + CLOCK_SKEW_SECS + 1),
            Err(SigV4Error::Expired)
        );
        let w3 = format!("{CRED}&X-Amz-SignedHeaders=connection%3Bhost&{TOKEN}&X-Amz-Signature=273b1b2fa3497c608e91aab2a2377a447d0e6acceaccbdb659b2f534823225e7");
        assert!(run(&w3, &[("Host", HOST), ("Connection", "Upgrade")], at()).is_ok());
        assert_eq!(run(&w3, &[("Host", HOST)], at()), Err(SigV4Error::MissingHeader("connection".into())));
    }

    #[test]
    fn refusals() {
        // Signature that covers the token (what IoT rejects).
        let signed_token = format!("{CRED}&X-Amz-SignedHeaders=host&X-Amz-Signature=12d7645a668d72108378817e5824b7952d2f5f89050d9d11eb3bcf086d43c609&{TOKEN}");
        assert_eq!(run(&signed_token, &[("host", HOST)], at()), Err(SigV4Error::BadSignature));
        let w1 = format!("{CRED}&X-Amz-SignedHeaders=host&X-Amz-Signature=bffc5d5aaaad0873a368752b5bf9fe36a7850fc6c79990e0c8b65ec5e7b569d5");
        assert_eq!(run(&w1, &[("host", "other")], at()), Err(SigV4Error::BadSignature));
        assert_eq!(
            run(&w1, &[("host", HOST)], at() + DEFAULT_VALIDITY_SECS + CLOCK_SKEW_SECS + 1),
            Err(SigV4Error::Expired)
        );
        assert_eq!(run(&w1, &[("host", HOST)], at() - CLOCK_SKEW_SECS - 1), Err(SigV4Error::NotYetValid));
        let h: Vec<(String, String)> = vec![("host".into(), HOST.into())];
        assert_eq!(
            verify("GET", "/mqtt", &w1, &h, "eu-west-1", at(), secret),
            Err(SigV4Error::Region("us-east-1".into()))
        );
        assert_eq!(verify("GET", "/mqtt", &w1, &h, "us-east-1", at(), |_| None), Err(SigV4Error::UnknownKey));
        assert_eq!(
            run("X-Amz-Algorithm=AWS4-HMAC-SHA256", &[], at()),
            Err(SigV4Error::Missing("X-Amz-Credential"))
        );
    }
}
