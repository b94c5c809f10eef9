//! Crash inputs found by the cargo-fuzz targets (fuzz/, run with scripts/fuzz.sh), replayed as
//! plain tests through the same checks the fuzzer ran (fuzz/src/checks.rs, included here).
//!
//! Inputs live in `tests/fuzz-cases/<target>/<name>` exactly as the fuzzer saw them (the first
//! byte picks the framing, see `checks::frame`). A case whose defect is not fixed yet is
//! `#[ignore = "fuzz crasher: ..."]`; fixing the defect means removing the `ignore`. Every file
//! of a target's folder that no test names is replayed by that target's `all_other_cases_*`
//! test, so a minimized crasher can be dropped in and is checked at once.

#[allow(clippy::all, clippy::pedantic)]
#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::PathBuf;

fn case_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-cases").join(target)
}

fn input(target: &str, name: &str) -> Vec<u8> {
    let path = case_dir(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every case file of `target` not in `named`, sorted.
fn other_cases(target: &str, named: &[&str]) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(case_dir(target)) else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".md") && !named.contains(&n.as_str()))
        .map(|n| {
            let bytes = input(target, &n);
            (n, bytes)
        })
        .collect();
    out.sort();
    out
}

fn decode(name: &str) {
    checks::check_decode(&checks::frame(&input("decode_bundle", name)));
}

fn import(name: &str) {
    checks::Replica::new().check_import(&checks::frame(&input("import_bundle", name)));
}

#[cfg(feature = "net")]
fn server(name: &str) {
    let s = checks::Server::start();
    s.check(&input("server_request", name));
}

#[cfg(feature = "net")]
fn client(name: &str) {
    let mut c = checks::Client::start();
    c.endless_cursor = true;
    c.check(&input("client_response", name));
}

/// Cases named by a test below (not replayed again by `all_other_cases_*`).
const DECODE_CASES: &[&str] = &[];
const IMPORT_CASES: &[&str] = &[];
const SERVER_CASES: &[&str] = &[];
const CLIENT_CASES: &[&str] = &[];

#[test]
fn all_other_cases_decode_bundle() {
    for (name, bytes) in other_cases("decode_bundle", DECODE_CASES) {
        eprintln!("decode_bundle/{name}");
        checks::check_decode(&checks::frame(&bytes));
    }
}

#[test]
fn all_other_cases_import_bundle() {
    let mut r = checks::Replica::new();
    for (name, bytes) in other_cases("import_bundle", IMPORT_CASES) {
        eprintln!("import_bundle/{name}");
        r.check_import(&checks::frame(&bytes));
    }
}

#[cfg(feature = "net")]
#[test]
fn all_other_cases_server_request() {
    let s = checks::Server::start();
    for (name, bytes) in other_cases("server_request", SERVER_CASES) {
        eprintln!("server_request/{name}");
        s.check(&bytes);
    }
}

#[cfg(feature = "net")]
#[test]
fn all_other_cases_client_response() {
    let mut c = checks::Client::start();
    c.endless_cursor = true;
    for (name, bytes) in other_cases("client_response", CLIENT_CASES) {
        eprintln!("client_response/{name}");
        c.check(&bytes);
    }
}

/// The harness itself: every golden bundle (the invalid ones too) passes the checks, as it is
/// and with its checksum recomputed.
#[test]
fn golden_vectors_pass_the_decode_and_import_checks() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors");
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "bundle")).collect();
    names.sort();
    let mut r = checks::Replica::new();
    for p in names {
        let b = std::fs::read(&p).unwrap();
        let mut raw = vec![0u8];
        raw.extend_from_slice(&b);
        let mut unsummed = vec![1u8];
        unsummed.extend_from_slice(&b[..b.len().saturating_sub(32)]);
        for input in [raw, unsummed] {
            let framed = checks::frame(&input);
            checks::check_decode(&framed);
            r.check_import(&framed);
        }
    }
}
