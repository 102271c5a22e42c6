//! The administrators' overview of accounts (`ListAccounts`, `cercle admin accounts`):
//! filters and orders over the accounts as the state holds them, judged at a time the
//! caller gives (the node's clock), so the node's handler only decodes and pages.

use std::cmp::Ordering;

use cercle_core::profile::{self, Field};
use cercle_core::time::DAY_MS;
use cercle_core::{Account, AccountStatus, Groups};

/// How accounts are ordered. Ties are broken by handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountOrder {
    #[default]
    Handle,
    /// Lowest balance first.
    Balance,
    /// Highest use of the credit line first.
    CreditUse,
    /// Negative for longest first; accounts not negative last.
    NegativeSince,
    /// Longest without a payment first; accounts never active first of all.
    LastActivity,
}

/// Which balances pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignFilter {
    #[default]
    Any,
    Negative,
    Positive,
}

/// The filters of an overview; the default lets every account pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountFilter {
    pub status: Option<AccountStatus>,
    pub sign: SignFilter,
    /// Negative for at least this many days (0: no filter).
    pub negative_days_min: u32,
    /// Using at least this percentage of the credit line (0: no filter).
    pub credit_use_percent_min: u32,
    /// A NACE section, division or class: the firms within it.
    pub sector: Option<String>,
    /// An INSEE commune code.
    pub commune: Option<String>,
}

impl AccountFilter {
    /// Checks the sector and commune codes, with what is wrong with them.
    pub fn check(&self) -> Result<(), String> {
        if let Some(sector) = &self.sector {
            Field::Sector.check(sector)?;
        }
        if let Some(commune) = &self.commune {
            Field::Commune.check(commune)?;
        }
        Ok(())
    }

    /// Whether `account` passes, at `now_ms`, its credit limit being `credit_limit_minor`
    /// (its own or its group's).
    pub fn matches(&self, account: &Account, credit_limit_minor: i64, now_ms: u64) -> bool {
        let balance = account.balance_minor;
        self.status.is_none_or(|s| s == account.status)
            && match self.sign {
                SignFilter::Any => true,
                SignFilter::Negative => balance < 0,
                SignFilter::Positive => balance > 0,
            }
            && (self.negative_days_min == 0
                || account.negative_since_ms.is_some_and(|since| {
                    now_ms.saturating_sub(since) >= u64::from(self.negative_days_min) * DAY_MS
                }))
            && (self.credit_use_percent_min == 0
                || credit_use_at_least(account, credit_limit_minor, self.credit_use_percent_min, now_ms))
            && self
                .sector
                .as_deref()
                .is_none_or(|s| account.profile.sector.as_deref().is_some_and(|firm| sector_within(firm, s)))
            && self.commune.as_deref().is_none_or(|c| account.profile.commune.as_deref() == Some(c))
    }
}

/// The credit an account uses at `now_ms`: its debt, and the headroom its pending payments
/// reserve (a reservation first uses up a positive balance). What every limit check counts.
pub fn credit_used(account: &Account, now_ms: u64) -> i128 {
    (i128::from(account.reserved_minor(now_ms)) - i128::from(account.balance_minor)).max(0)
}

/// Whether the credit the account uses at `now_ms` (debt and reservations) is at least
/// `percent` of its credit limit (the one that binds it). A use without a credit limit (a
/// limit lowered below the balance) is past any percentage.
pub fn credit_use_at_least(account: &Account, credit_limit_minor: i64, percent: u32, now_ms: u64) -> bool {
    let used = credit_used(account, now_ms);
    let limit = i128::from(credit_limit_minor);
    if limit == 0 {
        return used > 0 || percent == 0;
    }
    used * 100 >= i128::from(percent) * limit
}

/// Whether the valid sector code `firm` lies within the valid code `filter`: the same class,
/// or a class of the division, or a division or class of the section.
pub fn sector_within(firm: &str, filter: &str) -> bool {
    match filter.len() {
        1 => profile::section(firm).is_some_and(|s| filter.starts_with(s)),
        2 => profile::division(firm) == Some(filter),
        _ => firm == filter,
    }
}

/// Compares two accounts' credit use (debt and reservations over limit) at `now_ms` exactly,
/// lowest first. A use without a limit is past every ratio; among such uses, the larger is
/// the higher.
fn credit_use_order(groups: &Groups, a: &Account, b: &Account, now_ms: u64) -> Ordering {
    let debt = |x: &Account| credit_used(x, now_ms);
    let limit = |x: &Account| i128::from(groups.limits_of(x).credit_limit_minor);
    let unlimited = |x: &Account| limit(x) == 0 && debt(x) > 0;
    match (unlimited(a), unlimited(b)) {
        (true, true) => debt(a).cmp(&debt(b)),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        // No debt and no limit: a use of 0, as 0 / 1.
        (false, false) => (debt(a) * limit(b).max(1)).cmp(&(debt(b) * limit(a).max(1))),
    }
}

/// The accounts that pass `filter` at `now_ms`, in `order` (reversed with `descending`),
/// ties in handle order. `accounts` must come in handle order, as the state keeps them;
/// their credit limits are resolved through `groups` (own, or the group's).
pub fn select<'a>(
    accounts: impl IntoIterator<Item = &'a Account>,
    groups: &Groups,
    filter: &AccountFilter,
    order: AccountOrder,
    descending: bool,
    now_ms: u64,
) -> Vec<&'a Account> {
    let mut list: Vec<&Account> = accounts
        .into_iter()
        .filter(|a| filter.matches(a, groups.limits_of(a).credit_limit_minor, now_ms))
        .collect();
    let compare = |a: &&Account, b: &&Account| -> Ordering {
        match order {
            AccountOrder::Handle => Ordering::Equal,
            AccountOrder::Balance => a.balance_minor.cmp(&b.balance_minor),
            AccountOrder::CreditUse => credit_use_order(groups, b, a, now_ms),
            // `None` (not negative) after every date.
            AccountOrder::NegativeSince => match (a.negative_since_ms, b.negative_since_ms) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            // `None` (never active) before every date.
            AccountOrder::LastActivity => a.last_activity_ms.cmp(&b.last_activity_ms),
        }
    };
    // A stable sort keeps handle order among ties; reversing reverses the ties too, which
    // is what "descending" means for the whole key.
    list.sort_by(compare);
    if descending {
        list.reverse();
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use cercle_core::{AccountId, Profile};

    fn account(handle: &str, balance: i64, limit: i64, negative_since: Option<u64>) -> Account {
        Account {
            id: AccountId::parse(handle).unwrap(),
            display_name: handle.into(),
            keys: vec![],
            balance_minor: balance,
            credit_limit_minor: limit,
            max_balance_minor: None,
            status: AccountStatus::Active,
            registered_at_sequence: 1,
            last_sequence: 1,
            profile: Profile::default(),
            negative_since_ms: negative_since,
            last_activity_ms: negative_since,
            retired_keys: vec![],
            membership: None,
            key_grants: Default::default(),
            pending: Vec::new(),
            sales: Vec::new(),
        }
    }

    fn check(accounts: &[Account], filter: AccountFilter, order: AccountOrder, expected: &[&str]) {
        let got: Vec<&str> = select(accounts, &Groups::default(), &filter, order, false, 100 * DAY_MS)
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn filters_and_orders() {
        let mut accounts = vec![
            account("aaa", -900, 1_000, Some(5 * DAY_MS)),
            account("bbb", 500, 1_000, None),
            account("ccc", -100, 1_000, Some(95 * DAY_MS)),
            account("ddd", -10, 0, Some(50 * DAY_MS)),
            account("eee", 0, 1_000, None),
        ];
        accounts[1].profile.sector = Some("10.71".into());
        accounts[1].profile.commune = Some("34145".into());
        accounts[2].profile.sector = Some("47".into());
        accounts[4].status = AccountStatus::Frozen;
        let all = AccountFilter::default();
        check(&accounts, all.clone(), AccountOrder::Handle, &["aaa", "bbb", "ccc", "ddd", "eee"]);
        check(&accounts, all.clone(), AccountOrder::Balance, &["aaa", "ccc", "ddd", "eee", "bbb"]);
        check(&accounts, all.clone(), AccountOrder::CreditUse, &["ddd", "aaa", "ccc", "bbb", "eee"]);
        check(&accounts, all.clone(), AccountOrder::NegativeSince, &["aaa", "ddd", "ccc", "bbb", "eee"]);
        check(&accounts, all.clone(), AccountOrder::LastActivity, &["bbb", "eee", "aaa", "ddd", "ccc"]);
        let negative = AccountFilter { sign: SignFilter::Negative, ..all.clone() };
        check(&accounts, negative, AccountOrder::Handle, &["aaa", "ccc", "ddd"]);
        let positive = AccountFilter { sign: SignFilter::Positive, ..all.clone() };
        check(&accounts, positive, AccountOrder::Handle, &["bbb"]);
        // Negative for 50 days or more at day 100: since day 50 is exactly 50 days.
        let long = AccountFilter { negative_days_min: 50, ..all.clone() };
        check(&accounts, long, AccountOrder::Handle, &["aaa", "ddd"]);
        let used = AccountFilter { credit_use_percent_min: 90, ..all.clone() };
        check(&accounts, used, AccountOrder::Handle, &["aaa", "ddd"]);
        let used = AccountFilter { credit_use_percent_min: 91, ..all.clone() };
        check(&accounts, used, AccountOrder::Handle, &["ddd"]);
        let frozen = AccountFilter { status: Some(AccountStatus::Frozen), ..all.clone() };
        check(&accounts, frozen, AccountOrder::Handle, &["eee"]);
        for (sector, expected) in
            [("C", vec!["bbb"]), ("10", vec!["bbb"]), ("10.71", vec!["bbb"]), ("G", vec!["ccc"])]
        {
            let f = AccountFilter { sector: Some(sector.into()), ..all.clone() };
            check(&accounts, f, AccountOrder::Handle, &expected);
        }
        let f = AccountFilter { sector: Some("10.72".into()), ..all.clone() };
        check(&accounts, f, AccountOrder::Handle, &[]);
        let f = AccountFilter { commune: Some("34145".into()), ..all.clone() };
        check(&accounts, f, AccountOrder::Handle, &["bbb"]);
        let got: Vec<&str> = select(&accounts, &Groups::default(), &all, AccountOrder::Balance, true, 0)
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(got, ["bbb", "eee", "ddd", "ccc", "aaa"]);
    }

    /// A pending payment reserves headroom: it counts in the credit use until it expires,
    /// after a positive balance is used up.
    #[test]
    fn reservations_count_in_the_credit_use_until_they_expire() {
        use cercle_core::PublicKey;
        use cercle_core::state::PendingPayment;
        let held = |amount_minor: i64, expires_ms: u64| PendingPayment {
            id: 9,
            payee: AccountId::parse("zzz").unwrap(),
            amount_minor,
            key: PublicKey([1; 32]),
            expires_ms,
            memo: String::new(),
        };
        let mut accounts = vec![
            account("aaa", -500, 1_000, Some(DAY_MS)),
            account("bbb", 200, 1_000, None),
            account("ccc", -600, 1_000, Some(DAY_MS)),
        ];
        // aaa: 500 owed and 450 reserved, 95%; bbb: 1,100 reserved beyond its 200, 90%.
        accounts[0].pending.push(held(450, 100 * DAY_MS));
        accounts[1].pending.push(held(1_100, 100 * DAY_MS));
        let used = AccountFilter { credit_use_percent_min: 90, ..AccountFilter::default() };
        check(&accounts, used.clone(), AccountOrder::Handle, &["aaa", "bbb"]);
        // Highest use first.
        check(&accounts, AccountFilter::default(), AccountOrder::CreditUse, &["aaa", "bbb", "ccc"]);
        // Expired a millisecond before the time asked for: they reserve nothing.
        accounts[0].pending[0].expires_ms = 100 * DAY_MS - 1;
        accounts[1].pending[0].expires_ms = 100 * DAY_MS - 1;
        check(&accounts, used, AccountOrder::Handle, &[]);
        check(&accounts, AccountFilter::default(), AccountOrder::CreditUse, &["ccc", "aaa", "bbb"]);
    }

    #[test]
    fn bad_codes_are_refused_with_what_is_wrong() {
        let f = AccountFilter { sector: Some("34".into()), ..AccountFilter::default() };
        assert!(f.check().unwrap_err().contains("not a NACE rev. 2 division"));
        let f = AccountFilter { commune: Some("20004".into()), ..AccountFilter::default() };
        assert!(f.check().unwrap_err().contains("2A"));
    }
}
