//! Operations: what a signed envelope asks the ledger to do, as domain values.
//!
//! These types are produced by the wire boundary (`cercle-proto`), which checks the
//! shape (lengths of ids and keys, handle syntax). The rules that depend on the values
//! (positive amounts, memo length, key counts) are the state machine's, in `state`.

use crate::ids::{AccountId, OperationId, PublicKey};

/// Longest memo on a transfer, in characters.
pub const MEMO_CHARS_MAX: usize = 140;
/// Longest reason on an administrative operation, in characters.
pub const REASON_CHARS_MAX: usize = 280;
/// Longest display name of an account, in characters.
pub const DISPLAY_NAME_CHARS_MAX: usize = 100;
/// Longest invoice reference, in characters.
pub const INVOICE_REF_CHARS_MAX: usize = 64;
/// Most public keys an account may hold at once.
pub const KEYS_PER_ACCOUNT_MAX: usize = 8;
/// Longest validity window an operation may ask for: 31 days.
pub const VALIDITY_MS_MAX: u64 = 31 * 24 * 60 * 60 * 1000;
/// Largest encoded operation body the ledger accepts, in bytes.
pub const BODY_BYTES_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: OperationId,
    pub valid_until_ms: u64,
    pub kind: OpKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    RegisterAccount(RegisterAccount),
    SetLimits(SetLimits),
    FreezeAccount { account: AccountId, reason: String },
    UnfreezeAccount { account: AccountId, reason: String },
    RotateKeys { account: AccountId, keys: Vec<PublicKey> },
    Transfer(Transfer),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterAccount {
    pub account: AccountId,
    pub display_name: String,
    pub keys: Vec<PublicKey>,
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLimits {
    pub account: AccountId,
    pub credit_limit_minor: Option<i64>,
    /// `None`: keep. `Some(None)`: remove the maximum. `Some(Some(m))`: set it to `m`.
    pub max_balance_minor: Option<Option<i64>>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub payer: AccountId,
    pub payee: AccountId,
    pub amount_minor: i64,
    pub memo: String,
    pub invoice_ref: Option<String>,
}

impl OpKind {
    /// A short stable name, for logs and histories.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::RegisterAccount(_) => "register_account",
            OpKind::SetLimits(_) => "set_limits",
            OpKind::FreezeAccount { .. } => "freeze_account",
            OpKind::UnfreezeAccount { .. } => "unfreeze_account",
            OpKind::RotateKeys { .. } => "rotate_keys",
            OpKind::Transfer(_) => "transfer",
        }
    }

    /// Every account the operation touches, in a fixed order. Histories index on these.
    pub fn accounts(&self) -> Vec<&AccountId> {
        match self {
            OpKind::RegisterAccount(r) => vec![&r.account],
            OpKind::SetLimits(s) => vec![&s.account],
            OpKind::FreezeAccount { account, .. }
            | OpKind::UnfreezeAccount { account, .. }
            | OpKind::RotateKeys { account, .. } => vec![account],
            OpKind::Transfer(t) => vec![&t.payer, &t.payee],
        }
    }

    /// True for operations only an administrator may sign.
    pub fn is_administrative(&self) -> bool {
        matches!(
            self,
            OpKind::RegisterAccount(_)
                | OpKind::SetLimits(_)
                | OpKind::FreezeAccount { .. }
                | OpKind::UnfreezeAccount { .. }
        )
    }
}
