//! The service load benchmark (in progress).
fn main() {}
