//! The OS packages some tests need (FUSE for the power-loss tests, hledger for the export
//! test, promtool for the metrics test, Chromium, Node.js and the web app's npm packages for
//! the browser tests, podman for the container test) and the one right (mounting a tmpfs, for the full-disk test), and the one
//! gate that makes their absence a failure: included by the build scripts
//! of `cercle-e2e` and `cercle-lossyfs`.
//!
//! A build script decides, per package, whether its tests of that kind run: it sets the cfg
//! `fuse_tests` (or `hledger_tests`) when the package is installed here, or when
//! `CERCLE_REQUIRE_ALL` is set to anything but `0` or the empty string. Without the cfg, the
//! tests are `#[ignore]`d with the reason and the install command, so `cargo test` lists them
//! as ignored, with why, in its summary: a missing package never looks like a pass. With the
//! cfg, a test that finds its package unusable fails. CI sets `CERCLE_REQUIRE_ALL=1`, so there
//! nothing is ever skipped.

use std::path::PathBuf;

/// The gate: set (to anything but `0` or empty), every test runs and a missing package fails it.
pub const REQUIRE_ALL_VAR: &str = "CERCLE_REQUIRE_ALL";

/// An OS package the tests of a package may need.
#[derive(Clone, Copy)]
pub enum OsDep {
    /// `/dev/fuse` and `fusermount3` (Debian package `fuse3`).
    Fuse,
    /// The `hledger` program (Debian package `hledger`).
    Hledger,
    /// The `promtool` program (Debian package `prometheus`).
    Promtool,
    /// The right to mount a small tmpfs (`CAP_SYS_ADMIN`: root, as CI runs), to fill a disk.
    Mount,
    /// Chromium (Debian package `chromium`), Node.js, and the web app's npm packages
    /// (`npm ci` in `web/`: playwright-core drives the browser, axe-core checks pages).
    Browser,
    /// `podman` and the `runc` runtime (Debian packages `podman runc`), and root (the test
    /// runs podman rootful), to build and run the image of `deploy/Containerfile`.
    Podman,
}

impl OsDep {
    fn cfg(self) -> &'static str {
        match self {
            OsDep::Fuse => "fuse_tests",
            OsDep::Hledger => "hledger_tests",
            OsDep::Promtool => "promtool_tests",
            OsDep::Mount => "mount_tests",
            OsDep::Browser => "browser_tests",
            OsDep::Podman => "container_tests",
        }
    }

    /// The files whose presence means the package is installed.
    fn files(self) -> Vec<Candidates> {
        match self {
            OsDep::Fuse => {
                vec![Candidates::Fixed(PathBuf::from("/dev/fuse")), Candidates::OnPath("fusermount3")]
            }
            OsDep::Hledger => vec![Candidates::OnPath("hledger")],
            OsDep::Promtool => vec![Candidates::OnPath("promtool")],
            OsDep::Podman => vec![
                Candidates::OnPath("podman"),
                Candidates::OnPath("runc"),
                Candidates::Capability(CAP_SYS_ADMIN),
            ],
            OsDep::Mount => vec![Candidates::Capability(CAP_SYS_ADMIN)],
            OsDep::Browser => {
                let web =
                    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../web");
                vec![
                    Candidates::Fixed(PathBuf::from("/usr/bin/chromium")),
                    Candidates::OnPath("node"),
                    Candidates::Fixed(web.join("node_modules/playwright-core/package.json")),
                    Candidates::Fixed(web.join("node_modules/axe-core/axe.min.js")),
                ]
            }
        }
    }
}

enum Candidates {
    Fixed(PathBuf),
    /// A program, looked for in every directory of `PATH`.
    OnPath(&'static str),
    /// A capability this process holds (its bit in `CapEff` of `/proc/self/status`).
    Capability(u32),
}

/// The capability bit that allows `mount`.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process holds the capability `bit`.
fn has_capability(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

impl Candidates {
    fn paths(&self) -> Vec<PathBuf> {
        match self {
            Candidates::Fixed(path) => vec![path.clone()],
            Candidates::OnPath(name) => std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).collect())
                .unwrap_or_default(),
            // A right, not a file: `emit` asks for it apart.
            Candidates::Capability(_) => vec![],
        }
    }
}

/// Whether the gate is set.
pub fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL_VAR).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Prints the build-script instructions for `deps`: a cfg per package that is installed or
/// required, and what to watch so that installing or removing one is noticed.
pub fn emit(deps: &[OsDep]) {
    println!("cargo::rerun-if-env-changed={REQUIRE_ALL_VAR}");
    println!("cargo::rerun-if-env-changed=PATH");
    let required = require_all();
    for &dep in deps {
        println!("cargo::rustc-check-cfg=cfg({})", dep.cfg());
        let mut installed = true;
        for candidates in dep.files() {
            if let Candidates::Capability(bit) = candidates {
                // Nothing to watch: a build runs with the rights its tests run with.
                installed &= has_capability(bit);
                continue;
            }
            let paths = candidates.paths();
            match paths.iter().find(|p| p.exists()) {
                // Watch the file found: its removal is noticed.
                Some(found) => println!("cargo::rerun-if-changed={}", found.display()),
                None => {
                    installed = false;
                    // Watching files that do not exist makes cargo run this script again on
                    // every build, so an install is noticed at once.
                    for path in &paths {
                        println!("cargo::rerun-if-changed={}", path.display());
                    }
                }
            }
        }
        if installed || required {
            println!("cargo::rustc-cfg={}", dep.cfg());
        }
    }
}
