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
use std::io::Read;

/// The eight magic bytes every bundle starts with.
pub const MAGIC: &[u8; 8] = b"SYNCLINE";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Flag bit: the body is zlib-compressed (RFC 1950).
pub const FLAG_DEFLATE: u16 = 1;
/// Flag bits reserved for signatures (bit 1) and encryption (bit 2); refused until specified.
pub const FLAGS_RESERVED: u16 = !FLAG_DEFLATE;
/// Largest body, compressed or not, that a reader accepts (1 GiB).
pub const MAX_BODY: u64 = 1 << 30;
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
}

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

/// Encode a bundle.
pub fn encode(c: &Contents, compress: bool) -> Vec<u8> {
    let header = rmp_serde::to_vec_named(&c.header).expect("header encodes");
    let mut body = Vec::with_capacity(64 + c.rows.len() * 128);
    rmp::encode::write_array_len(&mut body, 3).expect("vec write");
    body.extend(rmp_serde::to_vec(&c.tables).expect("dictionary encodes"));
    let sites: Vec<serde_bytes::ByteBuf> = c.sites.iter().map(|s| serde_bytes::ByteBuf::from(s.0.to_vec())).collect();
    body.extend(rmp_serde::to_vec(&sites).expect("sites encode"));
    rmp::encode::write_array_len(&mut body, c.rows.len() as u32).expect("vec write");
    for row in &c.rows {
        rmp_serde::encode::write(&mut body, &RowOut(row, c.header.min_hlc)).expect("row encodes");
    }
    let body = if compress {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&body).expect("vec write");
        z.finish().expect("vec write")
    } else {
        body
    };
    let mut out = Vec::with_capacity(PREFIX + header.len() + 8 + body.len() + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&(if compress { FLAG_DEFLATE } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// A verified bundle: header and dictionary decoded, rows still encoded.
pub struct Decoded {
    pub header: Header,
    pub tables: Vec<TableDict>,
    pub sites: Vec<SiteId>,
    body: Vec<u8>,
    rows_at: usize,
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

/// Verify the frame and checksum and decode header and dictionary.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let mut at = 0;
    if take(bytes, &mut at, 8, "magic")? != MAGIC {
        return Err(Error::invalid_bundle("not a Syncline bundle (wrong magic bytes)"));
    }
    let version = u16::from_be_bytes(take(bytes, &mut at, 2, "version")?.try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(Error::invalid_bundle(format!(
            "bundle format version {version} is not supported (this build reads version {FORMAT_VERSION})"
        )));
    }
    let flags = u16::from_be_bytes(take(bytes, &mut at, 2, "flags")?.try_into().unwrap());
    if flags & FLAGS_RESERVED != 0 {
        return Err(Error::invalid_bundle(format!("bundle uses flags {flags:#06x} this build does not know")));
    }
    let hlen = u32::from_be_bytes(take(bytes, &mut at, 4, "header length")?.try_into().unwrap()) as usize;
    let header_bytes = take(bytes, &mut at, hlen, "header")?;
    let blen = u64::from_be_bytes(take(bytes, &mut at, 8, "body length")?.try_into().unwrap());
    if blen > MAX_BODY {
        return Err(Error::invalid_bundle(format!("body of {blen} bytes exceeds the limit of {MAX_BODY}")));
    }
    let body = take(bytes, &mut at, blen as usize, "body")?;
    let signed_end = at;
    let sum = take(bytes, &mut at, CHECKSUM, "checksum")?;
    if at != bytes.len() {
        return Err(Error::invalid_bundle(format!("{} unexpected bytes after the checksum", bytes.len() - at)));
    }
    if Sha256::digest(&bytes[..signed_end]).as_slice() != sum {
        return Err(Error::invalid_bundle("checksum mismatch: the bundle is corrupt"));
    }
    let header: Header = rmp_serde::from_slice(header_bytes).map_err(msgpack_err)?;
    let body = if flags & FLAG_DEFLATE != 0 {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(body)
            .take(MAX_BODY + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid_bundle(format!("compressed body is corrupt: {e}")))?;
        if out.len() as u64 > MAX_BODY {
            return Err(Error::invalid_bundle("decompressed body exceeds the size limit"));
        }
        out
    } else {
        body.to_vec()
    };
    let mut rd: &[u8] = &body;
    let parts = rmp::decode::read_array_len(&mut rd).map_err(msgpack_err)?;
    if parts != 3 {
        return Err(Error::invalid_bundle(format!("body has {parts} parts, expected 3")));
    }
    let tables: Vec<TableDict> = rmp_serde::from_read(&mut rd).map_err(msgpack_err)?;
    let raw_sites: Vec<serde_bytes::ByteBuf> = rmp_serde::from_read(&mut rd).map_err(msgpack_err)?;
    let sites = raw_sites
        .iter()
        .map(|s| SiteId::from_slice(s).map_err(|_| Error::invalid_bundle("site dictionary entry is not 16 bytes")))
        .collect::<Result<Vec<_>>>()?;
    let nrows = u64::from(rmp::decode::read_array_len(&mut rd).map_err(msgpack_err)?);
    if nrows != header.rows {
        return Err(Error::invalid_bundle(format!("header announces {} rows, body holds {nrows}", header.rows)));
    }
    if schema_fingerprint(&tables) != header.schema {
        return Err(Error::invalid_bundle("schema fingerprint does not match the table dictionary"));
    }
    let rows_at = body.len() - rd.len();
    Ok(Decoded { header, tables, sites, body, rows_at, nrows })
}

impl Decoded {
    pub fn row_count(&self) -> u64 {
        self.nrows
    }

    /// The rows, decoded one at a time, with indices checked against the dictionaries.
    pub fn rows(&self) -> impl Iterator<Item = Result<WireRow>> + '_ {
        let mut rd: &[u8] = &self.body[self.rows_at..];
        let mut left = self.nrows;
        std::iter::from_fn(move || {
            if left == 0 {
                return (!rd.is_empty()).then(|| Err(Error::invalid_bundle(format!("{} bytes after the last row", rd.len()))));
            }
            left -= 1;
            Some(self.read_row(&mut rd))
        })
    }

    fn read_row(&self, rd: &mut &[u8]) -> Result<WireRow> {
        let RowIn { table, pk, cl, offset, site, cells } = rmp_serde::from_read(&mut *rd).map_err(msgpack_err)?;
        let dict = self
            .tables
            .get(table as usize)
            .ok_or_else(|| Error::invalid_bundle(format!("row names table #{table}, the dictionary has {}", self.tables.len())))?;
        if pk.len() != dict.1.len() {
            return Err(Error::invalid_bundle(format!(
                "row of {:?} has {} key values, the table has {} key columns",
                dict.0,
                pk.len(),
                dict.1.len()
            )));
        }
        let check_site = |s: u32| {
            if (s as usize) < self.sites.len() {
                Ok(s)
            } else {
                Err(Error::invalid_bundle(format!("site #{s} is not in the site dictionary")))
            }
        };
        check_site(site)?;
        if cl == 0 {
            return Err(Error::invalid_bundle("causal length 0 is not valid"));
        }
        let hlc = self.header.min_hlc.checked_add(offset).ok_or_else(|| Error::invalid_bundle("row stamp overflows"))?;
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
                    let h = u64::try_from(hlc as i128 + delta as i128).map_err(|_| Error::invalid_bundle("cell stamp out of range"))?;
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
}
