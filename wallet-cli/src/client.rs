//! The connection to a node: connecting, the ledger's genesis, read authentication, and
//! turning a gRPC status into one clear line.
//!
//! Every command that talks to a node starts with [`Node::connect`], which also fetches
//! the genesis: its ledger id is what signatures bind to, its exponent is what amounts
//! are validated against.

use std::fmt;

use anyhow::{Context, anyhow, bail};
use cercle_audit::SignedTreeHead;
use cercle_core::merkle::Hash;
use cercle_core::sign::{Keypair, read_auth_message};
use cercle_core::{AccountId, Genesis, InvoiceId};
use cercle_limits::{CLIENT_CONNECT_TIMEOUT, CLIENT_REQUEST_TIMEOUT, PROOF_HASHES_MAX, RESPONSE_BYTES_MAX};
use cercle_proto as pb;
use pb::ledger_client::LedgerClient;
use std::error::Error as _;
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_types::StatusExt;

use crate::failure::{Kind, fail, usage};
use crate::output::one_line;

/// The domain of the `google.rpc.ErrorInfo` the node attaches to rejections.
const ERROR_DOMAIN: &str = "cercle.v1";

use pb::read_auth::{PUBKEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// A connected node and the ledger it serves.
pub struct Node {
    url: String,
    client: LedgerClient<Channel>,
    pub genesis: Genesis,
    /// The number of entries in the log when the node was asked for its genesis.
    pub log_size: u64,
    /// The ledger's governance as it stands (after role and quorum changes), as the node
    /// said it.
    pub governance: Governance,
    /// The association's fee schedule as the node said it when we connected (`None`: no
    /// fees). The node charges the schedule in force when it applies an operation.
    pub fees: Option<cercle_core::FeeSchedule>,
    /// The node key history as the node said it (which key signs a tree head of each
    /// size): the node's word, like its genesis; `cercle audit verify` derives it from the
    /// log itself.
    pub node_keys: cercle_core::NodeKeys,
}

/// The administrators, auditors and quorum now, as `GetLedgerInfo` says them.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    pub admin_keys: Vec<cercle_core::PublicKey>,
    pub auditor_keys: Vec<cercle_core::PublicKey>,
    pub quorum: u32,
    pub limit_above_minor: Option<i64>,
}

impl Node {
    /// Connects to `url` and fetches the ledger's genesis. An `https://` URL is reached over
    /// TLS, trusting the system's roots and the CA given with `--ca-cert` (see `set_ca_cert`).
    pub async fn connect(url: &str) -> anyhow::Result<Node> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| {
                usage(format!("invalid node URL '{url}': {e} (expected e.g. {})", crate::DEFAULT_NODE))
            })?
            .connect_timeout(CLIENT_CONNECT_TIMEOUT)
            .timeout(CLIENT_REQUEST_TIMEOUT);
        let tls = url.starts_with("https://");
        if tls {
            endpoint =
                endpoint.tls_config(client_tls()?).map_err(|e| usage(format!("TLS: {}", error_chain(&e))))?;
        }
        let channel = endpoint.connect().await.map_err(|e| connect_error(url, tls, &e))?;
        let mut client = LedgerClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX);
        let info = client
            .get_ledger_info(pb::GetLedgerInfoRequest {})
            .await
            .map_err(|s| match s.source() {
                Some(source) if !tls => connect_error(url, tls, source),
                _ => status_error(url, &s),
            })?
            .into_inner();
        let log_size = info.log_size;
        let keys = |list: &[Vec<u8>]| {
            list.iter()
                .filter_map(|k| <[u8; 32]>::try_from(k.as_slice()).ok().map(cercle_core::PublicKey))
                .collect::<Vec<_>>()
        };
        let governance = Governance {
            admin_keys: keys(&info.current_admin_keys),
            auditor_keys: keys(&info.current_auditor_keys),
            quorum: info.quorum.max(1),
            limit_above_minor: info.quorum_limit_above_minor,
        };
        let fees = info.fees.clone().map(cercle_core::FeeSchedule::try_from).transpose().map_err(|r| {
            anyhow!("the node at {url} describes an invalid fee schedule: {}", r.message("", 0))
        })?;
        let node_keys_info = info.clone();
        let genesis = Genesis::try_from(info)
            .map_err(|r| anyhow!("the node at {url} describes an invalid ledger: {}", r.message("", 0)))?;
        let node_keys = pb::node_keys_of(&node_keys_info, &genesis).map_err(|r| {
            anyhow!("the node at {url} describes an invalid node key history: {}", r.message("", 0))
        })?;
        Ok(Node { url: url.to_string(), client, genesis, log_size, governance, fees, node_keys })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Submits one envelope. The status of a failure is returned as is, so that callers
    /// can tell a rejection (see [`Rejected::from_status`]) from a transport problem.
    pub async fn submit(&mut self, envelope: pb::Envelope) -> Result<pb::Receipt, tonic::Status> {
        let response = self.client.submit(pb::SubmitRequest { envelope: Some(envelope) }).await?.into_inner();
        response
            .receipt
            .ok_or_else(|| tonic::Status::internal("the node accepted the operation but sent no receipt"))
    }

    /// Submits up to `SUBMIT_BATCH_MAX` envelopes in one request: one result each, in order.
    pub async fn submit_batch(
        &mut self,
        envelopes: Vec<pb::Envelope>,
    ) -> Result<Vec<pb::SubmitResult>, tonic::Status> {
        let expected = envelopes.len();
        let results =
            self.client.submit_batch(pb::SubmitBatchRequest { envelopes }).await?.into_inner().results;
        if results.len() != expected {
            return Err(tonic::Status::internal(format!(
                "the node answered {} results for {expected} envelopes",
                results.len()
            )));
        }
        Ok(results)
    }

    pub async fn get_account(
        &mut self,
        key: &Keypair,
        account: &AccountId,
    ) -> anyhow::Result<pb::GetAccountResponse> {
        let request =
            self.authenticated(key, "GetAccount", pb::GetAccountRequest { account: account.to_string() })?;
        let response = self.client.get_account(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    /// The account `account` as the node shows it to `key`, checked to be the one asked for.
    pub async fn account(&mut self, key: &Keypair, account: &AccountId) -> anyhow::Result<pb::Account> {
        let response = self.get_account(key, account).await?;
        let got = response.account.ok_or_else(|| anyhow!("the node's answer holds no account"))?;
        if got.account != account.as_str() {
            anyhow::bail!(
                "asked for account '{account}', the node answered with '{}'",
                crate::output::one_line(&got.account)
            );
        }
        Ok(got)
    }

    /// A page of `account`'s history: oldest first after `after_sequence`, or (with
    /// `newest_first`) newest first before `before_sequence`.
    pub async fn list_entries(
        &mut self,
        key: &Keypair,
        account: &AccountId,
        page: pb::ListEntriesRequest,
    ) -> anyhow::Result<pb::ListEntriesResponse> {
        let request = self.authenticated(
            key,
            "ListEntries",
            pb::ListEntriesRequest { account: account.to_string(), ..page },
        )?;
        let response = self.client.list_entries(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    pub async fn get_invoice(&mut self, key: &Keypair, id: &InvoiceId) -> anyhow::Result<pb::Invoice> {
        let request =
            self.authenticated(key, "GetInvoice", pb::GetInvoiceRequest { invoice_id: id.0.to_vec() })?;
        let response = self.client.get_invoice(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    /// One page of invoices: of `account`, or every invoice when `account` is `None`.
    pub async fn list_invoices(
        &mut self,
        key: &Keypair,
        account: Option<&AccountId>,
        request: pb::ListInvoicesRequest,
    ) -> anyhow::Result<pb::ListInvoicesResponse> {
        let account = account.map_or(String::new(), ToString::to_string);
        let request = pb::ListInvoicesRequest { account, ..request };
        let request = self.authenticated(key, "ListInvoices", request)?;
        let response = self.client.list_invoices(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    pub async fn plan_clearing(
        &mut self,
        key: &Keypair,
        with_credit: bool,
    ) -> anyhow::Result<pb::ClearingSummary> {
        let request = self.authenticated(key, "PlanClearing", pb::PlanClearingRequest { with_credit })?;
        let response = self.client.plan_clearing(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    /// One page of the accounts overview (administrators and auditors).
    pub async fn list_accounts(
        &mut self,
        key: &Keypair,
        request: pb::ListAccountsRequest,
    ) -> anyhow::Result<pb::ListAccountsResponse> {
        let request = self.authenticated(key, "ListAccounts", request)?;
        let response = self.client.list_accounts(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    pub async fn preview_limit_rule(
        &mut self,
        key: &Keypair,
        request: pb::PreviewLimitRuleRequest,
    ) -> anyhow::Result<pb::PreviewLimitRuleResponse> {
        let request = self.authenticated(key, "PreviewLimitRule", request)?;
        let response = self.client.preview_limit_rule(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    pub async fn list_groups(&mut self, key: &Keypair) -> anyhow::Result<pb::ListGroupsResponse> {
        let request = self.authenticated(key, "ListGroups", pb::ListGroupsRequest {})?;
        let response = self.client.list_groups(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    pub async fn get_statement(
        &mut self,
        key: &Keypair,
        account: &AccountId,
        from_ms: u64,
        to_ms: u64,
    ) -> anyhow::Result<pb::Statement> {
        let request = self.authenticated(
            key,
            "GetStatement",
            pb::GetStatementRequest { account: account.to_string(), from_ms, to_ms },
        )?;
        let response = self.client.get_statement(request).await;
        Ok(response.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    /// The node's current tree head, as sent: the caller checks its signature.
    pub async fn tree_head(&mut self) -> anyhow::Result<SignedTreeHead> {
        let t = self
            .client
            .get_tree_head(pb::GetTreeHeadRequest {})
            .await
            .map_err(|s| status_error(&self.url, &s))?
            .into_inner();
        SignedTreeHead::try_from(&t)
            .map_err(|r| anyhow::anyhow!("the node sent a malformed tree head: {}", r.message("", 0)))
    }

    /// The inclusion proof of entry `sequence` in the tree of `tree_size` entries, and
    /// the entry as the node sent it.
    pub async fn inclusion_proof(
        &mut self,
        key: &Keypair,
        sequence: u64,
        tree_size: u64,
    ) -> anyhow::Result<(Vec<Hash>, Option<pb::Entry>)> {
        let request = self.authenticated(
            key,
            "GetInclusionProof",
            pb::GetInclusionProofRequest { sequence, tree_size },
        )?;
        let proof = self.client.get_inclusion_proof(request).await;
        let proof = proof.map_err(|s| status_error(&self.url, &s))?.into_inner();
        if proof.sequence != sequence || proof.tree_size != tree_size {
            bail!(
                "asked for the proof of entry {sequence} in a tree of {tree_size}, the node answered for entry {} in a tree of {}",
                proof.sequence,
                proof.tree_size
            );
        }
        Ok((hashes(proof.hashes)?, proof.entry))
    }

    /// The consistency proof from the tree of `old_size` entries to that of `new_size`.
    pub async fn consistency_proof(
        &mut self,
        key: &Keypair,
        old_size: u64,
        new_size: u64,
    ) -> anyhow::Result<Vec<Hash>> {
        let request = self.authenticated(
            key,
            "GetConsistencyProof",
            pb::GetConsistencyProofRequest { old_size, new_size },
        )?;
        let proof = self.client.get_consistency_proof(request).await;
        let proof = proof.map_err(|s| status_error(&self.url, &s))?.into_inner();
        if proof.old_size != old_size || proof.new_size != new_size {
            bail!(
                "asked for a consistency proof from {old_size} to {new_size} entries, the node answered from {} to {}",
                proof.old_size,
                proof.new_size
            );
        }
        hashes(proof.hashes)
    }

    /// The log from entry `from_sequence` on (administrators and auditors only).
    pub async fn stream_entries(
        &mut self,
        key: &Keypair,
        from_sequence: u64,
    ) -> anyhow::Result<tonic::Streaming<pb::Entry>> {
        let request = self.authenticated(key, "StreamEntries", pb::StreamEntriesRequest { from_sequence })?;
        let stream = self.client.stream_entries(request).await;
        Ok(stream.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    /// Wraps a read request with the caller's signature over (ledger, method, now, the
    /// request's SHA-256), as the node's read authentication expects.
    fn authenticated<T: prost::Message>(
        &self,
        key: &Keypair,
        method: &str,
        message: T,
    ) -> anyhow::Result<tonic::Request<T>> {
        let timestamp_ms = now_ms()?;
        let encoded = message.encode_to_vec();
        let signed = read_auth_message(&self.genesis.ledger_id, method, timestamp_ms, &encoded);
        let signature = key.sign(&signed);
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        for (name, value) in [
            (PUBKEY_HEADER, key.public_key().to_hex()),
            (TIMESTAMP_HEADER, timestamp_ms.to_string()),
            (SIGNATURE_HEADER, hex::encode(signature)),
        ] {
            // Hex and decimal digits are always valid ASCII metadata.
            let value: AsciiMetadataValue =
                value.parse().with_context(|| format!("cannot put {name} in the request"))?;
            metadata.insert(name, value);
        }
        Ok(request)
    }
}

/// The caller's clock, in ms since the Unix epoch.
pub fn now_ms() -> anyhow::Result<u64> {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    u64::try_from(since_epoch.as_millis()).context("the system clock is out of range")
}

/// An operation the ledger refused, as the node explained it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The stable reason name, e.g. `CREDIT_LIMIT_EXCEEDED`.
    pub reason: String,
    /// The stable reason number, e.g. 50.
    pub code: Option<u16>,
    /// The one-line explanation with the numbers.
    pub message: String,
}

impl Rejected {
    /// The rejection a status carries, if it is one (it has a `cercle.v1` ErrorInfo).
    pub fn from_status(status: &tonic::Status) -> Option<Rejected> {
        let details = status.get_error_details();
        let info = details.error_info()?;
        if info.domain != ERROR_DOMAIN {
            return None;
        }
        Some(Rejected {
            reason: one_line(&info.reason),
            code: info.metadata.get("code").and_then(|c| c.parse().ok()),
            message: one_line(status.message()),
        })
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "rejected ({}, code {code}): {}", self.reason, self.message),
            None => write!(f, "rejected ({}): {}", self.reason, self.message),
        }
    }
}

impl std::error::Error for Rejected {}

/// One clear line for a failed call to the node at `url`, of the kind its status says.
pub fn status_error(url: &str, status: &tonic::Status) -> anyhow::Error {
    if let Some(rejected) = Rejected::from_status(status) {
        return rejected.into();
    }
    let message = one_line(status.message());
    match status.code() {
        Code::Unavailable => unreachable(url, &message),
        Code::DeadlineExceeded => timed_out(url, &message),
        // tonic reports the client's own request timeout as CANCELLED.
        Code::Cancelled if message.contains("Timeout expired") => timed_out(url, &message),
        Code::Unauthenticated => fail(
            Kind::Denied,
            format!(
                "the node did not accept the request's authentication: {message} (check --key / CERCLE_KEY and the system clock)"
            ),
        ),
        Code::PermissionDenied => fail(Kind::Denied, format!("permission denied: {message}")),
        Code::NotFound => fail(Kind::NotFound, format!("not found: {message}")),
        Code::ResourceExhausted => {
            fail(Kind::Busy, format!("the node is busy: {message} (try again shortly)"))
        }
        Code::InvalidArgument => usage(format!("the node refused the request: {message}")),
        code => anyhow!("the node answered {code:?}: {message}"),
    }
}

/// The CA certificate file given with `--ca-cert` (or `CERCLE_CA_CERT`), set once by `main`
/// before any command runs. Kept here, written once, so that every command's
/// `Node::connect(url)` honours it without each passing it along.
static CA_CERT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Makes `Node::connect` trust the CA certificate in `path` too. Called once, by `main`.
pub fn set_ca_cert(path: std::path::PathBuf) {
    let _ = CA_CERT.set(path);
}

/// TLS towards a node: the system's roots, and the `--ca-cert` file if one was given.
fn client_tls() -> anyhow::Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(path) = CA_CERT.get() {
        let pem = std::fs::read(path)
            .map_err(|e| usage(format!("cannot read the CA certificate {}: {e}", path.display())))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(usage(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(tls)
}

/// One line for a connection that failed: TLS failures said plainly (an untrusted or
/// expired certificate, TLS on one side only), anything else as unreachable.
fn connect_error(url: &str, tls: bool, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    use rustls::CertificateError as C;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut rustls_error = None;
    for _ in 0..16 {
        let Some(s) = source else { break };
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            rustls_error = Some(r.clone());
            break;
        }
        // hyper and tokio-rustls carry the TLS error inside an `io::Error`, whose `source()`
        // skips the error it wraps and gives that error's source: look inside it.
        let wrapped = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if let Some(r) = wrapped.and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            rustls_error = Some(r.clone());
            break;
        }
        source = s.source();
    }
    let chain = error_chain(e);
    let tls_failure =
        |what: String| fail(Kind::Unreachable, format!("cannot reach the node at {url}: {what}"));
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => tls_failure(
            "its TLS certificate is not signed by a CA this wallet trusts (give the CA's certificate with --ca-cert FILE or CERCLE_CA_CERT)".into(),
        ),
        Some(rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => {
            tls_failure("its TLS certificate has expired (the node's operator must renew it)".into())
        }
        Some(rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => {
            tls_failure("its TLS certificate is not valid yet (check this computer's clock)".into())
        }
        Some(rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
            tls_failure("its TLS certificate is for another name than the URL's host".into())
        }
        Some(rustls::Error::InvalidCertificate(other)) => {
            tls_failure(format!("its TLS certificate is refused: {other:?}"))
        }
        Some(rustls::Error::InvalidMessage(_)) if tls => {
            tls_failure("it does not speak TLS on this port (use an http:// URL)".into())
        }
        Some(other) => tls_failure(format!("TLS failed: {other}")),
        None if tls && (chain.contains("tls handshake eof") || chain.contains("close_notify")) => {
            tls_failure("it closed the connection during the TLS handshake: it may not speak TLS on this port (use an http:// URL)".into())
        }
        None if !tls && plain_to_tls(&chain) => tls_failure(
            "it closed the connection at the HTTP/2 handshake: it serves TLS on this port (use an https:// URL)".into(),
        ),
        None => unreachable(url, &chain),
    }
}

/// How a plain HTTP/2 connection ends when the server expected a TLS handshake: the server
/// answers with a TLS alert (not an HTTP/2 frame) and hangs up.
fn plain_to_tls(chain: &str) -> bool {
    [
        "frame with invalid size",
        "connection reset",
        "broken pipe",
        "connection closed",
        "invalid HTTP/2",
        "protocol error",
        "unexpected end of file",
        "connection error",
    ]
    .iter()
    .any(|s| chain.contains(s))
}

fn timed_out(url: &str, detail: &str) -> anyhow::Error {
    fail(Kind::Unreachable, format!("the node at {url} did not answer in time ({detail})"))
}

fn unreachable(url: &str, detail: &str) -> anyhow::Error {
    fail(
        Kind::Unreachable,
        format!(
            "cannot reach the node at {url}: {detail} (is the node running? set the address with --node URL or CERCLE_NODE)"
        ),
    )
}

/// An error and its sources on one line: tonic's transport error alone only says
/// "transport error".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    // Bounded: error chains are short, but a cyclic one must not loop forever.
    for _ in 0..8 {
        let Some(cause) = source else { break };
        let part = cause.to_string();
        // Layers often repeat their cause's words ("tcp connect error: tcp connect error").
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        source = cause.source();
    }
    one_line(&parts.join(": "))
}

fn hashes(list: Vec<Vec<u8>>) -> anyhow::Result<Vec<Hash>> {
    if list.len() > PROOF_HASHES_MAX {
        bail!("the node sent a proof of {} hashes, more than any proof holds", list.len());
    }
    list.into_iter()
        .map(|h| {
            h.as_slice().try_into().map_err(|_| anyhow!("the node sent a proof hash of {} bytes", h.len()))
        })
        .collect()
}
