//! The ledger: genesis, state and the head of the hash chain, advanced one entry at a
//! time. The node's writer and an auditor's replay both go through `Ledger::execute`,
//! so a replay is the same computation as the original, byte for byte.

use std::collections::HashSet;

use crate::entry::{Entry, Envelope};
use crate::genesis::Genesis;
use crate::ids::OperationId;
use crate::op::{BODY_BYTES_MAX, Operation};
use crate::reject::Rejection;
use crate::sign;
use crate::state::{ClearingInput, Context, Effects, State};

/// The end of the log: how many entries, the last hash, the last timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub hash: [u8; 32],
    pub timestamp_ms: u64,
}

impl Head {
    pub fn empty(genesis: &Genesis) -> Self {
        Head { size: 0, hash: genesis.hash(), timestamp_ms: 0 }
    }
}

/// Checks an envelope's size and its signature for this ledger (strict verification).
/// Costly (tens of microseconds): the node runs it before the single writer.
pub fn verify_envelope(genesis: &Genesis, envelope: &Envelope) -> Result<(), Rejection> {
    if envelope.body.len() > BODY_BYTES_MAX {
        return Err(Rejection::BodyTooLarge { bytes: envelope.body.len() });
    }
    let msg = sign::op_message(&genesis.ledger_id, &envelope.body);
    sign::verify(&envelope.signer, &msg, &envelope.signature)
        .map_err(|e| Rejection::BadSignature { detail: e.to_string() })
}

#[derive(Debug, Clone)]
pub struct Ledger {
    genesis: Genesis,
    state: State,
    head: Head,
}

impl Ledger {
    pub fn new(genesis: Genesis) -> Self {
        let state = State::new(&genesis);
        let head = Head::empty(&genesis);
        Ledger { genesis, state, head }
    }

    /// A ledger resumed from stored parts. The caller vouches they belong together.
    pub fn from_parts(genesis: Genesis, state: State, head: Head) -> Self {
        Ledger { genesis, state, head }
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Applies a verified envelope whose body decoded to `op`, at the node's time
    /// `timestamp_ms` (raised to the last entry's time if the clock went back, so
    /// timestamps never decrease). Returns the new entry, already chained; the state and
    /// head advance only when the operation is accepted.
    ///
    /// A clearing run is computed here (see `clearing::propose`) and recorded in the entry.
    pub fn execute(
        &mut self,
        timestamp_ms: u64,
        envelope: Envelope,
        op: &Operation,
    ) -> Result<(Entry, Effects), Rejection> {
        self.execute_with(timestamp_ms, envelope, op, ClearingInput::Propose)
    }

    /// `execute` with the clearing record taken from `clearing` rather than computed: a
    /// replay passes what the entry recorded, which is checked, not trusted.
    pub fn execute_with(
        &mut self,
        timestamp_ms: u64,
        envelope: Envelope,
        op: &Operation,
        clearing: ClearingInput<'_>,
    ) -> Result<(Entry, Effects), Rejection> {
        let ctx =
            Context { sequence: self.head.size + 1, timestamp_ms: timestamp_ms.max(self.head.timestamp_ms) };
        let effects = self.state.apply(&ctx, &envelope.signer, op, clearing)?;
        let entry = Entry {
            sequence: ctx.sequence,
            timestamp_ms: ctx.timestamp_ms,
            prev_hash: self.head.hash,
            envelope,
            balances_after: effects.balances_after.clone(),
            clearing: effects.clearing.as_ref().map(|(record, _)| record.clone()),
        };
        self.head = Head { size: ctx.sequence, hash: entry.hash(), timestamp_ms: ctx.timestamp_ms };
        Ok((entry, effects))
    }
}

/// Why a logged entry does not replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("entry {sequence}: expected sequence {expected}")]
    Sequence { sequence: u64, expected: u64 },
    #[error("entry {sequence}: previous hash does not match the hash of the entry before it")]
    BrokenChain { sequence: u64 },
    #[error("entry {sequence}: timestamp {timestamp_ms} is earlier than the previous entry's {previous_ms}")]
    TimeWentBack { sequence: u64, timestamp_ms: u64, previous_ms: u64 },
    #[error("entry {sequence}: signature does not verify: {reason}")]
    Signature { sequence: u64, reason: String },
    #[error("entry {sequence}: body does not decode: {reason}")]
    Decode { sequence: u64, reason: String },
    #[error("entry {sequence}: operation id {operation_id} was already used by an earlier entry")]
    DuplicateOperationId { sequence: u64, operation_id: OperationId },
    #[error("entry {sequence}: the operation is rejected on replay: {reason}")]
    RejectedOnReplay { sequence: u64, reason: String },
    #[error("entry {sequence}: the recorded outcome differs from the replayed one")]
    OutcomeMismatch { sequence: u64 },
    #[error("entry {sequence}: invariant broken: {reason}")]
    InvariantBroken { sequence: u64, reason: String },
}

/// Re-executes a log from genesis, checking every entry against what it recorded.
pub struct Replayer {
    ledger: Ledger,
    verify_signatures: bool,
    seen_ids: HashSet<OperationId>,
    /// Sum of all balances, kept up to date from each entry's touched accounts, so the
    /// zero-sum invariant is checked after every entry in O(1).
    balance_sum: i128,
}

impl Replayer {
    /// `verify_signatures: false` trusts signatures that were verified when written (the
    /// node's own start-up check); an auditor always passes `true`.
    pub fn new(genesis: Genesis, verify_signatures: bool) -> Self {
        Replayer { ledger: Ledger::new(genesis), verify_signatures, seen_ids: HashSet::new(), balance_sum: 0 }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    /// Replays `entry`, whose body the caller decoded into `op` (or failed to: pass the
    /// error text). Every check that the writer made is made again.
    pub fn replay(&mut self, entry: &Entry, op: Result<&Operation, String>) -> Result<(), ReplayError> {
        let sequence = entry.sequence;
        let head = *self.ledger.head();
        if sequence != head.size + 1 {
            return Err(ReplayError::Sequence { sequence, expected: head.size + 1 });
        }
        if entry.prev_hash != head.hash {
            return Err(ReplayError::BrokenChain { sequence });
        }
        if entry.timestamp_ms < head.timestamp_ms {
            return Err(ReplayError::TimeWentBack {
                sequence,
                timestamp_ms: entry.timestamp_ms,
                previous_ms: head.timestamp_ms,
            });
        }
        if self.verify_signatures {
            verify_envelope(&self.ledger.genesis, &entry.envelope)
                .map_err(|r| ReplayError::Signature { sequence, reason: r.message("", 0) })?;
        }
        let op = op.map_err(|reason| ReplayError::Decode { sequence, reason })?;
        if !self.seen_ids.insert(op.id) {
            return Err(ReplayError::DuplicateOperationId { sequence, operation_id: op.id });
        }
        // Every balance an entry changes is in its `balances_after` (which must equal the
        // replayed outcome), so the zero sum is kept up to date from those accounts alone.
        let balance = |state: &crate::state::State, id: &crate::ids::AccountId| {
            state.account(id).map_or(0, |a| i128::from(a.balance_minor))
        };
        let before: Vec<i128> =
            entry.balances_after.iter().map(|b| balance(self.ledger.state(), &b.account)).collect();
        let (currency, exponent) = (self.ledger.genesis.currency.clone(), self.ledger.genesis.exponent);
        let (replayed, _) = self
            .ledger
            .execute_with(
                entry.timestamp_ms,
                entry.envelope.clone(),
                op,
                ClearingInput::Recorded(entry.clearing.as_ref()),
            )
            .map_err(|r| ReplayError::RejectedOnReplay {
                sequence,
                reason: r.message(&currency, exponent),
            })?;
        if replayed != *entry {
            return Err(ReplayError::OutcomeMismatch { sequence });
        }
        let broken = |reason: String| Err(ReplayError::InvariantBroken { sequence, reason });
        let state = self.ledger.state();
        for (b, before) in entry.balances_after.iter().zip(before) {
            let after = balance(state, &b.account);
            self.balance_sum += after - before;
            // A limit binds the payments that move a balance, so check the accounts moved.
            if let Some(a) = state.account(&b.account) {
                if after < before && a.balance_minor < -a.credit_limit_minor {
                    return broken(format!("'{}' went below its credit limit", a.id));
                }
                if after > before && a.max_balance_minor.is_some_and(|max| a.balance_minor > max) {
                    return broken(format!("'{}' went above its maximum balance", a.id));
                }
            }
        }
        if self.balance_sum != 0 {
            return broken(format!("balances sum to {}, not zero", self.balance_sum));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, LedgerId, OperationId};
    use crate::op::{OpKind, RegisterAccount, Transfer};
    use crate::sign::Keypair;

    // The core does not know the wire encoding of bodies: these tests use a stand-in
    // (the operation id alone), which is enough for chaining and replay.
    fn setup() -> (Genesis, Keypair, Keypair) {
        let admin = Keypair::from_seed(&[1; 32]);
        let firm = Keypair::from_seed(&[2; 32]);
        let genesis = Genesis {
            ledger_id: LedgerId([9; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![admin.public_key()],
            auditor_keys: vec![],
            node_key: Keypair::from_seed(&[3; 32]).public_key(),
        };
        (genesis, admin, firm)
    }

    fn signed(genesis: &Genesis, key: &Keypair, op: &Operation) -> Envelope {
        let body = op.id.0.to_vec();
        Envelope { signature: key.sign_op(&genesis.ledger_id, &body), body, signer: key.public_key() }
    }

    fn ops(firm: &Keypair) -> Vec<Operation> {
        let register = |n: u8, name: &str| Operation {
            id: OperationId([n; 16]),
            valid_until_ms: 10_000,
            kind: OpKind::RegisterAccount(RegisterAccount {
                account: AccountId::parse(name).unwrap(),
                display_name: name.into(),
                keys: vec![firm.public_key()],
                credit_limit_minor: 1_000,
                max_balance_minor: None,
            }),
        };
        let pay = |n: u8, amount_minor: i64| Operation {
            id: OperationId([n; 16]),
            valid_until_ms: 10_000,
            kind: OpKind::Transfer(Transfer {
                payer: AccountId::parse("aaa").unwrap(),
                payee: AccountId::parse("bbb").unwrap(),
                amount_minor,
                memo: String::new(),
                invoice_ref: None,
                invoice: None,
            }),
        };
        vec![register(1, "aaa"), register(2, "bbb"), pay(3, 300), pay(4, 200)]
    }

    /// Builds a log of four entries and the operations behind it.
    fn log() -> (Genesis, Vec<Entry>, Vec<Operation>) {
        let (genesis, admin, firm) = setup();
        let ops = ops(&firm);
        let mut ledger = Ledger::new(genesis.clone());
        let mut entries = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let key = if i < 2 { &admin } else { &firm };
            let (entry, _) = ledger.execute(1_000 + i as u64, signed(&genesis, key, op), op).unwrap();
            entries.push(entry);
        }
        assert_eq!(ledger.state().account(&AccountId::parse("aaa").unwrap()).unwrap().balance_minor, -500);
        (genesis, entries, ops)
    }

    fn replay_all(genesis: &Genesis, entries: &[Entry], ops: &[Operation]) -> Result<Ledger, ReplayError> {
        let mut r = Replayer::new(genesis.clone(), true);
        for (e, op) in entries.iter().zip(ops) {
            r.replay(e, Ok(op))?;
        }
        Ok(r.into_ledger())
    }

    #[test]
    fn an_honest_log_replays_to_the_same_state() {
        let (genesis, entries, ops) = log();
        let ledger = replay_all(&genesis, &entries, &ops).unwrap();
        assert_eq!(ledger.head().size, 4);
        assert_eq!(ledger.head().hash, entries[3].hash());
        assert_eq!(ledger.state().check_invariants(), Ok(()));
    }

    #[test]
    fn tampering_is_caught_at_the_first_bad_entry() {
        let (genesis, entries, ops) = log();
        let check = |entries: Vec<Entry>, ops: Vec<Operation>, expected: ReplayError| {
            assert_eq!(replay_all(&genesis, &entries, &ops).unwrap_err(), expected);
        };
        // A recorded outcome that the operation did not produce.
        let mut e = entries.clone();
        e[2].balances_after[0].balance_minor = -299;
        check(e, ops.clone(), ReplayError::OutcomeMismatch { sequence: 3 });
        // A changed body no longer matches its signature.
        let mut e = entries.clone();
        e[3].envelope.body[0] ^= 1;
        assert!(matches!(replay_all(&genesis, &e, &ops), Err(ReplayError::Signature { sequence: 4, .. })));
        // A deleted entry breaks the sequence.
        let mut e = entries.clone();
        e.remove(1);
        let mut o = ops.clone();
        o.remove(1);
        check(e, o, ReplayError::Sequence { sequence: 3, expected: 2 });
        // An entry re-linked to another predecessor.
        let mut e = entries.clone();
        e[1].prev_hash = [0; 32];
        check(e, ops.clone(), ReplayError::BrokenChain { sequence: 2 });
        // Time going backwards.
        let mut e = entries.clone();
        e[1].timestamp_ms = 999;
        check(
            e,
            ops.clone(),
            ReplayError::TimeWentBack { sequence: 2, timestamp_ms: 999, previous_ms: 1_000 },
        );
    }

    #[test]
    fn a_rejected_operation_leaves_no_trace() {
        let (genesis, _admin, firm) = setup();
        let ops = ops(&firm);
        let mut ledger = Ledger::new(genesis.clone());
        let before = (ledger.state().digest(), *ledger.head());
        // Signed by a firm: not an administrator.
        let err = ledger.execute(5, signed(&genesis, &firm, &ops[0]), &ops[0]).unwrap_err();
        assert_eq!(err, Rejection::NotAdministrator);
        assert_eq!((ledger.state().digest(), *ledger.head()), before);
    }

    #[test]
    fn timestamps_never_go_back() {
        let (genesis, entries, ops) = log();
        let mut ledger = replay_all(&genesis, &entries, &ops).unwrap();
        let (_, _, firm) = setup();
        let mut op = ops[3].clone();
        op.id = OperationId([5; 16]);
        let (entry, _) = ledger.execute(10, signed(&genesis, &firm, &op), &op).unwrap();
        assert_eq!(entry.timestamp_ms, 1_003, "clock went back: the last timestamp is kept");
    }
}
