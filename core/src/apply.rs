//! Importing a bundle: validation against the local schema, clock-drift quarantine, and the
//! merge of every row and cell (spec/merge-rules.md), all inside one write transaction with
//! capture switched off, so a failure leaves the database exactly as it was.

use crate::bundle::{self, Decoded, WireCell, WireRow};
use crate::conflict::{self, Conflict, OpenConflicts};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Change, Event};
use crate::evolve;
use crate::fold;
use crate::held;
use crate::hlc;
use crate::meta::{self, SyncedTable, VersionVector};
use crate::quarantine;
use crate::schema::quote_ident;
use crate::shadow::{self, Stamp, State as Shadow};
use crate::site::SiteId;
use crate::strategy::{CellVersion, ConflictInput, Resolution, Resolver, Strategy};
use crate::value::Value;
use rusqlite::config::DbConfig;
use rusqlite::{CachedStatement, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

/// What an import did, counted in changes (one per cell and one per row state).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// The replica that made the bundle.
    pub sender: Option<SiteId>,
    /// Row entries in the bundle.
    pub rows: u64,
    /// Changes that altered this replica.
    pub applied: u64,
    /// Changes this replica already had, or that newer local state supersedes.
    pub already_known: u64,
    /// Cells changed concurrently here and at the sender (whatever the strategy decided).
    pub conflicts: u64,
    /// Changes stamped too far ahead of the local clock: kept in `_syncline_quarantine` and
    /// applied by the first import after the local clock has caught up.
    pub quarantined: u64,
    /// Changes quarantined by earlier imports and applied by this one.
    pub released: u64,
    /// Changes refused by a local constraint (UNIQUE, CHECK, foreign key, STRICT type); each
    /// refused row is kept in full in `_syncline_rejected`, never dropped silently.
    pub rejected: u64,
    /// Migrations the bundle carried that changed a local table (spec/schema-evolution.md).
    pub migrated: u64,
    /// Changes for a column or table this replica's schema lacks: kept with their stamps,
    /// relayed to peers, and applied once the schema has them (spec/schema-evolution.md §5).
    pub held: u64,
}

/// Everything an import needs besides the connection.
pub(crate) struct ImportContext<'a> {
    pub max_drift_ms: u64,
    pub resolvers: &'a HashMap<String, Arc<dyn Resolver>>,
    pub progress: &'a mut dyn FnMut(u64, u64),
    pub want_events: bool,
}

/// A table of the bundle mapped onto the local one, with its statements prepared once.
struct Target<'c> {
    meta: SyncedTable,
    /// Wire column index to local shadow index (`None`: a column this replica lacks, whose
    /// cells are held).
    cols: Vec<Option<usize>>,
    /// The wire columns by name.
    names: Vec<String>,
    /// The table had no sync state when the import began: no row can have local state except
    /// one this import wrote, and a row appears once in a bundle, so lookups can be skipped.
    was_empty: bool,
    read_shadow: RefCell<CachedStatement<'c>>,
    read_values: RefCell<CachedStatement<'c>>,
    write_shadow: RefCell<CachedStatement<'c>>,
    insert_shadow: RefCell<CachedStatement<'c>>,
    delete_row: RefCell<CachedStatement<'c>>,
    /// Upsert statements by the set of columns written.
    upserts: RefCell<HashMap<Vec<usize>, CachedStatement<'c>>>,
}

impl<'c> Target<'c> {
    fn new(conn: &'c Connection, meta: SyncedTable, cols: Vec<Option<usize>>, names: Vec<String>) -> Result<Target<'c>> {
        let n = meta.cols.len();
        let values = if n == 0 { "1".to_owned() } else { meta.cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ") };
        let was_empty = shadow::is_empty(conn, &meta)?;
        let st = shadow::Statements::new(&meta);
        let prep = |sql: String| conn.prepare_cached(&sql).map(RefCell::new);
        Ok(Target {
            read_shadow: prep(st.read_sql().to_owned())?,
            read_values: prep(format!("SELECT {values} FROM {} WHERE {}", quote_ident(&meta.name), user_pk_where(&meta)))?,
            write_shadow: prep(st.put_sql(false).to_owned())?,
            insert_shadow: prep(st.put_sql(true).to_owned())?,
            delete_row: prep(format!("DELETE FROM {} WHERE {}", quote_ident(&meta.name), user_pk_where(&meta)))?,
            upserts: RefCell::new(HashMap::new()),
            was_empty,
            meta,
            cols,
            names,
        })
    }

    /// Run `INSERT ... ON CONFLICT(pk) DO UPDATE` for exactly these columns.
    fn upsert(&self, conn: &'c Connection, pk: &[Value], cells: &[(usize, Value)]) -> rusqlite::Result<()> {
        // The columns written, without allocating for the usual narrow row.
        let mut small = [0usize; 16];
        let spill: Vec<usize>;
        let key: &[usize] = if cells.len() <= small.len() {
            for (k, (c, _)) in small.iter_mut().zip(cells) {
                *k = *c;
            }
            &small[..cells.len()]
        } else {
            spill = cells.iter().map(|(c, _)| *c).collect();
            &spill
        };
        let mut upserts = self.upserts.borrow_mut();
        if !upserts.contains_key(key) {
            let t = &self.meta;
            let names: Vec<String> = t.pk.iter().chain(key.iter().map(|c| &t.cols[*c])).map(|c| quote_ident(c)).collect();
            let marks = vec!["?"; names.len()].join(", ");
            let pk_list = t.pk.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
            let action = if key.is_empty() {
                "NOTHING".to_owned()
            } else {
                let sets = key.iter().map(|c| {
                    let q = quote_ident(&t.cols[*c]);
                    format!("{q} = excluded.{q}")
                });
                format!("UPDATE SET {}", sets.collect::<Vec<_>>().join(", "))
            };
            let sql =
                format!("INSERT INTO {}({}) VALUES ({marks}) ON CONFLICT({pk_list}) DO {action}", quote_ident(&t.name), names.join(", "));
            upserts.insert(key.to_vec(), conn.prepare_cached(&sql)?);
        }
        let stmt = upserts.get_mut(key).expect("just inserted");
        stmt.execute(rusqlite::params_from_iter(pk.iter().chain(cells.iter().map(|(_, v)| v))))?;
        Ok(())
    }
}

/// One row of a bundle, merged but not yet written.
struct Decided<'c> {
    target: Rc<Target<'c>>,
    pk: Vec<Value>,
    winners: Vec<(usize, Value)>,
    state: Shadow,
    new_incarnation: bool,
    old_alive: bool,
    applied: u64,
    known: u64,
    n_changes: u64,
}

struct Merge<'c, 'x, 'a> {
    conn: &'c Connection,
    ctx: &'x mut ImportContext<'a>,
    /// Per table of the bundle: the local table, or `None` for one not enabled here (held).
    targets: Vec<Option<Rc<Target<'c>>>>,
    /// The bundle's table dictionary.
    dict: Vec<bundle::TableDict>,
    /// Bundle site index to local ordinal.
    site_map: Vec<i64>,
    site_ids: BTreeMap<i64, SiteId>,
    sender: SiteId,
    sender_vv: VersionVector,
    local_vv: VersionVector,
    local_ord: i64,
    /// Rows with a stamp beyond this one are quarantined (spec/merge-rules.md §5a).
    drift_limit: u64,
    /// Rows with a stamp beyond this one are rejected (§5a).
    horizon: u64,
    /// Per origin site, the newest stamp this bundle carried (quarantined rows aside).
    carried: VersionVector,
    /// Per origin site, the newest delete purged by compaction (spec/merge-rules.md §8).
    purged: VersionVector,
    open: OpenConflicts,
    report: ImportReport,
    events: Vec<Event>,
    /// Rows a local constraint refused so far, with the reason.
    refused: Vec<(Decided<'c>, String)>,
}

/// Import a decoded bundle (verified frame, rows still to be read); returns the report and the
/// events to deliver after commit. Rows that an earlier import quarantined and that the local
/// clock has caught up with are applied first.
pub(crate) fn import(conn: &mut Connection, mut decoded: Decoded<'_>, mut ctx: ImportContext<'_>) -> Result<(ImportReport, Vec<Event>)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Local writes made before this import are stamped before it (they happened before), and
    // the conflict check below sees them.
    let mut events = fold::fold(&tx, ctx.want_events)?;
    let limit = drift_limit(&tx, ctx.max_drift_ms)?;
    let mut released = 0;
    for (id, held) in quarantine::due(&tx, limit)? {
        // A held row that no longer fits (its table was disabled since, say) stays held, and
        // visible in `status`; it must not stop this import.
        tx.execute_batch("SAVEPOINT syncline_release")?;
        match bundle::decode(&held).and_then(|mut d| merge(&tx, &mut d, &mut ctx, limit, false)) {
            Ok((r, ev)) => {
                quarantine::remove(&tx, id)?;
                tx.execute_batch("RELEASE syncline_release")?;
                released += r.applied + r.already_known + r.rejected + r.held;
                events.extend(ev);
            }
            Err(_) => tx.execute_batch("ROLLBACK TO syncline_release; RELEASE syncline_release")?,
        }
    }
    let (mut report, ev) = merge(&tx, &mut decoded, &mut ctx, limit, false)?;
    report.released = released;
    events.extend(ev);
    tx.commit()?;
    Ok((report, events))
}

/// Merge what is held for `table` (see `held`) that its schema takes now: the cells of its
/// registered columns and, once it is enabled, its held rows. They are merged like an import
/// of their original stamps (LWW against what was written here since, causal length first),
/// then forgotten; cells of columns still missing stay held. Returns the changes applied.
pub(crate) fn release(conn: &Connection, table: &str) -> Result<u64> {
    let Some(t) = meta::synced_tables(conn)?.remove(table) else { return Ok(0) };
    let rows = held::rows_of(conn, table)?;
    let mut cells = held::cells_of(conn, table)?;
    if rows.is_empty() && cells.values().flatten().all(|c| !t.cols.contains(&c.col)) {
        return Ok(0);
    }
    let mut names = t.cols.clone();
    names.sort();
    let st = shadow::Statements::new(&t);
    let mut states: Vec<(Vec<Value>, u64, Stamp)> = rows.into_iter().map(|r| (r.pk, r.cl, r.rh)).collect();
    let from_rows: std::collections::HashSet<Vec<u8>> = states.iter().map(|(pk, _, _)| held::key_bytes(pk)).collect();
    for key in cells.keys() {
        if from_rows.contains(key) {
            continue;
        }
        let pk: Vec<Value> = rmp_serde::from_slice(key).map_err(|e| Error::new(ErrorKind::Sqlite, format!("held key: {e}")))?;
        if let Some(s) = st.read(conn, &t, &pk)? {
            states.push((pk, s.cl, s.rh));
        }
    }
    let mut used: Vec<i64> = Vec::new();
    let mut wire_rows = Vec::new();
    for (pk, cl, rh) in states {
        let mut row_cells: Vec<WireCell> = cells
            .remove(&held::key_bytes(&pk))
            .unwrap_or_default()
            .into_iter()
            .filter(|c| cl % 2 == 1 && c.cl == cl)
            .filter_map(|c| {
                let col = names.iter().position(|n| *n == c.col)?;
                Some(WireCell { col: col as u32, value: c.value, hlc: c.stamp.hlc, site: c.stamp.site as u32 })
            })
            .collect();
        row_cells.sort_by_key(|c| c.col);
        used.extend(row_cells.iter().map(|c| i64::from(c.site)).chain([rh.site]));
        wire_rows.push(WireRow { table: 0, pk, cl, hlc: rh.hlc, site: rh.site as u32, cells: row_cells });
    }
    used.sort_unstable();
    used.dedup();
    let site_ids = meta::sites(conn)?;
    // The site dictionary is sorted by site id (bundle format §3), not by local ordinal.
    used.sort_by_key(|o| site_ids[o]);
    let index: HashMap<i64, u32> = used.iter().enumerate().map(|(i, o)| (*o, i as u32)).collect();
    for r in &mut wire_rows {
        r.site = index[&i64::from(r.site)];
        for c in &mut r.cells {
            c.site = index[&i64::from(c.site)];
        }
    }
    let sites = used.iter().map(|o| site_ids[o]).collect();
    let dict = vec![bundle::TableDict(t.name.clone(), t.pk.clone(), names)];
    let bytes = bundle::assemble(meta::local_site(conn)?, dict, sites, wire_rows);
    let resolvers = HashMap::new();
    let mut progress = |_: u64, _: u64| {};
    let mut ctx = ImportContext { max_drift_ms: 0, resolvers: &resolvers, progress: &mut progress, want_events: false };
    let limit = hlc::pack(hlc::MAX_MILLIS, u16::MAX);
    let (report, _) = merge(conn, &mut bundle::decode(&bytes)?, &mut ctx, limit, true)?;
    held::forget_cells(conn, table, &t.cols)?;
    held::forget_rows(conn, table)?;
    Ok(report.applied)
}

/// The newest stamp an import accepts now: `max_drift_ms` ahead of the local wall clock.
fn drift_limit(conn: &Connection, max_drift_ms: u64) -> Result<u64> {
    let ms = meta::now_ms(conn)?.saturating_add(max_drift_ms).min(hlc::MAX_MILLIS);
    Ok(hlc::pack(ms, u16::MAX))
}

/// Merge one decoded bundle inside the import's transaction. With `release`, the bundle is
/// made here of held changes (see [`release`]): no sender, no version vectors, no peer.
fn merge(
    tx: &Connection,
    decoded: &mut Decoded<'_>,
    ctx: &mut ImportContext<'_>,
    limit: u64,
    release: bool,
) -> Result<(ImportReport, Vec<Event>)> {
    let sender = decoded.header.sender()?;
    let sender_wire_vv = bundle::vv_from_wire(&decoded.header.vv)?;
    let base_wire = bundle::vv_from_wire(&decoded.header.base)?;
    let local_site = meta::local_site(tx)?;
    if sender == local_site && !release {
        return Err(Error::new(
            ErrorKind::SiteIdClash,
            format!(
                "the bundle names this replica ({sender}) as its sender: a replica never imports its own bundles, \
                 and another database sharing this site id must call reset_site_id"
            ),
        ));
    }
    // Migrations first: the rows that follow may use the columns they add.
    let (migration_stamps, migrated) = evolve::receive(tx, decoded.header.migrations.as_deref().unwrap_or(&[]))?;
    let synced = meta::synced_tables(tx)?;
    let mut mapped = Vec::with_capacity(decoded.tables.len());
    for bundle::TableDict(name, pk, cols) in &decoded.tables {
        // A table not enabled here: its rows are held (None), unless no replica could enable it.
        let Some(meta) = synced.get(name) else {
            evolve::check_name(name, "table").map_err(|_| {
                Error::new(ErrorKind::UnknownTable, format!("bundle from {sender} names table {name:?}, which no replica can sync"))
            })?;
            mapped.push(None);
            continue;
        };
        for c in cols.iter().filter(|c| meta.col_index(c).is_none()) {
            evolve::check_name(c, "column").map_err(|_| {
                Error::new(
                    ErrorKind::UnknownColumn,
                    format!("bundle from {sender} names column {c:?} of {name:?}, which no replica can have"),
                )
            })?;
        }
        if *pk != meta.pk {
            return Err(Error::schema(format!("table {name:?}: the bundle's primary key {pk:?} differs from the local one {:?}", meta.pk)));
        }
        mapped.push(Some((meta.clone(), cols.iter().map(|c| meta.col_index(c)).collect::<Vec<_>>(), cols.clone())));
    }

    let site_map = decoded.sites.iter().map(|s| meta::site_ord(tx, s)).collect::<Result<Vec<_>>>()?;
    let mut sender_vv = VersionVector::new();
    for (s, h) in &sender_wire_vv {
        sender_vv.insert(meta::site_ord(tx, s)?, *h);
    }
    crate::compact::check_sender(tx, &sender_vv, decoded.row_count())?;
    let clock = meta::clock(tx)?;
    let local_vv = meta::local_vv(tx)?;
    let base_covered = base_wire.iter().all(|(s, h)| {
        let ord = site_map.iter().zip(&decoded.sites).find(|(_, id)| *id == s).map(|(o, _)| *o);
        let ord = ord.or_else(|| crate::export::find_site(tx, s).ok().flatten());
        ord.map(|o| local_vv.get(&o).copied().unwrap_or(0)).unwrap_or(0) >= *h
    });

    let site_ids = meta::sites(tx)?;
    let open = conflict::open_cells(tx)?;
    let (report, events, carried) = {
        let quiet = CaptureOff::new(tx, decoded.row_count())?;
        let targets = mapped
            .into_iter()
            .map(|m| m.map(|(meta, map, names)| Target::new(tx, meta, map, names).map(Rc::new)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut m = Merge {
            conn: tx,
            ctx,
            targets,
            site_map,
            site_ids,
            sender,
            sender_vv,
            local_vv,
            local_ord: clock.site_ord,
            drift_limit: limit,
            horizon: hlc::pack(hlc::millis(limit).saturating_add(quarantine::HORIZON_MS).min(hlc::MAX_MILLIS), u16::MAX),
            carried: VersionVector::new(),
            purged: crate::compact::horizon(tx)?,
            open,
            report: ImportReport { sender: Some(sender), rows: decoded.row_count(), migrated, ..Default::default() },
            events: Vec::new(),
            refused: Vec::new(),
            dict: Vec::new(),
        };
        for (site, hlc) in migration_stamps {
            m.note_carried(Stamp { hlc, site });
        }
        m.dict = decoded.tables.clone();
        m.apply_rows(decoded)?;
        // Receive rule: the clock moves past every stamp received (quarantined ones aside).
        meta::observe(tx, m.carried.values().copied().max().unwrap_or(0))?;
        quiet.restore()?;
        (m.report, m.events, m.carried)
    };
    // Remote applies are not local writes: forget what the capture triggers queued for them.
    fold::discard(tx)?;
    if release {
        return Ok((report, events));
    }

    let peer_ord = meta::site_ord(tx, &sender)?;
    let wire_vv: VersionVector = sender_wire_vv.iter().map(|(s, h)| Ok((meta::site_ord(tx, s)?, *h))).collect::<Result<_>>()?;
    let held = meta::raise_held(tx, &carried)?;
    if base_covered {
        // The sender sent everything it had beyond our base. Its vector is a claim, though:
        // each entry is adopted only as far as changes of that site were really received
        // (in this bundle or before), so no forged claim can make this replica skip a change.
        let others: VersionVector = wire_vv
            .iter()
            .map(|(o, h)| (*o, *h))
            .filter(|(o, _)| *o != clock.site_ord)
            .filter_map(|(o, h)| held.get(&o).map(|got| (o, h.min(*got))))
            .collect();
        meta::raise_local_vv(tx, &others)?;
    }
    // What the sender holds, as it claims, but never beyond what this replica holds itself: a
    // forged claim (or a bundle forged in another device's name) must not make this replica
    // leave out of that device's next bundles a change that arrives here later.
    let ours = meta::local_vv(tx)?;
    let mut claim: VersionVector = wire_vv.iter().filter_map(|(o, h)| ours.get(o).map(|v| (*o, (*h).min(*v)))).collect();
    // The sender is a known peer from now on, even when nothing of its claim is adopted.
    claim.entry(peer_ord).or_insert(0);
    meta::raise_peer_vv(tx, peer_ord, &claim)?;
    Ok((report, events))
}

/// Skips the capture triggers' work for the length of an import. What they queue is discarded
/// anyway, but each costs a trigger frame and a queue row per row; when the schema has no triggers
/// but Syncline's, the connection stops running triggers at all (a per-connection switch,
/// `SQLITE_DBCONFIG_ENABLE_TRIGGER`, that other connections never see). An app's own triggers
/// (full-text indexes, audit logs, on any table a foreign-key action may reach) keep running.
/// Flipping the switch expires every statement the connection prepared, so a small import
/// (fewer than [`QUIET_ROWS`] rows, a sync's usual delta) lets the triggers run instead.
struct CaptureOff<'c> {
    conn: Option<&'c Connection>,
}

/// Rows from which an import turns the capture triggers off.
const QUIET_ROWS: u64 = 1000;

impl<'c> CaptureOff<'c> {
    fn new(conn: &'c Connection, rows: u64) -> Result<CaptureOff<'c>> {
        if rows < QUIET_ROWS {
            return Ok(CaptureOff { conn: None });
        }
        let apps_own: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name NOT LIKE '\\_syncline\\_%' ESCAPE '\\') \
                     OR EXISTS (SELECT 1 FROM sqlite_temp_master WHERE type = 'trigger')",
            )?
            .query_row([], |r| r.get(0))?;
        if apps_own {
            return Ok(CaptureOff { conn: None });
        }
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
        Ok(CaptureOff { conn: Some(conn) })
    }

    /// Turn triggers back on before the import commits; an error here fails the import, so
    /// the connection never goes on with local writes uncaptured.
    fn restore(mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)?;
        }
        Ok(())
    }
}

impl Drop for CaptureOff<'_> {
    /// The error path: the import is rolled back; turn triggers back on all the same.
    fn drop(&mut self) {
        if let Some(conn) = self.conn {
            // Only fails for an unknown option, which this is not.
            let _ = conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true);
        }
    }
}

fn site_clash(site: &SiteId) -> Error {
    Error::new(
        ErrorKind::SiteIdClash,
        format!(
            "the bundle carries changes stamped with this replica's own site id {site} that this replica never made \
             (a forged bundle, or two databases sharing one site id after a file copy: call reset_site_id on one of them); \
             nothing was applied"
        ),
    )
}

impl<'c> Merge<'c, '_, '_> {
    fn site_bytes(&self, ord: i64) -> [u8; 16] {
        self.site_ids.get(&ord).map(|s| s.0).unwrap_or([0; 16])
    }

    /// LWW order: (hlc, site id bytes).
    fn newer(&self, a: Stamp, b: Stamp) -> bool {
        (a.hlc, self.site_bytes(a.site)) > (b.hlc, self.site_bytes(b.site))
    }

    fn apply_rows(&mut self, decoded: &mut Decoded<'_>) -> Result<()> {
        let total = decoded.row_count();
        let (header, dict, sites) = (decoded.header.clone(), decoded.tables.clone(), decoded.sites.clone());
        for (i, row) in decoded.rows().enumerate() {
            let mut row = row?;
            if row.cl > bundle::MAX_CL {
                let reason = format!("causal length {} exceeds 2^62 (a forged or corrupt row)", row.cl);
                let n = 1 + row.cells.len() as u64;
                self.reject_row(row, reason, n)?;
            } else if row.hlc > self.horizon {
                // Beyond any drift a clock recovers from by itself (and so is every cell of
                // this incarnation): kept for inspection only.
                let (newest, n) = (row.cells.iter().map(|c| c.hlc).fold(row.hlc, u64::max), 1 + row.cells.len() as u64);
                self.reject_far_ahead(row, newest, n)?;
            } else if row.hlc > self.drift_limit {
                // Ahead of our clock: kept aside, applied once the clock catches up.
                self.report.quarantined += 1 + row.cells.len() as u64;
                quarantine::store(self.conn, &header, &dict[row.table as usize], &sites, row)?;
            } else {
                // The row state and the cells within the drift apply now; only the cells
                // stamped ahead wait (or are rejected). Holding back the whole row would leave
                // its older cells behind while this replica's vector moves past them.
                let (mut now, mut later, mut never) = (Vec::new(), Vec::new(), Vec::new());
                for c in std::mem::take(&mut row.cells) {
                    match c.hlc {
                        h if h > self.horizon => never.push(c),
                        h if h > self.drift_limit => later.push(c),
                        _ => now.push(c),
                    }
                }
                if !later.is_empty() {
                    self.report.quarantined += later.len() as u64;
                    let held = WireRow { cells: later, ..row.clone() };
                    quarantine::store(self.conn, &header, &dict[row.table as usize], &sites, held)?;
                }
                if !never.is_empty() {
                    let (newest, n) = (never.iter().map(|c| c.hlc).max().unwrap_or(0), never.len() as u64);
                    self.reject_far_ahead(WireRow { cells: never, ..row.clone() }, newest, n)?;
                }
                row.cells = now;
                self.apply_row(row)?;
            }
            if i % 4096 == 4095 {
                (self.ctx.progress)(i as u64 + 1, total);
            }
        }
        self.retry_refused()?;
        (self.ctx.progress)(total, total);
        Ok(())
    }

    /// A change stamped with this replica's own site id is one it made, so the replica holds
    /// it or something newer. One that would win against the local state was never made here:
    /// a forgery, or a second database with this site id.
    fn check_own_stamps(&self, local: Option<&Shadow>, cl: u64, row: Stamp, cells: &[(usize, Value, Stamp)]) -> Result<()> {
        let own = |s: &Stamp| s.site == self.local_ord;
        if !own(&row) && !cells.iter().any(|c| own(&c.2)) {
            return Ok(());
        }
        let held = local.is_some_and(|l| {
            cl < l.cl
                || (cl == l.cl
                    && (!own(&row) || !self.newer(row, l.rh))
                    && cells.iter().filter(|c| own(&c.2)).all(|(col, _, s)| l.cells[*col].is_some_and(|h| !self.newer(*s, h))))
        });
        if held {
            Ok(())
        } else {
            Err(site_clash(&self.site_ids[&self.local_ord]))
        }
    }

    /// A row stamped beyond the quarantine horizon is rejected (kept in `_syncline_rejected`):
    /// its sender's clock is broken, and it must recover (`reset_site_id`) and send it again.
    fn reject_far_ahead(&mut self, row: WireRow, newest: u64, changes: u64) -> Result<()> {
        let ahead = hlc::millis(newest).saturating_sub(hlc::millis(self.drift_limit)) + self.ctx.max_drift_ms;
        let reason = format!(
            "ClockDrift: stamped {ahead} ms ahead of this replica's clock (rows up to {} ms ahead wait in quarantine); \
             the sender must correct its clock and call reset_site_id, which sends its changes again",
            quarantine::HORIZON_MS
        );
        self.reject_row(row, reason, changes)
    }

    /// Reject a whole row entry before merging it (kept in `_syncline_rejected`).
    fn reject_row(&mut self, row: WireRow, reason: String, changes: u64) -> Result<()> {
        let dict = &self.dict[row.table as usize];
        let cells: Vec<(String, Value)> = row.cells.into_iter().map(|c| (dict.2[c.col as usize].clone(), c.value)).collect();
        let table = dict.0.clone();
        self.reject_named(&table, &row.pk, &cells, reason, changes)
    }

    /// A row of a table not enabled here: its state and cells are held (see `held`).
    fn hold_row(&mut self, row: WireRow) -> Result<()> {
        let dict = self.dict[row.table as usize].clone();
        let rh = Stamp { hlc: row.hlc, site: self.site_map[row.site as usize] };
        self.note_carried(rh);
        let cells: Vec<held::Cell> = row
            .cells
            .into_iter()
            .map(|c| held::Cell {
                col: dict.2[c.col as usize].clone(),
                value: c.value,
                stamp: Stamp { hlc: c.hlc, site: self.site_map[c.site as usize] },
                cl: row.cl,
            })
            .collect();
        let mh = cells.iter().map(|c| c.stamp.hlc).fold(rh.hlc, u64::max);
        let entry = held::Row { pk: row.pk, cl: row.cl, rh, mh };
        let held_row = held::hold_row(self.conn, &dict.0, &dict.1, &entry, |a, b| self.newer(a, b))?;
        let (mut n_held, mut n_known) = (u64::from(held_row), u64::from(!held_row));
        let key = held::key_bytes(&entry.pk);
        for c in &cells {
            self.note_carried(c.stamp);
            // A cell of an older incarnation than the one held is superseded.
            if held::hold_cell(self.conn, &dict.0, &key, c, |a, b| self.newer(a, b))? && !self.held_row_newer(&dict.0, &key, c.cl)? {
                n_held += 1;
            } else {
                n_known += 1;
            }
        }
        self.report.held += n_held;
        self.report.already_known += n_known;
        Ok(())
    }

    /// Whether the held row's incarnation is beyond `cl` (the cell just held is dead: drop it).
    fn held_row_newer(&self, table: &str, key: &[u8], cl: u64) -> Result<bool> {
        let row_cl: i64 = self
            .conn
            .prepare_cached("SELECT cl FROM _syncline_held_rows WHERE tbl = ?1 AND pk = ?2")?
            .query_row(rusqlite::params![table, key], |r| r.get(0))?;
        if row_cl as u64 > cl {
            self.conn
                .prepare_cached("DELETE FROM _syncline_held_cells WHERE tbl = ?1 AND pk = ?2 AND cl < ?3")?
                .execute(rusqlite::params![table, key, row_cl])?;
            return Ok(true);
        }
        Ok(false)
    }

    fn note_carried(&mut self, s: Stamp) {
        let e = self.carried.entry(s.site).or_insert(0);
        *e = (*e).max(s.hlc);
    }

    fn read_shadow(&self, target: &Target, pk: &[Value]) -> Result<Option<Shadow>> {
        let mut stmt = target.read_shadow.borrow_mut();
        Ok(stmt.query_row(rusqlite::params_from_iter(pk), |r| shadow::read_state(r, 0, &target.meta)).optional()?)
    }

    fn read_values(&self, target: &Target, pk: &[Value]) -> Result<Option<Vec<Value>>> {
        let n = target.meta.cols.len();
        let mut stmt = target.read_values.borrow_mut();
        Ok(stmt.query_row(rusqlite::params_from_iter(pk), |r| (0..n).map(|i| r.get(i)).collect()).optional()?)
    }

    fn apply_row(&mut self, row: WireRow) -> Result<()> {
        let Some(target) = self.targets[row.table as usize].clone() else { return self.hold_row(row) };
        let t = &target.meta;
        let n_changes = 1 + row.cells.len() as u64;
        let remote_row = Stamp { hlc: row.hlc, site: self.site_map[row.site as usize] };
        let mut cells: Vec<(usize, Value, Stamp)> = Vec::with_capacity(row.cells.len());
        let mut unknown: Vec<held::Cell> = Vec::new();
        for c in row.cells {
            let stamp = Stamp { hlc: c.hlc, site: self.site_map[c.site as usize] };
            match target.cols[c.col as usize] {
                Some(col) => cells.push((col, c.value, stamp)),
                None => unknown.push(held::Cell { col: target.names[c.col as usize].clone(), value: c.value, stamp, cl: row.cl }),
            }
        }
        let pk = row.pk;
        let local = if target.was_empty { None } else { self.read_shadow(&target, &pk)? };
        // A delete this replica purged, coming back: known, and nothing to store again.
        if local.is_none() && row.cl % 2 == 0 && self.purged.get(&remote_row.site).is_some_and(|h| remote_row.hlc <= *h) {
            self.note_carried(remote_row);
            self.report.already_known += n_changes;
            return Ok(());
        }
        self.check_own_stamps(local.as_ref(), row.cl, remote_row, &cells)?;
        for s in cells.iter().map(|c| c.2).chain([remote_row]) {
            self.note_carried(s);
        }
        let local_cl = local.as_ref().map(|l| l.cl).unwrap_or(0);

        if row.cl < local_cl {
            // A newer delete or re-insert here supersedes the whole entry.
            self.report.already_known += n_changes;
            return Ok(());
        }
        // Cells of columns this replica lacks wait, with their stamps, for the column.
        let mut held_max = 0;
        if !unknown.is_empty() {
            let key = held::key_bytes(&pk);
            for c in &unknown {
                self.note_carried(c.stamp);
                if held::hold_cell(self.conn, &t.name, &key, c, |a, b| self.newer(a, b))? {
                    self.report.held += 1;
                    held_max = held_max.max(c.stamp.hlc);
                } else {
                    self.report.already_known += 1;
                }
            }
        }
        let n_changes = n_changes - unknown.len() as u64;
        let mut state = local.unwrap_or(Shadow { cl: 0, rh: remote_row, mh: 0, cells: vec![None; t.cols.len()] });
        let (mut applied, mut known) = (0u64, 0u64);
        let new_incarnation = row.cl > state.cl;
        let old_alive = state.cl % 2 == 1;
        if new_incarnation {
            // Row state moves to the remote incarnation; stamps of the old one no longer count.
            state.cl = row.cl;
            state.rh = remote_row;
            state.cells = vec![None; t.cols.len()];
            applied += 1;
            self.close_row_conflicts(t, &pk)?;
        } else if state.rh != remote_row && self.newer(remote_row, state.rh) {
            state.rh = remote_row;
            applied += 1;
        } else {
            known += 1;
        }

        // Cells (only alive rows carry any).
        let mut winners: Vec<(usize, Value)> = Vec::new();
        let mut local_values: Option<Option<Vec<Value>>> = None;
        for (col, value, rs) in cells {
            let decision = self.decide_cell(&target, &pk, col, &value, rs, state.cells[col], &mut local_values)?;
            match decision {
                CellOutcome::Known => known += 1,
                CellOutcome::Take => {
                    applied += 1;
                    state.cells[col] = Some(rs);
                    winners.push((col, value));
                }
                CellOutcome::Write(v) => {
                    applied += 1;
                    // Receive rule first: the new value is stamped after every remote stamp it settles.
                    meta::observe(self.conn, self.carried.values().copied().max().unwrap_or(0))?;
                    let stamp = Stamp { hlc: meta::tick(self.conn)?, site: self.local_ord };
                    state.cells[col] = Some(stamp);
                    winners.push((col, v));
                }
                CellOutcome::Keep => known += 1,
            }
        }

        state.mh = state.mh.max(held_max);
        let decided = Decided { target, pk, winners, state, new_incarnation, old_alive, applied, known, n_changes };
        if let Some(refused) = self.write(decided, false)? {
            self.refused.push(refused);
        }
        Ok(())
    }

    /// Write the user table, then the shadow, report and event. When a local constraint
    /// refuses the row, `last_try` records the rejection; otherwise the row comes back, to be
    /// tried again after the rest of the bundle (which may free what it clashed with, e.g. a
    /// row deleted by the same bundle that held the same UNIQUE value).
    fn write(&mut self, d: Decided<'c>, last_try: bool) -> Result<Option<(Decided<'c>, String)>> {
        let t = &d.target.meta;
        let alive = d.state.cl % 2 == 1;
        if d.new_incarnation || !d.winners.is_empty() {
            let delete_first = d.new_incarnation && (d.old_alive || !alive);
            if let Some(reason) = self.write_row(&d.target, &d.pk, &d.winners, delete_first, alive)? {
                if !last_try {
                    return Ok(Some((d, reason)));
                }
                self.reject(t, &d.pk, &d.winners, reason, d.n_changes)?;
                return Ok(None);
            }
        }
        self.report.applied += d.applied;
        self.report.already_known += d.known;
        let mut state = d.state;
        let stamps = state.cells.iter().flatten().map(|s| s.hlc).chain([state.rh.hlc, state.mh]);
        state.mh = stamps.max().unwrap_or(0);
        self.write_shadow(&d.target, &d.pk, &state, d.target.was_empty)?;
        if self.ctx.want_events && (d.new_incarnation || !d.winners.is_empty()) {
            self.events.push(Event::RemoteChange(Change {
                table: t.name.clone(),
                pk: d.pk.clone(),
                columns: d.winners.iter().map(|(c, _)| t.cols[*c].clone()).collect(),
                deleted: state.cl % 2 == 0,
            }));
        }
        Ok(None)
    }

    /// Try the refused rows again while that makes progress; reject what stays refused.
    fn retry_refused(&mut self) -> Result<()> {
        loop {
            let before = self.refused.len();
            let mut still = Vec::new();
            for (d, _) in std::mem::take(&mut self.refused) {
                if let Some(r) = self.write(d, false)? {
                    still.push(r);
                }
            }
            self.refused = still;
            if self.refused.is_empty() || self.refused.len() == before {
                break;
            }
        }
        for (d, _) in std::mem::take(&mut self.refused) {
            self.write(d, true)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_cell(
        &mut self,
        target: &Target,
        pk: &[Value],
        col: usize,
        value: &Value,
        remote: Stamp,
        local: Option<Stamp>,
        local_values: &mut Option<Option<Vec<Value>>>,
    ) -> Result<CellOutcome> {
        let t = &target.meta;
        let Some(local) = local else { return Ok(CellOutcome::Take) };
        if local == remote {
            // The same op id must carry the same value.
            let current = self.cached_value(target, pk, col, local_values)?;
            if let Some(v) = current {
                // A value this replica's column affinity converted (say text '5' to integer
                // 5) is the same change relayed back, not a clash.
                if !v.same_as(value) && !coerced_equal(self.conn, t, col, &v, value)? {
                    return Err(Error::new(
                        ErrorKind::SiteIdClash,
                        format!(
                            "change ({}, {:?}, {}) stamped {}@{} arrives with a different value than the one held here: \
                             two databases share a site id",
                            t.name, pk, t.cols[col], remote.hlc, self.site_ids[&remote.site]
                        ),
                    ));
                }
            }
            return Ok(CellOutcome::Known);
        }
        let key = conflict::cell_key(&t.name, pk, &t.cols[col]);
        if let Some(held) = self.open.get(&key) {
            // A cell under manual review: the remote side already recorded (or older) is known.
            let held = Stamp { hlc: held.0, site: meta_ord(&self.site_ids, &held.1) };
            if !self.newer(remote, held) {
                return Ok(CellOutcome::Known);
            }
        }
        let remote_newer = self.newer(remote, local);
        let local_unseen_by_sender = local.hlc > self.sender_vv.get(&local.site).copied().unwrap_or(0);
        let remote_unseen_here = remote.hlc > self.local_vv.get(&remote.site).copied().unwrap_or(0);
        if !(local_unseen_by_sender && remote_unseen_here) {
            if remote_newer {
                if self.open.remove(&key).is_some() {
                    conflict::close_superseded(self.conn, &key)?;
                }
                return Ok(CellOutcome::Take);
            }
            return Ok(CellOutcome::Known);
        }

        // A conflict: the same cell changed here and at the sender since they last synced.
        self.report.conflicts += 1;
        let local_value = self.cached_value(target, pk, col, local_values)?.unwrap_or(Value::Null);
        let input = ConflictInput {
            table: t.name.clone(),
            pk: pk.to_vec(),
            column: t.cols[col].clone(),
            local: CellVersion { value: local_value.clone(), hlc: local.hlc, site: self.site_ids[&local.site] },
            remote: CellVersion { value: value.clone(), hlc: remote.hlc, site: self.site_ids[&remote.site] },
        };
        let (lww_value, lww_outcome) =
            if remote_newer { (value.clone(), CellOutcome::Take) } else { (local_value.clone(), CellOutcome::Keep) };
        let chosen = match t.strategy {
            Strategy::Lww => None,
            Strategy::Manual => {
                let record = conflict::record(self.conn, &input, t.strategy)?;
                self.open.insert(key, (remote.hlc, input.remote.site));
                if self.ctx.want_events {
                    self.events.push(Event::Conflict(record));
                }
                return Ok(CellOutcome::Keep);
            }
            Strategy::PreferLocal => Some(local_value),
            Strategy::PreferRemote => Some(value.clone()),
            Strategy::Custom => {
                let resolver = self.ctx.resolvers.get(&t.name).ok_or_else(|| {
                    Error::new(ErrorKind::Resolver, format!("table {:?} uses the custom strategy but no resolver is registered", t.name))
                })?;
                let decision = resolver.resolve(&input).map_err(|e| {
                    Error::new(ErrorKind::Resolver, format!("the resolver for table {:?} failed: {e}; nothing was applied", t.name))
                })?;
                Some(match decision {
                    Resolution::Local => input.local.value.clone(),
                    Resolution::Remote => input.remote.value.clone(),
                    Resolution::Value(v) => v,
                })
            }
        };
        if self.ctx.want_events {
            self.events.push(Event::Conflict(Conflict::settled(input, t.strategy)));
        }
        Ok(match chosen {
            Some(v) if !v.same_as(&lww_value) => CellOutcome::Write(v),
            _ => lww_outcome,
        })
    }

    fn cached_value(&self, target: &Target, pk: &[Value], col: usize, cache: &mut Option<Option<Vec<Value>>>) -> Result<Option<Value>> {
        if cache.is_none() {
            *cache = Some(self.read_values(target, pk)?);
        }
        Ok(cache.as_ref().unwrap().as_ref().map(|vals| vals[col].clone()))
    }

    /// Write a row's outcome to the user table: delete it (a deleted incarnation), or upsert the
    /// winning cells (after removing an older incarnation). Returns the reason when a local
    /// constraint refuses it; the transaction is then exactly as before this row.
    fn write_row(
        &self,
        target: &Target<'c>,
        pk: &[Value],
        cells: &[(usize, Value)],
        delete_first: bool,
        alive: bool,
    ) -> Result<Option<String>> {
        let conn = self.conn;
        // One statement is atomic by itself; two need a savepoint to be undone together.
        let savepoint = delete_first && alive;
        if savepoint {
            conn.prepare_cached("SAVEPOINT syncline_row")?.execute([])?;
        }
        let result = (|| -> rusqlite::Result<()> {
            if delete_first {
                target.delete_row.borrow_mut().execute(rusqlite::params_from_iter(pk))?;
            }
            if alive {
                target.upsert(conn, pk, cells)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                if savepoint {
                    conn.prepare_cached("RELEASE syncline_row")?.execute([])?;
                }
                Ok(None)
            }
            // A constraint, or a key of the wrong type for an INTEGER PRIMARY KEY.
            Err(rusqlite::Error::SqliteFailure(e, msg)) if matches!(e.code, ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch) => {
                if savepoint {
                    conn.execute_batch("ROLLBACK TO syncline_row; RELEASE syncline_row")?;
                }
                Ok(Some(msg.unwrap_or_else(|| e.to_string())))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Open manual conflicts on a row whose incarnation changed are settled by that change.
    fn close_row_conflicts(&mut self, t: &SyncedTable, pk: &[Value]) -> Result<()> {
        if self.open.is_empty() {
            return Ok(());
        }
        for c in &t.cols {
            let key = conflict::cell_key(&t.name, pk, c);
            if self.open.remove(&key).is_some() {
                conflict::close_superseded(self.conn, &key)?;
            }
        }
        Ok(())
    }

    fn reject(&mut self, t: &SyncedTable, pk: &[Value], cells: &[(usize, Value)], reason: String, n: u64) -> Result<()> {
        let named: Vec<(String, Value)> = cells.iter().map(|(c, v)| (t.cols[*c].clone(), v.clone())).collect();
        self.reject_named(&t.name, pk, &named, reason, n)
    }

    fn reject_named(&mut self, table: &str, pk: &[Value], cells: &[(String, Value)], reason: String, n: u64) -> Result<()> {
        let row: Vec<(&str, &Value)> = cells.iter().map(|(c, v)| (c.as_str(), v)).collect();
        self.conn.prepare_cached("INSERT INTO _syncline_rejected(tbl, pk, row, reason, sender) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
            rusqlite::params![
                table,
                rmp_serde::to_vec(pk).expect("values encode"),
                rmp_serde::to_vec(&row).expect("values encode"),
                reason,
                &self.sender.0[..]
            ],
        )?;
        self.report.rejected += n;
        Ok(())
    }

    /// Store the row's sync state; `fresh` when the table had none before this import.
    fn write_shadow(&self, target: &Target, pk: &[Value], s: &Shadow, fresh: bool) -> Result<()> {
        let params = shadow::put_params(pk, s);
        if fresh {
            let inserted = target.insert_shadow.borrow_mut().execute(rusqlite::params_from_iter(params));
            if let Err(rusqlite::Error::SqliteFailure(e, _)) = &inserted {
                if e.code == ErrorCode::ConstraintViolation {
                    return Err(Error::invalid_bundle(format!("a row of {:?} appears twice in the bundle", target.meta.name)));
                }
            }
            inserted?;
        } else {
            target.write_shadow.borrow_mut().execute(rusqlite::params_from_iter(params))?;
        }
        Ok(())
    }
}

/// Whether storing `remote` in column `col` of the local table gives `held`: the value differs
/// only by the conversion the column's type affinity applies (replicas' schemas may declare
/// different types for one column). Asked of SQLite itself, through a temporary table whose
/// one column has that affinity.
fn coerced_equal(conn: &Connection, t: &SyncedTable, col: usize, held: &Value, remote: &Value) -> Result<bool> {
    let affinity: String = conn
        .prepare_cached("SELECT affinity FROM _syncline_columns WHERE tbl = ?1 AND is_pk = 0 AND ord = ?2")?
        .query_row(rusqlite::params![t.id, col as i64], |r| r.get(0))?;
    let decl = match affinity.as_str() {
        "INTEGER" | "TEXT" | "REAL" | "NUMERIC" => affinity.as_str(),
        _ => return Ok(false),
    };
    conn.execute_batch(&format!("CREATE TEMP TABLE IF NOT EXISTS _syncline_coerce_{decl}(v {decl}); DELETE FROM _syncline_coerce_{decl}"))?;
    conn.execute(&format!("INSERT INTO _syncline_coerce_{decl}(v) VALUES (?1)"), [remote])?;
    let stored: Value = conn.query_row(&format!("SELECT v FROM _syncline_coerce_{decl}"), [], |r| r.get(0))?;
    conn.execute(&format!("DELETE FROM _syncline_coerce_{decl}"), [])?;
    Ok(stored.same_as(held))
}

fn meta_ord(sites: &BTreeMap<i64, SiteId>, id: &SiteId) -> i64 {
    sites.iter().find(|(_, s)| *s == id).map(|(o, _)| *o).unwrap_or(-1)
}

enum CellOutcome {
    /// Already held (or superseded here).
    Known,
    /// Take the remote value and stamp.
    Take,
    /// Keep the local value and stamp.
    Keep,
    /// Write this value with a new local stamp (a strategy chose a non-LWW outcome).
    Write(Value),
}

/// `"a" = ? AND "b" = ?` over the user table's key columns.
pub(crate) fn user_pk_where(t: &SyncedTable) -> String {
    t.pk.iter().map(|c| format!("{} = ?", quote_ident(c))).collect::<Vec<_>>().join(" AND ")
}
