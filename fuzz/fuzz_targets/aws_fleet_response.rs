//! AWS fleet-provisioning answers: any topic and body parse to a typed answer or a typed
//! error, never a panic; the topic parser accepts what it assembles.
#![no_main]
use connector_aws::fleet::{FleetAnswer, FleetTopic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is the topic, the rest the body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(topic) = std::str::from_utf8(&data[..split]) else { return };
    let body = data.get(split + 1..).unwrap_or_default();
    let _ = FleetAnswer::parse(topic, body);
    if let Ok(t) = FleetTopic::parse(topic) {
        assert_eq!(FleetTopic::parse(&t.assemble()).ok(), Some(t));
    }
});
