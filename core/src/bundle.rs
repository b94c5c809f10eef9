//! Bundle format v1 (normative text: spec/bundle-format.md): framing, header, dictionary body,
//! rows and cells, SHA-256 checksum, optional zlib compression of the body.
//!
//! Encoding is canonical: equal inputs give byte-identical bundles. Decoding verifies the frame
//! and checksum first and then yields rows one at a time, so memory stays bounded.

use crate::error::{Error, Result};
use crate::site::SiteId;
use crate::value::Value;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{Read, Write};

/// The eight magic bytes every bundle starts with.
pub const MAGIC: &[u8; 8] = b"SYNCLINE";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Flag bit: the body is zlib-compressed (RFC 1950).
pub const FLAG_DEFLATE: u16 = 1;
/// Flag bits reserved for signatures (bit 1) and encryption (bit 2); refused until specified.
pub const FLAGS_RESERVED: u16 = !FLAG_DEFLATE;
/// Largest body, compressed or not, that a reader accepts in memory (1 GiB).
pub const MAX_BODY: u64 = 1 << 30;
/// Largest body a reader accepts in a bundle file, which it streams (1 TiB), and the most a
/// compressed one may inflate to there.
pub const MAX_FILE_BODY: u64 = 1 << 40;
/// Largest causal length a receiver adopts (2^62): far beyond any number of deletes and
/// re-inserts, with room for every local one after it, so a row's causal length always stays
/// a SQLite integer. A bundle may carry up to 2^63 - 1; a row beyond 2^62 is rejected (kept in
/// `_syncline_rejected`) and the rest of its bundle applies.
pub const MAX_CL: u64 = 1 << 62;
/// Largest stamp, version-vector entry or stamp bound a bundle may carry (2^63 - 1): stamps
/// are stored as SQLite integers.
pub const MAX_STAMP: u64 = i64::MAX as u64;
const PREFIX: usize = 8 + 2 + 2 + 4;
const CHECKSUM: usize = 32;

/// The bundle header: who sent it, what they had, what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    #[serde(with = "serde_bytes")]
    pub site: Vec<u8>,
    /// Sender's version vector, sorted by site id.
    pub vv: Vec<VvEntry>,
    /// The version vector this delta was computed against (what the sender knew of the receiver).
    pub base: Vec<VvEntry>,
    /// SHA-256 of the MessagePack encoding of the body's table dictionary.
    #[serde(with = "serde_bytes")]
    pub schema: Vec<u8>,
    pub rows: u64,
    pub changes: u64,
    pub min_hlc: u64,
    pub max_hlc: u64,
    /// For a compressed body: its size once inflated (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inflated: Option<u64>,
    /// Schema migrations the receiver lacks, applied before the rows (absent when there are
    /// none, so a bundle without migrations is byte-identical to one from an older build;
    /// spec/schema-evolution.md §2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Vec<WireMigration>>,
}

/// One migration on the wire: `[kind, table, column, declared type, default, hlc, site id]`.
/// The only kind is `"add_column"`. Sorted by (hlc, site id), no two alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMigration(pub String, pub String, pub String, pub String, pub Value, pub u64, #[serde(with = "serde_bytes")] pub Vec<u8>);

/// The one migration kind this format knows.
pub const ADD_COLUMN: &str = "add_column";

/// One version-vector entry: (site id, newest stamp covered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VvEntry(#[serde(with = "serde_bytes")] pub Vec<u8>, pub u64);

impl Header {
    pub fn sender(&self) -> Result<SiteId> {
        SiteId::from_slice(&self.site).map_err(|_| Error::invalid_bundle("header site id is not 16 bytes"))
    }
}

/// Parse a wire version vector, refusing malformed or repeated site ids.
pub fn vv_from_wire(entries: &[VvEntry]) -> Result<Vec<(SiteId, u64)>> {
    let mut out: Vec<(SiteId, u64)> = Vec::with_capacity(entries.len());
    for VvEntry(site, hlc) in entries {
        let site = SiteId::from_slice(site).map_err(|_| Error::invalid_bundle("version vector site id is not 16 bytes"))?;
        if out.last().is_some_and(|(prev, _)| *prev >= site) {
            return Err(Error::invalid_bundle("version vector is not sorted by site id"));
        }
        out.push((site, *hlc));
    }
    Ok(out)
}

/// One table of the body's dictionary: its name, key columns (key order) and other columns
/// (sorted by name). Cells refer to columns by index into `cols`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDict(pub String, pub Vec<String>, pub Vec<String>);

/// One row entry: table index, key values, causal length, row stamp, cells. On the wire:
/// `[table, [key...], cl, hlc - header.min_hlc, site, cells...]` (cells flat, see [`WireCell`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WireRow {
    pub table: u32,
    pub pk: Vec<Value>,
    pub cl: u64,
    pub hlc: u64,
    pub site: u32,
    pub cells: Vec<WireCell>,
}

/// One cell: column index, value and stamp. On the wire a cell with its row's stamp is
/// `col, value`; any other is `-(col + 1), value, hlc - row hlc, site`.
#[derive(Debug, Clone, PartialEq)]
pub struct WireCell {
    pub col: u32,
    pub value: Value,
    pub hlc: u64,
    pub site: u32,
}

/// A row as written: its stamp as an offset from the header's `min_hlc`, then its cells flat.
struct RowOut<'a>(&'a WireRow, u64);

impl Serialize for RowOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (row, min_hlc) = (self.0, self.1);
        let explicit = row.cells.iter().filter(|c| c.hlc != row.hlc || c.site != row.site).count();
        let mut seq = s.serialize_seq(Some(5 + 2 * row.cells.len() + 2 * explicit))?;
        seq.serialize_element(&row.table)?;
        seq.serialize_element(&row.pk)?;
        seq.serialize_element(&row.cl)?;
        seq.serialize_element(&(row.hlc - min_hlc))?;
        seq.serialize_element(&row.site)?;
        for c in &row.cells {
            if c.hlc == row.hlc && c.site == row.site {
                seq.serialize_element(&i64::from(c.col))?;
                seq.serialize_element(&c.value)?;
            } else {
                seq.serialize_element(&(-1 - i64::from(c.col)))?;
                seq.serialize_element(&c.value)?;
                seq.serialize_element(&(c.hlc as i64 - row.hlc as i64))?; // stamps are below 2^63 (stored as SQLite integers)
                seq.serialize_element(&c.site)?;
            }
        }
        seq.end()
    }
}

/// A cell as read: (column, value, explicit (hlc delta, site) when it differs from the row's).
type CellIn = (u32, Value, Option<(i64, u32)>);

/// A row as read: stamps still relative, checked and resolved by [`Decoded::read_row`].
struct RowIn {
    table: u32,
    pk: Vec<Value>,
    cl: u64,
    offset: u64,
    site: u32,
    cells: Vec<CellIn>,
}

impl<'de> Deserialize<'de> for RowIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RowIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row [table, key, causal length, hlc offset, site, cells...]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<RowIn, A::Error> {
                let missing = |i| de::Error::invalid_length(i, &"a complete row");
                let table = a.next_element()?.ok_or_else(|| missing(0))?;
                let pk = a.next_element()?.ok_or_else(|| missing(1))?;
                let cl = a.next_element()?.ok_or_else(|| missing(2))?;
                let offset = a.next_element()?.ok_or_else(|| missing(3))?;
                let site = a.next_element()?.ok_or_else(|| missing(4))?;
                let mut cells = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096) / 2);
                while let Some(tag) = a.next_element::<i64>()? {
                    let value = a.next_element()?.ok_or_else(|| missing(5))?;
                    if tag >= 0 {
                        let col = u32::try_from(tag).map_err(|_| de::Error::custom("column index out of range"))?;
                        cells.push((col, value, None));
                    } else {
                        let col = u32::try_from(-1 - tag).map_err(|_| de::Error::custom("column index out of range"))?;
                        let delta = a.next_element()?.ok_or_else(|| missing(6))?;
                        let s = a.next_element()?.ok_or_else(|| missing(7))?;
                        cells.push((col, value, Some((delta, s))));
                    }
                }
                Ok(RowIn { table, pk, cl, offset, site, cells })
            }
        }
        d.deserialize_seq(V)
    }
}

fn msgpack_err(e: impl fmt::Display) -> Error {
    Error::invalid_bundle(format!("malformed MessagePack: {e}"))
}

/// The error of an item that ends before it is complete: only then may more of a compressed
/// body complete it (any other malformation is final at once).
const TRUNCATED: &str = "malformed MessagePack: an item ends before it is complete";

fn eof(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
}

fn read_err(e: rmp_serde::decode::Error) -> Error {
    use rmp_serde::decode::Error as E;
    match &e {
        E::InvalidMarkerRead(io) | E::InvalidDataRead(io) if eof(io) => Error::invalid_bundle(TRUNCATED),
        _ => msgpack_err(e),
    }
}

fn len_err(e: rmp::decode::ValueReadError) -> Error {
    use rmp::decode::ValueReadError as E;
    match &e {
        E::InvalidMarkerRead(io) | E::InvalidDataRead(io) if eof(io) => Error::invalid_bundle(TRUNCATED),
        _ => msgpack_err(e),
    }
}

/// Fingerprint of a table dictionary.
pub fn schema_fingerprint(tables: &[TableDict]) -> Vec<u8> {
    let bytes = rmp_serde::to_vec(tables).expect("dictionary encodes");
    Sha256::digest(bytes).to_vec()
}

/// Everything a bundle carries, ready to encode.
pub struct Contents {
    pub header: Header,
    pub tables: Vec<TableDict>,
    pub sites: Vec<SiteId>,
    /// Rows in canonical order (see [`canonical_key`]).
    pub rows: Vec<WireRow>,
}

/// The canonical sort key of a row: table index, then the MessagePack bytes of its key array.
pub fn canonical_key(row: &WireRow) -> (u32, Vec<u8>) {
    (row.table, rmp_serde::to_vec(&row.pk).expect("values encode"))
}

/// A bundle from `site` of these rows (any order; sites and columns as indices into `sites`
/// and `tables`), with no version vectors: its header's counts, stamp range and fingerprint
/// computed, the rows put in canonical order.
pub fn assemble(site: SiteId, tables: Vec<TableDict>, sites: Vec<SiteId>, mut rows: Vec<WireRow>) -> Vec<u8> {
    rows.sort_by_key(canonical_key);
    let stamps = rows.iter().flat_map(|r| std::iter::once(r.hlc).chain(r.cells.iter().map(|c| c.hlc)));
    let (min_hlc, max_hlc) = stamps.fold((u64::MAX, 0), |(lo, hi), h| (lo.min(h), hi.max(h)));
    let header = Header {
        site: site.0.to_vec(),
        vv: Vec::new(),
        base: Vec::new(),
        schema: schema_fingerprint(&tables),
        rows: rows.len() as u64,
        changes: rows.iter().map(|r| 1 + r.cells.len() as u64).sum(),
        min_hlc: if rows.is_empty() { 0 } else { min_hlc },
        max_hlc,
        inflated: None,
        migrations: None,
    };
    encode(&Contents { header, tables, sites, rows }, false)
}

/// Encode a bundle (the header's `inflated` is set here: the body's size when compressed).
pub fn encode(c: &Contents, compress: bool) -> Vec<u8> {
    let mut body =
        BodyWriter::new(Vec::with_capacity(64 + c.rows.len() * 128), compress, &c.tables, &c.sites, c.rows.len() as u64, c.header.min_hlc)
            .expect("vec write");
    for row in &c.rows {
        body.row(row).expect("vec write");
    }
    let (body, inflated) = body.finish().expect("vec write");
    let header = Header { inflated: compress.then_some(inflated), ..c.header.clone() };
    let mut out = Vec::with_capacity(PREFIX + 256 + 8 + body.len() + CHECKSUM);
    write_frame(&header, body.len() as u64, &mut &body[..], &mut out).expect("vec write");
    out
}

/// Writes a body item by item into a sink, compressed when asked, counting its inflated size:
/// a bundle of any size is encoded without holding its rows.
pub(crate) struct BodyWriter<W: Write> {
    out: BodyOut<W>,
    inflated: u64,
    min_hlc: u64,
    item: Vec<u8>,
}

enum BodyOut<W: Write> {
    Plain(W),
    Zlib(flate2::write::ZlibEncoder<W>),
}

impl<W: Write> BodyWriter<W> {
    /// Start a body: its dictionaries, then the row array of `rows` entries (rows are encoded
    /// relative to the header's `min_hlc`).
    pub fn new(sink: W, compress: bool, tables: &[TableDict], sites: &[SiteId], rows: u64, min_hlc: u64) -> std::io::Result<Self> {
        let out = if compress {
            BodyOut::Zlib(flate2::write::ZlibEncoder::new(sink, flate2::Compression::default()))
        } else {
            BodyOut::Plain(sink)
        };
        let mut w = BodyWriter { out, inflated: 0, min_hlc, item: Vec::with_capacity(256) };
        let rows = u32::try_from(rows).map_err(|_| std::io::Error::other("a bundle holds at most 2^32 - 1 rows"))?;
        let mut head = Vec::new();
        rmp::encode::write_array_len(&mut head, 3).expect("vec write");
        head.extend(rmp_serde::to_vec(tables).expect("dictionary encodes"));
        let sites: Vec<serde_bytes::ByteBuf> = sites.iter().map(|s| serde_bytes::ByteBuf::from(s.0.to_vec())).collect();
        head.extend(rmp_serde::to_vec(&sites).expect("sites encode"));
        rmp::encode::write_array_len(&mut head, rows).expect("vec write");
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inflated += bytes.len() as u64;
        match &mut self.out {
            BodyOut::Plain(w) => w.write_all(bytes),
            BodyOut::Zlib(z) => z.write_all(bytes),
        }
    }

    /// The next row, in canonical order.
    pub fn row(&mut self, row: &WireRow) -> std::io::Result<()> {
        let mut item = std::mem::take(&mut self.item);
        item.clear();
        rmp_serde::encode::write(&mut item, &RowOut(row, self.min_hlc)).expect("row encodes");
        let done = self.put(&item);
        self.item = item;
        done
    }

    /// The sink and the body's inflated size.
    pub fn finish(self) -> std::io::Result<(W, u64)> {
        let sink = match self.out {
            BodyOut::Plain(w) => w,
            BodyOut::Zlib(z) => z.finish()?,
        };
        Ok((sink, self.inflated))
    }
}

/// Write the frame around a finished body of `body_len` bytes read from `body`: prefix, header
/// (its `inflated` says whether the body is compressed), body length, body, checksum.
pub(crate) fn write_frame(header: &Header, body_len: u64, body: &mut dyn Read, out: &mut dyn Write) -> std::io::Result<()> {
    let mut hashed = HashingWriter { inner: out, hash: Sha256::new() };
    let encoded = rmp_serde::to_vec_named(header).expect("header encodes");
    hashed.write_all(MAGIC)?;
    hashed.write_all(&FORMAT_VERSION.to_be_bytes())?;
    hashed.write_all(&(if header.inflated.is_some() { FLAG_DEFLATE } else { 0 }).to_be_bytes())?;
    hashed.write_all(&(encoded.len() as u32).to_be_bytes())?;
    hashed.write_all(&encoded)?;
    hashed.write_all(&body_len.to_be_bytes())?;
    if std::io::copy(&mut body.take(body_len), &mut hashed)? != body_len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the body is shorter than announced"));
    }
    let sum = hashed.hash.finalize();
    hashed.inner.write_all(&sum)
}

/// A writer that hashes what it writes.
struct HashingWriter<'w> {
    inner: &'w mut dyn Write,
    hash: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What a reader accepts beyond the format's own rules (spec/bundle-format.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the stored body may have. Default [`MAX_BODY`]; [`Limits::file`]
    /// [`MAX_FILE_BODY`].
    pub max_body: u64,
    /// Most bytes a compressed body may inflate to (at most the header's `inflated`, when
    /// declared). Default [`MAX_BODY`].
    pub max_inflated: u64,
    /// Most bytes one item of the body (a row entry, or a dictionary) may take once inflated;
    /// this bounds the memory a compressed body needs. Default 64 MiB.
    pub max_item: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body: MAX_BODY, max_inflated: MAX_BODY, max_item: 64 << 20 }
    }
}

impl Limits {
    /// The limits of a bundle file: it is streamed, never held whole, so its body may exceed
    /// what a bundle in memory may have (spec/bundle-format.md §1).
    pub fn file() -> Limits {
        Limits { max_body: MAX_FILE_BODY, max_inflated: MAX_FILE_BODY, ..Limits::default() }
    }
}

/// The body's bytes: borrowed as they are, or read (and inflated) a bounded window at a time.
enum Body<'a> {
    Plain(&'a [u8]),
    Window(Box<Window<'a>>),
}

/// Where a windowed body's stored bytes come from: a compressed body in memory, or a body in a
/// bundle file, read through the hash of its second pass.
enum Stored<'a> {
    Slice(&'a [u8]),
    File(std::io::Take<Hashed<std::io::BufReader<std::fs::File>>>),
}

impl Read for Stored<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stored::Slice(s) => s.read(buf),
            Stored::File(f) => f.read(buf),
        }
    }
}

/// A reader that hashes what it reads.
struct Hashed<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The stored body, inflated when compressed.
enum Source<'a> {
    Zlib(flate2::read::ZlibDecoder<Stored<'a>>),
    Plain(Stored<'a>),
}

/// A body read incrementally into a window that holds the item being decoded.
struct Window<'a> {
    source: Source<'a>,
    /// The stored (possibly compressed) length of the body.
    stored: u64,
    window: Vec<u8>,
    start: usize,
    eof: bool,
    /// Bytes the source produced so far (inflated bytes for a compressed body).
    produced: u64,
    limit: u64,
    /// The size the header declares, which a compressed body must inflate to exactly.
    declared: Option<u64>,
    max_item: usize,
    /// For a file: the checksum its first pass verified, which the bytes read now must match.
    checksum: Option<[u8; CHECKSUM]>,
}

impl Window<'_> {
    /// Read more: at least as much again as the window holds (so an item of n bytes is parsed
    /// O(log n) times), never past the limits.
    fn fill(&mut self) -> Result<()> {
        if self.start > 0 {
            self.window.drain(..self.start);
            self.start = 0;
        }
        if self.window.len() >= self.max_item {
            return Err(Error::invalid_bundle(format!("an item of the body exceeds the limit of {} bytes", self.max_item)));
        }
        let want = self.window.len().max(64 << 10).min(self.max_item - self.window.len());
        let old = self.window.len();
        self.window.resize(old + want, 0);
        let mut got = 0;
        while got < want {
            let read = match &mut self.source {
                Source::Zlib(z) => z.read(&mut self.window[old + got..]),
                Source::Plain(r) => r.read(&mut self.window[old + got..]),
            };
            match read {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if matches!(self.source, Source::Zlib(_)) => {
                    return Err(Error::invalid_bundle(format!("compressed body is corrupt: {e}")))
                }
                Err(e) => return Err(Error::new(crate::error::ErrorKind::Io, format!("cannot read the bundle: {e}"))),
            }
        }
        self.window.truncate(old + got);
        self.produced += got as u64;
        if self.produced > self.limit {
            return Err(Error::invalid_bundle(format!("the compressed body inflates beyond {} bytes", self.limit)));
        }
        if self.eof {
            self.at_end()?;
        }
        Ok(())
    }

    /// Once the source is exhausted: it held exactly the body, and a file still holds the
    /// bytes its checksum covers.
    fn at_end(&mut self) -> Result<()> {
        let stored = match &mut self.source {
            Source::Zlib(z) => {
                if z.total_in() != self.stored {
                    return Err(Error::invalid_bundle("bytes follow the end of the compressed body (not canonical)"));
                }
                if let Some(d) = self.declared.filter(|d| *d != self.produced) {
                    return Err(Error::invalid_bundle(format!("the body inflates to {} bytes, the header declares {d}", self.produced)));
                }
                z.get_mut()
            }
            Source::Plain(r) => {
                if self.produced != self.stored {
                    return Err(Error::invalid_bundle("truncated: the bundle file ends inside its body"));
                }
                r
            }
        };
        if let (Stored::File(f), Some(sum)) = (stored, self.checksum) {
            let hashed = f.get_mut();
            if hashed.hash.clone().finalize().as_slice() != sum {
                return Err(Error::invalid_bundle("the bundle file changed while it was imported (checksum mismatch)"));
            }
        }
        Ok(())
    }
}

impl<'a> Body<'a> {
    /// Decode one item from the front with `parse`, which must consume exactly the item and
    /// may look at its raw bytes (the canonical check). More of a compressed body is inflated
    /// until the item parses or the body ends.
    fn item<T>(&mut self, mut parse: impl FnMut(&mut &[u8]) -> Result<T>) -> Result<T> {
        match self {
            Body::Plain(rest) => parse(rest),
            Body::Window(z) => loop {
                let mut rd: &[u8] = &z.window[z.start..];
                let before = rd.len();
                match parse(&mut rd) {
                    Ok(v) => {
                        z.start += before - rd.len();
                        return Ok(v);
                    }
                    Err(e) if z.eof || e.message() != TRUNCATED => return Err(e),
                    Err(_) => z.fill()?,
                }
            },
        }
    }

    /// True when every byte of the body was decoded.
    fn finished(&mut self) -> Result<bool> {
        match self {
            Body::Plain(rest) => Ok(rest.is_empty()),
            Body::Window(z) => {
                if z.start == z.window.len() && !z.eof {
                    z.fill()?;
                }
                Ok(z.eof && z.start == z.window.len())
            }
        }
    }
}

/// Parse one MessagePack item with `f` and check that its bytes are exactly what encoding
/// the result gives back: the format admits one encoding of each bundle (§5).
fn canonical<T>(rd: &mut &[u8], f: impl FnOnce(&mut &[u8]) -> Result<T>, encode: impl FnOnce(&T) -> Vec<u8>) -> Result<T> {
    let all: &[u8] = rd;
    let v = f(rd)?;
    let raw = &all[..all.len() - rd.len()];
    if encode(&v) != raw {
        return Err(Error::invalid_bundle("an item of the body is not in its canonical encoding"));
    }
    Ok(v)
}

fn array_len(rd: &mut &[u8]) -> Result<u32> {
    canonical(
        rd,
        |rd| rmp::decode::read_array_len(rd).map_err(len_err),
        |n| {
            let mut out = Vec::with_capacity(5);
            rmp::encode::write_array_len(&mut out, *n).expect("vec write");
            out
        },
    )
}

/// A verified bundle: frame, checksum, header and dictionaries checked; rows are decoded one
/// at a time by [`Decoded::rows`].
pub struct Decoded<'a> {
    pub header: Header,
    pub tables: Vec<TableDict>,
    pub sites: Vec<SiteId>,
    body: Body<'a>,
    nrows: u64,
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize, what: &str) -> Result<&'a [u8]> {
    let end = at.checked_add(n).filter(|e| *e <= bytes.len()).ok_or_else(|| {
        Error::invalid_bundle(format!("truncated: {what} needs {n} bytes at offset {at}, the bundle has {}", bytes.len()))
    })?;
    let s = &bytes[*at..end];
    *at = end;
    Ok(s)
}

/// Verify the frame and checksum and decode header and dictionaries, with default limits.
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>> {
    decode_with(bytes, Limits::default())
}

/// [`decode`] with explicit limits.
pub fn decode_with(bytes: &[u8], limits: Limits) -> Result<Decoded<'_>> {
    let mut at = 0;
    let (flags, hlen) = frame_prefix(take(bytes, &mut at, PREFIX, "the frame")?)?;
    let header_bytes = take(bytes, &mut at, hlen, "header")?;
    let blen = body_length(take(bytes, &mut at, 8, "body length")?, limits.max_body)?;
    let body = take(bytes, &mut at, blen as usize, "body")?;
    let signed_end = at;
    let sum = take(bytes, &mut at, CHECKSUM, "checksum")?;
    if at != bytes.len() {
        return Err(Error::invalid_bundle(format!("{} unexpected bytes after the checksum", bytes.len() - at)));
    }
    if Sha256::digest(&bytes[..signed_end]).as_slice() != sum {
        return Err(Error::invalid_bundle("checksum mismatch: the bundle is corrupt"));
    }
    let header = parse_header(header_bytes, flags)?;
    let body = if flags & FLAG_DEFLATE != 0 {
        Body::Window(Box::new(window(Source::Zlib(flate2::read::ZlibDecoder::new(Stored::Slice(body))), blen, &header, &limits, None)?))
    } else {
        Body::Plain(body)
    };
    dictionaries(header, body)
}

/// Decode a bundle file without holding it in memory: a first pass checks the frame and the
/// checksum, a second reads the body a bounded window at a time (inflating it when
/// compressed), hashing it again so that a file changed in between fails before the last row.
pub fn decode_file(path: &std::path::Path, limits: Limits) -> Result<Decoded<'static>> {
    use std::io::{BufReader, Seek, SeekFrom};
    let io = |e: std::io::Error| Error::new(crate::error::ErrorKind::Io, format!("cannot read {}: {e}", path.display()));
    let open = || std::fs::File::open(path).map_err(io);
    let mut file = BufReader::with_capacity(64 << 10, open()?);
    let size = file.get_ref().metadata().map_err(io)?.len();
    let exact = |file: &mut BufReader<std::fs::File>, n: usize, what: &str| -> Result<Vec<u8>> {
        let mut buf = vec![0; n];
        file.read_exact(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                Error::invalid_bundle(format!("truncated: {what} needs {n} bytes, the bundle file has {size} in all"))
            }
            _ => io(e),
        })?;
        Ok(buf)
    };
    let prefix = exact(&mut file, PREFIX, "the frame")?;
    let (flags, hlen) = frame_prefix(&prefix)?;
    let header_bytes = exact(&mut file, hlen, "header")?;
    let blen = body_length(&exact(&mut file, 8, "body length")?, limits.max_body)?;
    let body_at = (PREFIX + hlen + 8) as u64;
    let signed_end = body_at + blen;
    if size < signed_end + CHECKSUM as u64 {
        return Err(Error::invalid_bundle(format!("truncated: the body and checksum need {} bytes, the file has {size}", signed_end + 32)));
    }
    if size > signed_end + CHECKSUM as u64 {
        return Err(Error::invalid_bundle(format!("{} unexpected bytes after the checksum", size - signed_end - CHECKSUM as u64)));
    }
    // First pass: the checksum, before anything is decoded.
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut hash = Sha256::new();
    std::io::copy(&mut (&mut file).take(signed_end), &mut hash).map_err(io)?;
    let sum: [u8; CHECKSUM] = exact(&mut file, CHECKSUM, "checksum")?.try_into().expect("32 bytes");
    if hash.finalize().as_slice() != sum {
        return Err(Error::invalid_bundle("checksum mismatch: the bundle is corrupt"));
    }
    let header = parse_header(&header_bytes, flags)?;
    // Second pass: the frame's bytes hashed again, then the body streamed through the hash.
    let mut again = Sha256::new();
    again.update(&prefix);
    again.update(&header_bytes);
    again.update(blen.to_be_bytes());
    let mut file = BufReader::with_capacity(64 << 10, open()?);
    file.seek(SeekFrom::Start(body_at)).map_err(io)?;
    let stored = Stored::File(Hashed { inner: file, hash: again }.take(blen));
    let source = if flags & FLAG_DEFLATE != 0 { Source::Zlib(flate2::read::ZlibDecoder::new(stored)) } else { Source::Plain(stored) };
    let body = Body::Window(Box::new(window(source, blen, &header, &limits, Some(sum))?));
    dictionaries(header, body)
}

/// Magic, version and flags of the 16-byte frame prefix; returns the flags and header length.
fn frame_prefix(prefix: &[u8]) -> Result<(u16, usize)> {
    if &prefix[..8] != MAGIC {
        return Err(Error::invalid_bundle("not a Syncline bundle (wrong magic bytes)"));
    }
    let version = u16::from_be_bytes([prefix[8], prefix[9]]);
    if version != FORMAT_VERSION {
        return Err(Error::invalid_bundle(format!(
            "bundle format version {version} is not supported (this build reads version {FORMAT_VERSION})"
        )));
    }
    let flags = u16::from_be_bytes([prefix[10], prefix[11]]);
    if flags & FLAGS_RESERVED != 0 {
        return Err(Error::invalid_bundle(format!("bundle uses flags {flags:#06x} this build does not know")));
    }
    Ok((flags, u32::from_be_bytes(prefix[12..16].try_into().expect("4 bytes")) as usize))
}

fn body_length(bytes: &[u8], max: u64) -> Result<u64> {
    let blen = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
    if blen > max {
        return Err(Error::invalid_bundle(format!("body of {blen} bytes exceeds the limit of {max}")));
    }
    Ok(blen)
}

/// The header, in its canonical encoding and within its ranges.
fn parse_header(header_bytes: &[u8], flags: u16) -> Result<Header> {
    let header: Header = rmp_serde::from_slice(header_bytes).map_err(msgpack_err)?;
    if rmp_serde::to_vec_named(&header).expect("header encodes") != header_bytes {
        return Err(Error::invalid_bundle("the header is not in its canonical encoding (unknown keys, order or widths)"));
    }
    header.check()?;
    if flags & FLAG_DEFLATE == 0 && header.inflated.is_some() {
        return Err(Error::invalid_bundle("the header declares an inflated size for a body that is not compressed"));
    }
    Ok(header)
}

/// A window over `source` with the limits that apply to it.
fn window<'a>(source: Source<'a>, stored: u64, header: &Header, limits: &Limits, checksum: Option<[u8; CHECKSUM]>) -> Result<Window<'a>> {
    let limit = match source {
        Source::Zlib(_) => {
            if header.inflated.is_some_and(|d| d > limits.max_inflated) {
                return Err(Error::invalid_bundle(format!(
                    "the body declares {} bytes inflated, the limit is {}",
                    header.inflated.unwrap_or(0),
                    limits.max_inflated
                )));
            }
            header.inflated.map_or(limits.max_inflated, |d| d.min(limits.max_inflated))
        }
        Source::Plain(_) => stored,
    };
    Ok(Window {
        source,
        stored,
        window: Vec::new(),
        start: 0,
        eof: false,
        produced: 0,
        limit,
        declared: header.inflated,
        max_item: limits.max_item,
        checksum,
    })
}

/// The body's dictionaries and row count, checked against the header.
fn dictionaries(header: Header, mut body: Body<'_>) -> Result<Decoded<'_>> {
    let parts = body.item(array_len)?;
    if parts != 3 {
        return Err(Error::invalid_bundle(format!("body has {parts} parts, expected 3")));
    }
    let tables: Vec<TableDict> =
        body.item(|rd| canonical(rd, |rd| rmp_serde::from_read(rd).map_err(read_err), |t| rmp_serde::to_vec(t).expect("encodes")))?;
    let raw_sites: Vec<serde_bytes::ByteBuf> =
        body.item(|rd| canonical(rd, |rd| rmp_serde::from_read(rd).map_err(read_err), |t| rmp_serde::to_vec(t).expect("encodes")))?;
    let sites = raw_sites
        .iter()
        .map(|s| SiteId::from_slice(s).map_err(|_| Error::invalid_bundle("site dictionary entry is not 16 bytes")))
        .collect::<Result<Vec<_>>>()?;
    if sites.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::invalid_bundle("the site dictionary is not sorted, or repeats a site"));
    }
    if tables.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(Error::invalid_bundle("the table dictionary is not sorted by name, or repeats a table"));
    }
    for TableDict(name, pk, cols) in &tables {
        if pk.is_empty() {
            return Err(Error::invalid_bundle(format!("table {name:?} of the dictionary has no key columns")));
        }
        if cols.windows(2).any(|w| w[0] >= w[1]) || cols.iter().any(|c| pk.contains(c)) {
            return Err(Error::invalid_bundle(format!("the columns of table {name:?} are not sorted, or repeat a column")));
        }
    }
    let nrows = u64::from(body.item(array_len)?);
    if nrows != header.rows {
        return Err(Error::invalid_bundle(format!("header announces {} rows, body holds {nrows}", header.rows)));
    }
    if schema_fingerprint(&tables) != header.schema {
        return Err(Error::invalid_bundle("schema fingerprint does not match the table dictionary"));
    }
    Ok(Decoded { header, tables, sites, body, nrows })
}

impl Header {
    /// The range rules of §2: every number fits where the receiver stores it.
    fn check(&self) -> Result<()> {
        for VvEntry(_, h) in self.vv.iter().chain(&self.base) {
            check_stamp_range(*h, "a version-vector entry")?;
        }
        check_stamp_range(self.min_hlc, "min_hlc")?;
        check_stamp_range(self.max_hlc, "max_hlc")?;
        if self.rows == 0 && (self.min_hlc != 0 || self.max_hlc != 0 || self.changes != 0) {
            return Err(Error::invalid_bundle("a bundle without rows must have changes, min_hlc and max_hlc 0"));
        }
        if self.min_hlc > self.max_hlc {
            return Err(Error::invalid_bundle("header HLC range is inverted"));
        }
        if let Some(ms) = &self.migrations {
            if ms.is_empty() {
                return Err(Error::invalid_bundle("an empty migrations list is written as no key (not canonical)"));
            }
            for m in ms {
                check_stamp_range(m.5, "a migration stamp")?;
                if m.0 != ADD_COLUMN {
                    return Err(Error::invalid_bundle(format!("migration kind {:?} is not known to this build", m.0)));
                }
                if m.6.len() != 16 {
                    return Err(Error::invalid_bundle("a migration's site id is not 16 bytes"));
                }
            }
            if ms.windows(2).any(|w| (w[0].5, &w[0].6) >= (w[1].5, &w[1].6)) {
                return Err(Error::invalid_bundle("migrations are not sorted by (hlc, site), or one repeats"));
            }
        }
        Ok(())
    }
}

/// Stamps are stored as SQLite integers: at most 2^63 - 1 (spec/bundle-format.md §2).
fn check_stamp_range(h: u64, what: &str) -> Result<()> {
    if h > MAX_STAMP {
        return Err(Error::invalid_bundle(format!("{what} {h} exceeds the largest stamp 2^63-1")));
    }
    Ok(())
}

/// What the rows of a bundle add up to; checked against the header when the last row is read.
#[derive(Default)]
struct Tally {
    changes: u64,
    min_hlc: Option<u64>,
    max_hlc: u64,
    last_key: Option<(u32, Vec<u8>)>,
}

impl<'a> Decoded<'a> {
    pub fn row_count(&self) -> u64 {
        self.nrows
    }

    /// The rows, decoded one at a time and checked against the dictionaries, the canonical
    /// order and encoding, and (after the last) the header's counts and stamp range.
    pub fn rows(&mut self) -> impl Iterator<Item = Result<WireRow>> + use<'_, 'a> {
        let mut left = self.nrows;
        let mut tally = Tally::default();
        let mut failed = false;
        let mut done = false;
        std::iter::from_fn(move || {
            if failed || done {
                return None;
            }
            let next = if left == 0 {
                done = true;
                match self.finish(&tally) {
                    Ok(()) => return None,
                    Err(e) => Err(e),
                }
            } else {
                left -= 1;
                self.next_row(&mut tally)
            };
            failed = next.is_err();
            Some(next)
        })
    }

    fn next_row(&mut self, tally: &mut Tally) -> Result<WireRow> {
        let Decoded { header, tables, sites, body, .. } = self;
        let mut encoded = Vec::new();
        let row = body.item(|rd| {
            let all: &[u8] = rd;
            let raw: RowIn = rmp_serde::from_read(&mut *rd).map_err(read_err)?;
            let row = resolve_row(header, tables, sites, raw)?;
            encoded.clear();
            rmp_serde::encode::write(&mut encoded, &RowOut(&row, header.min_hlc)).expect("row encodes");
            if encoded[..] != all[..all.len() - rd.len()] {
                return Err(Error::invalid_bundle("a row entry is not in its canonical encoding"));
            }
            Ok(row)
        })?;
        let key = canonical_key(&row);
        if tally.last_key.as_ref().is_some_and(|k| *k >= key) {
            return Err(Error::invalid_bundle(if tally.last_key.as_ref() == Some(&key) {
                "a row appears twice in the bundle".to_owned()
            } else {
                "rows are not in canonical order".to_owned()
            }));
        }
        tally.last_key = Some(key);
        tally.changes += 1 + row.cells.len() as u64;
        for h in std::iter::once(row.hlc).chain(row.cells.iter().map(|c| c.hlc)) {
            tally.min_hlc = Some(tally.min_hlc.map_or(h, |m| m.min(h)));
            tally.max_hlc = tally.max_hlc.max(h);
        }
        Ok(row)
    }

    /// After the last row: nothing may follow, and the header must state what the rows hold.
    fn finish(&mut self, tally: &Tally) -> Result<()> {
        if !self.body.finished()? {
            return Err(Error::invalid_bundle("bytes follow the last row"));
        }
        if tally.changes != self.header.changes {
            return Err(Error::invalid_bundle(format!(
                "header announces {} changes, the rows hold {}",
                self.header.changes, tally.changes
            )));
        }
        if self.nrows > 0 && (tally.min_hlc != Some(self.header.min_hlc) || tally.max_hlc != self.header.max_hlc) {
            return Err(Error::invalid_bundle("the header's min_hlc and max_hlc are not the rows' smallest and largest stamps"));
        }
        Ok(())
    }
}

/// Check a row entry against the dictionaries and the range rules, and resolve its stamps.
fn resolve_row(header: &Header, tables: &[TableDict], sites: &[SiteId], raw: RowIn) -> Result<WireRow> {
    let RowIn { table, pk, cl, offset, site, cells } = raw;
    let dict = tables
        .get(table as usize)
        .ok_or_else(|| Error::invalid_bundle(format!("row names table #{table}, the dictionary has {}", tables.len())))?;
    if pk.len() != dict.1.len() {
        return Err(Error::invalid_bundle(format!(
            "row of {:?} has {} key values, the table has {} key columns",
            dict.0,
            pk.len(),
            dict.1.len()
        )));
    }
    if pk.iter().any(|v| matches!(v, Value::Null)) {
        return Err(Error::invalid_bundle(format!("a row of {:?} has a NULL key value", dict.0)));
    }
    let check_site = |s: u32| {
        if (s as usize) < sites.len() {
            Ok(s)
        } else {
            Err(Error::invalid_bundle(format!("site #{s} is not in the site dictionary")))
        }
    };
    check_site(site)?;
    if cl == 0 || cl > MAX_STAMP {
        return Err(Error::invalid_bundle(format!("causal length {cl} is outside 1..=2^63-1")));
    }
    let in_range = |h: u64| (header.min_hlc..=header.max_hlc).contains(&h);
    let hlc = header.min_hlc.checked_add(offset).filter(|h| in_range(*h)).ok_or_else(|| {
        Error::invalid_bundle(format!("a row stamp lies outside the header's range {}..={}", header.min_hlc, header.max_hlc))
    })?;
    let mut out = Vec::with_capacity(cells.len());
    for (col, value, stamp) in cells {
        if col as usize >= dict.2.len() {
            return Err(Error::invalid_bundle(format!("cell names column #{col} of {:?}, which has {}", dict.0, dict.2.len())));
        }
        if out.last().is_some_and(|c: &WireCell| c.col >= col) {
            return Err(Error::invalid_bundle("cells are not in column order"));
        }
        let (h, s) = match stamp {
            None => (hlc, site),
            Some((delta, s)) => {
                let h = u64::try_from(i128::from(hlc) + i128::from(delta)).ok().filter(|h| in_range(*h)).ok_or_else(|| {
                    Error::invalid_bundle(format!("a cell stamp lies outside the header's range {}..={}", header.min_hlc, header.max_hlc))
                })?;
                if h == hlc && s == site {
                    return Err(Error::invalid_bundle("a cell repeats its row's stamp explicitly (not canonical)"));
                }
                (h, check_site(s)?)
            }
        };
        out.push(WireCell { col, value, hlc: h, site: s });
    }
    if cl % 2 == 0 && !out.is_empty() {
        return Err(Error::invalid_bundle("a deleted row carries cells"));
    }
    Ok(WireRow { table, pk, cl, hlc, site, cells: out })
}
