//! The auditor's tools end to end: a real node with over 1,000 entries (built with
//! `SubmitBatch`), exported with `cercle audit export`, replayed with
//! `cercle audit verify` from the file and from the node, then tampered with: every
//! change fails the audit and names the first bad line.

use std::path::Path;

use cercle_core::sign::Keypair;
use cercle_core::{AccountId, Genesis, OpKind, Operation, OperationId, RegisterAccount, SetLimits, Transfer};
use cercle_e2e::{Node, cercle, envelope, genesis, now_ms, read_key};
use cercle_proto as pb;

const FIRMS: usize = 12;
const TRANSFERS: usize = 1_000;

fn firm(i: usize) -> (AccountId, Keypair) {
    (AccountId::parse(&format!("firm-{i:02}")).unwrap(), Keypair::from_seed(&[i as u8 + 1; 32]))
}

fn op(n: u64, kind: OpKind) -> Operation {
    let mut id = [0xA0; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    Operation { id: OperationId(id), valid_until_ms: now_ms() + 3_600_000, kind }
}

/// Submits `ops` signed by `keys` in batches and checks every one was accepted.
async fn submit_all(node: &Node, g: &Genesis, signed: Vec<(Operation, &Keypair)>) {
    let mut client = node.client().await;
    for chunk in signed.chunks(500) {
        let envelopes = chunk.iter().map(|(op, key)| envelope(g, key, op)).collect();
        let results =
            client.submit_batch(pb::SubmitBatchRequest { envelopes }).await.unwrap().into_inner().results;
        for r in results {
            assert!(matches!(r.outcome, Some(pb::submit_result::Outcome::Receipt(_))), "{r:?}");
        }
    }
}

/// Registers the firms, makes the transfers, and a few administrative acts: the log then
/// holds `FIRMS + TRANSFERS + 3` entries.
async fn populate(node: &Node, g: &Genesis, admin: &Keypair) -> usize {
    let firms: Vec<_> = (0..FIRMS).map(firm).collect();
    let mut n = 0u64;
    let mut next = |kind| {
        n += 1;
        op(n, kind)
    };
    let mut signed = Vec::new();
    for (account, key) in &firms {
        let kind = OpKind::RegisterAccount(RegisterAccount {
            account: account.clone(),
            display_name: format!("Firm {account}"),
            keys: vec![key.public_key()],
            credit_limit_minor: 10_000_000,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: false,
        });
        signed.push((next(kind), admin));
    }
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..TRANSFERS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let payer = (x % FIRMS as u64) as usize;
        let payee = (payer + 1 + (x >> 8) as usize % (FIRMS - 1)) % FIRMS;
        let kind = OpKind::Transfer(Transfer {
            payer: firms[payer].0.clone(),
            payee: firms[payee].0.clone(),
            amount_minor: 1 + (x >> 16) as i64 % 50_000,
            memo: if i % 7 == 0 { format!("flour, \"week\" {i}") } else { format!("delivery {i}") },
            invoice_ref: (i % 3 == 0).then(|| format!("INV-{i}")),
            invoice: None,
        });
        signed.push((next(kind), &firms[payer].1));
    }
    let limits = SetLimits {
        account: firms[0].0.clone(),
        credit_limit_minor: Some(20_000_000),
        max_balance_minor: None,
        reason: "annual review".into(),
    };
    signed.push((next(OpKind::SetLimits(limits)), admin));
    signed
        .push((next(OpKind::FreezeAccount { account: firms[1].0.clone(), reason: "dispute".into() }), admin));
    signed
        .push((next(OpKind::UnfreezeAccount { account: firms[1].0.clone(), reason: String::new() }), admin));
    let count = signed.len();
    submit_all(node, g, signed).await;
    count
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Runs `cercle audit verify --log` on `bytes` and checks it fails naming `needles`.
#[track_caller]
fn cli_fails(url: &str, dir: &Path, name: &str, bytes: &[u8], needles: &[&str]) {
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let out = cercle(url, None, &["audit", "verify", "--log", path(&file)]).failed();
    assert_eq!(out.code, 5, "a failed audit exits 5");
    assert!(out.stderr.starts_with("error: AUDIT FAILED: "), "{}", out.stderr);
    for needle in needles {
        assert!(out.stderr.contains(needle), "{name}: {needle:?} not in {}", out.stderr);
    }
}

/// The line the library names for a jsonl log held in memory, or `None` if it passes.
fn named_line(bytes: &[u8]) -> Option<u64> {
    let options = cercle_audit::Options { line_offset: Some(1), ..Default::default() };
    let log = match cercle_audit::jsonl::from_reader(std::io::Cursor::new(bytes)) {
        Ok(log) => log,
        Err(e) => return Some(e.line.unwrap_or(0)),
    };
    let result = cercle_audit::verify(&log.genesis, log.entries, Some(&log.tree_head), &options, |_| {});
    result.err().map(|f| f.position().and_then(|p| p.line).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_log_verifies_and_any_tampering_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let auditor_key = tmp.path().join("auditor.key");
    let out = cercle("http://127.0.0.1:1", None, &["keygen", "--out", path(&auditor_key)]).ok();
    let auditor_pub = out.stdout.split_whitespace().last().unwrap().to_string();
    let node = Node::init_and_start(&data, &["--auditor-pubkey", &auditor_pub]);
    let url = node.url();
    let g = genesis(&node).await;
    let admin = read_key(&data.join("admin.key"));
    let entries = populate(&node, &g, &admin).await;
    assert!(entries >= 1_000);
    let auditor = Some(auditor_key.as_path());

    // Export, as the auditor; a firm may not.
    let file = tmp.path().join("log.jsonl");
    let out =
        cercle(&url, auditor, &["--json", "audit", "export", "--out", path(&file), "--format", "jsonl"]).ok();
    assert_eq!(out.json()["entry_count"], entries);
    let firm_key = tmp.path().join("firm.key");
    std::fs::write(&firm_key, cercle_core::sign::encode_key_file(&firm(0).1)).unwrap();
    let other = tmp.path().join("other.jsonl");
    let out = cercle(&url, Some(&firm_key), &["audit", "export", "--out", path(&other), "--format", "csv"]);
    assert!(out.failed().stderr.contains("permission denied"));
    assert!(!other.exists());
    // An existing file is not replaced without --force.
    let out = cercle(&url, auditor, &["audit", "export", "--out", path(&file), "--format", "jsonl"]).failed();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);

    // The file and the node give the same verdict.
    let from_file = cercle(&url, None, &["--json", "audit", "verify", "--log", path(&file)]).ok().json();
    assert_eq!(from_file["verdict"], "ok");
    assert_eq!(from_file["entries_checked"], entries);
    let from_node = cercle(&url, auditor, &["--json", "audit", "verify"]).ok().json();
    for field in ["entries_checked", "state_digest", "merkle_root", "last_entry_hash", "genesis_hash"] {
        assert_eq!(from_file[field], from_node[field], "{field}");
    }
    // A firm may not stream the log.
    cercle(&url, Some(&firm_key), &["audit", "verify"]).failed();

    // The replayed state is the node's.
    let bytes = std::fs::read(&file).unwrap();
    let log = cercle_audit::jsonl::from_reader(std::io::Cursor::new(&bytes)).unwrap();
    let verdict =
        cercle_audit::verify(&log.genesis, log.entries, Some(&log.tree_head), &Default::default(), |_| {})
            .unwrap();
    let admin_path = data.join("admin.key");
    for i in 0..FIRMS {
        let (account, _) = firm(i);
        let shown = cercle(&url, Some(&admin_path), &["--json", "balance", account.as_str()]).ok().json();
        let replayed = verdict.ledger.state().account(&account).unwrap();
        assert_eq!(shown["balance_minor"], replayed.balance_minor, "{account}");
        assert_eq!(shown["credit_limit_minor"], replayed.credit_limit_minor, "{account}");
    }

    // Flipping bytes, in process: every byte inside one transfer's line (line 100), and
    // a sample anywhere inside entry lines, each named by its line.
    let all = lines(&bytes);
    let mut offset = 0;
    let mut inside: Vec<(usize, u64)> = Vec::new(); // (byte, line), line ends left out
    for (i, line) in all.iter().enumerate() {
        let number = i as u64 + 1;
        if (2..=entries as u64 + 1).contains(&number) {
            inside.extend((offset..offset + line.len() - 1).map(|at| (at, number)));
        }
        offset += line.len();
    }
    let mut positions: Vec<(usize, u64)> = inside.iter().copied().filter(|&(_, line)| line == 100).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..120 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        positions.push(inside[(x % inside.len() as u64) as usize]);
    }
    for (at, line) in positions {
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x04;
        assert_eq!(named_line(&tampered), Some(line), "flipping byte {at}");
    }

    // And with the real CLI: a flip, a deletion, a swap, a duplicate, a truncation.
    let dir = tmp.path();
    let mut flipped = bytes.clone();
    let sig_at = all[..499].iter().map(Vec::len).sum::<usize>()
        + all[499].windows(11).position(|w| w == b"\"signature\"").unwrap()
        + 20;
    flipped[sig_at] ^= 0x01;
    cli_fails(&url, dir, "flipped.jsonl", &flipped, &["line 500"]);
    let edit = |f: &dyn Fn(&mut Vec<Vec<u8>>)| {
        let mut l = all.clone();
        f(&mut l);
        l.concat()
    };
    cli_fails(
        &url,
        dir,
        "deleted.jsonl",
        &edit(&|l| drop(l.remove(299))),
        &["line 300", "expected sequence 299"],
    );
    cli_fails(
        &url,
        dir,
        "swapped.jsonl",
        &edit(&|l| l.swap(599, 600)),
        &["line 600", "expected sequence 599"],
    );
    let dup = edit(&|l| l.insert(700, l[699].clone()));
    cli_fails(&url, dir, "duplicated.jsonl", &dup, &["line 701", "expected sequence 700"]);
    let last = entries + 1;
    let truncated = edit(&|l| drop(l.remove(last - 1)));
    cli_fails(&url, dir, "truncated.jsonl", &truncated, &[&format!("line {last}"), "are missing"]);
    // The genesis the association published is checked when given.
    let wrong = "00".repeat(32);
    let out =
        cercle(&url, None, &["audit", "verify", "--log", path(&file), "--genesis-hash", &wrong]).failed();
    assert!(out.stderr.contains("this is another ledger"), "{}", out.stderr);
    let right = hex_of(&g.hash());
    cercle(&url, None, &["audit", "verify", "--log", path(&file), "--genesis-hash", &right]).ok();
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
