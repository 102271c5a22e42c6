//! The replay: signatures in parallel, everything else in order, and the Merkle root
//! against the signed tree head.
//!
//! Verifying signatures is what costs (tens of microseconds each); everything else is a
//! few microseconds an entry. So the log is read in rounds: while one thread per core
//! verifies the signatures of round `k` (and decodes its bodies and hashes its leaves), the
//! calling thread replays round `k - 1`, whose signatures are known, with a
//! [`Replayer`] that does not verify them again, reads round `k + 1`, and then helps with
//! the signatures of round `k`. A round is cut into pieces of at most 256 entries that
//! whichever thread is free takes next, so that no core idles at the end of a round.
//! Rounds start at 64 entries a thread and double up to [`AUDIT_ROUND_ENTRIES_MAX`] (more with
//! many cores), so a log that is bad near its start fails at once, and memory stays
//! bounded whatever the log's length.
//!
//! The first bad entry is reported, with the reason the core's [`Replayer`] would give if
//! it checked the signatures itself: a signature failure is reported only after the
//! sequence, the chain and the timestamp of that entry were found in order.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cercle_core::checkpoint::TreeHeadError;
use cercle_core::merkle::{self, Frontier, Hash};
use cercle_core::{Entry, Genesis, Ledger, Rejection, ReplayError, Replayer, verify_envelope};
use cercle_limits::{AUDIT_ROUND_ENTRIES_FIRST_PER_THREAD, AUDIT_ROUND_ENTRIES_MAX, AUDIT_THREADS_MAX};

pub use cercle_core::checkpoint::SignedTreeHead;

/// How to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Threads verifying signatures; by default one per core.
    pub threads: usize,
    /// When the entries come from a file with one entry a line, entry `n` (counting from
    /// 1) is on line `n + line_offset`; failures then name the line too.
    pub line_offset: Option<u64>,
    /// Whether entries after the tree head's size are accepted (they are checked, and the
    /// root is taken at the tree head's size). By default the tree head must commit to
    /// exactly the entries checked, so that an entry appended to an exported log is caught.
    pub allow_entries_after_tree_head: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            line_offset: None,
            allow_entries_after_tree_head: false,
        }
    }
}

/// Where an entry is in the log as read: its place (1 for the first entry read, which in
/// an honest log is also its sequence) and its line in the source file, if it has lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: u64,
    pub line: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry #{} of the log", self.index)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Why an entry could not be read at all: a malformed line, a read error, a cut stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// The line of the source file, when it has lines.
    pub line: Option<u64>,
    pub message: String,
}

impl SourceError {
    pub fn new(line: Option<u64>, message: impl Into<String>) -> Self {
        SourceError { line, message: message.into() }
    }
}

/// What is wrong with a signed tree head, or with the log against it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeHeadProblem {
    #[error(transparent)]
    NotTheNodes(#[from] TreeHeadError),
    #[error(
        "the log ends after {entries} entries, but the node's signed tree head commits to {tree_size}: {missing} and any after it are missing"
    )]
    LogShorter { entries: u64, tree_size: u64, missing: Position },
    #[error("{at} is not covered by the node's signed tree head, which commits to {tree_size} entries")]
    EntryAfter { at: Position, tree_size: u64 },
    #[error(
        "the Merkle root of the first {tree_size} entries is {}, but the node's signed tree head says {}",
        hex::encode(.computed),
        hex::encode(.signed)
    )]
    RootMismatch { tree_size: u64, computed: Hash, signed: Hash },
}

/// Why a log fails the audit. Each names the first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditFailure {
    /// An entry does not replay: signature, chain, sequence, outcome, invariants...
    #[error("{at}: {error}")]
    Entry { at: Position, error: ReplayError },
    /// An entry could not be read (after every entry before it checked out).
    #[error("{at}: cannot be read: {reason}")]
    Unreadable { at: Position, reason: String },
    /// The tree head is invalid, or does not match the log.
    #[error("{0}")]
    TreeHead(TreeHeadProblem),
}

impl AuditFailure {
    /// The first bad entry, when the failure is about one.
    pub fn position(&self) -> Option<Position> {
        match self {
            AuditFailure::Entry { at, .. }
            | AuditFailure::Unreadable { at, .. }
            | AuditFailure::TreeHead(TreeHeadProblem::EntryAfter { at, .. })
            | AuditFailure::TreeHead(TreeHeadProblem::LogShorter { missing: at, .. }) => Some(*at),
            AuditFailure::TreeHead(_) => None,
        }
    }
}

/// A log that passed.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub entries_checked: u64,
    /// The ledger after the last entry: its state and head.
    pub ledger: Ledger,
    /// `State::digest` of the final state.
    pub state_digest: [u8; 32],
    /// The Merkle root of every entry checked.
    pub merkle_root: Hash,
    /// The tree head the log was checked against, if one was given.
    pub tree_head: Option<SignedTreeHead>,
    pub threads: usize,
    pub elapsed: Duration,
}

impl Verdict {
    pub fn entries_per_sec(&self) -> f64 {
        self.entries_checked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Replays `entries` (in log order) from `genesis` and checks them against `tree_head`.
///
/// Reading stops at the first source error; it is reported only if every entry before it
/// checks out. `progress` is called with the number of entries checked so far, about once
/// a round.
pub fn verify<I, P>(
    genesis: &Genesis,
    entries: I,
    tree_head: Option<&SignedTreeHead>,
    options: &Options,
    mut progress: P,
) -> Result<Verdict, AuditFailure>
where
    I: IntoIterator<Item = Result<Entry, SourceError>>,
    P: FnMut(u64),
{
    let started = Instant::now();
    // The tree head's ledger now; its signature after the replay, with the key the log puts
    // in force for its size (the log is the history of the node's keys).
    if let Some(signed) = tree_head
        && signed.head.ledger_id != genesis.ledger_id
    {
        signed.verify(genesis).map_err(|e| AuditFailure::TreeHead(e.into()))?;
    }
    let threads = options.threads.clamp(1, AUDIT_THREADS_MAX);
    let mut source = Source { entries: entries.into_iter(), read: 0, error: None };
    let mut replay = Replay::new(genesis, tree_head.map(|t| t.head.tree_size), options);
    let round_max = AUDIT_ROUND_ENTRIES_MAX.max(threads * 1024);
    let mut round_len = threads * AUDIT_ROUND_ENTRIES_FIRST_PER_THREAD;
    let mut to_check = source.take(round_len);
    let mut to_replay: Vec<(Entry, Checked)> = Vec::new();
    while !(to_check.is_empty() && to_replay.is_empty()) {
        round_len = (round_len * 2).min(round_max);
        let round = Round::new(&to_check, threads);
        let (replayed, next) = std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| round.work(genesis));
            }
            let replayed = replay.entries(std::mem::take(&mut to_replay));
            progress(replay.index);
            if replayed.is_err() {
                // The verdict is known: stop the round's verifying early.
                round.abandon();
            }
            let next = if replayed.is_ok() { source.take(round_len) } else { Vec::new() };
            // Then help verify the rest of the round, so that no core idles at its end.
            round.work(genesis);
            (replayed, next)
        });
        replayed?;
        let checked = round.into_checked(genesis);
        to_replay = std::mem::take(&mut to_check).into_iter().zip(checked).collect();
        to_check = next;
    }
    if let Some(error) = source.error {
        let at = Position { index: source.read + 1, line: error.line.or(replay.line_of(source.read + 1)) };
        return Err(AuditFailure::Unreadable { at, reason: error.message });
    }
    let merkle_root = replay.frontier.root();
    if let Some(signed) = tree_head {
        let tree_size = signed.head.tree_size;
        let computed = match replay.root_at_tree_size {
            Some(root) => root,
            None => {
                let index = replay.index + 1;
                return Err(AuditFailure::TreeHead(TreeHeadProblem::LogShorter {
                    entries: replay.index,
                    tree_size,
                    missing: Position { index, line: replay.line_of(index) },
                }));
            }
        };
        if computed != signed.head.root_hash {
            return Err(AuditFailure::TreeHead(TreeHeadProblem::RootMismatch {
                tree_size,
                computed,
                signed: signed.head.root_hash,
            }));
        }
    }
    let ledger = replay.replayer.into_ledger();
    if let Some(signed) = tree_head {
        signed
            .verify_with(genesis, ledger.state().node_keys())
            .map_err(|e| AuditFailure::TreeHead(e.into()))?;
    }
    Ok(Verdict {
        entries_checked: replay.index,
        state_digest: ledger.state().digest(),
        ledger,
        merkle_root,
        tree_head: tree_head.copied(),
        threads,
        elapsed: started.elapsed(),
    })
}

/// The entries still to be read, and how reading ended.
struct Source<I> {
    entries: I,
    read: u64,
    error: Option<SourceError>,
}

impl<I: Iterator<Item = Result<Entry, SourceError>>> Source<I> {
    /// Up to `n` more entries; fewer at the end of the source or at its first error.
    fn take(&mut self, n: usize) -> Vec<Entry> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.error.is_none() {
            match self.entries.next() {
                Some(Ok(entry)) => {
                    self.read += 1;
                    out.push(entry);
                }
                Some(Err(e)) => self.error = Some(e),
                None => break,
            }
        }
        out
    }
}

/// What the verifying threads learn about an entry.
struct Checked {
    signature: Result<(), Rejection>,
    leaf: Hash,
}

fn check(genesis: &Genesis, entries: &[Entry]) -> Vec<Checked> {
    entries
        .iter()
        .map(|entry| Checked { signature: verify_envelope(genesis, &entry.envelope), leaf: entry.hash() })
        .collect()
}

/// The entries of one round, cut into small pieces that the verifying threads take in
/// turn: whichever thread is free takes the next piece, so all finish together.
struct Round<'e> {
    entries: &'e [Entry],
    piece_len: usize,
    next: AtomicUsize,
    pieces: Vec<OnceLock<Vec<Checked>>>,
    abandoned: AtomicBool,
}

impl<'e> Round<'e> {
    fn new(entries: &'e [Entry], threads: usize) -> Self {
        // About eight pieces per thread, of 16 to 256 entries.
        let piece_len = (entries.len() / (threads * 8)).clamp(16, 256);
        let count = entries.len().div_ceil(piece_len);
        Round {
            entries,
            piece_len,
            next: AtomicUsize::new(0),
            pieces: (0..count).map(|_| OnceLock::new()).collect(),
            abandoned: AtomicBool::new(false),
        }
    }

    /// No more pieces will be started: their results are not needed.
    fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    /// Checks pieces until none is left.
    fn work(&self, genesis: &Genesis) {
        while !self.abandoned.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = self.pieces.get(i) else { break };
            let piece = self.entries.chunks(self.piece_len).nth(i).unwrap_or_default();
            let _ = slot.set(check(genesis, piece));
        }
    }

    /// The results in entry order. Every piece was taken by a thread that finished
    /// before the scope ended; a piece found empty all the same is checked here.
    fn into_checked(self, genesis: &Genesis) -> Vec<Checked> {
        let Round { entries, piece_len, pieces, .. } = self;
        let mut out = Vec::with_capacity(entries.len());
        for (slot, piece) in pieces.into_iter().zip(entries.chunks(piece_len)) {
            out.extend(slot.into_inner().unwrap_or_else(|| check(genesis, piece)));
        }
        out
    }
}

/// The sequential half: the core's replayer, the Merkle frontier, and where we are.
struct Replay<'a> {
    replayer: Replayer,
    frontier: Frontier,
    /// Entries replayed so far.
    index: u64,
    tree_size: Option<u64>,
    root_at_tree_size: Option<Hash>,
    options: &'a Options,
}

impl<'a> Replay<'a> {
    fn new(genesis: &Genesis, tree_size: Option<u64>, options: &'a Options) -> Self {
        Replay {
            // Signatures are verified by the checking threads, before the replay.
            replayer: Replayer::new(genesis.clone(), false),
            frontier: Frontier::new(),
            index: 0,
            tree_size,
            root_at_tree_size: (tree_size == Some(0)).then(merkle::empty_root),
            options,
        }
    }

    fn line_of(&self, index: u64) -> Option<u64> {
        self.options.line_offset.map(|offset| index.saturating_add(offset))
    }

    fn entries(&mut self, entries: Vec<(Entry, Checked)>) -> Result<(), AuditFailure> {
        entries.into_iter().try_for_each(|(entry, checked)| self.entry(&entry, checked))
    }

    fn entry(&mut self, entry: &Entry, checked: Checked) -> Result<(), AuditFailure> {
        self.index += 1;
        let at = Position { index: self.index, line: self.line_of(self.index) };
        let bad = |error: ReplayError| AuditFailure::Entry { at, error };
        if let Err(rejection) = checked.signature {
            // With signatures verified apart, a bad entry is still reported for its first
            // fault, in the replayer's own order.
            self.replayer.check_place(entry).map_err(bad)?;
            let g = self.replayer.ledger().genesis();
            return Err(bad(ReplayError::Signature {
                sequence: entry.sequence,
                reason: rejection.message(&g.currency, g.exponent),
            }));
        }
        self.replayer.replay(entry).map_err(bad)?;
        if let Some(tree_size) = self.tree_size
            && self.index > tree_size
            && !self.options.allow_entries_after_tree_head
        {
            return Err(AuditFailure::TreeHead(TreeHeadProblem::EntryAfter { at, tree_size }));
        }
        self.frontier
            .push(checked.leaf)
            .map_err(|e| AuditFailure::Unreadable { at, reason: e.to_string() })?;
        if self.tree_size == Some(self.frontier.size()) {
            self.root_at_tree_size = Some(self.frontier.root());
        }
        Ok(())
    }
}

/// How fast this machine verifies signatures, with nothing else to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    pub threads: usize,
    pub verifications: u64,
    /// Signatures that did not verify (zero on an honest log).
    pub failures: u64,
    pub elapsed: Duration,
}

impl Ceiling {
    pub fn per_sec(&self) -> f64 {
        self.verifications as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The signature-verification ceiling: [`verify_envelope`] (strict, exactly as [`verify`]
/// and the node call it) over `entries` already in memory, split over `threads` threads,
/// with no reading, decoding, hashing or replaying. [`verify`] cannot go faster than this.
pub fn signature_ceiling(genesis: &Genesis, entries: &[Entry], threads: usize) -> Ceiling {
    let threads = threads.clamp(1, AUDIT_THREADS_MAX);
    let chunk_len = entries.len().div_ceil(threads).max(1);
    let started = Instant::now();
    let failures = std::thread::scope(|s| {
        let workers: Vec<_> = entries
            .chunks(chunk_len)
            .map(|chunk| {
                s.spawn(move || {
                    chunk.iter().filter(|e| verify_envelope(genesis, &e.envelope).is_err()).count() as u64
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).sum()
    });
    Ceiling { threads, verifications: entries.len() as u64, failures, elapsed: started.elapsed() }
}
