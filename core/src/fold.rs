//! Stamping queued writes: the capture triggers only queue each write with its wall-clock time
//! (see `capture`); here the engine gives every queued write its HLC, in write order, by the
//! send rule (`hlc::next`, the manual clock overriding the recorded time when one is set), and
//! records it in the shadow tables. Runs inside a write transaction when an engine opens and
//! before anything reads the sync state: exports, imports, status, clock and site changes, and
//! the watcher.

use crate::capture::{OP_DELETE, OP_INSERT, OP_REKEY_INSERT};
use crate::error::{Error, ErrorKind, Result};
use crate::events::Event;
use crate::evolve;
use crate::hlc;
use crate::meta::{self, SyncedTable};
use crate::shadow::{self, LocalOp, Stamp, Stamped, Statements};
use crate::value::Value;
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap};

/// The shadow write a queue operation stands for (`None`: an op this build does not know).
fn local_op(op: i64) -> Option<LocalOp> {
    match op {
        OP_INSERT | OP_REKEY_INSERT => Some(LocalOp::Insert),
        OP_DELETE => Some(LocalOp::Delete),
        i => usize::try_from(i).ok().map(LocalOp::Update),
    }
}

/// Whether any write waits for its stamp.
fn queued(conn: &Connection) -> Result<bool> {
    Ok(conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM _syncline_queue)")?.query_row([], |r| r.get(0))?)
}

/// Whether a stamping pass has work: queued writes, or a schema that moved since the last
/// pass (a column added to a synced table is adopted by the pass, see `evolve`).
pub fn pending(conn: &Connection) -> Result<bool> {
    Ok(queued(conn)? || evolve::schema_moved(conn)?)
}

/// Stamp every queued write, oldest first, and empty the queue. Must run inside a write
/// transaction. Returns the local-change events of the stamped rows when `want_events`.
/// Then, when the schema moved, adopt columns added to synced tables (`evolve::detect`).
pub fn fold(conn: &Connection, want_events: bool) -> Result<Vec<Event>> {
    let events = if queued(conn)? { stamp_queue(conn, want_events)? } else { Vec::new() };
    evolve::detect(conn)?;
    Ok(events)
}

/// Stamp the queue (see [`fold`]).
fn stamp_queue(conn: &Connection, want_events: bool) -> Result<Vec<Event>> {
    let tables: HashMap<i64, SyncedTable> = meta::synced_tables(conn)?.into_values().map(|t| (t.id, t)).collect();
    let statements: HashMap<i64, Statements> = tables.values().map(|t| (t.id, Statements::new(t))).collect();
    let width = tables.values().map(|t| t.pk.len()).max().unwrap_or(1);
    let clock = meta::clock(conn)?;
    let manual: Option<i64> = conn.prepare_cached("SELECT manual_ms FROM _syncline_clock WHERE id = 0")?.query_row([], |r| r.get(0))?;
    let me = clock.site_ord;
    let mut last = clock.hlc;
    let mut ticked = false;
    let mut stamped = Stamped::default();
    let keys: String = (0..width).map(|i| format!(", pk{i}")).collect();
    let mut queue = conn.prepare_cached(&format!(
        "SELECT tbl, op, CAST(round((t - 2440587.5) * 86400000.0) AS INTEGER){keys}, seq FROM _syncline_queue ORDER BY seq"
    ))?;
    let mut rows = queue.query([])?;
    let mut key: Vec<Value> = Vec::with_capacity(width);
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
        let (Some(t), Some(st)) = (tables.get(&tbl), statements.get(&tbl)) else { continue };
        let Some(op) = local_op(op).filter(|op| !matches!(op, LocalOp::Update(i) if *i >= t.cols.len())) else { continue };
        key.clear();
        for i in 0..t.pk.len() {
            key.push(r.get(3 + i)?);
        }
        // A NULL key names no row on another replica (the triggers refuse one in new keys; a
        // row keyed NULL from before the table was enabled is not synced).
        if key.contains(&Value::Null) {
            continue;
        }
        st.stamp(conn, t, op, &key, Stamp { hlc: last, site: me }, want_events.then_some(&mut stamped))?;
    }
    drop(rows);
    drop(queue);
    for id in &touched {
        let (Some(t), Some(st)) = (tables.get(id), statements.get(id)) else { continue };
        for key in removed_by_replace(conn, t)? {
            last = hlc::next(last, 0);
            ticked = true;
            st.stamp(conn, t, LocalOp::Delete, &key, Stamp { hlc: last, site: me }, want_events.then_some(&mut stamped))?;
        }
    }
    // Only what was stamped leaves the queue. Under this write transaction nobody else can
    // queue a write; one that appeared anyway came through a second SQLite copy that does not
    // see this connection's locks, and would be lost or stamped out of order: refuse it all.
    conn.prepare_cached("DELETE FROM _syncline_queue WHERE seq <= ?1")?.execute([last_seq])?;
    if ticked {
        conn.prepare_cached("UPDATE _syncline_clock SET local = ?1 WHERE id = 0")?.execute([last as i64])?;
    }
    if queued(conn)? {
        return Err(Error::new(
            ErrorKind::Corrupt,
            "a write was captured while this engine held the write lock, so another SQLite library in this process writes \
             the file without seeing the engine's locks; nothing was stamped. Open every connection to this database \
             through one SQLite library (see the README: one SQLite per process)",
        ));
    }
    Ok(if want_events { stamped.into_events(&tables) } else { Vec::new() })
}

/// Keys of rows that an `INSERT OR REPLACE` or `UPDATE OR REPLACE` removed to satisfy a UNIQUE
/// constraint on other columns: SQLite runs no delete trigger for those (unless the writer
/// turned `recursive_triggers` on), so they are found here, alive in the shadow but gone from
/// the table, and recorded as deleted right after the writes just stamped. Only tables with
/// such a constraint can lose a row this way, and only they pay for the look.
fn removed_by_replace(conn: &Connection, t: &SyncedTable) -> Result<Vec<Vec<Value>>> {
    let unique: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE \"unique\" AND origin <> 'pk')")?
        .query_row([&t.name], |r| r.get(0))?;
    if !unique {
        return Ok(Vec::new());
    }
    shadow::alive_but_gone(conn, t)
}

/// Forget queued writes without stamping them: they were made by the engine itself while it
/// applied remote changes or wrote a stamped value directly.
pub fn discard(conn: &Connection) -> Result<()> {
    conn.prepare_cached("DELETE FROM _syncline_queue")?.execute([])?;
    Ok(())
}
