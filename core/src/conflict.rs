//! Conflict records: what `manual` tables keep for a person to resolve, stored in
//! `_syncline_conflicts` so they survive restarts, and how a resolution is written back.

use crate::error::{Error, ErrorKind, Result};
use crate::site::SiteId;
use crate::strategy::{CellVersion, ConflictInput, Strategy};
use crate::value::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;

/// A conflict: the same cell changed on two replicas since they last synced.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// Id of the stored record (`manual` tables); `None` for conflicts a strategy settled at once.
    pub id: Option<i64>,
    pub table: String,
    pub pk: Vec<Value>,
    pub column: String,
    pub local: CellVersion,
    pub remote: CellVersion,
    pub strategy: Strategy,
    /// How it ended: `None` while open; `local`, `remote`, `value`, `superseded` or the strategy name.
    pub resolution: Option<String>,
}

impl Conflict {
    pub(crate) fn settled(input: ConflictInput, strategy: Strategy) -> Conflict {
        Conflict {
            id: None,
            table: input.table,
            pk: input.pk,
            column: input.column,
            local: input.local,
            remote: input.remote,
            strategy,
            resolution: Some(strategy.as_str().to_owned()),
        }
    }
}

/// (table, encoded key, column) of a cell.
pub(crate) type CellKey = (String, Vec<u8>, String);
/// Open conflicts by cell, with the recorded remote stamp.
pub(crate) type OpenConflicts = HashMap<CellKey, (u64, SiteId)>;

pub(crate) fn encode<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec(v).expect("values encode")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> rusqlite::Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e)))
}

pub(crate) fn cell_key(table: &str, pk: &[Value], column: &str) -> CellKey {
    (table.to_owned(), encode(pk), column.to_owned())
}

/// Store a manual conflict.
pub(crate) fn record(conn: &Connection, c: &ConflictInput, strategy: Strategy) -> Result<Conflict> {
    conn.prepare_cached(
        "INSERT INTO _syncline_conflicts(tbl, pk, col, local_value, local_hlc, local_site, \
         remote_value, remote_hlc, remote_site, strategy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        c.table,
        encode(&c.pk),
        c.column,
        encode(&c.local.value),
        c.local.hlc as i64,
        &c.local.site.0[..],
        encode(&c.remote.value),
        c.remote.hlc as i64,
        &c.remote.site.0[..],
        strategy.as_str()
    ])?;
    let mut out = Conflict::settled(c.clone(), strategy);
    out.id = Some(conn.last_insert_rowid());
    out.resolution = None;
    Ok(out)
}

/// Every open conflict's cell and recorded remote stamp.
pub(crate) fn open_cells(conn: &Connection) -> Result<OpenConflicts> {
    let mut stmt = conn.prepare_cached("SELECT tbl, pk, col, remote_hlc, remote_site FROM _syncline_conflicts WHERE resolution IS NULL")?;
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get::<_, i64>(3)? as u64, r.get::<_, Vec<u8>>(4)?))))?;
    let mut out = OpenConflicts::new();
    for row in rows {
        let (key, (h, s)) = row?;
        let site = SiteId::from_slice(&s)?;
        // Several records on one cell: the newest remote stamp counts.
        let e = out.entry(key).or_insert((h, site));
        if (h, site) > *e {
            *e = (h, site);
        }
    }
    Ok(out)
}

/// A newer change to the cell settled its open conflicts.
pub(crate) fn close_superseded(conn: &Connection, key: &CellKey) -> Result<()> {
    conn.prepare_cached(
        "UPDATE _syncline_conflicts SET resolution = 'superseded' WHERE tbl = ?1 AND pk = ?2 AND col = ?3 AND resolution IS NULL",
    )?
    .execute(params![key.0, key.1, key.2])?;
    Ok(())
}

const COLUMNS: &str = "id, tbl, pk, col, local_value, local_hlc, local_site, remote_value, remote_hlc, remote_site, strategy, resolution";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Conflict> {
    let site = |i: usize| -> rusqlite::Result<SiteId> {
        let b: Vec<u8> = r.get(i)?;
        SiteId::from_slice(&b).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e)))
    };
    let strategy: String = r.get(10)?;
    Ok(Conflict {
        id: Some(r.get(0)?),
        table: r.get(1)?,
        pk: decode(&r.get::<_, Vec<u8>>(2)?)?,
        column: r.get(3)?,
        local: CellVersion { value: decode(&r.get::<_, Vec<u8>>(4)?)?, hlc: r.get::<_, i64>(5)? as u64, site: site(6)? },
        remote: CellVersion { value: decode(&r.get::<_, Vec<u8>>(7)?)?, hlc: r.get::<_, i64>(8)? as u64, site: site(9)? },
        strategy: strategy.parse().unwrap_or(Strategy::Manual),
        resolution: r.get(11)?,
    })
}

/// Stored conflicts, oldest first; only open ones unless `all`.
pub(crate) fn list(conn: &Connection, all: bool) -> Result<Vec<Conflict>> {
    let filter = if all { "" } else { "WHERE resolution IS NULL" };
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM _syncline_conflicts {filter} ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

/// One open conflict, or `NotFound`.
pub(crate) fn get_open(conn: &Connection, id: i64) -> Result<Conflict> {
    let c = conn
        .query_row(&format!("SELECT {COLUMNS} FROM _syncline_conflicts WHERE id = ?1"), [id], from_row)
        .optional()?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no conflict with id {id}")))?;
    if let Some(how) = &c.resolution {
        return Err(Error::new(ErrorKind::NotFound, format!("conflict {id} is already resolved ({how})")));
    }
    Ok(c)
}

/// Mark every open record of the conflict's cell resolved.
pub(crate) fn mark_resolved(conn: &Connection, c: &Conflict, how: &str) -> Result<()> {
    conn.execute(
        "UPDATE _syncline_conflicts SET resolution = ?4 WHERE tbl = ?1 AND pk = ?2 AND col = ?3 AND resolution IS NULL",
        params![c.table, encode(&c.pk), c.column, how],
    )?;
    Ok(())
}
