//! How the command line prints results: readable text by default, one JSON document with
//! `--json`, and errors as one line on stderr (`error: <Kind>: <message>`).

use serde_json::{json, Value as Json};
use std::path::Path;
use syncline::{BundleStats, Conflict, Error, ImportReport, SiteId, Status, Value};

pub struct Out {
    pub json: bool,
}

/// A SQLite value as JSON: integers stay exact, blobs become `{"blob": "<hex>"}`.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => json!(i),
        Value::Real(r) => json!(r),
        Value::Text(t) => json!(t),
        Value::Blob(b) => json!({ "blob": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
    }
}

fn vv_json(vv: &[(SiteId, u64)]) -> Json {
    Json::Object(vv.iter().map(|(s, h)| (s.to_hex(), json!(h))).collect())
}

fn conflict_json(c: &Conflict) -> Json {
    json!({
        "id": c.id, "table": c.table, "pk": c.pk.iter().map(value_json).collect::<Vec<_>>(), "column": c.column,
        "local": { "value": value_json(&c.local.value), "hlc": c.local.hlc, "site": c.local.site.to_hex() },
        "remote": { "value": value_json(&c.remote.value), "hlc": c.remote.hlc, "site": c.remote.site.to_hex() },
        "strategy": c.strategy.as_str(),
    })
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
        self.emit(json!({ "file": path.display().to_string(), "rows": s.rows, "changes": s.changes, "bytes": s.bytes }), || {
            format!("wrote {} ({} rows, {} changes, {} bytes)", path.display(), s.rows, s.changes, s.bytes)
        })
    }

    pub fn import(&self, r: &ImportReport) -> Result<(), Error> {
        let sender = r.sender.map(|s| s.to_hex());
        self.emit(
            json!({ "sender": sender, "rows": r.rows, "applied": r.applied, "already_known": r.already_known,
                    "conflicts": r.conflicts, "rejected": r.rejected, "quarantined": r.quarantined, "released": r.released,
                    "migrated": r.migrated }),
            || {
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
            },
        )
    }

    pub fn status(&self, s: &Status) -> Result<(), Error> {
        let doc = json!({
            "site_id": s.site_id.to_hex(),
            "hlc": s.hlc,
            "tables": s.tables.iter().map(|t| json!({ "name": t.name, "strategy": t.strategy.as_str(), "rows": t.rows })).collect::<Vec<_>>(),
            "peers": s.peers.iter().map(|p| json!({ "site_id": p.site_id.to_hex(), "version_vector": vv_json(&p.version_vector), "pending": p.pending })).collect::<Vec<_>>(),
            "version_vector": vv_json(&s.version_vector),
            "unresolved_conflicts": s.unresolved_conflicts,
            "rejected": s.rejected,
            "quarantined": s.quarantined,
            "schema_changes": s.schema_changes.iter().map(|c| json!({ "table": c.table, "column": c.column, "type": c.decl_type,
                "source": c.source, "state": c.state, "hlc": c.hlc })).collect::<Vec<_>>(),
        });
        self.emit(doc, || {
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
            t
        })
    }

    pub fn conflicts(&self, cs: &[Conflict]) -> Result<(), Error> {
        self.emit(Json::Array(cs.iter().map(conflict_json).collect()), || {
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
