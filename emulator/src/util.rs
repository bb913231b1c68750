//! Small shared helpers: time formatting, percent-encoding, random keys and ids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Everything except `A-Z a-z 0-9 - _ . ~` is percent-encoded (RFC 3986 unreserved set).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes every byte outside the RFC 3986 unreserved set (upper-case hex).
pub(crate) fn pct_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Decodes `%XX` sequences (hex case-insensitive); `+` stays a literal plus. Invalid
/// sequences are kept as they are; the result must be UTF-8.
pub(crate) fn pct_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.fffffffZ`, the format of IoT Hub's `$lastUpdated` and DPS times.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos() / 100
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `n` random bytes from OpenSSL's CSPRNG.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // A failing CSPRNG leaves zeros; keys made from it would still be unique per
    // process only by chance, so fall back to time-derived bytes (never panic).
    if openssl::rand::rand_bytes(&mut buf).is_err() {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    buf
}

/// A new random symmetric key: 32 bytes, base64 (what IoT Hub generates for devices).
pub(crate) fn new_key() -> String {
    b64(&random_bytes(32))
}

/// Random lower-case hex string of `n` bytes.
pub(crate) fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Strict standard base64 decoding.
pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// HMAC-SHA256.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
    let pkey = openssl::pkey::PKey::hmac(key).ok()?;
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).ok()?;
    signer.update(msg).ok()?;
    signer.sign_to_vec().ok()
}

/// Constant-time comparison of equal-length byte strings (false when lengths differ).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// Group enrollment key derivation: `base64(HMAC-SHA256(base64decode(groupKey), regId))`.
pub(crate) fn derive_device_key(group_key: &str, registration_id: &str) -> Option<String> {
    let key = b64_decode(group_key)?;
    hmac_sha256(&key, registration_id.as_bytes()).map(|sig| b64(&sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_with_seven_fraction_digits() {
        let t = UNIX_EPOCH + Duration::new(1_630_918_364, 930_042_900);
        assert_eq!(iso8601(t), "2021-09-06T08:52:44.9300429Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.0000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&iso8601(leap)[..10], "2000-02-29");
    }

    #[test]
    fn percent_encoding_round_trips_and_keeps_plus() {
        assert_eq!(pct_encode("a/b c$~"), "a%2Fb%20c%24~");
        assert_eq!(pct_decode("a%2fb%2Fc+d").as_deref(), Some("a/b/c+d"));
    }

    #[test]
    fn derived_key_matches_the_dps_docs_vector() {
        let k = derive_device_key(
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        );
        assert_eq!(k.as_deref(), Some("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="));
    }

    #[test]
    fn hmac_primitive_matches_the_python_sdk_vector() {
        let key = b64_decode("NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=").unwrap();
        let sig = hmac_sha256(&key, b"sign this message").unwrap();
        assert_eq!(b64(&sig), "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M=");
    }
}
