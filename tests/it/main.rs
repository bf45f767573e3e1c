//! The one integration-test binary: the real server over real HTTP and stdio, driven by rmcp's
//! own client. One folder per area:
//!
//! - `mcp/` — MCP itself: legacy sessions and 2026-07-28 requests, stdio, the tasks extension,
//!   progress while waiting, bad input, and what one caller may hold open.
//! - `tools/` — manifest tools, hot reload of `tools/`, profiles, and `edit_image` end to end.
//! - `jobs/` — provider routing and fallback, cross-token isolation, surviving a restart, and
//!   several instances on one PostgreSQL database.
//! - `push/` — what hosts hear about jobs: conversations, SSE events and webhooks.
//! - `http/` — job and image views with their guards, the edges of HTTP, OAuth.
//! - `images/` — the image pipeline through the server: renditions, partial images, S3.
//! - `providers/` — each image provider against a local stand-in of its service: one contract
//!   table for what all must do (`contract.rs`, `jobs.rs`), a file for what is each one's own.
//! - `repo/` — the binary's bad-configuration errors and repository hygiene.
//!
//! `support.rs` is what every area uses: a server on an ephemeral port, clients of both
//! protocol eras, and helpers to read results and event streams.

mod support;

mod http;
mod images;
mod jobs;
mod mcp;
mod providers;
mod push;
mod repo;
mod tools;
