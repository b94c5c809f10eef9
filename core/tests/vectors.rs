//! The golden vectors of spec/vectors/ run through the Rust engine: exports must be
//! byte-identical to the committed bundles, imports must report what the scenario says, and
//! every replica must end in the expected state. `SYNCLINE_WRITE_VECTORS=1` rewrites the
//! bundle files instead of comparing them (after a deliberate format change).

mod common;
use common::forge;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use syncline::{bundle, ConflictInput, EnableOptions, Options, Resolution, SiteId, Strategy, SyncEngine, Value};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn writing() -> bool {
    std::env::var("SYNCLINE_WRITE_VECTORS").is_ok_and(|v| v == "1")
}

/// A tagged JSON value (spec/vectors/README.md) as an engine value.
fn value(j: &Json) -> Value {
    if j.is_null() {
        return Value::Null;
    }
    let (tag, v) = j.as_object().and_then(|o| o.iter().next()).expect("tagged value");
    let s = v.as_str().expect("tagged value payload is a string");
    match tag.as_str() {
        "int" => Value::Integer(s.parse().unwrap()),
        "real" => Value::Real(s.parse().unwrap()),
        "text" => Value::Text(s.to_owned()),
        "blob" => Value::Blob(hex::decode(s).unwrap()),
        other => panic!("unknown value tag {other}"),
    }
}

/// The concat resolver every runner registers for `custom` tables.
fn concat(c: &ConflictInput) -> Result<Resolution, String> {
    match (&c.local.value, &c.remote.value) {
        (Value::Text(l), Value::Text(r)) => {
            let mut both = [l.as_str(), r.as_str()];
            both.sort();
            Ok(Resolution::Value(Value::Text(both.join(" + "))))
        }
        _ => Ok(Resolution::Local),
    }
}

/// The frame and checksum rebuilt around new body bytes (and flags).
fn reframe(bytes: &[u8], flags: u16, body: Vec<u8>) -> Vec<u8> {
    let hlen = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut out = bytes[..16 + hlen].to_vec();
    out[10..12].copy_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&body);
    let sum = <sha2::Sha256 as sha2::Digest>::digest(&out);
    out.extend_from_slice(&sum);
    out
}

fn body_of(bytes: &[u8]) -> Vec<u8> {
    let hlen = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let blen = u64::from_be_bytes(bytes[16 + hlen..24 + hlen].try_into().unwrap()) as usize;
    bytes[24 + hlen..24 + hlen + blen].to_vec()
}

/// A damaged or forged copy of a bundle (spec/vectors/README.md, `derive`).
fn damage(bytes: &[u8], how: &str) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match how {
        "truncate" => b.truncate(b.len() - 10),
        "magic" => b[0] ^= 0xFF,
        "flip" => {
            let at = b.len() - 40;
            b[at] ^= 0x01;
        }
        "version" => {
            b[9] = 2;
            let end = b.len() - 32;
            let sum = <sha2::Sha256 as sha2::Digest>::digest(&b[..end]);
            b[end..].copy_from_slice(&sum);
        }
        "cl-2^63" => return forge(bytes, |c| c.rows[0].cl = 1 << 63),
        "cl-2^62+1" => return forge(bytes, |c| c.rows[0].cl = (1 << 62) + 1),
        "null-key" => return forge(bytes, |c| c.rows[0].pk = vec![Value::Null]),
        "text-key" => return forge(bytes, |c| c.rows[0].pk = vec![Value::Text("abc".into())]),
        "row-twice" => return forge(bytes, |c| c.rows.insert(1, c.rows[0].clone())),
        "sites-twice" => return forge(bytes, |c| c.sites.push(c.sites[0])),
        "other-key" => return forge(bytes, |c| c.rows[0].pk = vec![Value::Integer(99)]),
        "changes-lie" => {
            let mut c = common::contents(bytes);
            c.header.changes = 0;
            return bundle::encode(&c, false);
        }
        "float32" => {
            // the first float 64 of the body written as float 32 (same value, 1.5)
            let mut body = body_of(bytes);
            let at = body.windows(9).position(|w| w == [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]).expect("a 1.5 in the body");
            body.splice(at..at + 9, [0xca, 0x3f, 0xc0, 0, 0]);
            return reframe(bytes, 0, body);
        }
        "zlib-trailing" => {
            use std::io::Write;
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&body_of(bytes)).unwrap();
            let mut body = z.finish().unwrap();
            body.extend_from_slice(b"junk");
            return reframe(bytes, bundle::FLAG_DEFLATE, body);
        }
        other => panic!("unknown damage {other}"),
    }
    b
}

fn table_rows(e: &SyncEngine, table: &str) -> Vec<Vec<Value>> {
    let cols = e.query(&format!("SELECT * FROM \"{table}\" LIMIT 0"), &[]).unwrap().columns.len();
    let order = (1..=cols).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    e.query(&format!("SELECT * FROM \"{table}\" ORDER BY {order}"), &[]).unwrap().rows
}

fn fingerprint(e: &SyncEngine) -> String {
    let mut out = String::new();
    for t in e.query("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name", &[]).unwrap().rows {
        let Value::Text(name) = &t[0] else { unreachable!() };
        out += &format!("{name}:{:?};", table_rows(e, name));
    }
    out
}

fn run(path: &Path) {
    let sc: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let name = sc["name"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = sc["clock_ms"].as_u64().unwrap();
    let mut reps: BTreeMap<String, SyncEngine> = BTreeMap::new();
    for (r, site) in sc["replicas"].as_object().unwrap() {
        let e = SyncEngine::open(dir.path().join(format!("{r}.db")), Options::default()).unwrap();
        e.set_site_id(site.as_str().unwrap().parse::<SiteId>().unwrap()).unwrap();
        e.set_manual_clock(Some(clock)).unwrap();
        let schema = sc["schemas"].get(r).unwrap_or(&sc["schema"]);
        for sql in schema.as_array().unwrap() {
            e.execute_batch(sql.as_str().unwrap()).unwrap();
        }
        let tables = sc["table_overrides"].get(r).unwrap_or(&sc["tables"]);
        for (t, strategy) in tables.as_object().unwrap() {
            let strategy: Strategy = strategy.as_str().unwrap().parse().unwrap();
            e.enable_sync(t, EnableOptions { strategy, ..Default::default() }).unwrap();
            if strategy == Strategy::Custom {
                e.set_resolver(t, Arc::new(concat));
            }
        }
        reps.insert(r.clone(), e);
    }
    let file = |step: &Json| vectors_dir().join(step["file"].as_str().unwrap());
    let check_bytes = |path: PathBuf, bytes: &[u8]| {
        if writing() {
            std::fs::write(&path, bytes).unwrap();
        } else {
            let want = std::fs::read(&path).unwrap_or_else(|_| panic!("{name}: missing {}", path.display()));
            assert!(want == bytes, "{name}: {} differs from the bundle made now", path.display());
        }
    };
    for (k, step) in sc["steps"].as_array().unwrap().iter().enumerate() {
        let at = format!("{name} step {k}");
        if let Some(r) = step.get("on").and_then(Json::as_str) {
            let e = &reps[r];
            if let Some(sql) = step.get("sql") {
                e.execute(sql.as_str().unwrap(), &[]).unwrap();
            }
            if let Some(ms) = step.get("clock_ms") {
                e.set_manual_clock(Some(ms.as_u64().unwrap())).unwrap();
            }
        } else if let Some(r) = step.get("export").and_then(Json::as_str) {
            let peer = step.get("peer").map(|p| reps[p.as_str().unwrap()].site_id().unwrap());
            let bytes = reps[r].generate_bundle(peer.as_ref()).unwrap();
            check_bytes(file(step), &bytes);
        } else if let Some(src) = step.get("derive").and_then(Json::as_str) {
            let base = std::fs::read(vectors_dir().join(src)).unwrap();
            check_bytes(file(step), &damage(&base, step["how"].as_str().unwrap()));
        } else if let Some(r) = step.get("import").and_then(Json::as_str) {
            let e = &reps[r];
            let before = fingerprint(e);
            let result = e.import_bundle_file(file(step));
            if let Some(kind) = step.get("error") {
                let err = result.expect_err(&at);
                assert_eq!(err.kind().code(), kind.as_str().unwrap(), "{at}: {err}");
                assert_eq!(fingerprint(e), before, "{at}: a refused bundle changed the database");
            } else {
                let rep = result.unwrap_or_else(|e| panic!("{at}: {e}"));
                if let Some(want) = step.get("report") {
                    let mut got = serde_json::json!({
                        "applied": rep.applied, "already_known": rep.already_known,
                        "conflicts": rep.conflicts, "rejected": rep.rejected,
                    });
                    // optional keys, compared when the scenario names them
                    let optional =
                        [("quarantined", rep.quarantined), ("released", rep.released), ("migrated", rep.migrated), ("held", rep.held)];
                    for (k, v) in optional {
                        if want.get(k).is_some() {
                            got[k] = v.into();
                        }
                    }
                    assert_eq!(&got, want, "{at}: import report");
                }
            }
        } else if let Some(r) = step.get("resolve").and_then(Json::as_str) {
            let e = &reps[r];
            let c = &e.conflicts().unwrap()[step["conflict"].as_u64().unwrap() as usize];
            let with = match &step["with"] {
                Json::String(s) if s == "local" => Resolution::Local,
                Json::String(s) if s == "remote" => Resolution::Remote,
                v => Resolution::Value(value(&v["value"])),
            };
            e.resolve(c.id.unwrap(), with).unwrap();
        } else if let Some(r) = step.get("conflicts").and_then(Json::as_str) {
            assert_eq!(reps[r].conflicts().unwrap().len() as u64, step["count"].as_u64().unwrap(), "{at}");
        } else if let Some(r) = step.get("migrate").and_then(Json::as_str) {
            // spec/vectors/migrations only (README.md there): the steps of schema evolution.
            let default = step.get("default").map_or(Value::Null, value);
            let (t, c, ty) = (step["table"].as_str().unwrap(), step["add_column"].as_str().unwrap(), step["type"].as_str().unwrap());
            let result = reps[r].add_column(t, c, ty, default);
            match step.get("error") {
                Some(kind) => assert_eq!(result.expect_err(&at).kind().code(), kind.as_str().unwrap(), "{at}"),
                None => result.unwrap_or_else(|e| panic!("{at}: {e}")),
            }
        } else if let Some(r) = step.get("migration_policy").and_then(Json::as_str) {
            reps[r].set_migration_policy(step["policy"].as_str().unwrap().parse().unwrap()).unwrap();
        } else if let Some(r) = step.get("apply_held_migrations").and_then(Json::as_str) {
            assert_eq!(reps[r].apply_held_migrations().unwrap(), step["count"].as_u64().unwrap(), "{at}");
        } else if let Some(r) = step.get("enable").and_then(Json::as_str) {
            reps[r].enable_sync(step["table"].as_str().unwrap(), EnableOptions::default()).unwrap();
        } else {
            panic!("{at}: unknown step {step}");
        }
    }
    for (r, want) in sc["expect"].as_object().unwrap() {
        let e = &reps[r.as_str()];
        for (table, rows) in want["rows"].as_object().unwrap() {
            let want: Vec<Vec<Value>> =
                rows.as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(value).collect()).collect();
            let got = table_rows(e, table);
            assert_eq!(got.len(), want.len(), "{name}: rows of {table} on {r}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.len() == w.len() && g.iter().zip(w).all(|(a, b)| a.same_as(b)), "{name}: {table} on {r}: {g:?} != {w:?}");
            }
        }
        assert_eq!(e.conflicts().unwrap().len() as u64, want["open_conflicts"].as_u64().unwrap(), "{name}: open conflicts on {r}");
        let hash = e.state_hash().unwrap();
        if writing() {
            println!("STATE_HASH {name} {r} {hash}");
        } else {
            assert_eq!(Some(hash.as_str()), want["state_hash"].as_str(), "{name}: state hash of {r}");
        }
    }
}

#[test]
fn golden_vectors() {
    run_all(&vectors_dir(), 11);
}

/// The schema-evolution scenarios whose steps (`migrate`, `migration_policy`,
/// `apply_held_migrations`, `enable`, report keys `migrated` and `held`) the other languages'
/// runners do not know yet: they live in a folder of their own (spec/vectors/migrations).
#[test]
fn golden_vectors_with_migration_steps() {
    run_all(&vectors_dir().join("migrations"), 2);
}

fn run_all(dir: &Path, at_least: usize) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.ends_with("interop.json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= at_least, "the vectors are missing");
    for p in paths {
        run(&p);
    }
}
