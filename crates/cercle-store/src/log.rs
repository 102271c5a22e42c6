//! The log file: the append-only, checksummed sequence of entries that is the ledger's
//! source of truth.
//!
//! Format: an 8-byte magic `CERCLOG1`, the 32-byte genesis hash, then records
//! `len: u32 BE | crc32: u32 BE | payload`, where the payload is `Entry::encode` and the
//! CRC (IEEE) covers the payload. A group of records is written with one `write` and made
//! durable with one `fdatasync` before anyone is told it was accepted.
//!
//! Recovery (`LogFile::open`): records are read and checked (length bound, CRC, decoding,
//! sequence and hash chain) from the start. The first bad record ends the log: what follows
//! it is a torn or corrupt tail, which can only hold entries that were never acknowledged,
//! and it is cut off with a warning. A tail longer than `TORN_TAIL_BYTES_MAX` cannot come
//! from one interrupted group, so it is not cut: opening fails and a person decides.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cercle_core::{Entry, Genesis};

use crate::StoreError;

const MAGIC: &[u8; 8] = b"CERCLOG1";
/// Bytes before the first record: magic and genesis hash.
pub const HEADER_BYTES: u64 = 8 + 32;
/// Bytes of a record's header: length and CRC.
const RECORD_HEADER_BYTES: usize = 8;
/// Largest encoded entry. An operation's entry is a 4 KiB body plus the fixed fields and a
/// few balances (under 8 KiB); a clearing run's entry also holds its record, 32 bytes per
/// cleared invoice and 29 plus the handle per firm, and 12 plus the handle per changed
/// balance: at most about 26.5 MB at `CLEARING_OBLIGATIONS_MAX` and `CLEARING_FIRMS_MAX`
/// with 32-character handles (measured by the benchmark: 8.4 MiB for 261,369 invoices).
pub const ENTRY_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Longest tail that recovery cuts off on its own: more than one group can hold (the
/// writer puts a clearing run in a group of its own, and other groups are at most
/// `WRITE_BATCH_MAX` entries under 8 KiB), so anything longer is damage to acknowledged
/// entries, not a torn write.
pub const TORN_TAIL_BYTES_MAX: u64 = 40 * 1024 * 1024;

/// Where a record lives in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    pub offset: u64,
    pub len: u32,
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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io { path: path.display().to_string(), source: e }
}

/// Syncs a directory so a file created or renamed in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn encode_record(entry_bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(entry_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(entry_bytes).to_be_bytes());
    out.extend_from_slice(entry_bytes);
}

impl LogFile {
    /// Creates a new, empty log bound to `genesis`, durably.
    pub fn create(path: &Path, genesis: &Genesis) -> Result<(), StoreError> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path).map_err(io(path))?;
        let mut header = Vec::with_capacity(HEADER_BYTES as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&genesis.hash());
        file.write_all(&header).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Opens the log, checks every record, and cuts a torn tail. Calls `visit` with each
    /// good entry and its position, in order, so the caller can replay while reading.
    pub fn open(
        path: &Path,
        genesis: &Genesis,
        mut visit: impl FnMut(&Entry, RecordPos) -> Result<(), StoreError>,
    ) -> Result<(LogFile, Recovery), StoreError> {
        let file = OpenOptions::new().read(true).open(path).map_err(io(path))?;
        let file_len = file.metadata().map_err(io(path))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let mut header = [0u8; HEADER_BYTES as usize];
        reader.read_exact(&mut header).map_err(|_| StoreError::Corrupt {
            key: path.display().to_string(),
            reason: "the log file has no complete header".into(),
        })?;
        if &header[..8] != MAGIC {
            return Err(StoreError::Corrupt {
                key: path.display().to_string(),
                reason: "not a Cercle log file (bad magic)".into(),
            });
        }
        if header[8..] != genesis.hash() {
            return Err(StoreError::Corrupt {
                key: path.display().to_string(),
                reason: "the log belongs to another genesis".into(),
            });
        }
        let mut offset = HEADER_BYTES;
        let mut entries = 0u64;
        let mut prev_hash = genesis.hash();
        let mut payload = Vec::new();
        let cut_reason = loop {
            if offset == file_len {
                break None;
            }
            let mut head = [0u8; RECORD_HEADER_BYTES];
            if reader.read_exact(&mut head).is_err() {
                break Some(format!("incomplete record header at byte {offset}"));
            }
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            if len as usize > ENTRY_BYTES_MAX || len == 0 {
                break Some(format!("record at byte {offset} claims {len} bytes"));
            }
            payload.resize(len as usize, 0);
            if reader.read_exact(&mut payload).is_err() {
                break Some(format!("incomplete record at byte {offset}"));
            }
            if crc32fast::hash(&payload) != crc {
                break Some(format!("checksum mismatch in the record at byte {offset}"));
            }
            let entry = match Entry::decode(&payload) {
                Ok(e) => e,
                Err(e) => break Some(format!("record at byte {offset} does not decode: {e}")),
            };
            if entry.sequence != entries + 1 || entry.prev_hash != prev_hash {
                break Some(format!(
                    "record at byte {offset} is entry {} but entry {} chained to the previous was expected",
                    entry.sequence,
                    entries + 1
                ));
            }
            visit(&entry, RecordPos { offset, len })?;
            prev_hash = entry.hash();
            entries += 1;
            offset += RECORD_HEADER_BYTES as u64 + u64::from(len);
        };
        drop(reader);
        let cut_bytes = file_len - offset;
        if let Some(reason) = &cut_reason {
            if cut_bytes > TORN_TAIL_BYTES_MAX {
                return Err(StoreError::Corrupt {
                    key: path.display().to_string(),
                    reason: format!(
                        "{reason}, followed by {cut_bytes} bytes: too much to be a torn write, so it is not cut automatically"
                    ),
                });
            }
            tracing::warn!(
                path = %path.display(),
                entries,
                cut_bytes,
                %reason,
                "the log ends in a torn or corrupt tail (unacknowledged writes): cutting it back to the last complete entry"
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
            append: Mutex::new(Appender { file: append, end: offset }),
        };
        Ok((log, Recovery { entries, cut_bytes, cut_reason }))
    }

    /// Appends a group of entries with one write and one `fdatasync`. On error the file is
    /// cut back to where it was, so a failed group leaves no partial record behind.
    pub fn append_group(&self, entries: &[Vec<u8>]) -> Result<Vec<RecordPos>, StoreError> {
        let mut guard = self.append.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let appender = &mut *guard;
        let mut buf = Vec::with_capacity(entries.iter().map(|e| e.len() + RECORD_HEADER_BYTES).sum());
        let mut positions = Vec::with_capacity(entries.len());
        let mut offset = appender.end;
        for e in entries {
            positions.push(RecordPos { offset, len: e.len() as u32 });
            encode_record(e, &mut buf);
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

    /// Reads and decodes the entry at `pos`, checking its checksum again.
    pub fn read(&self, pos: RecordPos) -> Result<Entry, StoreError> {
        let mut buf = vec![0u8; RECORD_HEADER_BYTES + pos.len as usize];
        self.file.read_exact_at(&mut buf, pos.offset).map_err(io(&self.path))?;
        let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let payload = &buf[RECORD_HEADER_BYTES..];
        if crc32fast::hash(payload) != crc {
            return Err(StoreError::Corrupt {
                key: format!("{} at byte {}", self.path.display(), pos.offset),
                reason: "checksum mismatch".into(),
            });
        }
        Entry::decode(payload).map_err(|e| StoreError::Corrupt {
            key: format!("{} at byte {}", self.path.display(), pos.offset),
            reason: e.to_string(),
        })
    }

    /// Size of the log file in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.append.lock().unwrap_or_else(std::sync::PoisonError::into_inner).end
    }
}
