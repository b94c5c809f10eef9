//! The shadow tables, `_syncline_shadow_<id>`: the one owner of their layout, their SQL and
//! the stamping of local writes. Every other module reads and writes sync state through here.
//!
//! Layout, per synced table T (keyed like T): `pk0..` (T's primary key), `cl` (causal length:
//! odd = alive, even = deleted), `rh`/`rs` (stamp of the last `cl` change: hlc, site ordinal),
//! `mh` (newest stamp in the row, indexed, for delta export and paging; it never decreases) and, per
//! non-key column i in registration order, the stamp `h<i>`/`s<i>` of the value T holds (NULL:
//! never stamped, the column's default). A column added later gets the next index.
//!
//! Stamping: a local write (insert, delete, one cell's update) is recorded by [`Statements::stamp`],
//! which also notes what it stamped in [`Stamped`], so change events need no rescan. The set
//! forms ([`backfill`], [`reconcile`], [`stamp_column`]) stamp many rows with one stamp.
//! Merged remote state is stored whole by [`Statements::put`].

use crate::error::{Error, Result};
use crate::events::{Change, Event};
use crate::meta::SyncedTable;
use crate::schema::quote_ident;
use crate::value::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use std::collections::{BTreeSet, HashMap};

/// A stamp with the site as a local ordinal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    pub hlc: u64,
    pub site: i64,
}

/// The sync state of one row: everything but its key.
#[derive(Clone, Debug)]
pub struct State {
    pub cl: u64,
    pub rh: Stamp,
    pub mh: u64,
    /// Per column (registration order), the stamp of the value held.
    pub cells: Vec<Option<Stamp>>,
}

impl State {
    pub fn alive(&self) -> bool {
        self.cl % 2 == 1
    }
}

/// Columns of the row state, in the order [`read_state`] reads them: `cl, rh, rs, mh, h0, s0, ..`.
/// `alias` is prefixed to each (`"s."` or `""`).
pub fn state_list(t: &SyncedTable, alias: &str) -> String {
    let cells: String = (0..t.cols.len()).map(|i| format!(", {alias}h{i}, {alias}s{i}")).collect();
    format!("{alias}cl, {alias}rh, {alias}rs, {alias}mh{cells}")
}

/// Every stamp of a shadow row as `hlc, site` pairs: the row stamp, then each cell's
/// (`{alias}rh, {alias}rs, {alias}h0, {alias}s0, ..`; a never-stamped cell's pair is NULL).
pub fn stamp_list(t: &SyncedTable, alias: &str) -> String {
    let cells: String = (0..t.cols.len()).map(|i| format!(", {alias}h{i}, {alias}s{i}")).collect();
    format!("{alias}rh, {alias}rs{cells}")
}

/// How many result columns [`state_list`] names.
pub fn state_width(t: &SyncedTable) -> usize {
    4 + 2 * t.cols.len()
}

/// The key columns `pk0, pk1, ..` with `alias` prefixed.
pub fn key_list(t: &SyncedTable, alias: &str) -> String {
    (0..t.pk.len()).map(|i| format!("{alias}pk{i}")).collect::<Vec<_>>().join(", ")
}

/// `pk0 = ?N AND pk1 = ?N+1 ..` (numbered from `first`), or with plain `?` when `first` is 0.
pub fn key_match(t: &SyncedTable, alias: &str, first: usize) -> String {
    (0..t.pk.len())
        .map(|i| if first == 0 { format!("{alias}pk{i} = ?") } else { format!("{alias}pk{i} = ?{}", first + i) })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The join of the user table (alias `user`) with its shadow (alias `shadow`) on the key.
pub fn join_on(t: &SyncedTable, user: &str, shadow: &str) -> String {
    t.pk.iter().enumerate().map(|(i, c)| format!("{user}.{} = {shadow}.pk{i}", quote_ident(c))).collect::<Vec<_>>().join(" AND ")
}

/// The key of a result row, from column `at` on.
pub fn read_key(r: &Row<'_>, at: usize, t: &SyncedTable) -> rusqlite::Result<Vec<Value>> {
    (0..t.pk.len()).map(|i| r.get(at + i)).collect()
}

/// The state of a result row selected with [`state_list`], from column `at` on.
pub fn read_state(r: &Row<'_>, at: usize, t: &SyncedTable) -> rusqlite::Result<State> {
    let n = t.cols.len();
    let mut cells = Vec::with_capacity(n);
    for i in 0..n {
        let h: Option<i64> = r.get(at + 4 + 2 * i)?;
        let s: Option<i64> = r.get(at + 5 + 2 * i)?;
        cells.push(h.zip(s).map(|(h, s)| Stamp { hlc: h as u64, site: s }));
    }
    Ok(State {
        cl: r.get::<_, i64>(at)? as u64,
        rh: Stamp { hlc: r.get::<_, i64>(at + 1)? as u64, site: r.get(at + 2)? },
        mh: r.get::<_, i64>(at + 3)? as u64,
        cells,
    })
}

/// Whether the table's key is its rowid (a single `INTEGER PRIMARY KEY` of a rowid table):
/// then every key is an integer and the shadow can be a rowid table too, which is faster.
fn key_is_rowid(conn: &Connection, t: &SyncedTable, pk_affinity: &[&str]) -> Result<bool> {
    if t.pk.len() != 1 || pk_affinity[0] != "INTEGER" {
        return Ok(false);
    }
    let decl: String = conn.query_row("SELECT upper(type) FROM pragma_table_xinfo(?1) WHERE pk = 1", [&t.name], |r| r.get(0))?;
    let pk_index: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE origin = 'pk')", [&t.name], |r| r.get(0))?;
    Ok(decl == "INTEGER" && !pk_index)
}

/// Whether the shadow table is a rowid table, i.e. the key is the table's rowid and can never
/// be NULL.
pub fn is_rowid(conn: &Connection, t: &SyncedTable) -> Result<bool> {
    let name = format!("_syncline_shadow_{}", t.id);
    Ok(conn.query_row("SELECT count(*) FROM pragma_table_info(?1) WHERE pk = 1 AND upper(type) = 'INTEGER'", [&name], |r| {
        r.get::<_, i64>(0)
    })? == 1
        && conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE origin = 'pk')", [&name], |r| r.get(0))?)
}

/// Create the shadow table of `t` (key affinities in key order).
pub fn create(conn: &Connection, t: &SyncedTable, pk_affinity: &[&str]) -> Result<()> {
    let rowid = key_is_rowid(conn, t, pk_affinity)?;
    let pk_cols: String = if rowid {
        "pk0 INTEGER PRIMARY KEY, ".to_owned()
    } else {
        pk_affinity.iter().enumerate().map(|(i, a)| format!("pk{i} {a} NOT NULL, ")).collect()
    };
    let key_clause = if rowid { String::new() } else { format!(", PRIMARY KEY({})", key_list(t, "")) };
    let without_rowid = if rowid { "" } else { " WITHOUT ROWID" };
    let cell_cols: String = (0..t.cols.len()).map(|i| format!(", h{i} INTEGER, s{i} INTEGER")).collect();
    conn.execute_batch(&format!(
        "CREATE TABLE {}({pk_cols}cl INTEGER NOT NULL, rh INTEGER NOT NULL, rs INTEGER NOT NULL, \
           mh INTEGER NOT NULL{cell_cols}{key_clause}){without_rowid};",
        t.shadow()
    ))?;
    ensure_index(conn, t)
}

/// The index on `mh` that makes a delta export cost the rows it carries: a sync that sends a
/// few rows reads a few index entries, not the whole shadow. Created with the shadow, and on
/// open for shadows made before it existed (an older build ignores it).
pub fn ensure_index(conn: &Connection, t: &SyncedTable) -> Result<()> {
    conn.execute_batch(&format!("CREATE INDEX IF NOT EXISTS {} ON {}(mh);", index_name(t), t.shadow()))?;
    Ok(())
}

/// [`ensure_index`] for the shadows of `tables` that exist and lack it (made by an older
/// build); a missing shadow is left to the schema check to report.
pub fn ensure_indexes(conn: &Connection, tables: &std::collections::BTreeMap<String, SyncedTable>) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '_syncline_shadow_' || ?1) \
           AND NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = '_syncline_shadow_' || ?1 || '_mh')",
    )?;
    for t in tables.values() {
        if stmt.query_row([t.id], |r| r.get::<_, bool>(0))? {
            ensure_index(conn, t)?;
        }
    }
    Ok(())
}

/// The quoted name of the `mh` index of `t`'s shadow.
pub fn index_name(t: &SyncedTable) -> String {
    format!("\"_syncline_shadow_{}_mh\"", t.id)
}

/// Whether the `mh` index exists and fewer than `cap` rows have a stamp beyond `floor`
/// (counted on the index, at most `cap` entries read): then a delta export reads them through
/// the index; otherwise it scans the shadow in key order, cheaper for a large part of it.
pub fn few_beyond(conn: &Connection, t: &SyncedTable, floor: u64, cap: u64) -> Result<bool> {
    let name = format!("_syncline_shadow_{}_mh", t.id);
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1)")?
        .query_row([&name], |r| r.get(0))?;
    if !exists {
        return Ok(false); // made by an older build since this one opened the file
    }
    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM {} INDEXED BY {} WHERE mh > ?1 LIMIT ?2)", t.shadow(), index_name(t));
    let n: i64 = conn.prepare_cached(&sql)?.query_row([floor as i64, cap as i64], |r| r.get(0))?;
    Ok((n as u64) < cap)
}

/// Give the shadow of `t` (already listing its new column last) the stamp columns of that
/// column: NULL everywhere, i.e. never stamped.
pub fn add_column(conn: &Connection, t: &SyncedTable) -> Result<()> {
    let i = t.cols.len() - 1;
    conn.execute_batch(&format!("ALTER TABLE {sh} ADD COLUMN h{i} INTEGER; ALTER TABLE {sh} ADD COLUMN s{i} INTEGER;", sh = t.shadow()))?;
    Ok(())
}

/// Drop the shadow table.
pub fn drop_table(conn: &Connection, t: &SyncedTable) -> Result<()> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {};", t.shadow()))?;
    Ok(())
}

/// Live rows (for `status`).
pub fn live_rows(conn: &Connection, t: &SyncedTable) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {} WHERE cl % 2 = 1", t.shadow()), [], |r| r.get(0))?;
    Ok(n as u64)
}

/// Tombstones: shadow rows of deleted rows (even causal length).
pub fn tombstones(conn: &Connection, t: &SyncedTable) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {} WHERE cl % 2 = 0", t.shadow()), [], |r| r.get(0))?;
    Ok(n as u64)
}

/// The tombstones whose delete stamp is at most the limit `temp._syncline_gc` gives its
/// origin site: counted, or purged (`purge`); returns how many and, per origin, the newest
/// stamp among them.
pub fn tombstones_within(conn: &Connection, t: &SyncedTable, purge: bool) -> Result<(u64, Vec<(i64, u64)>)> {
    let within = format!("FROM {} WHERE cl % 2 = 0 AND rh <= (SELECT lim FROM temp._syncline_gc WHERE origin = rs)", t.shadow());
    let mut newest = Vec::new();
    let mut stmt = conn.prepare(&format!("SELECT rs, count(*), max(rh) {within} GROUP BY rs"))?;
    let mut n = 0u64;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))? {
        let (origin, count, max) = row?;
        n += count as u64;
        newest.push((origin, max as u64));
    }
    if purge && n > 0 {
        // Keys purged here may be inserted again: their causal length must go on from here.
        conn.execute(
            &format!(
                "INSERT INTO _syncline_purged_cl(tbl, cl) SELECT {id}, max(cl) {within} \
                 ON CONFLICT(tbl) DO UPDATE SET cl = max(cl, excluded.cl)",
                id = t.id
            ),
            [],
        )?;
        conn.execute(&format!("DELETE {within}"), [])?;
    }
    Ok((n, newest))
}

/// Rows with a stamp beyond `floor` (progress totals of an export).
pub fn rows_beyond(conn: &Connection, t: &SyncedTable, floor: u64) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {} WHERE mh > ?1", t.shadow()), [floor as i64], |r| r.get(0))?;
    Ok(n as u64)
}

/// Whether the table has no sync state at all.
pub fn is_empty(conn: &Connection, t: &SyncedTable) -> Result<bool> {
    Ok(conn.prepare_cached(&format!("SELECT NOT EXISTS (SELECT 1 FROM {})", t.shadow()))?.query_row([], |r| r.get(0))?)
}

/// One local write to stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalOp {
    /// A row inserted, re-inserted after a delete, or replaced: every cell stamped.
    Insert,
    /// A row deleted: causal length made even, cell stamps cleared.
    Delete,
    /// One cell updated (column index).
    Update(usize),
}

/// What a stamping pass stamped, row by row, for the local-change events.
#[derive(Default)]
pub struct Stamped {
    index: HashMap<(i64, Vec<u8>), usize>,
    rows: Vec<StampedRow>,
}

struct StampedRow {
    table: String,
    pk: Vec<Value>,
    columns: BTreeSet<usize>,
    deleted: bool,
    last: u64,
}

impl Stamped {
    fn note(&mut self, t: &SyncedTable, pk: Vec<Value>, op: LocalOp, stamp: u64) {
        let key = (t.id, rmp_serde::to_vec(&pk).expect("values encode"));
        let i = *self.index.entry(key).or_insert_with(|| {
            self.rows.push(StampedRow { table: t.name.clone(), pk, columns: BTreeSet::new(), deleted: false, last: 0 });
            self.rows.len() - 1
        });
        let row = &mut self.rows[i];
        row.last = stamp;
        match op {
            LocalOp::Insert => {
                row.columns = (0..t.cols.len()).collect();
                row.deleted = false;
            }
            LocalOp::Delete => {
                row.columns.clear();
                row.deleted = true;
            }
            LocalOp::Update(c) => {
                row.columns.insert(c);
            }
        }
    }

    /// One event per row, its changed columns together; tables by name, rows by their last stamp.
    pub fn into_events(self, tables: &HashMap<i64, SyncedTable>) -> Vec<Event> {
        let mut rows = self.rows;
        rows.sort_by(|a, b| (&a.table, a.last).cmp(&(&b.table, b.last)));
        let by_name: HashMap<&str, &SyncedTable> = tables.values().map(|t| (t.name.as_str(), t)).collect();
        rows.into_iter()
            .map(|r| {
                let t = by_name[r.table.as_str()];
                let columns = r.columns.iter().map(|c| t.cols[*c].clone()).collect();
                Event::LocalChange(Change { table: r.table, pk: r.pk, columns, deleted: r.deleted })
            })
            .collect()
    }
}

/// The shadow statements of one table, built once per pass. Local stamping statements take
/// the stamp as `?1`, the site as `?2` and the key from `?3` on.
pub struct Statements {
    insert: String,
    delete: String,
    update: Vec<String>,
    read: String,
    put: String,
    put_new: String,
}

impl Statements {
    pub fn new(t: &SyncedTable) -> Statements {
        let sh = t.shadow();
        let n = t.cols.len();
        let np = t.pk.len();
        let pk_list = key_list(t, "");
        let keys: Vec<String> = (0..np).map(|i| format!("?{}", i + 3)).collect();
        let key_match = key_match(t, "", 3);
        let cell_names: String = (0..n).map(|i| format!(", h{i}, s{i}")).collect();
        let cell_now: String = (0..n).map(|_| ", ?1, ?2").collect();
        let cell_set: String = (0..n).map(|i| format!(", h{i} = excluded.h{i}, s{i} = excluded.s{i}")).collect();
        let cleared: String = (0..n).map(|i| format!(", h{i} = NULL, s{i} = NULL")).collect();
        let marks = vec!["?"; np + state_width(t)].join(", ");
        let state = state_list(t, "");
        Statements {
            // New row, re-insert after a delete (causal length +1), or a replaced live row
            // (INSERT OR REPLACE: every column restamped, the row stamp kept).
            insert: format!(
                "INSERT INTO {sh}({pk_list}, cl, rh, rs, mh{cell_names}) VALUES ({keys}, {first}, ?1, ?2, ?1{cell_now}) \
                 ON CONFLICT({pk_list}) DO UPDATE SET cl = cl + 1 - cl % 2, \
                   rh = CASE WHEN cl % 2 = 0 THEN excluded.rh ELSE rh END, \
                   rs = CASE WHEN cl % 2 = 0 THEN excluded.rs ELSE rs END, mh = excluded.mh{cell_set}",
                keys = keys.join(", "),
                first = first_cl(t),
            ),
            // Causal length +1 (even: deleted), cell stamps cleared.
            delete: format!("UPDATE {sh} SET cl = cl + 1, rh = ?1, rs = ?2, mh = ?1{cleared} WHERE {key_match} AND cl % 2 = 1"),
            update: (0..n).map(|i| format!("UPDATE {sh} SET h{i} = ?1, s{i} = ?2, mh = max(mh, ?1) WHERE {key_match}")).collect(),
            read: format!("SELECT {state} FROM {sh} WHERE {}", self::key_match(t, "", 0)),
            put: format!("INSERT OR REPLACE INTO {sh}({pk_list}, {state}) VALUES ({marks})"),
            put_new: format!("INSERT INTO {sh}({pk_list}, {state}) VALUES ({marks})"),
        }
    }

    /// Stamp one local write of the row `key` with `stamp`; notes it in `stamped` when it
    /// changed the sync state. Returns whether it did (a delete of a deleted row does not).
    pub fn stamp(
        &self,
        conn: &Connection,
        t: &SyncedTable,
        op: LocalOp,
        key: &[Value],
        stamp: Stamp,
        stamped: Option<&mut Stamped>,
    ) -> Result<bool> {
        let sql = match op {
            LocalOp::Insert => &self.insert,
            LocalOp::Delete => &self.delete,
            LocalOp::Update(i) => self.update.get(i).ok_or_else(|| Error::invalid_argument(format!("no column #{i} in {:?}", t.name)))?,
        };
        let head = [Value::Integer(stamp.hlc as i64), Value::Integer(stamp.site)];
        let changed = conn.prepare_cached(sql)?.execute(params_from_iter(head.iter().chain(key)))? > 0;
        if let (true, Some(s)) = (changed, stamped) {
            s.note(t, key.to_vec(), op, stamp.hlc);
        }
        Ok(changed)
    }

    /// The stored state of row `pk`, if any.
    pub fn read(&self, conn: &Connection, t: &SyncedTable, pk: &[Value]) -> Result<Option<State>> {
        Ok(conn.prepare_cached(&self.read)?.query_row(params_from_iter(pk), |r| read_state(r, 0, t)).optional()?)
    }

    /// `SELECT` of a row's state, the key as parameters; read the row with [`read_state`] at 0.
    pub fn read_sql(&self) -> &str {
        &self.read
    }

    /// `INSERT` of a row's whole state, with the parameters of [`put_params`]: `fresh` when the
    /// row must be new (the statement then fails on a second state for one key), otherwise
    /// it replaces what is stored.
    pub fn put_sql(&self, fresh: bool) -> &str {
        if fresh {
            &self.put_new
        } else {
            &self.put
        }
    }
}

/// The parameters of [`Statements::put_sql`]: key, then the state in [`state_list`] order.
pub fn put_params(pk: &[Value], s: &State) -> Vec<Value> {
    let mut params: Vec<Value> = Vec::with_capacity(pk.len() + 4 + 2 * s.cells.len());
    params.extend_from_slice(pk);
    params.push(Value::Integer(s.cl as i64));
    params.push(Value::Integer(s.rh.hlc as i64));
    params.push(Value::Integer(s.rh.site));
    params.push(Value::Integer(s.mh as i64));
    for c in &s.cells {
        params.push(c.map_or(Value::Null, |st| Value::Integer(st.hlc as i64)));
        params.push(c.map_or(Value::Null, |st| Value::Integer(st.site)));
    }
    params
}

/// The causal length of a key inserted here that has no shadow row: 1, or one more than the
/// largest causal length compaction purged from the table, so the insert wins over a
/// tombstone of the same key that peers may still hold (spec/merge-rules.md §8a).
fn first_cl(t: &SyncedTable) -> String {
    format!("(SELECT coalesce(max(cl), 0) + 1 FROM _syncline_purged_cl WHERE tbl = {})", t.id)
}

/// A new local stamp (the send rule, `meta::tick`), with this site.
pub fn local_stamp(conn: &Connection) -> Result<Stamp> {
    let hlc = crate::meta::tick(conn)?;
    Ok(Stamp { hlc, site: crate::meta::clock(conn)?.site_ord })
}

/// Record every row already in the table as inserted now, with one stamp (enable).
pub fn backfill(conn: &Connection, t: &SyncedTable, stamp: Stamp) -> Result<usize> {
    let pk_vals: String = t.pk.iter().map(|c| format!("{}, ", quote_ident(c))).collect();
    let cell_names: String = (0..t.cols.len()).map(|i| format!(", h{i}, s{i}")).collect();
    let cell_vals: String = (0..t.cols.len()).map(|_| ", ?1, ?2").collect();
    let sql = format!(
        "INSERT OR IGNORE INTO {sh}({pks}, cl, rh, rs, mh{cell_names}) SELECT {pk_vals}{first}, ?1, ?2, ?1{cell_vals} FROM {}",
        quote_ident(&t.name),
        first = first_cl(t),
        sh = t.shadow(),
        pks = key_list(t, ""),
    );
    Ok(conn.execute(&sql, rusqlite::params![stamp.hlc as i64, stamp.site])?)
}

/// Stamp, with one stamp, the cells of column `col` that live rows hold with a value other
/// than the column's default `default` (an SQL expression from the table's own schema; none
/// is NULL): values written to a column before it was registered. A cell holding the default
/// stays unstamped, as on a replica that added the column itself.
pub fn stamp_column(conn: &Connection, t: &SyncedTable, col: usize, default: Option<&str>, stamp: Stamp) -> Result<usize> {
    let q = quote_ident(&t.cols[col]);
    let sql = format!(
        "UPDATE {sh} SET h{col} = ?1, s{col} = ?2, mh = max(mh, ?1) WHERE cl % 2 = 1 AND EXISTS \
         (SELECT 1 FROM {tbl} u WHERE {join} AND u.{q} IS NOT ({d}))",
        d = default.unwrap_or("NULL"),
        sh = t.shadow(),
        tbl = quote_ident(&t.name),
        join = join_on(t, "u", &t.shadow()),
    );
    Ok(conn.execute(&sql, rusqlite::params![stamp.hlc as i64, stamp.site])?)
}

/// Bring the shadow of a table that was dropped and created again in line with its rows,
/// with one stamp: rows the table lost are deleted (causal length made even, cell stamps
/// cleared), rows it holds are alive with every cell stamped now (their values may differ
/// from what was synced), rows new to the shadow are back-filled.
pub fn reconcile(conn: &Connection, t: &SyncedTable, stamp: Stamp) -> Result<()> {
    let sh = t.shadow();
    let row_there = format!("EXISTS (SELECT 1 FROM {} u WHERE {})", quote_ident(&t.name), join_on(t, "u", &sh));
    let cleared: String = (0..t.cols.len()).map(|i| format!(", h{i} = NULL, s{i} = NULL")).collect();
    let stamped: String = (0..t.cols.len()).map(|i| format!(", h{i} = ?1, s{i} = ?2")).collect();
    let params = rusqlite::params![stamp.hlc as i64, stamp.site];
    conn.execute(&format!("UPDATE {sh} SET cl = cl + 1, rh = ?1, rs = ?2, mh = ?1{cleared} WHERE cl % 2 = 1 AND NOT {row_there}"), params)?;
    conn.execute(
        &format!(
            "UPDATE {sh} SET cl = cl + 1 - cl % 2, rh = CASE WHEN cl % 2 = 0 THEN ?1 ELSE rh END, \
             rs = CASE WHEN cl % 2 = 0 THEN ?2 ELSE rs END, mh = ?1{stamped} WHERE {row_there}"
        ),
        params,
    )?;
    backfill(conn, t, stamp)?;
    Ok(())
}

/// Re-stamp with `stamp` every row and cell stamp beyond `limit` (clock recovery); `mh` keeps
/// its value (paged exports rely on it never decreasing). Returns the rows touched.
pub fn restamp_beyond(conn: &Connection, t: &SyncedTable, limit: u64, stamp: Stamp) -> Result<u64> {
    let pairs = (0..t.cols.len()).map(|i| (format!("h{i}"), format!("s{i}"))).chain([("rh".to_owned(), "rs".to_owned())]);
    let sets: Vec<String> = pairs
        .map(|(h, s)| format!("{s} = CASE WHEN {h} > ?1 THEN ?3 ELSE {s} END, {h} = CASE WHEN {h} > ?1 THEN ?2 ELSE {h} END"))
        .collect();
    let sql = format!("UPDATE {} SET {} WHERE mh > ?1", t.shadow(), sets.join(", "));
    Ok(conn.execute(&sql, rusqlite::params![limit as i64, stamp.hlc as i64, stamp.site])? as u64)
}

/// Keys of rows alive in the shadow but missing from the table (see `fold`'s replace check):
/// first the count, cheaply, then the keys only when some are missing.
pub fn alive_but_gone(conn: &Connection, t: &SyncedTable) -> Result<Vec<Vec<Value>>> {
    // Every row of the table whose key has no NULL has a live shadow row, and nothing else
    // does but the rows looked for: when the counts agree, none is missing.
    let null_key = t.pk.iter().map(|c| format!("{} IS NULL", quote_ident(c))).collect::<Vec<_>>().join(" OR ");
    let sql = format!(
        "SELECT (SELECT count(*) FROM {s} WHERE cl % 2 = 1) - (SELECT count(*) FROM {n}) + (SELECT count(*) FROM {n} WHERE {null_key})",
        s = t.shadow(),
        n = quote_ident(&t.name),
    );
    let missing: i64 = conn.prepare_cached(&sql)?.query_row([], |r| r.get(0))?;
    if missing == 0 {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {} FROM {} s WHERE s.cl % 2 = 1 AND NOT EXISTS (SELECT 1 FROM {} t WHERE {})",
        key_list(t, "s."),
        t.shadow(),
        quote_ident(&t.name),
        join_on(t, "t", "s")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| (0..t.pk.len()).map(|i| r.get(i)).collect::<rusqlite::Result<Vec<Value>>>())?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The query joining the shadow (alias `s`) with the user table (alias `t`): key, state,
/// the values of every column (NULL for a row the table lacks) and whether the row is there.
/// Result columns: key at 0, state at `np`, values at `np + state_width`, presence after them.
pub fn joined_select(t: &SyncedTable) -> String {
    joined_select_hinted(t, "")
}

/// [`joined_select`] with an index hint on the shadow (`INDEXED BY ..`, `NOT INDEXED`).
pub fn joined_select_hinted(t: &SyncedTable, hint: &str) -> String {
    let vals: String = t.cols.iter().map(|c| format!(", t.{}", quote_ident(c))).collect();
    format!(
        "SELECT {keys}, {state}{vals}, t.{first} IS NOT NULL FROM {sh} s {hint} LEFT JOIN {tbl} t ON {join}",
        keys = key_list(t, "s."),
        state = state_list(t, "s."),
        first = quote_ident(&t.pk[0]),
        sh = t.shadow(),
        tbl = quote_ident(&t.name),
        join = join_on(t, "t", "s"),
    )
}
