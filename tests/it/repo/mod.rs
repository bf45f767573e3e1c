//! The binary and the repository: a bad configuration fails fast, and hygiene checks (file headers,
//! schemas).

mod cli;
mod tidy;
