//! The node's verifiable-history calls, for `audit` and `proof`: the signed tree head,
//! inclusion and consistency proofs, the entry stream, and history pages, each read
//! authenticated with a subject of its own (`client::Node` signs account handles only).
//!
//! Nothing here trusts the node: callers check every tree head, proof and entry.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cercle_audit::SignedTreeHead;
use cercle_core::checkpoint::TreeHead;
use cercle_core::merkle::Hash;
use cercle_core::sign::{Keypair, read_auth_message};
use cercle_core::{AccountId, Genesis, LedgerId};
use cercle_proto as pb;
use pb::ledger_client::LedgerClient;
use pb::read_auth::{PUBKEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::client::{now_ms, status_error};

/// How long to wait for the node to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take to be answered. A stream's entries may keep coming after.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest message accepted: a full page of history is about 5 MiB.
const RESPONSE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Most hashes a proof may hold (RFC 9162 proofs of u64 sizes hold at most 65).
const PROOF_HASHES_MAX: usize = 66;

/// A connected node, its ledger, and the key that signs reads.
pub struct Verifiable {
    url: String,
    client: LedgerClient<Channel>,
    pub genesis: Genesis,
}

impl Verifiable {
    /// Connects to `url` and fetches the ledger's genesis.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("https://") {
            bail!(
                "cannot reach the node at {url}: this build of cercle speaks plain HTTP/2 only (use an http:// URL, e.g. through a local TLS tunnel)"
            );
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| anyhow!("invalid node URL '{url}': {e} (expected e.g. {})", crate::DEFAULT_NODE))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let channel = endpoint.connect().await.map_err(|e| {
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            // Bounded: error chains are short.
            for _ in 0..8 {
                let Some(cause) = source else { break };
                detail.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            anyhow!(
                "cannot reach the node at {url}: {} (is the node running? set the address with --node URL or CERCLE_NODE)",
                crate::output::one_line(&detail)
            )
        })?;
        let mut client = LedgerClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX);
        let info = client
            .get_ledger_info(pb::GetLedgerInfoRequest {})
            .await
            .map_err(|s| status_error(url, &s))?
            .into_inner();
        let genesis = Genesis::try_from(info)
            .map_err(|r| anyhow!("the node at {url} describes an invalid ledger: {}", r.message("", 0)))?;
        Ok(Verifiable { url: url.to_string(), client, genesis })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The node's current tree head, as sent: the caller checks its signature.
    pub async fn tree_head(&mut self) -> anyhow::Result<SignedTreeHead> {
        let t = self
            .client
            .get_tree_head(pb::GetTreeHeadRequest {})
            .await
            .map_err(|s| status_error(&self.url, &s))?
            .into_inner();
        let malformed = |field: &str| anyhow!("the node sent a malformed tree head ({field})");
        Ok(SignedTreeHead {
            head: TreeHead {
                ledger_id: LedgerId(t.ledger_id.as_slice().try_into().map_err(|_| malformed("ledger_id"))?),
                tree_size: t.tree_size,
                root_hash: t.root_hash.as_slice().try_into().map_err(|_| malformed("root_hash"))?,
                timestamp_ms: t.timestamp_ms,
            },
            signature: t.signature.as_slice().try_into().map_err(|_| malformed("signature"))?,
        })
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
            &sequence.to_string(),
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
            &format!("{old_size}-{new_size}"),
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
        let request = self.authenticated(
            key,
            "StreamEntries",
            &from_sequence.to_string(),
            pb::StreamEntriesRequest { from_sequence },
        )?;
        let stream = self.client.stream_entries(request).await;
        Ok(stream.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    /// A page of an account's history.
    pub async fn list_entries(
        &mut self,
        key: &Keypair,
        account: &AccountId,
        after_sequence: u64,
        page_size: u32,
    ) -> anyhow::Result<pb::ListEntriesResponse> {
        let request = self.authenticated(
            key,
            "ListEntries",
            account.as_str(),
            pb::ListEntriesRequest { account: account.to_string(), after_sequence, page_size },
        )?;
        let page = self.client.list_entries(request).await;
        Ok(page.map_err(|s| status_error(&self.url, &s))?.into_inner())
    }

    /// Wraps a read request with the caller's signature over (ledger, method, now, subject).
    fn authenticated<T>(
        &self,
        key: &Keypair,
        method: &str,
        subject: &str,
        message: T,
    ) -> anyhow::Result<tonic::Request<T>> {
        let timestamp_ms = now_ms()?;
        let signature = key.sign(&read_auth_message(&self.genesis.ledger_id, method, timestamp_ms, subject));
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

/// A `\r` progress line on stderr, drawn only when stderr is a terminal.
pub struct ProgressLine {
    enabled: bool,
    drawn: bool,
}

impl ProgressLine {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        ProgressLine { enabled: std::io::stderr().is_terminal(), drawn: false }
    }

    /// Redraws the line: `what: done / total (percent)`.
    pub fn show(&mut self, what: &str, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        eprint!("\r{what}: {} / {} entries ({percent}%)   ", thousands(done), thousands(total));
        self.drawn = true;
    }

    /// Erases the line.
    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}

/// `1 entry`, `1,234 entries`.
pub fn entries(n: u64) -> String {
    format!("{} {}", thousands(n), if n == 1 { "entry" } else { "entries" })
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    cercle_core::format_minor(i64::try_from(n).unwrap_or(i64::MAX), 0)
}
