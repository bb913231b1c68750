//! The device agent: a supervised long-running binary over the connector's actor tree
//! (work in progress; the module map is filled in as the modules land).

pub mod config;
pub mod handlers;
pub mod ingest;
pub mod state_sync;
pub mod stats;
