//! Tree heads (checkpoints): the node's signed commitment to the log at a size.
//!
//! A tree head names the ledger, the number of entries, the Merkle root of the log
//! (`merkle`, RFC 9162) and the node's time. The node signs it with its key (named in the
//! genesis); anyone holding two tree heads can ask for a consistency proof between them.

use crate::entry::Entry;
use crate::ids::{AccountId, LedgerId, PublicKey};
use crate::merkle::Hash;
use crate::op::Operation;
use crate::sign::{self, Keypair, SignatureError};

/// Domain tag of a tree-head signature.
pub const TREE_HEAD_TAG: &[u8] = b"cercle/tree-head/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub ledger_id: LedgerId,
    pub tree_size: u64,
    pub root_hash: Hash,
    pub timestamp_ms: u64,
}

impl TreeHead {
    /// The bytes the node signs: `TREE_HEAD_TAG || ledger_id || tree_size || root || timestamp`.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(TREE_HEAD_TAG.len() + 16 + 8 + 32 + 8);
        m.extend_from_slice(TREE_HEAD_TAG);
        m.extend_from_slice(&self.ledger_id.0);
        m.extend_from_slice(&self.tree_size.to_be_bytes());
        m.extend_from_slice(&self.root_hash);
        m.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        m
    }

    pub fn sign(&self, node_key: &Keypair) -> [u8; 64] {
        node_key.sign(&self.message())
    }

    /// Checks the node's signature (strictly).
    pub fn verify(&self, node_key: &PublicKey, signature: &[u8; 64]) -> Result<(), SignatureError> {
        sign::verify(node_key, &self.message(), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_head_signature_binds_every_field() {
        let key = Keypair::from_seed(&[5; 32]);
        let head =
            TreeHead { ledger_id: LedgerId([1; 16]), tree_size: 10, root_hash: [2; 32], timestamp_ms: 99 };
        let sig = head.sign(&key);
        assert_eq!(head.verify(&key.public_key(), &sig), Ok(()));
        let variants = [
            TreeHead { ledger_id: LedgerId([9; 16]), ..head },
            TreeHead { tree_size: 11, ..head },
            TreeHead { root_hash: [3; 32], ..head },
            TreeHead { timestamp_ms: 100, ..head },
        ];
        for v in variants {
            assert!(v.verify(&key.public_key(), &sig).is_err(), "{v:?}");
        }
        assert!(head.verify(&Keypair::from_seed(&[6; 32]).public_key(), &sig).is_err());
    }
}

/// Domain tag of a statement signature.
pub const STATEMENT_TAG: &[u8] = b"cercle/statement/v1";
/// Most entries a statement lists; a longer period must be split.
pub const STATEMENT_ENTRIES_MAX: usize = 10_000;
const STATEMENT_VERSION: u8 = 1;

/// An account's standing over a period, as the node attests it at a tree head: what a firm
/// hands to a bank or the tax office.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub ledger_id: LedgerId,
    pub account: AccountId,
    /// The period, ms since the Unix epoch, inclusive.
    pub from_ms: u64,
    pub to_ms: u64,
    /// The tree head the statement is computed at.
    pub tree_size: u64,
    pub root_hash: Hash,
    /// Balance before the period's first entry, and after its last one.
    pub opening_balance_minor: i64,
    pub closing_balance_minor: i64,
    /// Sums of what the account received and paid in the period.
    pub turnover_in_minor: u128,
    pub turnover_out_minor: u128,
    /// Limits and status at the tree head.
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
    pub frozen: bool,
    /// The entries of the period that touch the account, in order.
    pub sequences: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("the account has no entry up to tree size {0}")]
    NoSuchAccount(u64),
    #[error("the period holds more than {STATEMENT_ENTRIES_MAX} entries; ask for a shorter one")]
    TooManyEntries,
    #[error("entry {0} does not concern the account")]
    Foreign(u64),
}

impl Statement {
    /// Computes the statement of `account` from its whole history up to the tree head
    /// (`history`: each entry with its decoded operation, in sequence order). The same
    /// function checks a statement offline, from the period's entries alone, for the
    /// parts those entries determine (see `check_period`).
    #[allow(clippy::too_many_arguments)]
    pub fn compute(
        ledger_id: LedgerId,
        account: &AccountId,
        history: &[(crate::entry::Entry, crate::op::Operation)],
        from_ms: u64,
        to_ms: u64,
        tree_size: u64,
        root_hash: Hash,
    ) -> Result<Statement, StatementError> {
        use crate::op::OpKind;
        let mut balance: i64 = 0;
        let mut opening = None;
        let mut credit_limit_minor = 0;
        let mut max_balance_minor = None;
        let mut frozen = false;
        let mut registered = false;
        let (mut turnover_in, mut turnover_out) = (0u128, 0u128);
        let mut sequences = Vec::new();
        for (entry, op) in history.iter().filter(|(e, _)| e.sequence <= tree_size) {
            match &op.kind {
                OpKind::RegisterAccount(r) if &r.account == account => {
                    registered = true;
                    credit_limit_minor = r.credit_limit_minor;
                    max_balance_minor = r.max_balance_minor;
                }
                OpKind::SetLimits(s) if &s.account == account => {
                    if let Some(l) = s.credit_limit_minor {
                        credit_limit_minor = l;
                    }
                    if let Some(m) = s.max_balance_minor {
                        max_balance_minor = m;
                    }
                }
                OpKind::FreezeAccount { account: a, .. } if a == account => frozen = true,
                OpKind::UnfreezeAccount { account: a, .. } if a == account => frozen = false,
                _ => {}
            }
            let in_period = (from_ms..=to_ms).contains(&entry.timestamp_ms);
            if in_period {
                if opening.is_none() {
                    opening = Some(balance);
                }
                if sequences.len() == STATEMENT_ENTRIES_MAX {
                    return Err(StatementError::TooManyEntries);
                }
                sequences.push(entry.sequence);
                let (inflow, outflow) = flows(entry, op, account);
                turnover_in += inflow;
                turnover_out += outflow;
            }
            if let Some(b) = entry.balances_after.iter().find(|b| &b.account == account)
                && entry.timestamp_ms <= to_ms
            {
                balance = b.balance_minor;
            }
        }
        if !registered {
            return Err(StatementError::NoSuchAccount(tree_size));
        }
        Ok(Statement {
            ledger_id,
            account: account.clone(),
            from_ms,
            to_ms,
            tree_size,
            root_hash,
            opening_balance_minor: opening.unwrap_or(balance),
            closing_balance_minor: balance,
            turnover_in_minor: turnover_in,
            turnover_out_minor: turnover_out,
            credit_limit_minor,
            max_balance_minor,
            frozen,
            sequences,
        })
    }

    /// Checks what the period's own entries determine: they are exactly the listed
    /// sequences, in the period, concern the account, and give the turnover and the
    /// closing balance; opening + in - out = closing.
    pub fn check_period(
        &self,
        entries: &[(crate::entry::Entry, crate::op::Operation)],
    ) -> Result<(), String> {
        let listed: Vec<u64> = entries.iter().map(|(e, _)| e.sequence).collect();
        if listed != self.sequences {
            return Err("the entries supplied are not the ones the statement lists".into());
        }
        let (mut inflow, mut outflow) = (0u128, 0u128);
        let mut closing = self.opening_balance_minor;
        for (entry, op) in entries {
            if !(self.from_ms..=self.to_ms).contains(&entry.timestamp_ms) {
                return Err(format!("entry {} is outside the period", entry.sequence));
            }
            if !entry.accounts(op).contains(&&self.account) {
                return Err(format!("entry {} does not concern '{}'", entry.sequence, self.account));
            }
            let (entry_in, entry_out) = flows(entry, op, &self.account);
            inflow += entry_in;
            outflow += entry_out;
            if let Some(b) = entry.balances_after.iter().find(|b| b.account == self.account) {
                closing = b.balance_minor;
            }
        }
        if inflow != self.turnover_in_minor || outflow != self.turnover_out_minor {
            return Err(format!(
                "turnover in the entries is {inflow} in / {outflow} out, the statement says {} / {}",
                self.turnover_in_minor, self.turnover_out_minor
            ));
        }
        if closing != self.closing_balance_minor {
            return Err(format!(
                "the entries end at balance {closing}, the statement says {}",
                self.closing_balance_minor
            ));
        }
        let expected = i128::from(self.opening_balance_minor) + inflow as i128 - outflow as i128;
        if expected != i128::from(self.closing_balance_minor) {
            return Err("opening balance + turnover in - turnover out is not the closing balance".into());
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::codec::Writer::default();
        w.u8(STATEMENT_VERSION)
            .fixed(&self.ledger_id.0)
            .str(self.account.as_str())
            .u64(self.from_ms)
            .u64(self.to_ms)
            .u64(self.tree_size)
            .fixed(&self.root_hash)
            .i64(self.opening_balance_minor)
            .i64(self.closing_balance_minor)
            .fixed(&self.turnover_in_minor.to_be_bytes())
            .fixed(&self.turnover_out_minor.to_be_bytes())
            .i64(self.credit_limit_minor)
            .opt_i64(self.max_balance_minor)
            .u8(u8::from(self.frozen))
            .u32(self.sequences.len() as u32);
        for s in &self.sequences {
            w.u64(*s);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Statement, crate::codec::DecodeError> {
        use crate::codec::DecodeError;
        let mut r = crate::codec::Reader::new(data);
        let version = r.u8("statement version")?;
        if version != STATEMENT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let ledger_id = LedgerId(r.array("ledger id")?);
        let account = AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
        let from_ms = r.u64("from")?;
        let to_ms = r.u64("to")?;
        let tree_size = r.u64("tree size")?;
        let root_hash = r.array("root")?;
        let opening_balance_minor = r.i64("opening balance")?;
        let closing_balance_minor = r.i64("closing balance")?;
        let turnover_in_minor = u128::from_be_bytes(r.array("turnover in")?);
        let turnover_out_minor = u128::from_be_bytes(r.array("turnover out")?);
        let credit_limit_minor = r.i64("credit limit")?;
        let max_balance_minor = r.opt_i64("max balance")?;
        let frozen = match r.u8("frozen")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("frozen")),
        };
        let n = r.u32("entry count")? as usize;
        if n > STATEMENT_ENTRIES_MAX {
            return Err(DecodeError::Invalid("entry count"));
        }
        let sequences = (0..n).map(|_| r.u64("sequence")).collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Statement {
            ledger_id,
            account,
            from_ms,
            to_ms,
            tree_size,
            root_hash,
            opening_balance_minor,
            closing_balance_minor,
            turnover_in_minor,
            turnover_out_minor,
            credit_limit_minor,
            max_balance_minor,
            frozen,
            sequences,
        })
    }

    fn message(&self) -> Vec<u8> {
        let mut m = STATEMENT_TAG.to_vec();
        m.extend_from_slice(&self.encode());
        m
    }

    pub fn sign(&self, node_key: &Keypair) -> [u8; 64] {
        node_key.sign(&self.message())
    }

    pub fn verify(&self, node_key: &PublicKey, signature: &[u8; 64]) -> Result<(), SignatureError> {
        sign::verify(node_key, &self.message(), signature)
    }
}

/// What an entry paid to and from `account`: a transfer's amount, or a clearing run's
/// payment through mutual credit.
fn flows(entry: &Entry, op: &Operation, account: &AccountId) -> (u128, u128) {
    if let crate::op::OpKind::Transfer(t) = &op.kind {
        let amount = t.amount_minor.unsigned_abs() as u128;
        if &t.payee == account {
            return (amount, 0);
        } else if &t.payer == account {
            return (0, amount);
        }
    }
    let payment = entry.clearing.iter().flat_map(|c| &c.firms).find(|f| &f.account == account);
    match payment.map(|f| f.payment_minor) {
        Some(p) if p > 0 => (0, p.unsigned_abs() as u128),
        Some(p) if p < 0 => (p.unsigned_abs() as u128, 0),
        _ => (0, 0),
    }
}
