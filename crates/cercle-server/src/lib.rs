//! The Cercle node as a library: the data directory, the gRPC service, the writer.
//!
//! API boundary: the `cercle-node` binary parses arguments and calls `init_data_dir` and
//! `serve`; everything a test needs to start a real node in-process is here too.
//! Wire types stay inside the handlers (`service`).

pub mod admission;
pub mod auth;
pub mod backup;
pub mod checkpointer;
pub mod error;
pub mod key_accounts;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod node_keys;
pub mod recovery;
pub mod service;
pub mod streams;
pub mod view;
pub mod web;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cercle_core::checkpoint::TreeHead;
use cercle_core::sign::{Keypair, encode_key_file};
use cercle_core::{Genesis, LedgerId, PublicKey};
use cercle_limits::{
    FILE_DESCRIPTORS_RESERVED, REQUEST_BYTES_MAX, RESPONSE_BYTES_MAX, STREAMS_PER_CONNECTION_MAX,
    WITNESS_INTERVAL,
};
use cercle_proto as pb;
use cercle_store::Store;
use rand::RngCore;
use tokio::net::TcpListener;

pub use limits::ServerLimits;
pub use metrics::Metrics;
pub use web::Web;

/// The node's clock: ms since the Unix epoch. The only place the node reads the time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] cercle_store::StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the log does not replay: {0}; restore the data directory from a backup")]
    Replay(#[from] cercle_core::ReplayError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io { path: path.to_path_buf(), source }
}

/// The files of a data directory.
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger")
    }
    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }
    /// The node keys made for rotations (`cercle-node key new`), one `*.key` file each.
    pub fn node_keys(&self) -> PathBuf {
        self.root.join("node-keys")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.root.join("admin.key")
    }
    pub fn is_initialised(&self) -> bool {
        Store::exists(&self.ledger())
    }
}

pub struct InitOptions {
    pub currency: String,
    pub exponent: u8,
    pub admin_keys: Vec<PublicKey>,
    pub auditor_keys: Vec<PublicKey>,
    /// Administrators who sign a sensitive act (1 to the number of administrators).
    pub quorum: u8,
    /// The ledger's day: a fixed offset from UTC in minutes (`Genesis::day_offset_minutes`).
    pub day_offset_minutes: i16,
}

pub struct InitReport {
    pub genesis: Genesis,
    /// Set when no administrator key was given and one was created here.
    pub created_admin_key: Option<PathBuf>,
}

pub(crate) fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

/// Writes a key file readable by its owner only; refuses to overwrite.
pub fn write_key_file(path: &Path, keypair: &Keypair) -> Result<(), NodeError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(encode_key_file(keypair).as_bytes()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Creates a new ledger in `dir`: a random ledger id, a node key, and an administrator
/// key in `dir/admin.key` when none is given.
pub fn init_data_dir(dir: &DataDir, options: InitOptions) -> Result<InitReport, NodeError> {
    if dir.is_initialised() {
        return Err(NodeError::Invalid(format!("{} already holds a ledger", dir.root.display())));
    }
    // Decide everything and validate it before writing anything, so a refused init
    // leaves no stray files behind.
    let mut admin_keys = options.admin_keys;
    let created_admin = if admin_keys.is_empty() {
        let admin = Keypair::from_seed(&random_seed());
        admin_keys.push(admin.public_key());
        Some(admin)
    } else {
        None
    };
    let node = Keypair::from_seed(&random_seed());
    let mut ledger_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut ledger_id);
    let genesis = Genesis {
        ledger_id: LedgerId(ledger_id),
        currency: options.currency,
        exponent: options.exponent,
        admin_keys,
        auditor_keys: options.auditor_keys,
        node_key: node.public_key(),
        quorum: options.quorum,
        day_offset_minutes: options.day_offset_minutes,
    };
    genesis.validate().map_err(|e| NodeError::Invalid(e.to_string()))?;
    std::fs::create_dir_all(&dir.root).map_err(io_err(&dir.root))?;
    let mut created_admin_key = None;
    if let Some(admin) = created_admin {
        write_key_file(&dir.admin_key(), &admin)?;
        created_admin_key = Some(dir.admin_key());
    }
    write_key_file(&dir.node_key(), &node)?;
    Store::create(&dir.ledger(), &genesis)?;
    Ok(InitReport { genesis, created_admin_key })
}

/// A node opened on a data directory: its service (handlers over the view and the
/// writer), and its threads. `shutdown` stops it cleanly.
pub struct OpenNode {
    pub genesis: Arc<Genesis>,
    pub service: service::LedgerService,
    pub store: Arc<Store>,
    pub view: Arc<view::View>,
    /// The node keys' secrets: they sign tree heads, statements and the witness of the
    /// log's size, each with the key in force for its size.
    pub keyring: Arc<node_keys::NodeKeyring>,
    /// Fires when the writer stops (every handle dropped, or a storage failure). Taken by
    /// whoever watches it.
    pub writer_stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    /// What the node measures, for `/metrics`.
    pub metrics: Arc<Metrics>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl OpenNode {
    /// Stops the node: tells the writer to take nothing more (requests still arriving
    /// are answered UNAVAILABLE), then waits for it to make what it had queued durable
    /// and answer it, and for the last checkpoint. Blocking.
    pub fn shutdown(self) {
        let OpenNode { service, threads, store, .. } = self;
        service.writer().stop();
        drop(service);
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a node thread panicked");
            }
        }
        if let Err(e) = store.close() {
            tracing::warn!(error = %e, "could not flush the state database on shutdown");
        }
    }
}

/// Signs the tree head of what is durable and published now, with the node key in force for
/// its size, and persists it, if the log grew since `last` (the size last written). Returns
/// the size written.
pub fn persist_witness(
    store: &Store,
    view: &view::View,
    keyring: &node_keys::NodeKeyring,
    last: u64,
) -> Result<u64, NodeError> {
    let (head, signer, keypair) = current_tree_head(store, view, keyring)?;
    if head.tree_size <= last {
        return Ok(last);
    }
    store.write_tree_head(&head, &signer, &head.sign(&keypair))?;
    Ok(head.tree_size)
}

/// The tree head of the log as published to the view (never past it: the view's node key
/// history is the one for its size), timestamped now, with the key that signs it.
pub fn current_tree_head(
    store: &Store,
    view: &view::View,
    keyring: &node_keys::NodeKeyring,
) -> Result<(TreeHead, PublicKey, Arc<Keypair>), NodeError> {
    let (head, history) = view.head_and_node_keys();
    tree_head_at(store, head, &history, keyring)
}

/// The tree head at the published `head` (none: the empty log), signed by the key `history`
/// puts in force for its size: its public key and its key pair.
pub fn tree_head_at(
    store: &Store,
    head: Option<cercle_core::Head>,
    history: &cercle_core::NodeKeys,
    keyring: &node_keys::NodeKeyring,
) -> Result<(TreeHead, PublicKey, Arc<Keypair>), NodeError> {
    let size = head.map_or(0, |h| h.size);
    let (durable_size, durable_root) = store.tree();
    // The log may be a group ahead of the view (durable, not yet published): take the root
    // of the view's size then, rather than sign a rotation's head with the key before it.
    let root_hash = if durable_size == size { durable_root } else { store.root_of_size(size)? };
    let (signer, keypair) = keyring.signer(history, size)?;
    let head =
        TreeHead { ledger_id: store.genesis().ledger_id, tree_size: size, root_hash, timestamp_ms: now_ms() };
    Ok((head, signer, keypair))
}

/// Persists the witness every `WITNESS_INTERVAL` until `stop` fires, then once more.
async fn witness_loop(
    store: Arc<Store>,
    view: Arc<view::View>,
    keyring: Arc<node_keys::NodeKeyring>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = store.last_tree_head().map_or(0, |h| h.tree_size);
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(WITNESS_INTERVAL) => false,
            _ = stop.changed() => true,
        };
        let (s, v, k) = (store.clone(), view.clone(), keyring.clone());
        match tokio::task::spawn_blocking(move || persist_witness(&s, &v, &k, last)).await {
            Ok(Ok(size)) => last = size,
            Ok(Err(e)) => tracing::warn!(error = %e, "could not persist the signed tree head"),
            Err(e) => tracing::warn!(error = %e, "the tree-head task failed"),
        }
        if stopping {
            return;
        }
    }
}

/// Opens the data directory, brings the state up to the end of the log (see `recovery`)
/// and starts the writer, with the default limits.
pub async fn open_node(dir: &DataDir) -> Result<OpenNode, NodeError> {
    open_node_with_limits(dir, &ServerLimits::default()).await
}

/// `open_node` with the handlers' bounds taken from `limits`.
pub async fn open_node_with_limits(dir: &DataDir, limits: &ServerLimits) -> Result<OpenNode, NodeError> {
    let keyring = node_keys::NodeKeyring::load(dir)?;
    let ledger_dir = dir.ledger();
    let recovered = tokio::task::spawn_blocking(move || {
        recovery::recover(&ledger_dir, recovery::RecoverOptions::default())
    })
    .await
    .map_err(|e| NodeError::Invalid(e.to_string()))??;
    let recovery::Recovered { store, ledger, pending, report } = recovered;
    let genesis = Arc::new(ledger.genesis().clone());
    let history = ledger.state().node_keys();
    keyring.check_in_force(history)?;
    // The witness was checked against the key it names as the store opened; that key must
    // be the one the log puts in force for its size.
    if let Some((signed, signer)) = store.last_signed_tree_head() {
        let expected = history.key_for_size(signed.head.tree_size);
        if signer != expected {
            return Err(NodeError::Invalid(format!(
                "the node's last signed tree head (size {}) is signed by node key {signer}, but the log puts node key {expected} in force for that size: the data directory is not this ledger's as its log says; restore it from a backup",
                signed.head.tree_size
            )));
        }
    }
    log_recovery(&report, &ledger);
    let metrics = Metrics::new();
    if started_on_a_full_disk(&store, &report) {
        metrics.disk_full.set(1);
        tracing::warn!(
            free_bytes = store.free_bytes().unwrap_or(0),
            path = %store.dir().display(),
            "the disk is full: the node starts read-only; it serves reads and refuses operations (RESOURCE_EXHAUSTED, disk full) until there is room, then takes them again by itself"
        );
    }
    metrics.startup_verification_seconds.set(report.elapsed_ms as f64 / 1000.0);
    metrics.log_entries.set(store.size() as i64);
    metrics.log_bytes.set(store.log_bytes() as i64);
    metrics.accounts.set(ledger.state().account_count() as i64);
    metrics.open_invoices.set(ledger.state().open_invoice_count() as i64);
    let store = Arc::new(store);
    let view = Arc::new(view::View::new(
        store.clone(),
        *ledger.head(),
        ledger.state().roles().clone(),
        ledger.state().groups().clone(),
        ledger.state().accounts().cloned(),
        &pending,
    ));
    view.set_fees(ledger.state().fees().cloned());
    view.set_node_keys(ledger.state().node_keys().clone());
    // Writes wait for the state database when it could not be opened (a full disk).
    let stuck = Arc::new(std::sync::atomic::AtomicBool::new(!store.derived_is_open()));
    let (checkpoints, checkpointer) =
        checkpointer::spawn(store.clone(), view.clone(), pending, stuck.clone())
            .map_err(io_err(&dir.root))?;
    let (stopped_tx, writer_stopped) = tokio::sync::oneshot::channel();
    let writer = writer::spawn_writer(
        store.clone(),
        view.clone(),
        ledger,
        now_ms,
        writer::WriterReports {
            checkpoints,
            derived_stuck: stuck,
            stopped: stopped_tx,
            metrics: metrics.clone(),
        },
    )
    .map_err(io_err(&dir.root))?;
    metrics.watch_queue(writer.handle.room(), cercle_limits::WRITE_QUEUE_MAX);
    let keyring = Arc::new(keyring);
    let service = service::LedgerService::new(
        genesis.clone(),
        store.clone(),
        view.clone(),
        writer.handle,
        keyring.clone(),
        limits,
        metrics.clone(),
    );
    let threads = vec![writer.executor, writer.syncer, checkpointer];
    Ok(OpenNode {
        genesis,
        service,
        store,
        view,
        keyring,
        writer_stopped: Some(writer_stopped),
        metrics,
        threads,
    })
}

/// Bytes the log must be able to take at start for the node not to start read-only: one
/// page, which any operation's record needs.
const START_ROOM_BYTES: u64 = 4096;

/// Whether the disk is full as the node starts: the state database could not be opened for
/// want of room, or the log cannot take one page more. The writer refuses each group that
/// finds no room anyway; this is for the warning and the metrics, at once.
fn started_on_a_full_disk(store: &Store, report: &recovery::RecoveryReport) -> bool {
    report.open.state_unopened.is_some() || store.reserve(START_ROOM_BYTES).is_err_and(|e| e.is_disk_full())
}

fn log_recovery(report: &recovery::RecoveryReport, ledger: &cercle_core::Ledger) {
    let (entries, accounts) = (ledger.head().size, ledger.state().account_count());
    let elapsed_ms = report.elapsed_ms;
    let recovery::Phases { open_ms, snapshot_ms, replay_ms } = report.phases;
    match &report.outcome {
        recovery::StateOutcome::Resumed { replayed: 0, .. } => tracing::info!(
            entries,
            accounts,
            elapsed_ms,
            open_ms,
            snapshot_ms,
            "state verified against the log"
        ),
        recovery::StateOutcome::Resumed { checkpoint, replayed } => tracing::info!(
            entries,
            accounts,
            elapsed_ms,
            open_ms,
            snapshot_ms,
            replay_ms,
            checkpoint,
            rolled_forward = replayed,
            "state rolled forward from the log"
        ),
        recovery::StateOutcome::Rebuilt { reason } => {
            tracing::warn!(entries, accounts, elapsed_ms, open_ms, replay_ms, %reason, "state rebuilt from the log")
        }
    }
}

/// Warns when the process may open fewer files than `connections_max` connections need.
fn check_file_descriptor_limit(connections_max: usize) {
    use nix::sys::resource::{Resource, getrlimit};
    let needed = connections_max as u64 + FILE_DESCRIPTORS_RESERVED;
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft < needed => tracing::warn!(
            rlimit_nofile = soft,
            connections_max,
            "the process may open fewer files than the connection limit needs (raise RLIMIT_NOFILE to {needed}, \
             e.g. LimitNOFILE= or ulimit -n): past it, new connections wait for old ones to close"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read RLIMIT_NOFILE"),
    }
}

// `ServeOptions::shutdown_grace`'s default. Every operation the writer took is executed,
// synced and answered well within it: the queue holds at most `WRITE_QUEUE_MAX` operations,
// written in groups of a few milliseconds.
pub use cercle_limits::SHUTDOWN_GRACE;

/// A certificate chain and its private key, in PEM, for serving TLS.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Never the key, even in a debug print.
impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("cert_pem_bytes", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Reads and checks a certificate chain and its key: a missing or unreadable file, a
    /// file without a certificate or a key, or a key that is not the certificate's, is an
    /// error naming the file.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity, NodeError> {
        let cert_pem =
            std::fs::read(cert).map_err(|source| NodeError::Io { path: cert.to_path_buf(), source })?;
        let key_pem =
            std::fs::read(key).map_err(|source| NodeError::Io { path: key.to_path_buf(), source })?;
        let identity = TlsIdentity { cert_pem, key_pem };
        identity.server_config().map_err(|e| {
            NodeError::Invalid(format!(
                "the TLS certificate {} with the key {} cannot be used: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        Ok(identity)
    }

    fn server_config(&self) -> Result<tonic::transport::Server, String> {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| error_chain(&e))
    }
}

/// An error and its sources on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// How `serve_with` serves, beyond the limits.
pub struct ServeOptions {
    /// Serve TLS with this identity; plain HTTP/2 when `None`.
    pub tls: Option<TlsIdentity>,
    /// Serve `/metrics` on this listener (bound by the caller, so a taken port is an error
    /// at start).
    pub metrics: Option<TcpListener>,
    /// See `SHUTDOWN_GRACE`.
    pub shutdown_grace: Duration,
    /// Serve the browser app (gRPC-web is served either way).
    pub web: Web,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { tls: None, metrics: None, shutdown_grace: SHUTDOWN_GRACE, web: Web::Served }
    }
}

/// Opens the data directory and serves gRPC on `listener`, within `limits`, until
/// `shutdown` completes; also gRPC-web over HTTP/1.1, and the browser app unless `web` is
/// `Web::Off`. `ready` is called with the address once the ledger is open and checked,
/// just before the first request is served.
pub async fn serve(
    dir: &DataDir,
    listener: TcpListener,
    limits: &ServerLimits,
    web: Web,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    serve_with(dir, listener, limits, ServeOptions { web, ..ServeOptions::default() }, ready, shutdown).await
}

/// `serve`, with TLS, metrics, the shutdown grace and the browser app of `options`.
///
/// When `shutdown` completes the node stops accepting connections, reports NOT_SERVING to
/// health checks, and sends every connection an HTTP/2 GOAWAY: requests already taken go
/// on, new ones are refused (clients see UNAVAILABLE). It waits up to
/// `options.shutdown_grace` for the requests in flight, then closes the connections left
/// (streams of entries, which may run for long). Then the writer takes nothing more,
/// executes, syncs and answers what it had queued, the last checkpoint and signed tree
/// head are written, and `serve_with` returns.
pub async fn serve_with(
    dir: &DataDir,
    listener: TcpListener,
    limits: &ServerLimits,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    let mut node = open_node_with_limits(dir, limits).await?;
    let (genesis, store) = (node.genesis.clone(), node.store.clone());
    let writer_stopped = node.writer_stopped.take();
    let (stop_witness, witness_stop) = tokio::sync::watch::channel(false);
    let witness = tokio::spawn(witness_loop(
        store.clone(),
        node.view.clone(),
        node.keyring.clone(),
        witness_stop.clone(),
    ));
    let metrics_task = options.metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving metrics at /metrics");
        }
        tokio::spawn(metrics::serve(listener, node.metrics.clone(), witness_stop.clone()))
    });
    let room = node.service.writer().room();
    let ledger_server = admission::RefuseWritesWhenFull::new(
        pb::ledger_server::LedgerServer::new(node.service.clone())
            .max_decoding_message_size(REQUEST_BYTES_MAX)
            .max_encoding_message_size(RESPONSE_BYTES_MAX),
        room,
    )
    .with_metrics(node.metrics.clone());
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<pb::ledger_server::LedgerServer<service::LedgerService>>().await;
    // Server reflection in both versions: v1, and v1alpha, which many tools still ask for
    // (grpcurl before 1.8.8, Postman, older grpc_cli).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error =
        |e: tonic_reflection::server::Error| NodeError::Invalid(format!("reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    let addr: SocketAddr = listener.local_addr().map_err(io_err(&dir.root))?;
    check_file_descriptor_limit(limits.connections_max);
    let builder = match &options.tls {
        Some(tls) => tls.server_config().map_err(NodeError::Invalid)?,
        None => tonic::transport::Server::builder(),
    };
    tracing::info!(%addr, tls = options.tls.is_some(), ledger_id = %genesis.ledger_id, currency = %genesis.currency, "serving");
    ready(addr);
    // Set once shutdown begins: the grace period counts from then.
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let server = builder
        .max_concurrent_streams(Some(STREAMS_PER_CONNECTION_MAX))
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(Some(limits.keepalive_interval()))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        // The browser speaks gRPC-web, over HTTP/1.1 or HTTP/2, to the origin that served it.
        .accept_http1(true)
        .layer(web::WebLayer::new(options.web))
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ledger_server)
        .serve_with_incoming_shutdown(net::incoming(listener, limits), async {
            tokio::select! {
                () = shutdown => tracing::info!("stopping: no new connections; answering the requests in flight"),
                _ = async { match writer_stopped { Some(rx) => { let _ = rx.await; } None => std::future::pending::<()>().await } } => {
                    tracing::error!("the writer stopped; shutting down (the next start recovers from the log)");
                }
            }
            health_reporter.set_not_serving::<pb::ledger_server::LedgerServer<service::LedgerService>>().await;
            let _ = stopping_tx.send(true);
        });
    let grace = options.shutdown_grace;
    tokio::select! {
        served = server => served?,
        () = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still in flight after the shutdown grace; closing their connections"),
    }
    // The writer takes nothing more, and finishes the groups in hand; the last checkpoint
    // is written.
    let _ = tokio::task::spawn_blocking(move || node.shutdown()).await;
    // The last witness covers everything the writer made durable.
    let _ = stop_witness.send(true);
    let _ = witness.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}
