//! Operation bodies: the bytes a signer signs, and the one place they become operations.
//!
//! A body is the protobuf encoding of `OperationBody` (`proto/cercle/v1/operation.proto`),
//! so any protobuf library can produce one (the browser app, other wallets). The core
//! keeps the generated types (`cercle_schema`) behind this module: nothing outside it sees
//! them, and everything that reads a logged entry (the node's start-up, the auditor, the
//! wallet) decodes its body here. Decoding checks the shape (lengths of ids and keys,
//! handle syntax, a kind is present); the rules on values are the state machine's.

use prost::Message;

use crate::charges::Period;
use crate::fees::{FeeSchedule, LevyOn};
use crate::groups::{GroupName, InvalidGroupName};
use crate::ids::{AccountId, InvalidHandle, OperationId, PublicKey};
use crate::invoice::InvoiceId;
use crate::limitrule::LimitRule;
use crate::op::{
    AddKey, ApplyLimitRule, GroupLimits, InvoiceParties, IssueInvoice, KeyRole, OpKind, Operation,
    RegisterAccount, Role, RunClearing, SetFees, SetGroupLimits, SetLimits, SetProfile, SetQuorum, SetRole,
    Transfer,
};
use crate::profile::{Field, Profile, ProfileChange};
use crate::reject::Rejection;
use cercle_limits::{BODY_BYTES_MAX, WIRE_KEYS_MAX};
use cercle_schema as pb;

/// Why a body is not an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the operation body is {bytes} bytes, the maximum is {BODY_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("the operation body is not a valid OperationBody: {0}")]
    NotProtobuf(String),
    #[error("the operation has no kind")]
    NoKind,
    #[error("{field} must be {expected} bytes, got {got}")]
    Length { field: &'static str, expected: usize, got: usize },
    #[error(transparent)]
    Handle(#[from] InvalidHandle),
    #[error(transparent)]
    Group(#[from] InvalidGroupName),
    #[error("the operation does not name its invoice")]
    NoInvoice,
    #[error("{count} keys is far too many")]
    TooManyKeys { count: usize },
    #[error("local share is {0}%, it must be 1 to 100")]
    LocalShare(u32),
    #[error("role {0} is not a governance role: give administrator (1) or auditor (2)")]
    Role(i32),
    #[error("levy_on {0} is not payer (1), payee (2) or split (3)")]
    LevyOn(i32),
    #[error("{count} membership fees is far too many")]
    TooManyMembershipFees { count: usize },
    #[error("size class '{0}' has two membership fees")]
    DuplicateMembershipFee(String),
    #[error("group '{0}' has two membership fees")]
    DuplicateGroupFee(String),
    #[error("{0}")]
    Period(String),
    #[error("role {0} is not a key role: give owner (1), payer (2), invoicer (3) or viewer (4)")]
    KeyRole(i32),
    #[error("a payer key needs both caps (per transfer and daily), and another role neither")]
    KeyCaps,
}

/// How the ledger refuses an operation whose body does not decode.
impl From<BodyError> for Rejection {
    fn from(e: BodyError) -> Rejection {
        match e {
            BodyError::TooLarge { bytes } => Rejection::BodyTooLarge { bytes },
            BodyError::TooManyKeys { .. } => Rejection::InvalidKeys { detail: e.to_string() },
            BodyError::LocalShare(_) => Rejection::InvalidInvoice { detail: e.to_string() },
            _ => Rejection::Malformed { detail: e.to_string() },
        }
    }
}

/// Decodes a body (the bytes inside an envelope) into an operation, checking its shape.
pub fn decode(body: &[u8]) -> Result<Operation, BodyError> {
    if body.len() > BODY_BYTES_MAX {
        return Err(BodyError::TooLarge { bytes: body.len() });
    }
    let wire = pb::OperationBody::decode(body).map_err(|e| BodyError::NotProtobuf(e.to_string()))?;
    from_wire(wire)
}

/// The operation id and validity of a body, read from its first two fields when they are
/// in the form prost and every protobuf encoder write them (field 1, 16 bytes; field 2, a
/// varint), else by decoding the whole body. `None` when the body does not decode.
pub fn decode_identity(body: &[u8]) -> Option<(OperationId, u64)> {
    if body.len() > 19 && body[0] == 0x0a && body[1] == 16 && body[18] == 0x10 {
        let mut id = [0u8; 16];
        id.copy_from_slice(&body[2..18]);
        let mut value = 0u64;
        for (i, byte) in body[19..].iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((OperationId(id), value));
            }
        }
    }
    decode(body).ok().map(|op| (op.id, op.valid_until_ms))
}

/// Encodes an operation into the body bytes a client signs.
pub fn encode(op: &Operation) -> Vec<u8> {
    to_wire(op).encode_to_vec()
}

fn fixed<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], BodyError> {
    bytes.try_into().map_err(|_| BodyError::Length { field, expected: N, got: bytes.len() })
}

fn account(text: &str) -> Result<AccountId, BodyError> {
    Ok(AccountId::parse(text)?)
}

fn invoice_id(bytes: &[u8]) -> Result<InvoiceId, BodyError> {
    Ok(InvoiceId(fixed(bytes, "invoice_id")?))
}

fn public_keys(list: &[Vec<u8>]) -> Result<Vec<PublicKey>, BodyError> {
    if list.len() > WIRE_KEYS_MAX {
        return Err(BodyError::TooManyKeys { count: list.len() });
    }
    list.iter().map(|k| Ok(PublicKey(fixed(k, "a public key")?))).collect()
}

fn parties(p: Option<pb::InvoiceParties>) -> Result<InvoiceParties, BodyError> {
    let p = p.ok_or(BodyError::NoInvoice)?;
    Ok(InvoiceParties {
        invoice: invoice_id(&p.invoice_id)?,
        payee: account(&p.payee)?,
        payer: account(&p.payer)?,
    })
}

fn parties_to_wire(p: &InvoiceParties) -> Option<pb::InvoiceParties> {
    Some(pb::InvoiceParties {
        invoice_id: p.invoice.0.to_vec(),
        payee: p.payee.to_string(),
        payer: p.payer.to_string(),
    })
}

fn profile_fields(p: &pb::FirmProfile) -> [(Field, &Option<String>); 5] {
    [
        (Field::Sector, &p.sector),
        (Field::Commune, &p.commune),
        (Field::Postcode, &p.postcode),
        (Field::Territory, &p.territory),
        (Field::SizeClass, &p.size_class),
    ]
}

/// A registration's profile: each field present is the value (checked by the state machine).
fn profile(p: Option<pb::FirmProfile>) -> Profile {
    let mut profile = Profile::default();
    if let Some(p) = p {
        for (field, value) in profile_fields(&p) {
            *profile.slot(field) = value.clone();
        }
    }
    profile
}

/// A profile change: absent keeps a field, an empty string removes it, a value sets it.
fn profile_change(p: Option<pb::FirmProfile>) -> ProfileChange {
    let mut change = ProfileChange::default();
    if let Some(p) = p {
        for (field, value) in profile_fields(&p) {
            *change.slot(field) = value.as_ref().map(|v| (!v.is_empty()).then(|| v.clone()));
        }
    }
    change
}

fn profile_to_wire(p: &Profile) -> Option<pb::FirmProfile> {
    (!p.is_empty()).then(|| {
        let get = |f| p.get(f).map(str::to_string);
        pb::FirmProfile {
            sector: get(Field::Sector),
            commune: get(Field::Commune),
            postcode: get(Field::Postcode),
            territory: get(Field::Territory),
            size_class: get(Field::SizeClass),
        }
    })
}

fn profile_change_to_wire(c: &ProfileChange) -> Option<pb::FirmProfile> {
    let get = |f| c.get(f).map(|v| v.unwrap_or_default().to_string());
    Some(pb::FirmProfile {
        sector: get(Field::Sector),
        commune: get(Field::Commune),
        postcode: get(Field::Postcode),
        territory: get(Field::Territory),
        size_class: get(Field::SizeClass),
    })
}

fn from_wire(b: pb::OperationBody) -> Result<Operation, BodyError> {
    let id: [u8; 16] = fixed(&b.operation_id, "operation_id")?;
    use pb::operation_body::Kind;
    let kind = match b.kind.ok_or(BodyError::NoKind)? {
        Kind::RegisterAccount(r) => OpKind::RegisterAccount(RegisterAccount {
            account: account(&r.account)?,
            display_name: r.display_name,
            keys: public_keys(&r.public_keys)?,
            credit_limit_minor: r.credit_limit_minor,
            max_balance_minor: r.max_balance_minor,
            profile: profile(r.profile),
            allow_shared_key: r.allow_shared_key,
        }),
        Kind::SetProfile(p) => OpKind::SetProfile(SetProfile {
            account: account(&p.account)?,
            display_name: p.display_name,
            profile: profile_change(p.profile),
            reason: p.reason,
        }),
        Kind::SetLimits(s) => OpKind::SetLimits(SetLimits {
            account: account(&s.account)?,
            credit_limit_minor: s.credit_limit_minor,
            max_balance_minor: s.max_balance.map(|m| m.max_balance_minor),
            reason: s.reason,
        }),
        Kind::FreezeAccount(f) => OpKind::FreezeAccount { account: account(&f.account)?, reason: f.reason },
        Kind::UnfreezeAccount(u) => {
            OpKind::UnfreezeAccount { account: account(&u.account)?, reason: u.reason }
        }
        Kind::RotateKeys(r) => OpKind::RotateKeys {
            account: account(&r.account)?,
            keys: public_keys(&r.public_keys)?,
            allow_shared_key: r.allow_shared_key,
        },
        Kind::SetRole(r) => OpKind::SetRole(SetRole {
            role: match pb::GovernanceRole::try_from(r.role) {
                Ok(pb::GovernanceRole::Administrator) => Role::Admin,
                Ok(pb::GovernanceRole::Auditor) => Role::Auditor,
                Ok(pb::GovernanceRole::Unspecified) | Err(_) => return Err(BodyError::Role(r.role)),
            },
            key: PublicKey(fixed(&r.public_key, "public_key")?),
            present: r.present,
            reason: r.reason,
        }),
        Kind::CloseAccount(c) => OpKind::CloseAccount {
            account: account(&c.account)?,
            reason: c.reason,
            write_off_to: if c.write_off_to.is_empty() { None } else { Some(account(&c.write_off_to)?) },
        },
        Kind::SetQuorum(q) => OpKind::SetQuorum(SetQuorum {
            // A value past a u8 is kept out of range (0), so the rule refuses it by name.
            quorum: u8::try_from(q.quorum).unwrap_or(0),
            limit_above_minor: q.limit_above_minor,
            reason: q.reason,
        }),
        Kind::RotateNodeKey(k) => OpKind::RotateNodeKey {
            new_pubkey: PublicKey(fixed(&k.new_pubkey, "new_pubkey")?),
            reason: k.reason,
        },
        Kind::CreateGroup(g) => OpKind::CreateGroup(GroupLimits {
            group: GroupName::parse(&g.group)?,
            credit_limit_minor: g.credit_limit_minor,
            max_balance_minor: g.max_balance_minor,
            reason: g.reason,
        }),
        Kind::SetGroupLimits(g) => OpKind::SetGroupLimits(SetGroupLimits {
            group: GroupName::parse(&g.group)?,
            credit_limit_minor: g.credit_limit_minor,
            max_balance_minor: g.max_balance.map(|m| m.max_balance_minor),
            reason: g.reason,
        }),
        Kind::AssignGroup(a) => OpKind::AssignGroup {
            account: account(&a.account)?,
            group: GroupName::parse(&a.group)?,
            reason: a.reason,
        },
        Kind::FollowGroupLimits(f) => OpKind::FollowGroupLimits {
            account: account(&f.account)?,
            credit: f.credit_limit,
            max: f.max_balance,
            reason: f.reason,
        },
        Kind::SetFees(f) => OpKind::SetFees(SetFees {
            schedule: FeeSchedule {
                account: account(&f.account)?,
                // A value past a u16 is kept out of range, so the rule refuses it by name.
                transfer_levy_bp: u16::try_from(f.transfer_levy_bp).unwrap_or(u16::MAX),
                levy_on: match pb::LevyOn::try_from(f.levy_on) {
                    Ok(pb::LevyOn::Payer) => LevyOn::Payer,
                    Ok(pb::LevyOn::Payee) => LevyOn::Payee,
                    Ok(pb::LevyOn::Split) => LevyOn::Split,
                    Ok(pb::LevyOn::Unspecified) | Err(_) => return Err(BodyError::LevyOn(f.levy_on)),
                },
                membership_minor: {
                    if f.membership.len() > WIRE_KEYS_MAX {
                        return Err(BodyError::TooManyMembershipFees { count: f.membership.len() });
                    }
                    let mut map = std::collections::BTreeMap::new();
                    for m in f.membership {
                        if map.insert(m.size_class.clone(), m.amount_minor).is_some() {
                            return Err(BodyError::DuplicateMembershipFee(m.size_class));
                        }
                    }
                    map
                },
                demurrage_bp: u16::try_from(f.demurrage_bp).unwrap_or(u16::MAX),
                demurrage_above_minor: f.demurrage_above_minor,
                group_membership_minor: {
                    if f.group_membership.len() > WIRE_KEYS_MAX {
                        return Err(BodyError::TooManyMembershipFees { count: f.group_membership.len() });
                    }
                    let mut map = std::collections::BTreeMap::new();
                    for m in f.group_membership {
                        if map.insert(GroupName::parse(&m.group)?, m.amount_minor).is_some() {
                            return Err(BodyError::DuplicateGroupFee(m.group));
                        }
                    }
                    map
                },
            },
            reason: f.reason,
        }),
        Kind::ChargeFees(c) => {
            OpKind::ChargeFees { period: Period::parse(&c.period).map_err(BodyError::Period)? }
        }
        Kind::AddKey(k) => OpKind::AddKey(AddKey {
            account: account(&k.account)?,
            key: PublicKey(fixed(&k.public_key, "public_key")?),
            role: match (pb::AccountKeyRole::try_from(k.role), k.per_transfer_cap_minor, k.daily_cap_minor) {
                (Ok(pb::AccountKeyRole::Payer), Some(per_transfer_cap_minor), Some(daily_cap_minor)) => {
                    KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor }
                }
                (Ok(pb::AccountKeyRole::Payer), _, _) => return Err(BodyError::KeyCaps),
                (Ok(_), Some(_), _) | (Ok(_), _, Some(_)) => return Err(BodyError::KeyCaps),
                (Ok(pb::AccountKeyRole::Owner), None, None) => KeyRole::Owner,
                (Ok(pb::AccountKeyRole::Invoicer), None, None) => KeyRole::Invoicer,
                (Ok(pb::AccountKeyRole::Viewer), None, None) => KeyRole::Viewer,
                (Ok(pb::AccountKeyRole::Unspecified) | Err(_), _, _) => {
                    return Err(BodyError::KeyRole(k.role));
                }
            },
            allow_shared_key: k.allow_shared_key,
        }),
        Kind::RemoveKey(k) => OpKind::RemoveKey {
            account: account(&k.account)?,
            key: PublicKey(fixed(&k.public_key, "public_key")?),
        },
        Kind::ApprovePending(a) => OpKind::ApprovePending {
            account: account(&a.account)?,
            pending: a.pending_id,
            payee: account(&a.payee)?,
            amount_minor: a.amount_minor,
        },
        Kind::DeclinePending(d) => {
            OpKind::DeclinePending { account: account(&d.account)?, pending: d.pending_id, reason: d.reason }
        }
        Kind::ApplyLimitRule(a) => OpKind::ApplyLimitRule(ApplyLimitRule {
            rule: LimitRule {
                cap_minor: a.cap_minor,
                factor_bp: a.factor_bp,
                floor_minor: a.floor_minor,
                group: a.group.as_deref().map(GroupName::parse).transpose()?,
            },
            expected_root: a.expected_root.as_deref().map(|r| fixed(r, "expected_root")).transpose()?,
            reason: a.reason,
        }),
        Kind::Transfer(t) => OpKind::Transfer(Transfer {
            payer: account(&t.payer)?,
            payee: account(&t.payee)?,
            amount_minor: t.amount_minor,
            memo: t.memo,
            invoice_ref: t.invoice_ref,
            invoice: t.invoice_id.as_deref().map(invoice_id).transpose()?,
        }),
        Kind::IssueInvoice(i) => OpKind::IssueInvoice(IssueInvoice {
            invoice: invoice_id(&i.invoice_id)?,
            payee: account(&i.payee)?,
            payer: account(&i.payer)?,
            amount_minor: i.amount_minor,
            local_share_percent: u8::try_from(i.local_share_percent)
                .map_err(|_| BodyError::LocalShare(i.local_share_percent))?,
            due_day: i.due_day,
            reference: i.reference,
            excluded_from_clearing: i.excluded_from_clearing,
        }),
        Kind::AcceptInvoice(a) => OpKind::AcceptInvoice(parties(a.invoice)?),
        Kind::RejectInvoice(r) => OpKind::RejectInvoice { invoice: parties(r.invoice)?, reason: r.reason },
        Kind::CancelInvoice(c) => OpKind::CancelInvoice { invoice: parties(c.invoice)?, reason: c.reason },
        Kind::SetInvoiceClearing(c) => {
            OpKind::SetInvoiceClearing { invoice: parties(c.invoice)?, excluded: c.excluded }
        }
        Kind::RunClearing(r) => {
            OpKind::RunClearing(RunClearing { with_credit: r.with_credit, reason: r.reason })
        }
    };
    Ok(Operation { id: OperationId(id), valid_until_ms: b.valid_until_ms, kind })
}

fn to_wire(op: &Operation) -> pb::OperationBody {
    use pb::operation_body::Kind;
    let keys = |ks: &[PublicKey]| ks.iter().map(|k| k.0.to_vec()).collect();
    let kind = match &op.kind {
        OpKind::RegisterAccount(r) => Kind::RegisterAccount(pb::RegisterAccount {
            account: r.account.to_string(),
            display_name: r.display_name.clone(),
            public_keys: keys(&r.keys),
            credit_limit_minor: r.credit_limit_minor,
            max_balance_minor: r.max_balance_minor,
            profile: profile_to_wire(&r.profile),
            allow_shared_key: r.allow_shared_key,
        }),
        OpKind::SetProfile(p) => Kind::SetProfile(pb::SetProfile {
            account: p.account.to_string(),
            display_name: p.display_name.clone(),
            profile: profile_change_to_wire(&p.profile),
            reason: p.reason.clone(),
        }),
        OpKind::SetLimits(s) => Kind::SetLimits(pb::SetLimits {
            account: s.account.to_string(),
            credit_limit_minor: s.credit_limit_minor,
            max_balance: s.max_balance_minor.map(|m| pb::MaxBalance { max_balance_minor: m }),
            reason: s.reason.clone(),
        }),
        OpKind::FreezeAccount { account, reason } => {
            Kind::FreezeAccount(pb::FreezeAccount { account: account.to_string(), reason: reason.clone() })
        }
        OpKind::UnfreezeAccount { account, reason } => Kind::UnfreezeAccount(pb::UnfreezeAccount {
            account: account.to_string(),
            reason: reason.clone(),
        }),
        OpKind::RotateKeys { account, keys: ks, allow_shared_key } => Kind::RotateKeys(pb::RotateKeys {
            account: account.to_string(),
            public_keys: keys(ks),
            allow_shared_key: *allow_shared_key,
        }),
        OpKind::SetRole(r) => Kind::SetRole(pb::SetRole {
            role: match r.role {
                Role::Admin => pb::GovernanceRole::Administrator,
                Role::Auditor => pb::GovernanceRole::Auditor,
            } as i32,
            public_key: r.key.0.to_vec(),
            present: r.present,
            reason: r.reason.clone(),
        }),
        OpKind::CloseAccount { account, reason, write_off_to } => Kind::CloseAccount(pb::CloseAccount {
            account: account.to_string(),
            reason: reason.clone(),
            write_off_to: write_off_to.as_ref().map(ToString::to_string).unwrap_or_default(),
        }),
        OpKind::SetQuorum(q) => Kind::SetQuorum(pb::SetQuorum {
            quorum: u32::from(q.quorum),
            limit_above_minor: q.limit_above_minor,
            reason: q.reason.clone(),
        }),
        OpKind::RotateNodeKey { new_pubkey, reason } => Kind::RotateNodeKey(pb::RotateNodeKey {
            new_pubkey: new_pubkey.0.to_vec(),
            reason: reason.clone(),
        }),
        OpKind::CreateGroup(g) => Kind::CreateGroup(pb::CreateGroup {
            group: g.group.to_string(),
            credit_limit_minor: g.credit_limit_minor,
            max_balance_minor: g.max_balance_minor,
            reason: g.reason.clone(),
        }),
        OpKind::SetGroupLimits(g) => Kind::SetGroupLimits(pb::SetGroupLimits {
            group: g.group.to_string(),
            credit_limit_minor: g.credit_limit_minor,
            max_balance: g.max_balance_minor.map(|m| pb::MaxBalance { max_balance_minor: m }),
            reason: g.reason.clone(),
        }),
        OpKind::AssignGroup { account, group, reason } => Kind::AssignGroup(pb::AssignGroup {
            account: account.to_string(),
            group: group.to_string(),
            reason: reason.clone(),
        }),
        OpKind::FollowGroupLimits { account, credit, max, reason } => {
            Kind::FollowGroupLimits(pb::FollowGroupLimits {
                account: account.to_string(),
                credit_limit: *credit,
                max_balance: *max,
                reason: reason.clone(),
            })
        }
        OpKind::SetFees(f) => Kind::SetFees(pb::SetFees {
            account: f.schedule.account.to_string(),
            transfer_levy_bp: u32::from(f.schedule.transfer_levy_bp),
            levy_on: match f.schedule.levy_on {
                LevyOn::Payer => pb::LevyOn::Payer,
                LevyOn::Payee => pb::LevyOn::Payee,
                LevyOn::Split => pb::LevyOn::Split,
            } as i32,
            membership: f
                .schedule
                .membership_minor
                .iter()
                .map(|(class, amount)| pb::MembershipFee { size_class: class.clone(), amount_minor: *amount })
                .collect(),
            demurrage_bp: u32::from(f.schedule.demurrage_bp),
            demurrage_above_minor: f.schedule.demurrage_above_minor,
            reason: f.reason.clone(),
            group_membership: f
                .schedule
                .group_membership_minor
                .iter()
                .map(|(group, amount)| pb::GroupMembershipFee {
                    group: group.to_string(),
                    amount_minor: *amount,
                })
                .collect(),
        }),
        OpKind::ChargeFees { period } => Kind::ChargeFees(pb::ChargeFees { period: period.to_string() }),
        OpKind::AddKey(k) => {
            let (role, caps) = match k.role {
                KeyRole::Owner => (pb::AccountKeyRole::Owner, None),
                KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor } => {
                    (pb::AccountKeyRole::Payer, Some((per_transfer_cap_minor, daily_cap_minor)))
                }
                KeyRole::Invoicer => (pb::AccountKeyRole::Invoicer, None),
                KeyRole::Viewer => (pb::AccountKeyRole::Viewer, None),
            };
            Kind::AddKey(pb::AddKey {
                account: k.account.to_string(),
                public_key: k.key.0.to_vec(),
                role: role as i32,
                per_transfer_cap_minor: caps.map(|c| c.0),
                daily_cap_minor: caps.map(|c| c.1),
                allow_shared_key: k.allow_shared_key,
            })
        }
        OpKind::RemoveKey { account, key } => {
            Kind::RemoveKey(pb::RemoveKey { account: account.to_string(), public_key: key.0.to_vec() })
        }
        OpKind::ApprovePending { account, pending, payee, amount_minor } => {
            Kind::ApprovePending(pb::ApprovePending {
                account: account.to_string(),
                pending_id: *pending,
                payee: payee.to_string(),
                amount_minor: *amount_minor,
            })
        }
        OpKind::DeclinePending { account, pending, reason } => Kind::DeclinePending(pb::DeclinePending {
            account: account.to_string(),
            pending_id: *pending,
            reason: reason.clone(),
        }),
        OpKind::ApplyLimitRule(a) => Kind::ApplyLimitRule(pb::ApplyLimitRule {
            cap_minor: a.rule.cap_minor,
            factor_bp: a.rule.factor_bp,
            floor_minor: a.rule.floor_minor,
            group: a.rule.group.as_ref().map(|g| g.to_string()),
            expected_root: a.expected_root.map(|r| r.to_vec()),
            reason: a.reason.clone(),
        }),
        OpKind::Transfer(t) => Kind::Transfer(pb::Transfer {
            payer: t.payer.to_string(),
            payee: t.payee.to_string(),
            amount_minor: t.amount_minor,
            memo: t.memo.clone(),
            invoice_ref: t.invoice_ref.clone(),
            invoice_id: t.invoice.map(|i| i.0.to_vec()),
        }),
        OpKind::IssueInvoice(i) => Kind::IssueInvoice(pb::IssueInvoice {
            invoice_id: i.invoice.0.to_vec(),
            payee: i.payee.to_string(),
            payer: i.payer.to_string(),
            amount_minor: i.amount_minor,
            local_share_percent: u32::from(i.local_share_percent),
            due_day: i.due_day,
            reference: i.reference.clone(),
            excluded_from_clearing: i.excluded_from_clearing,
        }),
        OpKind::AcceptInvoice(p) => Kind::AcceptInvoice(pb::AcceptInvoice { invoice: parties_to_wire(p) }),
        OpKind::RejectInvoice { invoice, reason } => Kind::RejectInvoice(pb::RejectInvoice {
            invoice: parties_to_wire(invoice),
            reason: reason.clone(),
        }),
        OpKind::CancelInvoice { invoice, reason } => Kind::CancelInvoice(pb::CancelInvoice {
            invoice: parties_to_wire(invoice),
            reason: reason.clone(),
        }),
        OpKind::SetInvoiceClearing { invoice, excluded } => {
            Kind::SetInvoiceClearing(pb::SetInvoiceClearing {
                invoice: parties_to_wire(invoice),
                excluded: *excluded,
            })
        }
        OpKind::RunClearing(r) => {
            Kind::RunClearing(pb::RunClearing { with_credit: r.with_credit, reason: r.reason.clone() })
        }
    };
    pb::OperationBody { operation_id: op.id.0.to_vec(), valid_until_ms: op.valid_until_ms, kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer_op() -> Operation {
        Operation {
            id: OperationId([7; 16]),
            valid_until_ms: 99,
            kind: OpKind::Transfer(Transfer {
                payer: AccountId::parse("aaa").unwrap(),
                payee: AccountId::parse("bbb").unwrap(),
                amount_minor: 5,
                memo: "m".into(),
                invoice_ref: Some("INV-1".into()),
                invoice: Some(InvoiceId([3; 16])),
            }),
        }
    }

    #[test]
    fn operations_round_trip() {
        let op = transfer_op();
        assert_eq!(decode(&encode(&op)), Ok(op));
        let limits = Operation {
            id: OperationId([1; 16]),
            valid_until_ms: 5,
            kind: OpKind::SetLimits(SetLimits {
                account: AccountId::parse("aaa").unwrap(),
                credit_limit_minor: None,
                max_balance_minor: Some(None),
                reason: "r".into(),
            }),
        };
        assert_eq!(decode(&encode(&limits)), Ok(limits));
        let parties = InvoiceParties {
            invoice: InvoiceId([4; 16]),
            payee: AccountId::parse("aaa").unwrap(),
            payer: AccountId::parse("bbb").unwrap(),
        };
        let kinds = [
            OpKind::IssueInvoice(IssueInvoice {
                invoice: InvoiceId([4; 16]),
                payee: AccountId::parse("aaa").unwrap(),
                payer: AccountId::parse("bbb").unwrap(),
                amount_minor: 10_000,
                local_share_percent: 40,
                due_day: Some(20_500),
                reference: "F-1".into(),
                excluded_from_clearing: true,
            }),
            OpKind::AcceptInvoice(parties.clone()),
            OpKind::RejectInvoice { invoice: parties.clone(), reason: "wrong".into() },
            OpKind::CancelInvoice { invoice: parties.clone(), reason: String::new() },
            OpKind::SetInvoiceClearing { invoice: parties, excluded: false },
            OpKind::RunClearing(RunClearing { with_credit: true, reason: "monthly".into() }),
            OpKind::RegisterAccount(RegisterAccount {
                account: AccountId::parse("aaa").unwrap(),
                display_name: "A".into(),
                keys: vec![PublicKey([5; 32])],
                credit_limit_minor: 1,
                max_balance_minor: None,
                profile: Profile {
                    sector: Some("10.71".into()),
                    commune: Some("2A004".into()),
                    territory: Some("Pays ajaccien".into()),
                    ..Profile::default()
                },
                allow_shared_key: true,
            }),
            OpKind::RotateKeys {
                account: AccountId::parse("aaa").unwrap(),
                keys: vec![PublicKey([6; 32])],
                allow_shared_key: true,
            },
            OpKind::SetRole(SetRole {
                role: Role::Auditor,
                key: PublicKey([7; 32]),
                present: true,
                reason: "board member".into(),
            }),
            OpKind::SetRole(SetRole {
                role: Role::Admin,
                key: PublicKey([8; 32]),
                present: false,
                reason: "left".into(),
            }),
            OpKind::CloseAccount {
                account: AccountId::parse("aaa").unwrap(),
                reason: "ceased trading".into(),
                write_off_to: None,
            },
            OpKind::CloseAccount {
                account: AccountId::parse("aaa").unwrap(),
                reason: "bankrupt".into(),
                write_off_to: Some(AccountId::parse("reserve").unwrap()),
            },
            OpKind::SetQuorum(SetQuorum {
                quorum: 2,
                limit_above_minor: Some(5_000_000),
                reason: "statutes".into(),
            }),
            OpKind::SetQuorum(SetQuorum { quorum: 1, limit_above_minor: None, reason: "statutes".into() }),
            OpKind::RotateNodeKey { new_pubkey: PublicKey([9; 32]), reason: "yearly rotation".into() },
            OpKind::SetFees(SetFees {
                schedule: FeeSchedule {
                    account: AccountId::parse("association").unwrap(),
                    transfer_levy_bp: 25,
                    levy_on: LevyOn::Split,
                    membership_minor: [("1-9".to_string(), 5_000), ("250+".to_string(), 90_000)].into(),
                    demurrage_bp: 50,
                    demurrage_above_minor: 1_000_000,
                    group_membership_minor: [(GroupName::parse("coops").unwrap(), 3_000)].into(),
                },
                reason: "general assembly".into(),
            }),
            OpKind::ChargeFees { period: Period::parse("2026-11").unwrap() },
            OpKind::AddKey(AddKey {
                account: AccountId::parse("aaa").unwrap(),
                key: PublicKey([9; 32]),
                role: KeyRole::Payer { per_transfer_cap_minor: 50_000, daily_cap_minor: 200_000 },
                allow_shared_key: false,
            }),
            OpKind::AddKey(AddKey {
                account: AccountId::parse("aaa").unwrap(),
                key: PublicKey([9; 32]),
                role: KeyRole::Viewer,
                allow_shared_key: true,
            }),
            OpKind::RemoveKey { account: AccountId::parse("aaa").unwrap(), key: PublicKey([9; 32]) },
            OpKind::ApprovePending {
                account: AccountId::parse("aaa").unwrap(),
                pending: 17,
                payee: AccountId::parse("bbb").unwrap(),
                amount_minor: 60_000,
            },
            OpKind::DeclinePending {
                account: AccountId::parse("aaa").unwrap(),
                pending: 18,
                reason: "not ordered".into(),
            },
            OpKind::ApplyLimitRule(ApplyLimitRule {
                rule: LimitRule {
                    cap_minor: 5_000_000,
                    factor_bp: 2_500,
                    floor_minor: 0,
                    group: Some(GroupName::parse("small-firms").unwrap()),
                },
                expected_root: Some([7; 32]),
                reason: "general assembly".into(),
            }),
            OpKind::ApplyLimitRule(ApplyLimitRule {
                rule: LimitRule { cap_minor: 0, factor_bp: 0, floor_minor: 0, group: None },
                expected_root: None,
                reason: String::new(),
            }),
            OpKind::SetProfile(SetProfile {
                account: AccountId::parse("aaa").unwrap(),
                display_name: Some("Boulangerie".into()),
                profile: ProfileChange {
                    sector: Some(Some("C".into())),
                    postcode: Some(None),
                    ..ProfileChange::default()
                },
                reason: "moved".into(),
            }),
            OpKind::SetProfile(SetProfile {
                account: AccountId::parse("aaa").unwrap(),
                display_name: None,
                profile: ProfileChange::default(),
                reason: String::new(),
            }),
            OpKind::CreateGroup(GroupLimits {
                group: GroupName::parse("small-firms").unwrap(),
                credit_limit_minor: 100_000,
                max_balance_minor: Some(900_000),
                reason: "statutes art. 7".into(),
            }),
            OpKind::SetGroupLimits(SetGroupLimits {
                group: GroupName::parse("small-firms").unwrap(),
                credit_limit_minor: Some(0),
                max_balance_minor: Some(None),
                reason: "board".into(),
            }),
            OpKind::SetGroupLimits(SetGroupLimits {
                group: GroupName::parse("small-firms").unwrap(),
                credit_limit_minor: None,
                max_balance_minor: Some(Some(5)),
                reason: "board".into(),
            }),
            OpKind::AssignGroup {
                account: AccountId::parse("aaa").unwrap(),
                group: GroupName::parse("small-firms").unwrap(),
                reason: "size".into(),
            },
            OpKind::FollowGroupLimits {
                account: AccountId::parse("aaa").unwrap(),
                credit: true,
                max: false,
                reason: "override ends".into(),
            },
        ];
        for kind in kinds {
            let op = Operation { id: OperationId([2; 16]), valid_until_ms: 5, kind };
            assert_eq!(decode(&encode(&op)), Ok(op));
        }
    }

    /// A registration without a profile is encoded as before profiles existed: the bytes
    /// signed by older wallets, and kept in older logs, decode to the same operation.
    #[test]
    fn a_registration_without_a_profile_keeps_its_encoding() {
        let register = RegisterAccount {
            account: AccountId::parse("aaa").unwrap(),
            display_name: "A".into(),
            keys: vec![PublicKey([5; 32])],
            credit_limit_minor: 100,
            max_balance_minor: Some(7),
            profile: Profile::default(),
            allow_shared_key: false,
        };
        let op = Operation {
            id: OperationId([1; 16]),
            valid_until_ms: 9,
            kind: OpKind::RegisterAccount(register),
        };
        let old = pb::OperationBody {
            operation_id: vec![1; 16],
            valid_until_ms: 9,
            kind: Some(pb::operation_body::Kind::RegisterAccount(pb::RegisterAccount {
                account: "aaa".into(),
                display_name: "A".into(),
                public_keys: vec![vec![5; 32]],
                credit_limit_minor: 100,
                max_balance_minor: Some(7),
                profile: None,
                allow_shared_key: false,
            })),
        };
        assert_eq!(encode(&op), old.encode_to_vec());
        assert_eq!(decode(&old.encode_to_vec()), Ok(op));
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        let check = |body: &[u8], needle: &str| {
            let err = decode(body).unwrap_err();
            assert!(
                Rejection::from(err.clone()).message("CHW", 2).contains(needle),
                "{err:?} lacks {needle:?}"
            );
        };
        check(&[0xff, 0xff, 0xff], "not a valid OperationBody");
        let mut no_kind = to_wire(&transfer_op());
        no_kind.kind = None;
        check(&no_kind.encode_to_vec(), "has no kind");
        let mut short_id = to_wire(&transfer_op());
        short_id.operation_id = vec![1, 2];
        check(&short_id.encode_to_vec(), "operation_id must be 16 bytes");
        let mut bad_handle = to_wire(&transfer_op());
        if let Some(pb::operation_body::Kind::Transfer(t)) = &mut bad_handle.kind {
            t.payee = "Bad Handle".into();
        }
        check(&bad_handle.encode_to_vec(), "invalid account handle");
        check(&vec![0u8; BODY_BYTES_MAX + 1], "maximum is");
        let role = |role: i32, key: Vec<u8>| pb::OperationBody {
            operation_id: vec![1; 16],
            valid_until_ms: 9,
            kind: Some(pb::operation_body::Kind::SetRole(pb::SetRole {
                role,
                public_key: key,
                present: true,
                reason: "r".into(),
            })),
        };
        check(&role(0, vec![1; 32]).encode_to_vec(), "role 0 is not a governance role");
        check(&role(7, vec![1; 32]).encode_to_vec(), "role 7 is not a governance role");
        check(&role(2, vec![1; 31]).encode_to_vec(), "public_key must be 32 bytes");
    }

    #[test]
    fn the_identity_is_read_from_the_first_fields() {
        for valid_until_ms in [0, 1, 127, 128, 1_795_341_600_000, u64::MAX] {
            let op = Operation { valid_until_ms, ..transfer_op() };
            assert_eq!(decode_identity(&encode(&op)), Some((op.id, valid_until_ms)));
        }
        // Fields in another order still decode, the slow way.
        let mut wire = to_wire(&transfer_op()).encode_to_vec();
        let first_field = wire.drain(..18).collect::<Vec<u8>>();
        wire.extend(first_field);
        assert_eq!(decode_identity(&wire), Some((OperationId([7; 16]), 99)));
        assert_eq!(decode_identity(&[0xff, 0xff]), None);
    }
}
