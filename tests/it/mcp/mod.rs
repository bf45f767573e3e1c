//! MCP itself: both protocol eras (legacy sessions, 2026-07-28 requests), stdio, the tasks
//! extension, progress while waiting, bad input and per-caller limits.

mod bad_input;
mod legacy_session;
mod limits;
mod progress;
mod stateless;
mod stdio;
mod tasks;
