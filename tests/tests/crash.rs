//! Crash test: the real node under concurrent load is killed with SIGKILL at random
//! moments and restarted. After every restart, every acknowledged operation is in the log
//! exactly once (at the sequence its receipt named), no operation id appears twice, every
//! balance is what the entries add up to, balances sum to zero, limits hold, and the node's
//! start-up replay of the log succeeded.
//!
//! Each round gets new acknowledgements before the kill, and the rounds take the node through
//! each of its recovery paths, as its log says: the state rolled forward or found in step
//! (plain kills), rebuilt from the whole log (rounds that damage the state database),
//! and a torn tail cut off the log (rounds that leave a partial record at its end, what a
//! kill between two writes of one group would leave: the node writes a group at once, so a
//! kill lands there only by chance, and here the test writes the partial record itself).
//!
//! `CERCLE_CRASH_ROUNDS` sets the number of kills (default 20, at least 3); `CERCLE_CRASH_SEED`
//! replays a run (the seed is printed).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cercle_core::sign::Keypair;
use cercle_e2e::load::{Acknowledged, CLIENTS, Rng, check, client_loop, register_accounts};
use cercle_e2e::startup::{StateRecovery, damage_state, errors, startups};
use cercle_e2e::{Node, genesis, now_ms, read_key};

/// A record header (length, index in its group, CRC) and part of its payload: the start of
/// a record whose write was cut short.
fn partial_record() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&300u32.to_be_bytes());
    bytes.extend_from_slice(&0u16.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&[0xab; 100]);
    bytes
}

/// Polls until the load has more than `count` acknowledgements; panics after a minute.
async fn wait_for_acks(acked: &Acknowledged, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() <= count {
        assert!(Instant::now() < deadline, "no acknowledgement within a minute");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_operations_survive_sigkill() {
    let rounds: u64 = std::env::var("CERCLE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    assert!(rounds >= 3, "CERCLE_CRASH_ROUNDS={rounds}: at least 3, one of each kind of round");
    let seed: u64 =
        std::env::var("CERCLE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| now_ms() | 1);
    eprintln!("crash test: {rounds} rounds, CERCLE_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node_log = data.join("node.log");
    let mut node = Node::init_and_start(&data, &[]);
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let firm = Keypair::from_seed(&[7; 32]);
    register_accounts(&node, &g, &admin, &firm).await;

    let acked: Acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let mut last_size = 0;
    for round in 0..rounds {
        let acked_before = acked.lock().unwrap().len();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let seed = rng.next_u64();
                tokio::spawn(client_loop(node.url(), g.clone(), firm.clone(), c, round, seed, acked.clone()))
            })
            .collect();
        // Let the load be acknowledged, run a random while more, then pull the plug.
        wait_for_acks(&acked, acked_before).await;
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        node.kill();
        for c in clients {
            c.await.unwrap();
        }
        let torn = match round % 3 {
            1 => {
                let bytes = partial_record();
                let mut log = OpenOptions::new().append(true).open(data.join("ledger/entries.log")).unwrap();
                log.write_all(&bytes).unwrap();
                log.sync_data().unwrap();
                Some(bytes.len() as u64)
            }
            2 => {
                damage_state(&data.join("ledger/state"));
                None
            }
            _ => None,
        };
        node = Node::start(&data);
        let acked_now = acked.lock().unwrap().clone();
        assert!(acked_now.len() > acked_before, "round {round} added acknowledgements");
        let size = check(&node, &g, &admin, &acked_now).await;
        assert!(size >= last_size, "the log shrank from {last_size} to {size} entries");
        let start = startups(&node_log).pop().expect("the node logged how it started");
        eprintln!("round {round}: {start:?}; {size} entries, {} acknowledged transfers", acked_now.len());
        assert_eq!(start.entries, size as u64, "round {round}: the node's count of entries");
        // A kill can itself tear the last write: Linux stops a write to a regular file
        // between pages once a fatal signal is pending, so a group being written when the
        // plug is pulled (never acknowledged: replies wait for its fdatasync) may be left
        // partial. Then the cut holds those bytes as well as any record this test appended.
        match (torn, start.torn_tail_cut_bytes) {
            (Some(appended), Some(cut)) => {
                assert!(cut >= appended, "round {round}: cut {cut} bytes, fewer than the {appended} appended")
            }
            (Some(appended), None) => panic!("round {round}: the {appended} bytes appended were not cut"),
            (None, Some(cut)) => eprintln!("round {round}: the kill tore the last write: {cut} bytes cut"),
            (None, None) => {}
        }
        // The contract allows a rebuild after any crash: only the damaged rounds are pinned.
        if round % 3 == 2 {
            assert_eq!(start.state, StateRecovery::Rebuilt, "round {round}: the state was damaged");
            assert!(start.state_moved_aside, "round {round}: the damaged state was kept aside");
        }
        last_size = size;
    }
    let all = startups(&node_log);
    assert_eq!(all.len() as u64, rounds + 1, "every start checked the state: {all:?}");
    let count = |f: &dyn Fn(&StateRecovery) -> bool| all.iter().filter(|s| f(&s.state)).count();
    let rolled = count(&|s| matches!(s, StateRecovery::RolledForward { .. }));
    let rebuilt = count(&|s| *s == StateRecovery::Rebuilt);
    let torn = all.iter().filter(|s| s.torn_tail_cut_bytes.is_some()).count();
    eprintln!(
        "recoveries: state verified {}, rolled forward {rolled}, rebuilt {rebuilt}; torn log tails cut {torn}",
        count(&|s| *s == StateRecovery::Verified)
    );
    assert!(rolled > 0 && rebuilt > 0 && torn > 0, "each recovery path ran: {all:?}");
    // The only errors: sled's, reading each damaged configuration.
    let (damaged, other): (Vec<_>, Vec<_>) =
        errors(&node_log).into_iter().partition(|e| e["target"] == "sled::config");
    assert!(other.is_empty(), "the node logged errors: {other:?}");
    let damaged_rounds = (0..rounds).filter(|r| r % 3 == 2).count();
    assert_eq!(damaged.len(), damaged_rounds, "one error per damaged state: {damaged:?}");
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
