//! Tree heads (checkpoints): the node's signed commitment to the log at a size.
//!
//! A tree head names the ledger, the number of entries, the Merkle root of the log
//! (`merkle`, RFC 9162) and the node's time. The node signs it with the key in force for
//! its size (`NodeKeys::key_for_size`: the genesis's, until a rotation the tree contains);
//! anyone holding two tree heads can ask for a consistency proof between them.

use crate::entry::EntryView;
use crate::ids::{AccountId, LedgerId, PublicKey};
use crate::merkle::Hash;
use crate::op::Operation;
use crate::sign::{self, Keypair, SignatureError};
use cercle_limits::STATEMENT_ENTRIES_MAX;

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

/// A tree head and the node's signature over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedTreeHead {
    pub head: TreeHead,
    pub signature: [u8; 64],
}

/// Why a signed tree head is not one of this ledger's node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeHeadError {
    #[error("the tree head is for ledger {tree_head}, not for this genesis's ledger {genesis}")]
    OtherLedger { tree_head: String, genesis: String },
    #[error(
        "the tree head's signature does not verify with the node key {key}, in force for a tree of {tree_size} entries: {error}"
    )]
    Signature { key: PublicKey, tree_size: u64, error: SignatureError },
}

impl SignedTreeHead {
    /// Checks that the tree head is for `genesis`'s ledger and signed by its node key: for a
    /// ledger whose node key was never rotated (else `verify_with`).
    pub fn verify(&self, genesis: &crate::genesis::Genesis) -> Result<(), TreeHeadError> {
        self.verify_with(genesis, &crate::node_keys::NodeKeys::from_genesis(genesis))
    }

    /// Checks that the tree head is for `genesis`'s ledger and signed by the node key that
    /// `keys` (the ledger's node key history) puts in force for its size.
    pub fn verify_with(
        &self,
        genesis: &crate::genesis::Genesis,
        keys: &crate::node_keys::NodeKeys,
    ) -> Result<(), TreeHeadError> {
        if self.head.ledger_id != genesis.ledger_id {
            return Err(TreeHeadError::OtherLedger {
                tree_head: self.head.ledger_id.to_string(),
                genesis: genesis.ledger_id.to_string(),
            });
        }
        let key = keys.key_for_size(self.head.tree_size);
        self.head.verify(&key, &self.signature).map_err(|error| TreeHeadError::Signature {
            key,
            tree_size: self.head.tree_size,
            error,
        })
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
/// Version 2 added the cut time and the provisional flag; version 1 is not read (it cannot
/// say whether its closing balance was final).
const STATEMENT_VERSION: u8 = 2;

/// An account's standing over a period, as the node attests it at a tree head: what a firm
/// hands to a bank or the tax office.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub ledger_id: LedgerId,
    pub account: AccountId,
    /// The period, ms since the Unix epoch, inclusive.
    pub from_ms: u64,
    pub to_ms: u64,
    /// The node's time when it cut the statement: its tree head's time.
    pub cut_at_ms: u64,
    /// The period had not ended when the statement was cut (`to_ms > cut_at_ms`): the
    /// closing balance and the turnover are those so far, and may still change. Signed, so
    /// that a provisional statement cannot be passed off as a final one.
    pub provisional: bool,
    /// The tree head the statement is computed at.
    pub tree_size: u64,
    pub root_hash: Hash,
    /// Balance before the period's first entry, and after its last one.
    pub opening_balance_minor: i64,
    pub closing_balance_minor: i64,
    /// Sums of what the account received and paid in the period.
    pub turnover_in_minor: u128,
    pub turnover_out_minor: u128,
    /// Limits and status at the tree head (encoded as one byte: 0 active, 1 frozen, 2
    /// closed).
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
    pub frozen: bool,
    pub closed: bool,
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

/// Whether a statement of a period ending at `to_ms`, cut at `cut_at_ms`, is provisional:
/// the one rule, used to compute a statement and to check one.
pub fn is_provisional(to_ms: u64, cut_at_ms: u64) -> bool {
    to_ms > cut_at_ms
}

/// An account's registration, limits, freeze and closure, as its history sets them.
#[derive(Default)]
struct Standing {
    registered: bool,
    credit_limit_minor: i64,
    max_balance_minor: Option<i64>,
    frozen: bool,
    closed: bool,
}

impl Standing {
    /// Follows `op`, if it changes `account`'s standing.
    fn follow(&mut self, account: &AccountId, op: &crate::op::Operation, view: &EntryView) {
        use crate::op::OpKind;
        match &op.kind {
            OpKind::RegisterAccount(r) if &r.account == account => {
                self.registered = true;
                self.credit_limit_minor = r.credit_limit_minor;
                self.max_balance_minor = r.max_balance_minor;
            }
            OpKind::SetLimits(s) if &s.account == account => {
                if let Some(l) = s.credit_limit_minor {
                    self.credit_limit_minor = l;
                }
                if let Some(m) = s.max_balance_minor {
                    self.max_balance_minor = m;
                }
            }
            // A limit rule's entry says, in the account's own part, the limit it gave it.
            OpKind::ApplyLimitRule(_) => {
                if let Some(part) = view.limit_part(account).filter(|p| p.changed()) {
                    self.credit_limit_minor = part.new_limit_minor;
                }
            }
            OpKind::FreezeAccount { account: a, .. } if a == account => self.frozen = true,
            OpKind::UnfreezeAccount { account: a, .. } if a == account => self.frozen = false,
            // One status: a closed account is closed, no longer frozen.
            OpKind::CloseAccount { account: a, .. } if a == account => {
                (self.closed, self.frozen) = (true, false)
            }
            _ => {}
        }
    }
}

impl Statement {
    /// Computes the statement of `account` from its whole history up to the tree head
    /// (`history`: each entry with its decoded operation, in sequence order). The same
    /// function checks a statement offline, from the period's entries alone, for the
    /// parts those entries determine (see `check_period`). `head` is the tree head the
    /// statement is cut at: its time is the cut time.
    pub fn compute(
        account: &AccountId,
        history: &[(crate::entry::EntryView, crate::op::Operation)],
        from_ms: u64,
        to_ms: u64,
        head: &TreeHead,
    ) -> Result<Statement, StatementError> {
        let TreeHead { ledger_id, tree_size, root_hash, timestamp_ms: cut_at_ms } = *head;
        let mut balance: i64 = 0;
        let mut opening = None;
        let mut standing = Standing::default();
        let (mut turnover_in, mut turnover_out) = (0u128, 0u128);
        let mut sequences = Vec::new();
        for (view, op) in history.iter().filter(|(v, _)| v.entry.sequence <= tree_size) {
            let entry = &view.entry;
            standing.follow(account, op, view);
            let in_period = (from_ms..=to_ms).contains(&entry.timestamp_ms);
            if in_period {
                if opening.is_none() {
                    opening = Some(balance);
                }
                if sequences.len() == STATEMENT_ENTRIES_MAX {
                    return Err(StatementError::TooManyEntries);
                }
                sequences.push(entry.sequence);
                let (inflow, outflow) = flows(view, op, account);
                turnover_in += inflow;
                turnover_out += outflow;
            }
            if let Some(b) = view.balance_of(account)
                && entry.timestamp_ms <= to_ms
            {
                balance = b;
            }
        }
        let Standing { registered, credit_limit_minor, max_balance_minor, frozen, closed } = standing;
        if !registered {
            return Err(StatementError::NoSuchAccount(tree_size));
        }
        Ok(Statement {
            ledger_id,
            account: account.clone(),
            from_ms,
            to_ms,
            cut_at_ms,
            provisional: is_provisional(to_ms, cut_at_ms),
            tree_size,
            root_hash,
            opening_balance_minor: opening.unwrap_or(balance),
            closing_balance_minor: balance,
            turnover_in_minor: turnover_in,
            turnover_out_minor: turnover_out,
            credit_limit_minor,
            max_balance_minor,
            frozen,
            closed,
            sequences,
        })
    }

    /// Checks that the statement is cut at `head` (same ledger, size, root and time) and
    /// says provisional exactly when its period ends after that time.
    pub fn check_tree_head(&self, head: &TreeHead) -> Result<(), String> {
        if head.ledger_id != self.ledger_id {
            return Err("the statement and its tree head are of different ledgers".into());
        }
        if head.tree_size != self.tree_size || head.root_hash != self.root_hash {
            return Err("the statement is not computed at the tree head it comes with".into());
        }
        if head.timestamp_ms != self.cut_at_ms {
            return Err(format!(
                "the statement says it was cut at {} ms, its tree head is of {} ms",
                self.cut_at_ms, head.timestamp_ms
            ));
        }
        if self.provisional != is_provisional(self.to_ms, self.cut_at_ms) {
            return Err(if self.provisional {
                "the statement says provisional, but its period ended before it was cut".into()
            } else {
                "the statement says final, but its period had not ended when it was cut".into()
            });
        }
        Ok(())
    }

    /// Checks what the period's own entries determine: they are exactly the listed
    /// sequences, in the period, concern the account, and give the turnover and the
    /// closing balance; opening + in - out = closing.
    pub fn check_period(
        &self,
        entries: &[(crate::entry::EntryView, crate::op::Operation)],
    ) -> Result<(), String> {
        let listed: Vec<u64> = entries.iter().map(|(v, _)| v.entry.sequence).collect();
        if listed != self.sequences {
            return Err("the entries supplied are not the ones the statement lists".into());
        }
        let (mut inflow, mut outflow) = (0u128, 0u128);
        let mut closing = self.opening_balance_minor;
        for (view, op) in entries {
            let entry = &view.entry;
            if !(self.from_ms..=self.to_ms).contains(&entry.timestamp_ms) {
                return Err(format!("entry {} is outside the period", entry.sequence));
            }
            if !view.concerns(op, &self.account) {
                return Err(format!("entry {} does not concern '{}'", entry.sequence, self.account));
            }
            let (entry_in, entry_out) = flows(view, op, &self.account);
            inflow += entry_in;
            outflow += entry_out;
            if let Some(b) = view.balance_of(&self.account) {
                closing = b;
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
            .u64(self.cut_at_ms)
            .u8(u8::from(self.provisional))
            .u64(self.tree_size)
            .fixed(&self.root_hash)
            .i64(self.opening_balance_minor)
            .i64(self.closing_balance_minor)
            .fixed(&self.turnover_in_minor.to_be_bytes())
            .fixed(&self.turnover_out_minor.to_be_bytes())
            .i64(self.credit_limit_minor)
            .opt_i64(self.max_balance_minor)
            .u8(if self.closed { 2 } else { u8::from(self.frozen) })
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
        let cut_at_ms = r.u64("cut time")?;
        let provisional = match r.u8("provisional")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("provisional")),
        };
        let tree_size = r.u64("tree size")?;
        let root_hash = r.array("root")?;
        let opening_balance_minor = r.i64("opening balance")?;
        let closing_balance_minor = r.i64("closing balance")?;
        let turnover_in_minor = u128::from_be_bytes(r.array("turnover in")?);
        let turnover_out_minor = u128::from_be_bytes(r.array("turnover out")?);
        let credit_limit_minor = r.i64("credit limit")?;
        let max_balance_minor = r.opt_i64("max balance")?;
        let (frozen, closed) = match r.u8("status")? {
            0 => (false, false),
            1 => (true, false),
            2 => (false, true),
            _ => return Err(DecodeError::Invalid("status")),
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
            cut_at_ms,
            provisional,
            tree_size,
            root_hash,
            opening_balance_minor,
            closing_balance_minor,
            turnover_in_minor,
            turnover_out_minor,
            credit_limit_minor,
            max_balance_minor,
            frozen,
            closed,
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
fn flows(view: &EntryView, op: &Operation, account: &AccountId) -> (u128, u128) {
    if let Some((payer, payee, amount)) = op.kind.payment(&view.entry.balances_after) {
        let amount = amount.unsigned_abs() as u128;
        if payee == account {
            return (amount, 0);
        } else if payer == account {
            return (0, amount);
        }
    }
    if let Some(charge) = crate::charges::firm_charge(view, account) {
        return (0, charge.charged_minor().unsigned_abs() as u128);
    }
    if let Some(h) = crate::charges::header(view).filter(|h| &h.fee_account == account) {
        return (h.charged_minor.unsigned_abs() as u128, 0);
    }
    let payment = crate::clearing::firm_part(view, account).map(|p| p.firm.payment_minor);
    match payment {
        Some(p) if p > 0 => (0, p.unsigned_abs() as u128),
        Some(p) if p < 0 => (p.unsigned_abs() as u128, 0),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod statement_tests {
    use super::*;
    use crate::entry::{BalanceAfter, Entry, Envelope};
    use crate::ids::OperationId;
    use crate::op::{OpKind, RegisterAccount, Transfer};

    const DAY_MS: u64 = 86_400_000;

    fn id(handle: &str) -> AccountId {
        AccountId::parse(handle).unwrap()
    }

    /// Alice registered on day 0 and paid Bob 10.00 on day 1.
    fn history() -> Vec<(EntryView, Operation)> {
        let entry = |sequence: u64, timestamp_ms: u64, balances: Vec<BalanceAfter>| {
            EntryView::whole(&Entry {
                sequence,
                timestamp_ms,
                prev_hash: [0; 32],
                envelope: Envelope::single(vec![sequence as u8], PublicKey([1; 32]), [2; 64]),
                balances_after: balances,
                sections: Vec::new(),
            })
        };
        let op = |kind: OpKind| Operation { id: OperationId([3; 16]), valid_until_ms: u64::MAX, kind };
        let register = OpKind::RegisterAccount(RegisterAccount {
            account: id("alice"),
            display_name: "Alice".into(),
            keys: vec![],
            credit_limit_minor: 100_000,
            max_balance_minor: None,
            profile: Default::default(),
            allow_shared_key: false,
        });
        let pay = OpKind::Transfer(Transfer {
            payer: id("alice"),
            payee: id("bob"),
            amount_minor: 1_000,
            memo: String::new(),
            invoice_ref: None,
            invoice: None,
        });
        let after = |a: &str, b: i64| BalanceAfter { account: id(a), balance_minor: b };
        vec![
            (entry(1, 10, vec![after("alice", 0)]), op(register)),
            (entry(2, DAY_MS + 10, vec![after("alice", -1_000), after("bob", 1_000)]), op(pay)),
        ]
    }

    fn head(cut_at_ms: u64) -> TreeHead {
        TreeHead { ledger_id: LedgerId([9; 16]), tree_size: 2, root_hash: [4; 32], timestamp_ms: cut_at_ms }
    }

    /// Computes the statement of days `from_day..=to_day` cut at `cut_at_ms` and checks
    /// whether it is provisional, and that it round-trips and checks out.
    fn check(from_day: u64, to_day: u64, cut_at_ms: u64, provisional: bool) -> Statement {
        let history = history();
        let (from_ms, to_ms) = (from_day * DAY_MS, to_day * DAY_MS + DAY_MS - 1);
        let s = Statement::compute(&id("alice"), &history, from_ms, to_ms, &head(cut_at_ms)).unwrap();
        assert_eq!(
            (s.cut_at_ms, s.provisional),
            (cut_at_ms, provisional),
            "{from_day}..={to_day} cut at {cut_at_ms}"
        );
        assert_eq!(Statement::decode(&s.encode()).as_ref(), Ok(&s));
        assert_eq!(s.check_tree_head(&head(cut_at_ms)), Ok(()));
        let period: Vec<_> =
            history.iter().filter(|(v, _)| s.sequences.contains(&v.entry.sequence)).cloned().collect();
        assert_eq!(s.check_period(&period), Ok(()));
        s
    }

    #[test]
    fn a_statement_is_provisional_while_its_period_runs() {
        // The period ends after the cut: provisional, with the balance so far.
        let running = check(0, 30, 2 * DAY_MS, true);
        assert_eq!(running.closing_balance_minor, -1_000);
        // Cut after the period ended: final.
        let ended = check(0, 1, 2 * DAY_MS, false);
        assert_eq!(ended.closing_balance_minor, -1_000);
        // Cut at the very last millisecond of the period: it has ended.
        check(0, 1, 2 * DAY_MS - 1, false);
        check(0, 1, 2 * DAY_MS - 2, true);
    }

    #[test]
    fn the_flag_and_the_cut_time_are_signed_and_checked() {
        let key = Keypair::from_seed(&[7; 32]);
        let s = check(0, 30, 2 * DAY_MS, true);
        let signature = s.sign(&key);
        assert_eq!(s.verify(&key.public_key(), &signature), Ok(()));
        let passed_off_as_final = Statement { provisional: false, ..s.clone() };
        assert!(passed_off_as_final.verify(&key.public_key(), &signature).is_err());
        assert!(passed_off_as_final.check_tree_head(&head(2 * DAY_MS)).unwrap_err().contains("says final"));
        let backdated = Statement { cut_at_ms: 40 * DAY_MS, ..s.clone() };
        assert!(backdated.verify(&key.public_key(), &signature).is_err());
        assert!(backdated.check_tree_head(&head(2 * DAY_MS)).unwrap_err().contains("cut at"));
        let final_one = check(0, 1, 2 * DAY_MS, false);
        let claims_provisional = Statement { provisional: true, ..final_one };
        assert!(
            claims_provisional.check_tree_head(&head(2 * DAY_MS)).unwrap_err().contains("says provisional")
        );
    }

    #[test]
    fn a_closed_account_s_statement_says_closed() {
        let mut history = history();
        let mut closing = history[1].clone();
        closing.0.entry.sequence = 3;
        closing.1.kind =
            OpKind::CloseAccount { account: id("alice"), reason: "left".into(), write_off_to: None };
        history.push(closing);
        let head = TreeHead { tree_size: 3, ..head(2 * DAY_MS) };
        let s = Statement::compute(&id("alice"), &history, 0, 2 * DAY_MS - 1, &head).unwrap();
        assert_eq!((s.frozen, s.closed), (false, true));
        assert_eq!(s.encode()[s.encode().len() - 4 - 8 * s.sequences.len() - 1], 2, "status byte 2: closed");
        assert_eq!(Statement::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn version_1_statements_are_not_read() {
        let mut bytes = check(0, 30, 2 * DAY_MS, true).encode();
        bytes[0] = 1;
        assert_eq!(Statement::decode(&bytes), Err(crate::codec::DecodeError::Version(1)));
        let mut bytes = check(0, 30, 2 * DAY_MS, true).encode();
        // The provisional flag sits after the version, the ledger id, the account and three times.
        let flag = 1 + 16 + 4 + "alice".len() + 3 * 8;
        bytes[flag] = 2;
        assert_eq!(Statement::decode(&bytes), Err(crate::codec::DecodeError::Invalid("provisional")));
    }
}
