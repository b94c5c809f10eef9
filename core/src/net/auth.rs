//! Bearer tokens and device binding for the server: the tokens of a single-database server,
//! the grant a token carries (its namespace, and the device (site) ids it may speak for), and
//! the first-claim binding of a device to the token it first synced under (kept in
//! `_syncline_net_devices` of the namespace's database, token hashed).

use crate::error::{Error, ErrorKind, Result};
use crate::site::SiteId;
use crate::{SyncEngine, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The SHA-256 of a token: what the server keeps and compares.
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// What an admitted token may reach: one namespace, and there any device (`None`) or only
/// these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub namespace: String,
    pub devices: Option<BTreeSet<SiteId>>,
}

impl Grant {
    fn allows(&self, site: &SiteId) -> bool {
        self.devices.as_ref().is_none_or(|d| d.contains(site))
    }
}

/// The hash of the bearer token of an `Authorization` header value, or `Auth`.
pub(crate) fn bearer(authorization: Option<&str>) -> Result<TokenHash> {
    let token = authorization.and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(|| Error::new(ErrorKind::Auth, "missing bearer token"))?;
    Ok(hash(token.trim()))
}

/// The tokens a single-database server admits. With no token at all the server is open (no authentication).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Token hash to the devices it may speak for (`None`: any device not bound elsewhere).
    admitted: HashMap<TokenHash, Option<BTreeSet<SiteId>>>,
}

impl Tokens {
    /// Admit clients presenting `token`, for any device not already bound to another token.
    pub fn add(&mut self, token: &str) {
        self.admitted.entry(hash(token)).or_insert(None);
    }

    /// Admit `token` for exactly these devices.
    pub fn add_for(&mut self, token: &str, sites: impl IntoIterator<Item = SiteId>) {
        let entry = self.admitted.entry(hash(token)).or_insert_with(|| Some(BTreeSet::new()));
        match entry {
            Some(set) => set.extend(sites),
            None => *entry = Some(sites.into_iter().collect()),
        }
    }

    /// Parse a tokens file: one token per line, optionally followed by the device (site) ids,
    /// 32 hex digits each, it may speak for; blank lines and `#` comments are ignored.
    pub fn parse(&mut self, text: &str) -> Result<()> {
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let Some(token) = words.next() else { continue };
            let sites = words
                .map(|w| w.parse::<SiteId>())
                .collect::<Result<Vec<_>>>()
                .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("tokens file line {}: {}", n + 1, e.message())))?;
            if sites.is_empty() {
                self.add(token);
            } else {
                self.add_for(token, sites);
            }
        }
        Ok(())
    }

    /// True when no token is configured: every request is admitted.
    pub fn is_open(&self) -> bool {
        self.admitted.is_empty()
    }

    /// The devices an admitted token may speak for (`Some(None)`: any), `None` if not admitted.
    pub(crate) fn devices(&self, token: &TokenHash) -> Option<Option<BTreeSet<SiteId>>> {
        self.admitted.get(token).cloned()
    }
}

/// Devices bound to tokens (a device that synced under one token is refused under another),
/// and when each device last synced (kept in `_syncline_net_seen`, written at most once a
/// minute and when the namespace closes).
pub(crate) struct Devices {
    bound: Mutex<HashMap<SiteId, TokenHash>>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    at: HashMap<SiteId, u64>,
    dirty: bool,
    flushed: Option<std::time::Instant>,
}

const DDL: &str = "CREATE TABLE IF NOT EXISTS _syncline_net_devices(site BLOB PRIMARY KEY, token BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS _syncline_net_seen(site BLOB PRIMARY KEY, last_seen_ms INTEGER NOT NULL) WITHOUT ROWID;";

/// How often last-seen times are written.
const SEEN_FLUSH: std::time::Duration = std::time::Duration::from_secs(60);

impl Devices {
    /// Load the bindings stored in the served database (creating their table if needed), with
    /// the stored last-seen times.
    pub fn load(engine: &SyncEngine, last_seen: HashMap<SiteId, u64>) -> Result<Devices> {
        engine.execute_batch(DDL)?;
        let mut bound = HashMap::new();
        for row in engine.query("SELECT site, token FROM _syncline_net_devices", &[])?.rows {
            if let [Value::Blob(site), Value::Blob(token)] = &row[..] {
                if let (Ok(site), Ok(token)) = (SiteId::from_slice(site), <TokenHash>::try_from(&token[..])) {
                    bound.insert(site, token);
                }
            }
        }
        let seen = Seen { at: last_seen, ..Default::default() };
        Ok(Devices { bound: Mutex::new(bound), seen: Mutex::new(seen) })
    }

    /// Device `site` synced now; `store`s the times if the last write is a minute old.
    pub fn saw(&self, site: &SiteId, store: impl FnOnce(&HashMap<SiteId, u64>) -> Result<()>) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let due = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.at.insert(*site, now);
            seen.dirty = true;
            seen.flushed.is_none_or(|t| t.elapsed() >= SEEN_FLUSH)
        };
        if due {
            self.flush(store);
        }
    }

    /// When each device last synced, in milliseconds since the Unix epoch.
    pub fn seen(&self) -> HashMap<SiteId, u64> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).at.clone()
    }

    /// `store` the last-seen times if any changed (a failure is logged: they are informative).
    pub fn flush(&self, store: impl FnOnce(&HashMap<SiteId, u64>) -> Result<()>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.flushed = Some(std::time::Instant::now());
        if !std::mem::take(&mut seen.dirty) {
            return;
        }
        if let Err(e) = store(&seen.at) {
            tracing::warn!("cannot store when devices last synced: {}", e.message());
        }
    }

    /// Check that `token` may speak for `site` without writing anything. A device not yet
    /// bound gets a [`Claim`] to [`bind`](Claim::bind) once its request succeeded; until then
    /// it holds the bindings' lock, so two tokens cannot race for one new device.
    /// `elsewhere` tells the binding another server node may have made since this one loaded
    /// its bindings.
    pub fn check(
        &self,
        admitted: Option<&(TokenHash, Grant)>,
        site: &SiteId,
        elsewhere: impl FnOnce(&SiteId) -> Result<Option<TokenHash>>,
    ) -> Result<Claim<'_>> {
        let Some((token, grant)) = admitted else { return Ok(Claim::Bound) };
        let refused = || Error::new(ErrorKind::Auth, format!("this token may not speak for device {site}"));
        if !grant.allows(site) {
            return Err(refused());
        }
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        if !bound.contains_key(site) {
            if let Some(owner) = elsewhere(site)? {
                bound.insert(*site, owner);
            }
        }
        match bound.get(site) {
            Some(owner) if owner == token => Ok(Claim::Bound),
            Some(_) => Err(refused()),
            None => Ok(Claim::New { bound, site: *site, token: *token }),
        }
    }
}

/// The outcome of [`Devices::check`]: nothing to do, or a first binding to record.
pub(crate) enum Claim<'a> {
    Bound,
    New { bound: MutexGuard<'a, HashMap<SiteId, TokenHash>>, site: SiteId, token: TokenHash },
}

impl Claim<'_> {
    /// Record a first binding with `store` (after the request's import committed). It holds
    /// in memory even if it cannot be stored; the failure is logged, since the import is
    /// already acknowledged.
    pub fn bind(self, store: impl FnOnce(&SiteId, &TokenHash) -> Result<()>) {
        if let Claim::New { mut bound, site, token } = self {
            if let Err(e) = store(&site, &token) {
                tracing::error!(%site, "cannot store the binding of the device: {}", e.message());
            }
            bound.insert(site, token);
        }
    }
}

/// Store a binding in the namespace's own database (a single server node).
/// The last-seen times stored in a served database's `_syncline_net_seen` (none before its
/// table exists).
pub(crate) fn seen_in_file(engine: &SyncEngine) -> Result<HashMap<SiteId, u64>> {
    engine.execute_batch(DDL)?;
    let mut seen = HashMap::new();
    for row in engine.query("SELECT site, last_seen_ms FROM _syncline_net_seen", &[])?.rows {
        if let [Value::Blob(site), Value::Integer(ms)] = &row[..] {
            if let Ok(site) = SiteId::from_slice(site) {
                seen.insert(site, *ms as u64);
            }
        }
    }
    Ok(seen)
}

/// Store last-seen times in a served database's `_syncline_net_seen` (a newer time wins).
pub(crate) fn store_seen_in_file(engine: &SyncEngine, seen: &HashMap<SiteId, u64>) -> Result<()> {
    let mut sql = String::from("BEGIN;");
    for (site, ms) in seen {
        sql += &format!(
            "INSERT INTO _syncline_net_seen(site, last_seen_ms) VALUES (x'{}', {ms})
             ON CONFLICT (site) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms);",
            site.to_hex()
        );
    }
    sql += "COMMIT;";
    engine.execute_batch(&sql).inspect_err(|_| {
        let _ = engine.execute_batch("ROLLBACK");
    })
}

pub(crate) fn bind_in_file(engine: &SyncEngine, site: &SiteId, token: &TokenHash) -> Result<()> {
    engine
        .execute(
            "INSERT OR IGNORE INTO _syncline_net_devices(site, token) VALUES (?1, ?2)",
            &[Value::Blob(site.0.to_vec()), Value::Blob(token.to_vec())],
        )
        .map(drop)
}
