//! What every fuzz target checks, shared by the fuzz crate (`fuzz/src/lib.rs`) and the plain
//! regression tests (`core/tests/fuzz_regressions.rs`, which includes this file by path).
//!
//! Every check panics on a violation. Inputs are framed by [`frame`] first: its first byte picks
//! how much of the bundle frame the harness fixes up, so the fuzzer gets past the checksum and
//! the schema fingerprint and reaches the row decoder and the merge.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use syncline::bundle::{self, Contents, Header, TableDict};
use syncline::{EnableOptions, ErrorKind, Options, SiteId, SyncEngine};

/// The wall clock of every harness replica (ms), a minute after the golden vectors' clock, so
/// the vectors' bundles pass the drift check.
pub const CLOCK_MS: u64 = 1_700_000_060_000;

/// Schemas of the harness replicas: the golden vectors' tables.
pub const SCHEMA: &[(&str, &str)] = &[
    ("todos", "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, body TEXT)"),
    ("v", "CREATE TABLE v(id INTEGER PRIMARY KEY, x)"),
    ("tags", "CREATE TABLE tags(todo INTEGER NOT NULL, tag TEXT NOT NULL, note TEXT, PRIMARY KEY(todo, tag))"),
];

// ---------------------------------------------------------------------------------------------
// Framing

/// Turn a fuzz input into bundle bytes. First byte `m`, rest `r`:
/// - `m % 4 == 0`: `r` as it is;
/// - `m % 4 == 1`: `r` is a bundle without its checksum; the SHA-256 is appended;
/// - `m % 4 == 2`: `r` is `[header length: u16 BE][header][body]` (MessagePack as in the format,
///   body uncompressed); magic, version, lengths and checksum are written by the harness, and
///   the body is zlib-compressed if `m & 4`;
/// - `m % 4 == 3`: as 2, and the header's `schema` fingerprint and `rows` count are recomputed
///   from the body when both parse.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let Some((&m, rest)) = data.split_first() else {
        return Vec::new();
    };
    match m % 4 {
        0 => rest.to_vec(),
        1 => {
            let mut out = rest.to_vec();
            out.extend_from_slice(&Sha256::digest(rest));
            out
        }
        mode => {
            let (hlen, rest) = match rest {
                [a, b, tail @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), tail),
                _ => (0, rest),
            };
            let (header, body) = rest.split_at(hlen.min(rest.len()));
            let mut header = header.to_vec();
            if mode == 3 {
                if let Ok(mut h) = rmp_serde::from_slice::<Header>(&header) {
                    if let Some((tables, rows)) = body_prefix(body) {
                        h.schema = bundle::schema_fingerprint(&tables);
                        h.rows = rows;
                        header = rmp_serde::to_vec_named(&h).expect("header encodes");
                    }
                }
            }
            assemble(&header, body, m & 4 != 0)
        }
    }
}

/// The table dictionary and row count of an uncompressed body, if they parse.
fn body_prefix(body: &[u8]) -> Option<(Vec<TableDict>, u64)> {
    let mut rd = body;
    rmp::decode::read_array_len(&mut rd).ok()?;
    let tables: Vec<TableDict> = rmp_serde::from_read(&mut rd).ok()?;
    let _sites: Vec<serde_bytes::ByteBuf> = rmp_serde::from_read(&mut rd).ok()?;
    let rows = rmp::decode::read_array_len(&mut rd).ok()?;
    Some((tables, u64::from(rows)))
}

/// A bundle frame around `header` and `body` (compressed here if `compress`), checksum included.
pub fn assemble(header: &[u8], body: &[u8], compress: bool) -> Vec<u8> {
    let body = if compress {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(body).expect("vec write");
        z.finish().expect("vec write")
    } else {
        body.to_vec()
    };
    let mut out = Vec::with_capacity(16 + header.len() + 8 + body.len() + 32);
    out.extend_from_slice(bundle::MAGIC);
    out.extend_from_slice(&bundle::FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&(if compress { bundle::FLAG_DEFLATE } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The parts of a well-framed bundle: (flags, header bytes, body bytes as stored).
fn split_frame(bytes: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let flags = u16::from_be_bytes(bytes.get(10..12)?.try_into().ok()?);
    let hlen = u32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?) as usize;
    let header = bytes.get(16..16 + hlen)?;
    let at = 16 + hlen;
    let blen = u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?) as usize;
    let body = bytes.get(at + 8..at + 8 + blen)?;
    Some((flags, header, body))
}

// ---------------------------------------------------------------------------------------------
// decode_bundle

/// Decode, read every row; if all of it decodes, the bundle must be the canonical encoding of
/// what it holds: rows in strictly increasing canonical order, and re-encoding gives the same bytes (uncompressed bundles), or the same body and
/// a zlib stream that ends exactly at the end of the body (compressed ones).
pub fn check_decode(bytes: &[u8]) {
    let Ok(mut decoded) = bundle::decode(bytes) else {
        return;
    };
    let _ = decoded.header.sender();
    let _ = bundle::vv_from_wire(&decoded.header.vv);
    let _ = bundle::vv_from_wire(&decoded.header.base);
    let mut rows = Vec::new();
    for row in decoded.rows() {
        match row {
            Ok(r) => rows.push(r),
            Err(_) => return,
        }
    }
    for pair in rows.windows(2) {
        assert!(
            bundle::canonical_key(&pair[0]) < bundle::canonical_key(&pair[1]),
            "not canonical: rows out of canonical order or repeated ({:?} then {:?})",
            pair[0].pk,
            pair[1].pk
        );
    }
    let Some((flags, _, stored_body)) = split_frame(bytes) else {
        panic!("a bundle that decodes has no readable frame");
    };
    let contents = Contents { header: decoded.header.clone(), tables: decoded.tables.clone(), sites: decoded.sites.clone(), rows };
    let again = bundle::encode(&contents, false);
    if flags & bundle::FLAG_DEFLATE == 0 {
        let part = |b: &[u8]| split_frame(b).map(|(_, h, body)| (h.to_vec(), body.to_vec())).unwrap_or_default();
        let ((h1, b1), (h2, b2)) = (part(bytes), part(&again));
        let (what, d) = if h1 != h2 { ("header", diff(&h1, &h2)) } else { ("body", diff(&b1, &b2)) };
        assert!(again == bytes, "not canonical: the bundle decodes fully but re-encodes to other bytes ({what}: {d})");
        return;
    }
    let mut z = flate2::bufread::ZlibDecoder::new(stored_body);
    let mut inflated = Vec::new();
    z.read_to_end(&mut inflated).expect("the decoder inflated this body");
    let left = z.into_inner().len();
    assert!(left == 0, "not canonical: {left} bytes after the zlib stream are accepted");
    let Some((_, header, _)) = split_frame(bytes) else { unreachable!() };
    let plain = assemble(header, &inflated, false);
    let again_body = split_frame(&again).map_or(&[][..], |(_, _, b)| b);
    assert!(
        again == plain,
        "not canonical: the compressed bundle decodes fully but its body re-encodes to other bytes (body: {})",
        diff(&inflated, again_body)
    );
}

/// Where two encodings part: offset and the next bytes of each.
fn diff(got: &[u8], canonical: &[u8]) -> String {
    let at = got.iter().zip(canonical).position(|(a, b)| a != b).unwrap_or(got.len().min(canonical.len()));
    let show = |b: &[u8]| b.iter().skip(at).take(12).map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{} vs {} bytes; first difference at offset {at}: input {} vs canonical {}",
        got.len(),
        canonical.len(),
        show(got),
        show(canonical)
    )
}

// ---------------------------------------------------------------------------------------------
// A harness replica

/// A panic on a server or helper thread raises this flag, so a regression test sees a panic
/// that only killed a server task (libFuzzer's own hook aborts on any panic anyway).
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Chain a panic hook that raises [`PANICKED`] before the previous hook runs (libFuzzer's
/// aborts the process).
pub fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Only panics of the server's and helper threads (test threads fail on their own,
            // and cargo test runs other tests in parallel in this process).
            let name = std::thread::current().name().map(str::to_owned);
            if !matches!(name.as_deref(), Some(n) if !n.starts_with("syncline")) {
                PANICKED.store(true, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Fail if any thread panicked since the last call.
pub fn assert_no_panic(what: &str) {
    assert!(!PANICKED.swap(false, Ordering::SeqCst), "a thread panicked while {what}");
}

/// A replica on a temporary file (the vectors' tables, three local rows), restored from a
/// pristine copy of its file after each input that changed it.
pub struct Replica {
    _dir: tempfile::TempDir,
    path: PathBuf,
    engine: Option<SyncEngine>,
    pristine: Vec<u8>,
    /// `state_hash()` and rows of the pristine state.
    hash: String,
    rows: String,
}

/// The site id of harness replicas that receive (not one of the vectors').
pub fn own_site() -> SiteId {
    "c0000000000000000000000000000000".parse().expect("site id")
}

/// Create a replica database at `path` with site `site`.
pub fn create_replica(path: &std::path::Path, site: SiteId) -> SyncEngine {
    let e = SyncEngine::open(path, Options::default()).expect("open");
    e.set_site_id(site).expect("site id");
    e.set_manual_clock(Some(CLOCK_MS)).expect("clock");
    for (table, ddl) in SCHEMA {
        e.execute_batch(ddl).expect("schema");
        e.enable_sync(table, EnableOptions::default()).expect("enable");
    }
    e.execute_batch(
        "INSERT INTO todos VALUES (1, 'milk', 0, NULL); INSERT INTO todos VALUES (2, 'eggs', 1, 'x');
         INSERT INTO todos VALUES (100001, 'remote range', 0, 'b'); INSERT INTO v VALUES (1, 1.5);
         INSERT INTO tags VALUES (1, 'shop', NULL);",
    )
    .expect("rows");
    e.status().expect("status");
    e
}

/// Every synced table's rows, as text (NaN-proof equality).
pub fn dump_rows(e: &SyncEngine) -> String {
    SCHEMA
        .iter()
        .map(|(t, _)| format!("{t}: {:?}\n", e.query(&format!("SELECT * FROM {t} ORDER BY 1, 2"), &[]).expect("query").rows))
        .collect()
}

impl Default for Replica {
    fn default() -> Self {
        Replica::new()
    }
}

impl Replica {
    pub fn new() -> Replica {
        watch_panics();
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("replica.db");
        let e = create_replica(&path, own_site());
        let (hash, rows) = (e.state_hash().expect("hash"), dump_rows(&e));
        drop(e);
        let pristine = std::fs::read(&path).expect("read db");
        let mut r = Replica { _dir: dir, path, engine: None, pristine, hash, rows };
        r.reopen();
        r
    }

    pub fn engine(&self) -> &SyncEngine {
        self.engine.as_ref().expect("engine")
    }

    fn reopen(&mut self) {
        self.engine = Some(SyncEngine::open(&self.path, Options::default()).expect("reopen"));
    }

    /// Put the pristine file back.
    pub fn restore(&mut self) {
        self.engine = None;
        for ext in ["-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(ext);
            let _ = std::fs::remove_file(p);
        }
        std::fs::write(&self.path, &self.pristine).expect("restore db");
        self.reopen();
    }

    /// Fail unless the replica is in its pristine state.
    pub fn assert_pristine(&self, what: &str) {
        let e = self.engine();
        let hash = e.state_hash().unwrap_or_else(|err| panic!("{what}, and then state_hash fails: {err}"));
        assert_eq!(dump_rows(e), self.rows, "{what}, yet the rows changed");
        assert_eq!(hash, self.hash, "{what}, yet the state hash changed");
    }

    /// Fail unless the replica still works: status, export (which decodes), state hash, local
    /// writes (a delete of every row, then status and export again).
    pub fn assert_works(&self, what: &str) {
        let e = self.engine();
        let fail = |step: &str, err: &dyn std::fmt::Display| -> ! { panic!("{what}, and then {step} fails: {err}") };
        e.status().unwrap_or_else(|err| fail("status()", &err));
        let exported = e.generate_bundle(None).unwrap_or_else(|err| fail("generate_bundle(None)", &err));
        let mut decoded = bundle::decode(&exported).unwrap_or_else(|err| fail("decoding the exported bundle", &err));
        for row in decoded.rows() {
            row.unwrap_or_else(|err| fail("decoding a row of the exported bundle", &err));
        }
        e.state_hash().unwrap_or_else(|err| fail("state_hash()", &err));
        let bad = e
            .query("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\\_syncline\\_shadow\\_%' ESCAPE '\\'", &[])
            .unwrap_or_else(|err| fail("listing shadow tables", &err))
            .rows;
        for name in bad {
            let syncline::Value::Text(name) = &name[0] else { continue };
            let n = e
                .query(
                    &format!(
                        "SELECT count(*) FROM \"{name}\" WHERE typeof(cl) != 'integer' OR cl < 1 \
                         OR typeof(rh) != 'integer' OR rh < 0 OR typeof(mh) != 'integer' OR mh < 0"
                    ),
                    &[],
                )
                .unwrap_or_else(|err| fail("reading a shadow table", &err))
                .rows;
            assert_eq!(format!("{:?}", n[0][0]), "Integer(0)", "{what}, and {name} holds a causal length or stamp out of range");
        }
        for (t, _) in SCHEMA {
            e.execute(&format!("DELETE FROM {t}"), &[]).unwrap_or_else(|err| fail("a local DELETE", &err));
        }
        e.status().unwrap_or_else(|err| fail("status() after a local DELETE", &err));
        e.generate_bundle(None).unwrap_or_else(|err| fail("generate_bundle(None) after a local DELETE", &err));
        e.state_hash().unwrap_or_else(|err| fail("state_hash() after a local DELETE", &err));
    }

    /// import_bundle: Err changes nothing and is never a raw SQLite error; Ok leaves a working
    /// replica, a second import of the same bundle is accepted and changes nothing, and a
    /// bundle claiming to come from this replica itself, a NULL key or a row repeated in one
    /// bundle is refused.
    pub fn check_import(&mut self, bytes: &[u8]) {
        let result = self.engine().import_bundle(bytes);
        assert_no_panic("importing");
        match result {
            Err(e) => {
                assert!(e.kind() != ErrorKind::Sqlite, "an import failed with a raw SQLite error: {e}");
                self.assert_pristine(&format!("an import failed ({e})"));
            }
            Ok(_) => {
                let mut decoded = bundle::decode(bytes).expect("an accepted bundle decodes");
                assert!(decoded.header.site != own_site().0.to_vec(), "a bundle whose sender is the receiver itself was accepted");
                let mut keys = std::collections::BTreeSet::new();
                for row in decoded.rows() {
                    let row = row.expect("the rows of an accepted bundle decode");
                    assert!(!row.pk.contains(&syncline::Value::Null), "a row with a NULL key was accepted");
                    assert!(
                        keys.insert(bundle::canonical_key(&row)),
                        "a bundle holding one row twice was accepted (table #{}, key {:?})",
                        row.table,
                        row.pk
                    );
                }
                let hash = self.engine().state_hash().unwrap_or_else(|e| panic!("an import succeeded, then state_hash fails: {e}"));
                match self.engine().import_bundle(bytes) {
                    Ok(_) => {
                        let again = self.engine().state_hash().expect("hash");
                        assert_eq!(again, hash, "importing the same bundle a second time changed the replica");
                    }
                    Err(e) => panic!("a bundle imported once fails the second time: {e}"),
                }
                self.assert_works("an import succeeded");
                self.restore();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

/// Send `request` on a new connection and read one answer: until its `content-length` bytes
/// of body arrived or EOF. If `patience` passes without data, the write side is shut (hyper
/// then drops an unfinished request at once, and the answer to a finished one too) and the
/// rest is read with a 2 s timeout.
pub fn http_exchange(addr: std::net::SocketAddr, request: &[u8], patience: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(patience))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    // The server may answer (and close) before reading everything, e.g. a 413.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let mut closed = false;
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| out.len() >= end + 4 + len) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) && !closed => {
                closed = true;
                let _ = s.shutdown(std::net::Shutdown::Write);
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
            }
            Err(e) if out.is_empty() && !closed => return Err(e),
            Err(_) => break,
        }
    }
    Ok(out)
}

/// Status code and body of a raw HTTP/1.1 answer (body as sent, chunking not undone).
pub fn parse_response(raw: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &raw[..end];
    let code = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    Some((code, head, &raw[end + 4..]))
}

/// Fail if a 500 answer leaks SQL or internal table names.
pub fn assert_no_leak(raw: &[u8]) {
    let Some((500, _, body)) = parse_response(raw) else { return };
    let text = String::from_utf8_lossy(body).to_lowercase();
    for word in ["_syncline", "sqlite", "sql ", "select ", "insert ", "constraint", "no such"] {
        assert!(!text.contains(word), "a 500 answer leaks internals ({word:?}): {}", String::from_utf8_lossy(body));
    }
}

// ---------------------------------------------------------------------------------------------
// server_request

/// A sync server on 127.0.0.1 (the vectors' tables, a few rows, no tokens, 1 MiB body limit).
#[cfg(feature = "net")]
pub struct Server {
    _dir: tempfile::TempDir,
    pub handle: syncline::net::ServerHandle,
}

#[cfg(feature = "net")]
impl Server {
    pub fn start() -> Server {
        watch_panics();
        let dir = tempfile::TempDir::new().expect("tempdir");
        let engine = create_replica(&dir.path().join("server.db"), "d0000000000000000000000000000000".parse().expect("site"));
        let config = syncline::net::ServerConfig { max_body: 1 << 20, readers: 1, ..Default::default() };
        let handle = syncline::net::ServerHandle::start(std::sync::Arc::new(engine), "127.0.0.1:0".parse().expect("addr"), config)
            .expect("server starts");
        Server { _dir: dir, handle }
    }

    /// First byte `m`, rest `r`:
    /// - `m % 3 == 0`: `r` is sent as it is;
    /// - `m % 3 == 1`: `POST /v1/sync`; `r = [n][n bytes of extra header lines][bundle input]`,
    ///   the bundle framed by [`frame`];
    /// - `m % 3 == 2`: `GET /v1/info` with `r` as extra header lines.
    pub fn request(data: &[u8]) -> Vec<u8> {
        let Some((&m, rest)) = data.split_first() else {
            return Vec::new();
        };
        match m % 3 {
            0 => rest.to_vec(),
            1 => {
                let (n, rest) = rest.split_first().map_or((0, rest), |(n, r)| (usize::from(*n), r));
                let (extra, input) = rest.split_at(n.min(rest.len()));
                let body = frame(input);
                let mut out = format!(
                    "POST /v1/sync HTTP/1.1\r\nHost: fuzz\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                    syncline::net::BUNDLE_CONTENT_TYPE,
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(extra);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&body);
                out
            }
            _ => {
                let mut out = b"GET /v1/info HTTP/1.1\r\nHost: fuzz\r\n".to_vec();
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n\r\n");
                out
            }
        }
    }

    /// Send one fuzzed request; the server must not panic, must not leak internals in a 500,
    /// and must still answer a valid `/v1/info`.
    pub fn check(&self, data: &[u8]) {
        let addr = self.handle.addr();
        if let Ok(raw) = http_exchange(addr, &Server::request(data), Duration::from_millis(50)) {
            assert_no_leak(&raw);
        }
        assert_no_panic("serving a request");
        self.assert_info();
    }

    /// `GET /v1/info` answers 200 with protocol 1 and the server's site id.
    pub fn assert_info(&self) {
        let raw =
            http_exchange(self.handle.addr(), b"GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("the server stopped answering /v1/info: {e}"));
        let (code, _, body) = parse_response(&raw).unwrap_or_else(|| panic!("malformed /v1/info answer: {raw:?}"));
        let body = String::from_utf8_lossy(body);
        assert!(
            code == 200 && body.contains("\"protocol\":1") && body.contains("d0000000000000000000000000000000"),
            "the server no longer answers a valid /v1/info: {code} {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// client_response

/// What the fake server answers to the next `POST /v1/sync` requests.
#[derive(Default)]
struct Script {
    status: u16,
    body: Vec<u8>,
    /// Pages answered with a `Syncline-Cursor` header (the rest have none).
    cursor_pages: u64,
    cursor: String,
    /// `POST /v1/sync` requests answered since the script was set.
    posts: u64,
}

/// Most sync requests one pass may make against the fake server before the harness calls its
/// paging unbounded (the fake server stops sending a cursor after this many).
pub const MAX_POSTS: u64 = 64;

/// A client replica and a fake sync server (a std TcpListener on a thread) whose answers to
/// `POST /v1/sync` come from the fuzz input.
#[cfg(feature = "net")]
pub struct Client {
    replica: Replica,
    client: syncline::net::SyncClient,
    script: std::sync::Arc<std::sync::Mutex<Script>>,
    /// Honour the input's "cursor on every page" bit (`f & 0x20`). Off by default, because
    /// the client does not bound its paging yet and nearly every input would find that; set
    /// `SYNCLINE_FUZZ_ENDLESS_CURSOR=1` to fuzz with it.
    pub endless_cursor: bool,
}

#[cfg(feature = "net")]
fn serve_fake(stream: std::net::TcpStream, script: std::sync::Arc<std::sync::Mutex<Script>>) {
    let mut stream = stream;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    loop {
        // One request: headers, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 16 << 10];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 16 << 10];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        let response = if head.starts_with("get /v1/info") {
            let body = r#"{"protocol": 1, "site_id": "d0000000000000000000000000000000", "max_body": 33554432, "max_ops": 200000, "page_rows": 5000}"#;
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
        } else if head.starts_with("post /v1/sync") {
            let mut s = script.lock().unwrap_or_else(|p| p.into_inner());
            s.posts += 1;
            let cursor = if s.posts <= s.cursor_pages.min(MAX_POSTS) {
                format!("{}: {}\r\n", syncline::net::CURSOR_HEADER, s.cursor)
            } else {
                String::new()
            };
            let ctype = if s.status == 200 { syncline::net::BUNDLE_CONTENT_TYPE } else { "application/json" };
            let mut out = format!(
                "HTTP/1.1 {} X\r\ncontent-type: {ctype}\r\n{cursor}{}: 1\r\ncontent-length: {}\r\n\r\n",
                s.status,
                syncline::net::APPLIED_HEADER,
                s.body.len()
            )
            .into_bytes();
            out.extend_from_slice(&s.body);
            out
        } else {
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()
        };
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

#[cfg(feature = "net")]
impl Client {
    pub fn start() -> Client {
        let replica = Replica::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let script = std::sync::Arc::new(std::sync::Mutex::new(Script::default()));
        let shared = script.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let script = shared.clone();
                std::thread::spawn(move || serve_fake(stream, script));
            }
        });
        let options = syncline::net::SyncOptions { timeout: Duration::from_secs(20), ..Default::default() };
        let client = syncline::net::SyncClient::new(&url, None, options).expect("client");
        let endless_cursor = std::env::var_os("SYNCLINE_FUZZ_ENDLESS_CURSOR").is_some_and(|v| v == "1");
        Client { replica, client, script, endless_cursor }
    }

    /// First byte `f`, rest `r`: the answer's status is `[200 x5, 400, 413, 500][f & 7]` (a
    /// non-200 answer carries `r` as its body, a 200 one `frame(r)`), the first `(f >> 3) & 3`
    /// pages carry a cursor (`f & 0x20`: every page, up to [`MAX_POSTS`]), whose value is the
    /// hex of `r`'s first 8 bytes.
    pub fn check(&mut self, data: &[u8]) {
        let Some((&f, rest)) = data.split_first() else { return };
        let status = [200, 200, 200, 200, 200, 400, 413, 500][usize::from(f & 7)];
        {
            let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
            s.status = status;
            s.body = if status == 200 { frame(rest) } else { rest.to_vec() };
            s.cursor_pages = if f & 0x20 != 0 && self.endless_cursor { u64::MAX } else { u64::from((f >> 3) & 3) };
            s.cursor = rest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            if s.cursor.is_empty() {
                s.cursor.push_str("00");
            }
            s.posts = 0;
        }
        let result = self.client.sync(self.replica.engine());
        assert_no_panic("syncing");
        let posts = self.script.lock().unwrap_or_else(|p| p.into_inner()).posts;
        assert!(posts <= MAX_POSTS, "the client's paging does not stop: {posts} sync requests in one pass");
        match result {
            Err(e) => {
                assert!(e.kind() != ErrorKind::Sqlite, "a sync failed with a raw SQLite error: {e}");
                if posts <= 1 {
                    self.replica.assert_pristine(&format!("a sync failed on its first page ({e})"));
                } else {
                    self.replica.restore();
                }
            }
            Ok(_) => {
                self.replica.assert_works("a sync succeeded");
                self.replica.restore();
            }
        }
    }
}
