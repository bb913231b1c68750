//! Test fixtures for the cloud connector workspace.
//!
//! * [`Mosquitto`] — a real mosquitto broker on a free loopback port, in its own
//!   temporary directory, optionally with persistence, credentials and a TLS listener.
//! * [`TestPki`] — real X.509 certificates (CA, server, client, a foreign CA and a
//!   wrong-host certificate) generated with OpenSSL and written as PEM files.
//! * [`FakeBroker`] — a scripted MQTT 3.1.1 broker for behaviour a real broker
//!   cannot be made to show (withheld PUBACKs, refused CONNACKs, malformed packets).
//! * [`FaultProxy`] — a TCP proxy that passes, blackholes, resets, refuses or slows the
//!   traffic to one upstream, switchable while it runs.
//! * [`HttpProxy`] — an HTTP `CONNECT` proxy on a free loopback port that records the
//!   targets it tunnelled to.
//! * [`Socks5Proxy`] — a SOCKS5 proxy (no authentication, or user name and password) that
//!   records the targets it tunnelled to and how they were addressed.
//! * [`xorshift`] — a seeded generator for the fuzz stand-in tests.
//! * [`recv_within`], [`wait_until`] and friends — deadline-bounded waiting helpers.
//!
//! No helper here sleeps as a means of synchronisation: every wait polls a condition
//! against a deadline and fails loudly when the deadline passes.

pub mod fake_broker;
pub mod fault_proxy;
pub mod http_proxy;
pub mod mosquitto;
pub mod pki;
pub mod recv;
pub mod rng;
pub mod socks5_proxy;
#[cfg(test)]
mod test_mqtt;

pub use fake_broker::{FakeBehaviour, FakeBroker};
pub use fault_proxy::{Fault, FaultProxy, ProxyStats};
pub use http_proxy::HttpProxy;
pub use mosquitto::{Mosquitto, MosquittoConfig, TlsListener};
pub use pki::{generate_ca, issue_cert, TestPki};
pub use recv::{recv_within, recv_within_unbounded, unique_client_id, wait_until, wait_until_async};
pub use rng::xorshift;
pub use socks5_proxy::{Socks5Address, Socks5Proxy};
