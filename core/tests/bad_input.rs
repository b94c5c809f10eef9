//! Bad input never changes the database: every truncation and bit flip of a bundle, wrong
//! magic/version/flags, unknown tables and columns, SQL in identifiers, wrong types, spoofed
//! site ids and far-future stamps each give a typed error (or a counted rejection).

mod common;
use common::*;
use syncline::bundle::{self, Contents, Header, TableDict, VvEntry, WireCell, WireRow};
use syncline::{ErrorKind, SiteId, Strategy, SyncEngine, Value};
use tempfile::TempDir;

fn small_bundle(dir: &TempDir) -> Vec<u8> {
    let a = replica(dir, "src", Strategy::Lww);
    a.execute("INSERT INTO todos(id, title, body) VALUES (1, 'milk', 'x'), (2, NULL, x'00ff')", &[]).unwrap();
    a.generate_bundle(None).unwrap()
}

fn assert_refused(e: &SyncEngine, bytes: &[u8], kind: ErrorKind) {
    e.status().unwrap(); // queued writes stamped first, so the dumps compare the import alone
    let before = full_dump(e);
    let err = e.import_bundle(bytes).expect_err("must be refused");
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(full_dump(e), before, "database changed by a refused bundle");
}

#[test]
fn every_truncation_is_refused() {
    let dir = TempDir::new().unwrap();
    let bytes = small_bundle(&dir);
    let b = replica(&dir, "b", Strategy::Lww);
    let before = state_hash(&b);
    for len in 0..bytes.len() {
        let err = b.import_bundle(&bytes[..len]).expect_err("truncated");
        assert_eq!(err.kind(), ErrorKind::InvalidBundle, "at {len}: {err}");
    }
    assert_eq!(state_hash(&b), before);
    b.import_bundle(&bytes).unwrap();
}

#[test]
fn every_single_bit_flip_is_refused() {
    let dir = TempDir::new().unwrap();
    let bytes = small_bundle(&dir);
    let b = replica(&dir, "b", Strategy::Lww);
    let before = state_hash(&b);
    for i in 0..bytes.len() * 8 {
        let mut copy = bytes.clone();
        copy[i / 8] ^= 1 << (i % 8);
        let err = b.import_bundle(&copy).expect_err("flipped");
        assert_eq!(err.kind(), ErrorKind::InvalidBundle, "bit {i}: {err}");
    }
    assert_eq!(state_hash(&b), before);
}

#[test]
fn trailing_garbage_and_empty_input_are_refused() {
    let dir = TempDir::new().unwrap();
    let mut bytes = small_bundle(&dir);
    let b = replica(&dir, "b", Strategy::Lww);
    bytes.push(0);
    assert_refused(&b, &bytes, ErrorKind::InvalidBundle);
    assert_refused(&b, b"", ErrorKind::InvalidBundle);
    assert_refused(&b, b"SQLite format 3\0", ErrorKind::InvalidBundle);
}

/// Build a bundle by hand (valid frame and checksum) to say things a real replica would not.
fn forged(tables: Vec<TableDict>, sites: Vec<SiteId>, rows: Vec<WireRow>, vv_hlc: u64) -> Vec<u8> {
    let hlcs: Vec<u64> = rows.iter().flat_map(|r| std::iter::once(r.hlc).chain(r.cells.iter().map(|c| c.hlc))).collect();
    let header = Header {
        site: sites[0].0.to_vec(),
        vv: vec![VvEntry(sites[0].0.to_vec(), vv_hlc)],
        base: vec![],
        schema: bundle::schema_fingerprint(&tables),
        rows: rows.len() as u64,
        changes: rows.iter().map(|r| 1 + r.cells.len() as u64).sum(),
        min_hlc: hlcs.iter().copied().min().unwrap_or(0),
        max_hlc: hlcs.iter().copied().max().unwrap_or(0),
        inflated: None,
        migrations: None,
    };
    bundle::encode(&Contents { header, tables, sites, rows }, false)
}

fn now_hlc() -> u64 {
    syncline::hlc::pack(syncline::hlc::system_now_ms(), 0)
}

fn todos_dict(cols: &[&str]) -> TableDict {
    TableDict("todos".into(), vec!["id".into()], cols.iter().map(|c| c.to_string()).collect())
}

fn row(cells: Vec<(u32, Value)>, hlc: u64) -> WireRow {
    WireRow {
        table: 0,
        pk: vec![Value::Integer(1)],
        cl: 1,
        hlc,
        site: 0,
        cells: cells.into_iter().map(|(col, value)| WireCell { col, value, hlc, site: 0 }).collect(),
    }
}

#[test]
fn forged_bundle_is_accepted_when_honest() {
    // The forging helper itself produces importable bundles; the refusals below are real.
    let dir = TempDir::new().unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    let h = now_hlc();
    let ok =
        forged(vec![todos_dict(&["body", "done", "title"])], vec![SiteId::random()], vec![row(vec![(2, Value::Text("t".into()))], h)], h);
    assert_eq!(b.import_bundle(&ok).unwrap().applied, 2);
}

#[test]
fn unknown_tables_columns_and_sql_in_names_are_refused() {
    let dir = TempDir::new().unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    let h = now_hlc();
    let s = vec![SiteId::random()];
    // Names no replica could sync are refused; other unknown names are held as data (see
    // mixed_versions.rs), never spliced into SQL.
    let reserved_table =
        forged(vec![TableDict("_syncline_queue".into(), vec!["id".into()], vec!["x".into()])], s.clone(), vec![row(vec![], h)], h);
    assert_refused(&b, &reserved_table, ErrorKind::UnknownTable);
    let control_column = forged(vec![todos_dict(&["ti\ntle"])], s.clone(), vec![row(vec![(0, Value::Integer(1))], h)], h);
    assert_refused(&b, &control_column, ErrorKind::UnknownColumn);
    let tables_before = rows(&b, "SELECT name, sql FROM sqlite_schema ORDER BY name");
    let sql_table =
        forged(vec![TableDict("todos\"; DROP TABLE todos; --".into(), vec!["id".into()], vec![])], s.clone(), vec![row(vec![], h)], h);
    assert_eq!(b.import_bundle(&sql_table).unwrap().held, 1);
    let sql_column =
        forged(vec![todos_dict(&["title\" = 1; DROP TABLE todos; --"])], s.clone(), vec![row(vec![(0, Value::Integer(1))], h + 1)], h + 1);
    assert_eq!(b.import_bundle(&sql_column).unwrap().held, 1);
    assert_eq!(rows(&b, "SELECT name, sql FROM sqlite_schema ORDER BY name"), tables_before);
    let status = b.status().unwrap();
    assert_eq!((status.held_rows, status.held_cells), (1, 1));
    let wrong_pk = forged(vec![TableDict("todos".into(), vec!["title".into()], vec![])], s.clone(), vec![row(vec![], h)], h);
    assert_refused(&b, &wrong_pk, ErrorKind::SchemaMismatch);
    let bad_index = forged(vec![todos_dict(&["title"])], s.clone(), vec![row(vec![(5, Value::Integer(1))], h)], h);
    assert_refused(&b, &bad_index, ErrorKind::InvalidBundle);
    assert_eq!(rows(&b, "SELECT count(*) FROM todos")[0][0], Value::Integer(1));
}

#[test]
fn far_future_rows_are_quarantined_one_by_one_and_applied_once_the_clock_catches_up() {
    let dir = TempDir::new().unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    let t = syncline::hlc::system_now_ms() + 1_000;
    b.set_manual_clock(Some(t)).unwrap();
    let clock_before = b.status().unwrap().hlc;
    let (soon, future) = (syncline::hlc::pack(t + 1_000, 0), syncline::hlc::pack(t + 3_600_000, 0));
    let peer = SiteId::random();
    let mut late = row(vec![(0, Value::Text("from the future".into()))], future);
    late.pk = vec![Value::Integer(2)];
    let rows_in = vec![row(vec![(0, Value::Text("now".into()))], soon), late];
    // The sender's vector claims the far future too: neither moves the clock.
    let bytes = forged(vec![todos_dict(&["title"])], vec![peer], rows_in, future);
    let report = b.import_bundle(&bytes).unwrap();
    assert_eq!((report.applied, report.quarantined), (2, 2), "{report:?}");
    let status = b.status().unwrap();
    assert_eq!(status.quarantined, 1);
    assert!(status.hlc >= soon && status.hlc < future && status.hlc > clock_before, "clock {} (future {future})", status.hlc);
    assert_eq!(rows(&b, "SELECT id, title FROM todos"), vec![vec![Value::Integer(1), Value::Text("now".into())]]);
    // A later import, once the local clock has caught up, applies the held row.
    b.set_manual_clock(Some(t + 3_600_000 - 60_000)).unwrap();
    let empty = forged(vec![], vec![peer], vec![], 0);
    let report = b.import_bundle(&empty).unwrap();
    assert_eq!(report.released, 2, "{report:?}");
    assert_eq!(b.status().unwrap().quarantined, 0);
    assert_eq!(rows(&b, "SELECT title FROM todos WHERE id = 2"), vec![vec![Value::Text("from the future".into())]]);
}

#[test]
fn stamps_outside_the_header_range_are_refused() {
    let dir = TempDir::new().unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    let h = now_hlc();
    let mut bytes_rows = vec![row(vec![(0, Value::Text("x".into()))], h)];
    bytes_rows[0].cells[0].hlc = h + 10;
    let tables = vec![todos_dict(&["title"])];
    let header = Header {
        site: SiteId::random().0.to_vec(),
        vv: vec![],
        base: vec![],
        schema: bundle::schema_fingerprint(&tables),
        rows: 1,
        changes: 2,
        min_hlc: h,
        max_hlc: h,
        inflated: None,
        migrations: None,
    };
    let sites = vec![SiteId::from_slice(&header.site).unwrap()];
    let bytes = bundle::encode(&Contents { header, tables, sites, rows: bytes_rows }, false);
    assert_refused(&b, &bytes, ErrorKind::InvalidBundle);
}

#[test]
fn spoofed_own_site_id_is_refused() {
    let dir = TempDir::new().unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    let me = b.site_id().unwrap();
    let h = now_hlc() + 100;
    let bytes = forged(vec![todos_dict(&["title"])], vec![me], vec![row(vec![(0, Value::Text("x".into()))], h)], h);
    assert_refused(&b, &bytes, ErrorKind::SiteIdClash);
}

#[test]
fn the_same_op_with_two_payloads_is_refused() {
    let dir = TempDir::new().unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    let h = now_hlc();
    let s = vec![SiteId::random()];
    let one = forged(vec![todos_dict(&["title"])], s.clone(), vec![row(vec![(0, Value::Text("one".into()))], h)], h);
    let two = forged(vec![todos_dict(&["title"])], s, vec![row(vec![(0, Value::Text("two".into()))], h)], h);
    b.import_bundle(&one).unwrap();
    assert_refused(&b, &two, ErrorKind::SiteIdClash);
}

#[test]
fn wrong_types_for_a_strict_table_are_rejected_and_kept() {
    let dir = TempDir::new().unwrap();
    let mk = |n: &str| replica_with(&dir, n, "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER) STRICT", "t");
    let b = mk("b");
    let h = now_hlc();
    let bytes = forged(
        vec![TableDict("t".into(), vec!["id".into()], vec!["n".into()])],
        vec![SiteId::random()],
        vec![row(vec![(0, Value::Text("not a number".into()))], h)],
        h,
    );
    let r = b.import_bundle(&bytes).unwrap();
    assert_eq!(r.rejected, 2, "{r:?}");
    assert_eq!(r.applied, 0);
    assert_eq!(rows(&b, "SELECT count(*) FROM t")[0][0], Value::Integer(0));
    assert_eq!(b.status().unwrap().rejected, 1);
    let kept = rows(&b, "SELECT tbl, reason FROM _syncline_rejected");
    assert_eq!(kept[0][0], Value::Text("t".into()));
}

#[test]
fn unique_constraint_violation_rejects_only_that_row() {
    let dir = TempDir::new().unwrap();
    let mk = |n: &str| replica_with(&dir, n, "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE)", "u");
    let a = mk("a");
    let b = mk("b");
    a.execute("INSERT INTO u VALUES (1, 'x@example.com'), (2, 'y@example.com')", &[]).unwrap();
    b.execute("INSERT INTO u VALUES (9, 'x@example.com')", &[]).unwrap();
    let r = sync(&a, &b);
    assert_eq!(r.rejected, 2, "{r:?}");
    assert_eq!(r.applied, 2);
    assert_eq!(rows(&b, "SELECT id FROM u ORDER BY id"), vec![vec![Value::Integer(2)], vec![Value::Integer(9)]]);
}

#[test]
fn values_at_the_edges_round_trip_exactly() {
    let dir = TempDir::new().unwrap();
    let mk = |n: &str| replica_with(&dir, n, "CREATE TABLE v(id INTEGER PRIMARY KEY, x)", "v");
    let a = mk("a");
    let b = mk("b");
    let values = vec![
        Value::Null,
        Value::Integer(i64::MAX),
        Value::Integer(i64::MIN),
        Value::Integer(-1),
        Value::Real(-0.0),
        Value::Real(f64::MIN_POSITIVE),
        Value::Real(1e308),
        Value::Text(String::new()),
        Value::Text("héllo ✓ 🚀 \u{0}end".into()),
        Value::Blob(vec![]),
        Value::Blob((0..=255u8).cycle().take(3 << 20).collect()),
    ];
    for (i, v) in values.iter().enumerate() {
        a.execute("INSERT INTO v VALUES (?, ?)", &[Value::Integer(i as i64), v.clone()]).unwrap();
    }
    sync(&a, &b);
    let got = rows(&b, "SELECT x FROM v ORDER BY id");
    for (g, want) in got.iter().zip(&values) {
        assert!(g[0].same_as(want), "{:?} != {:?}", g[0].type_name(), want.type_name());
    }
}

mod mutations {
    //! Mutation fuzzing of the decoder and import path: arbitrary edits of a valid bundle (byte
    //! changes, insertions, deletions, with the checksum recomputed or not) never panic, and a
    //! refused bundle leaves the database unchanged. (cargo-fuzz needs a nightly toolchain;
    //! this runs on stable in every `cargo test`.)
    use super::{replica, small_bundle, state_hash, TempDir};
    use proptest::prelude::*;
    use sha2::Digest;
    use syncline::Strategy as Merge;

    #[derive(Debug, Clone)]
    enum Edit {
        Set(usize, u8),
        Insert(usize, u8),
        Delete(usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Delete),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn mutated_bundles_never_panic_and_refusals_change_nothing(edits in prop::collection::vec(edit(), 1..6), fix_checksum in any::<bool>()) {
            let dir = TempDir::new().unwrap();
            let mut bytes = small_bundle(&dir);
            for e in &edits {
                let n = bytes.len().max(1);
                match *e {
                    Edit::Set(i, b) => { let i = i % n; if i < bytes.len() { bytes[i] = b; } }
                    Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
                    Edit::Delete(i) => { if !bytes.is_empty() { bytes.remove(i % bytes.len()); } }
                }
            }
            if fix_checksum && bytes.len() > 32 {
                // Let mutations reach the decoder behind the checksum.
                let end = bytes.len() - 32;
                let sum = sha2::Sha256::digest(&bytes[..end]);
                bytes[end..].copy_from_slice(&sum);
            }
            let b = replica(&dir, "b", Merge::Lww);
            let before = state_hash(&b);
            match b.import_bundle(&bytes) {
                Ok(_) => {}
                Err(e) => {
                    prop_assert!(!e.message().is_empty());
                    prop_assert_eq!(state_hash(&b), before);
                }
            }
        }
    }
}
