//! Member groups: classes of members (by size or sector, say) with default limits.
//!
//! A group has a credit limit and an optional maximum balance. An account assigned to a
//! group follows the group's limits unless it has its own (an override, set by
//! `SetLimits`); each of the two limits follows or not on its own. The account records
//! only *that* it follows (`Membership`), never the group's values: the limit that binds
//! it is resolved through the group when it is checked (`Groups::limits_of`). So changing a
//! group's default is one change to one record, whatever the number of members, and it
//! binds every member without an override from the next entry on.
//!
//! The groups are part of the state, of its digest (only once a ledger has one, so older
//! ledgers keep their digests) and of its checkpoint (`Groups::encode`).

use std::collections::BTreeMap;
use std::fmt;

use cercle_limits::{GROUPS_MAX, HANDLE_LEN_MAX, HANDLE_LEN_MIN};

use crate::codec::{DecodeError, Reader, Writer};
use crate::state::Account;

const GROUPS_VERSION: u8 = 1;

/// A group's name: the syntax of an account handle, `[a-z0-9][a-z0-9-]{2,31}`, e.g. `small-firms`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid group name '{0}': use {HANDLE_LEN_MIN} to {HANDLE_LEN_MAX} characters a-z, 0-9 and '-', starting with a letter or digit"
)]
pub struct InvalidGroupName(pub String);

impl GroupName {
    pub fn parse(text: &str) -> Result<Self, InvalidGroupName> {
        match crate::ids::AccountId::parse(text) {
            Ok(_) => Ok(GroupName(text.to_string())),
            Err(e) => Err(InvalidGroupName(e.0)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A class of members and its default limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberGroup {
    pub name: GroupName,
    /// Never negative, at most `AMOUNT_MAX_MINOR`.
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
    pub created_at_sequence: u64,
    /// The last entry that changed the group's limits.
    pub last_sequence: u64,
}

/// An account's place in a group, and which of its limits it takes from the group (the
/// others are its own: overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group: GroupName,
    pub credit_from_group: bool,
    pub max_from_group: bool,
}

/// The limits that bind an account: its own, or its group's, limit by limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
}

/// Where one of an account's limits comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    Own,
    Group(GroupName),
}

impl LimitSource {
    /// `own`, or `group:NAME`: how the overview and the wire name it.
    pub fn label(&self) -> String {
        match self {
            LimitSource::Own => "own".into(),
            LimitSource::Group(g) => format!("group:{g}"),
        }
    }
}

/// Every group of the ledger, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Groups {
    groups: BTreeMap<GroupName, MemberGroup>,
}

impl Groups {
    pub fn get(&self, name: &GroupName) -> Option<&MemberGroup> {
        self.groups.get(name)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Every group, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &MemberGroup> {
        self.groups.values()
    }

    /// Puts `group` in (new, or replacing the one of its name); returns what it replaced.
    pub(crate) fn put(&mut self, group: MemberGroup) -> Option<MemberGroup> {
        self.groups.insert(group.name.clone(), group)
    }

    /// The limits that bind `a`: for each limit it takes from its group, the group's; else
    /// its own. A group an account names always exists in the state (`State::check_invariants`);
    /// a reader holding groups older than the account (none does) would see its own limits.
    pub fn limits_of(&self, a: &Account) -> Limits {
        let own = Limits { credit_limit_minor: a.credit_limit_minor, max_balance_minor: a.max_balance_minor };
        let Some(m) = &a.membership else { return own };
        let Some(g) = self.groups.get(&m.group) else { return own };
        Limits {
            credit_limit_minor: if m.credit_from_group {
                g.credit_limit_minor
            } else {
                own.credit_limit_minor
            },
            max_balance_minor: if m.max_from_group { g.max_balance_minor } else { own.max_balance_minor },
        }
    }

    /// Where `a`'s credit limit and maximum balance come from.
    pub fn sources_of(a: &Account) -> (LimitSource, LimitSource) {
        let Some(m) = &a.membership else { return (LimitSource::Own, LimitSource::Own) };
        let source =
            |follows: bool| if follows { LimitSource::Group(m.group.clone()) } else { LimitSource::Own };
        (source(m.credit_from_group), source(m.max_from_group))
    }

    /// The canonical, versioned encoding: persisted by the store's checkpoint (`m/groups`)
    /// and hashed into the state digest once the ledger has a group.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(GROUPS_VERSION).u32(self.groups.len() as u32);
        for g in self.groups.values() {
            w.str(g.name.as_str())
                .i64(g.credit_limit_minor)
                .opt_i64(g.max_balance_minor)
                .u64(g.created_at_sequence)
                .u64(g.last_sequence);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Groups, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("groups version")?;
        if version != GROUPS_VERSION {
            return Err(DecodeError::Version(version));
        }
        let n = r.u32("group count")? as usize;
        if n > GROUPS_MAX {
            return Err(DecodeError::Invalid("group count"));
        }
        let mut groups = Groups::default();
        let mut last: Option<GroupName> = None;
        for _ in 0..n {
            let name =
                GroupName::parse(&r.string("group name")?).map_err(|_| DecodeError::Invalid("group name"))?;
            if last.as_ref().is_some_and(|l| *l >= name) {
                return Err(DecodeError::Invalid("groups out of order"));
            }
            last = Some(name.clone());
            let credit_limit_minor = r.i64("group credit limit")?;
            if credit_limit_minor < 0 {
                return Err(DecodeError::Invalid("group credit limit"));
            }
            let max_balance_minor = r.opt_i64("group max balance")?;
            let created_at_sequence = r.u64("group created at")?;
            let last_sequence = r.u64("group last sequence")?;
            groups.put(MemberGroup {
                name,
                credit_limit_minor,
                max_balance_minor,
                created_at_sequence,
                last_sequence,
            });
        }
        r.finish()?;
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_names_follow_the_handle_syntax() {
        let mut groups = Groups::default();
        for (name, limit, max) in [("small-firms", 1_000, None), ("large", 50_000, Some(900_000))] {
            groups.put(MemberGroup {
                name: GroupName::parse(name).unwrap(),
                credit_limit_minor: limit,
                max_balance_minor: max,
                created_at_sequence: 3,
                last_sequence: 7,
            });
        }
        assert_eq!(Groups::decode(&groups.encode()).unwrap(), groups);
        assert_eq!(Groups::decode(&Groups::default().encode()).unwrap(), Groups::default());
        for bad in ["ab", "Small", "-small", "small_firms", &"x".repeat(33)] {
            assert!(GroupName::parse(bad).is_err(), "{bad}");
        }
        let mut truncated = groups.encode();
        truncated.pop();
        assert!(Groups::decode(&truncated).is_err());
    }
}
