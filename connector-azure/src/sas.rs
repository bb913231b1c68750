//! Shared access signature tokens (`azure-iot-hub.md` §4, `azure-dps.md` §3).
//!
//! ```text
//! encodedUri   = percent-encode(resourceUri)            every byte but A–Z a–z 0–9 - _ . ~
//! stringToSign = encodedUri + "\n" + se
//! sig          = base64(HMAC-SHA256(base64-decode(key), stringToSign))
//! token        = SharedAccessSignature sr={encodedUri}&sig={percent-encode(sig)}&se={se}[&skn={policy}]
//! ```
//!
//! ```
//! use connector_azure::sas::{SasKey, SasToken};
//! let key = SasKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let token = SasToken::generate(&key, "myhub.azure-devices.net/devices/device-01", 1735689600, None)?;
//! assert!(token.expose().ends_with("sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600"));
//! assert!(!format!("{token:?}").contains("vH1TWHoM"));
//! # Ok::<(), connector_azure::SasError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use connector_core::Secret;

use crate::encoding::{
    base64_decode, base64_encode, constant_time_eq, from_unix_secs, hmac_sha256, percent_decode,
    percent_encode, unix_secs,
};
use crate::error::SasError;

/// The token's fixed prefix (with its single space).
pub const TOKEN_PREFIX: &str = "SharedAccessSignature ";

/// A decoded shared access key (device, module, policy or DPS enrollment key). Its
/// `Debug` is redacted and its bytes are overwritten on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SasKey {
    bytes: Vec<u8>,
}

impl SasKey {
    /// Decodes a standard, padded base64 key.
    pub fn from_base64(key: &str) -> Result<Self, SasError> {
        let bytes = base64_decode(key).ok_or(SasError::InvalidKey { reason: "not valid base64" })?;
        Self::from_bytes(bytes)
    }

    /// A key from raw bytes (refused when empty).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, SasError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(SasError::InvalidKey { reason: "empty" });
        }
        Ok(Self { bytes })
    }

    /// `base64(HMAC-SHA256(key, message))`, standard alphabet with padding.
    pub fn sign(&self, message: &[u8]) -> Result<Secret, SasError> {
        let mac = hmac_sha256(&self.bytes, message).map_err(|reason| SasError::Crypto { reason })?;
        Ok(Secret::new(base64_encode(&mac)))
    }

    /// The device key of an enrollment-group member (`azure-dps.md` §3.2):
    /// `HMAC-SHA256(groupKey, registrationId)`, used as that device's key for DPS and for
    /// IoT Hub.
    pub fn derive(&self, registration_id: &str) -> Result<SasKey, SasError> {
        let mac = hmac_sha256(&self.bytes, registration_id.as_bytes())
            .map_err(|reason| SasError::Crypto { reason })?;
        Self::from_bytes(mac)
    }

    /// The key in base64 (what a connection string carries).
    pub fn to_base64(&self) -> Secret {
        Secret::new(base64_encode(&self.bytes))
    }

    /// The key length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always `false`: empty keys are refused.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for SasKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SasKey(<redacted>)")
    }
}

impl Drop for SasKey {
    fn drop(&mut self) {
        self.bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.bytes);
    }
}

/// The `sr` spelling of §4.2: every byte but `A–Z a–z 0–9 - _ . ~` percent-encoded with
/// upper-case hex.
pub fn encode_resource_uri(resource_uri: &str) -> String {
    percent_encode(resource_uri)
}

/// `sr + "\n" + se`: the text that is signed, with `sr` exactly as it goes in the token.
pub fn string_to_sign(sr: &str, expiry: &str) -> String {
    format!("{sr}\n{expiry}")
}

/// A SAS token: generated from a key, or parsed from text (a connection string's
/// `SharedAccessSignature`, or a CONNECT password on the emulator side).
///
/// `Debug` shows the resource, expiry and policy; the token and signature are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    token: Secret,
    sr: String,
    resource: String,
    signature: Secret,
    se: String,
    expiry: u64,
    policy: Option<String>,
}

impl SasToken {
    /// Signs `resource_uri` (unencoded, e.g. `myhub.azure-devices.net/devices/device-01`)
    /// until `expiry` (seconds since the Unix epoch); `policy` becomes `skn`.
    pub fn generate(
        key: &SasKey,
        resource_uri: &str,
        expiry: u64,
        policy: Option<&str>,
    ) -> Result<Self, SasError> {
        if resource_uri.is_empty() {
            return Err(SasError::EmptyResource);
        }
        if policy.is_some_and(str::is_empty) {
            return Err(SasError::EmptyField("skn"));
        }
        let sr = encode_resource_uri(resource_uri);
        let se = expiry.to_string();
        let signature = Secret::new(percent_encode(key.sign(string_to_sign(&sr, &se).as_bytes())?.expose()));
        let mut token = format!("{TOKEN_PREFIX}sr={sr}&sig={}&se={se}", signature.expose());
        if let Some(p) = policy {
            token.push_str("&skn=");
            token.push_str(&percent_encode(p));
        }
        Ok(Self {
            token: Secret::new(token),
            sr,
            resource: resource_uri.to_owned(),
            signature,
            se,
            expiry,
            policy: policy.map(str::to_owned),
        })
    }

    /// Signs `resource_uri` until `now + ttl` (whole seconds, `now` rounded down).
    pub fn generate_with_ttl(
        key: &SasKey,
        resource_uri: &str,
        now: SystemTime,
        ttl: Duration,
        policy: Option<&str>,
    ) -> Result<Self, SasError> {
        let now = unix_secs(now).ok_or(SasError::Clock { reason: "the clock reads before 1970" })?;
        let expiry = now.checked_add(ttl.as_secs()).ok_or(SasError::Clock { reason: "expiry overflows" })?;
        Self::generate(key, resource_uri, expiry, policy)
    }

    /// The whole token, for the MQTT password. Call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        self.token.expose()
    }

    /// The whole token as a [`Secret`].
    pub fn as_secret(&self) -> &Secret {
        &self.token
    }

    /// The token as a [`Secret`], consuming it.
    pub fn into_secret(self) -> Secret {
        self.token
    }

    /// `sr` exactly as in the token (encoded, or not, as the signer chose).
    pub fn encoded_resource(&self) -> &str {
        &self.sr
    }

    /// `sr` percent-decoded: the resource URI the token grants.
    pub fn resource_uri(&self) -> &str {
        &self.resource
    }

    /// `se`: expiry in seconds since the Unix epoch.
    pub fn expiry_unix(&self) -> u64 {
        self.expiry
    }

    /// `se` as an instant.
    pub fn expires_at(&self) -> SystemTime {
        from_unix_secs(self.expiry)
    }

    /// Whether the token is no longer valid at `now` (the service requires `se` > now).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        unix_secs(now).is_none_or(|n| self.expiry <= n)
    }

    /// `skn`: the shared access policy, absent for device and module keys.
    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }

    /// Whether `key` made this token: the HMAC over `sr` and `se` exactly as they appear in
    /// the token (§4.3), compared in constant time.
    pub fn verify(&self, key: &SasKey) -> bool {
        let Ok(expected) = key.sign(string_to_sign(&self.sr, &self.se).as_bytes()) else {
            return false;
        };
        let given = percent_decode(self.signature.expose()).ok().and_then(|s| base64_decode(&s));
        match (given, base64_decode(expected.expose())) {
            (Some(given), Some(expected)) => constant_time_eq(&given, &expected),
            _ => false,
        }
    }

    /// Whether the token's resource covers `resource_uri` (unencoded): host compared
    /// case-insensitively, then path segment by segment, so `h/devices` covers
    /// `h/devices/d1` but `h/devices/d` does not cover `h/devices/d1`.
    pub fn covers(&self, resource_uri: &str) -> bool {
        resource_covers(&self.resource, resource_uri)
    }
}

/// Whether `granted` covers `wanted` by path segment (host case-insensitive).
pub fn resource_covers(granted: &str, wanted: &str) -> bool {
    let trim = |s: &str| s.strip_suffix('/').unwrap_or(s).to_owned();
    let (granted, wanted) = (trim(granted), trim(wanted));
    let mut g = granted.split('/');
    let mut w = wanted.split('/');
    match (g.next(), w.next()) {
        (Some(gh), Some(wh)) if !gh.is_empty() && gh.eq_ignore_ascii_case(wh) => {}
        _ => return false,
    }
    loop {
        match (g.next(), w.next()) {
            (None, _) => return true,
            (Some(gs), Some(ws)) if gs == ws => {}
            _ => return false,
        }
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("expiry", &self.expiry)
            .field("policy", &self.policy)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl FromStr for SasToken {
    type Err = SasError;

    /// Parses `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]` (fields in any order).
    fn from_str(s: &str) -> Result<Self, SasError> {
        let fields = s.strip_prefix(TOKEN_PREFIX).ok_or(SasError::MissingPrefix)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for (index, field) in fields.split('&').enumerate() {
            let (name, value) = field.split_once('=').ok_or(SasError::MalformedField { index })?;
            let (name, slot): (&'static str, _) = match name {
                "sr" => ("sr", &mut sr),
                "sig" => ("sig", &mut sig),
                "se" => ("se", &mut se),
                "skn" => ("skn", &mut skn),
                other => {
                    // Shown only when it looks like a field name, never a pasted signature.
                    let shown = other.len() <= 16 && other.bytes().all(|b| b.is_ascii_alphanumeric());
                    return Err(SasError::UnknownField(if shown {
                        other.into()
                    } else {
                        "<redacted>".into()
                    }));
                }
            };
            if slot.is_some() {
                return Err(SasError::DuplicateField(name));
            }
            if value.is_empty() {
                return Err(SasError::EmptyField(name));
            }
            *slot = Some(value);
        }
        let sr = sr.ok_or(SasError::MissingField("sr"))?;
        let sig = sig.ok_or(SasError::MissingField("sig"))?;
        let se = se.ok_or(SasError::MissingField("se"))?;
        let resource = percent_decode(sr).map_err(|_| SasError::BadEncoding("sr"))?;
        let decoded_sig = percent_decode(sig).map_err(|_| SasError::BadEncoding("sig"))?;
        if base64_decode(&decoded_sig).is_none() {
            return Err(SasError::InvalidSignature);
        }
        if !se.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SasError::InvalidExpiry);
        }
        let expiry = se.parse::<u64>().map_err(|_| SasError::InvalidExpiry)?;
        let policy = skn.map(percent_decode).transpose().map_err(|_| SasError::BadEncoding("skn"))?;
        Ok(Self {
            token: Secret::new(s),
            sr: sr.to_owned(),
            resource,
            signature: Secret::new(sig),
            se: se.to_owned(),
            expiry,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn key() -> SasKey {
        SasKey::from_base64(KEY).unwrap()
    }

    #[test]
    fn ttl_is_added_to_the_clock() {
        let now = from_unix_secs(1_735_686_000);
        let t =
            SasToken::generate_with_ttl(&key(), "h/devices/d", now, Duration::from_secs(3600), None).unwrap();
        assert_eq!(t.expiry_unix(), 1_735_689_600);
        assert_eq!(t.expires_at(), from_unix_secs(1_735_689_600));
        assert!(!t.is_expired(now));
        assert!(t.is_expired(from_unix_secs(1_735_689_600)));
        let before_1970 = std::time::UNIX_EPOCH - Duration::from_secs(5);
        assert!(matches!(
            SasToken::generate_with_ttl(&key(), "r", before_1970, Duration::ZERO, None),
            Err(SasError::Clock { .. })
        ));
    }

    #[test]
    fn generated_tokens_parse_back_and_verify() {
        let t = SasToken::generate(&key(), "h/devices/d 1", 10, Some("my policy")).unwrap();
        assert!(t.expose().ends_with("&se=10&skn=my%20policy"), "{}", t.expose());
        let p: SasToken = t.expose().parse().unwrap();
        assert_eq!(p, t);
        assert_eq!(p.resource_uri(), "h/devices/d 1");
        assert_eq!(p.encoded_resource(), "h%2Fdevices%2Fd%201");
        assert_eq!(p.policy(), Some("my policy"));
        assert!(p.verify(&key()));
        assert!(!p.verify(&SasKey::from_bytes(vec![1u8; 32]).unwrap()));
    }

    #[test]
    fn malformed_tokens_are_typed_errors() {
        let table: &[(&str, SasError)] = &[
            ("sr=a&sig=AA%3D%3D&se=1", SasError::MissingPrefix),
            ("sharedaccesssignature sr=a&sig=AA%3D%3D&se=1", SasError::MissingPrefix),
            ("SharedAccessSignature sr=a&sig", SasError::MalformedField { index: 1 }),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=1&x=2", SasError::UnknownField("x".into())),
            (
                "SharedAccessSignature sr=a&sig=AA%3D%3D&se=1&AAECAwQFBgcICQoLDA0ODw%3D=",
                SasError::UnknownField("<redacted>".into()),
            ),
            ("SharedAccessSignature sr=a&sr=b&sig=AA%3D%3D&se=1", SasError::DuplicateField("sr")),
            ("SharedAccessSignature sig=AA%3D%3D&se=1", SasError::MissingField("sr")),
            ("SharedAccessSignature sr=a&se=1", SasError::MissingField("sig")),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D", SasError::MissingField("se")),
            ("SharedAccessSignature sr=&sig=AA%3D%3D&se=1", SasError::EmptyField("sr")),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=1&skn=", SasError::EmptyField("skn")),
            ("SharedAccessSignature sr=a%2&sig=AA%3D%3D&se=1", SasError::BadEncoding("sr")),
            ("SharedAccessSignature sr=a&sig=AA%3&se=1", SasError::BadEncoding("sig")),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=1&skn=%ZZ", SasError::BadEncoding("skn")),
            ("SharedAccessSignature sr=a&sig=not*base64&se=1", SasError::InvalidSignature),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=-1", SasError::InvalidExpiry),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=+1", SasError::InvalidExpiry),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=1e9", SasError::InvalidExpiry),
            ("SharedAccessSignature sr=a&sig=AA%3D%3D&se=99999999999999999999", SasError::InvalidExpiry),
        ];
        for (s, want) in table {
            assert_eq!(s.parse::<SasToken>().as_ref().err(), Some(want), "{s}");
        }
    }

    #[test]
    fn keys_are_validated_and_never_shown() {
        assert_eq!(
            SasKey::from_base64("not base64!"),
            Err(SasError::InvalidKey { reason: "not valid base64" })
        );
        assert_eq!(SasKey::from_base64(""), Err(SasError::InvalidKey { reason: "empty" }));
        let k = key();
        assert_eq!(format!("{k:?}"), "SasKey(<redacted>)");
        assert_eq!(k.to_base64().expose(), KEY);
        let t = SasToken::generate(&k, "h/devices/d", 1, None).unwrap();
        let shown = format!("{t:?} {:?} {:?}", t.as_secret(), t.clone().into_secret());
        let sig = t.expose().split("sig=").nth(1).unwrap().split('&').next().unwrap().to_owned();
        assert!(!shown.contains(&sig), "{shown}");
        assert!(!shown.contains("SharedAccessSignature"), "{shown}");
        assert!(shown.contains("h/devices/d"), "{shown}");
    }

    #[test]
    fn resources_are_covered_by_path_segment() {
        let table = [
            ("h/devices", "h/devices/d1", true),
            ("H/devices/d1", "h/devices/d1", true),
            ("h/devices/d1", "h/devices/d1/modules/m", true),
            ("h/devices/d1/", "h/devices/d1", true),
            ("h/devices/d", "h/devices/d1", false),
            ("h/Devices", "h/devices/d1", false),
            ("h/devices/d1/modules/m", "h/devices/d1", false),
            ("other/devices", "h/devices/d1", false),
            ("", "h", false),
        ];
        for (g, w, want) in table {
            assert_eq!(resource_covers(g, w), want, "{g} covers {w}");
        }
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Stand-in for the `sas_token_parse` fuzz target: mutated tokens never panic, and
    /// whatever parses keeps its text.
    #[test]
    fn random_tokens_never_panic() {
        let seed = "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600&skn=device";
        let alphabet: Vec<char> = "SAsrigekn=&%2F3D0aZ+/ \u{0}é9".chars().collect();
        let mut next = test_support::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..20_000 {
            let mut s: Vec<char> = seed.chars().collect();
            for _ in 0..(1 + next() % 6) {
                let pos = (next() as usize) % (s.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => s.insert(pos, c),
                    1 if pos < s.len() => {
                        s.remove(pos);
                    }
                    _ if pos < s.len() => s[pos] = c,
                    _ => {}
                }
            }
            let s: String = s.into_iter().collect();
            if let Ok(t) = s.parse::<SasToken>() {
                assert_eq!(t.expose(), s);
                let _ = (t.verify(&SasKey::from_bytes(vec![0u8; 32]).unwrap()), t.covers("h/devices/d"));
            }
        }
    }
}
