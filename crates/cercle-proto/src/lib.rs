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
use core::{AccountId, PublicKey, Rejection as Reject};

/// Request metadata of an authenticated read (see the header comment of `ledger.proto`).
pub mod read_auth {
    /// Hex of the caller's ed25519 public key.
    pub const PUBKEY_HEADER: &str = "x-cercle-pubkey";
    /// The caller's clock, ms since the Unix epoch.
    pub const TIMESTAMP_HEADER: &str = "x-cercle-timestamp";
    /// Hex of the signature over `cercle_core::sign::read_auth_message`.
    pub const SIGNATURE_HEADER: &str = "x-cercle-signature";
}

/// The protobuf package of the wire protocol, as `--version` and the node's build-info metric say.
pub const PROTO_PACKAGE: &str = "cercle.v1";

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

fn public_keys(list: &[Vec<u8>]) -> Result<Vec<PublicKey>, Reject> {
    if list.len() > cercle_limits::WIRE_KEYS_MAX {
        return Err(Reject::InvalidKeys { detail: format!("{} keys is far too many", list.len()) });
    }
    list.iter().map(|k| public_key(k, "a public key")).collect()
}

fn public_key(bytes: &[u8], what: &str) -> Result<PublicKey, Reject> {
    let arr: [u8; 32] =
        bytes.try_into().map_err(|_| malformed(format!("{what} must be 32 bytes, got {}", bytes.len())))?;
    Ok(PublicKey(arr))
}

fn signature(signer: &[u8], signature: &[u8]) -> Result<core::Signature, Reject> {
    let signer = public_key(signer, "an envelope's signer")?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| {
        malformed(format!("an envelope's signature must be 64 bytes, got {}", signature.len()))
    })?;
    Ok(core::Signature { signer, signature })
}

impl TryFrom<Envelope> for core::Envelope {
    type Error = Reject;

    fn try_from(e: Envelope) -> Result<Self, Reject> {
        if e.body.len() > cercle_limits::BODY_BYTES_MAX {
            return Err(Reject::BodyTooLarge { bytes: e.body.len() });
        }
        if e.cosignatures.len() >= cercle_limits::SIGNATURES_MAX {
            return Err(malformed(format!(
                "an envelope carries at most {} signatures",
                cercle_limits::SIGNATURES_MAX
            )));
        }
        let mut signatures = vec![signature(&e.signer, &e.signature)?];
        for c in &e.cosignatures {
            signatures.push(signature(&c.signer, &c.signature)?);
        }
        Ok(core::Envelope { body: e.body, signatures })
    }
}

impl From<&core::Envelope> for Envelope {
    fn from(e: &core::Envelope) -> Self {
        let mut signatures = e.signatures.iter();
        let first = signatures.next();
        Envelope {
            body: e.body.clone(),
            signer: first.map(|s| s.signer.0.to_vec()).unwrap_or_default(),
            signature: first.map(|s| s.signature.to_vec()).unwrap_or_default(),
            cosignatures: signatures
                .map(|s| Cosignature { signer: s.signer.0.to_vec(), signature: s.signature.to_vec() })
                .collect(),
        }
    }
}

impl From<&core::BalanceAfter> for BalanceAfter {
    fn from(b: &core::BalanceAfter) -> Self {
        BalanceAfter { account: b.account.to_string(), balance_minor: b.balance_minor }
    }
}

impl From<&core::EntryView> for Entry {
    fn from(v: &core::EntryView) -> Self {
        let e = &v.entry;
        Entry {
            sequence: e.sequence,
            timestamp_ms: e.timestamp_ms,
            prev_hash: e.prev_hash.to_vec(),
            envelope: Some((&e.envelope).into()),
            balances_after: e.balances_after.iter().map(Into::into).collect(),
            entry_hash: v.hash().to_vec(),
            sections: v
                .sections
                .iter()
                .map(|s| EntrySection {
                    tag: u32::from(s.tag as u8),
                    part_count: s.part_count,
                    root: s.root.to_vec(),
                    parts: s
                        .parts
                        .iter()
                        .map(|p| EntryPart {
                            index: p.index,
                            data: p.data.clone(),
                            path: p.path.iter().map(|h| h.to_vec()).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], Reject> {
    bytes.try_into().map_err(|_| malformed(format!("{what} must be 32 bytes, got {}", bytes.len())))
}

fn section_view(s: EntrySection) -> Result<core::entry::SectionView, Reject> {
    let tag = u8::try_from(s.tag)
        .ok()
        .and_then(|t| core::SectionTag::from_u8(t).ok())
        .ok_or_else(|| malformed(format!("unknown entry section {}", s.tag)))?;
    let parts = s
        .parts
        .into_iter()
        .map(|p| {
            let path = p.path.iter().map(|h| hash32(h, "a part's path hash")).collect::<Result<_, _>>()?;
            Ok(core::entry::ShownPart { index: p.index, data: p.data, path })
        })
        .collect::<Result<Vec<_>, Reject>>()?;
    Ok(core::entry::SectionView {
        tag,
        part_count: s.part_count,
        root: hash32(&s.root, "a section's root")?,
        parts,
    })
}

impl TryFrom<Entry> for core::EntryView {
    type Error = Reject;

    /// Rebuilds an entry view from the wire and checks that it hashes to the hash the
    /// node sent and that every part it shows is in its section's root: a client never
    /// trusts `entry_hash` without recomputing it.
    fn try_from(e: Entry) -> Result<Self, Reject> {
        let prev_hash = hash32(&e.prev_hash, "prev_hash")?;
        let envelope = e.envelope.ok_or_else(|| malformed("the entry has no envelope"))?.try_into()?;
        let balances_after = e
            .balances_after
            .into_iter()
            .map(|b| Ok(core::BalanceAfter { account: account(&b.account)?, balance_minor: b.balance_minor }))
            .collect::<Result<Vec<_>, Reject>>()?;
        let sections = e.sections.into_iter().map(section_view).collect::<Result<Vec<_>, Reject>>()?;
        let entry = core::Entry {
            sequence: e.sequence,
            timestamp_ms: e.timestamp_ms,
            prev_hash,
            envelope,
            balances_after,
            sections: Vec::new(),
        };
        let view = core::EntryView { entry, sections };
        view.check_parts().map_err(|err| malformed(format!("entry {}: {err}", e.sequence)))?;
        if view.hash().as_slice() != e.entry_hash.as_slice() {
            return Err(malformed(format!("entry {} does not hash to its entry_hash", e.sequence)));
        }
        Ok(view)
    }
}

impl TryFrom<Entry> for core::Entry {
    type Error = Reject;

    /// A whole entry (every part of its sections shown, as `StreamEntries` sends them),
    /// checked like a view.
    fn try_from(e: Entry) -> Result<Self, Reject> {
        let sequence = e.sequence;
        core::EntryView::try_from(e)?
            .into_entry()
            .ok_or_else(|| malformed(format!("entry {sequence} does not show every part of its sections")))
    }
}

/// The account as a read at `now_ms` shows it: `reserved_minor` counts the pending payments
/// that have not expired by then.
pub fn account_at(a: &core::Account, groups: &core::Groups, now_ms: u64) -> Account {
    Account { reserved_minor: a.reserved_minor(now_ms), ..wire_account(a, groups) }
}

/// An account as the wire shows it, with the limits that bind it (its own, or its group's
/// from `groups`) and where each comes from.
pub fn wire_account(a: &core::Account, groups: &core::Groups) -> Account {
    let limits = groups.limits_of(a);
    Account {
        credit_limit_minor: limits.credit_limit_minor,
        max_balance_minor: limits.max_balance_minor,
        ..Account::from(a)
    }
}

impl From<&core::Account> for Account {
    /// `reserved_minor` counts every pending payment the record holds (see `account_at`);
    /// the limits are the account's own (`wire_account` gives the ones that bind).
    fn from(a: &core::Account) -> Self {
        let (credit_source, max_source) = core::Groups::sources_of(a);
        Account {
            group: a.membership.as_ref().map(|m| m.group.to_string()).unwrap_or_default(),
            credit_limit_source: credit_source.label(),
            max_balance_source: max_source.label(),
            account: a.id.to_string(),
            display_name: a.display_name.clone(),
            balance_minor: a.balance_minor,
            credit_limit_minor: a.credit_limit_minor,
            max_balance_minor: a.max_balance_minor,
            status: match a.status {
                core::AccountStatus::Active => AccountStatus::Active,
                core::AccountStatus::Frozen => AccountStatus::Frozen,
                core::AccountStatus::Closed => AccountStatus::Closed,
            } as i32,
            public_keys: a.keys.iter().map(|k| k.0.to_vec()).collect(),
            registered_at_sequence: a.registered_at_sequence,
            last_sequence: a.last_sequence,
            sector: a.profile.sector.clone(),
            commune: a.profile.commune.clone(),
            postcode: a.profile.postcode.clone(),
            territory: a.profile.territory.clone(),
            size_class: a.profile.size_class.clone(),
            negative_since_ms: a.negative_since_ms,
            last_activity_ms: a.last_activity_ms,
            keys: a
                .keys
                .iter()
                .map(|k| {
                    let role = a.role_of(k).unwrap_or(core::KeyRole::Owner);
                    let grant = a.key_grants.get(k);
                    let caps = match role {
                        core::KeyRole::Payer { per_transfer_cap_minor, daily_cap_minor } => {
                            Some((per_transfer_cap_minor, daily_cap_minor))
                        }
                        _ => None,
                    };
                    AccountKey {
                        public_key: k.0.to_vec(),
                        role: role.name().to_string(),
                        per_transfer_cap_minor: caps.map(|c| c.0),
                        daily_cap_minor: caps.map(|c| c.1),
                        day: grant.map_or(0, |g| g.day),
                        spent_minor: grant.map_or(0, |g| g.spent_minor),
                    }
                })
                .collect(),
            reserved_minor: a.recorded_reserved_minor(),
            pending: a
                .pending
                .iter()
                .map(|p| PendingPayment {
                    pending_id: p.id,
                    payee: p.payee.to_string(),
                    amount_minor: p.amount_minor,
                    public_key: p.key.0.to_vec(),
                    expires_ms: p.expires_ms,
                    memo: p.memo.clone(),
                })
                .collect(),
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
/// `cercle_limits::INVOICE_AMOUNT_MAX_MINOR`); saturate rather than wrap if not.
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

impl TryFrom<&SignedTreeHead> for core::checkpoint::SignedTreeHead {
    type Error = Reject;

    fn try_from(t: &SignedTreeHead) -> Result<Self, Reject> {
        Ok(core::checkpoint::SignedTreeHead {
            head: core::checkpoint::TreeHead {
                ledger_id: core::LedgerId(
                    t.ledger_id
                        .as_slice()
                        .try_into()
                        .map_err(|_| malformed("the tree head's ledger_id must be 16 bytes"))?,
                ),
                tree_size: t.tree_size,
                root_hash: hash32(&t.root_hash, "the tree head's root_hash")?,
                timestamp_ms: t.timestamp_ms,
            },
            signature: t
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| malformed("the tree head's signature must be 64 bytes"))?,
        })
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
            genesis_quorum: u32::from(g.quorum),
            // The genesis's roles until the node fills in the current ones.
            current_admin_keys: g.admin_keys.iter().map(|k| k.0.to_vec()).collect(),
            current_auditor_keys: g.auditor_keys.iter().map(|k| k.0.to_vec()).collect(),
            quorum: u32::from(g.quorum),
            quorum_limit_above_minor: None,
            fees: None,
            day_offset_minutes: i32::from(g.day_offset_minutes),
            node_keys: node_key_eras(&core::NodeKeys::from_genesis(g)),
        }
    }
}

/// The node key history as `LedgerInfo` lists it.
pub fn node_key_eras(keys: &core::NodeKeys) -> Vec<NodeKeyEra> {
    keys.eras().iter().map(|e| NodeKeyEra { from_size: e.from_size, key: e.key.0.to_vec() }).collect()
}

/// The node key history a `LedgerInfo` lists, checked against its genesis: the first key
/// must be the genesis's. An empty list (a node from before rotations) is the genesis's key.
pub fn node_keys_of(info: &LedgerInfo, genesis: &core::Genesis) -> Result<core::NodeKeys, Reject> {
    if info.node_keys.is_empty() {
        return Ok(core::NodeKeys::from_genesis(genesis));
    }
    let eras = info
        .node_keys
        .iter()
        .map(|e| Ok(core::NodeKeyEra { from_size: e.from_size, key: public_key(&e.key, "node key")? }))
        .collect::<Result<Vec<_>, Reject>>()?;
    if eras[0].key != genesis.node_key {
        return Err(malformed(format!(
            "the node key history starts with {}, not the genesis's node key {}",
            eras[0].key, genesis.node_key
        )));
    }
    core::NodeKeys::from_eras(&eras).map_err(|e| malformed(format!("node key history: {e}")))
}

impl From<&core::FeeSchedule> for FeeSchedule {
    fn from(f: &core::FeeSchedule) -> Self {
        FeeSchedule {
            account: f.account.to_string(),
            transfer_levy_bp: u32::from(f.transfer_levy_bp),
            levy_on: f.levy_on.name().to_string(),
            membership_minor: f.membership_minor.iter().map(|(c, a)| (c.clone(), *a)).collect(),
            demurrage_bp: u32::from(f.demurrage_bp),
            demurrage_above_minor: f.demurrage_above_minor,
            group_membership_minor: f
                .group_membership_minor
                .iter()
                .map(|(g, a)| (g.to_string(), *a))
                .collect(),
        }
    }
}

impl TryFrom<FeeSchedule> for core::FeeSchedule {
    type Error = Reject;

    fn try_from(f: FeeSchedule) -> Result<Self, Reject> {
        let schedule = core::FeeSchedule {
            account: core::AccountId::parse(&f.account)
                .map_err(|e| malformed(format!("fee account: {e}")))?,
            transfer_levy_bp: u16::try_from(f.transfer_levy_bp)
                .map_err(|_| malformed("transfer levy out of range"))?,
            levy_on: core::LevyOn::from_name(&f.levy_on)
                .ok_or_else(|| malformed("levy_on must be payer, payee or split"))?,
            membership_minor: f.membership_minor.into_iter().collect(),
            demurrage_bp: u16::try_from(f.demurrage_bp).map_err(|_| malformed("demurrage out of range"))?,
            demurrage_above_minor: f.demurrage_above_minor,
            group_membership_minor: f
                .group_membership_minor
                .into_iter()
                .map(|(g, a)| {
                    core::GroupName::parse(&g)
                        .map(|g| (g, a))
                        .map_err(|e| malformed(format!("group fee: {e}")))
                })
                .collect::<Result<_, _>>()?,
        };
        schedule.check().map_err(|e| malformed(format!("fee schedule: {e}")))?;
        Ok(schedule)
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
            quorum: match i.genesis_quorum {
                0 => 1,
                q => u8::try_from(q).map_err(|_| malformed("genesis_quorum out of range"))?,
            },
            day_offset_minutes: i16::try_from(i.day_offset_minutes)
                .map_err(|_| malformed("day_offset_minutes out of range"))?,
        };
        genesis.validate().map_err(|e| malformed(e.to_string()))?;
        Ok(genesis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_view_crosses_the_wire_and_its_hash_is_checked() {
        let entry = core::Entry {
            sequence: 3,
            timestamp_ms: 9,
            prev_hash: [1; 32],
            envelope: core::Envelope::single(vec![5; 10], PublicKey([2; 32]), [3; 64]),
            balances_after: vec![core::BalanceAfter {
                account: AccountId::parse("abc").unwrap(),
                balance_minor: 4,
            }],
            sections: vec![core::Section {
                tag: core::SectionTag::Clearing,
                parts: vec![vec![1], vec![2], vec![3]],
            }],
        };
        for view in [core::EntryView::whole(&entry), core::EntryView::of(&entry, |_, i| i == 1)] {
            let wire = Entry::from(&view);
            assert_eq!(core::EntryView::try_from(wire.clone()), Ok(view.clone()));
            let mut forged = wire.clone();
            forged.balances_after[0].balance_minor += 1;
            assert!(core::EntryView::try_from(forged).is_err(), "a changed balance no longer hashes");
            let mut forged = wire;
            forged.sections[0].parts[0].data[0] ^= 1;
            assert!(core::EntryView::try_from(forged).is_err(), "a changed part is not in its root");
        }
        assert_eq!(core::EntryView::whole(&entry).into_entry(), Some(entry));
    }
}
