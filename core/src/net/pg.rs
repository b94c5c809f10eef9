//! The PostgreSQL backend of a hub (`syncline serve --postgres URL`, feature `postgres`):
//! several stateless server nodes share one database. PostgreSQL keeps the catalog
//! (namespaces, credentials) and, per namespace, the log of accepted pushes; each node keeps a
//! cache replica per namespace (SQLite, rebuilt from the log's snapshot and the entries after
//! it when the node starts), so every merge runs in the one engine (spec/merge-rules.md),
//! never in SQL. A push is acknowledged
//! only after its bundle is committed to the log; nodes learn of each other's pushes by
//! `LISTEN/NOTIFY` and, before every request, by reading the log past their position.
//! Tables: spec/sync-protocol.md, "The PostgreSQL backend".

use super::auth::{hash, Grant, TokenHash};
use super::hub::{
    build_replica, check_namespace, devices_text, grant_of, new_token, now_ms, remove_database, Catalog, NamespaceInfo, Store,
};
use super::pg_mirror::Due;
use crate::error::{Error, ErrorKind, Result};
use crate::site::SiteId;
use crate::{Options, Strategy, SyncEngine};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_postgres::IsolationLevel;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS syncline_namespaces(
        name text PRIMARY KEY, created_ms bigint NOT NULL,
        schema_sql text NOT NULL, tables text NOT NULL, strategy text NOT NULL);
    CREATE TABLE IF NOT EXISTS syncline_credentials(
        token_hash bytea PRIMARY KEY,
        namespace text NOT NULL REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        devices text, created_ms bigint NOT NULL);
    CREATE INDEX IF NOT EXISTS syncline_credentials_namespace ON syncline_credentials(namespace);
    CREATE TABLE IF NOT EXISTS syncline_changes(
        namespace text NOT NULL REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        seq bigserial, sender bytea NOT NULL, bundle bytea NOT NULL, created_ms bigint NOT NULL,
        PRIMARY KEY (namespace, seq));
    CREATE TABLE IF NOT EXISTS syncline_devices(
        namespace text NOT NULL REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        site bytea NOT NULL, token_hash bytea NOT NULL,
        PRIMARY KEY (namespace, site));
    CREATE TABLE IF NOT EXISTS syncline_snapshots(
        namespace text PRIMARY KEY REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        seq bigint NOT NULL, bundle bytea NOT NULL, created_ms bigint NOT NULL, parts integer NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS syncline_snapshot_parts(
        namespace text NOT NULL REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        part integer NOT NULL, seq bigint NOT NULL, bytes bytea NOT NULL,
        PRIMARY KEY (namespace, part));
    CREATE TABLE IF NOT EXISTS syncline_seen(
        namespace text NOT NULL REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        site bytea NOT NULL, last_seen_ms bigint NOT NULL,
        PRIMARY KEY (namespace, site));
    CREATE TABLE IF NOT EXISTS syncline_rows(
        namespace text NOT NULL REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        tbl text NOT NULL, pk jsonb NOT NULL, cols jsonb NOT NULL, seq bigint NOT NULL,
        PRIMARY KEY (namespace, tbl, pk));
    CREATE TABLE IF NOT EXISTS syncline_rows_seq(
        namespace text PRIMARY KEY REFERENCES syncline_namespaces(name) ON DELETE CASCADE,
        seq bigint NOT NULL);";

/// The NOTIFY channel; the payload is `<namespace> <sender site id hex>`.
const CHANNEL: &str = "syncline_changes";

/// The first key of the per-namespace advisory lock an append takes (the second is
/// `hashtext(namespace)`), so that appends commit in `seq` order: a reader that sees an entry
/// sees every entry before it, and a position in the log never skips one.
pub(super) const APPEND_LOCK: i32 = 7368435;

/// Rows of the log read per query while catching up.
const CATCH_UP_BATCH: i64 = 256;

pub(super) fn pg(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("PostgreSQL: {e}"))
}

/// What a replica at position `after` in a namespace's log imports next, up to `upto`.
pub(super) struct LogPart {
    /// The log's snapshot, if it lies past `after`: the merged state of every entry up to its
    /// `seq`, which compaction deleted, as a bundle file. It comes first.
    pub snapshot: Option<(i64, tempfile::NamedTempFile)>,
    /// Entries after `after` (and after the snapshot), in order, at most [`CATCH_UP_BATCH`].
    pub entries: Vec<(i64, Vec<u8>)>,
    /// True when the batch was full: more entries may follow.
    pub full: bool,
}

/// Bytes of a snapshot per row of `syncline_snapshot_parts`: a snapshot is written and read a
/// part at a time, never whole in memory, and has no size limit (a `bytea` has 1 GB).
pub(super) const SNAPSHOT_PART: usize = 1 << 20;

/// Read [`LogPart`] of namespace `name`: the snapshot and the entries in one statement, so
/// they come from one state of the log (a compaction stores the one and deletes the others
/// in one transaction); `client` runs a REPEATABLE READ transaction, in which the snapshot's
/// parts are read from the same state.
pub(super) async fn log_after(client: &impl GenericClient, name: &str, after: i64, upto: i64) -> Result<LogPart> {
    let statement = client
        .prepare_cached(
            "(SELECT seq, bundle, parts FROM syncline_snapshots WHERE namespace = $1 AND seq > $2 AND seq <= $3)
             UNION ALL
             (SELECT seq, bundle, NULL FROM syncline_changes WHERE namespace = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4)",
        )
        .await
        .map_err(pg)?;
    let rows = client.query(&statement, &[&name, &after, &upto, &CATCH_UP_BATCH]).await.map_err(pg)?;
    let mut part = LogPart { snapshot: None, entries: Vec::new(), full: false };
    for r in rows {
        let (seq, bundle, parts): (i64, Vec<u8>, Option<i32>) = (r.get(0), r.get(1), r.get(2));
        match parts {
            Some(parts) => part.snapshot = Some((seq, read_snapshot(client, name, seq, &bundle, parts).await?)),
            None => part.entries.push((seq, bundle)),
        }
    }
    part.full = part.entries.len() as i64 == CATCH_UP_BATCH;
    part.entries.sort_by_key(|(seq, _)| *seq);
    if let Some((at, _)) = &part.snapshot {
        part.entries.retain(|(seq, _)| *seq > *at);
    }
    Ok(part)
}

/// The snapshot of `name` at `seq` into a temporary file: `inline` (a snapshot stored whole,
/// by an earlier build) and then its `parts`, streamed a part at a time.
async fn read_snapshot(client: &impl GenericClient, name: &str, seq: i64, inline: &[u8], parts: i32) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("the snapshot of {name}: {e}"));
    let mut file = tempfile::NamedTempFile::new().map_err(io)?;
    file.write_all(inline).map_err(io)?;
    let statement = client
        .prepare_cached("SELECT bytes FROM syncline_snapshot_parts WHERE namespace = $1 AND seq = $2 ORDER BY part")
        .await
        .map_err(pg)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&name, &seq];
    let rows = client.query_raw(&statement, params).await.map_err(pg)?;
    futures_util::pin_mut!(rows);
    let mut read = 0;
    while let Some(row) = rows.next().await {
        file.write_all(row.map_err(pg)?.get::<_, &[u8]>(0)).map_err(io)?;
        read += 1;
    }
    if read != parts {
        return Err(Error::new(ErrorKind::Io, format!("the snapshot of {name} at {seq} has {read} of its {parts} parts")));
    }
    file.flush().map_err(io)?;
    Ok(file)
}

/// Store `bundle` (a file) as namespace `name`'s snapshot at `seq`, in parts of
/// [`SNAPSHOT_PART`] bytes, replacing the one before; in the caller's transaction.
pub(super) async fn write_snapshot(client: &impl GenericClient, name: &str, seq: i64, bundle: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("the snapshot of {name}: {e}"));
    client
        .execute(&client.prepare_cached("DELETE FROM syncline_snapshot_parts WHERE namespace = $1").await.map_err(pg)?, &[&name])
        .await
        .map_err(pg)?;
    let insert = client
        .prepare_cached("INSERT INTO syncline_snapshot_parts(namespace, part, seq, bytes) VALUES ($1, $2, $3, $4)")
        .await
        .map_err(pg)?;
    let mut file = std::fs::File::open(bundle).map_err(io)?;
    let mut buf = vec![0u8; SNAPSHOT_PART];
    let mut parts = 0i32;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match file.read(&mut buf[n..]).map_err(io)? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        client.execute(&insert, &[&name, &parts, &seq, &&buf[..n]]).await.map_err(pg)?;
        parts += 1;
        if n < buf.len() {
            break;
        }
    }
    let now = now_ms();
    client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO syncline_snapshots(namespace, seq, bundle, parts, created_ms) VALUES ($1, $2, '', $3, $4)
                     ON CONFLICT (namespace) DO UPDATE
                     SET seq = excluded.seq, bundle = excluded.bundle, parts = excluded.parts, created_ms = excluded.created_ms",
                )
                .await
                .map_err(pg)?,
            &[&name, &seq, &parts, &now],
        )
        .await
        .map_err(pg)?;
    Ok(())
}

/// The site that stands for namespace `name`'s log among a cache replica's peers.
fn log_site(name: &str) -> SiteId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("syncline-log:{name}").as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    SiteId(id)
}

/// The runtime of the PostgreSQL connections. It may be dropped on a server's async thread
/// (with the last reference to the hub), where a runtime cannot wait for its threads: it is
/// shut down in the background.
pub(super) struct Background(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Background {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until drop")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A hub whose state lives in PostgreSQL.
pub struct PgHub {
    runtime: Arc<Background>,
    pool: Pool,
    /// This node's cache replicas, one SQLite file per namespace (a private temporary folder).
    cache: tempfile::TempDir,
    options: Options,
    /// Log entries this node appended and has in its cache already: skipped when catching up.
    own: Mutex<HashSet<(String, i64)>>,
    remote: broadcast::Sender<(String, SiteId)>,
    /// The mirror thread ([`pg_mirror`](super::pg_mirror)): the row copy and compaction.
    copy: super::pg_mirror::Copier,
}

impl PgHub {
    /// Connect to `url` (`postgresql://user@host:port/db`, `host=/run/dir user=...`), create
    /// the tables if missing and listen for other nodes' pushes. `options` are those of the
    /// cache replicas (`create` is ignored).
    pub fn connect(url: &str, options: Options) -> Result<PgHub> {
        let config: tokio_postgres::Config = url.parse().map_err(pg)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("syncline-postgres")
            .build()
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the PostgreSQL runtime: {e}")))?;
        let manager =
            Manager::from_config(config.clone(), tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(16).runtime(deadpool_postgres::Runtime::Tokio1).build().map_err(pg)?;
        let (remote, _) = broadcast::channel(1024);
        let cache = tempfile::Builder::new()
            .prefix("syncline-node-")
            .tempdir()
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot create the node's cache folder: {e}")))?;
        let runtime = Arc::new(Background(Some(runtime)));
        let copy = super::pg_mirror::start(pool.clone(), runtime.clone(), options.clone())?;
        let hub = PgHub { runtime, pool, cache, options, own: Mutex::new(HashSet::new()), remote, copy };
        hub.block_on(async {
            // One node at a time creates the tables (CREATE ... IF NOT EXISTS races otherwise).
            let mut client = hub.pool.get().await.map_err(pg)?;
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute(&tx.prepare_cached("SELECT pg_advisory_xact_lock(7368434)").await.map_err(pg)?, &[]).await.map_err(pg)?;
            tx.batch_execute(SCHEMA).await.map_err(pg)?;
            // Tables of an earlier build. Only then an ALTER: it would wait for every reader of
            // the table, and every later reader for it.
            let has_parts = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                     AND table_name = 'syncline_snapshots' AND column_name = 'parts')",
                    &[],
                )
                .await
                .map_err(pg)?;
            if !has_parts.get::<_, bool>(0) {
                tx.batch_execute("ALTER TABLE syncline_snapshots ADD COLUMN parts integer NOT NULL DEFAULT 0").await.map_err(pg)?;
            }
            tx.commit().await.map_err(pg)
        })?;
        hub.listen(config)?;
        Ok(hub)
    }

    fn block_on<T: Send>(&self, f: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.runtime.block_on(f);
        }
        // On an async thread (the server's runtime dropping a namespace as it stops), which
        // must not block on a runtime: another thread waits.
        std::thread::scope(|s| s.spawn(|| self.runtime.block_on(f)).join())
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Io, "a PostgreSQL call panicked")))
    }

    /// A connection that LISTENs and forwards each NOTIFY to `remote`; it reconnects when lost.
    fn listen(&self, config: tokio_postgres::Config) -> Result<()> {
        let remote = self.remote.clone();
        let copy = self.copy.wake.clone();
        let first = self.runtime.block_on(config.connect(tokio_postgres::NoTls)).map_err(pg)?;
        self.runtime.spawn(async move {
            let mut next = Some(first);
            loop {
                let (client, mut connection) = match next.take() {
                    Some(c) => c,
                    None => match config.connect(tokio_postgres::NoTls).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("PostgreSQL LISTEN connection: {e}; retrying");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            continue;
                        }
                    },
                };
                let (remote, copy) = (remote.clone(), copy.clone());
                // The connection runs in its own task: it carries the LISTEN and the notices.
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if let Some((ns, site)) = n.payload().split_once(' ') {
                                    let _ = copy.send(Due::Copy(ns.to_owned()));
                                    if let Ok(site) = site.parse::<SiteId>() {
                                        let _ = remote.send((ns.to_owned(), site));
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("PostgreSQL LISTEN connection lost: {e}");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    tracing::warn!("PostgreSQL LISTEN: {e}; retrying");
                    driver.abort();
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                let _ = driver.await; // until the connection is lost
                drop(client);
            }
        });
        Ok(())
    }

    /// Compact namespace `name`'s log now (nodes also do it on their own, every 10,000
    /// entries): its merged state becomes the namespace's snapshot, from which nodes start,
    /// and the entries it stands for are deleted. Answers the snapshot's position in the log.
    /// Refused (`InvalidArgument`) while the namespace has open conflicts, quarantined or
    /// rejected rows, which only the log keeps.
    pub fn compact_log(&self, name: &str) -> Result<i64> {
        check_namespace(name)?;
        let (answer, answered) = std::sync::mpsc::channel();
        self.copy.wake.send(Due::Compact(name.to_owned(), answer)).map_err(|_| Error::new(ErrorKind::Closed, "the hub is closing"))?;
        answered.recv().map_err(|_| Error::new(ErrorKind::Closed, "the hub is closing"))?
    }

    fn cache_file(&self, name: &str) -> PathBuf {
        self.cache.path().join(format!("{name}.db"))
    }

    async fn namespace_exists(client: &deadpool_postgres::Client, name: &str) -> Result<bool> {
        let row = client
            .query_one(
                &client.prepare_cached("SELECT EXISTS (SELECT 1 FROM syncline_namespaces WHERE name = $1)").await.map_err(pg)?,
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }
}

impl Catalog for PgHub {
    fn create_namespace(&self, name: &str, schema: &str, tables: &[String], strategy: Strategy) -> Result<()> {
        check_namespace(name)?;
        // Check the schema the way every node will build it, in a scratch replica.
        let scratch = self.cache.path().join(format!("check-{}.db", uuid::Uuid::new_v4().simple()));
        let built = build_replica(&scratch, &self.options, schema, tables, strategy).and_then(|e| e.close());
        remove_database(&scratch);
        built?;
        let tables_text = tables.join(" ");
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            let inserted = client
                .execute(
                    &client
                        .prepare_cached(
                            "INSERT INTO syncline_namespaces(name, created_ms, schema_sql, tables, strategy) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO NOTHING",
                        )
                        .await
                        .map_err(pg)?,
                    &[&name, &now_ms(), &schema, &tables_text, &strategy.as_str()],
                )
                .await
                .map_err(pg)?;
            if inserted == 0 {
                return Err(Error::invalid_argument(format!("namespace {name} exists")));
            }
            Ok(())
        })
    }

    fn delete_namespace(&self, name: &str) -> Result<()> {
        check_namespace(name)?;
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            if client
                .execute(&client.prepare_cached("DELETE FROM syncline_namespaces WHERE name = $1").await.map_err(pg)?, &[&name])
                .await
                .map_err(pg)?
                == 0
            {
                return Err(Error::invalid_argument(format!("no namespace {name}")));
            }
            Ok(())
        })
    }

    fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT n.name, n.created_ms, (SELECT count(*) FROM syncline_credentials c WHERE c.namespace = n.name)
                     FROM syncline_namespaces n ORDER BY n.name",
                        )
                        .await
                        .map_err(pg)?,
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| NamespaceInfo { name: r.get(0), created_ms: r.get(1), credentials: r.get::<_, i64>(2) as u64 })
                .collect())
        })
    }

    fn issue_token(&self, name: &str, devices: &[SiteId]) -> Result<String> {
        check_namespace(name)?;
        let token = new_token();
        let (h, devices) = (hash(&token).to_vec(), devices_text(devices));
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            if !Self::namespace_exists(&client, name).await? {
                return Err(Error::invalid_argument(format!("no namespace {name}")));
            }
            client
                .execute(
                    &client
                        .prepare_cached(
                            "INSERT INTO syncline_credentials(token_hash, namespace, devices, created_ms) VALUES ($1, $2, $3, $4)",
                        )
                        .await
                        .map_err(pg)?,
                    &[&h, &name, &devices, &now_ms()],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })?;
        Ok(token)
    }

    fn revoke_token(&self, token: &str) -> Result<bool> {
        let h = hash(token).to_vec();
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            Ok(client
                .execute(&client.prepare_cached("DELETE FROM syncline_credentials WHERE token_hash = $1").await.map_err(pg)?, &[&h])
                .await
                .map_err(pg)?
                > 0)
        })
    }
}

impl Store for PgHub {
    fn names(&self) -> Result<Vec<String>> {
        Ok(self.namespaces()?.into_iter().map(|n| n.name).collect())
    }

    fn check(&self) -> Result<()> {
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            client.query_one(&client.prepare_cached("SELECT 1").await.map_err(pg)?, &[]).await.map_err(pg).map(drop)
        })
    }

    fn grant(&self, token: &TokenHash) -> Result<Option<Grant>> {
        let h = token.to_vec();
        let found = self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            let row = client
                .query_opt(
                    &client
                        .prepare_cached("SELECT namespace, devices FROM syncline_credentials WHERE token_hash = $1")
                        .await
                        .map_err(pg)?,
                    &[&h],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1))))
        })?;
        found.map(|(namespace, devices)| grant_of(namespace, devices)).transpose()
    }

    /// A fresh cache replica built from the namespace's schema; [`catch_up`](Store::catch_up)
    /// then replays the log into it.
    fn open(&self, name: &str) -> Result<Option<Arc<SyncEngine>>> {
        if check_namespace(name).is_err() {
            return Ok(None);
        }
        let found = self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            let row = client
                .query_opt(
                    &client
                        .prepare_cached("SELECT schema_sql, tables, strategy FROM syncline_namespaces WHERE name = $1")
                        .await
                        .map_err(pg)?,
                    &[&name],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2))))
        })?;
        let Some((schema, tables, strategy)) = found else { return Ok(None) };
        let file = self.cache_file(name);
        remove_database(&file);
        let tables: Vec<String> = tables.split_whitespace().map(str::to_owned).collect();
        let engine = build_replica(&file, &self.options, &schema, &tables, strategy.parse()?)?;
        Ok(Some(Arc::new(engine)))
    }

    fn catch_up(&self, name: &str, engine: &SyncEngine, cursor: &mut i64) -> Result<()> {
        loop {
            let part = self.block_on(async {
                let mut client = self.pool.get().await.map_err(pg)?;
                let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start();
                let tx = tx.await.map_err(pg)?;
                let part = log_after(&tx, name, *cursor, i64::MAX).await?;
                tx.commit().await.map_err(pg)?;
                Ok(part)
            })?;
            if let Some((seq, state)) = part.snapshot {
                engine.import_bundle_file(state.path())?;
                *cursor = seq;
                // The entries it stands for are gone, this node's own among them.
                self.own.lock().unwrap_or_else(|p| p.into_inner()).retain(|(n, s)| n != name || *s > seq);
            }
            for (seq, bundle) in part.entries {
                let mine = self.own.lock().unwrap_or_else(|p| p.into_inner()).remove(&(name.to_owned(), seq));
                if !mine {
                    engine.import_bundle(&bundle)?;
                }
                *cursor = seq;
            }
            if !part.full {
                return Ok(());
            }
        }
    }

    fn accepted(&self, name: &str, sender: &SiteId, bundle: &[u8]) -> Result<()> {
        let payload = format!("{name} {}", sender.to_hex());
        let seq = self.block_on(async {
            let mut client = self.pool.get().await.map_err(pg)?;
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute(&tx.prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))").await.map_err(pg)?, &[&APPEND_LOCK, &name])
                .await
                .map_err(pg)?;
            let row = tx
                .query_one(
                    &tx.prepare_cached(
                        "INSERT INTO syncline_changes(namespace, sender, bundle, created_ms) VALUES ($1, $2, $3, $4) RETURNING seq",
                    )
                    .await
                    .map_err(pg)?,
                    &[&name, &sender.0.as_slice(), &bundle, &now_ms()],
                )
                .await
                .map_err(pg)?;
            tx.execute(&tx.prepare_cached("SELECT pg_notify($1, $2)").await.map_err(pg)?, &[&CHANNEL, &payload]).await.map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(row.get::<_, i64>(0))
        })?;
        self.own.lock().unwrap_or_else(|p| p.into_inner()).insert((name.to_owned(), seq));
        let _ = self.copy.wake.send(Due::Copy(name.to_owned()));
        Ok(())
    }

    fn device_owner(&self, name: &str, site: &SiteId) -> Result<Option<TokenHash>> {
        let row = self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            let row = client
                .query_opt(
                    &client
                        .prepare_cached("SELECT token_hash FROM syncline_devices WHERE namespace = $1 AND site = $2")
                        .await
                        .map_err(pg)?,
                    &[&name, &site.0.as_slice()],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })?;
        Ok(row.and_then(|t| TokenHash::try_from(&t[..]).ok()))
    }

    fn bind_device(&self, name: &str, _engine: &SyncEngine, site: &SiteId, token: &TokenHash) -> Result<()> {
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            client
                .execute(
                    &client
                        .prepare_cached(
                            "INSERT INTO syncline_devices(namespace, site, token_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        )
                        .await
                        .map_err(pg)?,
                    &[&name, &site.0.as_slice(), &token.as_slice()],
                )
                .await
                .map_err(pg)
                .map(drop)
        })
    }

    fn last_seen(&self, name: &str, _engine: &SyncEngine) -> Result<HashMap<SiteId, u64>> {
        let rows = self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            client
                .query(
                    &client.prepare_cached("SELECT site, last_seen_ms FROM syncline_seen WHERE namespace = $1").await.map_err(pg)?,
                    &[&name],
                )
                .await
                .map_err(pg)
        })?;
        Ok(rows.iter().filter_map(|r| Some((SiteId::from_slice(r.get(0)).ok()?, r.get::<_, i64>(1) as u64))).collect())
    }

    fn store_seen(&self, name: &str, _engine: &SyncEngine, seen: &HashMap<SiteId, u64>) -> Result<()> {
        let (sites, times): (Vec<&[u8]>, Vec<i64>) = seen.iter().map(|(s, ms)| (s.0.as_slice(), *ms as i64)).unzip();
        self.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            client
                .execute(
                    &client.prepare_cached("INSERT INTO syncline_seen(namespace, site, last_seen_ms) SELECT $1, u.site, u.ms FROM unnest($2::bytea[], $3::int8[]) AS u(site, ms)
                     ON CONFLICT (namespace, site) DO UPDATE SET last_seen_ms = GREATEST(syncline_seen.last_seen_ms, excluded.last_seen_ms)").await.map_err(pg)?,
                    &[&name, &sites, &times],
                )
                .await
                .map_err(pg)
                .map(drop)
        })
    }

    /// The change is made in this node's cache, then what the log lacks (the change alone: the
    /// log's site is first marked as holding everything) is appended to the log.
    fn originate(&self, name: &str, engine: &SyncEngine, change: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let log = log_site(name);
        engine.peer_holds_all(&log)?;
        change()?;
        let bundle = engine.generate_bundle(Some(&log))?;
        self.accepted(name, &engine.site_id()?, &bundle)?;
        engine.peer_holds_all(&log)
    }

    /// The site that stands for the shared log in a cache replica's peers.
    fn internal_site(&self, name: &str) -> Option<SiteId> {
        Some(log_site(name))
    }

    fn remote_changes(&self) -> Option<broadcast::Receiver<(String, SiteId)>> {
        Some(self.remote.subscribe())
    }
}
