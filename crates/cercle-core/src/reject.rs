//! Rejections: why the ledger refused an operation, as stable numbered values.
//!
//! Codes are stable and never renumbered; new reasons take new numbers. Codes are grouped
//! by kind (1-9 the envelope and its time, 10-19 authority and governance roles, 20-29
//! accounts, 30-39 values, 40-49 amounts, 50-59 limits and bounds, 60-69 clearing, 70-79
//! closure, 80-83 member groups, 84-89 limit rules, 90-99 a firm's keys and their roles, 100-109 fees and their periodic charges; invoices take 25-28 among the accounts), which is not the order of the checks: when several reasons
//! apply, the one checked first is reported, in the order `state.rs` documents (after the
//! node's own checks of size, signature, decoding and operation id).

use crate::amount::format_with_currency;
use crate::charges::{LastCharge, Period};
use crate::clearing::ClearingDefect;
use crate::groups::GroupName;
use crate::ids::{AccountId, PublicKey};
use crate::invoice::{InvoiceId, InvoiceState};
use crate::op::Role;
use crate::roles::SensitiveAct;
use crate::time::rfc3339_ms;

/// The stable code of a rejection reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum RejectCode {
    Malformed = 1,
    BadSignature = 2,
    Expired = 3,
    ValidityTooLong = 4,
    OperationIdConflict = 5,
    BodyTooLarge = 6,
    NotAdministrator = 10,
    NotAccountKey = 11,
    LastAdministrator = 12,
    RoleAlreadyHeld = 13,
    RoleNotHeld = 14,
    QuorumNotMet = 15,
    QuorumInvalid = 16,
    UnknownAccount = 20,
    AccountExists = 21,
    AccountFrozen = 22,
    AlreadyFrozen = 23,
    NotFrozen = 24,
    UnknownInvoice = 25,
    InvoiceExists = 26,
    InvoiceStateConflict = 27,
    InvoicePartiesMismatch = 28,
    AccountClosed = 29,
    InvalidText = 30,
    InvalidKeys = 31,
    InvalidLimit = 32,
    NothingToChange = 33,
    InvalidInvoice = 34,
    InvalidProfile = 35,
    KeyAlreadyRegistered = 36,
    InvalidAmount = 40,
    SelfTransfer = 41,
    BalanceOverflow = 42,
    InvoiceOverpaid = 43,
    CreditLimitExceeded = 50,
    MaxBalanceExceeded = 51,
    TooManyOpenInvoices = 52,
    NothingToClear = 60,
    ClearingInvalid = 61,
    TooManyObligations = 62,
    TooManyAccounts = 53,
    TooManyRoleKeys = 54,
    AccountNotSettled = 70,
    WriteOffInvalid = 71,
    NodeKeyInvalid = 72,
    NodeKeyInForce = 73,
    NodeKeyUsedBefore = 74,
    UnknownGroup = 80,
    GroupExists = 81,
    TooManyGroups = 82,
    NotInGroup = 83,
    LimitRuleInvalid = 84,
    LimitRuleChanged = 85,
    LimitRuleTooManyFirms = 86,
    LimitRuleNoFirms = 87,
    FeesInvalid = 100,
    PeriodAlreadyCharged = 101,
    PeriodNotBegun = 102,
    NoFeeSchedule = 103,
    NothingToCharge = 104,
    TooManyCharges = 105,
    KeyRoleNotAllowed = 90,
    KeyCapExceeded = 91,
    LastOwnerKey = 92,
    KeyAlreadyOnAccount = 93,
    KeyNotOnAccount = 94,
    PendingUnknown = 95,
    PendingExpired = 96,
    PendingPaymentsOpen = 97,
    TooManyPending = 98,
}

impl RejectCode {
    /// The code's stable name, as it appears in gRPC error details.
    pub fn name(self) -> &'static str {
        match self {
            RejectCode::Malformed => "MALFORMED",
            RejectCode::BadSignature => "BAD_SIGNATURE",
            RejectCode::Expired => "EXPIRED",
            RejectCode::ValidityTooLong => "VALIDITY_TOO_LONG",
            RejectCode::OperationIdConflict => "OPERATION_ID_CONFLICT",
            RejectCode::BodyTooLarge => "BODY_TOO_LARGE",
            RejectCode::NotAdministrator => "NOT_ADMINISTRATOR",
            RejectCode::NotAccountKey => "NOT_ACCOUNT_KEY",
            RejectCode::LastAdministrator => "LAST_ADMINISTRATOR",
            RejectCode::RoleAlreadyHeld => "ROLE_ALREADY_HELD",
            RejectCode::RoleNotHeld => "ROLE_NOT_HELD",
            RejectCode::QuorumNotMet => "QUORUM_NOT_MET",
            RejectCode::QuorumInvalid => "QUORUM_INVALID",
            RejectCode::UnknownAccount => "UNKNOWN_ACCOUNT",
            RejectCode::AccountExists => "ACCOUNT_EXISTS",
            RejectCode::AccountFrozen => "ACCOUNT_FROZEN",
            RejectCode::AlreadyFrozen => "ALREADY_FROZEN",
            RejectCode::NotFrozen => "NOT_FROZEN",
            RejectCode::UnknownInvoice => "UNKNOWN_INVOICE",
            RejectCode::InvoiceExists => "INVOICE_EXISTS",
            RejectCode::InvoiceStateConflict => "INVOICE_STATE_CONFLICT",
            RejectCode::InvoicePartiesMismatch => "INVOICE_PARTIES_MISMATCH",
            RejectCode::AccountClosed => "ACCOUNT_CLOSED",
            RejectCode::InvalidText => "INVALID_TEXT",
            RejectCode::InvalidKeys => "INVALID_KEYS",
            RejectCode::InvalidLimit => "INVALID_LIMIT",
            RejectCode::NothingToChange => "NOTHING_TO_CHANGE",
            RejectCode::InvalidInvoice => "INVALID_INVOICE",
            RejectCode::InvalidProfile => "INVALID_PROFILE",
            RejectCode::KeyAlreadyRegistered => "KEY_ALREADY_REGISTERED",
            RejectCode::InvalidAmount => "INVALID_AMOUNT",
            RejectCode::SelfTransfer => "SELF_TRANSFER",
            RejectCode::BalanceOverflow => "BALANCE_OVERFLOW",
            RejectCode::InvoiceOverpaid => "INVOICE_OVERPAID",
            RejectCode::CreditLimitExceeded => "CREDIT_LIMIT_EXCEEDED",
            RejectCode::MaxBalanceExceeded => "MAX_BALANCE_EXCEEDED",
            RejectCode::TooManyOpenInvoices => "TOO_MANY_OPEN_INVOICES",
            RejectCode::NothingToClear => "NOTHING_TO_CLEAR",
            RejectCode::ClearingInvalid => "CLEARING_INVALID",
            RejectCode::TooManyObligations => "TOO_MANY_OBLIGATIONS",
            RejectCode::TooManyAccounts => "TOO_MANY_ACCOUNTS",
            RejectCode::TooManyRoleKeys => "TOO_MANY_ROLE_KEYS",
            RejectCode::AccountNotSettled => "ACCOUNT_NOT_SETTLED",
            RejectCode::WriteOffInvalid => "WRITE_OFF_INVALID",
            RejectCode::NodeKeyInvalid => "NODE_KEY_INVALID",
            RejectCode::NodeKeyInForce => "NODE_KEY_IN_FORCE",
            RejectCode::NodeKeyUsedBefore => "NODE_KEY_USED_BEFORE",
            RejectCode::UnknownGroup => "UNKNOWN_GROUP",
            RejectCode::GroupExists => "GROUP_EXISTS",
            RejectCode::TooManyGroups => "TOO_MANY_GROUPS",
            RejectCode::NotInGroup => "NOT_IN_GROUP",
            RejectCode::LimitRuleInvalid => "LIMIT_RULE_INVALID",
            RejectCode::LimitRuleChanged => "LIMIT_RULE_CHANGED",
            RejectCode::LimitRuleTooManyFirms => "LIMIT_RULE_TOO_MANY_FIRMS",
            RejectCode::LimitRuleNoFirms => "LIMIT_RULE_NO_FIRMS",
            RejectCode::FeesInvalid => "FEES_INVALID",
            RejectCode::PeriodAlreadyCharged => "PERIOD_ALREADY_CHARGED",
            RejectCode::PeriodNotBegun => "PERIOD_NOT_BEGUN",
            RejectCode::NoFeeSchedule => "NO_FEE_SCHEDULE",
            RejectCode::NothingToCharge => "NOTHING_TO_CHARGE",
            RejectCode::TooManyCharges => "TOO_MANY_CHARGES",
            RejectCode::KeyRoleNotAllowed => "KEY_ROLE_NOT_ALLOWED",
            RejectCode::KeyCapExceeded => "KEY_CAP_EXCEEDED",
            RejectCode::LastOwnerKey => "LAST_OWNER_KEY",
            RejectCode::KeyAlreadyOnAccount => "KEY_ALREADY_ON_ACCOUNT",
            RejectCode::KeyNotOnAccount => "KEY_NOT_ON_ACCOUNT",
            RejectCode::PendingUnknown => "PENDING_UNKNOWN",
            RejectCode::PendingExpired => "PENDING_EXPIRED",
            RejectCode::PendingPaymentsOpen => "PENDING_PAYMENTS_OPEN",
            RejectCode::TooManyPending => "TOO_MANY_PENDING",
        }
    }
}

/// A rejected operation, with the numbers that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed {
        detail: String,
    },
    BadSignature {
        detail: String,
    },
    Expired {
        valid_until_ms: u64,
        now_ms: u64,
    },
    ValidityTooLong {
        valid_until_ms: u64,
        now_ms: u64,
    },
    OperationIdConflict {
        operation_id: String,
    },
    BodyTooLarge {
        bytes: usize,
    },
    NotAdministrator,
    NotAccountKey {
        account: AccountId,
    },
    /// Removing the only administrator key would leave nobody to govern the ledger.
    LastAdministrator {
        key: PublicKey,
    },
    RoleAlreadyHeld {
        role: Role,
        key: PublicKey,
    },
    RoleNotHeld {
        role: Role,
        key: PublicKey,
    },
    /// A sensitive act without its quorum: `signers` are the envelope's keys, each with
    /// whether it is an administrator.
    QuorumNotMet {
        act: SensitiveAct,
        needed: u8,
        signers: Vec<(PublicKey, bool)>,
    },
    /// A quorum out of reach: more than the administrators there are (or would be after a
    /// removal), zero, or more than an envelope carries.
    QuorumInvalid {
        detail: String,
    },
    UnknownAccount {
        account: AccountId,
    },
    AccountExists {
        account: AccountId,
    },
    AccountFrozen {
        account: AccountId,
    },
    AlreadyFrozen {
        account: AccountId,
    },
    NotFrozen {
        account: AccountId,
    },
    UnknownInvoice {
        invoice: InvoiceId,
    },
    InvoiceExists {
        invoice: InvoiceId,
    },
    /// `action` ("accepted", "paid"...) is not possible in the invoice's `state`.
    InvoiceStateConflict {
        invoice: InvoiceId,
        state: InvoiceState,
        action: &'static str,
    },
    InvoicePartiesMismatch {
        invoice: InvoiceId,
        detail: String,
    },
    /// The account is closed: `action` ("pay", "be paid", ...) is not possible any more.
    AccountClosed {
        account: AccountId,
        action: &'static str,
    },
    InvalidText {
        field: &'static str,
        detail: String,
    },
    InvalidKeys {
        detail: String,
    },
    InvalidLimit {
        detail: String,
    },
    /// The operation changes nothing; `hint` says what to give.
    NothingToChange {
        hint: &'static str,
    },
    InvalidInvoice {
        detail: String,
    },
    /// A firm's profile field (sector, commune, postcode, territory, size class) is not
    /// valid; `detail` names the field and what is wrong.
    InvalidProfile {
        detail: String,
    },
    /// A key of the operation is already on another open account and the operation does
    /// not allow sharing it. `account` names that account only to an administrator.
    KeyAlreadyRegistered {
        key: PublicKey,
        account: Option<AccountId>,
    },
    InvalidAmount {
        amount_minor: i64,
    },
    SelfTransfer,
    BalanceOverflow {
        account: AccountId,
    },
    InvoiceOverpaid {
        invoice: InvoiceId,
        amount_minor: i64,
        open_minor: i64,
    },
    CreditLimitExceeded {
        account: AccountId,
        balance_after_minor: i64,
        credit_limit_minor: i64,
    },
    /// The payee may not receive this much. Its balance and maximum are its own: the
    /// payer learns neither.
    MaxBalanceExceeded {
        account: AccountId,
    },
    TooManyAccounts {
        max: usize,
    },
    TooManyOpenInvoices {
        max: usize,
    },
    NothingToClear {
        obligations: usize,
    },
    /// Boxed: the certificate errors are large, and rejections travel in every result.
    ClearingInvalid {
        defect: Box<ClearingDefect>,
    },
    TooManyObligations {
        count: usize,
        max: usize,
    },
    TooManyRoleKeys {
        role: Role,
        max: usize,
    },
    /// An account is closed only at a zero balance with no open invoice, either way.
    AccountNotSettled {
        account: AccountId,
        balance_minor: i64,
        open_invoices: usize,
    },
    /// A write-off at closure that cannot be: `detail` says why (no debt to write off, the
    /// reserve is the account itself).
    WriteOffInvalid {
        account: AccountId,
        detail: String,
    },
    /// A node key rotation to a key that is not a valid ed25519 public key.
    NodeKeyInvalid {
        key: PublicKey,
        detail: String,
    },
    /// A node key rotation to the key in force already.
    NodeKeyInForce {
        key: PublicKey,
    },
    /// A node key rotation back to a key the node used before (from tree size `from_size`).
    NodeKeyUsedBefore {
        key: PublicKey,
        from_size: u64,
    },
    UnknownGroup {
        group: GroupName,
    },
    GroupExists {
        group: GroupName,
    },
    TooManyGroups {
        max: usize,
    },
    /// Following a group's limits needs a group.
    NotInGroup {
        account: AccountId,
    },
    /// A limit rule's values out of their bounds: `detail` names the value and the bound.
    LimitRuleInvalid {
        detail: crate::limitrule::LimitRuleDefect,
    },
    /// The application names the preview it expects (`expected`, the root of its section),
    /// and its outcome now is another one (`actual`): a firm's sales, limit or status
    /// changed, or the ledger month did, since the preview.
    LimitRuleChanged {
        expected: [u8; 32],
        actual: [u8; 32],
        firms: usize,
    },
    /// More firms in the rule's scope than one entry records.
    LimitRuleTooManyFirms {
        firms: usize,
        max: usize,
    },
    /// No active firm in the rule's scope.
    LimitRuleNoFirms {
        group: Option<GroupName>,
    },
    /// A fee schedule out of its limits: `detail` names the value and the limit.
    FeesInvalid {
        detail: String,
    },
    /// The period is the last one charged, or comes before it: each period is charged
    /// once, in order.
    PeriodAlreadyCharged {
        period: Period,
        last: LastCharge,
    },
    /// The period begins after the entry's ledger month (`current`).
    PeriodNotBegun {
        period: Period,
        current: Period,
    },
    /// No fee schedule is set: there is nothing to charge and no account to pay it to.
    NoFeeSchedule,
    /// Nothing is due for the period: `detail` says why.
    NothingToCharge {
        period: Period,
        detail: &'static str,
    },
    /// More than `max` firms have something due: more than one entry lists. `accounts` is
    /// how many accounts the ledger holds.
    TooManyCharges {
        accounts: usize,
        max: usize,
    },
    /// The signing key is on the account, but its role does not sign this: `action` is what
    /// was asked ("pay", "accept an invoice"), `allowed` the roles that may.
    KeyRoleNotAllowed {
        account: AccountId,
        /// The signing key's role (`KeyRole::name`).
        role: &'static str,
        action: &'static str,
        allowed: &'static str,
    },
    /// A payer key's payment above its cap per transfer, or above what is left of its cap
    /// for the ledger's day (`spent_today_minor` already paid that day).
    KeyCapExceeded {
        account: AccountId,
        key: PublicKey,
        amount_minor: i64,
        per_transfer_cap_minor: i64,
        daily_cap_minor: i64,
        spent_today_minor: i64,
    },
    /// Removing (or demoting) the account's only owner key would leave nobody to govern it.
    LastOwnerKey {
        account: AccountId,
        key: PublicKey,
    },
    KeyAlreadyOnAccount {
        account: AccountId,
        key: PublicKey,
    },
    KeyNotOnAccount {
        account: AccountId,
        key: PublicKey,
    },
    /// No pending payment of the account has this id (never made, already approved or
    /// declined, or expired and since forgotten).
    PendingUnknown {
        account: AccountId,
        pending: u64,
    },
    /// The pending payment expired at `expires_ms`: its reservation is released, and it
    /// can no longer be approved.
    PendingExpired {
        account: AccountId,
        pending: u64,
        expires_ms: u64,
    },
    /// An account is closed only with no pending payment waiting.
    PendingPaymentsOpen {
        account: AccountId,
        count: usize,
    },
    /// The account, or the ledger, holds as many pending payments as it may.
    TooManyPending {
        account: AccountId,
        max: usize,
    },
}

impl Rejection {
    pub fn code(&self) -> RejectCode {
        match self {
            Rejection::Malformed { .. } => RejectCode::Malformed,
            Rejection::BadSignature { .. } => RejectCode::BadSignature,
            Rejection::Expired { .. } => RejectCode::Expired,
            Rejection::ValidityTooLong { .. } => RejectCode::ValidityTooLong,
            Rejection::OperationIdConflict { .. } => RejectCode::OperationIdConflict,
            Rejection::BodyTooLarge { .. } => RejectCode::BodyTooLarge,
            Rejection::NotAdministrator => RejectCode::NotAdministrator,
            Rejection::NotAccountKey { .. } => RejectCode::NotAccountKey,
            Rejection::LastAdministrator { .. } => RejectCode::LastAdministrator,
            Rejection::RoleAlreadyHeld { .. } => RejectCode::RoleAlreadyHeld,
            Rejection::RoleNotHeld { .. } => RejectCode::RoleNotHeld,
            Rejection::QuorumNotMet { .. } => RejectCode::QuorumNotMet,
            Rejection::QuorumInvalid { .. } => RejectCode::QuorumInvalid,
            Rejection::UnknownAccount { .. } => RejectCode::UnknownAccount,
            Rejection::AccountExists { .. } => RejectCode::AccountExists,
            Rejection::AccountFrozen { .. } => RejectCode::AccountFrozen,
            Rejection::AlreadyFrozen { .. } => RejectCode::AlreadyFrozen,
            Rejection::NotFrozen { .. } => RejectCode::NotFrozen,
            Rejection::UnknownInvoice { .. } => RejectCode::UnknownInvoice,
            Rejection::InvoiceExists { .. } => RejectCode::InvoiceExists,
            Rejection::InvoiceStateConflict { .. } => RejectCode::InvoiceStateConflict,
            Rejection::InvoicePartiesMismatch { .. } => RejectCode::InvoicePartiesMismatch,
            Rejection::AccountClosed { .. } => RejectCode::AccountClosed,
            Rejection::InvalidText { .. } => RejectCode::InvalidText,
            Rejection::InvalidKeys { .. } => RejectCode::InvalidKeys,
            Rejection::InvalidLimit { .. } => RejectCode::InvalidLimit,
            Rejection::NothingToChange { .. } => RejectCode::NothingToChange,
            Rejection::InvalidInvoice { .. } => RejectCode::InvalidInvoice,
            Rejection::InvalidProfile { .. } => RejectCode::InvalidProfile,
            Rejection::KeyAlreadyRegistered { .. } => RejectCode::KeyAlreadyRegistered,
            Rejection::InvalidAmount { .. } => RejectCode::InvalidAmount,
            Rejection::SelfTransfer => RejectCode::SelfTransfer,
            Rejection::BalanceOverflow { .. } => RejectCode::BalanceOverflow,
            Rejection::InvoiceOverpaid { .. } => RejectCode::InvoiceOverpaid,
            Rejection::CreditLimitExceeded { .. } => RejectCode::CreditLimitExceeded,
            Rejection::MaxBalanceExceeded { .. } => RejectCode::MaxBalanceExceeded,
            Rejection::TooManyOpenInvoices { .. } => RejectCode::TooManyOpenInvoices,
            Rejection::NothingToClear { .. } => RejectCode::NothingToClear,
            Rejection::ClearingInvalid { .. } => RejectCode::ClearingInvalid,
            Rejection::TooManyObligations { .. } => RejectCode::TooManyObligations,
            Rejection::TooManyAccounts { .. } => RejectCode::TooManyAccounts,
            Rejection::TooManyRoleKeys { .. } => RejectCode::TooManyRoleKeys,
            Rejection::AccountNotSettled { .. } => RejectCode::AccountNotSettled,
            Rejection::WriteOffInvalid { .. } => RejectCode::WriteOffInvalid,
            Rejection::NodeKeyInvalid { .. } => RejectCode::NodeKeyInvalid,
            Rejection::NodeKeyInForce { .. } => RejectCode::NodeKeyInForce,
            Rejection::NodeKeyUsedBefore { .. } => RejectCode::NodeKeyUsedBefore,
            Rejection::UnknownGroup { .. } => RejectCode::UnknownGroup,
            Rejection::GroupExists { .. } => RejectCode::GroupExists,
            Rejection::TooManyGroups { .. } => RejectCode::TooManyGroups,
            Rejection::NotInGroup { .. } => RejectCode::NotInGroup,
            Rejection::LimitRuleInvalid { .. } => RejectCode::LimitRuleInvalid,
            Rejection::LimitRuleChanged { .. } => RejectCode::LimitRuleChanged,
            Rejection::LimitRuleTooManyFirms { .. } => RejectCode::LimitRuleTooManyFirms,
            Rejection::LimitRuleNoFirms { .. } => RejectCode::LimitRuleNoFirms,
            Rejection::FeesInvalid { .. } => RejectCode::FeesInvalid,
            Rejection::PeriodAlreadyCharged { .. } => RejectCode::PeriodAlreadyCharged,
            Rejection::PeriodNotBegun { .. } => RejectCode::PeriodNotBegun,
            Rejection::NoFeeSchedule => RejectCode::NoFeeSchedule,
            Rejection::NothingToCharge { .. } => RejectCode::NothingToCharge,
            Rejection::TooManyCharges { .. } => RejectCode::TooManyCharges,
            Rejection::KeyRoleNotAllowed { .. } => RejectCode::KeyRoleNotAllowed,
            Rejection::KeyCapExceeded { .. } => RejectCode::KeyCapExceeded,
            Rejection::LastOwnerKey { .. } => RejectCode::LastOwnerKey,
            Rejection::KeyAlreadyOnAccount { .. } => RejectCode::KeyAlreadyOnAccount,
            Rejection::KeyNotOnAccount { .. } => RejectCode::KeyNotOnAccount,
            Rejection::PendingUnknown { .. } => RejectCode::PendingUnknown,
            Rejection::PendingExpired { .. } => RejectCode::PendingExpired,
            Rejection::PendingPaymentsOpen { .. } => RejectCode::PendingPaymentsOpen,
            Rejection::TooManyPending { .. } => RejectCode::TooManyPending,
        }
    }

    /// A one-line explanation naming the numbers, amounts in `currency` with `exponent`
    /// decimals: "credit limit exceeded: balance would be -1,250.00 CHW, limit is -1,000.00 CHW".
    pub fn message(&self, currency: &str, exponent: u8) -> String {
        let money = |minor: i64| format_with_currency(minor, exponent, currency);
        match self {
            Rejection::Malformed { detail } => format!("malformed operation: {detail}"),
            Rejection::BadSignature { detail } => format!("bad signature: {detail}"),
            Rejection::Expired { valid_until_ms, now_ms } => format!(
                "operation expired: valid until {}, node time is {}",
                rfc3339_ms(*valid_until_ms),
                rfc3339_ms(*now_ms)
            ),
            Rejection::ValidityTooLong { valid_until_ms, now_ms } => format!(
                "validity too long: valid until {} is more than {} days after node time {}",
                rfc3339_ms(*valid_until_ms),
                cercle_limits::VALIDITY_MS_MAX / 86_400_000,
                rfc3339_ms(*now_ms)
            ),
            Rejection::OperationIdConflict { operation_id } => {
                format!("operation id {operation_id} was already used for a different operation")
            }
            Rejection::BodyTooLarge { bytes } => {
                format!("operation body is {bytes} bytes, the maximum is {}", cercle_limits::BODY_BYTES_MAX)
            }
            Rejection::NotAdministrator => {
                "not an administrator: this operation must be signed by an administrator key".into()
            }
            Rejection::NotAccountKey { account } => {
                format!("the signing key is not allowed to sign for account '{account}'")
            }
            Rejection::LastAdministrator { key } => format!(
                "key {key} is the last administrator: the ledger would have none; add another administrator first"
            ),
            Rejection::RoleAlreadyHeld { role, key } => format!("key {key} is already an {}", role.name()),
            Rejection::RoleNotHeld { role, key } => format!("key {key} is not an {}", role.name()),
            Rejection::QuorumNotMet { act, needed, signers } => {
                let admins = signers.iter().filter(|(_, admin)| *admin).count();
                let who: Vec<String> = signers
                    .iter()
                    .map(|(key, admin)| {
                        format!("{key} ({})", if *admin { "administrator" } else { "not an administrator" })
                    })
                    .collect();
                format!(
                    "{} needs the signatures of {needed} administrators, it has {admins}: signed by {}; {}",
                    act.describe(&money),
                    who.join(", "),
                    if admins < signers.len() {
                        "only administrators count towards the quorum"
                    } else {
                        "add the other administrators' signatures with `cercle cosign --file`"
                    }
                )
            }
            Rejection::QuorumInvalid { detail } => format!("invalid quorum: {detail}"),
            Rejection::UnknownAccount { account } => format!("unknown account '{account}'"),
            Rejection::AccountExists { account } => format!("account '{account}' already exists"),
            Rejection::AccountFrozen { account } => format!("account '{account}' is frozen"),
            Rejection::AlreadyFrozen { account } => {
                format!("account '{account}' is already frozen")
            }
            Rejection::NotFrozen { account } => format!("account '{account}' is not frozen"),
            Rejection::UnknownInvoice { invoice } => format!("unknown invoice {invoice}"),
            Rejection::InvoiceExists { invoice } => format!("invoice {invoice} already exists"),
            Rejection::InvoiceStateConflict { invoice, state, action } => {
                format!("invoice {invoice} is {}: it cannot be {action}", state.name().replace('_', " "))
            }
            Rejection::InvoicePartiesMismatch { invoice, detail } => format!("invoice {invoice}: {detail}"),
            Rejection::AccountClosed { account, action } => {
                format!("account '{account}' is closed: it cannot {action}")
            }
            Rejection::InvalidText { field, detail } => format!("invalid {field}: {detail}"),
            Rejection::InvalidKeys { detail } => format!("invalid keys: {detail}"),
            Rejection::InvalidInvoice { detail } => format!("invalid invoice: {detail}"),
            Rejection::InvalidLimit { detail } => format!("invalid limit: {detail}"),
            Rejection::NothingToChange { hint } => format!("nothing to change: {hint}"),
            Rejection::InvalidProfile { detail } => format!("invalid profile: {detail}"),
            Rejection::KeyAlreadyRegistered { key, account } => {
                let on = match account {
                    Some(account) => format!("account '{account}'"),
                    None => "another account".into(),
                };
                format!(
                    "key {key} is already registered on {on}; allow a shared key explicitly (--allow-shared-key) if that is meant"
                )
            }
            Rejection::InvalidAmount { amount_minor } => {
                format!(
                    "invalid amount: {} (an amount must be positive and at most {})",
                    money(*amount_minor),
                    money(cercle_limits::AMOUNT_MAX_MINOR)
                )
            }
            Rejection::SelfTransfer => "an account cannot pay itself".into(),
            Rejection::BalanceOverflow { account } => {
                format!("amount out of range: the balance of '{account}' would overflow")
            }
            Rejection::InvoiceOverpaid { invoice, amount_minor, open_minor } => format!(
                "payment of {} exceeds what remains open on invoice {invoice}: {}",
                money(*amount_minor),
                money(*open_minor)
            ),
            Rejection::TooManyOpenInvoices { max } => {
                format!("the ledger holds {max} open invoices, the maximum; settle or cancel some first")
            }
            Rejection::NothingToClear { obligations } => format!(
                "nothing to clear: no cycle of obligations (and no usable credit) among the {obligations} eligible obligations"
            ),
            Rejection::ClearingInvalid { defect } => format!("invalid clearing: {defect}"),
            Rejection::TooManyObligations { count, max } => format!(
                "{count} obligations are eligible for clearing, the maximum for one run is {max}; exclude some invoices from clearing"
            ),
            Rejection::CreditLimitExceeded { account, balance_after_minor, credit_limit_minor } => {
                format!(
                    "credit limit exceeded: balance would be {}; a credit limit of {} allows down to {} (account '{account}')",
                    money(*balance_after_minor),
                    money(*credit_limit_minor),
                    money(credit_limit_minor.saturating_neg())
                )
            }
            Rejection::MaxBalanceExceeded { account } => format!(
                "maximum balance exceeded: the payment would take '{account}' above its maximum balance"
            ),
            Rejection::TooManyAccounts { max } => {
                format!("the ledger holds {max} accounts, the maximum")
            }
            Rejection::TooManyRoleKeys { role, max } => {
                format!("the ledger has {max} {} keys, the maximum; remove one first", role.name())
            }
            Rejection::AccountNotSettled { account, balance_minor, open_invoices } => format!(
                "account '{account}' cannot be closed: its balance is {} (it must be zero) and {open_invoices} invoice{} to or from it {} open (there must be none)",
                money(*balance_minor),
                if *open_invoices == 1 { "" } else { "s" },
                if *open_invoices == 1 { "is" } else { "are" },
            ),
            Rejection::WriteOffInvalid { account, detail } => {
                format!("account '{account}' cannot be written off: {detail}")
            }
            Rejection::NodeKeyInvalid { key, detail } => {
                format!("node key {key} cannot sign this ledger: {detail}")
            }
            Rejection::NodeKeyInForce { key } => {
                format!(
                    "node key {key} is the node key in force already; generate a new one (cercle-node key new)"
                )
            }
            Rejection::NodeKeyUsedBefore { key, from_size } => format!(
                "node key {key} signed this ledger before (from tree size {from_size}); a rotation takes a key never used, so old signatures cannot be confused with new ones"
            ),
            Rejection::UnknownGroup { group } => {
                format!("unknown group '{group}'; create it first (cercle admin group create)")
            }
            Rejection::GroupExists { group } => {
                format!("group '{group}' already exists; change its limits with cercle admin group set")
            }
            Rejection::TooManyGroups { max } => format!("the ledger has {max} groups, the maximum"),
            Rejection::NotInGroup { account } => format!(
                "account '{account}' is in no group, so it has no group limits to follow; assign it to one first (cercle admin group assign)"
            ),
            Rejection::LimitRuleInvalid { detail } => {
                format!("invalid limit rule: {}", detail.message(money))
            }
            Rejection::LimitRuleChanged { expected, actual, firms } => format!(
                "the limit rule's outcome is no longer the one previewed (digest {}): it is now {} over {firms} firm{}; preview it again (cercle admin limits preview)",
                hex_prefix(expected),
                hex_prefix(actual),
                if *firms == 1 { "" } else { "s" }
            ),
            Rejection::LimitRuleTooManyFirms { firms, max } => format!(
                "the limit rule would cover {firms} firms, at most {max} in one entry; apply it group by group (--group)"
            ),
            Rejection::LimitRuleNoFirms { group: Some(group) } => {
                format!("the limit rule covers no firm: group '{group}' has no active member")
            }
            Rejection::LimitRuleNoFirms { group: None } => {
                "the limit rule covers no firm: the ledger has no active firm".to_string()
            }
            Rejection::FeesInvalid { detail } => format!("invalid fee schedule: {detail}"),
            Rejection::PeriodAlreadyCharged { period, last } if *period == last.period => format!(
                "period {period} was already charged, by {}: a period is charged once",
                last.describe()
            ),
            Rejection::PeriodAlreadyCharged { period, last } => format!(
                "period {period} comes before {}, the last period charged (by {}): periods are charged once each, in order",
                last.period,
                last.describe()
            ),
            Rejection::PeriodNotBegun { period, current } => format!(
                "period {period} has not begun: the ledger's month is {current}; a period is charged during it or after it"
            ),
            Rejection::NoFeeSchedule => {
                "no fee schedule is set: set one first (cercle admin fees set)".into()
            }
            Rejection::NothingToCharge { period, detail } => {
                format!("nothing to charge for period {period}: {detail}")
            }
            Rejection::TooManyCharges { accounts, max } => format!(
                "more than {max} of the ledger's {accounts} accounts have fees due: one charge lists at most {max} firms"
            ),
            Rejection::KeyRoleNotAllowed { account, role, action, allowed } => {
                let role = role.to_string();
                let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
                format!(
                    "the signing key is {article} {role} key of account '{account}': it cannot {action}; {allowed} sign that"
                )
            }
            Rejection::KeyCapExceeded {
                account,
                key,
                amount_minor,
                per_transfer_cap_minor,
                daily_cap_minor,
                spent_today_minor,
            } => {
                if amount_minor > per_transfer_cap_minor {
                    format!(
                        "payment of {} is above the cap of {} per transfer of payer key {key} of account '{account}'; an owner key pays it",
                        money(*amount_minor),
                        money(*per_transfer_cap_minor)
                    )
                } else {
                    format!(
                        "payment of {} is above what is left today of the daily cap of payer key {key} of account '{account}': {} of {} paid today, {} left; an owner key pays it",
                        money(*amount_minor),
                        money(*spent_today_minor),
                        money(*daily_cap_minor),
                        money(daily_cap_minor.saturating_sub(*spent_today_minor))
                    )
                }
            }
            Rejection::LastOwnerKey { account, key } => format!(
                "key {key} is the last owner key of account '{account}': the account would have none; add another owner key first"
            ),
            Rejection::KeyAlreadyOnAccount { account, key } => format!(
                "key {key} is already on account '{account}'; remove it first to give it another role"
            ),
            Rejection::KeyNotOnAccount { account, key } => format!("key {key} is not on account '{account}'"),
            Rejection::PendingUnknown { account, pending } => {
                format!(
                    "account '{account}' has no pending payment {pending} waiting: it was never made, or it was approved, declined or forgotten after it expired (cercle pending list {account} shows those that wait)"
                )
            }
            Rejection::PendingExpired { account, pending, expires_ms } => format!(
                "pending payment {pending} of account '{account}' expired at {}: its reservation is released; pay again",
                rfc3339_ms(*expires_ms)
            ),
            Rejection::PendingPaymentsOpen { account, count } => format!(
                "account '{account}' cannot be closed: {count} pending payment{} of it {} waiting; approve or decline {} first",
                if *count == 1 { "" } else { "s" },
                if *count == 1 { "is" } else { "are" },
                if *count == 1 { "it" } else { "them" },
            ),
            Rejection::TooManyPending { account, max } => format!(
                "no more pending payments for account '{account}': at most {max}; approve or decline some first"
            ),
        }
    }
}

/// The first 16 hex digits of a digest: enough to tell two apart in a message.
fn hex_prefix(digest: &[u8; 32]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
