//! Crash inputs found by the cargo-fuzz targets (fuzz/, run with scripts/fuzz.sh), replayed as
//! plain tests through the same checks the fuzzer ran (fuzz/src/checks.rs, included here).
//!
//! Inputs live in `tests/fuzz-cases/<target>/<name>` exactly as the fuzzer saw them (the first
//! byte picks the framing, see `checks::frame`). Every crasher found so far is fixed (issue 12)
//! and its test runs; a new crasher starts as `#[ignore = "fuzz crasher: ..."]` until the fix
//! lands, which removes the `ignore`. Every file
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
#[allow(dead_code)] // for the first named server_request case
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
const DECODE_CASES: &[&str] = &[
    "rows-out-of-order-as-found",
    "str-not-utf8-compressed",
    "str-with-invalid-utf8",
    "row-twice",
    "float32-value",
    "bytes-after-zlib-stream",
];
const IMPORT_CASES: &[&str] =
    &["causal-length-u64-max", "causal-length-i64-max", "row-twice", "null-key", "null-in-composite-key", "row-twice-as-found"];
#[cfg(feature = "net")]
const SERVER_CASES: &[&str] = &[];
#[cfg(feature = "net")]
const CLIENT_CASES: &[&str] = &["endless-cursor"];

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

// ---------------------------------------------------------------------------------------------
// decode_bundle

/// The crasher as decode_bundle found it (2409 bytes; `cargo fuzz tmin` cannot shrink it,
/// every deletion breaks its framing): 10-a-all.bundle in framing mode 7 (split header and
/// body, compressed by the harness) whose text value "unicode ✓ ..." lost its UTF-8 validity
/// to a mutation (`bc 75 6e 69 ...`, body offset 68). It decodes as a blob and re-encodes as
/// `c4 1c 75 6e ...`.
#[test]
fn decode_refuses_a_str_that_is_not_utf8_as_found() {
    decode("str-not-utf8-compressed");
}

/// The same defect reduced by hand: 01-a-all.bundle with the text value "milk" changed to the MessagePack str `a4 6d 69 6c ff`
/// (not UTF-8), framing mode 3. rmp-serde hands a str that is not UTF-8 to the visitor as
/// bytes, so `Value` decodes it as a blob, which re-encodes as `c4 04 ...`: two encodings of
/// one bundle are accepted, and the receiver stores a blob where the sender sent a string.
#[test]
fn decode_refuses_a_str_that_is_not_utf8() {
    decode("str-with-invalid-utf8");
}

/// 01-a-all.bundle with row 1 repeated (the copy stamped 1 later), framing mode 3: the
/// decoder accepts rows out of canonical order and repeated (issue 12 item 9).
#[test]
fn decode_refuses_a_row_twice() {
    decode("row-twice");
}

/// Found by decode_bundle (second run; 10-a-all.bundle in framing mode 7, mutated, 2409
/// bytes): the rows come in the order key 24, then key 9. The decoder checks no row order, so
/// one set of rows has many accepted encodings (spec: rows in canonical order).
#[test]
fn decode_refuses_rows_out_of_canonical_order_as_found() {
    decode("rows-out-of-order-as-found");
}

/// 01-a-all.bundle with the value "milk" replaced by the float32 `ca 3f c0 00 00` (1.5),
/// framing mode 3: accepted, re-encodes as float64 (issue 12 item 10).
#[test]
fn decode_refuses_a_float32_value() {
    decode("float32-value");
}

/// 01-a-all.bundle compressed, with `junk` after the zlib stream, framing mode 1 (checksum
/// appended by the harness): accepted (issue 12 item 10).
#[test]
fn decode_refuses_bytes_after_the_zlib_stream() {
    decode("bytes-after-zlib-stream");
}

// ---------------------------------------------------------------------------------------------
// import_bundle

/// 01-a-all.bundle with the first row's causal length `01` replaced by `cf ff ff ff ff ff ff
/// ff ff` (2^64 - 1), framing mode 3 (issue 12 item 1; made by hand to check the harness).
#[test]
fn import_refuses_causal_length_u64_max() {
    import("causal-length-u64-max");
}

/// As above with `cf 7f ff ff ff ff ff ff ff` (2^63 - 1): after a local DELETE the causal
/// length turns REAL and status, export and state hash fail (issue 12 item 1).
#[test]
fn import_refuses_causal_length_i64_max() {
    import("causal-length-i64-max");
}

/// The same bundle imported into the harness replica (which holds row 1): accepted.
#[test]
fn import_refuses_a_row_twice() {
    import("row-twice");
}

/// 01-a-all.bundle with row 1's key `[1]` replaced by `[nil]`, framing mode 3: for an
/// INTEGER PRIMARY KEY table the row lands under the next rowid (issue 12 item 8).
#[test]
fn import_refuses_a_null_key() {
    import("null-key");
}

/// The repeated-row crasher as import_bundle found it (10-a-all.bundle in framing mode 7,
/// mutated; 2409 bytes).
#[test]
fn import_refuses_a_row_twice_as_found() {
    import("row-twice-as-found");
}

/// A hand-made bundle (framing mode 3, 01-a-all's header) with one `tags` row keyed
/// `[1, nil]`: accepted, and the row is stored with a NULL in its composite primary key
/// (SQLite allows NULL in a rowid table's non-integer primary key) (issue 12 item 8).
#[test]
fn import_refuses_a_null_in_a_composite_key() {
    import("null-in-composite-key");
}

// ---------------------------------------------------------------------------------------------
// client_response

/// Input: flag byte 0x20 (status 200, a `Syncline-Cursor` on every page), then the golden
/// bundle 01-a-all.bundle as it is. The fake server keeps sending a cursor; the client keeps
/// asking (`SyncClient::pass_inner` loops while the answer carries a cursor) until the harness
/// stops sending one after 64 pages. A hostile or broken server can keep a client busy forever.
#[cfg(feature = "net")]
#[test]
fn client_stops_paging_behind_an_endless_cursor() {
    client("endless-cursor");
}
