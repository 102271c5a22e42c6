//! Wire types generated from `proto/cercle/v1/ledger.proto`, and the validation boundary
//! between them and the core's domain types.
//!
//! API boundary: wire types never leak past this crate and the node's handlers; callers
//! import this crate as `pb`. Conversions into domain types are `TryFrom` and treat a
//! missing field as an error, never as a default.

pub mod codec;

/// The messages and the server, which decodes requests with `codec::RequestCodec`.
mod generated {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("cercle.v1");
}
pub use generated::*;

/// The client, generated apart with prost's own codec (see `build.rs`).
mod generated_client {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/client/cercle.v1.rs"));
}
pub use generated_client::ledger_client;

use cercle_core as core;
use core::{AccountId, OperationId, PublicKey, Rejection as Reject};
use prost::Message;

/// Request metadata of an authenticated read (see the header comment of `ledger.proto`).
pub mod read_auth {
    /// Hex of the caller's ed25519 public key.
    pub const PUBKEY_HEADER: &str = "x-cercle-pubkey";
    /// The caller's clock, ms since the Unix epoch.
    pub const TIMESTAMP_HEADER: &str = "x-cercle-timestamp";
    /// Hex of the signature over `cercle_core::sign::read_auth_message`.
    pub const SIGNATURE_HEADER: &str = "x-cercle-signature";
}

/// Entries per `ListEntries` page when the caller does not say.
pub const PAGE_SIZE_DEFAULT: u32 = 100;
/// Most entries per `ListEntries` page.
pub const PAGE_SIZE_MAX: u32 = 1000;

/// Most envelopes in one `SubmitBatch` request.
pub const SUBMIT_BATCH_MAX: usize = 1000;

/// The encoded file descriptor set of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cercle_descriptor");

fn malformed(detail: impl Into<String>) -> Reject {
    Reject::Malformed { detail: detail.into() }
}

fn account(text: &str) -> Result<AccountId, Reject> {
    AccountId::parse(text).map_err(|e| malformed(e.to_string()))
}

pub fn invoice_id(bytes: &[u8]) -> Result<core::InvoiceId, Reject> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| malformed(format!("invoice_id must be 16 bytes, got {}", bytes.len())))?;
    Ok(core::InvoiceId(arr))
}

fn parties(p: Option<InvoiceParties>) -> Result<core::InvoiceParties, Reject> {
    let p = p.ok_or_else(|| malformed("the operation does not name its invoice"))?;
    Ok(core::InvoiceParties {
        invoice: invoice_id(&p.invoice_id)?,
        payee: account(&p.payee)?,
        payer: account(&p.payer)?,
    })
}

fn parties_to_wire(p: &core::InvoiceParties) -> Option<InvoiceParties> {
    Some(InvoiceParties {
        invoice_id: p.invoice.0.to_vec(),
        payee: p.payee.to_string(),
        payer: p.payer.to_string(),
    })
}

fn public_key(bytes: &[u8], what: &str) -> Result<PublicKey, Reject> {
    let arr: [u8; 32] =
        bytes.try_into().map_err(|_| malformed(format!("{what} must be 32 bytes, got {}", bytes.len())))?;
    Ok(PublicKey(arr))
}

/// Bound on repeated key fields before they are even looked at: the core's rule is
/// stricter, this one only stops a huge list from being copied.
const WIRE_KEYS_MAX: usize = 64;

fn public_keys(list: &[Vec<u8>]) -> Result<Vec<PublicKey>, Reject> {
    if list.len() > WIRE_KEYS_MAX {
        return Err(Reject::InvalidKeys { detail: format!("{} keys is far too many", list.len()) });
    }
    list.iter().map(|k| public_key(k, "a public key")).collect()
}

/// Decodes and checks the shape of an operation body (the bytes inside an envelope).
pub fn decode_operation(body: &[u8]) -> Result<core::Operation, Reject> {
    if body.len() > core::op::BODY_BYTES_MAX {
        return Err(Reject::BodyTooLarge { bytes: body.len() });
    }
    let pb_body = OperationBody::decode(body)
        .map_err(|e| malformed(format!("the operation body is not a valid OperationBody: {e}")))?;
    core::Operation::try_from(pb_body)
}

/// Encodes an operation into the body bytes a client signs.
pub fn encode_operation(op: &core::Operation) -> Vec<u8> {
    OperationBody::from(op).encode_to_vec()
}

impl TryFrom<OperationBody> for core::Operation {
    type Error = Reject;

    fn try_from(b: OperationBody) -> Result<Self, Reject> {
        let id: [u8; 16] =
            b.operation_id.as_slice().try_into().map_err(|_| {
                malformed(format!("operation_id must be 16 bytes, got {}", b.operation_id.len()))
            })?;
        use operation_body::Kind;
        let kind = match b.kind.ok_or_else(|| malformed("the operation has no kind"))? {
            Kind::RegisterAccount(r) => core::OpKind::RegisterAccount(core::RegisterAccount {
                account: account(&r.account)?,
                display_name: r.display_name,
                keys: public_keys(&r.public_keys)?,
                credit_limit_minor: r.credit_limit_minor,
                max_balance_minor: r.max_balance_minor,
            }),
            Kind::SetLimits(s) => core::OpKind::SetLimits(core::SetLimits {
                account: account(&s.account)?,
                credit_limit_minor: s.credit_limit_minor,
                max_balance_minor: s.max_balance.map(|m| m.max_balance_minor),
                reason: s.reason,
            }),
            Kind::FreezeAccount(f) => {
                core::OpKind::FreezeAccount { account: account(&f.account)?, reason: f.reason }
            }
            Kind::UnfreezeAccount(u) => {
                core::OpKind::UnfreezeAccount { account: account(&u.account)?, reason: u.reason }
            }
            Kind::RotateKeys(r) => {
                core::OpKind::RotateKeys { account: account(&r.account)?, keys: public_keys(&r.public_keys)? }
            }
            Kind::Transfer(t) => core::OpKind::Transfer(core::Transfer {
                payer: account(&t.payer)?,
                payee: account(&t.payee)?,
                amount_minor: t.amount_minor,
                memo: t.memo,
                invoice_ref: t.invoice_ref,
                invoice: t.invoice_id.as_deref().map(invoice_id).transpose()?,
            }),
            Kind::IssueInvoice(i) => core::OpKind::IssueInvoice(core::IssueInvoice {
                invoice: invoice_id(&i.invoice_id)?,
                payee: account(&i.payee)?,
                payer: account(&i.payer)?,
                amount_minor: i.amount_minor,
                local_share_percent: u8::try_from(i.local_share_percent).map_err(|_| {
                    Reject::InvalidInvoice {
                        detail: format!("local share is {}%, it must be 1 to 100", i.local_share_percent),
                    }
                })?,
                due_day: i.due_day,
                reference: i.reference,
                excluded_from_clearing: i.excluded_from_clearing,
            }),
            Kind::AcceptInvoice(a) => core::OpKind::AcceptInvoice(parties(a.invoice)?),
            Kind::RejectInvoice(r) => {
                core::OpKind::RejectInvoice { invoice: parties(r.invoice)?, reason: r.reason }
            }
            Kind::CancelInvoice(c) => {
                core::OpKind::CancelInvoice { invoice: parties(c.invoice)?, reason: c.reason }
            }
            Kind::SetInvoiceClearing(c) => {
                core::OpKind::SetInvoiceClearing { invoice: parties(c.invoice)?, excluded: c.excluded }
            }
            Kind::RunClearing(r) => {
                core::OpKind::RunClearing(core::RunClearing { with_credit: r.with_credit, reason: r.reason })
            }
        };
        Ok(core::Operation { id: OperationId(id), valid_until_ms: b.valid_until_ms, kind })
    }
}

impl From<&core::Operation> for OperationBody {
    fn from(op: &core::Operation) -> Self {
        use operation_body::Kind;
        let keys = |ks: &[PublicKey]| ks.iter().map(|k| k.0.to_vec()).collect();
        let kind = match &op.kind {
            core::OpKind::RegisterAccount(r) => Kind::RegisterAccount(RegisterAccount {
                account: r.account.to_string(),
                display_name: r.display_name.clone(),
                public_keys: keys(&r.keys),
                credit_limit_minor: r.credit_limit_minor,
                max_balance_minor: r.max_balance_minor,
            }),
            core::OpKind::SetLimits(s) => Kind::SetLimits(SetLimits {
                account: s.account.to_string(),
                credit_limit_minor: s.credit_limit_minor,
                max_balance: s.max_balance_minor.map(|m| MaxBalance { max_balance_minor: m }),
                reason: s.reason.clone(),
            }),
            core::OpKind::FreezeAccount { account, reason } => {
                Kind::FreezeAccount(FreezeAccount { account: account.to_string(), reason: reason.clone() })
            }
            core::OpKind::UnfreezeAccount { account, reason } => Kind::UnfreezeAccount(UnfreezeAccount {
                account: account.to_string(),
                reason: reason.clone(),
            }),
            core::OpKind::RotateKeys { account, keys: ks } => {
                Kind::RotateKeys(RotateKeys { account: account.to_string(), public_keys: keys(ks) })
            }
            core::OpKind::Transfer(t) => Kind::Transfer(Transfer {
                payer: t.payer.to_string(),
                payee: t.payee.to_string(),
                amount_minor: t.amount_minor,
                memo: t.memo.clone(),
                invoice_ref: t.invoice_ref.clone(),
                invoice_id: t.invoice.map(|i| i.0.to_vec()),
            }),
            core::OpKind::IssueInvoice(i) => Kind::IssueInvoice(IssueInvoice {
                invoice_id: i.invoice.0.to_vec(),
                payee: i.payee.to_string(),
                payer: i.payer.to_string(),
                amount_minor: i.amount_minor,
                local_share_percent: u32::from(i.local_share_percent),
                due_day: i.due_day,
                reference: i.reference.clone(),
                excluded_from_clearing: i.excluded_from_clearing,
            }),
            core::OpKind::AcceptInvoice(p) => {
                Kind::AcceptInvoice(AcceptInvoice { invoice: parties_to_wire(p) })
            }
            core::OpKind::RejectInvoice { invoice, reason } => Kind::RejectInvoice(RejectInvoice {
                invoice: parties_to_wire(invoice),
                reason: reason.clone(),
            }),
            core::OpKind::CancelInvoice { invoice, reason } => Kind::CancelInvoice(CancelInvoice {
                invoice: parties_to_wire(invoice),
                reason: reason.clone(),
            }),
            core::OpKind::SetInvoiceClearing { invoice, excluded } => {
                Kind::SetInvoiceClearing(SetInvoiceClearing {
                    invoice: parties_to_wire(invoice),
                    excluded: *excluded,
                })
            }
            core::OpKind::RunClearing(r) => {
                Kind::RunClearing(RunClearing { with_credit: r.with_credit, reason: r.reason.clone() })
            }
        };
        OperationBody { operation_id: op.id.0.to_vec(), valid_until_ms: op.valid_until_ms, kind: Some(kind) }
    }
}

impl TryFrom<Envelope> for core::Envelope {
    type Error = Reject;

    fn try_from(e: Envelope) -> Result<Self, Reject> {
        if e.body.len() > core::op::BODY_BYTES_MAX {
            return Err(Reject::BodyTooLarge { bytes: e.body.len() });
        }
        let signer = public_key(&e.signer, "the envelope's signer")?;
        let signature: [u8; 64] = e.signature.as_slice().try_into().map_err(|_| {
            malformed(format!("the envelope's signature must be 64 bytes, got {}", e.signature.len()))
        })?;
        Ok(core::Envelope { body: e.body, signer, signature })
    }
}

impl From<&core::Envelope> for Envelope {
    fn from(e: &core::Envelope) -> Self {
        Envelope { body: e.body.clone(), signer: e.signer.0.to_vec(), signature: e.signature.to_vec() }
    }
}

impl From<&core::BalanceAfter> for BalanceAfter {
    fn from(b: &core::BalanceAfter) -> Self {
        BalanceAfter { account: b.account.to_string(), balance_minor: b.balance_minor }
    }
}

impl From<&core::Entry> for Entry {
    fn from(e: &core::Entry) -> Self {
        Entry {
            sequence: e.sequence,
            timestamp_ms: e.timestamp_ms,
            prev_hash: e.prev_hash.to_vec(),
            envelope: Some((&e.envelope).into()),
            balances_after: e.balances_after.iter().map(Into::into).collect(),
            entry_hash: e.hash().to_vec(),
            clearing: e.clearing.as_ref().map(|record| {
                let mut w = core::codec::Writer::default();
                record.encode_into(&mut w);
                w.buf
            }),
        }
    }
}

impl TryFrom<Entry> for core::Entry {
    type Error = Reject;

    /// Rebuilds a core entry from the wire and checks that it hashes to the hash the
    /// node sent: a client never trusts `entry_hash` without recomputing it.
    fn try_from(e: Entry) -> Result<Self, Reject> {
        let prev_hash: [u8; 32] =
            e.prev_hash.as_slice().try_into().map_err(|_| malformed("prev_hash must be 32 bytes"))?;
        let envelope = e.envelope.ok_or_else(|| malformed("the entry has no envelope"))?.try_into()?;
        let balances_after = e
            .balances_after
            .into_iter()
            .map(|b| Ok(core::BalanceAfter { account: account(&b.account)?, balance_minor: b.balance_minor }))
            .collect::<Result<Vec<_>, Reject>>()?;
        let clearing = match e.clearing {
            None => None,
            Some(bytes) => {
                let mut r = core::codec::Reader::new(&bytes);
                let record = core::ClearingRecord::decode_from(&mut r)
                    .map_err(|err| malformed(format!("the entry's clearing record: {err}")))?;
                r.finish().map_err(|err| malformed(format!("the entry's clearing record: {err}")))?;
                Some(record)
            }
        };
        let entry = core::Entry {
            sequence: e.sequence,
            timestamp_ms: e.timestamp_ms,
            prev_hash,
            envelope,
            balances_after,
            clearing,
        };
        if entry.hash().as_slice() != e.entry_hash.as_slice() {
            return Err(malformed(format!("entry {} does not hash to its entry_hash", e.sequence)));
        }
        Ok(entry)
    }
}

impl From<&core::Account> for Account {
    fn from(a: &core::Account) -> Self {
        Account {
            account: a.id.to_string(),
            display_name: a.display_name.clone(),
            balance_minor: a.balance_minor,
            credit_limit_minor: a.credit_limit_minor,
            max_balance_minor: a.max_balance_minor,
            status: match a.status {
                core::AccountStatus::Active => AccountStatus::Active,
                core::AccountStatus::Frozen => AccountStatus::Frozen,
            } as i32,
            public_keys: a.keys.iter().map(|k| k.0.to_vec()).collect(),
            registered_at_sequence: a.registered_at_sequence,
            last_sequence: a.last_sequence,
        }
    }
}

impl From<&core::Invoice> for Invoice {
    fn from(i: &core::Invoice) -> Self {
        Invoice {
            invoice_id: i.id.0.to_vec(),
            payee: i.payee.to_string(),
            payer: i.payer.to_string(),
            amount_minor: i.amount_minor,
            local_share_percent: u32::from(i.local_share_percent),
            due_day: i.due_day,
            reference: i.reference.clone(),
            state: match i.state {
                core::InvoiceState::Issued => InvoiceState::Issued,
                core::InvoiceState::Accepted => InvoiceState::Accepted,
                core::InvoiceState::PartlySettled => InvoiceState::PartlySettled,
                core::InvoiceState::Settled => InvoiceState::Settled,
                core::InvoiceState::Rejected => InvoiceState::Rejected,
                core::InvoiceState::Cancelled => InvoiceState::Cancelled,
            } as i32,
            paid_minor: i.paid_minor,
            cleared_minor: i.cleared_minor,
            excluded_from_clearing: i.excluded_from_clearing,
            reason: i.reason.clone(),
            issued_at_sequence: i.issued_at_sequence,
            last_sequence: i.last_sequence,
            local_minor: i.local_minor(),
            open_minor: i.open_minor(),
        }
    }
}

impl InvoiceState {
    /// The core's name of the state ("partly_settled"), as the CLI prints it.
    pub fn core_name(self) -> &'static str {
        match self {
            InvoiceState::Unspecified => "unspecified",
            InvoiceState::Issued => core::InvoiceState::Issued.name(),
            InvoiceState::Accepted => core::InvoiceState::Accepted.name(),
            InvoiceState::PartlySettled => core::InvoiceState::PartlySettled.name(),
            InvoiceState::Settled => core::InvoiceState::Settled.name(),
            InvoiceState::Rejected => core::InvoiceState::Rejected.name(),
            InvoiceState::Cancelled => core::InvoiceState::Cancelled.name(),
        }
    }
}

/// Clearing amounts are sums over bounded invoices and fit i64 (see
/// `cercle_core::op::INVOICE_AMOUNT_MAX_MINOR`); saturate rather than wrap if not.
fn wire_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl From<&core::ClearingSummary> for ClearingSummary {
    fn from(s: &core::ClearingSummary) -> Self {
        ClearingSummary {
            with_credit: s.with_credit,
            obligations: s.obligations,
            firms: s.firms,
            total_debt_minor: wire_i64(s.total_debt_minor),
            net_internal_debt_minor: wire_i64(s.net_internal_debt_minor),
            setoff_minor: wire_i64(s.setoff_minor),
            credit_minor: wire_i64(s.credit_minor),
            payments_minor: wire_i64(s.payments_minor),
            net_internal_debt_after_minor: wire_i64(s.net_internal_debt_after_minor),
            firms_changed: s
                .per_firm
                .iter()
                .map(|f| FirmClearing {
                    account: f.account.to_string(),
                    owes_minor: wire_i64(f.owes_minor),
                    owes_cleared_minor: wire_i64(f.owes_cleared_minor),
                    owed_minor: wire_i64(f.owed_minor),
                    owed_cleared_minor: wire_i64(f.owed_cleared_minor),
                    payment_minor: f.payment_minor,
                })
                .collect(),
        }
    }
}

impl From<&core::Genesis> for LedgerInfo {
    fn from(g: &core::Genesis) -> Self {
        LedgerInfo {
            ledger_id: g.ledger_id.0.to_vec(),
            currency: g.currency.clone(),
            exponent: u32::from(g.exponent),
            admin_keys: g.admin_keys.iter().map(|k| k.0.to_vec()).collect(),
            auditor_keys: g.auditor_keys.iter().map(|k| k.0.to_vec()).collect(),
            node_key: g.node_key.0.to_vec(),
            log_size: 0,
        }
    }
}

impl TryFrom<LedgerInfo> for core::Genesis {
    type Error = Reject;

    fn try_from(i: LedgerInfo) -> Result<Self, Reject> {
        let ledger_id: [u8; 16] =
            i.ledger_id.as_slice().try_into().map_err(|_| malformed("ledger_id must be 16 bytes"))?;
        let exponent = u8::try_from(i.exponent).map_err(|_| malformed("exponent out of range"))?;
        let genesis = core::Genesis {
            ledger_id: core::LedgerId(ledger_id),
            currency: i.currency,
            exponent,
            admin_keys: public_keys(&i.admin_keys)?,
            auditor_keys: public_keys(&i.auditor_keys)?,
            node_key: public_key(&i.node_key, "node_key")?,
        };
        genesis.validate().map_err(|e| malformed(e.to_string()))?;
        Ok(genesis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer_op() -> core::Operation {
        core::Operation {
            id: OperationId([7; 16]),
            valid_until_ms: 99,
            kind: core::OpKind::Transfer(core::Transfer {
                payer: AccountId::parse("aaa").unwrap(),
                payee: AccountId::parse("bbb").unwrap(),
                amount_minor: 5,
                memo: "m".into(),
                invoice_ref: Some("INV-1".into()),
                invoice: Some(core::InvoiceId([3; 16])),
            }),
        }
    }

    #[test]
    fn operations_round_trip() {
        let op = transfer_op();
        assert_eq!(decode_operation(&encode_operation(&op)), Ok(op));
        let limits = core::Operation {
            id: OperationId([1; 16]),
            valid_until_ms: 5,
            kind: core::OpKind::SetLimits(core::SetLimits {
                account: AccountId::parse("aaa").unwrap(),
                credit_limit_minor: None,
                max_balance_minor: Some(None),
                reason: "r".into(),
            }),
        };
        assert_eq!(decode_operation(&encode_operation(&limits)), Ok(limits));
        let parties = core::InvoiceParties {
            invoice: core::InvoiceId([4; 16]),
            payee: AccountId::parse("aaa").unwrap(),
            payer: AccountId::parse("bbb").unwrap(),
        };
        let kinds = [
            core::OpKind::IssueInvoice(core::IssueInvoice {
                invoice: core::InvoiceId([4; 16]),
                payee: AccountId::parse("aaa").unwrap(),
                payer: AccountId::parse("bbb").unwrap(),
                amount_minor: 10_000,
                local_share_percent: 40,
                due_day: Some(20_500),
                reference: "F-1".into(),
                excluded_from_clearing: true,
            }),
            core::OpKind::AcceptInvoice(parties.clone()),
            core::OpKind::RejectInvoice { invoice: parties.clone(), reason: "wrong".into() },
            core::OpKind::CancelInvoice { invoice: parties.clone(), reason: String::new() },
            core::OpKind::SetInvoiceClearing { invoice: parties, excluded: false },
            core::OpKind::RunClearing(core::RunClearing { with_credit: true, reason: "monthly".into() }),
        ];
        for kind in kinds {
            let op = core::Operation { id: OperationId([2; 16]), valid_until_ms: 5, kind };
            assert_eq!(decode_operation(&encode_operation(&op)), Ok(op));
        }
    }

    #[test]
    fn malformed_bodies_are_rejected_with_a_reason() {
        let check = |body: &[u8], needle: &str| {
            let err = decode_operation(body).unwrap_err();
            assert!(err.message("CHW", 2).contains(needle), "{err:?} lacks {needle:?}");
        };
        check(&[0xff, 0xff, 0xff], "not a valid OperationBody");
        let mut no_kind = OperationBody::from(&transfer_op());
        no_kind.kind = None;
        check(&no_kind.encode_to_vec(), "has no kind");
        let mut short_id = OperationBody::from(&transfer_op());
        short_id.operation_id = vec![1, 2];
        check(&short_id.encode_to_vec(), "operation_id must be 16 bytes");
        let mut bad_handle = OperationBody::from(&transfer_op());
        if let Some(operation_body::Kind::Transfer(t)) = &mut bad_handle.kind {
            t.payee = "Bad Handle".into();
        }
        check(&bad_handle.encode_to_vec(), "invalid account handle");
        check(&vec![0u8; core::op::BODY_BYTES_MAX + 1], "maximum is");
    }
}
