//! The log file: the append-only, checksummed sequence of entries that is the ledger's
//! source of truth.
//!
//! Format: an 8-byte magic `CERCLOG2`, the 32-byte genesis hash, then records
//! `len: u32 BE | index: u16 BE | crc32: u32 BE | payload`, where the payload is
//! `Entry::encode`, `index` is the record's place in the group it was written with (0 for
//! the group's first entry) and the CRC (IEEE) covers `len`, `index` and the payload. A
//! group of records is written with one `write` and made durable with one `fdatasync`
//! before anyone is told it was accepted, and the next group is written only after that.
//!
//! Recovery (`LogFile::open`) reads every record from the start and checks it (length
//! bound, CRC, decoding, sequence and hash chain), computing the Merkle root on the way.
//! What it finds is one of three things:
//! - a clean log: every byte is a good record;
//! - a torn tail: damage that can only be the last group's interrupted write. It lies in
//!   the last `TORN_TAIL_BYTES_MAX` bytes, no record of a later group follows it (a record's
//!   `index` says where its group began: pages of the one group in flight may reach the
//!   disk out of order, but a later group is written only after the earlier one was
//!   synced), and the entries before it are at least what every durable witness says was
//!   committed. It held only unacknowledged entries and is cut off, with a warning;
//! - corruption: anything else. Damage followed by a record of a later group, a log shorter
//!   than a witness (the node's last signed tree head, the derived state's head), or a log
//!   whose first entries do not hash to what a witness recorded. Opening fails, naming the
//!   first bad entry and its byte offset, and nothing is changed: a person decides.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cercle_core::entry::EntryHead;
use cercle_core::merkle::{Frontier, Hash};
use cercle_core::{Entry, Genesis};

use cercle_limits::{
    ENTRY_BYTES_MAX, GROUP_RECORDS_MAX, LOG_HEADER_BYTES, LOG_READ_BUFFER_BYTES, LOG_SCAN_BATCH_BYTES,
    LOG_SCAN_BATCHES_MAX, RECORD_HEADER_BYTES, RESERVE_AHEAD_BYTES, TORN_TAIL_BYTES_MAX,
};

use crate::StoreError;

const MAGIC: &[u8; 8] = b"CERCLOG2";
const _: () = assert!(MAGIC.len() + 32 == LOG_HEADER_BYTES as usize, "the header: magic, genesis hash");

/// One good record, as the start-up scan reads it.
#[derive(Debug, Clone, Copy)]
pub struct RecordInfo<'a> {
    pub sequence: u64,
    pub timestamp_ms: u64,
    pub pos: RecordPos,
    /// The encoded entry.
    pub payload: &'a [u8],
    /// The entry's hash (its Merkle leaf).
    pub hash: Hash,
}

/// Where a record lives in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    pub offset: u64,
    pub len: u32,
}

/// A durable record, outside the log, of how far the log reached: the log may not be
/// shorter, and its first `size` entries must be the ones it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// Where the record comes from, for messages: "the signed tree head in tree-head".
    pub source: String,
    pub size: u64,
    pub check: WitnessCheck,
}

/// What a witness says the first `size` entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitnessCheck {
    /// The Merkle root of the first `size` entries (a signed tree head).
    Root(Hash),
    /// The hash of entry `size` (`Entry::hash`), which chains to every earlier one.
    EntryHash(Hash),
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Entries in the log after recovery.
    pub entries: u64,
    /// Bytes cut off the end (0 when the log ended cleanly).
    pub cut_bytes: u64,
    /// Why the tail was cut, when it was.
    pub cut_reason: Option<String>,
}

/// The first damaged record of a log, and why the log is corrupt rather than torn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The sequence the first bad entry should have had.
    pub sequence: u64,
    /// Its byte offset in the file.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
    /// Why this cannot be a torn write.
    pub why_not_torn: String,
}

pub struct LogFile {
    path: PathBuf,
    /// Read handle, shared by readers (`read_exact_at` takes `&self`).
    file: File,
    /// Append handle and the offset where the next record goes. Only the single writer
    /// appends, so the lock is never contended; it keeps `append_group` usable from `&self`.
    append: Mutex<Appender>,
}

struct Appender {
    file: File,
    end: u64,
    /// The file is allocated up to here (`fallocate`, the size kept): writes below it
    /// cannot fail for want of space.
    reserved: u64,
    /// False once the filesystem said it cannot preallocate.
    can_reserve: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io { path: path.display().to_string(), source: e }
}

/// Syncs a directory so a file created or renamed in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn record_crc(len: u32, index: u16, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_be_bytes());
    h.update(&index.to_be_bytes());
    h.update(payload);
    h.finalize()
}

fn encode_record(entry_bytes: &[u8], index: u16, out: &mut Vec<u8>) {
    let len = entry_bytes.len() as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&record_crc(len, index, entry_bytes).to_be_bytes());
    out.extend_from_slice(entry_bytes);
}

/// A record header, read.
#[derive(Debug, Clone, Copy)]
struct RecordHeader {
    len: u32,
    index: u16,
    crc: u32,
}

impl RecordHeader {
    fn parse(b: &[u8; RECORD_HEADER_BYTES]) -> Self {
        RecordHeader {
            len: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            index: u16::from_be_bytes([b[4], b[5]]),
            crc: u32::from_be_bytes([b[6], b[7], b[8], b[9]]),
        }
    }

    fn plausible(&self) -> bool {
        self.len != 0 && self.len as usize <= ENTRY_BYTES_MAX && usize::from(self.index) < GROUP_RECORDS_MAX
    }
}

/// Reading the log from the start: the chain so far, and the witnesses still to check.
struct Scan<'a> {
    entries: u64,
    prev_hash: Hash,
    frontier: Frontier,
    witnesses: &'a [Witness],
    /// Which witness failed, if one did (its index and what it found).
    witness_failed: Option<(usize, String)>,
}

impl Scan<'_> {
    /// Takes a good entry, then checks every witness whose size it reaches.
    fn push(&mut self, hash: Hash) -> Result<(), StoreError> {
        self.frontier
            .push(hash)
            .map_err(|e| StoreError::Corrupt { key: "log".into(), reason: format!("Merkle tree: {e}") })?;
        self.prev_hash = hash;
        self.entries += 1;
        for (i, w) in self.witnesses.iter().enumerate() {
            if w.size != self.entries || self.witness_failed.is_some() {
                continue;
            }
            let matches = match w.check {
                WitnessCheck::Root(root) => self.frontier.root() == root,
                WitnessCheck::EntryHash(h) => hash == h,
            };
            if !matches {
                self.witness_failed = Some((i, format!("the first {} entries differ from them", w.size)));
            }
        }
        Ok(())
    }

    /// The largest size a witness vouches for.
    fn committed(&self) -> Option<&Witness> {
        self.witnesses.iter().max_by_key(|w| w.size)
    }
}

impl LogFile {
    /// Creates a new, empty log bound to `genesis`, durably.
    pub fn create(path: &Path, genesis: &Genesis) -> Result<(), StoreError> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path).map_err(io(path))?;
        let mut header = Vec::with_capacity(LOG_HEADER_BYTES as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&genesis.hash());
        file.write_all(&header).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Opens the log, checks every record against the chain and `witnesses`, and cuts a
    /// torn tail; corruption is an error that changes nothing. Calls `visit` with each good
    /// entry and its position, in order, so the caller can replay while reading.
    pub fn open(
        path: &Path,
        genesis: &Genesis,
        witnesses: &[Witness],
        mut visit: impl FnMut(RecordInfo<'_>) -> Result<(), StoreError>,
    ) -> Result<(LogFile, Recovery), StoreError> {
        let file = OpenOptions::new().read(true).open(path).map_err(io(path))?;
        let file_len = file.metadata().map_err(io(path))?.len();
        let mut reader = BufReader::with_capacity(LOG_READ_BUFFER_BYTES, &file);
        check_header(path, genesis, &mut reader)?;
        let mut scan = Scan {
            entries: 0,
            prev_hash: genesis.hash(),
            frontier: Frontier::new(),
            witnesses,
            witness_failed: None,
        };
        let (offset, bad) = scan_records(reader, file_len, &mut scan, &mut visit)?;
        if let Some(damage) = classify(&file, file_len, offset, bad.as_deref(), &scan)? {
            return Err(StoreError::LogCorrupt { path: path.display().to_string(), damage });
        }
        let cut_bytes = file_len - offset;
        if let Some(reason) = &bad {
            tracing::warn!(
                path = %path.display(),
                entries = scan.entries,
                cut_bytes,
                %reason,
                "the log ends in a torn write of its last group (never acknowledged): cutting it back to the last complete entry"
            );
        }
        let append = OpenOptions::new().write(true).open(path).map_err(io(path))?;
        if cut_bytes > 0 {
            append.set_len(offset).map_err(io(path))?;
            append.sync_all().map_err(io(path))?;
        }
        let log = LogFile {
            path: path.to_path_buf(),
            file,
            append: Mutex::new(Appender { file: append, end: offset, reserved: offset, can_reserve: true }),
        };
        Ok((log, Recovery { entries: scan.entries, cut_bytes, cut_reason: bad }))
    }

    /// Reads the log from the start and returns how far its good records go: the number of
    /// entries, the byte offset where they end, and what is wrong after them (`None` when
    /// the whole file is good). Changes nothing: the first step of accepting a loss.
    pub fn good_prefix(path: &Path, genesis: &Genesis) -> Result<(u64, u64, Option<String>), StoreError> {
        let file = OpenOptions::new().read(true).open(path).map_err(io(path))?;
        let file_len = file.metadata().map_err(io(path))?.len();
        let mut reader = BufReader::with_capacity(LOG_READ_BUFFER_BYTES, &file);
        check_header(path, genesis, &mut reader)?;
        let mut scan = Scan {
            entries: 0,
            prev_hash: genesis.hash(),
            frontier: Frontier::new(),
            witnesses: &[],
            witness_failed: None,
        };
        let mut offset = LOG_HEADER_BYTES;
        let mut payload = Vec::new();
        while offset < file_len {
            match read_record(&mut reader, &mut payload, offset, &scan) {
                Ok((_, hash)) => {
                    scan.push(hash)?;
                    offset += (RECORD_HEADER_BYTES + payload.len()) as u64;
                }
                Err(reason) => return Ok((scan.entries, offset, Some(reason))),
            }
        }
        Ok((scan.entries, offset, None))
    }

    /// Reads the first `count` entries of the log at `path`, checking each record (length,
    /// checksum, sequence, hash chain) and handing it to `visitor` with its hash; opens
    /// the file for reading only and takes no lock, so a running node may go on appending
    /// (a backup). Entries a witness says are durable are never rewritten, so they read the
    /// same whatever the node does meanwhile. A log with fewer good entries is an error
    /// naming the first bad one.
    pub fn read_prefix(
        path: &Path,
        genesis: &Genesis,
        count: u64,
        mut visitor: impl FnMut(Entry, Hash) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let file = OpenOptions::new().read(true).open(path).map_err(io(path))?;
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        check_header(path, genesis, &mut reader)?;
        let mut scan = Scan {
            entries: 0,
            prev_hash: genesis.hash(),
            frontier: Frontier::new(),
            witnesses: &[],
            witness_failed: None,
        };
        let mut offset = LOG_HEADER_BYTES;
        let mut payload = Vec::new();
        while scan.entries < count {
            let sequence = scan.entries + 1;
            let (_, hash) = read_record(&mut reader, &mut payload, offset, &scan).map_err(|reason| {
                StoreError::Corrupt { key: format!("{} entry {sequence}", path.display()), reason }
            })?;
            let entry = Entry::decode(&payload).map_err(|e| StoreError::Corrupt {
                key: format!("{} entry {sequence}", path.display()),
                reason: e.to_string(),
            })?;
            scan.push(hash)?;
            offset += (RECORD_HEADER_BYTES + payload.len()) as u64;
            visitor(entry, hash)?;
        }
        Ok(())
    }

    /// Appends a group of entries with one write and one `fdatasync`. On error the file is
    /// cut back to where it was, so a failed group leaves no partial record behind.
    pub fn append_group(&self, entries: &[Vec<u8>]) -> Result<Vec<RecordPos>, StoreError> {
        if entries.len() > GROUP_RECORDS_MAX {
            return Err(StoreError::Bound(format!(
                "a group of {} entries; at most {GROUP_RECORDS_MAX} are written together",
                entries.len()
            )));
        }
        if let Some(e) = entries.iter().find(|e| e.is_empty() || e.len() > ENTRY_BYTES_MAX) {
            return Err(StoreError::Bound(format!(
                "an entry of {} bytes; an entry is 1 to {ENTRY_BYTES_MAX} bytes",
                e.len()
            )));
        }
        let mut guard = self.append.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let appender = &mut *guard;
        let mut buf = Vec::with_capacity(entries.iter().map(|e| e.len() + RECORD_HEADER_BYTES).sum());
        let mut positions = Vec::with_capacity(entries.len());
        let mut offset = appender.end;
        for (index, e) in entries.iter().enumerate() {
            positions.push(RecordPos { offset, len: e.len() as u32 });
            // `index < GROUP_RECORDS_MAX <= u16::MAX`, checked above.
            encode_record(e, index as u16, &mut buf);
            offset += (RECORD_HEADER_BYTES + e.len()) as u64;
        }
        let written = appender
            .file
            .seek(SeekFrom::Start(appender.end))
            .and_then(|_| appender.file.write_all(&buf))
            .and_then(|()| appender.file.sync_data());
        if let Err(e) = written {
            // Best effort: remove the partial group. Recovery would cut it anyway.
            let _ = appender.file.set_len(appender.end);
            let _ = appender.file.sync_data();
            return Err(io(&self.path)(e));
        }
        appender.end = offset;
        Ok(positions)
    }

    /// Allocates the file ahead so that `bytes` more can be appended. `ENOSPC` here means
    /// nothing was written and the disk is full.
    pub fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        let mut guard = self.append.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let a = &mut *guard;
        if !a.can_reserve || a.end + bytes <= a.reserved {
            return Ok(());
        }
        let length = bytes.max(RESERVE_AHEAD_BYTES);
        let mode = nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match nix::fcntl::fallocate(&a.file, mode, a.end as i64, length as i64) {
            Ok(()) => {
                a.reserved = a.end + length;
                Ok(())
            }
            Err(nix::errno::Errno::ENOSPC) => {
                // Perhaps less is free than a whole chunk: ask for what is needed now.
                match nix::fcntl::fallocate(&a.file, mode, a.end as i64, bytes as i64) {
                    Ok(()) => {
                        a.reserved = a.end + bytes;
                        Ok(())
                    }
                    Err(e) => Err(StoreError::Io { path: self.path.display().to_string(), source: e.into() }),
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "the filesystem cannot preallocate the log; a full disk is noticed when a write fails");
                a.can_reserve = false;
                Ok(())
            }
        }
    }

    /// Reads and decodes the entry at `pos`, checking its checksum again.
    pub fn read(&self, pos: RecordPos) -> Result<Entry, StoreError> {
        let mut buf = vec![0u8; RECORD_HEADER_BYTES + pos.len as usize];
        self.file.read_exact_at(&mut buf, pos.offset).map_err(io(&self.path))?;
        let mut head = [0u8; RECORD_HEADER_BYTES];
        head.copy_from_slice(&buf[..RECORD_HEADER_BYTES]);
        let header = RecordHeader::parse(&head);
        let payload = &buf[RECORD_HEADER_BYTES..];
        let corrupt = |reason: String| StoreError::Corrupt {
            key: format!("{} at byte {}", self.path.display(), pos.offset),
            reason,
        };
        if header.len != pos.len || record_crc(header.len, header.index, payload) != header.crc {
            return Err(corrupt("checksum mismatch".into()));
        }
        Entry::decode(payload).map_err(|e| corrupt(e.to_string()))
    }

    /// Size of the log file in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.append.lock().unwrap_or_else(std::sync::PoisonError::into_inner).end
    }
}

fn check_header(path: &Path, genesis: &Genesis, reader: &mut impl Read) -> Result<(), StoreError> {
    let corrupt =
        |reason: &str| StoreError::Corrupt { key: path.display().to_string(), reason: reason.into() };
    let mut header = [0u8; LOG_HEADER_BYTES as usize];
    reader.read_exact(&mut header).map_err(|_| corrupt("the log file has no complete header"))?;
    if &header[..8] != MAGIC {
        return Err(corrupt("not a Cercle log file of this version (bad magic)"));
    }
    if header[8..] != genesis.hash() {
        return Err(corrupt("the log belongs to another genesis"));
    }
    Ok(())
}

/// Whole records read from the log, starting at byte `offset` of the file, for a
/// checking thread.
struct Batch {
    offset: u64,
    bytes: Vec<u8>,
    /// What stopped the reader right after these records (an impossible header, a record
    /// cut short), if it stopped there.
    stop: Option<String>,
}

/// One record of a batch, checked on its own: checksum, decoding, hash. Whether it
/// continues the chain depends on the record before, so that is left to the scan.
struct Checked {
    /// Where its header starts in the batch.
    start: usize,
    len: u32,
    /// Its head (sequence, previous hash, time), then its hash; or why it is bad.
    head: Result<EntryHead, String>,
    hash: Result<Hash, String>,
}

/// Reads the records after the log's header, in batches of whole records, until the end
/// of the file or the first record that cannot be read whole. Each batch waits for a
/// `permits` token first, so at most `LOG_SCAN_BATCHES_MAX` are read ahead of the scan.
fn read_batches(
    mut reader: impl Read,
    file_len: u64,
    permits: &std::sync::mpsc::Receiver<()>,
    batches: &std::sync::mpsc::SyncSender<(u64, Batch)>,
) {
    let mut offset = LOG_HEADER_BYTES;
    for number in 0.. {
        if permits.recv().is_err() {
            return;
        }
        let mut batch = Batch { offset, bytes: Vec::with_capacity(LOG_SCAN_BATCH_BYTES), stop: None };
        while offset < file_len && batch.bytes.len() < LOG_SCAN_BATCH_BYTES {
            let start = batch.bytes.len();
            let mut head = [0u8; RECORD_HEADER_BYTES];
            if reader.read_exact(&mut head).is_err() {
                batch.stop = Some(format!("incomplete record header at byte {offset}"));
                break;
            }
            let header = RecordHeader::parse(&head);
            if !header.plausible() {
                batch.stop = Some(format!(
                    "the record at byte {offset} has an impossible header (length {})",
                    header.len
                ));
                break;
            }
            batch.bytes.extend_from_slice(&head);
            batch.bytes.resize(start + RECORD_HEADER_BYTES + header.len as usize, 0);
            if reader.read_exact(&mut batch.bytes[start + RECORD_HEADER_BYTES..]).is_err() {
                batch.bytes.truncate(start);
                batch.stop = Some(format!("incomplete record at byte {offset}"));
                break;
            }
            offset += (RECORD_HEADER_BYTES + header.len as usize) as u64;
        }
        let last = batch.stop.is_some() || offset >= file_len;
        if batch.bytes.is_empty() && batch.stop.is_none() {
            return;
        }
        if batches.send((number, batch)).is_err() || last {
            return;
        }
    }
}

/// Checks every record of `batch` on its own, stopping at the first bad one.
fn check_batch(batch: &Batch) -> Vec<Checked> {
    let mut checked = Vec::new();
    let mut start = 0;
    while start < batch.bytes.len() {
        let mut head = [0u8; RECORD_HEADER_BYTES];
        head.copy_from_slice(&batch.bytes[start..start + RECORD_HEADER_BYTES]);
        let header = RecordHeader::parse(&head);
        let payload =
            &batch.bytes[start + RECORD_HEADER_BYTES..start + RECORD_HEADER_BYTES + header.len as usize];
        let offset = batch.offset + start as u64;
        let decoding =
            |e: cercle_core::codec::DecodeError| format!("the record at byte {offset} does not decode: {e}");
        let (head, hash) = if record_crc(header.len, header.index, payload) != header.crc {
            (Err(format!("checksum mismatch in the record at byte {offset}")), Err(String::new()))
        } else {
            let head = Entry::peek(payload).map_err(decoding);
            let hash = if head.is_ok() {
                Entry::hash_of_encoding(payload).map_err(decoding)
            } else {
                Err(String::new())
            };
            (head, hash)
        };
        let bad = head.is_err() || hash.is_err();
        checked.push(Checked { start, len: header.len, head, hash });
        if bad {
            break;
        }
        start += RECORD_HEADER_BYTES + header.len as usize;
    }
    checked
}

/// The start-up scan: reads every record after the header, checks each one, in order,
/// against the chain, and hands the good ones to `visit`. Returns where the good records
/// end and what is wrong there (`None`: the file ends there).
///
/// The work is spread over the cores: one thread reads the file in batches of whole
/// records, the others check the batches (checksum, decoding, hash: most of the cost),
/// and this thread takes them back in order, checks that each entry continues the chain,
/// builds the Merkle frontier and visits. What it decides is exactly what a record-by-
/// record scan decides: the first bad record, in file order, and the same reason.
fn scan_records(
    reader: impl Read + Send,
    file_len: u64,
    scan: &mut Scan<'_>,
    visit: &mut impl FnMut(RecordInfo<'_>) -> Result<(), StoreError>,
) -> Result<(u64, Option<String>), StoreError> {
    use std::sync::mpsc::{channel, sync_channel};
    let checkers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let (to_check, unchecked) = sync_channel::<(u64, Batch)>(checkers);
    let unchecked = Mutex::new(unchecked);
    std::thread::scope(|threads| {
        let (permit, permits) = sync_channel::<()>(LOG_SCAN_BATCHES_MAX);
        for _ in 0..LOG_SCAN_BATCHES_MAX {
            permit.send(()).unwrap_or_else(|_| unreachable!("the receiver is here"));
        }
        let (done, checked) = channel::<(u64, Batch, Vec<Checked>)>();
        threads.spawn(move || read_batches(reader, file_len, &permits, &to_check));
        for _ in 0..checkers {
            let (unchecked, done) = (&unchecked, done.clone());
            threads.spawn(move || {
                loop {
                    let job = unchecked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok((number, batch)) = job else { return };
                    let records = check_batch(&batch);
                    // Once the scan has stopped nobody listens: go on draining, so the
                    // reader is never left blocked.
                    let _ = done.send((number, batch, records));
                }
            });
        }
        drop(done);
        let mut early: std::collections::BTreeMap<u64, (Batch, Vec<Checked>)> = Default::default();
        let mut offset = LOG_HEADER_BYTES;
        for next in 0.. {
            let (batch, records) = loop {
                if let Some(found) = early.remove(&next) {
                    break found;
                }
                match checked.recv() {
                    Ok((number, batch, records)) => {
                        early.insert(number, (batch, records));
                    }
                    // Every batch was taken: the file ends after the last good record.
                    Err(_) => return Ok((offset, None)),
                }
            };
            for record in records {
                offset = batch.offset + record.start as u64;
                let head = match record.head {
                    Ok(head) => head,
                    Err(reason) => return Ok((offset, Some(reason))),
                };
                if head.sequence != scan.entries + 1 || head.prev_hash != scan.prev_hash {
                    let reason = format!(
                        "the record at byte {offset} is entry {}, not entry {} chained to the one before",
                        head.sequence,
                        scan.entries + 1
                    );
                    return Ok((offset, Some(reason)));
                }
                let hash = match record.hash {
                    Ok(hash) => hash,
                    Err(reason) => return Ok((offset, Some(reason))),
                };
                let from = record.start + RECORD_HEADER_BYTES;
                let payload = &batch.bytes[from..from + record.len as usize];
                let pos = RecordPos { offset, len: record.len };
                visit(RecordInfo {
                    sequence: head.sequence,
                    timestamp_ms: head.timestamp_ms,
                    pos,
                    payload,
                    hash,
                })?;
                scan.push(hash)?;
            }
            offset = batch.offset + batch.bytes.len() as u64;
            if let Some(reason) = batch.stop {
                return Ok((offset, Some(reason)));
            }
            // The batch is consumed: the reader may read one more. (It has stopped if this fails.)
            let _ = permit.send(());
        }
        unreachable!("the batches are numbered by a u64")
    })
}

/// Reads the record at `offset` into `payload` and checks it continues the chain. Returns
/// the entry's head and hash, or what is wrong with it. Only an entry with sections is
/// decoded whole (its hash is over their roots).
fn read_record(
    reader: &mut impl Read,
    payload: &mut Vec<u8>,
    offset: u64,
    scan: &Scan<'_>,
) -> Result<(EntryHead, Hash), String> {
    let mut head = [0u8; RECORD_HEADER_BYTES];
    reader.read_exact(&mut head).map_err(|_| format!("incomplete record header at byte {offset}"))?;
    let header = RecordHeader::parse(&head);
    if !header.plausible() {
        return Err(format!("the record at byte {offset} has an impossible header (length {})", header.len));
    }
    payload.resize(header.len as usize, 0);
    reader.read_exact(payload).map_err(|_| format!("incomplete record at byte {offset}"))?;
    if record_crc(header.len, header.index, payload) != header.crc {
        return Err(format!("checksum mismatch in the record at byte {offset}"));
    }
    let decoding =
        |e: cercle_core::codec::DecodeError| format!("the record at byte {offset} does not decode: {e}");
    let head = Entry::peek(payload).map_err(decoding)?;
    if head.sequence != scan.entries + 1 || head.prev_hash != scan.prev_hash {
        return Err(format!(
            "the record at byte {offset} is entry {}, not entry {} chained to the one before",
            head.sequence,
            scan.entries + 1
        ));
    }
    let hash = Entry::hash_of_encoding(payload).map_err(decoding)?;
    Ok((head, hash))
}

/// Decides whether what the scan found is corruption (returned) or at most a torn tail.
/// `end` is where the good records end, `bad` what is wrong there (`None`: nothing).
fn classify(
    file: &File,
    file_len: u64,
    end: u64,
    bad: Option<&str>,
    scan: &Scan<'_>,
) -> Result<Option<Damage>, StoreError> {
    let sequence = scan.entries + 1;
    let damage = |why_not_torn: String| Damage {
        sequence,
        offset: end,
        reason: bad.unwrap_or("the log ends here").to_string(),
        why_not_torn,
    };
    if let Some((i, found)) = &scan.witness_failed {
        let w = &scan.witnesses[*i];
        return Ok(Some(Damage {
            sequence: 1,
            offset: LOG_HEADER_BYTES,
            reason: format!("{} records {} entries, and {found}", w.source, w.size),
            why_not_torn: "entries that were committed have been replaced: the log was rewritten".into(),
        }));
    }
    if let Some(w) = scan.committed().filter(|w| w.size > scan.entries) {
        return Ok(Some(damage(format!(
            "{} records {} committed entries, and the log holds only {}: acknowledged entries are missing (a truncated log, or an older copy)",
            w.source, w.size, scan.entries
        ))));
    }
    if bad.is_none() {
        return Ok(None);
    }
    let tail = file_len - end;
    if tail > TORN_TAIL_BYTES_MAX {
        return Ok(Some(damage(format!(
            "{tail} bytes follow it, more than one group can hold ({TORN_TAIL_BYTES_MAX})"
        ))));
    }
    let mut rest = vec![0u8; tail as usize];
    file.read_exact_at(&mut rest, end).map_err(|e| StoreError::Io { path: "log".into(), source: e })?;
    if let Some((at, later)) = later_group_record(&rest, sequence) {
        return Ok(Some(damage(format!(
            "a good record of a later group (entry {later}, at byte {}) follows it, so its own group had been made durable",
            end + at as u64
        ))));
    }
    Ok(None)
}

/// Searches `rest` (the bytes after the first bad record, which should have been entry
/// `sequence`) for a good record of a group that began after that entry: it proves the
/// damaged group had been synced. Returns its offset in `rest` and its sequence.
fn later_group_record(rest: &[u8], sequence: u64) -> Option<(usize, u64)> {
    for at in 0..rest.len().saturating_sub(RECORD_HEADER_BYTES) {
        let mut head = [0u8; RECORD_HEADER_BYTES];
        head.copy_from_slice(&rest[at..at + RECORD_HEADER_BYTES]);
        let header = RecordHeader::parse(&head);
        if !header.plausible() {
            continue;
        }
        let start = at + RECORD_HEADER_BYTES;
        let Some(payload) = rest.get(start..start + header.len as usize) else { continue };
        // The payload starts with a version byte and the entry's sequence: cheap filters
        // before the checksum.
        let Some(seq_bytes) = payload.get(1..9) else { continue };
        let entry_sequence = u64::from_be_bytes(seq_bytes.try_into().unwrap_or([0; 8]));
        if entry_sequence < sequence || record_crc(header.len, header.index, payload) != header.crc {
            continue;
        }
        if entry_sequence - u64::from(header.index) > sequence {
            return Some((at, entry_sequence));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use cercle_core::{Envelope, LedgerId, PublicKey, Section, SectionTag};

    use super::*;

    fn genesis() -> Genesis {
        Genesis {
            ledger_id: LedgerId([9; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![PublicKey([1; 32])],
            auditor_keys: vec![],
            node_key: PublicKey([3; 32]),
            quorum: 1,
            day_offset_minutes: 0,
        }
    }

    /// The first entry of `genesis`'s log, encoded in exactly `bytes` bytes: one section
    /// part takes the room the other fields leave. Only its shape matters to the log.
    fn entry_of(genesis: &Genesis, bytes: usize) -> Vec<u8> {
        let mut entry = Entry {
            sequence: 1,
            timestamp_ms: 1,
            prev_hash: genesis.hash(),
            envelope: Envelope::single(vec![1], PublicKey([7; 32]), [8; 64]),
            balances_after: Vec::new(),
            sections: vec![Section { tag: SectionTag::Clearing, parts: vec![Vec::new()] }],
        };
        let fixed = entry.encode().len();
        entry.sections[0].parts[0] = vec![0; bytes - fixed];
        let encoded = entry.encode();
        assert_eq!(encoded.len(), bytes);
        encoded
    }

    /// An entry of `ENTRY_BYTES_MAX` bytes is appended and read back; one byte more is
    /// refused on append, naming the bound, and leaves the file as it was.
    #[test]
    fn the_entry_bound_holds_on_append_as_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries.log");
        let genesis = genesis();
        LogFile::create(&path, &genesis).unwrap();
        let (log, _) = LogFile::open(&path, &genesis, &[], |_| Ok(())).unwrap();

        let refused = log.append_group(&[entry_of(&genesis, ENTRY_BYTES_MAX + 1)]).unwrap_err();
        assert!(refused.to_string().contains(&format!("{}", ENTRY_BYTES_MAX + 1)), "{refused}");
        assert!(refused.to_string().contains(&format!("1 to {ENTRY_BYTES_MAX} bytes")), "{refused}");
        assert_eq!(log.len_bytes(), LOG_HEADER_BYTES);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), LOG_HEADER_BYTES);

        let largest = entry_of(&genesis, ENTRY_BYTES_MAX);
        let positions = log.append_group(std::slice::from_ref(&largest)).unwrap();
        assert_eq!(positions, [RecordPos { offset: LOG_HEADER_BYTES, len: ENTRY_BYTES_MAX as u32 }]);
        assert_eq!(log.read(positions[0]).unwrap().encode(), largest);
        drop(log);
        let mut seen = 0;
        let (_, recovery) = LogFile::open(&path, &genesis, &[], |info| {
            seen += 1;
            assert_eq!(info.payload.len(), ENTRY_BYTES_MAX);
            Ok(())
        })
        .unwrap();
        assert_eq!((seen, recovery.entries, recovery.cut_bytes), (1, 1, 0));
    }

    #[test]
    fn a_record_round_trips_and_its_checksum_covers_the_header() {
        let mut buf = Vec::new();
        encode_record(b"payload", 3, &mut buf);
        assert_eq!(buf.len(), RECORD_HEADER_BYTES + 7);
        let mut head = [0u8; RECORD_HEADER_BYTES];
        head.copy_from_slice(&buf[..RECORD_HEADER_BYTES]);
        let h = RecordHeader::parse(&head);
        assert_eq!((h.len, h.index), (7, 3));
        assert_eq!(record_crc(h.len, h.index, b"payload"), h.crc);
        // Another index (a flipped bit in the header) no longer matches the checksum.
        assert_ne!(record_crc(h.len, 2, b"payload"), h.crc);
    }
}
