//! Property bags: decoding never panics, and a decoded bag re-encodes to text that decodes
//! to the same pairs.
#![no_main]
use connector_azure::PropertyBag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(bag) = PropertyBag::parse(s) {
        let text = bag.encode().expect("decoded names are never empty");
        assert_eq!(PropertyBag::parse(&text).as_ref(), Ok(&bag));
        let _ = bag.accounted_size();
    }
});
