//! The association's fee schedule, as the state holds it, and the arithmetic of its fees.
//!
//! Every fee is paid to the association's own account (`FeeSchedule::account`), an
//! ordinary registered account with its own limits, so fees keep the zero sum. A
//! **transfer levy** is a number of basis points of each transfer, charged to the payer,
//! the payee, or split between them. It is paid in the transfer's own entry: the entry's
//! balances show the association's account beside the payer's and the payee's, and a
//! replay recomputes the levy from the schedule in the state, so the recorded balances
//! check it.
//!
//! Rounding, exact in integers: `levy = floor((amount * bp + 5000) / 10000)`, the levy
//! rounded half up to the minor unit. Split: the payee pays `floor(levy / 2)` and the payer
//! the rest, so the odd unit falls on the payer. No levy on a transfer to or from the
//! association's account, nor on a clearing run (set-off and credit settlement move no
//! payment between firms that a levy could be a share of).
//!
//! The schedule also carries the periodic charges, which `ChargeFees` applies once per
//! ledger month (`charges`): a **membership fee** by member group or by size class (a firm
//! in a group that has a fee pays its group's fee; any other firm, its size class's; a firm
//! with neither pays none), and a **demurrage**, basis points a month of the part of a
//! positive balance above a threshold, rounded half up like the levy.

use std::collections::BTreeMap;

use cercle_limits::{
    AMOUNT_MAX_MINOR, DEMURRAGE_BP_MAX, GROUPS_MAX, MEMBERSHIP_CLASSES_MAX, TRANSFER_LEVY_BP_MAX,
};

use crate::codec::{DecodeError, Reader, Writer};
use crate::groups::GroupName;
use crate::ids::AccountId;
use crate::profile::check_size_class;

const FEES_VERSION: u8 = 1;

/// One basis point is a ten-thousandth.
pub const BASIS_POINTS_PER_UNIT: i64 = 10_000;

/// Who pays a transfer levy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevyOn {
    Payer,
    Payee,
    /// Half each; the odd minor unit on the payer.
    Split,
}

impl LevyOn {
    pub fn name(self) -> &'static str {
        match self {
            LevyOn::Payer => "payer",
            LevyOn::Payee => "payee",
            LevyOn::Split => "split",
        }
    }

    pub fn from_name(name: &str) -> Option<LevyOn> {
        match name {
            "payer" => Some(LevyOn::Payer),
            "payee" => Some(LevyOn::Payee),
            "split" => Some(LevyOn::Split),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            LevyOn::Payer => 1,
            LevyOn::Payee => 2,
            LevyOn::Split => 3,
        }
    }
}

/// The association's fees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedule {
    /// The association's account: every fee is paid to it.
    pub account: AccountId,
    /// 0 to `TRANSFER_LEVY_BP_MAX`.
    pub transfer_levy_bp: u16,
    pub levy_on: LevyOn,
    /// The periodic membership fee of each size class (`profile::SIZE_CLASSES`), positive.
    pub membership_minor: BTreeMap<String, i64>,
    /// 0 to `DEMURRAGE_BP_MAX`, per month, on the part of a positive balance above
    /// `demurrage_above_minor`.
    pub demurrage_bp: u16,
    pub demurrage_above_minor: i64,
    /// The periodic membership fee of each member group that has one, positive (at most
    /// `GROUPS_MAX`): it takes precedence over the size class's fee for the group's members.
    pub group_membership_minor: BTreeMap<GroupName, i64>,
}

/// What a transfer's levy is and who pays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levy {
    pub payer_minor: i64,
    pub payee_minor: i64,
}

impl Levy {
    pub fn total_minor(self) -> i64 {
        self.payer_minor + self.payee_minor
    }
}

impl FeeSchedule {
    /// The levy on a transfer of `amount_minor` (positive, at most `AMOUNT_MAX_MINOR`)
    /// from `payer` to `payee`: none to or from the association's account.
    pub fn levy(&self, payer: &AccountId, payee: &AccountId, amount_minor: i64) -> Levy {
        if *payer == self.account || *payee == self.account || self.transfer_levy_bp == 0 {
            return Levy::default();
        }
        let total = levy_minor(amount_minor, self.transfer_levy_bp);
        match self.levy_on {
            LevyOn::Payer => Levy { payer_minor: total, payee_minor: 0 },
            LevyOn::Payee => Levy { payer_minor: 0, payee_minor: total },
            LevyOn::Split => Levy { payer_minor: total - total / 2, payee_minor: total / 2 },
        }
    }

    /// The schedule in one line, amounts formatted by `money`.
    pub fn describe(&self, money: &dyn Fn(i64) -> String) -> String {
        let levy = if self.transfer_levy_bp == 0 {
            "no transfer levy".to_string()
        } else {
            let who = match self.levy_on {
                LevyOn::Payer => "paid by the payer",
                LevyOn::Payee => "paid by the payee",
                LevyOn::Split => "split between payer and payee",
            };
            format!("transfer levy {} bp, {who}", self.transfer_levy_bp)
        };
        let membership = if self.membership_minor.is_empty() && self.group_membership_minor.is_empty() {
            "no membership fee".to_string()
        } else {
            let classes = self.membership_minor.iter().map(|(c, a)| format!("{c} {}", money(*a)));
            let groups = self.group_membership_minor.iter().map(|(g, a)| format!("group {g} {}", money(*a)));
            format!("membership {}", groups.chain(classes).collect::<Vec<_>>().join(", "))
        };
        let demurrage = if self.demurrage_bp == 0 {
            "no demurrage".to_string()
        } else {
            format!("demurrage {} bp a month above {}", self.demurrage_bp, money(self.demurrage_above_minor))
        };
        format!("fees to {}: {levy}; {membership}; {demurrage}", self.account)
    }

    /// Checks the values against the limits and says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.transfer_levy_bp > TRANSFER_LEVY_BP_MAX {
            return Err(format!(
                "a transfer levy of {} basis points is above the maximum of {TRANSFER_LEVY_BP_MAX}",
                self.transfer_levy_bp
            ));
        }
        if self.demurrage_bp > DEMURRAGE_BP_MAX {
            return Err(format!(
                "a demurrage of {} basis points a month is above the maximum of {DEMURRAGE_BP_MAX}",
                self.demurrage_bp
            ));
        }
        if !(0..=AMOUNT_MAX_MINOR).contains(&self.demurrage_above_minor) {
            return Err(format!(
                "the demurrage threshold must be 0 to {AMOUNT_MAX_MINOR} minor units, not {}",
                self.demurrage_above_minor
            ));
        }
        if self.membership_minor.len() > MEMBERSHIP_CLASSES_MAX {
            return Err(format!(
                "{} membership classes, at most {MEMBERSHIP_CLASSES_MAX}",
                self.membership_minor.len()
            ));
        }
        for (class, amount) in &self.membership_minor {
            check_size_class(class).map_err(|e| format!("membership fee: {e}"))?;
            if !(1..=AMOUNT_MAX_MINOR).contains(amount) {
                return Err(format!(
                    "the membership fee of size class '{class}' must be 1 to {AMOUNT_MAX_MINOR} minor units, not {amount}"
                ));
            }
        }
        if self.group_membership_minor.len() > GROUPS_MAX {
            return Err(format!(
                "{} group membership fees, at most {GROUPS_MAX}",
                self.group_membership_minor.len()
            ));
        }
        for (group, amount) in &self.group_membership_minor {
            if !(1..=AMOUNT_MAX_MINOR).contains(amount) {
                return Err(format!(
                    "the membership fee of group '{group}' must be 1 to {AMOUNT_MAX_MINOR} minor units, not {amount}"
                ));
            }
        }
        Ok(())
    }

    /// The periodic membership fee of a firm in `group` (if any) of size class
    /// `size_class` (if known): its group's fee if the group has one, else its size
    /// class's, else none (0).
    pub fn membership_of(&self, group: Option<&GroupName>, size_class: Option<&str>) -> i64 {
        if let Some(fee) = group.and_then(|g| self.group_membership_minor.get(g)) {
            return *fee;
        }
        size_class.and_then(|c| self.membership_minor.get(c)).copied().unwrap_or(0)
    }

    /// Does the schedule charge anything periodically (a membership fee or a demurrage)?
    pub fn has_periodic_charges(&self) -> bool {
        !self.membership_minor.is_empty() || !self.group_membership_minor.is_empty() || self.demurrage_bp > 0
    }

    /// The demurrage of a month on `balance_minor`: `demurrage_bp` of the part above the
    /// threshold, rounded half up to the minor unit (`levy_minor`); 0 at or below it.
    pub fn demurrage_of(&self, balance_minor: i64) -> i64 {
        if self.demurrage_bp == 0 || balance_minor <= self.demurrage_above_minor {
            return 0;
        }
        // The threshold is not negative, so the difference cannot overflow.
        levy_minor(balance_minor - self.demurrage_above_minor, self.demurrage_bp)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FEES_VERSION).str(self.account.as_str());
        w.u16(self.transfer_levy_bp).u8(self.levy_on.byte());
        w.u16(self.membership_minor.len() as u16);
        for (class, amount) in &self.membership_minor {
            w.str(class).i64(*amount);
        }
        w.u16(self.demurrage_bp).i64(self.demurrage_above_minor);
        // Added later: written only when there are some, so a schedule without group fees
        // keeps the bytes (and ledgers their digests) it had before.
        if !self.group_membership_minor.is_empty() {
            w.u16(self.group_membership_minor.len() as u16);
            for (group, amount) in &self.group_membership_minor {
                w.str(group.as_str()).i64(*amount);
            }
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<FeeSchedule, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("fees version")?;
        if version != FEES_VERSION {
            return Err(DecodeError::Version(version));
        }
        let account =
            AccountId::parse(&r.string("fee account")?).map_err(|_| DecodeError::Invalid("fee account"))?;
        let transfer_levy_bp = r.u16("transfer levy")?;
        let levy_on = match r.u8("levy on")? {
            1 => LevyOn::Payer,
            2 => LevyOn::Payee,
            3 => LevyOn::Split,
            _ => return Err(DecodeError::Invalid("levy on")),
        };
        let n = usize::from(r.u16("membership class count")?);
        if n > MEMBERSHIP_CLASSES_MAX {
            return Err(DecodeError::Invalid("membership class count"));
        }
        let mut membership_minor = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..n {
            let class = r.string("membership class")?;
            if last.as_ref().is_some_and(|l| *l >= class) {
                return Err(DecodeError::Invalid("membership classes out of order"));
            }
            let amount = r.i64("membership fee")?;
            last = Some(class.clone());
            membership_minor.insert(class, amount);
        }
        let demurrage_bp = r.u16("demurrage")?;
        let demurrage_above_minor = r.i64("demurrage threshold")?;
        let mut group_membership_minor = BTreeMap::new();
        if !r.is_empty() {
            let n = usize::from(r.u16("group fee count")?);
            if n == 0 || n > GROUPS_MAX {
                return Err(DecodeError::Invalid("group fee count"));
            }
            for _ in 0..n {
                let group =
                    GroupName::parse(&r.string("group")?).map_err(|_| DecodeError::Invalid("group"))?;
                if group_membership_minor.last_key_value().is_some_and(|(last, _)| *last >= group) {
                    return Err(DecodeError::Invalid("group fees out of order"));
                }
                let amount = r.i64("group fee")?;
                group_membership_minor.insert(group, amount);
            }
        }
        r.finish()?;
        let schedule = FeeSchedule {
            account,
            transfer_levy_bp,
            levy_on,
            membership_minor,
            demurrage_bp,
            demurrage_above_minor,
            group_membership_minor,
        };
        schedule.check().map_err(|_| DecodeError::Invalid("fee schedule out of its limits"))?;
        Ok(schedule)
    }
}

/// `amount * bp / 10000`, rounded half up to the minor unit, in exact integers. `amount`
/// is at most `AMOUNT_MAX_MINOR` and `bp` a `u16`, so the product fits an `i128` by far
/// and the result is at most `amount`.
pub fn levy_minor(amount_minor: i64, bp: u16) -> i64 {
    let product = i128::from(amount_minor) * i128::from(bp);
    let rounded = (product + i128::from(BASIS_POINTS_PER_UNIT / 2)) / i128::from(BASIS_POINTS_PER_UNIT);
    // At most `amount_minor` for bp <= 10000; the limits keep bp far below.
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(bp: u16, on: LevyOn) -> FeeSchedule {
        FeeSchedule {
            account: AccountId::parse("association").unwrap(),
            transfer_levy_bp: bp,
            levy_on: on,
            membership_minor: BTreeMap::from([("1-9".to_string(), 5_000), ("10-49".to_string(), 20_000)]),
            demurrage_bp: 50,
            demurrage_above_minor: 1_000_000,
            group_membership_minor: BTreeMap::new(),
        }
    }

    fn check(amount: i64, bp: u16, on: LevyOn, expected: (i64, i64)) {
        let s = schedule(bp, on);
        let (a, b) = (AccountId::parse("payer-firm").unwrap(), AccountId::parse("payee-firm").unwrap());
        let levy = s.levy(&a, &b, amount);
        assert_eq!((levy.payer_minor, levy.payee_minor), expected, "{amount} at {bp} bp on {on:?}");
    }

    #[test]
    fn the_levy_rounds_half_up_and_split_puts_the_odd_unit_on_the_payer() {
        // 1% of 10.50 is 0.105: rounded half up, 0.11.
        check(1_050, 100, LevyOn::Payer, (11, 0));
        check(1_049, 100, LevyOn::Payer, (10, 0));
        check(1_050, 100, LevyOn::Payee, (0, 11));
        check(1_050, 100, LevyOn::Split, (6, 5));
        check(1_000, 100, LevyOn::Split, (5, 5));
        // 0.5 of a minor unit rounds up; below, to nothing.
        check(50, 100, LevyOn::Payer, (1, 0));
        check(49, 100, LevyOn::Payer, (0, 0));
        check(1, 1, LevyOn::Split, (0, 0));
        check(AMOUNT_MAX_MINOR, TRANSFER_LEVY_BP_MAX, LevyOn::Split, {
            let total = AMOUNT_MAX_MINOR / 10_000 * i64::from(TRANSFER_LEVY_BP_MAX);
            (total - total / 2, total / 2)
        });
    }

    #[test]
    fn no_levy_to_or_from_the_association() {
        let s = schedule(100, LevyOn::Payer);
        let firm = AccountId::parse("payer-firm").unwrap();
        assert_eq!(s.levy(&firm, &s.account, 10_000), Levy::default());
        assert_eq!(s.levy(&s.account, &firm, 10_000), Levy::default());
    }

    #[test]
    fn a_schedule_survives_its_encoding_and_its_limits_are_checked() {
        let s = schedule(100, LevyOn::Split);
        assert_eq!(FeeSchedule::decode(&s.encode()).unwrap(), s);
        let mut bad = s.clone();
        bad.transfer_levy_bp = TRANSFER_LEVY_BP_MAX + 1;
        assert!(bad.check().unwrap_err().contains("above the maximum"));
        let mut bad = s.clone();
        bad.membership_minor.insert("10-50".into(), 1);
        assert!(bad.check().unwrap_err().contains("size class '10-50'"));
        let mut bad = s.clone();
        bad.membership_minor.insert("0".into(), 0);
        assert!(bad.check().unwrap_err().contains("must be 1 to"));
        let mut bad = s;
        bad.group_membership_minor.insert(GroupName::parse("coops").unwrap(), -1);
        assert!(bad.check().unwrap_err().contains("group 'coops'"));
    }

    #[test]
    fn group_fees_keep_the_older_bytes_when_absent_and_take_precedence() {
        let s = schedule(100, LevyOn::Payer);
        let before = s.encode();
        let mut with = s.clone();
        let coops = GroupName::parse("coops").unwrap();
        with.group_membership_minor.insert(coops.clone(), 1_234);
        let after = with.encode();
        assert_eq!(&after[..before.len()], &before[..], "the older bytes are a prefix");
        assert!(after.len() > before.len());
        assert_eq!(FeeSchedule::decode(&after).unwrap(), with);
        assert_eq!(with.membership_of(Some(&coops), Some("1-9")), 1_234);
        assert_eq!(with.membership_of(Some(&GroupName::parse("other").unwrap()), Some("1-9")), 5_000);
        assert_eq!(with.membership_of(None, Some("1-9")), 5_000);
        assert_eq!(with.membership_of(None, Some("250+")), 0);
        assert_eq!(with.membership_of(None, None), 0);
    }

    #[test]
    fn demurrage_is_on_the_part_above_the_threshold_rounded_half_up() {
        let s = schedule(0, LevyOn::Payer); // 50 bp above 1,000,000
        assert_eq!(s.demurrage_of(1_000_000), 0);
        assert_eq!(s.demurrage_of(-5), 0);
        assert_eq!(s.demurrage_of(1_000_099), 0); // 0.495
        assert_eq!(s.demurrage_of(1_000_100), 1); // 0.5 rounds up
        assert_eq!(s.demurrage_of(3_000_000), 10_000);
    }
}
