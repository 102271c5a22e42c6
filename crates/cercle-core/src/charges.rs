//! Periodic charges: the membership fees and the demurrage of a ledger month, charged by
//! `ChargeFees` in one entry, and that entry's record.
//!
//! A **period** is a ledger month (`YYYY-MM`), in the genesis's ledger time
//! (`Genesis::day_offset_minutes`, as for a payer key's day). A period may be charged
//! during it or after it, never before it begins; each period at most once, and in order:
//! the state remembers the last period charged (`LastCharge`), and a period up to it is
//! refused (`PeriodAlreadyCharged`, naming the entry that charged it). A period skipped
//! is not charged later: the association decides at each charge which month it charges.
//!
//! Who is charged: every account that is not closed, other than the association's own
//! (`FeeSchedule::account`), frozen ones included (the association charges its members;
//! a freeze stops the firm's own payments, not its dues). Each pays its **membership fee**
//! (`FeeSchedule::membership_of`: its group's fee, else its size class's, else none) and
//! its **demurrage**: `demurrage_bp` of the part of its balance above the threshold, on
//! its balance as the entry finds it (before the membership fee), rounded half up to the
//! minor unit (`FeeSchedule::demurrage_of`). Firms are taken in handle order.
//!
//! A firm's charge is all or nothing: if paying its total would take its balance, less
//! what its pending payments reserve, below its binding credit limit (`State::limits`),
//! or the association's account above its maximum balance, none of it is charged and its
//! part says how much was not and why. The association collects it otherwise (an invoice,
//! say): a partial charge would leave a remainder no later charge knows about. A firm with
//! nothing due is not listed.
//!
//! The entry records the charges in a section (`SectionTag::Charges`): a header part (the
//! period, the association's account and its balance after, the totals) and a part per
//! firm listed, in handle order, with its balance after. Like a clearing run's, the
//! balances are in the parts, not in the entry's balance list, so a firm is shown its own
//! part and the header, never another firm's balance. A replay recomputes the charges
//! from the state and the entry must be the one recomputed.

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};
use crate::entry::{Section, SectionTag};
use crate::ids::AccountId;
use crate::time::{civil_from_days, rfc3339_ms};

const LAST_CHARGE_VERSION: u8 = 1;
const PART_VERSION: u8 = 1;

/// A ledger month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// 1970 to 9999.
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
}

impl Period {
    /// A period from `YYYY-MM` (1970-01 to 9999-12).
    pub fn parse(text: &str) -> Result<Period, String> {
        let bad = || format!("'{text}' is not a period: give a month as YYYY-MM, e.g. 2026-11");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (year, month): (u16, u8) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Period { year, month })
    }

    /// The ledger month of `timestamp_ms`, the ledger's day being `offset_minutes` from UTC.
    pub fn of(offset_minutes: i16, timestamp_ms: u64) -> Period {
        let day = crate::genesis::ledger_day(offset_minutes, timestamp_ms);
        let (year, month, _) = civil_from_days(day);
        Period { year: year.clamp(0, i64::from(u16::MAX)) as u16, month: month as u8 }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The last period charged, and the entry that charged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCharge {
    pub period: Period,
    pub sequence: u64,
    pub timestamp_ms: u64,
}

impl LastCharge {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(LAST_CHARGE_VERSION).u16(self.period.year).u8(self.period.month);
        w.u64(self.sequence).u64(self.timestamp_ms);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<LastCharge, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("last charge version")?;
        if version != LAST_CHARGE_VERSION {
            return Err(DecodeError::Version(version));
        }
        let period = Period { year: r.u16("period year")?, month: r.u8("period month")? };
        Period::parse(&period.to_string()).map_err(|_| DecodeError::Invalid("period"))?;
        let last =
            LastCharge { period, sequence: r.u64("charge sequence")?, timestamp_ms: r.u64("charge time")? };
        r.finish()?;
        Ok(last)
    }

    /// "entry 12 at 2026-11-30T10:00:00Z".
    pub fn describe(&self) -> String {
        format!("entry {} at {}", self.sequence, rfc3339_ms(self.timestamp_ms))
    }
}

/// Why a firm's charge was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCharged {
    /// Paying it would take the balance, less what pending payments reserve, to
    /// `balance_after_minor`, below `-credit_limit_minor`.
    CreditLimit { balance_after_minor: i64, credit_limit_minor: i64 },
    /// The association's account would go above its maximum balance.
    FeeAccountMax,
    /// A balance would overflow.
    Overflow,
}

impl NotCharged {
    pub fn describe(&self, money: &dyn Fn(i64) -> String) -> String {
        match self {
            NotCharged::CreditLimit { balance_after_minor, credit_limit_minor } => format!(
                "credit limit: the balance would be {}, the limit is {}",
                money(*balance_after_minor),
                money(-credit_limit_minor)
            ),
            NotCharged::FeeAccountMax => {
                "the association's account would go above its maximum balance".into()
            }
            NotCharged::Overflow => "a balance would overflow".into(),
        }
    }

    /// A short name for JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            NotCharged::CreditLimit { .. } => "credit_limit",
            NotCharged::FeeAccountMax => "fee_account_max_balance",
            NotCharged::Overflow => "overflow",
        }
    }
}

/// One firm's charge of a period: what was due, whether it was charged, its balance after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmCharge {
    pub account: AccountId,
    /// The membership fee due.
    pub membership_minor: i64,
    /// The demurrage due.
    pub demurrage_minor: i64,
    /// `None`: both were charged; else neither, and why.
    pub not_charged: Option<NotCharged>,
    /// The firm's balance after the entry (unchanged when not charged).
    pub balance_after_minor: i64,
}

impl FirmCharge {
    pub fn due_minor(&self) -> i64 {
        self.membership_minor + self.demurrage_minor
    }

    pub fn charged_minor(&self) -> i64 {
        if self.not_charged.is_none() { self.due_minor() } else { 0 }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(PART_VERSION).str(self.account.as_str()).i64(self.membership_minor).i64(self.demurrage_minor);
        match self.not_charged {
            None => w.u8(0),
            Some(NotCharged::CreditLimit { balance_after_minor, credit_limit_minor }) => {
                w.u8(1).i64(balance_after_minor).i64(credit_limit_minor)
            }
            Some(NotCharged::FeeAccountMax) => w.u8(2),
            Some(NotCharged::Overflow) => w.u8(3),
        };
        w.i64(self.balance_after_minor);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<FirmCharge, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("charge part version")?;
        if version != PART_VERSION {
            return Err(DecodeError::Version(version));
        }
        let account = AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
        let membership_minor = r.i64("membership charge")?;
        let demurrage_minor = r.i64("demurrage charge")?;
        let not_charged = match r.u8("charge outcome")? {
            0 => None,
            1 => Some(NotCharged::CreditLimit {
                balance_after_minor: r.i64("balance after")?,
                credit_limit_minor: r.i64("credit limit")?,
            }),
            2 => Some(NotCharged::FeeAccountMax),
            3 => Some(NotCharged::Overflow),
            _ => return Err(DecodeError::Invalid("charge outcome")),
        };
        let balance_after_minor = r.i64("balance after")?;
        r.finish()?;
        Ok(FirmCharge { account, membership_minor, demurrage_minor, not_charged, balance_after_minor })
    }
}

/// A period's charges, as the entry records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    pub period: Period,
    /// The association's account, and its balance after the entry.
    pub fee_account: AccountId,
    pub fee_balance_after_minor: i64,
    /// In handle order; only firms with something due.
    pub firms: Vec<FirmCharge>,
}

impl ChargeRecord {
    pub fn charged_minor(&self) -> i64 {
        self.firms.iter().map(FirmCharge::charged_minor).sum()
    }

    pub fn not_charged_minor(&self) -> i64 {
        self.firms.iter().filter(|f| f.not_charged.is_some()).map(FirmCharge::due_minor).sum()
    }

    fn header(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(PART_VERSION).u16(self.period.year).u8(self.period.month);
        w.str(self.fee_account.as_str()).i64(self.fee_balance_after_minor);
        w.u32(self.firms.len() as u32).i64(self.charged_minor()).i64(self.not_charged_minor());
        w.buf
    }

    /// The header part, then a part per firm in handle order.
    pub fn to_section(&self) -> Section {
        let mut parts = Vec::with_capacity(self.firms.len() + 1);
        parts.push(self.header());
        parts.extend(self.firms.iter().map(FirmCharge::encode));
        Section { tag: SectionTag::Charges, parts }
    }

    /// The record of a whole section (every part).
    pub fn from_section(section: &Section) -> Result<ChargeRecord, DecodeError> {
        let (first, rest) = section.parts.split_first().ok_or(DecodeError::Truncated("charges header"))?;
        let header = ChargeHeader::decode(first)?;
        if rest.len() != header.firms as usize {
            return Err(DecodeError::Invalid("charges firm count"));
        }
        let firms = rest.iter().map(|p| FirmCharge::decode(p)).collect::<Result<Vec<_>, _>>()?;
        Ok(ChargeRecord {
            period: header.period,
            fee_account: header.fee_account,
            fee_balance_after_minor: header.fee_balance_after_minor,
            firms,
        })
    }
}

/// The header part of a charges section, which every reader of the entry is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeHeader {
    pub period: Period,
    pub fee_account: AccountId,
    pub fee_balance_after_minor: i64,
    pub firms: u32,
    pub charged_minor: i64,
    pub not_charged_minor: i64,
}

impl ChargeHeader {
    pub fn decode(data: &[u8]) -> Result<ChargeHeader, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("charges header version")?;
        if version != PART_VERSION {
            return Err(DecodeError::Version(version));
        }
        let period = Period { year: r.u16("period year")?, month: r.u8("period month")? };
        let fee_account =
            AccountId::parse(&r.string("fee account")?).map_err(|_| DecodeError::Invalid("fee account"))?;
        let header = ChargeHeader {
            period,
            fee_account,
            fee_balance_after_minor: r.i64("fee account balance")?,
            firms: r.u32("charged firms")?,
            charged_minor: r.i64("charged total")?,
            not_charged_minor: r.i64("not charged total")?,
        };
        r.finish()?;
        Ok(header)
    }
}

/// The index of `account`'s part in a charges section (parts after the header are in
/// handle order), if it has one.
pub fn part_index(section: &Section, account: &AccountId) -> Option<u32> {
    let firms = section.parts.get(1..)?;
    let found = firms.binary_search_by(|part| {
        let mut r = Reader::new(part);
        let _ = r.u8("version");
        match r.string("account") {
            Ok(name) => name.as_str().cmp(account.as_str()),
            Err(_) => std::cmp::Ordering::Less,
        }
    });
    found.ok().map(|i| i as u32 + 1)
}

/// The header of the charges section a view shows, if any.
pub fn header(view: &crate::entry::EntryView) -> Option<ChargeHeader> {
    let section = view.sections.iter().find(|s| s.tag == SectionTag::Charges)?;
    section.parts.iter().find(|p| p.index == 0).and_then(|p| ChargeHeader::decode(&p.data).ok())
}

/// `account`'s part of the charges section a view shows, decoded, if shown.
pub fn firm_charge(view: &crate::entry::EntryView, account: &AccountId) -> Option<FirmCharge> {
    let section = view.sections.iter().find(|s| s.tag == SectionTag::Charges)?;
    section
        .parts
        .iter()
        .filter(|p| p.index > 0)
        .filter_map(|p| FirmCharge::decode(&p.data).ok())
        .find(|f| &f.account == account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_order_and_follow_the_ledger_day() {
        assert_eq!(Period::parse("2026-11").unwrap(), Period { year: 2026, month: 11 });
        for bad in ["2026-13", "2026-00", "2026-1", "26-11", "1969-12", "2026/11", "+026-11", "2026-11-01"] {
            assert!(Period::parse(bad).unwrap_err().contains("YYYY-MM"), "{bad}");
        }
        assert!(Period::parse("2026-12").unwrap() > Period::parse("2026-11").unwrap());
        assert!(Period::parse("2027-01").unwrap() > Period::parse("2026-12").unwrap());
        // 2026-11-30T23:30:00Z is already December an hour east of UTC.
        let ts = 1_796_081_400_000;
        assert_eq!(crate::time::rfc3339_ms(ts), "2026-11-30T23:30:00Z");
        assert_eq!(Period::of(0, ts).to_string(), "2026-11");
        assert_eq!(Period::of(60, ts).to_string(), "2026-12");
    }

    #[test]
    fn a_record_survives_its_section_and_parts_are_found_by_account() {
        let firm = |name: &str, not_charged| FirmCharge {
            account: AccountId::parse(name).unwrap(),
            membership_minor: 5_000,
            demurrage_minor: 7,
            not_charged,
            balance_after_minor: -5_007,
        };
        let record = ChargeRecord {
            period: Period::parse("2026-11").unwrap(),
            fee_account: AccountId::parse("association").unwrap(),
            fee_balance_after_minor: 5_007,
            firms: vec![
                firm("aaa", None),
                firm(
                    "bbb",
                    Some(NotCharged::CreditLimit { balance_after_minor: -10, credit_limit_minor: 5 }),
                ),
                firm("ccc", Some(NotCharged::FeeAccountMax)),
            ],
        };
        let section = record.to_section();
        assert_eq!(ChargeRecord::from_section(&section).unwrap(), record);
        assert_eq!((record.charged_minor(), record.not_charged_minor()), (5_007, 10_014));
        assert_eq!(part_index(&section, &AccountId::parse("bbb").unwrap()), Some(2));
        assert_eq!(part_index(&section, &AccountId::parse("bbc").unwrap()), None);
        let last = LastCharge { period: record.period, sequence: 12, timestamp_ms: 5 };
        assert_eq!(LastCharge::decode(&last.encode()).unwrap(), last);
    }
}
