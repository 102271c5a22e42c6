//! `ListKeyAccounts`: which accounts the calling key may act for.
//!
//! A client that holds only a key (the browser app after a key file is imported, or a key
//! made in the browser and registered by the association) learns here which handles it
//! signs for, and whether the key governs the ledger, without asking its user. The read is
//! signed like every other, and tells the caller only about its own key.

use cercle_core::Genesis;
use cercle_proto as pb;
use tonic::Request;

use crate::auth::{Caller, authenticate};
use crate::error::ServiceError;
use crate::now_ms;
use crate::view::View;

pub use cercle_limits::KEY_ACCOUNTS_MAX;

/// The answer to `request`, signed by the key it asks about.
pub fn list(
    genesis: &Genesis,
    view: &View,
    request: &Request<pb::ListKeyAccountsRequest>,
) -> Result<pb::ListKeyAccountsResponse, ServiceError> {
    let roles = view.roles();
    let key = match authenticate(genesis, &roles, request, "ListKeyAccounts", now_ms())? {
        Caller::Governance(key) | Caller::Key(key) => key,
    };
    let accounts = view.accounts_holding(&key, KEY_ACCOUNTS_MAX);
    Ok(pb::ListKeyAccountsResponse {
        accounts,
        administrator: roles.is_admin(&key),
        auditor: roles.is_auditor(&key),
    })
}
