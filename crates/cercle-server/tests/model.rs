//! Model-based tests of the node: generated sequences of operations, valid and invalid,
//! with restarts, run against the real node (handlers, writer, sled store) and against a
//! small reference model, with the ledger's invariants checked after every step.
//!
//! The model (`Model`) is a `BTreeMap` of accounts with the rules written out again, on
//! purpose without calling the core's state machine: where the two disagree on whether
//! an operation is accepted, on its rejection code, or on any field of any account, the
//! test fails. The model checks rejection reasons in the order documented in
//! `cercle_core::state` (time, authority, values, accounts, signer, status, arithmetic,
//! limits), preceded by what the handlers and the writer check first (body size, envelope
//! shape, signature, body decoding, operation id). One detail follows the code rather than
//! those docs: a transfer checks that the signer holds a key of the payer before it looks
//! the payee up.
//!
//! After every step the node's accounts (read through `GetAccount`) must equal the
//! model's, balances must sum to exactly zero and the log must hold exactly the accepted
//! operations; every accepted transfer must leave the payer at or above minus its credit
//! limit and the payee at or below its maximum, as they stood at that moment. At every
//! restart and at the end, the stopped node's store must replay from genesis to the
//! model's state digest and head, and the restarted node must serve the same accounts.

mod common;

use std::collections::BTreeMap;

use cercle_core::op::{
    BODY_BYTES_MAX, DISPLAY_NAME_CHARS_MAX, INVOICE_REF_CHARS_MAX, KEYS_PER_ACCOUNT_MAX, MEMO_CHARS_MAX,
    REASON_CHARS_MAX, VALIDITY_MS_MAX,
};
use cercle_core::sign::{Keypair, SignatureError, check_public_key};
use cercle_core::{
    Account, AccountId, AccountStatus, Genesis, Head, LedgerId, OpKind, Operation, OperationId, PublicKey,
    RegisterAccount, RejectCode, SetLimits, State, Transfer,
};
use cercle_proto as pb;
use cercle_server::now_ms;
use cercle_store::OpenOutcome;
use common::{TestNode, expected_rejection, keypair, rejection_of, sign_body, sign_op};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use prost::Message;

/// Accounts the generated operations name; a case starts by registering two to four.
const HANDLES: [&str; 4] = ["alpha", "bravo", "carol", "delta"];
const ADMIN_SEED: u8 = 1;
/// Keys firms sign with; any of them may be registered for any account.
const FIRM_SEEDS: [u8; 4] = [11, 12, 13, 14];
/// Cases when `PROPTEST_CASES` does not say otherwise.
const CASES_DEFAULT: u32 = 1000;
/// Validity windows far from the edges, so the real clock cannot change the outcome.
const HOUR_MS: u64 = 60 * 60 * 1000;
const MINUTE_MS: u64 = 60 * 1000;

// ---------------------------------------------------------------------------------------
// Keys

struct Keys {
    admin: Keypair,
    firms: Vec<Keypair>,
    /// The identity point: decodes, but has small order.
    weak: PublicKey,
    /// 32 bytes that are not a point of the curve.
    invalid: PublicKey,
}

impl Keys {
    fn new() -> Keys {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(identity);
        assert_eq!(check_public_key(&weak), Err(SignatureError::WeakKey));
        let invalid = (0..=u8::MAX)
            .map(|n| PublicKey([n; 32]))
            .find(|k| check_public_key(k) == Err(SignatureError::InvalidKey))
            .expect("some 32-byte string is not a curve point");
        Keys {
            admin: keypair(ADMIN_SEED),
            firms: FIRM_SEEDS.iter().map(|&s| keypair(s)).collect(),
            weak,
            invalid,
        }
    }

    fn public(&self, choice: KeyChoice) -> PublicKey {
        match choice {
            KeyChoice::Firm(i) => self.firms[i].public_key(),
            KeyChoice::Admin => self.admin.public_key(),
            KeyChoice::Weak => self.weak,
            KeyChoice::Invalid => self.invalid,
        }
    }

    /// The keypair behind `key`, when it is one of ours.
    fn signing(&self, key: &PublicKey) -> Option<&Keypair> {
        std::iter::once(&self.admin).chain(&self.firms).find(|k| k.public_key() == *key)
    }
}

// ---------------------------------------------------------------------------------------
// What the generator produces

#[derive(Debug, Clone, Copy)]
enum Text {
    Normal,
    Empty,
    Blank,
    /// Exactly the maximum number of characters, each two bytes long.
    AtMax,
    OverMax,
    Control,
}

impl Text {
    fn resolve(self, max_chars: usize) -> String {
        match self {
            Text::Normal => "pain et croissants".into(),
            Text::Empty => String::new(),
            Text::Blank => "   ".into(),
            Text::AtMax => "é".repeat(max_chars),
            Text::OverMax => "é".repeat(max_chars + 1),
            Text::Control => "ligne\nsuivante".into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum KeyChoice {
    Firm(usize),
    Admin,
    Weak,
    Invalid,
}

/// Bodies that are signed correctly but do not decode into an operation.
#[derive(Debug, Clone, Copy)]
enum Malformed {
    UppercaseHandle,
    ShortOperationId,
    NoKind,
    ShortKey,
    NotProtobuf,
}

#[derive(Debug, Clone)]
enum OpSpec {
    Register {
        account: usize,
        name: Text,
        keys: Vec<KeyChoice>,
        credit_limit: i64,
        max_balance: Option<i64>,
    },
    SetLimits {
        account: usize,
        credit_limit: Option<i64>,
        max_balance: Option<Option<i64>>,
        reason: Text,
    },
    Freeze {
        account: usize,
        reason: Text,
    },
    Unfreeze {
        account: usize,
        reason: Text,
    },
    RotateKeys {
        account: usize,
        keys: Vec<KeyChoice>,
    },
    Transfer {
        payer: usize,
        payee: usize,
        amount: i64,
        memo: Text,
        invoice: Option<Text>,
    },
    /// A transfer whose memo makes the body larger than `BODY_BYTES_MAX`.
    Oversized {
        payer: usize,
        payee: usize,
    },
    Malformed(Malformed),
}

impl OpSpec {
    /// The account whose owner signs when the signer is `Signer::Owner`.
    fn primary(&self) -> usize {
        match self {
            OpSpec::Register { account, .. }
            | OpSpec::SetLimits { account, .. }
            | OpSpec::Freeze { account, .. }
            | OpSpec::Unfreeze { account, .. }
            | OpSpec::RotateKeys { account, .. } => *account,
            OpSpec::Transfer { payer, .. } | OpSpec::Oversized { payer, .. } => *payer,
            OpSpec::Malformed(_) => 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Signer {
    /// A key of the operation's primary account (firm key 0 if it has none we hold).
    Owner,
    Admin,
    Firm(usize),
}

#[derive(Debug, Clone, Copy)]
enum Sig {
    Good,
    /// One bit of the signature flipped.
    Flipped,
    /// A good signature, but for another ledger id.
    OtherLedger,
    /// The envelope names one key and the signature is by another.
    WrongKey,
    /// The envelope names a small-order key.
    WeakSigner,
    /// The signer field is 31 bytes.
    ShortSigner,
    /// The signature field is 63 bytes.
    ShortSignature,
}

#[derive(Debug, Clone)]
enum Id {
    Fresh,
    /// The id of an earlier submission, usually with a different body.
    Reuse(Index),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validity {
    Valid,
    Expired,
    TooLong,
}

#[derive(Debug, Clone)]
struct Submission {
    op: OpSpec,
    signer: Signer,
    sig: Sig,
    id: Id,
    validity: Validity,
}

#[derive(Debug, Clone)]
enum Action {
    Submit(Submission),
    /// Send an earlier envelope again, byte for byte.
    Resubmit(Index),
}

/// How the envelopes of a step reach the node.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// One `Submit` call each, all queued before any is answered, so the writer may take
    /// several as one group.
    Submit,
    /// One `SubmitBatch` call.
    Batch,
}

#[derive(Debug, Clone)]
enum Step {
    Submit(Vec<Action>, Via),
    Restart,
}

// ---------------------------------------------------------------------------------------
// Strategies

fn account_index() -> BoxedStrategy<usize> {
    (0..HANDLES.len()).boxed()
}

fn credit_limit() -> BoxedStrategy<i64> {
    prop_oneof![
        4 => 0..=2_000i64,
        1 => Just(0i64),
        1 => Just(i64::MAX),
        1 => (i64::MAX - 1_000)..=i64::MAX,
        1 => -1_000..0i64,
        1 => Just(i64::MIN),
    ]
    .boxed()
}

fn max_balance() -> BoxedStrategy<Option<i64>> {
    prop_oneof![
        4 => Just(None),
        2 => (0..=3_000i64).prop_map(Some),
        1 => Just(Some(i64::MAX)),
        1 => (i64::MIN..0).prop_map(Some),
    ]
    .boxed()
}

fn amount() -> BoxedStrategy<i64> {
    prop_oneof![
        8 => 1..=500i64,
        2 => 500..=5_000i64,
        1 => Just(0i64),
        1 => i64::MIN..0,
        2 => (i64::MAX - 3)..=i64::MAX,
        1 => Just(i64::MAX / 2 + 1),
    ]
    .boxed()
}

fn text() -> BoxedStrategy<Text> {
    prop_oneof![
        30 => Just(Text::Normal),
        1 => Just(Text::Empty),
        1 => Just(Text::Blank),
        1 => Just(Text::AtMax),
        1 => Just(Text::OverMax),
        1 => Just(Text::Control),
    ]
    .boxed()
}

fn firm_key() -> BoxedStrategy<KeyChoice> {
    (0..FIRM_SEEDS.len()).prop_map(KeyChoice::Firm).boxed()
}

fn keys() -> BoxedStrategy<Vec<KeyChoice>> {
    let any_key = prop_oneof![
        6 => firm_key(),
        1 => Just(KeyChoice::Admin),
        1 => Just(KeyChoice::Weak),
        1 => Just(KeyChoice::Invalid),
    ];
    prop_oneof![
        8 => proptest::sample::subsequence((0..FIRM_SEEDS.len()).collect::<Vec<_>>(), 1..=2)
            .prop_shuffle()
            .prop_map(|ks| ks.into_iter().map(KeyChoice::Firm).collect()),
        2 => proptest::collection::vec(any_key, 0..=KEYS_PER_ACCOUNT_MAX + 1),
    ]
    .boxed()
}

fn malformed() -> BoxedStrategy<Malformed> {
    prop_oneof![
        Just(Malformed::UppercaseHandle),
        Just(Malformed::ShortOperationId),
        Just(Malformed::NoKind),
        Just(Malformed::ShortKey),
        Just(Malformed::NotProtobuf),
    ]
    .boxed()
}

fn op_spec() -> BoxedStrategy<OpSpec> {
    let register = (account_index(), text(), keys(), credit_limit(), max_balance()).prop_map(
        |(account, name, keys, credit_limit, max_balance)| OpSpec::Register {
            account,
            name,
            keys,
            credit_limit,
            max_balance,
        },
    );
    let set_limits = (
        account_index(),
        proptest::option::weighted(0.7, credit_limit()),
        proptest::option::weighted(0.5, max_balance()),
        text(),
    )
        .prop_map(|(account, credit_limit, max_balance, reason)| OpSpec::SetLimits {
            account,
            credit_limit,
            max_balance,
            reason,
        });
    let freeze = (account_index(), text()).prop_map(|(account, reason)| OpSpec::Freeze { account, reason });
    let unfreeze =
        (account_index(), text()).prop_map(|(account, reason)| OpSpec::Unfreeze { account, reason });
    let rotate = (account_index(), keys()).prop_map(|(account, keys)| OpSpec::RotateKeys { account, keys });
    // The payee is mostly another account than the payer.
    let payee_offset = prop_oneof![12 => 1..HANDLES.len(), 1 => Just(0)];
    let transfer = (account_index(), payee_offset, amount(), text(), proptest::option::weighted(0.2, text()))
        .prop_map(|(payer, offset, amount, memo, invoice)| OpSpec::Transfer {
            payer,
            payee: (payer + offset) % HANDLES.len(),
            amount,
            memo,
            invoice,
        });
    let oversized =
        (account_index(), account_index()).prop_map(|(payer, payee)| OpSpec::Oversized { payer, payee });
    // Boxed arms keep the value tree small: unboxed, it overflows a test thread's stack.
    prop_oneof![
        14 => transfer.boxed(),
        2 => register.boxed(),
        3 => set_limits.boxed(),
        2 => freeze.boxed(),
        2 => unfreeze.boxed(),
        1 => rotate.boxed(),
        1 => malformed().prop_map(OpSpec::Malformed).boxed(),
        1 => oversized.boxed(),
    ]
    .boxed()
}

fn sig() -> BoxedStrategy<Sig> {
    prop_oneof![
        60 => Just(Sig::Good),
        1 => Just(Sig::Flipped),
        1 => Just(Sig::OtherLedger),
        1 => Just(Sig::WrongKey),
        1 => Just(Sig::WeakSigner),
        1 => Just(Sig::ShortSigner),
        1 => Just(Sig::ShortSignature),
    ]
    .boxed()
}

fn id() -> BoxedStrategy<Id> {
    prop_oneof![
        12 => Just(Id::Fresh),
        1 => any::<Index>().prop_map(Id::Reuse),
    ]
    .boxed()
}

fn validity() -> BoxedStrategy<Validity> {
    prop_oneof![
        30 => Just(Validity::Valid),
        1 => Just(Validity::Expired),
        1 => Just(Validity::TooLong),
    ]
    .boxed()
}

fn submission() -> BoxedStrategy<Submission> {
    (op_spec(), 0..10u8, 0..FIRM_SEEDS.len(), sig(), id(), validity())
        .prop_map(|(op, who, firm, sig, id, validity)| {
            // Mostly the right signer: the administrator for administrative operations, an
            // account key for the others.
            let administrative = matches!(
                op,
                OpSpec::Register { .. }
                    | OpSpec::SetLimits { .. }
                    | OpSpec::Freeze { .. }
                    | OpSpec::Unfreeze { .. }
            );
            let signer = match (who, administrative) {
                (0, _) => Signer::Firm(firm),
                (1, true) => Signer::Owner,
                (1, false) => Signer::Admin,
                (_, true) => Signer::Admin,
                (_, false) => Signer::Owner,
            };
            Submission { op, signer, sig, id, validity }
        })
        .boxed()
}

/// Well-formed registrations by the administrator of two to four distinct accounts, in
/// random order, so that every case starts with accounts to pay between.
fn setup() -> BoxedStrategy<Vec<Step>> {
    let limit = prop_oneof![
        4 => 0..=2_000i64,
        1 => Just(i64::MAX),
        1 => (i64::MAX - 1_000)..=i64::MAX,
    ];
    let max = prop_oneof![
        3 => Just(None),
        2 => (0..=3_000i64).prop_map(Some),
    ];
    let keys = proptest::sample::subsequence((0..FIRM_SEEDS.len()).collect::<Vec<_>>(), 1..=2)
        .prop_shuffle()
        .prop_map(|ks| ks.into_iter().map(KeyChoice::Firm).collect::<Vec<_>>());
    let accounts = proptest::sample::subsequence((0..HANDLES.len()).collect::<Vec<_>>(), 2..=HANDLES.len())
        .prop_shuffle();
    (accounts, proptest::collection::vec((keys, limit, max), HANDLES.len()))
        .prop_map(|(accounts, registrations)| {
            accounts
                .into_iter()
                .zip(registrations)
                .map(|(account, (keys, credit_limit, max_balance))| {
                    let registration = Submission {
                        op: OpSpec::Register { account, name: Text::Normal, keys, credit_limit, max_balance },
                        signer: Signer::Admin,
                        sig: Sig::Good,
                        id: Id::Fresh,
                        validity: Validity::Valid,
                    };
                    Step::Submit(vec![Action::Submit(registration)], Via::Submit)
                })
                .collect()
        })
        .boxed()
}

fn action() -> BoxedStrategy<Action> {
    prop_oneof![
        12 => submission().prop_map(Action::Submit),
        1 => any::<Index>().prop_map(Action::Resubmit),
    ]
    .boxed()
}

fn step() -> BoxedStrategy<Step> {
    prop_oneof![
        16 => action().prop_map(|a| Step::Submit(vec![a], Via::Submit)),
        1 => proptest::collection::vec(action(), 2..=4).prop_map(|a| Step::Submit(a, Via::Submit)),
        1 => proptest::collection::vec(action(), 1..=4).prop_map(|a| Step::Submit(a, Via::Batch)),
        3 => Just(Step::Restart),
    ]
    .boxed()
}

fn steps() -> BoxedStrategy<Vec<Step>> {
    (setup(), proptest::collection::vec(step(), 1..=36))
        .prop_map(|(mut setup, rest)| {
            setup.extend(rest);
            setup
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// The reference model

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelAccount {
    display_name: String,
    keys: Vec<PublicKey>,
    balance: i128,
    credit_limit: i64,
    max_balance: Option<i64>,
    frozen: bool,
    registered_at: u64,
    last_sequence: u64,
}

/// An accepted operation: its body, where it landed, and (once the node answered) the
/// receipt every retry must get again.
struct AcceptedOp {
    body: Vec<u8>,
    sequence: u64,
    receipt: Option<pb::Receipt>,
}

/// What the model says the node must answer.
#[derive(Debug)]
enum Expected {
    New {
        id: OperationId,
        sequence: u64,
        balances_after: Vec<pb::BalanceAfter>,
        /// For a transfer: the payer's floor and the payee's maximum when it was applied.
        limits: Option<(i64, Option<i64>)>,
    },
    Duplicate {
        id: OperationId,
    },
    Rejected(RejectCode),
}

/// What the node answered: a receipt, or the rejection's (reason name, code number) if it
/// gave one, with a description for failure messages.
type Real = Result<pb::Receipt, (Option<(String, String)>, String)>;

/// A signed envelope and what the test knows about how it was made.
#[derive(Clone)]
struct Built {
    envelope: pb::Envelope,
    /// `None` when the body does not decode.
    op: Option<Operation>,
    validity: Validity,
    /// The signer and signature fields have the right lengths.
    shape_ok: bool,
    signature_ok: bool,
}

struct Model {
    admin: PublicKey,
    /// Keys that are valid, non-weak curve points.
    valid_keys: Vec<PublicKey>,
    accounts: BTreeMap<String, ModelAccount>,
    ops: BTreeMap<OperationId, AcceptedOp>,
    head: Head,
}

fn text_ok(text: &str, max_chars: usize) -> bool {
    text.chars().count() <= max_chars && !text.chars().any(char::is_control)
}

fn reason_ok(reason: &str, required: bool) -> bool {
    !(required && reason.trim().is_empty()) && text_ok(reason, REASON_CHARS_MAX)
}

impl Model {
    fn new(keys: &Keys, genesis: &Genesis) -> Model {
        Model {
            admin: keys.admin.public_key(),
            valid_keys: std::iter::once(&keys.admin).chain(&keys.firms).map(Keypair::public_key).collect(),
            accounts: BTreeMap::new(),
            ops: BTreeMap::new(),
            head: Head::empty(genesis),
        }
    }

    fn keys_ok(&self, keys: &[PublicKey]) -> bool {
        !keys.is_empty()
            && keys.len() <= KEYS_PER_ACCOUNT_MAX
            && keys.iter().all(|k| self.valid_keys.contains(k))
            && keys.iter().enumerate().all(|(i, k)| !keys[i + 1..].contains(k))
    }

    fn account(&self, id: &AccountId) -> Result<&ModelAccount, RejectCode> {
        self.accounts.get(id.as_str()).ok_or(RejectCode::UnknownAccount)
    }

    /// Decides what the node must do with `b`, and does it to the model.
    fn submit(&mut self, b: &Built) -> Expected {
        match self.try_submit(b) {
            Ok(expected) => expected,
            Err(code) => Expected::Rejected(code),
        }
    }

    fn try_submit(&mut self, b: &Built) -> Result<Expected, RejectCode> {
        // The handler: size, envelope shape, signature, body.
        if b.envelope.body.len() > BODY_BYTES_MAX {
            return Err(RejectCode::BodyTooLarge);
        }
        if !b.shape_ok {
            return Err(RejectCode::Malformed);
        }
        if !b.signature_ok {
            return Err(RejectCode::BadSignature);
        }
        let op = b.op.as_ref().ok_or(RejectCode::Malformed)?;
        // The writer: an id already accepted is a retry or a conflict, whatever else holds.
        if let Some(accepted) = self.ops.get(&op.id) {
            return if accepted.body == b.envelope.body {
                Ok(Expected::Duplicate { id: op.id })
            } else {
                Err(RejectCode::OperationIdConflict)
            };
        }
        // The state machine.
        match b.validity {
            Validity::Valid => {}
            Validity::Expired => return Err(RejectCode::Expired),
            Validity::TooLong => return Err(RejectCode::ValidityTooLong),
        }
        let signer = PublicKey(b.envelope.signer.as_slice().try_into().expect("shape checked"));
        let sequence = self.head.size + 1;
        let (balances_after, limits) = self.apply(&signer, &op.kind, sequence)?;
        self.ops.insert(op.id, AcceptedOp { body: b.envelope.body.clone(), sequence, receipt: None });
        // The rest of the head comes with the receipt.
        self.head.size = sequence;
        Ok(Expected::New {
            id: op.id,
            sequence,
            balances_after: balances_after
                .into_iter()
                .map(|(account, balance_minor)| pb::BalanceAfter { account, balance_minor })
                .collect(),
            limits,
        })
    }

    #[allow(clippy::type_complexity)]
    fn apply(
        &mut self,
        signer: &PublicKey,
        kind: &OpKind,
        sequence: u64,
    ) -> Result<(Vec<(String, i64)>, Option<(i64, Option<i64>)>), RejectCode> {
        let is_admin = *signer == self.admin;
        let administrative = matches!(
            kind,
            OpKind::RegisterAccount(_)
                | OpKind::SetLimits(_)
                | OpKind::FreezeAccount { .. }
                | OpKind::UnfreezeAccount { .. }
        );
        if administrative && !is_admin {
            return Err(RejectCode::NotAdministrator);
        }
        match kind {
            // Invoices and clearing have their own tests (cercle-core's `invoice_tests`, the
            // clearing e2e test); this model covers accounts and transfers.
            OpKind::IssueInvoice(_)
            | OpKind::AcceptInvoice(_)
            | OpKind::RejectInvoice { .. }
            | OpKind::CancelInvoice { .. }
            | OpKind::SetInvoiceClearing { .. }
            | OpKind::RunClearing(_) => panic!("the model generates no invoice operations"),
            OpKind::RegisterAccount(r) => {
                if !text_ok(&r.display_name, DISPLAY_NAME_CHARS_MAX) {
                    return Err(RejectCode::InvalidText);
                }
                if !self.keys_ok(&r.keys) {
                    return Err(RejectCode::InvalidKeys);
                }
                if r.credit_limit_minor < 0 || r.max_balance_minor.is_some_and(|m| m < 0) {
                    return Err(RejectCode::InvalidLimit);
                }
                if self.accounts.contains_key(r.account.as_str()) {
                    return Err(RejectCode::AccountExists);
                }
                self.accounts.insert(
                    r.account.to_string(),
                    ModelAccount {
                        display_name: r.display_name.clone(),
                        keys: r.keys.clone(),
                        balance: 0,
                        credit_limit: r.credit_limit_minor,
                        max_balance: r.max_balance_minor,
                        frozen: false,
                        registered_at: sequence,
                        last_sequence: sequence,
                    },
                );
                Ok((vec![(r.account.to_string(), 0)], None))
            }
            OpKind::SetLimits(s) => {
                if !reason_ok(&s.reason, true) {
                    return Err(RejectCode::InvalidText);
                }
                if s.credit_limit_minor.is_none() && s.max_balance_minor.is_none() {
                    return Err(RejectCode::NothingToChange);
                }
                if s.credit_limit_minor.is_some_and(|l| l < 0)
                    || s.max_balance_minor.flatten().is_some_and(|m| m < 0)
                {
                    return Err(RejectCode::InvalidLimit);
                }
                self.account(&s.account)?;
                let a = self.touch(&s.account, sequence);
                if let Some(limit) = s.credit_limit_minor {
                    a.credit_limit = limit;
                }
                if let Some(max) = s.max_balance_minor {
                    a.max_balance = max;
                }
                Ok((vec![], None))
            }
            OpKind::FreezeAccount { account, reason } => {
                if !reason_ok(reason, true) {
                    return Err(RejectCode::InvalidText);
                }
                if self.account(account)?.frozen {
                    return Err(RejectCode::AlreadyFrozen);
                }
                self.touch(account, sequence).frozen = true;
                Ok((vec![], None))
            }
            OpKind::UnfreezeAccount { account, reason } => {
                if !reason_ok(reason, false) {
                    return Err(RejectCode::InvalidText);
                }
                if !self.account(account)?.frozen {
                    return Err(RejectCode::NotFrozen);
                }
                self.touch(account, sequence).frozen = false;
                Ok((vec![], None))
            }
            OpKind::RotateKeys { account, keys } => {
                if !self.keys_ok(keys) {
                    return Err(RejectCode::InvalidKeys);
                }
                let a = self.account(account)?;
                if !is_admin && !a.keys.contains(signer) {
                    return Err(RejectCode::NotAccountKey);
                }
                self.touch(account, sequence).keys = keys.clone();
                Ok((vec![], None))
            }
            OpKind::Transfer(t) => {
                if !text_ok(&t.memo, MEMO_CHARS_MAX)
                    || t.invoice_ref.as_ref().is_some_and(|i| !text_ok(i, INVOICE_REF_CHARS_MAX))
                {
                    return Err(RejectCode::InvalidText);
                }
                if t.amount_minor <= 0 {
                    return Err(RejectCode::InvalidAmount);
                }
                if t.payer == t.payee {
                    return Err(RejectCode::SelfTransfer);
                }
                let payer = self.account(&t.payer)?;
                if !payer.keys.contains(signer) {
                    return Err(RejectCode::NotAccountKey);
                }
                let payee = self.account(&t.payee)?;
                if payer.frozen || payee.frozen {
                    return Err(RejectCode::AccountFrozen);
                }
                let amount = i128::from(t.amount_minor);
                let payer_after = payer.balance - amount;
                let payee_after = payee.balance + amount;
                let in_range = |b: i128| (i128::from(i64::MIN)..=i128::from(i64::MAX)).contains(&b);
                if !in_range(payer_after) || !in_range(payee_after) {
                    return Err(RejectCode::BalanceOverflow);
                }
                if payer_after < -i128::from(payer.credit_limit) {
                    return Err(RejectCode::CreditLimitExceeded);
                }
                if payee.max_balance.is_some_and(|max| payee_after > i128::from(max)) {
                    return Err(RejectCode::MaxBalanceExceeded);
                }
                let limits = (-payer.credit_limit, payee.max_balance);
                self.touch(&t.payer, sequence).balance = payer_after;
                self.touch(&t.payee, sequence).balance = payee_after;
                let narrow = |b: i128| i64::try_from(b).expect("checked in range");
                Ok((
                    vec![
                        (t.payer.to_string(), narrow(payer_after)),
                        (t.payee.to_string(), narrow(payee_after)),
                    ],
                    Some(limits),
                ))
            }
        }
    }

    /// The account `id`, known to exist, marked as touched by entry `sequence`.
    fn touch(&mut self, id: &AccountId, sequence: u64) -> &mut ModelAccount {
        let a = self.accounts.get_mut(id.as_str()).expect("the caller checked the account exists");
        a.last_sequence = sequence;
        a
    }

    fn core_account(&self, handle: &str) -> Option<Account> {
        let a = self.accounts.get(handle)?;
        Some(Account {
            id: AccountId::parse(handle).expect("a valid handle"),
            display_name: a.display_name.clone(),
            keys: a.keys.clone(),
            balance_minor: i64::try_from(a.balance).expect("a balance within i64"),
            credit_limit_minor: a.credit_limit,
            max_balance_minor: a.max_balance,
            status: if a.frozen { AccountStatus::Frozen } else { AccountStatus::Active },
            registered_at_sequence: a.registered_at,
            last_sequence: a.last_sequence,
        })
    }

    fn core_accounts(&self) -> Vec<Account> {
        self.accounts.keys().filter_map(|h| self.core_account(h)).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Running a case

struct Run {
    keys: Keys,
    node: TestNode,
    model: Model,
    /// Every envelope built so far, for retries and reused ids.
    history: Vec<Built>,
    next_id: u64,
}

impl Run {
    fn new() -> Run {
        let keys = Keys::new();
        let node = TestNode::start_new(&keys.admin);
        let model = Model::new(&keys, &node.genesis);
        Run { keys, node, model, history: Vec::new(), next_id: 0 }
    }

    fn fresh_id(&mut self) -> OperationId {
        self.next_id += 1;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&self.next_id.to_be_bytes());
        OperationId(id)
    }

    fn build(&mut self, s: &Submission) -> Built {
        let id = match &s.id {
            Id::Fresh => self.fresh_id(),
            Id::Reuse(ix) => {
                let used: Vec<OperationId> =
                    self.history.iter().filter_map(|b| b.op.as_ref().map(|op| op.id)).collect();
                if used.is_empty() { self.fresh_id() } else { used[ix.index(used.len())] }
            }
        };
        let now = now_ms();
        let valid_until_ms = match s.validity {
            Validity::Valid => now + HOUR_MS,
            Validity::Expired => now - MINUTE_MS,
            Validity::TooLong => now + VALIDITY_MS_MAX + HOUR_MS,
        };
        let handle = |i: usize| AccountId::parse(HANDLES[i]).expect("a valid handle");
        let keys = |choices: &[KeyChoice]| choices.iter().map(|&c| self.keys.public(c)).collect();
        let kind = match &s.op {
            OpSpec::Register { account, name, keys: choices, credit_limit, max_balance } => {
                Some(OpKind::RegisterAccount(RegisterAccount {
                    account: handle(*account),
                    display_name: name.resolve(DISPLAY_NAME_CHARS_MAX),
                    keys: keys(choices),
                    credit_limit_minor: *credit_limit,
                    max_balance_minor: *max_balance,
                }))
            }
            OpSpec::SetLimits { account, credit_limit, max_balance, reason } => {
                Some(OpKind::SetLimits(SetLimits {
                    account: handle(*account),
                    credit_limit_minor: *credit_limit,
                    max_balance_minor: *max_balance,
                    reason: reason.resolve(REASON_CHARS_MAX),
                }))
            }
            OpSpec::Freeze { account, reason } => Some(OpKind::FreezeAccount {
                account: handle(*account),
                reason: reason.resolve(REASON_CHARS_MAX),
            }),
            OpSpec::Unfreeze { account, reason } => Some(OpKind::UnfreezeAccount {
                account: handle(*account),
                reason: reason.resolve(REASON_CHARS_MAX),
            }),
            OpSpec::RotateKeys { account, keys: choices } => {
                Some(OpKind::RotateKeys { account: handle(*account), keys: keys(choices) })
            }
            OpSpec::Transfer { payer, payee, amount, memo, invoice } => Some(OpKind::Transfer(Transfer {
                payer: handle(*payer),
                payee: handle(*payee),
                amount_minor: *amount,
                memo: memo.resolve(MEMO_CHARS_MAX),
                invoice_ref: invoice.map(|t| t.resolve(INVOICE_REF_CHARS_MAX)),
                invoice: None,
            })),
            OpSpec::Oversized { payer, payee } => Some(OpKind::Transfer(Transfer {
                payer: handle(*payer),
                payee: handle(*payee),
                amount_minor: 1,
                memo: "m".repeat(BODY_BYTES_MAX),
                invoice_ref: None,
                invoice: None,
            })),
            OpSpec::Malformed(_) => None,
        };
        let op = kind.map(|kind| Operation { id, valid_until_ms, kind });
        let body = match (&op, &s.op) {
            (Some(op), _) => cercle_proto::encode_operation(op),
            (None, OpSpec::Malformed(m)) => malformed_body(*m, id, valid_until_ms),
            (None, _) => unreachable!("only malformed specs have no operation"),
        };
        let owner = self
            .model
            .accounts
            .get(HANDLES[s.op.primary()])
            .and_then(|a| a.keys.iter().find_map(|k| self.keys.signing(k)));
        let signer = match s.signer {
            Signer::Owner => owner.unwrap_or(&self.keys.firms[0]),
            Signer::Admin => &self.keys.admin,
            Signer::Firm(i) => &self.keys.firms[i],
        };
        let ledger_id = self.node.genesis.ledger_id;
        let mut envelope = sign_body(&ledger_id, signer, body);
        let (mut shape_ok, mut signature_ok) = (true, true);
        match s.sig {
            Sig::Good => {}
            Sig::Flipped => {
                envelope.signature[10] ^= 0x01;
                signature_ok = false;
            }
            Sig::OtherLedger => {
                envelope.signature = signer.sign_op(&LedgerId([0xee; 16]), &envelope.body).to_vec();
                signature_ok = false;
            }
            Sig::WrongKey => {
                let other = if signer.public_key() == self.keys.firms[0].public_key() {
                    &self.keys.firms[1]
                } else {
                    &self.keys.firms[0]
                };
                envelope.signature = other.sign_op(&ledger_id, &envelope.body).to_vec();
                signature_ok = false;
            }
            Sig::WeakSigner => {
                envelope.signer = self.keys.weak.0.to_vec();
                signature_ok = false;
            }
            Sig::ShortSigner => {
                envelope.signer.pop();
                shape_ok = false;
            }
            Sig::ShortSignature => {
                envelope.signature.pop();
                shape_ok = false;
            }
        }
        Built { envelope, op, validity: s.validity, shape_ok, signature_ok }
    }

    fn run(&mut self, steps: &[Step]) -> Result<(), TestCaseError> {
        for step in steps {
            match step {
                Step::Submit(actions, via) => self.submit(actions, *via)?,
                Step::Restart => self.restart()?,
            }
        }
        self.check_store()
    }

    fn submit(&mut self, actions: &[Action], via: Via) -> Result<(), TestCaseError> {
        let mut built = Vec::with_capacity(actions.len());
        for action in actions {
            let b = match action {
                Action::Submit(s) => self.build(s),
                Action::Resubmit(ix) if !self.history.is_empty() => {
                    self.history[ix.index(self.history.len())].clone()
                }
                Action::Resubmit(_) => continue,
            };
            self.history.push(b.clone());
            built.push(b);
        }
        let expected: Vec<Expected> = built.iter().map(|b| self.model.submit(b)).collect();
        let envelopes = built.iter().map(|b| b.envelope.clone()).collect();
        let real: Vec<Real> = match via {
            Via::Submit => self
                .node
                .submit_all(envelopes)
                .into_iter()
                .map(|r| r.map_err(|status| (rejection_of(&status), format!("{status:?}"))))
                .collect(),
            Via::Batch => self
                .node
                .submit_batch(envelopes)
                .into_iter()
                .map(|r| r.map_err(|rejection| (Some(rejection.clone()), format!("{rejection:?}"))))
                .collect(),
        };
        prop_assert_eq!(real.len(), expected.len(), "one outcome per envelope");
        for (expected, real) in expected.into_iter().zip(real) {
            self.check_outcome(expected, real)?;
        }
        self.check_node()
    }

    fn check_outcome(&mut self, expected: Expected, real: Real) -> Result<(), TestCaseError> {
        match (expected, real) {
            (Expected::Rejected(code), Err((rejection, description))) => {
                prop_assert_eq!(rejection, expected_rejection(code), "{}", description);
            }
            (Expected::New { id, sequence, balances_after, limits }, Ok(receipt)) => {
                prop_assert!(!receipt.duplicate);
                prop_assert_eq!(receipt.sequence, sequence);
                prop_assert_eq!(&receipt.operation_id, &id.0.to_vec());
                prop_assert_eq!(&receipt.balances_after, &balances_after);
                prop_assert!(receipt.timestamp_ms >= self.model.head.timestamp_ms);
                if let Some((floor, max)) = limits {
                    // The transfer's accounts were within their limits when it was applied.
                    let payer = receipt.balances_after[0].balance_minor;
                    let payee = receipt.balances_after[1].balance_minor;
                    prop_assert!(payer >= floor, "{} is below {}", payer, floor);
                    prop_assert!(max.is_none_or(|m| payee <= m), "{} above {:?}", payee, max);
                }
                let hash: [u8; 32] = receipt
                    .entry_hash
                    .as_slice()
                    .try_into()
                    .map_err(|_| TestCaseError::fail("the entry hash is not 32 bytes"))?;
                self.model.head = Head { size: sequence, hash, timestamp_ms: receipt.timestamp_ms };
                if let Some(op) = self.model.ops.get_mut(&id) {
                    op.receipt = Some(receipt);
                }
            }
            (Expected::Duplicate { id }, Ok(receipt)) => {
                let original = self
                    .model
                    .ops
                    .get(&id)
                    .and_then(|op| op.receipt.clone())
                    .ok_or_else(|| TestCaseError::fail("a retry of an unanswered operation"))?;
                prop_assert!(receipt.duplicate, "a retry must be flagged as one");
                prop_assert_eq!(pb::Receipt { duplicate: false, ..receipt }, original);
            }
            (expected, real) => {
                prop_assert!(false, "the model expected {:?}, the node answered {:?}", expected, real);
            }
        }
        Ok(())
    }

    /// The node's accounts equal the model's; balances sum to zero; the log has every
    /// accepted operation and nothing else.
    fn check_node(&self) -> Result<(), TestCaseError> {
        let mut sum: i128 = 0;
        for handle in HANDLES {
            let real = self.node.account(handle);
            let expected = self.model.core_account(handle).map(|a| pb::Account::from(&a));
            prop_assert_eq!(&real, &expected, "account {}", handle);
            sum += real.map_or(0, |a| i128::from(a.balance_minor));
        }
        prop_assert_eq!(sum, 0, "balances must sum to zero");
        prop_assert_eq!(self.node.log_size(), self.model.head.size);
        Ok(())
    }

    /// Stops the node and checks its store: opened as an auditor opens it, the log replays
    /// from genesis (signatures included) to the model's state digest and head, the state
    /// kept beside the log agrees with it, and the stored accounts, head and operation ids
    /// are the model's.
    fn check_store(&mut self) -> Result<(), TestCaseError> {
        self.node.stop();
        let (store, replayed, report) = self.node.open_store();
        let genesis = &self.node.genesis;
        let expected_accounts = self.model.core_accounts();
        let expected_digest = State::from_parts(genesis, expected_accounts.clone(), []).digest();
        prop_assert_eq!(replayed.state().digest(), expected_digest);
        prop_assert_eq!(*replayed.head(), self.model.head);
        // The state beside the log may lag behind it (it is rolled forward), never differ.
        prop_assert_ne!(report.outcome, OpenOutcome::Rebuilt);
        prop_assert_eq!(store.head().expect("head"), self.model.head);
        let stored = store.accounts().expect("accounts");
        prop_assert_eq!(&stored, &expected_accounts);
        prop_assert_eq!(State::from_parts(genesis, stored, []).digest(), expected_digest);
        for (id, op) in &self.model.ops {
            prop_assert_eq!(store.operation(id).expect("operation id index"), Some(op.sequence));
        }
        let log_only = store.replay_log().map_err(|e| TestCaseError::fail(format!("replay_log: {e}")))?;
        prop_assert_eq!(log_only.state().digest(), expected_digest);
        prop_assert_eq!(*log_only.head(), self.model.head);
        Ok(())
    }

    /// Restarts the node: what it serves after must equal what it served before.
    fn restart(&mut self) -> Result<(), TestCaseError> {
        let before: Vec<_> = HANDLES.iter().map(|h| self.node.account(h)).collect();
        self.check_store()?;
        self.node.start();
        let after: Vec<_> = HANDLES.iter().map(|h| self.node.account(h)).collect();
        prop_assert_eq!(before, after);
        self.check_node()
    }
}

/// A correctly signed body that does not decode into an operation.
fn malformed_body(m: Malformed, id: OperationId, valid_until_ms: u64) -> Vec<u8> {
    let transfer = Operation {
        id,
        valid_until_ms,
        kind: OpKind::Transfer(Transfer {
            payer: AccountId::parse(HANDLES[0]).expect("a valid handle"),
            payee: AccountId::parse(HANDLES[1]).expect("a valid handle"),
            amount_minor: 1,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        }),
    };
    let mut body = pb::OperationBody::from(&transfer);
    match m {
        Malformed::UppercaseHandle => {
            if let Some(pb::operation_body::Kind::Transfer(t)) = &mut body.kind {
                t.payer = "Alpha".into();
            }
        }
        Malformed::ShortOperationId => {
            body.operation_id.pop();
        }
        Malformed::NoKind => body.kind = None,
        Malformed::ShortKey => {
            body.kind = Some(pb::operation_body::Kind::RotateKeys(pb::RotateKeys {
                account: HANDLES[0].into(),
                public_keys: vec![vec![7; 31]],
            }));
        }
        Malformed::NotProtobuf => return vec![0xff, 0xff, 0xff],
    }
    body.encode_to_vec()
}

fn config() -> ProptestConfig {
    // `ProptestConfig::default()` reads PROPTEST_CASES; only when it is unset do we ask
    // for more cases than proptest's default.
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES_DEFAULT;
    }
    // Failing cases go to `tests/model.proptest-regressions` (the default mirrors `src/`
    // and finds no lib.rs above `tests/`).
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions")));
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn node_matches_model(steps in steps()) {
        Run::new().run(&steps)?;
    }
}

// ---------------------------------------------------------------------------------------
// Plain tests of things that are easy to state

fn handle(text: &str) -> AccountId {
    AccountId::parse(text).expect("a valid handle")
}

fn register_op(id: u8, account: &str, key: &Keypair, credit_limit_minor: i64) -> Operation {
    Operation {
        id: OperationId([id; 16]),
        valid_until_ms: now_ms() + HOUR_MS,
        kind: OpKind::RegisterAccount(RegisterAccount {
            account: handle(account),
            display_name: account.to_string(),
            keys: vec![key.public_key()],
            credit_limit_minor,
            max_balance_minor: None,
        }),
    }
}

fn transfer_op(id: u8, payer: &str, payee: &str, amount_minor: i64) -> Operation {
    Operation {
        id: OperationId([id; 16]),
        valid_until_ms: now_ms() + HOUR_MS,
        kind: OpKind::Transfer(Transfer {
            payer: handle(payer),
            payee: handle(payee),
            amount_minor,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        }),
    }
}

/// A node with two accounts, "alpha" (key 11, credit limit 1,000.00) and "bravo" (key 12).
fn two_accounts() -> (TestNode, Keypair, Keypair) {
    let admin = keypair(ADMIN_SEED);
    let (alpha, bravo) = (keypair(11), keypair(12));
    let node = TestNode::start_new(&admin);
    let ledger_id = node.genesis.ledger_id;
    for op in [register_op(1, "alpha", &alpha, 100_000), register_op(2, "bravo", &bravo, 0)] {
        node.submit(sign_op(&ledger_id, &admin, &op)).expect("registration accepted");
    }
    (node, alpha, bravo)
}

fn balances(node: &TestNode) -> Vec<Option<i64>> {
    ["alpha", "bravo"].iter().map(|h| node.account(h).map(|a| a.balance_minor)).collect()
}

fn assert_rejected(result: Result<pb::Receipt, tonic::Status>, code: RejectCode) {
    let status = result.expect_err("the operation must be rejected");
    assert_eq!(rejection_of(&status), expected_rejection(code), "{status:?}");
}

#[test]
fn reusing_an_operation_id_for_another_operation_is_refused() {
    let (node, alpha, _) = two_accounts();
    let ledger_id = node.genesis.ledger_id;
    let first = sign_op(&ledger_id, &alpha, &transfer_op(3, "alpha", "bravo", 100));
    let original = node.submit(first.clone()).expect("accepted");
    let conflicting = sign_op(&ledger_id, &alpha, &transfer_op(3, "alpha", "bravo", 200));
    assert_rejected(node.submit(conflicting), RejectCode::OperationIdConflict);
    assert_eq!(balances(&node), [Some(-100), Some(100)]);
    assert_eq!(node.log_size(), 3);
    let retry = node.submit(first).expect("a retry is answered");
    assert!(retry.duplicate);
    assert_eq!(retry.sequence, original.sequence);
    assert_eq!(retry.entry_hash, original.entry_hash);
}

#[test]
fn a_retry_after_a_restart_gets_the_original_receipt() {
    let (mut node, alpha, _) = two_accounts();
    let ledger_id = node.genesis.ledger_id;
    let envelope = sign_op(&ledger_id, &alpha, &transfer_op(3, "alpha", "bravo", 250));
    let original = node.submit(envelope.clone()).expect("accepted");
    node.restart();
    let retry = node.submit(envelope).expect("a retry is answered");
    assert_eq!(retry, pb::Receipt { duplicate: true, ..original });
    assert_eq!(balances(&node), [Some(-250), Some(250)]);
    assert_eq!(node.log_size(), 3);
}

#[test]
fn a_bad_signature_changes_nothing_and_burns_no_operation_id() {
    let (node, alpha, bravo) = two_accounts();
    let ledger_id = node.genesis.ledger_id;
    let op = transfer_op(3, "alpha", "bravo", 100);
    let mut flipped = sign_op(&ledger_id, &alpha, &op);
    flipped.signature[0] ^= 0x80;
    let other_ledger = sign_op(&LedgerId([0xee; 16]), &alpha, &op);
    let mut wrong_key = sign_op(&ledger_id, &bravo, &op);
    wrong_key.signer = alpha.public_key().0.to_vec();
    for envelope in [flipped, other_ledger, wrong_key] {
        assert_rejected(node.submit(envelope), RejectCode::BadSignature);
        assert_eq!(balances(&node), [Some(0), Some(0)]);
        assert_eq!(node.log_size(), 2);
    }
    let receipt =
        node.submit(sign_op(&ledger_id, &alpha, &op)).expect("the well-signed operation is accepted");
    assert!(!receipt.duplicate);
    assert_eq!(balances(&node), [Some(-100), Some(100)]);
}

#[test]
fn a_payment_may_reach_the_credit_limit_but_not_pass_it() {
    let (node, alpha, _) = two_accounts();
    let ledger_id = node.genesis.ledger_id;
    node.submit(sign_op(&ledger_id, &alpha, &transfer_op(3, "alpha", "bravo", 99_999)))
        .expect("within the limit");
    let status = node
        .submit(sign_op(&ledger_id, &alpha, &transfer_op(4, "alpha", "bravo", 2)))
        .expect_err("past the limit");
    assert_eq!(rejection_of(&status), expected_rejection(RejectCode::CreditLimitExceeded));
    assert!(
        status.message().contains("balance would be -1,000.01 CHW, limit is -1,000.00 CHW"),
        "{}",
        status.message()
    );
    node.submit(sign_op(&ledger_id, &alpha, &transfer_op(5, "alpha", "bravo", 1)))
        .expect("exactly at the limit");
    assert_eq!(balances(&node), [Some(-100_000), Some(100_000)]);
}
