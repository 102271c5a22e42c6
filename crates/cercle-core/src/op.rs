//! Operations: what a signed envelope asks the ledger to do, as domain values.
//!
//! These types are produced by the wire boundary (`cercle-proto`), which checks the
//! shape (lengths of ids and keys, handle syntax). The rules that depend on the values
//! (positive amounts, memo length, key counts) are the state machine's, in `state`.

use crate::fees::FeeSchedule;
use crate::groups::GroupName;
use crate::ids::{AccountId, OperationId, PublicKey};
use crate::invoice::InvoiceId;
use crate::profile::{Profile, ProfileChange};

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
    FreezeAccount {
        account: AccountId,
        reason: String,
    },
    UnfreezeAccount {
        account: AccountId,
        reason: String,
    },
    /// Replaces the keys of an account. A key already on another open account is refused
    /// unless `allow_shared_key` says the sharing is meant.
    RotateKeys {
        account: AccountId,
        keys: Vec<PublicKey>,
        allow_shared_key: bool,
    },
    Transfer(Transfer),
    IssueInvoice(IssueInvoice),
    AcceptInvoice(InvoiceParties),
    RejectInvoice {
        invoice: InvoiceParties,
        reason: String,
    },
    CancelInvoice {
        invoice: InvoiceParties,
        reason: String,
    },
    /// Leave an open invoice out of clearing runs (`excluded`), or put it back.
    SetInvoiceClearing {
        invoice: InvoiceParties,
        excluded: bool,
    },
    /// Clear all eligible obligations optimally. The node computes the result; the entry
    /// records it with its certificate (`clearing::ClearingRecord`).
    RunClearing(RunClearing),
    /// Change a firm's display name or profile (sector, place, size), with a reason.
    SetProfile(SetProfile),
    /// Add a key to the administrators or the auditors (`present`), or remove it, with a
    /// reason. The genesis names the first ones; from then on the state holds them.
    SetRole(SetRole),
    /// Close an account for good: at a zero balance, with no open invoice either way. A
    /// firm that leaves owing is settled by a write-off: `write_off_to`, the association's
    /// reserve account, takes its debt (a sensitive act: it needs the quorum).
    CloseAccount {
        account: AccountId,
        reason: String,
        write_off_to: Option<AccountId>,
    },
    /// Create a member group with its default limits, with a reason.
    CreateGroup(GroupLimits),
    /// Change a group's default limits: every member that follows them is bound by the new
    /// ones from the next entry on, without an entry per member.
    SetGroupLimits(SetGroupLimits),
    /// Put an account in a group (or move it to another): it then follows the group's
    /// credit limit and maximum balance, until `SetLimits` gives it its own.
    AssignGroup {
        account: AccountId,
        group: GroupName,
        reason: String,
    },
    /// Make an account follow its group's credit limit (`credit`) and/or maximum balance
    /// (`max`) again, dropping its own: `set-limits ACCOUNT --credit-limit group`.
    FollowGroupLimits {
        account: AccountId,
        credit: bool,
        max: bool,
        reason: String,
    },
    /// Set how many administrators sign a sensitive act, and the credit limit above which
    /// setting a limit is one (`None`: none is). Itself a sensitive act.
    SetQuorum(SetQuorum),
    /// Rotate the node's signing key: every tree head containing this entry (and every
    /// statement, backup and witness of such a size) is signed with `new_pubkey`. Signed by
    /// the quorum of administrators; a key the node used before is refused.
    RotateNodeKey {
        new_pubkey: PublicKey,
        reason: String,
    },
    /// Set the association's fee schedule (`fees::FeeSchedule`), replacing the one in
    /// force, with a reason.
    SetFees(SetFees),
    /// Charge the periodic fees of a ledger month (`charges`): every member's membership
    /// fee and demurrage, paid to the association's account in one entry; each period
    /// once, in order.
    ChargeFees {
        period: crate::charges::Period,
    },
    /// Add a key to an account with a role (`KeyRole`): signed by an owner key of the
    /// account, or by an administrator (then a sensitive act, like a key replacement).
    AddKey(AddKey),
    /// Take a key off an account; never its last owner key. Signed like `AddKey`.
    RemoveKey {
        account: AccountId,
        key: PublicKey,
    },
    /// An owner key approves a pending payment of its account (`pending` is its id, the
    /// sequence of the entry that made it): the money moves, if the payee may still receive
    /// it and it has not expired.
    ApprovePending {
        account: AccountId,
        pending: u64,
        /// What the owner approves, as the pending payment records it: the entry then says
        /// what it paid, and a mismatch is refused.
        payee: AccountId,
        amount_minor: i64,
    },
    /// An owner key declines a pending payment of its account, with a reason: its
    /// reservation is released and nothing moves.
    DeclinePending {
        account: AccountId,
        pending: u64,
        reason: String,
    },
    /// Apply a limit rule (`limitrule`): every firm in its scope gets
    /// `max(floor, min(cap, k × its sales of the 12 ledger months before this one))`, all
    /// recorded in the entry's section.
    ApplyLimitRule(ApplyLimitRule),
}

/// A limit rule applied now, with a reason; `expected_root` (the preview's digest) makes
/// the application refused if its outcome is not the one previewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyLimitRule {
    pub rule: crate::limitrule::LimitRule,
    pub expected_root: Option<[u8; 32]>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFees {
    pub schedule: FeeSchedule,
    pub reason: String,
}

/// A new member group and its default limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLimits {
    pub group: GroupName,
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
    pub reason: String,
}

/// A change of a group's default limits; as in `SetLimits`, `None` keeps a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetGroupLimits {
    pub group: GroupName,
    pub credit_limit_minor: Option<i64>,
    /// `None`: keep. `Some(None)`: remove the maximum. `Some(Some(m))`: set it to `m`.
    pub max_balance_minor: Option<Option<i64>>,
    pub reason: String,
}

/// What a key of an account may sign. Every read of the account is open to every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Everything the account does: the keys given at registration and by a key rotation.
    Owner,
    /// Payments (transfers, invoice payments), each at most `per_transfer_cap_minor`, and
    /// at most `daily_cap_minor` in all over one ledger day (`Genesis::day`). A transfer
    /// above either becomes a pending payment, which an owner approves; caps of zero make
    /// every transfer of the key one (a payer that needs approval).
    Payer { per_transfer_cap_minor: i64, daily_cap_minor: i64 },
    /// Issuing and cancelling the account's invoices.
    Invoicer,
    /// Reads only.
    Viewer,
}

impl KeyRole {
    pub fn name(self) -> &'static str {
        match self {
            KeyRole::Owner => "owner",
            KeyRole::Payer { .. } => "payer",
            KeyRole::Invoicer => "invoicer",
            KeyRole::Viewer => "viewer",
        }
    }

    /// The role in words, caps included: "payer (at most 500.00 CHW a transfer, 2,000.00
    /// CHW a day)".
    pub fn describe(self, money: impl Fn(i64) -> String) -> String {
        match self {
            KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor } => format!(
                "payer (at most {} a transfer, {} a day)",
                money(per_transfer_cap_minor),
                money(daily_cap_minor)
            ),
            other => other.name().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddKey {
    pub account: AccountId,
    pub key: PublicKey,
    pub role: KeyRole,
    /// As in a registration: a key already on another open account only with this set.
    pub allow_shared_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetQuorum {
    pub quorum: u8,
    pub limit_above_minor: Option<i64>,
    pub reason: String,
}

/// A governance role: administrators sign administrative acts and read everything;
/// auditors read everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admin,
    Auditor,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "administrator",
            Role::Auditor => "auditor",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRole {
    pub role: Role,
    pub key: PublicKey,
    /// True: add the key to the role; false: remove it.
    pub present: bool,
    pub reason: String,
}

/// A new invoice, signed by the payee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueInvoice {
    pub invoice: InvoiceId,
    pub payee: AccountId,
    pub payer: AccountId,
    pub amount_minor: i64,
    /// 1 to 100.
    pub local_share_percent: u8,
    /// Days since 1970-01-01.
    pub due_day: Option<u32>,
    pub reference: String,
    pub excluded_from_clearing: bool,
}

/// An existing invoice, named with both its firms: the signer sees who is involved, and
/// the log says which accounts an entry concerns without the state at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceParties {
    pub invoice: InvoiceId,
    pub payee: AccountId,
    pub payer: AccountId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunClearing {
    /// Also settle, through the firms' unused credit, what set-off leaves.
    pub with_credit: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterAccount {
    pub account: AccountId,
    pub display_name: String,
    pub keys: Vec<PublicKey>,
    pub credit_limit_minor: i64,
    pub max_balance_minor: Option<i64>,
    /// The firm's profile at registration (every field may be unknown).
    pub profile: Profile,
    /// Register even if a key is already on another open account (a firm's accountant who
    /// signs for several firms, say). Without it, such a key is refused.
    pub allow_shared_key: bool,
}

/// A change of a firm's display name (`None`: keep it) and profile, by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetProfile {
    pub account: AccountId,
    pub display_name: Option<String>,
    pub profile: ProfileChange,
    pub reason: String,
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
    /// The invoice this payment settles, in part or in full.
    pub invoice: Option<InvoiceId>,
}

impl OpKind {
    /// The payment an entry of this operation made, from its recorded balances: a transfer
    /// that moved money (one held for approval records no balance, and moved none), or an
    /// approved pending payment. Statements, histories, exports and indicators count these.
    pub fn payment(
        &self,
        balances_after: &[crate::entry::BalanceAfter],
    ) -> Option<(&AccountId, &AccountId, i64)> {
        match self {
            OpKind::Transfer(t) if !balances_after.is_empty() => Some((&t.payer, &t.payee, t.amount_minor)),
            OpKind::ApprovePending { account, payee, amount_minor, .. } => {
                Some((account, payee, *amount_minor))
            }
            _ => None,
        }
    }

    /// True for a transfer that its entry shows held for approval (no balance moved).
    pub fn is_held(&self, balances_after: &[crate::entry::BalanceAfter]) -> bool {
        matches!(self, OpKind::Transfer(_)) && balances_after.is_empty()
    }

    /// A short stable name, for logs and histories.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::RegisterAccount(_) => "register_account",
            OpKind::SetLimits(_) => "set_limits",
            OpKind::FreezeAccount { .. } => "freeze_account",
            OpKind::UnfreezeAccount { .. } => "unfreeze_account",
            OpKind::RotateKeys { .. } => "rotate_keys",
            OpKind::Transfer(_) => "transfer",
            OpKind::IssueInvoice(_) => "issue_invoice",
            OpKind::AcceptInvoice(_) => "accept_invoice",
            OpKind::RejectInvoice { .. } => "reject_invoice",
            OpKind::CancelInvoice { .. } => "cancel_invoice",
            OpKind::SetInvoiceClearing { .. } => "set_invoice_clearing",
            OpKind::RunClearing(_) => "run_clearing",
            OpKind::SetProfile(_) => "set_profile",
            OpKind::SetRole(_) => "set_role",
            OpKind::CloseAccount { .. } => "close_account",
            OpKind::CreateGroup(_) => "create_group",
            OpKind::SetGroupLimits(_) => "set_group_limits",
            OpKind::AssignGroup { .. } => "assign_group",
            OpKind::FollowGroupLimits { .. } => "follow_group_limits",
            OpKind::SetQuorum(_) => "set_quorum",
            OpKind::RotateNodeKey { .. } => "rotate_node_key",
            OpKind::SetFees(_) => "set_fees",
            OpKind::ChargeFees { .. } => "charge_fees",
            OpKind::AddKey(_) => "add_key",
            OpKind::RemoveKey { .. } => "remove_key",
            OpKind::ApprovePending { .. } => "approve_pending",
            OpKind::DeclinePending { .. } => "decline_pending",
            OpKind::ApplyLimitRule(_) => "apply_limit_rule",
        }
    }

    /// Every account the operation names, in a fixed order. Histories index on these (and
    /// for a clearing run, on the firms its entry records: see `Entry::accounts`).
    pub fn accounts(&self) -> Vec<&AccountId> {
        match self {
            OpKind::RegisterAccount(r) => vec![&r.account],
            OpKind::AddKey(k) => vec![&k.account],
            OpKind::ApprovePending { account, payee, .. } => vec![account, payee],
            OpKind::SetLimits(s) => vec![&s.account],
            OpKind::SetProfile(p) => vec![&p.account],
            OpKind::FreezeAccount { account, .. }
            | OpKind::UnfreezeAccount { account, .. }
            | OpKind::RotateKeys { account, .. }
            | OpKind::CloseAccount { account, write_off_to: None, .. }
            | OpKind::AssignGroup { account, .. }
            | OpKind::FollowGroupLimits { account, .. }
            | OpKind::RemoveKey { account, .. }
            | OpKind::DeclinePending { account, .. } => vec![account],
            OpKind::CloseAccount { account, write_off_to: Some(reserve), .. } => vec![account, reserve],
            OpKind::Transfer(t) => vec![&t.payer, &t.payee],
            OpKind::IssueInvoice(i) => vec![&i.payer, &i.payee],
            OpKind::AcceptInvoice(i)
            | OpKind::RejectInvoice { invoice: i, .. }
            | OpKind::CancelInvoice { invoice: i, .. }
            | OpKind::SetInvoiceClearing { invoice: i, .. } => vec![&i.payer, &i.payee],
            // A group's change names no account: its members follow it without an entry each.
            // A limit rule's firms are in its entry's section (`Effects::touched`); a charge's
            // firms are the ones its entry records (`charges`), like a clearing run's.
            OpKind::RunClearing(_)
            | OpKind::ApplyLimitRule(_)
            | OpKind::ChargeFees { .. }
            | OpKind::SetRole(_)
            | OpKind::SetQuorum(_)
            | OpKind::RotateNodeKey { .. }
            | OpKind::CreateGroup(_)
            | OpKind::SetGroupLimits(_) => vec![],
            OpKind::SetFees(f) => vec![&f.schedule.account],
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
                | OpKind::RunClearing(_)
                | OpKind::SetProfile(_)
                | OpKind::SetRole(_)
                | OpKind::CloseAccount { .. }
                | OpKind::SetQuorum(_)
                | OpKind::RotateNodeKey { .. }
                | OpKind::CreateGroup(_)
                | OpKind::SetGroupLimits(_)
                | OpKind::AssignGroup { .. }
                | OpKind::FollowGroupLimits { .. }
                | OpKind::SetFees(_)
                | OpKind::ApplyLimitRule(_)
                | OpKind::ChargeFees { .. }
        )
    }
}
