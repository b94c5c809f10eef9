//! Held changes (spec/schema-evolution.md §5): what an import receives for a column or a table
//! this replica's schema lacks. Nothing is dropped: cells of unknown columns of a synced table
//! wait in `_syncline_held_cells`, rows of a table not enabled here in `_syncline_held_rows`
//! (with their cells), both with their original stamps. Exports relay them unchanged, and once
//! the schema gains the column or the table, [`release`] merges them like an import would.
//!
//! Rules: per (table, key, column) only the newest cell of the newest incarnation is kept (a
//! higher causal length wins, then the newer stamp); a cell whose incarnation the row has left
//! is dead and neither relayed nor released. Storing a cell of a synced table raises its shadow
//! row's `mh`, so delta exports and paging see it.

use crate::error::{Error, Result};
use crate::shadow::Stamp;
use crate::value::Value;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;

pub const DDL: &str = "
CREATE TABLE IF NOT EXISTS _syncline_held_tables(tbl TEXT PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS _syncline_held_rows(
  tbl TEXT NOT NULL, pk BLOB NOT NULL, cl INTEGER NOT NULL, rh INTEGER NOT NULL, rs INTEGER NOT NULL, mh INTEGER NOT NULL,
  PRIMARY KEY(tbl, pk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _syncline_held_cells(
  tbl TEXT NOT NULL, pk BLOB NOT NULL, col TEXT NOT NULL, cl INTEGER NOT NULL, value ANY, hlc INTEGER NOT NULL,
  site INTEGER NOT NULL, PRIMARY KEY(tbl, pk, col)) WITHOUT ROWID;";

/// One held cell.
#[derive(Debug, Clone)]
pub struct Cell {
    pub col: String,
    pub value: Value,
    pub stamp: Stamp,
    /// The causal length of the incarnation the cell belongs to.
    pub cl: u64,
}

/// One held row of a table not enabled here.
#[derive(Debug, Clone)]
pub struct Row {
    pub pk: Vec<Value>,
    pub cl: u64,
    pub rh: Stamp,
    pub mh: u64,
}

/// The key of a row as stored: the MessagePack bytes of its key values.
pub fn key_bytes(pk: &[Value]) -> Vec<u8> {
    rmp_serde::to_vec(pk).expect("values encode")
}

fn stamp_of(h: i64, s: i64) -> Stamp {
    Stamp { hlc: h as u64, site: s }
}

/// Keep `cell` of row `pk` unless what is held supersedes it; `newer(a, b)` is the LWW order.
/// Returns whether it changed what is held.
pub fn hold_cell(conn: &Connection, table: &str, pk: &[u8], cell: &Cell, newer: impl Fn(Stamp, Stamp) -> bool) -> Result<bool> {
    let held: Option<(i64, i64, i64)> = conn
        .prepare_cached("SELECT cl, hlc, site FROM _syncline_held_cells WHERE tbl = ?1 AND pk = ?2 AND col = ?3")?
        .query_row(rusqlite::params![table, pk, cell.col], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((cl, h, s)) = held {
        let (cl, old) = (cl as u64, stamp_of(h, s));
        if cell.cl < cl || (cell.cl == cl && !newer(cell.stamp, old)) {
            return Ok(false);
        }
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO _syncline_held_cells(tbl, pk, col, cl, value, hlc, site) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![table, pk, cell.col, cell.cl as i64, cell.value, cell.stamp.hlc as i64, cell.stamp.site])?;
    Ok(true)
}

/// Keep the row state of a row of a table not enabled here (whose key columns are `key`),
/// unless the held state supersedes it. Cells of incarnations it leaves behind are dropped.
/// Returns whether it changed what is held.
pub fn hold_row(conn: &Connection, table: &str, key: &[String], row: &Row, newer: impl Fn(Stamp, Stamp) -> bool) -> Result<bool> {
    let names = rmp_serde::to_vec(key).expect("names encode");
    let known: Option<Vec<u8>> =
        conn.prepare_cached("SELECT key FROM _syncline_held_tables WHERE tbl = ?1")?.query_row([table], |r| r.get(0)).optional()?;
    match known {
        Some(k) if k != names => {
            return Err(Error::schema(format!("bundles disagree on the primary key of table {table:?}, which is held here")));
        }
        Some(_) => {}
        None => {
            conn.prepare_cached("INSERT INTO _syncline_held_tables(tbl, key) VALUES (?1, ?2)")?.execute(rusqlite::params![table, names])?;
        }
    }
    let pk = key_bytes(&row.pk);
    let held: Option<(i64, i64, i64, i64)> = conn
        .prepare_cached("SELECT cl, rh, rs, mh FROM _syncline_held_rows WHERE tbl = ?1 AND pk = ?2")?
        .query_row(rusqlite::params![table, pk], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let mh = row.mh.max(held.map_or(0, |h| h.3 as u64));
    let keep = held.is_some_and(|(cl, h, s, _)| row.cl < cl as u64 || (row.cl == cl as u64 && !newer(row.rh, stamp_of(h, s))));
    if keep {
        raise_row(conn, table, &pk, mh)?;
        return Ok(false);
    }
    conn.prepare_cached("INSERT OR REPLACE INTO _syncline_held_rows(tbl, pk, cl, rh, rs, mh) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(rusqlite::params![table, pk, row.cl as i64, row.rh.hlc as i64, row.rh.site, mh as i64])?;
    conn.prepare_cached("DELETE FROM _syncline_held_cells WHERE tbl = ?1 AND pk = ?2 AND cl < ?3")?.execute(rusqlite::params![
        table,
        pk,
        row.cl as i64
    ])?;
    Ok(true)
}

/// Raise the newest stamp of a held row (a cell of it was just held).
pub fn raise_row(conn: &Connection, table: &str, pk: &[u8], mh: u64) -> Result<()> {
    conn.prepare_cached("UPDATE _syncline_held_rows SET mh = max(mh, ?3) WHERE tbl = ?1 AND pk = ?2")?
        .execute(rusqlite::params![table, pk, mh as i64])?;
    Ok(())
}

/// Held cells of `table`, by row key bytes.
pub fn cells_of(conn: &Connection, table: &str) -> Result<HashMap<Vec<u8>, Vec<Cell>>> {
    let mut stmt = conn.prepare_cached("SELECT pk, col, cl, value, hlc, site FROM _syncline_held_cells WHERE tbl = ?1 ORDER BY pk, col")?;
    let mut out: HashMap<Vec<u8>, Vec<Cell>> = HashMap::new();
    let rows = stmt.query_map([table], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            Cell { col: r.get(1)?, cl: r.get::<_, i64>(2)? as u64, value: r.get(3)?, stamp: stamp_of(r.get(4)?, r.get(5)?) },
        ))
    })?;
    for row in rows {
        let (pk, cell) = row?;
        out.entry(pk).or_default().push(cell);
    }
    Ok(out)
}

/// The column names held cells of `table` name, sorted.
pub fn columns_of(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT col FROM _syncline_held_cells WHERE tbl = ?1 ORDER BY col")?;
    let rows = stmt.query_map([table], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Tables held here (not enabled), with their key columns, by name.
pub fn tables(conn: &Connection) -> Result<Vec<(String, Vec<String>)>> {
    let mut stmt = conn.prepare_cached("SELECT tbl, key FROM _syncline_held_tables ORDER BY tbl")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (t, k) = row?;
        let key = rmp_serde::from_slice(&k).map_err(|e| Error::new(crate::ErrorKind::Sqlite, format!("held key of {t:?}: {e}")))?;
        out.push((t, key));
    }
    Ok(out)
}

/// The held rows of a table not enabled here, in `(mh, key bytes)` order.
pub fn rows_of(conn: &Connection, table: &str) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached("SELECT pk, cl, rh, rs, mh FROM _syncline_held_rows WHERE tbl = ?1 ORDER BY mh, pk")?;
    let rows =
        stmt.query_map([table], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get::<_, i64>(4)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (pk, cl, h, s, mh) = row?;
        let pk = rmp_serde::from_slice(&pk).map_err(|e| Error::new(crate::ErrorKind::Sqlite, format!("held key: {e}")))?;
        out.push(Row { pk, cl: cl as u64, rh: stamp_of(h, s), mh: mh as u64 });
    }
    Ok(out)
}

/// Forget the held cells of `table` in `columns` (released).
pub fn forget_cells(conn: &Connection, table: &str, columns: &[String]) -> Result<()> {
    for c in columns {
        conn.prepare_cached("DELETE FROM _syncline_held_cells WHERE tbl = ?1 AND col = ?2")?.execute([table, c])?;
    }
    Ok(())
}

/// Forget the held rows of `table` (it is enabled now; cells of columns it lacks stay).
pub fn forget_rows(conn: &Connection, table: &str) -> Result<()> {
    for sql in ["DELETE FROM _syncline_held_rows WHERE tbl = ?1", "DELETE FROM _syncline_held_tables WHERE tbl = ?1"] {
        conn.prepare_cached(sql)?.execute([table])?;
    }
    Ok(())
}

/// What is held: (cells, rows of tables not enabled here), for `status`.
pub fn counts(conn: &Connection) -> Result<(u64, u64)> {
    let cells: i64 = conn.query_row("SELECT count(*) FROM _syncline_held_cells", [], |r| r.get(0))?;
    let rows: i64 = conn.query_row("SELECT count(*) FROM _syncline_held_rows", [], |r| r.get(0))?;
    Ok((cells as u64, rows as u64))
}
