//! Schema evolution of synced tables (spec/schema-evolution.md): columns added to a synced
//! table behind the engine's back (the `sqlite3` shell, an ORM) are detected at the next
//! stamping pass, registered, captured from then on, and the values written to them before
//! are stamped. Every registered change is logged in `_syncline_migrations`, which `status`
//! reports. Unsupported changes are left to `schema::check_synced`, which names them.

use crate::capture;
use crate::error::Result;
use crate::meta::{self, SyncedTable};
use crate::schema::{self, ColumnInfo};
use crate::shadow::{self, Stamp};
use crate::value::Value;
use rusqlite::{Connection, OptionalExtension};

/// The schema log: one row per column registered after its table was enabled. `source` says
/// how it came: `detected` (an ALTER by another writer), `local` (a migration made here),
/// `remote` (a migration received). `state` is `applied`, or `held` (received, the policy
/// holds it for the app). `dflt` is the default as a MessagePack value (migrations), or NULL.
pub const DDL: &str = "CREATE TABLE IF NOT EXISTS _syncline_migrations(
  id INTEGER PRIMARY KEY, hlc INTEGER NOT NULL, site INTEGER NOT NULL, tbl TEXT NOT NULL, col TEXT NOT NULL,
  decl_type TEXT NOT NULL, dflt BLOB, source TEXT NOT NULL, state TEXT NOT NULL);";

/// One entry of the schema log, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    pub table: String,
    pub column: String,
    /// The declared type, upper-cased.
    pub decl_type: String,
    /// `detected`, `local` or `remote`.
    pub source: String,
    /// `applied` or `held`.
    pub state: String,
    /// The stamp the change was recorded with.
    pub hlc: u64,
}

/// Whether the schema changed since the last pass looked (`PRAGMA schema_version` moved).
pub fn schema_moved(conn: &Connection) -> Result<bool> {
    let now: i64 = conn.prepare_cached("PRAGMA schema_version")?.query_row([], |r| r.get(0))?;
    let seen: Option<i64> =
        conn.prepare_cached("SELECT value FROM _syncline_meta WHERE key = 'schema_version'")?.query_row([], |r| r.get(0)).optional()?;
    Ok(seen != Some(now))
}

fn note_schema(conn: &Connection) -> Result<()> {
    let now: i64 = conn.prepare_cached("PRAGMA schema_version")?.query_row([], |r| r.get(0))?;
    conn.prepare_cached("INSERT OR REPLACE INTO _syncline_meta(key, value) VALUES ('schema_version', ?1)")?.execute([now])?;
    Ok(())
}

/// The default of a live column as SQL text (from the table's own schema), if any.
fn default_sql(conn: &Connection, table: &str, column: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT dflt_value FROM pragma_table_xinfo(?1) WHERE name = ?2")?
        .query_row([table, column], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Columns the live table has that `t` does not register (key and generated ones aside).
pub fn added_columns(conn: &Connection, t: &SyncedTable) -> Result<Vec<ColumnInfo>> {
    let info = schema::introspect(conn, &t.name)?;
    Ok(info.cols.into_iter().filter(|c| !t.cols.contains(&c.name)).collect())
}

/// Register `col` as the next column of `t` (its shadow gains the stamp columns, never
/// stamped), without touching the triggers. The caller reinstalls them.
pub fn register_column(conn: &Connection, t: &mut SyncedTable, col: &ColumnInfo) -> Result<()> {
    conn.prepare_cached("INSERT INTO _syncline_columns(tbl, is_pk, ord, name, affinity, decl_type) VALUES (?1, 0, ?2, ?3, ?4, ?5)")?
        .execute(rusqlite::params![t.id, t.cols.len() as i64, col.name, col.affinity, col.decl_type])?;
    t.cols.push(col.name.clone());
    shadow::add_column(conn, t)
}

/// One added column, as logged (and, for migrations, carried).
#[derive(Debug, Clone, PartialEq)]
pub struct AddColumn {
    pub table: String,
    pub column: String,
    pub decl_type: String,
    /// The default of a migration (`None` for a detected ALTER: the table's own schema has it).
    pub default: Option<Value>,
    pub stamp: Stamp,
}

/// Log a registered column: `source` and `state` as in [`DDL`].
pub fn log(conn: &Connection, m: &AddColumn, source: &str, state: &str) -> Result<()> {
    let dflt = m.default.as_ref().map(|v| rmp_serde::to_vec(v).expect("values encode"));
    conn.prepare_cached(
        "INSERT INTO _syncline_migrations(hlc, site, tbl, col, decl_type, dflt, source, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![m.stamp.hlc as i64, m.stamp.site, m.table, m.column, m.decl_type, dflt, source, state])?;
    Ok(())
}

/// The log entry of a column detected in `t`.
pub fn detected(t: &SyncedTable, col: &ColumnInfo, stamp: Stamp) -> AddColumn {
    AddColumn { table: t.name.clone(), column: col.name.clone(), decl_type: col.decl_type.clone(), default: None, stamp }
}

/// Register the columns added to `t` behind the engine's back, stamping (with one new stamp)
/// the values live rows hold in them other than NULL and the column's default, and reinstall
/// the triggers so the columns are captured from now on. Returns how many were added.
pub fn adopt_added(conn: &Connection, t: &mut SyncedTable) -> Result<usize> {
    let added = added_columns(conn, t)?;
    if added.is_empty() {
        return Ok(0);
    }
    capture::uninstall_triggers(conn, t)?;
    let stamp = Stamp { hlc: meta::tick(conn)?, site: meta::clock(conn)?.site_ord };
    for col in &added {
        register_column(conn, t, col)?;
        let dflt = default_sql(conn, &t.name, &col.name)?;
        shadow::stamp_column(conn, t, t.cols.len() - 1, dflt.as_deref(), stamp)?;
        log(conn, &detected(t, col, stamp), "detected", "applied")?;
    }
    capture::install_triggers(conn, t)?;
    Ok(added.len())
}

/// The stamping pass's look at the schema: when it moved, adopt the columns added to every
/// synced table that is otherwise unchanged (a table with an unsupported change, or dropped,
/// is left for `schema::check_synced` to report and `enable_sync` to take back).
pub fn detect(conn: &Connection) -> Result<()> {
    if !schema_moved(conn)? {
        return Ok(());
    }
    let mut unsupported = false;
    for mut t in meta::synced_tables(conn)?.into_values() {
        if !capture::has_triggers(conn, t.id)? || schema::check_columns(conn, t.id, &t.name).is_err() {
            unsupported = true;
            continue;
        }
        adopt_added(conn, &mut t)?;
    }
    // While a change waits to be undone (or the table enabled again), every pass looks again
    // and the file stays as it is.
    if unsupported {
        return Ok(());
    }
    note_schema(conn)
}

/// The schema log, oldest first.
pub fn changes(conn: &Connection) -> Result<Vec<SchemaChange>> {
    let mut stmt = conn.prepare_cached("SELECT tbl, col, decl_type, source, state, hlc FROM _syncline_migrations ORDER BY hlc, id")?;
    let rows = stmt.query_map([], |r| {
        Ok(SchemaChange {
            table: r.get(0)?,
            column: r.get(1)?,
            decl_type: r.get(2)?,
            source: r.get(3)?,
            state: r.get(4)?,
            hlc: r.get::<_, i64>(5)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
