//! Building a bundle: every cell and row state a peer lacks according to what we know of its
//! version vector (everything for an unknown peer), in canonical order.

use crate::bundle::{self, Contents, Header, TableDict, VvEntry, WireCell, WireRow};
use crate::error::Result;
use crate::meta::{self, SyncedTable, VersionVector};
use crate::schema::quote_ident;
use crate::site::SiteId;
use crate::value::Value;
use rusqlite::{Connection, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Sizes of a generated bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BundleStats {
    pub rows: u64,
    pub changes: u64,
    pub bytes: u64,
}

/// A version vector on the wire: sorted by site id, zero entries left out.
pub(crate) fn vv_to_wire(vv: &VersionVector, sites: &BTreeMap<i64, SiteId>) -> Vec<VvEntry> {
    let mut out: Vec<VvEntry> = vv
        .iter()
        .filter(|(_, h)| **h > 0)
        .filter_map(|(o, h)| sites.get(o).map(|s| VvEntry(s.0.to_vec(), *h)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Look a site up without adding it.
pub(crate) fn find_site(conn: &Connection, site: &SiteId) -> Result<Option<i64>> {
    Ok(conn.prepare_cached("SELECT ord FROM _syncline_sites WHERE site = ?1")?.query_row([&site.0[..]], |r| r.get(0)).optional()?)
}

/// What `peer` is known to hold (empty for an unknown peer or none).
pub(crate) fn known_of(conn: &Connection, peer: Option<&SiteId>) -> Result<VersionVector> {
    match peer {
        None => Ok(VersionVector::new()),
        Some(p) => match find_site(conn, p)? {
            None => Ok(VersionVector::new()),
            Some(ord) => meta::peer_vv(conn, ord),
        },
    }
}

/// Visit every row with something beyond `known`, with only the cells beyond it.
/// Site fields of the rows hold local site ordinals.
pub(crate) fn scan_delta(
    conn: &Connection,
    t: &SyncedTable,
    known: &VersionVector,
    sites: &BTreeMap<i64, SiteId>,
    mut visit: impl FnMut(WireRow) -> Result<()>,
) -> Result<()> {
    let floor = sites.keys().map(|o| known.get(o).copied().unwrap_or(0)).min().unwrap_or(0);
    let lacks = |h: u64, s: i64| h > known.get(&s).copied().unwrap_or(0);
    let np = t.pk.len();
    let nc = t.cols.len();
    let pk_sel: String = (0..np).map(|i| format!("s.pk{i}, ")).collect();
    let stamps: String = (0..nc).map(|i| format!(", s.h{i}, s.s{i}")).collect();
    let vals: String = t.cols.iter().map(|c| format!(", t.{}", quote_ident(c))).collect();
    let join = t.pk.iter().enumerate().map(|(i, c)| format!("t.{} = s.pk{i}", quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    let sql = format!(
        "SELECT {pk_sel}s.cl, s.rh, s.rs{stamps}{vals}, t.{first} IS NOT NULL FROM {sh} s \
         LEFT JOIN {tbl} t ON {join} WHERE s.mh > ?1",
        first = quote_ident(&t.pk[0]),
        sh = t.shadow(),
        tbl = quote_ident(&t.name),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([floor as i64])?;
    while let Some(r) = rows.next()? {
        let pk: Vec<Value> = (0..np).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
        let cl: i64 = r.get(np)?;
        let rh = r.get::<_, i64>(np + 1)? as u64;
        let rs: i64 = r.get(np + 2)?;
        let exists: bool = r.get(np + 3 + 3 * nc)?;
        let mut cells = Vec::new();
        if cl % 2 == 1 && exists {
            for i in 0..nc {
                let h: Option<i64> = r.get(np + 3 + 2 * i)?;
                let s: Option<i64> = r.get(np + 4 + 2 * i)?;
                if let (Some(h), Some(s)) = (h, s) {
                    if lacks(h as u64, s) {
                        let value: Value = r.get(np + 3 + 2 * nc + i)?;
                        cells.push(WireCell { col: i as u32, value, hlc: h as u64, site: s as u32 });
                    }
                }
            }
        }
        if cells.is_empty() && !lacks(rh, rs) {
            continue;
        }
        visit(WireRow { table: t.id as u32, pk, cl: cl as u64, hlc: rh, site: rs as u32, cells })?;
    }
    Ok(())
}

/// Build the bundle for `peer`.
pub(crate) fn generate(
    conn: &Connection,
    peer: Option<&SiteId>,
    compress: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<u8>, BundleStats)> {
    let sites = meta::sites(conn)?;
    let known = known_of(conn, peer)?;
    let vv = meta::local_vv(conn)?;
    let tables = meta::synced_tables(conn)?;

    let floor = sites.keys().map(|o| known.get(o).copied().unwrap_or(0)).min().unwrap_or(0);
    let mut total = 0u64;
    for t in tables.values() {
        total += conn.query_row(&format!("SELECT count(*) FROM {} WHERE mh > ?1", t.shadow()), [floor as i64], |r| r.get::<_, i64>(0))? as u64;
    }

    let mut dict: Vec<TableDict> = Vec::new();
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut encoded: Vec<((u32, Vec<u8>), WireRow)> = Vec::new();
    let (mut min_hlc, mut max_hlc, mut changes, mut scanned) = (u64::MAX, 0u64, 0u64, 0u64);
    for t in tables.values() {
        // Columns on the wire are sorted by name; map shadow index to wire index.
        let mut names: Vec<(&String, usize)> = t.cols.iter().zip(0..).collect();
        names.sort();
        let mut wire_col = vec![0u32; t.cols.len()];
        for (w, (_, i)) in names.iter().enumerate() {
            wire_col[*i] = w as u32;
        }
        let table_idx = dict.len() as u32;
        let mut any = false;
        scan_delta(conn, t, &known, &sites, |mut row| {
            scanned += 1;
            if scanned % 4096 == 0 {
                progress(scanned, total);
            }
            row.table = table_idx;
            used.insert(row.site);
            for c in &mut row.cells {
                c.col = wire_col[c.col as usize];
                used.insert(c.site);
            }
            row.cells.sort_by_key(|c| c.col);
            for h in std::iter::once(row.hlc).chain(row.cells.iter().map(|c| c.hlc)) {
                min_hlc = min_hlc.min(h);
                max_hlc = max_hlc.max(h);
            }
            changes += 1 + row.cells.len() as u64;
            any = true;
            encoded.push((bundle::canonical_key(&row), row));
            Ok(())
        })?;
        if any {
            dict.push(TableDict(t.name.clone(), t.pk.clone(), names.iter().map(|(n, _)| (*n).clone()).collect()));
        }
    }
    progress(total, total);
    encoded.sort_by(|a, b| a.0.cmp(&b.0));
    // Site dictionary: the sites the rows name, sorted by id; rows refer to it by index.
    let mut dict_sites: Vec<(SiteId, u32)> = used.iter().map(|o| (sites[&i64::from(*o)], *o)).collect();
    dict_sites.sort();
    let site_idx: HashMap<u32, u32> = dict_sites.iter().enumerate().map(|(i, (_, o))| (*o, i as u32)).collect();
    let rows: Vec<WireRow> = encoded
        .into_iter()
        .map(|(_, mut r)| {
            r.site = site_idx[&r.site];
            for c in &mut r.cells {
                c.site = site_idx[&c.site];
            }
            r
        })
        .collect();
    if rows.is_empty() {
        min_hlc = 0;
    }
    let local = meta::local_site(conn)?;
    let header = Header {
        site: local.0.to_vec(),
        vv: vv_to_wire(&vv, &sites),
        base: vv_to_wire(&known, &sites),
        schema: bundle::schema_fingerprint(&dict),
        rows: rows.len() as u64,
        changes,
        min_hlc,
        max_hlc,
    };
    let contents = Contents { header, tables: dict, sites: dict_sites.into_iter().map(|(s, _)| s).collect(), rows };
    let bytes = bundle::encode(&contents, compress);
    let stats = BundleStats { rows: contents.rows.len() as u64, changes, bytes: bytes.len() as u64 };
    Ok((bytes, stats))
}
