//! Capture of local writes with pure-SQL triggers, so every writer is captured: the engine's
//! connection, another process, the `sqlite3` shell, Python's `sqlite3`, better-sqlite3, Room.
//!
//! Each synced table `T` gets a shadow table `_syncline_shadow_<id>` keyed by T's primary key:
//! `cl` (causal length: odd = alive, even = deleted), `rh`/`rs` (stamp of the last `cl` change),
//! `mh` (newest stamp in the row, for delta export) and, per non-key column i, the stamp
//! `h<i>`/`s<i>` (hlc, site ordinal) of the value the row holds. Triggers compute the HLC from
//! `_syncline_clock` themselves and stay silent while `applying` is set (remote imports).
//! Only syntax SQLite 3.24+ understands is used (UPSERT, row values), because the app's own
//! SQLite parses these triggers.

use crate::error::Result;
use crate::hlc;
use crate::meta::SyncedTable;
use crate::schema::quote_ident;
use rusqlite::Connection;

const CLOCK: &str = "(SELECT local, site FROM _syncline_clock WHERE id = 0)";
const GUARD: &str = "(SELECT applying FROM _syncline_clock WHERE id = 0) = 0";

fn clock_update() -> String {
    format!("UPDATE _syncline_clock SET local = {} WHERE id = 0;", hlc::sql_next())
}

/// `pk0 = ROW."a" AND pk1 = ROW."b"` for `ROW` = NEW or OLD.
fn pk_match(t: &SyncedTable, row: &str) -> String {
    t.pk.iter()
        .enumerate()
        .map(|(i, c)| format!("pk{i} = {row}.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// True when the value of column `c` differs between OLD and NEW, type and bytes included.
fn changed(c: &str) -> String {
    let q = quote_ident(c);
    format!("(NEW.{q} IS NOT OLD.{q} COLLATE BINARY OR typeof(NEW.{q}) <> typeof(OLD.{q}))")
}

fn pk_names(t: &SyncedTable) -> String {
    (0..t.pk.len()).map(|i| format!("pk{i}")).collect::<Vec<_>>().join(", ")
}

/// Statement that records `NEW` as inserted, re-inserted after a delete (causal length +1) or
/// replaced (INSERT OR REPLACE of a live row: every column restamped).
fn record_insert(t: &SyncedTable) -> String {
    let sh = t.shadow();
    let n = t.cols.len();
    let cell_names: String = (0..n).map(|i| format!(", h{i}, s{i}")).collect();
    let cell_now: String = (0..n).map(|_| ", c.local, c.site").collect();
    let cell_set: String = (0..n).map(|i| format!(", h{i} = excluded.h{i}, s{i} = excluded.s{i}")).collect();
    let pk_new: String = t.pk.iter().map(|c| format!("NEW.{}, ", quote_ident(c))).collect();
    format!(
        "INSERT INTO {sh}({pks}, cl, rh, rs, mh{cell_names}) \
           SELECT {pk_new}1, c.local, c.site, c.local{cell_now} FROM {CLOCK} c WHERE 1 \
         ON CONFLICT({pks}) DO UPDATE SET cl = cl + 1 - cl % 2, \
           rh = CASE WHEN cl % 2 = 0 THEN excluded.rh ELSE rh END, \
           rs = CASE WHEN cl % 2 = 0 THEN excluded.rs ELSE rs END, mh = excluded.mh{cell_set};",
        pks = pk_names(t),
    )
}

/// Statement that records `OLD` as deleted (causal length +1, cell stamps cleared).
fn record_delete(t: &SyncedTable) -> String {
    let sh = t.shadow();
    let cells: String = (0..t.cols.len()).map(|i| format!(", h{i} = NULL, s{i} = NULL")).collect();
    format!(
        "UPDATE {sh} SET (cl, rh, rs, mh) = (SELECT {sh}.cl + 1, c.local, c.site, c.local FROM {CLOCK} c){cells} \
         WHERE {pk} AND cl % 2 = 1;",
        pk = pk_match(t, "OLD"),
    )
}

/// Whether the table's key is its rowid (a single `INTEGER PRIMARY KEY` of a rowid table):
/// then every key is an integer and the shadow can be a rowid table too, which is faster.
fn key_is_rowid(conn: &Connection, t: &SyncedTable, pk_affinity: &[&str]) -> Result<bool> {
    if t.pk.len() != 1 || pk_affinity[0] != "INTEGER" {
        return Ok(false);
    }
    let decl: String = conn.query_row(
        "SELECT upper(type) FROM pragma_table_xinfo(?1) WHERE pk = 1",
        [&t.name],
        |r| r.get(0),
    )?;
    let pk_index: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE origin = 'pk')",
        [&t.name],
        |r| r.get(0),
    )?;
    Ok(decl == "INTEGER" && !pk_index)
}

/// Create the shadow table and the capture triggers: one for inserts, one for deletes, one for
/// key changes, and one per column for updates (`AFTER UPDATE OF col`, so an UPDATE pays only
/// for the columns it names). The shadow has no index on `mh`: keeping one costs every write
/// an index update, while a delta export scans the shadow once.
pub fn install(conn: &Connection, t: &SyncedTable, pk_affinity: &[&str]) -> Result<()> {
    let sh = t.shadow();
    let id = t.id;
    let rowid = key_is_rowid(conn, t, pk_affinity)?;
    let pk_cols: String = if rowid {
        "pk0 INTEGER PRIMARY KEY, ".to_owned()
    } else {
        pk_affinity.iter().enumerate().map(|(i, a)| format!("pk{i} {a} NOT NULL, ")).collect()
    };
    let key_clause = if rowid { String::new() } else { format!(", PRIMARY KEY({})", pk_names(t)) };
    let without_rowid = if rowid { "" } else { " WITHOUT ROWID" };
    let cell_cols: String = (0..t.cols.len()).map(|i| format!(", h{i} INTEGER, s{i} INTEGER")).collect();
    let table = quote_ident(&t.name);
    let tick = clock_update();
    let pk_same = t.pk.iter().map(|c| format!("NEW.{0} IS OLD.{0}", quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    let pk_of = t.pk.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let ins = record_insert(t);
    let del = record_delete(t);
    let mut sql = format!(
        "CREATE TABLE {sh}({pk_cols}cl INTEGER NOT NULL, rh INTEGER NOT NULL, rs INTEGER NOT NULL, \
           mh INTEGER NOT NULL{cell_cols}{key_clause}){without_rowid};\n\
         CREATE TRIGGER \"_syncline_{id}_insert\" AFTER INSERT ON {table} WHEN {GUARD}\n\
         BEGIN {tick}\n{ins}\nEND;\n\
         CREATE TRIGGER \"_syncline_{id}_rekey\" AFTER UPDATE OF {pk_of} ON {table} WHEN {GUARD} AND NOT ({pk_same})\n\
         BEGIN {tick}\n{del}\n{ins}\nEND;\n\
         CREATE TRIGGER \"_syncline_{id}_delete\" AFTER DELETE ON {table} WHEN {GUARD}\n\
         BEGIN {tick}\n{del}\nEND;\n",
    );
    for (i, c) in t.cols.iter().enumerate() {
        sql += &format!(
            "CREATE TRIGGER \"_syncline_{id}_update_{i}\" AFTER UPDATE OF {col} ON {table} \
               WHEN {GUARD} AND {pk_same} AND {ch}\n\
             BEGIN {tick}\n\
               UPDATE {sh} SET (h{i}, s{i}, mh) = (SELECT c.local, c.site, c.local FROM {CLOCK} c) WHERE {pk_new};\n\
             END;\n",
            col = quote_ident(c),
            ch = changed(c),
            pk_new = pk_match(t, "NEW"),
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

/// Drop the triggers and the shadow table (the user's data stays).
pub fn uninstall(conn: &Connection, t: &SyncedTable) -> Result<()> {
    let mut drop = String::new();
    for i in 0..t.cols.len() {
        drop += &format!("DROP TRIGGER IF EXISTS \"_syncline_{}_update_{i}\";\n", t.id);
    }
    for kind in ["insert", "rekey", "delete"] {
        drop += &format!("DROP TRIGGER IF EXISTS \"_syncline_{}_{kind}\";\n", t.id);
    }
    drop += &format!("DROP TABLE IF EXISTS {};", t.shadow());
    conn.execute_batch(&drop)?;
    Ok(())
}
