//! DPS responses: any topic and body parse to a response or a typed error, never a panic;
//! a parsed response always yields a next step or a typed error.
#![no_main]
use connector_azure::dps::DpsResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is the topic, the rest the body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(topic) = std::str::from_utf8(&data[..split]) else { return };
    let body = data.get(split + 1..).unwrap_or_default();
    if let Ok(response) = DpsResponse::parse(topic, body) {
        let _ = response.next_step();
    }
});
