//! Load benchmark (written later).
fn main() {}
