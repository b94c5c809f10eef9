//! The PostgreSQL backend's mirror replicas: per namespace, a replica fed the log in `seq`
//! order and nothing else, so its state is always exactly that of a prefix of the log. One
//! node at a time per namespace (an advisory lock) uses it to
//! - keep the queryable copy `syncline_rows` for the app's backend: in the transaction that
//!   moves `syncline_rows_seq` on, it rewrites the rows the new entries changed, so the copy
//!   is the merged state after a prefix of the log, whichever node wrote it, and a node that
//!   dies midway leaves the last committed prefix;
//! - compact the log: the mirror's whole state, as a bundle, becomes the namespace's snapshot
//!   in `syncline_snapshots` (in parts), and the entries it stands for are deleted, in one transaction.
//!
//! Tables: spec/sync-protocol.md, "The PostgreSQL backend".

use super::hub::{build_replica, remove_database};
use super::pg::{log_after, pg, Background, LogPart};
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
/// Mirrors a node keeps open (as many namespaces as a server keeps open by default); past
/// it the least recently used is closed, and built again from the snapshot when needed.
const MAX_MIRRORS: usize = 256;
/// The longest a namespace whose copy keeps failing waits for its next try.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Entries applied since the last snapshot after which a node compacts the log on its own.
const COMPACT_ENTRIES: u64 = 10_000;
/// Rows written per statement.
const ROWS_PER_STATEMENT: usize = 1000;
/// The first key of the per-namespace advisory lock of the copy (the second is
/// `hashtext(namespace)`; the log's append lock is [`super::pg::APPEND_LOCK`]).
const COPY_LOCK: i32 = 7368436;

/// What the mirror thread is asked to do.
pub(super) enum Due {
    /// Copy namespace `name`'s new log entries now rather than at the next sweep.
    Copy(String),
    /// Compact namespace `name`'s log now, answering the snapshot's `seq`.
    Compact(String, mpsc::Sender<Result<i64>>),
}

/// The mirror thread of one node; it stops when this is dropped.
pub(super) struct Copier {
    pub wake: mpsc::Sender<Due>,
    stop: Arc<AtomicBool>,
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.send(Due::Copy(String::new())); // no namespace has an empty name
    }
}

/// Start the mirror thread.
pub(super) fn start(pool: Pool, runtime: Arc<Background>, options: Options) -> Result<Copier> {
    let dir = tempfile::Builder::new()
        .prefix("syncline-mirror-")
        .tempdir()
        .map_err(|e| crate::Error::new(crate::ErrorKind::Io, format!("cannot create the mirrors' folder: {e}")))?;
    let (wake, due) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut copy = Mirrors { pool, runtime, dir, options, mirrors: HashMap::new(), failing: HashMap::new() };
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("syncline-mirror".into())
        .spawn(move || copy.run(due, &stopped))
        .map_err(|e| crate::Error::new(crate::ErrorKind::Io, format!("cannot start the mirror thread: {e}")))?;
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
    /// Entries applied since the snapshot it started from (or since it compacted).
    since_snapshot: u64,
    /// When a step last used it (the least recently used goes first past [`MAX_MIRRORS`]).
    used: Instant,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.engine.close();
        remove_database(&self.file);
    }
}

struct Mirrors {
    pool: Pool,
    runtime: Arc<Background>,
    dir: tempfile::TempDir,
    options: Options,
    mirrors: HashMap<String, Mirror>,
    /// Namespaces whose copy failed: failures in a row, and when to try again. A failure
    /// rebuilds the mirror from the snapshot, so retrying at every sweep would do that forever.
    failing: HashMap<String, (u32, Instant)>,
}

/// How long a namespace waits after `failures` failed copies in a row.
fn backoff(failures: u32) -> Duration {
    SWEEP.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF)
}

/// How a [`Mirrors::step`] ended.
enum Step {
    /// Another node holds the namespace's copy lock.
    Busy,
    /// A full batch was copied: the log may hold more.
    More,
    /// There is no such namespace (any more).
    Gone,
    /// The copy is at the log's head; if compaction was asked or due, the snapshot's `seq`, or
    /// why the log was not compacted.
    Done { compacted: Option<Result<i64>> },
}

/// What the entries a step imported changed, for the copy to rewrite: some rows (by table and
/// key), or every row (a snapshot was imported, or a migration changed a table's columns).
#[derive(Default)]
struct Touched {
    rows: BTreeMap<(String, String), Vec<Value>>,
    whole: bool,
}

impl Mirror {
    /// Import `part` of the log in order; with `touched`, note what it changed. A snapshot is
    /// streamed from its file, and no row of it is noted (there may be millions).
    fn apply(&mut self, part: LogPart, mut touched: Option<&mut Touched>) -> Result<()> {
        if let Some((seq, state)) = part.snapshot {
            self.engine.import_bundle_file(state.path())?;
            if let Some(t) = touched.as_deref_mut() {
                t.whole = true;
            }
            (self.applied, self.since_snapshot) = (seq, 0);
        }
        for (seq, bundle) in part.entries {
            match touched.as_deref_mut() {
                Some(t) => {
                    let (report, changes) = self.engine.import_bundle_changes(&bundle)?;
                    t.whole |= report.migrated > 0;
                    if !t.whole {
                        t.rows.extend(changes.into_iter().map(|c| ((c.table, pk_json(&c.pk).to_string()), c.pk)));
                    }
                }
                None => {
                    self.engine.import_bundle(&bundle)?;
                }
            }
            self.applied = seq;
            self.since_snapshot += 1;
        }
        Ok(())
    }
}

/// A namespace's row in `syncline_namespaces`: created_ms, schema_sql, tables, strategy.
type Definition = (i64, String, String, String);

impl Mirrors {
    fn run(&mut self, due: mpsc::Receiver<Due>, stop: &AtomicBool) {
        let mut swept = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let mut names = HashSet::new();
            let mut asked = Vec::new();
            match due.recv_timeout(SWEEP.saturating_sub(swept.elapsed())) {
                Ok(first) => {
                    for d in std::iter::once(first).chain(due.try_iter()) {
                        match d {
                            Due::Copy(name) => names.insert(name),
                            Due::Compact(name, answer) => {
                                asked.push((name, answer));
                                false
                            }
                        };
                    }
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
            let now = Instant::now();
            names.retain(|n| !n.is_empty() && self.failing.get(n).is_none_or(|(_, at)| now >= *at));
            for name in names {
                match self.catch_up(&name) {
                    Ok(()) => {
                        self.failing.remove(&name);
                    }
                    Err(e) => {
                        // Its mirror may hold entries whose copy did not commit.
                        self.mirrors.remove(&name);
                        let failed = self.failing.entry(name.clone()).or_insert((0, now));
                        *failed = (failed.0 + 1, Instant::now() + backoff(failed.0));
                        tracing::warn!(namespace = %name, "row copy: {e}; trying again in {:?}", backoff(failed.0 - 1));
                    }
                }
            }
            for (name, answer) in asked {
                let _ = answer.send(self.compact(&name));
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
                     WHERE GREATEST((SELECT max(c.seq) FROM syncline_changes c WHERE c.namespace = n.name),
                                    (SELECT s.seq FROM syncline_snapshots s WHERE s.namespace = n.name))
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
    /// another node holds the copy's lock (it copies them then). A mirror that has applied
    /// [`COMPACT_ENTRIES`] since its snapshot compacts the log as well.
    fn catch_up(&mut self, name: &str) -> Result<()> {
        let runtime = self.runtime.clone();
        loop {
            let step = runtime.block_on(self.step(name, false))?;
            if let Step::Done { compacted: Some(Err(e)) } = &step {
                // Kept entries cost only space; the mirror tries again after as many more.
                tracing::info!(namespace = %name, "the log is not compacted yet: {e}");
            }
            if !matches!(step, Step::More) {
                return Ok(());
            }
        }
    }

    /// Compact namespace `name`'s log now: copy what is new, then store the mirror's state as
    /// the snapshot and delete the entries it stands for. The snapshot's `seq`.
    fn compact(&mut self, name: &str) -> Result<i64> {
        let runtime = self.runtime.clone();
        for _ in 0..100 {
            match runtime.block_on(self.step(name, true)) {
                Ok(Step::Done { compacted }) => {
                    return compacted.unwrap_or_else(|| Err(crate::Error::new(crate::ErrorKind::Io, "the compaction did not run")))
                }
                Ok(Step::Gone) => return Err(crate::Error::invalid_argument(format!("no namespace {name}"))),
                Ok(Step::More) => {}
                Ok(Step::Busy) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    self.mirrors.remove(name);
                    return Err(e);
                }
            }
        }
        Err(crate::Error::new(crate::ErrorKind::Io, format!("the log of {name} kept growing or another node kept its lock")))
    }

    /// One transaction: copy a batch of new entries, and if `compact` is asked (or due) and
    /// the copy is at the log's head, compact the log.
    async fn step(&mut self, name: &str, compact: bool) -> Result<Step> {
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
            return Ok(Step::Gone);
        };
        if !found.get::<_, bool>(0) {
            return Ok(Step::Busy); // another node is copying it
        }
        let definition: Definition = (found.get(1), found.get(2), found.get(3), found.get(4));
        let copied: i64 = found.get(5);
        let mirror = self.mirror(name, &definition, copied)?;
        // A mirror behind the copy (new on this node) replays what is copied already.
        while mirror.applied < copied {
            let part = log_after(&tx, name, mirror.applied, copied).await?;
            if part.snapshot.is_none() && part.entries.is_empty() {
                return Err(crate::Error::new(crate::ErrorKind::Io, format!("the log of {name} lacks entries up to {copied}")));
            }
            mirror.apply(part, None)?;
        }
        let part = log_after(&tx, name, copied, i64::MAX).await?;
        let more = part.full;
        let mut touched = Touched::default();
        mirror.apply(part, Some(&mut touched))?;
        let last = mirror.applied;
        if last > copied {
            write_copy(&tx, name, mirror, touched, last).await?;
        }
        let due = compact || mirror.since_snapshot >= COMPACT_ENTRIES;
        let compacted = if due && !more { Some(compact_log(&tx, name, mirror).await) } else { None };
        tx.commit().await.map_err(pg)?;
        if compacted.is_some() {
            mirror.since_snapshot = 0;
        }
        Ok(if more { Step::More } else { Step::Done { compacted } })
    }

    /// The mirror of namespace `name`, built again if it is another namespace by that name or
    /// ahead of the copy (`copied`).
    fn mirror(&mut self, name: &str, definition: &Definition, copied: i64) -> Result<&mut Mirror> {
        let (created_ms, schema, tables, strategy) = definition;
        if self.mirrors.get(name).is_some_and(|m| m.created_ms != *created_ms || m.applied > copied) {
            self.mirrors.remove(name);
        }
        if !self.mirrors.contains_key(name) {
            while self.mirrors.len() >= MAX_MIRRORS {
                let oldest = self.mirrors.iter().min_by_key(|(_, m)| m.used).map(|(n, _)| n.clone()).expect("not empty");
                self.mirrors.remove(&oldest);
            }
            let file = self.dir.path().join(format!("{name}.db"));
            remove_database(&file);
            let tables: Vec<String> = tables.split_whitespace().map(str::to_owned).collect();
            let engine = build_replica(&file, &self.options, schema, &tables, strategy.parse()?)?;
            self.mirrors.insert(
                name.to_owned(),
                Mirror { created_ms: *created_ms, tables, engine, file, applied: 0, since_snapshot: 0, used: Instant::now() },
            );
        }
        let mirror = self.mirrors.get_mut(name).expect("inserted above");
        mirror.used = Instant::now();
        Ok(mirror)
    }
}

/// Rewrite the copied rows of namespace `name` that `touched` names (every row if a column was
/// `migrated` in: it changed every row of its table) as the mirror has them, as of entry `last`.
async fn write_copy(tx: &Transaction<'_>, name: &str, mirror: &Mirror, touched: Touched, last: i64) -> Result<()> {
    if touched.whole {
        // Every table, a page of rows at a time in key order: never all of them in memory.
        for table in &mirror.tables {
            tx.execute(
                &tx.prepare_cached("DELETE FROM syncline_rows WHERE namespace = $1 AND tbl = $2").await.map_err(pg)?,
                &[&name, table],
            )
            .await
            .map_err(pg)?;
            let mut after: Option<Vec<Value>> = None;
            loop {
                let page = mirror.engine.read(|c| read_rows(c, table, Which::After(after.as_deref(), ROWS_PER_STATEMENT)))?;
                let full = page.len() == ROWS_PER_STATEMENT;
                after = page.last().map(|r| r.key.clone());
                write_rows(tx, name, table, page, last).await?;
                if !full {
                    break;
                }
            }
        }
    } else {
        let mut by_table: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
        for ((table, _), pk) in touched.rows {
            by_table.entry(table).or_default().push(pk);
        }
        for (table, keys) in by_table {
            let mut present = Vec::new();
            let mut gone = Vec::new();
            mirror.engine.read(|c| {
                for pk in keys {
                    match read_rows(c, &table, Which::Key(&pk))?.pop() {
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
            write_rows(tx, name, &table, present, last).await?;
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
    Ok(())
}

/// Store the mirror's whole state (it has applied exactly the log up to `mirror.applied`) as
/// namespace `name`'s snapshot and delete the entries it stands for. Refused while the mirror
/// holds what a bundle does not carry: open conflicts (their other side), quarantined or
/// rejected rows.
async fn compact_log(tx: &Transaction<'_>, name: &str, mirror: &Mirror) -> Result<i64> {
    let status = mirror.engine.status()?;
    let kept =
        [(status.unresolved_conflicts, "open conflicts"), (status.quarantined, "quarantined rows"), (status.rejected, "rejected rows")];
    if let Some((n, what)) = kept.iter().find(|(n, _)| *n > 0) {
        return Err(crate::Error::invalid_argument(format!("namespace {name} has {n} {what}, which the log keeps")));
    }
    let dir = tempfile::tempdir().map_err(|e| crate::Error::new(crate::ErrorKind::Io, format!("the snapshot of {name}: {e}")))?;
    let state = dir.path().join("snapshot.bundle");
    mirror.engine.write_bundle(None, &state)?;
    super::pg::write_snapshot(tx, name, mirror.applied, &state).await?;
    tx.execute(
        &tx.prepare_cached("DELETE FROM syncline_changes WHERE namespace = $1 AND seq <= $2").await.map_err(pg)?,
        &[&name, &mirror.applied],
    )
    .await
    .map_err(pg)?;
    Ok(mirror.applied)
}

/// A row's key as `syncline_rows.pk` holds it: the key columns' values, in key order.
fn pk_json(pk: &[Value]) -> Json {
    Json::Array(pk.iter().map(crate::json::value).collect())
}

/// A row as `syncline_rows` holds it: its key, and every column's value by name.
struct Row {
    /// The key's values, in key order.
    key: Vec<Value>,
    pk: Json,
    cols: Json,
}

/// Which rows of a table [`read_rows`] reads.
enum Which<'a> {
    /// The one whose key is this, if it exists.
    Key(&'a [Value]),
    /// At most this many, in key order, after this key (from the first when `None`).
    After(Option<&'a [Value]>, usize),
}

fn read_rows(c: &rusqlite::Connection, table: &str, which: Which<'_>) -> Result<Vec<Row>> {
    let info = crate::schema::introspect(c, table)?;
    let keys: Vec<String> = info.pk.iter().map(|k| quote_ident(&k.name)).collect();
    let marks = (1..=keys.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let mut sql = format!("SELECT * FROM {}", quote_ident(table));
    let (params, limit): (&[Value], Option<usize>) = match which {
        Which::Key(pk) => {
            let terms: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k} IS ?{}", i + 1)).collect();
            sql += &format!(" WHERE {}", terms.join(" AND "));
            (pk, None)
        }
        Which::After(after, limit) => {
            if after.is_some() {
                sql += &format!(" WHERE ({}) > ({marks})", keys.join(", "));
            }
            sql += &format!(" ORDER BY {} LIMIT {limit}", keys.join(", "));
            (after.unwrap_or_default(), Some(limit))
        }
    };
    let mut stmt = c.prepare_cached(&sql)?;
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let key: Vec<usize> = info.pk.iter().map(|k| names.iter().position(|n| *n == k.name).expect("a key column is selected")).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::with_capacity(limit.unwrap_or(1));
    while let Some(r) = rows.next()? {
        let values = (0..names.len()).map(|i| r.get(i)).collect::<rusqlite::Result<Vec<Value>>>()?;
        let key: Vec<Value> = key.iter().map(|&i| values[i].clone()).collect();
        let cols = names.iter().zip(&values).map(|(n, v)| (n.clone(), crate::json::value(v))).collect();
        out.push(Row { pk: pk_json(&key), key, cols: Json::Object(cols) });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_namespace_waits_longer_each_time_up_to_five_minutes() {
        let waits: Vec<Duration> = (0..12).map(backoff).collect();
        assert_eq!(waits[0], SWEEP);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(waits[4], SWEEP * 16);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
