//! Broker URIs: parsing never panics, and what parses renders back to something that
//! parses to the same value.
#![no_main]
use connector_core::BrokerUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = s.parse::<BrokerUri>() {
            let again: BrokerUri = u.to_string().parse().expect("a rendered URI parses");
            assert_eq!(u, again);
        }
    }
});
