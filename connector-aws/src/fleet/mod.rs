//! AWS IoT Fleet Provisioning by claim (`aws-fleet-provisioning.md`), device side: a
//! device connects with a shared claim certificate, obtains its own certificate
//! (CreateKeysAndCertificate, or CreateCertificateFromCsr with a key that never leaves it),
//! registers a thing through a provisioning template (RegisterThing), stores the result
//! and from then on connects as that thing.
//!
//! | module | what |
//! |---|---|
//! | [`topics`] | [`FleetTopic`], [`FleetApi`], [`TemplateName`]: the request and answer topics |
//! | [`codec`] | request bodies and [`FleetAnswer`]: accepted documents, the [`ErrorDocument`] |
//! | [`keys`] | [`KeyPair`] (EC P-256 or RSA 2048) and its CSR |
//! | [`store`] | [`FleetIdentity`] and the [`IdentityStore`] directory (files with mode 0600) |
//! | [`error`] | [`FleetError`], [`KeyError`], [`StoreError`] |
//! | `client` | feature `runtime`: `provision`, `provision_or_load`, `provision_then_connect` over the actor tree |
//!
//! Only the JSON payload format is spoken (the `cbor` topics are not).
//!
//! ```
//! use std::collections::BTreeMap;
//! use connector_aws::fleet::{codec, FleetApi, TemplateName};
//! use connector_core::Secret;
//! let api = FleetApi::RegisterThing(TemplateName::new("FleetTemplate")?);
//! assert_eq!(api.request_topic(), "$aws/provisioning-templates/FleetTemplate/provision/json");
//! let params = BTreeMap::from([("SerialNumber".to_owned(), "0042".to_owned())]);
//! let body = codec::register_thing_body(&Secret::new("token"), &params);
//! assert_eq!(body, br#"{"certificateOwnershipToken":"token","parameters":{"SerialNumber":"0042"}}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "runtime")]
pub mod client;
pub mod codec;
pub mod error;
#[cfg(feature = "runtime")]
mod exchange;
pub mod keys;
pub mod store;
pub mod topics;

pub use codec::{CertificateFromCsr, ErrorDocument, FleetAnswer, KeysAndCertificate, ThingRegistered};
pub use error::{FleetError, KeyError, StoreError};
pub use keys::{KeyAlgorithm, KeyPair};
pub use store::{FleetIdentity, IdentityStore};
pub use topics::{FleetApi, FleetTopic, TemplateName, TopicKind};
