//! The wallet CLI (work in progress).
fn main() {}
