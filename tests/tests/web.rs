//! The browser app and what the node does for it.
//!
//! - The node serves the app on the address of its API (and not with `--no-web`), with a
//!   content security policy; `ListKeyAccounts` tells a key which accounts it may act for.
//! - In a real Chromium driven by playwright-core (`web/test/e2e.mjs`), against the real
//!   node: the administrator imports its key file into the browser and, through the admin
//!   pages, registers a firm whose key was made in the browser (read from a picture of its
//!   QR code) and one whose `cercle keygen` key is pasted; the first pays, pays again with
//!   the answer lost and retries the same envelope (paid once), is refused over its limit
//!   with the ledger's message; the second imports its key file and issues an invoice,
//!   which the first accepts and pays. The administrator changes the second's limit (in
//!   French, `1 250,50`), freezes it (a payment to it is refused) and unfreezes it, filters
//!   the accounts overview, runs the clearing dry run and then the run on a loop of
//!   invoices, and computes the indicators; the first firm downloads its signed statement,
//!   which `cercle statement verify` accepts. Then fees (set with the wallet): the first
//!   firm sees before signing the levy of a payment and its balance after it, its history
//!   and the payee's show each payment's whole movement with the levy named, and the
//!   association's fee account, from its own key, sees each levy and a month's demurrage.
//!   The first firm's owner key adds, from its keys page, a payer key with caps (an
//!   ambiguous cap and a bad public key refused first) and a key already on another account
//!   as a viewer (offered once the ledger refuses it unshared), then removes it; the
//!   employee's payer key sees the keys without the controls. axe-core finds no serious
//!   violation on any page, in French and in English, and every page is photographed into
//!   `target/web-screenshots/`. Then `cercle audit verify` checks every signature the
//!   browser made.
//!
//! The browser test needs Chromium, Node.js and the app's npm packages (`apt-get install
//! chromium nodejs` and `npm ci` in `web/`): where they are missing it is ignored with the
//! reason, unless `CERCLE_REQUIRE_ALL` is set (CI), where it runs and fails
//! (`tests/os_deps.rs`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use cercle_e2e::{Node, bin_dir, binary, cercle, genesis, load::signed, read_key};
use cercle_proto as pb;

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A plain HTTP/1.1 request to the node; the status line and headers, and the body.
fn http(addr: &str, method: &str, target: &str) -> (String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    (String::from_utf8_lossy(&answer[..split]).to_lowercase(), answer[split + 4..].to_vec())
}

#[test]
fn the_node_serves_the_app_unless_told_not_to() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::init_and_start(&tmp.path().join("data"), &[]);
    let (head, body) = http(&node.addr, "GET", "/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("<script type=\"module\" src=\"/app.js\">"));
    let (head, body) = http(&node.addr, "GET", "/app.js");
    assert!(head.starts_with("http/1.1 200") && head.contains("content-type: text/javascript"), "{head}");
    let committed = std::fs::read(workspace().join("web/dist/app.js")).unwrap();
    assert!(
        body == committed,
        "the node serves web/dist/app.js as committed ({} bytes, not {})",
        committed.len(),
        body.len()
    );
    let (head, _) = http(&node.addr, "GET", "/../admin.key");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    drop(node);

    let off = tmp.path().join("off");
    let out = Command::new(binary("cercle-node")).args(["init", "--data-dir", path(&off)]).output().unwrap();
    assert!(out.status.success());
    let node = Node::start_configured(&off, &off.join("node.log"), &["--no-web"], None);
    // Without the app, a GET goes to the gRPC services, which know no such method.
    let (head, body) = http(&node.addr, "GET", "/");
    assert!(!head.contains("content-security-policy") && !head.contains("text/html"), "{head}");
    assert!(!String::from_utf8_lossy(&body).contains("app.js"));
}

#[tokio::test]
async fn a_key_learns_which_accounts_it_may_act_for() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::init_and_start(&tmp.path().join("data"), &[]);
    let url = node.url();
    let admin_key = node.data_dir.join("admin.key");
    let g = genesis(&node).await;
    let firm_key = tmp.path().join("firm.key");
    let stranger_key = tmp.path().join("stranger.key");
    cercle(&url, None, &["keygen", "--out", path(&firm_key)]).ok();
    cercle(&url, None, &["keygen", "--out", path(&stranger_key)]).ok();
    let pubkey = cercle(&url, None, &["pubkey", "--key", path(&firm_key)]).ok().stdout.trim().to_string();
    for handle in ["firm-b", "firm-a"] {
        cercle(
            &url,
            Some(&admin_key),
            // One key on two accounts, on purpose: the read must find both.
            &["admin", "register", handle, "--pubkey", &pubkey, "--credit-limit", "10", "--allow-shared-key"],
        )
        .ok();
    }
    let ask = |key: &Path| {
        let key = read_key(key);
        let g = g.clone();
        let node = &node;
        async move {
            node.client()
                .await
                .list_key_accounts(signed(&g, &key, "ListKeyAccounts", pb::ListKeyAccountsRequest {}))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let firm = ask(&firm_key).await.expect("a signed read");
    let handles: Vec<_> = firm.accounts.iter().map(|a| a.account.as_str()).collect();
    assert_eq!(handles, ["firm-a", "firm-b"], "in handle order");
    assert!(!firm.administrator && !firm.auditor);
    let stranger = ask(&stranger_key).await.expect("a signed read");
    assert!(stranger.accounts.is_empty());
    let admin = ask(&admin_key).await.expect("a signed read");
    assert!(admin.administrator && admin.accounts.is_empty());
    let unsigned = node.client().await.list_key_accounts(pb::ListKeyAccountsRequest {}).await.unwrap_err();
    assert_eq!(unsigned.code(), tonic::Code::Unauthenticated);
}

/// The levy the browser shows before signing (`web/src/fees.js`) is held to the same
/// vectors as the core's (`web/test/fees.test.js` runs the JS on them): here, the core.
#[test]
fn the_browsers_levy_vectors_are_the_cores() {
    use cercle_core::{AccountId, FeeSchedule, LevyOn};
    let text = std::fs::read_to_string(workspace().join("web/test/levy_vectors.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = file["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 15);
    let account = |v: &serde_json::Value| AccountId::parse(v.as_str().expect("a handle")).unwrap();
    for v in vectors {
        let fees = FeeSchedule {
            account: account(&v["fee_account"]),
            transfer_levy_bp: u16::try_from(v["transfer_levy_bp"].as_u64().unwrap()).unwrap(),
            levy_on: LevyOn::from_name(v["levy_on"].as_str().unwrap()).expect("payer, payee or split"),
            membership_minor: Default::default(),
            demurrage_bp: 0,
            demurrage_above_minor: 0,
            group_membership_minor: Default::default(),
        };
        fees.check().unwrap();
        let levy =
            fees.levy(&account(&v["payer"]), &account(&v["payee"]), v["amount_minor"].as_i64().unwrap());
        let expected = (v["payer_minor"].as_i64().unwrap(), v["payee_minor"].as_i64().unwrap());
        assert_eq!((levy.payer_minor, levy.payee_minor), expected, "{}", v["note"]);
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

#[test]
#[cfg_attr(
    not(browser_tests),
    ignore = "needs Chromium, Node.js and the app's npm packages: apt-get install chromium nodejs, then npm ci in web/"
)]
fn firms_and_the_administrator_work_from_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::init_and_start(&tmp.path().join("data"), &[]);
    let url = node.url();
    let admin_key = node.data_dir.join("admin.key");
    let bob_key = tmp.path().join("bob.key");
    cercle(&url, None, &["keygen", "--out", path(&bob_key)]).ok();
    let screenshots = bin_dir().parent().expect("target dir").join("web-screenshots");
    let out = Command::new("node")
        .arg(workspace().join("web/test/e2e.mjs"))
        .current_dir(workspace().join("web"))
        .env("CERCLE_URL", &url)
        .env("CERCLE_BIN", binary("cercle"))
        .env("CERCLE_ADMIN_KEY", &admin_key)
        .env("CERCLE_BOB_KEY", &bob_key)
        .env("CERCLE_SCREENSHOTS", &screenshots)
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .env_remove("CERCLE_KEY")
        .env_remove("CERCLE_NODE")
        .output()
        .expect("run node (Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser scenario failed\nstdout: {stdout}\nstderr: {stderr}");
    let keys: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the scenario's JSON line");
    let alice_pubkey = keys["alice_pubkey"].as_str().expect("alice's key").to_string();
    eprintln!("screenshots in {}", screenshots.display());

    // Every signature, the browser's included, checked again from the log.
    let verify = cercle(&url, Some(&admin_key), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verify["ok"], true, "{verify}");
    let history = cercle(&url, Some(&admin_key), &["--json", "history", "alice-bakery"]).ok().json();
    let entries = history["entries"].as_array().expect("entries");
    let kinds: Vec<_> = entries.iter().map(|e| e["kind"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        kinds,
        [
            "register_account",
            "transfer",
            "transfer",
            "issue_invoice",
            "accept_invoice",
            "transfer",
            // The loop of invoices, then the clearing run that cancelled it (no money moved).
            "issue_invoice",
            "accept_invoice",
            "issue_invoice",
            "accept_invoice",
            "run_clearing",
            // The clerk's payer key, its payment held above its cap, alice's approval.
            "add_key",
            "transfer_held",
            "approve_pending",
            // From alice's keys page: a payer key with caps; carol's key as a viewer (shared,
            // once the ledger refused it unshared), then removed.
            "add_key",
            "add_key",
            "remove_key",
            // Under the 1% levy, split: the clerk's second payment held, alice's payment,
            // her approval of the held one.
            "transfer_held",
            "transfer",
            "approve_pending",
        ],
        "{history}"
    );
    // The log's balances are the ones the browser showed: each payment with alice's share
    // of its levy (80.50 + 0.41, 70.00 + 0.35).
    let after: Vec<_> = entries.iter().map(|e| e["balance_after_minor"].as_i64()).collect();
    assert_eq!(after[after.len() - 3..], [None, Some(-31_641), Some(-38_676)], "{history}");
    let balance = cercle(&url, Some(&admin_key), &["--json", "balance", "alice-bakery"]).ok().json();
    // -235.50, then 80.50 and 70.00 with her shares of the levies (0.41 and 0.35).
    assert_eq!(balance["balance_minor"], -38_676, "{balance}");
    let fees = cercle(&url, Some(&admin_key), &["--json", "balance", "association"]).ok().json();
    assert_eq!(fees["balance_minor"], 431, "the levies 0.81 and 0.70, bob's demurrage 2.80: {fees}");
    let clerk_pubkey = keys["clerk_pubkey"].as_str().expect("the clerk's key");
    let driver_pubkey = keys["driver_pubkey"].as_str().expect("the key alice added in the browser");
    assert_eq!(
        balance["public_keys"],
        serde_json::json!([alice_pubkey, clerk_pubkey, driver_pubkey]),
        "the key made in the browser, the clerk's, and the payer key alice added in hers (carol's gone again)"
    );
    let listed = cercle(&url, Some(&admin_key), &["--json", "key", "list", "alice-bakery"]).ok().json();
    assert_eq!(
        listed["keys"][2],
        serde_json::json!({"public_key": driver_pubkey, "role": "payer", "per_transfer_cap_minor": 10_000,
            "daily_cap_minor": 100_000, "spent_today_minor": 0}),
        "the caps alice typed in her browser: {listed}"
    );

    // What the administrator signed in the browser, with its reasons; and the month's
    // demurrage the wallet charged.
    let charge_reason = format!(
        "periodic fees of {}: membership and demurrage",
        keys["fee_period"].as_str().expect("the period charged")
    );
    let history = cercle(&url, Some(&admin_key), &["--json", "history", "bob-mill"]).ok().json();
    let acts: Vec<_> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| {
            let kind = e["kind"].as_str().unwrap_or_default();
            !["transfer", "transfer_held", "approve_pending"].contains(&kind) && !kind.contains("invoice")
        })
        .map(|e| (e["kind"].as_str().unwrap_or_default(), e["reason"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        acts,
        [
            ("register_account", ""),
            ("set_limits", "revue annuelle"),
            ("freeze_account", "litige sur la facture 17"),
            ("unfreeze_account", "litige réglé"),
            ("run_clearing", "November"),
            ("charge_fees", charge_reason.as_str()),
        ],
        "{history}"
    );
    let bob = cercle(&url, Some(&admin_key), &["--json", "balance", "bob-mill"]).ok().json();
    assert_eq!(bob["credit_limit_minor"], 125_050, "1 250,50 in French: {bob}");
    assert_eq!(bob["status"], "active", "{bob}");
    assert_eq!(bob["sector"], "10.71", "{bob}");
    let carol = cercle(&url, Some(&admin_key), &["--json", "balance", "carol-market"]).ok().json();
    assert_eq!(carol["max_balance_minor"], 200_000, "2 000,00 in French: {carol}");
    assert_eq!(carol["balance_minor"], 500, "{carol}");
}
