//! Snapshots for new devices: a compact copy of a replica (its synced tables and sync state)
//! that a new device copies into place and opens, instead of receiving every row. The copy
//! carries no site id of its own: it is marked, and the first engine that opens it gives it a
//! fresh one (the source's stamps stay, as the source's). It records the source as a peer that
//! holds exactly what the copy holds, so the first exchange with the source carries only what
//! changed since (spec/sync-protocol.md, "Snapshots").

use crate::error::{Error, ErrorKind, Result};
use crate::meta;
use crate::site::SiteId;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;

/// The `_syncline_meta` key that marks an unopened snapshot (value: the source's site id).
const MARK: &str = "snapshot_of";

/// Bookkeeping of the source that a new device must not inherit.
const FORGET: &str = "DELETE FROM _syncline_peers; DELETE FROM _syncline_conflicts; DELETE FROM _syncline_rejected;
     DELETE FROM _syncline_quarantine; DROP TABLE IF EXISTS _syncline_net_devices;";

/// Write a snapshot of the database `conn` is open on to `path` (which must not exist). Runs
/// outside a transaction, after the queued writes were stamped.
pub(crate) fn write(conn: &Connection, path: &Path) -> Result<()> {
    if path.exists() {
        return Err(Error::invalid_argument(format!("{} already exists; a snapshot is written to a new file", path.display())));
    }
    let tmp = path.with_extension(format!("snapshot{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy()])?;
        let copy = Connection::open(&tmp)?;
        let tx = copy.unchecked_transaction()?;
        let source = meta::local_site(&tx)?;
        let holds = meta::local_vv(&tx)?;
        tx.execute_batch(FORGET)?;
        let source_ord = meta::site_ord(&tx, &source)?;
        meta::raise_peer_vv(&tx, source_ord, &holds)?;
        tx.execute("INSERT OR REPLACE INTO _syncline_meta(key, value) VALUES (?1, ?2)", [MARK, &source.to_hex()])?;
        tx.commit()?;
        copy.pragma_update(None, "journal_mode", "DELETE")?; // one self-contained file
        drop(copy);
        std::fs::rename(&tmp, path).map_err(|e| Error::new(ErrorKind::Io, format!("cannot write {}: {e}", path.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Check a snapshot downloaded from the server `source` (still at a temporary path) before
/// it is moved into place: a SQLite file that passes `quick_check`, marked as an unopened
/// snapshot of `source`. Its triggers are the server's, not code this device should run:
/// all are dropped, and the capture triggers of its synced tables are installed afresh.
/// `InvalidBundle` for anything else; the caller deletes the file then.
#[cfg(feature = "net")]
pub(crate) fn adopt_download(path: &Path, source: &SiteId) -> Result<()> {
    let invalid = |why: String| Error::new(ErrorKind::InvalidBundle, format!("the server's snapshot is not usable: {why}"));
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| invalid(e.to_string()))?;
    if check != "ok" {
        return Err(invalid(format!("quick_check says {check}")));
    }
    let marked: Option<String> = conn
        .query_row("SELECT value FROM _syncline_meta WHERE key = ?1", [MARK], |r| r.get(0))
        .optional()
        .map_err(|e| invalid(e.to_string()))?;
    if marked.as_deref() != Some(source.to_hex().as_str()) {
        return Err(invalid(format!("it is not marked as a snapshot of the server {source}")));
    }
    let tx = conn.unchecked_transaction()?;
    let triggers: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in triggers {
        tx.execute_batch(&format!("DROP TRIGGER {}", crate::schema::quote_ident(&name)))?;
    }
    for table in meta::synced_tables(&tx)?.values() {
        crate::capture::install_triggers(&tx, table)?;
    }
    tx.commit()?;
    Ok(())
}

/// On open: give an unopened snapshot its own site id. Runs in the opening transaction.
pub(crate) fn rekey_if_snapshot(conn: &Connection) -> Result<Option<SiteId>> {
    let marked: Option<String> = conn.query_row("SELECT value FROM _syncline_meta WHERE key = ?1", [MARK], |r| r.get(0)).optional()?;
    if marked.is_none() {
        return Ok(None);
    }
    let site = SiteId::random();
    meta::adopt_site(conn, &site)?;
    conn.execute("DELETE FROM _syncline_meta WHERE key = ?1", [MARK])?;
    Ok(Some(site))
}
