//! AWS IoT shadow and jobs topics: parsing and classification never panic; what parses
//! assembles to the same text; a topic of the own thing under the shadow or jobs prefix is
//! never classified as a plain user message unless it is a request or another service's.
#![no_main]
use connector_aws::topics::Direction;
use connector_aws::{AwsAuth, AwsCredentials, AwsOptions, AwsProvider, AwsTopic, SigV4Auth};
use connector_core::{InboundMessage, Provider, QoS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(topic) = std::str::from_utf8(&data[..split]) else { return };
    let payload = data.get(split + 1..).unwrap_or_default();
    let parsed = AwsTopic::parse(topic);
    if let Ok(t) = &parsed {
        assert_eq!(t.assemble().as_deref(), Ok(topic));
    }
    let creds = AwsCredentials::new("AKID", "secret").expect("valid key id");
    let opts =
        AwsOptions::new("localhost", "lamp", AwsAuth::SigV4(SigV4Auth::explicit(creds).region("us-east-1")));
    let provider = AwsProvider::new(opts).expect("valid options");
    let inbound = provider.classify(InboundMessage::new(topic, payload.to_vec(), QoS::AtLeastOnce));
    if let Ok(t) = parsed {
        if t.thing() == "lamp" && t.direction() == Direction::ServiceToDevice {
            assert_ne!(inbound.kind(), "message");
        }
    }
});
