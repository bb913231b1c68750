//! The device agent: a supervised long-running binary over the connector's actor tree.
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`config`] | TOML file + `CONNECTOR_AGENT_…` environment + flags → validated [`config::Settings`] |
//! | [`run`] | the main loop: identity, sessions, telemetry, ingestion, state, methods, signals |
//! | [`demo`] | `--demo`: the embedded emulator's back end played by the agent |
//! | [`embedded`] | the in-process emulator of the default configuration |
//! | [`identity`] | the provisioned identity's cache (0600 files in the state directory) |
//! | [`ops`] | single-instance lock, `sd_notify`, private files |
//! | [`logging`] | tracing to stderr, text or JSON, reloadable level |
//! | [`metrics`] | the agent's own metric families |
//! | [`status`] | the periodic status line |
//! | [`stats`] | device statistics (CPU, memory, disk, uptime) |
//! | [`ingest`] | the Unix-socket JSON-lines ingestion endpoint with batching |
//! | [`state_sync`] | desired/reported state files |
//! | [`handlers`] | allow-listed handler executables for methods and jobs |

pub mod cli;
pub mod config;
pub mod demo;
pub mod embedded;
pub mod handlers;
pub mod identity;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod run;
pub mod state_sync;
pub mod stats;
pub mod status;
