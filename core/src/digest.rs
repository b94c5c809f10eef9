//! `state_hash()`: one SHA-256 over a replica's synced data and sync metadata, defined so
//! that two replicas holding the same rows, causal lengths and stamps hash alike whatever
//! their local bookkeeping (site ordinals, peers, conflict log). Every binding exposes it; the
//! golden vectors and the cross-language interop matrix compare it (spec/merge-rules.md §9).

use crate::engine::SyncEngine;
use crate::error::Result;
use crate::meta;
use crate::schema::quote_ident;
use crate::value::Value;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// A stamp as hashed: (hlc, site id bytes), or nil for none.
type Stamp = Option<(u64, Vec<u8>)>;

fn stamp(h: Option<i64>, s: Option<i64>, sites: &std::collections::BTreeMap<i64, crate::SiteId>) -> Stamp {
    match (h, s) {
        (Some(h), Some(s)) => Some((h as u64, sites.get(&s).map(|x| x.0.to_vec()).unwrap_or_default())),
        _ => None,
    }
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
        let pk_sel: String = (0..np).map(|i| format!("s.pk{i}, ")).collect();
        let stamps: String = (0..nc).map(|i| format!(", s.h{i}, s.s{i}")).collect();
        let vals: String = t.cols.iter().map(|col| format!(", t.{}", quote_ident(col))).collect();
        let join = t.pk.iter().enumerate().map(|(i, col)| format!("t.{} = s.pk{i}", quote_ident(col))).collect::<Vec<_>>().join(" AND ");
        let sql =
            format!("SELECT {pk_sel}s.cl, s.rh, s.rs{stamps}{vals} FROM {} s LEFT JOIN {} t ON {join}", t.shadow(), quote_ident(&t.name));
        let mut stmt = c.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        while let Some(r) = rows.next()? {
            let pk: Vec<Value> = (0..np).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
            let cl: i64 = r.get(np)?;
            let row_stamp = stamp(r.get(np + 1)?, r.get(np + 2)?, &sites);
            let mut cells = Vec::with_capacity(nc);
            for &i in &order {
                let cell = stamp(r.get(np + 3 + 2 * i)?, r.get(np + 4 + 2 * i)?, &sites);
                let value: Value = if cl % 2 == 1 { r.get(np + 3 + 2 * nc + i)? } else { Value::Null };
                cells.push((t.cols[i].as_str(), value, cell));
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
