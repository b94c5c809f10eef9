//! Importing a bundle FILE streams it (bundle::decode_file: a checksum pass, then the body a
//! bounded window at a time). It must accept and refuse exactly what decoding the same bytes in
//! memory does, apply the same state, and catch a file that changes between its two passes.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use syncline::bundle::{self, Limits};
use syncline::{ErrorKind, ExportOptions, Strategy, Value};
use tempfile::TempDir;

/// Every row of a decoded bundle, or the error kind that stopped it.
fn outcome(decoded: syncline::Result<bundle::Decoded<'_>>) -> Result<(bundle::Header, Vec<bundle::WireRow>), ErrorKind> {
    let mut d = decoded.map_err(|e| e.kind())?;
    let rows = d.rows().collect::<syncline::Result<Vec<_>>>().map_err(|e| e.kind())?;
    Ok((d.header.clone(), rows))
}

fn same_either_way(bytes: &[u8], dir: &Path, what: &str) {
    let path = dir.join("case.bundle");
    std::fs::write(&path, bytes).unwrap();
    let in_memory = outcome(bundle::decode(bytes));
    let streamed = outcome(bundle::decode_file(&path, Limits::default()));
    assert_eq!(in_memory, streamed, "{what}");
}

fn vector_bundles() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors");
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    all.retain(|p| p.extension().is_some_and(|x| x == "bundle"));
    all.sort();
    all
}

#[test]
fn every_golden_and_hostile_bundle_decodes_alike_from_a_file() {
    let dir = TempDir::new().unwrap();
    let all = vector_bundles();
    assert!(all.len() > 50, "the vectors' bundles are found");
    for path in all {
        same_either_way(&std::fs::read(&path).unwrap(), dir.path(), &path.display().to_string());
    }
}

#[test]
fn every_truncation_and_flipped_byte_is_refused_alike() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    for i in 0..40 {
        a.execute("INSERT INTO todos(id, title) VALUES (?1, ?2)", &[Value::Integer(i), Value::Text(format!("todo {i}"))]).unwrap();
    }
    for compress in [false, true] {
        let (bytes, _) = a.generate_bundle_with(ExportOptions { peer: None, compress }, &mut |_, _| {}).unwrap();
        for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            same_either_way(&bytes[..cut], dir.path(), &format!("compress {compress}, cut at {cut}"));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        same_either_way(&longer, dir.path(), "a byte after the checksum");
        for at in (0..bytes.len()).step_by(11) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            same_either_way(&flipped, dir.path(), &format!("compress {compress}, flipped byte {at}"));
        }
    }
}

#[test]
fn a_file_import_applies_what_a_bytes_import_does() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute_batch(
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 20000) \
         INSERT INTO todos(id, title, done, body) SELECT x, 'todo ' || x, x % 2, hex(randomblob(40)) FROM i",
    )
    .unwrap();
    for compress in [false, true] {
        let path = dir.path().join(format!("all-{compress}.bundle"));
        let (bytes, _) = a.generate_bundle_with(ExportOptions { peer: None, compress }, &mut |_, _| {}).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let (by_file, by_bytes) =
            (replica(&dir, &format!("f{compress}"), Strategy::Lww), replica(&dir, &format!("b{compress}"), Strategy::Lww));
        let mut seen = 0;
        let report = by_file.import_bundle_file_with(&path, &mut |done, _| seen = done).unwrap();
        assert_eq!(report, by_bytes.import_bundle(&bytes).unwrap());
        assert_eq!(report.rows, 20_000);
        assert_eq!(seen, 20_000, "progress reaches the end");
        assert_eq!(state_hash(&by_file), state_hash(&by_bytes));
        assert_eq!(state_hash(&by_file), state_hash(&a));
    }
}

#[test]
fn a_file_that_changes_between_its_passes_is_refused_before_the_last_row() {
    let dir = TempDir::new().unwrap();
    let a = replica(&dir, "a", Strategy::Lww);
    a.execute_batch(
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 5000) \
         INSERT INTO todos(id, title) SELECT x, 'todo ' || printf('%06d', x) FROM i",
    )
    .unwrap();
    let bytes = a.generate_bundle(None).unwrap();
    let path = dir.path().join("moving.bundle");
    std::fs::write(&path, &bytes).unwrap();
    let mut decoded = bundle::decode_file(&path, Limits::default()).unwrap();
    // Another writer rewrites a title near the end (still valid MessagePack, same length).
    let at = bytes.windows(11).rposition(|w| w == b"todo 004999").unwrap();
    let mut changed = bytes.clone();
    changed[at + 10] = b'8';
    std::fs::write(&path, &changed).unwrap();
    let err = decoded.rows().find_map(|r| r.err()).expect("the change is caught");
    assert_eq!(err.kind(), ErrorKind::InvalidBundle);
    assert!(err.message().contains("changed while it was imported"), "{err}");
    // Through the engine the same file imports whole once it is consistent again, and a
    // missing file is an Io error that changes nothing.
    let b = replica(&dir, "b", Strategy::Lww);
    let before = state_hash(&b);
    let err = b.import_bundle_file(dir.path().join("missing.bundle")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(state_hash(&b), before);
}

#[test]
fn a_closed_engine_answers_closed_before_reading_a_bundle() {
    let dir = TempDir::new().unwrap();
    let b = replica(&dir, "b", Strategy::Lww);
    b.close().unwrap();
    assert_eq!(b.import_bundle(b"garbage").unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(b.import_bundle_file(dir.path().join("missing.bundle")).unwrap_err().kind(), ErrorKind::Closed);
}
