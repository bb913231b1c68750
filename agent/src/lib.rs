//! The device agent: a supervised long-running binary over the connector's actor tree
//! (`connector-agent`; see the crate's README for operating it). The library is what the
//! binary is made of, for embedding the agent or testing its parts.
//!
//! ```no_run
//! use std::time::Duration;
//! use connector_agent::config::{self, Overrides};
//! use connector_agent::run::{run, RunOptions};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // No file, no variables: the embedded emulator (Azure flavour).
//!     let settings = config::load_from_process(None, &Overrides::default())?;
//!     let opts = RunOptions { exit_after: Some(Duration::from_secs(20)), ..RunOptions::default() };
//!     actix_rt::System::new().block_on(run(settings, opts))?;
//!     Ok(())
//! }
//! ```
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

/// `println!`/`eprintln!` that never panic: an agent whose stdout or stderr was closed
/// (a pipe whose reader went away) keeps running instead of dying on its next status line.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

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
