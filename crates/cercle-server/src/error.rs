//! The service's error codes, mapped to gRPC status in one exhaustive match.

use cercle_core::{RejectCode, Rejection};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The domain of the `google.rpc.ErrorInfo` attached to every rejection.
pub const ERROR_DOMAIN: &str = "cercle.v1";

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// The ledger refused the operation; the message names the numbers.
    #[error("{message}")]
    Rejected { rejection: Rejection, message: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A bounded queue is full: the caller should retry later.
    #[error("{0}")]
    Busy(String),
    /// The disk is full: writes are refused until there is room; reads go on.
    #[error("{0}")]
    DiskFull(String),
    /// A node key rotation to a key whose secret this node does not hold: refused before
    /// the log, so the node is never left unable to sign.
    #[error("{0}")]
    NodeKeyMissing(String),
    /// The node could not decide (it is stopping, or a write failed): retry as is.
    #[error("{0}")]
    Unavailable(String),
    /// Details go to the log, never to the client.
    #[error("internal error")]
    Internal(String),
}

impl ServiceError {
    pub fn rejected(rejection: Rejection, currency: &str, exponent: u8) -> Self {
        let message = rejection.message(currency, exponent);
        ServiceError::Rejected { rejection, message }
    }
}

impl ServiceError {
    /// The reason's name, for the metrics: a ledger code's name, or the kind of refusal.
    pub fn reason_name(&self) -> &'static str {
        match self {
            ServiceError::Rejected { rejection, .. } => rejection.code().name(),
            ServiceError::Unauthenticated(_) => "UNAUTHENTICATED",
            ServiceError::PermissionDenied(_) => "PERMISSION_DENIED",
            ServiceError::NotFound(_) => "NOT_FOUND",
            ServiceError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ServiceError::Busy(_) => "BUSY",
            ServiceError::DiskFull(_) => "DISK_FULL",
            ServiceError::NodeKeyMissing(_) => "NODE_KEY_MISSING",
            ServiceError::Unavailable(_) => "UNAVAILABLE",
            ServiceError::Internal(_) => "INTERNAL",
        }
    }

    /// The outcome of one envelope of a batch, as a wire rejection. Errors that are not
    /// the ledger's decision carry code 0 and say whether a retry makes sense.
    pub fn into_pb_rejection(self) -> cercle_proto::Rejection {
        let (code, reason, message) = match self {
            ServiceError::Rejected { rejection, message } => {
                let code = rejection.code();
                (code as u32, code.name().to_string(), message)
            }
            ServiceError::Busy(m) => (0, "BUSY".into(), m),
            ServiceError::DiskFull(m) => (0, "DISK_FULL".into(), m),
            ServiceError::NodeKeyMissing(m) => (0, "NODE_KEY_MISSING".into(), m),
            ServiceError::Unavailable(m) => (0, "UNAVAILABLE".into(), m),
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (0, "INTERNAL".into(), "internal error; the node's log has the details".into())
            }
            ServiceError::Unauthenticated(m)
            | ServiceError::PermissionDenied(m)
            | ServiceError::NotFound(m)
            | ServiceError::InvalidArgument(m) => (RejectCode::Malformed as u32, "MALFORMED".into(), m),
        };
        cercle_proto::Rejection { code, reason, message }
    }
}

fn rejection_code(code: RejectCode) -> Code {
    match code {
        RejectCode::Malformed
        | RejectCode::BodyTooLarge
        | RejectCode::ValidityTooLong
        | RejectCode::InvalidText
        | RejectCode::InvalidKeys
        | RejectCode::InvalidLimit
        | RejectCode::NothingToChange
        | RejectCode::InvalidAmount
        | RejectCode::InvalidInvoice
        | RejectCode::InvalidProfile
        | RejectCode::InvoicePartiesMismatch
        | RejectCode::QuorumInvalid
        | RejectCode::FeesInvalid
        | RejectCode::NodeKeyInvalid
        | RejectCode::LimitRuleInvalid
        | RejectCode::SelfTransfer => Code::InvalidArgument,
        RejectCode::BadSignature => Code::Unauthenticated,
        RejectCode::NotAdministrator
        | RejectCode::NotAccountKey
        | RejectCode::QuorumNotMet
        | RejectCode::KeyRoleNotAllowed => Code::PermissionDenied,
        RejectCode::UnknownAccount | RejectCode::UnknownInvoice | RejectCode::UnknownGroup => Code::NotFound,
        RejectCode::OperationIdConflict
        | RejectCode::AccountExists
        | RejectCode::InvoiceExists
        | RejectCode::GroupExists
        | RejectCode::PeriodAlreadyCharged => Code::AlreadyExists,
        RejectCode::TooManyOpenInvoices
        | RejectCode::TooManyGroups
        | RejectCode::TooManyObligations
        | RejectCode::TooManyAccounts
        | RejectCode::TooManyRoleKeys
        | RejectCode::LimitRuleTooManyFirms
        | RejectCode::TooManyCharges => Code::ResourceExhausted,
        RejectCode::Expired
        | RejectCode::AccountFrozen
        | RejectCode::AlreadyFrozen
        | RejectCode::NotFrozen
        | RejectCode::CreditLimitExceeded
        | RejectCode::MaxBalanceExceeded
        | RejectCode::InvoiceStateConflict
        | RejectCode::InvoiceOverpaid
        | RejectCode::NothingToClear
        | RejectCode::PeriodNotBegun
        | RejectCode::NoFeeSchedule
        | RejectCode::NothingToCharge
        | RejectCode::ClearingInvalid
        | RejectCode::LastAdministrator
        | RejectCode::RoleAlreadyHeld
        | RejectCode::RoleNotHeld
        | RejectCode::AccountClosed
        | RejectCode::KeyAlreadyRegistered
        | RejectCode::AccountNotSettled
        | RejectCode::WriteOffInvalid
        | RejectCode::NodeKeyInForce
        | RejectCode::NodeKeyUsedBefore
        | RejectCode::NotInGroup
        | RejectCode::LimitRuleChanged
        | RejectCode::LimitRuleNoFirms
        | RejectCode::KeyCapExceeded
        | RejectCode::LastOwnerKey
        | RejectCode::KeyAlreadyOnAccount
        | RejectCode::KeyNotOnAccount
        | RejectCode::PendingExpired
        | RejectCode::PendingPaymentsOpen => Code::FailedPrecondition,
        RejectCode::PendingUnknown => Code::NotFound,
        RejectCode::TooManyPending => Code::ResourceExhausted,
        RejectCode::BalanceOverflow => Code::OutOfRange,
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::Rejected { rejection, message } => {
                let code = rejection.code();
                let details = ErrorDetails::with_error_info(
                    code.name(),
                    ERROR_DOMAIN,
                    [("code".to_string(), (code as u16).to_string())],
                );
                Status::with_error_details(rejection_code(code), message, details)
            }
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::Busy(m) | ServiceError::DiskFull(m) => Status::resource_exhausted(m),
            ServiceError::Unavailable(m) => Status::unavailable(m),
            // Refused before the log, for certain: said like a rejection (its reason, no
            // ledger code, since it is this node's refusal and no replay's), so a client
            // knows nothing was accepted.
            ServiceError::NodeKeyMissing(m) => {
                let details = ErrorDetails::with_error_info(
                    "NODE_KEY_MISSING",
                    ERROR_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                );
                Status::with_error_details(Code::FailedPrecondition, m, details)
            }
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error; the node's log has the details")
            }
        }
    }
}

impl From<cercle_store::StoreError> for ServiceError {
    fn from(e: cercle_store::StoreError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}
