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

use cercle_proto::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, SUBMIT_BATCH_MAX};

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

    /// Converts, verifies (strictly) and decodes one envelope: everything that can happen
    /// before the writer, in that order, so nothing unsigned is even parsed.
    fn check_envelope(
        &self,
        envelope: pb::Envelope,
    ) -> Result<(core::Envelope, core::Operation), ServiceError> {
        let envelope = core::Envelope::try_from(envelope).map_err(|r| self.reject(r))?;
        verify_envelope(&self.genesis, &envelope).map_err(|r| self.reject(r))?;
        let op = cercle_proto::decode_operation(&envelope.body).map_err(|r| self.reject(r))?;
        Ok((envelope, op))
    }

    async fn submit_envelope(&self, envelope: Option<pb::Envelope>) -> Result<Receipt, ServiceError> {
        let envelope =
            envelope.ok_or_else(|| ServiceError::InvalidArgument("the request has no envelope".into()))?;
        let (envelope, op) = self.check_envelope(envelope)?;
        let receipt = self.writer.submit(envelope, op).await?;
        log_receipt(&receipt);
        Ok(receipt)
    }

    /// Checks a batch's envelopes in parallel on the blocking pool (signature verification
    /// is the expensive part), then hands the valid ones to the writer together.
    async fn submit_many(&self, envelopes: Vec<pb::Envelope>) -> Vec<Result<Receipt, ServiceError>> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let chunk_len = envelopes.len().div_ceil(workers).max(1);
        let mut chunks = Vec::new();
        let mut rest = envelopes;
        while !rest.is_empty() {
            let tail = rest.split_off(chunk_len.min(rest.len()));
            let chunk = std::mem::replace(&mut rest, tail);
            let this = self.clone();
            chunks.push(tokio::task::spawn_blocking(move || {
                chunk.into_iter().map(|e| this.check_envelope(e)).collect::<Vec<_>>()
            }));
        }
        let mut checked = Vec::new();
        for chunk in chunks {
            match chunk.await {
                Ok(results) => checked.extend(results),
                Err(e) => {
                    return vec![Err(ServiceError::Internal(format!("verification task failed: {e}")))];
                }
            }
        }
        let mut results: Vec<Option<Result<Receipt, ServiceError>>> = Vec::with_capacity(checked.len());
        let mut valid = Vec::new();
        for (i, c) in checked.into_iter().enumerate() {
            match c {
                Ok(ok) => {
                    valid.push((i, ok));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let (indexes, items): (Vec<usize>, Vec<_>) = valid.into_iter().unzip();
        for (i, outcome) in indexes.into_iter().zip(self.writer.submit_many(items).await) {
            if let Ok(receipt) = &outcome {
                log_receipt(receipt);
            }
            results[i] = Some(outcome);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ServiceError::Internal("an envelope got no result".into()))))
            .collect()
    }
}

fn log_receipt(receipt: &Receipt) {
    tracing::debug!(
        sequence = receipt.entry.sequence,
        operation_id = %receipt.operation_id,
        duplicate = receipt.duplicate,
        "operation accepted"
    );
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

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let envelopes = request.into_inner().envelopes;
        if envelopes.len() > SUBMIT_BATCH_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a batch holds at most {SUBMIT_BATCH_MAX} envelopes, this one has {}",
                envelopes.len()
            ))
            .into());
        }
        let results = self
            .submit_many(envelopes)
            .await
            .into_iter()
            .map(|r| pb::SubmitResult {
                outcome: Some(match r {
                    Ok(receipt) => pb::submit_result::Outcome::Receipt(receipt_to_pb(&receipt)),
                    Err(e) => pb::submit_result::Outcome::Rejection(e.into_pb_rejection()),
                }),
            })
            .collect();
        Ok(Response::new(pb::SubmitBatchResponse { results }))
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
