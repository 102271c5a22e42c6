//! `cercle clearing solve` with the real binary: a network with a known optimum, the per
//! obligation file, amounts beyond i64, and bad input files, each a clear error and a non-zero
//! exit. No node is involved.

use std::path::Path;

use cercle_e2e::{CliOutput, cercle};
use serde_json::json;

/// The command needs no node; an address nobody listens on proves it.
const NO_NODE: &str = "http://127.0.0.1:1";

fn solve(input: &Path, extra: &[&str]) -> CliOutput {
    let mut args = vec!["clearing", "solve", "--input", input.to_str().unwrap()];
    args.extend_from_slice(extra);
    cercle(NO_NODE, None, &args)
}

#[test]
fn a_known_network_clears_its_optimum() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("invoices.csv");
    // A triangle 100/70/50 (clears 50 on each side), a chain off it (clears nothing), a
    // 2-cycle of two parallel obligations against one (clears 30 each way), and a name that
    // needs quotes.
    std::fs::write(
        &input,
        "debtor,creditor,amount\n\
         alpha,beta,100\n\
         beta,gamma,70\n\
         gamma,alpha,50\n\
         gamma,delta,40\n\
         delta,\"Epsilon, Ltd\",40\n\
         zeta,eta,20\n\
         eta,zeta,30\n\
         zeta,eta,15\n",
    )
    .unwrap();
    let out = tmp.path().join("cleared.csv");
    let run = solve(&input, &["--json", "--out", out.to_str().unwrap()]).ok();
    let v = run.json();
    assert_eq!(v["obligations"], json!(8));
    assert_eq!(v["firms"], json!(7));
    assert_eq!(v["pairs"], json!(7));
    assert_eq!(v["total_debt_minor"], json!(365));
    // Net positions: alpha -50, beta +30, gamma -20, delta 0, epsilon +40, zeta -5, eta +5.
    assert_eq!(v["net_internal_debt_minor"], json!(75));
    assert_eq!(v["cleared_minor"], json!(3 * 50 + 2 * 30));
    assert_eq!(v["remaining_debt_minor"], json!(365 - 210));
    assert!(v["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{v}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "debtor,creditor,amount,cleared\n\
         alpha,beta,100,50\n\
         beta,gamma,70,50\n\
         gamma,alpha,50,50\n\
         gamma,delta,40,0\n\
         delta,\"Epsilon, Ltd\",40,0\n\
         zeta,eta,20,20\n\
         eta,zeta,30,30\n\
         zeta,eta,15,10\n"
    );

    // The human form says the same; the out file is never overwritten.
    let text = solve(&input, &[]).ok().stdout;
    for needle in ["8 obligations between 7 firms", "365", "75", "210  (57.53% of the total debt)", "155"] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let again = solve(&input, &["--out", out.to_str().unwrap()]).failed();
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("never overwritten"),
        "{}",
        again.stderr
    );
}

#[test]
fn totals_beyond_i64_are_exact_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("big.csv");
    let max = i64::MAX;
    std::fs::write(&input, format!("a,b,{max}\nb,a,{max}\na,b,{max}\n")).unwrap();
    let v = solve(&input, &["--json"]).ok().json();
    let max = i128::from(max);
    assert_eq!(v["total_debt_minor"], json!((3 * max).to_string()));
    assert_eq!(v["cleared_minor"], json!((2 * max).to_string()));
    assert_eq!(v["net_internal_debt_minor"], json!(max));
    assert_eq!(v["remaining_debt_minor"], json!(max));
    // Two thirds cleared: rounded half up, as every command formats a share.
    assert_eq!(v["cleared_basis_points"], json!(6_667));
    let text = solve(&input, &[]).ok().stdout;
    assert!(text.contains("(66.67% of the total debt)"), "{text}");
}

#[test]
fn an_empty_file_clears_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("empty.csv");
    std::fs::write(&input, "").unwrap();
    let v = solve(&input, &["--json"]).ok().json();
    for key in ["obligations", "firms", "total_debt_minor", "net_internal_debt_minor", "cleared_minor"] {
        assert_eq!(v[key], json!(0), "{key}");
    }
}

#[test]
fn bad_files_are_refused_with_the_line_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |content: &str, expected: &str| {
        let input = tmp.path().join("bad.csv");
        std::fs::write(&input, content).unwrap();
        let run = solve(&input, &["--json"]).failed();
        assert_eq!(run.code, 2, "a bad file is bad input");
        assert!(run.stderr.contains(expected), "{content:?}: {:?} lacks {expected:?}", run.stderr);
        // With --json, stdout holds the error object and nothing else.
        let error = run.json();
        assert_eq!((error["ok"].as_bool(), error["error"]["kind"].as_str()), (Some(false), Some("usage")));
    };
    check(
        "debtor,creditor,amount\na,b,10\na,b\n",
        "bad.csv: line 3: expected 3 columns (debtor,creditor,amount), found 2",
    );
    check("a,b,-5\n", "line 1: amount -5 is not positive");
    check("a,b,10\nb,c,12.50\n", "line 2: amount '12.50' is not an integer in minor units");
    check("a,b,abc\n", "line 1: amount 'abc' is not an integer in minor units");
    check("a,a,5\n", "line 1: firm 'a' owes itself");
    check("a,,5\n", "line 1: the creditor is empty");
    check("a,b,99999999999999999999\n", "line 1: amount '99999999999999999999' is too large");
    let missing = solve(&tmp.path().join("missing.csv"), &[]).failed();
    assert!(
        missing.stderr.contains("cannot read") && missing.stderr.contains("missing.csv"),
        "{}",
        missing.stderr
    );
}
