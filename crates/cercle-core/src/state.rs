//! The state machine: accounts and balances, and the one function that changes them.
//!
//! `State::apply` takes the entry context (sequence, the node's timestamp), the verified
//! signer and a decoded operation, and either changes the state and returns the outcome,
//! or returns a rejection and leaves the state exactly as it was. It reads no clock,
//! storage or randomness, so the node, the tests and an auditor's replay agree.
//!
//! Order of checks (the first failing one is reported): time window (expired, then too
//! long); authority (an administrator for administrative operations); the values of the
//! operation itself (`check_values`: texts, keys, limits, amount, self-transfer); then, per
//! kind, the accounts it names and whether the signer may act for them (for a transfer:
//! the payer exists, the signer holds one of its keys, the payee exists); account status;
//! arithmetic; limits.
//!
//! Keys have roles (`KeyRole`): the keys given at registration and by a rotation are owners,
//! which sign everything the account does; `AddKey` adds a payer (payments within a cap per
//! transfer and a cap per ledger day), an invoicer (issues and cancels invoices) or a viewer
//! (reads only), and `RemoveKey` takes a key off, never the last owner. A signer holding no
//! key of the account is refused as `NotAccountKey`; one whose role does not sign the act,
//! as `KeyRoleNotAllowed`, at the same place in the order. A payer's caps are checked last,
//! after the limits (above them, a pending payment; `KeyCapExceeded` for an invoice's payment). Its day is the genesis's (`Genesis::day`: a fixed
//! offset from UTC), and its usage is kept per key as the day it last paid and what it paid
//! that day, which starts again at zero on a later day.
//!
//! Pending payments: a payer key's transfer above its cap per transfer or above what is
//! left of its day's cap (a transfer that pays an invoice excepted: that is refused) becomes
//! a pending payment, kept in the payer's record with the sequence of its entry as its id.
//! It reserves the payer's headroom: every check of the payer's credit limit (a transfer,
//! an approval, a write-off to it) counts the pending payments that have not expired at the
//! entry's timestamp, and a clearing run counts every one the record holds. An owner key
//! approves it (the payee and the payer are checked again, then the money moves) or declines
//! it; after `PENDING_VALIDITY_MS` it has expired: every check at a later timestamp treats
//! it as released, an approval is refused (`PendingExpired`), and the record forgets it at
//! the account's next pending payment, approval, decline or closure. No timer is needed.
//!
//! Key rotation is allowed on a frozen account: a dispute is exactly when a lost or stolen
//! key must be replaced, and the freeze still stops payments.
//!
//! A closed account is closed for good: every operation that names it is refused
//! (`AccountClosed`), where a frozen one would be refused as frozen, and before the checks
//! of its own values against the account (a shared key, say); a registration of its handle
//! is refused the same way, so an account is never reopened. Its entries stay in the log
//! and its record in the state, so its history stays readable.
//!
//! The governance roles (administrators, auditors) are the state's (`Roles`): the genesis
//! names the first keys, `SetRole` changes them, and authority is judged against them as
//! they stand before the operation.
//!
//! Quorum: an envelope carries the signer's signature and, for an administrative act,
//! cosignatures of other administrators over the same body. A sensitive act
//! (`SensitiveAct`: role changes, quorum changes, a credit limit above the association's
//! threshold, an administrator replacing a firm's keys, a write-off at closure, a clearing
//! run with credit) needs `Roles::quorum` administrators among its signers; every cosigner
//! must be an administrator. This is checked with the authority, before the values.
//!
//! Fees (`fees::FeeSchedule`, set by `SetFees`): a transfer between two accounts other
//! than the association's pays the levy to the association's account in the same entry.
//! The payer's credit limit binds the amount plus its share of the levy; the payee's
//! maximum balance binds what it receives less its share; the association's account must
//! be active (a frozen or closed fee account refuses levied transfers, naming it) and
//! within its own maximum balance. The entry's balances list the payer, the payee, then
//! the association's account.
//!
//! Periodic charges (`ChargeFees`, `charges`): the membership fees and demurrage of a
//! ledger month, for every firm not closed (frozen ones included) but the association's
//! account, in one entry whose section lists each firm's charge, or the charge it could
//! not pay within its binding credit limit (less its live reservations) or the fee
//! account's maximum balance: all of a firm's charge or none of it. Checks, in order: a
//! fee schedule is set (`NoFeeSchedule`); the period has begun (`PeriodNotBegun`); it
//! comes after the last one charged (`PeriodAlreadyCharged`); the schedule charges
//! something periodically and the association's account is open and active; something is
//! due (`NothingToCharge`); at most `CHARGE_FIRMS_MAX` firms (`TooManyCharges`). A
//! charge moves balances but is not activity: `last_activity_ms` stays as it was.
//! Sales and limit rules (`limitrule`): a transfer that moves money, and an approved pending
//! payment, add their amount to the payee's sales of the entry's ledger month (unless the
//! fee account pays). `ApplyLimitRule` gives every firm in its scope the limit its rule
//! computes from the sales of the 12 ledger months before the entry's; its checks, after
//! the common ones: the group exists, the scope is neither empty nor above
//! `LIMIT_RULE_FIRMS_MAX`, then the outcome is the one the operation expects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::charges::{ChargeRecord, FirmCharge, LastCharge, NotCharged, Period};
use crate::clearing::{self, ClearingDefect, ClearingRecord, ClearingSummary};
use crate::codec::{DecodeError, Reader, Writer};
use crate::entry::BalanceAfter;
use crate::fees::FeeSchedule;
use crate::genesis::Genesis;
use crate::groups::{GroupName, Groups, Limits, MemberGroup, Membership};
use crate::ids::{AccountId, PublicKey};
use crate::invoice::{Invoice, InvoiceId, InvoiceState};
use crate::limitrule::{self, LimitRule, LimitRuleOutcome, MonthlySales};
use crate::node_keys::NodeKeys;
use crate::op::{
    AddKey, GroupLimits, InvoiceParties, IssueInvoice, KeyRole, OpKind, Operation, RegisterAccount, Role,
    RunClearing, SetGroupLimits, SetLimits, SetProfile, SetQuorum, SetRole, Transfer,
};
use crate::profile::{Field, Profile};
use crate::reject::Rejection;
use crate::roles::{Roles, SensitiveAct};
use cercle_limits::{
    ACCOUNTS_MAX, AMOUNT_MAX_MINOR, CHARGE_FIRMS_MAX, DISPLAY_NAME_CHARS_MAX, GOVERNANCE_KEYS_MAX,
    GROUPS_MAX, INVOICE_AMOUNT_MAX_MINOR, INVOICE_REF_CHARS_MAX, KEYS_PER_ACCOUNT_MAX, MEMO_CHARS_MAX,
    NODE_KEYS_MAX, OPEN_INVOICES_MAX, OPERATION_SIGNATURES_MAX, PENDING_PER_ACCOUNT_MAX, PENDING_TOTAL_MAX,
    PENDING_VALIDITY_MS, REASON_CHARS_MAX, RETIRED_KEYS_MAX, SALES_MONTHS_MAX, VALIDITY_MS_MAX,
};

const ACCOUNT_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Frozen,
    /// Closed for good, at a zero balance with no open invoice (`CloseAccount`).
    Closed,
}

impl AccountStatus {
    pub fn name(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub display_name: String,
    pub keys: Vec<PublicKey>,
    pub balance_minor: i64,
    /// The balance may not go below `-credit_limit_minor` through a payment. Never negative.
    pub credit_limit_minor: i64,
    /// The balance may not go above this through a payment received.
    pub max_balance_minor: Option<i64>,
    pub status: AccountStatus,
    pub registered_at_sequence: u64,
    /// The last entry that touched this account.
    pub last_sequence: u64,
    /// Sector, place and size, as the last registration or profile change set them.
    pub profile: Profile,
    /// When the balance last went below zero (the timestamp of that entry), while it is
    /// below zero; `None` at zero or above.
    pub negative_since_ms: Option<u64>,
    /// When the account last paid or was paid (a transfer, or a payment of a clearing run
    /// through mutual credit).
    pub last_activity_ms: Option<u64>,
    /// Keys that `rotate-keys` took off the account, the most recent last, at most
    /// `RETIRED_KEYS_MAX`: so that a refusal can tell their holder the key was rotated out,
    /// rather than that it never belonged. A key put back on the account leaves this list.
    pub retired_keys: Vec<PublicKey>,
    /// The member group the account is in, and which of its limits it takes from it (then
    /// `credit_limit_minor` or `max_balance_minor` above is its own value, kept but not
    /// binding: `State::limits` says what binds).
    pub membership: Option<Membership>,
    /// The keys of `keys` that are not owners, with their role (never `KeyRole::Owner`):
    /// a key absent from this map is an owner.
    pub key_grants: BTreeMap<PublicKey, KeyGrant>,
    /// The account's pending payments, as payer, in id order (at most
    /// `PENDING_PER_ACCOUNT_MAX`); expired ones stay until the account's next change of them.
    pub pending: Vec<PendingPayment>,
    /// What the firm was paid by other firms, by ledger month, in month order: the month
    /// in progress and at most the 12 before it (`limitrule`: what counts as a sale).
    pub sales: Vec<MonthlySales>,
}

/// A payer key's payment waiting for an owner's approval; it reserves the payer's headroom
/// until it is approved, declined or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPayment {
    /// The sequence of the entry that made it.
    pub id: u64,
    pub payee: AccountId,
    pub amount_minor: i64,
    /// The payer key that signed it.
    pub key: PublicKey,
    /// After this timestamp it can no longer be approved and reserves nothing.
    pub expires_ms: u64,
    pub memo: String,
}

impl PendingPayment {
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms <= self.expires_ms
    }
}

/// A key of an account that is not an owner: its role and, for a payer, what it paid on
/// the ledger day it last paid (its daily cap's usage: zero again on a later day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGrant {
    pub role: KeyRole,
    /// The ledger day (`Genesis::day`) of the payer's last payment; 0 before any.
    pub day: i64,
    /// What the payer paid on `day`.
    pub spent_minor: i64,
}

/// Account record extensions, in the order they are written.
const EXTENSION_PROFILE: u8 = 1;
const EXTENSION_ACTIVITY: u8 = 2;
const EXTENSION_RETIRED_KEYS: u8 = 3;
const EXTENSION_GROUP: u8 = 4;
const EXTENSION_KEY_GRANTS: u8 = 5;
const EXTENSION_PENDING: u8 = 6;
/// Tag 7 is the periodic charges'.
const EXTENSION_SALES: u8 = 8;

impl Account {
    /// The account's canonical, versioned encoding: persisted by the store's checkpoint and
    /// hashed into the state digest, every field included.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(3)
    }

    /// The encoding as version `digest` of the state digest hashes it: version 1 predates
    /// the activity extension, version 2 the retired keys.
    fn encode_with(&self, digest: u8) -> Vec<u8> {
        let activity = digest >= 2;
        let mut w = Writer::default();
        w.u8(ACCOUNT_VERSION)
            .str(self.id.as_str())
            .str(&self.display_name)
            .u8(match self.status {
                AccountStatus::Active => 0,
                AccountStatus::Frozen => 1,
                AccountStatus::Closed => 2,
            })
            .i64(self.balance_minor)
            .i64(self.credit_limit_minor)
            .opt_i64(self.max_balance_minor)
            .u8(self.keys.len() as u8);
        for k in &self.keys {
            w.fixed(&k.0);
        }
        w.u64(self.registered_at_sequence).u64(self.last_sequence);
        // Extensions: fields added later are written only when they differ from their
        // defaults, each as (tag, bytes) in increasing tag order, so a record that has none
        // keeps the bytes it had before extensions existed. The activity extension is
        // derived from the entries' timestamps: a ledger with payments has it, and its
        // digest covers it like every other field.
        let mut extensions: Vec<(u8, Vec<u8>)> = Vec::new();
        if !self.profile.is_empty() {
            let mut p = Writer::default();
            for field in Field::ALL {
                match self.profile.get(field) {
                    None => p.u8(0),
                    Some(value) => p.u8(1).str(value),
                };
            }
            extensions.push((EXTENSION_PROFILE, p.buf));
        }
        let has_activity = activity && (self.negative_since_ms.is_some() || self.last_activity_ms.is_some());
        if has_activity {
            let mut a = Writer::default();
            for value in [self.negative_since_ms, self.last_activity_ms] {
                match value {
                    None => a.u8(0),
                    Some(ms) => a.u8(1).u64(ms),
                };
            }
            extensions.push((EXTENSION_ACTIVITY, a.buf));
        }
        if digest >= 3 && !self.retired_keys.is_empty() {
            let mut k = Writer::default();
            k.u8(self.retired_keys.len() as u8);
            for key in &self.retired_keys {
                k.fixed(&key.0);
            }
            extensions.push((EXTENSION_RETIRED_KEYS, k.buf));
        }
        if digest >= 3
            && let Some(m) = &self.membership
        {
            let mut g = Writer::default();
            g.str(m.group.as_str()).u8(u8::from(m.credit_from_group) | (u8::from(m.max_from_group) << 1));
            extensions.push((EXTENSION_GROUP, g.buf));
        }
        if digest >= 3 && !self.key_grants.is_empty() {
            let mut g = Writer::default();
            g.u8(self.key_grants.len() as u8);
            for (key, grant) in &self.key_grants {
                g.fixed(&key.0);
                match grant.role {
                    // Never in the map: an owner is a key without a grant.
                    KeyRole::Owner => g.u8(0),
                    KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor } => g
                        .u8(1)
                        .i64(per_transfer_cap_minor)
                        .i64(daily_cap_minor)
                        .i64(grant.day)
                        .i64(grant.spent_minor),
                    KeyRole::Invoicer => g.u8(2),
                    KeyRole::Viewer => g.u8(3),
                };
            }
            extensions.push((EXTENSION_KEY_GRANTS, g.buf));
        }
        if digest >= 3 && !self.pending.is_empty() {
            let mut p = Writer::default();
            p.u8(self.pending.len() as u8);
            for pending in &self.pending {
                p.u64(pending.id)
                    .str(pending.payee.as_str())
                    .i64(pending.amount_minor)
                    .fixed(&pending.key.0)
                    .u64(pending.expires_ms)
                    .str(&pending.memo);
            }
            extensions.push((EXTENSION_PENDING, p.buf));
        }
        if digest >= 3 && !self.sales.is_empty() {
            let mut m = Writer::default();
            m.u8(self.sales.len() as u8);
            for month in &self.sales {
                m.u32(month.month).i64(month.amount_minor);
            }
            extensions.push((EXTENSION_SALES, m.buf));
        }
        w.u8(extensions.len() as u8);
        for (tag, bytes) in extensions {
            w.u8(tag).bytes(&bytes);
        }
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("account version")?;
        if version != ACCOUNT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let id = AccountId::parse(&r.string("account")?).map_err(|_| DecodeError::Invalid("account"))?;
        let display_name = r.string("display name")?;
        let status = match r.u8("status")? {
            0 => AccountStatus::Active,
            1 => AccountStatus::Frozen,
            2 => AccountStatus::Closed,
            _ => return Err(DecodeError::Invalid("status")),
        };
        let balance_minor = r.i64("balance")?;
        let credit_limit_minor = r.i64("credit limit")?;
        let max_balance_minor = r.opt_i64("max balance")?;
        let n = usize::from(r.u8("key count")?);
        if n > KEYS_PER_ACCOUNT_MAX {
            return Err(DecodeError::Invalid("key count"));
        }
        let keys = (0..n).map(|_| Ok(PublicKey(r.array("key")?))).collect::<Result<Vec<_>, DecodeError>>()?;
        let registered_at_sequence = r.u64("registered at")?;
        let last_sequence = r.u64("last sequence")?;
        let mut profile = Profile::default();
        let (mut negative_since_ms, mut last_activity_ms) = (None, None);
        let mut retired_keys = Vec::new();
        let mut membership = None;
        let mut key_grants = BTreeMap::new();
        let mut pending: Vec<PendingPayment> = Vec::new();
        let mut sales: Vec<MonthlySales> = Vec::new();
        let count = r.u8("extension count")?;
        let mut last_tag = 0;
        for _ in 0..count {
            let tag = r.u8("extension tag")?;
            if tag <= last_tag {
                return Err(DecodeError::Invalid("account extensions out of order"));
            }
            last_tag = tag;
            let mut e = Reader::new(r.bytes("extension")?);
            match tag {
                EXTENSION_PROFILE => {
                    for field in Field::ALL {
                        *profile.slot(field) = match e.u8("profile field")? {
                            0 => None,
                            1 => Some(e.string("profile field")?),
                            _ => return Err(DecodeError::Invalid("profile field")),
                        };
                    }
                    if profile.is_empty() {
                        return Err(DecodeError::Invalid("an empty profile extension"));
                    }
                }
                EXTENSION_ACTIVITY => {
                    let mut read = || match e.u8("activity")? {
                        0 => Ok(None),
                        1 => Ok(Some(e.u64("activity")?)),
                        _ => Err(DecodeError::Invalid("activity")),
                    };
                    negative_since_ms = read()?;
                    last_activity_ms = read()?;
                    if negative_since_ms.is_none() && last_activity_ms.is_none() {
                        return Err(DecodeError::Invalid("an empty activity extension"));
                    }
                }
                EXTENSION_RETIRED_KEYS => {
                    let n = usize::from(e.u8("retired key count")?);
                    if n == 0 || n > RETIRED_KEYS_MAX {
                        return Err(DecodeError::Invalid("retired key count"));
                    }
                    for _ in 0..n {
                        retired_keys.push(PublicKey(e.array("retired key")?));
                    }
                }
                EXTENSION_GROUP => {
                    let group =
                        GroupName::parse(&e.string("group")?).map_err(|_| DecodeError::Invalid("group"))?;
                    let flags = e.u8("group flags")?;
                    if flags > 3 {
                        return Err(DecodeError::Invalid("group flags"));
                    }
                    membership = Some(Membership {
                        group,
                        credit_from_group: flags & 1 != 0,
                        max_from_group: flags & 2 != 0,
                    });
                }
                EXTENSION_KEY_GRANTS => {
                    let n = usize::from(e.u8("key grant count")?);
                    if n == 0 || n > KEYS_PER_ACCOUNT_MAX {
                        return Err(DecodeError::Invalid("key grant count"));
                    }
                    for _ in 0..n {
                        let key = PublicKey(e.array("granted key")?);
                        let grant = match e.u8("key role")? {
                            1 => KeyGrant {
                                role: KeyRole::Payer {
                                    per_transfer_cap_minor: e.i64("per-transfer cap")?,
                                    daily_cap_minor: e.i64("daily cap")?,
                                },
                                day: e.i64("payer's day")?,
                                spent_minor: e.i64("payer's spending")?,
                            },
                            2 => KeyGrant { role: KeyRole::Invoicer, day: 0, spent_minor: 0 },
                            3 => KeyGrant { role: KeyRole::Viewer, day: 0, spent_minor: 0 },
                            _ => return Err(DecodeError::Invalid("key role")),
                        };
                        if !keys.contains(&key) || key_grants.insert(key, grant).is_some() {
                            return Err(DecodeError::Invalid(
                                "a key grant for a key the account does not hold",
                            ));
                        }
                    }
                }
                EXTENSION_PENDING => {
                    let n = usize::from(e.u8("pending payment count")?);
                    if n == 0 || n > PENDING_PER_ACCOUNT_MAX {
                        return Err(DecodeError::Invalid("pending payment count"));
                    }
                    for _ in 0..n {
                        let p = PendingPayment {
                            id: e.u64("pending id")?,
                            payee: AccountId::parse(&e.string("pending payee")?)
                                .map_err(|_| DecodeError::Invalid("pending payee"))?,
                            amount_minor: e.i64("pending amount")?,
                            key: PublicKey(e.array("pending key")?),
                            expires_ms: e.u64("pending expiry")?,
                            memo: e.string("pending memo")?,
                        };
                        if pending.last().is_some_and(|last| last.id >= p.id) {
                            return Err(DecodeError::Invalid("pending payments out of order"));
                        }
                        pending.push(p);
                    }
                }
                EXTENSION_SALES => {
                    let n = usize::from(e.u8("sales month count")?);
                    if n == 0 || n > SALES_MONTHS_MAX {
                        return Err(DecodeError::Invalid("sales month count"));
                    }
                    for _ in 0..n {
                        let month =
                            MonthlySales { month: e.u32("sales month")?, amount_minor: e.i64("sales")? };
                        if sales.last().is_some_and(|last| last.month >= month.month)
                            || sales
                                .first()
                                .is_some_and(|first| month.month - first.month >= SALES_MONTHS_MAX as u32)
                        {
                            return Err(DecodeError::Invalid(
                                "sales months out of order or out of their window",
                            ));
                        }
                        sales.push(month);
                    }
                }
                _ => return Err(DecodeError::Invalid("unknown account extension")),
            }
            e.finish()?;
        }
        r.finish()?;
        Ok(Account {
            id,
            display_name,
            keys,
            balance_minor,
            credit_limit_minor,
            max_balance_minor,
            status,
            registered_at_sequence,
            last_sequence,
            profile,
            negative_since_ms,
            last_activity_ms,
            retired_keys,
            membership,
            key_grants,
            pending,
            sales,
        })
    }

    /// What the account's pending payments that have not expired at `now_ms` reserve.
    pub fn reserved_minor(&self, now_ms: u64) -> i64 {
        // At most PENDING_PER_ACCOUNT_MAX amounts of at most AMOUNT_MAX_MINOR each.
        self.pending.iter().filter(|p| p.is_live(now_ms)).map(|p| p.amount_minor).sum()
    }

    /// What every pending payment the record holds reserves, expired or not: what a clearing
    /// run, which is solved away from any entry's time, counts.
    pub fn recorded_reserved_minor(&self) -> i64 {
        self.pending.iter().map(|p| p.amount_minor).sum()
    }

    /// The role of `key` on this account; `None` when the account does not hold it.
    pub fn role_of(&self, key: &PublicKey) -> Option<KeyRole> {
        if !self.keys.contains(key) {
            return None;
        }
        Some(self.key_grants.get(key).map_or(KeyRole::Owner, |g| g.role))
    }

    /// How many owner keys the account holds.
    pub fn owner_count(&self) -> usize {
        self.keys.len() - self.key_grants.len()
    }

    /// `signer`'s role, if `allowed` lets it `action`; `NotAccountKey` when the account does
    /// not hold it, `KeyRoleNotAllowed` when its role does not sign this.
    fn require_role(
        &self,
        signer: &PublicKey,
        action: &'static str,
        allowed: Allowed,
    ) -> Result<KeyRole, Rejection> {
        let Some(role) = self.role_of(signer) else {
            return Err(Rejection::NotAccountKey { account: self.id.clone() });
        };
        let ok = match allowed {
            Allowed::Owner => role == KeyRole::Owner,
            Allowed::Payer => matches!(role, KeyRole::Owner | KeyRole::Payer { .. }),
            Allowed::Invoicer => matches!(role, KeyRole::Owner | KeyRole::Invoicer),
        };
        if !ok {
            return Err(Rejection::KeyRoleNotAllowed {
                account: self.id.clone(),
                role: role.name(),
                action,
                allowed: allowed.text(),
            });
        }
        Ok(role)
    }

    /// Takes `removed` off the account's keys into its retired keys (at most
    /// `RETIRED_KEYS_MAX`, the oldest forgotten), and `added` out of them.
    fn retire_keys(&mut self, removed: &[PublicKey], added: &[PublicKey]) {
        self.retired_keys.retain(|k| !added.contains(k) && !removed.contains(k));
        self.retired_keys.extend(removed.iter().copied());
        let excess = self.retired_keys.len().saturating_sub(RETIRED_KEYS_MAX);
        self.retired_keys.drain(..excess);
    }

    /// Sets the balance after a periodic charge at `timestamp_ms`: keeps when it last went
    /// below zero, but a charge is not the firm's activity.
    fn set_charged_balance(&mut self, balance_minor: i64, timestamp_ms: u64) {
        if balance_minor >= 0 {
            self.negative_since_ms = None;
        } else if self.balance_minor >= 0 {
            self.negative_since_ms = Some(timestamp_ms);
        }
        self.balance_minor = balance_minor;
    }

    /// Sets the balance after a payment at `timestamp_ms` (made or received): keeps when it
    /// last went below zero, and when it last moved.
    fn set_paid_balance(&mut self, balance_minor: i64, timestamp_ms: u64) {
        if balance_minor >= 0 {
            self.negative_since_ms = None;
        } else if self.balance_minor >= 0 {
            self.negative_since_ms = Some(timestamp_ms);
        }
        self.balance_minor = balance_minor;
        self.last_activity_ms = Some(timestamp_ms);
    }
}

/// The roles that may sign an act on an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    Owner,
    Payer,
    Invoicer,
}

impl Allowed {
    fn text(self) -> &'static str {
        match self {
            Allowed::Owner => "only its owner keys",
            Allowed::Payer => "its owner and payer keys",
            Allowed::Invoicer => "its owner and invoicer keys",
        }
    }
}

/// What a payment leaves (`State::payment_balances`): the payer's and the payee's balances,
/// and the association's account with its balance after the levy, when one is due.
struct PaymentBalances {
    payer_after: i64,
    payee_after: i64,
    fee_account: Option<(AccountId, i64)>,
}

/// Where an operation lands in the log: decided by the node, recorded in the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub sequence: u64,
    pub timestamp_ms: u64,
}

/// A balance an entry changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceChange {
    pub account: AccountId,
    pub before_minor: i64,
    pub after_minor: i64,
}

/// What an accepted operation did: every balance it changed (in the order of
/// `OpKind::accounts`; for a clearing run, in handle order), every account it concerns,
/// once each (histories index on these, on the node and on every replay alike), every
/// invoice it changed, and for a clearing run its record (which goes into the entry) and
/// summary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    /// A transfer that became a pending payment: its id (the entry's sequence).
    pub pending: Option<u64>,
    pub balance_changes: Vec<BalanceChange>,
    pub touched: Vec<AccountId>,
    pub invoices: Vec<InvoiceId>,
    pub clearing: Option<(ClearingRecord, ClearingSummary)>,
    /// The entry created a member group or changed its limits: the limits of every member
    /// that follows them may have changed, though no account record did.
    pub groups_changed: bool,
    /// A limit rule's outcome, which goes into the entry as its section.
    pub limit_rule: Option<LimitRuleOutcome>,
    /// A periodic charge's record (which goes into the entry).
    pub charges: Option<ChargeRecord>,
}

/// Where a clearing run's outcome comes from.
#[derive(Debug, Clone, Copy)]
pub enum ClearingInput<'a> {
    /// The node computes it (and checks it like any record).
    Propose,
    /// A replay: the record written in the entry, if any.
    Recorded(Option<&'a ClearingRecord>),
    /// The node: a run solved and checked on a snapshot of the state, and what changed
    /// since. It is applied only if it still holds (`PlannedRun::still_holds`), which is
    /// then `check` on this state; otherwise it is refused as `PlanStale`.
    Planned(&'a clearing::PlannedRun, &'a clearing::ChangesSince),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("balances sum to {0}, not zero")]
    NonZeroSum(i128),
    #[error("account '{account}' has credit limit {limit}, which is negative")]
    NegativeLimit { account: AccountId, limit: i64 },
    #[error("account '{account}' is in group '{group}', which does not exist")]
    UnknownGroup { account: AccountId, group: GroupName },
}

/// What a change overwrote, so it can be undone (`State::undo_to`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    Account(AccountId, Option<Box<Account>>),
    Invoice(InvoiceId, Option<Arc<Invoice>>),
    Roles(Roles),
    Groups(Groups),
    Fees(Option<FeeSchedule>),
    LastCharge(Option<LastCharge>),
    NodeKeys(NodeKeys),
}

/// The bounds a state enforces on what it holds: the ledger's constants (`cercle-limits`).
/// A test of a bound itself may tighten them (`Ledger::with_bounds`), never loosen them, so
/// that a refusal at a bound can be reached without millions of invoices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub open_invoices_max: usize,
    pub clearing_obligations_max: usize,
    pub clearing_firms_max: usize,
    /// Firms one periodic charge lists (`CHARGE_FIRMS_MAX`).
    pub charge_firms_max: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            open_invoices_max: OPEN_INVOICES_MAX,
            clearing_obligations_max: cercle_limits::CLEARING_OBLIGATIONS_MAX,
            clearing_firms_max: cercle_limits::CLEARING_FIRMS_MAX,
            charge_firms_max: CHARGE_FIRMS_MAX,
        }
    }
}

impl Bounds {
    /// Each bound at most the ledger's own.
    fn tightened(self) -> Bounds {
        let limits = Bounds::default();
        Bounds {
            open_invoices_max: self.open_invoices_max.min(limits.open_invoices_max),
            clearing_obligations_max: self.clearing_obligations_max.min(limits.clearing_obligations_max),
            clearing_firms_max: self.clearing_firms_max.min(limits.clearing_firms_max),
            charge_firms_max: self.charge_firms_max.min(limits.charge_firms_max),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    roles: Roles,
    /// The member groups and their default limits.
    groups: Groups,
    /// The association's fee schedule; `None` until one is set.
    fees: Option<FeeSchedule>,
    /// The last period charged (`ChargeFees`); `None` until one is.
    last_charge: Option<LastCharge>,
    /// The node's signing keys: the genesis's, then each rotation's.
    node_keys: NodeKeys,
    accounts: BTreeMap<AccountId, Account>,
    /// Shared with clearing snapshots (`ClearingSnapshot::take` copies pointers, not
    /// invoices); a change copies an invoice only while a snapshot still holds it.
    invoices: BTreeMap<InvoiceId, Arc<Invoice>>,
    /// The ids of the open invoices (issued, accepted, partly settled): what clearing looks
    /// at, without walking every invoice ever issued. Derived from `invoices`.
    open_invoices: BTreeSet<InvoiceId>,
    /// When `Some`, every change records what it overwrote (see `Ledger::mark`).
    journal: Option<Vec<Undo>>,
    bounds: Bounds,
    /// The genesis's ledger day, offset from UTC in minutes (`Genesis::day`).
    day_offset_minutes: i16,
    /// How many pending payments the accounts' records hold (derived from them).
    pending_total: usize,
    /// The timestamp of the entry being applied, while `apply_signed` runs.
    now_ms: Option<u64>,
}

impl State {
    /// The empty state of a new ledger.
    pub fn new(genesis: &Genesis) -> Self {
        State::from_parts(genesis, [], [])
    }

    /// A state from accounts and invoices read back from storage.
    pub fn from_parts(
        genesis: &Genesis,
        accounts: impl IntoIterator<Item = Account>,
        invoices: impl IntoIterator<Item = Invoice>,
    ) -> Self {
        let accounts: BTreeMap<AccountId, Account> =
            accounts.into_iter().map(|a| (a.id.clone(), a)).collect();
        let pending_total = accounts.values().map(|a| a.pending.len()).sum();
        let invoices: BTreeMap<InvoiceId, Arc<Invoice>> =
            invoices.into_iter().map(|i| (i.id, Arc::new(i))).collect();
        let open_invoices = invoices.values().filter(|i| i.state.is_open()).map(|i| i.id).collect();
        State {
            roles: Roles::from_genesis(genesis),
            groups: Groups::default(),
            fees: None,
            last_charge: None,
            node_keys: NodeKeys::from_genesis(genesis),
            accounts,
            invoices,
            open_invoices,
            journal: None,
            bounds: Bounds::default(),
            day_offset_minutes: genesis.day_offset_minutes,
            pending_total,
            now_ms: None,
        }
    }

    /// The same state with the governance roles read back from storage (a checkpoint taken
    /// after a role changed); without it, the genesis's roles.
    pub fn with_roles(mut self, roles: Roles) -> Self {
        self.roles = roles;
        self
    }

    /// The same state with the member groups read back from storage (a checkpoint taken
    /// after a group was created); without it, none.
    pub fn with_groups(mut self, groups: Groups) -> Self {
        self.groups = groups;
        self
    }

    /// The member groups and their default limits.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The limits that bind `a` now: its own, or its group's (`Groups::limits_of`).
    pub fn limits(&self, a: &Account) -> Limits {
        self.groups.limits_of(a)
    }

    /// The same state with the fee schedule read back from storage.
    pub fn with_fees(mut self, fees: Option<FeeSchedule>) -> Self {
        self.fees = fees;
        self
    }

    /// The fee schedule in force, if one was set.
    pub fn fees(&self) -> Option<&FeeSchedule> {
        self.fees.as_ref()
    }

    /// The same state with the last period charged read back from storage.
    pub fn with_last_charge(mut self, last: Option<LastCharge>) -> Self {
        self.last_charge = last;
        self
    }

    /// The last period charged, and the entry that charged it.
    pub fn last_charge(&self) -> Option<&LastCharge> {
        self.last_charge.as_ref()
    }

    /// The same state with the node key history read back from storage (a checkpoint
    /// taken after a rotation); without it, the genesis's key alone.
    pub fn with_node_keys(mut self, node_keys: NodeKeys) -> Self {
        self.node_keys = node_keys;
        self
    }

    /// The node's signing keys and the tree sizes each signs.
    pub fn node_keys(&self) -> &NodeKeys {
        &self.node_keys
    }

    /// The administrators and auditors as they stand.
    pub fn roles(&self) -> &Roles {
        &self.roles
    }

    /// The same state under tighter bounds (each at most the ledger's): for tests of the
    /// refusals at a bound.
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds.tightened();
        self
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Starts (or stops) recording what each change overwrites.
    pub(crate) fn set_journaling(&mut self, on: bool) {
        self.journal = if on { Some(self.journal.take().unwrap_or_default()) } else { None };
    }

    /// How many changes the journal holds: a mark to undo back to.
    pub(crate) fn journal_len(&self) -> usize {
        self.journal.as_ref().map_or(0, Vec::len)
    }

    /// Undoes every change recorded after `mark`, newest first.
    pub(crate) fn undo_to(&mut self, mark: usize) {
        let Some(journal) = self.journal.as_mut() else {
            panic!("undo without a journal: changes were not recorded, so they cannot be undone");
        };
        assert!(mark <= journal.len(), "undo to mark {mark}, past the journal's {} changes", journal.len());
        let undo: Vec<Undo> = journal.drain(mark..).rev().collect();
        for u in undo {
            match u {
                Undo::Account(id, Some(a)) => {
                    self.pending_total += a.pending.len();
                    if let Some(now) = self.accounts.insert(id, *a) {
                        self.pending_total -= now.pending.len();
                    }
                }
                Undo::Account(id, None) => {
                    if let Some(now) = self.accounts.remove(&id) {
                        self.pending_total -= now.pending.len();
                    }
                }
                Undo::Invoice(id, Some(i)) => {
                    self.set_open(&i);
                    self.invoices.insert(id, i);
                }
                Undo::Invoice(id, None) => {
                    self.open_invoices.remove(&id);
                    self.invoices.remove(&id);
                }
                Undo::Roles(roles) => self.roles = roles,
                Undo::Groups(groups) => self.groups = groups,
                Undo::Fees(fees) => self.fees = fees,
                Undo::LastCharge(last) => self.last_charge = last,
                Undo::NodeKeys(keys) => self.node_keys = keys,
            }
        }
    }

    /// Forgets the first `count` recorded changes: they will not be undone.
    pub(crate) fn forget_journal(&mut self, count: usize) {
        if let Some(journal) = self.journal.as_mut() {
            assert!(count <= journal.len(), "forget {count} changes of a journal of {}", journal.len());
            journal.drain(..count);
        }
    }

    fn save_account(&mut self, id: &AccountId) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::Account(id.clone(), self.accounts.get(id).cloned().map(Box::new)));
        }
    }

    fn save_invoice(&mut self, id: &InvoiceId) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::Invoice(*id, self.invoices.get(id).cloned()));
        }
    }

    /// The account `id`, which the caller checked exists, to change (recorded first).
    fn account_mut(&mut self, id: &AccountId) -> &mut Account {
        self.save_account(id);
        match self.accounts.get_mut(id) {
            Some(a) => a,
            None => panic!("invariant broken: account '{id}' was checked to exist but is missing"),
        }
    }

    /// The invoice `id`, which the caller checked exists, to change (recorded first).
    fn invoice_mut(&mut self, id: &InvoiceId) -> &mut Invoice {
        self.save_invoice(id);
        match self.invoices.get_mut(id) {
            Some(i) => Arc::make_mut(i),
            None => panic!("invariant broken: invoice {id} was checked to exist but is missing"),
        }
    }

    fn put_account(&mut self, account: Account) {
        self.save_account(&account.id);
        self.accounts.insert(account.id.clone(), account);
    }

    fn put_invoice(&mut self, invoice: Invoice) {
        self.save_invoice(&invoice.id);
        self.set_open(&invoice);
        self.invoices.insert(invoice.id, Arc::new(invoice));
    }

    /// Keeps `open_invoices` in line with an invoice's state.
    fn set_open(&mut self, invoice: &Invoice) {
        if invoice.state.is_open() {
            self.open_invoices.insert(invoice.id);
        } else {
            self.open_invoices.remove(&invoice.id);
        }
    }

    /// The open invoices, in id order.
    pub fn open_invoices(&self) -> impl Iterator<Item = &Invoice> {
        self.open_invoice_handles().map(|i| &**i)
    }

    /// The open invoices, in id order, as shared pointers (for a clearing snapshot).
    /// Both maps are walked in id order together: no lookup per invoice.
    pub(crate) fn open_invoice_handles(&self) -> impl Iterator<Item = &Arc<Invoice>> {
        let mut all = self.invoices.iter();
        self.open_invoices.iter().map(move |id| {
            loop {
                match all.next() {
                    Some((k, i)) if k == id => break i,
                    Some(_) => {}
                    None => panic!("invariant broken: open invoice {id} is not among the invoices"),
                }
            }
        })
    }

    /// Every account, in handle order.
    pub(crate) fn account_map(&self) -> &BTreeMap<AccountId, Account> {
        &self.accounts
    }

    /// How many invoices are open (issued, accepted or partly settled).
    pub fn open_invoice_count(&self) -> usize {
        self.open_invoices.len()
    }

    /// How many invoices the ledger holds, open or not.
    pub fn invoice_count(&self) -> usize {
        self.invoices.len()
    }

    pub fn invoice(&self, id: &InvoiceId) -> Option<&Invoice> {
        self.invoices.get(id).map(|i| &**i)
    }

    /// Every invoice, in id order.
    pub fn invoices(&self) -> impl Iterator<Item = &Invoice> {
        self.invoices.values().map(|i| &**i)
    }

    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.roles.is_admin(key)
    }

    /// Administrators and auditors read every account.
    pub fn is_governance(&self, key: &PublicKey) -> bool {
        self.roles.is_governance(key)
    }

    /// May `key` read `account` (its balance, limits, history)? Administrators and auditors
    /// read every account; any other key the accounts that list it.
    pub fn may_read(&self, key: &PublicKey, account: &AccountId) -> bool {
        self.is_governance(key) || self.accounts.get(account).is_some_and(|a| a.keys.contains(key))
    }

    /// The balances among `balances` that `key` may read: what a receipt shows its signer.
    pub fn readable_balances(&self, key: &PublicKey, balances: &[BalanceAfter]) -> Vec<BalanceAfter> {
        balances.iter().filter(|b| self.may_read(key, &b.account)).cloned().collect()
    }

    /// SHA-256 over every account's canonical encoding in handle order, then every
    /// invoice's in id order. Two states are equal exactly when their digests are (barring
    /// a hash collision). Frozen: the golden log's digest holds it to its definition.
    /// Every field of an account is in its encoding, the profile and the activity
    /// (`negative_since_ms`, `last_activity_ms`) included.
    /// Version 3: the governance roles too, since they moved from the genesis into the
    /// state. An account's sales by month (extension 8) are in its encoding once it has
    /// some, like every extension: versions 1 and 2 leave them out.
    pub fn digest(&self) -> [u8; 32] {
        self.digest_version(3)
    }

    /// The digest as version 2 defined it: every account field, invoices, no roles.
    pub fn digest_v2(&self) -> [u8; 32] {
        self.digest_version(2)
    }

    /// The digest as version 1 defined it, before accounts carried their activity
    /// (`negative_since`, `last_activity`): what the golden log of entry format 1 recorded
    /// (`tests/fixtures/golden`). Version 2 (`digest`) covers every field.
    pub fn digest_v1(&self) -> [u8; 32] {
        self.digest_version(1)
    }

    fn digest_version(&self, version: u8) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(match version {
            1 => b"cercle/state/v1".as_slice(),
            2 => b"cercle/state/v2".as_slice(),
            _ => b"cercle/state/v3".as_slice(),
        });
        h.update((self.accounts.len() as u64).to_be_bytes());
        for account in self.accounts.values() {
            let bytes = account.encode_with(version);
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
        }
        // The frozen rule: accounts always, then each further kind of record only when
        // the ledger has some, so a kind added later leaves earlier ledgers' digests alone.
        if !self.invoices.is_empty() {
            h.update(b"invoices");
            h.update((self.invoices.len() as u64).to_be_bytes());
            for invoice in self.invoices.values() {
                let bytes = invoice.encode();
                h.update((bytes.len() as u32).to_be_bytes());
                h.update(&bytes);
            }
        }
        // Version 3 and later: the roles, always (every ledger has an administrator).
        if version >= 3 {
            let bytes = self.roles.encode();
            h.update(b"roles");
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
        }
        // The member groups, only once the ledger has one (the frozen rule above).
        if !self.groups.is_empty() {
            let bytes = self.groups.encode();
            h.update(b"groups");
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
        }
        // The fee schedule, once one is set (the frozen rule above: a ledger without fees
        // keeps its digest).
        if let Some(fees) = &self.fees {
            let bytes = fees.encode();
            h.update(b"fees");
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
        }
        // The last period charged, once one is (the frozen rule above).
        if let Some(last) = &self.last_charge {
            let bytes = last.encode();
            h.update(b"fees_charged");
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
        }
        // The node key history, once the key was rotated (the frozen rule above).
        if self.node_keys.is_rotated() {
            let bytes = self.node_keys.encode();
            h.update(b"node_keys");
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(&bytes);
        }
        h.finalize().into()
    }

    /// The ledger's invariants: balances sum to exactly zero; limits are never negative;
    /// every group an account names exists.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut sum: i128 = 0;
        for a in self.accounts.values() {
            sum += i128::from(a.balance_minor);
            let binding = self.limits(a).credit_limit_minor;
            if a.credit_limit_minor < 0 || binding < 0 {
                return Err(InvariantViolation::NegativeLimit {
                    account: a.id.clone(),
                    limit: a.credit_limit_minor.min(binding),
                });
            }
            if let Some(m) = &a.membership
                && self.groups.get(&m.group).is_none()
            {
                return Err(InvariantViolation::UnknownGroup {
                    account: a.id.clone(),
                    group: m.group.clone(),
                });
            }
        }
        if sum != 0 {
            return Err(InvariantViolation::NonZeroSum(sum));
        }
        Ok(())
    }

    /// The checks every operation passes before its own: its time window, the authority
    /// it needs, and its values. `apply` runs them first; a clearing run is checked with
    /// them before it is solved away from the writer.
    pub fn check_common(
        &self,
        ctx: &Context,
        signers: &[PublicKey],
        op: &Operation,
    ) -> Result<(), Rejection> {
        let Some(signer) = signers.first() else {
            return Err(Rejection::Malformed { detail: "an operation needs a signature".into() });
        };
        if ctx.timestamp_ms > op.valid_until_ms {
            return Err(Rejection::Expired { valid_until_ms: op.valid_until_ms, now_ms: ctx.timestamp_ms });
        }
        if op.valid_until_ms - ctx.timestamp_ms > VALIDITY_MS_MAX {
            return Err(Rejection::ValidityTooLong {
                valid_until_ms: op.valid_until_ms,
                now_ms: ctx.timestamp_ms,
            });
        }
        if op.kind.is_administrative() && !self.is_admin(signer) {
            return Err(Rejection::NotAdministrator);
        }
        self.check_quorum(signers, &op.kind)?;
        check_values(&op.kind)
    }

    /// The sensitive act `op` is when `signer` signs it first, if it is one.
    pub fn sensitive_act(&self, signer: &PublicKey, op: &OpKind) -> Option<SensitiveAct> {
        let large = |limit_minor: i64| {
            self.roles
                .limit_above_minor()
                .filter(|above| limit_minor > *above)
                .map(|above_minor| SensitiveAct::LargeLimit { limit_minor, above_minor })
        };
        match op {
            OpKind::SetRole(_) => Some(SensitiveAct::RoleChange),
            OpKind::SetQuorum(_) => Some(SensitiveAct::QuorumChange),
            OpKind::SetFees(_) => Some(SensitiveAct::FeesChange),
            OpKind::RotateNodeKey { .. } => Some(SensitiveAct::NodeKeyRotation),
            OpKind::SetLimits(SetLimits { credit_limit_minor: Some(limit), .. }) => large(*limit),
            OpKind::RegisterAccount(r) => large(r.credit_limit_minor),
            // A group's default is a credit limit for each member that follows it: joining a
            // group, or following its limit again, grants the group's.
            OpKind::CreateGroup(g) => large(g.credit_limit_minor),
            OpKind::SetGroupLimits(SetGroupLimits { credit_limit_minor: Some(limit), .. }) => large(*limit),
            OpKind::AssignGroup { group, .. } => {
                self.groups.get(group).and_then(|g| large(g.credit_limit_minor))
            }
            OpKind::FollowGroupLimits { account, credit: true, .. } => self
                .accounts
                .get(account)
                .and_then(|a| a.membership.as_ref())
                .and_then(|m| self.groups.get(&m.group))
                .and_then(|g| large(g.credit_limit_minor)),
            OpKind::RotateKeys { account, .. }
            | OpKind::AddKey(AddKey { account, .. })
            | OpKind::RemoveKey { account, .. } => {
                let own = self.accounts.get(account).and_then(|a| a.role_of(signer)) == Some(KeyRole::Owner);
                (self.is_admin(signer) && !own).then_some(SensitiveAct::KeyRotation)
            }
            OpKind::CloseAccount { write_off_to: Some(_), .. } => Some(SensitiveAct::WriteOff),
            OpKind::RunClearing(RunClearing { with_credit: true, .. }) => {
                Some(SensitiveAct::ClearingWithCredit)
            }
            // A rule grants up to its cap (or its floor, if higher) to any firm whose sales
            // reach it: judged on the rule the signers approve, not on the sales of the day.
            OpKind::ApplyLimitRule(a) => large(a.rule.cap_minor.max(a.rule.floor_minor)),
            _ => None,
        }
    }

    /// The signers' authority beyond the first signer's: cosignatures are an
    /// administrator's act, by administrators only; a sensitive act has the quorum.
    fn check_quorum(&self, signers: &[PublicKey], op: &OpKind) -> Result<(), Rejection> {
        let signer = &signers[0];
        let act = self.sensitive_act(signer, op);
        let cosigned = signers.len() > 1;
        if act.is_none() && !cosigned {
            return Ok(());
        }
        let admins = signers.iter().filter(|k| self.is_admin(k)).count();
        if cosigned && !self.is_admin(signer) {
            return Err(Rejection::Malformed {
                detail: format!(
                    "only an administrator's act carries cosignatures; this one is signed first by {signer}, which is not an administrator"
                ),
            });
        }
        let needed = if act.is_some() { self.roles.quorum() } else { 1 };
        if admins < signers.len() || admins < usize::from(needed) {
            return Err(Rejection::QuorumNotMet {
                act: act.unwrap_or(SensitiveAct::Cosigned),
                needed,
                signers: signers.iter().map(|k| (*k, self.is_admin(k))).collect(),
            });
        }
        Ok(())
    }

    /// Applies one verified operation signed by one key. On rejection the state is
    /// unchanged.
    pub fn apply(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        op: &Operation,
        clearing: ClearingInput<'_>,
    ) -> Result<Effects, Rejection> {
        self.apply_signed(ctx, std::slice::from_ref(signer), op, clearing)
    }

    /// Applies one verified operation signed by `signers` (the envelope's keys, the first
    /// the one who acts). On rejection the state is unchanged.
    pub fn apply_signed(
        &mut self,
        ctx: &Context,
        signers: &[PublicKey],
        op: &Operation,
        clearing: ClearingInput<'_>,
    ) -> Result<Effects, Rejection> {
        if let (ClearingInput::Recorded(Some(_)) | ClearingInput::Planned(..), false) =
            (clearing, matches!(op.kind, OpKind::RunClearing(_)))
        {
            return Err(Rejection::ClearingInvalid {
                defect: Box::new(ClearingDefect::RecordOnOtherOperation),
            });
        }
        self.check_common(ctx, signers, op)?;
        let signer = &signers[0];
        self.now_ms = Some(ctx.timestamp_ms);
        let outcome = self.apply_kind(ctx, signer, op, clearing);
        self.now_ms = None;
        let effects = outcome?;
        assert_conserved(ctx, &effects);
        #[cfg(debug_assertions)]
        if let Err(violation) = self.check_invariants() {
            panic!("invariant violated after entry {}: {violation}", ctx.sequence);
        }
        Ok(effects)
    }

    fn apply_kind(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        op: &Operation,
        clearing: ClearingInput<'_>,
    ) -> Result<Effects, Rejection> {
        let effects = match &op.kind {
            OpKind::RegisterAccount(r) => self.register(ctx, signer, r)?,
            OpKind::SetLimits(s) => self.set_limits(ctx, s)?,
            OpKind::SetProfile(p) => self.set_profile(ctx, p)?,
            OpKind::FreezeAccount { account, .. } => self.set_status(ctx, account, AccountStatus::Frozen)?,
            OpKind::UnfreezeAccount { account, .. } => {
                self.set_status(ctx, account, AccountStatus::Active)?
            }
            OpKind::RotateKeys { account, keys, allow_shared_key } => {
                self.rotate_keys(ctx, signer, account, keys, *allow_shared_key)?
            }
            OpKind::SetRole(r) => self.set_role(r)?,
            OpKind::CloseAccount { account, write_off_to, .. } => {
                self.close(ctx, account, write_off_to.as_ref())?
            }
            OpKind::SetQuorum(q) => self.set_quorum(q)?,
            OpKind::RotateNodeKey { new_pubkey, .. } => self.rotate_node_key(ctx, new_pubkey)?,
            OpKind::CreateGroup(g) => self.create_group(ctx, g)?,
            OpKind::SetGroupLimits(g) => self.set_group_limits(ctx, g)?,
            OpKind::AssignGroup { account, group, .. } => self.assign_group(ctx, account, group)?,
            OpKind::FollowGroupLimits { account, credit, max, .. } => {
                self.follow_group_limits(ctx, account, *credit, *max)?
            }
            OpKind::SetFees(f) => self.set_fees(ctx, &f.schedule)?,
            OpKind::ChargeFees { period } => self.charge_fees(ctx, *period)?,
            OpKind::AddKey(k) => self.add_key(ctx, signer, k)?,
            OpKind::RemoveKey { account, key } => self.remove_key(ctx, signer, account, key)?,
            OpKind::ApprovePending { account, pending, payee, amount_minor } => {
                self.settle_pending(ctx, signer, account, *pending, Some((payee, *amount_minor)))?
            }
            OpKind::DeclinePending { account, pending, .. } => {
                self.settle_pending(ctx, signer, account, *pending, None)?
            }
            OpKind::Transfer(t) => self.transfer(ctx, signer, t)?,
            OpKind::IssueInvoice(i) => self.issue_invoice(ctx, signer, i)?,
            OpKind::AcceptInvoice(p) => self.invoice_action(ctx, signer, p, InvoiceAction::Accept)?,
            OpKind::RejectInvoice { invoice, reason } => {
                self.invoice_action(ctx, signer, invoice, InvoiceAction::Reject(reason))?
            }
            OpKind::CancelInvoice { invoice, reason } => {
                self.invoice_action(ctx, signer, invoice, InvoiceAction::Cancel(reason))?
            }
            OpKind::SetInvoiceClearing { invoice, excluded } => {
                self.invoice_action(ctx, signer, invoice, InvoiceAction::SetClearing(*excluded))?
            }
            OpKind::RunClearing(run) => self.run_clearing(ctx, run, clearing)?,
            OpKind::ApplyLimitRule(a) => self.apply_limit_rule(ctx, a)?,
        };
        Ok(effects)
    }

    /// Freezes or unfreezes `account`. Freezing a frozen account, or unfreezing an active
    /// one, is refused: the entry would say something that did not happen.
    fn set_status(
        &mut self,
        ctx: &Context,
        id: &AccountId,
        status: AccountStatus,
    ) -> Result<Effects, Rejection> {
        let action = if status == AccountStatus::Frozen { "be frozen" } else { "be unfrozen" };
        match (self.open_account(id, action)?.status, status) {
            (AccountStatus::Frozen, AccountStatus::Frozen) => {
                Err(Rejection::AlreadyFrozen { account: id.clone() })
            }
            (AccountStatus::Active, AccountStatus::Active) => {
                Err(Rejection::NotFrozen { account: id.clone() })
            }
            _ => Ok(self.touch(ctx, id, |a| a.status = status)),
        }
    }

    /// Adds a key to a role or removes it. Refused when it would change nothing, grow a
    /// role past `GOVERNANCE_KEYS_MAX`, or leave the ledger without an administrator.
    fn set_role(&mut self, r: &SetRole) -> Result<Effects, Rejection> {
        let keys = self.roles.keys(r.role);
        let held = keys.contains(&r.key);
        match (r.present, held) {
            (true, true) => return Err(Rejection::RoleAlreadyHeld { role: r.role, key: r.key }),
            (false, false) => return Err(Rejection::RoleNotHeld { role: r.role, key: r.key }),
            (true, false) if keys.len() >= GOVERNANCE_KEYS_MAX => {
                return Err(Rejection::TooManyRoleKeys { role: r.role, max: GOVERNANCE_KEYS_MAX });
            }
            (false, true) if r.role == Role::Admin && keys.len() == 1 => {
                return Err(Rejection::LastAdministrator { key: r.key });
            }
            (false, true) if r.role == Role::Admin && keys.len() <= usize::from(self.roles.quorum()) => {
                return Err(Rejection::QuorumInvalid {
                    detail: format!(
                        "removing administrator {} would leave {} administrators for a quorum of {}; lower the quorum first",
                        r.key,
                        keys.len() - 1,
                        self.roles.quorum()
                    ),
                });
            }
            _ => {}
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::Roles(self.roles.clone()));
        }
        self.roles.set(r.role, r.key, r.present);
        Ok(Effects::default())
    }

    /// Sets the quorum and its limit threshold. Refused when it changes nothing or puts the
    /// quorum out of the administrators' reach.
    fn set_quorum(&mut self, q: &SetQuorum) -> Result<Effects, Rejection> {
        let admins = self.roles.admins().len();
        if usize::from(q.quorum) > admins {
            return Err(Rejection::QuorumInvalid {
                detail: format!(
                    "a quorum of {} needs at least {} administrators; the ledger has {admins}",
                    q.quorum, q.quorum
                ),
            });
        }
        if q.quorum == self.roles.quorum() && q.limit_above_minor == self.roles.limit_above_minor() {
            return Err(Rejection::NothingToChange {
                hint: "the quorum and its limit threshold are already these",
            });
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::Roles(self.roles.clone()));
        }
        self.roles.set_quorum(q.quorum, q.limit_above_minor);
        Ok(Effects::default())
    }

    /// Puts `key` in force for every tree head that contains this entry. Refused for the
    /// key in force, a key used before (a signature of an old head must never be taken
    /// for a new one's), and past `NODE_KEYS_MAX` keys.
    fn rotate_node_key(&mut self, ctx: &Context, key: &PublicKey) -> Result<Effects, Rejection> {
        if *key == self.node_keys.current() {
            return Err(Rejection::NodeKeyInForce { key: *key });
        }
        if let Some(from_size) = self.node_keys.used_from(key) {
            return Err(Rejection::NodeKeyUsedBefore { key: *key, from_size });
        }
        if self.node_keys.len() >= NODE_KEYS_MAX {
            return Err(Rejection::NodeKeyInvalid {
                key: *key,
                detail: format!("the ledger has had {NODE_KEYS_MAX} node keys, the maximum"),
            });
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::NodeKeys(self.node_keys.clone()));
        }
        self.node_keys.rotate(ctx.sequence, *key);
        Ok(Effects::default())
    }

    /// Sets the fee schedule. The association's account must exist and be open; a schedule
    /// equal to the one in force is refused (the entry would change nothing).
    fn set_fees(&mut self, ctx: &Context, schedule: &FeeSchedule) -> Result<Effects, Rejection> {
        self.open_account(&schedule.account, "receive the association's fees")?;
        for group in schedule.group_membership_minor.keys() {
            self.existing_group(group)?;
        }
        if self.fees.as_ref() == Some(schedule) {
            return Err(Rejection::NothingToChange { hint: "the fee schedule is already this one" });
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::Fees(self.fees.clone()));
        }
        self.fees = Some(schedule.clone());
        // The association's account's history shows the schedule it receives fees under.
        Ok(self.touch(ctx, &schedule.account, |_| {}))
    }

    /// Charges the membership fees and demurrage of `period` (see the module's notes and
    /// `charges`): one entry, every firm's charge or why it was not made.
    fn charge_fees(&mut self, ctx: &Context, period: Period) -> Result<Effects, Rejection> {
        let Some(fees) = self.fees.as_ref() else { return Err(Rejection::NoFeeSchedule) };
        let current = Period::of(self.day_offset_minutes, ctx.timestamp_ms);
        if period > current {
            return Err(Rejection::PeriodNotBegun { period, current });
        }
        if let Some(last) = self.last_charge.filter(|last| period <= last.period) {
            return Err(Rejection::PeriodAlreadyCharged { period, last });
        }
        if !fees.has_periodic_charges() {
            return Err(Rejection::NothingToCharge {
                period,
                detail: "the fee schedule has no membership fee and no demurrage",
            });
        }
        let fee = self.open_account(&fees.account, "receive fees")?;
        check_status(fee, "receive fees")?;
        let fee_max = self.limits(fee).max_balance_minor;
        let mut fee_balance = fee.balance_minor;
        let mut firms: Vec<FirmCharge> = Vec::new();
        for a in self.accounts.values() {
            if a.id == fees.account || a.status == AccountStatus::Closed {
                continue;
            }
            let group = a.membership.as_ref().map(|m| &m.group);
            let membership_minor = fees.membership_of(group, a.profile.get(Field::SizeClass));
            let demurrage_minor = fees.demurrage_of(a.balance_minor);
            if membership_minor == 0 && demurrage_minor == 0 {
                continue;
            }
            if firms.len() >= self.bounds.charge_firms_max {
                let (accounts, max) = (self.accounts.len(), self.bounds.charge_firms_max);
                return Err(Rejection::TooManyCharges { accounts, max });
            }
            // A membership fee is at most AMOUNT_MAX_MINOR and a demurrage at most a
            // twentieth of a balance: the sums are checked all the same.
            let due = membership_minor.checked_add(demurrage_minor);
            let after = due.and_then(|d| a.balance_minor.checked_sub(d));
            let fee_after = due.and_then(|d| fee_balance.checked_add(d));
            let limit = self.limits(a).credit_limit_minor;
            let reserved = a.reserved_minor(ctx.timestamp_ms);
            let not_charged = match (after, fee_after) {
                (Some(after), Some(_)) if after.saturating_sub(reserved) < -limit => {
                    Some(NotCharged::CreditLimit {
                        balance_after_minor: after.saturating_sub(reserved),
                        credit_limit_minor: limit,
                    })
                }
                (Some(_), Some(fee_after)) if fee_max.is_some_and(|max| fee_after > max) => {
                    Some(NotCharged::FeeAccountMax)
                }
                (Some(_), Some(fee_after)) => {
                    fee_balance = fee_after;
                    None
                }
                _ => Some(NotCharged::Overflow),
            };
            let balance_after_minor = match (not_charged, after) {
                (None, Some(after)) => after,
                _ => a.balance_minor,
            };
            firms.push(FirmCharge {
                account: a.id.clone(),
                membership_minor,
                demurrage_minor,
                not_charged,
                balance_after_minor,
            });
        }
        if firms.is_empty() {
            return Err(Rejection::NothingToCharge {
                period,
                detail: "no firm's group or size class has a membership fee and no balance is above the demurrage threshold",
            });
        }
        // Every check passed: now, and only now, change the state.
        let fee_account = fees.account.clone();
        let mut balance_changes = Vec::new();
        let mut touched = Vec::with_capacity(firms.len() + 1);
        for f in &firms {
            touched.push(f.account.clone());
            let a = self.account_mut(&f.account);
            a.last_sequence = ctx.sequence;
            if f.not_charged.is_none() {
                balance_changes.push(BalanceChange {
                    account: f.account.clone(),
                    before_minor: a.balance_minor,
                    after_minor: f.balance_after_minor,
                });
                a.set_charged_balance(f.balance_after_minor, ctx.timestamp_ms);
            }
        }
        let fee = self.account_mut(&fee_account);
        fee.last_sequence = ctx.sequence;
        if fee.balance_minor != fee_balance {
            balance_changes.push(BalanceChange {
                account: fee_account.clone(),
                before_minor: fee.balance_minor,
                after_minor: fee_balance,
            });
            fee.set_charged_balance(fee_balance, ctx.timestamp_ms);
        }
        touched.push(fee_account.clone());
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::LastCharge(self.last_charge));
        }
        self.last_charge =
            Some(LastCharge { period, sequence: ctx.sequence, timestamp_ms: ctx.timestamp_ms });
        let record = ChargeRecord { period, fee_account, fee_balance_after_minor: fee_balance, firms };
        Ok(Effects { balance_changes, touched, charges: Some(record), ..Effects::default() })
    }

    /// Closes an account for good: only with no open invoice either way and at a zero
    /// balance, so nothing is owed and nothing is left to clear; or, for a firm that leaves
    /// owing, with its debt written off to `write_off_to`, the association's reserve
    /// account, which takes it within its own credit limit (the quorum was checked).
    fn close(
        &mut self,
        ctx: &Context,
        id: &AccountId,
        write_off_to: Option<&AccountId>,
    ) -> Result<Effects, Rejection> {
        let a = self.open_account(id, "be closed again")?;
        let waiting = a.pending.iter().filter(|p| p.is_live(ctx.timestamp_ms)).count();
        if waiting != 0 {
            return Err(Rejection::PendingPaymentsOpen { account: id.clone(), count: waiting });
        }
        let balance = a.balance_minor;
        // Every open invoice, once: closure is rare, and a per-firm count would be one
        // more index to keep in step with every invoice's change.
        let open_invoices = self.open_invoices().filter(|i| i.payer == *id || i.payee == *id).count();
        let Some(reserve) = write_off_to else {
            if balance != 0 || open_invoices != 0 {
                return Err(Rejection::AccountNotSettled {
                    account: id.clone(),
                    balance_minor: balance,
                    open_invoices,
                });
            }
            self.forget_expired(id);
            return Ok(self.touch(ctx, id, |a| a.status = AccountStatus::Closed));
        };
        if reserve == id {
            return Err(Rejection::WriteOffInvalid {
                account: id.clone(),
                detail: "the reserve account is the account itself; name the association's reserve".into(),
            });
        }
        let r = self.open_account(reserve, "take a write-off")?;
        check_status(r, "take a write-off")?;
        if open_invoices != 0 {
            return Err(Rejection::AccountNotSettled {
                account: id.clone(),
                balance_minor: balance,
                open_invoices,
            });
        }
        if balance >= 0 {
            return Err(Rejection::WriteOffInvalid {
                account: id.clone(),
                detail: if balance == 0 {
                    "its balance is zero: there is no debt to write off; close it without a write-off".into()
                } else {
                    "its balance is positive: a write-off takes over a debt only; the firm spends or transfers its balance first".into()
                },
            });
        }
        let debt = -balance;
        let reserve_after = r.balance_minor - debt;
        // The reserve's binding limit (its own or its group's); its own pending payments keep
        // their headroom.
        let reserve_limit = self.limits(r).credit_limit_minor;
        let reserved = r.reserved_minor(ctx.timestamp_ms);
        if reserve_after - reserved < -reserve_limit {
            return Err(Rejection::CreditLimitExceeded {
                account: reserve.clone(),
                balance_after_minor: reserve_after - reserved,
                credit_limit_minor: reserve_limit,
            });
        }
        let reserve_before = r.balance_minor;
        self.forget_expired(id);
        let mut effects = self.touch(ctx, id, |a| {
            a.set_paid_balance(0, ctx.timestamp_ms);
            a.status = AccountStatus::Closed;
        });
        let reserve_effects =
            self.touch(ctx, reserve, |a| a.set_paid_balance(reserve_after, ctx.timestamp_ms));
        effects.touched.extend(reserve_effects.touched);
        effects.balance_changes = vec![
            BalanceChange { account: id.clone(), before_minor: balance, after_minor: 0 },
            BalanceChange {
                account: reserve.clone(),
                before_minor: reserve_before,
                after_minor: reserve_after,
            },
        ];
        Ok(effects)
    }

    /// The account `id`, unless it is closed: then `action` is refused.
    fn open_account(&self, id: &AccountId, action: &'static str) -> Result<&Account, Rejection> {
        let a = self.existing(id)?;
        if a.status == AccountStatus::Closed {
            return Err(Rejection::AccountClosed { account: id.clone(), action });
        }
        Ok(a)
    }

    /// Refuses a key of `keys` that another open account (not `own`) already holds, unless
    /// sharing is allowed. The account is named to an administrator only: to anyone else,
    /// which accounts a key signs for is not theirs to learn. Scans every account: keys
    /// change only at registration and rotation, which are rare.
    fn check_shared_keys(
        &self,
        signer: &PublicKey,
        own: &AccountId,
        keys: &[PublicKey],
        allow_shared_key: bool,
    ) -> Result<(), Rejection> {
        if allow_shared_key {
            return Ok(());
        }
        let other = self
            .accounts
            .values()
            .filter(|a| a.id != *own && a.status != AccountStatus::Closed)
            .find_map(|a| keys.iter().find(|k| a.keys.contains(*k)).map(|k| (*k, a.id.clone())));
        match other {
            None => Ok(()),
            Some((key, account)) => Err(Rejection::KeyAlreadyRegistered {
                key,
                account: self.is_admin(signer).then_some(account),
            }),
        }
    }

    /// Replaces the keys of `account`: signed by one of its keys, or by an administrator
    /// (a lost key).
    fn rotate_keys(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        id: &AccountId,
        keys: &[PublicKey],
        allow_shared_key: bool,
    ) -> Result<Effects, Rejection> {
        let a = self.existing(id)?;
        if !self.is_admin(signer) {
            a.require_role(signer, "replace the account's keys", Allowed::Owner)?;
        }
        self.open_account(id, "have its keys replaced")?;
        self.check_shared_keys(signer, id, keys, allow_shared_key)?;
        let keys = keys.to_vec();
        Ok(self.touch(ctx, id, |a| {
            let removed: Vec<PublicKey> = a.keys.iter().filter(|k| !keys.contains(k)).copied().collect();
            a.retire_keys(&removed, &keys);
            // A rotation gives the account a new set of owners.
            a.key_grants.clear();
            a.keys = keys;
        }))
    }

    /// Adds a key with its role to `account`: signed by an owner key of it, or by an
    /// administrator (a sensitive act, checked with the quorum).
    fn add_key(&mut self, ctx: &Context, signer: &PublicKey, k: &AddKey) -> Result<Effects, Rejection> {
        let a = self.existing(&k.account)?;
        if !self.is_admin(signer) {
            a.require_role(signer, "change the account's keys", Allowed::Owner)?;
        }
        let a = self.open_account(&k.account, "have its keys changed")?;
        if a.keys.contains(&k.key) {
            return Err(Rejection::KeyAlreadyOnAccount { account: k.account.clone(), key: k.key });
        }
        if a.keys.len() >= KEYS_PER_ACCOUNT_MAX {
            return Err(Rejection::InvalidKeys {
                detail: format!(
                    "account '{}' holds {} keys, the maximum is {KEYS_PER_ACCOUNT_MAX}; remove one first",
                    k.account,
                    a.keys.len()
                ),
            });
        }
        self.check_shared_keys(signer, &k.account, &[k.key], k.allow_shared_key)?;
        Ok(self.touch(ctx, &k.account, |a| {
            a.keys.push(k.key);
            a.retire_keys(&[], &[k.key]);
            if k.role != KeyRole::Owner {
                a.key_grants.insert(k.key, KeyGrant { role: k.role, day: 0, spent_minor: 0 });
            }
        }))
    }

    /// Takes `key` off `account`, never its last owner key. Signed like `add_key`.
    fn remove_key(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        id: &AccountId,
        key: &PublicKey,
    ) -> Result<Effects, Rejection> {
        let a = self.existing(id)?;
        if !self.is_admin(signer) {
            a.require_role(signer, "change the account's keys", Allowed::Owner)?;
        }
        let a = self.open_account(id, "have its keys changed")?;
        match a.role_of(key) {
            None => return Err(Rejection::KeyNotOnAccount { account: id.clone(), key: *key }),
            Some(KeyRole::Owner) if a.owner_count() == 1 => {
                return Err(Rejection::LastOwnerKey { account: id.clone(), key: *key });
            }
            Some(_) => {}
        }
        Ok(self.touch(ctx, id, |a| {
            a.keys.retain(|k| k != key);
            a.key_grants.remove(key);
            a.retire_keys(&[*key], &[]);
        }))
    }

    /// Marks the accounts as touched by entry `sequence` (`Account::last_sequence`).
    fn mark_touched(&mut self, ids: &[&AccountId], sequence: u64) {
        for id in ids {
            self.account_mut(id).last_sequence = sequence;
        }
    }

    fn existing_invoice(&self, id: &InvoiceId) -> Result<&Invoice, Rejection> {
        self.invoices.get(id).map(|i| &**i).ok_or(Rejection::UnknownInvoice { invoice: *id })
    }

    /// The invoice `id`, if `signer` holds a key of one of its two firms. To anyone else an
    /// invoice does not exist: its firms, amount and state are theirs alone.
    fn visible_invoice(&self, signer: &PublicKey, id: &InvoiceId) -> Result<&Invoice, Rejection> {
        let invoice = self.existing_invoice(id)?;
        let holds = |a: &AccountId| self.accounts.get(a).is_some_and(|a| a.keys.contains(signer));
        if holds(&invoice.payer) || holds(&invoice.payee) {
            Ok(invoice)
        } else {
            Err(Rejection::UnknownInvoice { invoice: *id })
        }
    }

    fn issue_invoice(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        i: &IssueInvoice,
    ) -> Result<Effects, Rejection> {
        let payee = self.existing(&i.payee)?;
        payee.require_role(signer, "issue an invoice", Allowed::Invoicer)?;
        let payer = self.existing(&i.payer)?;
        for (a, action) in [(payee, "invoice"), (payer, "be invoiced")] {
            check_status(a, action)?;
        }
        if self.invoices.contains_key(&i.invoice) {
            return Err(Rejection::InvoiceExists { invoice: i.invoice });
        }
        if self.open_invoices.len() >= self.bounds.open_invoices_max {
            return Err(Rejection::TooManyOpenInvoices { max: self.bounds.open_invoices_max });
        }
        self.put_invoice(Invoice {
            id: i.invoice,
            payee: i.payee.clone(),
            payer: i.payer.clone(),
            amount_minor: i.amount_minor,
            local_share_percent: i.local_share_percent,
            due_day: i.due_day,
            reference: i.reference.clone(),
            state: InvoiceState::Issued,
            paid_minor: 0,
            cleared_minor: 0,
            excluded_from_clearing: i.excluded_from_clearing,
            reason: String::new(),
            issued_at_sequence: ctx.sequence,
            last_sequence: ctx.sequence,
        });
        self.mark_touched(&[&i.payer, &i.payee], ctx.sequence);
        Ok(Effects {
            touched: vec![i.payer.clone(), i.payee.clone()],
            invoices: vec![i.invoice],
            ..Effects::default()
        })
    }

    /// The invoice `parties` names, once the named firms match it and `signer` holds a key of
    /// the firm `who` says may act on it.
    fn authorized_invoice(
        &self,
        signer: &PublicKey,
        parties: &InvoiceParties,
        who: Signer,
        action: &'static str,
    ) -> Result<&Invoice, Rejection> {
        let invoice = self.visible_invoice(signer, &parties.invoice)?;
        if invoice.payer != parties.payer || invoice.payee != parties.payee {
            return Err(Rejection::InvoicePartiesMismatch {
                invoice: parties.invoice,
                detail: format!(
                    "it is from '{}' to '{}', not from '{}' to '{}'",
                    invoice.payee, invoice.payer, parties.payee, parties.payer
                ),
            });
        }
        let check = |id: &AccountId, allowed: Allowed| -> Result<KeyRole, Rejection> {
            self.existing(id)?.require_role(signer, action, allowed)
        };
        match who {
            Signer::Payer => check(&invoice.payer, Allowed::Owner)?,
            Signer::Payee => check(&invoice.payee, Allowed::Invoicer)?,
            // An owner of either firm; else the refusal about the firm whose key it is.
            Signer::Either => match check(&invoice.payer, Allowed::Owner) {
                Ok(role) => role,
                Err(payer_refusal) => match check(&invoice.payee, Allowed::Owner) {
                    Ok(role) => role,
                    Err(Rejection::NotAccountKey { .. }) => return Err(payer_refusal),
                    Err(payee_refusal) => return Err(payee_refusal),
                },
            },
        };
        Ok(invoice)
    }

    /// A change to one invoice by one of its firms: checks the parties named by the
    /// operation and the signer's key, then applies `action` if the invoice's state allows it.
    fn invoice_action(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        parties: &InvoiceParties,
        action: InvoiceAction<'_>,
    ) -> Result<Effects, Rejection> {
        let invoice = self.authorized_invoice(signer, parties, action.signer(), action.infinitive())?;
        match action {
            // Accepting binds the payer: not while either firm is frozen.
            InvoiceAction::Accept => {
                for id in [&invoice.payer, &invoice.payee] {
                    if self.accounts.get(id).is_some_and(|a| a.status == AccountStatus::Frozen) {
                        return Err(Rejection::AccountFrozen { account: id.clone() });
                    }
                }
            }
            // Only a party learns that nothing would change: the flag is not public.
            InvoiceAction::SetClearing(excluded) if invoice.excluded_from_clearing == excluded => {
                let hint = if excluded {
                    "the invoice is already left out of clearing"
                } else {
                    "the invoice is already in clearing"
                };
                return Err(Rejection::NothingToChange { hint });
            }
            _ => {}
        }
        let mut changed = invoice.clone();
        if !action.apply(&mut changed) {
            return Err(Rejection::InvoiceStateConflict {
                invoice: changed.id,
                state: invoice.state,
                action: action.past_tense(),
            });
        }
        changed.last_sequence = ctx.sequence;
        let touched = vec![changed.payer.clone(), changed.payee.clone()];
        self.mark_touched(&[&changed.payer, &changed.payee], ctx.sequence);
        self.put_invoice(changed);
        Ok(Effects { touched, invoices: vec![parties.invoice], ..Effects::default() })
    }

    /// Records a payment of `amount_minor` on `invoice` (already checked to be open and
    /// between the payment's two accounts).
    fn pay_invoice(&mut self, ctx: &Context, id: &InvoiceId, amount_minor: i64) {
        self.settle_invoice(ctx, id, 0, amount_minor);
    }

    /// Records `cleared_minor` set off and `paid_minor` paid on invoice `id` (checked to be
    /// open, and to hold that much).
    fn settle_invoice(&mut self, ctx: &Context, id: &InvoiceId, cleared_minor: i64, paid_minor: i64) {
        let i = self.invoice_mut(id);
        i.cleared_minor += cleared_minor;
        i.paid_minor += paid_minor;
        i.state = if i.open_minor() == 0 { InvoiceState::Settled } else { InvoiceState::PartlySettled };
        i.last_sequence = ctx.sequence;
        if i.state == InvoiceState::Settled {
            self.open_invoices.remove(id);
        }
    }

    fn run_clearing(
        &mut self,
        ctx: &Context,
        run: &RunClearing,
        input: ClearingInput<'_>,
    ) -> Result<Effects, Rejection> {
        // Proposed or recorded, the record passes the same check before anything changes.
        let (record, summary) = match input {
            ClearingInput::Propose => clearing::propose_checked(self, run.with_credit)?,
            ClearingInput::Recorded(Some(record)) => {
                (record.clone(), clearing::check(self, run.with_credit, record)?)
            }
            ClearingInput::Recorded(None) => {
                return Err(Rejection::ClearingInvalid { defect: Box::new(ClearingDefect::NoRecord) });
            }
            ClearingInput::Planned(planned, changes) => {
                if planned.record.with_credit != run.with_credit {
                    return Err(Rejection::ClearingInvalid {
                        defect: Box::new(ClearingDefect::CreditOptionDiffers),
                    });
                }
                if !planned.still_holds(self, changes) {
                    return Err(Rejection::ClearingInvalid { defect: Box::new(ClearingDefect::PlanStale) });
                }
                (planned.record.clone(), planned.summary.clone())
            }
        };
        // Checked: every amount is within what is open, every payment within the firm's
        // credit and maximum balance. Now, and only now, change the state.
        for c in &record.invoices {
            self.settle_invoice(ctx, &c.invoice, c.setoff_minor, c.credit_minor);
        }
        let mut balance_changes = Vec::new();
        let mut touched = Vec::new();
        for f in record.firms.iter().filter(|f| f.changed) {
            touched.push(f.account.clone());
            let a = self.account_mut(&f.account);
            a.last_sequence = ctx.sequence;
            if f.payment_minor != 0 {
                let before_minor = a.balance_minor;
                // Checked within the firm's headroom, so no overflow.
                a.set_paid_balance(before_minor - f.payment_minor, ctx.timestamp_ms);
                balance_changes.push(BalanceChange {
                    account: a.id.clone(),
                    before_minor,
                    after_minor: a.balance_minor,
                });
            }
        }
        let invoices = record.invoices.iter().map(|c| c.invoice).collect();
        Ok(Effects {
            balance_changes,
            touched,
            invoices,
            clearing: Some((record, summary)),
            groups_changed: false,
            pending: None,
            limit_rule: None,
            charges: None,
        })
    }

    fn existing(&self, id: &AccountId) -> Result<&Account, Rejection> {
        self.accounts.get(id).ok_or_else(|| Rejection::UnknownAccount { account: id.clone() })
    }

    /// Changes one account that is known to exist and records that the entry touched it.
    fn touch(&mut self, ctx: &Context, id: &AccountId, change: impl FnOnce(&mut Account)) -> Effects {
        let a = self.account_mut(id);
        change(a);
        a.last_sequence = ctx.sequence;
        Effects { touched: vec![id.clone()], ..Effects::default() }
    }

    fn register(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        r: &RegisterAccount,
    ) -> Result<Effects, Rejection> {
        match self.accounts.get(&r.account) {
            Some(a) if a.status == AccountStatus::Closed => {
                return Err(Rejection::AccountClosed { account: r.account.clone(), action: "be reopened" });
            }
            Some(_) => return Err(Rejection::AccountExists { account: r.account.clone() }),
            None => {}
        }
        if self.accounts.len() >= ACCOUNTS_MAX {
            return Err(Rejection::TooManyAccounts { max: ACCOUNTS_MAX });
        }
        self.check_shared_keys(signer, &r.account, &r.keys, r.allow_shared_key)?;
        self.put_account(Account {
            id: r.account.clone(),
            display_name: r.display_name.clone(),
            keys: r.keys.clone(),
            balance_minor: 0,
            credit_limit_minor: r.credit_limit_minor,
            max_balance_minor: r.max_balance_minor,
            status: AccountStatus::Active,
            registered_at_sequence: ctx.sequence,
            last_sequence: ctx.sequence,
            profile: r.profile.clone(),
            negative_since_ms: None,
            last_activity_ms: None,
            retired_keys: Vec::new(),
            membership: None,
            key_grants: BTreeMap::new(),
            pending: Vec::new(),
            sales: Vec::new(),
        });
        Ok(Effects {
            balance_changes: vec![BalanceChange {
                account: r.account.clone(),
                before_minor: 0,
                after_minor: 0,
            }],
            touched: vec![r.account.clone()],
            ..Effects::default()
        })
    }

    /// Sets an account's own limits. A limit set here overrides its group's: the account
    /// stops following the group for that limit (`FollowGroupLimits` brings it back). A
    /// limit may be set below what the balance already uses: it binds the next payment.
    fn set_limits(&mut self, ctx: &Context, s: &SetLimits) -> Result<Effects, Rejection> {
        self.open_account(&s.account, "have its limits changed")?;
        Ok(self.touch(ctx, &s.account, |a| {
            if let Some(limit) = s.credit_limit_minor {
                a.credit_limit_minor = limit;
            }
            if let Some(max) = s.max_balance_minor {
                a.max_balance_minor = max;
            }
            if let Some(m) = &mut a.membership {
                m.credit_from_group &= s.credit_limit_minor.is_none();
                m.max_from_group &= s.max_balance_minor.is_none();
            }
        }))
    }

    /// Records the groups as they are before a change, so it can be undone.
    fn save_groups(&mut self) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push(Undo::Groups(self.groups.clone()));
        }
    }

    fn existing_group(&self, name: &GroupName) -> Result<&MemberGroup, Rejection> {
        self.groups.get(name).ok_or_else(|| Rejection::UnknownGroup { group: name.clone() })
    }

    /// Creates a group. Its name is never reused: groups are not deleted, so every account
    /// that names one finds it.
    fn create_group(&mut self, ctx: &Context, g: &GroupLimits) -> Result<Effects, Rejection> {
        if self.groups.get(&g.group).is_some() {
            return Err(Rejection::GroupExists { group: g.group.clone() });
        }
        if self.groups.len() >= GROUPS_MAX {
            return Err(Rejection::TooManyGroups { max: GROUPS_MAX });
        }
        self.save_groups();
        self.groups.put(MemberGroup {
            name: g.group.clone(),
            credit_limit_minor: g.credit_limit_minor,
            max_balance_minor: g.max_balance_minor,
            created_at_sequence: ctx.sequence,
            last_sequence: ctx.sequence,
        });
        Ok(Effects { groups_changed: true, ..Effects::default() })
    }

    /// Changes a group's default limits: one record, whatever the number of members. As
    /// with `SetLimits`, a limit may go below what a member's balance already uses.
    fn set_group_limits(&mut self, ctx: &Context, g: &SetGroupLimits) -> Result<Effects, Rejection> {
        let mut group = self.existing_group(&g.group)?.clone();
        if let Some(limit) = g.credit_limit_minor {
            group.credit_limit_minor = limit;
        }
        if let Some(max) = g.max_balance_minor {
            group.max_balance_minor = max;
        }
        group.last_sequence = ctx.sequence;
        self.save_groups();
        self.groups.put(group);
        Ok(Effects { groups_changed: true, ..Effects::default() })
    }

    /// Puts an account in a group, following both of the group's limits. Refused when it
    /// is already there and follows both: nothing would change.
    fn assign_group(
        &mut self,
        ctx: &Context,
        id: &AccountId,
        group: &GroupName,
    ) -> Result<Effects, Rejection> {
        let a = self.open_account(id, "be assigned to a group")?;
        self.existing_group(group)?;
        let membership = Membership { group: group.clone(), credit_from_group: true, max_from_group: true };
        if a.membership.as_ref() == Some(&membership) {
            return Err(Rejection::NothingToChange {
                hint: "the account is already in this group and follows its limits",
            });
        }
        Ok(self.touch(ctx, id, |a| a.membership = Some(membership)))
    }

    /// Makes an account follow its group's credit limit and/or maximum balance again.
    fn follow_group_limits(
        &mut self,
        ctx: &Context,
        id: &AccountId,
        credit: bool,
        max: bool,
    ) -> Result<Effects, Rejection> {
        let a = self.open_account(id, "have its limits changed")?;
        let Some(m) = &a.membership else {
            return Err(Rejection::NotInGroup { account: id.clone() });
        };
        if (!credit || m.credit_from_group) && (!max || m.max_from_group) {
            return Err(Rejection::NothingToChange {
                hint: "the account already follows its group's limits",
            });
        }
        Ok(self.touch(ctx, id, |a| {
            if let Some(m) = &mut a.membership {
                m.credit_from_group |= credit;
                m.max_from_group |= max;
            }
        }))
    }

    fn set_profile(&mut self, ctx: &Context, p: &SetProfile) -> Result<Effects, Rejection> {
        self.open_account(&p.account, "have its profile changed")?;
        Ok(self.touch(ctx, &p.account, |a| {
            if let Some(name) = &p.display_name {
                a.display_name = name.clone();
            }
            p.profile.apply(&mut a.profile);
        }))
    }

    fn transfer(&mut self, ctx: &Context, signer: &PublicKey, t: &Transfer) -> Result<Effects, Rejection> {
        let payer = self.existing(&t.payer)?;
        let role = payer.require_role(signer, "pay", Allowed::Payer)?;
        let payee = self.existing(&t.payee)?;
        for (a, action) in [(payer, "pay"), (payee, "be paid")] {
            check_status(a, action)?;
        }
        // A payment that will be held is checked as if it were paid now, levy included: its
        // approval pays the levy then in force.
        let reserved = payer.reserved_minor(ctx.timestamp_ms);
        let PaymentBalances { payer_after, payee_after, fee_account } =
            self.payment_balances(payer, payee, t.amount_minor, reserved)?;
        self.check_invoice_payment(signer, t)?;
        let today = crate::genesis::ledger_day(self.day_offset_minutes, ctx.timestamp_ms);
        let usage = match role {
            KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor } => {
                let grant = payer.key_grants.get(signer).copied();
                let spent_today_minor = grant.filter(|g| g.day == today).map_or(0, |g| g.spent_minor);
                // Both at most AMOUNT_MAX_MINOR, so the sum cannot overflow.
                let spent_after = spent_today_minor + t.amount_minor;
                if t.amount_minor > per_transfer_cap_minor || spent_after > daily_cap_minor {
                    let over = Rejection::KeyCapExceeded {
                        account: t.payer.clone(),
                        key: *signer,
                        amount_minor: t.amount_minor,
                        per_transfer_cap_minor,
                        daily_cap_minor,
                        spent_today_minor,
                    };
                    // An invoice may be settled by others meanwhile: its payment is not
                    // held for approval, an owner key pays it.
                    if t.invoice.is_some() {
                        return Err(over);
                    }
                    return self.make_pending(ctx, signer, t);
                }
                Some(spent_after)
            }
            _ => None,
        };
        // Every check passed: now, and only now, change the state. Paying an issued
        // invoice accepts it: the payer's signature on the payment says as much.
        if let Some(id) = &t.invoice {
            self.pay_invoice(ctx, id, t.amount_minor);
        }
        let mut balance_changes = Vec::with_capacity(3);
        let mut touched = vec![t.payer.clone(), t.payee.clone()];
        let mut moves = vec![(t.payer.clone(), payer_after), (t.payee.clone(), payee_after)];
        if let Some((id, after)) = fee_account {
            touched.push(id.clone());
            moves.push((id, after));
        }
        self.record_sale(ctx, &t.payer, &t.payee, t.amount_minor);
        for (id, after) in &moves {
            let a = self.account_mut(id);
            balance_changes.push(BalanceChange {
                account: id.clone(),
                before_minor: a.balance_minor,
                after_minor: *after,
            });
            a.set_paid_balance(*after, ctx.timestamp_ms);
            a.last_sequence = ctx.sequence;
            if let (Some(spent_minor), true) = (usage, id == &t.payer)
                && let Some(grant) = a.key_grants.get_mut(signer)
            {
                (grant.day, grant.spent_minor) = (today, spent_minor);
            }
        }
        Ok(Effects {
            balance_changes,
            touched,
            invoices: t.invoice.into_iter().collect(),
            clearing: None,
            groups_changed: false,
            pending: None,
            limit_rule: None,
            charges: None,
        })
    }

    /// The balances a payment of `amount_minor` from `payer` to `payee` leaves, the levy in
    /// force included, checked against the limits that bind (own or the group's), `reserved`
    /// being what the payer's pending payments keep of its headroom; and the association's
    /// account with its balance after the levy, if one is due. Shared by a transfer and the
    /// approval of a held one.
    fn payment_balances(
        &self,
        payer: &Account,
        payee: &Account,
        amount_minor: i64,
        reserved: i64,
    ) -> Result<PaymentBalances, Rejection> {
        let levy = self.fees.as_ref().map(|f| f.levy(&payer.id, &payee.id, amount_minor)).unwrap_or_default();
        // Amounts are at most AMOUNT_MAX_MINOR and a levy at most a tenth of one: no overflow
        // before the balance arithmetic, which is checked.
        let payer_after = payer
            .balance_minor
            .checked_sub(amount_minor + levy.payer_minor)
            .ok_or_else(|| Rejection::BalanceOverflow { account: payer.id.clone() })?;
        let payee_after = payee
            .balance_minor
            .checked_add(amount_minor - levy.payee_minor)
            .ok_or_else(|| Rejection::BalanceOverflow { account: payee.id.clone() })?;
        // `credit_limit_minor >= 0` always holds, so its negation cannot overflow.
        let (payer_limits, payee_limits) = (self.limits(payer), self.limits(payee));
        if payer_after - reserved < -payer_limits.credit_limit_minor {
            return Err(Rejection::CreditLimitExceeded {
                account: payer.id.clone(),
                balance_after_minor: payer_after - reserved,
                credit_limit_minor: payer_limits.credit_limit_minor,
            });
        }
        if let Some(max) = payee_limits.max_balance_minor
            && payee_after > max
        {
            // The payer learns that the payee cannot receive this much, never its balance.
            return Err(Rejection::MaxBalanceExceeded { account: payee.id.clone() });
        }
        Ok(PaymentBalances { payer_after, payee_after, fee_account: self.levy_account(levy.total_minor())? })
    }

    /// The association's account and its balance after receiving a levy of `levy_minor`,
    /// or `None` for no levy. Refused when the fee account is frozen or closed, or would
    /// go above its maximum balance: a levy is never dropped in silence.
    fn levy_account(&self, levy_minor: i64) -> Result<Option<(AccountId, i64)>, Rejection> {
        let Some(fees) = self.fees.as_ref().filter(|_| levy_minor > 0) else { return Ok(None) };
        let a = self.existing(&fees.account)?;
        check_status(a, "receive a transfer levy")?;
        let after = a
            .balance_minor
            .checked_add(levy_minor)
            .ok_or_else(|| Rejection::BalanceOverflow { account: a.id.clone() })?;
        if self.limits(a).max_balance_minor.is_some_and(|max| after > max) {
            return Err(Rejection::MaxBalanceExceeded { account: a.id.clone() });
        }
        Ok(Some((a.id.clone(), after)))
    }

    /// Keeps `t` as a pending payment of its payer (checked: the payer's key is a payer's,
    /// the payer's headroom holds it, the payee may receive it).
    fn make_pending(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        t: &Transfer,
    ) -> Result<Effects, Rejection> {
        let payer = self.existing(&t.payer)?;
        let live = payer.pending.iter().filter(|p| p.is_live(ctx.timestamp_ms)).count();
        let expired = payer.pending.len() - live;
        if live >= PENDING_PER_ACCOUNT_MAX {
            return Err(Rejection::TooManyPending { account: t.payer.clone(), max: PENDING_PER_ACCOUNT_MAX });
        }
        if self.pending_total - expired >= PENDING_TOTAL_MAX {
            return Err(Rejection::TooManyPending { account: t.payer.clone(), max: PENDING_TOTAL_MAX });
        }
        self.forget_expired(&t.payer);
        let pending = PendingPayment {
            id: ctx.sequence,
            payee: t.payee.clone(),
            amount_minor: t.amount_minor,
            key: *signer,
            expires_ms: ctx.timestamp_ms.saturating_add(PENDING_VALIDITY_MS),
            memo: t.memo.clone(),
        };
        self.pending_total += 1;
        self.account_mut(&t.payer).pending.push(pending);
        self.mark_touched(&[&t.payer, &t.payee], ctx.sequence);
        Ok(Effects {
            pending: Some(ctx.sequence),
            touched: vec![t.payer.clone(), t.payee.clone()],
            ..Effects::default()
        })
    }

    /// Drops the pending payments of `id` that have expired at the entry being applied:
    /// called only where that entry changes the account's pending payments anyway (or
    /// closes it), so the state stays a function of the log.
    fn forget_expired(&mut self, id: &AccountId) {
        let Some(now) = self.now_ms else { return };
        let Some(a) = self.accounts.get(id) else { return };
        if a.pending.iter().all(|p| p.is_live(now)) {
            return;
        }
        let a = self.account_mut(id);
        let before = a.pending.len();
        a.pending.retain(|p| p.is_live(now));
        let forgotten = before - a.pending.len();
        self.pending_total -= forgotten;
    }

    /// Approves (`approve`) or declines a pending payment of `account`: signed by an owner
    /// key. An approval checks the payer and the payee again, as a transfer would, the
    /// payment's own reservation set aside, then moves the money.
    fn settle_pending(
        &mut self,
        ctx: &Context,
        signer: &PublicKey,
        id: &AccountId,
        pending_id: u64,
        approved: Option<(&AccountId, i64)>,
    ) -> Result<Effects, Rejection> {
        let approve = approved.is_some();
        let a = self.existing(id)?;
        let action = if approve { "approve a pending payment" } else { "decline a pending payment" };
        a.require_role(signer, action, Allowed::Owner)?;
        let a = self.open_account(id, "settle a pending payment")?;
        let found = a.pending.iter().find(|p| p.id == pending_id).cloned();
        // An approval names the payee and amount it approves: they must be the payment's.
        let Some(p) =
            found.filter(|p| approved.is_none_or(|(to, amount)| *to == p.payee && amount == p.amount_minor))
        else {
            return Err(Rejection::PendingUnknown { account: id.clone(), pending: pending_id });
        };
        // An approval concerns both firms (`OpKind::accounts`); a decline, the payer only.
        let touched = if approve { vec![id.clone(), p.payee.clone()] } else { vec![id.clone()] };
        let mut effects = Effects { touched, ..Effects::default() };
        if approve {
            if !p.is_live(ctx.timestamp_ms) {
                return Err(Rejection::PendingExpired {
                    account: id.clone(),
                    pending: pending_id,
                    expires_ms: p.expires_ms,
                });
            }
            let payee = self.existing(&p.payee)?;
            check_status(a, "pay")?;
            check_status(payee, "be paid")?;
            // The approval pays the transfer levy in force now, as a transfer would; the
            // other pending payments keep their headroom.
            let others = a.reserved_minor(ctx.timestamp_ms) - p.amount_minor;
            let PaymentBalances { payer_after, payee_after, fee_account } =
                self.payment_balances(a, payee, p.amount_minor, others)?;
            let mut moves = vec![(id.clone(), payer_after), (p.payee.clone(), payee_after)];
            if let Some((fee, after)) = fee_account {
                effects.touched.push(fee.clone());
                moves.push((fee, after));
            }
            self.record_sale(ctx, id, &p.payee, p.amount_minor);
            for (account, after) in &moves {
                let a = self.account_mut(account);
                effects.balance_changes.push(BalanceChange {
                    account: account.clone(),
                    before_minor: a.balance_minor,
                    after_minor: *after,
                });
                a.set_paid_balance(*after, ctx.timestamp_ms);
            }
        }
        let a = self.account_mut(id);
        a.pending.retain(|q| q.id != pending_id);
        self.pending_total -= 1;
        self.forget_expired(id);
        for account in &effects.touched {
            self.account_mut(account).last_sequence = ctx.sequence;
        }
        Ok(effects)
    }

    /// Counts a payment of `amount_minor` from `payer` as a sale of `payee` in the entry's
    /// ledger month, unless the association's fee account pays it (`limitrule`).
    fn record_sale(&mut self, ctx: &Context, payer: &AccountId, payee: &AccountId, amount_minor: i64) {
        if self.fees.as_ref().is_some_and(|f| &f.account == payer) {
            return;
        }
        let month = limitrule::ledger_month(self.day_offset_minutes, ctx.timestamp_ms);
        limitrule::record_sale(&mut self.account_mut(payee).sales, month, amount_minor);
    }

    /// What `rule` gives every firm in its scope at `timestamp_ms` (the window is the 12
    /// ledger months before that month): the one computation behind a preview and an
    /// application. Refused when the rule's values are out of bounds, its group unknown,
    /// its scope empty or larger than one entry records.
    pub fn limit_rule_outcome(
        &self,
        rule: &LimitRule,
        timestamp_ms: u64,
    ) -> Result<LimitRuleOutcome, Rejection> {
        let month = limitrule::ledger_month(self.day_offset_minutes, timestamp_ms);
        let fee_account = self.fees.as_ref().map(|f| &f.account);
        limitrule::outcome(rule, self.accounts.values(), &self.groups, fee_account, month)
    }

    /// Applies a limit rule: every firm whose binding limit is not already the new one gets
    /// it as its own (its maximum balance untouched). Refused, when the operation names
    /// the preview it expects, if the outcome differs from it.
    fn apply_limit_rule(
        &mut self,
        ctx: &Context,
        a: &crate::op::ApplyLimitRule,
    ) -> Result<Effects, Rejection> {
        let outcome = self.limit_rule_outcome(&a.rule, ctx.timestamp_ms)?;
        if let Some(expected) = a.expected_root {
            let actual = outcome.root();
            if actual != expected {
                return Err(Rejection::LimitRuleChanged { expected, actual, firms: outcome.firms.len() });
            }
        }
        let mut touched = Vec::new();
        for firm in outcome.firms.iter().filter(|f| f.changed()) {
            let account = self.account_mut(&firm.account);
            account.credit_limit_minor = firm.new_limit_minor;
            if let Some(m) = &mut account.membership {
                m.credit_from_group = false;
            }
            account.last_sequence = ctx.sequence;
            touched.push(firm.account.clone());
        }
        Ok(Effects { touched, limit_rule: Some(outcome), ..Effects::default() })
    }

    /// The checks of a transfer that pays an invoice: the invoice is visible to the signer,
    /// between the transfer's two accounts, open, and owed at least the amount.
    fn check_invoice_payment(&self, signer: &PublicKey, t: &Transfer) -> Result<(), Rejection> {
        let Some(id) = &t.invoice else { return Ok(()) };
        let invoice = self.visible_invoice(signer, id)?;
        if invoice.payer != t.payer || invoice.payee != t.payee {
            return Err(Rejection::InvoicePartiesMismatch {
                invoice: *id,
                detail: format!(
                    "it is owed by '{}' to '{}', not by '{}' to '{}'",
                    invoice.payer, invoice.payee, t.payer, t.payee
                ),
            });
        }
        if !invoice.state.is_open() {
            return Err(Rejection::InvoiceStateConflict {
                invoice: *id,
                state: invoice.state,
                action: "paid",
            });
        }
        if t.amount_minor > invoice.open_minor() {
            return Err(Rejection::InvoiceOverpaid {
                invoice: *id,
                amount_minor: t.amount_minor,
                open_minor: invoice.open_minor(),
            });
        }
        Ok(())
    }
}

/// Refuses a closed account (`action` is what it can no longer do) or a frozen one.
fn check_status(a: &Account, action: &'static str) -> Result<(), Rejection> {
    match a.status {
        AccountStatus::Active => Ok(()),
        AccountStatus::Frozen => Err(Rejection::AccountFrozen { account: a.id.clone() }),
        AccountStatus::Closed => Err(Rejection::AccountClosed { account: a.id.clone(), action }),
    }
}

/// Which firm of an invoice may sign an action on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Payer,
    Payee,
    Either,
}

/// A change one of an invoice's firms makes to it: one variant per transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvoiceAction<'a> {
    /// The payer accepts an issued invoice, which becomes an obligation.
    Accept,
    /// The payer refuses an issued invoice, with a reason.
    Reject(&'a str),
    /// The payee withdraws an invoice on which nothing was paid or cleared, with a reason.
    Cancel(&'a str),
    /// Either firm takes an open invoice out of clearing (`true`), or puts it back.
    SetClearing(bool),
}

impl InvoiceAction<'_> {
    fn signer(self) -> Signer {
        match self {
            InvoiceAction::Accept | InvoiceAction::Reject(_) => Signer::Payer,
            InvoiceAction::Cancel(_) => Signer::Payee,
            InvoiceAction::SetClearing(_) => Signer::Either,
        }
    }

    /// How a refusal of the signer's role names it: "it cannot accept an invoice".
    fn infinitive(self) -> &'static str {
        match self {
            InvoiceAction::Accept => "accept an invoice",
            InvoiceAction::Reject(_) => "reject an invoice",
            InvoiceAction::Cancel(_) => "cancel an invoice",
            InvoiceAction::SetClearing(_) => "take an invoice out of clearing or put it back",
        }
    }

    /// How a refusal names it: "invoice ... is settled: it cannot be accepted".
    fn past_tense(self) -> &'static str {
        match self {
            InvoiceAction::Accept => "accepted",
            InvoiceAction::Reject(_) => "rejected",
            InvoiceAction::Cancel(_) => "cancelled",
            InvoiceAction::SetClearing(_) => "changed",
        }
    }

    /// Applies the transition to `i`; false, leaving it as it was, when its state does not
    /// allow it.
    fn apply(self, i: &mut Invoice) -> bool {
        let allowed = match self {
            InvoiceAction::Accept | InvoiceAction::Reject(_) => i.state == InvoiceState::Issued,
            InvoiceAction::Cancel(_) => {
                let untouched = i.paid_minor == 0 && i.cleared_minor == 0;
                matches!(i.state, InvoiceState::Issued | InvoiceState::Accepted) && untouched
            }
            InvoiceAction::SetClearing(_) => i.state.is_open(),
        };
        if !allowed {
            return false;
        }
        match self {
            InvoiceAction::Accept => i.state = InvoiceState::Accepted,
            InvoiceAction::Reject(reason) => {
                i.state = InvoiceState::Rejected;
                i.reason = reason.to_string();
            }
            InvoiceAction::Cancel(reason) => {
                i.state = InvoiceState::Cancelled;
                i.reason = reason.to_string();
            }
            InvoiceAction::SetClearing(excluded) => i.excluded_from_clearing = excluded,
        }
        true
    }
}

/// Asserts that an accepted operation created or destroyed no money: its balance changes
/// sum to zero. O(changes), so it holds in every build; `check_invariants` (every account)
/// runs after each operation in debug builds and after each entry of a replay.
fn assert_conserved(ctx: &Context, effects: &Effects) {
    let net: i128 =
        effects.balance_changes.iter().map(|b| i128::from(b.after_minor) - i128::from(b.before_minor)).sum();
    assert!(net == 0, "entry {} changes balances by {net} minor units in all, not zero", ctx.sequence);
}

/// The checks that depend only on the operation's own values, not on the state: texts,
/// keys, limits, amounts. `State::apply` runs them after the authority check; a client may
/// run them before signing, to refuse early what the node would refuse.
pub fn check_values(kind: &OpKind) -> Result<(), Rejection> {
    match kind {
        // A period is checked when the body is decoded; the rest depends on the state.
        OpKind::ChargeFees { .. } => Ok(()),
        OpKind::SetFees(f) => {
            check_reason(&f.reason, true)?;
            f.schedule.check().map_err(|detail| Rejection::FeesInvalid { detail })
        }
        OpKind::RegisterAccount(r) => {
            check_text("display name", &r.display_name, DISPLAY_NAME_CHARS_MAX)?;
            check_keys(&r.keys)?;
            check_limits(Some(r.credit_limit_minor), r.max_balance_minor.map(Some))?;
            r.profile.check().map_err(|detail| Rejection::InvalidProfile { detail })
        }
        OpKind::SetLimits(s) => {
            check_reason(&s.reason, true)?;
            if s.credit_limit_minor.is_none() && s.max_balance_minor.is_none() {
                return Err(Rejection::NothingToChange {
                    hint: "give a new credit limit or maximum balance",
                });
            }
            check_limits(s.credit_limit_minor, s.max_balance_minor)
        }
        OpKind::SetProfile(p) => {
            check_reason(&p.reason, true)?;
            if p.display_name.is_none() && p.profile.is_empty() {
                return Err(Rejection::NothingToChange {
                    hint: "give a new display name, sector, commune, postcode, territory or size class",
                });
            }
            if let Some(name) = &p.display_name {
                check_text("display name", name, DISPLAY_NAME_CHARS_MAX)?;
                if name.trim().is_empty() {
                    return Err(Rejection::InvalidText {
                        field: "display name",
                        detail: "a display name cannot be blank".into(),
                    });
                }
            }
            p.profile.check().map_err(|detail| Rejection::InvalidProfile { detail })
        }
        OpKind::FreezeAccount { reason, .. } => check_reason(reason, true),
        OpKind::UnfreezeAccount { reason, .. } => check_reason(reason, false),
        OpKind::RotateKeys { keys, .. } => check_keys(keys),
        OpKind::AddKey(k) => {
            check_keys(&[k.key])?;
            if let KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor } = k.role
                && (!(0..=daily_cap_minor).contains(&per_transfer_cap_minor)
                    || !(0..=AMOUNT_MAX_MINOR).contains(&daily_cap_minor))
            {
                return Err(Rejection::InvalidLimit {
                    detail: format!(
                        "a payer key's caps must be 0 <= per-transfer cap <= daily cap <= {AMOUNT_MAX_MINOR} minor units (0: every payment waits for approval), got {per_transfer_cap_minor} per transfer and {daily_cap_minor} a day"
                    ),
                });
            }
            Ok(())
        }
        OpKind::RemoveKey { .. } => Ok(()),
        OpKind::ApprovePending { amount_minor, .. } => {
            if *amount_minor <= 0 || *amount_minor > AMOUNT_MAX_MINOR {
                return Err(Rejection::InvalidAmount { amount_minor: *amount_minor });
            }
            Ok(())
        }
        OpKind::DeclinePending { reason, .. } => check_reason(reason, false),
        OpKind::SetRole(r) => {
            check_reason(&r.reason, true)?;
            crate::sign::check_public_key(&r.key)
                .map_err(|e| Rejection::InvalidKeys { detail: format!("key {}: {e}", r.key) })
        }
        OpKind::CloseAccount { reason, .. } => check_reason(reason, true),
        OpKind::RotateNodeKey { new_pubkey, reason } => {
            check_reason(reason, true)?;
            crate::sign::check_public_key(new_pubkey)
                .map_err(|e| Rejection::NodeKeyInvalid { key: *new_pubkey, detail: e.to_string() })
        }
        OpKind::SetQuorum(q) => {
            check_reason(&q.reason, true)?;
            if q.quorum == 0 || usize::from(q.quorum) > OPERATION_SIGNATURES_MAX {
                return Err(Rejection::QuorumInvalid {
                    detail: format!(
                        "a quorum of {} administrators: give 1 to {OPERATION_SIGNATURES_MAX}",
                        q.quorum
                    ),
                });
            }
            match q.limit_above_minor {
                Some(limit) if !(0..=AMOUNT_MAX_MINOR).contains(&limit) => Err(Rejection::InvalidLimit {
                    detail: format!(
                        "the limit above which a credit limit needs the quorum must be between 0 and {AMOUNT_MAX_MINOR} minor units, got {limit}"
                    ),
                }),
                _ => Ok(()),
            }
        }
        OpKind::CreateGroup(g) => {
            check_reason(&g.reason, true)?;
            check_limits(Some(g.credit_limit_minor), g.max_balance_minor.map(Some))
        }
        OpKind::SetGroupLimits(g) => {
            check_reason(&g.reason, true)?;
            if g.credit_limit_minor.is_none() && g.max_balance_minor.is_none() {
                return Err(Rejection::NothingToChange {
                    hint: "give the group a new credit limit or maximum balance",
                });
            }
            check_limits(g.credit_limit_minor, g.max_balance_minor)
        }
        OpKind::AssignGroup { reason, .. } => check_reason(reason, true),
        OpKind::FollowGroupLimits { credit, max, reason, .. } => {
            check_reason(reason, true)?;
            if !credit && !max {
                return Err(Rejection::NothingToChange {
                    hint: "say which limits follow the group: the credit limit, the maximum balance or both",
                });
            }
            Ok(())
        }
        OpKind::Transfer(t) => {
            check_text("memo", &t.memo, MEMO_CHARS_MAX)?;
            if let Some(invoice) = &t.invoice_ref {
                check_text("invoice reference", invoice, INVOICE_REF_CHARS_MAX)?;
            }
            if t.amount_minor <= 0 || t.amount_minor > AMOUNT_MAX_MINOR {
                return Err(Rejection::InvalidAmount { amount_minor: t.amount_minor });
            }
            if t.payer == t.payee {
                return Err(Rejection::SelfTransfer);
            }
            Ok(())
        }
        OpKind::IssueInvoice(i) => {
            check_text("invoice reference", &i.reference, INVOICE_REF_CHARS_MAX)?;
            if i.amount_minor <= 0 {
                return Err(Rejection::InvalidAmount { amount_minor: i.amount_minor });
            }
            if i.amount_minor > INVOICE_AMOUNT_MAX_MINOR {
                return Err(Rejection::InvalidInvoice {
                    detail: format!(
                        "amount is {} minor units, the maximum is {}",
                        i.amount_minor, INVOICE_AMOUNT_MAX_MINOR
                    ),
                });
            }
            if !(1..=100).contains(&i.local_share_percent) {
                return Err(Rejection::InvalidInvoice {
                    detail: format!("local share is {}%, it must be 1 to 100", i.local_share_percent),
                });
            }
            if crate::invoice::local_part(i.amount_minor, i.local_share_percent) == 0 {
                return Err(Rejection::InvalidInvoice {
                    detail: format!(
                        "{}% of {} minor units rounds down to nothing payable in the ledger",
                        i.local_share_percent, i.amount_minor
                    ),
                });
            }
            if i.payer == i.payee {
                return Err(Rejection::InvalidInvoice { detail: "a firm cannot invoice itself".into() });
            }
            Ok(())
        }
        OpKind::AcceptInvoice(_) | OpKind::SetInvoiceClearing { .. } => Ok(()),
        OpKind::RejectInvoice { reason, .. } => check_reason(reason, true),
        OpKind::CancelInvoice { reason, .. } => check_reason(reason, false),
        OpKind::RunClearing(run) => check_reason(&run.reason, false),
        OpKind::ApplyLimitRule(a) => {
            check_reason(&a.reason, true)?;
            a.rule.check().map_err(|detail| Rejection::LimitRuleInvalid { detail })
        }
    }
}

fn check_text(field: &'static str, text: &str, max_chars: usize) -> Result<(), Rejection> {
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Rejection::InvalidText {
            field,
            detail: format!("{chars} characters, the maximum is {max_chars}"),
        });
    }
    if text.chars().any(char::is_control) {
        return Err(Rejection::InvalidText { field, detail: "control characters are not allowed".into() });
    }
    if let Some(c) = text.chars().find(|c| is_bidi_control(*c)) {
        // U+202E and its kin reorder what a terminal or a browser shows: "pay 100" could
        // display as "pay 001". Refused rather than displayed.
        return Err(Rejection::InvalidText {
            field,
            detail: format!("the bidirectional control character U+{:04X} is not allowed", u32::from(c)),
        });
    }
    Ok(())
}

/// Unicode's explicit bidirectional formatting characters (UAX #9): embeddings,
/// overrides, isolates and the implicit marks.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn check_reason(reason: &str, required: bool) -> Result<(), Rejection> {
    if required && reason.trim().is_empty() {
        return Err(Rejection::InvalidText { field: "reason", detail: "a reason is required".into() });
    }
    check_text("reason", reason, REASON_CHARS_MAX)
}

fn check_keys(keys: &[PublicKey]) -> Result<(), Rejection> {
    if keys.is_empty() {
        return Err(Rejection::InvalidKeys { detail: "at least one public key is required".into() });
    }
    if keys.len() > KEYS_PER_ACCOUNT_MAX {
        return Err(Rejection::InvalidKeys {
            detail: format!("{} keys, the maximum is {KEYS_PER_ACCOUNT_MAX}", keys.len()),
        });
    }
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].contains(k) {
            return Err(Rejection::InvalidKeys { detail: format!("key {k} is listed twice") });
        }
        crate::sign::check_public_key(k)
            .map_err(|e| Rejection::InvalidKeys { detail: format!("key {k}: {e}") })?;
    }
    Ok(())
}

fn check_limits(credit_limit: Option<i64>, max_balance: Option<Option<i64>>) -> Result<(), Rejection> {
    if let Some(limit) = credit_limit
        && !(0..=AMOUNT_MAX_MINOR).contains(&limit)
    {
        return Err(Rejection::InvalidLimit {
            detail: format!(
                "credit limit must be between 0 and {AMOUNT_MAX_MINOR} minor units, got {limit} minor units"
            ),
        });
    }
    if let Some(Some(max)) = max_balance
        && !(0..=AMOUNT_MAX_MINOR).contains(&max)
    {
        return Err(Rejection::InvalidLimit {
            detail: format!(
                "maximum balance must be between 0 and {AMOUNT_MAX_MINOR} minor units, got {max} minor units"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OperationId;
    use crate::reject::RejectCode;
    use crate::sign::Keypair;

    const ADMIN: u8 = 1;
    const NOW_MS: u64 = 1_000;

    fn key(seed: u8) -> PublicKey {
        Keypair::from_seed(&[seed; 32]).public_key()
    }

    fn id(name: &str) -> AccountId {
        AccountId::parse(name).unwrap()
    }

    fn genesis() -> Genesis {
        Genesis {
            ledger_id: crate::ids::LedgerId([9; 16]),
            currency: "CHW".into(),
            exponent: 2,
            admin_keys: vec![key(ADMIN)],
            auditor_keys: vec![],
            node_key: key(3),
            quorum: 1,
            day_offset_minutes: 0,
        }
    }

    /// `name`, registered by the administrator with the key of seed `seed`.
    fn register(name: &str, seed: u8, limit: i64, max: Option<i64>) -> (u8, OpKind) {
        let kind = OpKind::RegisterAccount(RegisterAccount {
            account: id(name),
            display_name: name.into(),
            keys: vec![key(seed)],
            credit_limit_minor: limit,
            max_balance_minor: max,
            profile: Default::default(),
            allow_shared_key: false,
        });
        (ADMIN, kind)
    }

    fn pay(signer: u8, payer: &str, payee: &str, amount_minor: i64, invoice: Option<u8>) -> (u8, OpKind) {
        let kind = OpKind::Transfer(Transfer {
            payer: id(payer),
            payee: id(payee),
            amount_minor,
            memo: String::new(),
            invoice_ref: None,
            invoice: invoice.map(|n| InvoiceId([n; 16])),
        });
        (signer, kind)
    }

    fn parties(n: u8, payee: &str, payer: &str) -> InvoiceParties {
        InvoiceParties { invoice: InvoiceId([n; 16]), payee: id(payee), payer: id(payer) }
    }

    fn issue(signer: u8, n: u8, payee: &str, payer: &str, amount_minor: i64) -> (u8, OpKind) {
        let kind = OpKind::IssueInvoice(IssueInvoice {
            invoice: InvoiceId([n; 16]),
            payee: id(payee),
            payer: id(payer),
            amount_minor,
            local_share_percent: 100,
            due_day: None,
            reference: String::new(),
            excluded_from_clearing: false,
        });
        (signer, kind)
    }

    /// Two firms: `aaa` (key 10, credit limit 1,000) and `bbb` (key 11, no credit, at most
    /// 500).
    fn firms() -> Vec<(u8, OpKind)> {
        vec![register("aaa", 10, 1_000, None), register("bbb", 11, 0, Some(500))]
    }

    fn apply(state: &mut State, sequence: u64, (signer, kind): &(u8, OpKind)) -> Result<Effects, Rejection> {
        let op = Operation {
            id: OperationId([sequence as u8; 16]),
            valid_until_ms: NOW_MS + 1,
            kind: kind.clone(),
        };
        state.apply(&Context { sequence, timestamp_ms: NOW_MS }, &key(*signer), &op, ClearingInput::Propose)
    }

    /// Applies `ops`, each of which must be accepted, then `last`: accepted with these
    /// balances after it (of the accounts it changed, in order), or rejected with this code
    /// and the state left exactly as it was.
    fn check(ops: &[(u8, OpKind)], last: (u8, OpKind), expected: Result<&[(&str, i64)], RejectCode>) {
        let mut state = State::new(&genesis());
        for (i, op) in ops.iter().enumerate() {
            if let Err(r) = apply(&mut state, i as u64 + 1, op) {
                panic!("setup operation {} ({}) refused: {r:?}", i + 1, op.1.name());
            }
        }
        let before = state.clone();
        let outcome = apply(&mut state, ops.len() as u64 + 1, &last);
        match (outcome, expected) {
            (Ok(effects), Ok(balances)) => {
                let got: Vec<(&str, i64)> =
                    effects.balance_changes.iter().map(|b| (b.account.as_str(), b.after_minor)).collect();
                assert_eq!(got, balances);
                for (name, balance) in balances {
                    assert_eq!(state.account(&id(name)).unwrap().balance_minor, *balance);
                }
                state.check_invariants().unwrap();
            }
            (Err(r), Err(code)) => {
                assert_eq!(r.code(), code, "{r:?}");
                assert_eq!(state, before, "a rejected operation changed the state");
            }
            (outcome, expected) => panic!("{} gave {outcome:?}, expected {expected:?}", last.1.name()),
        }
    }

    fn set_fees(bp: u16, on: crate::fees::LevyOn) -> (u8, OpKind) {
        let schedule = FeeSchedule {
            account: id("assoc"),
            transfer_levy_bp: bp,
            levy_on: on,
            membership_minor: BTreeMap::new(),
            demurrage_bp: 0,
            demurrage_above_minor: 0,
            group_membership_minor: BTreeMap::new(),
        };
        (ADMIN, OpKind::SetFees(crate::op::SetFees { schedule, reason: "statutes".into() }))
    }

    #[test]
    fn a_levy_is_paid_to_the_association_in_the_transfers_entry() {
        use crate::fees::LevyOn::{Payee, Payer, Split};
        let mut setup = firms();
        setup.push(register("assoc", 12, 0, None));
        let with = |fees: (u8, OpKind)| {
            let mut ops = setup.clone();
            ops.push(fees);
            ops
        };
        // 1% of 3.50: 0.035, rounded half up to 0.04.
        check(
            &with(set_fees(100, Payer)),
            pay(10, "aaa", "bbb", 350, None),
            Ok(&[("aaa", -354), ("bbb", 350), ("assoc", 4)]),
        );
        check(
            &with(set_fees(100, Payee)),
            pay(10, "aaa", "bbb", 350, None),
            Ok(&[("aaa", -350), ("bbb", 346), ("assoc", 4)]),
        );
        check(
            &with(set_fees(100, Split)),
            pay(10, "aaa", "bbb", 350, None),
            Ok(&[("aaa", -352), ("bbb", 348), ("assoc", 4)]),
        );
        // No levy to or from the association, nor one that rounds to nothing.
        check(
            &with(set_fees(100, Payer)),
            pay(10, "aaa", "assoc", 350, None),
            Ok(&[("aaa", -350), ("assoc", 350)]),
        );
        check(&with(set_fees(100, Payer)), pay(10, "aaa", "bbb", 49, None), Ok(&[("aaa", -49), ("bbb", 49)]));
        // The payer's limit binds the amount and the levy: 10.00 at 1% is 10.10 > 10.00.
        // The payee's maximum binds what it keeps: 5.05 less 0.05 reaches its 5.00 exactly.
        check(
            &with(set_fees(100, Payee)),
            pay(10, "aaa", "bbb", 505, None),
            Ok(&[("aaa", -505), ("bbb", 500), ("assoc", 5)]),
        );
        check(
            &with(set_fees(100, Payee)),
            pay(10, "aaa", "bbb", 506, None),
            Err(RejectCode::MaxBalanceExceeded),
        );
        let mut big = with(set_fees(100, Payer));
        big.push(register("ccc", 13, 0, None));
        check(&big, pay(10, "aaa", "ccc", 1_000, None), Err(RejectCode::CreditLimitExceeded));
        check(&big, pay(10, "aaa", "ccc", 990, None), Ok(&[("aaa", -1_000), ("ccc", 990), ("assoc", 10)]));
        // A frozen fee account refuses levied transfers, naming it.
        let mut frozen = with(set_fees(100, Payer));
        frozen.push((ADMIN, OpKind::FreezeAccount { account: id("assoc"), reason: "audit".into() }));
        check(&frozen, pay(10, "aaa", "bbb", 350, None), Err(RejectCode::AccountFrozen));
        // The schedule's own checks.
        check(&setup, set_fees(1_001, Payer), Err(RejectCode::FeesInvalid));
        check(&firms(), set_fees(100, Payer), Err(RejectCode::UnknownAccount));
        check(&with(set_fees(100, Payer)), set_fees(100, Payer), Err(RejectCode::NothingToChange));
    }

    #[test]
    fn the_digest_covers_the_fees_once_there_are_some() {
        let mut state = State::new(&genesis());
        let mut ops = firms();
        ops.push(register("assoc", 12, 0, None));
        for (i, op) in ops.iter().enumerate() {
            apply(&mut state, i as u64 + 1, op).unwrap();
        }
        let before = state.digest();
        state.set_journaling(true);
        apply(&mut state, 10, &set_fees(100, crate::fees::LevyOn::Payer)).unwrap();
        assert_ne!(state.digest(), before);
        state.undo_to(0);
        assert_eq!(state.digest(), before);
        assert_eq!(state.fees(), None);
    }

    #[test]
    fn an_account_remembers_the_keys_rotated_out_of_it_and_forgets_those_put_back() {
        let mut state = State::new(&genesis());
        let rotate = |keys: &[u8]| {
            let keys = keys.iter().map(|&k| key(k)).collect();
            (ADMIN, OpKind::RotateKeys { account: id("aaa"), keys, allow_shared_key: false })
        };
        let mut sequence = 0;
        let mut run = |state: &mut State, op: (u8, OpKind)| {
            sequence += 1;
            apply(state, sequence, &op).unwrap_or_else(|r| panic!("refused: {r:?}"));
        };
        let retired =
            |state: &State| -> Vec<PublicKey> { state.account(&id("aaa")).unwrap().retired_keys.clone() };
        run(&mut state, register("aaa", 10, 1_000, None));
        assert!(retired(&state).is_empty());
        run(&mut state, rotate(&[20, 21]));
        assert_eq!(retired(&state), vec![key(10)]);
        run(&mut state, rotate(&[21, 10]));
        assert_eq!(retired(&state), vec![key(20)], "10 is back on the account");
        // Keys rotated out again move to the end; only the last RETIRED_KEYS_MAX are kept.
        for k in 30..40 {
            run(&mut state, rotate(&[k]));
        }
        let got = retired(&state);
        assert_eq!(got.len(), RETIRED_KEYS_MAX);
        assert_eq!(got.last(), Some(&key(38)));
        assert!(!got.contains(&key(39)), "the current key is not retired");
        // The account's encoding keeps them (the checkpoint), and digest version 3 covers
        // them while version 2 does not.
        let account = state.account(&id("aaa")).unwrap().clone();
        assert_eq!(Account::decode(&account.encode()).unwrap(), account);
        let mut without = account.clone();
        without.retired_keys.clear();
        assert_ne!(account.encode_with(3), without.encode_with(3));
        assert_eq!(account.encode_with(2), without.encode_with(2));
    }

    #[test]
    fn a_transfer_moves_money_up_to_the_limits_and_not_one_unit_further() {
        let ops = firms();
        check(&ops, pay(10, "aaa", "bbb", 300, None), Ok(&[("aaa", -300), ("bbb", 300)]));
        // Exactly to the payee's maximum, and one unit over.
        check(&ops, pay(10, "aaa", "bbb", 500, None), Ok(&[("aaa", -500), ("bbb", 500)]));
        check(&ops, pay(10, "aaa", "bbb", 501, None), Err(RejectCode::MaxBalanceExceeded));
        // Exactly to the payer's credit limit, and one unit over.
        let mut ops = firms();
        ops.push(register("ccc", 12, 0, None));
        check(&ops, pay(10, "aaa", "ccc", 1_000, None), Ok(&[("aaa", -1_000), ("ccc", 1_000)]));
        check(&ops, pay(10, "aaa", "ccc", 1_001, None), Err(RejectCode::CreditLimitExceeded));
        check(&ops, pay(11, "bbb", "ccc", 1, None), Err(RejectCode::CreditLimitExceeded));
    }

    #[test]
    fn a_transfer_is_refused_in_the_documented_order() {
        let ops = firms();
        check(&ops, pay(10, "aaa", "aaa", 1, None), Err(RejectCode::SelfTransfer));
        check(&ops, pay(10, "aaa", "bbb", 0, None), Err(RejectCode::InvalidAmount));
        check(&ops, pay(10, "zzz", "bbb", 1, None), Err(RejectCode::UnknownAccount));
        check(&ops, pay(11, "aaa", "bbb", 1, None), Err(RejectCode::NotAccountKey));
        check(&ops, pay(10, "aaa", "zzz", 1, None), Err(RejectCode::UnknownAccount));
        // An unknown account before a signer that holds no key of it.
        check(&ops, pay(11, "zzz", "bbb", 1, None), Err(RejectCode::UnknownAccount));
        let mut frozen = firms();
        frozen.push((ADMIN, OpKind::FreezeAccount { account: id("bbb"), reason: "dispute".into() }));
        check(&frozen, pay(10, "aaa", "bbb", 1, None), Err(RejectCode::AccountFrozen));
        check(&frozen, pay(10, "aaa", "bbb", 2_000, None), Err(RejectCode::AccountFrozen));
    }

    #[test]
    fn freezing_and_keys() {
        let freeze =
            |name: &str| (ADMIN, OpKind::FreezeAccount { account: id(name), reason: "dispute".into() });
        let unfreeze =
            |name: &str| (ADMIN, OpKind::UnfreezeAccount { account: id(name), reason: String::new() });
        let rotate = |signer: u8, seed: u8| {
            (
                signer,
                OpKind::RotateKeys { account: id("aaa"), keys: vec![key(seed)], allow_shared_key: false },
            )
        };
        let mut frozen = firms();
        frozen.push(freeze("aaa"));
        check(&frozen, freeze("aaa"), Err(RejectCode::AlreadyFrozen));
        check(&firms(), unfreeze("aaa"), Err(RejectCode::NotFrozen));
        check(&frozen, unfreeze("aaa"), Ok(&[]));
        check(
            &firms(),
            (10, OpKind::FreezeAccount { account: id("aaa"), reason: "x".into() }),
            Err(RejectCode::NotAdministrator),
        );
        // A key is replaced on a frozen account, by the administrator or the firm itself,
        // never by another firm; the old key then signs nothing.
        check(&frozen, rotate(ADMIN, 20), Ok(&[]));
        check(&frozen, rotate(10, 20), Ok(&[]));
        check(&frozen, rotate(11, 20), Err(RejectCode::NotAccountKey));
        let mut rotated = firms();
        rotated.push(rotate(10, 20));
        check(&rotated, pay(10, "aaa", "bbb", 1, None), Err(RejectCode::NotAccountKey));
        check(&rotated, pay(20, "aaa", "bbb", 1, None), Ok(&[("aaa", -1), ("bbb", 1)]));
    }

    fn role(signer: u8, role: Role, seed: u8, present: bool) -> (u8, OpKind) {
        (signer, OpKind::SetRole(SetRole { role, key: key(seed), present, reason: "board".into() }))
    }

    fn close(name: &str) -> (u8, OpKind) {
        (
            ADMIN,
            OpKind::CloseAccount { account: id(name), reason: "ceased trading".into(), write_off_to: None },
        )
    }

    #[test]
    fn roles_change_by_administrators_and_never_leave_none() {
        let freeze = |signer: u8| (signer, OpKind::FreezeAccount { account: id("aaa"), reason: "d".into() });
        let mut two = firms();
        two.push(role(ADMIN, Role::Admin, 30, true));
        // The new administrator acts at once; a firm's key never changes a role.
        check(&two, freeze(30), Ok(&[]));
        check(&firms(), role(10, Role::Auditor, 31, true), Err(RejectCode::NotAdministrator));
        check(&firms(), role(ADMIN, Role::Admin, ADMIN, true), Err(RejectCode::RoleAlreadyHeld));
        check(&firms(), role(ADMIN, Role::Auditor, 31, false), Err(RejectCode::RoleNotHeld));
        check(&firms(), role(ADMIN, Role::Admin, ADMIN, false), Err(RejectCode::LastAdministrator));
        // With two, either may remove the other, or itself; the one removed signs no more.
        check(&two, role(30, Role::Admin, ADMIN, false), Ok(&[]));
        check(&two, role(ADMIN, Role::Admin, ADMIN, false), Ok(&[]));
        let mut removed = two.clone();
        removed.push(role(30, Role::Admin, ADMIN, false));
        check(&removed, freeze(ADMIN), Err(RejectCode::NotAdministrator));
        check(&removed, role(30, Role::Admin, 30, false), Err(RejectCode::LastAdministrator));
        let empty_reason = (
            ADMIN,
            OpKind::SetRole(SetRole { role: Role::Auditor, key: key(31), present: true, reason: " ".into() }),
        );
        check(&firms(), empty_reason, Err(RejectCode::InvalidText));
        // At most GOVERNANCE_KEYS_MAX keys per role.
        let mut full = firms();
        full.extend((0..GOVERNANCE_KEYS_MAX as u8).map(|n| role(ADMIN, Role::Auditor, 100 + n, true)));
        check(&full, role(ADMIN, Role::Auditor, 99, true), Err(RejectCode::TooManyRoleKeys));
        check(&full, role(ADMIN, Role::Admin, 99, true), Ok(&[]));
    }

    #[test]
    fn a_closed_account_is_closed_for_good() {
        let mut paid = firms();
        paid.push(pay(10, "aaa", "bbb", 300, None));
        check(&paid, close("aaa"), Err(RejectCode::AccountNotSettled));
        check(&paid, close("bbb"), Err(RejectCode::AccountNotSettled));
        let mut invoiced = firms();
        invoiced.push(issue(11, 1, "bbb", "aaa", 400));
        check(&invoiced, close("aaa"), Err(RejectCode::AccountNotSettled));
        check(&invoiced, close("bbb"), Err(RejectCode::AccountNotSettled));
        check(&firms(), close("zzz"), Err(RejectCode::UnknownAccount));
        check(
            &firms(),
            (10, OpKind::CloseAccount { account: id("aaa"), reason: "x".into(), write_off_to: None }),
            Err(RejectCode::NotAdministrator),
        );
        let mut frozen = firms();
        frozen.push((ADMIN, OpKind::FreezeAccount { account: id("aaa"), reason: "d".into() }));
        check(&frozen, close("aaa"), Ok(&[]));
        let mut closed = firms();
        closed.push(close("aaa"));
        let refused = [
            close("aaa"),
            pay(10, "aaa", "bbb", 1, None),
            pay(11, "bbb", "aaa", 1, None),
            issue(11, 2, "bbb", "aaa", 10),
            issue(10, 2, "aaa", "bbb", 10),
            (ADMIN, OpKind::FreezeAccount { account: id("aaa"), reason: "d".into() }),
            (ADMIN, OpKind::UnfreezeAccount { account: id("aaa"), reason: String::new() }),
            (ADMIN, OpKind::RotateKeys { account: id("aaa"), keys: vec![key(20)], allow_shared_key: false }),
            (10, OpKind::RotateKeys { account: id("aaa"), keys: vec![key(20)], allow_shared_key: false }),
            (
                ADMIN,
                OpKind::SetLimits(SetLimits {
                    account: id("aaa"),
                    credit_limit_minor: Some(5),
                    max_balance_minor: None,
                    reason: "r".into(),
                }),
            ),
            register("aaa", 20, 0, None),
        ];
        for op in refused {
            check(&closed, op, Err(RejectCode::AccountClosed));
        }
        // Its key is free again for a new account, without the flag.
        check(&closed, register("ccc", 10, 0, None), Ok(&[("ccc", 0)]));
    }

    fn add_key(signer: u8, seed: u8, role: KeyRole) -> (u8, OpKind) {
        (signer, OpKind::AddKey(AddKey { account: id("aaa"), key: key(seed), role, allow_shared_key: false }))
    }

    /// `firms`, then `aaa` gets a payer (key 20: 300 a transfer, 500 a day), an invoicer
    /// (21) and a viewer (22).
    fn staffed() -> Vec<(u8, OpKind)> {
        let mut ops = firms();
        ops.push(add_key(10, 20, KeyRole::Payer { per_transfer_cap_minor: 300, daily_cap_minor: 500 }));
        ops.push(add_key(10, 21, KeyRole::Invoicer));
        ops.push(add_key(10, 22, KeyRole::Viewer));
        ops
    }

    #[test]
    fn each_key_signs_what_its_role_allows_and_a_payer_within_its_caps() {
        use RejectCode::*;
        let s = staffed();
        let then = |extra: &[(u8, OpKind)]| [s.clone(), extra.to_vec()].concat();
        check(&s, pay(20, "aaa", "bbb", 300, None), Ok(&[("aaa", -300), ("bbb", 300)]));
        // Above a cap: a pending payment, which moves nothing.
        check(&s, pay(20, "aaa", "bbb", 301, None), Ok(&[]));
        // The day's cap counts what was paid that day: 300 + 200, then not one unit more.
        let paid = then(&[pay(20, "aaa", "bbb", 300, None)]);
        check(&paid, pay(20, "aaa", "bbb", 200, None), Ok(&[("aaa", -500), ("bbb", 500)]));
        check(
            &then(&[pay(20, "aaa", "bbb", 300, None), pay(20, "aaa", "bbb", 200, None)]),
            pay(20, "aaa", "bbb", 1, None),
            Err(MaxBalanceExceeded),
        );
        let paid_more = then(&[
            pay(20, "aaa", "bbb", 300, None),
            pay(20, "aaa", "bbb", 200, None),
            pay(11, "bbb", "aaa", 500, None),
        ]);
        check(&paid_more, pay(20, "aaa", "bbb", 1, None), Ok(&[]));
        // An owner key has no cap; the limits still hold before a cap is looked at.
        check(&paid_more, pay(10, "aaa", "bbb", 1, None), Ok(&[("aaa", -1), ("bbb", 1)]));
        // An invoice's payment above a cap is refused, never held.
        let billed_aaa = [paid_more.clone(), vec![issue(11, 2, "bbb", "aaa", 100)]].concat();
        check(&billed_aaa, pay(20, "aaa", "bbb", 1, Some(2)), Err(KeyCapExceeded));
        check(&s, pay(20, "aaa", "bbb", 1_001, None), Err(CreditLimitExceeded));
        check(&s, pay(20, "aaa", "bbb", 0, None), Err(InvalidAmount));
        for who in [21, 22] {
            check(&s, pay(who, "aaa", "bbb", 1, None), Err(KeyRoleNotAllowed));
        }
        check(&s, pay(11, "aaa", "bbb", 1, None), Err(NotAccountKey));
        // Invoices: the invoicer issues and cancels; only an owner accepts.
        let issue_by = |signer| {
            let (_, kind) = issue(signer, 1, "aaa", "bbb", 100);
            (signer, kind)
        };
        check(&s, issue_by(21), Ok(&[]));
        check(&s, issue_by(10), Ok(&[]));
        for who in [20, 22] {
            check(&s, issue_by(who), Err(KeyRoleNotAllowed));
        }
        let billed = then(&[issue(11, 1, "bbb", "aaa", 100)]);
        let accept = |signer| (signer, OpKind::AcceptInvoice(parties(1, "bbb", "aaa")));
        for who in [20, 21, 22] {
            check(&billed, accept(who), Err(KeyRoleNotAllowed));
        }
        check(&billed, accept(10), Ok(&[]));
        let issued = then(&[issue_by(21)]);
        let cancel = |signer| {
            (signer, OpKind::CancelInvoice { invoice: parties(1, "aaa", "bbb"), reason: String::new() })
        };
        check(&issued, cancel(22), Err(KeyRoleNotAllowed));
        check(&issued, cancel(21), Ok(&[]));
        // Keys: only an owner changes them; the last owner stays.
        check(&s, add_key(20, 23, KeyRole::Viewer), Err(KeyRoleNotAllowed));
        check(&s, add_key(11, 23, KeyRole::Viewer), Err(NotAccountKey));
        check(&s, add_key(ADMIN, 23, KeyRole::Owner), Ok(&[]));
        check(&s, add_key(10, 22, KeyRole::Viewer), Err(KeyAlreadyOnAccount));
        check(&s, add_key(10, 11, KeyRole::Viewer), Err(KeyAlreadyRegistered));
        check(
            &s,
            add_key(10, 23, KeyRole::Payer { per_transfer_cap_minor: 501, daily_cap_minor: 500 }),
            Err(InvalidLimit),
        );
        let remove = |signer, seed| (signer, OpKind::RemoveKey { account: id("aaa"), key: key(seed) });
        check(&s, remove(10, 10), Err(LastOwnerKey));
        check(&s, remove(10, 23), Err(KeyNotOnAccount));
        check(&s, remove(22, 22), Err(KeyRoleNotAllowed));
        check(&s, remove(10, 22), Ok(&[]));
        check(&then(&[add_key(10, 23, KeyRole::Owner)]), remove(23, 10), Ok(&[]));
        let rotate = |signer| {
            (signer, OpKind::RotateKeys { account: id("aaa"), keys: vec![key(30)], allow_shared_key: false })
        };
        check(&s, rotate(22), Err(KeyRoleNotAllowed));
        check(&s, rotate(10), Ok(&[]));
        // At most KEYS_PER_ACCOUNT_MAX keys.
        let full: Vec<_> =
            (0..KEYS_PER_ACCOUNT_MAX as u8 - 4).map(|n| add_key(10, 40 + n, KeyRole::Viewer)).collect();
        check(&then(&full), add_key(10, 60, KeyRole::Viewer), Err(InvalidKeys));
    }

    /// A held payment pays no levy while it waits; its approval pays the levy then in force,
    /// in its own entry; the payer's binding limit (its group's) counts the reservation.
    #[test]
    fn an_approved_payment_pays_the_levy_and_a_group_limit_binds_the_reservation() {
        use crate::fees::LevyOn::Payer;
        let mut ops = staffed();
        ops.extend([register("assoc", 12, 0, None), set_fees(100, Payer)]);
        // 400 is above the payer's cap: held, nothing moves, no levy yet.
        check(&ops, pay(20, "aaa", "bbb", 400, None), Ok(&[]));
        ops.push(pay(20, "aaa", "bbb", 400, None));
        let approve = |amount_minor| {
            (10, OpKind::ApprovePending { account: id("aaa"), pending: 8, payee: id("bbb"), amount_minor })
        };
        check(&ops, approve(400), Ok(&[("aaa", -404), ("bbb", 400), ("assoc", 4)]));
        // In a group whose limit (500) binds, the reservation of 400 leaves 100, levy included.
        ops.extend([create_group("tight", 500, None), assign("aaa", "tight")]);
        check(&ops, pay(10, "aaa", "bbb", 99, None), Ok(&[("aaa", -100), ("bbb", 99), ("assoc", 1)]));
        check(&ops, pay(10, "aaa", "bbb", 100, None), Err(RejectCode::CreditLimitExceeded));
    }

    #[test]
    fn a_pending_payment_reserves_headroom_until_approved_declined_or_expired() {
        use RejectCode::*;
        let mut state = State::new(&genesis());
        let mut sequence = 0;
        let mut at = |state: &mut State, timestamp_ms: u64, (signer, kind): (u8, OpKind)| {
            sequence += 1;
            let op = Operation { id: OperationId([0; 16]), valid_until_ms: timestamp_ms + 1, kind };
            let before = state.clone();
            let ctx = Context { sequence, timestamp_ms };
            let outcome = state.apply(&ctx, &key(signer), &op, ClearingInput::Propose);
            if outcome.is_err() {
                assert_eq!(*state, before, "a refusal changed the state");
                sequence -= 1;
            }
            outcome.map_err(|r| r.code())
        };
        for op in staffed() {
            at(&mut state, NOW_MS, op).unwrap();
        }
        let balance = |state: &State, name: &str| state.account(&id(name)).unwrap().balance_minor;
        let approve_to = |signer, pending, payee: &str, amount_minor| {
            (signer, OpKind::ApprovePending { account: id("aaa"), pending, payee: id(payee), amount_minor })
        };
        let decline = |signer, pending| {
            (signer, OpKind::DeclinePending { account: id("aaa"), pending, reason: "no".into() })
        };
        // 400 is above the payer's cap of 300: pending, with the entry's sequence as its id.
        let first = at(&mut state, NOW_MS, pay(20, "aaa", "bbb", 400, None)).unwrap().pending.unwrap();
        assert_eq!(first, 6);
        assert_eq!(
            (balance(&state, "aaa"), state.account(&id("aaa")).unwrap().reserved_minor(NOW_MS)),
            (0, 400)
        );
        // The reservation counts: 1,000 of credit, 400 reserved, 600 left.
        at(&mut state, NOW_MS, pay(10, "aaa", "bbb", 300, None)).unwrap();
        assert_eq!(at(&mut state, NOW_MS, pay(10, "aaa", "bbb", 301, None)), Err(CreditLimitExceeded));
        // The payee is checked again at approval: 300 + 400 is above bbb's maximum of 500.
        let approve = |signer, pending| approve_to(signer, pending, "bbb", 400);
        assert_eq!(at(&mut state, NOW_MS, approve(10, first)), Err(MaxBalanceExceeded));
        for who in [20, 21, 22] {
            assert_eq!(at(&mut state, NOW_MS, approve(who, first)), Err(KeyRoleNotAllowed));
        }
        assert_eq!(at(&mut state, NOW_MS, approve(11, first)), Err(NotAccountKey));
        assert_eq!(at(&mut state, NOW_MS, approve(10, 99)), Err(PendingUnknown));
        // What the owner signs is the payment recorded, or nothing.
        assert_eq!(at(&mut state, NOW_MS, approve_to(10, first, "bbb", 399)), Err(PendingUnknown));
        assert_eq!(at(&mut state, NOW_MS, approve_to(10, first, "aaa", 400)), Err(PendingUnknown));
        at(&mut state, NOW_MS, pay(11, "bbb", "aaa", 200, None)).unwrap();
        let approved = at(&mut state, NOW_MS, approve(10, first)).unwrap();
        assert_eq!(approved.balance_changes.len(), 2);
        assert_eq!((balance(&state, "aaa"), balance(&state, "bbb")), (-500, 500));
        assert_eq!(at(&mut state, NOW_MS, approve(10, first)), Err(PendingUnknown));
        // A declined one moves nothing and releases its reservation.
        at(&mut state, NOW_MS, pay(11, "bbb", "aaa", 500, None)).unwrap();
        let second = at(&mut state, NOW_MS, pay(20, "aaa", "bbb", 350, None)).unwrap().pending.unwrap();
        assert_eq!(at(&mut state, NOW_MS, close("aaa")), Err(PendingPaymentsOpen));
        at(&mut state, NOW_MS, decline(10, second)).unwrap();
        assert_eq!(state.account(&id("aaa")).unwrap().reserved_minor(NOW_MS), 0);
        // One that expires: released for every check after its expiry, and not approvable.
        at(&mut state, NOW_MS, register("ccc", 12, 0, None)).unwrap();
        let third = at(&mut state, NOW_MS, pay(20, "aaa", "ccc", 1_000, None)).unwrap().pending.unwrap();
        assert_eq!(at(&mut state, NOW_MS, pay(10, "aaa", "ccc", 1, None)), Err(CreditLimitExceeded));
        let expiry = NOW_MS + cercle_limits::PENDING_VALIDITY_MS;
        assert_eq!(at(&mut state, expiry, pay(10, "aaa", "ccc", 1, None)), Err(CreditLimitExceeded));
        at(&mut state, expiry + 1, pay(10, "aaa", "ccc", 1, None)).unwrap();
        assert_eq!(at(&mut state, expiry + 1, approve_to(10, third, "ccc", 1_000)), Err(PendingExpired));
        // Its record is forgotten at the account's next change of its pending payments.
        assert_eq!(state.account(&id("aaa")).unwrap().pending.len(), 1);
        let fourth = at(&mut state, expiry + 1, pay(20, "aaa", "ccc", 301, None)).unwrap().pending.unwrap();
        let a = state.account(&id("aaa")).unwrap().clone();
        assert_eq!(a.pending.iter().map(|p| p.id).collect::<Vec<_>>(), [fourth]);
        assert_eq!(Account::decode(&a.encode()), Ok(a.clone()));
        at(&mut state, expiry + 1, decline(10, fourth)).unwrap();
        // Bounds: at most PENDING_PER_ACCOUNT_MAX waiting on one account.
        let limit = SetLimits {
            account: id("aaa"),
            credit_limit_minor: Some(10_000),
            max_balance_minor: None,
            reason: "more credit".into(),
        };
        at(&mut state, expiry + 2, (ADMIN, OpKind::SetLimits(limit))).unwrap();
        for _ in 0..PENDING_PER_ACCOUNT_MAX {
            at(&mut state, expiry + 2, pay(20, "aaa", "ccc", 301, None)).unwrap();
        }
        assert_eq!(at(&mut state, expiry + 2, pay(20, "aaa", "ccc", 301, None)), Err(TooManyPending));
        state.check_invariants().unwrap();
    }

    #[test]
    fn key_grants_and_a_payers_day_survive_the_record_and_a_rotation_clears_them() {
        let mut state = State::new(&genesis());
        for (n, op) in staffed().iter().chain([pay(20, "aaa", "bbb", 120, None)].iter()).enumerate() {
            apply(&mut state, n as u64 + 1, op).unwrap();
        }
        let a = state.account(&id("aaa")).unwrap().clone();
        assert_eq!(a.owner_count(), 1);
        assert_eq!(a.role_of(&key(22)), Some(KeyRole::Viewer));
        assert_eq!(a.role_of(&key(10)), Some(KeyRole::Owner));
        assert_eq!(a.role_of(&key(11)), None);
        let grant = a.key_grants[&key(20)];
        assert_eq!((grant.day, grant.spent_minor), (0, 120));
        assert_eq!(Account::decode(&a.encode()), Ok(a.clone()));
        // Without grants the record keeps the bytes it had before roles existed.
        let mut plain = a.clone();
        plain.key_grants.clear();
        assert!(plain.encode().len() < a.encode().len());
        apply(
            &mut state,
            10,
            &(
                10,
                OpKind::RotateKeys {
                    account: id("aaa"),
                    keys: vec![key(10), key(22)],
                    allow_shared_key: false,
                },
            ),
        )
        .unwrap();
        let a = state.account(&id("aaa")).unwrap();
        assert!(a.key_grants.is_empty());
        assert_eq!(a.role_of(&key(22)), Some(KeyRole::Owner));
    }

    #[test]
    fn a_key_on_another_account_needs_the_flag() {
        let shared = |allow| {
            let (signer, mut kind) = register("ccc", 10, 0, None);
            if let OpKind::RegisterAccount(r) = &mut kind {
                r.allow_shared_key = allow;
            }
            (signer, kind)
        };
        check(&firms(), shared(false), Err(RejectCode::KeyAlreadyRegistered));
        check(&firms(), shared(true), Ok(&[("ccc", 0)]));
        let rotate = |signer, allow_shared_key| {
            (
                signer,
                OpKind::RotateKeys { account: id("aaa"), keys: vec![key(10), key(11)], allow_shared_key },
            )
        };
        check(&firms(), rotate(10, false), Err(RejectCode::KeyAlreadyRegistered));
        check(&firms(), rotate(10, true), Ok(&[]));
        // Its own keys are not shared with anyone.
        let own = (
            10,
            OpKind::RotateKeys { account: id("aaa"), keys: vec![key(10), key(20)], allow_shared_key: false },
        );
        check(&firms(), own, Ok(&[]));
        // The administrator learns which account holds the key; a firm does not.
        let mut state = State::new(&genesis());
        for (i, op) in firms().iter().enumerate() {
            apply(&mut state, i as u64 + 1, op).unwrap();
        }
        let by_admin = apply(&mut state, 3, &shared(false)).unwrap_err();
        assert_eq!(by_admin, Rejection::KeyAlreadyRegistered { key: key(10), account: Some(id("aaa")) });
        let by_firm = apply(
            &mut state,
            3,
            &(11, OpKind::RotateKeys { account: id("bbb"), keys: vec![key(10)], allow_shared_key: false }),
        )
        .unwrap_err();
        assert_eq!(by_firm, Rejection::KeyAlreadyRegistered { key: key(10), account: None });
        assert!(!by_firm.message("CHW", 2).contains("aaa"), "{}", by_firm.message("CHW", 2));
    }

    fn group(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    fn create_group(name: &str, limit: i64, max: Option<i64>) -> (u8, OpKind) {
        let g = GroupLimits {
            group: group(name),
            credit_limit_minor: limit,
            max_balance_minor: max,
            reason: "statutes".into(),
        };
        (ADMIN, OpKind::CreateGroup(g))
    }

    fn set_group(name: &str, limit: Option<i64>, max: Option<Option<i64>>) -> (u8, OpKind) {
        let g = SetGroupLimits {
            group: group(name),
            credit_limit_minor: limit,
            max_balance_minor: max,
            reason: "board".into(),
        };
        (ADMIN, OpKind::SetGroupLimits(g))
    }

    fn assign(account: &str, name: &str) -> (u8, OpKind) {
        (ADMIN, OpKind::AssignGroup { account: id(account), group: group(name), reason: "size".into() })
    }

    fn follow(account: &str, credit: bool, max: bool) -> (u8, OpKind) {
        (ADMIN, OpKind::FollowGroupLimits { account: id(account), credit, max, reason: "back".into() })
    }

    fn own_limit(account: &str, limit: i64) -> (u8, OpKind) {
        let s = SetLimits {
            account: id(account),
            credit_limit_minor: Some(limit),
            max_balance_minor: None,
            reason: "r".into(),
        };
        (ADMIN, OpKind::SetLimits(s))
    }

    /// `firms()`, a group `small` (credit 2,000, at most 3,000) and `ccc` (key 12, own
    /// limit 0); `aaa` and `ccc` in the group.
    fn grouped() -> Vec<(u8, OpKind)> {
        let mut ops = firms();
        ops.extend([
            register("ccc", 12, 0, None),
            create_group("small", 2_000, Some(3_000)),
            assign("aaa", "small"),
            assign("ccc", "small"),
        ]);
        ops
    }

    /// A write-off's reserve is held to the limit that binds it: its group's, not its own.
    #[test]
    fn a_write_off_reserve_follows_its_group_limit() {
        let write_off = |account: &str, reserve: &str| {
            let kind = OpKind::CloseAccount {
                account: id(account),
                reason: "left".into(),
                write_off_to: Some(id(reserve)),
            };
            (ADMIN, kind)
        };
        for (debt, expected) in
            [(2_000, Ok(&[("ddd", 0), ("ccc", -2_000)][..])), (2_001, Err(RejectCode::CreditLimitExceeded))]
        {
            let mut ops = grouped();
            ops.extend([
                register("ddd", 13, 5_000, None),
                pay(13, "ddd", "bbb", 1, None),
                pay(13, "ddd", "aaa", debt - 1, None),
            ]);
            // ccc's own limit is 0; its group's, 2,000, takes the debt, to the unit.
            check(&ops, write_off("ddd", "ccc"), expected);
        }
    }

    #[test]
    fn members_follow_their_groups_limits_until_they_have_their_own() {
        let ops = grouped();
        // aaa's own limit is 1,000; its group's, 2,000, binds: to the edge and one unit past.
        check(&ops, pay(10, "aaa", "bbb", 500, None), Ok(&[("aaa", -500), ("bbb", 500)]));
        check(&ops, pay(10, "aaa", "ccc", 2_000, None), Ok(&[("aaa", -2_000), ("ccc", 2_000)]));
        check(&ops, pay(10, "aaa", "ccc", 2_001, None), Err(RejectCode::CreditLimitExceeded));
        // The group's maximum binds ccc: 3,000, not one unit more.
        let mut more = ops.clone();
        more.push(register("ddd", 13, 5_000, None));
        check(&more, pay(13, "ddd", "ccc", 3_000, None), Ok(&[("ddd", -3_000), ("ccc", 3_000)]));
        check(&more, pay(13, "ddd", "ccc", 3_001, None), Err(RejectCode::MaxBalanceExceeded));
        // A change of the group binds every member at once, with no entry per member.
        let mut lowered = ops.clone();
        lowered.push(set_group("small", Some(100), Some(None)));
        check(&lowered, pay(10, "aaa", "ccc", 101, None), Err(RejectCode::CreditLimitExceeded));
        check(&lowered, pay(12, "ccc", "aaa", 100, None), Ok(&[("ccc", -100), ("aaa", 100)]));
        lowered.push(register("ddd", 13, 5_000, None));
        check(&lowered, pay(13, "ddd", "ccc", 4_000, None), Ok(&[("ddd", -4_000), ("ccc", 4_000)]));
        // An own limit overrides the group's; following the group again drops it.
        let mut own = ops.clone();
        own.push(own_limit("aaa", 50));
        check(&own, pay(10, "aaa", "ccc", 51, None), Err(RejectCode::CreditLimitExceeded));
        own.push(set_group("small", Some(10_000), None));
        check(&own, pay(10, "aaa", "ccc", 51, None), Err(RejectCode::CreditLimitExceeded));
        own.push(follow("aaa", true, false));
        check(&own, pay(10, "aaa", "bbb", 500, None), Ok(&[("aaa", -500), ("bbb", 500)]));
        // Lowering the group below a member's debt is allowed, as set-limits is: the debt
        // stays, the next payment is refused.
        let mut indebted = ops.clone();
        indebted.push(pay(10, "aaa", "ccc", 1_500, None));
        check(&indebted, set_group("small", Some(1_000), None), Ok(&[]));
        indebted.push(set_group("small", Some(1_000), None));
        check(&indebted, pay(10, "aaa", "bbb", 1, None), Err(RejectCode::CreditLimitExceeded));
    }

    #[test]
    fn group_operations_are_refused_with_their_own_numbers() {
        let ops = grouped();
        check(&ops, create_group("small", 1, None), Err(RejectCode::GroupExists));
        check(&ops, set_group("large", Some(1), None), Err(RejectCode::UnknownGroup));
        check(&ops, assign("bbb", "large"), Err(RejectCode::UnknownGroup));
        check(&ops, assign("zzz", "small"), Err(RejectCode::UnknownAccount));
        check(&ops, assign("aaa", "small"), Err(RejectCode::NothingToChange));
        check(&ops, follow("bbb", true, true), Err(RejectCode::NotInGroup));
        check(&ops, follow("aaa", true, true), Err(RejectCode::NothingToChange));
        check(&ops, follow("aaa", false, false), Err(RejectCode::NothingToChange));
        check(&ops, set_group("small", None, None), Err(RejectCode::NothingToChange));
        check(&ops, create_group("large", -1, None), Err(RejectCode::InvalidLimit));
        check(&ops, set_group("small", None, Some(Some(-5))), Err(RejectCode::InvalidLimit));
        let (_, by_firm) = create_group("large", 1, None);
        check(&ops, (10, by_firm), Err(RejectCode::NotAdministrator));
        let blank = GroupLimits {
            group: group("large"),
            credit_limit_minor: 1,
            max_balance_minor: None,
            reason: " ".into(),
        };
        check(&ops, (ADMIN, OpKind::CreateGroup(blank)), Err(RejectCode::InvalidText));
        // An override, then assigning again makes the account follow the group again.
        let mut own = ops.clone();
        own.push(own_limit("aaa", 5));
        check(&own, assign("aaa", "small"), Ok(&[]));
        // A closed account joins no group.
        let mut closed = firms();
        closed.extend([create_group("small", 1, None), close("bbb")]);
        check(&closed, assign("bbb", "small"), Err(RejectCode::AccountClosed));
        // At most GROUPS_MAX groups.
        let mut full = firms();
        full.extend((0..GROUPS_MAX).map(|n| create_group(&format!("g{n:03}"), 1, None)));
        check(&full, create_group("one-more", 1, None), Err(RejectCode::TooManyGroups));
    }

    /// A group's default above the quorum's threshold is a large limit for each member: it
    /// needs the quorum to be set, and so does joining the group or following it again.
    #[test]
    fn a_large_group_limit_needs_the_quorum() {
        let mut ops = grouped();
        ops.extend([
            role(ADMIN, Role::Admin, 30, true),
            (
                ADMIN,
                OpKind::SetQuorum(SetQuorum {
                    quorum: 2,
                    limit_above_minor: Some(5_000),
                    reason: "statutes".into(),
                }),
            ),
        ]);
        check(&ops, create_group("large", 5_001, None), Err(RejectCode::QuorumNotMet));
        check(&ops, create_group("large", 5_000, None), Ok(&[]));
        check(&ops, set_group("small", Some(5_001), None), Err(RejectCode::QuorumNotMet));
        check(&ops, set_group("small", Some(4_000), None), Ok(&[]));
        check(&ops, set_group("small", None, Some(Some(900_000))), Ok(&[]));
        // Set with the quorum (before it was raised), the group's large default then binds
        // whoever joins it, or follows it again, only with the quorum too.
        let mut large = grouped();
        large.extend([
            create_group("large", 9_000, None),
            own_limit("aaa", 10),
            role(ADMIN, Role::Admin, 30, true),
            (
                ADMIN,
                OpKind::SetQuorum(SetQuorum {
                    quorum: 2,
                    limit_above_minor: Some(5_000),
                    reason: "statutes".into(),
                }),
            ),
        ]);
        check(&large, assign("bbb", "large"), Err(RejectCode::QuorumNotMet));
        check(&large, assign("bbb", "small"), Ok(&[]));
        check(&large, assign("bbb", "never"), Err(RejectCode::UnknownGroup));
        large.push(set_group("small", Some(5_000), None));
        check(&large, follow("aaa", true, false), Ok(&[]));
    }

    /// The fee schedule moves every firm's money: under a quorum of two, one administrator
    /// alone cannot set it.
    #[test]
    fn the_fee_schedule_needs_the_quorum() {
        use crate::fees::LevyOn::Payer;
        let mut ops = firms();
        ops.push(register("assoc", 12, 0, None));
        check(&ops, set_fees(100, Payer), Ok(&[]));
        ops.extend([
            role(ADMIN, Role::Admin, 30, true),
            (
                ADMIN,
                OpKind::SetQuorum(SetQuorum {
                    quorum: 2,
                    limit_above_minor: None,
                    reason: "statutes".into(),
                }),
            ),
        ]);
        check(&ops, set_fees(100, Payer), Err(RejectCode::QuorumNotMet));
    }

    #[test]
    fn groups_are_in_the_digest_once_there_is_one_and_are_undone() {
        let mut state = State::new(&genesis());
        for (i, op) in firms().iter().enumerate() {
            apply(&mut state, i as u64 + 1, op).unwrap();
        }
        let account = state.account(&id("aaa")).unwrap().clone();
        assert_eq!(Account::decode(&account.encode()).unwrap(), account);
        state.set_journaling(true);
        let (before, mark) = (state.clone(), state.journal_len());
        let more =
            [create_group("small", 2_000, None), assign("aaa", "small"), set_group("small", Some(5), None)];
        for (i, op) in more.iter().enumerate() {
            let digest = state.digest();
            apply(&mut state, 10 + i as u64, op).unwrap();
            assert_ne!(state.digest(), digest, "{} changed the digest", op.1.name());
        }
        let member = state.account(&id("aaa")).unwrap().clone();
        assert_eq!(Account::decode(&member.encode()).unwrap(), member);
        assert_eq!(state.limits(&member).credit_limit_minor, 5);
        assert_eq!(Groups::decode(&state.groups().encode()).unwrap(), *state.groups());
        // Rebuilt from its records (the checkpoint), the state is the same.
        let rebuilt =
            State::from_parts(&genesis(), state.accounts().cloned(), []).with_groups(state.groups().clone());
        assert_eq!(rebuilt.digest(), state.digest());
        state.undo_to(mark);
        assert_eq!(state.digest(), before.digest());
        assert_eq!(state.groups, before.groups);
        assert_eq!(state.accounts, before.accounts);
    }

    /// `staffed` with `aaa` holding a pending payment of 400 (its payer key above its cap),
    /// both firms of size class 1-9, and the association's account `assoc` (at most `max`)
    /// charging `fee` a month to that class.
    fn charging(fee: i64, max: Option<i64>) -> Vec<(u8, OpKind)> {
        let class = |name: &str| {
            let profile =
                crate::profile::ProfileChange { size_class: Some(Some("1-9".into())), ..Default::default() };
            let p = SetProfile { account: id(name), display_name: None, profile, reason: "staff".into() };
            (ADMIN, OpKind::SetProfile(p))
        };
        let mut ops = staffed();
        ops.extend([
            pay(20, "aaa", "bbb", 400, None),
            class("aaa"),
            class("bbb"),
            register("assoc", 12, 0, max),
        ]);
        let (admin, OpKind::SetFees(mut fees)) = set_fees(0, crate::fees::LevyOn::Payer) else {
            unreachable!()
        };
        fees.schedule.membership_minor.insert("1-9".into(), fee);
        ops.push((admin, OpKind::SetFees(fees)));
        ops
    }

    fn charge(period: &str) -> (u8, OpKind) {
        (ADMIN, OpKind::ChargeFees { period: Period::parse(period).unwrap() })
    }

    #[test]
    fn a_charge_keeps_to_the_reservations_and_the_fee_accounts_maximum_to_the_unit() {
        use RejectCode::*;
        // aaa: 1,000 of credit, 400 reserved: 600 is exactly its headroom; bbb has none.
        check(&charging(600, None), charge("1970-01"), Ok(&[("aaa", -600), ("assoc", 600)]));
        check(&charging(601, None), charge("1970-01"), Ok(&[]));
        check(&charging(600, Some(600)), charge("1970-01"), Ok(&[("aaa", -600), ("assoc", 600)]));
        check(&charging(600, Some(599)), charge("1970-01"), Ok(&[]));
        // A frozen firm pays its dues; a frozen association's account receives none.
        let freeze =
            |name: &str| (ADMIN, OpKind::FreezeAccount { account: id(name), reason: "dispute".into() });
        let frozen = [charging(600, None), vec![freeze("aaa")]].concat();
        check(&frozen, charge("1970-01"), Ok(&[("aaa", -600), ("assoc", 600)]));
        let frozen = [charging(600, None), vec![freeze("assoc")]].concat();
        check(&frozen, charge("1970-01"), Err(AccountFrozen));
        check(&charging(600, None), charge("1970-02"), Err(PeriodNotBegun));
        check(&firms(), charge("1970-01"), Err(NoFeeSchedule));
        let twice = [charging(600, None), vec![charge("1970-01")]].concat();
        check(&twice, charge("1970-01"), Err(PeriodAlreadyCharged));
        // At its bound (tightened here), a charge listing one firm more is refused.
        let mut state = State::new(&genesis());
        for (i, op) in charging(600, None).iter().enumerate() {
            apply(&mut state, i as u64 + 1, op).unwrap();
        }
        let tight = |max| Bounds { charge_firms_max: max, ..Bounds::default() };
        let mut at_two = state.clone().with_bounds(tight(2));
        apply(&mut at_two, 100, &charge("1970-01")).unwrap();
        let mut at_one = state.clone().with_bounds(tight(1));
        let refused = apply(&mut at_one, 100, &charge("1970-01")).unwrap_err();
        assert_eq!(refused, Rejection::TooManyCharges { accounts: 3, max: 1 });
        assert_eq!(at_one, state.with_bounds(tight(1)), "a refusal changed nothing");

        // What was not charged is in the record, with its reason.
        let mut state = State::new(&genesis());
        for (i, op) in charging(601, Some(599)).iter().enumerate() {
            apply(&mut state, i as u64 + 1, op).unwrap();
        }
        state.set_journaling(true);
        let (before, mark) = (state.clone(), state.journal_len());
        let effects = apply(&mut state, 100, &charge("1970-01")).unwrap();
        let record = effects.charges.unwrap();
        let outcomes: Vec<(&str, Option<NotCharged>)> =
            record.firms.iter().map(|f| (f.account.as_str(), f.not_charged)).collect();
        assert_eq!(
            outcomes,
            [
                (
                    "aaa",
                    Some(NotCharged::CreditLimit { balance_after_minor: -1_001, credit_limit_minor: 1_000 })
                ),
                ("bbb", Some(NotCharged::CreditLimit { balance_after_minor: -601, credit_limit_minor: 0 })),
            ]
        );
        assert!(effects.balance_changes.is_empty());
        assert_eq!(
            state.last_charge().map(|l| (l.period.to_string(), l.sequence)),
            Some(("1970-01".into(), 100))
        );
        assert_ne!(state.digest(), before.digest(), "the last charge is in the digest");
        state.undo_to(mark);
        assert_eq!(state, before);
        assert_eq!(state.digest(), before.digest());
    }

    #[test]
    fn the_digest_covers_the_roles_from_version_3() {
        let mut state = State::new(&genesis());
        let before = (state.digest(), state.digest_v2(), state.digest_v1());
        apply(&mut state, 1, &role(ADMIN, Role::Auditor, 31, true)).unwrap();
        assert_ne!(state.digest(), before.0);
        assert_eq!((state.digest_v2(), state.digest_v1()), (before.1, before.2));
    }

    #[test]
    fn an_invoice_moves_through_its_states_once() {
        let mut issued = firms();
        issued.push(issue(11, 1, "bbb", "aaa", 400));
        let accept = |signer| (signer, OpKind::AcceptInvoice(parties(1, "bbb", "aaa")));
        let reject = |signer| {
            (signer, OpKind::RejectInvoice { invoice: parties(1, "bbb", "aaa"), reason: "no".into() })
        };
        let cancel = |signer| {
            (signer, OpKind::CancelInvoice { invoice: parties(1, "bbb", "aaa"), reason: String::new() })
        };
        check(&issued, accept(10), Ok(&[]));
        check(&issued, accept(11), Err(RejectCode::NotAccountKey));
        check(&issued, accept(12), Err(RejectCode::UnknownInvoice));
        check(
            &issued,
            (10, OpKind::AcceptInvoice(parties(1, "aaa", "bbb"))),
            Err(RejectCode::InvoicePartiesMismatch),
        );
        check(&issued, reject(10), Ok(&[]));
        check(&issued, cancel(11), Ok(&[]));
        check(&issued, cancel(10), Err(RejectCode::NotAccountKey));
        check(&issued, issue(11, 1, "bbb", "aaa", 1), Err(RejectCode::InvoiceExists));
        let mut accepted = issued.clone();
        accepted.push(accept(10));
        check(&accepted, accept(10), Err(RejectCode::InvoiceStateConflict));
        check(&accepted, reject(10), Err(RejectCode::InvoiceStateConflict));
        // Paying: in part, then the rest; not more than is open; not once settled.
        let mut part_paid = accepted.clone();
        part_paid.push(pay(10, "aaa", "bbb", 100, Some(1)));
        check(&part_paid, cancel(11), Err(RejectCode::InvoiceStateConflict));
        check(&part_paid, pay(10, "aaa", "bbb", 301, Some(1)), Err(RejectCode::InvoiceOverpaid));
        check(&part_paid, pay(10, "aaa", "bbb", 300, Some(1)), Ok(&[("aaa", -400), ("bbb", 400)]));
        let mut settled = part_paid.clone();
        settled.push(pay(10, "aaa", "bbb", 300, Some(1)));
        check(&settled, pay(10, "aaa", "bbb", 1, Some(1)), Err(RejectCode::InvoiceStateConflict));
        let exclude =
            |excluded| (10, OpKind::SetInvoiceClearing { invoice: parties(1, "bbb", "aaa"), excluded });
        check(&accepted, exclude(false), Err(RejectCode::NothingToChange));
        check(&accepted, exclude(true), Ok(&[]));
        check(&settled, exclude(true), Err(RejectCode::InvoiceStateConflict));
    }

    #[test]
    fn undo_takes_the_state_back_to_its_mark() {
        let mut state = State::new(&genesis());
        let mut ops = firms();
        ops.push(issue(11, 1, "bbb", "aaa", 400));
        for (i, op) in ops.iter().enumerate() {
            apply(&mut state, i as u64 + 1, op).unwrap();
        }
        state.set_journaling(true);
        let (before, mark) = (state.clone(), state.journal_len());
        let more = [
            (10, OpKind::AcceptInvoice(parties(1, "bbb", "aaa"))),
            pay(10, "aaa", "bbb", 150, Some(1)),
            register("ccc", 12, 5, None),
            (ADMIN, OpKind::FreezeAccount { account: id("bbb"), reason: "dispute".into() }),
            register("ddd", 13, 0, None),
            close("ddd"),
            (ADMIN, OpKind::RotateNodeKey { new_pubkey: key(40), reason: "yearly rotation".into() }),
            role(ADMIN, Role::Admin, 30, true),
            role(30, Role::Admin, ADMIN, false),
        ];
        for (i, op) in more.iter().enumerate() {
            apply(&mut state, ops.len() as u64 + i as u64 + 1, op).unwrap();
        }
        assert_ne!(state.digest(), before.digest());
        state.undo_to(mark);
        assert_eq!(state.digest(), before.digest());
        assert_eq!(state.open_invoices().count(), before.open_invoices().count());
        assert_eq!(state.accounts, before.accounts);
        assert_eq!(state.invoices, before.invoices);
        assert_eq!(state.open_invoices, before.open_invoices);
        assert_eq!(state.roles, before.roles);
        assert_eq!(state.node_keys, before.node_keys);
        assert!(!state.node_keys.is_rotated());
    }

    #[test]
    fn a_record_on_another_operation_is_refused_before_anything_else() {
        let record =
            ClearingRecord { with_credit: false, firms: vec![], circuit_potential: 0, invoices: vec![] };
        let mut state = State::new(&genesis());
        let (signer, kind) = pay(10, "aaa", "bbb", 1, None);
        let op = Operation { id: OperationId([1; 16]), valid_until_ms: 0, kind };
        let ctx = Context { sequence: 1, timestamp_ms: NOW_MS };
        let refused =
            state.apply(&ctx, &key(signer), &op, ClearingInput::Recorded(Some(&record))).unwrap_err();
        assert_eq!(
            refused,
            Rejection::ClearingInvalid { defect: Box::new(ClearingDefect::RecordOnOtherOperation) }
        );
    }
}
