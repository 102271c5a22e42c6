//! The ledger: genesis, state, the head of the hash chain and the memory of recent
//! operation ids, advanced one entry at a time. The node's writer and an auditor's replay
//! both go through `Ledger::execute_with`, so a replay is the same computation as the
//! original, byte for byte.
//!
//! Idempotency lives here: an operation id accepted earlier is remembered (with a
//! fingerprint of its signers and body, and the entry it made) until its validity window
//! has passed the log's last timestamp. A retry within the window is `Executed::Duplicate`;
//! the same id with another body or signer is `OPERATION_ID_CONFLICT`. After the window the
//! id is forgotten, and a retry of the same envelope is `EXPIRED` like any operation whose
//! time has passed: the memory is bounded by the window (at most `VALIDITY_MS_MAX`), and
//! forgetting depends only on the log, so a replay remembers and forgets exactly as the
//! node did.

use std::collections::{BTreeSet, HashMap};

use crate::body;
use crate::clearing::ClearingRecord;
use crate::entry::{BalanceAfter, Entry, Envelope, SectionTag};
use crate::genesis::Genesis;
use crate::ids::OperationId;
use crate::op::Operation;
use crate::reject::Rejection;
use crate::sign;
use crate::state::{ClearingInput, Context, Effects, State};
use cercle_limits::{BODY_BYTES_MAX, OPERATION_SIGNATURES_MAX, SIGNATURES_MAX};

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

/// Checks an envelope's size and its signatures for this ledger (strict verification):
/// one to `SIGNATURES_MAX` signatures, by distinct keys, each over the same body. Costly
/// (tens of microseconds a signature): the node runs it before the single writer.
pub fn verify_envelope(genesis: &Genesis, envelope: &Envelope) -> Result<(), Rejection> {
    if envelope.body.len() > BODY_BYTES_MAX {
        return Err(Rejection::BodyTooLarge { bytes: envelope.body.len() });
    }
    let n = envelope.signatures.len();
    if n == 0 || n > SIGNATURES_MAX {
        return Err(Rejection::Malformed {
            detail: format!("an envelope carries 1 to {SIGNATURES_MAX} signatures, this one {n}"),
        });
    }
    let msg = sign::op_message(&genesis.ledger_id, &envelope.body);
    for (i, s) in envelope.signatures.iter().enumerate() {
        if envelope.signatures[..i].iter().any(|t| t.signer == s.signer) {
            return Err(Rejection::Malformed {
                detail: format!("key {} signs the envelope twice", s.signer),
            });
        }
        sign::verify(&s.signer, &msg, &s.signature)
            .map_err(|e| Rejection::BadSignature { detail: format!("key {}: {e}", s.signer) })?;
    }
    Ok(())
}

/// What the ledger remembers of an accepted operation while it can still be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRecord {
    /// `Envelope::fingerprint` of the accepted envelope.
    pub fingerprint: [u8; 16],
    pub valid_until_ms: u64,
    /// The entry it made.
    pub sequence: u64,
}

/// The operation ids of the log whose validity window has not passed its last timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationIds {
    by_id: HashMap<OperationId, IdRecord>,
    by_expiry: BTreeSet<(u64, OperationId)>,
}

impl OperationIds {
    pub fn get(&self, id: &OperationId) -> Option<&IdRecord> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids a ledger remembers after the entry at `now_ms`, built at once from
    /// `records`, the operations of a log's entries in log order (the start-up scan): what
    /// `insert` then `prune` after each entry would leave, since entry times never go
    /// back, but with one sort instead of a tree insertion per entry.
    pub fn from_log(records: Vec<(OperationId, IdRecord)>, now_ms: u64) -> OperationIds {
        let mut by_id = HashMap::with_capacity(records.len());
        for (id, record) in records {
            // A later entry with the same id replaces the earlier (as `insert` does).
            by_id.insert(id, record);
        }
        by_id.retain(|_, r| r.valid_until_ms >= now_ms);
        let by_expiry = by_id.iter().map(|(id, r)| (r.valid_until_ms, *id)).collect();
        OperationIds { by_id, by_expiry }
    }

    /// Remembers `id`. A log never holds one id twice within its window.
    pub fn insert(&mut self, id: OperationId, record: IdRecord) {
        if let Some(old) = self.by_id.insert(id, record) {
            self.by_expiry.remove(&(old.valid_until_ms, id));
        }
        self.by_expiry.insert((record.valid_until_ms, id));
    }

    fn remove(&mut self, id: &OperationId) {
        if let Some(old) = self.by_id.remove(id) {
            self.by_expiry.remove(&(old.valid_until_ms, *id));
        }
    }

    /// Forgets every id valid only until before `time_ms`, and returns them.
    pub fn prune(&mut self, time_ms: u64) -> Vec<(OperationId, IdRecord)> {
        let mut gone = Vec::new();
        while let Some(&(until, id)) = self.by_expiry.first() {
            if until >= time_ms {
                break;
            }
            self.by_expiry.pop_first();
            if let Some(record) = self.by_id.remove(&id) {
                gone.push((id, record));
            }
        }
        gone
    }
}

/// The outcome of executing an operation. (The large variant is the common one: boxing it
/// would allocate once more for every accepted operation.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Executed {
    /// A new entry, already chained; the ledger moved to it.
    Accepted { entry: Entry, effects: Effects },
    /// The same envelope was accepted earlier, at entry `sequence`; nothing changed.
    Duplicate { sequence: u64 },
}

/// What a change of the ledger's own fields overwrote.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LedgerUndo {
    Head(Head),
    IdInserted(OperationId),
    IdsPruned(Vec<(OperationId, IdRecord)>),
}

/// A point in the ledger's history of changes, to undo back to (`Ledger::undo_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    state: usize,
    ledger: usize,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    genesis: Genesis,
    state: State,
    head: Head,
    ids: OperationIds,
    /// When journaling: what each change overwrote, and how many early changes were
    /// forgotten (marks count from the start).
    journal: Option<Vec<LedgerUndo>>,
    forgotten: Mark,
}

impl Ledger {
    pub fn new(genesis: Genesis) -> Self {
        let state = State::new(&genesis);
        let head = Head::empty(&genesis);
        Ledger::from_parts(genesis, state, head, OperationIds::default())
    }

    /// A ledger resumed from stored parts. The caller vouches they belong together.
    pub fn from_parts(genesis: Genesis, state: State, head: Head, ids: OperationIds) -> Self {
        Ledger { genesis, state, head, ids, journal: None, forgotten: Mark { state: 0, ledger: 0 } }
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The same ledger under tighter bounds (see `Bounds`): for tests of the refusals at a
    /// bound, which a real ledger reaches only with millions of invoices.
    pub fn with_bounds(mut self, bounds: crate::state::Bounds) -> Self {
        self.state = self.state.with_bounds(bounds);
        self
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn ids(&self) -> &OperationIds {
        &self.ids
    }

    /// Starts recording what every change overwrites, so that `undo_to` can take the
    /// ledger back to a `mark`: the node's writer does, to undo groups that could not be
    /// made durable.
    pub fn start_journal(&mut self) {
        self.state.set_journaling(true);
        if self.journal.is_none() {
            self.journal = Some(Vec::new());
        }
    }

    /// The point the ledger is at now.
    pub fn mark(&self) -> Mark {
        Mark {
            state: self.forgotten.state + self.state.journal_len(),
            ledger: self.forgotten.ledger + self.journal.as_ref().map_or(0, Vec::len),
        }
    }

    /// Undoes every change since `mark` (which must not have been forgotten).
    pub fn undo_to(&mut self, mark: Mark) {
        assert!(
            mark.state >= self.forgotten.state && mark.ledger >= self.forgotten.ledger,
            "undo to a forgotten mark"
        );
        let Some(journal) = self.journal.as_mut() else {
            panic!("undo without a journal: call start_journal before the changes to undo");
        };
        assert!(mark.ledger - self.forgotten.ledger <= journal.len(), "undo to a mark not yet reached");
        self.state.undo_to(mark.state - self.forgotten.state);
        let undo: Vec<LedgerUndo> = journal.drain(mark.ledger - self.forgotten.ledger..).rev().collect();
        for u in undo {
            match u {
                LedgerUndo::Head(head) => self.head = head,
                LedgerUndo::IdInserted(id) => self.ids.remove(&id),
                LedgerUndo::IdsPruned(gone) => {
                    for (id, record) in gone {
                        self.ids.insert(id, record);
                    }
                }
            }
        }
    }

    /// Forgets the changes before `mark`: they are durable and will never be undone.
    pub fn forget_before(&mut self, mark: Mark) {
        if mark.state > self.forgotten.state {
            self.state.forget_journal(mark.state - self.forgotten.state);
            self.forgotten.state = mark.state;
        }
        if let Some(journal) = self.journal.as_mut()
            && mark.ledger > self.forgotten.ledger
        {
            let count = mark.ledger - self.forgotten.ledger;
            assert!(count <= journal.len(), "forget up to a mark not yet reached");
            journal.drain(..count);
            self.forgotten.ledger = mark.ledger;
        }
    }

    fn record(&mut self, undo: LedgerUndo) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push(undo);
        }
    }

    /// What `execute` would decide before the operation's own rules: `Ok(Some(sequence))`
    /// for a duplicate of entry `sequence`, `Ok(None)` when the operation goes on to its own
    /// rules, or the rejection of its envelope, id, time window, authority or values. The
    /// writer runs it on a clearing run before solving it away from the writer.
    pub fn precheck(
        &self,
        timestamp_ms: u64,
        envelope: &Envelope,
        op: &Operation,
    ) -> Result<Option<u64>, Rejection> {
        let n = envelope.signatures.len();
        if n == 0 || n > OPERATION_SIGNATURES_MAX {
            return Err(Rejection::Malformed {
                detail: format!(
                    "an operation carries 1 to {OPERATION_SIGNATURES_MAX} signatures (its signer's and its cosigners'), this one {n}"
                ),
            });
        }
        if let Some(seen) = self.ids.get(&op.id) {
            if seen.fingerprint == envelope.fingerprint() {
                return Ok(Some(seen.sequence));
            }
            return Err(Rejection::OperationIdConflict { operation_id: op.id.to_string() });
        }
        let ctx =
            Context { sequence: self.head.size + 1, timestamp_ms: timestamp_ms.max(self.head.timestamp_ms) };
        self.state.check_common(&ctx, &envelope.signers(), op)?;
        Ok(None)
    }

    /// Applies a verified envelope whose body decoded to `op`, at the node's time
    /// `timestamp_ms` (raised to the last entry's time if the clock went back, so
    /// timestamps never decrease). A clearing run is computed here (`clearing::propose`).
    pub fn execute(
        &mut self,
        timestamp_ms: u64,
        envelope: Envelope,
        op: &Operation,
    ) -> Result<Executed, Rejection> {
        self.execute_with(timestamp_ms, envelope, op, ClearingInput::Propose)
    }

    /// `execute` with the clearing record taken from `clearing`: a replay passes what the
    /// entry recorded, which is checked, not trusted. The ledger moves only when the
    /// operation is accepted.
    pub fn execute_with(
        &mut self,
        timestamp_ms: u64,
        envelope: Envelope,
        op: &Operation,
        clearing: ClearingInput<'_>,
    ) -> Result<Executed, Rejection> {
        if let Some(sequence) = self.precheck(timestamp_ms, &envelope, op)? {
            return Ok(Executed::Duplicate { sequence });
        }
        let fingerprint = envelope.fingerprint();
        let ctx =
            Context { sequence: self.head.size + 1, timestamp_ms: timestamp_ms.max(self.head.timestamp_ms) };
        let effects = match envelope.signatures.as_slice() {
            // The common case, without a list to allocate.
            [only] => self.state.apply_signed(&ctx, std::slice::from_ref(&only.signer), op, clearing)?,
            _ => self.state.apply_signed(&ctx, &envelope.signers(), op, clearing)?,
        };
        let (balances_after, sections) = match &effects.clearing {
            None if effects.limit_rule.is_some() => {
                (Vec::new(), effects.limit_rule.iter().map(|o| o.to_section()).collect())
            }
            // A periodic charge's balances are in its section's parts (`charges`): a firm is
            // shown its own, never another's.
            None if effects.charges.is_some() => {
                (Vec::new(), effects.charges.iter().map(|c| c.to_section()).collect())
            }
            None => (effects.balance_changes.iter().map(|b| b.after()).collect(), Vec::new()),
            Some((record, _)) => {
                let state = &self.state;
                let section = record.to_section(
                    |id| state.invoice(id).map(|i| (&i.payer, &i.payee)),
                    |id| state.account(id).map(|a| a.balance_minor),
                );
                (Vec::new(), vec![section])
            }
        };
        let entry = Entry {
            sequence: ctx.sequence,
            timestamp_ms: ctx.timestamp_ms,
            prev_hash: self.head.hash,
            envelope,
            balances_after,
            sections,
        };
        self.record(LedgerUndo::Head(self.head));
        self.head = Head { size: ctx.sequence, hash: entry.hash(), timestamp_ms: ctx.timestamp_ms };
        let record = IdRecord { fingerprint, valid_until_ms: op.valid_until_ms, sequence: ctx.sequence };
        self.ids.insert(op.id, record);
        self.record(LedgerUndo::IdInserted(op.id));
        let gone = self.ids.prune(ctx.timestamp_ms);
        if !gone.is_empty() {
            self.record(LedgerUndo::IdsPruned(gone));
        }
        Ok(Executed::Accepted { entry, effects })
    }
}

impl crate::state::BalanceChange {
    /// The balance after the change, as an entry records it.
    pub fn after(&self) -> BalanceAfter {
        BalanceAfter { account: self.account.clone(), balance_minor: self.after_minor }
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

/// Re-executes a log, checking every entry against what it recorded.
pub struct Replayer {
    ledger: Ledger,
    verify_signatures: bool,
    /// Sum of all balances, kept up to date from each entry's balance changes, so the
    /// zero-sum invariant is checked after every entry in O(1).
    balance_sum: i128,
}

impl Replayer {
    /// From genesis. `verify_signatures: false` trusts signatures that were verified when
    /// written (the node's own start-up); an auditor always passes `true`.
    pub fn new(genesis: Genesis, verify_signatures: bool) -> Self {
        Replayer::resume(Ledger::new(genesis), verify_signatures)
    }

    /// From a ledger already at some point of the log (a stored snapshot).
    pub fn resume(ledger: Ledger, verify_signatures: bool) -> Self {
        let balance_sum = ledger.state().accounts().map(|a| i128::from(a.balance_minor)).sum();
        Replayer { ledger, verify_signatures, balance_sum }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    /// Replays `entry`: every check the writer made is made again, and the outcome must be
    /// the one recorded. Returns what the entry did.
    pub fn replay(&mut self, entry: &Entry) -> Result<Effects, ReplayError> {
        let sequence = entry.sequence;
        self.check_place(entry)?;
        let genesis = &self.ledger.genesis;
        let (currency, exponent) = (genesis.currency.clone(), genesis.exponent);
        if self.verify_signatures {
            verify_envelope(genesis, &entry.envelope)
                .map_err(|r| ReplayError::Signature { sequence, reason: r.message(&currency, exponent) })?;
        }
        let op = body::decode(&entry.envelope.body)
            .map_err(|e| ReplayError::Decode { sequence, reason: e.to_string() })?;
        let record = match entry.section(SectionTag::Clearing) {
            None => None,
            Some(section) => Some(ClearingRecord::from_section(section).map_err(|e| {
                ReplayError::Decode { sequence, reason: format!("the clearing record: {e}") }
            })?),
        };
        let executed = self
            .ledger
            .execute_with(
                entry.timestamp_ms,
                entry.envelope.clone(),
                &op,
                ClearingInput::Recorded(record.as_ref()),
            )
            .map_err(|r| ReplayError::RejectedOnReplay {
                sequence,
                reason: r.message(&currency, exponent),
            })?;
        let (replayed, effects) = match executed {
            Executed::Accepted { entry, effects } => (entry, effects),
            Executed::Duplicate { .. } => {
                return Err(ReplayError::DuplicateOperationId { sequence, operation_id: op.id });
            }
        };
        if replayed != *entry {
            return Err(ReplayError::OutcomeMismatch { sequence });
        }
        self.check_invariants(sequence, &effects)?;
        Ok(effects)
    }

    /// The checks of an entry's place in the log (sequence, chain, time), the first a
    /// replay makes: an auditor verifying signatures apart calls them to report an entry's
    /// first fault in the replayer's own order.
    pub fn check_place(&self, entry: &Entry) -> Result<(), ReplayError> {
        let (sequence, head) = (entry.sequence, self.ledger.head());
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
        Ok(())
    }

    /// The zero sum after every entry, and the limits of every account it moved: a limit
    /// binds the payments that move a balance (lowering a limit below a balance is allowed).
    fn check_invariants(&mut self, sequence: u64, effects: &Effects) -> Result<(), ReplayError> {
        let broken = |reason: String| Err(ReplayError::InvariantBroken { sequence, reason });
        let state = self.ledger.state();
        for b in &effects.balance_changes {
            self.balance_sum += i128::from(b.after_minor) - i128::from(b.before_minor);
            let Some(a) = state.account(&b.account) else {
                return broken(format!("'{}' changed but does not exist", b.account));
            };
            if a.balance_minor != b.after_minor {
                return broken(format!("'{}' is not at the balance the entry made", b.account));
            }
            let limits = state.limits(a);
            if b.after_minor < b.before_minor && b.after_minor < -limits.credit_limit_minor {
                return broken(format!("'{}' went below its credit limit", a.id));
            }
            if b.after_minor > b.before_minor
                && limits.max_balance_minor.is_some_and(|max| b.after_minor > max)
            {
                return broken(format!("'{}' went above its maximum balance", a.id));
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
    use crate::state::Account;

    #[test]
    fn ids_built_from_a_log_are_what_inserting_and_pruning_leaves() {
        // Entries a second apart, windows of 0 to 9 s, ids reused now and then.
        let mut one_by_one = OperationIds::default();
        let mut records = Vec::new();
        let mut rng = 7u64;
        for sequence in 1..=2_000u64 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let now_ms = sequence * 1_000;
            let id = OperationId([(rng >> 56) as u8 % 50; 16]);
            let record =
                IdRecord { fingerprint: [0; 16], valid_until_ms: now_ms + (rng >> 33) % 10_000, sequence };
            one_by_one.insert(id, record);
            one_by_one.prune(now_ms);
            records.push((id, record));
            if sequence % 97 == 0 {
                assert_eq!(
                    OperationIds::from_log(records.clone(), now_ms),
                    one_by_one,
                    "after entry {sequence}"
                );
            }
        }
        assert!(!one_by_one.is_empty(), "the test remembers some ids");
    }

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
            quorum: 1,
            day_offset_minutes: 0,
        };
        (genesis, admin, firm)
    }

    fn signed(genesis: &Genesis, key: &Keypair, op: &Operation) -> Envelope {
        let body = body::encode(op);
        Envelope::single(body.clone(), key.public_key(), key.sign_op(&genesis.ledger_id, &body))
    }

    fn register(n: u8, name: &str, firm: &Keypair) -> Operation {
        Operation {
            id: OperationId([n; 16]),
            valid_until_ms: 10_000,
            kind: OpKind::RegisterAccount(RegisterAccount {
                account: AccountId::parse(name).unwrap(),
                display_name: name.into(),
                keys: vec![firm.public_key()],
                credit_limit_minor: 1_000,
                max_balance_minor: None,
                profile: Default::default(),
                // The tests' firms share one key.
                allow_shared_key: true,
            }),
        }
    }

    fn pay(n: u8, amount_minor: i64) -> Operation {
        Operation {
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
        }
    }

    fn accepted(executed: Executed) -> Entry {
        match executed {
            Executed::Accepted { entry, .. } => entry,
            Executed::Duplicate { sequence } => panic!("a duplicate of entry {sequence}"),
        }
    }

    /// Builds a log of four entries.
    fn log() -> (Genesis, Vec<Entry>) {
        let (genesis, admin, firm) = setup();
        let ops = [register(1, "aaa", &firm), register(2, "bbb", &firm), pay(3, 300), pay(4, 200)];
        let mut ledger = Ledger::new(genesis.clone());
        let mut entries = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let key = if i < 2 { &admin } else { &firm };
            entries.push(accepted(ledger.execute(1_000 + i as u64, signed(&genesis, key, op), op).unwrap()));
        }
        assert_eq!(ledger.state().account(&AccountId::parse("aaa").unwrap()).unwrap().balance_minor, -500);
        (genesis, entries)
    }

    fn replay_all(genesis: &Genesis, entries: &[Entry]) -> Result<Ledger, ReplayError> {
        let mut r = Replayer::new(genesis.clone(), true);
        for e in entries {
            r.replay(e)?;
        }
        Ok(r.into_ledger())
    }

    #[test]
    fn an_honest_log_replays_to_the_same_state() {
        let (genesis, entries) = log();
        let ledger = replay_all(&genesis, &entries).unwrap();
        assert_eq!(ledger.head().size, 4);
        assert_eq!(ledger.head().hash, entries[3].hash());
        assert_eq!(ledger.state().check_invariants(), Ok(()));
    }

    #[test]
    fn tampering_is_caught_at_the_first_bad_entry() {
        let (genesis, entries) = log();
        let check = |entries: Vec<Entry>, expected: ReplayError| {
            assert_eq!(replay_all(&genesis, &entries).unwrap_err(), expected);
        };
        let mut e = entries.clone();
        e[2].balances_after[0].balance_minor = -299;
        check(e, ReplayError::OutcomeMismatch { sequence: 3 });
        let mut e = entries.clone();
        e[3].envelope.body[0] ^= 1;
        assert!(matches!(replay_all(&genesis, &e), Err(ReplayError::Signature { sequence: 4, .. })));
        let mut e = entries.clone();
        e.remove(1);
        check(e, ReplayError::Sequence { sequence: 3, expected: 2 });
        let mut e = entries.clone();
        e[1].prev_hash = [0; 32];
        check(e, ReplayError::BrokenChain { sequence: 2 });
        let mut e = entries.clone();
        e[1].timestamp_ms = 999;
        check(e, ReplayError::TimeWentBack { sequence: 2, timestamp_ms: 999, previous_ms: 1_000 });
    }

    #[test]
    fn a_rejected_operation_leaves_no_trace() {
        let (genesis, _admin, firm) = setup();
        let op = register(1, "aaa", &firm);
        let mut ledger = Ledger::new(genesis.clone());
        let before = (ledger.state().digest(), *ledger.head());
        let err = ledger.execute(5, signed(&genesis, &firm, &op), &op).unwrap_err();
        assert_eq!(err, Rejection::NotAdministrator);
        assert_eq!((ledger.state().digest(), *ledger.head()), before);
        assert!(ledger.ids().is_empty());
    }

    #[test]
    fn timestamps_never_go_back() {
        let (genesis, entries) = log();
        let mut ledger = replay_all(&genesis, &entries).unwrap();
        let (_, _, firm) = setup();
        let op = pay(5, 10);
        let entry = accepted(ledger.execute(10, signed(&genesis, &firm, &op), &op).unwrap());
        assert_eq!(entry.timestamp_ms, 1_003, "clock went back: the last timestamp is kept");
    }

    #[test]
    fn a_retry_is_a_duplicate_within_its_window_and_expired_after() {
        let (genesis, admin, firm) = setup();
        let mut ledger = Ledger::new(genesis.clone());
        for op in [register(1, "aaa", &firm), register(2, "bbb", &firm)] {
            ledger.execute(1_000, signed(&genesis, &admin, &op), &op).unwrap();
        }
        let op = pay(3, 10);
        let envelope = signed(&genesis, &firm, &op);
        accepted(ledger.execute(2_000, envelope.clone(), &op).unwrap());
        assert_eq!(ledger.execute(9_000, envelope.clone(), &op), Ok(Executed::Duplicate { sequence: 3 }));
        // The same id, another body: a conflict.
        let other = pay(3, 11);
        assert!(matches!(
            ledger.execute(9_000, signed(&genesis, &firm, &other), &other),
            Err(Rejection::OperationIdConflict { .. })
        ));
        // The same body signed by another key: a conflict too, never the original's receipt.
        let stranger = Keypair::from_seed(&[7; 32]);
        assert!(matches!(
            ledger.execute(9_000, signed(&genesis, &stranger, &op), &op),
            Err(Rejection::OperationIdConflict { .. })
        ));
        // Once an entry is later than its window, the id is forgotten; a retry is expired.
        let later = Operation { valid_until_ms: 30_000, ..pay(4, 1) };
        accepted(ledger.execute(10_001, signed(&genesis, &firm, &later), &later).unwrap());
        assert!(ledger.ids().get(&op.id).is_none());
        assert!(matches!(ledger.execute(10_002, envelope, &op), Err(Rejection::Expired { .. })));
    }

    #[test]
    fn undo_takes_the_ledger_back_to_a_mark_exactly() {
        let (genesis, admin, firm) = setup();
        let mut ledger = Ledger::new(genesis.clone());
        ledger.start_journal();
        for op in [register(1, "aaa", &firm), register(2, "bbb", &firm)] {
            ledger.execute(1_000, signed(&genesis, &admin, &op), &op).unwrap();
        }
        let kept = ledger.clone();
        let mark = ledger.mark();
        ledger.forget_before(mark);
        for (n, amount) in [(3, 100), (4, 200)] {
            let op = Operation { valid_until_ms: 30_000, ..pay(n, amount) };
            accepted(ledger.execute(11_000, signed(&genesis, &firm, &op), &op).unwrap());
        }
        assert_ne!(ledger.state().digest(), kept.state().digest());
        ledger.undo_to(mark);
        assert_eq!(ledger.state().digest(), kept.state().digest());
        assert_eq!(ledger.head(), kept.head());
        assert_eq!(ledger.ids(), kept.ids(), "the ids pruned at 11,000 are back");
    }

    fn set_profile(n: u8, change: crate::profile::ProfileChange, name: Option<&str>) -> Operation {
        Operation {
            id: OperationId([n; 16]),
            valid_until_ms: 100_000,
            kind: OpKind::SetProfile(crate::op::SetProfile {
                account: AccountId::parse("aaa").unwrap(),
                display_name: name.map(str::to_string),
                profile: change,
                reason: "moved to Lunel".into(),
            }),
        }
    }

    #[test]
    fn a_profile_is_set_at_registration_changed_with_a_reason_and_checked() {
        use crate::profile::{Profile, ProfileChange};
        let (genesis, admin, firm) = setup();
        let mut ledger = Ledger::new(genesis.clone());
        let mut op = register(1, "aaa", &firm);
        if let OpKind::RegisterAccount(r) = &mut op.kind {
            r.profile =
                Profile { sector: Some("10.71".into()), commune: Some("34145".into()), ..Profile::default() };
        }
        accepted(ledger.execute(1_000, signed(&genesis, &admin, &op), &op).unwrap());
        let aaa = AccountId::parse("aaa").unwrap();
        let change = ProfileChange {
            commune: Some(Some("2A004".into())),
            territory: Some(Some("Pays ajaccien".into())),
            sector: Some(None),
            ..ProfileChange::default()
        };
        let op = set_profile(2, change, Some("Boulangerie Martin"));
        accepted(ledger.execute(2_000, signed(&genesis, &admin, &op), &op).unwrap());
        let a = ledger.state().account(&aaa).unwrap();
        assert_eq!(a.display_name, "Boulangerie Martin");
        assert_eq!(
            a.profile,
            Profile {
                commune: Some("2A004".into()),
                territory: Some("Pays ajaccien".into()),
                ..Profile::default()
            }
        );
        assert_eq!(a.last_sequence, 2);
        assert_eq!(Account::decode(&a.encode()).as_ref(), Ok(a));

        // A firm may not change its own profile; a bad value is refused naming it.
        let before = ledger.state().digest();
        let op = set_profile(
            3,
            ProfileChange { size_class: Some(Some("1-9".into())), ..ProfileChange::default() },
            None,
        );
        assert_eq!(
            ledger.execute(3_000, signed(&genesis, &firm, &op), &op).unwrap_err(),
            Rejection::NotAdministrator
        );
        let check = |change: ProfileChange, name: Option<&str>, code: crate::RejectCode, needle: &str| {
            let op = set_profile(4, change, name);
            let mut l = ledger.clone();
            let err = l.execute(3_000, signed(&genesis, &admin, &op), &op).unwrap_err();
            assert_eq!(err.code(), code, "{err:?}");
            assert!(err.message("CHW", 2).contains(needle), "{:?} lacks {needle:?}", err.message("CHW", 2));
            assert_eq!(l.state().digest(), before);
        };
        use crate::RejectCode::{InvalidProfile, InvalidText, NothingToChange};
        check(
            ProfileChange { sector: Some(Some("34".into())), ..ProfileChange::default() },
            None,
            InvalidProfile,
            "invalid profile: sector '34' is not a NACE rev. 2 division",
        );
        check(
            ProfileChange { commune: Some(Some("20004".into())), ..ProfileChange::default() },
            None,
            InvalidProfile,
            "Corsican communes are numbered 2A",
        );
        check(ProfileChange::default(), None, NothingToChange, "nothing to change: give a new display name");
        check(ProfileChange::default(), Some("  "), InvalidText, "cannot be blank");
        let mut bad = register(5, "bbb", &firm);
        if let OpKind::RegisterAccount(r) = &mut bad.kind {
            r.profile.size_class = Some("12".into());
        }
        let err = ledger.clone().execute(3_000, signed(&genesis, &admin, &bad), &bad).unwrap_err();
        assert_eq!(err.code(), InvalidProfile);
    }

    #[test]
    fn negative_since_and_last_activity_follow_the_payments() {
        let (genesis, admin, firm) = setup();
        let mut ledger = Ledger::new(genesis.clone());
        let mut entries = Vec::new();
        for op in [register(1, "aaa", &firm), register(2, "bbb", &firm)] {
            entries.push(accepted(ledger.execute(1_000, signed(&genesis, &admin, &op), &op).unwrap()));
        }
        let (aaa, bbb) = (AccountId::parse("aaa").unwrap(), AccountId::parse("bbb").unwrap());
        let activity = |l: &Ledger, id: &AccountId| {
            let a = l.state().account(id).unwrap();
            (a.negative_since_ms, a.last_activity_ms)
        };
        assert_eq!(activity(&ledger, &aaa), (None, None));
        let digest_before = ledger.state().digest();
        let mut pay_at = |l: &mut Ledger, n: u8, at: u64, payer: &str, payee: &str, amount: i64| {
            let mut op = pay(n, amount);
            if let OpKind::Transfer(t) = &mut op.kind {
                t.payer = AccountId::parse(payer).unwrap();
                t.payee = AccountId::parse(payee).unwrap();
            }
            entries.push(accepted(l.execute(at, signed(&genesis, &firm, &op), &op).unwrap()));
        };
        pay_at(&mut ledger, 3, 2_000, "aaa", "bbb", 300);
        assert_eq!(activity(&ledger, &aaa), (Some(2_000), Some(2_000)));
        assert_eq!(activity(&ledger, &bbb), (None, Some(2_000)));
        pay_at(&mut ledger, 4, 3_000, "aaa", "bbb", 100);
        assert_eq!(activity(&ledger, &aaa), (Some(2_000), Some(3_000)), "still negative since the first");
        pay_at(&mut ledger, 5, 4_000, "bbb", "aaa", 400);
        assert_eq!(activity(&ledger, &aaa), (None, Some(4_000)), "back at zero");
        assert_eq!(activity(&ledger, &bbb), (None, Some(4_000)));
        pay_at(&mut ledger, 6, 5_000, "bbb", "aaa", 1);
        assert_eq!(activity(&ledger, &bbb), (Some(5_000), Some(5_000)));
        // The activity is in the stored record and in the digest: two states that differ
        // only in when an account last moved have different digests.
        let a = ledger.state().account(&bbb).unwrap().clone();
        assert_eq!(Account::decode(&a.encode()), Ok(a.clone()));
        let mut quiet = a.clone();
        (quiet.negative_since_ms, quiet.last_activity_ms) = (None, None);
        assert_ne!(quiet.encode(), a.encode());
        assert_eq!(Account::decode(&quiet.encode()), Ok(quiet.clone()));
        let accounts = ledger.state().accounts().map(|x| if x.id == bbb { quiet.clone() } else { x.clone() });
        let other = crate::State::from_parts(&genesis, accounts.collect::<Vec<_>>(), []);
        assert_ne!(other.digest(), ledger.state().digest());
        assert_ne!(ledger.state().digest(), digest_before);
        // A replay computes the same activity.
        let replayed = replay_all(&genesis, &entries).unwrap();
        for id in [&aaa, &bbb] {
            assert_eq!(replayed.state().account(id), ledger.state().account(id));
        }
    }

    #[test]
    fn account_records_refuse_unknown_or_disordered_extensions() {
        let (genesis, admin, firm) = setup();
        let mut ledger = Ledger::new(genesis.clone());
        let op = register(1, "aaa", &firm);
        ledger.execute(1_000, signed(&genesis, &admin, &op), &op).unwrap();
        let mut a = ledger.state().account(&AccountId::parse("aaa").unwrap()).unwrap().clone();
        let plain = a.encode();
        assert_eq!(*plain.last().unwrap(), 0, "no extension: the record of before profiles");
        a.profile.commune = Some("75056".into());
        a.last_activity_ms = Some(9);
        let bytes = a.encode();
        let at = plain.len() - 1;
        assert_eq!(bytes[at], 2);
        let mut unknown = bytes.clone();
        unknown[at + 1] = 9;
        assert!(Account::decode(&unknown).is_err());
        let mut swapped = plain[..at].to_vec();
        swapped.push(2);
        let tail = &bytes[at + 1..];
        let profile_len = 1 + 4 + u32::from_be_bytes(tail[1..5].try_into().unwrap()) as usize;
        swapped.extend_from_slice(&tail[profile_len..]);
        swapped.extend_from_slice(&tail[..profile_len]);
        assert!(Account::decode(&swapped).is_err(), "extensions out of order");
    }
}
