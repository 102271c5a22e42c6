//! Decides which of the tests that need an OS package run on this machine (`os_deps.rs`).

mod os_deps;

fn main() {
    os_deps::emit(&[
        os_deps::OsDep::Fuse,
        os_deps::OsDep::Hledger,
        os_deps::OsDep::Promtool,
        os_deps::OsDep::Mount,
        os_deps::OsDep::Browser,
        os_deps::OsDep::Podman,
    ]);
}
