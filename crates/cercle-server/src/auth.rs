//! Read authentication: who is asking, proven by a signature in the request metadata.
//!
//! A read carries `x-cercle-pubkey`, `x-cercle-timestamp` (ms since the Unix epoch) and
//! `x-cercle-signature` over `cercle_core::sign::read_auth_message`: the method, the
//! timestamp and a hash of the request message itself, re-encoded here from what was
//! decoded. The timestamp must be within `READ_AUTH_SKEW_MS` of the node's clock, which
//! bounds how long a captured header set can be replayed, and only for the very same
//! request (same account, page, period).

use cercle_core::{Genesis, PublicKey, Roles, sign};
use cercle_limits::READ_AUTH_SKEW_MS;
use tonic::metadata::MetadataMap;

use crate::error::ServiceError;

pub use cercle_proto::read_auth::{PUBKEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Who a verified caller is, as far as reading goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An administrator or auditor: may read everything.
    Governance(PublicKey),
    /// Any other key: may read the accounts that list it.
    Key(PublicKey),
}

fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Result<Option<&'a str>, ServiceError> {
    match metadata.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ServiceError::Unauthenticated(format!("header {name} is not ASCII"))),
    }
}

/// Checks the read signature of `request`, a call of `method`, at node time `now_ms`.
/// Governance is judged by `roles`, the administrators and auditors as the ledger's state
/// holds them now (not the genesis's: roles change by signed operations).
pub fn authenticate<T: prost::Message>(
    genesis: &Genesis,
    roles: &Roles,
    request: &tonic::Request<T>,
    method: &str,
    now_ms: u64,
) -> Result<Caller, ServiceError> {
    let metadata = request.metadata();
    let Some(pubkey) = header(metadata, PUBKEY_HEADER)? else {
        return Err(ServiceError::Unauthenticated(format!(
            "this read needs the caller's key: sign it and send {PUBKEY_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}"
        )));
    };
    let key = PublicKey::from_hex(pubkey).map_err(ServiceError::Unauthenticated)?;
    let timestamp_ms: u64 = header(metadata, TIMESTAMP_HEADER)?
        .ok_or_else(|| ServiceError::Unauthenticated(format!("missing {TIMESTAMP_HEADER}")))?
        .parse()
        .map_err(|_| ServiceError::Unauthenticated(format!("{TIMESTAMP_HEADER} is not an integer")))?;
    if timestamp_ms.abs_diff(now_ms) > READ_AUTH_SKEW_MS {
        return Err(ServiceError::Unauthenticated(format!(
            "{TIMESTAMP_HEADER} {timestamp_ms} is more than {} s from the node's clock ({now_ms}); check the caller's clock",
            READ_AUTH_SKEW_MS / 1000
        )));
    }
    let signature: [u8; 64] = header(metadata, SIGNATURE_HEADER)?
        .ok_or_else(|| ServiceError::Unauthenticated(format!("missing {SIGNATURE_HEADER}")))
        .and_then(|s| {
            hex::decode(s).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
                ServiceError::Unauthenticated(format!("{SIGNATURE_HEADER} must be 128 hex digits"))
            })
        })?;
    let encoded = request.get_ref().encode_to_vec();
    let message = sign::read_auth_message(&genesis.ledger_id, method, timestamp_ms, &encoded);
    sign::verify(&key, &message, &signature).map_err(|e| {
        ServiceError::Unauthenticated(format!(
            "read signature rejected: {e} (it must cover {method}, the timestamp and the SHA-256 of the request's canonical encoding)"
        ))
    })?;
    if roles.is_governance(&key) { Ok(Caller::Governance(key)) } else { Ok(Caller::Key(key)) }
}
