//! The jsonl export: the complete log in a form an auditor can check offline with
//! `cercle audit verify --log FILE` (that is, with [`read`] and [`crate::verify`]).
//!
//! # Format (`cercle-log/v1`)
//!
//! UTF-8, one compact JSON object per line, each line ending with `\n`. Byte strings are
//! lowercase hex (uppercase is refused, so that every byte of the file matters); integers
//! are JSON numbers. Every field is required and no other field is allowed.
//!
//! Line 1, the genesis:
//!
//! ```json
//! {"type":"genesis","format":"cercle-log/v1","ledger_id":"<16 bytes>","currency":"CHW",
//!  "exponent":2,"admin_keys":["<32 bytes>"],"auditor_keys":[],"node_key":"<32 bytes>",
//!  "genesis_hash":"<32 bytes>"}
//! ```
//!
//! A ledger whose genesis sets a quorum above one has one more field, `"quorum":N`, after
//! `node_key` (optional: without it the quorum is one), and one whose genesis offsets the
//! ledger's day from UTC has `"day_offset_minutes":M` after that (without it, UTC).
//!
//! `genesis_hash` is `Genesis::hash` (SHA-256 of `"cercle/genesis/v1"` and the canonical
//! genesis), to which the first entry chains; compare it with the one the association
//! published.
//!
//! Lines 2 to N+1, the entries in sequence order, one per line (entry `n` on line `n + 1`):
//!
//! ```json
//! {"type":"entry","sequence":1,"timestamp_ms":1795341600000,"prev_hash":"<32 bytes>",
//!  "signatures":[{"signer":"<32 bytes>","signature":"<64 bytes>"}],
//!  "body":"<OperationBody, protobuf>",
//!  "balances_after":[{"account":"alice-bakery","balance_minor":0}],
//!  "sections":[],"entry_hash":"<32 bytes>"}
//! ```
//!
//! These are the fields of the canonical entry (`cercle_core::Entry::encode`); the body is
//! the operation exactly as signed, and `entry_hash` is the entry's hash, SHA-256 of
//! `0x00` and its commitment (`cercle_core::entry`). A clearing run's entry has a section,
//! `{"tag":1,"parts":["<hex>",...]}`: its record's header, then each firm's part (its
//! cleared invoices, payment and potentials), which the replay checks.
//!
//! Last line, the node's signed tree head over exactly those N entries:
//!
//! ```json
//! {"type":"tree_head","ledger_id":"<16 bytes>","tree_size":N,"root_hash":"<32 bytes>",
//!  "timestamp_ms":1795341600000,"signature":"<64 bytes>"}
//! ```
//!
//! The signature is the node key's (named in the genesis) over
//! `cercle_core::checkpoint::TreeHead::message`; `root_hash` is the RFC 9162 Merkle root
//! whose leaves are the entries' hashes.
//!
//! # Reading
//!
//! [`read`] parses the genesis and the tree head (the first and last lines) at once, and
//! hands back the entries as an iterator that parses one line at a time: a log of any
//! length is checked in constant memory. A line that is not well-formed, or whose
//! `genesis_hash` or `entry_hash` does not match its content, is an error naming its line.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use cercle_core::checkpoint::TreeHead;
use cercle_core::{
    AccountId, BalanceAfter, Entry, Envelope, Genesis, LedgerId, Operation, PublicKey, Section, SectionTag,
    Signature,
};
use cercle_limits::{JSONL_LINE_BYTES_MAX, JSONL_READ_BUFFER_BYTES, JSONL_TREE_HEAD_LINE_BYTES_MAX};
use serde::{Deserialize, Serialize};

use crate::{LogWriter, SignedTreeHead, SourceError};

/// The `format` of the genesis line.
pub const FORMAT: &str = "cercle-log/v1";
/// Entry `n` is on line `n + LINE_OFFSET`: the genesis is line 1.
pub const LINE_OFFSET: u64 = 1;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum GenesisTag {
    #[serde(rename = "genesis")]
    Genesis,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum EntryTag {
    #[serde(rename = "entry")]
    Entry,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum TreeHeadTag {
    #[serde(rename = "tree_head")]
    TreeHead,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisLine<'a> {
    #[serde(rename = "type")]
    tag: GenesisTag,
    #[serde(borrow)]
    format: Cow<'a, str>,
    #[serde(borrow)]
    ledger_id: Cow<'a, str>,
    #[serde(borrow)]
    currency: Cow<'a, str>,
    exponent: u8,
    #[serde(borrow)]
    admin_keys: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    auditor_keys: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    node_key: Cow<'a, str>,
    #[serde(default = "quorum_of_one", skip_serializing_if = "is_quorum_of_one")]
    quorum: u8,
    #[serde(default, skip_serializing_if = "is_utc")]
    day_offset_minutes: i16,
    #[serde(borrow)]
    genesis_hash: Cow<'a, str>,
}

fn quorum_of_one() -> u8 {
    1
}

fn is_quorum_of_one(quorum: &u8) -> bool {
    *quorum == 1
}

fn is_utc(offset_minutes: &i16) -> bool {
    *offset_minutes == 0
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine<'a> {
    #[serde(rename = "type")]
    tag: EntryTag,
    sequence: u64,
    timestamp_ms: u64,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    signatures: Vec<SignatureLine<'a>>,
    #[serde(borrow)]
    body: Cow<'a, str>,
    #[serde(borrow)]
    balances_after: Vec<BalanceLine<'a>>,
    #[serde(borrow)]
    sections: Vec<SectionLine<'a>>,
    #[serde(borrow)]
    entry_hash: Cow<'a, str>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureLine<'a> {
    #[serde(borrow)]
    signer: Cow<'a, str>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionLine<'a> {
    tag: u8,
    #[serde(borrow)]
    parts: Vec<Cow<'a, str>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceLine<'a> {
    #[serde(borrow)]
    account: Cow<'a, str>,
    balance_minor: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeHeadLine<'a> {
    #[serde(rename = "type")]
    tag: TreeHeadTag,
    #[serde(borrow)]
    ledger_id: Cow<'a, str>,
    tree_size: u64,
    #[serde(borrow)]
    root_hash: Cow<'a, str>,
    timestamp_ms: u64,
    #[serde(borrow)]
    signature: Cow<'a, str>,
}

fn hex(bytes: &[u8]) -> Cow<'static, str> {
    Cow::Owned(hex::encode(bytes))
}

/// Lowercase hex into exactly `N` bytes.
fn unhex<const N: usize>(text: &str, field: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if text.len() != 2 * N {
        return Err(format!("{field} must be {N} bytes ({} hex digits), got {} digits", 2 * N, text.len()));
    }
    unhex_into(text.as_bytes(), &mut out, field)?;
    Ok(out)
}

/// Lowercase hex into bytes.
fn unhex_vec(text: &str, field: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("{field} has an odd number of hex digits"));
    }
    let mut out = vec![0u8; text.len() / 2];
    unhex_into(text.as_bytes(), &mut out, field)?;
    Ok(out)
}

/// The value of each lowercase hex digit; `0xff` for every other byte.
const HEX_DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes `2 * out.len()` lowercase hex digits (the caller checked the length). A
/// table lookup per digit: hex is most of an entry line, and parsing it is on the
/// auditor's critical path.
fn unhex_into(text: &[u8], out: &mut [u8], field: &str) -> Result<(), String> {
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (HEX_DIGITS[usize::from(pair[0])], HEX_DIGITS[usize::from(pair[1])]);
        if (high | low) == 0xff {
            return Err(format!("{field} is not lowercase hex"));
        }
        *byte = high << 4 | low;
    }
    Ok(())
}

/// The genesis line.
pub fn genesis_line(genesis: &Genesis) -> String {
    let keys = |keys: &[PublicKey]| keys.iter().map(|k| hex(&k.0)).collect();
    let line = GenesisLine {
        tag: GenesisTag::Genesis,
        format: Cow::Borrowed(FORMAT),
        ledger_id: hex(&genesis.ledger_id.0),
        currency: Cow::Borrowed(&genesis.currency),
        exponent: genesis.exponent,
        admin_keys: keys(&genesis.admin_keys),
        auditor_keys: keys(&genesis.auditor_keys),
        node_key: hex(&genesis.node_key.0),
        quorum: genesis.quorum,
        day_offset_minutes: genesis.day_offset_minutes,
        genesis_hash: hex(&genesis.hash()),
    };
    to_line(&line)
}

/// An entry line.
pub fn entry_line(entry: &Entry) -> String {
    let line = EntryLine {
        tag: EntryTag::Entry,
        sequence: entry.sequence,
        timestamp_ms: entry.timestamp_ms,
        prev_hash: hex(&entry.prev_hash),
        signatures: entry
            .envelope
            .signatures
            .iter()
            .map(|s| SignatureLine { signer: hex(&s.signer.0), signature: hex(&s.signature) })
            .collect(),
        body: hex(&entry.envelope.body),
        balances_after: entry
            .balances_after
            .iter()
            .map(|b| BalanceLine {
                account: Cow::Borrowed(b.account.as_str()),
                balance_minor: b.balance_minor,
            })
            .collect(),
        sections: entry
            .sections
            .iter()
            .map(|s| SectionLine { tag: s.tag as u8, parts: s.parts.iter().map(|p| hex(p)).collect() })
            .collect(),
        entry_hash: hex(&entry.hash()),
    };
    to_line(&line)
}

/// The tree-head line.
pub fn tree_head_line(signed: &SignedTreeHead) -> String {
    let head = &signed.head;
    let line = TreeHeadLine {
        tag: TreeHeadTag::TreeHead,
        ledger_id: hex(&head.ledger_id.0),
        tree_size: head.tree_size,
        root_hash: hex(&head.root_hash),
        timestamp_ms: head.timestamp_ms,
        signature: hex(&signed.signature),
    };
    to_line(&line)
}

fn to_line<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no
    // custom serialisers.
    serde_json::to_string(value).unwrap_or_default()
}

pub fn parse_genesis(line: &[u8]) -> Result<Genesis, String> {
    let g: GenesisLine<'_> = serde_json::from_slice(line).map_err(|e| format!("not a genesis line: {e}"))?;
    if g.format != FORMAT {
        return Err(format!("format '{}' is not supported; this reads '{FORMAT}'", g.format));
    }
    let keys = |list: &[Cow<'_, str>], field: &str| -> Result<Vec<PublicKey>, String> {
        list.iter().map(|k| unhex(k, field).map(PublicKey)).collect()
    };
    let genesis = Genesis {
        ledger_id: LedgerId(unhex(&g.ledger_id, "ledger_id")?),
        currency: g.currency.into_owned(),
        exponent: g.exponent,
        admin_keys: keys(&g.admin_keys, "an admin key")?,
        auditor_keys: keys(&g.auditor_keys, "an auditor key")?,
        node_key: PublicKey(unhex(&g.node_key, "node_key")?),
        quorum: g.quorum,
        day_offset_minutes: g.day_offset_minutes,
    };
    genesis.validate().map_err(|e| format!("invalid genesis: {e}"))?;
    if unhex::<32>(&g.genesis_hash, "genesis_hash")? != genesis.hash() {
        return Err("genesis_hash does not match the genesis".into());
    }
    Ok(genesis)
}

pub fn parse_entry(line: &[u8]) -> Result<Entry, String> {
    let e: EntryLine<'_> = serde_json::from_slice(line).map_err(|e| format!("not an entry line: {e}"))?;
    let balances_after = e
        .balances_after
        .iter()
        .map(|b| {
            let account = AccountId::parse(&b.account).map_err(|err| err.to_string())?;
            Ok(BalanceAfter { account, balance_minor: b.balance_minor })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let signatures = e
        .signatures
        .iter()
        .map(|s| {
            Ok(Signature {
                signer: PublicKey(unhex(&s.signer, "signer")?),
                signature: unhex(&s.signature, "signature")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let sections = e
        .sections
        .iter()
        .map(|s| {
            let tag = SectionTag::from_u8(s.tag).map_err(|_| format!("unknown section tag {}", s.tag))?;
            let parts =
                s.parts.iter().map(|p| unhex_vec(p, "a section's part")).collect::<Result<Vec<_>, _>>()?;
            Ok(Section { tag, parts })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let entry = Entry {
        sequence: e.sequence,
        timestamp_ms: e.timestamp_ms,
        prev_hash: unhex(&e.prev_hash, "prev_hash")?,
        envelope: Envelope { body: unhex_vec(&e.body, "body")?, signatures },
        balances_after,
        sections,
    };
    if unhex::<32>(&e.entry_hash, "entry_hash")? != entry.hash() {
        return Err(format!("entry_hash does not match the content of entry {}", e.sequence));
    }
    Ok(entry)
}

pub fn parse_tree_head(line: &[u8]) -> Result<SignedTreeHead, String> {
    let t: TreeHeadLine<'_> =
        serde_json::from_slice(line).map_err(|e| format!("not a tree-head line: {e}"))?;
    Ok(SignedTreeHead {
        head: TreeHead {
            ledger_id: LedgerId(unhex(&t.ledger_id, "ledger_id")?),
            tree_size: t.tree_size,
            root_hash: unhex(&t.root_hash, "root_hash")?,
            timestamp_ms: t.timestamp_ms,
        },
        signature: unhex(&t.signature, "signature")?,
    })
}

/// Writes the jsonl export.
pub struct Writer<W: Write> {
    out: W,
    entries: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the genesis line.
    pub fn new(mut out: W, genesis: &Genesis) -> std::io::Result<Self> {
        writeln!(out, "{}", genesis_line(genesis))?;
        Ok(Writer { out, entries: 0 })
    }

    /// Writes one entry line.
    pub fn write_entry(&mut self, entry: &Entry) -> std::io::Result<()> {
        self.entries += 1;
        writeln!(self.out, "{}", entry_line(entry))
    }

    /// Writes the tree-head line, which must commit to exactly the entries written.
    pub fn write_tree_head(&mut self, tree_head: &SignedTreeHead) -> std::io::Result<()> {
        if tree_head.head.tree_size != self.entries {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the tree head commits to {} entries, but {} were written",
                    tree_head.head.tree_size, self.entries
                ),
            ));
        }
        writeln!(self.out, "{}", tree_head_line(tree_head))?;
        self.out.flush()
    }
}

impl<W: Write> LogWriter for Writer<W> {
    fn entry(&mut self, entry: &Entry, _op: &Operation) -> std::io::Result<()> {
        self.write_entry(entry)
    }

    fn finish(&mut self, tree_head: &SignedTreeHead) -> std::io::Result<()> {
        self.write_tree_head(tree_head)
    }
}

/// A jsonl log opened for checking: its genesis and tree head, and its entries to come.
pub struct Log<R> {
    pub genesis: Genesis,
    pub tree_head: SignedTreeHead,
    pub entries: Entries<R>,
}

/// Opens a jsonl log file. See [`from_reader`].
pub fn read(path: &Path) -> Result<Log<BufReader<File>>, SourceError> {
    let file = File::open(path)
        .map_err(|e| SourceError::new(None, format!("cannot open {}: {e}", path.display())))?;
    from_reader(file)
}

/// Reads the genesis (first line) and the tree head (last line) of a jsonl log, and
/// returns them with an iterator over the entry lines in between.
pub fn from_reader<R: Read + Seek>(mut input: R) -> Result<Log<BufReader<R>>, SourceError> {
    let io = |e: std::io::Error| SourceError::new(None, format!("cannot read the log: {e}"));
    let len = input.seek(SeekFrom::End(0)).map_err(io)?;
    // The last line, read backwards from the end: the tree head.
    let tail_len = len.min(JSONL_TREE_HEAD_LINE_BYTES_MAX as u64 + 1);
    input.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    (&mut input).take(tail_len).read_to_end(&mut tail).map_err(io)?;
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Err(SourceError::new(None, "the log does not end with a complete line (a tree-head line)"));
    };
    let last_start_in_tail = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if tail_len == len => 0,
        None => return Err(SourceError::new(None, "the last line is longer than a tree-head line can be")),
    };
    let tree_head_offset = len - tail_len + last_start_in_tail as u64;
    let tree_head_bytes = &body[last_start_in_tail..];

    input.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader = BufReader::with_capacity(JSONL_READ_BUFFER_BYTES, input);
    let mut line = Vec::new();
    read_line(&mut reader, &mut line, 1).map_err(|e| SourceError::new(Some(1), e))?;
    if line.is_empty() {
        return Err(SourceError::new(Some(1), "the log is empty: no genesis line"));
    }
    let genesis_len = line.len() as u64 + 1;
    if genesis_len > tree_head_offset {
        return Err(SourceError::new(Some(2), "the log ends after the genesis: no tree-head line"));
    }
    let genesis = parse_genesis(&line).map_err(|e| SourceError::new(Some(1), e))?;
    let region = tree_head_offset - genesis_len;
    // The tree head's line number is only known once the entries are counted; it is
    // parsed now all the same, so that a log with a bad tree head fails before any work.
    let tree_head = parse_tree_head(tree_head_bytes)
        .map_err(|e| SourceError::new(None, format!("the last line (the tree head): {e}")))?;
    Ok(Log {
        genesis,
        tree_head,
        entries: Entries { reader: reader.take(region), line: LINE_OFFSET, buf: Vec::new(), done: false },
    })
}

/// Reads one line (without its `\n`) of at most [`JSONL_LINE_BYTES_MAX`] bytes into `buf`.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, line: u64) -> Result<(), String> {
    buf.clear();
    let n = reader
        .take(JSONL_LINE_BYTES_MAX as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| format!("cannot read line {line}: {e}"))?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if n > JSONL_LINE_BYTES_MAX {
        return Err(format!("line {line} is longer than {JSONL_LINE_BYTES_MAX} bytes"));
    }
    Ok(())
}

/// The entry lines of a jsonl log, parsed one at a time. Ends at the first error.
pub struct Entries<R> {
    reader: std::io::Take<R>,
    /// The line last read.
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> Iterator for Entries<R> {
    type Item = Result<Entry, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.reader.limit() == 0 {
            return None;
        }
        self.line += 1;
        let line = self.line;
        let parsed = read_line(&mut self.reader, &mut self.buf, line).and_then(|()| parse_entry(&self.buf));
        if parsed.is_err() {
            self.done = true;
        }
        Some(parsed.map_err(|e| SourceError::new(Some(line), e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_strict() {
        let check = |text: &str, expected: Result<[u8; 2], &str>| {
            assert_eq!(unhex::<2>(text, "f"), expected.map_err(str::to_string), "{text:?}");
        };
        check("0aff", Ok([0x0a, 0xff]));
        check("9a5f", Ok([0x9a, 0x5f]));
        check("0AFF", Err("f is not lowercase hex"));
        check("0a", Err("f must be 2 bytes (4 hex digits), got 2 digits"));
        check("0g00", Err("f is not lowercase hex"));
        check("0a0\u{e9}", Err("f must be 2 bytes (4 hex digits), got 5 digits"));
        assert_eq!(unhex_vec("", "f"), Ok(vec![]));
        assert_eq!(unhex_vec("abc", "f"), Err("f has an odd number of hex digits".to_string()));
        assert_eq!(unhex_vec("00ff10", "f"), Ok(vec![0, 255, 16]));
    }
}
