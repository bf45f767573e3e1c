//! SQLite store tests (to be written).
