//! JSON documents of the engine's results (feature `json`): the one shape of each, used by the
//! CLI's `--json` output and by the SQL functions (`spec/sql-functions.md`). Integers stay
//! exact; blobs become `{"blob": "<hex>"}`, infinite reals `{"real": "Infinity"}` (or
//! `"-Infinity"`: JSON has no such number); site ids are hex.

use crate::{BundleStats, Conflict, ImportReport, SiteId, Status, Value};
use serde_json::{json, Value as Json};

/// A SQLite value.
pub fn value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => json!(i),
        Value::Real(r) if r.is_finite() => json!(r),
        Value::Real(r) => json!({ "real": if *r > 0.0 { "Infinity" } else { "-Infinity" } }),
        Value::Text(t) => json!(t),
        Value::Blob(b) => json!({ "blob": hex::encode(b) }),
    }
}

/// The SQLite value a JSON document denotes, the inverse of [`value`]: null, a number (an
/// integer if it is one), a string, `{"blob": "<hex>"}` or `{"real": "Infinity"}` (or
/// `"-Infinity"`); `None` for anything else.
pub fn value_from(j: &Json) -> Option<Value> {
    match j {
        Json::Null => Some(Value::Null),
        Json::Number(n) => Some(n.as_i64().map_or_else(|| Value::Real(n.as_f64().unwrap_or(f64::NAN)), Value::Integer)),
        Json::String(s) => Some(Value::Text(s.clone())),
        Json::Object(o) if o.len() == 1 => match o.iter().next()? {
            (k, Json::String(h)) if k == "blob" => hex::decode(h).ok().map(Value::Blob),
            (k, Json::String(r)) if k == "real" && r == "Infinity" => Some(Value::Real(f64::INFINITY)),
            (k, Json::String(r)) if k == "real" && r == "-Infinity" => Some(Value::Real(f64::NEG_INFINITY)),
            _ => None,
        },
        _ => None,
    }
}

/// A version vector: `{"<site hex>": stamp}`.
pub fn version_vector(vv: &[(SiteId, u64)]) -> Json {
    Json::Object(vv.iter().map(|(s, h)| (s.to_hex(), json!(h))).collect())
}

/// One conflict.
pub fn conflict(c: &Conflict) -> Json {
    json!({
        "id": c.id, "table": c.table, "pk": c.pk.iter().map(value).collect::<Vec<_>>(), "column": c.column,
        "local": { "value": value(&c.local.value), "hlc": c.local.hlc, "site": c.local.site.to_hex() },
        "remote": { "value": value(&c.remote.value), "hlc": c.remote.hlc, "site": c.remote.site.to_hex() },
        "strategy": c.strategy.as_str(),
    })
}

/// What a generated bundle holds.
pub fn bundle_stats(s: &BundleStats) -> Json {
    json!({ "rows": s.rows, "changes": s.changes, "bytes": s.bytes })
}

/// What an import did.
pub fn import_report(r: &ImportReport) -> Json {
    json!({ "sender": r.sender.map(|s| s.to_hex()), "rows": r.rows, "applied": r.applied, "already_known": r.already_known,
            "conflicts": r.conflicts, "rejected": r.rejected, "quarantined": r.quarantined, "released": r.released,
            "migrated": r.migrated, "held": r.held })
}

/// The replica's sync state.
pub fn status(s: &Status) -> Json {
    json!({
        "site_id": s.site_id.to_hex(),
        "hlc": s.hlc,
        "tables": s.tables.iter().map(|t| json!({ "name": t.name, "strategy": t.strategy.as_str(), "rows": t.rows })).collect::<Vec<_>>(),
        "peers": s.peers.iter().map(|p| json!({ "site_id": p.site_id.to_hex(), "version_vector": version_vector(&p.version_vector), "pending": p.pending })).collect::<Vec<_>>(),
        "version_vector": version_vector(&s.version_vector),
        "unresolved_conflicts": s.unresolved_conflicts,
        "rejected": s.rejected,
        "quarantined": s.quarantined,
        "schema_changes": s.schema_changes.iter().map(|c| json!({ "table": c.table, "column": c.column, "type": c.decl_type,
            "source": c.source, "state": c.state, "hlc": c.hlc })).collect::<Vec<_>>(),
        "held_cells": s.held_cells,
        "held_rows": s.held_rows,
        "tombstones": s.tombstones,
        "purgeable": s.purgeable,
        "purge_horizon": version_vector(&s.purge_horizon),
    })
}

/// What a compaction did.
pub fn compact_report(r: &crate::CompactReport) -> Json {
    json!({ "purged": r.purged, "bytes_before": r.bytes_before, "bytes_after": r.bytes_after })
}

/// What one network sync did.
#[cfg(feature = "net")]
pub fn sync_report(r: &crate::net::SyncReport) -> Json {
    json!({ "pushed": r.pushed, "server_applied": r.server_applied, "pulled": r.pulled, "applied": r.applied,
            "conflicts": r.conflicts, "rejected": r.rejected, "quarantined": r.quarantined, "round_trips": r.round_trips })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sqlite_value_survives_a_json_round_trip() {
        let all = [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(-0.5),
            Value::Real(f64::INFINITY),
            Value::Real(f64::NEG_INFINITY),
            Value::Text("{\"real\": \"Infinity\"}".into()),
            Value::Blob(vec![0, 255]),
        ];
        for v in all {
            let j = value(&v);
            assert_eq!(value_from(&j), Some(v.clone()), "{v:?} as {j}");
        }
        assert_eq!(value(&Value::Real(f64::INFINITY)), json!({ "real": "Infinity" }));
        assert_eq!(value_from(&json!({ "real": "NaN" })), None);
    }
}
