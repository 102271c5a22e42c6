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

use std::collections::{BTreeSet, HashMap};

use cercle_clearing::{self as solver, CertificateError, Headroom, Pair, SetOff, SolveError, WithCredit};

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::AccountId;
use crate::invoice::{Invoice, InvoiceId};
use crate::reject::Rejection;
use crate::state::{AccountStatus, State};

const RECORD_VERSION: u8 = 1;

/// The most obligations one clearing run takes. Bounds the entry's size (32 bytes per
/// cleared invoice) and the solver's time.
pub const CLEARING_OBLIGATIONS_MAX: usize = 500_000;
/// The most firms one clearing run takes.
pub const CLEARING_FIRMS_MAX: usize = 100_000;

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

impl ClearingRecord {
    pub fn encode_into(&self, w: &mut Writer) {
        w.u8(RECORD_VERSION).u8(u8::from(self.with_credit)).i64(self.circuit_potential);
        w.u32(self.firms.len() as u32);
        for f in &self.firms {
            w.str(f.account.as_str())
                .i64(f.setoff_potential)
                .i64(f.credit_potential)
                .i64(f.payment_minor)
                .u8(u8::from(f.changed));
        }
        w.u32(self.invoices.len() as u32);
        for i in &self.invoices {
            w.fixed(&i.invoice.0).i64(i.setoff_minor).i64(i.credit_minor);
        }
    }

    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("clearing version")?;
        if version != RECORD_VERSION {
            return Err(DecodeError::Version(version));
        }
        let flag = |v: u8, what: &'static str| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(what)),
        };
        let with_credit = flag(r.u8("with credit")?, "with credit")?;
        let circuit_potential = r.i64("circuit potential")?;
        let n = r.u32("firm count")? as usize;
        if n > CLEARING_FIRMS_MAX {
            return Err(DecodeError::Invalid("firm count"));
        }
        let mut firms = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let account =
                AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
            firms.push(ClearingFirm {
                account,
                setoff_potential: r.i64("set-off potential")?,
                credit_potential: r.i64("credit potential")?,
                payment_minor: r.i64("payment")?,
                changed: flag(r.u8("changed")?, "changed")?,
            });
        }
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
        Ok(ClearingRecord { with_credit, firms, circuit_potential, invoices })
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

impl<'a> Problem<'a> {
    fn build(state: &'a State) -> Result<Problem<'a>, Rejection> {
        let active = |id: &AccountId| state.account(id).is_some_and(|a| a.status == AccountStatus::Active);
        let eligible: Vec<&Invoice> = state
            .invoices()
            .filter(|i| {
                i.state.is_obligation()
                    && !i.excluded_from_clearing
                    && i.open_minor() > 0
                    && active(&i.payer)
                    && active(&i.payee)
            })
            .collect();
        if eligible.len() > CLEARING_OBLIGATIONS_MAX {
            return Err(Rejection::TooManyObligations {
                count: eligible.len(),
                max: CLEARING_OBLIGATIONS_MAX,
            });
        }
        let firms: Vec<AccountId> = eligible
            .iter()
            .flat_map(|i| [&i.payer, &i.payee])
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if firms.len() > CLEARING_FIRMS_MAX {
            return Err(Rejection::TooManyObligations { count: firms.len(), max: CLEARING_FIRMS_MAX });
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
    fn headroom(&self, state: &State) -> Vec<Headroom> {
        self.firms
            .iter()
            .map(|f| {
                let Some(a) = state.account(f) else { return Headroom { pay_max: 0, receive_max: 0 } };
                let balance = i128::from(a.balance_minor);
                let floor = -i128::from(a.credit_limit_minor);
                let ceiling = i128::from(a.max_balance_minor.unwrap_or(i64::MAX));
                Headroom { pay_max: (balance - floor).max(0), receive_max: (ceiling - balance).max(0) }
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
pub fn propose(state: &State, with_credit: bool) -> Result<(ClearingRecord, ClearingSummary), Rejection> {
    propose_on(&Problem::build(state)?, state, with_credit)
}

/// [`propose`], then [`check`] on the same problem (built once): what the node's writer runs,
/// so a record it writes has passed the check a replay will run. Returns the check's summary.
pub fn propose_checked(
    state: &State,
    with_credit: bool,
) -> Result<(ClearingRecord, ClearingSummary), Rejection> {
    let problem = Problem::build(state)?;
    let (record, _) = propose_on(&problem, state, with_credit)?;
    let summary = check_on(&problem, state, with_credit, &record)?;
    Ok((record, summary))
}

fn propose_on(
    problem: &Problem<'_>,
    state: &State,
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

/// Checks `record` against `state` in time linear in the obligations (after sorting them):
/// the firms, the allocation to invoices, feasibility and optimality of both stages.
/// Returns the summary of the run.
pub fn check(
    state: &State,
    with_credit: bool,
    record: &ClearingRecord,
) -> Result<ClearingSummary, Rejection> {
    check_on(&Problem::build(state)?, state, with_credit, record)
}

fn check_on(
    problem: &Problem<'_>,
    state: &State,
    with_credit: bool,
    record: &ClearingRecord,
) -> Result<ClearingSummary, Rejection> {
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
    // Sum the record's amounts per pair.
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
