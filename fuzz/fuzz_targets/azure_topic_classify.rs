//! IoT Hub topics: parsing and classification never panic; what parses assembles to a topic
//! that parses back to the same value; `$iothub/…` and `devices/…` topics are never
//! classified as plain user messages.
#![no_main]
use connector_azure::{AzureProvider, DeviceTopic};
use connector_core::{InboundMessage, Provider, QoS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(topic) = std::str::from_utf8(data) else { return };
    if let Ok(t) = DeviceTopic::parse(topic) {
        if let Ok(text) = t.assemble() {
            assert_eq!(DeviceTopic::parse(&text).as_ref(), Ok(&t));
        }
    }
    let provider = AzureProvider::from_connection_string(
        "HostName=h;DeviceId=d;ModuleId=m;GatewayHostName=g;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .expect("valid connection string");
    let inbound = provider.classify(InboundMessage::new(topic, &b"{}"[..], QoS::AtLeastOnce));
    if topic.starts_with("$iothub/") || topic.starts_with("devices/") {
        assert_ne!(inbound.kind(), "message");
    }
});
