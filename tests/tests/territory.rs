//! The territory, end to end with the real binaries: firms registered with profiles, a
//! profile changed with a reason and bad codes refused, the administrators' overview, and
//! indicators computed three ways (the node's `GetIndicators`, the wallet streaming the
//! node's log, the wallet offline on an exported log) that must agree to the byte.

use std::path::{Path, PathBuf};

use cercle_core::time::{DAY_MS, date};
use cercle_e2e::{Node, cercle, now_ms, read_key};
use cercle_proto as pb;
use serde_json::Value;

fn keygen(url: &str, dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let out = cercle(url, None, &["keygen", "--out", key.to_str().unwrap()]).ok();
    (key, out.stdout.split_whitespace().last().unwrap().to_string())
}

/// The report's fields, without the CLI's `"ok": true`.
fn report(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("ok");
    }
    v
}

#[test]
fn profiles_overview_and_indicators_through_the_cli_and_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::init_and_start(&data, &["--currency", "CHW"]);
    let url = node.url();
    let admin_path = data.join("admin.key");
    let admin = Some(admin_path.as_path());

    // Four firms in two communes; the last one with no profile at all.
    let firms = [
        ("boulangerie", "10.71", "34145", "Pays de Lunel"),
        ("minoterie", "10.61", "34145", "Pays de Lunel"),
        ("epicerie", "47.11", "34154", "Pays de Lunel"),
        ("garage", "", "", ""),
    ];
    let mut keys = Vec::new();
    for (name, sector, commune, territory) in firms {
        let (key, pubkey) = keygen(&url, tmp.path(), name);
        let mut args = vec![
            "admin",
            "register",
            name,
            "--pubkey",
            &pubkey,
            "--credit-limit",
            "1000",
            "--size-class",
            "1-9",
        ];
        if !sector.is_empty() {
            args.extend([
                "--sector",
                sector,
                "--commune",
                commune,
                "--territory",
                territory,
                "--postcode",
                "34400",
            ]);
        }
        cercle(&url, admin, &args).ok();
        keys.push(key);
    }
    // Bad codes are refused before anything is signed, saying what is wrong (exit 2).
    let (_, pubkey) = keygen(&url, tmp.path(), "other");
    for (flag, value, needle) in [
        ("--sector", "34", "is not a NACE rev. 2 division"),
        ("--sector", "1071", "with its dot, '10.71'"),
        ("--commune", "20004", "2A"),
        ("--commune", "7505", "five characters"),
        ("--size-class", "10-50", "is not one of"),
    ] {
        let out =
            cercle(&url, admin, &["admin", "register", "other", "--pubkey", &pubkey, flag, value]).failed();
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains(needle), "{flag} {value}: {}", out.stderr);
    }

    // Payments: a cycle between the first three, and the garage pays the bakery.
    let pay = |from: usize, to: usize, amount: &str| {
        cercle(&url, Some(&keys[from]), &["pay", "--from", firms[from].0, firms[to].0, amount]).ok();
    };
    pay(0, 1, "300");
    pay(1, 2, "200");
    pay(2, 0, "100");
    pay(3, 0, "50");
    pay(0, 1, "25");

    // A profile change, with its reason; the firm itself may not make it.
    cercle(
        &url,
        admin,
        &[
            "admin",
            "profile",
            "garage",
            "--name",
            "Garage du Port",
            "--commune",
            "2A004",
            "--reason",
            "moved",
        ],
    )
    .ok();
    let out =
        cercle(&url, Some(&keys[3]), &["admin", "profile", "garage", "--commune", "34145", "--reason", "x"])
            .failed();
    assert!(out.stderr.contains("administrator"), "{}", out.stderr);
    let out = cercle(&url, admin, &["admin", "profile", "garage", "--reason", "nothing"]).failed();
    assert_eq!(out.code, 2, "{}", out.stderr);
    let balance = cercle(&url, admin, &["--json", "balance", "garage"]).ok().json();
    assert_eq!(balance["display_name"], "Garage du Port");
    assert_eq!(balance["commune"], "2A004");
    assert_eq!(balance["size_class"], "1-9");
    assert_eq!(balance["sector"], Value::Null);
    assert!(balance["negative_since"].is_string() && balance["last_activity"].is_string(), "{balance}");

    // The overview: filters and orders, one object per account with the documented fields.
    let accounts = cercle(&url, admin, &["--json", "admin", "accounts", "--sort", "balance"]).ok().json();
    let list = accounts["accounts"].as_array().unwrap();
    let handles: Vec<&str> = list.iter().map(|a| a["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["boulangerie", "garage", "epicerie", "minoterie"], "{accounts}");
    for field in [
        "handle",
        "name",
        "balance_minor",
        "credit_limit_minor",
        "max_balance_minor",
        "status",
        "sector",
        "commune",
        "negative_since",
        "last_activity",
    ] {
        assert!(list.iter().all(|a| a.get(field).is_some()), "{field} missing: {accounts}");
    }
    let negative = cercle(&url, admin, &["--json", "admin", "accounts", "--negative"]).ok().json();
    let handles: Vec<&str> =
        negative["accounts"].as_array().unwrap().iter().map(|a| a["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["boulangerie", "garage"]);
    let food = cercle(&url, admin, &["--json", "admin", "accounts", "--sector", "C"]).ok().json();
    assert_eq!(food["matching"], 2);
    let lunel =
        cercle(&url, admin, &["--json", "admin", "accounts", "--commune", "34145", "--credit-use", "1"])
            .ok()
            .json();
    // The bakery owes 175.00 of its 1,000.00: 17.5%.
    assert_eq!(lunel["matching"], 1, "{lunel}");
    let out = cercle(&url, Some(&keys[0]), &["admin", "accounts"]).failed();
    assert!(out.stderr.contains("administrators and auditors"), "{}", out.stderr);
    let out = cercle(&url, admin, &["admin", "accounts", "--sector", "34"]).failed();
    assert_eq!(out.code, 2, "{}", out.stderr);

    // Indicators for this month: from the node's log, from an export, and from the node.
    let today = (now_ms() / DAY_MS) as u32;
    let first = cercle_core::time::parse_date(&format!("{}-01", &date(today)[..7])).unwrap();
    let (from, to) = (date(first), date(today));
    let args =
        ["--json", "indicators", "--from", &from, "--to", &to, "--by", "month", "--group-by", "commune"];
    let streamed = report(cercle(&url, admin, &args).ok().json());
    let periods = streamed["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 1, "{streamed}");
    let p = &periods[0];
    assert_eq!(p["transfers"], 5);
    assert_eq!(p["turnover_minor"], 67_500);
    assert_eq!(p["firms"], 4);
    assert_eq!(p["active_firms"], 4);
    assert_eq!(p["active_share"], 1.0);
    for field in [
        "cleared_minor",
        "velocity",
        "gini_turnover",
        "top_decile_share",
        "credit_use",
        "stuck_debtors",
        "stuck_creditors",
        "scc_share",
        "reciprocity",
        "local_share",
        "territory_share",
        "nid_minor",
        "clearable_minor",
        "groups",
        "flows",
    ] {
        assert!(p.get(field).is_some(), "{field} missing: {p}");
    }
    // Between the bakery and the mill (34145): 300 + 25 of 675.
    assert!((p["local_share"].as_f64().unwrap() - 325.0 / 675.0).abs() < 1e-6, "{p}");

    let log = tmp.path().join("log.jsonl");
    cercle(&url, admin, &["audit", "export", "--out", log.to_str().unwrap(), "--format", "jsonl"]).ok();
    let mut offline_args = args.to_vec();
    offline_args.extend(["--log", log.to_str().unwrap()]);
    // Offline: no node at all.
    let offline = report(cercle("http://127.0.0.1:1", None, &offline_args).ok().json());
    assert_eq!(offline, streamed);

    let admin_key = read_key(&admin_path);
    let from_node =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let mut client = node.client().await;
            let info = client.get_ledger_info(pb::GetLedgerInfoRequest {}).await.unwrap().into_inner();
            let ledger_id = cercle_core::LedgerId(info.ledger_id.as_slice().try_into().unwrap());
            let request = pb::GetIndicatorsRequest {
                from: from.clone(),
                to: to.clone(),
                by: "month".into(),
                group_by: "commune".into(),
                public: false,
            };
            let ts = now_ms();
            let encoded = prost::Message::encode_to_vec(&request);
            let signature = admin_key.sign(&cercle_core::sign::read_auth_message(
                &ledger_id,
                "GetIndicators",
                ts,
                &encoded,
            ));
            let mut request = tonic::Request::new(request);
            request
                .metadata_mut()
                .insert("x-cercle-pubkey", admin_key.public_key().to_hex().parse().unwrap());
            request.metadata_mut().insert("x-cercle-timestamp", ts.to_string().parse().unwrap());
            let signature: String = signature.iter().map(|b| format!("{b:02x}")).collect();
            request.metadata_mut().insert("x-cercle-signature", signature.parse().unwrap());
            client.get_indicators(request).await.unwrap().into_inner()
        });
    let from_node: Value = serde_json::from_str(&from_node.report_json).unwrap();
    assert_eq!(from_node, streamed);

    // Published: too few firms in each commune, every cell suppressed, never a zero.
    let mut public_args = offline_args.clone();
    public_args.push("--public");
    let public = report(cercle("http://127.0.0.1:1", None, &public_args).ok().json());
    for g in public["periods"][0]["groups"].as_array().unwrap() {
        assert_eq!(g["turnover_minor"], "suppressed", "{g}");
    }

    // Charts, and a CSV; dates in the wrong order are refused.
    let chart = tmp.path().join("chart.svg");
    let flows = tmp.path().join("flows.svg");
    let mut chart_args = offline_args.clone();
    chart_args.extend(["--chart", chart.to_str().unwrap(), "--chart-flows", flows.to_str().unwrap()]);
    cercle("http://127.0.0.1:1", None, &chart_args).ok();
    for file in [&chart, &flows] {
        let svg = std::fs::read_to_string(file).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{}",
            &svg[..svg.len().min(200)]
        );
    }
    let csv = cercle("http://127.0.0.1:1", None, &[&offline_args[1..], &["--csv"][..]].concat()).ok().stdout;
    assert!(csv.starts_with("from,to,row,group,from_group,to_group,transfers,turnover_minor"), "{csv}");
    let out = cercle(
        "http://127.0.0.1:1",
        None,
        &["indicators", "--from", &to, "--to", "2020-01-01", "--log", log.to_str().unwrap()],
    )
    .failed();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("after it ends"), "{}", out.stderr);
    node.stop();
}
