//! Tombstone garbage collection (spec/merge-rules.md §8). A deleted row keeps its shadow row
//! (its tombstone: an even causal length and the delete's stamp) so that the delete wins over
//! older changes still travelling. Once every peer this replica knows has acknowledged the
//! delete (its recorded version vector covers the stamp) and the retention time has passed,
//! the tombstone is purged, and `_syncline_purged` remembers, per origin site, the newest
//! purged stamp: the horizon. A bundle from a sender whose version vector does not cover the
//! horizon may carry rows it deleted without knowing, so it is refused with `NeedsSnapshot`.

use crate::error::{Error, ErrorKind, Result};
use crate::meta::{self, VersionVector};
use crate::shadow;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactReport {
    /// Tombstones purged.
    pub purged: u64,
    /// The database file's size before and after (vacuumed, WAL checkpointed).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Tombstones in every synced table, and how many of them every known peer acknowledged
/// (purgeable with no retention).
pub(crate) fn counts(conn: &Connection) -> Result<(u64, u64)> {
    let tables = meta::synced_tables(conn)?;
    let mut all = 0;
    for t in tables.values() {
        all += shadow::tombstones(conn, t)?;
    }
    let purgeable = if limits(conn, 0, u64::MAX)? {
        tables.values().map(|t| shadow::tombstones_within(conn, t, false).map(|r| r.0)).sum::<Result<u64>>()?
    } else {
        0
    };
    Ok((all, purgeable))
}

/// Fill `temp._syncline_gc` with, per origin site, the newest delete stamp that may go:
/// acknowledged by every known peer and older than `retain_ms` before `now_ms`. False (and
/// nothing may go) when no peer is known: nobody has acknowledged anything.
fn limits(conn: &Connection, retain_ms: u64, now_ms: u64) -> Result<bool> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS _syncline_gc(origin INTEGER PRIMARY KEY, lim INTEGER); DELETE FROM temp._syncline_gc;",
    )?;
    let peers = meta::peers(conn)?;
    if peers.is_empty() {
        return Ok(false);
    }
    let mut acked: Option<BTreeMap<i64, u64>> = None;
    for p in peers {
        let vv = meta::peer_vv(conn, p)?;
        acked = Some(match acked {
            None => vv.into_iter().collect(),
            Some(a) => a.into_iter().filter_map(|(o, h)| vv.get(&o).map(|v| (o, h.min(*v)))).collect(),
        });
    }
    let by_time = if retain_ms == 0 { u64::MAX } else { (now_ms.saturating_sub(retain_ms) << 16) | 0xFFFF };
    let mut insert = conn.prepare_cached("INSERT INTO temp._syncline_gc(origin, lim) VALUES (?1, ?2)")?;
    for (origin, h) in acked.unwrap_or_default() {
        insert.execute([origin, h.min(by_time).min(i64::MAX as u64) as i64])?;
    }
    Ok(true)
}

/// Purge what may go (see [`limits`]) and raise the horizon. Runs in a write transaction.
pub(crate) fn purge(conn: &Connection, retain_ms: u64, now_ms: u64) -> Result<u64> {
    if !limits(conn, retain_ms, now_ms)? {
        return Ok(0);
    }
    let mut purged = 0;
    for t in meta::synced_tables(conn)?.values() {
        let (n, newest) = shadow::tombstones_within(conn, t, true)?;
        purged += n;
        for (origin, h) in newest {
            conn.prepare_cached(
                "INSERT INTO _syncline_purged(origin, hlc) VALUES (?1, ?2) ON CONFLICT(origin) DO UPDATE SET hlc = max(hlc, excluded.hlc)",
            )?
            .execute([origin, h as i64])?;
        }
    }
    Ok(purged)
}

/// The horizon: per origin site, the newest purged delete stamp.
pub(crate) fn horizon(conn: &Connection) -> Result<VersionVector> {
    let mut stmt = conn.prepare_cached("SELECT origin, hlc FROM _syncline_purged")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Refuse a bundle with rows from a sender that has not seen every purged delete.
pub(crate) fn check_sender(conn: &Connection, sender_vv: &VersionVector, rows: u64) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    for (origin, h) in horizon(conn)? {
        if sender_vv.get(&origin).copied().unwrap_or(0) < h {
            return Err(Error::new(
                ErrorKind::NeedsSnapshot,
                "this replica has purged deletes the sender has not seen (compaction), so the sender's rows could bring \
                 deleted rows back; the sender must first sync with a replica that has not purged them, or start again from \
                 a snapshot",
            ));
        }
    }
    Ok(())
}
