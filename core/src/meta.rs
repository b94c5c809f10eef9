//! The sync metadata stored beside the user's tables (all names start with `_syncline_`):
//! clock, site dictionary, version vectors, registered tables, conflicts and rejections.
//! Also the clock operations every other module uses (tick, now, merge), and the upgrade of
//! metadata written by an older build.

use crate::error::{Error, ErrorKind, Result};
use crate::hlc;
use crate::site::SiteId;
use crate::strategy::Strategy;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// Version of the metadata layout inside the database file.
/// 2: capture triggers queue writes in `_syncline_queue` (1: they stamped them directly).
pub const META_VERSION: i64 = 2;

const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS _syncline_meta(key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _syncline_sites(ord INTEGER PRIMARY KEY, site BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS _syncline_clock(
  id INTEGER PRIMARY KEY CHECK (id = 0),
  local INTEGER NOT NULL,
  seen INTEGER NOT NULL,
  site INTEGER NOT NULL,
  manual_ms INTEGER);
CREATE TABLE IF NOT EXISTS _syncline_vv(origin INTEGER PRIMARY KEY, hlc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _syncline_held(origin INTEGER PRIMARY KEY, hlc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _syncline_purged(origin INTEGER PRIMARY KEY, hlc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _syncline_purged_cl(tbl INTEGER PRIMARY KEY, cl INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _syncline_peers(
  peer INTEGER NOT NULL, origin INTEGER NOT NULL, hlc INTEGER NOT NULL,
  PRIMARY KEY(peer, origin)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _syncline_tables(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, strategy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _syncline_columns(
  tbl INTEGER NOT NULL, is_pk INTEGER NOT NULL, ord INTEGER NOT NULL, name TEXT NOT NULL,
  affinity TEXT NOT NULL, decl_type TEXT NOT NULL,
  PRIMARY KEY(tbl, is_pk, ord)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _syncline_conflicts(
  id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, pk BLOB NOT NULL, col TEXT NOT NULL,
  local_value BLOB NOT NULL, local_hlc INTEGER NOT NULL, local_site BLOB NOT NULL,
  remote_value BLOB NOT NULL, remote_hlc INTEGER NOT NULL, remote_site BLOB NOT NULL,
  strategy TEXT NOT NULL, resolution TEXT);
CREATE TABLE IF NOT EXISTS _syncline_rejected(
  id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, pk BLOB NOT NULL, row BLOB NOT NULL,
  reason TEXT NOT NULL, sender BLOB NOT NULL);
"#;

/// Create the metadata (idempotent) and, on first open, a fresh site id and clock.
pub fn install(conn: &Connection) -> Result<()> {
    conn.execute_batch(DDL)?;
    conn.execute_batch(crate::capture::QUEUE_DDL)?;
    conn.execute_batch(crate::quarantine::DDL)?;
    conn.execute_batch(crate::evolve::DDL)?;
    conn.execute_batch(crate::held::DDL)?;
    let version: Option<i64> = conn.query_row("SELECT value FROM _syncline_meta WHERE key = 'version'", [], |r| r.get(0)).optional()?;
    match version {
        Some(v) if v > META_VERSION => {
            return Err(Error::schema(format!(
                "this database was written by a newer Syncline (metadata version {v}, this build knows {META_VERSION})"
            )))
        }
        Some(META_VERSION) => {}
        Some(_) => {
            // Version 1: replace the triggers that stamped writes themselves by queueing ones.
            // The shadow tables and the clock keep their layout.
            for t in synced_tables(conn)?.values() {
                crate::capture::uninstall_triggers(conn, t)?;
                crate::capture::install_triggers(conn, t)?;
            }
            conn.execute("UPDATE _syncline_meta SET value = ?1 WHERE key = 'version'", [META_VERSION])?;
        }
        None => {
            conn.execute("INSERT INTO _syncline_meta(key, value) VALUES ('version', ?1)", [META_VERSION])?;
        }
    }
    crate::shadow::ensure_indexes(conn, &synced_tables(conn)?)?;
    let has_clock: bool = conn.query_row("SELECT count(*) FROM _syncline_clock", [], |r| r.get::<_, i64>(0))? > 0;
    if !has_clock {
        let ord = site_ord(conn, &SiteId::random())?;
        conn.execute("INSERT INTO _syncline_clock(id, local, seen, site) VALUES (0, 0, 0, ?1)", [ord])?;
    }
    Ok(())
}

/// Make `site` (new to this database) the local site id. What the old id stamped stays, as
/// another site's changes this replica holds; the new id starts its own count above them.
pub fn adopt_site(c: &Connection, site: &SiteId) -> Result<()> {
    let old = clock(c)?;
    let ord = site_ord(c, site)?;
    if old.local > 0 {
        let mut vv = VersionVector::new();
        vv.insert(old.site_ord, old.local);
        raise_local_vv(c, &vv)?;
    } else {
        // The old id never stamped anything: forget it, so it leaks into no bundle.
        c.execute("DELETE FROM _syncline_sites WHERE ord = ?1", [old.site_ord])?;
    }
    // The new site starts its own count; `seen` keeps every later stamp above the old ones.
    c.execute("UPDATE _syncline_clock SET site = ?1, seen = max(seen, local), local = 0 WHERE id = 0", [ord])?;
    Ok(())
}

/// The ordinal of a site id in the site dictionary, adding it if new.
pub fn site_ord(conn: &Connection, site: &SiteId) -> Result<i64> {
    let mut stmt = conn.prepare_cached("SELECT ord FROM _syncline_sites WHERE site = ?1")?;
    if let Some(ord) = stmt.query_row([&site.0[..]], |r| r.get(0)).optional()? {
        return Ok(ord);
    }
    conn.prepare_cached("INSERT INTO _syncline_sites(site) VALUES (?1)")?.execute([&site.0[..]])?;
    Ok(conn.last_insert_rowid())
}

/// Every known site: ordinal to id.
pub fn sites(conn: &Connection) -> Result<BTreeMap<i64, SiteId>> {
    let mut stmt = conn.prepare_cached("SELECT ord, site FROM _syncline_sites")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (ord, bytes) = row?;
        out.insert(ord, SiteId::from_slice(&bytes).map_err(|e| Error::new(ErrorKind::Sqlite, e.message().to_owned()))?);
    }
    Ok(out)
}

/// The clock row.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The newest stamp issued or received.
    pub hlc: u64,
    /// The last stamp issued by this site (this site's version-vector entry).
    pub local: u64,
    pub site_ord: i64,
}

pub fn clock(conn: &Connection) -> Result<Clock> {
    Ok(conn
        .prepare_cached("SELECT max(local, seen), local, site FROM _syncline_clock WHERE id = 0")?
        .query_row([], |r| Ok(Clock { hlc: r.get::<_, i64>(0)? as u64, local: r.get::<_, i64>(1)? as u64, site_ord: r.get(2)? }))?)
}

/// This replica's site id.
pub fn local_site(conn: &Connection) -> Result<SiteId> {
    let bytes: Vec<u8> = conn
        .prepare_cached("SELECT s.site FROM _syncline_clock c JOIN _syncline_sites s ON s.ord = c.site WHERE c.id = 0")?
        .query_row([], |r| r.get(0))?;
    SiteId::from_slice(&bytes)
}

/// Issue the next local stamp (the send rule `fold` applies to queued writes). No RETURNING,
/// so a system SQLite down to 3.26 works.
pub fn tick(conn: &Connection) -> Result<u64> {
    let sql = format!("UPDATE _syncline_clock SET local = {} WHERE id = 0", hlc::sql_next());
    conn.prepare_cached(&sql)?.execute([])?;
    Ok(clock(conn)?.local)
}

/// The wall clock the engine stamps with (the manual clock when one is set).
pub fn now_ms(conn: &Connection) -> Result<u64> {
    let sql = format!("SELECT {} FROM _syncline_clock WHERE id = 0", hlc::SQL_NOW_MS);
    Ok(conn.prepare_cached(&sql)?.query_row([], |r| r.get::<_, i64>(0))?.max(0) as u64)
}

/// Receive rule: advance the clock to a remote stamp (already checked for drift).
pub fn observe(conn: &Connection, remote: u64) -> Result<()> {
    conn.prepare_cached("UPDATE _syncline_clock SET seen = max(seen, ?1) WHERE id = 0")?.execute([remote as i64])?;
    Ok(())
}

/// Fix the wall clock the engine stamps with (`None` returns to the system clock).
pub fn set_manual_clock(conn: &Connection, ms: Option<u64>) -> Result<()> {
    conn.execute("UPDATE _syncline_clock SET manual_ms = ?1 WHERE id = 0", [ms.map(|m| m as i64)])?;
    Ok(())
}

/// A version vector: origin site ordinal to the newest stamp covered.
pub type VersionVector = BTreeMap<i64, u64>;

/// This replica's version vector, its own entry included.
pub fn local_vv(conn: &Connection) -> Result<VersionVector> {
    let mut vv = VersionVector::new();
    let mut stmt = conn.prepare_cached("SELECT origin, hlc FROM _syncline_vv")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)))? {
        let (o, h) = row?;
        vv.insert(o, h);
    }
    let c = clock(conn)?;
    let own = vv.entry(c.site_ord).or_insert(0);
    *own = (*own).max(c.local);
    Ok(vv)
}

/// Raise entries of this replica's version vector (never lowers one).
pub fn raise_local_vv(conn: &Connection, vv: &VersionVector) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _syncline_vv(origin, hlc) VALUES (?1, ?2)
         ON CONFLICT(origin) DO UPDATE SET hlc = max(hlc, excluded.hlc)",
    )?;
    for (o, h) in vv {
        stmt.execute(params![o, *h as i64])?;
    }
    Ok(())
}

/// Record the newest stamp per origin site that imports have received (applied, already held
/// or rejected), and return the whole record: how far each site's changes really arrived.
pub fn raise_held(conn: &Connection, carried: &VersionVector) -> Result<VersionVector> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _syncline_held(origin, hlc) VALUES (?1, ?2)
         ON CONFLICT(origin) DO UPDATE SET hlc = max(hlc, excluded.hlc)",
    )?;
    for (o, h) in carried {
        stmt.execute(params![o, *h as i64])?;
    }
    held(conn)
}

/// Per origin site, the newest stamp imports have received.
pub fn held(conn: &Connection) -> Result<VersionVector> {
    let mut stmt = conn.prepare_cached("SELECT origin, hlc FROM _syncline_held")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)))?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

/// What this replica knows a peer has (learnt from the peer's own bundles).
pub fn peer_vv(conn: &Connection, peer_ord: i64) -> Result<VersionVector> {
    let mut stmt = conn.prepare_cached("SELECT origin, hlc FROM _syncline_peers WHERE peer = ?1")?;
    let rows = stmt.query_map([peer_ord], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)))?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

/// Raise what we know a peer has.
pub fn raise_peer_vv(conn: &Connection, peer_ord: i64, vv: &VersionVector) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _syncline_peers(peer, origin, hlc) VALUES (?1, ?2, ?3)
         ON CONFLICT(peer, origin) DO UPDATE SET hlc = max(hlc, excluded.hlc)",
    )?;
    for (o, h) in vv {
        stmt.execute(params![peer_ord, o, *h as i64])?;
    }
    Ok(())
}

/// Every peer we have heard from (site ordinals).
pub fn peers(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT peer FROM _syncline_peers ORDER BY peer")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

/// A table registered for sync, as recorded when it was enabled.
#[derive(Debug, Clone)]
pub struct SyncedTable {
    pub id: i64,
    pub name: String,
    pub strategy: Strategy,
    pub pk: Vec<String>,
    /// Non-key columns in shadow order.
    pub cols: Vec<String>,
}

impl SyncedTable {
    pub fn shadow(&self) -> String {
        format!("\"_syncline_shadow_{}\"", self.id)
    }
    pub fn col_index(&self, name: &str) -> Option<usize> {
        self.cols.iter().position(|c| c == name)
    }
}

/// The registered columns of table `?1`, keys first, in registration order.
pub const COLUMNS_OF_TABLE: &str = "SELECT is_pk, name FROM _syncline_columns WHERE tbl = ?1 ORDER BY is_pk DESC, ord";

/// Every table registered for sync, by name.
pub fn synced_tables(conn: &Connection) -> Result<BTreeMap<String, SyncedTable>> {
    let mut out = BTreeMap::new();
    let mut stmt = conn.prepare_cached("SELECT id, name, strategy FROM _syncline_tables ORDER BY name")?;
    let tables: Vec<(i64, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut cols = conn.prepare_cached(COLUMNS_OF_TABLE)?;
    for (id, name, strategy) in tables {
        let mut t = SyncedTable { id, name: name.clone(), strategy: strategy.parse()?, pk: vec![], cols: vec![] };
        for row in cols.query_map([id], |r| Ok((r.get::<_, bool>(0)?, r.get::<_, String>(1)?)))? {
            let (is_pk, col) = row?;
            if is_pk {
                t.pk.push(col)
            } else {
                t.cols.push(col)
            }
        }
        out.insert(name, t);
    }
    Ok(out)
}
