//! Decides whether the tests that mount this filesystem run on this machine: the gate shared
//! with the end-to-end tests (`tests/os_deps.rs`).

// Shared with `cercle-e2e`, which also uses what this package does not (hledger).
#[allow(dead_code)]
#[path = "../../tests/os_deps.rs"]
mod os_deps;

fn main() {
    os_deps::emit(&[os_deps::OsDep::Fuse]);
}
