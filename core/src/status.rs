//! `status()`: what this replica is, what it syncs, whom it knows and what they still lack.

use crate::error::Result;
use crate::export::{known_of, scan_delta, vv_to_wire};
use crate::meta;
use crate::site::SiteId;
use crate::strategy::Strategy;
use rusqlite::Connection;

/// One synced table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStatus {
    pub name: String,
    pub strategy: Strategy,
    /// Live rows known to sync.
    pub rows: u64,
}

/// One peer this replica has received a bundle from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub site_id: SiteId,
    /// What the peer is known to hold (from its last bundle).
    pub version_vector: Vec<(SiteId, u64)>,
    /// Changes (row states and cells) the next bundle for this peer would carry.
    pub pending: u64,
}

/// A snapshot of the engine's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub site_id: SiteId,
    /// The last stamp issued or received.
    pub hlc: u64,
    pub tables: Vec<TableStatus>,
    pub peers: Vec<PeerStatus>,
    /// This replica's version vector.
    pub version_vector: Vec<(SiteId, u64)>,
    pub unresolved_conflicts: u64,
    /// Rows refused by a local constraint on import (kept in `_syncline_rejected`).
    pub rejected: u64,
    /// Remote rows stamped too far ahead of the local clock, waiting in `_syncline_quarantine`
    /// until the clock catches up.
    pub quarantined: u64,
    /// Shadow rows of deleted rows (tombstones), and how many of them every known peer has
    /// acknowledged (what `compact` with no retention would purge).
    pub tombstones: u64,
    pub purgeable: u64,
    /// Per origin site, the newest delete stamp purged by compaction: a sender whose version
    /// vector does not cover it is refused with `NeedsSnapshot`.
    pub purge_horizon: Vec<(SiteId, u64)>,
    /// Columns registered after their table was enabled, oldest first: detected ALTERs made
    /// by other writers, migrations made here and migrations received (applied or held).
    pub schema_changes: Vec<crate::evolve::SchemaChange>,
    /// Cells held for columns this replica lacks, relayed and applied once it has them.
    pub held_cells: u64,
    /// Rows held for tables not enabled here, applied once they are.
    pub held_rows: u64,
}

fn wire(vv: &meta::VersionVector, sites: &std::collections::BTreeMap<i64, SiteId>) -> Vec<(SiteId, u64)> {
    vv_to_wire(vv, sites).into_iter().filter_map(|e| SiteId::from_slice(&e.0).ok().map(|s| (s, e.1))).collect()
}

pub(crate) fn collect(c: &Connection) -> Result<Status> {
    let sites = meta::sites(c)?;
    let tables = meta::synced_tables(c)?;
    let mut table_status = Vec::new();
    for t in tables.values() {
        table_status.push(TableStatus { name: t.name.clone(), strategy: t.strategy, rows: crate::shadow::live_rows(c, t)? });
    }
    let mut peers = Vec::new();
    for ord in meta::peers(c)? {
        let site = sites[&ord];
        let known = known_of(c, Some(&site))?;
        let mut pending = 0u64;
        for t in tables.values() {
            scan_delta(c, t, &known, |row| {
                pending += 1 + row.cells.len() as u64;
                Ok(())
            })?;
        }
        peers.push(PeerStatus { site_id: site, version_vector: wire(&known, &sites), pending });
    }
    let clock = meta::clock(c)?;
    let (tombstones, purgeable) = crate::compact::counts(c)?;
    let (held_cells, held_rows) = crate::held::counts(c)?;
    Ok(Status {
        site_id: meta::local_site(c)?,
        hlc: clock.hlc,
        tables: table_status,
        peers,
        version_vector: wire(&meta::local_vv(c)?, &sites),
        unresolved_conflicts: c
            .query_row("SELECT count(*) FROM _syncline_conflicts WHERE resolution IS NULL", [], |r| r.get::<_, i64>(0))?
            as u64,
        rejected: c.query_row("SELECT count(*) FROM _syncline_rejected", [], |r| r.get::<_, i64>(0))? as u64,
        quarantined: crate::quarantine::count(c)?,
        tombstones,
        purgeable,
        purge_horizon: wire(&crate::compact::horizon(c)?, &sites),
        schema_changes: crate::evolve::changes(c)?,
        held_cells,
        held_rows,
    })
}
