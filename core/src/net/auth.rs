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

/// Devices bound to tokens: a device that synced under one token is refused under another.
pub(crate) struct Devices {
    bound: Mutex<HashMap<SiteId, TokenHash>>,
}

const DDL: &str = "CREATE TABLE IF NOT EXISTS _syncline_net_devices(site BLOB PRIMARY KEY, token BLOB NOT NULL) WITHOUT ROWID";

impl Devices {
    /// Load the bindings stored in the served database (creating their table if needed).
    pub fn load(engine: &SyncEngine) -> Result<Devices> {
        engine.execute_batch(DDL)?;
        let mut bound = HashMap::new();
        for row in engine.query("SELECT site, token FROM _syncline_net_devices", &[])?.rows {
            if let [Value::Blob(site), Value::Blob(token)] = &row[..] {
                if let (Ok(site), Ok(token)) = (SiteId::from_slice(site), <TokenHash>::try_from(&token[..])) {
                    bound.insert(site, token);
                }
            }
        }
        Ok(Devices { bound: Mutex::new(bound) })
    }

    /// Check that `token` may speak for `site` without writing anything. A device not yet
    /// bound gets a [`Claim`] to [`bind`](Claim::bind) once its request succeeded; until then
    /// it holds the bindings' lock, so two tokens cannot race for one new device.
    pub fn check(&self, admitted: Option<&(TokenHash, Grant)>, site: &SiteId) -> Result<Claim<'_>> {
        let Some((token, grant)) = admitted else { return Ok(Claim::Bound) };
        let refused = || Error::new(ErrorKind::Auth, format!("this token may not speak for device {site}"));
        if !grant.allows(site) {
            return Err(refused());
        }
        let bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
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
    /// Record a first binding (after the request's import committed). It holds in memory even
    /// if it cannot be stored; the failure is logged, since the import is already acknowledged.
    pub fn bind(self, engine: &SyncEngine) {
        if let Claim::New { mut bound, site, token } = self {
            if let Err(e) = engine.execute(
                "INSERT OR IGNORE INTO _syncline_net_devices(site, token) VALUES (?1, ?2)",
                &[Value::Blob(site.0.to_vec()), Value::Blob(token.to_vec())],
            ) {
                eprintln!("syncline serve: cannot store the binding of device {site}: {}", e.message());
            }
            bound.insert(site, token);
        }
    }
}
