//! SAS token parsing and verification, implemented from the protocol notes (§4), not
//! shared with any client crate.
//!
//! The HMAC is recomputed over the `sr` value *exactly as received* (clients disagree on
//! how they encode it and each signs what it sends), then `sr` is decoded for the
//! authorization check: host case-insensitive, path compared segment by segment.

use crate::util::{b64_decode, ct_eq, hmac_sha256, pct_decode};

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SasError {
    #[error("not a SharedAccessSignature token")]
    Malformed,
    #[error("token field {0} is missing")]
    Missing(&'static str),
    #[error("token field {0} is repeated")]
    Duplicate(String),
    #[error("token field {0} is not known")]
    UnknownField(String),
    #[error("expiry is not an integer")]
    BadExpiry,
    #[error("signature is not base64")]
    BadSignature,
    #[error("signature does not match")]
    SignatureMismatch,
    #[error("token expired")]
    Expired,
}

/// A parsed token. `sr` and `se` keep their on-the-wire spelling.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SasToken {
    sr_raw: String,
    se_raw: String,
    sig: Vec<u8>,
    /// Policy name (`skn`), if any.
    pub skn: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub expiry: u64,
}

// Never print the signature.
impl std::fmt::Debug for SasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasToken")
            .field("sr", &self.sr_raw)
            .field("se", &self.se_raw)
            .field("skn", &self.skn)
            .finish_non_exhaustive()
    }
}

impl SasToken {
    /// Parses `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]` (any field order).
    pub fn parse(token: &str) -> Result<SasToken, SasError> {
        let rest = token.strip_prefix("SharedAccessSignature ").ok_or(SasError::Malformed)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for pair in rest.split('&') {
            let (k, v) = pair.split_once('=').ok_or(SasError::Malformed)?;
            let slot = match k {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                other => return Err(SasError::UnknownField(other.to_string())),
            };
            if slot.replace(v).is_some() {
                return Err(SasError::Duplicate(k.to_string()));
            }
        }
        let sr = sr.ok_or(SasError::Missing("sr"))?;
        let sig = sig.ok_or(SasError::Missing("sig"))?;
        let se = se.ok_or(SasError::Missing("se"))?;
        if se.is_empty() || !se.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SasError::BadExpiry);
        }
        let expiry = se.parse::<u64>().map_err(|_| SasError::BadExpiry)?;
        let sig = pct_decode(sig).and_then(|s| b64_decode(&s)).ok_or(SasError::BadSignature)?;
        let skn = match skn {
            Some(s) => Some(pct_decode(s).ok_or(SasError::Malformed)?),
            None => None,
        };
        Ok(SasToken { sr_raw: sr.to_string(), se_raw: se.to_string(), sig, skn, expiry })
    }

    /// True when `HMAC-SHA256(key, sr_as_received + "\n" + se_as_received)` equals the
    /// token's signature. `key` is the base64 key as stored.
    pub fn signed_with(&self, key_b64: &str) -> bool {
        let Some(key) = b64_decode(key_b64) else { return false };
        let msg = format!("{}\n{}", self.sr_raw, self.se_raw);
        hmac_sha256(&key, msg.as_bytes()).is_some_and(|mac| ct_eq(&mac, &self.sig))
    }

    /// Checks the signature against any of `keys`, then expiry against `now`.
    pub fn verify(&self, keys: &[&str], now: u64) -> Result<(), SasError> {
        if !keys.iter().any(|k| self.signed_with(k)) {
            return Err(SasError::SignatureMismatch);
        }
        if self.expiry <= now {
            return Err(SasError::Expired);
        }
        Ok(())
    }

    /// The decoded resource URI, split into host and path segments.
    pub fn resource(&self) -> Option<(String, Vec<String>)> {
        let decoded = pct_decode(&self.sr_raw)?;
        let mut parts = decoded.split('/');
        let host = parts.next()?.to_string();
        if host.is_empty() {
            return None;
        }
        let segs: Vec<String> = parts.map(str::to_string).collect();
        if segs.iter().any(String::is_empty) {
            return None;
        }
        Some((host, segs))
    }

    /// True when the decoded resource's host equals `host` (case-insensitively) and its
    /// path is a segment-wise prefix of `path` (`/a/b` covers `/a/b/c`, not `/a/bc`).
    /// With `allow_prefix` false (identity keys, DPS) the resource must be `path` itself.
    pub fn covers(&self, host: &str, path: &[&str], allow_prefix: bool) -> bool {
        match self.resource() {
            Some((h, segs)) => {
                h.eq_ignore_ascii_case(host)
                    && (segs.len() == path.len() || (allow_prefix && segs.len() < path.len()))
                    && segs.iter().zip(path).all(|(a, b)| a == b)
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const SE: u64 = 1_735_689_600;

    fn ok(token: &str, key: &str, host: &str, path: &[&str]) -> bool {
        let t = SasToken::parse(token).unwrap();
        t.verify(&[key], SE - 1).is_ok() && t.covers(host, path, t.skn.is_some())
    }

    #[test]
    fn v1_device_token_verifies() {
        let t = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600";
        assert!(ok(t, KEY, "myhub.azure-devices.net", &["devices", "device-01"]));
        assert!(ok(t, KEY, "MyHub.Azure-Devices.NET", &["devices", "device-01"]));
        assert!(!ok(t, KEY, "myhub.azure-devices.net", &["devices", "device-02"]));
        assert!(!ok(t, KEY, "otherhub.azure-devices.net", &["devices", "device-01"]));
        let parsed = SasToken::parse(t).unwrap();
        assert_eq!(parsed.verify(&[KEY], SE), Err(SasError::Expired));
        assert_eq!(
            parsed.verify(&["c2hhcmVkLWFjY2Vzcy1wb2xpY3kta2V5LTEyMzQ1Ng=="], SE - 1),
            Err(SasError::SignatureMismatch)
        );
    }

    #[test]
    fn v2_module_token_verifies_and_device_scope_does_not_cover_sibling() {
        let t = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01%2Fmodules%2Fmodule-a&sig=GJ4x%2Fa%2FSQIskF6gX0VEExfHQfUuuN2zokt3CB2KZSUs%3D&se=1735689600";
        assert!(ok(t, KEY, "myhub.azure-devices.net", &["devices", "device-01", "modules", "module-a"]));
        assert!(!ok(t, KEY, "myhub.azure-devices.net", &["devices", "device-01", "modules", "module-b"]));
        assert!(!ok(t, KEY, "myhub.azure-devices.net", &["devices", "device-01"]));
    }

    #[test]
    fn v3_policy_token_carries_skn() {
        let t = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=Tcpg1liqRwHfQYZraOJ%2BNrSRa7V%2Fbk9%2B%2FRLtvUWrjWo%3D&se=1735689600&skn=device";
        let parsed = SasToken::parse(t).unwrap();
        assert_eq!(parsed.skn.as_deref(), Some("device"));
        assert!(ok(
            t,
            "c2hhcmVkLWFjY2Vzcy1wb2xpY3kta2V5LTEyMzQ1Ng==",
            "myhub.azure-devices.net",
            &["devices", "device-01"]
        ));
    }

    #[test]
    fn v4_each_sr_spelling_verifies_only_with_its_own_signature() {
        let lower = "SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdevice-01&sig=KXM6DtTMt%2BBQ2dQEEwDGBqdUOZpywcdxdygM0hkvXbY%3D&se=1735689600";
        let raw = "SharedAccessSignature sr=myhub.azure-devices.net/devices/device-01&sig=SuvuEYMT27TGYDLD94ZbF1%2BH2us7Hn5fZIiwhjooduU%3D&se=1735689600";
        let path = ["devices", "device-01"];
        assert!(ok(lower, KEY, "myhub.azure-devices.net", &path));
        assert!(ok(raw, KEY, "myhub.azure-devices.net", &path));
        // Signature of the upper-case spelling under the lower-case sr: refused.
        let swapped = "SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fdevice-01&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600";
        assert!(!ok(swapped, KEY, "myhub.azure-devices.net", &path));
    }

    #[test]
    fn prefix_is_segment_wise() {
        let mk =
            |sr: &str| SasToken { sr_raw: sr.into(), se_raw: "1".into(), sig: vec![], skn: None, expiry: 1 };
        let d1 = ["devices", "d1"];
        assert!(mk("h%2Fdevices").covers("h", &d1, true));
        assert!(mk("h").covers("h", &d1, true));
        assert!(!mk("h%2Fdevices%2Fd").covers("h", &d1, true));
        assert!(!mk("h%2F%2Fdevices").covers("h", &d1, true));
        // Without prefixes (identity keys, DPS) the resource must be the identity itself.
        assert!(mk("h%2Fdevices%2Fd1").covers("h", &d1, false));
        assert!(!mk("h%2Fdevices").covers("h", &d1, false));
        assert!(!mk("h%2Fdevices%2Fd1").covers("h", &["devices", "d1", "modules", "m"], false));
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        for t in [
            "",
            "SharedAccessSignature",
            "SharedAccessSignature sr=a",
            "SharedAccessSignature sr=a&sig=b&se=x",
            "SharedAccessSignature sr=a&sig=%%%&se=1",
            "SharedAccessSignature sr=a&sig=AA==&se=1&sr=b",
            "SharedAccessSignature sr=a&sig=AA==&se=1&foo=b",
            "sharedaccesssignature sr=a&sig=AA==&se=1",
            "SharedAccessSignature sr=a&sig=AA==&se=99999999999999999999999",
        ] {
            assert!(SasToken::parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn debug_does_not_show_the_signature() {
        let t = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01&sig=vH1TWHoMBnbcGUwhWDFi3MT2AZMNHMDw8JeMARqTd5k%3D&se=1735689600";
        let dbg = format!("{:?}", SasToken::parse(t).unwrap());
        assert!(!dbg.contains("vH1T"), "{dbg}");
    }
}
