//! Capture of local writes with pure-SQL triggers, so every writer is captured: the engine's
//! connection, another process, the `sqlite3` shell, Python's `sqlite3`, better-sqlite3, Room.
//!
//! A trigger does the least it can, because it runs once per written row: it appends the write
//! to `_syncline_queue` with the wall clock (`julianday('now')`), the table, what happened and
//! the row's key. The engine stamps queued writes with HLCs in write order, with the same send
//! rule, before anything reads the sync state (see `fold`). Queue operations (`op`):
//! [`OP_INSERT`], [`OP_DELETE`], [`OP_REKEY_INSERT`] and, for an update, the column's index.
//!
//! Each synced table also gets a shadow table, whose layout and stamping `shadow` owns.
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
    crate::shadow::create(conn, t, pk_affinity)?;
    install_triggers(conn, t)
}

/// The triggers: one for inserts, one for deletes, one for key changes, and one per column for
/// updates (`AFTER UPDATE OF col`, so an UPDATE pays only for the columns it names, and only
/// when the value really changed).
pub fn install_triggers(conn: &Connection, t: &SyncedTable) -> Result<()> {
    widen_queue(conn, t)?;
    let nullable_key = !crate::shadow::is_rowid(conn, t)?;
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

/// Whether the capture triggers of the synced table `table_id` exist (SQLite drops them with
/// their table).
pub fn has_triggers(conn: &Connection, table_id: i64) -> Result<bool> {
    let name = format!("_syncline_{table_id}_insert");
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1)")?
        .query_row([name], |r| r.get(0))?)
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
    crate::shadow::drop_table(conn, t)
}
