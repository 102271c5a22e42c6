//! A real node in-process for tests: the handlers, the writer thread and the sled store,
//! driven through the generated service trait without a network, with the ability to stop
//! it, look at its store, and start it again on the same data directory.
//!
//! Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cercle_core::sign::{Keypair, read_auth_message};
use cercle_core::{Genesis, LedgerId, Operation, RejectCode};
use cercle_proto as pb;
use cercle_proto::ledger_server::Ledger as _;
use cercle_server::auth::{PUBKEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use cercle_server::error::ERROR_DOMAIN;
use cercle_server::recovery::{RecoverOptions, Recovered, recover};
use cercle_server::service::LedgerService;
use cercle_server::{DataDir, InitOptions, OpenNode, init_data_dir, now_ms, open_node};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// How long `retry_while_locked` waits for sled to let go of a directory.
const LOCK_WAIT_MAX: Duration = Duration::from_secs(10);

/// A test key: the same seed always gives the same key.
pub fn keypair(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

/// An envelope for `body`, signed by `signer` for `ledger_id`.
pub fn sign_body(ledger_id: &LedgerId, signer: &Keypair, body: Vec<u8>) -> pb::Envelope {
    let signature = signer.sign_op(ledger_id, &body).to_vec();
    pb::Envelope { body, signer: signer.public_key().0.to_vec(), signature, cosignatures: vec![] }
}

/// An envelope for `op`, encoded as a wallet encodes it and signed by `signer`.
pub fn sign_op(ledger_id: &LedgerId, signer: &Keypair, op: &Operation) -> pb::Envelope {
    sign_body(ledger_id, signer, cercle_core::body::encode(op))
}

/// The stable rejection a status carries in its `google.rpc.ErrorInfo`, as
/// (reason name, code number), or `None` when it carries none.
pub fn rejection_of(status: &Status) -> Option<(String, String)> {
    let details = status.get_error_details();
    let info = details.error_info()?;
    if info.domain != ERROR_DOMAIN {
        return None;
    }
    Some((info.reason.clone(), info.metadata.get("code")?.clone()))
}

/// What `rejection_of` gives for `code`: its documented number and name, as written here.
pub fn expected_rejection(code: RejectCode) -> Option<(String, String)> {
    let (number, name) = documented(code);
    Some((name.to_string(), number.to_string()))
}

/// Every rejection code with the number and name clients see on the wire (in
/// `google.rpc.ErrorInfo`), written out rather than read from the code under test: the numbers
/// are documented as stable and never renumbered, so renumbering or renaming one must fail
/// the tests. The match has no wildcard arm: a new code does not compile until it is
/// written here.
pub fn documented(code: RejectCode) -> (u16, &'static str) {
    match code {
        RejectCode::Malformed => (1, "MALFORMED"),
        RejectCode::BadSignature => (2, "BAD_SIGNATURE"),
        RejectCode::Expired => (3, "EXPIRED"),
        RejectCode::ValidityTooLong => (4, "VALIDITY_TOO_LONG"),
        RejectCode::OperationIdConflict => (5, "OPERATION_ID_CONFLICT"),
        RejectCode::BodyTooLarge => (6, "BODY_TOO_LARGE"),
        RejectCode::NotAdministrator => (10, "NOT_ADMINISTRATOR"),
        RejectCode::NotAccountKey => (11, "NOT_ACCOUNT_KEY"),
        RejectCode::LastAdministrator => (12, "LAST_ADMINISTRATOR"),
        RejectCode::RoleAlreadyHeld => (13, "ROLE_ALREADY_HELD"),
        RejectCode::RoleNotHeld => (14, "ROLE_NOT_HELD"),
        RejectCode::QuorumNotMet => (15, "QUORUM_NOT_MET"),
        RejectCode::QuorumInvalid => (16, "QUORUM_INVALID"),
        RejectCode::UnknownAccount => (20, "UNKNOWN_ACCOUNT"),
        RejectCode::AccountExists => (21, "ACCOUNT_EXISTS"),
        RejectCode::AccountFrozen => (22, "ACCOUNT_FROZEN"),
        RejectCode::AlreadyFrozen => (23, "ALREADY_FROZEN"),
        RejectCode::NotFrozen => (24, "NOT_FROZEN"),
        RejectCode::UnknownInvoice => (25, "UNKNOWN_INVOICE"),
        RejectCode::InvoiceExists => (26, "INVOICE_EXISTS"),
        RejectCode::InvoiceStateConflict => (27, "INVOICE_STATE_CONFLICT"),
        RejectCode::InvoicePartiesMismatch => (28, "INVOICE_PARTIES_MISMATCH"),
        RejectCode::AccountClosed => (29, "ACCOUNT_CLOSED"),
        RejectCode::InvalidText => (30, "INVALID_TEXT"),
        RejectCode::InvalidKeys => (31, "INVALID_KEYS"),
        RejectCode::InvalidLimit => (32, "INVALID_LIMIT"),
        RejectCode::NothingToChange => (33, "NOTHING_TO_CHANGE"),
        RejectCode::InvalidInvoice => (34, "INVALID_INVOICE"),
        RejectCode::InvalidProfile => (35, "INVALID_PROFILE"),
        RejectCode::KeyAlreadyRegistered => (36, "KEY_ALREADY_REGISTERED"),
        RejectCode::InvalidAmount => (40, "INVALID_AMOUNT"),
        RejectCode::SelfTransfer => (41, "SELF_TRANSFER"),
        RejectCode::BalanceOverflow => (42, "BALANCE_OVERFLOW"),
        RejectCode::InvoiceOverpaid => (43, "INVOICE_OVERPAID"),
        RejectCode::CreditLimitExceeded => (50, "CREDIT_LIMIT_EXCEEDED"),
        RejectCode::MaxBalanceExceeded => (51, "MAX_BALANCE_EXCEEDED"),
        RejectCode::TooManyOpenInvoices => (52, "TOO_MANY_OPEN_INVOICES"),
        RejectCode::TooManyAccounts => (53, "TOO_MANY_ACCOUNTS"),
        RejectCode::TooManyRoleKeys => (54, "TOO_MANY_ROLE_KEYS"),
        RejectCode::NothingToClear => (60, "NOTHING_TO_CLEAR"),
        RejectCode::ClearingInvalid => (61, "CLEARING_INVALID"),
        RejectCode::TooManyObligations => (62, "TOO_MANY_OBLIGATIONS"),
        RejectCode::AccountNotSettled => (70, "ACCOUNT_NOT_SETTLED"),
        RejectCode::WriteOffInvalid => (71, "WRITE_OFF_INVALID"),
        RejectCode::NodeKeyInvalid => (72, "NODE_KEY_INVALID"),
        RejectCode::NodeKeyInForce => (73, "NODE_KEY_IN_FORCE"),
        RejectCode::NodeKeyUsedBefore => (74, "NODE_KEY_USED_BEFORE"),
        RejectCode::UnknownGroup => (80, "UNKNOWN_GROUP"),
        RejectCode::GroupExists => (81, "GROUP_EXISTS"),
        RejectCode::TooManyGroups => (82, "TOO_MANY_GROUPS"),
        RejectCode::NotInGroup => (83, "NOT_IN_GROUP"),
        RejectCode::LimitRuleInvalid => (84, "LIMIT_RULE_INVALID"),
        RejectCode::LimitRuleChanged => (85, "LIMIT_RULE_CHANGED"),
        RejectCode::LimitRuleTooManyFirms => (86, "LIMIT_RULE_TOO_MANY_FIRMS"),
        RejectCode::LimitRuleNoFirms => (87, "LIMIT_RULE_NO_FIRMS"),
        RejectCode::KeyRoleNotAllowed => (90, "KEY_ROLE_NOT_ALLOWED"),
        RejectCode::KeyCapExceeded => (91, "KEY_CAP_EXCEEDED"),
        RejectCode::LastOwnerKey => (92, "LAST_OWNER_KEY"),
        RejectCode::KeyAlreadyOnAccount => (93, "KEY_ALREADY_ON_ACCOUNT"),
        RejectCode::KeyNotOnAccount => (94, "KEY_NOT_ON_ACCOUNT"),
        RejectCode::PendingUnknown => (95, "PENDING_UNKNOWN"),
        RejectCode::PendingExpired => (96, "PENDING_EXPIRED"),
        RejectCode::PendingPaymentsOpen => (97, "PENDING_PAYMENTS_OPEN"),
        RejectCode::TooManyPending => (98, "TOO_MANY_PENDING"),
        RejectCode::FeesInvalid => (100, "FEES_INVALID"),
        RejectCode::PeriodAlreadyCharged => (101, "PERIOD_ALREADY_CHARGED"),
        RejectCode::PeriodNotBegun => (102, "PERIOD_NOT_BEGUN"),
        RejectCode::NoFeeSchedule => (103, "NO_FEE_SCHEDULE"),
        RejectCode::NothingToCharge => (104, "NOTHING_TO_CHARGE"),
        RejectCode::TooManyCharges => (105, "TOO_MANY_CHARGES"),
    }
}

/// Every rejection code, in number order, to check [`documented`] against the code.
pub const ALL_CODES: [RejectCode; 70] = [
    RejectCode::Malformed,
    RejectCode::BadSignature,
    RejectCode::Expired,
    RejectCode::ValidityTooLong,
    RejectCode::OperationIdConflict,
    RejectCode::BodyTooLarge,
    RejectCode::NotAdministrator,
    RejectCode::NotAccountKey,
    RejectCode::LastAdministrator,
    RejectCode::RoleAlreadyHeld,
    RejectCode::RoleNotHeld,
    RejectCode::QuorumNotMet,
    RejectCode::QuorumInvalid,
    RejectCode::UnknownAccount,
    RejectCode::AccountExists,
    RejectCode::AccountFrozen,
    RejectCode::AlreadyFrozen,
    RejectCode::NotFrozen,
    RejectCode::UnknownInvoice,
    RejectCode::InvoiceExists,
    RejectCode::InvoiceStateConflict,
    RejectCode::InvoicePartiesMismatch,
    RejectCode::AccountClosed,
    RejectCode::InvalidText,
    RejectCode::InvalidKeys,
    RejectCode::InvalidLimit,
    RejectCode::NothingToChange,
    RejectCode::InvalidInvoice,
    RejectCode::InvalidProfile,
    RejectCode::KeyAlreadyRegistered,
    RejectCode::InvalidAmount,
    RejectCode::SelfTransfer,
    RejectCode::BalanceOverflow,
    RejectCode::InvoiceOverpaid,
    RejectCode::CreditLimitExceeded,
    RejectCode::MaxBalanceExceeded,
    RejectCode::TooManyOpenInvoices,
    RejectCode::TooManyAccounts,
    RejectCode::TooManyRoleKeys,
    RejectCode::NothingToClear,
    RejectCode::ClearingInvalid,
    RejectCode::TooManyObligations,
    RejectCode::AccountNotSettled,
    RejectCode::WriteOffInvalid,
    RejectCode::NodeKeyInvalid,
    RejectCode::NodeKeyInForce,
    RejectCode::NodeKeyUsedBefore,
    RejectCode::UnknownGroup,
    RejectCode::GroupExists,
    RejectCode::TooManyGroups,
    RejectCode::NotInGroup,
    RejectCode::LimitRuleInvalid,
    RejectCode::LimitRuleChanged,
    RejectCode::LimitRuleTooManyFirms,
    RejectCode::LimitRuleNoFirms,
    RejectCode::KeyRoleNotAllowed,
    RejectCode::KeyCapExceeded,
    RejectCode::LastOwnerKey,
    RejectCode::KeyAlreadyOnAccount,
    RejectCode::KeyNotOnAccount,
    RejectCode::PendingUnknown,
    RejectCode::PendingExpired,
    RejectCode::PendingPaymentsOpen,
    RejectCode::TooManyPending,
    RejectCode::FeesInvalid,
    RejectCode::PeriodAlreadyCharged,
    RejectCode::PeriodNotBegun,
    RejectCode::NoFeeSchedule,
    RejectCode::NothingToCharge,
    RejectCode::TooManyCharges,
];

/// Runs `open` again while it fails because sled still holds the directory's lock.
///
/// sled 0.34 may release its file lock a moment after the last handle on a database is
/// dropped (spacejam/sled#1234), so opening a directory again in the same process, right
/// after `init_data_dir` or after a node stopped, can fail for a few milliseconds.
fn retry_while_locked<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + LOCK_WAIT_MAX;
    loop {
        match open() {
            Err(e) if e.to_string().contains("could not acquire lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            result => return result,
        }
    }
}

/// A temporary directory for a node's data, in memory when the system has `/dev/shm` and
/// `TMPDIR` does not say otherwise.
///
/// These tests check what the node decides, not what survives a power cut: on a disk,
/// the log's `fdatasync` on every accepted group would make them several times slower.
fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none()
        && shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// A node on a temporary data directory. Reads are signed with the administrator's key.
pub struct TestNode {
    runtime: tokio::runtime::Runtime,
    root: PathBuf,
    pub genesis: Genesis,
    reader: Keypair,
    node: Option<OpenNode>,
    // Last, so the directory is removed after the node and its store are gone.
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Initialises a ledger (currency CHW, two decimals) governed by `admin`, and starts it.
    pub fn start_new(admin: &Keypair) -> TestNode {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let dir = temp_dir();
        let root = dir.path().join("data");
        let report = init_data_dir(
            &DataDir::new(&root),
            InitOptions {
                currency: "CHW".into(),
                exponent: 2,
                admin_keys: vec![admin.public_key()],
                auditor_keys: vec![],
                quorum: 1,
                day_offset_minutes: 0,
            },
        )
        .expect("init_data_dir");
        let mut node =
            TestNode { runtime, root, genesis: report.genesis, reader: admin.clone(), node: None, _dir: dir };
        node.start();
        node
    }

    fn service(&self) -> &LedgerService {
        &self.node.as_ref().expect("the node must be running for this call").service
    }

    pub fn start(&mut self) {
        self.try_start().expect("open_node");
    }

    /// Starts the node, or says why it refuses to.
    pub fn try_start(&mut self) -> Result<(), cercle_server::NodeError> {
        assert!(self.node.is_none(), "the node is already running");
        let node = retry_while_locked(|| self.runtime.block_on(open_node(&DataDir::new(&self.root))))?;
        assert_eq!(*node.genesis, self.genesis, "the genesis changed on restart");
        self.node = Some(node);
        Ok(())
    }

    /// The data directory (`DIR`, holding `ledger/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Persists the node's signed tree head now, as the running node does every second.
    pub fn persist_witness(&self) {
        let node = self.node.as_ref().expect("the node must be running");
        cercle_server::persist_witness(&node.store, &node.view, &node.keyring, 0)
            .expect("the witness is written");
    }

    /// Stops the node: drops the service, hence the writer's queue, and waits for the
    /// writer thread, which holds the last handle on the store.
    pub fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Opens the store of the stopped node as the node opens it at start-up (the
    /// checkpoint, then the log past it, every signature checked again). (sled allows one
    /// handle per directory: drop it before starting the node again.)
    pub fn open_store(&self) -> Recovered {
        assert!(self.node.is_none(), "stop the node before opening its store");
        let options = RecoverOptions { verify_signatures: true, rebuild: false };
        retry_while_locked(|| recover(&DataDir::new(&self.root).ledger(), options))
            .unwrap_or_else(|e| panic!("recover: {e}"))
    }

    pub fn submit(&self, envelope: pb::Envelope) -> Result<pb::Receipt, Status> {
        self.submit_all(vec![envelope]).pop().expect("one result per envelope")
    }

    /// Submits every envelope before waiting for any answer, so they reach the writer's
    /// queue in this order and the writer may take several as one group. The outcome must
    /// not depend on how the writer groups them.
    pub fn submit_all(&self, envelopes: Vec<pb::Envelope>) -> Vec<Result<pb::Receipt, Status>> {
        let service = self.service();
        let mut calls: Vec<_> = envelopes
            .into_iter()
            .map(|envelope| service.submit(Request::new(pb::SubmitRequest { envelope: Some(envelope) })))
            .collect();
        // The first poll verifies, decodes and queues the operation (the handler does not
        // wait before reaching the writer's queue); `block_on` then waits for the reply.
        let mut cx = Context::from_waker(Waker::noop());
        let first_polls: Vec<_> = calls
            .iter_mut()
            .map(|call| match call.as_mut().poll(&mut cx) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => None,
            })
            .collect();
        calls
            .into_iter()
            .zip(first_polls)
            .map(|(call, ready)| ready.unwrap_or_else(|| self.runtime.block_on(call)))
            .map(|result| {
                result.map(|response| {
                    response.into_inner().receipt.expect("an accepted submission carries a receipt")
                })
            })
            .collect()
    }

    /// Submits the envelopes in one `SubmitBatch` request: each gets its own outcome, a
    /// receipt or a rejection given as (reason name, code number).
    pub fn submit_batch(&self, envelopes: Vec<pb::Envelope>) -> Vec<Result<pb::Receipt, (String, String)>> {
        let response = self
            .runtime
            .block_on(self.service().submit_batch(Request::new(pb::SubmitBatchRequest { envelopes })))
            .expect("SubmitBatch answers");
        response
            .into_inner()
            .results
            .into_iter()
            .map(|result| match result.outcome.expect("every result has an outcome") {
                pb::submit_result::Outcome::Receipt(receipt) => Ok(receipt),
                pb::submit_result::Outcome::Rejection(r) => Err((r.reason, r.code.to_string())),
            })
            .collect()
    }

    /// The account as `GetAccount` returns it, or `None` when the node says NOT_FOUND.
    pub fn account(&self, handle: &str) -> Option<pb::Account> {
        let timestamp_ms = now_ms();
        let read = pb::GetAccountRequest { account: handle.to_string() };
        let message = read_auth_message(
            &self.genesis.ledger_id,
            "GetAccount",
            timestamp_ms,
            &prost::Message::encode_to_vec(&read),
        );
        let signature = self.reader.sign(&message);
        let mut request = Request::new(read);
        let metadata = request.metadata_mut();
        let ascii = |text: String| MetadataValue::try_from(text).expect("an ASCII header");
        metadata.insert(PUBKEY_HEADER, ascii(self.reader.public_key().to_hex()));
        metadata.insert(TIMESTAMP_HEADER, ascii(timestamp_ms.to_string()));
        metadata.insert(SIGNATURE_HEADER, ascii(hex::encode(signature)));
        match self.runtime.block_on(self.service().get_account(request)) {
            Ok(response) => Some(response.into_inner().account.expect("GetAccount answers with an account")),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetAccount {handle}: {status:?}"),
        }
    }

    /// How many entries the log holds, as `GetLedgerInfo` says.
    pub fn log_size(&self) -> u64 {
        self.runtime
            .block_on(self.service().get_ledger_info(Request::new(pb::GetLedgerInfoRequest {})))
            .expect("GetLedgerInfo")
            .into_inner()
            .log_size
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Stop the writer and close the store before the directory goes; never panic
        // here, a failing test may already be unwinding.
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
    }
}
