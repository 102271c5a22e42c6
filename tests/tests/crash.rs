//! Crash test: the real node under concurrent load is killed with SIGKILL at random
//! moments and restarted. After every restart, every acknowledged operation is in the log
//! exactly once (at the sequence its receipt named), no operation id appears twice,
//! balances sum to zero, limits hold, and the node's start-up replay of the log succeeded.
//!
//! `CERCLE_CRASH_ROUNDS` sets the number of kills (default 20); `CERCLE_CRASH_SEED` replays
//! a run (the seed is printed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cercle_core::sign::Keypair;
use cercle_e2e::load::{Acknowledged, CLIENTS, Rng, check, client_loop, register_accounts};
use cercle_e2e::{Node, genesis, now_ms, read_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_operations_survive_sigkill() {
    let rounds: u64 = std::env::var("CERCLE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 =
        std::env::var("CERCLE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| now_ms() | 1);
    eprintln!("crash test: {rounds} rounds, CERCLE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &[]);
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[7; 32]);
    register_accounts(&node, &g, &admin, &firm).await;

    let acked: Acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let mut last_size = 0;
    for round in 0..rounds {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let seed = rng.next_u64();
                tokio::spawn(client_loop(node.url(), g.clone(), firm.clone(), c, round, seed, acked.clone()))
            })
            .collect();
        // Let the load run a random while, then pull the plug.
        tokio::time::sleep(Duration::from_millis(50 + rng.below(400))).await;
        node.kill();
        for c in clients {
            c.await.unwrap();
        }
        node = Node::start(&data);
        let acked_now = acked.lock().unwrap().clone();
        let size = check(&node, &g, &admin, &acked_now).await;
        assert!(size >= last_size, "the log shrank from {last_size} to {size} entries");
        eprintln!("round {round}: {size} entries, {} acknowledged transfers", acked_now.len());
        last_size = size;
    }
    assert!(acked.lock().unwrap().len() > rounds as usize, "the load made progress");
    let log = std::fs::read_to_string(data.join("node.log")).unwrap();
    assert!(!log.contains("ERROR"), "the node logged errors:\n{log}");
    node.stop();

    // Offline, the whole log verifies again, every signature included.
    let out = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["rebuild", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "rebuild failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("from {last_size} log entries")), "{text}");
}
