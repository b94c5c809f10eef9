//! Stamping queued writes: the capture triggers only queue each write with its wall-clock time
//! (see `capture`); here the engine gives every queued write its HLC, in write order, by the
//! send rule (`hlc::next`, the manual clock overriding the recorded time when one is set), and
//! records it in the shadow tables. Runs inside a write transaction when an engine opens and
//! before anything reads the sync state: exports, imports, status, clock and site changes, and
//! the watcher.

use crate::capture::{OP_DELETE, OP_INSERT, OP_REKEY_INSERT};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, Event};
use crate::hlc;
use crate::meta::{self, SyncedTable};
use crate::schema::quote_ident;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};
use std::collections::{BTreeSet, HashMap};

/// The shadow statements of one table, with the stamp as `?1`, the site as `?2` and the key
/// from `?3` on.
struct Statements {
    insert: String,
    delete: String,
    update: Vec<String>,
}

impl Statements {
    fn new(t: &SyncedTable) -> Statements {
        let sh = t.shadow();
        let n = t.cols.len();
        let pks: Vec<String> = (0..t.pk.len()).map(|i| format!("pk{i}")).collect();
        let key_params: Vec<String> = (0..t.pk.len()).map(|i| format!("?{}", i + 3)).collect();
        let key_match = pks.iter().zip(&key_params).map(|(c, p)| format!("{c} = {p}")).collect::<Vec<_>>().join(" AND ");
        let cell_names: String = (0..n).map(|i| format!(", h{i}, s{i}")).collect();
        let cell_now: String = (0..n).map(|_| ", ?1, ?2").collect();
        let cell_set: String = (0..n).map(|i| format!(", h{i} = excluded.h{i}, s{i} = excluded.s{i}")).collect();
        let cleared: String = (0..n).map(|i| format!(", h{i} = NULL, s{i} = NULL")).collect();
        Statements {
            // New row, re-insert after a delete (causal length +1), or a replaced live row
            // (INSERT OR REPLACE: every column restamped, the row stamp kept).
            insert: format!(
                "INSERT INTO {sh}({pk_list}, cl, rh, rs, mh{cell_names}) VALUES ({keys}, 1, ?1, ?2, ?1{cell_now}) \
                 ON CONFLICT({pk_list}) DO UPDATE SET cl = cl + 1 - cl % 2, \
                   rh = CASE WHEN cl % 2 = 0 THEN excluded.rh ELSE rh END, \
                   rs = CASE WHEN cl % 2 = 0 THEN excluded.rs ELSE rs END, mh = excluded.mh{cell_set}",
                pk_list = pks.join(", "),
                keys = key_params.join(", "),
            ),
            // Causal length +1 (even: deleted), cell stamps cleared.
            delete: format!("UPDATE {sh} SET cl = cl + 1, rh = ?1, rs = ?2, mh = ?1{cleared} WHERE {key_match} AND cl % 2 = 1"),
            update: (0..n).map(|i| format!("UPDATE {sh} SET h{i} = ?1, s{i} = ?2, mh = ?1 WHERE {key_match}")).collect(),
        }
    }

    fn for_op(&self, op: i64) -> Option<&str> {
        match op {
            OP_INSERT | OP_REKEY_INSERT => Some(&self.insert),
            OP_DELETE => Some(&self.delete),
            i => self.update.get(usize::try_from(i).ok()?).map(String::as_str),
        }
    }
}

/// Whether any write waits for its stamp.
pub fn pending(conn: &Connection) -> Result<bool> {
    Ok(conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM _syncline_queue)")?.query_row([], |r| r.get(0))?)
}

/// Stamp every queued write, oldest first, and empty the queue. Must run inside a write
/// transaction. Returns the local-change events of the stamped rows when `want_events`.
pub fn fold(conn: &Connection, want_events: bool) -> Result<Vec<Event>> {
    if !pending(conn)? {
        return Ok(Vec::new());
    }
    let tables: HashMap<i64, (SyncedTable, Statements)> = meta::synced_tables(conn)?
        .into_values()
        .map(|t| {
            let st = Statements::new(&t);
            (t.id, (t, st))
        })
        .collect();
    let width = tables.values().map(|(t, _)| t.pk.len()).max().unwrap_or(1);
    let clock = meta::clock(conn)?;
    let manual: Option<i64> = conn.query_row("SELECT manual_ms FROM _syncline_clock WHERE id = 0", [], |r| r.get(0))?;
    let me = SqlValue::Integer(clock.site_ord);
    let mut last = clock.hlc;
    let mut ticked = false;
    let keys: String = (0..width).map(|i| format!(", pk{i}")).collect();
    let mut queue = conn.prepare(&format!(
        "SELECT tbl, op, CAST(round((t - 2440587.5) * 86400000.0) AS INTEGER){keys}, seq FROM _syncline_queue ORDER BY seq"
    ))?;
    let mut rows = queue.query([])?;
    let mut params: Vec<SqlValue> = Vec::with_capacity(2 + width);
    let mut touched = BTreeSet::new();
    let mut last_seq = 0i64;
    while let Some(r) = rows.next()? {
        let (tbl, op): (i64, i64) = (r.get(0)?, r.get(1)?);
        last_seq = r.get(3 + width)?;
        touched.insert(tbl);
        if op != OP_REKEY_INSERT {
            let now_ms = manual.or(r.get::<_, Option<i64>>(2)?).unwrap_or(0).clamp(0, hlc::MAX_MILLIS as i64) as u64;
            last = hlc::next(last, now_ms);
            ticked = true;
        }
        // A table disabled since (its writes were stamped before) or an op this build does
        // not know: nothing to record.
        let Some((t, st)) = tables.get(&tbl) else { continue };
        let Some(sql) = st.for_op(op) else { continue };
        params.clear();
        params.push(SqlValue::Integer(last as i64));
        params.push(me.clone());
        for i in 0..t.pk.len() {
            params.push(r.get(3 + i)?);
        }
        // A NULL key names no row on another replica (the triggers refuse one in new keys; a
        // row keyed NULL from before the table was enabled is not synced).
        if params[2..].contains(&SqlValue::Null) {
            continue;
        }
        conn.prepare_cached(sql)?.execute(params_from_iter(params.iter()))?;
    }
    drop(rows);
    drop(queue);
    for (t, st) in touched.iter().filter_map(|id| tables.get(id)) {
        for key in removed_by_replace(conn, t)? {
            last = hlc::next(last, 0);
            ticked = true;
            let params = [SqlValue::Integer(last as i64), me.clone()].into_iter().chain(key);
            conn.prepare_cached(&st.delete)?.execute(params_from_iter(params))?;
        }
    }
    // Only what was stamped leaves the queue. Under this write transaction nobody else can
    // queue a write; one that appeared anyway came through a second SQLite copy that does not
    // see this connection's locks, and would be lost or stamped out of order: refuse it all.
    conn.prepare_cached("DELETE FROM _syncline_queue WHERE seq <= ?1")?.execute([last_seq])?;
    if ticked {
        conn.prepare_cached("UPDATE _syncline_clock SET local = ?1 WHERE id = 0")?.execute([last as i64])?;
    }
    if pending(conn)? {
        return Err(Error::new(
            ErrorKind::Corrupt,
            "a write was captured while this engine held the write lock, so another SQLite library in this process writes \
             the file without seeing the engine's locks; nothing was stamped. Open every connection to this database \
             through one SQLite library (see the README: one SQLite per process)",
        ));
    }
    if want_events {
        events::local_changes_since(conn, clock.local)
    } else {
        Ok(Vec::new())
    }
}

/// Keys of rows that an `INSERT OR REPLACE` or `UPDATE OR REPLACE` removed to satisfy a UNIQUE
/// constraint on other columns: SQLite runs no delete trigger for those (unless the writer
/// turned `recursive_triggers` on), so they are found here, alive in the shadow but gone from
/// the table, and recorded as deleted right after the writes just stamped. Only tables with
/// such a constraint can lose a row this way, and only they pay for the look.
fn removed_by_replace(conn: &Connection, t: &SyncedTable) -> Result<Vec<Vec<SqlValue>>> {
    let unique: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE \"unique\" AND origin <> 'pk')")?
        .query_row([&t.name], |r| r.get(0))?;
    if !unique {
        return Ok(Vec::new());
    }
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
    let keys: Vec<String> = (0..t.pk.len()).map(|i| format!("s.pk{i}")).collect();
    let matches: Vec<String> = t.pk.iter().enumerate().map(|(i, c)| format!("t.{} = s.pk{i}", quote_ident(c))).collect();
    let sql = format!(
        "SELECT {} FROM {} s WHERE s.cl % 2 = 1 AND NOT EXISTS (SELECT 1 FROM {} t WHERE {})",
        keys.join(", "),
        t.shadow(),
        quote_ident(&t.name),
        matches.join(" AND ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| (0..t.pk.len()).map(|i| r.get(i)).collect::<rusqlite::Result<Vec<SqlValue>>>())?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Forget queued writes without stamping them: they were made by the engine itself while it
/// applied remote changes or wrote a stamped value directly.
pub fn discard(conn: &Connection) -> Result<()> {
    conn.prepare_cached("DELETE FROM _syncline_queue")?.execute([])?;
    Ok(())
}
