//! The node in a real container (#13): the image of `deploy/Containerfile` built with
//! podman, the node run in it with its ledger in a volume, paid through from the host with
//! the real wallet over a published port, a new container on the same volume finding the
//! data there, a clean stop (exit code 0, the graceful shutdown in its log) and the image's
//! own health check passing.
//!
//! No registry is needed: the image is built `--target prebuilt` with the binaries this
//! `cargo test` built, on a base imported from a root filesystem of the C libraries they
//! link to (`ldd`). podman runs as root with `runc`, through a `containers.conf` of the
//! test's own (`CONTAINERS_CONF`): explicit ulimits and the `cgroupfs` manager, which
//! sandboxes that refuse podman's defaults accept. Every container, volume and image has a
//! name of this run and is removed at the end, failed or not.
//!
//! Needs podman and runc (`apt-get install podman runc`) and root: without them the test is
//! ignored with the reason, unless `CERCLE_REQUIRE_ALL` is set (`tests/os_deps.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cercle_e2e::{CliOutput, binary, cercle_with_state};

/// How long the node in its container may take to answer the wallet.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// podman with the test's configuration.
struct Podman {
    conf: PathBuf,
}

impl Podman {
    /// Writes the test's `containers.conf` into `dir`.
    fn new(dir: &Path) -> Podman {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("the open-file limit");
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "# The container test's podman settings (tests/tests/container.rs).\n\
                 [containers]\n\
                 default_ulimits = [\"nofile={hard}:{hard}\", \"nproc=32768:32768\"]\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n"
            ),
        )
        .unwrap();
        Podman { conf }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &self.conf).args(args);
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run podman (apt-get install podman runc)")
    }

    /// Runs podman; its stdout, or a failure with what it said.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The names of this run's containers, volume and images, removed on drop.
struct Names<'a> {
    podman: &'a Podman,
    base: String,
    image: String,
    volume: String,
    containers: Vec<String>,
}

impl Drop for Names<'_> {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = self.podman.output(&["rm", "--force", "--time", "0", container]);
        }
        let _ = self.podman.output(&["volume", "rm", "--force", &self.volume]);
        let _ = self.podman.output(&["rmi", "--force", &self.image, &self.base]);
    }
}

/// A root filesystem of `binaries`' shared libraries (and their loader), at the paths
/// `ldd` names, packed into `tar`: the smallest base the binaries run on.
fn library_rootfs(binaries: &[PathBuf], dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for sub in ["etc", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for binary in binaries {
        let out = Command::new("ldd").arg(binary).output().expect("run ldd");
        assert!(out.status.success(), "ldd {}: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
        let listing = String::from_utf8_lossy(&out.stdout);
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)"
        for path in listing.split_whitespace().filter(|w| w.starts_with('/')) {
            let to = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            // The file itself, not a link to a host path.
            std::fs::copy(path, &to).unwrap_or_else(|e| panic!("copy {path}: {e}"));
        }
    }
    let tar = dir.join("base.tar");
    let status = Command::new("tar")
        .args(["--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    tar
}

/// The build context of `--target prebuilt`: the sample configuration, the binaries, an
/// empty `data/`. Binaries are hard-linked where the filesystem allows.
fn prebuilt_context(binaries: &[PathBuf], dir: &Path) -> PathBuf {
    let ctx = dir.join("context");
    std::fs::create_dir_all(ctx.join("deploy")).unwrap();
    std::fs::create_dir_all(ctx.join("prebuilt/data")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(repo.join("deploy/cercle-node.toml"), ctx.join("deploy/cercle-node.toml")).unwrap();
    for binary in binaries {
        let to = ctx.join("prebuilt").join(binary.file_name().unwrap());
        if std::fs::hard_link(binary, &to).is_err() {
            std::fs::copy(binary, &to).unwrap();
        }
    }
    ctx
}

/// A loopback port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits, with a deadline, until the node at `url` answers the wallet.
fn wait_ready(url: &str, state: &Path, podman: &Podman, container: &str) {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        let out = cercle_with_state(url, None, state, &["info"]);
        if out.code == 0 {
            return;
        }
        if Instant::now() > deadline {
            let logs = podman.output(&["logs", container]);
            panic!(
                "the node in {container} did not answer within {READY_DEADLINE:?}: {}\nits log:\n{}{}",
                out.stderr,
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops `container` as a service manager would, and checks the node stopped cleanly.
fn stop_cleanly(podman: &Podman, container: &str) {
    podman.ok(&["stop", "--time", "30", container]);
    let code = podman.ok(&["inspect", "--format", "{{.State.ExitCode}}", container]);
    let logs = podman.output(&["logs", container]);
    let log = format!("{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
    assert_eq!(code, "0", "the node exits 0 on SIGTERM; its log:\n{log}");
    let messages: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let said = |text: &str| messages.iter().any(|m| m["fields"]["message"] == text || m["message"] == text);
    assert!(said("shutting down") && said("stopped"), "the graceful shutdown is in the log:\n{log}");
}

#[test]
#[cfg_attr(not(container_tests), ignore = "needs podman and runc, as root: apt-get install podman runc")]
fn the_node_runs_in_its_container() {
    let tmp = tempfile::tempdir().unwrap();
    let podman = Podman::new(tmp.path());
    let run = format!("cercle-test-{}-{}", std::process::id(), cercle_e2e::now_ms());
    let mut names = Names {
        podman: &podman,
        base: format!("localhost/{run}-base:latest"),
        image: format!("localhost/{run}:latest"),
        volume: run.clone(),
        containers: Vec::new(),
    };
    let binaries = [binary("cercle-node"), binary("cercle")];

    // The image: a base of the binaries' libraries, then deploy/Containerfile on top.
    let base = library_rootfs(&binaries, tmp.path());
    podman.ok(&["import", base.to_str().unwrap(), &names.base]);
    let context = prebuilt_context(&binaries, tmp.path());
    let containerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Containerfile");
    podman.ok(&[
        "build",
        "--pull=never",
        // No intermediate images left behind: only the tagged one, removed at the end.
        "--layers=false",
        // The OCI format has no HEALTHCHECK: podman would drop the image's health check.
        "--format",
        "docker",
        "--target",
        "prebuilt",
        "--build-arg",
        &format!("BASE={}", names.base),
        "--file",
        containerfile.to_str().unwrap(),
        "--tag",
        &names.image,
        context.to_str().unwrap(),
    ]);

    // The README's way: keys made by the wallet on the host, the ledger initialised in
    // the volume, the node run with its port published on the host's loopback.
    let state = tmp.path().join("wallet-state");
    let key = |name: &str| {
        let path = tmp.path().join(format!("{name}.key"));
        let out = cercle_with_state(
            "http://127.0.0.1:1",
            None,
            &state,
            &["keygen", "--out", path.to_str().unwrap()],
        );
        let out = out.ok();
        (path, out.stdout.split_whitespace().last().unwrap().to_string())
    };
    let (admin, admin_pub) = key("admin");
    let (alice, alice_pub) = key("alice");
    let (bob, bob_pub) = key("bob");
    podman.ok(&["volume", "create", &names.volume]);
    let data = format!("{}:/data", names.volume);
    podman.ok(&[
        "run",
        "--rm",
        "--volume",
        &data,
        &names.image,
        "init",
        "--data-dir",
        "/data",
        "--currency",
        "CHW",
        "--admin-pubkey",
        &admin_pub,
    ]);

    // A container of the image on the volume, its port published on a free loopback port:
    // its name and the URL the wallet reaches it at, once it answers.
    let start = |names: &mut Names<'_>, n: usize| -> (String, String) {
        let container = format!("{run}-{n}");
        names.containers.push(container.clone());
        let port = free_port();
        podman.ok(&[
            "run",
            "--detach",
            "--name",
            &container,
            "--stop-timeout",
            "30",
            "--publish",
            &format!("127.0.0.1:{port}:50051"),
            "--volume",
            &data,
            &names.image,
        ]);
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url, &state, &podman, &container);
        (container, url)
    };
    let balance = |url: &str, key: &Path, name: &str| -> i64 {
        let out = cercle_with_state(url, Some(key), &state, &["--json", "balance", name]).ok();
        out.json()["balance_minor"].as_i64().unwrap()
    };
    let wallet = |url: &str, key: &Path, args: &[&str]| -> CliOutput {
        cercle_with_state(url, Some(key), &state, args)
    };

    let (first, url) = start(&mut names, 1);
    for (name, pubkey) in [("alice", &alice_pub), ("bob", &bob_pub)] {
        wallet(&url, &admin, &["admin", "register", name, "--pubkey", pubkey, "--credit-limit", "1000"]).ok();
    }
    wallet(&url, &alice, &["pay", "--from", "alice", "bob", "12.50"]).ok();
    assert_eq!((balance(&url, &alice, "alice"), balance(&url, &bob, "bob")), (-1_250, 1_250));
    stop_cleanly(&podman, &first);

    // A new container on the same volume: the ledger is there, and takes payments.
    let (second, url) = start(&mut names, 2);
    assert_eq!((balance(&url, &alice, "alice"), balance(&url, &bob, "bob")), (-1_250, 1_250));
    wallet(&url, &bob, &["pay", "--from", "bob", "alice", "2.50"]).ok();
    assert_eq!(balance(&url, &alice, "alice"), -1_000);
    // The image's own health check (`cercle-node probe` inside the container).
    podman.ok(&["healthcheck", "run", &second]);
    stop_cleanly(&podman, &second);
}
