//! `cercle audit export --format hledger` read by the real hledger: every account's
//! balance equals the ledger's and the total is zero, with the balance assertions of the
//! journal checked by hledger on the way. And the CSV export, read back field by field.
//!
//! The hledger test needs the `hledger` program (Debian/Ubuntu package `hledger`): where it
//! is not installed the test is ignored with the reason, unless `CERCLE_REQUIRE_ALL` is set
//! (CI), where it runs and fails (`tests/os_deps.rs`). The CSV test always runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cercle_e2e::{Node, cercle};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// hledger's version line, or `None` if it is not installed.
fn hledger_version() -> Option<String> {
    let out = Command::new("hledger").arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Minor units of an amount as hledger's CSV output writes it: `-1250.50 CHW`, `0`.
fn minor_units(text: &str) -> i64 {
    let number = text.trim().trim_end_matches("CHW").trim();
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let minor = cercle_core::parse_major(digits, 2).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    if negative { -minor } else { minor }
}

/// The fields of an RFC 4180 CSV text, row by row.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

/// A ledger with four firms, payments, a limit change, a freeze and an unfreeze, exported as
/// an hledger journal and as CSV.
struct Exported {
    node: Node,
    admin_key: std::path::PathBuf,
    firms: [&'static str; 4],
    journal: std::path::PathBuf,
    csv: std::path::PathBuf,
    // Last: removed after the node is gone.
    _tmp: tempfile::TempDir,
}

fn export() -> Exported {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::init_and_start(&data, &["--currency", "CHW"]);
    let url = node.url();
    let admin_key = data.join("admin.key");
    let admin = Some(admin_key.as_path());
    let firms = ["alice-bakery", "bob-mill", "carol-market", "0day-cafe"];
    let mut keys = BTreeMap::new();
    for name in firms {
        let file = tmp.path().join(format!("{name}.key"));
        let out = cercle(&url, None, &["keygen", "--out", path(&file)]).ok();
        let public = out.stdout.split_whitespace().last().unwrap().to_string();
        let mut args = vec!["admin", "register", name, "--pubkey", &public, "--credit-limit", "1000"];
        if name == "carol-market" {
            args.extend(["--max-balance", "2000"]);
        }
        args.extend(["--name", "A; \"quoted\" name"]);
        cercle(&url, admin, &args).ok();
        keys.insert(name, file);
    }
    let pay = |from: &str, to: &str, amount: &str, memo: &str| {
        let key = Some(keys[from].as_path());
        cercle(&url, key, &["pay", "--from", from, to, amount, "--memo", memo]).ok();
    };
    pay("alice-bakery", "bob-mill", "125.50", "flour, week 47");
    pay("bob-mill", "carol-market", "20", "tricky ; memo | with = signs");
    pay("carol-market", "0day-cafe", "0.05", "=SUM(A1:A2)");
    pay("0day-cafe", "alice-bakery", "999.99", "");
    cercle(
        &url,
        admin,
        &["admin", "set-limits", "alice-bakery", "--credit-limit", "3000", "--reason", "review"],
    )
    .ok();
    cercle(&url, admin, &["admin", "freeze", "bob-mill", "--reason", "dispute over invoice 17"]).ok();
    cercle(&url, admin, &["admin", "unfreeze", "bob-mill"]).ok();
    pay("alice-bakery", "carol-market", "1,234.56", "big order");
    // Alice leaves owing 360.07: her debt is written off to bob-mill, standing in for the
    // association's reserve (an entry that records balances, not an amount).
    let args = ["admin", "close", "alice-bakery", "--write-off-to", "bob-mill", "--reason", "left owing"];
    cercle(&url, admin, &args).ok();

    let journal = tmp.path().join("cercle.journal");
    cercle(&url, admin, &["audit", "export", "--out", path(&journal), "--format", "hledger"]).ok();
    let csv = tmp.path().join("cercle.csv");
    cercle(&url, admin, &["audit", "export", "--out", path(&csv), "--format", "csv"]).ok();
    Exported { node, admin_key, firms, journal, csv, _tmp: tmp }
}

#[test]
fn the_csv_export_reads_back_field_by_field() {
    let exported = export();
    // The CSV: a header, one row per entry, memos intact (and defused for spreadsheets).
    let rows = parse_csv(&std::fs::read_to_string(&exported.csv).unwrap());
    assert_eq!(rows[0][..4], ["sequence", "timestamp", "timestamp_ms", "kind"]);
    assert_eq!(rows.len(), 1 + 4 + 5 + 3 + 1);
    assert!(rows[1..].iter().all(|r| r.len() == rows[0].len()), "{rows:?}");
    let memo_column = rows[0].iter().position(|c| c == "memo").unwrap();
    let amount_column = rows[0].iter().position(|c| c == "amount").unwrap();
    assert_eq!(rows[5][memo_column], "flour, week 47");
    assert_eq!(rows[5][amount_column], "125.50");
    assert_eq!(rows[7][memo_column], "'=SUM(A1:A2)");
    assert_eq!(rows[12][amount_column], "1234.56");
}

#[test]
#[cfg_attr(not(hledger_tests), ignore = "needs hledger: apt-get install hledger")]
fn hledger_reads_the_export_with_the_ledgers_balances() {
    let Some(version) = hledger_version() else {
        panic!("this test needs the hledger program, which is not installed: apt-get install hledger");
    };
    let Exported { node, admin_key, firms, journal, _tmp: tmp, .. } = export();
    let url = node.url();
    let admin = Some(admin_key.as_path());
    eprintln!("checking the journal with {version}");
    // A journal of a period that starts after every entry: only the opening balances, which
    // must give the same balances, assertions included.
    let tomorrow = cercle_audit::utc_date(cercle_e2e::now_ms() + 86_400_000);
    let period = tmp.path().join("period.journal");
    let args = ["audit", "export", "--out", path(&period), "--format", "hledger", "--from", &tomorrow];
    cercle(&url, admin, &args).ok();
    for journal in [&journal, &period] {
        let out = Command::new("hledger")
            .args(["-f", path(journal), "balance", "--strict", "-O", "csv"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "hledger refused {}: {}\n{text}",
            journal.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = parse_csv(&text);
        assert_eq!(rows[0], ["account", "balance"]);
        let mut shown: BTreeMap<String, i64> = BTreeMap::new();
        for row in &rows[1..] {
            shown.insert(row[0].clone(), minor_units(&row[1]));
        }
        assert_eq!(shown.remove("total"), Some(0), "the balances sum to zero: {rows:?}");
        for name in firms {
            let ledger = cercle(&url, admin, &["--json", "balance", name]).ok().json()["balance_minor"]
                .as_i64()
                .unwrap();
            assert_eq!(shown.remove(name).unwrap_or(0), ledger, "{name} in {}", journal.display());
        }
        assert!(shown.is_empty(), "hledger shows accounts the ledger does not have: {shown:?}");
    }
}
