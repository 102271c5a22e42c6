//! The PostgreSQL baseline: the same transfers as double-entry rows, one durable
//! transaction each, from the same number of concurrent clients ([`Postgres::run`]); and,
//! to compare with `SubmitBatch`, in transactions of the batch's size, one durable commit
//! each, from as many connections as batch clients ([`Postgres::run_batched`]).
//!
//! The server is the one from the OS packages (installed with apt-get when missing),
//! initialised in a fresh temporary directory, listening on 127.0.0.1 only on a free
//! port, with the default durability settings (`fsync`, `synchronous_commit = on`), which
//! are checked. It runs as the `postgres` OS user when the bench runs as root, since
//! PostgreSQL refuses to run as root, and is stopped and deleted at the end.
//!
//! Each transfer: lock both accounts (`SELECT ... FOR UPDATE` in id order, so concurrent
//! transfers cannot deadlock), check status, credit limit and maximum balance, update both
//! balances, insert the transfer and its two postings (one debit, one credit), commit.
//! In a transaction of many transfers, the accounts of the whole batch are locked first, in
//! id order (one statement), then each transfer is checked against the balances so far and
//! applied with the same two statements, and the batch commits once. No signature is
//! verified, which favours PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use crate::load::PhaseResult;
use crate::plan::{Accounts, TransferSpec};

/// Retries of one transaction after a deadlock or serialization failure.
const RETRIES_MAX: u32 = 10;

/// A PostgreSQL server of our own, stopped and deleted on drop.
pub struct Postgres {
    bin: PathBuf,
    root: tempfile::TempDir,
    pub port: u16,
    /// `Some(user)` when commands must run as that OS user (we are root).
    run_as: Option<&'static str>,
    running: bool,
}

/// What the server reported about itself.
pub struct Settings {
    pub version: String,
    pub fsync: String,
    pub synchronous_commit: String,
    pub wal_sync_method: String,
    pub shared_buffers: String,
}

/// The directory of the newest PostgreSQL in the OS packages that has `initdb` and `pg_ctl`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn install() -> anyhow::Result<()> {
    anyhow::ensure!(
        is_root(),
        "PostgreSQL is not installed and only root can install it: run \
         `apt-get update && apt-get install -y postgresql`, or pass --skip-postgres"
    );
    eprintln!("installing PostgreSQL from the OS packages (apt-get) ...");
    for args in [&["update"][..], &["install", "-y", "postgresql"][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run apt-get")?;
        anyhow::ensure!(status.success(), "apt-get {} failed", args.join(" "));
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn id_of(user: &str, flag: &str) -> anyhow::Result<u32> {
    let out = Command::new("id").args([flag, user]).output().context("cannot run id")?;
    anyhow::ensure!(out.status.success(), "no OS user {user}");
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

impl Postgres {
    /// Installs (if needed), initialises and starts a server for `connections` clients in a
    /// new directory under `work_dir`.
    pub fn start(work_dir: &Path, connections: usize) -> anyhow::Result<Postgres> {
        let bin = match find_bin_dir() {
            Some(bin) => bin,
            None => {
                install()?;
                find_bin_dir()
                    .context("PostgreSQL was installed but no initdb/pg_ctl is in /usr/lib/postgresql")?
            }
        };
        let root = tempfile::Builder::new().prefix("cercle-bench-pg-").tempdir_in(work_dir)?;
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            std::os::unix::fs::chown(root.path(), Some(id_of(user, "-u")?), Some(id_of(user, "-g")?))
                .with_context(|| format!("cannot hand {} to the {user} user", root.path().display()))?;
        }
        let mut pg = Postgres { bin, root, port: free_port()?, run_as, running: false };
        let data = pg.data_dir();
        let data = data.to_string_lossy();
        pg.command(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c max_connections={}",
            pg.port,
            pg.root.path().display(),
            (connections + 20).max(100)
        );
        let log = pg.root.path().join("postgres.log");
        pg.command(
            "pg_ctl",
            &["-D", &data, "-l", &log.to_string_lossy(), "-w", "-t", "120", "-o", &options, "start"],
        )?;
        pg.running = true;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Runs one of the server's programs, as the `postgres` user when we are root.
    fn command(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        // The postgres user may not be allowed into our working directory.
        let out = cmd
            .args(args)
            .current_dir(self.root.path())
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.root.path().join("postgres.log")).unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn client(&self) -> anyhow::Result<Client> {
        let config = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port);
        let (client, connection) =
            tokio_postgres::connect(&config, NoTls).await.context("cannot connect to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("PostgreSQL connection: {e}");
            }
        });
        Ok(client)
    }

    /// Creates the schema, loads the accounts and checks the durability settings.
    pub async fn prepare(&self, accounts: &Accounts) -> anyhow::Result<Settings> {
        let client = self.client().await?;
        let show = |name: &'static str| {
            let client = &client;
            async move {
                let row = client.query_one(&format!("SHOW {name}"), &[]).await?;
                Ok::<String, anyhow::Error>(row.get(0))
            }
        };
        let settings = Settings {
            version: show("server_version").await?,
            fsync: show("fsync").await?,
            synchronous_commit: show("synchronous_commit").await?,
            wal_sync_method: show("wal_sync_method").await?,
            shared_buffers: show("shared_buffers").await?,
        };
        anyhow::ensure!(settings.fsync == "on", "PostgreSQL runs with fsync = {}", settings.fsync);
        anyhow::ensure!(
            settings.synchronous_commit == "on",
            "PostgreSQL runs with synchronous_commit = {}",
            settings.synchronous_commit
        );
        client
            .batch_execute(
                "CREATE TABLE accounts (
                     id bigint PRIMARY KEY,
                     handle text NOT NULL UNIQUE,
                     balance_minor bigint NOT NULL DEFAULT 0,
                     credit_limit_minor bigint NOT NULL CHECK (credit_limit_minor >= 0),
                     max_balance_minor bigint,
                     frozen boolean NOT NULL DEFAULT false
                 );
                 CREATE TABLE transfers (
                     id bigserial PRIMARY KEY,
                     operation_id bytea NOT NULL UNIQUE,
                     payer_id bigint NOT NULL REFERENCES accounts,
                     payee_id bigint NOT NULL REFERENCES accounts,
                     amount_minor bigint NOT NULL CHECK (amount_minor > 0),
                     memo text NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now()
                 );
                 CREATE TABLE postings (
                     id bigserial PRIMARY KEY,
                     transfer_id bigint NOT NULL REFERENCES transfers,
                     account_id bigint NOT NULL REFERENCES accounts,
                     amount_minor bigint NOT NULL,
                     balance_after_minor bigint NOT NULL
                 );
                 CREATE INDEX postings_by_account ON postings (account_id, id);",
            )
            .await?;
        let ids: Vec<i64> = (0..accounts.list.len() as i64).collect();
        let handles: Vec<&str> = accounts.list.iter().map(|a| a.handle.as_str()).collect();
        let limits: Vec<i64> = accounts.list.iter().map(|a| a.credit_limit_minor).collect();
        let maxima: Vec<Option<i64>> = accounts.list.iter().map(|a| a.max_balance_minor).collect();
        client
            .execute(
                "INSERT INTO accounts (id, handle, credit_limit_minor, max_balance_minor)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])",
                &[&ids, &handles, &limits, &maxima],
            )
            .await?;
        client.batch_execute("VACUUM ANALYZE").await?;
        client.batch_execute("CHECKPOINT").await?;
        Ok(settings)
    }

    /// Writes every dirty page out, so a phase does not pay for the one before it.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        self.client().await?.batch_execute("CHECKPOINT").await?;
        Ok(())
    }

    /// Executes `specs`, one transaction each, from `connections` concurrent connections.
    /// The clock starts once every connection is open and its statements prepared. The
    /// connections come back open, so their server processes can be measured before they end.
    pub async fn run(
        &self,
        specs: Arc<Vec<TransferSpec>>,
        connections: usize,
    ) -> anyhow::Result<(PhaseResult, Vec<Client>)> {
        let mut workers = Vec::with_capacity(connections);
        for _ in 0..connections {
            let client = self.client().await?;
            let statements = Statements::prepare(&client).await?;
            workers.push((client, statements));
        }
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = workers
            .into_iter()
            .map(|(mut client, statements)| {
                let (specs, next) = (specs.clone(), next.clone());
                tokio::spawn(async move {
                    let mut result = PhaseResult::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(t) = specs.get(i) else { break };
                        let t0 = Instant::now();
                        let mut attempt = 0;
                        loop {
                            match transfer(&mut client, &statements, t).await {
                                Ok(true) => result.accepted += 1,
                                Ok(false) => {
                                    result.rejected += 1;
                                    result.first_rejection.get_or_insert("a limit check failed".into());
                                }
                                Err(e) if retryable(&e) && attempt < RETRIES_MAX => {
                                    attempt += 1;
                                    result.internal_retries += 1;
                                    continue;
                                }
                                Err(e) => {
                                    result.rejected += 1;
                                    result.first_rejection.get_or_insert(e.to_string());
                                }
                            }
                            break;
                        }
                        result.record(t0);
                    }
                    (result, client)
                })
            })
            .collect();
        let mut total = PhaseResult::new();
        let mut clients = Vec::with_capacity(connections);
        for task in tasks {
            let (result, client) = task.await?;
            total.merge(result);
            clients.push(client);
        }
        total.wall = started.elapsed();
        Ok((total, clients))
    }

    /// Executes `specs` in transactions of `batch` transfers, one commit each, from
    /// `connections` concurrent connections; the latency recorded is per transaction, as the
    /// node's is per `SubmitBatch`. A transfer that fails its checks is left out of its
    /// transaction (counted as refused); a transaction that deadlocks or fails to serialize
    /// is retried whole.
    pub async fn run_batched(
        &self,
        specs: Arc<Vec<TransferSpec>>,
        batch: usize,
        connections: usize,
    ) -> anyhow::Result<(PhaseResult, Vec<Client>)> {
        let mut workers = Vec::with_capacity(connections);
        for _ in 0..connections {
            let client = self.client().await?;
            let statements = Statements::prepare(&client).await?;
            workers.push((client, statements));
        }
        let batches = Arc::new(specs.chunks(batch.max(1)).map(<[TransferSpec]>::to_vec).collect::<Vec<_>>());
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = workers
            .into_iter()
            .map(|(mut client, statements)| {
                let (batches, next) = (batches.clone(), next.clone());
                tokio::spawn(async move {
                    let mut result = PhaseResult::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(transfers) = batches.get(i) else { break };
                        let t0 = Instant::now();
                        let mut attempt = 0;
                        loop {
                            match transfers_in_one_transaction(&mut client, &statements, transfers).await {
                                Ok(accepted) => {
                                    let refused = transfers.len() as u64 - accepted;
                                    result.accepted += accepted;
                                    result.rejected += refused;
                                    if refused > 0 {
                                        result.first_rejection.get_or_insert("a limit check failed".into());
                                    }
                                }
                                Err(e) if retryable(&e) && attempt < RETRIES_MAX => {
                                    attempt += 1;
                                    result.internal_retries += 1;
                                    continue;
                                }
                                Err(e) => {
                                    result.rejected += transfers.len() as u64;
                                    result.first_rejection.get_or_insert(e.to_string());
                                }
                            }
                            break;
                        }
                        result.record(t0);
                    }
                    (result, client)
                })
            })
            .collect();
        let mut total = PhaseResult::new();
        let mut clients = Vec::with_capacity(connections);
        for task in tasks {
            let (result, client) = task.await?;
            total.merge(result);
            clients.push(client);
        }
        total.wall = started.elapsed();
        Ok((total, clients))
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if self.running {
            self.running = false;
            let data = self.data_dir();
            self.command("pg_ctl", &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"])?;
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warning: could not stop PostgreSQL: {e}");
        }
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

struct Statements {
    lock: Statement,
    /// Locks any number of accounts, in id order.
    lock_many: Statement,
    update: Statement,
    insert: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> anyhow::Result<Statements> {
        Ok(Statements {
            lock: client
                .prepare(
                    "SELECT id, balance_minor, credit_limit_minor, max_balance_minor, frozen
                     FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
                )
                .await?,
            lock_many: client
                .prepare(
                    "SELECT id, balance_minor, credit_limit_minor, max_balance_minor, frozen
                     FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                )
                .await?,
            update: client
                .prepare(
                    "UPDATE accounts SET balance_minor = balance_minor
                         + CASE WHEN id = $1 THEN -$3::bigint ELSE $3::bigint END
                     WHERE id IN ($1, $2)",
                )
                .await?,
            insert: client
                .prepare(
                    "WITH t AS (
                         INSERT INTO transfers (operation_id, payer_id, payee_id, amount_minor, memo)
                         VALUES ($1, $2, $3, $4, $5) RETURNING id
                     )
                     INSERT INTO postings (transfer_id, account_id, amount_minor, balance_after_minor)
                     SELECT t.id, p.account_id, p.amount_minor, p.balance_after_minor
                     FROM t, (VALUES ($2::bigint, -$4::bigint, $6::bigint),
                                     ($3::bigint, $4::bigint, $7::bigint))
                          AS p (account_id, amount_minor, balance_after_minor)",
                )
                .await?,
        })
    }
}

/// One transfer in one transaction. `Ok(false)`: refused by a check, rolled back.
async fn transfer(
    client: &mut Client,
    s: &Statements,
    t: &TransferSpec,
) -> Result<bool, tokio_postgres::Error> {
    let (payer, payee) = (t.payer as i64, t.payee as i64);
    let tx = client.transaction().await?;
    let rows = tx.query(&s.lock, &[&payer, &payee]).await?;
    let (mut payer_after, mut payee_after) = (None, None);
    for row in &rows {
        let id: i64 = row.get(0);
        let balance: i64 = row.get(1);
        let limit: i64 = row.get(2);
        let max: Option<i64> = row.get(3);
        let frozen: bool = row.get(4);
        if frozen {
            return Ok(false);
        }
        if id == payer {
            match balance.checked_sub(t.amount_minor) {
                Some(after) if after >= -limit => payer_after = Some(after),
                _ => return Ok(false),
            }
        } else {
            match balance.checked_add(t.amount_minor) {
                Some(after) if max.is_none_or(|m| after <= m) => payee_after = Some(after),
                _ => return Ok(false),
            }
        }
    }
    let (Some(payer_after), Some(payee_after)) = (payer_after, payee_after) else {
        return Ok(false);
    };
    tx.execute(&s.update, &[&payer, &payee, &t.amount_minor]).await?;
    tx.execute(
        &s.insert,
        &[&&t.operation_id[..], &payer, &payee, &t.amount_minor, &t.memo, &payer_after, &payee_after],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The state of one locked account within a transaction.
struct Locked {
    balance: i64,
    limit: i64,
    max: Option<i64>,
    frozen: bool,
}

/// `transfers` in one transaction with one commit: the accounts locked first, in id order,
/// then each transfer checked against the balances so far and applied. Returns how many
/// were applied; those that fail a check are left out.
async fn transfers_in_one_transaction(
    client: &mut Client,
    s: &Statements,
    transfers: &[TransferSpec],
) -> Result<u64, tokio_postgres::Error> {
    let mut ids: Vec<i64> = transfers.iter().flat_map(|t| [t.payer as i64, t.payee as i64]).collect();
    ids.sort_unstable();
    ids.dedup();
    let tx = client.transaction().await?;
    let mut accounts = std::collections::HashMap::with_capacity(ids.len());
    for row in tx.query(&s.lock_many, &[&ids]).await? {
        let locked = Locked { balance: row.get(1), limit: row.get(2), max: row.get(3), frozen: row.get(4) };
        accounts.insert(row.get::<_, i64>(0), locked);
    }
    let mut applied = 0;
    for t in transfers {
        let (payer, payee) = (t.payer as i64, t.payee as i64);
        let (Some(from), Some(to)) = (accounts.get(&payer), accounts.get(&payee)) else { continue };
        if from.frozen || to.frozen {
            continue;
        }
        let payer_after = match from.balance.checked_sub(t.amount_minor) {
            Some(after) if after >= -from.limit => after,
            _ => continue,
        };
        let payee_after = match to.balance.checked_add(t.amount_minor) {
            Some(after) if to.max.is_none_or(|m| after <= m) => after,
            _ => continue,
        };
        tx.execute(&s.update, &[&payer, &payee, &t.amount_minor]).await?;
        tx.execute(
            &s.insert,
            &[&&t.operation_id[..], &payer, &payee, &t.amount_minor, &t.memo, &payer_after, &payee_after],
        )
        .await?;
        if let Some(a) = accounts.get_mut(&payer) {
            a.balance = payer_after;
        }
        if let Some(a) = accounts.get_mut(&payee) {
            a.balance = payee_after;
        }
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}
