//! offstage: an MCP tool server for realtime voice agents. Heavy tools answer at once with a
//! job handle; results are pushed later. See ARCHITECTURE.md for the map.
//!
//! Modules in reading order: configuration, the job core, images and providers, tools, the
//! MCP and HTTP faces, and the composition root that wires them.

pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod images;
pub mod jobs;
pub mod mcp;
pub mod netguard;
pub mod oauth;
pub mod priority;
pub mod providers;
pub mod push;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tools;

#[cfg(test)]
mod architecture;
