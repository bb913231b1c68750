//! AWS IoT Core behind the connector's provider boundary: pure, synchronous, table-tested
//! codecs for the device side, following `aws-iot-core.md`, `aws-shadow.md` and
//! `aws-jobs.md` byte for byte.
//!
//! | module | what |
//! |---|---|
//! | [`provider`] | [`AwsProvider`]: connect parameters, telemetry within the limits, classification |
//! | [`options`] | [`AwsOptions`], [`AwsAuth`] (X.509 on 8883 or 443/ALPN, SigV4 WebSocket, custom authorizer) |
//! | [`endpoint`] | host checks, the region of an endpoint, ports and ALPN names |
//! | [`x509`] | [`X509Credentials`] (PEM files or memory, passphrase, PKCS#12), [`ClientCertificate`] |
//! | [`credentials`] | [`AwsCredentials`], [`CredentialsSource`]: explicit, environment, shared file profile |
//! | [`sigv4`] | the presigned WebSocket URL ([`sigv4::presign`]) |
//! | [`custom_auth`] | [`CustomAuth`]: user name, headers, token signing |
//! | [`topics`] | [`AwsTopic`]: every shadow and jobs topic, one assemble, one parse |
//! | [`shadow`] | [`ShadowCodec`] (classic and named shadows) and the typed shadow documents |
//! | [`jobs`] | [`AwsJobsCodec`] and the classification of jobs answers and events |
//! | [`limits`] | the service's limits and name rules |
//! | [`error`] | the typed errors |
//!
//! No secret access key, session token, signature, private key, token or password
//! appears in a `Debug`, `Display` or error message.
//!
//! ```no_run
//! use std::time::SystemTime;
//! use connector_aws::AwsProvider;
//! use connector_core::{Provider, Publish};
//!
//! let provider = AwsProvider::from_pem_files(
//!     "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
//!     "lamp-01",
//!     "lamp-01.cert.pem",
//!     "lamp-01.private.key",
//! )?;
//! // What the connection actor does on every connect attempt:
//! let params = provider.connect_params(SystemTime::now())?;
//! assert_eq!(params.uri.port(), 8883);
//! // Telemetry goes to the template topic (`dt/{thing}/telemetry` by default):
//! let packet = provider.encode_publish(&Publish::telemetry(&b"{\"t\":21.5}"[..]))?;
//! assert_eq!(packet.topic, "dt/lamp-01/telemetry");
//! // The provider goes into the supervision tree as `Arc<dyn Provider>`.
//! let _shared: std::sync::Arc<dyn Provider> = std::sync::Arc::new(provider);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod credentials;
pub mod custom_auth;
#[cfg(feature = "runtime")]
pub mod device;
pub mod endpoint;
pub mod error;
pub mod fleet;
pub mod jobs;
pub mod limits;
pub mod options;
pub mod provider;
pub mod shadow;
pub mod sigv4;
pub mod topics;
pub mod x509;

pub use credentials::{AwsCredentials, CredentialsSource};
pub use custom_auth::{CustomAuth, CustomAuthTransport};
pub use error::{
    AwsError, CertificateError, CredentialsError, RequestError, ShadowDocumentError, SigV4Error,
    TopicParseError,
};
pub use jobs::AwsJobsCodec;
pub use options::{AwsAuth, AwsOptions, SigV4Auth};
pub use provider::AwsProvider;
pub use shadow::{ShadowCodec, ShadowErrorDocument};
pub use topics::AwsTopic;
pub use x509::{ClientCertificate, X509Credentials};
