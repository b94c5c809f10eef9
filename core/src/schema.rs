//! Reading a user table's shape from SQLite (`PRAGMA table_xinfo`) and checking the rules a
//! table must meet before it can sync: a primary key, no AUTOINCREMENT (unless forced), a
//! DEFAULT on every NOT NULL column. Also the check that synced tables still have the shape
//! they were enabled with (no renamed or dropped column, no dropped table), and identifier
//! quoting, used for every name we splice.

use crate::error::{Error, ErrorKind, Result};
use rusqlite::{Connection, OptionalExtension};

/// Quote an SQL identifier: wrap in double quotes and double any quote inside.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One column of a user table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// SQLite affinity keyword derived from the declared type (INTEGER, REAL, TEXT, BLOB, NUMERIC).
    pub affinity: &'static str,
    /// Declared type as written, upper-cased.
    pub decl_type: String,
    pub not_null: bool,
    pub has_default: bool,
}

/// The shape of a user table as far as sync is concerned.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    /// Primary-key columns in key order.
    pub pk: Vec<ColumnInfo>,
    /// Other (non-generated) columns in declaration order.
    pub cols: Vec<ColumnInfo>,
    pub autoincrement: bool,
}

/// SQLite's affinity rules (https://sqlite.org/datatype3.html §3.1).
fn affinity(decl: &str) -> &'static str {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        "INTEGER"
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        "TEXT"
    } else if d.contains("BLOB") || d.is_empty() {
        "BLOB"
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// Whether a name belongs to Syncline or SQLite itself.
pub fn is_reserved_table(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("_syncline_") || lower.starts_with("sqlite_")
}

/// Read the shape of `table`, or `UnknownTable` if there is no such ordinary table.
pub fn introspect(conn: &Connection, table: &str) -> Result<TableInfo> {
    let sql: Option<String> =
        conn.query_row("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1", [table], |r| r.get(0)).optional()?;
    let Some(sql) = sql else {
        return Err(Error::new(ErrorKind::UnknownTable, format!("no table named {table:?}")));
    };
    if sql.trim_start().to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
        return Err(Error::schema(format!("table {table:?} is a virtual table and cannot sync")));
    }
    let mut stmt = conn.prepare("SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk, hidden FROM pragma_table_xinfo(?1)")?;
    let mut pk: Vec<(i64, ColumnInfo)> = Vec::new();
    let mut cols = Vec::new();
    let rows = stmt.query_map([table], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            r.get::<_, i64>(2)? != 0,
            r.get::<_, bool>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for row in rows {
        let (name, decl, not_null, has_default, pk_pos, hidden) = row?;
        if hidden != 0 {
            continue; // generated columns are computed, never synced
        }
        let info = ColumnInfo { affinity: affinity(&decl), decl_type: decl.to_ascii_uppercase(), name, not_null, has_default };
        if pk_pos > 0 {
            pk.push((pk_pos, info));
        } else {
            cols.push(info);
        }
    }
    pk.sort_by_key(|(pos, _)| *pos);
    Ok(TableInfo {
        name: table.to_owned(),
        pk: pk.into_iter().map(|(_, c)| c).collect(),
        cols,
        autoincrement: sql.to_ascii_uppercase().contains("AUTOINCREMENT"),
    })
}

impl TableInfo {
    /// Check the rules for sync; `allow_autoincrement` forces AUTOINCREMENT keys through.
    pub fn validate(&self, allow_autoincrement: bool) -> Result<()> {
        let t = &self.name;
        if is_reserved_table(t) {
            return Err(Error::schema(format!("table {t:?} is reserved for SQLite or Syncline")));
        }
        if self.pk.is_empty() {
            return Err(Error::schema(format!("table {t:?} has no primary key; sync needs one to identify rows across replicas")));
        }
        if self.autoincrement && !allow_autoincrement {
            return Err(Error::schema(format!(
                "table {t:?} uses AUTOINCREMENT: two offline replicas would both insert the same id; \
                 use UUIDv7 keys (uuid7()) or force it"
            )));
        }
        for c in &self.cols {
            if c.not_null && !c.has_default {
                return Err(Error::schema(format!(
                    "column {:?} of table {t:?} is NOT NULL without a DEFAULT; rows arrive column by \
                     column, so add a DEFAULT",
                    c.name
                )));
            }
        }
        Ok(())
    }
}

/// A synced table's columns as registered: (name, is key, declared type), key first.
fn recorded_columns(conn: &Connection, table_id: i64) -> Result<Vec<(String, bool, String)>> {
    let mut stmt = conn.prepare_cached("SELECT name, is_pk, decl_type FROM _syncline_columns WHERE tbl = ?1 ORDER BY is_pk DESC, ord")?;
    let rows = stmt.query_map([table_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, String>(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The live table's stored columns: (name, is key, declared type upper-cased); empty if there
/// is no such table.
fn live_columns(conn: &Connection, table: &str) -> Result<Vec<(String, bool, String)>> {
    let mut stmt = conn.prepare_cached("SELECT name, pk > 0, upper(type) FROM pragma_table_xinfo(?1) WHERE hidden = 0")?;
    let rows = stmt.query_map([table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, String>(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether the user table `table` has no rows.
pub fn is_empty(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn.query_row(&format!("SELECT NOT EXISTS (SELECT 1 FROM {})", quote_ident(table)), [], |r| r.get(0))?)
}

/// The way out of an unsupported change, named in every such error.
pub const WAY_OUT: &str = "Syncline supports adding columns (and tables); to make any other change, undo it, \
     or reseed: make the change on one replica, take a snapshot of it (a copy of the file that gets a new site id \
     with reset_site_id) and give it to the others in place of their files (spec/schema-evolution.md, \"Reseeding\")";

/// Check that a synced table (`name`, registered under `table_id`) still has every column it
/// registered, with the same key and declared types: a renamed or dropped column, a changed
/// key or type, or a renamed table, is a `SchemaMismatch` naming the change and the way out.
/// Added columns are allowed (the stamping pass adopts them).
pub fn check_columns(conn: &Connection, table_id: i64, name: &str) -> Result<()> {
    let recorded = recorded_columns(conn, table_id)?;
    let live = live_columns(conn, name)?;
    if live.is_empty() {
        let renamed: Option<String> = conn
            .prepare_cached("SELECT tbl_name FROM sqlite_schema WHERE type = 'trigger' AND name = ?1")?
            .query_row([format!("_syncline_{table_id}_insert")], |r| r.get(0))
            .optional()?;
        if let Some(now) = renamed {
            return Err(Error::schema(format!("synced table {name:?} was renamed to {now:?} (RENAME TABLE is not supported); {WAY_OUT}")));
        }
        return Err(Error::schema(format!(
            "synced table {name:?} no longer exists (dropped?): create it again with the same columns and run \
             `init` (enable_sync) on it, or disable sync for it"
        )));
    }
    let missing: Vec<&str> = recorded.iter().filter(|c| !live.iter().any(|l| l.0 == c.0)).map(|c| c.0.as_str()).collect();
    if let Some(first) = missing.first() {
        let new: Vec<&str> = live.iter().filter(|l| !recorded.iter().any(|c| c.0 == l.0)).map(|l| l.0.as_str()).collect();
        let now = if new.is_empty() { String::new() } else { format!(" (the table now has {new:?} instead)") };
        return Err(Error::schema(format!(
            "column {first:?} of synced table {name:?} was renamed or dropped{now} (RENAME COLUMN and DROP COLUMN are not \
             supported); {WAY_OUT}"
        )));
    }
    let changed_key = recorded.iter().any(|c| live.iter().any(|l| l.0 == c.0 && l.1 != c.1));
    if changed_key {
        return Err(Error::schema(format!("the primary key of synced table {name:?} changed (not supported); {WAY_OUT}")));
    }
    for (col, _, was) in &recorded {
        if let Some((_, _, now)) = live.iter().find(|l| l.0 == *col).filter(|l| l.2 != *was) {
            return Err(Error::schema(format!(
                "column {col:?} of synced table {name:?} changed its type from {was:?} to {now:?} (not supported); {WAY_OUT}"
            )));
        }
    }
    Ok(())
}

/// Check every synced table: its columns (see [`check_columns`]) and its capture triggers
/// (missing when the table was dropped and created again). Run before export, import and
/// status, so a changed schema gives a typed error instead of SQL failing half way.
pub fn check_synced(conn: &Connection) -> Result<()> {
    let tables: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, name FROM _syncline_tables ORDER BY name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, name) in tables {
        check_columns(conn, id, &name)?;
        if !crate::capture::has_triggers(conn, id)? {
            return Err(Error::schema(format!(
                "synced table {name:?} lost its capture triggers (dropped and created again?): run `init` \
                 (enable_sync) on it again, so its writes are captured"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn affinities() {
        assert_eq!(affinity("INTEGER"), "INTEGER");
        assert_eq!(affinity("varchar(10)"), "TEXT");
        assert_eq!(affinity(""), "BLOB");
        assert_eq!(affinity("DOUBLE"), "REAL");
        assert_eq!(affinity("DECIMAL"), "NUMERIC");
    }
}
