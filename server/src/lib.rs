//! Arena server: one revocable session token for the HTTP lobby and the WebSocket game
//! channel, and a registry of live connections by user so a revocation can close them.
//!
//! Start with [`app::start`]; the binary in `main.rs` only parses the command line,
//! prints the address and waits for a signal.

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod events;
pub mod frame;
pub mod game;
pub mod http;
pub mod ids;
pub mod registry;
pub mod serve;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ws;
