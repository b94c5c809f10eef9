//! The rows of one export, kept until they can be encoded (the header's `min_hlc` and the site
//! dictionary depend on all of them) and handed out in canonical order. Small exports stay in
//! memory; past [`MEMORY_BYTES`] the rows move to a temporary table keyed by their canonical
//! key, which SQLite keeps on disk (the engine's connections use `temp_store = FILE`), so an
//! export of any size needs bounded memory.

use crate::bundle::{canonical_key, WireCell, WireRow};
use crate::error::Result;
use crate::value::Value;
use rusqlite::Connection;

/// Rows held in memory before they spill (their approximate size). The crate's unit tests
/// spill after a few rows, so every export they make takes the spilled path.
#[cfg(not(test))]
pub(crate) const MEMORY_BYTES: usize = 8 << 20;
#[cfg(test)]
pub(crate) const MEMORY_BYTES: usize = 1 << 10;

/// A row as stored in the temporary table: everything but its table index (in the key).
type Stored = (Vec<Value>, u64, u64, u32, Vec<(u32, Value, u64, u32)>);

pub(crate) struct Spill<'c> {
    conn: &'c Connection,
    memory: Vec<((u32, Vec<u8>), WireRow)>,
    bytes: usize,
    spilled: bool,
}

fn size_of(v: &Value) -> usize {
    match v {
        Value::Text(t) => t.len(),
        Value::Blob(b) => b.len(),
        _ => 8,
    }
}

impl<'c> Spill<'c> {
    pub fn new(conn: &'c Connection) -> Spill<'c> {
        Spill { conn, memory: Vec::new(), bytes: 0, spilled: false }
    }

    pub fn push(&mut self, row: WireRow) -> Result<()> {
        let key = canonical_key(&row);
        if self.spilled {
            return self.store(&key, row);
        }
        // What the row takes on the heap, roughly: the entry, its key bytes, values and cells.
        self.bytes += 160
            + key.1.len()
            + row.pk.iter().map(|v| 32 + size_of(v)).sum::<usize>()
            + row.cells.iter().map(|c| 56 + size_of(&c.value)).sum::<usize>();
        self.memory.push((key, row));
        if self.bytes > MEMORY_BYTES {
            self.conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS _syncline_spill(t INTEGER, k BLOB, row BLOB, PRIMARY KEY(t, k)) WITHOUT ROWID;
                 DELETE FROM temp._syncline_spill;",
            )?;
            self.spilled = true;
            for (key, row) in std::mem::take(&mut self.memory) {
                self.store(&key, row)?;
            }
        }
        Ok(())
    }

    fn store(&self, key: &(u32, Vec<u8>), row: WireRow) -> Result<()> {
        let cells = row.cells.into_iter().map(|c| (c.col, c.value, c.hlc, c.site)).collect();
        let stored: Stored = (row.pk, row.cl, row.hlc, row.site, cells);
        let blob = rmp_serde::to_vec(&stored).expect("a row encodes");
        self.conn
            .prepare_cached("INSERT INTO temp._syncline_spill(t, k, row) VALUES (?1, ?2, ?3)")?
            .execute(rusqlite::params![key.0, key.1, blob])?;
        Ok(())
    }

    /// Every row, in canonical order.
    pub fn drain(mut self, mut visit: impl FnMut(WireRow) -> Result<()>) -> Result<()> {
        if !self.spilled {
            self.memory.sort_by(|a, b| a.0.cmp(&b.0));
            return std::mem::take(&mut self.memory).into_iter().try_for_each(|(_, row)| visit(row));
        }
        let mut stmt = self.conn.prepare("SELECT t, row FROM temp._syncline_spill ORDER BY t, k")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let table: u32 = r.get(0)?;
            let blob: Vec<u8> = r.get(1)?;
            let (pk, cl, hlc, site, cells): Stored = rmp_serde::from_slice(&blob).expect("a stored row decodes");
            let cells = cells.into_iter().map(|(col, value, hlc, site)| WireCell { col, value, hlc, site }).collect();
            visit(WireRow { table, pk, cl, hlc, site, cells })?;
        }
        Ok(())
    }
}

impl Drop for Spill<'_> {
    fn drop(&mut self) {
        if self.spilled {
            let _ = self.conn.execute_batch("DROP TABLE IF EXISTS temp._syncline_spill");
        }
    }
}
