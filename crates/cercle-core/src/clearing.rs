//! Clearing runs: the optimal set-off of the ledger's obligations, as recorded in an entry,
//! and the linear-time check that makes the record trustworthy.
//!
//! The obligations of a run are the eligible invoices: accepted or partly settled, with
//! something open, not excluded from clearing, between two active (not frozen) firms.
//! They are aggregated per ordered pair of firms and handed to `cercle_clearing`:
//! stage 1 is pure set-off (a max-weight circulation, no money moves); with
//! `with_credit`, stage 2 settles part of what set-off left through the firms' unused
//! credit (payments into and out of the circuit, within every limit). Stage 1 always runs
//! first, so pure set-off is preferred.
//!
//! The record lists every invoice's cleared amounts and, per firm, the node potentials that
//! prove both stages optimal, plus the payments of stage 2. `check` rebuilds the problem
//! from the state, checks that the record allocates each pair's amount to its invoices in
//! the deterministic order (`Invoice::clearing_order_key`), and runs the certificate
//! checks; a record that is infeasible, not optimal or allocated otherwise is refused.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use cercle_clearing::{self as solver, CertificateError, Headroom, Pair, SetOff, SolveError, WithCredit};
use cercle_limits::{CLEARING_FIRMS_MAX, CLEARING_OBLIGATIONS_MAX};

use crate::codec::{DecodeError, Reader, Writer};
use crate::entry::{Section, SectionTag};
use crate::groups::{Groups, Limits};
use crate::ids::AccountId;
use crate::invoice::{Invoice, InvoiceId};
use crate::reject::Rejection;
use crate::state::{Account, AccountStatus, Bounds, Effects, State};

const RECORD_VERSION: u8 = 1;

// A run the ledger accepts is a problem the solver takes: its own bounds are far wider.
const _: () = assert!(CLEARING_FIRMS_MAX <= cercle_clearing::setoff::FIRMS_MAX as usize);
const _: () = assert!(CLEARING_OBLIGATIONS_MAX <= cercle_clearing::setoff::OBLIGATIONS_MAX as usize);
const _: () = assert!(CLEARING_OBLIGATIONS_MAX <= cercle_clearing::setoff::PAIRS_MAX as usize);

/// One firm of a clearing run, with its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingFirm {
    pub account: AccountId,
    /// Node potential proving stage 1 optimal.
    pub setoff_potential: i64,
    /// Node potential proving stage 2 optimal (0 without credit).
    pub credit_potential: i64,
    /// Paid into the circuit by stage 2 (> 0: the balance went down by this; < 0: up).
    pub payment_minor: i64,
    /// True when the run changed one of the firm's invoices or its balance.
    pub changed: bool,
}

/// What a run cleared of one invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearedInvoice {
    pub invoice: InvoiceId,
    /// Cancelled by set-off.
    pub setoff_minor: i64,
    /// Settled through mutual credit (stage 2).
    pub credit_minor: i64,
}

/// Why a clearing record is refused (`Rejection::ClearingInvalid`): one variant per property
/// the record or the solver's answer violates, so a caller can tell an infeasible record from
/// one that is not optimal, breaks a limit or allocates wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClearingDefect {
    #[error("only a clearing run carries a clearing record")]
    RecordOnOtherOperation,
    #[error("the entry carries no clearing record")]
    NoRecord,
    #[error("the record's credit option differs from the operation's")]
    CreditOptionDiffers,
    #[error("the record's firms are not the firms of the eligible obligations")]
    WrongFirms,
    #[error("a run without credit records a payment or a credit potential")]
    PaymentWithoutCredit,
    #[error("a run without credit records amounts settled through credit")]
    CreditAmountsWithoutCredit,
    #[error("the record's invoices are not in strictly increasing id order")]
    InvoicesOutOfOrder,
    #[error("invoice {invoice} is not an eligible obligation")]
    NotAnObligation { invoice: InvoiceId },
    #[error("invoice {invoice}: cleared amounts must be positive")]
    AmountNotPositive { invoice: InvoiceId },
    #[error("more is cleared from '{debtor}' to '{creditor}' than is open")]
    MoreThanOpen { debtor: AccountId, creditor: AccountId },
    #[error("pair {pair} clears more than its invoices hold")]
    PairOverAllocated { pair: u64 },
    #[error("the cleared amounts are not allocated to invoices oldest due first")]
    WrongAllocation,
    /// Stage 1's amounts and potentials fail the certificate check: infeasible (an amount
    /// out of bounds, a net position changed) or not optimal.
    #[error("set-off: {0}")]
    SetOff(CertificateError),
    /// Stage 2's likewise; a payment beyond a firm's headroom is an arc over its capacity.
    #[error("credit: {0}")]
    Credit(CertificateError),
    #[error("the record marks the wrong firms as changed")]
    WrongChangedFirms,
    #[error("payment of '{account}' is out of range")]
    PaymentOutOfRange { account: AccountId },
    /// The solver could not answer (a bound, or its own certificate failed).
    #[error("{0}")]
    Solver(SolveError),
    /// A run planned on a snapshot no longer holds: what it read changed since (the node
    /// plans it again; never written in an entry).
    #[error("the state changed since the run was planned")]
    PlanStale,
}

/// The outcome of a clearing run as written in its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingRecord {
    pub with_credit: bool,
    /// Every firm of the run's obligations, in handle order.
    pub firms: Vec<ClearingFirm>,
    /// The circuit's potential in stage 2 (0 without credit).
    pub circuit_potential: i64,
    /// Every invoice with something cleared, in id order.
    pub invoices: Vec<ClearedInvoice>,
}

/// The header part of a clearing section (part 0): the run's options and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub with_credit: bool,
    pub circuit_potential: i64,
    pub firms: u32,
    pub invoices: u32,
}

/// One firm's part of a clearing section: all that a firm is shown of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmPart {
    pub firm: ClearingFirm,
    /// Its balance after the run, when it paid into the circuit or received from it.
    pub balance_after: Option<i64>,
    /// Its invoices the run cleared, as payer or payee, in id order.
    pub invoices: Vec<ClearedInvoice>,
}

fn flag(v: u8, what: &'static str) -> Result<bool, DecodeError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid(what)),
    }
}

impl RecordHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(RECORD_VERSION)
            .u8(u8::from(self.with_credit))
            .i64(self.circuit_potential)
            .u32(self.firms)
            .u32(self.invoices);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("clearing version")?;
        if version != RECORD_VERSION {
            return Err(DecodeError::Version(version));
        }
        let header = RecordHeader {
            with_credit: flag(r.u8("with credit")?, "with credit")?,
            circuit_potential: r.i64("circuit potential")?,
            firms: r.u32("firm count")?,
            invoices: r.u32("invoice count")?,
        };
        r.finish()?;
        if header.firms as usize > CLEARING_FIRMS_MAX || header.invoices as usize > CLEARING_OBLIGATIONS_MAX {
            return Err(DecodeError::Invalid("clearing size"));
        }
        Ok(header)
    }
}

impl FirmPart {
    pub fn encode(&self) -> Vec<u8> {
        let f = &self.firm;
        let mut w = Writer::default();
        w.str(f.account.as_str())
            .i64(f.setoff_potential)
            .i64(f.credit_potential)
            .i64(f.payment_minor)
            .u8(u8::from(f.changed))
            .opt_i64(self.balance_after)
            .u32(self.invoices.len() as u32);
        for i in &self.invoices {
            w.fixed(&i.invoice.0).i64(i.setoff_minor).i64(i.credit_minor);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let account = AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
        let firm = ClearingFirm {
            account,
            setoff_potential: r.i64("set-off potential")?,
            credit_potential: r.i64("credit potential")?,
            payment_minor: r.i64("payment")?,
            changed: flag(r.u8("changed")?, "changed")?,
        };
        let balance_after = r.opt_i64("balance after")?;
        let n = r.u32("invoice count")? as usize;
        if n > CLEARING_OBLIGATIONS_MAX {
            return Err(DecodeError::Invalid("invoice count"));
        }
        let mut invoices = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            invoices.push(ClearedInvoice {
                invoice: InvoiceId(r.array("invoice id")?),
                setoff_minor: r.i64("set-off amount")?,
                credit_minor: r.i64("credit amount")?,
            });
        }
        r.finish()?;
        Ok(FirmPart { firm, balance_after, invoices })
    }
}

/// Where `account`'s part is in a clearing section (parts after the header are in handle
/// order), if it took part in the run.
pub fn part_index(section: &Section, account: &AccountId) -> Option<u32> {
    let firms = section.parts.get(1..)?;
    let found = firms.binary_search_by(|part| {
        let mut r = Reader::new(part);
        match r.string("account") {
            Ok(name) => name.as_str().cmp(account.as_str()),
            Err(_) => std::cmp::Ordering::Less,
        }
    });
    found.ok().map(|i| i as u32 + 1)
}

/// Every firm's part of a clearing entry, decoded (none for another entry, or where a part
/// does not decode: the replay refuses such an entry).
pub fn firm_parts(entry: &crate::entry::Entry) -> Vec<FirmPart> {
    entry
        .section(SectionTag::Clearing)
        .map(|s| s.parts.iter().skip(1).filter_map(|p| FirmPart::decode(p).ok()).collect())
        .unwrap_or_default()
}

/// `account`'s part of a clearing run, as a view of the entry shows it (decoded), if shown.
pub fn firm_part(view: &crate::entry::EntryView, account: &AccountId) -> Option<FirmPart> {
    let section = view.sections.iter().find(|s| s.tag == SectionTag::Clearing)?;
    section
        .parts
        .iter()
        .filter(|p| p.index > 0)
        .filter_map(|p| FirmPart::decode(&p.data).ok())
        .find(|f| &f.firm.account == account)
}

impl ClearingRecord {
    /// The record as an entry's section: the header part, then one part per firm in
    /// handle order with its certificate, its payment, its balance after the run (when it
    /// paid or received) and its cleared invoices as payer or payee. `parties` names each
    /// cleared invoice's payer and payee; `balance` each firm's balance after the run.
    pub fn to_section<'s>(
        &self,
        parties: impl Fn(&InvoiceId) -> Option<(&'s AccountId, &'s AccountId)>,
        balance: impl Fn(&AccountId) -> Option<i64>,
    ) -> Section {
        // Each firm's cleared invoices, by the firm's place in `self.firms`.
        let place: HashMap<&AccountId, usize> =
            self.firms.iter().enumerate().map(|(k, f)| (&f.account, k)).collect();
        let mut by_firm: Vec<Vec<ClearedInvoice>> = vec![Vec::new(); self.firms.len()];
        for c in &self.invoices {
            // The node encodes only records it checked, whose invoices are obligations of
            // the run's firms. A record altered to test the check may name an unknown
            // invoice or other firms: the invoice is then left out of those parts, and a
            // replay refuses the entry (an invoice not in exactly its two firms' parts).
            let Some((payer, payee)) = parties(&c.invoice) else { continue };
            for k in [payer, payee].into_iter().filter_map(|firm| place.get(firm)) {
                by_firm[*k].push(*c);
            }
        }
        let header = RecordHeader {
            with_credit: self.with_credit,
            circuit_potential: self.circuit_potential,
            firms: self.firms.len() as u32,
            invoices: self.invoices.len() as u32,
        };
        let mut parts = vec![header.encode()];
        for (f, invoices) in self.firms.iter().zip(by_firm) {
            let part = FirmPart {
                firm: f.clone(),
                balance_after: if f.payment_minor != 0 { balance(&f.account) } else { None },
                // `self.invoices` is in id order, so each firm's list is too.
                invoices,
            };
            parts.push(part.encode());
        }
        Section { tag: SectionTag::Clearing, parts }
    }

    /// The record a section holds: every firm's part, and every cleared invoice (each
    /// appears in the parts of its two firms, with the same amounts).
    pub fn from_section(section: &Section) -> Result<ClearingRecord, DecodeError> {
        let (first, rest) = section.parts.split_first().ok_or(DecodeError::Truncated("clearing header"))?;
        let header = RecordHeader::decode(first)?;
        if rest.len() != header.firms as usize {
            return Err(DecodeError::Invalid("clearing firm count"));
        }
        let mut firms = Vec::with_capacity(rest.len());
        let mut invoices: std::collections::BTreeMap<InvoiceId, (ClearedInvoice, u8)> = Default::default();
        for part in rest {
            let part = FirmPart::decode(part)?;
            for c in part.invoices {
                let seen = invoices.entry(c.invoice).or_insert((c, 0));
                if seen.0 != c {
                    return Err(DecodeError::Invalid("an invoice's amounts differ between its firms"));
                }
                seen.1 += 1;
            }
            firms.push(part.firm);
        }
        if invoices.len() != header.invoices as usize || invoices.values().any(|(_, n)| *n != 2) {
            return Err(DecodeError::Invalid("a cleared invoice is not in exactly its two firms' parts"));
        }
        Ok(ClearingRecord {
            with_credit: header.with_credit,
            firms,
            circuit_potential: header.circuit_potential,
            invoices: invoices.into_values().map(|(c, _)| c).collect(),
        })
    }

    /// The firms whose invoices or balance the run changed: the accounts its entry concerns.
    pub fn changed_accounts(&self) -> impl Iterator<Item = &AccountId> {
        self.firms.iter().filter(|f| f.changed).map(|f| &f.account)
    }
}

/// Totals of a run, and each firm's part in it: what `--dry-run` shows and the receipt
/// of a run carries. Amounts that sum many invoices are i128.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClearingSummary {
    pub with_credit: bool,
    pub obligations: u64,
    pub firms: u64,
    /// Sum of the open amounts of the eligible obligations.
    pub total_debt_minor: i128,
    /// Sum of the positive net positions over the eligible obligations, before the run.
    pub net_internal_debt_minor: i128,
    pub setoff_minor: i128,
    pub credit_minor: i128,
    /// Sum of the positive payments of stage 2 (what moved through the circuit).
    pub payments_minor: i128,
    /// Sum of the positive net positions over what remains open after the run.
    pub net_internal_debt_after_minor: i128,
    /// Per firm, in handle order; only firms the run changes.
    pub per_firm: Vec<FirmSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmSummary {
    pub account: AccountId,
    /// What the firm owed on eligible obligations, and what of it the run clears.
    pub owes_minor: i128,
    pub owes_cleared_minor: i128,
    /// What it was owed, and what of it the run clears.
    pub owed_minor: i128,
    pub owed_cleared_minor: i128,
    /// Paid into the circuit (< 0: received).
    pub payment_minor: i64,
}

impl ClearingSummary {
    pub fn cleared_minor(&self) -> i128 {
        self.setoff_minor + self.credit_minor
    }

    pub fn remaining_debt_minor(&self) -> i128 {
        self.total_debt_minor - self.cleared_minor()
    }
}

/// The obligations of a run, built from the state in a deterministic order.
struct Problem<'a> {
    firms: Vec<AccountId>,
    /// Eligible invoices, grouped by pair (in pair order), each group in clearing order.
    obligations: Vec<&'a Invoice>,
    pairs: Vec<Pair>,
    /// `obligations[pair_start[p]..pair_start[p + 1]]` are pair `p`'s invoices.
    pair_start: Vec<usize>,
}

/// What clearing reads of the ledger: the open invoices, and the accounts of their firms.
/// The state itself, or a snapshot of just that taken from it (`ClearingSnapshot`), so a
/// run can be solved away from the writer.
pub trait ClearingSource {
    fn open_invoices(&self) -> impl Iterator<Item = &Invoice>;
    fn account(&self, id: &AccountId) -> Option<&Account>;
    /// The limits that bind an account: its own or its group's.
    fn limits(&self, a: &Account) -> Limits;
    /// How many obligations and firms a run may take.
    fn bounds(&self) -> Bounds;
}

impl ClearingSource for State {
    fn open_invoices(&self) -> impl Iterator<Item = &Invoice> {
        State::open_invoices(self)
    }

    fn account(&self, id: &AccountId) -> Option<&Account> {
        State::account(self, id)
    }

    fn limits(&self, a: &Account) -> Limits {
        State::limits(self, a)
    }

    fn bounds(&self) -> Bounds {
        State::bounds(self)
    }
}

/// The part of the state a clearing run reads, copied, so the run can be solved on another
/// thread while the ledger goes on: the open invoices (shared with the state, not copied:
/// the state copies an invoice only when it changes one a snapshot still holds) and every
/// account.
#[derive(Debug, Clone, Default)]
pub struct ClearingSnapshot {
    /// Every open invoice, in id order.
    invoices: Vec<Arc<Invoice>>,
    accounts: BTreeMap<AccountId, Account>,
    /// The member groups, whose limits bind the members that follow them.
    groups: Groups,
    bounds: Bounds,
}

impl ClearingSnapshot {
    /// Copies what a run of `state` reads: a pointer per open invoice, and the accounts.
    /// What the writer pays for a run, before it goes on; no lookups, no invoice copied.
    pub fn take(state: &State) -> ClearingSnapshot {
        ClearingSnapshot {
            invoices: state.open_invoice_handles().cloned().collect(),
            accounts: state.account_map().clone(),
            groups: state.groups().clone(),
            bounds: state.bounds(),
        }
    }

    /// The open invoices it holds (eligible or not).
    pub fn obligations(&self) -> usize {
        self.invoices.len()
    }

    fn invoice(&self, id: &InvoiceId) -> Option<&Invoice> {
        self.invoices.binary_search_by_key(id, |i| i.id).ok().map(|k| &*self.invoices[k])
    }
}

/// What the ledger changed since a clearing snapshot was taken, as the writer saw it: the
/// accounts and invoices every entry since then touched (`Effects`), and whether any change
/// was undone (then nothing is known, and the plan is stale).
#[derive(Debug, Clone, Default)]
pub struct ChangesSince {
    accounts: HashSet<AccountId>,
    invoices: HashSet<InvoiceId>,
    undone: bool,
    /// A group's limits changed: members' headroom may have moved without an entry
    /// touching them, so the plan is stale.
    groups_changed: bool,
}

impl ChangesSince {
    /// Adds what one entry changed.
    pub fn add(&mut self, effects: &Effects) {
        self.accounts.extend(effects.touched.iter().cloned());
        self.accounts.extend(effects.balance_changes.iter().map(|b| b.account.clone()));
        self.invoices.extend(effects.invoices.iter().copied());
        self.groups_changed |= effects.groups_changed;
    }

    /// Changes were undone: the state may be behind the snapshot.
    pub fn undone(&mut self) {
        self.undone = true;
    }
}

/// A run solved and checked on a snapshot (`plan`), to be confirmed on the state as it is
/// when the writer applies it.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub record: ClearingRecord,
    pub summary: ClearingSummary,
    snapshot: ClearingSnapshot,
}

/// Solves a run on `snapshot` and checks the record on it, exactly as `check` would on the
/// state the snapshot was taken from. Runs away from the writer.
pub fn plan(snapshot: ClearingSnapshot, with_credit: bool) -> Result<PlannedRun, Rejection> {
    let (record, summary) = propose_checked(&snapshot, with_credit)?;
    Ok(PlannedRun { record, summary, snapshot })
}

impl PlannedRun {
    /// Whether the record, checked on the snapshot, passes `check` on `state`, which is the
    /// snapshot's state changed by `changes` and nothing else. In time proportional to the
    /// changes: `check` reads the eligible obligations (each invoice's eligibility, open
    /// amount and clearing order, and its firms' status) and, with credit, each firm's
    /// headroom. If no eligible obligation changed and no firm's status did, the problem is
    /// the same; a firm whose headroom changed is checked again on its two circuit arcs
    /// (within capacity, complementary slackness with the recorded potentials), which is
    /// all of the certificate that the headroom enters.
    pub fn still_holds(&self, state: &State, changes: &ChangesSince) -> bool {
        if changes.undone || changes.groups_changed {
            return false;
        }
        let snapshot = &self.snapshot;
        for id in &changes.invoices {
            let before = snapshot.invoice(id).filter(|i| eligible(snapshot, i));
            let now = state.invoice(id).filter(|i| eligible(state, i));
            match (before, now) {
                (None, None) => {}
                (Some(b), Some(n))
                    if b.open_minor() == n.open_minor()
                        && b.clearing_order_key() == n.clearing_order_key() => {}
                _ => return false,
            }
        }
        for id in &changes.accounts {
            let (Some(before), Some(now)) = (snapshot.accounts.get(id), state.account(id)) else {
                // Registered since: it has no obligation that did not change since.
                continue;
            };
            if before.status != now.status {
                return false;
            }
            let (was, is) =
                (headroom_of(before, snapshot.limits(before)), headroom_of(now, state.limits(now)));
            if self.record.with_credit && was != is && !self.arcs_hold(id, is) {
                return false;
            }
        }
        true
    }

    /// The firm's two circuit arcs under its headroom now: the flow (its recorded payment)
    /// within capacity, and complementary slackness with the recorded potentials (reduced
    /// cost `potential[tail] - potential[head]`, the arcs costing nothing).
    fn arcs_hold(&self, id: &AccountId, h: Headroom) -> bool {
        let Ok(f) = self.record.firms.binary_search_by(|firm| firm.account.cmp(id)) else {
            return true; // not a firm of the run: its headroom is not read
        };
        let firm = &self.record.firms[f];
        if !(0..=solver::AMOUNT_MAX).contains(&h.pay_max)
            || !(0..=solver::AMOUNT_MAX).contains(&h.receive_max)
        {
            return false;
        }
        let payment = i128::from(firm.payment_minor);
        let (circuit, own) = (i128::from(self.record.circuit_potential), i128::from(firm.credit_potential));
        // Pay: circuit -> firm, capacity pay_max; receive: firm -> circuit, receive_max.
        let arcs =
            [(payment.max(0), h.pay_max, circuit - own), ((-payment).max(0), h.receive_max, own - circuit)];
        arcs.iter().all(|&(flow, capacity, reduced_cost)| {
            (0..=capacity).contains(&flow)
                && !(flow < capacity && reduced_cost < 0)
                && !(flow > 0 && reduced_cost > 0)
        })
    }
}

/// A firm's room to pay into the circuit (down to its credit limit, less what its pending
/// payments reserve) and to receive (up to
/// its maximum balance, and never past i64).
/// `limits` are those that bind it: its own or its group's.
fn headroom_of(a: &Account, limits: Limits) -> Headroom {
    let balance = i128::from(a.balance_minor);
    // The limits that bind (own or the group's). Pending payments keep the headroom they
    // reserved: every one the record holds counts (the run is solved away from any entry's
    // time, so an expired one too, until forgotten).
    let floor = -i128::from(limits.credit_limit_minor) + i128::from(a.recorded_reserved_minor());
    let ceiling = i128::from(limits.max_balance_minor.unwrap_or(i64::MAX));
    Headroom { pay_max: (balance - floor).max(0), receive_max: (ceiling - balance).max(0) }
}

impl ClearingSource for ClearingSnapshot {
    fn open_invoices(&self) -> impl Iterator<Item = &Invoice> {
        self.invoices.iter().map(|i| &**i)
    }

    fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    fn limits(&self, a: &Account) -> Limits {
        self.groups.limits_of(a)
    }

    fn bounds(&self) -> Bounds {
        self.bounds
    }
}

/// An obligation of a run: accepted or partly settled, something open, not excluded, both
/// firms active. A closed firm is skipped like a frozen one, and never has an open invoice:
/// closure requires none, and a closed firm can be invoiced no more (asserted here).
fn eligible(source: &impl ClearingSource, i: &Invoice) -> bool {
    let active = |id: &AccountId| {
        let status = source.account(id).map(|a| a.status);
        assert!(
            status != Some(AccountStatus::Closed),
            "invariant broken: invoice {} is open and names the closed account '{id}'",
            i.id
        );
        status == Some(AccountStatus::Active)
    };
    i.state.is_obligation()
        && !i.excluded_from_clearing
        && i.open_minor() > 0
        && active(&i.payer)
        && active(&i.payee)
}

impl<'a> Problem<'a> {
    fn build(state: &'a impl ClearingSource) -> Result<Problem<'a>, Rejection> {
        let eligible: Vec<&Invoice> = state.open_invoices().filter(|i| eligible(state, i)).collect();
        let bounds = state.bounds();
        if eligible.len() > bounds.clearing_obligations_max {
            return Err(Rejection::TooManyObligations {
                count: eligible.len(),
                max: bounds.clearing_obligations_max,
            });
        }
        let firms: Vec<AccountId> = eligible
            .iter()
            .flat_map(|i| [&i.payer, &i.payee])
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if firms.len() > bounds.clearing_firms_max {
            return Err(Rejection::TooManyObligations { count: firms.len(), max: bounds.clearing_firms_max });
        }
        let index: HashMap<&AccountId, u32> = firms.iter().enumerate().map(|(i, f)| (f, i as u32)).collect();
        let mut keyed: Vec<((u32, u32), &Invoice)> =
            eligible.into_iter().map(|i| ((index[&i.payer], index[&i.payee]), i)).collect();
        keyed.sort_by_key(|(ends, i)| (*ends, i.clearing_order_key()));
        let mut pairs: Vec<Pair> = Vec::new();
        let mut pair_start = Vec::new();
        for (k, ((debtor, creditor), invoice)) in keyed.iter().enumerate() {
            let open = i128::from(invoice.open_minor());
            match pairs.last_mut() {
                Some(p) if (p.debtor, p.creditor) == (*debtor, *creditor) => p.amount += open,
                _ => {
                    pairs.push(Pair { debtor: *debtor, creditor: *creditor, amount: open });
                    pair_start.push(k);
                }
            }
        }
        pair_start.push(keyed.len());
        let obligations = keyed.into_iter().map(|(_, i)| i).collect();
        Ok(Problem { firms, obligations, pairs, pair_start })
    }

    fn firm_count(&self) -> u32 {
        self.firms.len() as u32
    }

    /// Each firm's room to pay into the circuit (down to its credit limit) and to receive
    /// (up to its maximum balance, and never past i64).
    fn headroom(&self, state: &impl ClearingSource) -> Vec<Headroom> {
        self.firms
            .iter()
            .map(|f| {
                state
                    .account(f)
                    .map_or(Headroom { pay_max: 0, receive_max: 0 }, |a| headroom_of(a, state.limits(a)))
            })
            .collect()
    }

    /// Splits each pair's stage amounts over its invoices in clearing order: set-off first,
    /// then credit on what set-off left. The result is in invoice-id order.
    fn allocate(&self, setoff: &[i128], credit: &[i128]) -> Result<Vec<ClearedInvoice>, Rejection> {
        let mut out = Vec::new();
        for p in 0..self.pairs.len() {
            let (mut s, mut c) = (setoff[p], credit[p]);
            for invoice in &self.obligations[self.pair_start[p]..self.pair_start[p + 1]] {
                let open = i128::from(invoice.open_minor());
                let s_here = s.min(open);
                let c_here = c.min(open - s_here);
                s -= s_here;
                c -= c_here;
                if s_here > 0 || c_here > 0 {
                    // Both are at most `open`, an i64.
                    out.push(ClearedInvoice {
                        invoice: invoice.id,
                        setoff_minor: s_here as i64,
                        credit_minor: c_here as i64,
                    });
                }
            }
            if s != 0 || c != 0 {
                return Err(invalid(ClearingDefect::PairOverAllocated { pair: p as u64 }));
            }
        }
        out.sort_by_key(|c| c.invoice);
        Ok(out)
    }

    fn summarize(&self, record: &ClearingRecord, setoff: &[i128], credit: &[i128]) -> ClearingSummary {
        let n = self.firms.len();
        let (mut owes, mut owes_cleared, mut owed, mut owed_cleared) =
            (vec![0i128; n], vec![0i128; n], vec![0i128; n], vec![0i128; n]);
        let mut total = 0;
        for (p, pair) in self.pairs.iter().enumerate() {
            let (d, c) = (pair.debtor as usize, pair.creditor as usize);
            let cleared = setoff[p] + credit[p];
            owes[d] += pair.amount;
            owed[c] += pair.amount;
            owes_cleared[d] += cleared;
            owed_cleared[c] += cleared;
            total += pair.amount;
        }
        let positive = |v: i128| v.max(0);
        let mut nid_before = 0;
        let mut nid_after = 0;
        let mut payments = 0;
        let mut per_firm = Vec::new();
        for (f, firm) in record.firms.iter().enumerate() {
            nid_before += positive(owed[f] - owes[f]);
            nid_after += positive((owed[f] - owed_cleared[f]) - (owes[f] - owes_cleared[f]));
            payments += positive(i128::from(firm.payment_minor));
            if firm.changed {
                per_firm.push(FirmSummary {
                    account: firm.account.clone(),
                    owes_minor: owes[f],
                    owes_cleared_minor: owes_cleared[f],
                    owed_minor: owed[f],
                    owed_cleared_minor: owed_cleared[f],
                    payment_minor: firm.payment_minor,
                });
            }
        }
        ClearingSummary {
            with_credit: record.with_credit,
            obligations: self.obligations.len() as u64,
            firms: n as u64,
            total_debt_minor: total,
            net_internal_debt_minor: nid_before,
            setoff_minor: setoff.iter().sum(),
            credit_minor: credit.iter().sum(),
            payments_minor: payments,
            net_internal_debt_after_minor: nid_after,
            per_firm,
        }
    }
}

fn invalid(defect: ClearingDefect) -> Rejection {
    Rejection::ClearingInvalid { defect: Box::new(defect) }
}

/// Computes the optimal clearing of `state`'s obligations: what the node records when an
/// administrator runs one. Deterministic.
pub fn propose(
    state: &impl ClearingSource,
    with_credit: bool,
) -> Result<(ClearingRecord, ClearingSummary), Rejection> {
    propose_on(&Problem::build(state)?, state, with_credit)
}

/// [`propose`], then [`check`] on the same problem (built once): what the node's writer runs,
/// so a record it writes has passed the check a replay will run. Returns the check's summary.
pub fn propose_checked(
    state: &impl ClearingSource,
    with_credit: bool,
) -> Result<(ClearingRecord, ClearingSummary), Rejection> {
    let problem = Problem::build(state)?;
    let (record, _) = propose_on(&problem, state, with_credit)?;
    let summary = check_on(&problem, state, with_credit, &record)?;
    Ok((record, summary))
}

fn propose_on(
    problem: &Problem<'_>,
    state: &impl ClearingSource,
    with_credit: bool,
) -> Result<(ClearingRecord, ClearingSummary), Rejection> {
    let n = problem.firm_count();
    let stage1 = solver::solve_setoff(n, &problem.pairs).map_err(|e| invalid(ClearingDefect::Solver(e)))?;
    let (credit, payment, credit_potential) = if with_credit {
        let remaining = remaining_pairs(&problem.pairs, &stage1.cleared);
        let stage2 = solver::solve_with_credit(n, &remaining, &problem.headroom(state))
            .map_err(|e| invalid(ClearingDefect::Solver(e)))?;
        (stage2.cleared, stage2.payment, stage2.potential)
    } else {
        (vec![0; problem.pairs.len()], vec![0; n as usize], vec![0; n as usize + 1])
    };
    let invoices = problem.allocate(&stage1.cleared, &credit)?;
    let mut changed = vec![false; n as usize];
    mark_changed(problem, &stage1.cleared, &credit, &payment, &mut changed);
    let firms = problem
        .firms
        .iter()
        .enumerate()
        .map(|(f, account)| {
            Ok(ClearingFirm {
                account: account.clone(),
                setoff_potential: stage1.potential[f],
                credit_potential: credit_potential[f],
                payment_minor: i64::try_from(payment[f])
                    .map_err(|_| invalid(ClearingDefect::PaymentOutOfRange { account: account.clone() }))?,
                changed: changed[f],
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    let record =
        ClearingRecord { with_credit, firms, circuit_potential: credit_potential[n as usize], invoices };
    let summary = problem.summarize(&record, &stage1.cleared, &credit);
    Ok((record, summary))
}

fn remaining_pairs(pairs: &[Pair], cleared: &[i128]) -> Vec<Pair> {
    pairs.iter().zip(cleared).map(|(p, c)| Pair { amount: p.amount - c, ..*p }).collect()
}

fn mark_changed(
    problem: &Problem<'_>,
    setoff: &[i128],
    credit: &[i128],
    payment: &[i128],
    changed: &mut [bool],
) {
    for (p, pair) in problem.pairs.iter().enumerate() {
        if setoff[p] + credit[p] > 0 {
            changed[pair.debtor as usize] = true;
            changed[pair.creditor as usize] = true;
        }
    }
    for (f, pay) in payment.iter().enumerate() {
        if *pay != 0 {
            changed[f] = true;
        }
    }
}

/// The record's options and firms are the run's, and a run without credit records no
/// payment.
fn check_shape(problem: &Problem<'_>, with_credit: bool, record: &ClearingRecord) -> Result<(), Rejection> {
    if record.with_credit != with_credit {
        return Err(invalid(ClearingDefect::CreditOptionDiffers));
    }
    if record.firms.len() != problem.firms.len()
        || record.firms.iter().zip(&problem.firms).any(|(r, f)| r.account != *f)
    {
        return Err(invalid(ClearingDefect::WrongFirms));
    }
    if !with_credit
        && (record.circuit_potential != 0
            || record.firms.iter().any(|f| f.credit_potential != 0 || f.payment_minor != 0))
    {
        return Err(invalid(ClearingDefect::PaymentWithoutCredit));
    }
    Ok(())
}

/// The record's amounts summed per pair (set off, then settled through credit), once each
/// invoice is an eligible obligation listed once in id order with a positive amount, and
/// no pair clears more than it owes.
fn sum_per_pair(problem: &Problem<'_>, record: &ClearingRecord) -> Result<(Vec<i128>, Vec<i128>), Rejection> {
    let position: HashMap<InvoiceId, usize> =
        problem.obligations.iter().enumerate().map(|(k, i)| (i.id, k)).collect();
    let pair_of = |k: usize| problem.pair_start.partition_point(|&s| s <= k) - 1;
    let mut setoff = vec![0i128; problem.pairs.len()];
    let mut credit = vec![0i128; problem.pairs.len()];
    let mut previous: Option<InvoiceId> = None;
    for c in &record.invoices {
        if previous.is_some_and(|p| p >= c.invoice) {
            return Err(invalid(ClearingDefect::InvoicesOutOfOrder));
        }
        previous = Some(c.invoice);
        let k = *position
            .get(&c.invoice)
            .ok_or_else(|| invalid(ClearingDefect::NotAnObligation { invoice: c.invoice }))?;
        if c.setoff_minor < 0 || c.credit_minor < 0 || (c.setoff_minor == 0 && c.credit_minor == 0) {
            return Err(invalid(ClearingDefect::AmountNotPositive { invoice: c.invoice }));
        }
        let p = pair_of(k);
        setoff[p] += i128::from(c.setoff_minor);
        credit[p] += i128::from(c.credit_minor);
    }
    for (p, pair) in problem.pairs.iter().enumerate() {
        if setoff[p] + credit[p] > pair.amount {
            let (debtor, creditor) =
                (problem.firms[pair.debtor as usize].clone(), problem.firms[pair.creditor as usize].clone());
            return Err(invalid(ClearingDefect::MoreThanOpen { debtor, creditor }));
        }
    }
    Ok((setoff, credit))
}

/// Checks `record` against `state` in time linear in the obligations (after sorting them):
/// the firms, the allocation to invoices, feasibility and optimality of both stages.
/// Returns the summary of the run.
pub fn check(
    state: &impl ClearingSource,
    with_credit: bool,
    record: &ClearingRecord,
) -> Result<ClearingSummary, Rejection> {
    check_on(&Problem::build(state)?, state, with_credit, record)
}

fn check_on(
    problem: &Problem<'_>,
    state: &impl ClearingSource,
    with_credit: bool,
    record: &ClearingRecord,
) -> Result<ClearingSummary, Rejection> {
    check_shape(problem, with_credit, record)?;
    let (setoff, credit) = sum_per_pair(problem, record)?;
    if problem.allocate(&setoff, &credit)? != record.invoices {
        return Err(invalid(ClearingDefect::WrongAllocation));
    }
    let n = problem.firm_count();
    let stage1 = SetOff {
        cleared: setoff.clone(),
        potential: record.firms.iter().map(|f| f.setoff_potential).collect(),
    };
    solver::check_setoff(n, &problem.pairs, &stage1).map_err(|e| invalid(ClearingDefect::SetOff(e)))?;
    let payment: Vec<i128> = record.firms.iter().map(|f| i128::from(f.payment_minor)).collect();
    if with_credit {
        let mut potential: Vec<i64> = record.firms.iter().map(|f| f.credit_potential).collect();
        potential.push(record.circuit_potential);
        let stage2 = WithCredit { cleared: credit.clone(), payment: payment.clone(), potential };
        let remaining = remaining_pairs(&problem.pairs, &setoff);
        solver::check_with_credit(n, &remaining, &problem.headroom(state), &stage2)
            .map_err(|e| invalid(ClearingDefect::Credit(e)))?;
    } else if credit.iter().any(|c| *c != 0) {
        return Err(invalid(ClearingDefect::CreditAmountsWithoutCredit));
    }
    let mut changed = vec![false; n as usize];
    mark_changed(problem, &setoff, &credit, &payment, &mut changed);
    if record.firms.iter().zip(&changed).any(|(f, c)| f.changed != *c) {
        return Err(invalid(ClearingDefect::WrongChangedFirms));
    }
    if setoff.iter().chain(&credit).all(|c| *c == 0) {
        return Err(Rejection::NothingToClear { obligations: problem.obligations.len() });
    }
    Ok(problem.summarize(record, &setoff, &credit))
}
