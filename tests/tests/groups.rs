//! The README's walkthrough of member groups, end to end with the real binaries: a group
//! created, a firm assigned to it and bound by its limits, the group's default changed and
//! binding at once, an override and back to the group, refusals with their numbers, the
//! overview saying where each limit comes from, across a restart (the checkpoint and a
//! rebuild from the log), ending with the auditor's replay.

use std::path::Path;

use cercle_e2e::{Node, assert_mentions, cercle, keygen};

/// `eve-press`'s balance as JSON, read with `key`.
fn balance(url: &str, key: &Path) -> serde_json::Value {
    cercle(url, Some(key), &["--json", "balance", "eve-press"]).ok().json()
}

#[test]
fn members_follow_their_groups_limits_as_the_readme_says() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &[]);
    let url = node.url();
    let admin = data.join("admin.key");
    let bob = keygen(tmp.path(), "bob");
    let eve = keygen(tmp.path(), "eve");
    cercle(
        &url,
        Some(&admin),
        &["admin", "register", "bob-mill", "--pubkey", &bob.pubkey, "--credit-limit", "500.00"],
    )
    .ok();

    // The walkthrough, command by command.
    cercle(
        &url,
        Some(&admin),
        &[
            "admin",
            "group",
            "create",
            "small-firms",
            "--credit-limit",
            "500",
            "--max-balance",
            "5000",
            "--reason",
            "statutes art. 7: under 10 employees",
        ],
    )
    .ok();
    cercle(
        &url,
        Some(&admin),
        &["admin", "register", "eve-press", "--pubkey", &eve.pubkey, "--credit-limit", "0"],
    )
    .ok();
    cercle(
        &url,
        Some(&admin),
        &["admin", "group", "assign", "eve-press", "small-firms", "--reason", "8 employees"],
    )
    .ok();
    let text = cercle(&url, Some(&eve.path), &["balance", "eve-press"]).ok().stdout;
    for line in [
        "credit limit 500.00 CHW (floor -500.00 CHW) (group small-firms)",
        "max balance  5,000.00 CHW (group small-firms)",
        "group        small-firms",
    ] {
        assert!(text.contains(line), "balance shows {line:?}:\n{text}");
    }
    let out = cercle(&url, Some(&eve.path), &["pay", "--from", "eve-press", "bob-mill", "600"]).failed();
    assert_mentions(&out, "CREDIT_LIMIT_EXCEEDED, code 50");
    assert_mentions(&out, "a credit limit of 500.00 CHW allows down to -500.00 CHW");
    cercle(
        &url,
        Some(&admin),
        &["admin", "group", "set", "small-firms", "--credit-limit", "800", "--reason", "annual review"],
    )
    .ok();
    cercle(&url, Some(&eve.path), &["pay", "--from", "eve-press", "bob-mill", "600"]).ok();
    cercle(
        &url,
        Some(&admin),
        &["admin", "set-limits", "eve-press", "--credit-limit", "300", "--reason", "late payments"],
    )
    .ok();
    let b = balance(&url, &eve.path);
    assert_eq!(
        (b["credit_limit_minor"].as_i64(), b["balance_minor"].as_i64()),
        (Some(30_000), Some(-60_000))
    );
    assert_eq!(b["credit_limit_source"], "own");
    assert_eq!(b["max_balance_source"], "group:small-firms");
    // Its own limit binds now, whatever the group's: a debt beyond it stays, no payment more.
    let out = cercle(&url, Some(&eve.path), &["pay", "--from", "eve-press", "bob-mill", "1"]).failed();
    assert_mentions(&out, "CREDIT_LIMIT_EXCEEDED, code 50");
    cercle(
        &url,
        Some(&admin),
        &["admin", "set-limits", "eve-press", "--credit-limit", "group", "--reason", "back to normal"],
    )
    .ok();
    let b = balance(&url, &eve.path);
    assert_eq!((b["credit_limit_minor"].as_i64(), b["group"].as_str()), (Some(80_000), Some("small-firms")));
    assert_eq!(b["credit_limit_source"], "group:small-firms");
    // The firm's signed statement attests the limit that binds it, the group's, though the
    // group's changes are not in the firm's own history.
    let file = tmp.path().join("eve-statement.json");
    cercle(&url, Some(&eve.path), &["statement", "eve-press", "--out", file.to_str().unwrap()]).ok();
    let node_key =
        cercle(&url, None, &["--json", "info"]).ok().json()["node_key"].as_str().unwrap().to_string();
    let checked = cercle(
        &url,
        None,
        &["--json", "statement", "verify", file.to_str().unwrap(), "--node-key", &node_key],
    )
    .ok()
    .json();
    assert_eq!(checked["credit_limit_minor"], 80_000, "{checked}");
    let overview = cercle(&url, Some(&admin), &["admin", "accounts"]).ok().stdout;
    assert!(overview.contains("limit from"), "{overview}");
    let rows: Vec<&str> = overview.lines().collect();
    assert!(rows.iter().any(|r| r.starts_with("bob-mill") && r.contains(" own ")), "{overview}");
    assert!(rows.iter().any(|r| r.starts_with("eve-press") && r.contains("group:small-firms")), "{overview}");
    let groups = cercle(&url, Some(&admin), &["admin", "group", "list"]).ok().stdout;
    assert_eq!(
        groups.lines().collect::<Vec<_>>(),
        [
            "group        credit limit  max balance   members  following",
            "small-firms  800.00 CHW    5,000.00 CHW  1        1",
        ],
        "{groups}"
    );
    let out = cercle(&url, Some(&eve.path), &["admin", "group", "list"]).failed();
    assert_mentions(&out, "permission denied");

    // Refusals, each with its number and what to do.
    let out = cercle(
        &url,
        Some(&admin),
        &["admin", "group", "assign", "eve-press", "large-firms", "--reason", "grew"],
    )
    .failed();
    assert_mentions(&out, "UNKNOWN_GROUP, code 80");
    let out = cercle(
        &url,
        Some(&admin),
        &["admin", "group", "create", "small-firms", "--credit-limit", "1", "--reason", "x"],
    )
    .failed();
    assert_mentions(&out, "GROUP_EXISTS, code 81");
    let out = cercle(
        &url,
        Some(&admin),
        &["admin", "set-limits", "bob-mill", "--credit-limit", "group", "--reason", "x"],
    )
    .failed();
    assert_mentions(&out, "NOT_IN_GROUP, code 83");
    let out = cercle(
        &url,
        Some(&eve.path),
        &["admin", "group", "set", "small-firms", "--credit-limit", "9000", "--reason", "me"],
    )
    .failed();
    assert_mentions(&out, "NOT_ADMINISTRATOR, code 10");
    let out = cercle(
        &url,
        Some(&admin),
        &["admin", "group", "create", "Small", "--credit-limit", "1", "--reason", "x"],
    )
    .failed();
    assert_mentions(&out, "invalid group name 'Small'");
    let out = cercle(
        &url,
        Some(&admin),
        &[
            "admin",
            "set-limits",
            "eve-press",
            "--credit-limit",
            "group",
            "--max-balance",
            "10",
            "--reason",
            "x",
        ],
    )
    .failed();
    assert_mentions(&out, "give `group` for both limits");

    // The group's maximum binds the member too: up to 5,000.00 and not a unit more.
    cercle(
        &url,
        Some(&admin),
        &["admin", "set-limits", "bob-mill", "--credit-limit", "10000", "--reason", "big order"],
    )
    .ok();
    cercle(&url, Some(&bob.path), &["pay", "--from", "bob-mill", "eve-press", "5600"]).ok();
    let out = cercle(&url, Some(&bob.path), &["pay", "--from", "bob-mill", "eve-press", "0.01"]).failed();
    assert_mentions(&out, "MAX_BALANCE_EXCEEDED, code 51");

    // The history names each act with its reason.
    let history = cercle(&url, Some(&admin), &["--json", "history", "eve-press"]).ok().json();
    let kinds: Vec<&str> =
        history["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"assign_group") && kinds.contains(&"follow_group_limits"), "{history}");

    // Groups are the state's: they hold across a restart from the checkpoint, and across a
    // rebuild from the log alone.
    let before = balance(&url, &admin);
    node.stop();
    let mut node = Node::start(&data);
    let url = node.url();
    assert_eq!(balance(&url, &admin), before);
    let out = cercle(&url, Some(&eve.path), &["pay", "--from", "eve-press", "bob-mill", "5800.01"]).failed();
    assert_mentions(&out, "CREDIT_LIMIT_EXCEEDED, code 50");
    node.stop();
    let rebuild = std::process::Command::new(cercle_e2e::binary("cercle-node"))
        .args(["rebuild", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(rebuild.status.success(), "{}", String::from_utf8_lossy(&rebuild.stderr));
    let node = Node::start(&data);
    let url = node.url();
    assert_eq!(balance(&url, &admin), before);
    cercle(
        &url,
        Some(&admin),
        &["admin", "group", "set", "small-firms", "--credit-limit", "6000", "--reason", "after rebuild"],
    )
    .ok();
    cercle(&url, Some(&eve.path), &["pay", "--from", "eve-press", "bob-mill", "5800.01"]).ok();
    let verdict = cercle(&url, Some(&admin), &["--json", "audit", "verify"]).ok().json();
    assert_eq!(verdict["ok"], true, "{verdict}");
}
