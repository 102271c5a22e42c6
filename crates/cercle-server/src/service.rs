//! The gRPC handlers: decode, authenticate, hand to the core or the writer, map the
//! outcome. No business logic lives here.

use std::sync::Arc;
use std::time::Duration;

use cercle_core::checkpoint::{Statement, TreeHead};
use cercle_core::sign::Keypair;
use cercle_core::{self as core, AccountId, Genesis, verify_envelope};
use cercle_limits::{
    INDICATOR_REPORTS_MAX, INVOICE_SCAN_MAX, PAGE_BYTES_MAX, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX,
    STATEMENT_HISTORY_MAX, SUBMIT_BATCH_MAX,
};
use cercle_proto as pb;
use cercle_store::ProofRequestError;
use cercle_store::Store;
use tonic::{Request, Response, Status};

use crate::admission::Verifiers;
use crate::auth::{Caller, authenticate};
use crate::error::ServiceError;
use crate::limits::ServerLimits;
use crate::metrics::Metrics;
use crate::node_keys::NodeKeyring;
use crate::now_ms;
use crate::streams::{self, StreamGate};
use crate::view::View;
use crate::writer::{self, Receipt, WriterHandle};
use cercle_indicators::accounts::{AccountFilter, AccountOrder, SignFilter};
use cercle_indicators::{Computer, IndicatorError, Query};

#[derive(Clone)]
pub struct LedgerService {
    genesis: Arc<Genesis>,
    /// The log and its proofs.
    store: Arc<Store>,
    /// Accounts, invoices and histories as of the last durable group.
    view: Arc<View>,
    writer: WriterHandle,
    /// The node keys' secrets: each tree head and statement is signed with the key in
    /// force for its size.
    keyring: Arc<NodeKeyring>,
    /// Bounds the batch verification tasks on the blocking pool.
    verifiers: Verifiers,
    /// Bounds the open `StreamEntries` streams.
    streams: Arc<StreamGate>,
    stream_send_timeout: Duration,
    metrics: Arc<Metrics>,
    /// Bounds the indicator reports computed at once (`INDICATOR_REPORTS_MAX`).
    indicator_reports: Arc<tokio::sync::Semaphore>,
}

impl LedgerService {
    pub fn new(
        genesis: Arc<Genesis>,
        store: Arc<Store>,
        view: Arc<View>,
        writer: WriterHandle,
        keyring: Arc<NodeKeyring>,
        limits: &ServerLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        LedgerService {
            genesis,
            store,
            view,
            writer,
            keyring,
            verifiers: Verifiers::per_core(),
            streams: Arc::new(StreamGate::new(limits.streams_per_key_max, limits.streams_max)),
            stream_send_timeout: limits.stream_send_timeout,
            indicator_reports: Arc::new(tokio::sync::Semaphore::new(INDICATOR_REPORTS_MAX)),
            metrics,
        }
    }

    /// Counts an operation's answer in the metrics.
    fn count<T>(&self, outcome: &Result<T, ServiceError>, duplicate: impl FnOnce(&T) -> bool) {
        match outcome {
            Ok(receipt) => self.metrics.count_outcome(true, duplicate(receipt)),
            Err(e) => self.metrics.count_rejected(e.reason_name()),
        }
    }

    /// The writer these handlers hand operations to.
    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    /// Authenticates a read that only administrators and auditors may make; returns the
    /// caller's key.
    fn authorize_governance<T: prost::Message>(
        &self,
        request: &Request<T>,
        method: &str,
    ) -> Result<core::PublicKey, ServiceError> {
        match authenticate(&self.genesis, &self.view.roles(), request, method, now_ms())? {
            Caller::Governance(key) => Ok(key),
            Caller::Key(key) => Err(ServiceError::PermissionDenied(format!(
                "key {key} may not call {method}: administrators and auditors only"
            ))),
        }
    }

    /// Every entry of `id` up to `tree_size`, as the account's holder sees it, with its
    /// decoded operation, within a bound.
    fn account_history(
        &self,
        id: &AccountId,
        tree_size: u64,
    ) -> Result<Vec<(core::EntryView, core::Operation)>, ServiceError> {
        let mut history = Vec::new();
        let mut after = 0;
        loop {
            let page = self.view.history(id, after, PAGE_SIZE_MAX as usize)?;
            for &sequence in &page {
                if sequence > tree_size {
                    return Ok(history);
                }
                after = sequence;
                let entry = self.read_entry(sequence)?;
                let op = decode_logged(&entry)?;
                history.push((core::EntryView::for_account(&entry, id), op));
                if history.len() > STATEMENT_HISTORY_MAX {
                    return Err(ServiceError::InvalidArgument(format!(
                        "the account has more than {STATEMENT_HISTORY_MAX} entries; statements of such accounts are not supported yet"
                    )));
                }
            }
            if page.len() < PAGE_SIZE_MAX as usize {
                return Ok(history);
            }
        }
    }

    /// A page of `id`'s history as its holder sees it, oldest first after
    /// `after_sequence`, or newest first before `before_sequence` (0: from the end); and
    /// whether more follow. A page also stops after `PAGE_BYTES_MAX` bytes.
    fn history_page(
        &self,
        id: &AccountId,
        req: &pb::ListEntriesRequest,
        limit: usize,
    ) -> Result<(Vec<core::EntryView>, bool), ServiceError> {
        let sequences = if req.newest_first {
            let before = if req.before_sequence == 0 { u64::MAX } else { req.before_sequence };
            self.view.history_back(id, before, limit + 1)?
        } else {
            self.view.history(id, req.after_sequence, limit + 1)?
        };
        let mut more = sequences.len() > limit;
        let mut views = Vec::with_capacity(sequences.len().min(limit));
        let mut bytes = 0;
        for &sequence in sequences.iter().take(limit) {
            if bytes > PAGE_BYTES_MAX {
                more = true;
                break;
            }
            let entry = self.read_entry(sequence)?;
            let view = core::EntryView::for_account(&entry, id);
            bytes += view.commitment().len()
                + view.sections.iter().flat_map(|s| &s.parts).map(|p| p.data.len()).sum::<usize>();
            views.push(view);
        }
        Ok((views, more))
    }

    fn read_entry(&self, sequence: u64) -> Result<core::Entry, ServiceError> {
        self.store
            .entry(sequence)?
            .ok_or_else(|| ServiceError::Internal(format!("entry {sequence} is indexed but missing")))
    }

    /// The account of `key` that `entry` concerns, if any: the view a firm is shown of an
    /// entry is its own account's.
    fn account_of_key_in(
        &self,
        key: &core::PublicKey,
        entry: &core::Entry,
    ) -> Result<Option<AccountId>, ServiceError> {
        let op = decode_logged(entry)?;
        let whole = core::EntryView::whole(entry);
        let mut candidates: Vec<AccountId> = op.kind.accounts().into_iter().cloned().collect();
        // A levied transfer's entry also changes the association's account.
        candidates.extend(entry.balances_after.iter().map(|b| b.account.clone()));
        if let Some(section) = entry.section(core::SectionTag::Clearing) {
            for part in section.parts.iter().skip(1) {
                if let Ok(p) = core::clearing::FirmPart::decode(part) {
                    candidates.push(p.firm.account);
                }
            }
        }
        if let Some(section) = entry.section(core::SectionTag::LimitRule) {
            for part in section.parts.iter().skip(1) {
                if let Ok(p) = core::FirmLimit::decode(part) {
                    candidates.push(p.account);
                }
            }
        }
        if let Some(section) = entry.section(core::SectionTag::Charges) {
            if let Some(h) = section.parts.first().and_then(|p| core::charges::ChargeHeader::decode(p).ok()) {
                candidates.push(h.fee_account);
            }
            for part in section.parts.iter().skip(1) {
                if let Ok(f) = core::charges::FirmCharge::decode(part) {
                    candidates.push(f.account);
                }
            }
        }
        for account in candidates {
            let holds = self.view.account(&account).is_some_and(|a| a.keys.contains(key));
            if holds && whole.concerns(&op, &account) {
                return Ok(Some(account));
            }
        }
        Ok(None)
    }

    /// What `caller` may see of `entry`: everything for administrators and auditors, a
    /// firm's own view of an entry that concerns one of its accounts, or nothing.
    fn visible_entry(
        &self,
        caller: &Caller,
        entry: &core::Entry,
    ) -> Result<Option<core::EntryView>, ServiceError> {
        match caller {
            Caller::Governance(_) => Ok(Some(core::EntryView::whole(entry))),
            Caller::Key(key) => Ok(self
                .account_of_key_in(key, entry)?
                .map(|account| core::EntryView::for_account(entry, &account))),
        }
    }

    fn reject(&self, rejection: core::Rejection) -> ServiceError {
        ServiceError::rejected(rejection, &self.genesis.currency, self.genesis.exponent)
    }

    /// Authenticates a read of `account` and checks the caller may see it.
    fn authorize_read<T: prost::Message>(
        &self,
        request: &Request<T>,
        method: &str,
        account: &str,
    ) -> Result<AccountId, ServiceError> {
        let caller = authenticate(&self.genesis, &self.view.roles(), request, method, now_ms())?;
        let id = AccountId::parse(account).map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        match caller {
            Caller::Governance(_) => Ok(id),
            Caller::Key(key) => match self.view.account(&id) {
                Some(a) if a.keys.contains(&key) => Ok(id),
                Some(a) if a.retired_keys.contains(&key) => Err(ServiceError::PermissionDenied(format!(
                    "key {key} may not read account '{account}' any more: it was rotated out of account '{account}' (rotate-keys); sign with one of its current keys"
                ))),
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
        let op = core::body::decode(&envelope.body).map_err(|e| self.reject(e.into()))?;
        self.check_node_key(&op)?;
        Ok((envelope, op))
    }

    /// Refuses a node key rotation to a key whose secret this node does not hold, before it
    /// reaches the log: the node would be unable to sign the next tree head. The key files
    /// are read again only when the key is not loaded yet (a key just made by
    /// `cercle-node key new`), which is rare and reads one small directory.
    fn check_node_key(&self, op: &core::Operation) -> Result<(), ServiceError> {
        let core::OpKind::RotateNodeKey { new_pubkey, .. } = &op.kind else { return Ok(()) };
        match self.keyring.holds(new_pubkey) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ServiceError::NodeKeyMissing(format!(
                "this node does not hold the secret of node key {new_pubkey}, so it could not sign with it: make the key on the node first (cercle-node key new), then sign the rotation to the key it prints"
            ))),
            Err(e) => Err(ServiceError::Internal(format!("reading the node key files: {e}"))),
        }
    }

    /// The tree head of the published log, signed with the key in force for its size.
    fn signed_head(&self) -> Result<(TreeHead, pb::SignedTreeHead, Arc<Keypair>), ServiceError> {
        let (head, _, keypair) = crate::current_tree_head(&self.store, &self.view, &self.keyring)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok((head, signed_tree_head(&head, &keypair), keypair))
    }

    async fn submit_envelope(&self, envelope: Option<pb::Envelope>) -> Result<pb::Receipt, ServiceError> {
        let outcome = self.submit_envelope_uncounted(envelope).await;
        self.count(&outcome, |r| r.duplicate);
        outcome
    }

    async fn submit_envelope_uncounted(
        &self,
        envelope: Option<pb::Envelope>,
    ) -> Result<pb::Receipt, ServiceError> {
        let envelope =
            envelope.ok_or_else(|| ServiceError::InvalidArgument("the request has no envelope".into()))?;
        // A place in the writer's queue first: an operation refused for want of room
        // costs no signature check.
        let slot = self.writer.reserve(1).and_then(|mut r| r.take_one()).ok_or_else(writer::queue_full)?;
        let (envelope, op) = self.check_envelope(envelope)?;
        let receipt = self.writer.submit(slot, envelope, op).await?;
        log_receipt(&receipt);
        Ok(receipt_to_pb(&receipt))
    }

    /// Reserves places in the writer's queue for as many of the batch's envelopes as fit,
    /// in order, and answers the others BUSY unverified; checks the admitted ones in
    /// parallel on the bounded verification tasks (signature verification is the
    /// expensive part), then hands the valid ones to the writer together. Each receipt
    /// shows what its envelope's signer may read.
    async fn submit_many(&self, envelopes: Vec<pb::Envelope>) -> Vec<Result<pb::Receipt, ServiceError>> {
        let outcomes = self.submit_many_uncounted(envelopes).await;
        for outcome in &outcomes {
            self.count(outcome, |r| r.duplicate);
        }
        outcomes
    }

    async fn submit_many_uncounted(
        &self,
        mut envelopes: Vec<pb::Envelope>,
    ) -> Vec<Result<pb::Receipt, ServiceError>> {
        let count = envelopes.len();
        let mut reservation = self.writer.reserve(count);
        let refused = envelopes.split_off(reservation.as_ref().map_or(0, |r| r.len()));
        let checked = match self.check_many(envelopes).await {
            Ok(checked) => checked,
            Err(detail) => return (0..count).map(|_| Err(ServiceError::Internal(detail.clone()))).collect(),
        };
        let mut results: Vec<Option<Result<pb::Receipt, ServiceError>>> = Vec::with_capacity(checked.len());
        let mut valid = Vec::new();
        for (i, c) in checked.into_iter().enumerate() {
            match (c, reservation.as_mut().and_then(|r| r.take_one())) {
                (Ok((envelope, op)), Some(slot)) => {
                    valid.push((i, (slot, envelope, op)));
                    results.push(None);
                }
                (Ok(_), None) => results.push(Some(Err(ServiceError::Internal(
                    "an admitted envelope found no place reserved for it".into(),
                )))),
                (Err(e), _) => results.push(Some(Err(e))),
            }
        }
        // The places of envelopes that failed their checks are free again.
        drop(reservation);
        let (indexes, items): (Vec<usize>, Vec<_>) = valid.into_iter().unzip();
        for (i, outcome) in indexes.into_iter().zip(self.writer.submit_many(items).await) {
            results[i] = Some(outcome.map(|receipt| {
                log_receipt(&receipt);
                receipt_to_pb(&receipt)
            }));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ServiceError::Internal("an envelope got no result".into()))))
            .chain(refused.iter().map(|_| Err(writer::queue_full())))
            .collect()
    }

    /// `check_envelope` on every envelope, in order, split among the verification tasks.
    #[allow(clippy::type_complexity)]
    async fn check_many(
        &self,
        mut envelopes: Vec<pb::Envelope>,
    ) -> Result<Vec<Result<(core::Envelope, core::Operation), ServiceError>>, String> {
        let chunk_len = envelopes.len().div_ceil(self.verifiers.tasks_max()).max(1);
        let mut tasks = Vec::new();
        while !envelopes.is_empty() {
            let tail = envelopes.split_off(chunk_len.min(envelopes.len()));
            let chunk = std::mem::replace(&mut envelopes, tail);
            let this = self.clone();
            // Each chunk waits for a free task, in order, then starts at once.
            tasks.push(
                self.verifiers
                    .spawn(move || chunk.into_iter().map(|e| this.check_envelope(e)).collect::<Vec<_>>())
                    .await,
            );
        }
        let mut checked = Vec::new();
        for task in tasks {
            checked.extend(task.await.map_err(|e| format!("verification task failed: {e}"))?);
        }
        Ok(checked)
    }
}

/// A page of invoices in issue order, of `account` or of the whole ledger, after
/// `after_sequence`; and the cursor of the next page, if any.
fn invoices_page(
    view: &View,
    account: Option<&AccountId>,
    after_sequence: u64,
    limit: usize,
    open_only: bool,
) -> Result<(Vec<core::Invoice>, Option<u64>), cercle_store::StoreError> {
    let mut out = Vec::new();
    let mut cursor = after_sequence;
    let mut scanned = 0;
    loop {
        let chunk = match account {
            Some(id) => view.account_invoices(id, cursor, limit + 1)?,
            None => view.all_invoices(cursor, limit + 1)?,
        };
        let exhausted = chunk.len() <= limit;
        for invoice in chunk {
            if out.len() == limit {
                return Ok((out, Some(cursor)));
            }
            scanned += 1;
            cursor = invoice.issued_at_sequence;
            if !open_only || invoice.state.is_open() {
                out.push(invoice);
            }
        }
        if exhausted {
            return Ok((out, None));
        }
        if scanned >= INVOICE_SCAN_MAX {
            return Ok((out, Some(cursor)));
        }
    }
}

/// An overview's filters and order from a request; a bad value is the caller's error.
fn account_selection(req: &pb::ListAccountsRequest) -> Result<(AccountFilter, AccountOrder), ServiceError> {
    let bad = |what: &str, value: i32| ServiceError::InvalidArgument(format!("unknown {what} {value}"));
    let status = match pb::AccountStatus::try_from(req.status).map_err(|_| bad("status", req.status))? {
        pb::AccountStatus::Unspecified => None,
        pb::AccountStatus::Active => Some(core::AccountStatus::Active),
        pb::AccountStatus::Frozen => Some(core::AccountStatus::Frozen),
        pb::AccountStatus::Closed => Some(core::AccountStatus::Closed),
    };
    let sign = match pb::BalanceSign::try_from(req.sign).map_err(|_| bad("balance sign", req.sign))? {
        pb::BalanceSign::Any => SignFilter::Any,
        pb::BalanceSign::Negative => SignFilter::Negative,
        pb::BalanceSign::Positive => SignFilter::Positive,
    };
    let order = match pb::AccountOrder::try_from(req.order).map_err(|_| bad("order", req.order))? {
        pb::AccountOrder::Handle => AccountOrder::Handle,
        pb::AccountOrder::Balance => AccountOrder::Balance,
        pb::AccountOrder::CreditUse => AccountOrder::CreditUse,
        pb::AccountOrder::NegativeSince => AccountOrder::NegativeSince,
        pb::AccountOrder::LastActivity => AccountOrder::LastActivity,
    };
    let text = |t: &str| (!t.is_empty()).then(|| t.to_string());
    let filter = AccountFilter {
        status,
        sign,
        negative_days_min: req.negative_days_min,
        credit_use_percent_min: req.credit_use_percent_min,
        sector: text(&req.sector),
        commune: text(&req.commune),
    };
    filter.check().map_err(ServiceError::InvalidArgument)?;
    Ok((filter, order))
}

/// What an indicator report's failure is: a query too large for its bounds is the
/// caller's to change; anything else comes from the log, which the node accepted.
fn indicator_error(e: IndicatorError) -> ServiceError {
    match e {
        IndicatorError::DatesInWrongOrder { .. }
        | IndicatorError::TooManyPeriods { .. }
        | IndicatorError::TooManyGroups { .. }
        | IndicatorError::TooManyFlows
        | IndicatorError::Invalid(_) => ServiceError::InvalidArgument(e.to_string()),
        IndicatorError::OutOfOrder { .. }
        | IndicatorError::Entry { .. }
        | IndicatorError::Clearing { .. } => ServiceError::Internal(e.to_string()),
    }
}

/// The operation of a logged entry. It was decoded when it was accepted, so failing now is
/// an internal error (the node's log has it).
fn decode_logged(entry: &core::Entry) -> Result<core::Operation, ServiceError> {
    core::body::decode(&entry.envelope.body)
        .map_err(|e| ServiceError::Internal(format!("entry {}: {e}", entry.sequence)))
}

fn log_receipt(receipt: &Receipt) {
    tracing::debug!(
        sequence = receipt.entry.sequence,
        operation_id = %receipt.operation_id,
        duplicate = receipt.duplicate,
        "operation accepted"
    );
}

/// A receipt as the key that submitted it sees it: the balances of the accounts it may
/// read, and no others (a payer never learns the payee's balance).
pub fn receipt_to_pb(r: &Receipt) -> pb::Receipt {
    pb::Receipt {
        sequence: r.entry.sequence,
        timestamp_ms: r.entry.timestamp_ms,
        entry_hash: r.entry.hash().to_vec(),
        operation_id: r.operation_id.0.to_vec(),
        balances_after: r.balances_shown.iter().map(Into::into).collect(),
        duplicate: r.duplicate,
        clearing: r.clearing.as_ref().map(Into::into),
        pending_id: r.pending,
    }
}

/// A page size from a request: 0 means the default; past the maximum is an error.
fn page_size(requested: u32) -> Result<usize, ServiceError> {
    match requested {
        0 => Ok(PAGE_SIZE_DEFAULT as usize),
        n if n > PAGE_SIZE_MAX => Err(ServiceError::InvalidArgument(format!(
            "page_size {n} is too large; the maximum is {PAGE_SIZE_MAX}"
        ))),
        n => Ok(n as usize),
    }
}

fn proof_error(e: ProofRequestError) -> ServiceError {
    match e {
        ProofRequestError::Invalid(m) => ServiceError::InvalidArgument(m.to_string()),
        ProofRequestError::BeyondLog { .. } => ServiceError::InvalidArgument(e.to_string()),
        ProofRequestError::Store(s) => s.into(),
    }
}

fn signed_tree_head(head: &TreeHead, node_key: &Keypair) -> pb::SignedTreeHead {
    pb::SignedTreeHead {
        ledger_id: head.ledger_id.0.to_vec(),
        tree_size: head.tree_size,
        root_hash: head.root_hash.to_vec(),
        timestamp_ms: head.timestamp_ms,
        signature: head.sign(node_key).to_vec(),
    }
}

fn hashes(list: Vec<[u8; 32]>) -> Vec<Vec<u8>> {
    list.into_iter().map(|h| h.to_vec()).collect()
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        self.authorize_governance(&request, "ListGroups")?;
        Ok(Response::new(pb::ListGroupsResponse {
            groups: self.view.groups_overview(),
            currency: self.genesis.currency.clone(),
            exponent: u32::from(self.genesis.exponent),
        }))
    }

    async fn preview_limit_rule(
        &self,
        request: Request<pb::PreviewLimitRuleRequest>,
    ) -> Result<Response<pb::PreviewLimitRuleResponse>, Status> {
        self.authorize_governance(&request, "PreviewLimitRule")?;
        let req = request.into_inner();
        let group = match req.group.as_deref().map(core::GroupName::parse).transpose() {
            Ok(group) => group,
            Err(e) => return Err(ServiceError::InvalidArgument(e.to_string()).into()),
        };
        let rule = core::LimitRule {
            cap_minor: req.cap_minor,
            factor_bp: req.factor_bp,
            floor_minor: req.floor_minor,
            group,
        };
        let as_of_ms = now_ms();
        let month = core::limitrule::ledger_month(self.genesis.day_offset_minutes, as_of_ms);
        let fees = self.view.fees();
        let fee_account = fees.as_ref().map(|f| &f.account);
        let preview = self.view.with_accounts(|accounts, groups| {
            let outcome = core::limitrule::outcome(&rule, accounts.clone(), groups, fee_account, month)?;
            let firms = outcome
                .firms
                .iter()
                .zip(accounts.filter(|a| outcome.firms.binary_search_by(|f| f.account.cmp(&a.id)).is_ok()))
                .map(|(f, a)| pb::LimitRuleFirm {
                    account: f.account.to_string(),
                    sales_minor: f.sales_minor,
                    old_credit_limit_minor: f.old_limit_minor,
                    old_source: core::Groups::sources_of(a).0.label(),
                    new_credit_limit_minor: f.new_limit_minor,
                    balance_minor: a.balance_minor,
                })
                .collect::<Vec<_>>();
            Ok::<_, core::Rejection>((outcome, firms))
        });
        let (outcome, firms) =
            preview.map_err(|r| ServiceError::rejected(r, &self.genesis.currency, self.genesis.exponent))?;
        let (from, to) = core::limitrule::window(outcome.month);
        Ok(Response::new(pb::PreviewLimitRuleResponse {
            firms,
            window_from: core::limitrule::month_label(from),
            window_to: core::limitrule::month_label(to),
            root: outcome.root().to_vec(),
            as_of_ms,
            currency: self.genesis.currency.clone(),
            exponent: u32::from(self.genesis.exponent),
        }))
    }

    type StreamEntriesStream = streams::EntryStream;

    async fn get_tree_head(
        &self,
        _request: Request<pb::GetTreeHeadRequest>,
    ) -> Result<Response<pb::SignedTreeHead>, Status> {
        let (_, signed, _) = self.signed_head()?;
        Ok(Response::new(signed))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let req = request.get_ref();
        let caller =
            authenticate(&self.genesis, &self.view.roles(), &request, "GetInclusionProof", now_ms())?;
        let tree_size = if req.tree_size == 0 { self.store.tree().0 } else { req.tree_size };
        if req.sequence == 0 || req.sequence > tree_size {
            return Err(ServiceError::InvalidArgument(format!(
                "entry {} is not in a tree of {tree_size} entries",
                req.sequence
            ))
            .into());
        }
        let entry = self
            .store
            .entry(req.sequence)
            .map_err(ServiceError::from)?
            .ok_or_else(|| ServiceError::NotFound(format!("no entry {}", req.sequence)))?;
        let Some(view) = self.visible_entry(&caller, &entry)? else {
            return Err(ServiceError::PermissionDenied(format!(
                "entry {} does not concern an account of this key",
                req.sequence
            ))
            .into());
        };
        let proof = self.store.inclusion_proof(req.sequence, tree_size).map_err(proof_error)?;
        Ok(Response::new(pb::InclusionProof {
            sequence: req.sequence,
            tree_size,
            hashes: hashes(proof),
            entry: Some((&view).into()),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let req = request.get_ref();
        authenticate(&self.genesis, &self.view.roles(), &request, "GetConsistencyProof", now_ms())?;
        let new_size = if req.new_size == 0 { self.store.tree().0 } else { req.new_size };
        let proof = self.store.consistency_proof(req.old_size, new_size).map_err(proof_error)?;
        Ok(Response::new(pb::ConsistencyProof { old_size: req.old_size, new_size, hashes: hashes(proof) }))
    }

    async fn get_statement(
        &self,
        request: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::Statement>, Status> {
        let id = self.authorize_read(&request, "GetStatement", &request.get_ref().account)?;
        let req = request.into_inner();
        let to_ms = if req.to_ms == 0 { u64::MAX } else { req.to_ms };
        if req.from_ms > to_ms {
            return Err(ServiceError::InvalidArgument(format!(
                "the period starts ({}) after it ends ({to_ms})",
                req.from_ms
            ))
            .into());
        }
        // The statement is cut at the published head, read together with the node key
        // history and the limits that bind the account there: its own, or a member group's
        // it follows, whose changes name no account and so are not in its history. The head
        // and the statement are signed with the key in force for the head's size. The
        // node's time now is the tree head's and the statement's cut time: a period that
        // ends after it gives a provisional statement.
        let (published, node_keys, binding) = self.view.statement_cut(&id);
        let (head, _, keypair) = crate::tree_head_at(&self.store, published, &node_keys, &self.keyring)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let signed_head = signed_tree_head(&head, &keypair);
        let tree_size = head.tree_size;
        let this = self.clone();
        let (statement, entries) = tokio::task::spawn_blocking(move || {
            let history = this.account_history(&id, tree_size)?;
            let mut statement = Statement::compute(&id, &history, req.from_ms, to_ms, &head)
                .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
            if let Some(limits) = binding {
                statement.credit_limit_minor = limits.credit_limit_minor;
                statement.max_balance_minor = limits.max_balance_minor;
            }
            let mut entries = Vec::with_capacity(statement.sequences.len());
            let listed: std::collections::BTreeSet<u64> = statement.sequences.iter().copied().collect();
            for (view, _) in history.iter().filter(|(v, _)| listed.contains(&v.entry.sequence)) {
                let sequence = view.entry.sequence;
                let proof = this.store.inclusion_proof(sequence, tree_size).map_err(proof_error)?;
                entries.push(pb::InclusionProof {
                    sequence,
                    tree_size,
                    hashes: hashes(proof),
                    entry: Some(view.into()),
                });
            }
            Ok::<_, ServiceError>((statement, entries))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        Ok(Response::new(pb::Statement {
            statement: statement.encode(),
            signature: statement.sign(&keypair).to_vec(),
            tree_head: Some(signed_head),
            entries,
        }))
    }

    async fn stream_entries(
        &self,
        request: Request<pb::StreamEntriesRequest>,
    ) -> Result<Response<Self::StreamEntriesStream>, Status> {
        let from = request.get_ref().from_sequence.max(1);
        let key = self.authorize_governance(&request, "StreamEntries")?;
        let ticket = self.streams.admit(key)?;
        let end = self.store.tree().0;
        Ok(Response::new(streams::entries(self.store.clone(), from, end, ticket, self.stream_send_timeout)))
    }

    async fn get_ledger_info(
        &self,
        _request: Request<pb::GetLedgerInfoRequest>,
    ) -> Result<Response<pb::LedgerInfo>, Status> {
        let mut info = pb::LedgerInfo::from(self.genesis.as_ref());
        info.log_size = self.store.size();
        let roles = self.view.roles();
        let keys = |keys: &[core::PublicKey]| keys.iter().map(|k| k.0.to_vec()).collect();
        info.current_admin_keys = keys(roles.admins());
        info.current_auditor_keys = keys(roles.auditors());
        info.quorum = u32::from(roles.quorum());
        info.quorum_limit_above_minor = roles.limit_above_minor();
        info.fees = self.view.fees().map(|f| pb::FeeSchedule::from(&f));
        info.node_keys = pb::node_key_eras(&self.view.node_keys());
        Ok(Response::new(info))
    }

    async fn list_key_accounts(
        &self,
        request: Request<pb::ListKeyAccountsRequest>,
    ) -> Result<Response<pb::ListKeyAccountsResponse>, Status> {
        Ok(Response::new(crate::key_accounts::list(&self.genesis, &self.view, &request)?))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        match self.submit_envelope(request.into_inner().envelope).await {
            Ok(receipt) => Ok(Response::new(pb::SubmitResponse { receipt: Some(receipt) })),
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
                    Ok(receipt) => pb::submit_result::Outcome::Receipt(receipt),
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
        let id = self.authorize_read(&request, "GetAccount", &request.get_ref().account)?;
        let account = self
            .view
            .wire_account(&id, now_ms())
            .ok_or_else(|| ServiceError::NotFound(format!("unknown account '{id}'")))?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(account),
            currency: self.genesis.currency.clone(),
            exponent: u32::from(self.genesis.exponent),
        }))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let id = self.authorize_read(&request, "ListEntries", &request.get_ref().account)?;
        let req = request.into_inner();
        let page_size = page_size(req.page_size)?;
        if self.view.account(&id).is_none() {
            return Err(ServiceError::NotFound(format!("unknown account '{id}'")).into());
        }
        let this = self.clone();
        let newest_first = req.newest_first;
        let (entries, more) = tokio::task::spawn_blocking(move || this.history_page(&id, &req, page_size))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let last = entries.last().map(|e| e.entry.sequence);
        Ok(Response::new(pb::ListEntriesResponse {
            entries: entries.iter().map(Into::into).collect(),
            next_after_sequence: last.filter(|_| more && !newest_first),
            next_before_sequence: last.filter(|_| more && newest_first),
        }))
    }

    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Result<Response<pb::Invoice>, Status> {
        let raw = &request.get_ref().invoice_id;
        let caller = authenticate(&self.genesis, &self.view.roles(), &request, "GetInvoice", now_ms())?;
        let id = pb::invoice_id(raw).map_err(|r| ServiceError::InvalidArgument(r.message("", 0)))?;
        let invoice = self.view.invoice(&id).map_err(ServiceError::from)?;
        let visible = match (&invoice, &caller) {
            (Some(_), Caller::Governance(_)) => true,
            (Some(i), Caller::Key(key)) => {
                let holds = |a: &AccountId| self.view.account(a).is_some_and(|a| a.keys.contains(key));
                holds(&i.payer) || holds(&i.payee)
            }
            (None, _) => false,
        };
        match invoice {
            Some(i) if visible => Ok(Response::new((&i).into())),
            // An invoice of other firms is not the caller's business, nor is whether it
            // exists: the answer is the same as for an id nobody used.
            _ => Err(ServiceError::NotFound(format!("unknown invoice {id}")).into()),
        }
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let account = request.get_ref().account.clone();
        let account = if account.is_empty() {
            self.authorize_governance(&request, "ListInvoices")?;
            None
        } else {
            Some(self.authorize_read(&request, "ListInvoices", &account)?)
        };
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let view = self.view.clone();
        let (invoices, next) = tokio::task::spawn_blocking(move || {
            invoices_page(&view, account.as_ref(), req.after_sequence, limit, req.open_only)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(ServiceError::from)?;
        Ok(Response::new(pb::ListInvoicesResponse {
            next_after_sequence: next,
            invoices: invoices.iter().map(Into::into).collect(),
        }))
    }

    async fn plan_clearing(
        &self,
        request: Request<pb::PlanClearingRequest>,
    ) -> Result<Response<pb::ClearingSummary>, Status> {
        let with_credit = request.get_ref().with_credit;
        self.authorize_governance(&request, "PlanClearing")?;
        // The writer copies what a run reads between two groups (linear in the open
        // invoices); the plan is solved here, away from it, while writes go on. A run
        // computes again on the state it applies to.
        let snapshot = self.writer.clearing_snapshot().await?;
        let summary = tokio::task::spawn_blocking(move || {
            core::clearing::propose(&snapshot, with_credit).map(|(_, summary)| summary)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        match summary {
            Ok(summary) => Ok(Response::new((&summary).into())),
            Err(rejection) => {
                Err(ServiceError::rejected(rejection, &self.genesis.currency, self.genesis.exponent).into())
            }
        }
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        self.authorize_governance(&request, "ListAccounts")?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let (filter, order) = account_selection(&req)?;
        let offset = usize::try_from(req.offset).unwrap_or(usize::MAX);
        let as_of_ms = now_ms();
        let view = self.view.clone();
        let (accounts, matching) = tokio::task::spawn_blocking(move || {
            view.with_accounts(|all, groups| {
                let selected = cercle_indicators::accounts::select(
                    all,
                    groups,
                    &filter,
                    order,
                    req.descending,
                    as_of_ms,
                );
                let page: Vec<pb::Account> = selected
                    .iter()
                    .skip(offset)
                    .take(limit)
                    .map(|a| pb::account_at(a, groups, as_of_ms))
                    .collect();
                (page, selected.len())
            })
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let end = offset.saturating_add(accounts.len());
        Ok(Response::new(pb::ListAccountsResponse {
            accounts,
            next_offset: (end < matching).then_some(end as u64),
            matching: matching as u64,
            currency: self.genesis.currency.clone(),
            exponent: u32::from(self.genesis.exponent),
            as_of_ms,
        }))
    }

    async fn get_indicators(
        &self,
        request: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::GetIndicatorsResponse>, Status> {
        self.authorize_governance(&request, "GetIndicators")?;
        let req = request.into_inner();
        let query =
            Query::parse(&req.from, &req.to, &req.by, &req.group_by, req.public).map_err(indicator_error)?;
        let permit = self.indicator_reports.clone().try_acquire_owned().map_err(|_| {
            ServiceError::Busy("another indicator report is being computed; retry when it is done".into())
        })?;
        // The log as it is now: the writer goes on appending while the report reads.
        let size = self.store.tree().0;
        let store = self.store.clone();
        let genesis = self.genesis.clone();
        let (report_json, through_sequence) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut computer = Computer::new(&query);
            for sequence in 1..=size {
                if !computer.wants_more() {
                    break;
                }
                let entry = store.entry(sequence)?.ok_or_else(|| {
                    ServiceError::Internal(format!("entry {sequence} is indexed but missing"))
                })?;
                computer.push(&entry).map_err(indicator_error)?;
            }
            let report = computer.finish().map_err(indicator_error)?;
            let json = cercle_indicators::render::json(&report, &genesis.currency, genesis.exponent);
            Ok::<_, ServiceError>((serde_json::Value::Object(json).to_string(), report.through_sequence))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        Ok(Response::new(pb::GetIndicatorsResponse { report_json, through_sequence }))
    }
}
