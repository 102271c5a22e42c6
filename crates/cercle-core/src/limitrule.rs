//! Rule-based credit limits: "limit = min(cap, k × the firm's sales over the last 12
//! months), never below the floor", computed for every firm in one pass and recorded in
//! one entry (`ApplyLimitRule`), so a replay never depends on when it runs.
//!
//! **Sales** are what a firm was paid by other firms: a transfer it received (an
//! invoice's payment included) and an approved pending payment, at the transfer's amount.
//! Not sales: a clearing run (set-off, or a settlement through credit: no goods change
//! hands), a transfer levy, a write-off, and a payment made by the association's own
//! account (the fee schedule's), which would let the association raise limits by paying.
//! Each account keeps its sales by **ledger month** (`ledger_month`: the month of the
//! genesis's ledger day, UTC plus `day_offset_minutes`), at most `SALES_MONTHS_MAX` of
//! them: the month in progress and the 12 before it (account extension 8).
//!
//! **The window** of a rule applied by an entry is the 12 whole ledger months before the
//! month of the entry's timestamp. What is paid during the month in progress does not
//! count yet, so a preview and an application in the same month give the same sales,
//! whatever is paid in between.
//!
//! **The new limit** of a firm is `max(floor, min(cap, sales × factor_bp / 10,000))`
//! (rounded down), where the floor is the rule's own floor, raised to the firm's group
//! default when it is in a group ("never below the group default"): the floor wins over
//! the cap. A firm whose binding limit is already the new one is left as it is (it keeps
//! following its group if it did); any other gets the new limit as its own (an override),
//! its maximum balance untouched. As with `SetLimits`, a new limit may be below what a
//! firm already owes: it binds its next payment, and the preview says so.
//!
//! **Scope**: the active accounts (of one group, when the rule names it), the
//! association's fee account excepted. Frozen accounts are left alone (a dispute), closed
//! ones are gone.
//!
//! The entry records a section (`SectionTag::LimitRule`): a header part (the window and
//! the counts) and a part per firm in handle order (`FirmLimit`): its sales in the window,
//! its old limit and where it came from, its new limit. A firm is shown its own part with
//! a path to the section's root; the root is the preview's digest, which an application
//! may name (`expected_root`) to be refused if anything changed since.

use cercle_limits::{LIMIT_RULE_FACTOR_BP_MAX, LIMIT_RULE_FIRMS_MAX, SALES_MONTHS_MAX};

use crate::codec::{DecodeError, Reader, Writer};
use crate::entry::{Section, SectionTag};
use crate::groups::{GroupName, Groups};
use crate::ids::AccountId;
use crate::merkle::Hash;
use crate::reject::Rejection;
use crate::state::{Account, AccountStatus};

const HEADER_VERSION: u8 = 1;

/// A ledger month: `year × 12 + (month − 1)` of the ledger's day (`Genesis::day`).
pub fn ledger_month(day_offset_minutes: i16, timestamp_ms: u64) -> u32 {
    let day = crate::genesis::ledger_day(day_offset_minutes, timestamp_ms);
    let (year, month, _) = crate::time::civil_from_days(day);
    // Years of u64 milliseconds fit a u32 month count with room to spare.
    (year * 12 + i64::from(month) - 1) as u32
}

/// `2026-11`: how a ledger month is written.
pub fn month_label(month: u32) -> String {
    format!("{:04}-{:02}", month / 12, month % 12 + 1)
}

/// What a firm was paid in one ledger month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlySales {
    pub month: u32,
    /// Saturates at `i64::MAX` (which no limit reaches).
    pub amount_minor: i64,
}

/// Adds a sale of `amount_minor` in `month` to `sales` (in month order), forgetting the
/// months before the window of any rule applied from `month` on: at most
/// `SALES_MONTHS_MAX` months stay. Months never go back (entry times do not).
pub fn record_sale(sales: &mut Vec<MonthlySales>, month: u32, amount_minor: i64) {
    let first_kept = month.saturating_sub(SALES_MONTHS_MAX as u32 - 1);
    sales.retain(|s| s.month >= first_kept);
    match sales.last_mut() {
        Some(last) if last.month == month => {
            last.amount_minor = last.amount_minor.saturating_add(amount_minor)
        }
        _ => sales.push(MonthlySales { month, amount_minor }),
    }
}

/// The first and last months of the window of a rule applied in `month`: the 12 before it.
pub fn window(month: u32) -> (u32, u32) {
    (month.saturating_sub(12), month.saturating_sub(1))
}

/// The sales of the window of a rule applied in `month` (saturating at `i64::MAX`).
pub fn sales_in_window(sales: &[MonthlySales], month: u32) -> i64 {
    let (first, last) = window(month);
    let sum: i128 = sales
        .iter()
        .filter(|s| s.month >= first && s.month <= last && month > 0)
        .map(|s| i128::from(s.amount_minor))
        .sum();
    i64::try_from(sum).unwrap_or(i64::MAX)
}

/// Which of a limit rule's values is out of its bounds (`LIMIT_RULE_INVALID`), said in the
/// units the administrator typed: amounts in the currency, the factor as a multiple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitRuleDefect {
    Cap { cap_minor: i64 },
    Floor { floor_minor: i64 },
    FloorAboveCap { floor_minor: i64, cap_minor: i64 },
    Factor { factor_bp: u32 },
}

impl LimitRuleDefect {
    pub fn message(&self, money: impl Fn(i64) -> String) -> String {
        let max = cercle_limits::AMOUNT_MAX_MINOR;
        match self {
            LimitRuleDefect::Cap { cap_minor } => {
                format!("the cap must be 0 to {}, not {}", money(max), money(*cap_minor))
            }
            LimitRuleDefect::Floor { floor_minor } => {
                format!("the floor must be 0 to {}, not {}", money(max), money(*floor_minor))
            }
            LimitRuleDefect::FloorAboveCap { floor_minor, cap_minor } => format!(
                "the floor {} is above the cap {}: the floor wins over the cap, so lower it or raise the cap",
                money(*floor_minor),
                money(*cap_minor)
            ),
            LimitRuleDefect::Factor { factor_bp } => format!(
                "the factor {} is above {} (at most {} times the sales)",
                factor_text(*factor_bp),
                factor_text(LIMIT_RULE_FACTOR_BP_MAX),
                factor_text(LIMIT_RULE_FACTOR_BP_MAX)
            ),
        }
    }
}

/// A factor in basis points as the administrator writes it: 2500 is `0.25`, 110000 is `11`.
pub fn factor_text(factor_bp: u32) -> String {
    let text = crate::format_minor(i64::from(factor_bp), 4);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.replace(',', "")
}

/// A limit rule: its values are checked by `check` (the state machine's `check_values`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRule {
    /// No firm gets more from its sales (its floor may be higher).
    pub cap_minor: i64,
    /// The factor k, in basis points of the sales: 10,000 is once the sales.
    pub factor_bp: u32,
    /// No firm gets less; a member of a group gets at least its group's default too.
    pub floor_minor: i64,
    /// Only this group's members; `None`: every active firm.
    pub group: Option<GroupName>,
}

impl LimitRule {
    /// Why the rule's values are out of their bounds, if they are.
    pub fn check(&self) -> Result<(), LimitRuleDefect> {
        let max = cercle_limits::AMOUNT_MAX_MINOR;
        if !(0..=max).contains(&self.cap_minor) {
            return Err(LimitRuleDefect::Cap { cap_minor: self.cap_minor });
        }
        if !(0..=max).contains(&self.floor_minor) {
            return Err(LimitRuleDefect::Floor { floor_minor: self.floor_minor });
        }
        if self.floor_minor > self.cap_minor {
            return Err(LimitRuleDefect::FloorAboveCap {
                floor_minor: self.floor_minor,
                cap_minor: self.cap_minor,
            });
        }
        if self.factor_bp > LIMIT_RULE_FACTOR_BP_MAX {
            return Err(LimitRuleDefect::Factor { factor_bp: self.factor_bp });
        }
        Ok(())
    }

    /// The rule in words, amounts formatted by `money`: "min(5,000.00 CHW, 25.00% of the
    /// sales of the 12 ledger months before), at least 0.00 CHW or the group default, group
    /// small-firms".
    pub fn describe(&self, money: &dyn Fn(i64) -> String) -> String {
        let mut text = format!(
            "limit = min({}, {}.{:02}% of the sales of the 12 ledger months before), at least {} or the group default",
            money(self.cap_minor),
            self.factor_bp / 100,
            self.factor_bp % 100,
            money(self.floor_minor)
        );
        if let Some(group) = &self.group {
            text.push_str(&format!(", group {group}"));
        }
        text
    }

    /// The new limit of a firm with `sales_minor` in the window and `floor_minor` (the
    /// rule's floor, or its group's default if higher).
    pub fn limit_for(&self, sales_minor: i64, floor_minor: i64) -> i64 {
        let scaled = i128::from(sales_minor.max(0)) * i128::from(self.factor_bp) / 10_000;
        let capped = scaled.min(i128::from(self.cap_minor)) as i64;
        capped.max(floor_minor)
    }
}

/// One firm's line of a rule's outcome: a part of the entry's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmLimit {
    pub account: AccountId,
    pub sales_minor: i64,
    /// The limit that bound the firm before, and whether it was its group's.
    pub old_limit_minor: i64,
    pub old_from_group: bool,
    pub new_limit_minor: i64,
}

impl FirmLimit {
    /// True when the firm's record changes: its binding limit is not already the new one.
    pub fn changed(&self) -> bool {
        self.old_limit_minor != self.new_limit_minor
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.str(self.account.as_str())
            .i64(self.sales_minor)
            .i64(self.old_limit_minor)
            .u8(u8::from(self.old_from_group))
            .i64(self.new_limit_minor);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<FirmLimit, DecodeError> {
        let mut r = Reader::new(data);
        let account = AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
        let part = FirmLimit {
            account,
            sales_minor: r.i64("sales")?,
            old_limit_minor: r.i64("old limit")?,
            old_from_group: match r.u8("old limit's source")? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("old limit's source")),
            },
            new_limit_minor: r.i64("new limit")?,
        };
        r.finish()?;
        Ok(part)
    }
}

/// What a rule gives at an entry's time: the window and every firm's line, in handle order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRuleOutcome {
    /// The ledger month of the entry; the window is the 12 before it (`window`).
    pub month: u32,
    pub firms: Vec<FirmLimit>,
}

impl LimitRuleOutcome {
    /// How many firms' limits change.
    pub fn changed_count(&self) -> usize {
        self.firms.iter().filter(|f| f.changed()).count()
    }

    /// The section the entry records: the header, then a part per firm.
    pub fn to_section(&self) -> Section {
        let (first, last) = window(self.month);
        let mut header = Writer::default();
        header
            .u8(HEADER_VERSION)
            .u32(first)
            .u32(last)
            .u32(self.firms.len() as u32)
            .u32(self.changed_count() as u32);
        let mut parts = Vec::with_capacity(self.firms.len() + 1);
        parts.push(header.buf);
        parts.extend(self.firms.iter().map(FirmLimit::encode));
        Section { tag: SectionTag::LimitRule, parts }
    }

    /// The preview's digest: the root of the section the entry would record.
    pub fn root(&self) -> Hash {
        self.to_section().root()
    }

    /// Reads a recorded section back (an auditor's or a wallet's view of the entry).
    pub fn from_section(section: &Section) -> Result<LimitRuleOutcome, DecodeError> {
        let Some((header, firms)) = section.parts.split_first() else {
            return Err(DecodeError::Invalid("a limit rule section without its header"));
        };
        let mut r = Reader::new(header);
        if r.u8("limit rule header version")? != HEADER_VERSION {
            return Err(DecodeError::Invalid("limit rule header version"));
        }
        let (first, last) = (r.u32("window start")?, r.u32("window end")?);
        let (count, changed) = (r.u32("firm count")?, r.u32("changed count")?);
        r.finish()?;
        let month = last.saturating_add(1);
        let firms = firms.iter().map(|p| FirmLimit::decode(p)).collect::<Result<Vec<_>, _>>()?;
        let outcome = LimitRuleOutcome { month, firms };
        if window(month) != (first, last)
            || count as usize != outcome.firms.len()
            || changed as usize != outcome.changed_count()
        {
            return Err(DecodeError::Invalid("a limit rule header that does not match its parts"));
        }
        Ok(outcome)
    }
}

/// What `rule` gives every firm in its scope among `accounts` (in handle order) when
/// applied in ledger `month`: the one computation behind a preview (the node's view of the
/// accounts, at its clock) and an application (the state, at the entry's time). Refused
/// when the rule's values are out of bounds, its group unknown, its scope empty or larger
/// than one entry records.
pub fn outcome<'a>(
    rule: &LimitRule,
    accounts: impl Iterator<Item = &'a Account> + Clone,
    groups: &Groups,
    fee_account: Option<&AccountId>,
    month: u32,
) -> Result<LimitRuleOutcome, Rejection> {
    rule.check().map_err(|detail| Rejection::LimitRuleInvalid { detail })?;
    if let Some(group) = &rule.group
        && groups.get(group).is_none()
    {
        return Err(Rejection::UnknownGroup { group: group.clone() });
    }
    let in_scope = |a: &&Account| {
        a.status == AccountStatus::Active
            && Some(&a.id) != fee_account
            && rule.group.as_ref().is_none_or(|g| a.membership.as_ref().is_some_and(|m| &m.group == g))
    };
    let count = accounts.clone().filter(in_scope).count();
    if count > LIMIT_RULE_FIRMS_MAX {
        return Err(Rejection::LimitRuleTooManyFirms { firms: count, max: LIMIT_RULE_FIRMS_MAX });
    }
    if count == 0 {
        return Err(Rejection::LimitRuleNoFirms { group: rule.group.clone() });
    }
    let firms = accounts
        .filter(in_scope)
        .map(|a| {
            let group_default =
                a.membership.as_ref().and_then(|m| groups.get(&m.group)).map_or(0, |g| g.credit_limit_minor);
            let sales_minor = sales_in_window(&a.sales, month);
            FirmLimit {
                account: a.id.clone(),
                sales_minor,
                old_limit_minor: groups.limits_of(a).credit_limit_minor,
                old_from_group: a.membership.as_ref().is_some_and(|m| m.credit_from_group),
                new_limit_minor: rule.limit_for(sales_minor, rule.floor_minor.max(group_default)),
            }
        })
        .collect();
    Ok(LimitRuleOutcome { month, firms })
}

/// The index of `account`'s part in a limit rule section (parts are in handle order,
/// after the header).
pub fn part_index(section: &Section, account: &AccountId) -> Option<u32> {
    let firms = section.parts.get(1..)?;
    let i = firms
        .binary_search_by(|p| {
            let mut r = Reader::new(p);
            match r.string("account") {
                Ok(handle) => handle.as_str().cmp(account.as_str()),
                Err(_) => std::cmp::Ordering::Less,
            }
        })
        .ok()?;
    Some(i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cap: i64, factor_bp: u32, floor: i64) -> LimitRule {
        LimitRule { cap_minor: cap, factor_bp, floor_minor: floor, group: None }
    }

    #[test]
    fn months_follow_the_ledger_day() {
        // 2026-11-30T23:30Z is December in a ledger one hour ahead of UTC.
        let ts = crate::time::days_from_civil(2026, 11, 30) as u64 * 86_400_000 + 23 * 3_600_000 + 1_800_000;
        assert_eq!(month_label(ledger_month(0, ts)), "2026-11");
        assert_eq!(month_label(ledger_month(60, ts)), "2026-12");
        assert_eq!(window(ledger_month(0, ts)), (ledger_month(0, ts) - 12, ledger_month(0, ts) - 1));
    }

    #[test]
    fn sales_keep_thirteen_months_and_the_window_is_the_twelve_before() {
        let mut sales = Vec::new();
        for month in 100..130u32 {
            record_sale(&mut sales, month, i64::from(month));
            record_sale(&mut sales, month, 1);
            assert!(sales.len() <= SALES_MONTHS_MAX);
        }
        assert_eq!(sales.first().map(|s| s.month), Some(117));
        // In month 130: months 118..=129.
        assert_eq!(sales_in_window(&sales, 130), (118..=129).map(|m| m + 1).sum::<i64>());
        // In month 129, the month in progress (129) does not count yet.
        assert_eq!(sales_in_window(&sales, 129), (117..=128).map(|m| m + 1).sum::<i64>());
        record_sale(&mut sales, 200, 5);
        assert_eq!(sales, vec![MonthlySales { month: 200, amount_minor: 5 }]);
        let mut big = vec![MonthlySales { month: 1, amount_minor: i64::MAX - 1 }];
        record_sale(&mut big, 1, 10);
        assert_eq!(big[0].amount_minor, i64::MAX);
    }

    #[test]
    fn the_limit_is_the_scaled_sales_within_cap_and_floor() {
        let r = rule(1_000_000, 2_500, 10_000);
        assert_eq!(r.limit_for(0, 10_000), 10_000, "no sales: the floor");
        assert_eq!(r.limit_for(1_000_000, 10_000), 250_000);
        assert_eq!(r.limit_for(1_000_003, 10_000), 250_000, "rounded down");
        assert_eq!(r.limit_for(i64::MAX, 10_000), 1_000_000, "the cap");
        assert_eq!(r.limit_for(1_000_000, 2_000_000), 2_000_000, "a group default above the cap wins");
        assert!(rule(10, 1, 11).check().is_err());
        assert!(rule(-1, 1, 0).check().is_err());
        assert!(rule(10, LIMIT_RULE_FACTOR_BP_MAX + 1, 0).check().is_err());
        assert!(rule(10, LIMIT_RULE_FACTOR_BP_MAX, 10).check().is_ok());
    }

    #[test]
    fn a_defect_is_said_in_the_units_typed() {
        let money = |minor: i64| crate::format_with_currency(minor, 2, "CHW");
        let said = |r: LimitRule| r.check().unwrap_err().message(money);
        assert_eq!(
            said(rule(10_000, 2_500, 20_050)),
            "the floor 200.50 CHW is above the cap 100.00 CHW: the floor wins over the cap, so lower it or raise the cap"
        );
        assert_eq!(said(rule(10, 110_000, 0)), "the factor 11 is above 10 (at most 10 times the sales)");
        assert_eq!(said(rule(10, 100_001, 0)), "the factor 10.0001 is above 10 (at most 10 times the sales)");
        let cap = said(rule(-1, 1, 0));
        assert!(cap.starts_with("the cap must be 0 to ") && cap.ends_with(" CHW, not -0.01 CHW"), "{cap}");
        assert_eq!(factor_text(2_500), "0.25");
        assert_eq!(factor_text(0), "0");
    }

    /// An active account of the longest handle, with `sales` in month 99.
    fn account(i: usize, sales: i64) -> Account {
        Account {
            id: AccountId::parse(&format!("{i:0>32}")).unwrap(),
            display_name: String::new(),
            keys: Vec::new(),
            balance_minor: 0,
            credit_limit_minor: 0,
            max_balance_minor: None,
            status: AccountStatus::Active,
            registered_at_sequence: 1,
            last_sequence: 1,
            profile: Default::default(),
            negative_since_ms: None,
            last_activity_ms: None,
            retired_keys: Vec::new(),
            membership: None,
            key_grants: Default::default(),
            pending: Vec::new(),
            sales: vec![MonthlySales { month: 99, amount_minor: sales }],
        }
    }

    #[test]
    fn one_entry_takes_at_most_the_firms_bound_and_fits_its_size_bound() {
        let rule = LimitRule {
            cap_minor: cercle_limits::AMOUNT_MAX_MINOR,
            factor_bp: 10_000,
            floor_minor: 0,
            group: None,
        };
        let mut accounts: Vec<Account> = (0..=LIMIT_RULE_FIRMS_MAX).map(|i| account(i, i64::MAX)).collect();
        let groups = Groups::default();
        assert_eq!(
            outcome(&rule, accounts.iter(), &groups, None, 100),
            Err(Rejection::LimitRuleTooManyFirms {
                firms: LIMIT_RULE_FIRMS_MAX + 1,
                max: LIMIT_RULE_FIRMS_MAX
            })
        );
        // The fee account is out of scope: the same accounts are then exactly at the bound.
        let fee = accounts[0].id.clone();
        let at_bound = outcome(&rule, accounts.iter(), &groups, Some(&fee), 100).unwrap();
        assert_eq!(at_bound.firms.len(), LIMIT_RULE_FIRMS_MAX);
        let entry = crate::entry::Entry {
            sequence: u64::MAX,
            timestamp_ms: u64::MAX,
            prev_hash: [0; 32],
            envelope: crate::entry::Envelope::single(
                vec![0; cercle_limits::BODY_BYTES_MAX],
                crate::ids::PublicKey([0; 32]),
                [0; 64],
            ),
            balances_after: Vec::new(),
            sections: vec![at_bound.to_section()],
        };
        assert!(entry.encode().len() <= cercle_limits::LIMIT_RULE_ENTRY_BYTES_MAX);
        // No active firm in scope.
        for a in &mut accounts {
            a.status = AccountStatus::Frozen;
        }
        assert_eq!(
            outcome(&rule, accounts.iter(), &groups, None, 100),
            Err(Rejection::LimitRuleNoFirms { group: None })
        );
    }

    #[test]
    fn a_section_round_trips_and_finds_each_firms_part() {
        let firm = |name: &str, old: i64, new: i64| FirmLimit {
            account: AccountId::parse(name).unwrap(),
            sales_minor: 7,
            old_limit_minor: old,
            old_from_group: name == "bbb",
            new_limit_minor: new,
        };
        let outcome = LimitRuleOutcome {
            month: 24_320,
            firms: vec![firm("aaa", 1, 2), firm("bbb", 3, 3), firm("ccc", 5, 0)],
        };
        let section = outcome.to_section();
        assert_eq!(LimitRuleOutcome::from_section(&section), Ok(outcome.clone()));
        assert_eq!(outcome.changed_count(), 2);
        for (i, name) in ["aaa", "bbb", "ccc"].iter().enumerate() {
            assert_eq!(part_index(&section, &AccountId::parse(name).unwrap()), Some(i as u32 + 1));
        }
        assert_eq!(part_index(&section, &AccountId::parse("bba").unwrap()), None);
        let mut forged = section.clone();
        forged.parts[0] = {
            let mut w = Writer::default();
            w.u8(1).u32(1).u32(2).u32(3).u32(2);
            w.buf
        };
        assert!(LimitRuleOutcome::from_section(&forged).is_err());
    }
}
