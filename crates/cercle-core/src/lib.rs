//! The pure core of the Cercle ledger: amounts, identifiers, operations, signature rules,
//! the state machine and its invariants, entries and their hash chain.
//!
//! Architecture invariant: nothing here reads a clock, storage, the network or a random
//! source, and nothing depends on an async runtime. Protobuf stays behind `body`, which
//! decodes signed operation bodies (generated types of `cercle-schema`, never in this
//! crate's API). Time and the previous state come in as arguments; outcomes come out as
//! values. The node, the tests and an auditor's replay all run this same code.

pub mod amount;
pub mod body;
pub mod charges;
pub mod checkpoint;
pub mod clearing;
pub mod codec;
pub mod entry;
pub mod fees;
pub mod genesis;
pub mod groups;
pub mod ids;
pub mod invoice;
pub mod ledger;
pub mod limitrule;
pub mod merkle;
pub mod node_keys;
pub mod op;
pub mod profile;
pub mod reject;
pub mod roles;
pub mod sign;
pub mod state;
pub mod time;

pub use amount::{AmountError, format_minor, format_with_currency, parse_major};
pub use clearing::{ClearingRecord, ClearingSummary};
pub use entry::{BalanceAfter, Entry, EntryView, Envelope, Section, SectionTag, Signature};
pub use fees::{FeeSchedule, Levy, LevyOn};
pub use genesis::Genesis;
pub use groups::{GroupName, Groups, LimitSource, Limits, MemberGroup, Membership};
pub use ids::{AccountId, LedgerId, OperationId, PublicKey};
pub use invoice::{Invoice, InvoiceId, InvoiceState};
pub use ledger::{
    Executed, Head, IdRecord, Ledger, Mark, OperationIds, ReplayError, Replayer, verify_envelope,
};
pub use limitrule::{FirmLimit, LimitRule, LimitRuleOutcome, MonthlySales};
pub use node_keys::{NodeKeyEra, NodeKeys};
pub use op::{
    AddKey, ApplyLimitRule, GroupLimits, InvoiceParties, IssueInvoice, KeyRole, OpKind, Operation,
    RegisterAccount, Role, RunClearing, SetFees, SetGroupLimits, SetLimits, SetProfile, SetQuorum, SetRole,
    Transfer,
};
pub use profile::{Profile, ProfileChange};
pub use reject::{RejectCode, Rejection};
pub use roles::{Roles, SensitiveAct};
pub use state::{
    Account, AccountStatus, BalanceChange, Bounds, ClearingInput, Context, Effects, KeyGrant, State,
};
