//! One namespace as a server serves it: the writer and readers of its replica, its device
//! bindings, its open pull passes (the snapshot each claims) and its live notices, and the
//! catching up with a store shared by several server nodes.

use super::auth::Devices;
use super::hub::SharedStore;
use crate::error::Result;
use crate::export::PageCursor;
use crate::meta::VersionVector;
use crate::site::SiteId;
use crate::SyncEngine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How long an unfinished pull pass is remembered, and how many at most.
const PASS_TTL: Duration = Duration::from_secs(600);
const MAX_PASSES: usize = 10_000;

/// Unfinished pull passes: the snapshot each claims, by pass id.
#[derive(Default)]
pub(crate) struct Passes {
    pub open: HashMap<u64, (SiteId, VersionVector, Instant)>,
}

impl Passes {
    /// The pass a cursor continues, or a new pass (unknown, expired or another device's).
    pub fn resume(&mut self, token: Option<(u64, PageCursor)>, site: &SiteId) -> (u64, Option<PageCursor>, Option<VersionVector>) {
        if let Some((id, cursor)) = token {
            if let Some((owner, snapshot, _)) = self.open.get(&id) {
                if owner == site {
                    return (id, Some(cursor), Some(snapshot.clone()));
                }
            }
        }
        (uuid::Uuid::new_v4().as_u64_pair().0, None, None)
    }

    pub fn keep(&mut self, id: u64, site: SiteId, snapshot: VersionVector) {
        let now = Instant::now();
        self.open.retain(|_, (_, _, at)| now.duration_since(*at) < PASS_TTL);
        if self.open.len() >= MAX_PASSES {
            if let Some(oldest) = self.open.iter().min_by_key(|(_, (_, _, at))| *at).map(|(k, _)| *k) {
                self.open.remove(&oldest);
            }
        }
        self.open.insert(id, (site, snapshot, now));
    }
}

/// One namespace being served: its replica's writer and readers, device bindings, open pull
/// passes and live notices.
pub(crate) struct Dataset {
    pub name: String,
    pub writer: Arc<SyncEngine>,
    readers: Vec<SyncEngine>,
    next_reader: AtomicUsize,
    pub devices: Devices,
    pub passes: Mutex<Passes>,
    pub notices: broadcast::Sender<SiteId>,
    pub site: SiteId,
    /// When a request last used it (for closing the least recently used).
    pub used: Mutex<Instant>,
    /// Its position in the store's shared log (several server nodes); held while catching up.
    log: Mutex<i64>,
    store: SharedStore,
}

impl Dataset {
    pub fn open(name: &str, writer: Arc<SyncEngine>, readers: usize, store: SharedStore) -> Result<Dataset> {
        let readers = (0..readers.max(1)).map(|_| SyncEngine::open(writer.path(), writer.options().clone())).collect::<Result<Vec<_>>>()?;
        Ok(Dataset {
            name: name.to_owned(),
            devices: Devices::load(&writer, store.last_seen(name, &writer)?)?,
            site: writer.site_id()?,
            writer,
            readers,
            next_reader: AtomicUsize::new(0),
            passes: Mutex::new(Passes::default()),
            notices: broadcast::channel(256).0,
            used: Mutex::new(Instant::now()),
            log: Mutex::new(0),
            store,
        })
    }

    pub fn reader(&self) -> &SyncEngine {
        &self.readers[self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len()]
    }

    /// Import what other server nodes accepted (nothing for a single node).
    pub(crate) fn catch_up(&self, store: &SharedStore) -> Result<()> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        store.catch_up(&self.name, &self.writer, &mut log)
    }

    /// Device `site` synced now (its time is stored at most once a minute).
    pub fn saw(&self, site: &SiteId) {
        self.devices.saw(site, |seen| self.store.store_seen(&self.name, &self.writer, seen));
    }

    /// When each device last synced: here, or (as stored) on any server node.
    pub fn last_seen(&self) -> Result<HashMap<SiteId, u64>> {
        let mut all = self.store.last_seen(&self.name, &self.writer)?;
        for (site, ms) in self.devices.seen() {
            let at = all.entry(site).or_insert(ms);
            *at = (*at).max(ms);
        }
        Ok(all)
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        self.devices.flush(|seen| self.store.store_seen(&self.name, &self.writer, seen));
    }
}
