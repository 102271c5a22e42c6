//! Known-answer vectors (`tests/fixtures/vectors.json`): from inputs spelled out in the
//! file, the code must compute the recorded bytes of a signed operation's body, the message
//! its signature covers and the signature, an entry's encoding and hash, Merkle roots, and
//! a signed read's message (tag `cercle/read/v2`), and the bodies of the governance
//! operations (role changes, closure, a registration that allows a shared key), added with
//! them. A third-party signer or verifier depends on these bytes, so they never change;
//! `examples/golden.rs` wrote the file once, and the governance vectors were appended once
//! when those operations were added.

use cercle_core::sign::{self, Keypair};
use cercle_core::{
    AccountId, BalanceAfter, Entry, Envelope, InvoiceId, LedgerId, OpKind, Operation, OperationId, PublicKey,
    RegisterAccount, Role, SetRole, Transfer, body, merkle,
};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

fn array<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().unwrap_or_else(|b: Vec<u8>| panic!("{} bytes, not {N}", b.len()))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn number(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn account(v: &Value) -> AccountId {
    AccountId::parse(text(v)).unwrap()
}

/// Checks one computed value against the recorded one, naming it.
fn check(name: &str, computed: &[u8], recorded: &Value) {
    assert_eq!(hex::encode(computed), text(recorded), "{name}");
}

fn key(v: &Value) -> Keypair {
    let key = Keypair::from_seed(&array(&v["key"]["seed"]));
    check("public key", &key.public_key().0, &v["key"]["public_key"]);
    key
}

#[test]
fn a_signed_operation_has_its_recorded_bytes() {
    let v = vectors();
    let key = key(&v);
    let ledger_id = LedgerId(array(&v["ledger_id"]));
    let o = &v["operation"];
    let t = &o["transfer"];
    let op = Operation {
        id: OperationId(array(&o["id"])),
        valid_until_ms: number(&o["valid_until_ms"]) as u64,
        kind: OpKind::Transfer(Transfer {
            payer: account(&t["payer"]),
            payee: account(&t["payee"]),
            amount_minor: number(&t["amount_minor"]),
            memo: text(&t["memo"]).into(),
            invoice_ref: Some(text(&t["invoice_ref"]).into()),
            invoice: Some(InvoiceId(array(&t["invoice"]))),
        }),
    };
    let encoded = body::encode(&op);
    check("body", &encoded, &o["body"]);
    assert_eq!(body::decode(&bytes(&o["body"])).unwrap(), op, "the recorded body decodes to the operation");
    check("signing message", &sign::op_message(&ledger_id, &encoded), &o["signing_message"]);
    let signature = key.sign_op(&ledger_id, &encoded);
    check("signature", &signature, &o["signature"]);
    sign::verify(&key.public_key(), &sign::op_message(&ledger_id, &encoded), &array(&o["signature"]))
        .unwrap();
}

/// The operation a governance vector spells out.
fn governance_kind(g: &Value) -> OpKind {
    match text(&g["kind"]) {
        "set_role" => OpKind::SetRole(SetRole {
            role: match text(&g["role"]) {
                "administrator" => Role::Admin,
                "auditor" => Role::Auditor,
                other => panic!("role {other}"),
            },
            key: PublicKey(array(&g["public_key"])),
            present: g["present"].as_bool().unwrap(),
            reason: text(&g["reason"]).into(),
        }),
        "close_account" => OpKind::CloseAccount {
            account: account(&g["account"]),
            reason: text(&g["reason"]).into(),
            write_off_to: None,
        },
        "register_account" => OpKind::RegisterAccount(RegisterAccount {
            account: account(&g["account"]),
            display_name: text(&g["display_name"]).into(),
            keys: vec![PublicKey(array(&g["public_key"]))],
            credit_limit_minor: number(&g["credit_limit_minor"]),
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: g["allow_shared_key"].as_bool().unwrap(),
        }),
        "rotate_keys" => OpKind::RotateKeys {
            account: account(&g["account"]),
            keys: vec![PublicKey(array(&g["public_key"]))],
            allow_shared_key: g["allow_shared_key"].as_bool().unwrap(),
        },
        other => panic!("kind {other}"),
    }
}

#[test]
fn governance_operations_have_their_recorded_bytes() {
    let v = vectors();
    let key = key(&v);
    let ledger_id = LedgerId(array(&v["ledger_id"]));
    let list = v["governance_operations"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    for g in list {
        let name = text(&g["kind"]);
        let op = Operation {
            id: OperationId(array(&g["id"])),
            valid_until_ms: number(&g["valid_until_ms"]) as u64,
            kind: governance_kind(g),
        };
        let encoded = body::encode(&op);
        check(name, &encoded, &g["body"]);
        assert_eq!(body::decode(&bytes(&g["body"])).unwrap(), op, "{name}: the recorded body decodes");
        check(name, &sign::op_message(&ledger_id, &encoded), &g["signing_message"]);
        check(name, &key.sign_op(&ledger_id, &encoded), &g["signature"]);
    }
}

#[test]
fn an_entry_has_its_recorded_encoding_and_hash() {
    let v = vectors();
    let key = key(&v);
    let e = &v["entry"];
    let o = &v["operation"];
    let entry = Entry {
        sequence: number(&e["sequence"]) as u64,
        timestamp_ms: number(&e["timestamp_ms"]) as u64,
        prev_hash: array(&e["prev_hash"]),
        envelope: Envelope::single(bytes(&o["body"]), key.public_key(), array(&o["signature"])),
        balances_after: e["balances_after"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| BalanceAfter {
                account: account(&b["account"]),
                balance_minor: number(&b["balance_minor"]),
            })
            .collect(),
        sections: vec![],
    };
    check("entry encoding", &entry.encode(), &e["encoding"]);
    check("entry hash", &entry.hash(), &e["hash"]);
    assert_eq!(Entry::decode(&bytes(&e["encoding"])).unwrap(), entry);
}

#[test]
fn merkle_roots_are_the_recorded_ones() {
    let v = vectors();
    let roots = v["merkle"]["roots"].as_array().unwrap();
    let leaves: Vec<[u8; 32]> = (0..roots.len() as u8).map(|i| merkle::leaf_hash(&[i])).collect();
    assert!(roots.len() >= 8, "roots of trees up to 7 leaves: every shape of the right edge");
    for r in roots {
        let n = number(&r["leaves"]) as usize;
        check(&format!("root of {n} leaves"), &merkle::root(&leaves[..n]), &r["root"]);
    }
}

#[test]
fn a_signed_read_has_its_recorded_message() {
    let v = vectors();
    let key = key(&v);
    let ledger_id = LedgerId(array(&v["ledger_id"]));
    let r = &v["read_auth"];
    let message = sign::read_auth_message(
        &ledger_id,
        text(&r["method"]),
        number(&r["timestamp_ms"]) as u64,
        &bytes(&r["request"]),
    );
    check("read message", &message, &r["message"]);
    assert!(message.starts_with(b"cercle/read/v2"), "the read tag is v2");
    check("read signature", &key.sign(&message), &r["signature"]);
}
