//! Model-based tests of the node: generated sequences of operations, valid and invalid,
//! with restarts, run against the real node (handlers, writer, sled store) and against a
//! small reference model, with the ledger's invariants checked after every step.
//!
//! The model (`Model`) is a `BTreeMap` of accounts and one of invoices with the rules
//! written out again, on purpose without calling the core's state machine or its clearing
//! code: where the two disagree on whether an operation is accepted, on its rejection code,
//! or on any field of any account or invoice, the test fails. The model checks rejection
//! reasons in the order documented in `cercle_core::state` (time, authority, values,
//! accounts, signer, status, arithmetic, limits), preceded by what the handlers and the
//! writer check first (body size, envelope shape, signature, body decoding, operation id).
//! One detail follows the code rather than those docs: a transfer checks that the signer
//! holds a key of the payer before it looks the payee up. (`SetInvoiceClearing` asking for
//! the exclusion an invoice already has is NOTHING_TO_CHANGE only after the invoice's
//! parties and the signer are checked: the flag is not public.)
//!
//! After every step the node's accounts (read through `GetAccount`) must equal the
//! model's, balances must sum to exactly zero and the log must hold exactly the accepted
//! operations; every accepted transfer must leave the payer at or above minus its credit
//! limit and the payee at or below its maximum, as they stood at that moment. At every
//! restart and at the end, the stopped node's store must replay from genesis to the
//! model's state digest and head, its accounts and invoices must be the model's, and the
//! restarted node must serve the same accounts.
//!
//! A clearing run's allocation is the node's choice among optimal ones, so the model cannot
//! predict it; it predicts whether the run is accepted, and computes the most that can be
//! cleared with an exhaustive reference of its own (`reference_min_cost`). After an
//! accepted run the node is stopped and its store read: every invoice's new cleared and
//! paid amounts, every balance and the entry's clearing record are checked against the
//! model's rules (within what is open, set-off optimal and leaving every net position
//! unchanged, each pair's amount allocated oldest due first, then oldest issued, then by
//! id, payments within each firm's headroom and equal to what credit cleared for it,
//! credit optimal on what set-off left), and only then adopted by the model. The node is
//! started again and the test goes on.

mod common;

use std::collections::BTreeMap;

use cercle_core::sign::{Keypair, SignatureError, check_public_key};
use cercle_core::{
    Account, AccountId, AccountStatus, ClearingRecord, Genesis, Head, Invoice, InvoiceId, InvoiceParties,
    InvoiceState, IssueInvoice, LedgerId, OpKind, Operation, OperationId, Profile, PublicKey,
    RegisterAccount, RejectCode, RunClearing, SectionTag, SetLimits, State, Transfer,
};
use cercle_proto as pb;
use cercle_schema as schema;
use cercle_server::now_ms;
use cercle_server::recovery::{StateOutcome, replay_from_genesis};
use common::{
    ALL_CODES, TestNode, documented, expected_rejection, keypair, rejection_of, sign_body, sign_op,
};
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

// The documented limits (ARCHITECTURE.md, Limits), written out rather than read from
// `cercle_core::op`: changing one must fail this test, which checks the node at each edge.
/// Largest transfer, credit limit and maximum balance (`cercle_limits::AMOUNT_MAX_MINOR`).
const AMOUNT_MAX: i64 = 10_000_000_000_000;
/// Largest invoice amount (`cercle_limits::INVOICE_AMOUNT_MAX_MINOR`).
const INVOICE_AMOUNT_MAX_MINOR: i64 = 10_000_000_000_000;
const MEMO_CHARS_MAX: usize = 140;
const REASON_CHARS_MAX: usize = 280;
const DISPLAY_NAME_CHARS_MAX: usize = 100;
const INVOICE_REF_CHARS_MAX: usize = 64;
const KEYS_PER_ACCOUNT_MAX: usize = 8;
/// The longest validity window: 31 days.
const VALIDITY_MS_MAX: u64 = 31 * 24 * 60 * 60 * 1000;
/// The largest operation body, 4 KiB.
const BODY_BYTES_MAX: usize = 4096;
/// `AccountStatus` on the wire (ledger.proto).
const ACCOUNT_STATUS_ACTIVE: i32 = 1;
const ACCOUNT_STATUS_FROZEN: i32 = 2;
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
    /// A right-to-left override, which could make "001" display as "100".
    Bidi,
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
            Text::Bidi => "facture \u{202E}001".into(),
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
        allow_shared_key: bool,
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
        allow_shared_key: bool,
    },
    /// A profile change: a new name, and indexes into `COMMUNE_CHOICES` and
    /// `SECTOR_CHOICES` (valid, invalid, and "" to remove the field).
    SetProfile {
        account: usize,
        name: Option<Text>,
        commune: Option<usize>,
        sector: Option<usize>,
        reason: Text,
    },
    Transfer {
        payer: usize,
        payee: usize,
        amount: TransferAmount,
        memo: Text,
        invoice: Option<Text>,
    },
    /// A transfer whose memo makes the body larger than `BODY_BYTES_MAX`.
    Oversized {
        payer: usize,
        payee: usize,
    },
    Malformed(Malformed),
    /// A new invoice; `invoice: Id::Reuse` names an existing one.
    IssueInvoice {
        invoice: Id,
        firms: IssueFirms,
        amount: i64,
        local_share_percent: u8,
        due_day: Option<u32>,
        reference: Text,
        excluded: bool,
    },
    /// Accept, reject, cancel or change the clearing exclusion of an invoice.
    OnInvoice {
        target: InvoiceTarget,
        action: InvoiceAction,
    },
    /// A transfer naming an invoice, from the payer the operation names to its payee.
    PayInvoice {
        target: InvoiceTarget,
        amount: PayAmount,
        memo: Text,
    },
    RunClearing {
        with_credit: bool,
        reason: Text,
    },
}

/// The payee and the payer of a new invoice.
#[derive(Debug, Clone, Copy)]
enum IssueFirms {
    /// Two distinct registered accounts (when there are two).
    Registered { payee: Index, payer: Index },
    /// Any two handles, registered or not.
    Named { payee: usize, payer: usize },
}

/// Which invoice an operation on an invoice names. Resolved against the model when the
/// envelope is built, so that most operations name an invoice that exists.
#[derive(Debug, Clone, Copy)]
enum InvoicePick {
    /// An invoice the operation suits (an issued one to accept, an open one to pay...),
    /// else any invoice, else one that does not exist.
    Suited(Index),
    /// Any invoice, whatever its state.
    Any(Index),
    /// The invoice the last `IssueInvoice` built named, whether it was accepted or not.
    LastIssued,
    /// An id no invoice has.
    Unknown,
}

/// Which firms the operation names for its invoice.
#[derive(Debug, Clone, Copy)]
enum Parties {
    /// The invoice's own.
    Right,
    Swapped,
    /// This account as the payer, the payee unchanged.
    OtherPayer(usize),
}

#[derive(Debug, Clone, Copy)]
struct InvoiceTarget {
    pick: InvoicePick,
    parties: Parties,
    /// The firms named when the invoice does not exist.
    payee: usize,
    payer: usize,
}

#[derive(Debug, Clone, Copy)]
enum InvoiceAction {
    Accept,
    Reject {
        reason: Text,
    },
    Cancel {
        reason: Text,
    },
    /// Ask for the opposite of the invoice's exclusion from clearing (`toggle`), or for the
    /// one it has; signed for the payee or for the payer.
    SetClearing {
        toggle: bool,
        by_payee: bool,
    },
}

/// What a transfer pays, given the payer's and the payee's accounts when it is built: the
/// edges of the limits are reached on purpose, not by chance.
#[derive(Debug, Clone, Copy)]
enum TransferAmount {
    Fixed(i64),
    /// The payer's headroom (its balance plus its credit limit) plus this: 0 takes it exactly
    /// to its credit limit, 1 one minor unit past it.
    Headroom(i64),
    /// What takes the payee exactly to its maximum balance, plus this (without a maximum, or
    /// without the account, 1).
    ToMaxBalance(i64),
}

/// What a payment naming an invoice pays, given what is open on it when it is built.
#[derive(Debug, Clone, Copy)]
enum PayAmount {
    /// All that is open (1 if nothing is).
    Open,
    /// Part of it: 1 to open - 1.
    Part(Index),
    /// One more than is open.
    OverOpen,
    Fixed(i64),
}

#[derive(Debug, Clone, Copy)]
enum Signer {
    /// A key of the account that should sign: the account of an administrative operation,
    /// the payer of a transfer, the payee issuing or cancelling an invoice, the payer
    /// accepting, rejecting or paying one (firm key 0 if it has none we hold).
    Owner,
    /// A key of the other firm the operation names: the payee of a transfer, the other
    /// party of an invoice (firm key 1 if it has none we hold).
    Counterparty,
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
        1 => Just(AMOUNT_MAX),
        1 => (AMOUNT_MAX - 1_000)..=(AMOUNT_MAX + 1),
        1 => Just(i64::MAX),
        1 => -1_000..0i64,
        1 => Just(i64::MIN),
    ]
    .boxed()
}

fn max_balance() -> BoxedStrategy<Option<i64>> {
    prop_oneof![
        4 => Just(None),
        2 => (0..=3_000i64).prop_map(Some),
        1 => Just(Some(AMOUNT_MAX)),
        1 => Just(Some(AMOUNT_MAX + 1)),
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
        2 => (AMOUNT_MAX - 3)..=(AMOUNT_MAX + 1),
        1 => (i64::MAX - 3)..=i64::MAX,
        1 => Just(i64::MAX / 2 + 1),
    ]
    .boxed()
}

fn transfer_amount() -> BoxedStrategy<TransferAmount> {
    prop_oneof![
        12 => amount().prop_map(TransferAmount::Fixed),
        1 => Just(TransferAmount::Headroom(0)),
        1 => Just(TransferAmount::Headroom(1)),
        1 => Just(TransferAmount::ToMaxBalance(0)),
        1 => Just(TransferAmount::ToMaxBalance(1)),
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
        1 => Just(Text::Bidi),
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

/// An offset from one account to another: mostly a different one.
fn other_offset() -> BoxedStrategy<usize> {
    prop_oneof![12 => 1..HANDLES.len(), 1 => Just(0)].boxed()
}

/// Invoice amounts: small ones, whose clearing the exhaustive reference solves quickly,
/// and the refused ones at the edges.
fn invoice_amount() -> BoxedStrategy<i64> {
    prop_oneof![
        24 => 1..=3_000i64,
        1 => Just(0i64),
        1 => i64::MIN..0,
        1 => Just(INVOICE_AMOUNT_MAX_MINOR + 1),
        1 => Just(i64::MAX),
    ]
    .boxed()
}

fn local_share_percent() -> BoxedStrategy<u8> {
    prop_oneof![
        16 => Just(100u8),
        4 => 1..=100u8,
        1 => Just(0u8),
        1 => 101..=u8::MAX,
    ]
    .boxed()
}

/// Few distinct days, so that a pair's invoices often share one and the clearing order
/// falls back to the order of issue.
fn due_day() -> BoxedStrategy<Option<u32>> {
    prop_oneof![2 => Just(None), 3 => (20_000u32..=20_002).prop_map(Some)].boxed()
}

fn invoice_target() -> BoxedStrategy<InvoiceTarget> {
    let pick = prop_oneof![
        16 => any::<Index>().prop_map(InvoicePick::Suited),
        3 => any::<Index>().prop_map(InvoicePick::Any),
        1 => Just(InvoicePick::Unknown),
    ];
    let parties = prop_oneof![
        18 => Just(Parties::Right),
        1 => Just(Parties::Swapped),
        1 => account_index().prop_map(Parties::OtherPayer),
    ];
    (pick, parties, account_index(), other_offset())
        .prop_map(|(pick, parties, payee, offset)| InvoiceTarget {
            pick,
            parties,
            payee,
            payer: (payee + offset) % HANDLES.len(),
        })
        .boxed()
}

fn pay_amount() -> BoxedStrategy<PayAmount> {
    prop_oneof![
        4 => Just(PayAmount::Open),
        4 => any::<Index>().prop_map(PayAmount::Part),
        1 => Just(PayAmount::OverOpen),
        1 => amount().prop_map(PayAmount::Fixed),
    ]
    .boxed()
}

fn issue_firms() -> BoxedStrategy<IssueFirms> {
    prop_oneof![
        9 => (any::<Index>(), any::<Index>()).prop_map(|(payee, payer)| IssueFirms::Registered { payee, payer }),
        1 => (account_index(), other_offset()).prop_map(|(payee, offset)| IssueFirms::Named {
            payee,
            payer: (payee + offset) % HANDLES.len(),
        }),
    ]
    .boxed()
}

fn issue_invoice() -> BoxedStrategy<OpSpec> {
    (
        id(),
        issue_firms(),
        invoice_amount(),
        local_share_percent(),
        due_day(),
        text(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(invoice, firms, amount, local_share_percent, due_day, reference, excluded)| {
            OpSpec::IssueInvoice { invoice, firms, amount, local_share_percent, due_day, reference, excluded }
        })
        .boxed()
}

fn run_clearing() -> BoxedStrategy<OpSpec> {
    (any::<bool>(), text())
        .prop_map(|(with_credit, reason)| OpSpec::RunClearing { with_credit, reason })
        .boxed()
}

/// Operations on invoices (clearing runs aside).
fn invoice_op() -> BoxedStrategy<OpSpec> {
    let on_invoice = |action: BoxedStrategy<InvoiceAction>| {
        (invoice_target(), action).prop_map(|(target, action)| OpSpec::OnInvoice { target, action }).boxed()
    };
    let accept = on_invoice(Just(InvoiceAction::Accept).boxed());
    let reject = on_invoice(text().prop_map(|reason| InvoiceAction::Reject { reason }).boxed());
    let cancel = on_invoice(text().prop_map(|reason| InvoiceAction::Cancel { reason }).boxed());
    let set_clearing = on_invoice(
        (proptest::bool::weighted(0.85), any::<bool>())
            .prop_map(|(toggle, by_payee)| InvoiceAction::SetClearing { toggle, by_payee })
            .boxed(),
    );
    let pay = (invoice_target(), pay_amount(), text())
        .prop_map(|(target, amount, memo)| OpSpec::PayInvoice { target, amount, memo });
    prop_oneof![
        2 => issue_invoice(),
        2 => accept,
        1 => reject,
        2 => cancel,
        1 => set_clearing,
        4 => pay.boxed(),
    ]
    .boxed()
}

/// Commune codes a profile change may give: valid ones, malformed ones, and "" (remove).
const COMMUNE_CHOICES: [&str; 5] = ["34145", "2A004", "", "20004", "7505"];
/// Sectors likewise.
const SECTOR_CHOICES: [&str; 5] = ["10.71", "C", "", "34", "10.74"];

fn set_profile() -> BoxedStrategy<OpSpec> {
    (
        account_index(),
        proptest::option::weighted(0.3, text()),
        proptest::option::weighted(0.6, 0..COMMUNE_CHOICES.len()),
        proptest::option::weighted(0.4, 0..SECTOR_CHOICES.len()),
        text(),
    )
        .prop_map(|(account, name, commune, sector, reason)| OpSpec::SetProfile {
            account,
            name,
            commune,
            sector,
            reason,
        })
        .boxed()
}

fn op_spec() -> BoxedStrategy<OpSpec> {
    let register = (account_index(), text(), keys(), credit_limit(), max_balance(), any::<bool>()).prop_map(
        |(account, name, keys, credit_limit, max_balance, allow_shared_key)| OpSpec::Register {
            account,
            name,
            keys,
            credit_limit,
            max_balance,
            allow_shared_key,
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
    let rotate = (account_index(), keys(), any::<bool>())
        .prop_map(|(account, keys, allow_shared_key)| OpSpec::RotateKeys { account, keys, allow_shared_key });
    // The payee is mostly another account than the payer.
    let transfer =
        (account_index(), other_offset(), transfer_amount(), text(), proptest::option::weighted(0.2, text()))
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
    let account_op = prop_oneof![
        14 => transfer.boxed(),
        2 => register.boxed(),
        3 => set_limits.boxed(),
        2 => freeze.boxed(),
        2 => unfreeze.boxed(),
        1 => rotate.boxed(),
        1 => set_profile(),
        1 => malformed().prop_map(OpSpec::Malformed).boxed(),
        1 => oversized.boxed(),
    ];
    // With the steps that issue and accept invoices (`obligations`) and the clearing run
    // that may end a case, invoice operations are about two in five of all, and a case
    // tries one or two clearing runs.
    prop_oneof![
        28 => account_op.boxed(),
        6 => invoice_op(),
        2 => run_clearing(),
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
            // account key for the others; for an invoice, sometimes the other firm's.
            let administrative = matches!(
                op,
                OpSpec::Register { .. }
                    | OpSpec::SetLimits { .. }
                    | OpSpec::Freeze { .. }
                    | OpSpec::Unfreeze { .. }
                    | OpSpec::RunClearing { .. }
                    | OpSpec::SetProfile { .. }
            );
            let on_invoice = matches!(
                op,
                OpSpec::IssueInvoice { .. } | OpSpec::OnInvoice { .. } | OpSpec::PayInvoice { .. }
            );
            let signer = match (who, administrative) {
                (0, _) => Signer::Firm(firm),
                (1, true) => Signer::Owner,
                (1, false) => Signer::Admin,
                (2, false) if on_invoice => Signer::Counterparty,
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
        1 => Just(AMOUNT_MAX),
        1 => (AMOUNT_MAX - 1_000)..=AMOUNT_MAX,
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
                        // Firms share keys here, so the accounts exist for what follows.
                        op: OpSpec::Register {
                            account,
                            name: Text::Normal,
                            keys,
                            credit_limit,
                            max_balance,
                            allow_shared_key: true,
                        },
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

/// One to three invoices, each issued by its payee and mostly accepted by its payer (else
/// rejected, or cancelled by the payee), sent together: most of the obligations that
/// clearing runs find come from these. Their values are valid, their signatures good (the
/// other steps try the rest); what may still refuse them is the state: a frozen firm, a
/// firm with another firm's keys.
fn obligations() -> BoxedStrategy<Step> {
    let answer = prop_oneof![
        17 => Just(InvoiceAction::Accept),
        2 => Just(InvoiceAction::Reject { reason: Text::Normal }),
        1 => Just(InvoiceAction::Cancel { reason: Text::Normal }),
    ]
    .prop_map(|action| OpSpec::OnInvoice {
        target: InvoiceTarget { pick: InvoicePick::LastIssued, parties: Parties::Right, payee: 0, payer: 1 },
        action,
    });
    let submit = |op: OpSpec| {
        Action::Submit(Submission {
            op,
            signer: Signer::Owner,
            sig: Sig::Good,
            id: Id::Fresh,
            validity: Validity::Valid,
        })
    };
    let issue = (
        (any::<Index>(), any::<Index>()).prop_map(|(payee, payer)| IssueFirms::Registered { payee, payer }),
        1..=3_000i64,
        prop_oneof![3 => Just(100u8), 1 => 50..=100u8],
        due_day(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(firms, amount, local_share_percent, due_day, excluded)| OpSpec::IssueInvoice {
            invoice: Id::Fresh,
            firms,
            amount,
            local_share_percent,
            due_day,
            reference: Text::Normal,
            excluded,
        });
    let pair = (issue, answer).prop_map(move |(issue, answer)| [submit(issue), submit(answer)]);
    let via = prop_oneof![Just(Via::Submit), Just(Via::Batch)];
    (proptest::collection::vec(pair, 1..=3), via)
        .prop_map(|(pairs, via)| Step::Submit(pairs.into_iter().flatten().collect(), via))
        .boxed()
}

fn step() -> BoxedStrategy<Step> {
    prop_oneof![
        16 => action().prop_map(|a| Step::Submit(vec![a], Via::Submit)),
        1 => proptest::collection::vec(action(), 2..=4).prop_map(|a| Step::Submit(a, Via::Submit)),
        1 => proptest::collection::vec(action(), 1..=4).prop_map(|a| Step::Submit(a, Via::Batch)),
        2 => obligations(),
        3 => Just(Step::Restart),
    ]
    .boxed()
}

/// A well-formed clearing run by the administrator, which most cases end with: by then
/// they have the most obligations.
fn last_clearing() -> BoxedStrategy<Option<Step>> {
    let run = any::<bool>().prop_map(|with_credit| {
        let op = OpSpec::RunClearing { with_credit, reason: Text::Normal };
        let run = Submission {
            op,
            signer: Signer::Admin,
            sig: Sig::Good,
            id: Id::Fresh,
            validity: Validity::Valid,
        };
        Step::Submit(vec![Action::Submit(run)], Via::Submit)
    });
    proptest::option::weighted(0.6, run).boxed()
}

fn steps() -> BoxedStrategy<Vec<Step>> {
    (setup(), proptest::collection::vec(step(), 1..=36), last_clearing())
        .prop_map(|(mut setup, rest, last)| {
            setup.extend(rest);
            setup.extend(last);
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
    profile: Profile,
    /// The timestamp of the entry that took the balance below zero, while it stays there.
    negative_since: Option<u64>,
    /// The timestamp of the last entry that moved the balance.
    last_activity: Option<u64>,
    /// Keys rotations took off, oldest first: each moved to the end when taken off again,
    /// dropped when put back, the last `RETIRED_KEYS_MAX` kept.
    retired: Vec<PublicKey>,
    /// What it was paid, by ledger month (`cercle_core::limitrule`): every payment received
    /// here is a transfer from another firm (the model sets no fee account). The rule of
    /// the window is held by `cercle-core`'s own model test; here, that the node keeps it.
    sales: Vec<cercle_core::MonthlySales>,
}

impl ModelAccount {
    /// A balance moved by an entry at `timestamp_ms`, from `before` to `after`.
    fn moved(&mut self, before: i128, after: i128, timestamp_ms: u64) {
        if after >= 0 {
            self.negative_since = None;
        } else if before >= 0 {
            self.negative_since = Some(timestamp_ms);
        }
        self.last_activity = Some(timestamp_ms);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelInvoice {
    payee: String,
    payer: String,
    amount: i64,
    local_share_percent: u8,
    due_day: Option<u32>,
    reference: String,
    state: InvoiceState,
    paid: i64,
    cleared: i64,
    excluded: bool,
    reason: String,
    issued_at: u64,
    last_sequence: u64,
}

/// The part of `amount` payable in the ledger at `percent` (at most 100), rounded down.
fn local_part(amount: i64, percent: u8) -> i64 {
    i64::try_from(i128::from(amount) * i128::from(percent) / 100).expect("at most the amount")
}

impl ModelInvoice {
    fn is_open(&self) -> bool {
        matches!(self.state, InvoiceState::Issued | InvoiceState::Accepted | InvoiceState::PartlySettled)
    }

    /// What remains to be paid or cleared: nothing once the invoice is final.
    fn open(&self) -> i64 {
        if self.is_open() {
            local_part(self.amount, self.local_share_percent) - self.paid - self.cleared
        } else {
            0
        }
    }

    /// Records `paid` and `cleared` more at entry `sequence`: partly settled, or settled
    /// when nothing remains open.
    fn settle(&mut self, paid: i64, cleared: i64, sequence: u64) {
        self.paid += paid;
        self.cleared += cleared;
        self.state = if self.open() == 0 { InvoiceState::Settled } else { InvoiceState::PartlySettled };
        self.last_sequence = sequence;
    }
}

/// An eligible obligation of a clearing run, as it stood before the run.
#[derive(Debug, Clone)]
struct Obligation {
    id: InvoiceId,
    payer: String,
    payee: String,
    open: i64,
}

/// How much a firm may pay into the circuit (down to its credit limit) and receive from it
/// (up to its maximum balance, or `i64::MAX`).
#[derive(Debug, Clone, Copy)]
struct Headroom {
    pay_max: i128,
    receive_max: i128,
}

/// A clearing run the model expects the node to accept, with what it knew before it.
#[derive(Debug)]
struct PendingClearing {
    id: OperationId,
    sequence: u64,
    with_credit: bool,
    /// Grouped by (payer, payee), each group oldest due first, then oldest issued, then by id.
    obligations: Vec<Obligation>,
    /// The firms of the obligations, in handle order.
    firms: BTreeMap<String, Headroom>,
    /// The most pure set-off can clear, by the reference.
    setoff_optimum: i128,
}

/// Amounts per ordered pair of firms (debtor, creditor), firms numbered in handle order.
type Pairs = BTreeMap<(usize, usize), i128>;

/// What one pair of firms had open before a run, and what the run cleared of it.
#[derive(Debug, Clone, Copy, Default)]
struct PairRun {
    open: i128,
    setoff: i128,
    credit: i128,
}

/// An accepted operation: its body, where it landed, and (once the node answered) the
/// receipt every retry must get again.
struct AcceptedOp {
    body: Vec<u8>,
    signer: PublicKey,
    sequence: u64,
    valid_until_ms: u64,
    receipt: Option<pb::Receipt>,
    /// Every balance the entry changed; a receipt shows those its signer may read.
    balances_after: Vec<pb::BalanceAfter>,
}

/// What the model says the node must answer.
#[derive(Debug)]
enum Expected {
    New {
        id: OperationId,
        sequence: u64,
        /// Every balance the entry changed.
        balances_after: Vec<pb::BalanceAfter>,
        /// Those the signer may read: what its receipt shows.
        shown: Vec<pb::BalanceAfter>,
        /// For a transfer: the payer's floor and the payee's maximum when it was applied.
        limits: Option<(i64, Option<i64>)>,
    },
    /// An accepted clearing run: what it clears is checked once the node has applied it.
    Clearing(Box<PendingClearing>),
    Duplicate {
        id: OperationId,
        /// The original balances its signer may read now.
        shown: Vec<pb::BalanceAfter>,
    },
    Rejected(RejectCode),
}

/// What the model's state machine decided for an accepted operation.
enum Applied {
    /// The balances it changed, after the change; for a transfer, the payer's floor and the
    /// payee's maximum when it was applied.
    Entry(Vec<(String, i64)>, Option<(i64, Option<i64>)>),
    /// A clearing run that passed the checks before the solver's.
    Clearing { with_credit: bool },
}

/// Which firm of an invoice may sign an operation on it.
#[derive(Debug, Clone, Copy)]
enum InvoiceSigner {
    Payer,
    Payee,
    Either,
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
    invoices: BTreeMap<InvoiceId, ModelInvoice>,
    ops: BTreeMap<OperationId, AcceptedOp>,
    head: Head,
    /// The balances each accepted transfer moved (account, before, after), by sequence,
    /// until its receipt brings the entry's timestamp.
    moves: BTreeMap<u64, Vec<(String, i128, i128)>>,
}

fn text_ok(text: &str, max_chars: usize) -> bool {
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
    text.chars().count() <= max_chars && !text.chars().any(|c| c.is_control() || bidi(c))
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
            invoices: BTreeMap::new(),
            ops: BTreeMap::new(),
            head: Head::empty(genesis),
            moves: BTreeMap::new(),
        }
    }

    /// The balances among `balances` that `key` may read: every one for the administrator,
    /// otherwise those of the accounts that list the key.
    fn readable(&self, key: &PublicKey, balances: &[pb::BalanceAfter]) -> Vec<pb::BalanceAfter> {
        balances
            .iter()
            .filter(|b| {
                *key == self.admin || self.accounts.get(&b.account).is_some_and(|a| a.keys.contains(key))
            })
            .cloned()
            .collect()
    }

    fn keys_ok(&self, keys: &[PublicKey]) -> bool {
        !keys.is_empty()
            && keys.len() <= KEYS_PER_ACCOUNT_MAX
            && keys.iter().all(|k| self.valid_keys.contains(k))
            && keys.iter().enumerate().all(|(i, k)| !keys[i + 1..].contains(k))
    }

    /// A key of `keys` already on another account is refused unless sharing is allowed
    /// (this model closes no account, so every other account counts).
    fn unshared(&self, account: &str, keys: &[PublicKey], allow_shared_key: bool) -> Result<(), RejectCode> {
        let shared =
            self.accounts.iter().any(|(id, a)| id != account && a.keys.iter().any(|k| keys.contains(k)));
        if shared && !allow_shared_key { Err(RejectCode::KeyAlreadyRegistered) } else { Ok(()) }
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
        // A retry is the same body signed by the same key; another key re-signing it is a
        // conflict, and never gets the original's receipt.
        if let Some(accepted) = self.ops.get(&op.id) {
            return if accepted.body == b.envelope.body && accepted.signer.0 == b.envelope.signer.as_slice() {
                let shown = self.readable(&accepted.signer, &accepted.balances_after);
                Ok(Expected::Duplicate { id: op.id, shown })
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
        let mut all_balances = Vec::new();
        let expected = match self.apply(&signer, &op.kind, sequence)? {
            Applied::Entry(balances_after, limits) => {
                all_balances = balances_after
                    .into_iter()
                    .map(|(account, balance_minor)| pb::BalanceAfter { account, balance_minor })
                    .collect();
                let shown = self.readable(&signer, &all_balances);
                Expected::New { id: op.id, sequence, balances_after: all_balances.clone(), shown, limits }
            }
            Applied::Clearing { with_credit } => {
                Expected::Clearing(Box::new(self.plan_clearing(op.id, sequence, with_credit)?))
            }
        };
        self.ops.insert(
            op.id,
            AcceptedOp {
                body: b.envelope.body.clone(),
                signer,
                sequence,
                valid_until_ms: op.valid_until_ms,
                receipt: None,
                balances_after: all_balances,
            },
        );
        // The rest of the head comes with the receipt.
        self.head.size = sequence;
        Ok(expected)
    }

    fn apply(&mut self, signer: &PublicKey, kind: &OpKind, sequence: u64) -> Result<Applied, RejectCode> {
        let is_admin = *signer == self.admin;
        let administrative = matches!(
            kind,
            OpKind::RegisterAccount(_)
                | OpKind::SetLimits(_)
                | OpKind::FreezeAccount { .. }
                | OpKind::UnfreezeAccount { .. }
                | OpKind::RunClearing(_)
                | OpKind::SetProfile(_)
        );
        if administrative && !is_admin {
            return Err(RejectCode::NotAdministrator);
        }
        match kind {
            OpKind::RegisterAccount(r) => {
                if !text_ok(&r.display_name, DISPLAY_NAME_CHARS_MAX) {
                    return Err(RejectCode::InvalidText);
                }
                if !self.keys_ok(&r.keys) {
                    return Err(RejectCode::InvalidKeys);
                }
                let limit_ok = |l: i64| (0..=AMOUNT_MAX).contains(&l);
                if !limit_ok(r.credit_limit_minor) || r.max_balance_minor.is_some_and(|m| !limit_ok(m)) {
                    return Err(RejectCode::InvalidLimit);
                }
                // The lists of valid sectors and communes are data, taken from the core.
                if r.profile.check().is_err() {
                    return Err(RejectCode::InvalidProfile);
                }
                if self.accounts.contains_key(r.account.as_str()) {
                    return Err(RejectCode::AccountExists);
                }
                self.unshared(r.account.as_str(), &r.keys, r.allow_shared_key)?;
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
                        profile: r.profile.clone(),
                        negative_since: None,
                        last_activity: None,
                        sales: Vec::new(),
                        retired: Vec::new(),
                    },
                );
                Ok(Applied::Entry(vec![(r.account.to_string(), 0)], None))
            }
            OpKind::SetProfile(p) => {
                if !reason_ok(&p.reason, true) {
                    return Err(RejectCode::InvalidText);
                }
                if p.display_name.is_none() && p.profile.is_empty() {
                    return Err(RejectCode::NothingToChange);
                }
                if p.display_name
                    .as_ref()
                    .is_some_and(|n| !text_ok(n, DISPLAY_NAME_CHARS_MAX) || n.trim().is_empty())
                {
                    return Err(RejectCode::InvalidText);
                }
                if p.profile.check().is_err() {
                    return Err(RejectCode::InvalidProfile);
                }
                self.account(&p.account)?;
                let a = self.touch(&p.account, sequence);
                if let Some(name) = &p.display_name {
                    a.display_name = name.clone();
                }
                p.profile.apply(&mut a.profile);
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::SetLimits(s) => {
                if !reason_ok(&s.reason, true) {
                    return Err(RejectCode::InvalidText);
                }
                if s.credit_limit_minor.is_none() && s.max_balance_minor.is_none() {
                    return Err(RejectCode::NothingToChange);
                }
                let limit_ok = |l: i64| (0..=AMOUNT_MAX).contains(&l);
                if s.credit_limit_minor.is_some_and(|l| !limit_ok(l))
                    || s.max_balance_minor.flatten().is_some_and(|m| !limit_ok(m))
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
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::FreezeAccount { account, reason } => {
                if !reason_ok(reason, true) {
                    return Err(RejectCode::InvalidText);
                }
                if self.account(account)?.frozen {
                    return Err(RejectCode::AlreadyFrozen);
                }
                self.touch(account, sequence).frozen = true;
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::UnfreezeAccount { account, reason } => {
                if !reason_ok(reason, false) {
                    return Err(RejectCode::InvalidText);
                }
                if !self.account(account)?.frozen {
                    return Err(RejectCode::NotFrozen);
                }
                self.touch(account, sequence).frozen = false;
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::RotateKeys { account, keys, allow_shared_key } => {
                if !self.keys_ok(keys) {
                    return Err(RejectCode::InvalidKeys);
                }
                let a = self.account(account)?;
                if !is_admin && !a.keys.contains(signer) {
                    return Err(RejectCode::NotAccountKey);
                }
                self.unshared(account.as_str(), keys, *allow_shared_key)?;
                let a = self.touch(account, sequence);
                for old in a.keys.clone() {
                    if !keys.contains(&old) {
                        a.retired.retain(|k| *k != old);
                        a.retired.push(old);
                    }
                }
                a.retired.retain(|k| !keys.contains(k));
                while a.retired.len() > cercle_limits::RETIRED_KEYS_MAX {
                    a.retired.remove(0);
                }
                a.keys = keys.clone();
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::Transfer(t) => {
                if !text_ok(&t.memo, MEMO_CHARS_MAX)
                    || t.invoice_ref.as_ref().is_some_and(|i| !text_ok(i, INVOICE_REF_CHARS_MAX))
                {
                    return Err(RejectCode::InvalidText);
                }
                if t.amount_minor <= 0 || t.amount_minor > AMOUNT_MAX {
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
                // The invoice a payment names is checked after the limits.
                if let Some(id) = &t.invoice {
                    let invoice = self.visible_invoice(id, signer)?;
                    if invoice.payer != t.payer.as_str() || invoice.payee != t.payee.as_str() {
                        return Err(RejectCode::InvoicePartiesMismatch);
                    }
                    if !invoice.is_open() {
                        return Err(RejectCode::InvoiceStateConflict);
                    }
                    if t.amount_minor > invoice.open() {
                        return Err(RejectCode::InvoiceOverpaid);
                    }
                }
                let limits = (-payer.credit_limit, payee.max_balance);
                let moves = vec![
                    (t.payer.to_string(), payer.balance, payer_after),
                    (t.payee.to_string(), payee.balance, payee_after),
                ];
                self.moves.insert(sequence, moves);
                self.touch(&t.payer, sequence).balance = payer_after;
                self.touch(&t.payee, sequence).balance = payee_after;
                // Paying an issued invoice accepts it: the payer signed the payment.
                if let Some(id) = &t.invoice {
                    self.invoices.get_mut(id).expect("checked above").settle(t.amount_minor, 0, sequence);
                }
                let narrow = |b: i128| i64::try_from(b).expect("checked in range");
                Ok(Applied::Entry(
                    vec![
                        (t.payer.to_string(), narrow(payer_after)),
                        (t.payee.to_string(), narrow(payee_after)),
                    ],
                    Some(limits),
                ))
            }
            // Invoice operations change no balance; they touch both firms (`last_sequence`), as
            // a clearing run touches the firms whose invoices it changes.
            OpKind::IssueInvoice(i) => {
                if !text_ok(&i.reference, INVOICE_REF_CHARS_MAX) {
                    return Err(RejectCode::InvalidText);
                }
                if i.amount_minor <= 0 {
                    return Err(RejectCode::InvalidAmount);
                }
                if i.amount_minor > INVOICE_AMOUNT_MAX_MINOR
                    || !(1..=100).contains(&i.local_share_percent)
                    || local_part(i.amount_minor, i.local_share_percent) == 0
                    || i.payer == i.payee
                {
                    return Err(RejectCode::InvalidInvoice);
                }
                let payee = self.account(&i.payee)?;
                if !payee.keys.contains(signer) {
                    return Err(RejectCode::NotAccountKey);
                }
                let payer = self.account(&i.payer)?;
                if payee.frozen || payer.frozen {
                    return Err(RejectCode::AccountFrozen);
                }
                if self.invoices.contains_key(&i.invoice) {
                    return Err(RejectCode::InvoiceExists);
                }
                self.invoices.insert(
                    i.invoice,
                    ModelInvoice {
                        payee: i.payee.to_string(),
                        payer: i.payer.to_string(),
                        amount: i.amount_minor,
                        local_share_percent: i.local_share_percent,
                        due_day: i.due_day,
                        reference: i.reference.clone(),
                        state: InvoiceState::Issued,
                        paid: 0,
                        cleared: 0,
                        excluded: i.excluded_from_clearing,
                        reason: String::new(),
                        issued_at: sequence,
                        last_sequence: sequence,
                    },
                );
                self.touch(&i.payee, sequence);
                self.touch(&i.payer, sequence);
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::AcceptInvoice(p) => {
                let invoice = self.invoice_for(p, signer, InvoiceSigner::Payer)?;
                // Accepting binds the payer: not while either firm is frozen.
                let frozen = |h: &str| self.accounts.get(h).is_some_and(|a| a.frozen);
                if frozen(&invoice.payer) || frozen(&invoice.payee) {
                    return Err(RejectCode::AccountFrozen);
                }
                if invoice.state != InvoiceState::Issued {
                    return Err(RejectCode::InvoiceStateConflict);
                }
                self.change_invoice(&p.invoice, sequence, |i| i.state = InvoiceState::Accepted);
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::RejectInvoice { invoice: p, reason } => {
                if !reason_ok(reason, true) {
                    return Err(RejectCode::InvalidText);
                }
                if self.invoice_for(p, signer, InvoiceSigner::Payer)?.state != InvoiceState::Issued {
                    return Err(RejectCode::InvoiceStateConflict);
                }
                self.change_invoice(&p.invoice, sequence, |i| {
                    i.state = InvoiceState::Rejected;
                    i.reason.clone_from(reason);
                });
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::CancelInvoice { invoice: p, reason } => {
                if !reason_ok(reason, false) {
                    return Err(RejectCode::InvalidText);
                }
                let invoice = self.invoice_for(p, signer, InvoiceSigner::Payee)?;
                let untouched = invoice.paid == 0 && invoice.cleared == 0;
                if !(matches!(invoice.state, InvoiceState::Issued | InvoiceState::Accepted) && untouched) {
                    return Err(RejectCode::InvoiceStateConflict);
                }
                self.change_invoice(&p.invoice, sequence, |i| {
                    i.state = InvoiceState::Cancelled;
                    i.reason.clone_from(reason);
                });
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::SetInvoiceClearing { invoice: p, excluded } => {
                let invoice = self.invoice_for(p, signer, InvoiceSigner::Either)?;
                if invoice.excluded == *excluded {
                    return Err(RejectCode::NothingToChange);
                }
                if !invoice.is_open() {
                    return Err(RejectCode::InvoiceStateConflict);
                }
                self.change_invoice(&p.invoice, sequence, |i| i.excluded = *excluded);
                Ok(Applied::Entry(vec![], None))
            }
            OpKind::RunClearing(run) => {
                if !reason_ok(&run.reason, false) {
                    return Err(RejectCode::InvalidText);
                }
                Ok(Applied::Clearing { with_credit: run.with_credit })
            }
            // Role, quorum changes, closures, groups and fees are the state models'
            // (`cercle-core/tests/`) and the end-to-end tests'; key roles are the key model's
            // (`cercle-core/tests/model_keys.rs`) and `tests/tests/keys.rs`'s; node key rotations are `model_nodekey.rs`'s and
            // `tests/tests/nodekey.rs`'s; this model never
            // generates them.
            OpKind::SetRole(_)
            | OpKind::CloseAccount { .. }
            | OpKind::SetQuorum(_)
            | OpKind::RotateNodeKey { .. }
            | OpKind::CreateGroup(_)
            | OpKind::SetGroupLimits(_)
            | OpKind::AssignGroup { .. }
            | OpKind::FollowGroupLimits { .. }
            | OpKind::SetFees(_)
            | OpKind::AddKey(_)
            | OpKind::RemoveKey { .. }
            | OpKind::ApprovePending { .. }
            | OpKind::DeclinePending { .. }
            | OpKind::ApplyLimitRule(_)
            | OpKind::ChargeFees { .. } => {
                unreachable!("the node model generates no {}", kind.name())
            }
        }
    }

    /// The invoice an operation names, once the checks every operation on an existing
    /// invoice makes have passed: it exists, the operation names its two firms, and the
    /// signer holds a key of a firm that may act.
    fn invoice_for(
        &self,
        p: &InvoiceParties,
        signer: &PublicKey,
        who: InvoiceSigner,
    ) -> Result<&ModelInvoice, RejectCode> {
        let invoice = self.visible_invoice(&p.invoice, signer)?;
        if invoice.payer != p.payer.as_str() || invoice.payee != p.payee.as_str() {
            return Err(RejectCode::InvoicePartiesMismatch);
        }
        let holds = |h: &str| self.accounts.get(h).is_some_and(|a| a.keys.contains(signer));
        let allowed = match who {
            InvoiceSigner::Payer => holds(&invoice.payer),
            InvoiceSigner::Payee => holds(&invoice.payee),
            InvoiceSigner::Either => holds(&invoice.payer) || holds(&invoice.payee),
        };
        if !allowed {
            return Err(RejectCode::NotAccountKey);
        }
        Ok(invoice)
    }

    /// The invoice `id` as `signer` sees it: it exists only for a key of one of its firms.
    fn visible_invoice(&self, id: &InvoiceId, signer: &PublicKey) -> Result<&ModelInvoice, RejectCode> {
        let invoice = self.invoices.get(id).ok_or(RejectCode::UnknownInvoice)?;
        let holds = |h: &str| self.accounts.get(h).is_some_and(|a| a.keys.contains(signer));
        if holds(&invoice.payer) || holds(&invoice.payee) {
            Ok(invoice)
        } else {
            Err(RejectCode::UnknownInvoice)
        }
    }

    /// Changes the invoice `id`, known to exist, at entry `sequence`.
    fn change_invoice(&mut self, id: &InvoiceId, sequence: u64, change: impl FnOnce(&mut ModelInvoice)) {
        let invoice = self.invoices.get_mut(id).expect("the caller checked the invoice exists");
        change(invoice);
        invoice.last_sequence = sequence;
        for handle in [invoice.payer.clone(), invoice.payee.clone()] {
            self.accounts.get_mut(&handle).expect("an invoice's firms exist").last_sequence = sequence;
        }
    }

    /// What a firm may pay into the circuit and receive from it now.
    fn headroom(&self, handle: &str) -> Headroom {
        let a = &self.accounts[handle];
        let ceiling = i128::from(a.max_balance.unwrap_or(i64::MAX));
        Headroom {
            pay_max: (a.balance + i128::from(a.credit_limit)).max(0),
            receive_max: (ceiling - a.balance).max(0),
        }
    }

    /// Decides whether a clearing run at entry `sequence` clears anything, and if it does,
    /// what the model knows before the node applies it. The run's obligations are the open
    /// amounts of the accepted or partly settled invoices not excluded from clearing
    /// between two active firms.
    fn plan_clearing(
        &self,
        id: OperationId,
        sequence: u64,
        with_credit: bool,
    ) -> Result<PendingClearing, RejectCode> {
        let active = |h: &str| self.accounts.get(h).is_some_and(|a| !a.frozen);
        let mut eligible: Vec<(&InvoiceId, &ModelInvoice)> = self
            .invoices
            .iter()
            .filter(|(_, i)| {
                matches!(i.state, InvoiceState::Accepted | InvoiceState::PartlySettled)
                    && !i.excluded
                    && i.open() > 0
                    && active(&i.payer)
                    && active(&i.payee)
            })
            .collect();
        eligible.sort_by_key(|(id, i)| {
            (i.payer.clone(), i.payee.clone(), i.due_day.unwrap_or(u32::MAX), i.issued_at, **id)
        });
        let obligations: Vec<Obligation> = eligible
            .into_iter()
            .map(|(id, i)| Obligation {
                id: *id,
                payer: i.payer.clone(),
                payee: i.payee.clone(),
                open: i.open(),
            })
            .collect();
        let firms: BTreeMap<String, Headroom> = obligations
            .iter()
            .flat_map(|o| [&o.payer, &o.payee])
            .map(|h| (h.clone(), self.headroom(h)))
            .collect();
        let pairs = open_pairs(&firms, &obligations);
        let setoff_optimum = setoff_optimum(firms.len(), &pairs);
        let headroom: Vec<Headroom> = firms.values().copied().collect();
        if setoff_optimum == 0 && !(with_credit && credit_optimum(&pairs, &headroom) > 0) {
            return Err(RejectCode::NothingToClear);
        }
        Ok(PendingClearing { id, sequence, with_credit, obligations, firms, setoff_optimum })
    }

    /// The account `id`, known to exist, marked as touched by entry `sequence`.
    fn touch(&mut self, id: &AccountId, sequence: u64) -> &mut ModelAccount {
        let a = self.accounts.get_mut(id.as_str()).expect("the caller checked the account exists");
        a.last_sequence = sequence;
        a
    }

    /// The amount `amount` stands for between `payer` and `payee` as they stand now (an edge
    /// beyond i64 is clamped to it).
    fn transfer_amount(&self, amount: TransferAmount, payer: &str, payee: &str) -> i64 {
        let narrow = |a: i128| i64::try_from(a).unwrap_or(if a < 0 { i64::MIN } else { i64::MAX });
        match amount {
            TransferAmount::Fixed(a) => a,
            TransferAmount::Headroom(delta) => self
                .accounts
                .get(payer)
                .map_or(1, |a| narrow(a.balance + i128::from(a.credit_limit) + i128::from(delta))),
            TransferAmount::ToMaxBalance(delta) => self
                .accounts
                .get(payee)
                .and_then(|a| Some(i128::from(a.max_balance?) - a.balance))
                .map_or(1, |room| narrow(room + i128::from(delta))),
        }
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
            profile: a.profile.clone(),
            negative_since_ms: a.negative_since,
            last_activity_ms: a.last_activity,
            retired_keys: a.retired.clone(),
            membership: None,
            key_grants: Default::default(),
            pending: Vec::new(),
            sales: a.sales.clone(),
        })
    }

    /// The account as `GetAccount` must return it, field by field from the model (not through
    /// the conversion the node uses).
    fn wire_account(&self, handle: &str) -> Option<pb::Account> {
        let a = self.accounts.get(handle)?;
        Some(pb::Account {
            account: handle.to_string(),
            display_name: a.display_name.clone(),
            balance_minor: i64::try_from(a.balance).expect("a balance within i64"),
            credit_limit_minor: a.credit_limit,
            max_balance_minor: a.max_balance,
            status: if a.frozen { ACCOUNT_STATUS_FROZEN } else { ACCOUNT_STATUS_ACTIVE },
            public_keys: a.keys.iter().map(|k| k.0.to_vec()).collect(),
            registered_at_sequence: a.registered_at,
            last_sequence: a.last_sequence,
            sector: a.profile.sector.clone(),
            commune: a.profile.commune.clone(),
            postcode: a.profile.postcode.clone(),
            territory: a.profile.territory.clone(),
            size_class: a.profile.size_class.clone(),
            negative_since_ms: a.negative_since,
            last_activity_ms: a.last_activity,
            // This model puts no account in a group: its limits are its own.
            group: String::new(),
            credit_limit_source: "own".into(),
            max_balance_source: "own".into(),
            // Every key of this model is an owner (it adds no other role).
            keys: a
                .keys
                .iter()
                .map(|k| pb::AccountKey {
                    public_key: k.0.to_vec(),
                    role: "owner".into(),
                    ..Default::default()
                })
                .collect(),
            // Nor any pending payment.
            reserved_minor: 0,
            pending: Vec::new(),
        })
    }

    fn core_accounts(&self) -> Vec<Account> {
        self.accounts.keys().filter_map(|h| self.core_account(h)).collect()
    }

    /// Every invoice, in id order.
    fn core_invoices(&self) -> Vec<Invoice> {
        self.invoices.iter().map(|(id, i)| core_invoice(id, i)).collect()
    }

    /// Checks the clearing run `run` as the node applied it (its store's `accounts` and
    /// `invoices` after the run, the run's `record` and `receipt`) against the model's rules
    /// and its reference optima; if every check passes, takes the node's allocation into
    /// the model.
    fn adopt_clearing(
        &mut self,
        run: &PendingClearing,
        receipt: &pb::Receipt,
        record: &ClearingRecord,
        accounts: &[Account],
        invoices: &[Invoice],
    ) -> Result<(), TestCaseError> {
        let step = format!(
            "clearing run {} at entry {}",
            if run.with_credit { "with credit" } else { "without credit" },
            run.sequence
        );
        let fail = |what: String| TestCaseError::fail(format!("{step}: {what}"));
        let wire = |amount: i128| i64::try_from(amount).map_err(|_| fail(format!("{amount} is beyond i64")));

        // What each invoice gained: cleared by set-off, paid through credit.
        let node_invoices: BTreeMap<InvoiceId, &Invoice> = invoices.iter().map(|i| (i.id, i)).collect();
        prop_assert_eq!(node_invoices.len(), self.invoices.len(), "{}: the node's invoices", step);
        let open: BTreeMap<InvoiceId, i64> = run.obligations.iter().map(|o| (o.id, o.open)).collect();
        let mut cleared: BTreeMap<InvoiceId, (i64, i64)> = BTreeMap::new();
        for (id, mine) in &self.invoices {
            let theirs = *node_invoices.get(id).ok_or_else(|| fail(format!("invoice {id} is gone")))?;
            let mut expected = mine.clone();
            if let Some(&open) = open.get(id) {
                let setoff = i128::from(theirs.cleared_minor) - i128::from(mine.cleared);
                let credit = i128::from(theirs.paid_minor) - i128::from(mine.paid);
                prop_assert!(
                    setoff >= 0 && credit >= 0 && setoff + credit <= i128::from(open),
                    "{}: invoice {} had {} open, the run cleared {} by set-off and {} through credit",
                    step,
                    id,
                    open,
                    setoff,
                    credit
                );
                prop_assert!(
                    run.with_credit || credit == 0,
                    "{}: invoice {} paid {} without credit",
                    step,
                    id,
                    credit
                );
                if setoff + credit > 0 {
                    let (setoff, credit) = (wire(setoff)?, wire(credit)?);
                    expected.settle(credit, setoff, run.sequence);
                    cleared.insert(*id, (setoff, credit));
                }
            }
            // Nothing else of the invoice changes, and nothing of an invoice outside the run.
            prop_assert_eq!(theirs, &core_invoice(id, &expected), "{}: invoice {}", step, id);
        }
        let recorded: Vec<(InvoiceId, i64, i64)> =
            record.invoices.iter().map(|c| (c.invoice, c.setoff_minor, c.credit_minor)).collect();
        let applied: Vec<(InvoiceId, i64, i64)> = cleared.iter().map(|(id, &(s, c))| (*id, s, c)).collect();
        prop_assert_eq!(recorded, applied, "{}: the entry's record and the invoices disagree", step);
        prop_assert_eq!(record.with_credit, run.with_credit, "{}: the record's credit option", step);
        let recorded_firms: Vec<&str> = record.firms.iter().map(|f| f.account.as_str()).collect();
        let firms: Vec<&str> = run.firms.keys().map(String::as_str).collect();
        prop_assert_eq!(&recorded_firms, &firms, "{}: the record's firms", step);

        // Per pair of firms: within each, the amount cleared is allocated to its invoices
        // oldest due first, then oldest issued, then by id, set-off first, then credit on
        // what set-off left of each.
        let n = run.firms.len();
        let mut pairs: BTreeMap<(usize, usize), PairRun> = BTreeMap::new();
        let pair_of = |o: &Obligation| (firm_index(&run.firms, &o.payer), firm_index(&run.firms, &o.payee));
        for o in &run.obligations {
            let (s, c) = cleared.get(&o.id).copied().unwrap_or_default();
            let p = pairs.entry(pair_of(o)).or_default();
            p.open += i128::from(o.open);
            p.setoff += i128::from(s);
            p.credit += i128::from(c);
        }
        for (&(debtor, creditor), totals) in &pairs {
            let (mut setoff_left, mut credit_left) = (totals.setoff, totals.credit);
            for o in run.obligations.iter().filter(|o| pair_of(o) == (debtor, creditor)) {
                let open = i128::from(o.open);
                let setoff = setoff_left.min(open);
                let credit = credit_left.min(open - setoff);
                setoff_left -= setoff;
                credit_left -= credit;
                let (s, c) = cleared.get(&o.id).copied().unwrap_or_default();
                prop_assert_eq!(
                    (i128::from(s), i128::from(c)),
                    (setoff, credit),
                    "{}: invoice {} from '{}' to '{}' is not allocated in order (the pair clears {} by set-off and {} through credit)",
                    step,
                    o.id,
                    o.payer,
                    o.payee,
                    totals.setoff,
                    totals.credit
                );
            }
        }

        // Stage 1: as much as the reference clears, and every net position unchanged.
        let setoff_total: i128 = pairs.values().map(|p| p.setoff).sum();
        prop_assert_eq!(
            setoff_total,
            run.setoff_optimum,
            "{}: set-off cleared {}, the reference optimum is {}",
            step,
            setoff_total,
            run.setoff_optimum
        );
        let mut net_change = vec![0i128; n];
        let mut credit_owed_less_claimed = vec![0i128; n];
        for (&(debtor, creditor), p) in &pairs {
            net_change[debtor] += p.setoff;
            net_change[creditor] -= p.setoff;
            credit_owed_less_claimed[debtor] += p.credit;
            credit_owed_less_claimed[creditor] -= p.credit;
        }
        prop_assert!(
            net_change.iter().all(|&c| c == 0),
            "{}: set-off changed the net positions of {:?} by {:?}",
            step,
            firms,
            net_change
        );

        // Balances: only payments into and out of the circuit move them, each firm's equal
        // to what credit cleared of its debts less of its claims, within its headroom.
        let node_accounts: BTreeMap<&str, &Account> = accounts.iter().map(|a| (a.id.as_str(), a)).collect();
        prop_assert_eq!(node_accounts.len(), self.accounts.len(), "{}: the node's accounts", step);
        let mut payments: BTreeMap<String, i128> = BTreeMap::new();
        for (handle, mine) in &self.accounts {
            let theirs =
                *node_accounts.get(handle.as_str()).ok_or_else(|| fail(format!("'{handle}' is gone")))?;
            let after = i128::from(theirs.balance_minor);
            let payment = mine.balance - after;
            let Some(f) = run.firms.keys().position(|h| h == handle) else {
                prop_assert_eq!(payment, 0, "{}: '{}' is not a firm of the run but paid", step, handle);
                continue;
            };
            prop_assert_eq!(
                payment,
                credit_owed_less_claimed[f],
                "{}: '{}' paid {} into the circuit, but credit cleared {} more of its debts than of its claims",
                step,
                handle,
                payment,
                credit_owed_less_claimed[f]
            );
            let room = run.firms[handle];
            prop_assert!(
                payment <= room.pay_max && -payment <= room.receive_max,
                "{}: '{}' paid {} with room to pay {} and to receive {}",
                step,
                handle,
                payment,
                room.pay_max,
                room.receive_max
            );
            prop_assert!(
                payment <= 0 || after >= -i128::from(mine.credit_limit),
                "{}: '{}' paid {} down to {}, below minus its credit limit {}",
                step,
                handle,
                payment,
                after,
                mine.credit_limit
            );
            prop_assert!(
                payment >= 0 || mine.max_balance.is_none_or(|m| after <= i128::from(m)),
                "{}: '{}' received {} up to {}, above its maximum {:?}",
                step,
                handle,
                -payment,
                after,
                mine.max_balance
            );
            prop_assert_eq!(
                i128::from(record.firms[f].payment_minor),
                payment,
                "{}: the record's payment of '{}'",
                step,
                handle
            );
            if payment != 0 {
                payments.insert(handle.clone(), payment);
            }
        }
        prop_assert!(
            run.with_credit || payments.is_empty(),
            "{}: pure set-off moved money: {:?}",
            step,
            payments
        );
        prop_assert_eq!(
            payments.values().sum::<i128>(),
            0,
            "{}: the payments {:?} do not sum to zero",
            step,
            payments
        );

        // Stage 2: as much as the reference clears through credit on what set-off left.
        let credit_total: i128 = pairs.values().map(|p| p.credit).sum();
        if run.with_credit {
            let left: Pairs = pairs.iter().map(|(&k, p)| (k, p.open - p.setoff)).collect();
            let headroom: Vec<Headroom> = run.firms.values().copied().collect();
            let optimum = credit_optimum(&left, &headroom);
            prop_assert_eq!(
                credit_total,
                optimum,
                "{}: credit cleared {} of what set-off left, the reference optimum is {}",
                step,
                credit_total,
                optimum
            );
        }

        // The firms the run changed, the receipt's balances and summary.
        let mut changed = vec![false; n];
        for (&(debtor, creditor), p) in &pairs {
            if p.setoff + p.credit > 0 {
                changed[debtor] = true;
                changed[creditor] = true;
            }
        }
        let recorded_changed: Vec<bool> = record.firms.iter().map(|f| f.changed).collect();
        prop_assert_eq!(&recorded_changed, &changed, "{}: the firms the record marks as changed", step);
        let balances_after: Vec<pb::BalanceAfter> = run
            .firms
            .keys()
            .filter(|h| payments.contains_key(*h))
            .map(|h| pb::BalanceAfter {
                account: h.clone(),
                balance_minor: node_accounts[h.as_str()].balance_minor,
            })
            .collect();
        prop_assert_eq!(&receipt.balances_after, &balances_after, "{}: the receipt's balances", step);
        let (mut owes, mut owed, mut owes_cleared, mut owed_cleared) =
            (vec![0i128; n], vec![0i128; n], vec![0i128; n], vec![0i128; n]);
        for (&(debtor, creditor), p) in &pairs {
            owes[debtor] += p.open;
            owed[creditor] += p.open;
            owes_cleared[debtor] += p.setoff + p.credit;
            owed_cleared[creditor] += p.setoff + p.credit;
        }
        let positive_sum = |v: &mut dyn Iterator<Item = i128>| v.map(|x| x.max(0)).sum::<i128>();
        let mut firms_changed = Vec::new();
        for (f, handle) in run.firms.keys().enumerate().filter(|(f, _)| changed[*f]) {
            firms_changed.push(pb::FirmClearing {
                account: handle.clone(),
                owes_minor: wire(owes[f])?,
                owes_cleared_minor: wire(owes_cleared[f])?,
                owed_minor: wire(owed[f])?,
                owed_cleared_minor: wire(owed_cleared[f])?,
                payment_minor: wire(payments.get(handle).copied().unwrap_or(0))?,
            });
        }
        let summary = pb::ClearingSummary {
            with_credit: run.with_credit,
            obligations: run.obligations.len() as u64,
            firms: n as u64,
            total_debt_minor: wire(pairs.values().map(|p| p.open).sum())?,
            net_internal_debt_minor: wire(positive_sum(&mut (0..n).map(|f| owed[f] - owes[f])))?,
            setoff_minor: wire(setoff_total)?,
            credit_minor: wire(credit_total)?,
            payments_minor: wire(positive_sum(&mut payments.values().copied()))?,
            net_internal_debt_after_minor: wire(positive_sum(
                &mut (0..n).map(|f| (owed[f] - owed_cleared[f]) - (owes[f] - owes_cleared[f])),
            ))?,
            firms_changed,
        };
        prop_assert_eq!(receipt.clearing.as_ref(), Some(&summary), "{}: the receipt's summary", step);

        // Every check passed: the node's allocation becomes the model's.
        for (id, &(setoff, credit)) in &cleared {
            self.invoices.get_mut(id).expect("an invoice of the model").settle(credit, setoff, run.sequence);
        }
        let timestamp_ms = self.head.timestamp_ms;
        for (f, handle) in run.firms.keys().enumerate() {
            let a = self.accounts.get_mut(handle).expect("an account of the model");
            let payment = payments.get(handle).copied().unwrap_or(0);
            if payment != 0 {
                a.moved(a.balance, a.balance - payment, timestamp_ms);
            }
            a.balance -= payment;
            if changed[f] {
                a.last_sequence = run.sequence;
            }
        }
        Ok(())
    }
}

fn core_invoice(id: &InvoiceId, i: &ModelInvoice) -> Invoice {
    let handle = |h: &str| AccountId::parse(h).expect("a valid handle");
    Invoice {
        id: *id,
        payee: handle(&i.payee),
        payer: handle(&i.payer),
        amount_minor: i.amount,
        local_share_percent: i.local_share_percent,
        due_day: i.due_day,
        reference: i.reference.clone(),
        state: i.state,
        paid_minor: i.paid,
        cleared_minor: i.cleared,
        excluded_from_clearing: i.excluded,
        reason: i.reason.clone(),
        issued_at_sequence: i.issued_at,
        last_sequence: i.last_sequence,
    }
}

// ---------------------------------------------------------------------------------------
// The clearing reference

/// The position of `handle` among the firms of a run (handle order).
fn firm_index(firms: &BTreeMap<String, Headroom>, handle: &str) -> usize {
    firms.keys().position(|f| f == handle).expect("a firm of the run")
}

/// The open amounts of `obligations` per pair of firms, numbered as in `firms`.
fn open_pairs(firms: &BTreeMap<String, Headroom>, obligations: &[Obligation]) -> Pairs {
    let mut pairs = Pairs::new();
    for o in obligations {
        *pairs.entry((firm_index(firms, &o.payer), firm_index(firms, &o.payee))).or_default() +=
            i128::from(o.open);
    }
    pairs
}

/// An arc of a circulation network: up to `capacity` units from `tail` to `head`, at
/// `cost` per unit.
struct Arc {
    tail: usize,
    head: usize,
    capacity: i128,
    cost: i128,
}

/// The minimum cost of a circulation, by cycle cancelling (as cercle-clearing's property
/// tests compute it, sharing no code with the solver): start from the zero circulation,
/// find any negative-cost cycle in the residual network by Bellman-Ford, push its
/// bottleneck around it, repeat until there is none. Obviously exact (a circulation with no
/// negative residual cycle is optimal); the time grows with the amounts, which is why the
/// generated invoices are small.
fn reference_min_cost(node_count: usize, arcs: &[Arc]) -> i128 {
    let mut flow = vec![0i128; arcs.len()];
    loop {
        // Residual arcs: (from, to, cost, arc, forward).
        let mut residual = Vec::new();
        for (i, a) in arcs.iter().enumerate() {
            if flow[i] < a.capacity {
                residual.push((a.tail, a.head, a.cost, i, true));
            }
            if flow[i] > 0 {
                residual.push((a.head, a.tail, -a.cost, i, false));
            }
        }
        // Bellman-Ford from a virtual source at distance 0 to every node; a relaxation in
        // round n means a negative cycle, found by walking predecessors n times and then
        // around.
        let mut dist = vec![0i128; node_count];
        let mut pred: Vec<Option<usize>> = vec![None; node_count];
        let mut last_relaxed = None;
        for _ in 0..node_count {
            last_relaxed = None;
            for (k, &(from, to, cost, _, _)) in residual.iter().enumerate() {
                if dist[from] + cost < dist[to] {
                    dist[to] = dist[from] + cost;
                    pred[to] = Some(k);
                    last_relaxed = Some(to);
                }
            }
        }
        let Some(mut v) = last_relaxed else {
            return arcs.iter().zip(&flow).map(|(a, f)| a.cost * f).sum();
        };
        for _ in 0..node_count {
            v = residual[pred[v].expect("a relaxed node has a predecessor")].0;
        }
        let mut cycle = Vec::new();
        let mut u = v;
        loop {
            let k = pred[u].expect("a node of the cycle has a predecessor");
            cycle.push(k);
            u = residual[k].0;
            if u == v {
                break;
            }
        }
        let bottleneck = cycle
            .iter()
            .map(|&k| {
                let (_, _, _, i, forward) = residual[k];
                if forward { arcs[i].capacity - flow[i] } else { flow[i] }
            })
            .min()
            .expect("a cycle has arcs");
        for &k in &cycle {
            let (_, _, _, i, forward) = residual[k];
            flow[i] += if forward { bottleneck } else { -bottleneck };
        }
    }
}

/// The obligation arcs: debtor to creditor, as much as is open, at -1 per unit cleared.
fn pair_arcs(pairs: &Pairs) -> Vec<Arc> {
    pairs
        .iter()
        .map(|(&(debtor, creditor), &amount)| Arc {
            tail: debtor,
            head: creditor,
            capacity: amount,
            cost: -1,
        })
        .collect()
}

/// The most that pure set-off can clear of `pairs` among `firm_count` firms.
fn setoff_optimum(firm_count: usize, pairs: &Pairs) -> i128 {
    -reference_min_cost(firm_count, &pair_arcs(pairs))
}

/// The most that clearing through credit can clear of `pairs`: the obligation arcs and a
/// circuit node joined to every firm by an arc to the firm (it pays into the circuit, up to
/// its room to pay) and one from it (it receives, up to its room to receive).
fn credit_optimum(pairs: &Pairs, headroom: &[Headroom]) -> i128 {
    let circuit = headroom.len();
    let mut arcs = pair_arcs(pairs);
    for (f, h) in headroom.iter().enumerate() {
        arcs.push(Arc { tail: circuit, head: f, capacity: h.pay_max, cost: 0 });
        arcs.push(Arc { tail: f, head: circuit, capacity: h.receive_max, cost: 0 });
    }
    -reference_min_cost(circuit + 1, &arcs)
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
    next_invoice: u64,
    /// The invoice the last `IssueInvoice` built named.
    last_issued: Option<InvoiceParties>,
}

impl Run {
    fn new() -> Run {
        let keys = Keys::new();
        let node = TestNode::start_new(&keys.admin);
        let model = Model::new(&keys, &node.genesis);
        Run { keys, node, model, history: Vec::new(), next_id: 0, next_invoice: 0, last_issued: None }
    }

    fn fresh_id(&mut self) -> OperationId {
        self.next_id += 1;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&self.next_id.to_be_bytes());
        OperationId(id)
    }

    /// An invoice id never used before.
    fn fresh_invoice_id(&mut self) -> InvoiceId {
        self.next_invoice += 1;
        let mut id = [0xc0; 16];
        id[8..].copy_from_slice(&self.next_invoice.to_be_bytes());
        InvoiceId(id)
    }

    /// The invoice `target` names, with the firms the operation names for it, and the
    /// invoice as the model has it now (if it exists). `suits` says which invoices
    /// `InvoicePick::Suited` prefers; `unused` is an id no invoice has.
    fn resolve(
        &self,
        target: &InvoiceTarget,
        suits: impl Fn(&ModelInvoice) -> bool,
        unused: InvoiceId,
    ) -> (InvoiceParties, Option<ModelInvoice>) {
        let invoices = &self.model.invoices;
        let pick = |ix: &Index, ids: Vec<&InvoiceId>| (!ids.is_empty()).then(|| *ids[ix.index(ids.len())]);
        let id = match &target.pick {
            InvoicePick::Suited(ix) => {
                pick(ix, invoices.iter().filter(|(_, i)| suits(i)).map(|(id, _)| id).collect())
                    .or_else(|| pick(ix, invoices.keys().collect()))
            }
            InvoicePick::Any(ix) => pick(ix, invoices.keys().collect()),
            InvoicePick::LastIssued => self.last_issued.as_ref().map(|p| p.invoice),
            InvoicePick::Unknown => None,
        };
        let handle = |h: &str| AccountId::parse(h).expect("a valid handle");
        match id.and_then(|id| invoices.get(&id).map(|i| (id, i))) {
            Some((id, invoice)) => {
                let (payee, payer) = match target.parties {
                    Parties::Right => (handle(&invoice.payee), handle(&invoice.payer)),
                    Parties::Swapped => (handle(&invoice.payer), handle(&invoice.payee)),
                    Parties::OtherPayer(k) => (handle(&invoice.payee), handle(HANDLES[k])),
                };
                (InvoiceParties { invoice: id, payee, payer }, Some(invoice.clone()))
            }
            // The last issue was refused: name what it named.
            None if matches!(target.pick, InvoicePick::LastIssued) && self.last_issued.is_some() => {
                (self.last_issued.clone().expect("checked"), None)
            }
            None => {
                let parties = InvoiceParties {
                    invoice: unused,
                    payee: handle(HANDLES[target.payee]),
                    payer: handle(HANDLES[target.payer]),
                };
                (parties, None)
            }
        }
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
        let unused_invoice = self.fresh_invoice_id();
        let handle = |i: usize| AccountId::parse(HANDLES[i]).expect("a valid handle");
        let keys = |choices: &[KeyChoice]| choices.iter().map(|&c| self.keys.public(c)).collect();
        // The operation, and the accounts whose keys `Signer::Owner` and
        // `Signer::Counterparty` sign with.
        let (kind, owner, counterparty) = match &s.op {
            OpSpec::Register {
                account,
                name,
                keys: choices,
                credit_limit,
                max_balance,
                allow_shared_key,
            } => (
                Some(OpKind::RegisterAccount(RegisterAccount {
                    account: handle(*account),
                    display_name: name.resolve(DISPLAY_NAME_CHARS_MAX),
                    keys: keys(choices),
                    credit_limit_minor: *credit_limit,
                    max_balance_minor: *max_balance,
                    profile: Default::default(),
                    allow_shared_key: *allow_shared_key,
                })),
                Some(handle(*account)),
                None,
            ),
            OpSpec::SetLimits { account, credit_limit, max_balance, reason } => (
                Some(OpKind::SetLimits(SetLimits {
                    account: handle(*account),
                    credit_limit_minor: *credit_limit,
                    max_balance_minor: *max_balance,
                    reason: reason.resolve(REASON_CHARS_MAX),
                })),
                Some(handle(*account)),
                None,
            ),
            OpSpec::Freeze { account, reason } => (
                Some(OpKind::FreezeAccount {
                    account: handle(*account),
                    reason: reason.resolve(REASON_CHARS_MAX),
                }),
                Some(handle(*account)),
                None,
            ),
            OpSpec::Unfreeze { account, reason } => (
                Some(OpKind::UnfreezeAccount {
                    account: handle(*account),
                    reason: reason.resolve(REASON_CHARS_MAX),
                }),
                Some(handle(*account)),
                None,
            ),
            OpSpec::SetProfile { account, name, commune, sector, reason } => {
                let choice = |list: &[&str], i: &Option<usize>| {
                    i.map(|i| Some(list[i].to_string()).filter(|v| !v.is_empty()))
                };
                let profile = cercle_core::ProfileChange {
                    commune: choice(&COMMUNE_CHOICES, commune),
                    sector: choice(&SECTOR_CHOICES, sector),
                    ..Default::default()
                };
                (
                    Some(OpKind::SetProfile(cercle_core::SetProfile {
                        account: handle(*account),
                        display_name: name.as_ref().map(|n| n.resolve(DISPLAY_NAME_CHARS_MAX)),
                        profile,
                        reason: reason.resolve(REASON_CHARS_MAX),
                    })),
                    Some(handle(*account)),
                    None,
                )
            }
            OpSpec::RotateKeys { account, keys: choices, allow_shared_key } => (
                Some(OpKind::RotateKeys {
                    account: handle(*account),
                    keys: keys(choices),
                    allow_shared_key: *allow_shared_key,
                }),
                Some(handle(*account)),
                None,
            ),
            OpSpec::Transfer { payer, payee, amount, memo, invoice } => (
                Some(OpKind::Transfer(Transfer {
                    payer: handle(*payer),
                    payee: handle(*payee),
                    amount_minor: self.model.transfer_amount(*amount, HANDLES[*payer], HANDLES[*payee]),
                    memo: memo.resolve(MEMO_CHARS_MAX),
                    invoice_ref: invoice.map(|t| t.resolve(INVOICE_REF_CHARS_MAX)),
                    invoice: None,
                })),
                Some(handle(*payer)),
                Some(handle(*payee)),
            ),
            OpSpec::Oversized { payer, payee } => (
                Some(OpKind::Transfer(Transfer {
                    payer: handle(*payer),
                    payee: handle(*payee),
                    amount_minor: 1,
                    memo: "m".repeat(BODY_BYTES_MAX),
                    invoice_ref: None,
                    invoice: None,
                })),
                Some(handle(*payer)),
                Some(handle(*payee)),
            ),
            OpSpec::Malformed(_) => (None, Some(handle(0)), None),
            OpSpec::IssueInvoice {
                invoice,
                firms,
                amount,
                local_share_percent,
                due_day,
                reference,
                excluded,
            } => {
                let existing: Vec<InvoiceId> = self.model.invoices.keys().copied().collect();
                let id = match invoice {
                    Id::Reuse(ix) if !existing.is_empty() => existing[ix.index(existing.len())],
                    Id::Fresh | Id::Reuse(_) => unused_invoice,
                };
                let registered: Vec<&String> = self.model.accounts.keys().collect();
                let (payee, payer) = match *firms {
                    IssueFirms::Registered { payee, payer } if registered.len() >= 2 => {
                        let n = registered.len();
                        let k = payee.index(n);
                        let parse = |h: &String| AccountId::parse(h).expect("a valid handle");
                        (parse(registered[k]), parse(registered[(k + 1 + payer.index(n - 1)) % n]))
                    }
                    IssueFirms::Registered { payee, payer } => {
                        let k = payee.index(HANDLES.len());
                        (handle(k), handle((k + 1 + payer.index(HANDLES.len() - 1)) % HANDLES.len()))
                    }
                    IssueFirms::Named { payee, payer } => (handle(payee), handle(payer)),
                };
                self.last_issued =
                    Some(InvoiceParties { invoice: id, payee: payee.clone(), payer: payer.clone() });
                (
                    Some(OpKind::IssueInvoice(IssueInvoice {
                        invoice: id,
                        payee: payee.clone(),
                        payer: payer.clone(),
                        amount_minor: *amount,
                        local_share_percent: *local_share_percent,
                        due_day: *due_day,
                        reference: reference.resolve(INVOICE_REF_CHARS_MAX),
                        excluded_from_clearing: *excluded,
                    })),
                    Some(payee),
                    Some(payer),
                )
            }
            OpSpec::OnInvoice { target, action } => {
                let suits = |i: &ModelInvoice| match action {
                    InvoiceAction::Accept | InvoiceAction::Reject { .. } => i.state == InvoiceState::Issued,
                    // Partly settled invoices too, which cannot be cancelled.
                    InvoiceAction::Cancel { .. } | InvoiceAction::SetClearing { .. } => i.is_open(),
                };
                let (parties, current) = self.resolve(target, suits, unused_invoice);
                let (payee, payer) = (parties.payee.clone(), parties.payer.clone());
                let (kind, payee_signs) = match action {
                    InvoiceAction::Accept => (OpKind::AcceptInvoice(parties), false),
                    InvoiceAction::Reject { reason } => (
                        OpKind::RejectInvoice { invoice: parties, reason: reason.resolve(REASON_CHARS_MAX) },
                        false,
                    ),
                    InvoiceAction::Cancel { reason } => (
                        OpKind::CancelInvoice { invoice: parties, reason: reason.resolve(REASON_CHARS_MAX) },
                        true,
                    ),
                    InvoiceAction::SetClearing { toggle, by_payee } => {
                        let excluded = current.map_or(*toggle, |i| i.excluded != *toggle);
                        (OpKind::SetInvoiceClearing { invoice: parties, excluded }, *by_payee)
                    }
                };
                let (owner, counterparty) = if payee_signs { (payee, payer) } else { (payer, payee) };
                (Some(kind), Some(owner), Some(counterparty))
            }
            OpSpec::PayInvoice { target, amount, memo } => {
                let (parties, current) = self.resolve(target, ModelInvoice::is_open, unused_invoice);
                let open = current.as_ref().map_or(0, ModelInvoice::open);
                let amount_minor = match amount {
                    PayAmount::Open => open.max(1),
                    PayAmount::Part(ix) if open > 1 => {
                        let part = ix.index(usize::try_from(open - 1).expect("a small open amount"));
                        1 + i64::try_from(part).expect("below the open amount")
                    }
                    PayAmount::Part(_) => 1,
                    PayAmount::OverOpen => open + 1,
                    PayAmount::Fixed(amount) => *amount,
                };
                let (payer, payee) = (parties.payer, parties.payee);
                (
                    Some(OpKind::Transfer(Transfer {
                        payer: payer.clone(),
                        payee: payee.clone(),
                        amount_minor,
                        memo: memo.resolve(MEMO_CHARS_MAX),
                        invoice_ref: None,
                        invoice: Some(parties.invoice),
                    })),
                    Some(payer),
                    Some(payee),
                )
            }
            OpSpec::RunClearing { with_credit, reason } => (
                Some(OpKind::RunClearing(RunClearing {
                    with_credit: *with_credit,
                    reason: reason.resolve(REASON_CHARS_MAX),
                })),
                None,
                None,
            ),
        };
        let op = kind.map(|kind| Operation { id, valid_until_ms, kind });
        let body = match (&op, &s.op) {
            (Some(op), _) => cercle_core::body::encode(op),
            (None, OpSpec::Malformed(m)) => malformed_body(*m, id, valid_until_ms),
            (None, _) => unreachable!("only malformed specs have no operation"),
        };
        // A key of `account` that we hold, if it has one.
        let key_of = |account: Option<AccountId>| {
            account
                .and_then(|a| self.model.accounts.get(a.as_str()))
                .and_then(|a| a.keys.iter().find_map(|k| self.keys.signing(k)))
        };
        let signer = match s.signer {
            Signer::Owner => key_of(owner).unwrap_or(&self.keys.firms[0]),
            Signer::Counterparty => key_of(counterparty).unwrap_or(&self.keys.firms[1]),
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
                Step::Restart => self.restart(None)?,
            }
        }
        self.check_store(None)
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
        // The model decides the envelopes in order. What an accepted clearing run clears is
        // the node's choice among optimal allocations, which the model learns from the node
        // before it decides anything after it: such a run ends a round of envelopes sent
        // together (the writer gives a clearing run a group of its own in any case).
        let mut rest = built.as_slice();
        while !rest.is_empty() {
            let mut expected = Vec::new();
            for b in rest {
                let e = self.model.submit(b);
                let ends_round = matches!(e, Expected::Clearing(_));
                expected.push(e);
                if ends_round {
                    break;
                }
            }
            let (round, later) = rest.split_at(expected.len());
            rest = later;
            let envelopes = round.iter().map(|b| b.envelope.clone()).collect();
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
        }
        self.check_node()
    }

    /// Takes an accepted operation's receipt: the head moves to its entry, and every retry
    /// must get it again.
    fn take_receipt(
        &mut self,
        id: OperationId,
        sequence: u64,
        receipt: &pb::Receipt,
    ) -> Result<(), TestCaseError> {
        prop_assert!(!receipt.duplicate);
        prop_assert_eq!(receipt.sequence, sequence);
        prop_assert_eq!(&receipt.operation_id, &id.0.to_vec());
        prop_assert!(receipt.timestamp_ms >= self.model.head.timestamp_ms);
        let hash: [u8; 32] = receipt
            .entry_hash
            .as_slice()
            .try_into()
            .map_err(|_| TestCaseError::fail("the entry hash is not 32 bytes"))?;
        self.model.head = Head { size: sequence, hash, timestamp_ms: receipt.timestamp_ms };
        let month =
            cercle_core::limitrule::ledger_month(self.node.genesis.day_offset_minutes, receipt.timestamp_ms);
        for (handle, before, after) in self.model.moves.remove(&sequence).unwrap_or_default() {
            if let Some(a) = self.model.accounts.get_mut(&handle) {
                a.moved(before, after, receipt.timestamp_ms);
                if after > before {
                    let received = i64::try_from(after - before).expect("a payment within i64");
                    cercle_core::limitrule::record_sale(&mut a.sales, month, received);
                }
            }
        }
        if let Some(op) = self.model.ops.get_mut(&id) {
            op.receipt = Some(receipt.clone());
        }
        Ok(())
    }

    fn check_outcome(&mut self, expected: Expected, real: Real) -> Result<(), TestCaseError> {
        match (expected, real) {
            (Expected::Rejected(code), Err((rejection, description))) => {
                prop_assert_eq!(rejection, expected_rejection(code), "{}", description);
            }
            (Expected::New { id, sequence, balances_after, shown, limits }, Ok(receipt)) => {
                prop_assert_eq!(&receipt.balances_after, &shown, "a receipt shows what its signer may read");
                prop_assert_eq!(&receipt.clearing, &None, "only a clearing run's receipt has a summary");
                if let Some((floor, max)) = limits {
                    // The transfer's accounts were within their limits when it was applied.
                    let payer = balances_after[0].balance_minor;
                    let payee = balances_after[1].balance_minor;
                    prop_assert!(payer >= floor, "{} is below {}", payer, floor);
                    prop_assert!(max.is_none_or(|m| payee <= m), "{} above {:?}", payee, max);
                }
                self.take_receipt(id, sequence, &receipt)?;
            }
            (Expected::Clearing(run), Ok(receipt)) => {
                self.take_receipt(run.id, run.sequence, &receipt)?;
                // Only an administrator runs clearing, and it reads every balance: the
                // receipt's balances are the run's, which a retry must show again.
                if let Some(op) = self.model.ops.get_mut(&run.id) {
                    op.balances_after = receipt.balances_after.clone();
                }
                // What the run cleared of each invoice is read from the node's store, so the
                // node restarts here; the run is checked and adopted on the way.
                self.restart(Some((&run, &receipt)))?;
            }
            (Expected::Duplicate { id, shown }, Ok(receipt)) => {
                let original = self
                    .model
                    .ops
                    .get(&id)
                    .and_then(|op| op.receipt.clone())
                    .ok_or_else(|| TestCaseError::fail("a retry of an unanswered operation"))?;
                prop_assert!(receipt.duplicate, "a retry must be flagged as one");
                // A retry of a clearing run gets its receipt without the run's summary.
                prop_assert_eq!(
                    pb::Receipt { duplicate: false, ..receipt },
                    pb::Receipt { clearing: None, balances_after: shown, ..original }
                );
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
            let expected = self.model.wire_account(handle);
            prop_assert_eq!(&real, &expected, "account {}", handle);
            sum += real.map_or(0, |a| i128::from(a.balance_minor));
        }
        prop_assert_eq!(sum, 0, "balances must sum to zero");
        prop_assert_eq!(self.node.log_size(), self.model.head.size);
        Ok(())
    }

    /// Stops the node and checks its store: opened as the node opens it (the checkpoint,
    /// then the log past it, every signature checked), the state is the model's; the log
    /// replays from genesis to the model's state digest and head; the checkpoint a clean
    /// stop leaves holds every account and invoice as the model has them, and no entry is
    /// replayed on top of it; the operation ids still within their window are remembered.
    /// With `clearing`, the run that the last entry records is first checked against the
    /// model and adopted by it.
    fn check_store(
        &mut self,
        clearing: Option<(&PendingClearing, &pb::Receipt)>,
    ) -> Result<(), TestCaseError> {
        self.node.stop();
        let recovered = self.node.open_store();
        let (store, ledger) = (&recovered.store, &recovered.ledger);
        if let Some((run, receipt)) = clearing {
            let entry = store.entry(run.sequence).expect("entry").ok_or_else(|| {
                TestCaseError::fail(format!("no entry {} for the clearing run", run.sequence))
            })?;
            let section = entry
                .section(SectionTag::Clearing)
                .ok_or_else(|| TestCaseError::fail(format!("entry {} records no clearing", run.sequence)))?;
            let record = ClearingRecord::from_section(section)
                .map_err(|e| TestCaseError::fail(format!("entry {}: {e}", run.sequence)))?;
            let accounts: Vec<Account> = ledger.state().accounts().cloned().collect();
            let invoices: Vec<Invoice> = ledger.state().invoices().cloned().collect();
            self.model.adopt_clearing(run, receipt, &record, &accounts, &invoices)?;
        }
        let genesis = &self.node.genesis;
        let expected_accounts = self.model.core_accounts();
        let expected_invoices = self.model.core_invoices();
        let expected_digest =
            State::from_parts(genesis, expected_accounts.clone(), expected_invoices.clone()).digest();
        // The invoices first, whose differences the digest would not show.
        let recovered_invoices: Vec<Invoice> = ledger.state().invoices().cloned().collect();
        prop_assert_eq!(&recovered_invoices, &expected_invoices, "the invoices as the node starts with them");
        prop_assert_eq!(ledger.state().digest(), expected_digest);
        prop_assert_eq!(*ledger.head(), self.model.head);
        // A clean stop writes a last checkpoint: the next start replays nothing over it.
        prop_assert_eq!(
            &recovered.report.outcome,
            &StateOutcome::Resumed { checkpoint: self.model.head.size, replayed: 0 }
        );
        let snapshot = store.snapshot().expect("the checkpoint reads").expect("a checkpoint");
        prop_assert_eq!(&snapshot.accounts, &expected_accounts, "the checkpoint's accounts");
        let mut stored_invoices = snapshot.invoices.clone();
        stored_invoices.sort_by_key(|i| i.id);
        prop_assert_eq!(&stored_invoices, &expected_invoices, "the checkpoint's invoices");
        for (id, op) in &self.model.ops {
            if op.valid_until_ms >= self.model.head.timestamp_ms {
                prop_assert_eq!(ledger.ids().get(id).map(|r| r.sequence), Some(op.sequence));
            }
        }
        let from_genesis = replay_from_genesis(store, true)
            .map_err(|e| TestCaseError::fail(format!("the log does not replay from genesis: {e}")))?;
        prop_assert_eq!(from_genesis.state().digest(), expected_digest);
        let replayed_invoices: Vec<Invoice> = from_genesis.state().invoices().cloned().collect();
        prop_assert_eq!(&replayed_invoices, &expected_invoices, "the invoices replayed from genesis");
        prop_assert_eq!(*from_genesis.head(), self.model.head);
        Ok(())
    }

    /// Restarts the node: what it serves after must equal what it served before. With
    /// `clearing`, see `check_store`.
    fn restart(&mut self, clearing: Option<(&PendingClearing, &pb::Receipt)>) -> Result<(), TestCaseError> {
        let before: Vec<_> = HANDLES.iter().map(|h| self.node.account(h)).collect();
        self.check_store(clearing)?;
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
    // A third party's body, built with the schema's own types, then spoiled.
    let mut body = schema::OperationBody::decode(cercle_core::body::encode(&transfer).as_slice())
        .expect("the core's encoding decodes");
    match m {
        Malformed::UppercaseHandle => {
            if let Some(schema::operation_body::Kind::Transfer(t)) = &mut body.kind {
                t.payer = "Alpha".into();
            }
        }
        Malformed::ShortOperationId => {
            body.operation_id.pop();
        }
        Malformed::NoKind => body.kind = None,
        Malformed::ShortKey => {
            body.kind = Some(schema::operation_body::Kind::RotateKeys(schema::RotateKeys {
                account: HANDLES[0].into(),
                public_keys: vec![vec![7; 31]],
                allow_shared_key: false,
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
            profile: Default::default(),
            allow_shared_key: false,
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
fn a_receipt_shows_only_the_balances_its_signer_may_read() {
    let (node, alpha, _) = two_accounts();
    let ledger_id = node.genesis.ledger_id;
    // Issue #10: a payment of 0.01 told the payer the payee's balance.
    let receipt =
        node.submit(sign_op(&ledger_id, &alpha, &transfer_op(3, "alpha", "bravo", 1))).expect("paid");
    assert_eq!(receipt.balances_after, [pb::BalanceAfter { account: "alpha".into(), balance_minor: -1 }]);
    // The administrator's own acts show everything.
    let admin = keypair(ADMIN_SEED);
    let mut carol = register_op(4, "carol", &alpha, 0);
    if let OpKind::RegisterAccount(r) = &mut carol.kind {
        r.allow_shared_key = true;
    }
    let receipt = node.submit(sign_op(&ledger_id, &admin, &carol)).expect("ok");
    assert_eq!(receipt.balances_after, [pb::BalanceAfter { account: "carol".into(), balance_minor: 0 }]);
    // A firm holding keys of both accounts sees both.
    let receipt =
        node.submit(sign_op(&ledger_id, &alpha, &transfer_op(5, "alpha", "carol", 2))).expect("paid");
    assert_eq!(receipt.balances_after.len(), 2);
}

#[test]
fn another_key_resigning_a_saved_body_gets_a_conflict_not_the_receipt() {
    let (node, alpha, bravo) = two_accounts();
    let ledger_id = node.genesis.ledger_id;
    let body = cercle_core::body::encode(&transfer_op(3, "alpha", "bravo", 100));
    node.submit(sign_body(&ledger_id, &alpha, body.clone())).expect("accepted");
    // Issue #11: bravo, holding alpha's saved body, signed it and got alpha's receipt.
    assert_rejected(node.submit(sign_body(&ledger_id, &bravo, body)), RejectCode::OperationIdConflict);
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
        status.message().contains(
            "balance would be -1,000.01 CHW; a credit limit of 1,000.00 CHW allows down to -1,000.00 CHW"
        ),
        "{}",
        status.message()
    );
    node.submit(sign_op(&ledger_id, &alpha, &transfer_op(5, "alpha", "bravo", 1)))
        .expect("exactly at the limit");
    assert_eq!(balances(&node), [Some(-100_000), Some(100_000)]);
}

#[test]
fn rejection_codes_and_names_are_the_documented_ones() {
    for code in ALL_CODES {
        assert_eq!((code as u16, code.name()), documented(code), "{code:?}");
    }
    let numbers: std::collections::BTreeSet<u16> = ALL_CODES.iter().map(|&c| documented(c).0).collect();
    let names: std::collections::BTreeSet<&str> = ALL_CODES.iter().map(|&c| documented(c).1).collect();
    assert_eq!((numbers.len(), names.len()), (ALL_CODES.len(), ALL_CODES.len()), "each code once");
}

#[test]
fn the_limits_are_the_documented_ones() {
    use cercle_limits as limits;
    assert_eq!(limits::AMOUNT_MAX_MINOR, AMOUNT_MAX);
    assert_eq!(limits::INVOICE_AMOUNT_MAX_MINOR, INVOICE_AMOUNT_MAX_MINOR);
    assert_eq!(limits::MEMO_CHARS_MAX, MEMO_CHARS_MAX);
    assert_eq!(limits::REASON_CHARS_MAX, REASON_CHARS_MAX);
    assert_eq!(limits::DISPLAY_NAME_CHARS_MAX, DISPLAY_NAME_CHARS_MAX);
    assert_eq!(limits::INVOICE_REF_CHARS_MAX, INVOICE_REF_CHARS_MAX);
    assert_eq!(limits::KEYS_PER_ACCOUNT_MAX, KEYS_PER_ACCOUNT_MAX);
    assert_eq!(limits::VALIDITY_MS_MAX, VALIDITY_MS_MAX);
    assert_eq!(limits::BODY_BYTES_MAX, BODY_BYTES_MAX);
}

#[test]
fn a_payment_may_take_the_payee_to_its_maximum_balance_but_not_past_it() {
    let admin = keypair(ADMIN_SEED);
    let (alpha, bravo) = (keypair(11), keypair(12));
    let node = TestNode::start_new(&admin);
    let ledger_id = node.genesis.ledger_id;
    let mut capped = register_op(2, "bravo", &bravo, 0);
    if let OpKind::RegisterAccount(r) = &mut capped.kind {
        r.max_balance_minor = Some(50_000);
    }
    for op in [register_op(1, "alpha", &alpha, 100_000), capped] {
        node.submit(sign_op(&ledger_id, &admin, &op)).expect("registration accepted");
    }
    node.submit(sign_op(&ledger_id, &alpha, &transfer_op(3, "alpha", "bravo", 49_999)))
        .expect("below the maximum");
    let status = node
        .submit(sign_op(&ledger_id, &alpha, &transfer_op(4, "alpha", "bravo", 2)))
        .expect_err("past the maximum");
    assert_eq!(rejection_of(&status), expected_rejection(RejectCode::MaxBalanceExceeded));
    node.submit(sign_op(&ledger_id, &alpha, &transfer_op(5, "alpha", "bravo", 1)))
        .expect("exactly the maximum");
    assert_eq!(balances(&node), [Some(-50_000), Some(50_000)]);
}
