//! SAS tokens: parsing never panics; a parsed token keeps its text, its `Debug` hides it,
//! and verifying or checking coverage never panics either.
#![no_main]
use connector_azure::{SasKey, SasToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = s.parse::<SasToken>() {
        assert_eq!(t.expose(), s);
        assert!(!format!("{t:?}").contains(s));
        let key = SasKey::from_bytes(vec![7u8; 32]).expect("non-empty key");
        let _ = t.verify(&key);
        let _ = t.covers("h/devices/d");
        let _ = t.is_expired(std::time::SystemTime::now());
    }
});
