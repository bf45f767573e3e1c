//! offstage: an MCP tool server for realtime voice agents. Heavy tools answer at once with a
//! job handle; results are pushed later. See ARCHITECTURE.md for the map.
//!
//! The public modules are what the binary, the integration tests and the benches use; the
//! MCP and HTTP faces and the small shared rooms stay inside the crate.
//!
//! Modules in reading order: configuration, the job core, images and providers, tools, the
//! MCP and HTTP faces, and the composition root that wires them.

pub mod cli;
pub mod commands;
pub mod config;
mod http;
pub mod images;
pub mod jobs;
mod mcp;
mod netguard;
pub mod oauth;
mod priority;
pub mod providers;
pub mod push;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tools;

#[cfg(test)]
mod architecture;
