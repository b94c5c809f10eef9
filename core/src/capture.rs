//! Capture of local writes with pure-SQL triggers, so every writer is captured: the engine's
//! connection, another process, the `sqlite3` shell, Python's `sqlite3`, better-sqlite3, Room.
//!
//! A trigger does the least it can, because it runs once per written row: it appends the write
//! to `_syncline_queue` with the wall clock (`julianday('now')`), the table, what happened and
//! the row's key. The engine stamps queued writes with HLCs in write order, with the same send
//! rule, before anything reads the sync state (see `fold`). Queue operations (`op`):
//! [`OP_INSERT`], [`OP_DELETE`], [`OP_REKEY_INSERT`] and, for an update, the column's index.
//!
//! Each synced table `T` also gets a shadow table `_syncline_shadow_<id>` keyed by T's primary
//! key: `cl` (causal length: odd = alive, even = deleted), `rh`/`rs` (stamp of the last `cl`
//! change), `mh` (newest stamp in the row, for delta export) and, per non-key column i, the
//! stamp `h<i>`/`s<i>` (hlc, site ordinal) of the value the row holds.
//! Only syntax SQLite 3.24+ understands is used, because the app's own SQLite parses these
//! triggers.

use crate::error::Result;
use crate::meta::SyncedTable;
use crate::schema::quote_ident;
use rusqlite::Connection;

/// A row was inserted (or replaced).
pub const OP_INSERT: i64 = -1;
/// A row was deleted.
pub const OP_DELETE: i64 = -2;
/// The new key of a primary-key change; it shares the stamp of the delete queued just before.
pub const OP_REKEY_INSERT: i64 = -3;

/// The queue of captured writes, oldest first by `seq`. Key columns `pk0..` hold the row's
/// key as the table stores it (no declared type, so no conversion); there are as many as the
/// widest key of a synced table.
pub const QUEUE_DDL: &str = "CREATE TABLE IF NOT EXISTS _syncline_queue(seq INTEGER PRIMARY KEY, t REAL, tbl INTEGER, op INTEGER, pk0)";

/// `pk0 = ROW."a" AND pk1 = ROW."b"` for `ROW` = NEW or OLD.
fn pk_of(t: &SyncedTable, row: &str) -> String {
    t.pk.iter().map(|c| format!("{row}.{}", quote_ident(c))).collect::<Vec<_>>().join(", ")
}

fn pk_names(t: &SyncedTable) -> String {
    (0..t.pk.len()).map(|i| format!("pk{i}")).collect::<Vec<_>>().join(", ")
}

/// True when the value of column `c` differs between OLD and NEW, type and bytes included.
fn changed(c: &str) -> String {
    let q = quote_ident(c);
    format!("(NEW.{q} IS NOT OLD.{q} COLLATE BINARY OR typeof(NEW.{q}) <> typeof(OLD.{q}))")
}

/// The statement a trigger runs: queue `op` for the key of `row` (NEW or OLD). With
/// `refuse_null`, a NULL in the new key fails the app's write (SQLite lets a key column other
/// than an INTEGER PRIMARY KEY hold NULL; such a row cannot be named on another replica).
fn enqueue(t: &SyncedTable, op: i64, row: &str, refuse_null: bool) -> String {
    let keys = if refuse_null {
        let msg = format!("syncline: table {:?} is synced, so its primary key cannot be NULL", t.name).replace('\'', "''");
        t.pk.iter()
            .map(|c| format!("CASE WHEN {row}.{q} IS NULL THEN RAISE(ABORT, '{msg}') ELSE {row}.{q} END", q = quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        pk_of(t, row)
    };
    format!("INSERT INTO _syncline_queue(t, tbl, op, {}) VALUES (julianday('now'), {}, {op}, {keys});", pk_names(t), t.id)
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

/// Whether the shadow table was made a rowid table, i.e. the key is the table's rowid and can
/// never be NULL.
fn shadow_is_rowid(conn: &Connection, t: &SyncedTable) -> Result<bool> {
    let name = format!("_syncline_shadow_{}", t.id);
    Ok(conn.query_row("SELECT count(*) FROM pragma_table_info(?1) WHERE pk = 1 AND upper(type) = 'INTEGER'", [&name], |r| {
        r.get::<_, i64>(0)
    })? == 1
        && conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE origin = 'pk')", [&name], |r| r.get(0))?)
}

/// Give the queue as many key columns as `t` needs.
fn widen_queue(conn: &Connection, t: &SyncedTable) -> Result<()> {
    let have: usize = conn
        .query_row("SELECT count(*) FROM pragma_table_info('_syncline_queue') WHERE name LIKE 'pk%'", [], |r| r.get::<_, i64>(0))?
        as usize;
    for i in have..t.pk.len() {
        conn.execute_batch(&format!("ALTER TABLE _syncline_queue ADD COLUMN pk{i}"))?;
    }
    Ok(())
}

/// Create the shadow table and the capture triggers.
pub fn install(conn: &Connection, t: &SyncedTable, pk_affinity: &[&str]) -> Result<()> {
    let sh = t.shadow();
    let rowid = key_is_rowid(conn, t, pk_affinity)?;
    let pk_cols: String = if rowid {
        "pk0 INTEGER PRIMARY KEY, ".to_owned()
    } else {
        pk_affinity.iter().enumerate().map(|(i, a)| format!("pk{i} {a} NOT NULL, ")).collect()
    };
    let key_clause = if rowid { String::new() } else { format!(", PRIMARY KEY({})", pk_names(t)) };
    let without_rowid = if rowid { "" } else { " WITHOUT ROWID" };
    let cell_cols: String = (0..t.cols.len()).map(|i| format!(", h{i} INTEGER, s{i} INTEGER")).collect();
    // No index on `mh`: keeping one costs every stamped write an index update, while a delta
    // export scans the shadow once.
    conn.execute_batch(&format!(
        "CREATE TABLE {sh}({pk_cols}cl INTEGER NOT NULL, rh INTEGER NOT NULL, rs INTEGER NOT NULL, \
           mh INTEGER NOT NULL{cell_cols}{key_clause}){without_rowid};"
    ))?;
    install_triggers(conn, t)
}

/// The triggers: one for inserts, one for deletes, one for key changes, and one per column for
/// updates (`AFTER UPDATE OF col`, so an UPDATE pays only for the columns it names, and only
/// when the value really changed).
pub fn install_triggers(conn: &Connection, t: &SyncedTable) -> Result<()> {
    widen_queue(conn, t)?;
    let nullable_key = !shadow_is_rowid(conn, t)?;
    let id = t.id;
    let table = quote_ident(&t.name);
    let pk_same = t.pk.iter().map(|c| format!("NEW.{0} IS OLD.{0}", quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    let key_cols = t.pk.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let mut sql = format!(
        "CREATE TRIGGER \"_syncline_{id}_insert\" AFTER INSERT ON {table}\n\
         BEGIN {ins}\nEND;\n\
         CREATE TRIGGER \"_syncline_{id}_rekey\" AFTER UPDATE OF {key_cols} ON {table} WHEN NOT ({pk_same})\n\
         BEGIN {del}\n{rekey}\nEND;\n\
         CREATE TRIGGER \"_syncline_{id}_delete\" AFTER DELETE ON {table}\n\
         BEGIN {del}\nEND;\n",
        ins = enqueue(t, OP_INSERT, "NEW", nullable_key),
        del = enqueue(t, OP_DELETE, "OLD", false),
        rekey = enqueue(t, OP_REKEY_INSERT, "NEW", nullable_key),
    );
    for (i, c) in t.cols.iter().enumerate() {
        sql += &format!(
            "CREATE TRIGGER \"_syncline_{id}_update_{i}\" AFTER UPDATE OF {col} ON {table} WHEN {pk_same} AND {ch}\n\
             BEGIN {upd}\nEND;\n",
            col = quote_ident(c),
            ch = changed(c),
            upd = enqueue(t, i as i64, "NEW", false),
        );
    }
    conn.execute_batch(&sql)?;
    Ok(())
}

/// Record every row already in the table as inserted now, with one stamp.
pub fn backfill(conn: &Connection, t: &SyncedTable, stamp: u64, site_ord: i64) -> Result<usize> {
    let sh = t.shadow();
    let pk_names: String = (0..t.pk.len()).map(|i| format!("pk{i}, ")).collect();
    let pk_vals: String = t.pk.iter().map(|c| format!("{}, ", quote_ident(c))).collect();
    let cell_names: String = (0..t.cols.len()).map(|i| format!(", h{i}, s{i}")).collect();
    let cell_vals: String = (0..t.cols.len()).map(|_| ", ?1, ?2").collect();
    let sql = format!(
        "INSERT OR IGNORE INTO {sh}({pk_names}cl, rh, rs, mh{cell_names}) \
         SELECT {pk_vals}1, ?1, ?2, ?1{cell_vals} FROM {}",
        quote_ident(&t.name)
    );
    Ok(conn.execute(&sql, rusqlite::params![stamp as i64, site_ord])?)
}

/// Whether the capture triggers of the synced table `table_id` exist (SQLite drops them with
/// their table).
pub fn has_triggers(conn: &Connection, table_id: i64) -> Result<bool> {
    let name = format!("_syncline_{table_id}_insert");
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1)")?
        .query_row([name], |r| r.get(0))?)
}

/// Bring the shadow of a table that was dropped and created again in line with its rows,
/// with one stamp: rows the table lost are deleted (causal length made even, cell stamps
/// cleared), rows it holds are alive with every cell stamped now (their values may differ
/// from what was synced), rows new to the shadow are back-filled.
pub fn reconcile(conn: &Connection, t: &SyncedTable, stamp: u64, site_ord: i64) -> Result<()> {
    let sh = t.shadow();
    let table = quote_ident(&t.name);
    let matches: Vec<String> = t.pk.iter().enumerate().map(|(i, c)| format!("u.{} = {sh}.pk{i}", quote_ident(c))).collect();
    let row_there = format!("EXISTS (SELECT 1 FROM {table} u WHERE {})", matches.join(" AND "));
    let cleared: String = (0..t.cols.len()).map(|i| format!(", h{i} = NULL, s{i} = NULL")).collect();
    let stamped: String = (0..t.cols.len()).map(|i| format!(", h{i} = ?1, s{i} = ?2")).collect();
    let params = rusqlite::params![stamp as i64, site_ord];
    conn.execute(&format!("UPDATE {sh} SET cl = cl + 1, rh = ?1, rs = ?2, mh = ?1{cleared} WHERE cl % 2 = 1 AND NOT {row_there}"), params)?;
    conn.execute(
        &format!(
            "UPDATE {sh} SET cl = cl + 1 - cl % 2, rh = CASE WHEN cl % 2 = 0 THEN ?1 ELSE rh END, \
             rs = CASE WHEN cl % 2 = 0 THEN ?2 ELSE rs END, mh = ?1{stamped} WHERE {row_there}"
        ),
        params,
    )?;
    backfill(conn, t, stamp, site_ord)?;
    Ok(())
}

/// Drop the capture triggers (the shadow table stays).
pub fn uninstall_triggers(conn: &Connection, t: &SyncedTable) -> Result<()> {
    let mut drop = String::new();
    for i in 0..t.cols.len() {
        drop += &format!("DROP TRIGGER IF EXISTS \"_syncline_{}_update_{i}\";\n", t.id);
    }
    for kind in ["insert", "rekey", "delete"] {
        drop += &format!("DROP TRIGGER IF EXISTS \"_syncline_{}_{kind}\";\n", t.id);
    }
    conn.execute_batch(&drop)?;
    Ok(())
}

/// Drop the triggers and the shadow table (the user's data stays).
pub fn uninstall(conn: &Connection, t: &SyncedTable) -> Result<()> {
    uninstall_triggers(conn, t)?;
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {};", t.shadow()))?;
    Ok(())
}
