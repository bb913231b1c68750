//! Byte-level helpers shared by the codecs: the percent-encoding of §4.2/§5, strict
//! percent-decoding, strict base64, HMAC-SHA256 and Unix time.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// Whether a byte is left as is: RFC 3986 unreserved, `A–Z a–z 0–9 - _ . ~`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte of the UTF-8 text except the unreserved ones, with
/// upper-case hex (`/` → `%2F`, space → `%20`, never `+`).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Why percent-decoding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A `%` not followed by two hex digits, at this byte offset.
    BadEscape { position: usize },
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// Decodes every `%XX` (hex case-insensitive); `+` stays a literal plus. A `%` without two
/// hex digits is an error, as are decoded bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Result<String, DecodeError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|&c| hex_value(c));
            let lo = bytes.get(i + 2).and_then(|&c| hex_value(c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(DecodeError::BadEscape { position: i }),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Strict standard base64 (with padding, canonical trailing bits).
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

/// Standard base64 with `=` padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// HMAC-SHA256 of `message` under `key`. OpenSSL refuses only an empty key (which the
/// key types never hold) or an exhausted allocator; its message is returned then.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    let run = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let pkey = PKey::hmac(key)?;
        let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
        signer.update(message)?;
        signer.sign_to_vec()
    };
    run().map_err(|e| e.to_string())
}

/// Constant-time equality (lengths are compared first, which leaks only the length).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// Whole seconds since the Unix epoch, `None` before 1970.
pub(crate) fn unix_secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The instant `secs` after the Unix epoch, clamped to the end of year 9999 (what every
/// platform's `SystemTime` holds).
pub(crate) fn from_unix_secs(secs: u64) -> SystemTime {
    const YEAR_9999_END: u64 = 253_402_300_799;
    let secs = secs.min(YEAR_9999_END);
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(i32::MAX as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_only_unreserved_bytes() {
        assert_eq!(
            percent_encode("myhub.azure-devices.net/devices/d"),
            "myhub.azure-devices.net%2Fdevices%2Fd"
        );
        assert_eq!(percent_encode("a b+c=d&e~f_g"), "a%20b%2Bc%3Dd%26e~f_g");
        assert_eq!(percent_encode("$.mid"), "%24.mid");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn decoding_is_strict_and_case_insensitive() {
        assert_eq!(percent_decode("a%2fb%2Fc+d").as_deref(), Ok("a/b/c+d"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Ok("é"));
        assert_eq!(percent_decode("a%2"), Err(DecodeError::BadEscape { position: 1 }));
        assert_eq!(percent_decode("%zz"), Err(DecodeError::BadEscape { position: 0 }));
        assert_eq!(percent_decode("%FF"), Err(DecodeError::NotUtf8));
        assert_eq!(percent_decode("x%"), Err(DecodeError::BadEscape { position: 1 }));
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(base64_decode("AAEC").as_deref(), Some(&[0u8, 1, 2][..]));
        assert!(base64_decode("AAE").is_none(), "missing padding");
        assert!(base64_decode("AB==").is_none(), "non-canonical trailing bits");
        assert!(base64_decode("A A=").is_none());
        assert_eq!(base64_encode(&[0, 1, 2, 3]), "AAECAw==");
    }

    #[test]
    fn hmac_matches_the_sdk_sanity_vector() {
        let key = base64_decode("NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=").unwrap();
        let sig = hmac_sha256(&key, b"sign this message").unwrap();
        assert_eq!(base64_encode(&sig), "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M=");
    }

    #[test]
    fn unix_time_round_trips() {
        assert_eq!(unix_secs(from_unix_secs(1_735_689_600)), Some(1_735_689_600));
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(1)), None);
        let _ = from_unix_secs(u64::MAX);
        assert!(
            constant_time_eq(b"ab", b"ab")
                && !constant_time_eq(b"ab", b"abc")
                && !constant_time_eq(b"ab", b"ac")
        );
    }
}
