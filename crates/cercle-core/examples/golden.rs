//! Writes the golden log (`tests/fixtures/golden/`) and the known-answer vectors
//! (`tests/fixtures/vectors.json`) from fixed keys, times and operations.
//!
//! Run it only to create the fixtures, never to refresh them: they are frozen, and the tests
//! `golden` and `vectors` hold every later change to them. A change that needs other bytes
//! is a new format version, with fixtures of its own beside these.
//!
//! ```text
//! cargo run -p cercle-core --example golden -- tests/fixtures
//! ```

use std::fmt::Write as _;
use std::path::Path;

use cercle_core::sign::{self, Keypair};
use cercle_core::{
    AccountId, BalanceAfter, Entry, Envelope, Executed, Genesis, InvoiceId, InvoiceParties, IssueInvoice,
    Ledger, LedgerId, OpKind, Operation, OperationId, RegisterAccount, Replayer, Role, RunClearing,
    SectionTag, SetLimits, SetRole, Transfer, merkle,
};

/// 2026-09-21T08:00:00Z, the golden log's first entry.
const START_MS: u64 = 1_790_000_000_000;
const DAY_MS: u64 = 86_400_000;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: golden DIR (DIR/golden/ and DIR/vectors.json are written)");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir.join("golden")).expect("create the fixture directory");
    write_golden(&dir.join("golden"));
    std::fs::write(dir.join("vectors.json"), vectors()).expect("write vectors.json");
}

fn account(name: &str) -> AccountId {
    AccountId::parse(name).expect("a valid handle")
}

fn parties(n: u8, payee: &str, payer: &str) -> InvoiceParties {
    InvoiceParties { invoice: InvoiceId([n; 16]), payee: account(payee), payer: account(payer) }
}

fn genesis(admin: &Keypair) -> Genesis {
    Genesis {
        ledger_id: LedgerId(*b"golden-ledger-v1"),
        currency: "CHW".into(),
        exponent: 2,
        admin_keys: vec![admin.public_key()],
        auditor_keys: vec![Keypair::from_seed(&[2; 32]).public_key()],
        node_key: Keypair::from_seed(&[3; 32]).public_key(),
        quorum: 1,
        day_offset_minutes: 0,
    }
}

struct Writer {
    genesis: Genesis,
    ledger: Ledger,
    entries: Vec<Entry>,
}

impl Writer {
    /// Executes `kind` signed by `key`, one second after the previous entry; it must be
    /// accepted.
    fn run(&mut self, key: &Keypair, kind: OpKind) {
        let n = self.entries.len() as u64 + 1;
        let now_ms = START_MS + n * 1_000;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(b"golden-o");
        id[8..].copy_from_slice(&n.to_be_bytes());
        let op = Operation { id: OperationId(id), valid_until_ms: now_ms + DAY_MS, kind };
        let body = cercle_core::body::encode(&op);
        let envelope =
            Envelope::single(body.clone(), key.public_key(), key.sign_op(&self.genesis.ledger_id, &body));
        match self.ledger.execute(now_ms, envelope, &op) {
            Ok(Executed::Accepted { entry, .. }) => self.entries.push(entry),
            other => panic!("operation {n} ({}) was not accepted: {other:?}", op.kind.name()),
        }
    }
}

/// Three firms, every kind of operation, and a clearing run with credit.
fn write_golden(dir: &Path) {
    let admin = Keypair::from_seed(&[1; 32]);
    let alice = Keypair::from_seed(&[11; 32]);
    let bob = Keypair::from_seed(&[12; 32]);
    let cleo = Keypair::from_seed(&[13; 32]);
    let cleo_new = Keypair::from_seed(&[14; 32]);
    let genesis = genesis(&admin);
    let mut w =
        Writer { genesis: genesis.clone(), ledger: Ledger::new(genesis.clone()), entries: Vec::new() };
    let register = |name: &str, key: &Keypair, limit: i64, max: Option<i64>| {
        OpKind::RegisterAccount(RegisterAccount {
            account: account(name),
            display_name: format!("{name} (golden)"),
            keys: vec![key.public_key()],
            credit_limit_minor: limit,
            max_balance_minor: max,
            profile: Default::default(),
            allow_shared_key: false,
        })
    };
    w.run(&admin, register("alice-bakery", &alice, 100_000, None));
    w.run(&admin, register("bob-mill", &bob, 100_000, Some(1_000_000)));
    w.run(&admin, register("cleo-farm", &cleo, 50_000, None));
    w.run(
        &admin,
        OpKind::SetLimits(SetLimits {
            account: account("cleo-farm"),
            credit_limit_minor: Some(80_000),
            max_balance_minor: Some(Some(500_000)),
            reason: "annual review".into(),
        }),
    );
    let pay = |payer: &str, payee: &str, amount_minor: i64, invoice: Option<u8>| {
        OpKind::Transfer(Transfer {
            payer: account(payer),
            payee: account(payee),
            amount_minor,
            memo: "flour, 25 kg × 3 — livraison".into(),
            invoice_ref: invoice.map(|n| format!("F-{n}")),
            invoice: invoice.map(|n| InvoiceId([n; 16])),
        })
    };
    w.run(&alice, pay("alice-bakery", "bob-mill", 12_345, None));
    let cleo_id = account("cleo-farm");
    w.run(
        &admin,
        OpKind::FreezeAccount { account: cleo_id.clone(), reason: "dispute over a delivery".into() },
    );
    // A key is replaced while the account is frozen: a dispute is when a key goes missing.
    w.run(
        &admin,
        OpKind::RotateKeys {
            account: cleo_id.clone(),
            keys: vec![cleo_new.public_key()],
            allow_shared_key: false,
        },
    );
    w.run(&admin, OpKind::UnfreezeAccount { account: cleo_id, reason: String::new() });
    let issue = |n: u8, payee: &str, payer: &str, amount_minor: i64, due_day: Option<u32>, excluded: bool| {
        OpKind::IssueInvoice(IssueInvoice {
            invoice: InvoiceId([n; 16]),
            payee: account(payee),
            payer: account(payer),
            amount_minor,
            local_share_percent: 100,
            due_day,
            reference: format!("F-{n}"),
            excluded_from_clearing: excluded,
        })
    };
    // A cycle with a remainder: set-off clears 10,000 around it, credit settles the rest.
    w.run(&bob, issue(1, "bob-mill", "alice-bakery", 30_000, Some(20_720), false));
    w.run(&cleo_new, issue(2, "cleo-farm", "bob-mill", 20_000, Some(20_730), false));
    w.run(&alice, issue(3, "alice-bakery", "cleo-farm", 10_000, None, false));
    w.run(&alice, OpKind::AcceptInvoice(parties(1, "bob-mill", "alice-bakery")));
    w.run(&bob, OpKind::AcceptInvoice(parties(2, "cleo-farm", "bob-mill")));
    w.run(&cleo_new, OpKind::AcceptInvoice(parties(3, "alice-bakery", "cleo-farm")));
    w.run(&bob, issue(4, "bob-mill", "cleo-farm", 5_000, None, false));
    w.run(
        &cleo_new,
        OpKind::RejectInvoice {
            invoice: parties(4, "bob-mill", "cleo-farm"),
            reason: "never ordered".into(),
        },
    );
    w.run(&alice, issue(5, "alice-bakery", "bob-mill", 7_000, None, false));
    w.run(
        &alice,
        OpKind::CancelInvoice {
            invoice: parties(5, "alice-bakery", "bob-mill"),
            reason: "issued twice".into(),
        },
    );
    w.run(&cleo_new, issue(6, "cleo-farm", "alice-bakery", 9_000, Some(20_700), false));
    w.run(
        &alice,
        OpKind::SetInvoiceClearing { invoice: parties(6, "cleo-farm", "alice-bakery"), excluded: true },
    );
    w.run(&alice, pay("alice-bakery", "cleo-farm", 4_000, Some(6)));
    w.run(&admin, OpKind::RunClearing(RunClearing { with_credit: true, reason: "monthly clearing".into() }));
    assert!(
        w.entries.last().and_then(|e| e.section(SectionTag::Clearing)).is_some(),
        "the run cleared something"
    );

    // Check it replays, as the test will, before writing it.
    let mut replayer = Replayer::new(genesis.clone(), true);
    for entry in &w.entries {
        replayer.replay(entry).expect("the golden log replays");
    }
    let ledger = replayer.into_ledger();
    let hashes: Vec<_> = w.entries.iter().map(Entry::hash).collect();
    let mut lines = String::new();
    for entry in &w.entries {
        writeln!(lines, "{}", hex::encode(entry.encode())).unwrap();
    }
    std::fs::write(dir.join("genesis.hex"), format!("{}\n", hex::encode(genesis.encode()))).unwrap();
    std::fs::write(dir.join("entries.hex"), lines).unwrap();
    let expected = format!(
        "entries {}\nhead_hash {}\nmerkle_root {}\nstate_digest {}\n",
        ledger.head().size,
        hex::encode(ledger.head().hash),
        hex::encode(merkle::root(&hashes)),
        hex::encode(ledger.state().digest_v1()),
    );
    std::fs::write(dir.join("expected.txt"), expected).unwrap();
}

/// The known-answer vectors: each input spelled out, each output as the code computes it.
fn vectors() -> String {
    let key = Keypair::from_seed(&[0x42; 32]);
    let ledger_id = LedgerId(*b"vectors-ledger-1");
    let op = Operation {
        id: OperationId(*b"vector-operation"),
        valid_until_ms: 1_790_000_060_000,
        kind: OpKind::Transfer(Transfer {
            payer: account("alice-bakery"),
            payee: account("bob-mill"),
            amount_minor: 125_050,
            memo: "pain au levain ×40".into(),
            invoice_ref: Some("F-2026-0042".into()),
            invoice: Some(InvoiceId(*b"vector-invoice-1")),
        }),
    };
    let body = cercle_core::body::encode(&op);
    let message = sign::op_message(&ledger_id, &body);
    let signature = key.sign_op(&ledger_id, &body);
    let entry = Entry {
        sequence: 7,
        timestamp_ms: 1_790_000_000_000,
        prev_hash: [0xab; 32],
        envelope: Envelope::single(body.clone(), key.public_key(), signature),
        balances_after: vec![
            BalanceAfter { account: account("alice-bakery"), balance_minor: -125_050 },
            BalanceAfter { account: account("bob-mill"), balance_minor: 125_050 },
        ],
        sections: vec![],
    };
    let leaves: Vec<[u8; 32]> = (0u8..7).map(|i| merkle::leaf_hash(&[i])).collect();
    let roots: Vec<String> = (0..=leaves.len())
        .map(|n| {
            format!("    {{\"leaves\": {n}, \"root\": \"{}\"}}", hex::encode(merkle::root(&leaves[..n])))
        })
        .collect();
    // GetAccountRequest { account: "alice-bakery" }, as prost and protobuf-es encode it.
    let request = [&[0x0a, 12][..], b"alice-bakery"].concat();
    let read_message = sign::read_auth_message(&ledger_id, "GetAccount", 1_790_000_000_000, &request);
    let read_signature = key.sign(&read_message);
    format!(
        r#"{{
  "about": "Known-answer vectors of Cercle's formats. Inputs are spelled out, outputs are what the code computed when they were frozen. Written once by crates/cercle-core/examples/golden.rs; held by crates/cercle-core/tests/vectors.rs.",
  "key": {{"seed": "{seed}", "public_key": "{public_key}"}},
  "ledger_id": "{ledger_id}",
  "operation": {{
    "id": "{op_id}",
    "valid_until_ms": {valid_until},
    "transfer": {{"payer": "alice-bakery", "payee": "bob-mill", "amount_minor": 125050, "memo": "pain au levain ×40", "invoice_ref": "F-2026-0042", "invoice": "{invoice}"}},
    "body": "{body}",
    "signing_message": "{message}",
    "signature": "{signature}"
  }},
  "entry": {{
    "sequence": 7,
    "timestamp_ms": 1790000000000,
    "prev_hash": "{prev_hash}",
    "balances_after": [{{"account": "alice-bakery", "balance_minor": -125050}}, {{"account": "bob-mill", "balance_minor": 125050}}],
    "encoding": "{entry_encoding}",
    "hash": "{entry_hash}"
  }},
  "merkle": {{
    "leaves": "leaf i is SHA-256(0x00 || [i]), for i = 0, 1, ...",
    "roots": [
{roots}
    ]
  }},
  "read_auth": {{
    "method": "GetAccount",
    "timestamp_ms": 1790000000000,
    "request": "{request}",
    "message": "{read_message}",
    "signature": "{read_signature}"
  }},
  "governance_operations": [
{governance}
  ]
}}
"#,
        seed = hex::encode(key.seed()),
        public_key = hex::encode(key.public_key().0),
        ledger_id = hex::encode(ledger_id.0),
        op_id = hex::encode(op.id.0),
        valid_until = op.valid_until_ms,
        invoice = hex::encode(b"vector-invoice-1"),
        body = hex::encode(&body),
        message = hex::encode(&message),
        signature = hex::encode(signature),
        prev_hash = hex::encode([0xab; 32]),
        entry_encoding = hex::encode(entry.encode()),
        entry_hash = hex::encode(entry.hash()),
        roots = roots.join(",\n"),
        request = hex::encode(&request),
        read_message = hex::encode(&read_message),
        read_signature = hex::encode(read_signature),
        governance = governance_vectors(&key, &ledger_id),
    )
}

/// The governance operations' vectors (appended when those operations were added): a role
/// given and one taken, a closure, a registration and a rotation that allow a shared key.
fn governance_vectors(key: &Keypair, ledger_id: &LedgerId) -> String {
    let other = Keypair::from_seed(&[0x43; 32]).public_key();
    let other_hex = hex::encode(other.0);
    let cases: Vec<(OpKind, String)> = vec![
        (
            OpKind::SetRole(SetRole {
                role: Role::Auditor,
                key: other,
                present: true,
                reason: "commissaire aux comptes 2026".into(),
            }),
            format!(
                r#""kind": "set_role", "role": "auditor", "public_key": "{other_hex}", "present": true, "reason": "commissaire aux comptes 2026""#
            ),
        ),
        (
            OpKind::SetRole(SetRole {
                role: Role::Admin,
                key: other,
                present: false,
                reason: "mandat terminé".into(),
            }),
            format!(
                r#""kind": "set_role", "role": "administrator", "public_key": "{other_hex}", "present": false, "reason": "mandat terminé""#
            ),
        ),
        (
            OpKind::CloseAccount {
                account: account("alice-bakery"),
                reason: "cessation d'activité".into(),
                write_off_to: None,
            },
            r#""kind": "close_account", "account": "alice-bakery", "reason": "cessation d'activité""#
                .to_string(),
        ),
        (
            OpKind::RegisterAccount(RegisterAccount {
                account: account("bob-mill"),
                display_name: "Moulin Bob".into(),
                keys: vec![other],
                credit_limit_minor: 50_000,
                max_balance_minor: None,
                profile: Default::default(),
                allow_shared_key: true,
            }),
            format!(
                r#""kind": "register_account", "account": "bob-mill", "display_name": "Moulin Bob", "public_key": "{other_hex}", "credit_limit_minor": 50000, "allow_shared_key": true"#
            ),
        ),
        (
            OpKind::RotateKeys { account: account("bob-mill"), keys: vec![other], allow_shared_key: true },
            format!(
                r#""kind": "rotate_keys", "account": "bob-mill", "public_key": "{other_hex}", "allow_shared_key": true"#
            ),
        ),
    ];
    let lines: Vec<String> = cases
        .into_iter()
        .enumerate()
        .map(|(n, (kind, inputs))| {
            let op = Operation { id: OperationId([0x60 + n as u8; 16]), valid_until_ms: 1_790_000_060_000, kind };
            let body = cercle_core::body::encode(&op);
            format!(
                r#"    {{"id": "{}", "valid_until_ms": {}, {inputs}, "body": "{}", "signing_message": "{}", "signature": "{}"}}"#,
                hex::encode(op.id.0),
                op.valid_until_ms,
                hex::encode(&body),
                hex::encode(sign::op_message(ledger_id, &body)),
                hex::encode(key.sign_op(ledger_id, &body)),
            )
        })
        .collect();
    lines.join(",\n")
}
