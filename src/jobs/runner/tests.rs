//! Runner tests (to be written).
