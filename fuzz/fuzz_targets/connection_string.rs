//! Connection strings: parsing never panics, and neither `Debug` nor an error message
//! shows the value of `SharedAccessKey` or `SharedAccessSignature`.
#![no_main]
use connector_azure::ConnectionString;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match s.parse::<ConnectionString>() {
        Ok(cs) => {
            assert!(!cs.host_name().is_empty() && !cs.device_id().is_empty());
            let shown = format!("{cs:?}");
            // The plain fields may themselves hold the secret's text, and a very short secret
            // may occur in the redaction marker: only what is in neither must be absent.
            let plain = [
                cs.host_name(),
                cs.device_id(),
                cs.module_id().unwrap_or(""),
                cs.gateway_host_name().unwrap_or(""),
                cs.shared_access_key_name().unwrap_or(""),
            ];
            let leaked = |secret: &str| {
                secret.len() >= 8 && shown.contains(secret) && !plain.iter().any(|p| p.contains(secret))
            };
            if let Some(k) = cs.shared_access_key() {
                assert!(!leaked(k.to_base64().expose()));
            }
            if let Some(t) = cs.shared_access_signature() {
                assert!(!leaked(t.expose()));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
