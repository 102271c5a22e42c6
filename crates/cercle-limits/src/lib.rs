//! Every runtime and format limit of Cercle, in one place (TigerBeetle's "put a limit on
//! everything"), with the relations between them asserted at compile time.
//!
//! A limit is a named constant with its unit in its name (`_MAX`, `_BYTES`, `_MS`, a
//! `Duration`). Each is declared once, here, and used by its name from the crate that
//! applies it; no other crate defines a limit of its own. How limits relate (a full
//! `SubmitBatch` fits a request, the largest entry fits a log record and a response, a
//! torn tail can hold a whole group) is stated below them as `const` assertions, so a change
//! that breaks a relation does not compile. `ALL` lists every limit with its value, and a
//! test holds ARCHITECTURE.md's limits table to it, row for row.
//!
//! The groups, in the order they are declared:
//!
//! - **Operations**: what one signed operation may hold (texts, keys, amounts, its body,
//!   its validity window). The core refuses an operation past any of them with a numbered
//!   rejection.
//! - **Ledger**: how much the ledger holds at once (accounts, open invoices) and how much a
//!   clearing run or a statement takes.
//! - **Entries**: the bounds of the frozen entry encoding, and the largest entries the
//!   ledger writes, computed from the bounds above.
//! - **Log**: the log file's record format, the group a write makes durable, and how much
//!   of its end recovery may cut as a torn write.
//! - **State database**: the sled checkpoint of the derived state, and the witnesses of the
//!   log's size.
//! - **Writer**: the single writer's queue and groups.
//! - **Requests**: what one gRPC request or response may hold, pages, and time.
//! - **Connections and streams**: what the node serves at once, and for how long.
//! - **Audit**: the auditor's replay and its offline log format.
//! - **Wallet**: what the `cercle` CLI reads, keeps and waits for.
//!
//! Architecture invariant: no dependencies, nothing but constants, their relations and
//! the table of them. API boundary: the constants, [`ALL`] and [`clearing_entry_bytes`].

use std::time::Duration;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The unit of a limit's value, which says how ARCHITECTURE.md writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// A number of things: `4,096`.
    Count(u128),
    /// Characters of a text: `140 characters`.
    Chars(u128),
    /// Bytes: `4 KiB`, `5 MiB`, or `41,943,050 B` when not a whole number of either.
    Bytes(u128),
    /// Minor units of money: `10,000,000,000,000 minor units`.
    Minor(u128),
    /// A time, in milliseconds: `31 days`, `5 min`, `30 s`, `10 ms`.
    Millis(u128),
}

/// One limit: its name and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub name: &'static str,
    pub value: Quantity,
}

impl Quantity {
    /// The value as ARCHITECTURE.md's limits table writes it.
    pub fn render(self) -> String {
        match self {
            Quantity::Count(n) => thousands(n),
            Quantity::Chars(n) => format!("{} characters", thousands(n)),
            Quantity::Minor(n) => format!("{} minor units", thousands(n)),
            Quantity::Bytes(n) => {
                let (kib, mib) = (KIB as u128, MIB as u128);
                if n >= mib && n % mib == 0 {
                    format!("{} MiB", thousands(n / mib))
                } else if n >= kib && n % kib == 0 {
                    format!("{} KiB", thousands(n / kib))
                } else {
                    format!("{} B", thousands(n))
                }
            }
            Quantity::Millis(ms) => {
                const UNITS: [(u128, &str); 4] =
                    [(86_400_000, "days"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")];
                match UNITS.iter().find(|(unit, _)| ms >= *unit && ms % unit == 0) {
                    Some((unit, name)) => format!("{} {name}", thousands(ms / unit)),
                    None => format!("{} ms", thousands(ms)),
                }
            }
        }
    }
}

/// `4096` as `4,096`.
fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The value of a constant of each kind, as a `Quantity` (in a `const` context).
macro_rules! quantity {
    (count, $v:expr) => {
        Quantity::Count($v as u128)
    };
    (chars, $v:expr) => {
        Quantity::Chars($v as u128)
    };
    (bytes, $v:expr) => {
        Quantity::Bytes($v as u128)
    };
    (minor, $v:expr) => {
        Quantity::Minor($v as u128)
    };
    (ms, $v:expr) => {
        Quantity::Millis($v as u128)
    };
    (duration, $v:expr) => {
        Quantity::Millis($v.as_millis())
    };
}

/// Declares each limit as a `pub const`, and lists them all in `ALL`: the name and the
/// value come from the same tokens, so the list cannot disagree with the constants.
macro_rules! limits {
    ($($(#[$meta:meta])* $name:ident: $ty:ty = $value:expr => $unit:ident;)*) => {
        $($(#[$meta])* pub const $name: $ty = $value;)*

        /// Every limit, in the order declared, with its value: what ARCHITECTURE.md's limits
        /// table lists.
        pub const ALL: &[Limit] = &[$(Limit { name: stringify!($name), value: quantity!($unit, $name) }),*];
    };
}

limits! {
    // ---- Operations ---------------------------------------------------------------------

    /// Largest encoded operation body (the bytes an envelope's signatures cover).
    BODY_BYTES_MAX: usize = 4 * KIB => bytes;
    /// Longest memo on a transfer.
    MEMO_CHARS_MAX: usize = 140 => chars;
    /// Longest reason on an administrative act or an invoice's refusal or cancellation.
    REASON_CHARS_MAX: usize = 280 => chars;
    /// Longest display name of an account.
    DISPLAY_NAME_CHARS_MAX: usize = 100 => chars;
    /// Longest invoice reference.
    INVOICE_REF_CHARS_MAX: usize = 64 => chars;
    /// Shortest account handle (`[a-z0-9][a-z0-9-]*`, so characters are bytes).
    HANDLE_LEN_MIN: usize = 3 => chars;
    /// Longest account handle.
    HANDLE_LEN_MAX: usize = 32 => chars;
    /// Most public keys an account holds at once.
    KEYS_PER_ACCOUNT_MAX: usize = 8 => count;
    /// Keys an account remembers as rotated out, to tell their holders so.
    RETIRED_KEYS_MAX: usize = 8 => count;
    /// Most keys a body's key list may carry before it is even looked at: only stops a huge
    /// list being copied (the rule is `KEYS_PER_ACCOUNT_MAX`).
    WIRE_KEYS_MAX: usize = 64 => count;
    /// Most administrator keys, and most auditor keys, a genesis names and the state holds
    /// after role changes (`TOO_MANY_ROLE_KEYS`).
    GOVERNANCE_KEYS_MAX: usize = 16 => count;
    /// Most signatures the envelope format carries (a quorum of every administrator).
    SIGNATURES_MAX: usize = GOVERNANCE_KEYS_MAX => count;
    /// Signatures the ledger accepts on one operation: the signer and its cosigners, so
    /// also the largest quorum of administrators an association may set.
    OPERATION_SIGNATURES_MAX: usize = 8 => count;
    /// Longest validity window an operation may ask for: 31 days. The operation-id memory
    /// of the ledger is bounded by it.
    VALIDITY_MS_MAX: u64 = 31 * 24 * 60 * 60 * 1000 => ms;
    /// Largest invoice, in minor units (100 billion units with two decimals).
    INVOICE_AMOUNT_MAX_MINOR: i64 = 10_000_000_000_000 => minor;
    /// Largest transfer, credit limit and maximum balance: the same bound as an invoice.
    AMOUNT_MAX_MINOR: i64 = INVOICE_AMOUNT_MAX_MINOR => minor;
    /// The largest exponent (decimal places of the minor unit) a ledger may use.
    EXPONENT_MAX: u8 = 9 => count;
    /// The farthest the ledger's day may be offset from UTC (the genesis's fixed offset,
    /// which decides when a payer key's daily cap starts again): UTC-14:00 to UTC+14:00.
    DAY_OFFSET_MS_MAX: u64 = 14 * 60 * 60 * 1000 => ms;

    // ---- Ledger -------------------------------------------------------------------------

    /// Most accounts a ledger holds.
    ACCOUNTS_MAX: usize = 500_000 => count;
    /// Most member groups a ledger holds (`TOO_MANY_GROUPS`): classes of members with
    /// default limits, named like handles.
    GROUPS_MAX: usize = 256 => count;
    /// Most node keys a ledger's history holds: the genesis's and every rotation's
    /// (`NODE_KEY_INVALID` past it). Verifiers read the whole history with each head.
    NODE_KEYS_MAX: usize = 64 => count;
    /// Most open invoices (issued, accepted or partly settled) a ledger holds at once.
    OPEN_INVOICES_MAX: usize = 2_000_000 => count;
    /// Most pending payments one account has waiting for approval (`TOO_MANY_PENDING`).
    PENDING_PER_ACCOUNT_MAX: usize = 16 => count;
    /// Most pending payments a ledger holds (`TOO_MANY_PENDING`).
    PENDING_TOTAL_MAX: usize = 100_000 => count;
    /// How long a pending payment waits for an owner's approval before it expires and its
    /// reservation is released: 7 days.
    PENDING_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000 => ms;
    /// Most obligations one clearing run takes: bounds its entry and the solver's time.
    CLEARING_OBLIGATIONS_MAX: usize = 500_000 => count;
    /// Most firms one clearing run takes.
    CLEARING_FIRMS_MAX: usize = 100_000 => count;
    /// Most entries a signed statement lists; a longer period must be split.
    STATEMENT_ENTRIES_MAX: usize = 10_000 => count;
    /// Largest transfer levy, in basis points (10%).
    TRANSFER_LEVY_BP_MAX: u16 = 1_000 => count;
    /// Largest demurrage, in basis points a month (5%).
    DEMURRAGE_BP_MAX: u16 = 500 => count;
    /// Most membership fees of a fee schedule: one per size class.
    MEMBERSHIP_CLASSES_MAX: usize = 5 => count;
    /// Most firms one periodic charge lists (`TOO_MANY_CHARGES`): its section holds a
    /// header and a part per firm, within `PARTS_MAX`.
    CHARGE_FIRMS_MAX: usize = CLEARING_FIRMS_MAX => count;
    /// Most firms one application of a limit rule covers (`LIMIT_RULE_TOO_MANY_FIRMS`): its
    /// entry has a part per firm. A larger circuit applies the rule group by group.
    LIMIT_RULE_FIRMS_MAX: usize = CLEARING_FIRMS_MAX => count;
    /// Largest factor of a limit rule, in basis points of a firm's sales (10 times them).
    LIMIT_RULE_FACTOR_BP_MAX: u32 = 100_000 => count;
    /// Ledger months of sales an account keeps: the month in progress and the 12 whole
    /// months before it, the window of a limit rule.
    SALES_MONTHS_MAX: usize = 13 => count;

    // ---- Entries ------------------------------------------------------------------------

    /// Most balances one entry records outside its sections.
    BALANCES_MAX: usize = 16 => count;
    /// Most sections of one entry.
    SECTIONS_MAX: usize = 4 => count;
    /// Most parts of one section: a clearing run's firms and its header.
    PARTS_MAX: usize = CLEARING_FIRMS_MAX + 1 => count;
    /// Most hashes of a Merkle frontier: one per set bit of a `u64` size.
    FRONTIER_HASHES_MAX: usize = 64 => count;
    /// Largest entry of an operation other than a clearing run (`Entry::encode`): the fixed
    /// fields, a full body, its signatures and `BALANCES_MAX` balances of the longest
    /// handles, no section.
    OPERATION_ENTRY_BYTES_MAX: usize = ENTRY_FIXED_BYTES
        + BODY_BYTES_MAX
        + OPERATION_SIGNATURES_MAX * SIGNATURE_BYTES
        + BALANCES_MAX * (4 + HANDLE_LEN_MAX + 8) => bytes;
    /// Largest entry of a clearing run: `clearing_entry_bytes` at `CLEARING_FIRMS_MAX` firms
    /// and `CLEARING_OBLIGATIONS_MAX` cleared invoices.
    CLEARING_ENTRY_BYTES_MAX: usize =
        clearing_entry_bytes(CLEARING_FIRMS_MAX, CLEARING_OBLIGATIONS_MAX) => bytes;
    /// Largest entry of a limit rule's application: `limit_rule_entry_bytes` at
    /// `LIMIT_RULE_FIRMS_MAX` firms.
    LIMIT_RULE_ENTRY_BYTES_MAX: usize = limit_rule_entry_bytes(LIMIT_RULE_FIRMS_MAX) => bytes;

    // ---- Log ----------------------------------------------------------------------------

    /// Bytes of the log file before its first record: the magic and the genesis hash.
    LOG_HEADER_BYTES: u64 = 8 + 32 => bytes;
    /// Bytes of a record's header: length (u32), index in its group (u16), CRC (u32).
    RECORD_HEADER_BYTES: usize = 4 + 2 + 4 => bytes;
    /// Largest record payload (an encoded entry), on append and on read: a clearing run's
    /// entry at its bounds (`CLEARING_ENTRY_BYTES_MAX`) fits.
    ENTRY_BYTES_MAX: usize = 40 * MIB => bytes;
    /// Most records in one group (a record's `index` is below it).
    GROUP_RECORDS_MAX: usize = 1024 => count;
    /// Longest tail recovery may cut on its own: one group, which is at most one entry of
    /// `ENTRY_BYTES_MAX` (a clearing run or a periodic charge is written alone) or `GROUP_RECORDS_MAX` records of
    /// operation entries. Damage further from the end is corruption.
    TORN_TAIL_BYTES_MAX: u64 = (ENTRY_BYTES_MAX + RECORD_HEADER_BYTES) as u64 => bytes;
    /// How far ahead of its end the log file is allocated (`fallocate`) once it must grow.
    RESERVE_AHEAD_BYTES: u64 = 64 * MIB as u64 => bytes;
    /// The buffer the start-up scan reads the log through.
    LOG_READ_BUFFER_BYTES: usize = MIB => bytes;
    /// The records the start-up scan hands to a checking thread at once (at least one
    /// record, however large).
    LOG_SCAN_BATCH_BYTES: usize = 4 * MIB => bytes;
    /// Batches of the start-up scan read but not yet consumed: its memory bound.
    LOG_SCAN_BATCHES_MAX: usize = 8 => count;

    // ---- State database -----------------------------------------------------------------

    /// Most sequences in one history block of the state database.
    HISTORY_BLOCK_MAX: usize = 256 => count;
    /// sled's page cache. Its default (1 GiB) made the node's memory grow with the log; the
    /// state's hot part fits in far less.
    STATE_CACHE_BYTES: u64 = 128 * MIB as u64 => bytes;
    /// How long opening the state waits for sled's own lock to be released.
    STATE_LOCK_WAIT: Duration = Duration::from_secs(10) => duration;
    /// How often the state database receives a checkpoint.
    CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2) => duration;
    /// A checkpoint is written sooner once this many entries are pending.
    CHECKPOINT_ENTRIES_MAX: u64 = 65_536 => count;
    /// Past this many pending entries (the state database cannot be written: a full disk),
    /// the writer refuses new operations until a checkpoint goes through.
    PENDING_ENTRIES_MAX: u64 = 1_000_000 => count;
    /// Durable groups waiting for the checkpointer; past it, the writer waits.
    CHECKPOINT_QUEUE_MAX: usize = 64 => count;
    /// How often the node persists its signed tree head, the witness of the log's size.
    WITNESS_INTERVAL: Duration = Duration::from_secs(1) => duration;

    // ---- Writer -------------------------------------------------------------------------

    /// Most operations waiting for the writer, counting those executed and not yet answered.
    /// Past it, `Submit` is answered RESOURCE_EXHAUSTED and `SubmitBatch` BUSY, unverified.
    WRITE_QUEUE_MAX: usize = 4096 => count;
    /// Most operations the writer applies and persists as one group.
    WRITE_BATCH_MAX: usize = 512 => count;
    /// Room in the writer's channel beyond the operations' places: snapshots and plans.
    CONTROL_MESSAGES_MAX: usize = 64 => count;
    /// How many times a clearing run is planned away from the writer before it is solved on it.
    CLEARING_PLANS_MAX: u32 = 3 => count;

    // ---- Requests -----------------------------------------------------------------------

    /// Largest gRPC message the node decodes; a larger one is refused before it is parsed.
    REQUEST_BYTES_MAX: usize = 5 * MIB => bytes;
    /// Largest gRPC message the node sends, and the wallet accepts: a page of history cut
    /// after the entry that takes it past `PAGE_BYTES_MAX`, that entry the largest.
    RESPONSE_BYTES_MAX: usize = 48 * MIB => bytes;
    /// What an envelope adds around its body in a `SubmitBatch` request, at most: its own
    /// tag and length (1 + 3), the body's (1 + 2), the signer and signature fields (2 + 32,
    /// 2 + 64) and, for each further signature of `OPERATION_SIGNATURES_MAX`, a cosignature
    /// message (2 + 34 + 66).
    ENVELOPE_WIRE_OVERHEAD_BYTES: usize = (1 + 3)
        + (1 + 2)
        + (2 + 32)
        + (2 + 64)
        + (OPERATION_SIGNATURES_MAX - 1) * (2 + (2 + 32) + (2 + 64)) => bytes;
    /// Most envelopes in one `SubmitBatch`.
    SUBMIT_BATCH_MAX: usize = 1000 => count;
    /// Entries or invoices in a page when the request does not say.
    PAGE_SIZE_DEFAULT: u32 = 100 => count;
    /// Most entries or invoices in a page.
    PAGE_SIZE_MAX: u32 = 1000 => count;
    /// A page of history stops after the entry that takes it past this many bytes.
    PAGE_BYTES_MAX: usize = 4 * MIB => bytes;
    /// Most entries of one account a statement is computed from.
    STATEMENT_HISTORY_MAX: usize = 1_000_000 => count;
    /// Most invoices a `ListInvoices` page looks at to fill itself.
    INVOICE_SCAN_MAX: usize = 100_000 => count;
    /// Most indicator reports computed at once: each reads the whole log on a blocking
    /// thread, and a report over a million entries takes seconds and hundreds of MiB.
    INDICATOR_REPORTS_MAX: usize = 1 => count;
    /// Most accounts `ListKeyAccounts` names for one key.
    KEY_ACCOUNTS_MAX: usize = 100 => count;
    /// How far a signed read's timestamp may be from the node's clock: enough for clocks
    /// kept by NTP or a phone network, short for a replay.
    READ_AUTH_SKEW_MS: u64 = 60 * 1000 => ms;
    /// Longest a request may take to be answered (for a stream: to start).
    REQUEST_TIMEOUT: Duration = Duration::from_secs(30) => duration;

    // ---- Connections and streams --------------------------------------------------------

    /// Most connections open at once; past it, new ones wait in the listen backlog.
    CONNECTIONS_MAX: usize = 4096 => count;
    /// A connection that sends no byte for this long is closed.
    CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(60) => duration;
    /// The node pings (HTTP/2 PING) a connection it has heard nothing from for this long...
    HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20) => duration;
    /// ...and closes it when the answer does not come within this.
    HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10) => duration;
    /// TCP keep-alive: the kernel probes a silent connection after this long,
    TCP_KEEPALIVE_TIME: Duration = Duration::from_secs(60) => duration;
    /// then every this long,
    TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10) => duration;
    /// and drops it after this many probes without an answer.
    TCP_KEEPALIVE_RETRIES: u32 = 3 => count;
    /// After an error accepting a connection (EMFILE), the accept loop waits this long...
    ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10) => duration;
    /// ...doubling the wait up to this.
    ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1) => duration;
    /// Accepted connections waiting to be served.
    ACCEPTED_WAITING_MAX: usize = 16 => count;
    /// Most concurrent requests (HTTP/2 streams) on one connection.
    STREAMS_PER_CONNECTION_MAX: u32 = 256 => count;
    /// File descriptors the node needs besides its connections: the log, sled's files, the
    /// standard streams, the listener.
    FILE_DESCRIPTORS_RESERVED: u64 = 64 => count;
    /// Most `StreamEntries` streams one key may have open at once.
    STREAMS_PER_KEY_MAX: usize = 4 => count;
    /// Most `StreamEntries` streams open at once, all keys together.
    STREAMS_MAX: usize = 32 => count;
    /// A stream whose client reads nothing for this long is ended (DEADLINE_EXCEEDED).
    STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(30) => duration;
    /// Most entries read from the store in one blocking task of a stream.
    STREAM_CHUNK_ENTRIES: u64 = 256 => count;
    /// Most bytes of entries read in one blocking task (a chunk holds at least one entry).
    STREAM_CHUNK_BYTES_MAX: usize = 4 * MIB => bytes;
    /// Entries waiting between a stream's task and its client.
    STREAM_BUFFER_ENTRIES: usize = 64 => count;

    // ---- Audit --------------------------------------------------------------------------

    /// The longest line of the offline log format (jsonl): a clearing run's entry in hex.
    JSONL_LINE_BYTES_MAX: usize = 88 * MIB => bytes;
    /// The longest last line (the tree head) looked for at the end of a jsonl file.
    JSONL_TREE_HEAD_LINE_BYTES_MAX: usize = 64 * KIB => bytes;
    /// How much of a jsonl file is read at a time.
    JSONL_READ_BUFFER_BYTES: usize = 256 * KIB => bytes;
    /// Entries in a round of the auditor's replay once it is up to speed (or 1,024 a
    /// thread, if more).
    AUDIT_ROUND_ENTRIES_MAX: usize = 16 * KIB => count;
    /// Entries a verifying thread takes in the first round.
    AUDIT_ROUND_ENTRIES_FIRST_PER_THREAD: usize = 64 => count;
    /// Most threads verifying signatures.
    AUDIT_THREADS_MAX: usize = 256 => count;

    // ---- Wallet -------------------------------------------------------------------------

    /// How long the wallet waits for the node to accept a connection.
    CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10) => duration;
    /// How long one of the wallet's requests may take.
    CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60) => duration;
    /// Most hashes a proof may hold (RFC 9162 proofs of `u64` sizes hold at most 65).
    PROOF_HASHES_MAX: usize = 66 => count;
    /// Most envelopes one envelope file may hold.
    ENVELOPES_PER_FILE_MAX: usize = 100_000 => count;
    /// Longest line of an envelope file.
    ENVELOPE_LINE_BYTES_MAX: usize = 64 * KIB => bytes;
    /// A key file is three short lines; anything bigger is not one.
    KEY_FILE_BYTES_MAX: u64 = 4 * KIB as u64 => bytes;
    /// A published node key file is a key and a few comment lines.
    NODE_KEY_FILE_BYTES_MAX: u64 = 16 * KIB as u64 => bytes;
    /// Largest operation journal file read: one envelope, in hex, and a few fields.
    JOURNAL_FILE_BYTES_MAX: u64 = 16 * KIB as u64 => bytes;
    /// Most operations the journal keeps; the oldest go first.
    JOURNAL_OPS_MAX: usize = 10_000 => count;
    /// How long the journal keeps an operation: its longest validity window, and as long
    /// again.
    JOURNAL_RETENTION_MS: u64 = 2 * VALIDITY_MS_MAX => ms;
    /// How many times `submit` sends again the envelopes the node was too busy to take.
    BUSY_RETRIES_MAX: u32 = 8 => count;
    /// First pause before such a retry; it doubles each time.
    BUSY_BACKOFF_FIRST: Duration = Duration::from_millis(50) => duration;
    /// Most entries one `history` run shows.
    HISTORY_ENTRIES_MAX: u32 = 100_000 => count;
    /// Most invoices `invoice list` prints unless told otherwise.
    INVOICE_LIST_DEFAULT: usize = 1_000 => count;
    /// Most entries one `proof check` run checks.
    PROOF_ENTRIES_MAX: u32 = 1_000_000 => count;
    /// Entries `proof check` checks when `--limit` is not given.
    PROOF_ENTRIES_DEFAULT: u32 = 10_000 => count;
    /// A `proof check` state file is one tree-head line; anything bigger is not one.
    PROOF_STATE_BYTES_MAX: u64 = 64 * KIB as u64 => bytes;
    /// Largest statement file `statement verify` reads.
    STATEMENT_FILE_BYTES_MAX: u64 = 64 * MIB as u64 => bytes;
    /// Most entries `audit verify --bench` holds in memory to measure the signature ceiling.
    AUDIT_BENCH_ENTRIES_MAX: usize = 200_000 => count;
    /// Entries buffered between the node's stream and the auditor's verifying threads.
    AUDIT_STREAM_BUFFER_ENTRIES: usize = 16 * KIB => count;

    // ---- Running the node ---------------------------------------------------------------

    /// How long a stopping node waits for the requests in flight before it closes their
    /// connections (`--shutdown-grace-ms`'s default).
    SHUTDOWN_GRACE: Duration = Duration::from_secs(10) => duration;
    /// The longest shutdown grace a configuration may ask for.
    SHUTDOWN_GRACE_MS_MAX: u64 = 300_000 => ms;
    /// How long the runtime waits, on exit, for tasks still blocked (a stream's read).
    RUNTIME_SHUTDOWN_WAIT: Duration = Duration::from_secs(1) => duration;
    /// Largest configuration file read.
    CONFIG_BYTES_MAX: u64 = 64 * KIB as u64 => bytes;
    /// Most `/metrics` scrapes served at once; past it, new connections wait in the backlog.
    METRICS_CONNECTIONS_MAX: usize = 16 => count;
    /// Longest a scrape connection may stay open.
    METRICS_REQUEST_TIMEOUT: Duration = Duration::from_secs(10) => duration;
    /// How long `backup` waits for a running node's first signed tree head.
    BACKUP_TREE_HEAD_WAIT: Duration = Duration::from_secs(5) => duration;
    /// Most entries written to the log as one group by a restore.
    RESTORE_GROUP_ENTRIES_MAX: usize = 512 => count;
    /// A restore's group is closed once it holds this many bytes.
    RESTORE_GROUP_BYTES_MAX: usize = 8 * MIB => bytes;
}

// ---- The entry encoding, as far as sizes go (`cercle_core::entry`) ----------------------

/// An entry's fields besides its body, signatures and balances: version (1), sequence
/// (8), timestamp (8), previous hash (32), the body's length (4), the signature count (1),
/// the balance count (4) and the section count (1).
const ENTRY_FIXED_BYTES: usize = 1 + 8 + 8 + 32 + 4 + 1 + 4 + 1;
/// One signature of an envelope: signer (32) and signature (64).
const SIGNATURE_BYTES: usize = 32 + 64;

/// The largest entry of a clearing run of `firms` firms that clears `invoices` invoices,
/// with a full body and the longest handles (`Entry::encode`): the fixed fields, one
/// section (tag and part count), its header part, a part per firm (certificate, payment,
/// balance after, its invoices), and each cleared invoice in the parts of its two firms
/// (id and two amounts). Each part carries a 4-byte length.
pub const fn clearing_entry_bytes(firms: usize, invoices: usize) -> usize {
    const SECTION_HEAD: usize = 1 + 4;
    const HEADER_PART: usize = 4 + (1 + 1 + 8 + 4 + 4);
    const FIRM_PART: usize = 4 + (4 + HANDLE_LEN_MAX) + 3 * 8 + 1 + (1 + 8) + 4;
    const CLEARED_INVOICE: usize = 16 + 8 + 8;
    ENTRY_FIXED_BYTES
        + BODY_BYTES_MAX
        + OPERATION_SIGNATURES_MAX * SIGNATURE_BYTES
        + SECTION_HEAD
        + HEADER_PART
        + firms * FIRM_PART
        + 2 * invoices * CLEARED_INVOICE
}

/// The largest entry of a limit rule applied to `firms` firms, with a full body and the
/// longest handles (`Entry::encode`): the fixed fields, one section (tag and part count),
/// its header part (version, window, counts) and a part per firm (handle, sales, old
/// limit and where it came from, new limit). Each part carries a 4-byte length.
pub const fn limit_rule_entry_bytes(firms: usize) -> usize {
    const SECTION_HEAD: usize = 1 + 4;
    const HEADER_PART: usize = 4 + (1 + 4 + 4 + 4 + 4);
    const FIRM_PART: usize = 4 + (4 + HANDLE_LEN_MAX) + 8 + 8 + 1 + 8;
    ENTRY_FIXED_BYTES
        + BODY_BYTES_MAX
        + OPERATION_SIGNATURES_MAX * SIGNATURE_BYTES
        + SECTION_HEAD
        + HEADER_PART
        + firms * FIRM_PART
}

// ---- How the limits relate ---------------------------------------------------------------

const _: () = assert!(
    SHUTDOWN_GRACE.as_millis() <= SHUTDOWN_GRACE_MS_MAX as u128,
    "the default grace is one a file may set"
);
const _: () = assert!(
    BACKUP_TREE_HEAD_WAIT.as_millis() >= 2 * WITNESS_INTERVAL.as_millis(),
    "a backup waits through more than one witness interval of a loaded node"
);

// Operations.
const _: () = assert!(KEYS_PER_ACCOUNT_MAX <= WIRE_KEYS_MAX, "a key list the rule allows must decode");
const _: () = assert!(KEYS_PER_ACCOUNT_MAX <= u8::MAX as usize, "an account encodes its key count in a u8");
const _: () = assert!(SIGNATURES_MAX <= u8::MAX as usize, "an entry encodes its signature count in a u8");
const _: () = assert!(OPERATION_SIGNATURES_MAX >= 1 && OPERATION_SIGNATURES_MAX <= SIGNATURES_MAX);
const _: () = assert!(HANDLE_LEN_MIN >= 1 && HANDLE_LEN_MIN <= HANDLE_LEN_MAX);
const _: () = assert!(AMOUNT_MAX_MINOR > 0 && INVOICE_AMOUNT_MAX_MINOR > 0);
// No balance can overflow an i64, whatever is paid: every negative balance is above
// -AMOUNT_MAX_MINOR (a credit limit), and the positive ones sum to the negative ones.
const _: () = assert!((ACCOUNTS_MAX as i128) * (AMOUNT_MAX_MINOR as i128) < i64::MAX as i128);
// Every sum of a clearing run's amounts fits an i64 on the wire.
const _: () =
    assert!((CLEARING_OBLIGATIONS_MAX as i128) * (INVOICE_AMOUNT_MAX_MINOR as i128) <= i64::MAX as i128);

// Entries and the log.
const _: () = assert!(SECTIONS_MAX <= u8::MAX as usize, "an entry encodes its section count in a u8");
const _: () =
    assert!(PARTS_MAX == CLEARING_FIRMS_MAX + 1, "a clearing section: a header and a part per firm");
const _: () = assert!(CHARGE_FIRMS_MAX < PARTS_MAX, "a charges section: a header and a part per firm");
// A charge's entry at its bound fits: each part (its length, then at most a version, a
// handle of HANDLE_LEN_MAX with its length, five i64 and an outcome byte) is under 128 bytes.
const _: () = assert!(4 + 1 + 1 + 4 + HANDLE_LEN_MAX + 5 * 8 <= 128);
const _: () = assert!(OPERATION_ENTRY_BYTES_MAX + (CHARGE_FIRMS_MAX + 1) * 128 <= ENTRY_BYTES_MAX);
const _: () =
    assert!(BODY_BYTES_MAX <= OPERATION_ENTRY_BYTES_MAX && OPERATION_ENTRY_BYTES_MAX <= ENTRY_BYTES_MAX);
// Every entry the ledger writes can be appended and read back: a clearing run at its bounds
// too (each cleared invoice is in the parts of both its firms).
const _: () =
    assert!(CLEARING_ENTRY_BYTES_MAX <= ENTRY_BYTES_MAX, "a clearing run's entry fits a log record");
const _: () =
    assert!(LIMIT_RULE_ENTRY_BYTES_MAX <= ENTRY_BYTES_MAX, "a limit rule's entry fits a log record");
const _: () =
    assert!(LIMIT_RULE_FIRMS_MAX < PARTS_MAX, "a limit rule's section: a header and a part per firm");
const _: () = assert!(SALES_MONTHS_MAX <= u8::MAX as usize, "an account encodes its sales months in a u8");
const _: () = assert!(ENTRY_BYTES_MAX <= u32::MAX as usize, "a record encodes its length in a u32");
const _: () = assert!(GROUP_RECORDS_MAX <= u16::MAX as usize + 1, "a record encodes its index in a u16");
// A torn tail is one group: the largest entry alone, or a full group of operation entries.
const _: () = assert!(TORN_TAIL_BYTES_MAX > ENTRY_BYTES_MAX as u64);
const _: () = assert!(TORN_TAIL_BYTES_MAX >= (ENTRY_BYTES_MAX + RECORD_HEADER_BYTES) as u64);
const _: () = assert!(
    TORN_TAIL_BYTES_MAX >= (GROUP_RECORDS_MAX * (RECORD_HEADER_BYTES + OPERATION_ENTRY_BYTES_MAX)) as u64
);
const _: () = assert!(HISTORY_BLOCK_MAX <= u16::MAX as usize, "a history block encodes its count in a u16");

// The writer: a group is one log group, and fits the queue.
const _: () = assert!(WRITE_BATCH_MAX <= GROUP_RECORDS_MAX, "a writer's group is written as one log group");
const _: () = assert!(WRITE_BATCH_MAX <= WRITE_QUEUE_MAX);
const _: () = assert!(SUBMIT_BATCH_MAX <= WRITE_QUEUE_MAX, "a whole batch can find places in an empty queue");
// A checkpoint is due long before the writer stops for want of one.
const _: () = assert!(CHECKPOINT_ENTRIES_MAX < PENDING_ENTRIES_MAX);

// Requests and responses.
// A full SubmitBatch of the largest envelopes the ledger accepts, each with a full quorum's
// signatures, fits a request.
const _: () = assert!(BODY_BYTES_MAX < 1 << 14, "ENVELOPE_WIRE_OVERHEAD_BYTES counts a 2-byte body length");
const _: () =
    assert!(REQUEST_BYTES_MAX >= SUBMIT_BATCH_MAX * (BODY_BYTES_MAX + ENVELOPE_WIRE_OVERHEAD_BYTES));
// A page of entries stops after the entry that takes it past PAGE_BYTES_MAX: with the
// largest entry it still fits a response, and so does a stream's message of one entry.
const _: () = assert!(RESPONSE_BYTES_MAX >= PAGE_BYTES_MAX + ENTRY_BYTES_MAX);
const _: () = assert!(PAGE_SIZE_DEFAULT <= PAGE_SIZE_MAX);
const _: () = assert!(INVOICE_SCAN_MAX >= PAGE_SIZE_MAX as usize, "a page of invoices can fill itself");
const _: () = assert!(STATEMENT_HISTORY_MAX >= STATEMENT_ENTRIES_MAX);

// Connections and streams.
// A live client is always pinged, and answers, before its connection counts as idle.
const _: () = assert!(2 * HTTP2_KEEPALIVE_INTERVAL.as_millis() <= CONNECTION_IDLE_TIMEOUT.as_millis());
const _: () = assert!(ACCEPT_BACKOFF_START.as_millis() <= ACCEPT_BACKOFF_MAX.as_millis());
const _: () = assert!(STREAMS_PER_KEY_MAX <= STREAMS_MAX);
const _: () = assert!(STREAM_CHUNK_ENTRIES >= 1 && STREAM_BUFFER_ENTRIES >= 1);

// Audit: the largest entry, in hex, fits a jsonl line, with its field names and the quotes
// and commas around each of its parts.
const _: () = assert!(JSONL_LINE_BYTES_MAX >= 2 * ENTRY_BYTES_MAX + 3 * PARTS_MAX + MIB);
const _: () = assert!(AUDIT_ROUND_ENTRIES_FIRST_PER_THREAD <= AUDIT_ROUND_ENTRIES_MAX);

// Wallet.
// An envelope of the largest body with every signature, in hex, fits a line of an envelope
// file and a journal file, with room for the other fields.
const ENVELOPE_HEX_BYTES_MAX: usize = 2 * (BODY_BYTES_MAX + SIGNATURES_MAX * SIGNATURE_BYTES);
const _: () = assert!(ENVELOPE_LINE_BYTES_MAX >= ENVELOPE_HEX_BYTES_MAX + KIB);
const _: () = assert!(JOURNAL_FILE_BYTES_MAX as usize >= ENVELOPE_HEX_BYTES_MAX + KIB);
// The journal keeps an operation at least as long as it can be retried.
const _: () = assert!(JOURNAL_RETENTION_MS >= VALIDITY_MS_MAX);
// The node gives up on a request before the wallet does, so the wallet hears why.
const _: () = assert!(CLIENT_REQUEST_TIMEOUT.as_millis() > REQUEST_TIMEOUT.as_millis());
const _: () = assert!(PROOF_HASHES_MAX > FRONTIER_HASHES_MAX, "an RFC 9162 proof of a u64 size fits");
const _: () = assert!(PROOF_ENTRIES_DEFAULT <= PROOF_ENTRIES_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    /// ARCHITECTURE.md's limits table: `| `NAME` | value | meaning |` rows.
    fn table() -> Vec<(String, String)> {
        let doc = include_str!("../../../ARCHITECTURE.md");
        let section = doc.split("\n### Limits\n").nth(1).expect("ARCHITECTURE.md has a Limits section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_string(), cells[2].to_string())
            })
            .collect()
    }

    #[test]
    fn architecture_md_lists_every_limit_with_its_value() {
        let rows = table();
        let mut problems = Vec::new();
        for limit in ALL {
            let expected = limit.value.render();
            match rows.iter().find(|(name, _)| name == limit.name) {
                None => problems.push(format!("no row for {} ({expected})", limit.name)),
                Some((_, value)) if *value != expected => {
                    problems.push(format!("{} is {expected}, the table says {value}", limit.name))
                }
                Some(_) => {}
            }
        }
        for (name, _) in &rows {
            if !ALL.iter().any(|l| l.name == name) {
                problems.push(format!("the table lists {name}, which is not a limit of cercle-limits"));
            }
        }
        assert!(
            problems.is_empty(),
            "ARCHITECTURE.md (Limits) disagrees with cercle-limits:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn every_public_constant_is_a_listed_limit() {
        // A `pub const` written outside `limits!` would be missing from `ALL`, hence from the
        // table.
        for line in include_str!("lib.rs").lines() {
            let line = line.trim_start();
            if let Some(rest) = line.strip_prefix("pub const ").filter(|r| !r.starts_with("fn ")) {
                let name: String = rest.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                assert!(name == "ALL" || ALL.iter().any(|l| l.name == name), "{name} is not in ALL");
            }
        }
        let mut names: Vec<&str> = ALL.iter().map(|l| l.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a limit is listed twice");
    }

    #[test]
    fn values_render_in_the_units_the_table_uses() {
        let check = |q: Quantity, text: &str| assert_eq!(q.render(), text);
        check(Quantity::Count(4096), "4,096");
        check(Quantity::Count(999), "999");
        check(Quantity::Chars(140), "140 characters");
        check(Quantity::Bytes(4096), "4 KiB");
        check(Quantity::Bytes(5 * 1024 * 1024), "5 MiB");
        check(Quantity::Bytes(1536), "1,536 B");
        check(Quantity::Bytes(40), "40 B");
        check(Quantity::Minor(10_000_000_000_000), "10,000,000,000,000 minor units");
        check(Quantity::Millis(31 * 86_400_000), "31 days");
        check(Quantity::Millis(300_000), "5 min");
        check(Quantity::Millis(30_000), "30 s");
        check(Quantity::Millis(1_500), "1,500 ms");
        check(Quantity::Millis(10), "10 ms");
    }
}
