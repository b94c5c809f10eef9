//! Building a bundle: every cell and row state a peer lacks according to what we know of its
//! version vector (everything for an unknown peer), in canonical order.

use crate::bundle::{self, Contents, Header, TableDict, VvEntry, WireCell, WireRow};
use crate::error::Result;
use crate::evolve;
use crate::held;
use crate::meta::{self, SyncedTable, VersionVector};
use crate::shadow;
use crate::site::SiteId;
use crate::value::Value;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
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
    let mut out: Vec<VvEntry> =
        vv.iter().filter(|(_, h)| **h > 0).filter_map(|(o, h)| sites.get(o).map(|s| VvEntry(s.0.to_vec(), *h))).collect();
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
    scan_delta_ordered(conn, t, known, sites, None, None, |row, _| visit(row).map(|()| true))
}

/// Where a paged export resumes: after the row `(mh, pk)` of `table`. Tables are visited by
/// name and rows by `(mh, pk)`; `mh` never decreases, so a row not yet visited when a pass
/// starts is still ahead of the cursor when the pass reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PageCursor {
    pub table: String,
    pub mh: u64,
    pub pk: Vec<Value>,
}

/// [`scan_delta`] for paging: with `resume = Some(..)` rows come in `(mh, pk)` order, after
/// `(mh, pk)` when given; `visit` gets each row with its `mh` and returns false to stop.
fn scan_delta_ordered(
    conn: &Connection,
    t: &SyncedTable,
    known: &VersionVector,
    sites: &BTreeMap<i64, SiteId>,
    resume: Option<Option<(u64, &[Value])>>,
    held: Option<&Held>,
    mut visit: impl FnMut(WireRow, u64) -> Result<bool>,
) -> Result<()> {
    let floor = sites.keys().map(|o| known.get(o).copied().unwrap_or(0)).min().unwrap_or(0);
    let lacks = |h: u64, s: i64| h > known.get(&s).copied().unwrap_or(0);
    let np = t.pk.len();
    let keys: Vec<String> = std::iter::once("s.mh".to_owned()).chain((0..np).map(|i| format!("s.pk{i}"))).collect();
    let (order, mut params) = match resume {
        None => (String::new(), vec![]),
        Some(None) => (format!(" ORDER BY {}", keys.join(", ")), vec![]),
        Some(Some((mh, pk))) => {
            let marks = vec!["?"; np + 1].join(", ");
            let params = std::iter::once(Value::Integer(mh as i64)).chain(pk.iter().cloned()).collect();
            (format!(" AND ({k}) > ({marks}) ORDER BY {k}", k = keys.join(", ")), params)
        }
    };
    params.insert(0, Value::Integer(floor as i64));
    let sql = format!("{} WHERE s.mh > ?{order}", shadow::joined_select(t));
    let values_at = np + shadow::state_width(t);
    let exists_at = values_at + t.cols.len();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    while let Some(r) = rows.next()? {
        let pk = shadow::read_key(r, 0, t)?;
        let state = shadow::read_state(r, np, t)?;
        let exists: bool = r.get(exists_at)?;
        let mut cells = Vec::new();
        if state.alive() && exists {
            for (i, cell) in state.cells.iter().enumerate() {
                if let Some(s) = cell.filter(|s| lacks(s.hlc, s.site)) {
                    let value: Value = r.get(values_at + i)?;
                    cells.push(WireCell { col: i as u32, value, hlc: s.hlc, site: s.site as u32 });
                }
            }
            // Held cells of columns this replica lacks, relayed as they came.
            if let Some(h) = held {
                h.add_cells(&pk, state.cl, t.cols.len(), &lacks, &mut cells);
            }
        }
        if cells.is_empty() && !lacks(state.rh.hlc, state.rh.site) {
            continue;
        }
        let row = WireRow { table: t.id as u32, pk, cl: state.cl, hlc: state.rh.hlc, site: state.rh.site as u32, cells };
        if !visit(row, state.mh)? {
            break;
        }
    }
    Ok(())
}

/// The held cells of one table (see `held`), with the names of the columns they add to the
/// table's wire dictionary: held column j has local index `first + j`.
pub(crate) struct Held {
    cells: HashMap<Vec<u8>, Vec<held::Cell>>,
    columns: Vec<String>,
}

impl Held {
    /// What is held for table `name` beyond its registered columns `registered`, if anything.
    fn of(conn: &Connection, name: &str, registered: &[String]) -> Result<Option<Held>> {
        let columns: Vec<String> = held::columns_of(conn, name)?.into_iter().filter(|c| !registered.contains(c)).collect();
        if columns.is_empty() {
            return Ok(None);
        }
        Ok(Some(Held { cells: held::cells_of(conn, name)?, columns }))
    }

    /// Push the held cells of row `pk` (incarnation `cl`) that the peer lacks.
    fn add_cells(&self, pk: &[Value], cl: u64, first: usize, lacks: &dyn Fn(u64, i64) -> bool, out: &mut Vec<WireCell>) {
        let Some(cells) = self.cells.get(&held::key_bytes(pk)) else { return };
        for c in cells.iter().filter(|c| c.cl == cl && lacks(c.stamp.hlc, c.stamp.site)) {
            if let Some(j) = self.columns.iter().position(|n| *n == c.col) {
                out.push(WireCell { col: (first + j) as u32, value: c.value.clone(), hlc: c.stamp.hlc, site: c.stamp.site as u32 });
            }
        }
    }
}

/// [`scan_delta_ordered`] for a table held here (not enabled): its held rows in `(mh, key
/// bytes)` order, after `resume` when given.
fn scan_held(
    conn: &Connection,
    name: &str,
    held: Option<&Held>,
    known: &VersionVector,
    resume: Option<(u64, &[Value])>,
    mut visit: impl FnMut(WireRow, u64) -> Result<bool>,
) -> Result<()> {
    let lacks = |h: u64, s: i64| h > known.get(&s).copied().unwrap_or(0);
    let after = resume.map(|(mh, pk)| (mh, held::key_bytes(pk)));
    for row in held::rows_of(conn, name)? {
        if after.as_ref().is_some_and(|a| (row.mh, held::key_bytes(&row.pk)) <= *a) {
            continue;
        }
        let mut cells = Vec::new();
        if let (Some(h), true) = (held, row.cl % 2 == 1) {
            h.add_cells(&row.pk, row.cl, 0, &lacks, &mut cells);
        }
        if cells.is_empty() && !lacks(row.rh.hlc, row.rh.site) {
            continue;
        }
        let wire = WireRow { table: 0, pk: row.pk, cl: row.cl, hlc: row.rh.hlc, site: row.rh.site as u32, cells };
        if !visit(wire, row.mh)? {
            break;
        }
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
    generate_page(conn, peer, compress, progress, None).map(|(bytes, stats, _)| (bytes, stats))
}

/// One page of a paged export (spec/sync-protocol.md, "Paging").
pub(crate) struct Page<'a> {
    /// Resume after this row (`None`: the first page of a pass).
    pub after: Option<&'a PageCursor>,
    /// Most rows in the page; 0 makes a header-only bundle.
    pub limit: u64,
    /// The sender's version vector when the pass began: every page claims it, never more.
    pub snapshot: &'a VersionVector,
}

/// A page's bytes, sizes and the cursor of the next page (`None`: the pass is complete).
pub(crate) type PageOut = (Vec<u8>, BundleStats, Option<PageCursor>);

/// Build a bundle for `peer`, or one page of it; returns the cursor of the next page when
/// rows remain. A page that is not the last, and a header-only bundle, set `base` to the
/// header's `vv`, so no receiver raises its version vector on the strength of it.
pub(crate) fn generate_page(
    conn: &Connection,
    peer: Option<&SiteId>,
    compress: bool,
    progress: &mut dyn FnMut(u64, u64),
    page: Option<Page<'_>>,
) -> Result<PageOut> {
    // The first page of a pass is first tried without ordering the rows (no sort of the
    // shadow tables): when the whole delta fits, that page is the whole pass.
    if page.as_ref().is_some_and(|p| p.after.is_none() && p.limit > 0) {
        if let Some(whole) = build_page(conn, peer, compress, progress, page.as_ref(), false)? {
            return Ok(whole);
        }
    }
    Ok(build_page(conn, peer, compress, progress, page.as_ref(), true)?.expect("an ordered page always ends"))
}

/// [`generate_page`] in one mode: `ordered` visits rows in cursor order and cuts the page at
/// `limit`; unordered gives up (`None`) when more than `limit` rows are due.
fn build_page(
    conn: &Connection,
    peer: Option<&SiteId>,
    compress: bool,
    progress: &mut dyn FnMut(u64, u64),
    page: Option<&Page<'_>>,
    ordered: bool,
) -> Result<Option<PageOut>> {
    let sites = meta::sites(conn)?;
    let known = known_of(conn, peer)?;
    let mut vv = meta::local_vv(conn)?;
    let tables = meta::synced_tables(conn)?;
    if let Some(p) = page {
        vv = vv.into_iter().filter_map(|(o, h)| p.snapshot.get(&o).map(|s| (o, h.min(*s)))).collect();
    }

    let floor = sites.keys().map(|o| known.get(o).copied().unwrap_or(0)).min().unwrap_or(0);
    let mut total = 0u64;
    if page.is_none() {
        for t in tables.values() {
            total += shadow::rows_beyond(conn, t, floor)?;
        }
    }
    let limit = page.map_or(u64::MAX, |p| p.limit);
    let after = page.and_then(|p| p.after);
    let (mut emitted, mut next, mut last): (u64, Option<PageCursor>, Option<PageCursor>) = (0, None, None);
    let mut overflow = false;

    let mut dict: Vec<TableDict> = Vec::new();
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut encoded: Vec<((u32, Vec<u8>), WireRow)> = Vec::new();
    let (mut min_hlc, mut max_hlc, mut changes, mut scanned) = (u64::MAX, 0u64, 0u64, 0u64);
    // Synced tables and tables held here, by name.
    let mut sources: Vec<(String, Vec<String>, Option<&SyncedTable>)> =
        tables.values().map(|t| (t.name.clone(), t.pk.clone(), Some(t))).collect();
    sources.extend(held::tables(conn)?.into_iter().filter(|(n, _)| !tables.contains_key(n)).map(|(n, k)| (n, k, None)));
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, pk, synced) in &sources {
        if limit == 0 || next.is_some() || overflow {
            break;
        }
        if after.is_some_and(|a| *name < a.table) {
            continue;
        }
        let registered: &[String] = synced.map_or(&[], |t| t.cols.as_slice());
        let held = Held::of(conn, name, registered)?;
        // Columns on the wire are sorted by name; map local index (registered columns, then
        // held ones) to wire index.
        let local: Vec<&String> = registered.iter().chain(held.iter().flat_map(|h| h.columns.iter())).collect();
        let mut names: Vec<(&String, usize)> = local.iter().copied().zip(0..).collect();
        names.sort();
        let mut wire_col = vec![0u32; local.len()];
        for (w, (_, i)) in names.iter().enumerate() {
            wire_col[*i] = w as u32;
        }
        let table_idx = dict.len() as u32;
        let mut any = false;
        let resume = page.filter(|_| ordered).map(|_| after.filter(|a| a.table == *name).map(|a| (a.mh, a.pk.as_slice())));
        let visit = |mut row: WireRow, mh: u64| {
            if emitted == limit {
                if ordered {
                    next = last.take();
                } else {
                    overflow = true;
                }
                return Ok(false);
            }
            emitted += 1;
            if page.is_some() && ordered {
                last = Some(PageCursor { table: name.clone(), mh, pk: row.pk.clone() });
            }
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
            Ok(true)
        };
        match synced {
            Some(t) => scan_delta_ordered(conn, t, &known, &sites, resume, held.as_ref(), visit)?,
            None => scan_held(conn, name, held.as_ref(), &known, resume.flatten(), visit)?,
        }
        if any {
            dict.push(TableDict(name.clone(), pk.clone(), names.iter().map(|(n, _)| (*n).clone()).collect()));
        }
    }
    if overflow {
        return Ok(None);
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
    let partial = limit == 0 || next.is_some();
    let header = Header {
        site: local.0.to_vec(),
        vv: vv_to_wire(&vv, &sites),
        base: vv_to_wire(if partial { &vv } else { &known }, &sites),
        schema: bundle::schema_fingerprint(&dict),
        rows: rows.len() as u64,
        changes,
        min_hlc,
        max_hlc,
        inflated: None,
        migrations: evolve::to_send(conn, &known, &sites)?,
    };
    let contents = Contents { header, tables: dict, sites: dict_sites.into_iter().map(|(s, _)| s).collect(), rows };
    let bytes = bundle::encode(&contents, compress);
    let stats = BundleStats { rows: contents.rows.len() as u64, changes, bytes: bytes.len() as u64 };
    Ok(Some((bytes, stats, next)))
}
