//! What went wrong, sorted into the kinds a script needs to tell apart. Each kind has its
//! exit code and its name in the JSON error object; `main` is the one place that turns an
//! error into both.
//!
//! A command marks an error with its kind by returning a [`Failure`] (through [`usage`],
//! [`fail`], ...) anywhere in the error's chain; a ledger rejection is a
//! [`Rejected`](crate::client::Rejected) in the chain. Anything unmarked is [`Kind::Other`].

use std::fmt;

use serde_json::{Map, Value, json};

use crate::client::Rejected;

/// The kinds of failure, each with its own exit code. The numbers are part of the CLI's
/// interface (README, `cercle --help`): never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad usage or input, refused before anything was sent (clap's own errors exit 2 too).
    Usage,
    /// The ledger refused the operation, with a numbered reason.
    Rejected,
    /// The node could not be reached: connection refused, name resolution, timeout.
    Unreachable,
    /// An audit or a statement does not verify.
    AuditFailed,
    /// The node's log does not extend the one it signed before (`proof check`).
    HistoryRewritten,
    /// The node did not accept the caller's key for this read.
    Denied,
    /// What was asked for does not exist.
    NotFound,
    /// The node stayed too busy to take the request.
    Busy,
    /// Anything else: a file that cannot be written, a node that misbehaves, ...
    Other,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 2,
            Kind::Rejected => 3,
            Kind::Unreachable => 4,
            Kind::AuditFailed => 5,
            Kind::HistoryRewritten => 6,
            Kind::Denied | Kind::NotFound | Kind::Busy | Kind::Other => 1,
        }
    }

    /// The `kind` of the JSON error object.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::Rejected => "rejected",
            Kind::Unreachable => "unreachable",
            Kind::AuditFailed => "audit_failed",
            Kind::HistoryRewritten => "history_rewritten",
            Kind::Denied => "denied",
            Kind::NotFound => "not_found",
            Kind::Busy => "busy",
            Kind::Other => "error",
        }
    }
}

/// An error of a known kind, with the fields its JSON error object carries besides
/// `kind` and `message` (e.g. the `line` of a bad audit log).
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    message: String,
    pub details: Map<String, Value>,
    /// The command has already printed its JSON results (`submit`, one line per envelope):
    /// `main` prints no error object of its own, only the exit code and the line on stderr.
    pub reported: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn new(kind: Kind, message: impl fmt::Display) -> Failure {
        Failure { kind, message: message.to_string(), details: Map::new(), reported: false }
    }

    /// Adds a field to the JSON error object.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Failure {
        self.details.insert(name.to_string(), value.into());
        self
    }
}

/// An error of `kind`.
pub fn fail(kind: Kind, message: impl fmt::Display) -> anyhow::Error {
    Failure::new(kind, message).into()
}

/// Bad usage or input (exit 2).
pub fn usage(message: impl fmt::Display) -> anyhow::Error {
    fail(Kind::Usage, message)
}

/// Returns early with a usage error, like `anyhow::bail!`.
#[macro_export]
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err($crate::failure::usage(format!($($arg)*)))
    };
}

/// An error as the CLI reports it: its kind, the ledger's rejection if it is one, the
/// failure's extra fields, and whether its JSON was already printed.
pub struct Classified<'a> {
    pub kind: Kind,
    pub rejected: Option<&'a Rejected>,
    pub failure: Option<&'a Failure>,
}

/// The kind of `error`: a [`Failure`] anywhere in its chain (as the error or as a context
/// added to it) decides; else a [`Rejected`] makes it a rejection; else it is `Other`.
pub fn classify(error: &anyhow::Error) -> Classified<'_> {
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return Classified { kind: failure.kind, rejected: None, failure: Some(failure) };
    }
    if let Some(rejected) = error.downcast_ref::<Rejected>() {
        return Classified { kind: Kind::Rejected, rejected: Some(rejected), failure: None };
    }
    Classified { kind: Kind::Other, rejected: None, failure: None }
}

/// The JSON error object of an error: `{"kind", "message"}`, and `"code"` and `"reason"`
/// for a ledger rejection, and the failure's own fields.
pub fn error_json(
    kind: Kind,
    rejected: Option<&Rejected>,
    message: &str,
    details: &Map<String, Value>,
) -> Value {
    let mut error = Map::new();
    error.insert("kind".into(), json!(kind.name()));
    if let Some(r) = rejected {
        if let Some(code) = r.code {
            error.insert("code".into(), json!(code));
        }
        error.insert("reason".into(), json!(r.reason));
    }
    error.insert("message".into(), json!(message));
    for (name, value) in details {
        error.insert(name.clone(), value.clone());
    }
    Value::Object(error)
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    fn check(error: anyhow::Error, kind: Kind, exit: u8) {
        let classified = classify(&error);
        assert_eq!(classified.kind, kind, "{error:#}");
        assert_eq!(classified.kind.exit_code(), exit, "{error:#}");
    }

    #[test]
    fn errors_are_classified_through_their_context() {
        check(anyhow::anyhow!("disk full"), Kind::Other, 1);
        check(usage("bad amount"), Kind::Usage, 2);
        check(Err::<(), _>(usage("bad amount")).context("while paying").unwrap_err(), Kind::Usage, 2);
        let rejected =
            Rejected { reason: "CREDIT_LIMIT_EXCEEDED".into(), code: Some(50), message: "m".into() };
        check(anyhow::Error::new(rejected.clone()), Kind::Rejected, 3);
        check(fail(Kind::Unreachable, "refused"), Kind::Unreachable, 4);
        check(fail(Kind::AuditFailed, "AUDIT FAILED"), Kind::AuditFailed, 5);
        check(fail(Kind::HistoryRewritten, "HISTORY REWRITTEN"), Kind::HistoryRewritten, 6);
        // An explicit kind wins over the rejection it explains.
        let wrapped = anyhow::Error::new(rejected).context(Failure::new(Kind::Other, "gave up"));
        check(wrapped, Kind::Other, 1);
    }

    #[test]
    fn the_error_object_names_kind_code_and_reason() {
        let r = Rejected { reason: "CREDIT_LIMIT_EXCEEDED".into(), code: Some(50), message: "m".into() };
        let value = error_json(Kind::Rejected, Some(&r), "limit", &Map::new());
        assert_eq!(
            value,
            json!({"kind": "rejected", "code": 50, "reason": "CREDIT_LIMIT_EXCEEDED", "message": "limit"})
        );
        let failure = Failure::new(Kind::AuditFailed, "x").with("line", 7);
        let value = error_json(failure.kind, None, "x", &failure.details);
        assert_eq!(value, json!({"kind": "audit_failed", "message": "x", "line": 7}));
    }
}
