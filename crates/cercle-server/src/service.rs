//! The gRPC handlers: decode, authenticate, hand to the core or the writer, map the
//! outcome. No business logic lives here.

use std::sync::Arc;

use cercle_core::{self as core, AccountId, Genesis, verify_envelope};
use cercle_proto as pb;
use cercle_store::Store;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, authenticate};
use crate::error::ServiceError;
use crate::now_ms;
use crate::writer::{Receipt, WriterHandle};

use cercle_proto::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};

#[derive(Clone)]
pub struct LedgerService {
    genesis: Arc<Genesis>,
    store: Arc<Store>,
    writer: WriterHandle,
}

impl LedgerService {
    pub fn new(genesis: Arc<Genesis>, store: Arc<Store>, writer: WriterHandle) -> Self {
        LedgerService { genesis, store, writer }
    }

    fn reject(&self, rejection: core::Rejection) -> ServiceError {
        ServiceError::rejected(rejection, &self.genesis.currency, self.genesis.exponent)
    }

    /// Authenticates a read of `account` and checks the caller may see it.
    fn authorize_read(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        method: &str,
        account: &str,
    ) -> Result<AccountId, ServiceError> {
        let caller = authenticate(&self.genesis, metadata, method, account, now_ms())?;
        let id = AccountId::parse(account).map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        match caller {
            Caller::Governance(_) => Ok(id),
            Caller::Key(key) => match self.store.account(&id)? {
                Some(a) if a.keys.contains(&key) => Ok(id),
                // Whether the account exists is itself not the caller's business.
                _ => Err(ServiceError::PermissionDenied(format!(
                    "key {key} may not read account '{account}': a firm reads only its own account"
                ))),
            },
        }
    }

    async fn submit_envelope(&self, envelope: Option<pb::Envelope>) -> Result<Receipt, ServiceError> {
        let envelope =
            envelope.ok_or_else(|| ServiceError::InvalidArgument("the request has no envelope".into()))?;
        let envelope = core::Envelope::try_from(envelope).map_err(|r| self.reject(r))?;
        // Strict verification first, then decoding: nothing unsigned is even parsed.
        verify_envelope(&self.genesis, &envelope).map_err(|r| self.reject(r))?;
        let op = cercle_proto::decode_operation(&envelope.body).map_err(|r| self.reject(r))?;
        let receipt = self.writer.submit(envelope, op).await?;
        tracing::info!(
            sequence = receipt.entry.sequence,
            operation_id = %receipt.operation_id,
            duplicate = receipt.duplicate,
            "operation accepted"
        );
        Ok(receipt)
    }
}

pub fn receipt_to_pb(r: &Receipt) -> pb::Receipt {
    pb::Receipt {
        sequence: r.entry.sequence,
        timestamp_ms: r.entry.timestamp_ms,
        entry_hash: r.entry.hash().to_vec(),
        operation_id: r.operation_id.0.to_vec(),
        balances_after: r.entry.balances_after.iter().map(Into::into).collect(),
        duplicate: r.duplicate,
    }
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn get_ledger_info(
        &self,
        _request: Request<pb::GetLedgerInfoRequest>,
    ) -> Result<Response<pb::LedgerInfo>, Status> {
        let mut info = pb::LedgerInfo::from(self.genesis.as_ref());
        info.log_size = self.store.head().map_err(ServiceError::from)?.size;
        Ok(Response::new(info))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        match self.submit_envelope(request.into_inner().envelope).await {
            Ok(receipt) => Ok(Response::new(pb::SubmitResponse { receipt: Some(receipt_to_pb(&receipt)) })),
            Err(e) => {
                tracing::info!(error = %e, "operation not accepted");
                Err(e.into())
            }
        }
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let id = self.authorize_read(request.metadata(), "GetAccount", &request.get_ref().account)?;
        let account = self
            .store
            .account(&id)
            .map_err(ServiceError::from)?
            .ok_or_else(|| ServiceError::NotFound(format!("unknown account '{id}'")))?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some((&account).into()),
            currency: self.genesis.currency.clone(),
            exponent: u32::from(self.genesis.exponent),
        }))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let id = self.authorize_read(request.metadata(), "ListEntries", &request.get_ref().account)?;
        let req = request.into_inner();
        let page_size = match req.page_size {
            0 => PAGE_SIZE_DEFAULT,
            n if n > PAGE_SIZE_MAX => {
                return Err(ServiceError::InvalidArgument(format!(
                    "page_size {n} is too large; the maximum is {PAGE_SIZE_MAX}"
                ))
                .into());
            }
            n => n,
        };
        if self.store.account(&id).map_err(ServiceError::from)?.is_none() {
            return Err(ServiceError::NotFound(format!("unknown account '{id}'")).into());
        }
        let store = self.store.clone();
        let after = req.after_sequence;
        let (entries, more) =
            tokio::task::spawn_blocking(move || store.history(&id, after, page_size as usize))
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?
                .map_err(ServiceError::from)?;
        let next_after_sequence = if more { entries.last().map(|e| e.sequence) } else { None };
        Ok(Response::new(pb::ListEntriesResponse {
            entries: entries.iter().map(Into::into).collect(),
            next_after_sequence,
        }))
    }
}
