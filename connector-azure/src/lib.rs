//! Azure IoT Hub (and Device Provisioning Service) behind the connector's provider
//! boundary: pure, synchronous, table-tested codecs for the device side of the MQTT 3.1.1
//! protocol, following `azure-iot-hub.md` and `azure-dps.md` byte for byte.
//!
//! | module | what |
//! |---|---|
//! | [`provider`] | [`AzureProvider`]: connect parameters, telemetry, subscriptions, classification |
//! | [`options`] | [`AzureOptions`], [`Transport`] (MQTT/TLS 8883 or WebSocket 443) |
//! | [`connection_string`] | [`ConnectionString`] (`FromStr`), [`Credential`] |
//! | [`sas`] | [`SasKey`], [`SasToken`]: generate, parse, verify |
//! | [`properties`] | [`PropertyBag`], [`SystemProperty`]: the `$.mid=…&k=v` bag |
//! | [`topics`] | [`DeviceTopic`]: every device topic, one assemble, one parse |
//! | [`c2d`] | cloud-to-device messages and module inputs |
//! | [`methods`] | direct-method requests and responses |
//! | [`twin`] | [`TwinCodec`], the twin as a [`StateCodec`](connector_core::provider::StateCodec) |
//! | [`pnp`] | Plug and Play: DTMI, components, writable-property acknowledgements |
//! | [`x509`] | [`X509Identity`] from PEM files or PKCS#12 |
//! | [`dps`] | DPS: [`DpsRegistration`](dps::DpsRegistration), topics, response codec; with the default `runtime` feature the provisioning client (`dps::client`: `provision`, `provision_then_connect`) |
//! | [`error`] | the typed errors |
//!
//! No value of a key, token, signature or private key appears in a `Debug`, `Display` or
//! error message.
//!
//! ```no_run
//! use std::time::SystemTime;
//! use connector_azure::{AzureOptions, AzureProvider};
//! use connector_core::{Provider, Publish};
//!
//! let cs = "HostName=myhub.azure-devices.net;DeviceId=device-01;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
//! let provider = AzureProvider::new(cs.parse()?, AzureOptions::default().model_id("dtmi:com:example:Thermostat;1"))?;
//! // What the connection actor does on every connect attempt:
//! let params = provider.connect_params(SystemTime::now())?;
//! println!("{} as {}", params.uri, params.client_id);
//! // Telemetry gets the property-bag topic:
//! let packet = provider.encode_publish(&Publish::telemetry(&b"{\"t\":21.5}"[..]).content_type("application/json"))?;
//! assert_eq!(packet.topic, "devices/device-01/messages/events/%24.ct=application%2Fjson");
//! // The provider goes into the supervision tree as `Arc<dyn Provider>`.
//! let _shared: std::sync::Arc<dyn Provider> = std::sync::Arc::new(provider);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod c2d;
pub mod connection_string;
#[cfg(feature = "runtime")]
pub mod device;
pub mod dps;
mod encoding;
pub mod error;
pub mod methods;
pub mod options;
pub mod pnp;
pub mod properties;
pub mod provider;
pub mod sas;
pub mod topics;
pub mod twin;
pub mod x509;

pub use connection_string::{ConnectionString, Credential};
pub use error::{
    AzureError, ConnectionStringError, DpsError, PropertyBagError, SasError, TopicParseError, X509Error,
};
pub use options::{AzureOptions, Transport};
pub use properties::{PropertyBag, SystemProperty};
pub use provider::AzureProvider;
pub use sas::{SasKey, SasToken};
pub use topics::DeviceTopic;
pub use twin::TwinCodec;
pub use x509::X509Identity;
