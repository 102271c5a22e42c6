//! Invoices: a payee's signed claim on a payer, which becomes an obligation once the payer
//! accepts it, and is then settled by payments that name it or by clearing.
//!
//! Amounts: `amount_minor` is the whole invoice; `local_share_percent` of it (rounded down
//! to the minor unit) is payable in the ledger's currency, the rest in national currency
//! outside the ledger. Only the local part is an obligation here: it is what payments and
//! clearing reduce, and `open_minor` is what remains of it.

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::AccountId;

const INVOICE_VERSION: u8 = 1;

/// The client-chosen id of an invoice, 16 bytes, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvoiceId(pub [u8; 16]);

impl InvoiceId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = hex::decode(text).map_err(|_| {
            format!(
                "invalid invoice id '{}': expected 32 hex digits",
                text.chars().take(40).collect::<String>()
            )
        })?;
        let arr: [u8; 16] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("invalid invoice id: expected 16 bytes (32 hex digits), got {}", b.len())
        })?;
        Ok(InvoiceId(arr))
    }
}

impl fmt::Display for InvoiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Where an invoice is in its life. Issued, accepted and partly settled invoices are open;
/// the three others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InvoiceState {
    Issued,
    Accepted,
    PartlySettled,
    Settled,
    Rejected,
    Cancelled,
}

impl InvoiceState {
    pub const ALL: [InvoiceState; 6] = [
        InvoiceState::Issued,
        InvoiceState::Accepted,
        InvoiceState::PartlySettled,
        InvoiceState::Settled,
        InvoiceState::Rejected,
        InvoiceState::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InvoiceState::Issued => "issued",
            InvoiceState::Accepted => "accepted",
            InvoiceState::PartlySettled => "partly_settled",
            InvoiceState::Settled => "settled",
            InvoiceState::Rejected => "rejected",
            InvoiceState::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn is_open(self) -> bool {
        matches!(self, InvoiceState::Issued | InvoiceState::Accepted | InvoiceState::PartlySettled)
    }

    /// Accepted by the payer and not yet settled: an obligation.
    pub fn is_obligation(self) -> bool {
        matches!(self, InvoiceState::Accepted | InvoiceState::PartlySettled)
    }

    fn to_u8(self) -> u8 {
        match self {
            InvoiceState::Issued => 0,
            InvoiceState::Accepted => 1,
            InvoiceState::PartlySettled => 2,
            InvoiceState::Settled => 3,
            InvoiceState::Rejected => 4,
            InvoiceState::Cancelled => 5,
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: InvoiceId,
    /// Who issued the invoice and is owed.
    pub payee: AccountId,
    /// Who owes.
    pub payer: AccountId,
    /// The whole invoice, in minor units.
    pub amount_minor: i64,
    /// The share of the invoice payable in the ledger's currency, 1 to 100.
    pub local_share_percent: u8,
    /// Due date, days since 1970-01-01.
    pub due_day: Option<u32>,
    pub reference: String,
    pub state: InvoiceState,
    /// Paid by transfers naming the invoice, and by clearing through mutual credit.
    pub paid_minor: i64,
    /// Cancelled by set-off in a clearing run (no money moved).
    pub cleared_minor: i64,
    /// Left out of clearing runs at the request of one of the two firms.
    pub excluded_from_clearing: bool,
    /// The payer's reason for rejecting, or the payee's for cancelling.
    pub reason: String,
    pub issued_at_sequence: u64,
    pub last_sequence: u64,
}

/// The local-currency part of `amount_minor` at `percent`, rounded down. Never overflows:
/// the product is computed in i128 and the result is at most `amount_minor`.
pub fn local_part(amount_minor: i64, percent: u8) -> i64 {
    let local = i128::from(amount_minor) * i128::from(percent) / 100;
    i64::try_from(local).unwrap_or(amount_minor)
}

impl Invoice {
    /// The obligation: the part payable in the ledger's currency.
    pub fn local_minor(&self) -> i64 {
        local_part(self.amount_minor, self.local_share_percent)
    }

    /// The part settled in national currency outside the ledger.
    pub fn national_minor(&self) -> i64 {
        self.amount_minor - self.local_minor()
    }

    /// What remains to be paid or cleared; zero once the invoice is final.
    pub fn open_minor(&self) -> i64 {
        if !self.state.is_open() {
            return 0;
        }
        // paid + cleared <= local always holds (checked when either grows).
        self.local_minor() - self.paid_minor - self.cleared_minor
    }

    /// The order in which clearing allocates a pair's cleared amount to its invoices:
    /// oldest due date first (no due date last), then oldest issued, then by id.
    pub fn clearing_order_key(&self) -> (u32, u64, InvoiceId) {
        (self.due_day.unwrap_or(u32::MAX), self.issued_at_sequence, self.id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(INVOICE_VERSION)
            .fixed(&self.id.0)
            .str(self.payee.as_str())
            .str(self.payer.as_str())
            .i64(self.amount_minor)
            .u8(self.local_share_percent);
        match self.due_day {
            None => w.u8(0),
            Some(d) => w.u8(1).u32(d),
        };
        w.str(&self.reference)
            .u8(self.state.to_u8())
            .i64(self.paid_minor)
            .i64(self.cleared_minor)
            .u8(u8::from(self.excluded_from_clearing))
            .str(&self.reason)
            .u64(self.issued_at_sequence)
            .u64(self.last_sequence);
        // Extensions, as for accounts: none yet.
        w.u8(0);
        w.buf
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("invoice version")?;
        if version != INVOICE_VERSION {
            return Err(DecodeError::Version(version));
        }
        let account = |r: &mut Reader<'_>, what: &'static str| {
            AccountId::parse(&r.string(what)?).map_err(|_| DecodeError::Invalid(what))
        };
        let id = InvoiceId(r.array("invoice id")?);
        let payee = account(&mut r, "payee")?;
        let payer = account(&mut r, "payer")?;
        let amount_minor = r.i64("amount")?;
        let local_share_percent = r.u8("local share")?;
        let due_day = match r.u8("due date flag")? {
            0 => None,
            1 => Some(r.u32("due date")?),
            _ => return Err(DecodeError::Invalid("due date flag")),
        };
        let reference = r.string("reference")?;
        let state =
            InvoiceState::from_u8(r.u8("invoice state")?).ok_or(DecodeError::Invalid("invoice state"))?;
        let paid_minor = r.i64("paid")?;
        let cleared_minor = r.i64("cleared")?;
        let excluded_from_clearing = match r.u8("excluded flag")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("excluded flag")),
        };
        let reason = r.string("reason")?;
        let issued_at_sequence = r.u64("issued at")?;
        let last_sequence = r.u64("last sequence")?;
        if r.u8("extension count")? != 0 {
            return Err(DecodeError::Invalid("invoice extensions"));
        }
        r.finish()?;
        Ok(Invoice {
            id,
            payee,
            payer,
            amount_minor,
            local_share_percent,
            due_day,
            reference,
            state,
            paid_minor,
            cleared_minor,
            excluded_from_clearing,
            reason,
            issued_at_sequence,
            last_sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice() -> Invoice {
        Invoice {
            id: InvoiceId([7; 16]),
            payee: AccountId::parse("payee").unwrap(),
            payer: AccountId::parse("payer").unwrap(),
            amount_minor: 10_001,
            local_share_percent: 30,
            due_day: Some(20_000),
            reference: "F-2026-042".into(),
            state: InvoiceState::PartlySettled,
            paid_minor: 1_000,
            cleared_minor: 500,
            excluded_from_clearing: true,
            reason: String::new(),
            issued_at_sequence: 3,
            last_sequence: 9,
        }
    }

    #[test]
    fn parts_round_down_and_add_up() {
        let check = |amount: i64, percent: u8, local: i64| {
            assert_eq!(local_part(amount, percent), local, "{amount} at {percent}%");
        };
        check(10_001, 30, 3_000);
        check(10_000, 100, 10_000);
        check(99, 1, 0);
        check(i64::MAX, 100, i64::MAX);
        check(i64::MAX, 99, (i128::from(i64::MAX) * 99 / 100) as i64);
        let inv = invoice();
        assert_eq!(inv.local_minor() + inv.national_minor(), inv.amount_minor);
        assert_eq!(inv.open_minor(), 3_000 - 1_500);
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let inv = invoice();
        let bytes = inv.encode();
        assert_eq!(Invoice::decode(&bytes), Ok(inv.clone()));
        let mut none = inv.clone();
        none.due_day = None;
        assert_eq!(Invoice::decode(&none.encode()), Ok(none));
        assert!(Invoice::decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(InvoiceId::parse(&inv.id.to_string()), Ok(inv.id));
        assert!(InvoiceId::parse("abc").is_err());
    }
}
