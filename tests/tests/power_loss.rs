//! Power-loss test: the node's data directory sits on `cercle-lossyfs`, a FUSE filesystem
//! that keeps writes not yet synced in memory and drops them at a simulated power cut.
//! The node runs under concurrent load, is killed with SIGKILL, the power is cut (every
//! unsynced write of the log and of sled is lost), and the node restarts. No acknowledged
//! operation may be lost, over at least 20 cuts.
//!
//! The test shows it tested something: every round gets new acknowledgements before the
//! cut, every cut drops unsynced bytes (the filesystem counts them), and over the run each
//! of the node's recovery paths ran, as its log says: the state rolled forward (sled is
//! never synced, so it lags after every cut), rebuilt from the whole log (in the rounds
//! where the state database is found damaged after the cut), and a torn tail cut off the log (in the
//! rounds where the power goes while the log's last group is being written: the filesystem
//! holds the node's `fdatasync` back, and the cut keeps all of the group but its last byte).
//!
//! Needs FUSE: where it is not installed the test is ignored with the reason, unless
//! `CERCLE_REQUIRE_ALL` is set (CI), where it runs and fails (`tests/os_deps.rs`).
//! `CERCLE_POWER_CUTS` sets the number of cuts (default 20, at least 3, so that each kind of
//! round comes); `CERCLE_POWER_SEED` replays a run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cercle_core::sign::Keypair;
use cercle_e2e::load::{Acknowledged, CLIENTS, Rng, check, client_loop, register_accounts};
use cercle_e2e::startup::{StateRecovery, damage_state, startups};
use cercle_e2e::{Node, genesis, now_ms, read_key};
use cercle_lossyfs::Mount;

/// How long a round may wait for the load to be acknowledged, or for the log to be written.
const ROUND_DEADLINE: Duration = Duration::from_secs(60);

/// What happens at a round's cut, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The power goes at a random moment.
    Plain,
    /// The power goes while the log's last group is written but not synced, and tears it.
    MidWrite,
    /// The power goes at a random moment, and the state database is found damaged after it.
    StateDamaged,
}

impl Cut {
    fn of_round(round: u64) -> Cut {
        match round % 3 {
            0 => Cut::Plain,
            1 => Cut::MidWrite,
            _ => Cut::StateDamaged,
        }
    }
}

/// Polls `ready` every millisecond until it holds; panics after `ROUND_DEADLINE`.
async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + ROUND_DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(fuse_tests), ignore = "needs FUSE: apt-get install fuse3")]
async fn acknowledged_operations_survive_power_cuts() {
    if let Err(reason) = cercle_lossyfs::available() {
        panic!("the power-loss test needs FUSE, which is unusable here: {reason}");
    }
    let cuts: u64 = std::env::var("CERCLE_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    assert!(cuts >= 3, "CERCLE_POWER_CUTS={cuts}: at least 3, one of each kind of cut");
    let seed: u64 =
        std::env::var("CERCLE_POWER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| now_ms() | 1);
    eprintln!("power-loss test: {cuts} cuts, CERCLE_POWER_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("backing");
    let mountpoint = tmp.path().join("mnt");
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&mountpoint).unwrap();
    let mount = Mount::new(&backing, &mountpoint).expect("mount the lossy filesystem");
    let data = mountpoint.join("data");
    let log_file = data.join("ledger").join("entries.log");

    // The node's own log goes outside the lossy mount, so it survives the cuts.
    let node_log = tmp.path().join("node.log");
    let mut node = Node::init_and_start(&data, &[]);
    node.kill();
    node = Node::start_with_log(&data, &node_log);
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[9; 32]);
    register_accounts(&node, &g, &admin, &firm).await;

    let acked: Acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let acked_count = || acked.lock().unwrap().len();
    for round in 0..cuts {
        let kind = Cut::of_round(round);
        let acked_before = acked_count();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let seed = rng.next_u64();
                tokio::spawn(client_loop(
                    node.url(),
                    g.clone(),
                    firm.clone(),
                    c,
                    1_000 + round,
                    seed,
                    acked.clone(),
                ))
            })
            .collect();
        wait_until("this round's first acknowledgement", || acked_count() > acked_before).await;
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        let (cut, torn) = if kind == Cut::MidWrite {
            cut_mid_write(&mount, &mut node, &log_file).await
        } else {
            node.kill();
            (mount.power_cut(), false)
        };
        assert!(cut.dropped_bytes > 0, "round {round}: the cut found nothing unsynced, so tested nothing");
        if kind == Cut::StateDamaged {
            damage_state(&data.join("ledger").join("state"));
        }
        for c in clients {
            c.await.unwrap();
        }
        node = Node::start_with_log(&data, &node_log);
        let acked_now = acked.lock().unwrap().clone();
        assert!(acked_now.len() > acked_before, "round {round} added acknowledgements");
        let size = check(&node, &g, &admin, &acked_now).await;
        let start = startups(&node_log).pop().expect("the node logged how it started");
        eprintln!(
            "cut {round} ({kind:?}): {} unsynced bytes of {} files dropped; {start:?}; {size} entries, {} acknowledged",
            cut.dropped_bytes,
            cut.files,
            acked_now.len()
        );
        assert_eq!(start.entries, size as u64, "round {round}: the node's count of entries");
        // After the other cuts the state lags behind the log (rolled forward), or had caught
        // up; the contract also allows a rebuild, so only the damaged rounds are pinned.
        if kind == Cut::StateDamaged {
            assert_eq!(start.state, StateRecovery::Rebuilt, "round {round}");
            assert!(start.state_moved_aside, "round {round}: the damaged state was kept aside");
        }
        if torn {
            assert!(start.torn_tail_cut_bytes.is_some_and(|b| b > 0), "round {round}: the torn tail was cut");
        } else {
            assert_eq!(start.torn_tail_cut_bytes, None, "round {round}: nothing was torn");
        }
    }
    let all = startups(&node_log);
    assert_eq!(all.len() as u64, cuts + 1, "every start checked the state: {all:?}");
    let rolled = all.iter().filter(|s| matches!(s.state, StateRecovery::RolledForward { .. })).count();
    let rebuilt = all.iter().filter(|s| s.state == StateRecovery::Rebuilt).count();
    let torn = all.iter().filter(|s| s.torn_tail_cut_bytes.is_some()).count();
    eprintln!("recoveries: state rolled forward {rolled}, rebuilt {rebuilt}; torn log tails cut {torn}");
    assert!(rolled > 0 && rebuilt > 0 && torn > 0, "each recovery path ran: {all:?}");
    node.stop();
    mount.unmount().unwrap();
}

/// Cuts the power while the node is inside the `fdatasync` of a group it wrote to the log:
/// syncs are held back until the log has unsynced bytes, the node is killed, and the cut
/// tears the log, keeping all of the unsynced group but its last byte. Returns the cut, and
/// whether the log was torn (always, unless the node never wrote again).
async fn cut_mid_write(mount: &Mount, node: &mut Node, log_file: &Path) -> (cercle_lossyfs::PowerCut, bool) {
    let hold = mount.hold_syncs(log_file).expect("hold the log's syncs");
    let unsynced = || mount.file_sizes(log_file).map(|s| s.visible - s.durable).unwrap_or(0);
    wait_until("the node writes to its log with syncs held back", || {
        mount.syncs_waiting() > 0 && unsynced() > 1
    })
    .await;
    let dying = node.kill_without_waiting().expect("the node was running");
    let sizes = mount.file_sizes(log_file).expect("the log's sizes");
    let cut = mount.power_cut_tearing(log_file, sizes.visible - 1).expect("a torn cut");
    drop(hold);
    tokio::task::spawn_blocking(move || {
        let mut dying = dying;
        dying.wait()
    })
    .await
    .expect("waiting for the node")
    .expect("the node exits");
    (cut, sizes.visible > sizes.durable + 1)
}
