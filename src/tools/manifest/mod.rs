//! Manifest tools: tools declared in `tools/*.toml`, run by an HTTP or command backend.
