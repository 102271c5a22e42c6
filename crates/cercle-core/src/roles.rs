//! The governance roles as the state holds them: who administers the ledger and who audits
//! it. The genesis names the first keys of each; `SetRole` operations change them, so the
//! current sets are part of the state, its digest and its checkpoint.

use cercle_limits::GOVERNANCE_KEYS_MAX;

use crate::codec::{DecodeError, Reader, Writer};
use crate::genesis::Genesis;
use crate::ids::PublicKey;
use crate::op::Role;

const ROLES_VERSION: u8 = 1;

/// The administrator and auditor keys, each set in the order the keys were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    admins: Vec<PublicKey>,
    auditors: Vec<PublicKey>,
}

impl Roles {
    /// The roles a genesis names.
    pub fn from_genesis(genesis: &Genesis) -> Roles {
        Roles { admins: genesis.admin_keys.clone(), auditors: genesis.auditor_keys.clone() }
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
    }

    /// The canonical, versioned encoding: persisted by the store's checkpoint and hashed
    /// into the state digest (version 3).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(ROLES_VERSION);
        for keys in [&self.admins, &self.auditors] {
            w.u16(keys.len() as u16);
            for k in keys {
                w.fixed(&k.0);
            }
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Roles, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("roles version")?;
        if version != ROLES_VERSION {
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
        r.finish()?;
        if admins.is_empty() {
            return Err(DecodeError::Invalid("roles without an administrator"));
        }
        Ok(Roles { admins, auditors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_refuse_a_ledger_without_administrator() {
        let mut roles = Roles { admins: vec![PublicKey([1; 32])], auditors: vec![] };
        roles.set(Role::Auditor, PublicKey([2; 32]), true);
        roles.set(Role::Admin, PublicKey([3; 32]), true);
        roles.set(Role::Admin, PublicKey([1; 32]), false);
        assert_eq!(Roles::decode(&roles.encode()), Ok(roles.clone()));
        assert_eq!(roles.admins(), &[PublicKey([3; 32])]);
        let none = Roles { admins: vec![], auditors: vec![] };
        assert!(Roles::decode(&none.encode()).is_err());
    }
}
