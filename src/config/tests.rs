//! Configuration tests (to be written).
