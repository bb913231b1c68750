//! The control API (HTTP JSON on loopback), its client and the command line over it.

pub mod api;
pub mod aws_api;
pub(crate) mod aws_routes;
pub(crate) mod cli;
pub mod client;
pub(crate) mod routes;
pub(crate) mod server;
