//! The PostgreSQL backend's queryable copy of every namespace's rows (`syncline_rows`), for the
//! app's backend. One node at a time per namespace (an advisory lock) replays the log in `seq`
//! order into a mirror replica of its own and, in the transaction that moves
//! `syncline_rows_seq` on, rewrites the rows those entries changed. The copy is therefore
//! always the merged state after a prefix of the log, whichever node wrote it; a node that dies
//! mid-way leaves the last committed prefix, and any node's sweep goes on from there.
//! Tables: spec/sync-protocol.md, "The PostgreSQL backend".

use super::hub::{build_replica, remove_database};
use super::pg::{pg, Background};
use crate::error::Result;
use crate::schema::quote_ident;
use crate::{Options, SyncEngine, Value};
use deadpool_postgres::{Pool, Transaction};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio_postgres::IsolationLevel;

/// How often every namespace is checked for log entries not copied yet (a node that died
/// between its append and its copy leaves some).
const SWEEP: Duration = Duration::from_secs(2);
/// Log entries copied per transaction.
const BATCH: i64 = 256;
/// Rows written per statement.
const ROWS_PER_STATEMENT: usize = 1000;
/// The first key of the per-namespace advisory lock of the copy (the second is
/// `hashtext(namespace)`; the log's append lock is [`super::pg::APPEND_LOCK`]).
const COPY_LOCK: i32 = 7368436;

/// The copying thread of one node; it stops when this is dropped.
pub(super) struct Copier {
    /// Send a namespace's name to have its new log entries copied now rather than at the next
    /// sweep.
    pub wake: mpsc::Sender<String>,
    stop: Arc<AtomicBool>,
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.send(String::new()); // no namespace has an empty name
    }
}

/// Start the copying thread.
pub(super) fn start(pool: Pool, runtime: Arc<Background>, options: Options) -> Result<Copier> {
    let dir = tempfile::Builder::new()
        .prefix("syncline-rows-")
        .tempdir()
        .map_err(|e| crate::Error::new(crate::ErrorKind::Io, format!("cannot create the row copy's folder: {e}")))?;
    let (wake, due) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut copy = RowCopy { pool, runtime, dir, options, mirrors: HashMap::new() };
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("syncline-rows".into())
        .spawn(move || copy.run(due, &stopped))
        .map_err(|e| crate::Error::new(crate::ErrorKind::Io, format!("cannot start the row copy: {e}")))?;
    Ok(Copier { wake, stop })
}

/// A replica fed the log of one namespace in `seq` order, up to `applied`.
struct Mirror {
    /// The namespace's creation time: a namespace deleted and created again is another one.
    created_ms: i64,
    tables: Vec<String>,
    engine: SyncEngine,
    file: PathBuf,
    applied: i64,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.engine.close();
        remove_database(&self.file);
    }
}

struct RowCopy {
    pool: Pool,
    runtime: Arc<Background>,
    dir: tempfile::TempDir,
    options: Options,
    mirrors: HashMap<String, Mirror>,
}

/// A namespace's row in `syncline_namespaces`: created_ms, schema_sql, tables, strategy.
type Definition = (i64, String, String, String);

impl RowCopy {
    fn run(&mut self, due: mpsc::Receiver<String>, stop: &AtomicBool) {
        let mut swept = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let mut names = HashSet::new();
            match due.recv_timeout(SWEEP.saturating_sub(swept.elapsed())) {
                Ok(name) => {
                    names.insert(name);
                    names.extend(due.try_iter());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if swept.elapsed() >= SWEEP {
                swept = Instant::now();
                match self.behind() {
                    Ok(all) => names.extend(all),
                    Err(e) => tracing::warn!("row copy: cannot list namespaces: {e}"),
                }
            }
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                if let Err(e) = self.catch_up(&name) {
                    tracing::warn!(namespace = %name, "row copy: {e}; retrying at the next sweep");
                    // Its mirror may hold entries whose copy did not commit.
                    self.mirrors.remove(&name);
                }
            }
        }
    }

    /// Namespaces whose log runs past their copy.
    fn behind(&self) -> Result<Vec<String>> {
        self.runtime.block_on(async {
            let client = self.pool.get().await.map_err(pg)?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT n.name FROM syncline_namespaces n
                     WHERE (SELECT max(c.seq) FROM syncline_changes c WHERE c.namespace = n.name)
                         > COALESCE((SELECT r.seq FROM syncline_rows_seq r WHERE r.namespace = n.name), 0)",
                        )
                        .await
                        .map_err(pg)?,
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Copy namespace `name`'s log entries past its copy, a batch per transaction, unless
    /// another node holds the copy's lock (it copies them then).
    fn catch_up(&mut self, name: &str) -> Result<()> {
        let runtime = self.runtime.clone();
        while runtime.block_on(self.step(name))? {}
        Ok(())
    }

    /// One transaction of [`catch_up`](Self::catch_up); true if the log may hold more.
    async fn step(&mut self, name: &str) -> Result<bool> {
        let mut client = self.pool.get().await.map_err(pg)?;
        // One snapshot for every read: a namespace deleted meanwhile is still whole in it (the
        // write then fails, and the next sweep finds it gone), and the log in it is a prefix
        // (appends commit in seq order).
        let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await.map_err(pg)?;
        let found = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT pg_try_advisory_xact_lock($1, hashtext($2)), n.created_ms, n.schema_sql, n.tables, n.strategy,
                            COALESCE((SELECT r.seq FROM syncline_rows_seq r WHERE r.namespace = $2), 0)
                     FROM syncline_namespaces n WHERE n.name = $2",
                )
                .await
                .map_err(pg)?,
                &[&COPY_LOCK, &name],
            )
            .await
            .map_err(pg)?;
        let Some(found) = found else {
            self.mirrors.remove(name);
            return Ok(false);
        };
        if !found.get::<_, bool>(0) {
            return Ok(false); // another node is copying it
        }
        let definition: Definition = (found.get(1), found.get(2), found.get(3), found.get(4));
        let copied: i64 = found.get(5);
        let mirror = self.mirror(name, &definition, copied)?;
        // A mirror behind the copy (new on this node) replays what is copied already.
        while mirror.applied < copied {
            let entries = log(&tx, name, mirror.applied, copied).await?;
            if entries.is_empty() {
                return Err(crate::Error::new(crate::ErrorKind::Io, format!("the log of {name} lacks entries up to {copied}")));
            }
            for (seq, bundle) in entries {
                mirror.engine.import_bundle(&bundle)?;
                mirror.applied = seq;
            }
        }
        let entries = log(&tx, name, copied, i64::MAX).await?;
        let Some(&(last, _)) = entries.last() else { return Ok(false) };
        let mut touched: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
        let mut migrated = false;
        for (seq, bundle) in &entries {
            let (report, changes) = mirror.engine.import_bundle_changes(bundle)?;
            mirror.applied = *seq;
            migrated |= report.migrated > 0;
            for c in changes {
                touched.insert((c.table, pk_json(&c.pk).to_string()), c.pk);
            }
        }
        if migrated {
            // A new column changed every row of its table: copy the tables again whole.
            for table in mirror.tables.clone() {
                tx.execute(
                    &tx.prepare_cached("DELETE FROM syncline_rows WHERE namespace = $1 AND tbl = $2").await.map_err(pg)?,
                    &[&name, &table],
                )
                .await
                .map_err(pg)?;
                let rows = mirror.engine.read(|c| read_rows(c, &table, None))?;
                write_rows(&tx, name, &table, rows, last).await?;
            }
        } else {
            let mut by_table: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
            for ((table, _), pk) in touched {
                by_table.entry(table).or_default().push(pk);
            }
            for (table, keys) in by_table {
                let mut present = Vec::new();
                let mut gone = Vec::new();
                mirror.engine.read(|c| {
                    for pk in keys {
                        match read_rows(c, &table, Some(&pk))?.pop() {
                            Some(row) => present.push(row),
                            None => gone.push(pk_json(&pk)),
                        }
                    }
                    Ok(())
                })?;
                tx.execute(
                    &tx.prepare_cached("DELETE FROM syncline_rows WHERE namespace = $1 AND tbl = $2 AND pk = ANY($3)").await.map_err(pg)?,
                    &[&name, &table, &gone],
                )
                .await
                .map_err(pg)?;
                write_rows(&tx, name, &table, present, last).await?;
            }
        }
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO syncline_rows_seq(namespace, seq) VALUES ($1, $2) ON CONFLICT (namespace) DO UPDATE SET seq = excluded.seq",
            )
            .await
            .map_err(pg)?,
            &[&name, &last],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(entries.len() as i64 == BATCH)
    }

    /// The mirror of namespace `name`, built again if it is another namespace by that name or
    /// ahead of the copy (`copied`).
    fn mirror(&mut self, name: &str, definition: &Definition, copied: i64) -> Result<&mut Mirror> {
        let (created_ms, schema, tables, strategy) = definition;
        if self.mirrors.get(name).is_some_and(|m| m.created_ms != *created_ms || m.applied > copied) {
            self.mirrors.remove(name);
        }
        if !self.mirrors.contains_key(name) {
            let file = self.dir.path().join(format!("{name}.db"));
            remove_database(&file);
            let tables: Vec<String> = tables.split_whitespace().map(str::to_owned).collect();
            let engine = build_replica(&file, &self.options, schema, &tables, strategy.parse()?)?;
            self.mirrors.insert(name.to_owned(), Mirror { created_ms: *created_ms, tables, engine, file, applied: 0 });
        }
        Ok(self.mirrors.get_mut(name).expect("inserted above"))
    }
}

/// Log entries of `name` with `after < seq <= upto`, a batch at most, in order.
async fn log(tx: &Transaction<'_>, name: &str, after: i64, upto: i64) -> Result<Vec<(i64, Vec<u8>)>> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT seq, bundle FROM syncline_changes WHERE namespace = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            )
            .await
            .map_err(pg)?,
            &[&name, &after, &upto, &BATCH],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A row's key as `syncline_rows.pk` holds it: the key columns' values, in key order.
fn pk_json(pk: &[Value]) -> Json {
    Json::Array(pk.iter().map(crate::json::value).collect())
}

/// A row as `syncline_rows` holds it: its key, and every column's value by name.
struct Row {
    pk: Json,
    cols: Json,
}

/// The rows of `table` (every one, or the one whose key is `pk`, if it exists).
fn read_rows(c: &rusqlite::Connection, table: &str, pk: Option<&[Value]>) -> Result<Vec<Row>> {
    let info = crate::schema::introspect(c, table)?;
    let mut sql = format!("SELECT * FROM {}", quote_ident(table));
    if pk.is_some() {
        let terms: Vec<String> = info.pk.iter().enumerate().map(|(i, k)| format!("{} IS ?{}", quote_ident(&k.name), i + 1)).collect();
        sql += &format!(" WHERE {}", terms.join(" AND "));
    }
    let mut stmt = c.prepare_cached(&sql)?;
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let key: Vec<usize> = info.pk.iter().map(|k| names.iter().position(|n| *n == k.name).expect("a key column is selected")).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(pk.unwrap_or_default()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let values = (0..names.len()).map(|i| r.get(i)).collect::<rusqlite::Result<Vec<Value>>>()?;
        let pk = pk_json(&key.iter().map(|&i| values[i].clone()).collect::<Vec<_>>());
        let cols = names.iter().zip(&values).map(|(n, v)| (n.clone(), crate::json::value(v))).collect();
        out.push(Row { pk, cols: Json::Object(cols) });
    }
    Ok(out)
}

/// Insert or replace `rows` of `table`, as of log entry `seq`.
async fn write_rows(tx: &Transaction<'_>, name: &str, table: &str, rows: Vec<Row>, seq: i64) -> Result<()> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO syncline_rows(namespace, tbl, pk, cols, seq)
             SELECT $1, $2, u.pk, u.cols, $5 FROM unnest($3::jsonb[], $4::jsonb[]) AS u(pk, cols)
             ON CONFLICT (namespace, tbl, pk) DO UPDATE SET cols = excluded.cols, seq = excluded.seq",
        )
        .await
        .map_err(pg)?;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let (pks, cols): (Vec<Json>, Vec<Json>) = rows.by_ref().take(ROWS_PER_STATEMENT).map(|r| (r.pk, r.cols)).unzip();
        tx.execute(&statement, &[&name, &table, &pks, &cols, &seq]).await.map_err(pg)?;
    }
    Ok(())
}
