//! Quarantine: row entries stamped further ahead of the local clock than `max_drift` allows.
//! Each is kept as a one-row bundle in `_syncline_quarantine` (never merged into the clock),
//! counted by `status`, and applied by the first import after the local clock has caught up
//! (spec/merge-rules.md §5a). The rest of its bundle applies at once. Rows beyond the
//! horizon ([`HORIZON_MS`] past the drift) are rejected instead.

use crate::bundle::{self, Contents, Header, TableDict, WireRow};
use crate::error::Result;
use crate::site::SiteId;
use rusqlite::Connection;

/// How far beyond the allowed drift a row may be stamped and still wait in quarantine (24 h).
/// A row stamped further ahead comes from a clock that will not catch up by itself: it is
/// rejected instead (kept in `_syncline_rejected`), so it can never apply years later.
pub const HORIZON_MS: u64 = 24 * 3600 * 1000;

pub const DDL: &str = "CREATE TABLE IF NOT EXISTS _syncline_quarantine(
  id INTEGER PRIMARY KEY, sender BLOB NOT NULL, hlc INTEGER NOT NULL, bundle BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS _syncline_quarantine_hlc ON _syncline_quarantine(hlc);";

/// Keep one row of a bundle aside. It is stored as a bundle of its own from the same sender,
/// with the sender's version vector as its base, so applying it later raises no vector.
pub fn store(conn: &Connection, header: &Header, table: &TableDict, sites: &[SiteId], mut row: WireRow) -> Result<()> {
    let mut used: Vec<u32> = std::iter::once(row.site).chain(row.cells.iter().map(|c| c.site)).collect();
    used.sort_unstable();
    used.dedup();
    let index = |s: u32| used.binary_search(&s).expect("collected above") as u32;
    row.table = 0;
    row.site = index(row.site);
    for c in &mut row.cells {
        c.site = index(c.site);
    }
    let stamps = std::iter::once(row.hlc).chain(row.cells.iter().map(|c| c.hlc));
    let (min_hlc, max_hlc) = stamps.fold((u64::MAX, 0), |(lo, hi), h| (lo.min(h), hi.max(h)));
    let tables = vec![table.clone()];
    let header = Header {
        site: header.site.clone(),
        vv: header.vv.clone(),
        base: header.vv.clone(),
        schema: bundle::schema_fingerprint(&tables),
        rows: 1,
        changes: 1 + row.cells.len() as u64,
        min_hlc,
        max_hlc,
        inflated: None,
        migrations: None,
    };
    let contents = Contents { header, tables, sites: used.iter().map(|s| sites[*s as usize]).collect(), rows: vec![row] };
    conn.prepare_cached("INSERT INTO _syncline_quarantine(sender, hlc, bundle) VALUES (?1, ?2, ?3)")?.execute(rusqlite::params![
        contents.header.site,
        max_hlc as i64,
        bundle::encode(&contents, false)
    ])?;
    Ok(())
}

/// Quarantined rows whose every stamp is now at most `limit`, oldest first.
pub fn due(conn: &Connection, limit: u64) -> Result<Vec<(i64, Vec<u8>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, bundle FROM _syncline_quarantine WHERE hlc <= ?1 ORDER BY hlc, id")?;
    let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Forget a row once it was applied.
pub fn remove(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM _syncline_quarantine WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Rows waiting in quarantine (for `status`).
pub fn count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row("SELECT count(*) FROM _syncline_quarantine", [], |r| r.get(0))?;
    Ok(n as u64)
}
