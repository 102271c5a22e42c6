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
use crate::state::{Context, Effects, State};

/// The end of the log: how many entries, the last hash, the last timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub hash: [u8; 32],
    pub timestamp_ms: u64,
}

impl Head {
    pub fn empty(genesis: &Genesis) -> Self {
        Head {
            size: 0,
            hash: genesis.hash(),
            timestamp_ms: 0,
        }
    }
}

/// Checks an envelope's size and its signature for this ledger (strict verification).
/// Costly (tens of microseconds): the node runs it before the single writer.
pub fn verify_envelope(genesis: &Genesis, envelope: &Envelope) -> Result<(), Rejection> {
    if envelope.body.len() > BODY_BYTES_MAX {
        return Err(Rejection::BodyTooLarge {
            bytes: envelope.body.len(),
        });
    }
    let msg = sign::op_message(&genesis.ledger_id, &envelope.body);
    sign::verify(&envelope.signer, &msg, &envelope.signature).map_err(|e| Rejection::BadSignature {
        detail: e.to_string(),
    })
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
        Ledger {
            genesis,
            state,
            head,
        }
    }

    /// A ledger resumed from stored parts. The caller vouches they belong together.
    pub fn from_parts(genesis: Genesis, state: State, head: Head) -> Self {
        Ledger {
            genesis,
            state,
            head,
        }
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
    pub fn execute(
        &mut self,
        timestamp_ms: u64,
        envelope: Envelope,
        op: &Operation,
    ) -> Result<(Entry, Effects), Rejection> {
        let ctx = Context {
            sequence: self.head.size + 1,
            timestamp_ms: timestamp_ms.max(self.head.timestamp_ms),
        };
        let effects = self.state.apply(&ctx, &envelope.signer, op)?;
        let entry = Entry {
            sequence: ctx.sequence,
            timestamp_ms: ctx.timestamp_ms,
            prev_hash: self.head.hash,
            envelope,
            balances_after: effects.balances_after.clone(),
        };
        self.head = Head {
            size: ctx.sequence,
            hash: entry.hash(),
            timestamp_ms: ctx.timestamp_ms,
        };
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
    #[error(
        "entry {sequence}: timestamp {timestamp_ms} is earlier than the previous entry's {previous_ms}"
    )]
    TimeWentBack {
        sequence: u64,
        timestamp_ms: u64,
        previous_ms: u64,
    },
    #[error("entry {sequence}: signature does not verify: {reason}")]
    Signature { sequence: u64, reason: String },
    #[error("entry {sequence}: body does not decode: {reason}")]
    Decode { sequence: u64, reason: String },
    #[error("entry {sequence}: operation id {operation_id} was already used by an earlier entry")]
    DuplicateOperationId {
        sequence: u64,
        operation_id: OperationId,
    },
    #[error("entry {sequence}: the operation is rejected on replay: {reason}")]
    RejectedOnReplay { sequence: u64, reason: String },
    #[error("entry {sequence}: the recorded outcome differs from the replayed one")]
    OutcomeMismatch { sequence: u64 },
}

/// Re-executes a log from genesis, checking every entry against what it recorded.
pub struct Replayer {
    ledger: Ledger,
    verify_signatures: bool,
    seen_ids: HashSet<OperationId>,
}

impl Replayer {
    /// `verify_signatures: false` trusts signatures that were verified when written (the
    /// node's own start-up check); an auditor always passes `true`.
    pub fn new(genesis: Genesis, verify_signatures: bool) -> Self {
        Replayer {
            ledger: Ledger::new(genesis),
            verify_signatures,
            seen_ids: HashSet::new(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    /// Replays `entry`, whose body the caller decoded into `op` (or failed to: pass the
    /// error text). Every check that the writer made is made again.
    pub fn replay(
        &mut self,
        entry: &Entry,
        op: Result<&Operation, String>,
    ) -> Result<(), ReplayError> {
        let sequence = entry.sequence;
        let head = *self.ledger.head();
        if sequence != head.size + 1 {
            return Err(ReplayError::Sequence {
                sequence,
                expected: head.size + 1,
            });
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
            verify_envelope(&self.ledger.genesis, &entry.envelope).map_err(|r| {
                ReplayError::Signature {
                    sequence,
                    reason: r.message("", 0),
                }
            })?;
        }
        let op = op.map_err(|reason| ReplayError::Decode { sequence, reason })?;
        if !self.seen_ids.insert(op.id) {
            return Err(ReplayError::DuplicateOperationId {
                sequence,
                operation_id: op.id,
            });
        }
        let (currency, exponent) = (
            self.ledger.genesis.currency.clone(),
            self.ledger.genesis.exponent,
        );
        let (replayed, _) = self
            .ledger
            .execute(entry.timestamp_ms, entry.envelope.clone(), op)
            .map_err(|r| ReplayError::RejectedOnReplay {
                sequence,
                reason: r.message(&currency, exponent),
            })?;
        if replayed != *entry {
            return Err(ReplayError::OutcomeMismatch { sequence });
        }
        Ok(())
    }
}
