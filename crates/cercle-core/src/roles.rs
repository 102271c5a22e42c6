//! The governance roles as the state holds them: who administers the ledger and who audits
//! it. The genesis names the first keys of each; `SetRole` operations change them, so the
//! current sets are part of the state, its digest and its checkpoint. So is the quorum:
//! how many administrators sign a sensitive act, and the credit limit above which setting
//! a limit is one.

use cercle_limits::{AMOUNT_MAX_MINOR, GOVERNANCE_KEYS_MAX, OPERATION_SIGNATURES_MAX};

use crate::codec::{DecodeError, Reader, Writer};
use crate::genesis::Genesis;
use crate::ids::PublicKey;
use crate::op::Role;

/// An act that needs the quorum of administrators (`Roles::quorum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveAct {
    /// Adding or removing an administrator or an auditor.
    RoleChange,
    /// Changing the quorum or its limit threshold.
    QuorumChange,
    /// Setting a credit limit above the association's threshold (`limit_above_minor`).
    LargeLimit { limit_minor: i64, above_minor: i64 },
    /// An administrator replacing a firm's keys (not one of the firm's own keys).
    KeyRotation,
    /// Writing off a leaving firm's debt to the reserve account.
    WriteOff,
    /// A clearing run that also uses the firms' credit.
    ClearingWithCredit,
    /// Setting the fee schedule: the levy on every transfer, the membership fees and the
    /// demurrage move every firm's money to the association.
    FeesChange,
    /// Not sensitive, but cosigned: every signer must then be an administrator.
    Cosigned,
}

impl SensitiveAct {
    /// What the act is, amounts formatted by `money`.
    pub fn describe(&self, money: &dyn Fn(i64) -> String) -> String {
        match self {
            SensitiveAct::RoleChange => "a change of administrators or auditors".into(),
            SensitiveAct::QuorumChange => "a change of the quorum".into(),
            SensitiveAct::LargeLimit { limit_minor, above_minor } => format!(
                "a credit limit of {} (above the {} that needs a quorum)",
                money(*limit_minor),
                money(*above_minor)
            ),
            SensitiveAct::KeyRotation => "an administrator replacing a firm's keys".into(),
            SensitiveAct::WriteOff => "a write-off at closure".into(),
            SensitiveAct::ClearingWithCredit => "a clearing run with credit".into(),
            SensitiveAct::FeesChange => "a change of the fee schedule".into(),
            SensitiveAct::Cosigned => "an act with cosignatures".into(),
        }
    }
}

/// Version 1: the keys. Version 2 adds the quorum and its limit threshold; roles at a
/// quorum of one with no threshold are written as version 1, so the digests of ledgers
/// from before quorums are unchanged.
const ROLES_VERSION: u8 = 1;
const ROLES_VERSION_QUORUM: u8 = 2;

/// The administrator and auditor keys, each set in the order the keys were added, and the
/// quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    admins: Vec<PublicKey>,
    auditors: Vec<PublicKey>,
    /// Administrators who sign a sensitive act: 1 to `admins.len()`.
    quorum: u8,
    /// Setting a credit limit above this is a sensitive act; `None`: no limit is.
    limit_above_minor: Option<i64>,
}

impl Roles {
    /// The roles a genesis names.
    pub fn from_genesis(genesis: &Genesis) -> Roles {
        Roles {
            admins: genesis.admin_keys.clone(),
            auditors: genesis.auditor_keys.clone(),
            quorum: genesis.quorum.max(1),
            limit_above_minor: None,
        }
    }

    /// How many administrators sign a sensitive act.
    pub fn quorum(&self) -> u8 {
        self.quorum
    }

    /// The credit limit above which setting a limit needs the quorum.
    pub fn limit_above_minor(&self) -> Option<i64> {
        self.limit_above_minor
    }

    /// Sets the quorum and its threshold. The caller checked the bounds.
    pub(crate) fn set_quorum(&mut self, quorum: u8, limit_above_minor: Option<i64>) {
        assert!(
            (1..=self.admins.len()).contains(&usize::from(quorum)),
            "a quorum of {quorum} among {} administrators",
            self.admins.len()
        );
        self.quorum = quorum;
        self.limit_above_minor = limit_above_minor;
    }

    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.admins.contains(key)
    }

    pub fn is_auditor(&self, key: &PublicKey) -> bool {
        self.auditors.contains(key)
    }

    /// Administrators and auditors: the keys that read every account.
    pub fn is_governance(&self, key: &PublicKey) -> bool {
        self.is_admin(key) || self.is_auditor(key)
    }

    pub fn admins(&self) -> &[PublicKey] {
        &self.admins
    }

    pub fn auditors(&self) -> &[PublicKey] {
        &self.auditors
    }

    /// The keys holding `role`.
    pub fn keys(&self, role: Role) -> &[PublicKey] {
        match role {
            Role::Admin => &self.admins,
            Role::Auditor => &self.auditors,
        }
    }

    /// Adds `key` to `role` (`present`) or removes it. The caller checked that this changes
    /// something and stays within the bounds.
    pub(crate) fn set(&mut self, role: Role, key: PublicKey, present: bool) {
        let keys = match role {
            Role::Admin => &mut self.admins,
            Role::Auditor => &mut self.auditors,
        };
        if present {
            assert!(!keys.contains(&key), "role change adds key {key}, which {} already holds", role.name());
            keys.push(key);
        } else {
            let before = keys.len();
            keys.retain(|k| *k != key);
            assert_eq!(
                keys.len() + 1,
                before,
                "role change removes key {key}, which {} does not hold",
                role.name()
            );
        }
        assert!(!self.admins.is_empty(), "the ledger was left without an administrator");
        assert!(
            usize::from(self.quorum) <= self.admins.len(),
            "the quorum of {} is out of reach of {} administrators",
            self.quorum,
            self.admins.len()
        );
    }

    /// The canonical, versioned encoding: persisted by the store's checkpoint and hashed
    /// into the state digest (version 3).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let quorum = self.quorum != 1 || self.limit_above_minor.is_some();
        w.u8(if quorum { ROLES_VERSION_QUORUM } else { ROLES_VERSION });
        for keys in [&self.admins, &self.auditors] {
            w.u16(keys.len() as u16);
            for k in keys {
                w.fixed(&k.0);
            }
        }
        if quorum {
            w.u8(self.quorum).opt_i64(self.limit_above_minor);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Roles, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("roles version")?;
        if version != ROLES_VERSION && version != ROLES_VERSION_QUORUM {
            return Err(DecodeError::Version(version));
        }
        let read_keys = |r: &mut Reader<'_>| -> Result<Vec<PublicKey>, DecodeError> {
            let n = usize::from(r.u16("role key count")?);
            if n > GOVERNANCE_KEYS_MAX {
                return Err(DecodeError::Invalid("role key count"));
            }
            (0..n).map(|_| Ok(PublicKey(r.array("role key")?))).collect()
        };
        let admins = read_keys(&mut r)?;
        let auditors = read_keys(&mut r)?;
        let (quorum, limit_above_minor) = if version == ROLES_VERSION_QUORUM {
            let quorum = r.u8("quorum")?;
            let limit = r.opt_i64("quorum limit")?;
            if quorum == 1 && limit.is_none() {
                return Err(DecodeError::Invalid("version 2 roles without a quorum"));
            }
            (quorum, limit)
        } else {
            (1, None)
        };
        r.finish()?;
        if admins.is_empty() {
            return Err(DecodeError::Invalid("roles without an administrator"));
        }
        if quorum == 0 || usize::from(quorum) > admins.len() || usize::from(quorum) > OPERATION_SIGNATURES_MAX
        {
            return Err(DecodeError::Invalid("a quorum out of reach of the administrators"));
        }
        if limit_above_minor.is_some_and(|l| !(0..=AMOUNT_MAX_MINOR).contains(&l)) {
            return Err(DecodeError::Invalid("quorum limit out of range"));
        }
        Ok(Roles { admins, auditors, quorum, limit_above_minor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_refuse_a_ledger_without_administrator() {
        let mut roles =
            Roles { admins: vec![PublicKey([1; 32])], auditors: vec![], quorum: 1, limit_above_minor: None };
        roles.set(Role::Auditor, PublicKey([2; 32]), true);
        roles.set(Role::Admin, PublicKey([3; 32]), true);
        roles.set(Role::Admin, PublicKey([1; 32]), false);
        assert_eq!(roles.encode()[0], ROLES_VERSION, "no quorum: the bytes of before quorums");
        assert_eq!(Roles::decode(&roles.encode()), Ok(roles.clone()));
        assert_eq!(roles.admins(), &[PublicKey([3; 32])]);
        let none = Roles { admins: vec![], auditors: vec![], quorum: 1, limit_above_minor: None };
        assert!(Roles::decode(&none.encode()).is_err());
    }

    #[test]
    fn a_quorum_round_trips_and_stays_within_reach() {
        let mut roles = Roles {
            admins: vec![PublicKey([1; 32]), PublicKey([2; 32])],
            auditors: vec![],
            quorum: 1,
            limit_above_minor: None,
        };
        roles.set_quorum(2, Some(5_000_000));
        assert_eq!(roles.encode()[0], ROLES_VERSION_QUORUM);
        assert_eq!(Roles::decode(&roles.encode()), Ok(roles.clone()));
        roles.set_quorum(1, Some(0));
        assert_eq!(Roles::decode(&roles.encode()), Ok(roles.clone()));
        // A quorum of 3 among 2 administrators does not decode.
        let out_of_reach = Roles { quorum: 3, ..roles.clone() };
        assert_eq!(
            Roles::decode(&out_of_reach.encode()),
            Err(DecodeError::Invalid("a quorum out of reach of the administrators"))
        );
    }
}
