//! Clock recovery: a replica whose clock once ran far ahead stamped its changes in the future,
//! and every peer rejects or quarantines them. When its site id is reset
//! ([`SyncEngine::reset_site_id`](crate::SyncEngine::reset_site_id)) with the wall clock
//! corrected, the clock is rewound and every stamp beyond the allowed drift is issued again
//! under the new site id with a stamp of now, so the same values travel again (spec/hlc.md §5).

use crate::error::Result;
use crate::hlc;
use crate::meta;
use rusqlite::Connection;

/// If the clock lies beyond `now + max_drift_ms`, rewind it and re-stamp the future stamps.
/// Runs after the new site id took over (its own count starts at 0). Returns the number of
/// rows re-stamped.
pub fn rewind_if_ahead(conn: &Connection, max_drift_ms: u64) -> Result<u64> {
    let now = meta::now_ms(conn)?;
    let limit = hlc::pack(now.saturating_add(max_drift_ms).min(hlc::MAX_MILLIS), u16::MAX);
    if meta::clock(conn)?.hlc <= limit {
        return Ok(0);
    }
    conn.execute("UPDATE _syncline_clock SET seen = ?1 WHERE id = 0", [(now << hlc::COUNTER_BITS) as i64])?;
    let stamp = meta::tick(conn)?;
    let site = meta::clock(conn)?.site_ord;
    let mut restamped = 0;
    for t in meta::synced_tables(conn)?.values() {
        restamped += crate::shadow::restamp_beyond(conn, t, limit, crate::shadow::Stamp { hlc: stamp, site })?;
    }
    Ok(restamped)
}
