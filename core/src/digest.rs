//! `state_hash()`: one SHA-256 over a replica's synced data and sync metadata, defined so
//! that two replicas holding the same rows, causal lengths and stamps hash alike whatever
//! their local bookkeeping (site ordinals, peers, conflict log). Every binding exposes it; the
//! golden vectors and the cross-language interop matrix compare it (spec/merge-rules.md §9).

use crate::engine::SyncEngine;
use crate::error::Result;
use crate::meta;
use crate::shadow;
use crate::value::Value;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// A stamp as hashed: (hlc, site id bytes), or nil for none.
type Stamp = Option<(u64, Vec<u8>)>;

fn stamp(s: Option<shadow::Stamp>, sites: &std::collections::BTreeMap<i64, crate::SiteId>) -> Stamp {
    s.map(|s| (s.hlc, sites.get(&s.site).map(|x| x.0.to_vec()).unwrap_or_default()))
}

pub(crate) fn compute(c: &Connection) -> Result<String> {
    let sites = meta::sites(c)?;
    let mut h = Sha256::new();
    for t in meta::synced_tables(c)?.values() {
        let np = t.pk.len();
        let nc = t.cols.len();
        // Columns in name order, as bundles list them.
        let mut order: Vec<usize> = (0..nc).collect();
        order.sort_by(|a, b| t.cols[*a].cmp(&t.cols[*b]));
        let sql = shadow::joined_select(t);
        let mut stmt = c.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let values_at = np + shadow::state_width(t);
        while let Some(r) = rows.next()? {
            let pk: Vec<Value> = shadow::read_key(r, 0, t)?;
            let state = shadow::read_state(r, np, t)?;
            let cl = state.cl as i64;
            let row_stamp = stamp(Some(state.rh), &sites);
            let mut cells = Vec::with_capacity(nc);
            for &i in &order {
                let value: Value = if state.alive() { r.get(values_at + i)? } else { Value::Null };
                cells.push((t.cols[i].as_str(), value, stamp(state.cells[i], &sites)));
            }
            let key = rmp_serde::to_vec(&pk).expect("values encode");
            let body = rmp_serde::to_vec(&(cl, row_stamp, cells)).expect("row encodes");
            entries.push((key, body));
        }
        entries.sort();
        h.update(rmp_serde::to_vec(&(t.name.as_str(), entries.len() as u64)).expect("encodes"));
        for (k, b) in entries {
            h.update(k);
            h.update(b);
        }
    }
    Ok(hex::encode(h.finalize()))
}

impl SyncEngine {
    /// A SHA-256 (hex) over every synced table's rows and their sync state (causal length,
    /// row and cell stamps with site ids). Replicas that converged have equal hashes.
    pub fn state_hash(&self) -> Result<String> {
        self.read(|c| compute(c))
    }
}
