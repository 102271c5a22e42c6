//! The storage adapter: persists in sled what the core decided, and reads it back.
//!
//! Layout: one sled tree, keys prefixed by kind, integers big-endian so key order is
//! numeric order, every value starting with a version byte (inside the core's codec):
//!
//! | key                              | value                                  |
//! |----------------------------------|----------------------------------------|
//! | `m/genesis`                      | `Genesis::encode`                      |
//! | `m/head`                         | version, size u64, hash, timestamp u64 |
//! | `l` sequence                     | `Entry::encode`                        |
//! | `a` handle                       | `Account::encode`                      |
//! | `o` operation id                 | version, body hash, sequence u64       |
//! | `h` handle `0x00` sequence       | empty (the account's history index)    |
//!
//! Crash contract (today): `Store::commit` writes a group of entries, the accounts they
//! changed, their operation ids, history index rows and the new head in one sled batch,
//! which sled makes all-or-nothing after recovery. It then calls `sled::Db::flush`, which
//! on Linux issues `sync_file_range`, not `fsync`: an acknowledged group survives a crash
//! of the node process, but a power cut or kernel crash may lose the most recent groups,
//! and sled 0.34 has reported corruption after hard kills. See ARCHITECTURE.md.
//!
//! On open the state is checked against the log: the log is replayed from genesis and the
//! replayed state digest and head must equal the stored ones. If they differ, the state is
//! rebuilt from the log, which is the source of truth.

use std::path::Path;

use cercle_core::{
    Account, AccountId, Entry, Genesis, Head, Ledger, OperationId, ReplayError, Replayer, State,
};

const GENESIS_KEY: &[u8] = b"m/genesis";
const HEAD_KEY: &[u8] = b"m/head";
const LOG_PREFIX: u8 = b'l';
const ACCOUNT_PREFIX: u8 = b'a';
const OPERATION_PREFIX: u8 = b'o';
const HISTORY_PREFIX: u8 = b'h';
const RECORD_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("the data directory {0} already holds a ledger")]
    AlreadyInitialised(String),
    #[error("the data directory {0} holds no ledger: run `cercle-node init` first")]
    NotInitialised(String),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the log does not replay: {0}")]
    Replay(#[from] ReplayError),
}

fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
    StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: reason.to_string() }
}

/// What the store remembers about an accepted operation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationRecord {
    pub body_hash: [u8; 32],
    pub sequence: u64,
}

/// One accepted operation, ready to persist.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub entry: Entry,
    pub operation_id: OperationId,
    /// The new state of every account the operation touched.
    pub accounts: Vec<Account>,
}

/// How `Store::open_ledger` found the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenOutcome {
    /// The stored state equals the replayed log.
    Verified,
    /// They differed (or the state was missing): the state was rebuilt from the log.
    Rebuilt,
}

pub struct Store {
    db: sled::Db,
}

fn log_key(sequence: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = LOG_PREFIX;
    k[1..].copy_from_slice(&sequence.to_be_bytes());
    k
}

fn account_key(id: &AccountId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.as_str().len());
    k.push(ACCOUNT_PREFIX);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn operation_key(id: &OperationId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = OPERATION_PREFIX;
    k[1..].copy_from_slice(&id.0);
    k
}

fn history_prefix(id: &AccountId) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + id.as_str().len() + 8);
    k.push(HISTORY_PREFIX);
    k.extend_from_slice(id.as_str().as_bytes());
    // Handles never contain 0x00, so "abc\0" cannot be a prefix of another handle's rows.
    k.push(0);
    k
}

fn history_key(id: &AccountId, sequence: u64) -> Vec<u8> {
    let mut k = history_prefix(id);
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

fn encode_head(head: &Head) -> Vec<u8> {
    let mut v = Vec::with_capacity(49);
    v.push(RECORD_VERSION);
    v.extend_from_slice(&head.size.to_be_bytes());
    v.extend_from_slice(&head.hash);
    v.extend_from_slice(&head.timestamp_ms.to_be_bytes());
    v
}

fn decode_head(v: &[u8]) -> Result<Head, StoreError> {
    if v.len() != 49 || v[0] != RECORD_VERSION {
        return Err(corrupt(HEAD_KEY, "bad length or version"));
    }
    let u64_at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().unwrap_or([0; 8]));
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&v[9..41]);
    Ok(Head { size: u64_at(1), hash, timestamp_ms: u64_at(41) })
}

fn encode_operation_record(r: &OperationRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(41);
    v.push(RECORD_VERSION);
    v.extend_from_slice(&r.body_hash);
    v.extend_from_slice(&r.sequence.to_be_bytes());
    v
}

fn decode_operation_record(key: &[u8], v: &[u8]) -> Result<OperationRecord, StoreError> {
    if v.len() != 41 || v[0] != RECORD_VERSION {
        return Err(corrupt(key, "bad operation record"));
    }
    let mut body_hash = [0u8; 32];
    body_hash.copy_from_slice(&v[1..33]);
    let sequence = u64::from_be_bytes(v[33..41].try_into().unwrap_or([0; 8]));
    Ok(OperationRecord { body_hash, sequence })
}

impl Store {
    /// Creates a new ledger in `dir` with `genesis`. Fails if one is already there.
    pub fn create(dir: &Path, genesis: &Genesis) -> Result<Store, StoreError> {
        let db = sled::open(dir)?;
        if db.contains_key(GENESIS_KEY)? {
            return Err(StoreError::AlreadyInitialised(dir.display().to_string()));
        }
        let mut batch = sled::Batch::default();
        batch.insert(GENESIS_KEY, genesis.encode());
        batch.insert(HEAD_KEY, encode_head(&Head::empty(genesis)));
        db.apply_batch(batch)?;
        db.flush()?;
        Ok(Store { db })
    }

    /// Opens the ledger in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        if !dir.join("conf").exists() {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        let db = sled::open(dir)?;
        if !db.contains_key(GENESIS_KEY)? {
            return Err(StoreError::NotInitialised(dir.display().to_string()));
        }
        Ok(Store { db })
    }

    /// True when `dir` holds a Cercle ledger.
    pub fn exists(dir: &Path) -> bool {
        dir.join("conf").exists()
    }

    pub fn genesis(&self) -> Result<Genesis, StoreError> {
        let v = self.db.get(GENESIS_KEY)?.ok_or_else(|| corrupt(GENESIS_KEY, "missing"))?;
        Genesis::decode(&v).map_err(|e| corrupt(GENESIS_KEY, e))
    }

    pub fn head(&self) -> Result<Head, StoreError> {
        let v = self.db.get(HEAD_KEY)?.ok_or_else(|| corrupt(HEAD_KEY, "missing"))?;
        decode_head(&v)
    }

    /// Loads the ledger and checks the stored state against a replay of the log. When
    /// they disagree, the state is rebuilt from the log (the log is the truth).
    pub fn open_ledger(&self) -> Result<(Ledger, OpenOutcome), StoreError> {
        let genesis = self.genesis()?;
        let replayed = self.replay(&genesis, false)?;
        let stored_head = self.head()?;
        let stored_state = State::from_accounts(&genesis, self.accounts()?);
        if stored_head == *replayed.head() && stored_state.digest() == replayed.state().digest() {
            return Ok((replayed, OpenOutcome::Verified));
        }
        tracing::warn!(
            stored_size = stored_head.size,
            log_size = replayed.head().size,
            "stored state disagrees with the log; rebuilding the state from the log"
        );
        self.write_state(&replayed)?;
        Ok((replayed, OpenOutcome::Rebuilt))
    }

    /// Replays the whole log from genesis. `verify_signatures` checks every signature
    /// again (an audit); without it only the chain, the decoding and the outcomes are
    /// checked, which is what start-up needs.
    pub fn replay(&self, genesis: &Genesis, verify_signatures: bool) -> Result<Ledger, StoreError> {
        let mut replayer = Replayer::new(genesis.clone(), verify_signatures);
        for item in self.db.scan_prefix([LOG_PREFIX]) {
            let (key, value) = item?;
            let entry = Entry::decode(&value).map_err(|e| corrupt(&key, e))?;
            let op = cercle_proto::decode_operation(&entry.envelope.body).map_err(|r| r.message("", 0));
            replayer.replay(&entry, op.as_ref().map_err(Clone::clone))?;
        }
        Ok(replayer.into_ledger())
    }

    /// Replaces the derived state (accounts, operation ids, histories, head) by the one
    /// of `ledger`, rebuilt from the log. The log and genesis are left untouched.
    pub fn write_state(&self, ledger: &Ledger) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for prefix in [ACCOUNT_PREFIX, OPERATION_PREFIX, HISTORY_PREFIX] {
            for item in self.db.scan_prefix([prefix]) {
                let (key, _) = item?;
                batch.remove(key);
            }
        }
        for account in ledger.state().accounts() {
            batch.insert(account_key(&account.id), account.encode());
        }
        for item in self.db.scan_prefix([LOG_PREFIX]) {
            let (key, value) = item?;
            let entry = Entry::decode(&value).map_err(|e| corrupt(&key, e))?;
            let op = cercle_proto::decode_operation(&entry.envelope.body)
                .map_err(|r| corrupt(&key, r.message("", 0)))?;
            let record = OperationRecord { body_hash: entry.envelope.body_hash(), sequence: entry.sequence };
            batch.insert(&operation_key(&op.id), encode_operation_record(&record));
            for account in op.kind.accounts() {
                batch.insert(history_key(account, entry.sequence), &[]);
            }
        }
        batch.insert(HEAD_KEY, encode_head(ledger.head()));
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Persists a group of accepted operations and the new head in one atomic batch,
    /// then flushes (see the crash contract in the module docs).
    pub fn commit(&self, accepted: &[Accepted], head: &Head) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for a in accepted {
            let seq = a.entry.sequence;
            batch.insert(&log_key(seq), a.entry.encode());
            let record = OperationRecord { body_hash: a.entry.envelope.body_hash(), sequence: seq };
            batch.insert(&operation_key(&a.operation_id), encode_operation_record(&record));
            for account in &a.accounts {
                batch.insert(account_key(&account.id), account.encode());
                batch.insert(history_key(&account.id, seq), &[]);
            }
        }
        batch.insert(HEAD_KEY, encode_head(head));
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn operation(&self, id: &OperationId) -> Result<Option<OperationRecord>, StoreError> {
        let key = operation_key(id);
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => decode_operation_record(&key, &v).map(Some),
        }
    }

    pub fn entry(&self, sequence: u64) -> Result<Option<Entry>, StoreError> {
        let key = log_key(sequence);
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => Entry::decode(&v).map(Some).map_err(|e| corrupt(&key, e)),
        }
    }

    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let key = account_key(id);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(v) => Account::decode(&v).map(Some).map_err(|e| corrupt(&key, e)),
        }
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.db
            .scan_prefix([ACCOUNT_PREFIX])
            .map(|item| {
                let (key, value) = item?;
                Account::decode(&value).map_err(|e| corrupt(&key, e))
            })
            .collect()
    }

    /// Up to `limit` entries touching `id` with a sequence above `after_sequence`, oldest
    /// first, and whether more follow.
    pub fn history(
        &self,
        id: &AccountId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        let prefix = history_prefix(id);
        let start = history_key(id, after_sequence.saturating_add(1));
        let mut entries = Vec::new();
        for item in self.db.range(start..) {
            let (key, _) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            if entries.len() == limit {
                return Ok((entries, true));
            }
            let seq_bytes: [u8; 8] =
                key[prefix.len()..].try_into().map_err(|_| corrupt(&key, "bad history key"))?;
            let seq = u64::from_be_bytes(seq_bytes);
            let entry = self.entry(seq)?.ok_or_else(|| corrupt(&key, "history names a missing entry"))?;
            entries.push(entry);
        }
        Ok((entries, false))
    }

    /// Damages the stored state on purpose (tests of the start-up check only).
    #[doc(hidden)]
    pub fn corrupt_state_for_tests(&self, id: &AccountId, balance_minor: i64) -> Result<(), StoreError> {
        if let Some(mut account) = self.account(id)? {
            account.balance_minor = balance_minor;
            self.db.insert(account_key(id), account.encode())?;
            self.db.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cercle_core::sign::Keypair;
    use cercle_core::{Envelope, LedgerId, OpKind, Operation, RegisterAccount, Transfer};

    fn genesis(admin: &Keypair) -> Genesis {
        Genesis {
            ledger_id: LedgerId([4; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![admin.public_key()],
            auditor_keys: vec![],
            node_key: Keypair::from_seed(&[8; 32]).public_key(),
        }
    }

    /// Runs `ops` through a ledger and commits each accepted one as its own group.
    fn write(store: &Store, ledger: &mut Ledger, ops: &[(Keypair, Operation)]) {
        for (key, op) in ops {
            let body = cercle_proto::encode_operation(op);
            let envelope = Envelope {
                signature: key.sign_op(&ledger.genesis().ledger_id, &body),
                body,
                signer: key.public_key(),
            };
            let (entry, effects) = ledger.execute(1_000, envelope, op).unwrap();
            let accounts =
                effects.touched.iter().map(|a| ledger.state().account(a).unwrap().clone()).collect();
            store.commit(&[Accepted { entry, operation_id: op.id, accounts }], ledger.head()).unwrap();
        }
    }

    fn ops(admin: &Keypair, firm: &Keypair) -> Vec<(Keypair, Operation)> {
        let register = |n: u8, name: &str| Operation {
            id: OperationId([n; 16]),
            valid_until_ms: 5_000,
            kind: OpKind::RegisterAccount(RegisterAccount {
                account: AccountId::parse(name).unwrap(),
                display_name: name.into(),
                keys: vec![firm.public_key()],
                credit_limit_minor: 10_000,
                max_balance_minor: None,
            }),
        };
        let pay = Operation {
            id: OperationId([3; 16]),
            valid_until_ms: 5_000,
            kind: OpKind::Transfer(Transfer {
                payer: AccountId::parse("payer").unwrap(),
                payee: AccountId::parse("payee").unwrap(),
                amount_minor: 2_500,
                memo: "m".into(),
                invoice_ref: None,
            }),
        };
        vec![
            (admin.clone(), register(1, "payer")),
            (admin.clone(), register(2, "payee")),
            (firm.clone(), pay),
        ]
    }

    #[test]
    fn state_survives_reopen_and_is_rebuilt_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Keypair::from_seed(&[1; 32]);
        let firm = Keypair::from_seed(&[2; 32]);
        let g = genesis(&admin);
        let payer = AccountId::parse("payer").unwrap();
        let digest = {
            let store = Store::create(dir.path(), &g).unwrap();
            let mut ledger = Ledger::new(g.clone());
            write(&store, &mut ledger, &ops(&admin, &firm));
            assert_eq!(store.account(&payer).unwrap().unwrap().balance_minor, -2_500);
            let (history, more) = store.history(&payer, 0, 10).unwrap();
            assert_eq!((history.len(), more), (2, false));
            let (page, more) = store.history(&payer, 0, 1).unwrap();
            assert_eq!((page[0].sequence, more), (1, true));
            assert_eq!(store.operation(&OperationId([3; 16])).unwrap().unwrap().sequence, 3);
            ledger.state().digest()
        };
        {
            let store = Store::open(dir.path()).unwrap();
            let (ledger, outcome) = store.open_ledger().unwrap();
            assert_eq!(outcome, OpenOutcome::Verified);
            assert_eq!(ledger.state().digest(), digest);
            store.corrupt_state_for_tests(&payer, 777).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let (ledger, outcome) = store.open_ledger().unwrap();
        assert_eq!(outcome, OpenOutcome::Rebuilt);
        assert_eq!(ledger.state().digest(), digest);
        assert_eq!(store.account(&payer).unwrap().unwrap().balance_minor, -2_500);
        assert_eq!(store.open_ledger().unwrap().1, OpenOutcome::Verified);
    }

    #[test]
    fn opening_an_empty_directory_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("holds no ledger"), "{err}");
        let admin = Keypair::from_seed(&[1; 32]);
        drop(Store::create(dir.path(), &genesis(&admin)).unwrap());
        let err = Store::create(dir.path(), &genesis(&admin)).err().unwrap();
        assert!(err.to_string().contains("already holds a ledger"), "{err}");
    }
}
