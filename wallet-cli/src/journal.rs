//! The journal of operations signed with an explicit `--op-id`: running the same command
//! again with the same id is a retry, and resubmits the very envelope signed the first
//! time, so the node answers "duplicate" with the original receipt instead of refusing a
//! new signature (whose validity window differs) as a conflict.
//!
//! One file per operation, `<state>/cercle/<ledger-id>/ops/<op-id>.json` (`<state>` is
//! `$XDG_STATE_HOME`, or `~/.local/state`), written once, mode 0600, before the envelope
//! is sent. A retry must be the same operation (same kind, same fields; an invoice's id,
//! which `issue` draws at random, is taken from the saved one): anything else is refused
//! before sending. The journal is bounded: a file is dropped `JOURNAL_RETENTION_MS` after it was
//! written (by then its validity window has long closed), and at most `JOURNAL_OPS_MAX` are kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use cercle_core::{LedgerId, OpKind, Operation, OperationId};
use cercle_limits::{JOURNAL_FILE_BYTES_MAX, JOURNAL_OPS_MAX, JOURNAL_RETENTION_MS};
use cercle_proto as pb;
use serde_json::{Value, json};

use crate::failure::usage;
use crate::{envelopes, files};

/// Format tag of a journal file.
const FORMAT: &str = "cercle-op-journal-v1";

/// `$XDG_STATE_HOME/cercle` when that is an absolute path (as the XDG spec asks), else
/// `$HOME/.local/state/cercle`.
pub fn state_dir(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let base = match xdg_state_home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(dir) => dir,
        None => PathBuf::from(home.filter(|h| !h.is_empty())?).join(".local").join("state"),
    };
    Some(base.join("cercle"))
}

/// The state directory of this process's environment.
pub fn default_state_dir() -> Option<PathBuf> {
    state_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

/// The journal of one ledger.
pub struct Journal {
    dir: PathBuf,
}

/// An operation found in the journal.
pub struct Saved {
    pub envelope: pb::Envelope,
    pub op: Operation,
    pub path: PathBuf,
}

impl Journal {
    /// The journal of `ledger` under the default state directory, if there is one.
    pub fn of_ledger(ledger: &LedgerId) -> Option<Journal> {
        default_state_dir().map(|dir| Journal { dir: dir.join(ledger.to_string()).join("ops") })
    }

    fn path(&self, id: &OperationId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The operation signed earlier with `id`, if any.
    pub fn load(&self, id: &OperationId) -> anyhow::Result<Option<Saved>> {
        let path = self.path(id);
        let text = match read_bounded(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(usage(format!("cannot read the operation journal {}: {e}", path.display())));
            }
        };
        let damaged = |what: String| {
            usage(format!(
                "the operation journal {} is damaged ({what}); move it away to sign operation {id} anew",
                path.display()
            ))
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        if value["format"] != FORMAT {
            return Err(damaged(format!("its format is not {FORMAT}")));
        }
        let envelope = envelopes::parse_line(&value["envelope"].to_string()).map_err(damaged)?;
        let op = cercle_core::body::decode(&envelope.body).map_err(|e| damaged(e.to_string()))?;
        if op.id != *id {
            return Err(damaged(format!("it holds operation {}", op.id)));
        }
        Ok(Some(Saved { envelope, op, path }))
    }

    /// Saves the envelope of `op` (never over an existing file), after dropping what the
    /// journal no longer needs.
    pub fn save(&self, op: &Operation, envelope: &pb::Envelope) -> anyhow::Result<PathBuf> {
        create_private_dir(&self.dir)
            .with_context(|| format!("cannot create the operation journal {}", self.dir.display()))?;
        self.prune(JOURNAL_OPS_MAX);
        let line: Value = serde_json::from_str(&envelopes::to_line(envelope))?;
        let value = json!({
            "format": FORMAT,
            "operation_id": op.id.to_string(),
            "kind": op.kind.name(),
            "valid_until_ms": op.valid_until_ms,
            "envelope": line,
        });
        let path = self.path(&op.id);
        files::write(
            &path,
            format!("{value}\n").as_bytes(),
            false,
            "another run signed this operation id just now",
        )?;
        Ok(path)
    }

    /// Drops files older than `JOURNAL_RETENTION_MS`, then the oldest beyond `ops_max - 1`, so that
    /// one more fits. Best effort: a file that cannot be read or removed stays.
    fn prune(&self, ops_max: usize) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        let mut kept: Vec<(SystemTime, PathBuf)> = Vec::new();
        // Bounded: a directory holding more than twice the bound is cut back on the next save.
        for entry in entries.flatten().take(2 * ops_max) {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(written) = entry.metadata().and_then(|m| m.modified()) else { continue };
            let age = now.duration_since(written).unwrap_or(Duration::ZERO);
            if age > Duration::from_millis(JOURNAL_RETENTION_MS) {
                let _ = std::fs::remove_file(&path);
            } else {
                kept.push((written, path));
            }
        }
        let ops_max = ops_max.max(1);
        if kept.len() >= ops_max {
            kept.sort();
            for (_, path) in &kept[..=kept.len() - ops_max] {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Whether `new` is the operation `saved` signed, so that a retry may resubmit it: the
/// same kind with the same fields, except what the wallet itself drew at random (an
/// issued invoice's id).
pub fn same_operation(saved: &OpKind, new: &OpKind) -> bool {
    match (saved, new) {
        (OpKind::IssueInvoice(saved), OpKind::IssueInvoice(new)) => {
            cercle_core::IssueInvoice { invoice: saved.invoice, ..new.clone() } == *saved
        }
        (saved, new) => saved == new,
    }
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(JOURNAL_FILE_BYTES_MAX + 1).read_to_string(&mut text)?;
    if text.len() as u64 > JOURNAL_FILE_BYTES_MAX {
        return Err(std::io::Error::other(format!("larger than {JOURNAL_FILE_BYTES_MAX} bytes")));
    }
    Ok(text)
}

/// Creates `dir` and its parents, readable by their owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use cercle_core::{AccountId, InvoiceId, IssueInvoice, Transfer};

    use super::*;

    #[test]
    fn the_state_directory_is_under_xdg_state_home_or_home() {
        let check = |xdg: Option<&str>, home: Option<&str>, expected: Option<&str>| {
            let got = state_dir(xdg.map(OsString::from), home.map(OsString::from));
            assert_eq!(got, expected.map(PathBuf::from), "XDG_STATE_HOME={xdg:?} HOME={home:?}");
        };
        check(Some("/var/state"), Some("/home/a"), Some("/var/state/cercle"));
        check(None, Some("/home/a"), Some("/home/a/.local/state/cercle"));
        // A relative XDG_STATE_HOME is invalid and ignored, as the spec says.
        check(Some("rel/state"), Some("/home/a"), Some("/home/a/.local/state/cercle"));
        check(None, None, None);
        check(None, Some(""), None);
    }

    #[test]
    fn a_retry_is_the_same_operation_but_for_what_the_wallet_drew() {
        let id = |h: &str| AccountId::parse(h).unwrap();
        let pay = |amount_minor: i64| {
            OpKind::Transfer(Transfer {
                payer: id("alice"),
                payee: id("bobby"),
                amount_minor,
                memo: "flour".into(),
                invoice_ref: None,
                invoice: None,
            })
        };
        assert!(same_operation(&pay(100), &pay(100)));
        assert!(!same_operation(&pay(100), &pay(200)));
        let issue = |invoice: u8, amount_minor: i64| {
            OpKind::IssueInvoice(IssueInvoice {
                invoice: InvoiceId([invoice; 16]),
                payee: id("alice"),
                payer: id("bobby"),
                amount_minor,
                local_share_percent: 100,
                due_day: None,
                reference: "F-1".into(),
                excluded_from_clearing: false,
            })
        };
        assert!(same_operation(&issue(1, 500), &issue(2, 500)), "a new random id is the same invoice");
        assert!(!same_operation(&issue(1, 500), &issue(1, 600)));
        assert!(!same_operation(&issue(1, 500), &pay(500)));
    }

    #[test]
    fn the_journal_keeps_an_operation_once_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal { dir: dir.path().join("ops") };
        let op = |n: u8| Operation {
            id: OperationId([n; 16]),
            valid_until_ms: 5,
            kind: OpKind::FreezeAccount { account: AccountId::parse("alice").unwrap(), reason: "r".into() },
        };
        let envelope = |n: u8| pb::Envelope {
            body: cercle_core::body::encode(&op(n)),
            signer: vec![n; 32],
            signature: vec![n; 64],
            cosignatures: vec![],
        };
        assert!(journal.load(&op(1).id).unwrap().is_none());
        let path = journal.save(&op(1), &envelope(1)).unwrap();
        let saved = journal.load(&op(1).id).unwrap().unwrap();
        assert_eq!((saved.envelope, saved.op, saved.path), (envelope(1), op(1), path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Written once: a second save of the id is refused.
        assert!(journal.save(&op(1), &envelope(1)).is_err());
        // A file that holds another operation is damaged, not a retry.
        std::fs::copy(&path, journal.path(&op(2).id)).unwrap();
        let err = journal.load(&op(2).id).err().unwrap();
        assert!(err.to_string().contains("damaged"), "{err}");
        // Files past the retention are dropped on the next save.
        let old = SystemTime::now() - Duration::from_millis(JOURNAL_RETENTION_MS + 60_000);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        journal.save(&op(3), &envelope(3)).unwrap();
        assert!(journal.load(&op(1).id).unwrap().is_none());
        assert!(journal.load(&op(3).id).unwrap().is_some());
        // At the bound, the oldest go so that one more fits.
        std::fs::remove_file(journal.path(&op(2).id)).unwrap();
        for n in 10..15u8 {
            journal.save(&op(n), &envelope(n)).unwrap();
            let written = SystemTime::now() - Duration::from_secs(u64::from(100 - n));
            std::fs::File::options()
                .write(true)
                .open(journal.path(&op(n).id))
                .unwrap()
                .set_modified(written)
                .unwrap();
        }
        journal.prune(4);
        let mut left: Vec<u8> = (0..=20u8).filter(|n| journal.path(&op(*n).id).exists()).collect();
        left.sort();
        // Op 3 was written now, the newest; of 10..15 the three newest stay.
        assert_eq!(left, [3, 13, 14]);
    }
}
