//! Paged export for the network protocol: one page of the bundle a peer lacks, cut from a
//! pass whose version-vector snapshot every page claims (see export::generate_page), the
//! opaque cursor token that carries a pass between round trips, and the pending count.

use crate::error::{Error, ErrorKind, Result};
use crate::export::{self, known_of, scan_delta, Page, PageCursor};
use crate::meta::{self, VersionVector};
use crate::site::SiteId;
use crate::{BundleStats, SyncEngine};

/// One exported page and the pass it belongs to.
pub(crate) struct Exported {
    pub bytes: Vec<u8>,
    pub stats: BundleStats,
    /// Where the next page of the pass starts; `None` when this page ends the pass.
    pub next: Option<PageCursor>,
    /// The version vector the pass claims (the sender's vector when the pass began).
    pub snapshot: VersionVector,
}

/// Export one page for `peer`: `after = None` starts a pass (its snapshot is taken in the
/// same read transaction as the first page); `limit = 0` makes a header-only bundle.
pub(crate) fn export_page(
    engine: &SyncEngine,
    peer: Option<&SiteId>,
    after: Option<&PageCursor>,
    limit: u64,
    snapshot: Option<&VersionVector>,
) -> Result<Exported> {
    engine.read_synced(|c| {
        let snapshot = match snapshot {
            Some(s) => s.clone(),
            None => meta::local_vv(c)?,
        };
        let page = Page { after, limit, snapshot: &snapshot };
        let (bytes, stats, next) = export::generate_page(c, peer, false, &mut |_, _| {}, Some(page))?;
        Ok(Exported { bytes, stats, next, snapshot })
    })
}

/// Changes (row states and cells) `peer` lacks as far as this replica knows.
pub(crate) fn pending_for(engine: &SyncEngine, peer: Option<&SiteId>) -> Result<u64> {
    engine.read(|c| {
        let known = known_of(c, peer)?;
        let mut pending = 0u64;
        for t in meta::synced_tables(c)?.values() {
            scan_delta(c, t, &known, |row| {
                pending += 1 + row.cells.len() as u64;
                Ok(())
            })?;
        }
        Ok(pending)
    })
}

/// The cursor token of the protocol: hex of MessagePack `[pass id, cursor]`.
pub(crate) fn encode_token(pass: u64, cursor: &PageCursor) -> String {
    hex::encode(rmp_serde::to_vec(&(pass, cursor)).expect("cursor encodes"))
}

/// Parse a cursor token.
pub(crate) fn decode_token(token: &str) -> Result<(u64, PageCursor)> {
    let bad = || Error::new(ErrorKind::InvalidArgument, "malformed sync cursor");
    let bytes = hex::decode(token).map_err(|_| bad())?;
    rmp_serde::from_slice(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnableOptions, Options, Value};

    fn replica(dir: &tempfile::TempDir, name: &str) -> SyncEngine {
        let e = SyncEngine::open(dir.path().join(format!("{name}.db")), Options::default()).unwrap();
        e.execute_batch("CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT)").unwrap();
        e.enable_sync("todos", EnableOptions::default()).unwrap();
        e
    }

    fn vv_of(e: &SyncEngine, site: &SiteId) -> u64 {
        e.status().unwrap().version_vector.iter().find(|(s, _)| s == site).map_or(0, |(_, h)| *h)
    }

    fn ids(e: &SyncEngine) -> Vec<i64> {
        e.query("SELECT id FROM todos ORDER BY id", &[])
            .unwrap()
            .rows
            .iter()
            .map(|r| match r[0] {
                Value::Integer(i) => i,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn partial_pages_raise_no_vector_and_the_last_claims_only_the_snapshot() {
        let dir = tempfile::TempDir::new().unwrap();
        let (a, b, c) = (replica(&dir, "a"), replica(&dir, "b"), replica(&dir, "c"));
        let (sa, sb, sc) = (a.site_id().unwrap(), b.site_id().unwrap(), c.site_id().unwrap());
        c.set_manual_clock(Some(1_000_000)).unwrap(); // c's change is stamped long ago
        c.execute("INSERT INTO todos VALUES (-5, 'old')", &[]).unwrap();
        for i in 0..10 {
            a.execute("INSERT INTO todos VALUES (?1, 'a')", &[Value::Integer(i)]).unwrap();
        }
        let top = vv_of(&a, &sa);
        let first = export_page(&a, Some(&sb), None, 3, None).unwrap();
        assert!(first.next.is_some());
        assert!(b.import_bundle(&first.bytes).unwrap().applied > 0);
        assert_eq!(vv_of(&b, &sa), 0, "a partial page must not raise the receiver's vector");
        // Mid-pass, a learns c's old change (keyed behind the cursor) and writes a new row.
        a.import_bundle(&c.generate_bundle(None).unwrap()).unwrap();
        a.execute("INSERT INTO todos VALUES (99, 'new')", &[]).unwrap();
        let mut next = first.next;
        while let Some(after) = next {
            let page = export_page(&a, Some(&sb), Some(&after), 3, Some(&first.snapshot)).unwrap();
            b.import_bundle(&page.bytes).unwrap();
            if page.next.is_some() {
                assert_eq!(vv_of(&b, &sa), 0);
            }
            next = page.next;
        }
        // The pass delivered the snapshot (and row 99, ahead of the cursor), not row -5 (behind
        // it); b claims exactly the snapshot, so a later pass still brings row -5.
        assert_eq!(ids(&b), (0..10).chain([99]).collect::<Vec<_>>());
        assert_eq!(vv_of(&b, &sa), top);
        assert_eq!(vv_of(&b, &sc), 0);
        b.import_bundle(&export_page(&a, Some(&sb), None, 100, None).unwrap().bytes).unwrap();
        assert_eq!(ids(&b), [-5].into_iter().chain(0..10).chain([99]).collect::<Vec<_>>());
        assert_eq!(vv_of(&b, &sc), vv_of(&a, &sc));
    }

    #[test]
    fn a_header_only_bundle_raises_nothing_and_tokens_round_trip() {
        let dir = tempfile::TempDir::new().unwrap();
        let (a, b) = (replica(&dir, "a"), replica(&dir, "b"));
        a.execute("INSERT INTO todos VALUES (1, 'a')", &[]).unwrap();
        let page = export_page(&a, None, None, 0, None).unwrap();
        assert_eq!((page.stats.rows, page.next.is_none()), (0, true));
        b.import_bundle(&page.bytes).unwrap();
        assert_eq!(vv_of(&b, &a.site_id().unwrap()), 0);
        let cursor = PageCursor { table: "todos".into(), pk: vec![Value::Text("k".into())] };
        assert_eq!(decode_token(&encode_token(7, &cursor)).unwrap(), (7, cursor));
        assert_eq!(decode_token("zz").unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}
