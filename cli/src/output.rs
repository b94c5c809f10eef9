//! How the command line prints results: readable text by default, one JSON document with
//! `--json`, and errors as one line on stderr (`error: <Kind>: <message>`).

use serde_json::{json, Value as Json};
use std::path::Path;
use syncline::{json as doc, BundleStats, Conflict, Error, ImportReport, SiteId, Status};

pub struct Out {
    pub json: bool,
}

impl Out {
    pub(crate) fn emit(&self, doc: Json, text: impl FnOnce() -> String) -> Result<(), Error> {
        if self.json {
            println!("{doc}");
        } else {
            println!("{}", text());
        }
        Ok(())
    }

    pub fn error(&self, e: &Error) {
        if self.json {
            eprintln!("{}", json!({ "error": e.kind().code(), "message": e.message() }));
        } else {
            eprintln!("error: {e}");
        }
    }

    pub fn init(&self, site: &SiteId, tables: &[String]) -> Result<(), Error> {
        self.emit(json!({ "site_id": site.to_hex(), "enabled": tables }), || {
            format!("site {site}\nenabled: {}", if tables.is_empty() { "(no tables)".into() } else { tables.join(", ") })
        })
    }

    pub fn export(&self, path: &Path, s: &BundleStats) -> Result<(), Error> {
        let mut stats = doc::bundle_stats(s);
        stats["file"] = json!(path.display().to_string());
        self.emit(stats, || format!("wrote {} ({} rows, {} changes, {} bytes)", path.display(), s.rows, s.changes, s.bytes))
    }

    pub fn import(&self, r: &ImportReport) -> Result<(), Error> {
        let sender = r.sender.map(|s| s.to_hex());
        self.emit(doc::import_report(r), || {
            let mut line = format!(
                "imported {} rows from {}: {} applied, {} already known, {} conflicts, {} rejected",
                r.rows,
                sender.clone().unwrap_or_default(),
                r.applied,
                r.already_known,
                r.conflicts,
                r.rejected
            );
            if r.quarantined > 0 {
                line += &format!(", {} quarantined (stamped ahead of this clock; applied once it catches up)", r.quarantined);
            }
            if r.released > 0 {
                line += &format!(", {} released from quarantine", r.released);
            }
            if r.migrated > 0 {
                line += &format!(", {} migrations applied", r.migrated);
            }
            line
        })
    }

    pub fn status(&self, s: &Status) -> Result<(), Error> {
        self.emit(doc::status(s), || {
            let mut t = format!("site      {}\nclock     {}\n", s.site_id, s.hlc);
            for tb in &s.tables {
                t += &format!("table     {} ({}, {} rows)\n", tb.name, tb.strategy, tb.rows);
            }
            for p in &s.peers {
                t += &format!("peer      {} ({} changes pending)\n", p.site_id, p.pending);
            }
            t += &format!("conflicts {} unresolved\nrejected  {}", s.unresolved_conflicts, s.rejected);
            if s.quarantined > 0 {
                t += &format!("\nquarantined {} rows (stamped ahead of this clock)", s.quarantined);
            }
            for c in &s.schema_changes {
                t += &format!("\nschema    {}.{} {} ({}, {})", c.table, c.column, c.decl_type, c.source, c.state);
            }
            if s.held_cells > 0 || s.held_rows > 0 {
                t += &format!("\nheld      {} cells, {} rows (for columns or tables this replica lacks)", s.held_cells, s.held_rows);
            }
            t += &format!(
                "\ntombstones {} ({} acknowledged by every known peer: `syncline compact` purges them)",
                s.tombstones, s.purgeable
            );
            t
        })
    }

    pub fn snapshot(&self, path: &Path) -> Result<(), Error> {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.emit(json!({ "snapshot": path.display().to_string(), "bytes": bytes }), || {
            format!("wrote snapshot {} ({bytes} bytes): copy it onto the new device and open it there", path.display())
        })
    }

    pub fn compact(&self, r: &syncline::CompactReport) -> Result<(), Error> {
        self.emit(doc::compact_report(r), || {
            format!("purged {} tombstones; the file went from {} to {} bytes", r.purged, r.bytes_before, r.bytes_after)
        })
    }

    pub fn conflicts(&self, cs: &[Conflict]) -> Result<(), Error> {
        self.emit(Json::Array(cs.iter().map(doc::conflict).collect()), || {
            if cs.is_empty() {
                return "no unresolved conflicts".into();
            }
            cs.iter()
                .map(|c| {
                    format!(
                        "#{} {}{:?}.{}: local {} vs remote {}",
                        c.id.unwrap_or(0),
                        c.table,
                        c.pk.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                        c.column,
                        c.local.value,
                        c.remote.value
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    pub fn migrated(&self, table: &str, column: &str, decl_type: &str) -> Result<(), Error> {
        self.emit(json!({ "table": table, "added_column": column, "type": decl_type }), || {
            format!("added column {column} {decl_type} to {table}; the migration travels with the next bundles")
        })
    }

    pub fn resolved(&self, id: i64) -> Result<(), Error> {
        self.emit(json!({ "resolved": id }), || format!("conflict {id} resolved"))
    }

    pub fn site(&self, site: &SiteId) -> Result<(), Error> {
        self.emit(json!({ "site_id": site.to_hex() }), || site.to_hex())
    }
}
