//! Invoices and clearing end to end, with the real node and the real CLI: firms issue and
//! accept invoices around a loop, one pays part of one, the administrator looks at the
//! plan and runs clearing; the invoices are reduced, the balances unchanged, and the
//! auditor's replay (which checks the clearing certificate) passes, also after a restart.

use std::path::{Path, PathBuf};

use cercle_e2e::{Node, assert_mentions, cercle};

struct Firm {
    name: &'static str,
    key: PathBuf,
}

fn firm(url: &str, dir: &Path, admin: &Path, name: &'static str) -> Firm {
    let key = dir.join(format!("{name}.key"));
    let out = cercle(url, None, &["keygen", "--out", key.to_str().unwrap()]).ok();
    let pubkey = out.stdout.split_whitespace().last().expect("public key").to_string();
    cercle(url, Some(admin), &["admin", "register", name, "--pubkey", &pubkey, "--credit-limit", "1000"])
        .ok();
    Firm { name, key }
}

/// `payee` invoices `payer` for `amount` through the CLI; `payer` accepts. Returns the id.
fn obligation(url: &str, payee: &Firm, payer: &Firm, amount: &str, due: &str) -> String {
    let out = cercle(
        url,
        Some(&payee.key),
        &[
            "--json",
            "invoice",
            "issue",
            "--from",
            payee.name,
            "--to",
            payer.name,
            amount,
            "--due",
            due,
            "--reference",
            "F-1",
        ],
    )
    .ok()
    .json();
    let id = out["invoice_id"].as_str().expect("invoice_id").to_string();
    assert_eq!(id.len(), 32);
    cercle(url, Some(&payer.key), &["invoice", "accept", &id]).ok();
    id
}

fn show(url: &str, firm: &Firm, id: &str) -> serde_json::Value {
    cercle(url, Some(&firm.key), &["--json", "invoice", "show", id]).ok().json()
}

fn open_minor(url: &str, firm: &Firm, id: &str) -> i64 {
    show(url, firm, id)["open_minor"].as_i64().expect("open_minor")
}

fn balance_minor(url: &str, firm: &Firm) -> i64 {
    cercle(url, Some(&firm.key), &["--json", "balance", firm.name]).ok().json()["balance_minor"]
        .as_i64()
        .expect("balance_minor")
}

#[test]
fn invoices_are_cleared_around_a_loop_and_the_audit_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &["--currency", "CHW"]);
    let url = node.url();
    let admin_key = data.join("admin.key");
    let admin = Some(admin_key.as_path());
    let a = firm(&url, tmp.path(), &admin_key, "alpha-bakery");
    let b = firm(&url, tmp.path(), &admin_key, "beta-mill");
    let c = firm(&url, tmp.path(), &admin_key, "gamma-farm");

    // A loop: b owes a 100, c owes b 70, a owes c 50; two invoices on one pair.
    let ab = obligation(&url, &a, &b, "100", "2099-12-01");
    let bc = obligation(&url, &b, &c, "70", "2099-12-15");
    let ca = obligation(&url, &c, &a, "30", "2099-12-31");
    let ca_early = obligation(&url, &c, &a, "20", "2099-12-10");
    let invoice = show(&url, &a, &ab);
    assert_eq!(invoice["state"], "accepted");
    assert_eq!(
        (invoice["amount_minor"].as_i64(), invoice["open_minor"].as_i64()),
        (Some(10_000), Some(10_000))
    );
    assert_eq!(invoice["due_date"], "2099-12-01");

    // b pays 10 of what it owes a: the invoice is partly settled, money moves.
    cercle(&url, Some(&b.key), &["invoice", "pay", &ab, "10"]).ok();
    assert_eq!(open_minor(&url, &a, &ab), 9_000);
    assert_eq!(show(&url, &b, &ab)["state"], "partly_settled");
    let balances = [balance_minor(&url, &a), balance_minor(&url, &b), balance_minor(&url, &c)];
    assert_eq!(balances, [1_000, -1_000, 0]);

    // Bad inputs: refused with the numbers, nothing changes.
    let out = cercle(&url, Some(&b.key), &["invoice", "pay", &ab, "95"]).failed();
    assert_mentions(&out, "exceeds what remains open on invoice");
    // To a firm that is not a party, another firms' invoice does not exist.
    let out = cercle(&url, Some(&a.key), &["invoice", "accept", &bc]).failed();
    assert_mentions(&out, "unknown invoice");
    let out = cercle(&url, Some(&a.key), &["invoice", "show", "zz"]).failed();
    assert_mentions(&out, "invalid invoice id");
    let out = cercle(
        &url,
        Some(&a.key),
        &["invoice", "issue", "--from", a.name, "--to", b.name, "5", "--local-share", "0"],
    )
    .failed();
    assert_mentions(&out, "local-share");
    let out = cercle(
        &url,
        Some(&a.key),
        &["invoice", "issue", "--from", a.name, "--to", b.name, "5", "--due", "2026-02-30"],
    )
    .failed();
    assert_mentions(&out, "is not a date");
    // A due date in the past is a typo unless said otherwise.
    let past = ["invoice", "issue", "--from", a.name, "--to", b.name, "5", "--due", "2020-01-31"];
    let out = cercle(&url, Some(&a.key), &past).failed();
    assert_eq!(out.code, 2);
    assert_mentions(&out, "the due date 2020-01-31 is in the past");
    let out = cercle(&url, Some(&a.key), &[&past[..], &["--allow-past-due"]].concat()).ok();
    let late = out.stdout.trim().to_string();
    assert_eq!(show(&url, &a, &late)["due_date"], "2020-01-31");
    cercle(&url, Some(&a.key), &["invoice", "cancel", &late]).ok();
    assert_eq!(open_minor(&url, &a, &ab), 9_000);

    // Without --json, `issue` prints the id alone on stdout (for `ID=$(cercle invoice issue …)`)
    // and the receipt on stderr; the payee may cancel it while it is only issued.
    let out = cercle(&url, Some(&a.key), &["invoice", "issue", "--from", a.name, "--to", b.name, "5"]).ok();
    let id = out.stdout.trim_end_matches('\n');
    assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()), "stdout {:?}", out.stdout);
    assert!(out.stderr.contains("invoice issued; accepted: entry"), "{}", out.stderr);
    assert_eq!(show(&url, &a, id)["state"], "issued");
    cercle(&url, Some(&a.key), &["invoice", "cancel", id]).ok();
    assert_eq!(show(&url, &a, id)["state"], "cancelled");

    // A firm may not plan clearing; the administrator's dry run changes nothing.
    cercle(&url, Some(&a.key), &["admin", "clearing", "--dry-run"]).failed();
    let plan = cercle(&url, admin, &["--json", "admin", "clearing", "--dry-run"]).ok().json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["obligations"], 4);
    assert_eq!(plan["firms"], 3);
    assert_eq!(plan["total_debt_minor"], 9_000 + 7_000 + 5_000);
    assert_eq!(plan["setoff_minor"], 3 * 5_000);
    assert_eq!(plan["cleared_minor"], 3 * 5_000);
    assert_eq!(plan["setoff_basis_points"], 7_143);
    assert_eq!(open_minor(&url, &c, &ca), 3_000, "a dry run changes nothing");
    // 15,000 of 21,000: the same format as `cercle clearing solve`, rounded half up.
    let text = cercle(&url, admin, &["admin", "clearing", "--dry-run"]).ok().stdout;
    assert!(text.contains("(71.43% of the debt)"), "{text}");

    // The run: every obligation of the loop goes down by 50, balances do not move.
    let run = cercle(&url, admin, &["--json", "admin", "clearing", "--reason", "December"]).ok().json();
    assert_eq!(run["dry_run"], false);
    assert_eq!(run["setoff_minor"], 15_000);
    assert!(run["receipt"]["sequence"].as_u64().is_some());
    assert_eq!(open_minor(&url, &a, &ab), 4_000);
    assert_eq!(open_minor(&url, &b, &bc), 2_000);
    assert_eq!(open_minor(&url, &c, &ca), 0);
    assert_eq!(open_minor(&url, &c, &ca_early), 0);
    assert_eq!(show(&url, &a, &ab)["cleared_minor"], 5_000);
    assert_eq!(show(&url, &a, &ca)["state"], "settled");
    assert_eq!([balance_minor(&url, &a), balance_minor(&url, &b), balance_minor(&url, &c)], balances);
    let out = cercle(&url, admin, &["admin", "clearing"]).failed();
    assert_mentions(&out, "nothing to clear");

    // Lists, and the firm's history names the run.
    let listed = cercle(&url, Some(&a.key), &["--json", "invoice", "list", a.name, "--open"]).ok().json();
    let open: Vec<&str> =
        listed["invoices"].as_array().unwrap().iter().map(|i| i["invoice_id"].as_str().unwrap()).collect();
    assert_eq!(open, vec![ab.as_str()]);
    let history = cercle(&url, Some(&a.key), &["history", a.name]).ok();
    assert_mentions(&history, "run_clearing");
    // An invoice alpha issued to beta goes *to* beta, from alpha's side.
    let issued_to_b = history.stdout.lines().find(|l| l.contains("issue_invoice") && l.contains(b.name));
    assert!(issued_to_b.is_some_and(|l| l.contains(&format!("to {}", b.name))), "{}", history.stdout);
    let history = cercle(&url, Some(&a.key), &["--json", "history", a.name]).ok().json();
    let entries = history["entries"].as_array().unwrap();
    let run = entries.iter().find(|e| e["kind"] == "run_clearing").expect("the run");
    assert_eq!(run["reason"], "December");
    let paid = entries.iter().find(|e| e["kind"] == "transfer").expect("the invoice payment");
    assert_eq!(
        (paid["invoice_ref"].as_str(), paid["invoice_id"].as_str()),
        (Some(ab.as_str()), Some(ab.as_str()))
    );
    assert_eq!((paid["direction"].as_str(), paid["amount_minor"].as_i64()), (Some("from"), Some(1_000)));

    // The auditor replays everything, the clearing certificate included; also after a restart.
    cercle(&url, admin, &["audit", "verify"]).ok();
    node.stop();
    let node = Node::start(&data);
    let url = node.url();
    assert_eq!(open_minor(&url, &a, &ab), 4_000);
    let export = tmp.path().join("log.jsonl");
    cercle(&url, admin, &["audit", "export", "--format", "jsonl", "--out", export.to_str().unwrap()]).ok();
    let verified =
        cercle(&url, None, &["--json", "audit", "verify", "--log", export.to_str().unwrap()]).ok().json();
    assert_eq!(verified["verdict"], "ok", "{verified}");
}

#[test]
fn clearing_with_credit_settles_a_chain_within_the_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let node = Node::init_and_start(&data, &["--currency", "CHW"]);
    let url = node.url();
    let admin_key = data.join("admin.key");
    let admin = Some(admin_key.as_path());
    let a = firm(&url, tmp.path(), &admin_key, "alpha-bakery");
    let b = firm(&url, tmp.path(), &admin_key, "beta-mill");
    let c = firm(&url, tmp.path(), &admin_key, "gamma-farm");
    // a owes b 1,500, b owes c 1,500: no loop, so set-off alone clears nothing.
    let ab = obligation(&url, &b, &a, "1500", "2099-12-01");
    let bc = obligation(&url, &c, &b, "1500", "2099-12-01");
    let plan = cercle(&url, admin, &["--json", "admin", "clearing", "--dry-run"]).ok().json();
    assert_eq!(plan["cleared_minor"], 0);
    let out = cercle(&url, admin, &["admin", "clearing"]).failed();
    assert_mentions(&out, "nothing to clear");
    let plan =
        cercle(&url, admin, &["--json", "admin", "clearing", "--dry-run", "--with-credit"]).ok().json();
    assert_eq!(plan["setoff_minor"], 0);
    assert_eq!(plan["credit_minor"], 100_000 + 150_000);
    let run = cercle(&url, admin, &["--json", "admin", "clearing", "--with-credit"]).ok().json();
    assert_eq!(run["credit_minor"], 250_000);
    // a paid its full credit (1,000) along the chain; b paid the last 500 it owed c.
    assert_eq!(
        [balance_minor(&url, &a), balance_minor(&url, &b), balance_minor(&url, &c)],
        [-100_000, -50_000, 150_000]
    );
    assert_eq!((open_minor(&url, &a, &ab), open_minor(&url, &b, &bc)), (50_000, 0));
    cercle(&url, admin, &["audit", "verify"]).ok();

    // The CSV export lets each firm reconcile the run: its balance change, and what was
    // cleared of each invoice, by set-off and through credit.
    let csv = tmp.path().join("log.csv");
    cercle(&url, admin, &["audit", "export", "--format", "csv", "--out", csv.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let column = |name: &str| rows[0].iter().position(|c| *c == name).unwrap();
    let (kind, account, amount) = (column("kind"), column("account"), column("amount"));
    let firms: Vec<(&str, &str)> =
        rows.iter().filter(|r| r[kind] == "clearing_firm").map(|r| (r[account], r[amount])).collect();
    assert_eq!(firms, [(a.name, "-1000.00"), (b.name, "-500.00"), (c.name, "1500.00")], "{text}");
    let (invoice, setoff, credit) = (column("invoice_id"), column("setoff"), column("credit"));
    let mut invoices: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .filter(|r| r[kind] == "clearing_invoice")
        .map(|r| (r[invoice], r[amount], r[setoff], r[credit]))
        .collect();
    invoices.sort();
    let mut expected =
        [(ab.as_str(), "1000.00", "0.00", "1000.00"), (bc.as_str(), "1500.00", "0.00", "1500.00")];
    expected.sort();
    assert_eq!(invoices, expected, "{text}");
}
