//! The computation: one pass over the entries, in order.
//!
//! What the entries imply is kept as the ledger's state machine would keep it, but only the
//! parts the indicators read: each firm's balance, credit limit, status and profile, and the
//! open invoices with what remains of them. Entries are accepted operations, so nothing is
//! checked again here (the auditor's replay does that); an entry that does not decode, or
//! that names an account or an invoice the earlier entries never created, is an error.
//!
//! Each period accumulates, per firm, what it paid and received by transfer, how many
//! payments it made, what of its debts clearing removed, and the sum over the period's
//! days of its positive balance at the end of each day (added lazily: a firm's balance is
//! counted for the days it held it when it next changes, and at the period's end); and,
//! per ordered pair of firms, what the first paid the second. A period is closed when the
//! first entry of a later day arrives (so the state is the state at the end of its last
//! day), or at `finish`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cercle_clearing::{Pair, components, net_positions, solve_setoff};
use cercle_core::charges::ChargeRecord;
use cercle_core::invoice::local_part;
use cercle_core::time::{DAY_MS, date};
use cercle_core::{AccountId, ClearingRecord, Entry, GroupName, InvoiceId, OpKind, SectionTag, body};
use cercle_limits::PENDING_VALIDITY_MS;

use crate::calendar::periods;
use crate::measure::{Cell, Measure, Measures};
use crate::public::{self, Add, FlowCell, PeriodCells, ScopeCells};
use crate::{
    FLOWS_MAX, Flow, GROUPS_MAX, GroupBy, GroupReport, IndicatorError, PeriodReport, Query, Report,
    STUCK_DAYS, STUCK_DEBT_PERCENT, group_order,
};

/// A firm as the entries made it, and what it did in the period in progress.
#[derive(Debug, Clone)]
struct Firm {
    id: AccountId,
    registered_ms: u64,
    balance: i64,
    /// The credit limit that binds it: its own, or its group's when it follows it.
    limit: i64,
    /// Its member group, and whether it follows the group's credit limit.
    group: Option<(GroupName, bool)>,
    frozen: bool,
    profile: cercle_core::Profile,
    /// Since when the credit it uses (debt and reservations) has been at least
    /// `STUCK_DEBT_PERCENT` of its limit, if it has.
    stuck_since_ms: Option<u64>,
    /// Its payments held for approval: (pending id, amount, expiry). Each reserves its amount
    /// of the firm's headroom until approved, declined or expired; at most
    /// `PENDING_PER_ACCOUNT_MAX`, as the ledger holds them.
    held: Vec<(u64, i64, u64)>,
    /// Its last transfer as payer.
    last_paid_ms: Option<u64>,
    /// The period in progress: the sum of its end-of-day positive balances over the days
    /// before `pos_since_day`, and the first day not yet counted.
    pos_days: i128,
    pos_since_day: u32,
    paid: i128,
    received: i128,
    payments: u64,
    active: bool,
    /// Its debts (as an invoice's payer) that clearing runs removed, set-off and credit.
    cleared: i128,
}

/// An invoice not yet settled, rejected or cancelled.
#[derive(Debug, Clone, Copy)]
struct Invoice {
    payer: u32,
    payee: u32,
    open: i64,
    /// Accepted by the payer (an obligation): issued invoices are not debts yet.
    accepted: bool,
    excluded: bool,
}

/// The indicators, computed entry by entry.
pub struct Computer {
    query: Query,
    periods: Vec<(u32, u32)>,
    /// The period in progress; every period before it is closed.
    next: usize,
    firms: Vec<Firm>,
    index: HashMap<AccountId, u32>,
    /// Each member group's credit limit.
    groups: BTreeMap<GroupName, i64>,
    invoices: HashMap<InvoiceId, Invoice>,
    /// Every held payment by expiry: (expiry, firm, pending id), so that a reservation stops
    /// counting at the first entry after it expires, whoever that entry is about.
    expiring: BTreeSet<(u64, u32, u64)>,
    /// The period in progress: what each ordered pair of firms paid.
    pairs: HashMap<(u32, u32), i128>,
    flows_total: usize,
    done: Vec<PeriodReport>,
    last_sequence: u64,
    /// The last entry on or before the last day of the query.
    through_sequence: u64,
}

/// Computes the report of `query` over `entries` (the log from its first entry, in order).
pub fn compute<'a>(
    query: &Query,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Result<Report, IndicatorError> {
    let mut c = Computer::new(query);
    for entry in entries {
        if !c.wants_more() {
            break;
        }
        c.push(entry)?;
    }
    c.finish()
}

impl Computer {
    pub fn new(query: &Query) -> Computer {
        Computer {
            query: *query,
            periods: periods(query.from_day, query.to_day, query.by),
            next: 0,
            firms: Vec::new(),
            index: HashMap::new(),
            groups: BTreeMap::new(),
            invoices: HashMap::new(),
            expiring: BTreeSet::new(),
            pairs: HashMap::new(),
            flows_total: 0,
            done: Vec::new(),
            last_sequence: 0,
            through_sequence: 0,
        }
    }

    /// False once an entry past the last day has come: later entries change nothing.
    pub fn wants_more(&self) -> bool {
        self.next < self.periods.len()
    }

    /// Takes the next entry of the log.
    pub fn push(&mut self, entry: &Entry) -> Result<(), IndicatorError> {
        let sequence = entry.sequence;
        if sequence != self.last_sequence + 1 {
            return Err(IndicatorError::OutOfOrder { sequence, previous: self.last_sequence });
        }
        self.last_sequence = sequence;
        let ts = entry.timestamp_ms;
        let day = u32::try_from(ts / DAY_MS).unwrap_or(u32::MAX);
        self.close_before(day)?;
        if !self.wants_more() {
            return Ok(());
        }
        self.through_sequence = sequence;
        let in_period = day >= self.periods[self.next].0;
        let bad = |reason: String| IndicatorError::Entry { sequence, reason };
        let op = body::decode(&entry.envelope.body).map_err(|e| bad(e.to_string()))?;
        self.expire(ts);
        match &op.kind {
            OpKind::RegisterAccount(r) => {
                if self.index.contains_key(&r.account) {
                    return Err(bad(format!("registers '{}' a second time", r.account)));
                }
                self.index.insert(r.account.clone(), self.firms.len() as u32);
                self.firms.push(Firm {
                    id: r.account.clone(),
                    registered_ms: ts,
                    balance: 0,
                    limit: r.credit_limit_minor,
                    group: None,
                    frozen: false,
                    profile: r.profile.clone(),
                    stuck_since_ms: None,
                    held: Vec::new(),
                    last_paid_ms: None,
                    pos_days: 0,
                    pos_since_day: day,
                    paid: 0,
                    received: 0,
                    payments: 0,
                    active: false,
                    cleared: 0,
                });
            }
            OpKind::SetLimits(s) => {
                let f = self.firm(&s.account).map_err(bad)?;
                if let Some(limit) = s.credit_limit_minor {
                    self.firms[f].limit = limit;
                    // An own limit overrides the group's.
                    if let Some((_, follows)) = &mut self.firms[f].group {
                        *follows = false;
                    }
                    restuck(&mut self.firms[f], ts);
                }
            }
            OpKind::CreateGroup(g) => {
                self.groups.insert(g.group.clone(), g.credit_limit_minor);
            }
            // Each firm whose limit the rule changed has it as its own, as `SetLimits` would
            // give it: the entry's section says which, and what.
            OpKind::ApplyLimitRule(_) => {
                let section = entry
                    .section(cercle_core::SectionTag::LimitRule)
                    .ok_or_else(|| bad("a limit rule's entry without its section".into()))?;
                let outcome = cercle_core::LimitRuleOutcome::from_section(section)
                    .map_err(|e| bad(format!("its limit rule section: {e}")))?;
                for part in outcome.firms.iter().filter(|p| p.changed()) {
                    let f = self.firm(&part.account).map_err(bad)?;
                    self.firms[f].limit = part.new_limit_minor;
                    if let Some((_, follows)) = &mut self.firms[f].group {
                        *follows = false;
                    }
                    restuck(&mut self.firms[f], ts);
                }
            }
            // Every member that follows the group's credit limit is bound by the new one: a
            // pass over the firms, in this offline computation, where the ledger's state
            // resolves it at check time.
            OpKind::SetGroupLimits(g) => {
                if let Some(limit) = g.credit_limit_minor {
                    self.groups.insert(g.group.clone(), limit);
                    for firm in self.firms.iter_mut().filter(|f| f.group == Some((g.group.clone(), true))) {
                        firm.limit = limit;
                        restuck(firm, ts);
                    }
                }
            }
            OpKind::AssignGroup { account, group, .. } => {
                let f = self.firm(account).map_err(bad)?;
                let limit =
                    *self.groups.get(group).ok_or_else(|| bad(format!("names unknown group '{group}'")))?;
                self.firms[f].group = Some((group.clone(), true));
                self.firms[f].limit = limit;
                restuck(&mut self.firms[f], ts);
            }
            OpKind::FollowGroupLimits { account, credit, .. } => {
                let f = self.firm(account).map_err(bad)?;
                if *credit && let Some((group, _)) = self.firms[f].group.clone() {
                    let limit = *self
                        .groups
                        .get(&group)
                        .ok_or_else(|| bad(format!("names unknown group '{group}'")))?;
                    let firm = &mut self.firms[f];
                    (firm.group, firm.limit) = (Some((group, true)), limit);
                    restuck(firm, ts);
                }
            }
            OpKind::SetProfile(p) => {
                let f = self.firm(&p.account).map_err(bad)?;
                p.profile.apply(&mut self.firms[f].profile);
            }
            OpKind::FreezeAccount { account, .. } => {
                let f = self.firm(account).map_err(bad)?;
                self.firms[f].frozen = true;
            }
            OpKind::UnfreezeAccount { account, .. } => {
                let f = self.firm(account).map_err(bad)?;
                self.firms[f].frozen = false;
            }
            // A closed firm has no open invoice left, and can have none again: like a
            // frozen one, it takes no part in clearing. Its figures stay in the periods it
            // was active in.
            // A write-off moves the leaving firm's debt to the reserve: not an exchange, so
            // no trade figure counts it; the entry records both balances after.
            OpKind::CloseAccount { account, write_off_to, .. } => {
                let f = self.firm(account).map_err(bad)?;
                self.firms[f].frozen = true;
                if let Some(reserve) = write_off_to {
                    let r = self.firm(reserve).map_err(bad)?;
                    for (firm, id) in [(f, account), (r, reserve)] {
                        let after =
                            entry.balances_after.iter().find(|b| &b.account == id).ok_or_else(|| {
                                bad(format!("a write-off that records no balance of '{id}'"))
                            })?;
                        self.set_balance(firm, after.balance_minor, day, ts);
                    }
                }
            }
            OpKind::RotateKeys { .. }
            | OpKind::SetRole(_)
            | OpKind::SetQuorum(_)
            | OpKind::RotateNodeKey { .. }
            | OpKind::SetFees(_)
            | OpKind::AddKey(_)
            | OpKind::RemoveKey { .. } => {}
            OpKind::DeclinePending { account, pending, .. } => {
                let f = self.firm(account).map_err(bad)?;
                self.release(f, *pending);
                restuck(&mut self.firms[f], ts);
            }
            // A transfer held for approval moves nothing (its entry records no balance); its
            // approval is the payment, from the account to the other balance the entry records.
            // It reserves the payer's headroom until approved, declined or expired.
            OpKind::Transfer(t) if entry.balances_after.is_empty() => {
                let f = self.firm(&t.payer).map_err(bad)?;
                let expires = ts.saturating_add(PENDING_VALIDITY_MS);
                self.firms[f].held.push((sequence, t.amount_minor, expires));
                self.expiring.insert((expires, f as u32, sequence));
                restuck(&mut self.firms[f], ts);
            }
            OpKind::Transfer(_) | OpKind::ApprovePending { .. } => {
                let (p, q, amount, invoice) = match &op.kind {
                    OpKind::Transfer(t) => {
                        let (p, q) = (self.firm(&t.payer).map_err(bad)?, self.firm(&t.payee).map_err(bad)?);
                        (p, q, t.amount_minor, t.invoice)
                    }
                    // The approval names its payee and amount; a levy's shares are in the
                    // balances the entry records (below).
                    OpKind::ApprovePending { account, payee, amount_minor, pending } => {
                        let (p, q) = (self.firm(account).map_err(bad)?, self.firm(payee).map_err(bad)?);
                        self.release(p, *pending);
                        (p, q, *amount_minor, None)
                    }
                    _ => unreachable!("matched above"),
                };
                let (payer_after, payee_after) =
                    (self.firms[p].balance.checked_sub(amount), self.firms[q].balance.checked_add(amount));
                let (Some(payer_after), Some(payee_after)) = (payer_after, payee_after) else {
                    return Err(bad("a balance overflows".into()));
                };
                self.set_balance(p, payer_after, day, ts);
                self.set_balance(q, payee_after, day, ts);
                // A levied transfer also moves the association's account, and the payer's
                // or payee's balance by its share of the levy: the entry records all three
                // balances after. The levy is a fee, not trade: the turnover is the amount.
                if entry.balances_after.len() > 2 {
                    for b in &entry.balances_after {
                        let f = self.firm(&b.account).map_err(bad)?;
                        self.set_balance(f, b.balance_minor, day, ts);
                    }
                }
                self.firms[p].last_paid_ms = Some(ts);
                if in_period {
                    let a = i128::from(amount);
                    let (payer, payee) = (&mut self.firms[p], a);
                    payer.paid += payee;
                    payer.payments += 1;
                    payer.active = true;
                    self.firms[q].received += a;
                    self.firms[q].active = true;
                    *self.pairs.entry((p as u32, q as u32)).or_insert(0) += a;
                }
                if let Some(id) = &invoice {
                    let invoice =
                        self.invoices.get_mut(id).ok_or_else(|| bad(format!("pays unknown invoice {id}")))?;
                    invoice.accepted = true;
                    reduce(&mut self.invoices, id, amount);
                }
            }
            OpKind::IssueInvoice(i) => {
                let (payer, payee) = (self.firm(&i.payer).map_err(bad)?, self.firm(&i.payee).map_err(bad)?);
                self.invoices.insert(
                    i.invoice,
                    Invoice {
                        payer: payer as u32,
                        payee: payee as u32,
                        open: local_part(i.amount_minor, i.local_share_percent),
                        accepted: false,
                        excluded: i.excluded_from_clearing,
                    },
                );
            }
            OpKind::AcceptInvoice(p) => {
                self.invoice(&p.invoice).map_err(bad)?.accepted = true;
            }
            OpKind::RejectInvoice { invoice, .. } | OpKind::CancelInvoice { invoice, .. } => {
                self.invoice(&invoice.invoice).map_err(bad)?;
                self.invoices.remove(&invoice.invoice);
            }
            OpKind::SetInvoiceClearing { invoice, excluded } => {
                self.invoice(&invoice.invoice).map_err(bad)?.excluded = *excluded;
            }
            OpKind::RunClearing(_) => {
                let section = entry
                    .section(SectionTag::Clearing)
                    .ok_or_else(|| bad("a clearing run without its record".into()))?;
                let record = ClearingRecord::from_section(section)
                    .map_err(|e| bad(format!("its clearing record: {e}")))?;
                for c in &record.invoices {
                    let cleared = c.setoff_minor + c.credit_minor;
                    let payer = self.invoice(&c.invoice).map_err(bad)?.payer as usize;
                    if in_period {
                        self.firms[payer].cleared += i128::from(cleared);
                    }
                    reduce(&mut self.invoices, &c.invoice, cleared);
                }
                for firm in record.firms.iter().filter(|f| f.payment_minor != 0) {
                    let f = self.firm(&firm.account).map_err(bad)?;
                    let after = self.firms[f]
                        .balance
                        .checked_sub(firm.payment_minor)
                        .ok_or_else(|| bad("a balance overflows".into()))?;
                    self.set_balance(f, after, day, ts);
                }
            }
            // A periodic charge moves each charged firm's balance and the association's to
            // what its section records: a fee is not an exchange, so no trade figure counts it.
            OpKind::ChargeFees { .. } => {
                let section = entry
                    .section(SectionTag::Charges)
                    .ok_or_else(|| bad("a periodic charge without its record".into()))?;
                let record = ChargeRecord::from_section(section)
                    .map_err(|e| bad(format!("its charge record: {e}")))?;
                let charged = record.firms.iter().filter(|c| c.not_charged.is_none());
                let moves: Vec<(AccountId, i64)> = charged
                    .map(|c| (c.account.clone(), c.balance_after_minor))
                    .chain([(record.fee_account.clone(), record.fee_balance_after_minor)])
                    .collect();
                for (account, after) in moves {
                    let f = self.firm(&account).map_err(bad)?;
                    self.set_balance(f, after, day, ts);
                }
            }
        }
        Ok(())
    }

    /// Closes the periods not yet closed and returns the report.
    pub fn finish(mut self) -> Result<Report, IndicatorError> {
        while self.wants_more() {
            self.close()?;
        }
        Ok(Report { query: self.query, through_sequence: self.through_sequence, periods: self.done })
    }

    fn firm(&self, id: &AccountId) -> Result<usize, String> {
        self.index.get(id).map(|&i| i as usize).ok_or_else(|| format!("names unknown account '{id}'"))
    }

    fn invoice(&mut self, id: &InvoiceId) -> Result<&mut Invoice, String> {
        self.invoices.get_mut(id).ok_or_else(|| format!("names unknown or closed invoice {id}"))
    }

    /// Counts the days of the period in progress before `day` at the firm's balance so far.
    fn accrue(&mut self, f: usize, day: u32) {
        let from = self.periods.get(self.next).map_or(u32::MAX, |p| p.0);
        let firm = &mut self.firms[f];
        let start = firm.pos_since_day.max(from);
        if day > start && firm.balance > 0 {
            firm.pos_days += i128::from(firm.balance) * i128::from(day - start);
        }
        firm.pos_since_day = firm.pos_since_day.max(day);
    }

    /// Forgets a held payment of firm `f` (approved or declined); restuck the firm after.
    fn release(&mut self, f: usize, pending: u64) {
        let held = &mut self.firms[f].held;
        if let Some(i) = held.iter().position(|h| h.0 == pending) {
            let (id, _, expires) = held.remove(i);
            self.expiring.remove(&(expires, f as u32, id));
        }
    }

    /// Forgets every held payment that has expired at `ts` (a pending payment is live up
    /// to its expiry, included), and restucks its firm at `ts`.
    fn expire(&mut self, ts: u64) {
        while let Some(&(expires, f, id)) = self.expiring.first() {
            if expires >= ts {
                break;
            }
            self.expiring.pop_first();
            let firm = &mut self.firms[f as usize];
            firm.held.retain(|h| h.0 != id);
            restuck(firm, ts);
        }
    }

    fn set_balance(&mut self, f: usize, balance: i64, day: u32, ts: u64) {
        self.accrue(f, day);
        self.firms[f].balance = balance;
        restuck(&mut self.firms[f], ts);
    }

    /// Closes every period that ends before `day`.
    fn close_before(&mut self, day: u32) -> Result<(), IndicatorError> {
        while self.wants_more() && self.periods[self.next].1 < day {
            self.close()?;
        }
        Ok(())
    }

    /// Closes the period in progress: its indicators from the state at its end.
    fn close(&mut self) -> Result<(), IndicatorError> {
        let (from, to) = self.periods[self.next];
        for f in 0..self.firms.len() {
            self.accrue(f, to + 1);
        }
        let period = Period::of(self, from, to)?;
        let report = period.report(&self.query)?;
        self.flows_total += report.flows.len();
        if self.flows_total > FLOWS_MAX {
            return Err(IndicatorError::TooManyFlows);
        }
        self.done.push(report);
        for firm in &mut self.firms {
            (firm.pos_days, firm.paid, firm.received, firm.payments, firm.active, firm.cleared) =
                (0, 0, 0, 0, false, 0);
        }
        self.pairs.clear();
        self.next += 1;
        Ok(())
    }
}

/// Takes `amount` off what remains of an invoice, which is settled (and forgotten) at zero.
fn reduce(invoices: &mut HashMap<InvoiceId, Invoice>, id: &InvoiceId, amount: i64) {
    if let Some(invoice) = invoices.get_mut(id) {
        invoice.open -= amount;
        if invoice.open <= 0 {
            invoices.remove(id);
        }
    }
}

/// The credit the firm uses at `now_ms`: its debt and what its live held payments reserve
/// (a reservation first uses up a positive balance), as every limit check counts it.
fn used(firm: &Firm, now_ms: u64) -> i128 {
    let reserved: i128 = firm.held.iter().filter(|h| now_ms <= h.2).map(|h| i128::from(h.1)).sum();
    (reserved - i128::from(firm.balance)).max(0)
}

/// Keeps `stuck_since_ms`: set when the firm's used credit reaches `STUCK_DEBT_PERCENT` of its limit,
/// kept while it stays there, cleared when it leaves.
fn restuck(firm: &mut Firm, ts: u64) {
    let used = used(firm, ts);
    let stuck = used > 0 && used * 100 >= STUCK_DEBT_PERCENT * i128::from(firm.limit);
    match (stuck, firm.stuck_since_ms) {
        (true, None) => firm.stuck_since_ms = Some(ts),
        (false, Some(_)) => firm.stuck_since_ms = None,
        _ => {}
    }
}

/// The per-firm figures of a closed period, and what the measures are computed from.
struct Period {
    from: u32,
    to: u32,
    days: i128,
    /// Per firm (indexed as `Computer::firms`).
    paid: Vec<i128>,
    received: Vec<i128>,
    payments: Vec<u64>,
    active: Vec<bool>,
    cleared: Vec<i128>,
    pos_days: Vec<i128>,
    used: Vec<i128>,
    limit: Vec<i128>,
    stuck_debt: Vec<Option<i128>>,
    stuck_credit: Vec<Option<i128>>,
    nid: Vec<i128>,
    /// Per payer: what it paid within the circular core, to firms that paid it back, to its
    /// own commune, to its own territory.
    core_paid: Vec<i128>,
    reciprocal_paid: Vec<i128>,
    local_paid: Vec<i128>,
    territory_paid: Vec<i128>,
    /// The period's payments per ordered pair, in pair order.
    pairs: Vec<((u32, u32), i128)>,
    /// The eligible obligations at the end: (debtor, creditor, open), aggregated per pair.
    obligations: Vec<Pair>,
    clearable_total: i128,
    /// Each firm's group, an index into `groups`.
    group_of: Vec<usize>,
    groups: Vec<Option<String>>,
}

impl Period {
    fn of(c: &Computer, from: u32, to: u32) -> Result<Period, IndicatorError> {
        let n = c.firms.len();
        let end_ms = (u64::from(to) + 1).saturating_mul(DAY_MS);
        let stuck_ms = STUCK_DAYS * DAY_MS;
        let mut pairs: Vec<((u32, u32), i128)> = c.pairs.iter().map(|(k, v)| (*k, *v)).collect();
        pairs.sort_unstable();
        let clearing_error = |e: cercle_clearing::SolveError| IndicatorError::Clearing {
            period: date(to),
            reason: e.to_string(),
        };

        // The circular core: the largest strongly connected component of the payment graph,
        // by firms, then by the payments inside it, then by its smallest handle.
        let graph: Vec<Pair> =
            pairs.iter().map(|&((p, q), amount)| Pair { debtor: p, creditor: q, amount }).collect();
        let component = components(n as u32, &graph).map_err(clearing_error)?;
        let mut size: HashMap<u32, (usize, i128, &str)> = HashMap::new();
        for (f, &k) in component.iter().enumerate() {
            let e = size.entry(k).or_insert((0, 0, c.firms[f].id.as_str()));
            e.0 += 1;
            e.2 = e.2.min(c.firms[f].id.as_str());
        }
        for &((p, q), amount) in &pairs {
            if component[p as usize] == component[q as usize]
                && let Some(e) = size.get_mut(&component[p as usize])
            {
                e.1 += amount;
            }
        }
        let core = size
            .iter()
            .max_by(|a, b| (a.1.0, a.1.1).cmp(&(b.1.0, b.1.1)).then_with(|| b.1.2.cmp(a.1.2)))
            .map(|(k, _)| *k);

        let mut core_paid = vec![0i128; n];
        let mut reciprocal_paid = vec![0i128; n];
        let mut local_paid = vec![0i128; n];
        let mut territory_paid = vec![0i128; n];
        for &((p, q), amount) in &pairs {
            let (pi, qi) = (p as usize, q as usize);
            if core.is_some_and(|k| component[pi] == k && component[qi] == k) {
                core_paid[pi] += amount;
            }
            if pairs.binary_search_by_key(&(q, p), |x| x.0).is_ok() {
                reciprocal_paid[pi] += amount;
            }
            let (a, b) = (&c.firms[pi].profile, &c.firms[qi].profile);
            if a.commune.is_some() && a.commune == b.commune {
                local_paid[pi] += amount;
            }
            if a.territory.is_some() && a.territory == b.territory {
                territory_paid[pi] += amount;
            }
        }

        // The obligations at the end, as a clearing run would take them: accepted, something
        // open, not excluded, between two active firms.
        let obligations = cercle_clearing::aggregate(
            c.invoices
                .values()
                .filter(|i| i.accepted && i.open > 0 && !i.excluded)
                .filter(|i| !c.firms[i.payer as usize].frozen && !c.firms[i.payee as usize].frozen)
                .map(|i| (i.payer, i.payee, i.open)),
        );
        let nid: Vec<i128> = net_positions(n as u32, &obligations).into_iter().map(|v| v.max(0)).collect();
        let clearable_total = setoff(n, &obligations).map_err(clearing_error)?;

        let group_of_key: Vec<Option<String>> = match c.query.group_by {
            Some(by) => c.firms.iter().map(|f| by.key(&f.profile)).collect(),
            None => vec![None; n],
        };
        let mut groups: Vec<Option<String>> = group_of_key.clone();
        groups.sort_by(group_order);
        groups.dedup();
        if c.query.group_by.is_some() && groups.len() > GROUPS_MAX {
            return Err(IndicatorError::TooManyGroups {
                count: groups.len(),
                by: c.query.group_by.map_or("", GroupBy::name),
                from: date(from),
            });
        }
        let group_of = group_of_key
            .iter()
            .map(|k| groups.binary_search_by(|g| group_order(g, k)).unwrap_or(0))
            .collect();

        let firms = &c.firms;
        Ok(Period {
            from,
            to,
            days: i128::from(to - from + 1),
            paid: firms.iter().map(|f| f.paid).collect(),
            received: firms.iter().map(|f| f.received).collect(),
            payments: firms.iter().map(|f| f.payments).collect(),
            active: firms.iter().map(|f| f.active).collect(),
            cleared: firms.iter().map(|f| f.cleared).collect(),
            pos_days: firms.iter().map(|f| f.pos_days).collect(),
            // The credit used on the period's last millisecond: debt and live reservations.
            used: firms.iter().map(|f| used(f, end_ms - 1)).collect(),
            limit: firms.iter().map(|f| i128::from(f.limit)).collect(),
            stuck_debt: firms
                .iter()
                .map(|f| {
                    let since = f.stuck_since_ms?;
                    (end_ms.saturating_sub(since) >= stuck_ms).then(|| -i128::from(f.balance.min(0)))
                })
                .collect(),
            stuck_credit: firms
                .iter()
                .map(|f| {
                    let last = f.last_paid_ms.unwrap_or(f.registered_ms);
                    (f.balance > 0 && end_ms.saturating_sub(last) >= stuck_ms).then(|| i128::from(f.balance))
                })
                .collect(),
            nid,
            core_paid,
            reciprocal_paid,
            local_paid,
            territory_paid,
            pairs,
            obligations,
            clearable_total,
            group_of,
            groups,
        })
    }

    /// The measures of the firms `members` (all of them, or a group's), `clearable` being
    /// what set-off would clear among them. Every payment counts in the scope of its payer.
    fn measures(&self, members: &[usize], clearable: i128) -> Measures {
        let sum = |v: &[i128]| members.iter().map(|&f| v[f]).sum::<i128>();
        let count = |pred: &dyn Fn(usize) -> bool| members.iter().filter(|&&f| pred(f)).count() as i128;
        let turnover = sum(&self.paid);
        let firms = members.len() as i128;
        let active = count(&|f| self.active[f]);
        let mut m = Measures::default();
        m.set(Measure::Transfers, Cell::Int(members.iter().map(|&f| i128::from(self.payments[f])).sum()));
        m.set(Measure::TurnoverMinor, Cell::Int(turnover));
        m.set(Measure::ClearedMinor, Cell::Int(sum(&self.cleared)));
        m.set(Measure::Firms, Cell::Int(firms));
        m.set(Measure::ActiveFirms, Cell::Int(active));
        m.set(Measure::ActiveShare, Cell::ratio(active, firms));
        m.set(Measure::Velocity, Cell::ratio(turnover * self.days, sum(&self.pos_days)));
        let mut volumes: Vec<i128> = members.iter().map(|&f| self.paid[f] + self.received[f]).collect();
        volumes.sort_unstable();
        let total: i128 = volumes.iter().sum();
        let n = volumes.len() as i128;
        let weighted: i128 =
            volumes.iter().enumerate().map(|(i, &x)| (2 * (i as i128 + 1) - n - 1) * x).sum();
        m.set(Measure::GiniTurnover, Cell::ratio(weighted, n * total));
        let top = volumes.len().div_ceil(10).max(1);
        m.set(Measure::TopDecileShare, Cell::ratio(volumes.iter().rev().take(top).sum(), total));
        m.set(Measure::CreditUse, Cell::ratio(sum(&self.used), sum(&self.limit)));
        let stuck = |v: &[Option<i128>]| {
            let list: Vec<i128> = members.iter().filter_map(|&f| v[f]).collect();
            (list.len() as i128, list.iter().sum::<i128>())
        };
        let (debtors, debt) = stuck(&self.stuck_debt);
        let (creditors, credit) = stuck(&self.stuck_credit);
        m.set(Measure::StuckDebtors, Cell::Int(debtors));
        m.set(Measure::StuckDebtorsMinor, Cell::Int(debt));
        m.set(Measure::StuckCreditors, Cell::Int(creditors));
        m.set(Measure::StuckCreditorsMinor, Cell::Int(credit));
        m.set(Measure::SccShare, Cell::ratio(sum(&self.core_paid), turnover));
        m.set(Measure::Reciprocity, Cell::ratio(sum(&self.reciprocal_paid), turnover));
        m.set(Measure::LocalShare, Cell::ratio(sum(&self.local_paid), turnover));
        m.set(Measure::TerritoryShare, Cell::ratio(sum(&self.territory_paid), turnover));
        m.set(Measure::NidMinor, Cell::Int(sum(&self.nid)));
        m.set(Measure::ClearableMinor, Cell::Int(clearable));
        m
    }

    /// The scope's figures for confidentiality: each additive value with the firms'
    /// contributions to it.
    fn cells(&self, members: &[usize], clearable: (i128, Vec<i128>)) -> ScopeCells {
        let each = |v: &[i128]| members.iter().map(|&f| v[f]).filter(|&x| x != 0).collect::<Vec<i128>>();
        let stuck = |v: &[Option<i128>]| members.iter().filter_map(|&f| v[f]).collect::<Vec<i128>>();
        let mut cells = ScopeCells::new(members.len());
        let count = |pred: &dyn Fn(usize) -> bool| members.iter().filter(|&&f| pred(f)).count() as i128;
        cells.set(Add::Transfers, members.iter().map(|&f| i128::from(self.payments[f])).sum(), None);
        cells.set(Add::Firms, members.len() as i128, None);
        cells.set(Add::ActiveFirms, count(&|f| self.active[f]), None);
        cells.set(Add::StuckDebtors, count(&|f| self.stuck_debt[f].is_some()), None);
        cells.set(Add::StuckCreditors, count(&|f| self.stuck_credit[f].is_some()), None);
        for (add, v) in [
            (Add::TurnoverMinor, &self.paid),
            (Add::ClearedMinor, &self.cleared),
            (Add::NidMinor, &self.nid),
            (Add::CorePaid, &self.core_paid),
            (Add::ReciprocalPaid, &self.reciprocal_paid),
            (Add::LocalPaid, &self.local_paid),
            (Add::TerritoryPaid, &self.territory_paid),
            (Add::PositiveDays, &self.pos_days),
        ] {
            let list = each(v);
            cells.set(add, list.iter().sum(), Some(list));
        }
        for (add, v) in
            [(Add::StuckDebtorsMinor, &self.stuck_debt), (Add::StuckCreditorsMinor, &self.stuck_credit)]
        {
            let list = stuck(v);
            cells.set(add, list.iter().sum(), Some(list));
        }
        cells.clearable = clearable.1;
        cells
    }

    /// What set-off would clear among `members` only, with each debtor's open debt among
    /// them (for confidentiality).
    fn clearable_among(&self, members: &[usize]) -> Result<(i128, Vec<i128>), cercle_clearing::SolveError> {
        let mut local: HashMap<u32, u32> = HashMap::new();
        for (i, &f) in members.iter().enumerate() {
            local.insert(f as u32, i as u32);
        }
        let mut owed = vec![0i128; members.len()];
        let pairs: Vec<Pair> = self
            .obligations
            .iter()
            .filter_map(|p| {
                let (d, c) = (*local.get(&p.debtor)?, *local.get(&p.creditor)?);
                owed[d as usize] += p.amount;
                Some(Pair { debtor: d, creditor: c, amount: p.amount })
            })
            .collect();
        let cleared = setoff(members.len(), &pairs)?;
        Ok((cleared, owed.into_iter().filter(|&x| x != 0).collect()))
    }

    fn report(&self, query: &Query) -> Result<PeriodReport, IndicatorError> {
        let n = self.paid.len();
        let all: Vec<usize> = (0..n).collect();
        let clearing_error = |e: cercle_clearing::SolveError| IndicatorError::Clearing {
            period: date(self.to),
            reason: e.to_string(),
        };
        let mut report = PeriodReport {
            from_day: self.from,
            to_day: self.to,
            totals: self.measures(&all, self.clearable_total),
            groups: Vec::new(),
            flows: Vec::new(),
        };
        // Without a grouping, no group: the circuit's totals only.
        let mut members: Vec<Vec<usize>> =
            if query.group_by.is_some() { vec![Vec::new(); self.groups.len()] } else { Vec::new() };
        let mut flows: HashMap<(usize, usize), FlowCell> = HashMap::new();
        if query.group_by.is_some() {
            for f in 0..n {
                members[self.group_of[f]].push(f);
            }
            for &((p, q), amount) in &self.pairs {
                let (g, h) = (self.group_of[p as usize], self.group_of[q as usize]);
                let cell = flows.entry((g, h)).or_insert_with(|| FlowCell::new(g, h));
                cell.value += amount;
                cell.payers.push((p, amount));
                cell.payees.push((q, amount));
            }
        }
        let mut clearable = Vec::with_capacity(members.len());
        for list in &members {
            clearable.push(self.clearable_among(list).map_err(clearing_error)?);
        }
        for (g, list) in members.iter().enumerate() {
            report.groups.push(GroupReport {
                group: self.groups[g].clone(),
                measures: self.measures(list, clearable[g].0),
            });
        }
        let mut flow_cells: Vec<FlowCell> = flows.into_values().collect();
        flow_cells.sort_by_key(|c| (c.from, c.to));
        report.flows = flow_cells
            .iter()
            .map(|c| Flow {
                from_group: self.groups[c.from].clone(),
                to_group: self.groups[c.to].clone(),
                turnover_minor: Cell::Int(c.value),
            })
            .collect();
        if query.public {
            let total_clearable = {
                let mut owed: HashMap<u32, i128> = HashMap::new();
                for p in &self.obligations {
                    *owed.entry(p.debtor).or_insert(0) += p.amount;
                }
                (self.clearable_total, owed.into_values().filter(|&x| x != 0).collect())
            };
            let cells = PeriodCells {
                total: self.cells(&all, total_clearable),
                groups: members
                    .iter()
                    .zip(clearable)
                    .map(|(list, clearable)| self.cells(list, clearable))
                    .collect(),
                flows: flow_cells,
                diagonal: match query.group_by {
                    Some(GroupBy::Commune) => Some(Add::LocalPaid),
                    Some(GroupBy::Territory) => Some(Add::TerritoryPaid),
                    _ => None,
                },
            };
            public::apply(&cells, &mut report);
        }
        Ok(report)
    }
}

/// The most pure set-off can clear among `firm_count` firms.
fn setoff(firm_count: usize, pairs: &[Pair]) -> Result<i128, cercle_clearing::SolveError> {
    if pairs.is_empty() {
        return Ok(0);
    }
    Ok(solve_setoff(firm_count as u32, pairs)?.cleared.iter().sum())
}
