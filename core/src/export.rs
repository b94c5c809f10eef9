//! Building a bundle: every cell and row state a peer lacks according to what we know of its
//! version vector (everything for an unknown peer), in canonical order.

use crate::bundle::{self, Header, TableDict, VvEntry, WireCell, WireRow};
use crate::error::{Error, ErrorKind, Result};
use crate::evolve;
use crate::held;
use crate::meta::{self, SyncedTable, VersionVector};
use crate::shadow;
use crate::site::SiteId;
use crate::spill::Spill;
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
    mut visit: impl FnMut(WireRow) -> Result<()>,
) -> Result<()> {
    let Some(floor) = floor(conn, known)? else { return Ok(()) };
    scan_delta_ordered(conn, t, known, floor, None, None, |row| visit(row).map(|()| true))
}

/// The stamp every row a peer lacks is beyond, from what the peer is known to hold: the least
/// `known` entry among the sites this replica holds more of than that (the most it holds of a
/// site is its own vector's entry or the newest stamp any import carried, whichever is
/// greater). `None`: the peer lacks nothing. Sites the peer is up to date with do not count, so
/// a device that went quiet long ago does not make every later export start at its last write.
pub(crate) fn floor(conn: &Connection, known: &VersionVector) -> Result<Option<u64>> {
    let mut most = meta::local_vv(conn)?;
    for (origin, hlc) in meta::held(conn)? {
        let e = most.entry(origin).or_insert(0);
        *e = (*e).max(hlc);
    }
    Ok(most.iter().map(|(o, h)| (known.get(o).copied().unwrap_or(0), *h)).filter(|(k, h)| k < h).map(|(k, _)| k).min())
}

/// Rows read through the `mh` index at most; a delta with more is read in key order.
const INDEXED_ROWS: u64 = 10_000;

/// Where a paged export resumes: after the row `pk` of `table`. Tables are visited by name and
/// rows by primary key, the shadow table's own order, so resuming walks its key index from the
/// cursor: a page costs the rows it visits, never the rows before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PageCursor {
    pub table: String,
    pub pk: Vec<Value>,
}

/// The delta query of `t`: rows with a stamp beyond `?1`; with `ordered = Some(resumed)`, in
/// primary-key order, after the key `?3..` when resumed. When `indexed` the rows come through
/// the `mh` index (sorted afterwards if ordered); otherwise by a scan in key order, with the
/// planner kept off the index (`NOT INDEXED` and the unary `+`). When `filtered`, only rows
/// with a stamp beyond the version vector `?2` (see [`register_lacks`]) are read further:
/// the floor is the least entry of that vector, so a peer that syncs often is otherwise read
/// many rows it holds, each joined with its values and sorted before being dropped.
fn delta_sql(t: &SyncedTable, indexed: bool, ordered: Option<bool>, filtered: bool) -> String {
    let keys = (0..t.pk.len()).map(|i| format!("s.pk{i}")).collect::<Vec<_>>().join(", ");
    let marks = (0..t.pk.len()).map(|i| format!("?{}", i + 3)).collect::<Vec<_>>().join(", ");
    let order = match (ordered, indexed) {
        (None, true) => String::new(),
        (None | Some(false), _) => format!(" ORDER BY {keys}"),
        (Some(true), _) => format!(" AND ({keys}) > ({marks}) ORDER BY {keys}"),
    };
    let filter = if filtered { format!(" AND {LACKS}(?2, {})", shadow::stamp_list(t, "s.")) } else { String::new() };
    if indexed {
        let hint = format!("INDEXED BY {}", shadow::index_name(t));
        format!("{} WHERE s.mh > ?1{filter}{order}", shadow::joined_select_hinted(t, &hint))
    } else {
        format!("{} WHERE +s.mh > ?1{filter}{order}", shadow::joined_select_hinted(t, "NOT INDEXED"))
    }
}

/// The SQL function of [`register_lacks`].
const LACKS: &str = "_syncline_lacks";

/// A version vector as [`LACKS`] takes it: `(site ordinal, hlc)` pairs sorted by ordinal,
/// each as two little-endian i64.
fn vv_blob(known: &VersionVector) -> Vec<u8> {
    known.iter().flat_map(|(o, h)| o.to_le_bytes().into_iter().chain((*h as i64).to_le_bytes())).collect()
}

/// Register `_syncline_lacks(vv, hlc, site, hlc, site, ..)` on the engine's own connection:
/// 1 when some stamp `(hlc, site)` is beyond the version vector `vv` (see [`vv_blob`]; NULL
/// pairs are never-stamped cells), else 0. The decoded vector is kept for the statement's run.
pub(crate) fn register_lacks(conn: &Connection) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    use rusqlite::types::ValueRef;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function(LACKS, -1, flags, |ctx| {
        let known = ctx.get_or_create_aux(0, |v| -> std::result::Result<Vec<(i64, i64)>, Error> {
            let bytes = v.as_blob().map_err(|_| Error::invalid_argument("a version vector blob"))?;
            let int = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
            Ok(bytes.chunks_exact(16).map(|p| (int(&p[..8]), int(&p[8..]))).collect())
        })?;
        for pair in (1..ctx.len()).step_by(2).filter(|i| i + 1 < ctx.len()) {
            if let (ValueRef::Integer(h), ValueRef::Integer(s)) = (ctx.get_raw(pair), ctx.get_raw(pair + 1)) {
                let holds = known.binary_search_by_key(&s, |(o, _)| *o).map_or(0, |i| known[i].1);
                if h > holds {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    })?;
    Ok(())
}

/// [`scan_delta`] from `floor` (see [`floor`]), for paging: with `resume = Some(..)` rows
/// come in primary-key order, after `pk` when given; `visit` returns false to stop.
fn scan_delta_ordered(
    conn: &Connection,
    t: &SyncedTable,
    known: &VersionVector,
    floor: u64,
    resume: Option<Option<&[Value]>>,
    held: Option<&Held>,
    mut visit: impl FnMut(WireRow) -> Result<bool>,
) -> Result<()> {
    let lacks = |h: u64, s: i64| h > known.get(&s).copied().unwrap_or(0);
    let np = t.pk.len();
    let indexed = shadow::few_beyond(conn, t, floor, INDEXED_ROWS)?;
    // Held cells' stamps are in `mh` only, so a table with some is not filtered by stamps.
    let filtered = !known.is_empty() && held.is_none();
    let (sql, pk) = match resume {
        Some(Some(pk)) => (delta_sql(t, indexed, Some(true), filtered), pk),
        Some(None) => (delta_sql(t, indexed, Some(false), filtered), &[][..]),
        None => (delta_sql(t, indexed, None, filtered), &[][..]),
    };
    // `?2` is the vector, or a gap (NULL) before the key marks of an unfiltered query.
    let vv = if filtered { Some(Value::Blob(vv_blob(known))) } else { (!pk.is_empty()).then_some(Value::Null) };
    let params = std::iter::once(Value::Integer(floor as i64)).chain(vv).chain(pk.iter().cloned());
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
        if !visit(row)? {
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

/// [`scan_delta_ordered`] for a table held here (not enabled): its held rows in key order
/// (the MessagePack bytes of the key), after `resume` when given.
fn scan_held(
    conn: &Connection,
    name: &str,
    held: Option<&Held>,
    known: &VersionVector,
    resume: Option<&[Value]>,
    mut visit: impl FnMut(WireRow) -> Result<bool>,
) -> Result<()> {
    let lacks = |h: u64, s: i64| h > known.get(&s).copied().unwrap_or(0);
    let after = resume.map(held::key_bytes);
    let mut rows: Vec<(Vec<u8>, held::Row)> = held::rows_of(conn, name)?.into_iter().map(|r| (held::key_bytes(&r.pk), r)).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, row) in rows {
        if after.as_ref().is_some_and(|a| key <= *a) {
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
        if !visit(wire)? {
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

/// Build a bundle for `peer`, or one page of it, in memory; returns the cursor of the next
/// page when rows remain. A page that is not the last, and a header-only bundle, set `base` to
/// the header's `vv`, so no receiver raises its version vector on the strength of it.
pub(crate) fn generate_page(
    conn: &Connection,
    peer: Option<&SiteId>,
    compress: bool,
    progress: &mut dyn FnMut(u64, u64),
    page: Option<Page<'_>>,
) -> Result<PageOut> {
    let body = collect(conn, peer, progress, page.as_ref())?.encode(Vec::new(), compress)?;
    if body.sink.len() as u64 > bundle::MAX_BODY {
        return Err(Error::invalid_argument(format!(
            "the bundle's body would have {} bytes, over the {} a bundle in memory may have: write it to a file \
             (write_bundle, `syncline export`), which has no such limit, or sync over HTTP, which pages",
            body.sink.len(),
            bundle::MAX_BODY
        )));
    }
    let mut bytes = Vec::with_capacity(body.sink.len() + 512);
    bundle::write_frame(&body.header, body.sink.len() as u64, &mut &body.sink[..], &mut bytes)?;
    let stats = BundleStats { bytes: bytes.len() as u64, ..body.stats };
    Ok((bytes, stats, body.next))
}

/// Write the bundle for `peer` to `path` without holding it in memory: the rows wait in a
/// [`Spill`], the body is encoded into a temporary file beside `path`, then framed into
/// another that is renamed over `path` (readers never see half a bundle).
pub(crate) fn write_file(
    conn: &Connection,
    peer: Option<&SiteId>,
    compress: bool,
    progress: &mut dyn FnMut(u64, u64),
    path: &std::path::Path,
) -> Result<BundleStats> {
    use std::io::{BufReader, BufWriter, Seek};
    let io = |p: &std::path::Path, e: std::io::Error| Error::new(ErrorKind::Io, format!("cannot write {}: {e}", p.display()));
    let collected = collect(conn, peer, progress, None)?;
    let body_path = path.with_extension(format!("body{}", std::process::id()));
    let framed_path = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&body_path)
            .map_err(|e| io(&body_path, e))?;
        let body = collected.encode(BufWriter::new(file), compress).map_err(|e| io(&body_path, e))?;
        let mut file = body.sink.into_inner().map_err(|e| io(&body_path, e.into_error()))?;
        let body_len = file.stream_position().map_err(|e| io(&body_path, e))?;
        file.rewind().map_err(|e| io(&body_path, e))?;
        let mut out = BufWriter::new(std::fs::File::create(&framed_path).map_err(|e| io(&framed_path, e))?);
        bundle::write_frame(&body.header, body_len, &mut BufReader::new(file), &mut out).map_err(|e| io(&framed_path, e))?;
        let file = out.into_inner().map_err(|e| io(&framed_path, e.into_error()))?;
        file.sync_all().map_err(|e| io(&framed_path, e))?;
        let bytes = file.metadata().map_err(|e| io(&framed_path, e))?.len();
        std::fs::rename(&framed_path, path).map_err(|e| io(path, e))?;
        Ok(BundleStats { bytes, ..body.stats })
    })();
    let _ = std::fs::remove_file(&body_path);
    if result.is_err() {
        let _ = std::fs::remove_file(&framed_path);
    }
    result
}

/// The rows of an export and what its header says about them.
struct Collected<'c> {
    header: Header,
    dict: Vec<TableDict>,
    dict_sites: Vec<SiteId>,
    site_idx: HashMap<u32, u32>,
    rows: Spill<'c>,
    stats: BundleStats,
    next: Option<PageCursor>,
}

/// An encoded body: the sink holding it, the header that frames it, the page's cursor.
struct Encoded<W> {
    sink: W,
    header: Header,
    stats: BundleStats,
    next: Option<PageCursor>,
}

impl Collected<'_> {
    /// Encode the body, row by row, into `sink`.
    fn encode<W: std::io::Write>(self, sink: W, compress: bool) -> std::io::Result<Encoded<W>> {
        let Collected { header, dict, dict_sites, site_idx, rows, stats, next } = self;
        let mut body = bundle::BodyWriter::new(sink, compress, &dict, &dict_sites, stats.rows, header.min_hlc)?;
        let mut failed = None;
        rows.drain(|mut r| {
            r.site = site_idx[&r.site];
            for c in &mut r.cells {
                c.site = site_idx[&c.site];
            }
            if failed.is_none() {
                failed = body.row(&r).err();
            }
            Ok(())
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (sink, inflated) = body.finish()?;
        Ok(Encoded { sink, header: Header { inflated: compress.then_some(inflated), ..header }, stats, next })
    }
}

/// Select the rows of the bundle (or page) for `peer` and work out its header.
fn collect<'c>(
    conn: &'c Connection,
    peer: Option<&SiteId>,
    progress: &mut dyn FnMut(u64, u64),
    page: Option<&Page<'_>>,
) -> Result<Collected<'c>> {
    let sites = meta::sites(conn)?;
    let known = known_of(conn, peer)?;
    let mut vv = meta::local_vv(conn)?;
    let tables = meta::synced_tables(conn)?;
    if let Some(p) = page {
        vv = vv.into_iter().filter_map(|(o, h)| p.snapshot.get(&o).map(|s| (o, h.min(*s)))).collect();
    }
    // Deletes purged here cannot be delivered: to a peer not known to hold them, claim no
    // more of their origin than it is known to hold (spec/merge-rules.md §8a).
    for (origin, purged) in crate::compact::horizon(conn)? {
        let holds = known.get(&origin).copied().unwrap_or(0);
        if holds < purged {
            vv.entry(origin).and_modify(|h| *h = (*h).min(holds));
        }
    }

    let floor = floor(conn, &known)?;
    let mut total = 0u64;
    if let (None, Some(floor)) = (page, floor) {
        for t in tables.values() {
            total += shadow::rows_beyond(conn, t, floor)?;
        }
    }
    let limit = page.map_or(u64::MAX, |p| p.limit);
    let after = page.and_then(|p| p.after);
    let (mut emitted, mut next, mut last): (u64, Option<PageCursor>, Option<PageCursor>) = (0, None, None);

    let mut dict: Vec<TableDict> = Vec::new();
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut rows = Spill::new(conn);
    let mut nrows = 0u64;
    let (mut min_hlc, mut max_hlc, mut changes, mut scanned) = (u64::MAX, 0u64, 0u64, 0u64);
    // Synced tables and tables held here, by name.
    let mut sources: Vec<(String, Vec<String>, Option<&SyncedTable>)> =
        tables.values().map(|t| (t.name.clone(), t.pk.clone(), Some(t))).collect();
    sources.extend(held::tables(conn)?.into_iter().filter(|(n, _)| !tables.contains_key(n)).map(|(n, k)| (n, k, None)));
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, pk, synced) in &sources {
        if limit == 0 || next.is_some() {
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
        let resume = page.map(|_| after.filter(|a| a.table == *name).map(|a| a.pk.as_slice()));
        let visit = |mut row: WireRow| {
            if emitted == limit {
                next = last.take();
                return Ok(false);
            }
            emitted += 1;
            if page.is_some() {
                last = Some(PageCursor { table: name.clone(), pk: row.pk.clone() });
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
            nrows += 1;
            rows.push(row)?;
            Ok(true)
        };
        match synced {
            Some(t) => {
                if let Some(floor) = floor {
                    scan_delta_ordered(conn, t, &known, floor, resume, held.as_ref(), visit)?;
                }
            }
            None => scan_held(conn, name, held.as_ref(), &known, resume.flatten(), visit)?,
        }
        if any {
            dict.push(TableDict(name.clone(), pk.clone(), names.iter().map(|(n, _)| (*n).clone()).collect()));
        }
    }
    progress(total, total);
    // Site dictionary: the sites the rows name, sorted by id; rows refer to it by index.
    let mut dict_sites: Vec<(SiteId, u32)> = used.iter().map(|o| (sites[&i64::from(*o)], *o)).collect();
    dict_sites.sort();
    let site_idx: HashMap<u32, u32> = dict_sites.iter().enumerate().map(|(i, (_, o))| (*o, i as u32)).collect();
    if nrows == 0 {
        min_hlc = 0;
    }
    let local = meta::local_site(conn)?;
    let partial = limit == 0 || next.is_some();
    let header = Header {
        site: local.0.to_vec(),
        vv: vv_to_wire(&vv, &sites),
        base: vv_to_wire(if partial { &vv } else { &known }, &sites),
        schema: bundle::schema_fingerprint(&dict),
        rows: nrows,
        changes,
        min_hlc,
        max_hlc,
        inflated: None,
        migrations: evolve::to_send(conn, &known, &sites)?,
    };
    Ok(Collected {
        header,
        dict,
        dict_sites: dict_sites.into_iter().map(|(s, _)| s).collect(),
        site_idx,
        rows,
        stats: BundleStats { rows: nrows, changes, bytes: 0 },
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnableOptions, Options, SyncEngine};

    /// A replica in `dir` with table `t` made by `schema` and synced.
    fn synced_t(dir: &tempfile::TempDir, name: &str, schema: &str) -> SyncEngine {
        let e = SyncEngine::open(dir.path().join(name), Options::default()).unwrap();
        e.execute_batch(schema).unwrap();
        e.enable_sync("t", EnableOptions::default()).unwrap();
        e
    }

    /// A resumed page of a large delta walks the shadow table's key from the cursor: no sort,
    /// no scan of the rows before it (what keeps an initial sync linear;
    /// `scripts/bench-initial-sync.py` measures it). A small delta is read through the `mh`
    /// index, never by a scan. Checked for a rowid key and a composite key.
    #[test]
    fn delta_queries_search_an_index_and_a_large_one_sorts_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("plan.db");
        let e = SyncEngine::open(&path, Options::default()).unwrap();
        e.execute_batch("CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE b(x TEXT, y INTEGER, v TEXT, PRIMARY KEY(x, y));")
            .unwrap();
        for t in ["a", "b"] {
            e.enable_sync(t, EnableOptions::default()).unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        register_lacks(&conn).unwrap();
        for t in meta::synced_tables(&conn).unwrap().values() {
            for (indexed, ordered) in [(false, None), (false, Some(false)), (false, Some(true)), (true, None), (true, Some(true))] {
                for filtered in [false, true] {
                    let sql = delta_sql(t, indexed, ordered, filtered);
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                    let nulls = vec![Value::Null; stmt.parameter_count()];
                    let plan: Vec<String> = stmt
                        .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                        .unwrap()
                        .collect::<rusqlite::Result<_>>()
                        .unwrap();
                    let plan = plan.join(" | ");
                    let what = format!("{} indexed={indexed} ordered={ordered:?} filtered={filtered}: {plan}", t.name);
                    if indexed {
                        assert!(plan.starts_with(&format!("SEARCH s USING INDEX _syncline_shadow_{}_mh (mh>?)", t.id)), "{what}");
                    } else {
                        assert!(!plan.contains("TEMP B-TREE") && !plan.contains("_mh"), "{what}");
                    }
                    if ordered == Some(true) && !indexed {
                        assert!(plan.starts_with("SEARCH s USING"), "{what}");
                    }
                }
            }
        }
    }

    /// The floor of a delta skips sites the peer is up to date with: a device that wrote once,
    /// long ago, does not pull every later export back to its stamp; and a peer that holds
    /// everything gets no floor at all (nothing is read).
    #[test]
    fn the_floor_ignores_sites_the_peer_is_up_to_date_with() {
        let dir = tempfile::TempDir::new().unwrap();
        let open = |name: &str| synced_t(&dir, name, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
        let (quiet, busy, hub, peer) = (open("quiet.db"), open("busy.db"), open("hub.db"), open("peer.db"));
        quiet.execute_batch("INSERT INTO t VALUES (1, 'once')").unwrap();
        hub.import_bundle(&quiet.generate_bundle(None).unwrap()).unwrap();
        busy.execute_batch("INSERT INTO t VALUES (2, 'first')").unwrap();
        hub.import_bundle(&busy.generate_bundle(None).unwrap()).unwrap();
        // The peer takes everything the hub has, and tells the hub so.
        let hub_site = hub.site_id().unwrap();
        peer.import_bundle(&hub.generate_bundle(Some(&peer.site_id().unwrap())).unwrap()).unwrap();
        hub.import_bundle(&peer.generate_bundle(Some(&hub_site)).unwrap()).unwrap();
        let conn = Connection::open(dir.path().join("hub.db")).unwrap();
        let known = known_of(&conn, Some(&peer.site_id().unwrap())).unwrap();
        assert_eq!(floor(&conn, &known).unwrap(), None);
        // The busy device writes again: only its stamp bounds what the peer lacks.
        busy.execute_batch("UPDATE t SET v = 'second' WHERE id = 2").unwrap();
        hub.import_bundle(&busy.generate_bundle(Some(&hub_site)).unwrap()).unwrap();
        let ord = |e: &SyncEngine| find_site(&conn, &e.site_id().unwrap()).unwrap().unwrap();
        let (quiet_has, busy_has) = (known[&ord(&quiet)], known[&ord(&busy)]);
        assert!(quiet_has < busy_has);
        assert_eq!(floor(&conn, &known).unwrap(), Some(busy_has));
        let bundle = hub.generate_bundle(Some(&peer.site_id().unwrap())).unwrap();
        let report = peer.import_bundle(&bundle).unwrap();
        assert_eq!((report.rows, report.applied), (1, 1));
        assert_eq!(peer.state_hash().unwrap(), hub.state_hash().unwrap());
    }

    /// The delta query reads only the rows a peer lacks: below the floor (the least entry of
    /// its vector) rows of other sites it holds are dropped before their values are joined,
    /// while a row it lacks through one cell stamp (its row stamp known) is still read.
    #[test]
    fn the_delta_query_reads_only_rows_the_peer_lacks() {
        let dir = tempfile::TempDir::new().unwrap();
        let open = |name: &str| synced_t(&dir, name, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, w TEXT)");
        let (a, b, hub, peer) = (open("a.db"), open("b.db"), open("hub.db"), open("peer.db"));
        let hub_site = hub.site_id().unwrap();
        a.execute_batch("INSERT INTO t VALUES (0, 'known', NULL), (1, 'known', NULL)").unwrap();
        hub.import_bundle(&a.generate_bundle(None).unwrap()).unwrap();
        peer.import_bundle(&hub.generate_bundle(Some(&peer.site_id().unwrap())).unwrap()).unwrap();
        hub.import_bundle(&peer.generate_bundle(Some(&hub_site)).unwrap()).unwrap();
        // Then: a cell of row 1 changes on the hub, A adds row 2, and B (new to the peer, so
        // the floor drops to 0) adds row 3.
        hub.execute_batch("UPDATE t SET w = 'hub' WHERE id = 1").unwrap();
        a.execute_batch("INSERT INTO t VALUES (2, 'new', NULL)").unwrap();
        hub.import_bundle(&a.generate_bundle(Some(&hub_site)).unwrap()).unwrap();
        b.execute_batch("INSERT INTO t VALUES (3, 'new', NULL)").unwrap();
        hub.import_bundle(&b.generate_bundle(Some(&hub_site)).unwrap()).unwrap();
        hub.status().unwrap(); // the hub's own write stamped
        let conn = Connection::open(dir.path().join("hub.db")).unwrap();
        register_lacks(&conn).unwrap();
        let known = known_of(&conn, Some(&peer.site_id().unwrap())).unwrap();
        assert_eq!(floor(&conn, &known).unwrap(), Some(0));
        let t = &meta::synced_tables(&conn).unwrap()["t"];
        let read = |filtered: bool| -> Vec<i64> {
            let vv = if filtered { Value::Blob(vv_blob(&known)) } else { Value::Null };
            let sql = delta_sql(t, true, Some(false), filtered);
            let params: Vec<Value> = if filtered { vec![Value::Integer(0), vv] } else { vec![Value::Integer(0)] };
            let mut stmt = conn.prepare(&sql).unwrap();
            let ids = stmt.query_map(rusqlite::params_from_iter(params), |r| r.get(0)).unwrap();
            ids.collect::<rusqlite::Result<_>>().unwrap()
        };
        assert_eq!(read(false), [0, 1, 2, 3]);
        assert_eq!(read(true), [1, 2, 3]);
        // The export sends just those, and the peer converges.
        let report = peer.import_bundle(&hub.generate_bundle(Some(&peer.site_id().unwrap())).unwrap()).unwrap();
        assert_eq!(report.rows, 3);
        assert_eq!(peer.state_hash().unwrap(), hub.state_hash().unwrap());
        // Never-stamped pairs are skipped; a site missing from the vector holds nothing.
        let lacks = |vv: &[(i64, u64)], args: &str| -> bool {
            let vv: VersionVector = vv.iter().copied().collect();
            conn.query_row(&format!("SELECT {LACKS}(?1, {args})"), [vv_blob(&vv)], |r| r.get(0)).unwrap()
        };
        assert!(!lacks(&[(1, 5), (2, 3)], "5, 1, NULL, NULL, 3, 2"));
        assert!(lacks(&[(1, 5), (2, 3)], "5, 1, NULL, NULL, 4, 2"));
        assert!(lacks(&[(1, 5)], "5, 1, 1, 9"));
        assert!(!lacks(&[], "NULL, NULL"));
    }

    /// Keys whose SQLite order is not their canonical (MessagePack) order, in numbers enough to
    /// spill (unit tests spill past 1 KiB): the bundle is canonical (the strict decoder
    /// accepts its order), the file and the in-memory export are byte-identical, and a replica
    /// importing it converges.
    #[test]
    fn a_spilled_export_is_canonical_and_the_same_in_a_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let open = |name: &str| {
            let e = SyncEngine::open(dir.path().join(name), Options::default()).unwrap();
            e.execute_batch("CREATE TABLE n(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE s(k TEXT PRIMARY KEY, v BLOB);").unwrap();
            for t in ["n", "s"] {
                e.enable_sync(t, EnableOptions::default()).unwrap();
            }
            e
        };
        let (a, b) = (open("a.db"), open("b.db"));
        a.execute_batch(
            "WITH RECURSIVE i(x) AS (SELECT -300 UNION ALL SELECT x + 1 FROM i WHERE x < 300) \
               INSERT INTO n SELECT x * 997, 'v' || x FROM i; \
             WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 300) \
               INSERT INTO s SELECT substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x / 26) || x, randomblob(x % 7) FROM i",
        )
        .unwrap();
        for compress in [false, true] {
            let opts = crate::ExportOptions { peer: None, compress };
            let (bytes, stats) = a.generate_bundle_with(opts, &mut |_, _| {}).unwrap();
            let path = dir.path().join("a.bundle");
            let written = a.write_bundle_with(opts, &path, &mut |_, _| {}).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
            assert_eq!(written, stats);
            let mut decoded = bundle::decode(&bytes).unwrap();
            assert_eq!(decoded.rows().filter(|r| r.is_ok()).count() as u64, stats.rows);
            b.import_bundle_file(&path).unwrap();
            assert_eq!(a.state_hash().unwrap(), b.state_hash().unwrap());
            assert!(!dir.path().read_dir().unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains("body")));
        }
    }
}
