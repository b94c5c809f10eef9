//! Where a server's data sets (namespaces) live and who may reach them: the [`Store`]
//! interface the server asks, the single-database store of `syncline serve DB`, and
//! [`HubDir`], the embedded default of `syncline serve --hub DIR` (one SQLite file per
//! namespace, and a catalog `hub.db` of namespaces and credentials, tokens kept hashed).

use super::auth::{hash, Grant, TokenHash, Tokens};
use crate::error::{Error, ErrorKind, Result};
use crate::site::SiteId;
use crate::{EnableOptions, Options, Strategy, SyncEngine};

use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The namespace of a single-database server, and the one v1 clients of a hub reach through
/// `/v1/...` when their token names no other.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What the server needs from a storage backend.
pub(crate) trait Store: Send + Sync {
    /// True when every request is admitted without a token (a single database served with no
    /// token configured). A hub always asks for one.
    fn is_open(&self) -> bool {
        false
    }
    /// True when the server opens [`DEFAULT_NAMESPACE`] at start (a single database).
    fn eager(&self) -> bool {
        false
    }
    /// The grant of an admitted token, or `None`.
    fn grant(&self, token: &TokenHash) -> Result<Option<Grant>>;
    /// Every namespace's name, sorted.
    fn names(&self) -> Result<Vec<String>>;
    /// `Ok` while the storage answers (readiness).
    fn check(&self) -> Result<()>;
    /// The engine that writes namespace `name`'s replica, or `None` if there is no such
    /// namespace.
    fn open(&self, name: &str) -> Result<Option<Arc<SyncEngine>>>;
    /// Before a request reads or changes namespace `name`: import into `engine` what other
    /// server nodes accepted since `cursor` (their position in a shared log), moving it on.
    /// Stores of a single node have nothing to do.
    fn catch_up(&self, _name: &str, _engine: &SyncEngine, _cursor: &mut i64) -> Result<()> {
        Ok(())
    }
    /// After a push from `sender` was imported, before it is acknowledged: make it durable
    /// for the other server nodes. Stores of a single node have nothing to do (the import
    /// committed to the namespace's own file).
    fn accepted(&self, _name: &str, _sender: &SiteId, _bundle: &[u8]) -> Result<()> {
        Ok(())
    }
    /// The token another server node bound device `site` of namespace `name` to, if any. A
    /// single node knows every binding from the namespace's file already.
    fn device_owner(&self, _name: &str, _site: &SiteId) -> Result<Option<TokenHash>> {
        Ok(None)
    }
    /// Record that device `site` of namespace `name` (whose replica `engine` writes) is bound
    /// to `token`.
    fn bind_device(&self, _name: &str, engine: &SyncEngine, site: &SiteId, token: &TokenHash) -> Result<()> {
        super::auth::bind_in_file(engine, site, token)
    }
    /// When each device of namespace `name` (whose replica `engine` writes) last synced, as
    /// stored by any server node.
    fn last_seen(&self, _name: &str, engine: &SyncEngine) -> Result<std::collections::HashMap<SiteId, u64>> {
        super::auth::seen_in_file(engine)
    }
    /// Store last-seen times of namespace `name`'s devices (a newer time wins).
    fn store_seen(&self, _name: &str, engine: &SyncEngine, seen: &std::collections::HashMap<SiteId, u64>) -> Result<()> {
        super::auth::store_seen_in_file(engine, seen)
    }
    /// Make a change the server itself originates in namespace `name` (`change`, e.g. an
    /// operator's conflict resolution) durable like a push. A single node just makes it.
    fn originate(&self, _name: &str, _engine: &SyncEngine, change: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        change()
    }
    /// A site the store itself registers in namespace `name`'s replica (not a device).
    fn internal_site(&self, _name: &str) -> Option<SiteId> {
        None
    }
    /// Announcements of pushes other server nodes accepted: (namespace, sender).
    fn remote_changes(&self) -> Option<tokio::sync::broadcast::Receiver<(String, SiteId)>> {
        None
    }
}

/// The admin operations every hub backend offers (`syncline hub ...`).
pub trait Catalog {
    /// Create namespace `name`: a new data set on which `schema` (SQL) runs and `tables` are
    /// enabled with `strategy`. `InvalidArgument` if it exists or the name is not valid;
    /// nothing is left after an error.
    fn create_namespace(&self, name: &str, schema: &str, tables: &[String], strategy: Strategy) -> Result<()>;
    /// Delete namespace `name`, its credentials and its data. `InvalidArgument` if there is
    /// no such namespace.
    fn delete_namespace(&self, name: &str) -> Result<()>;
    /// Every namespace, by name.
    fn namespaces(&self) -> Result<Vec<NamespaceInfo>>;
    /// Issue a new random token for namespace `name`, for any device (`devices` empty) or only
    /// these. The token is shown once: the catalog keeps its hash.
    fn issue_token(&self, name: &str, devices: &[SiteId]) -> Result<String>;
    /// Revoke a token; false if it was not issued here.
    fn revoke_token(&self, token: &str) -> Result<bool>;
}

/// A new random token.
pub(crate) fn new_token() -> String {
    format!("sl_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A credential's device list as the catalogs keep it: NULL for any device, else site ids
/// separated by spaces.
pub(crate) fn devices_text(devices: &[SiteId]) -> Option<String> {
    (!devices.is_empty()).then(|| devices.iter().map(SiteId::to_hex).collect::<Vec<_>>().join(" "))
}

/// The grant a catalog row describes.
pub(crate) fn grant_of(namespace: String, devices: Option<String>) -> Result<Grant> {
    let devices = devices.map(|d| d.split_whitespace().map(str::parse).collect::<Result<_>>()).transpose()?;
    Ok(Grant { namespace, devices })
}

/// A namespace's replica at `file` (which must not exist): `schema` run, `tables` enabled.
/// Nothing is left at `file` after an error.
pub(crate) fn build_replica(file: &Path, options: &Options, schema: &str, tables: &[String], strategy: Strategy) -> Result<SyncEngine> {
    let made = (|| {
        let engine = SyncEngine::open(file, Options { create: true, ..options.clone() })?;
        engine.execute_batch(schema)?;
        for t in tables {
            engine.enable_sync(t, EnableOptions { strategy, ..Default::default() })?;
        }
        Ok(engine)
    })();
    if made.is_err() {
        remove_database(file);
    }
    made
}

/// One database, tokens given at start (`syncline serve DB`): namespace [`DEFAULT_NAMESPACE`].
pub(crate) struct Single {
    pub engine: Arc<SyncEngine>,
    pub tokens: Tokens,
}

impl Store for Single {
    fn is_open(&self) -> bool {
        self.tokens.is_open()
    }

    fn eager(&self) -> bool {
        true
    }

    fn names(&self) -> Result<Vec<String>> {
        Ok(vec![DEFAULT_NAMESPACE.to_owned()])
    }

    fn check(&self) -> Result<()> {
        self.engine.query("SELECT 1", &[]).map(drop)
    }

    fn grant(&self, token: &TokenHash) -> Result<Option<Grant>> {
        Ok(self.tokens.devices(token).map(|devices| Grant { namespace: DEFAULT_NAMESPACE.to_owned(), devices }))
    }

    fn open(&self, name: &str) -> Result<Option<Arc<SyncEngine>>> {
        Ok((name == DEFAULT_NAMESPACE).then(|| self.engine.clone()))
    }
}

/// A namespace as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Credentials issued for it.
    pub credentials: u64,
}

const CATALOG: &str = "
    CREATE TABLE IF NOT EXISTS namespaces(name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) STRICT;
    CREATE TABLE IF NOT EXISTS credentials(
        token_hash BLOB PRIMARY KEY,
        namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
        devices TEXT,
        created_ms INTEGER NOT NULL) STRICT;
    CREATE INDEX IF NOT EXISTS credentials_namespace ON credentials(namespace);";

/// A directory of namespaces: `DIR/hub.db` (the catalog) and `DIR/namespaces/NAME.db`.
/// Admin operations may run from another process while a server serves the directory: the
/// server reads the catalog on each request, so new and revoked credentials apply at once.
pub struct HubDir {
    dir: PathBuf,
    catalog: Mutex<Connection>,
    options: Options,
}

/// `InvalidArgument` unless `name` is 1-63 characters of `a-z`, `0-9`, `-` and `_`, starting
/// with a letter or digit: it becomes a file name and a URL segment.
pub fn check_namespace(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "namespace {:?} is not 1-63 characters of a-z, 0-9, '-' and '_' starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        )))
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl HubDir {
    /// Open (creating if needed) the hub directory `dir`; `options` are those of every
    /// namespace's engine (`create` is ignored).
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<HubDir> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(dir.join("namespaces"))
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot create {}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("hub.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(CATALOG)?;
        Ok(HubDir { dir, catalog: Mutex::new(conn), options })
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join("namespaces").join(format!("{name}.db"))
    }
}

impl Catalog for HubDir {
    fn create_namespace(&self, name: &str, schema: &str, tables: &[String], strategy: Strategy) -> Result<()> {
        check_namespace(name)?;
        let catalog = self.catalog();
        let exists: bool = catalog.query_row("SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)", [name], |r| r.get(0))?;
        let file = self.file(name);
        if exists || file.exists() {
            return Err(Error::invalid_argument(format!("namespace {name} exists")));
        }
        build_replica(&file, &self.options, schema, tables, strategy)?.close()?;
        let recorded = catalog.execute("INSERT INTO namespaces(name, created_ms) VALUES (?1, ?2)", rusqlite::params![name, now_ms()]);
        if recorded.is_err() {
            remove_database(&file);
        }
        recorded?;
        Ok(())
    }

    fn delete_namespace(&self, name: &str) -> Result<()> {
        check_namespace(name)?;
        if self.catalog().execute("DELETE FROM namespaces WHERE name = ?1", [name])? == 0 {
            return Err(Error::invalid_argument(format!("no namespace {name}")));
        }
        remove_database(&self.file(name));
        Ok(())
    }

    fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        let catalog = self.catalog();
        let mut stmt = catalog.prepare(
            "SELECT n.name, n.created_ms, (SELECT count(*) FROM credentials c WHERE c.namespace = n.name)
             FROM namespaces n ORDER BY n.name",
        )?;
        let rows =
            stmt.query_map([], |r| Ok(NamespaceInfo { name: r.get(0)?, created_ms: r.get(1)?, credentials: r.get::<_, i64>(2)? as u64 }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn issue_token(&self, name: &str, devices: &[SiteId]) -> Result<String> {
        check_namespace(name)?;
        let catalog = self.catalog();
        let exists: bool = catalog.query_row("SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)", [name], |r| r.get(0))?;
        if !exists {
            return Err(Error::invalid_argument(format!("no namespace {name}")));
        }
        let token = new_token();
        catalog.execute(
            "INSERT INTO credentials(token_hash, namespace, devices, created_ms) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![&hash(&token)[..], name, devices_text(devices), now_ms()],
        )?;
        Ok(token)
    }

    fn revoke_token(&self, token: &str) -> Result<bool> {
        Ok(self.catalog().execute("DELETE FROM credentials WHERE token_hash = ?1", [&hash(token)[..]])? > 0)
    }
}

/// Remove a database file and its journals.
pub(crate) fn remove_database(file: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

impl Store for HubDir {
    fn names(&self) -> Result<Vec<String>> {
        Ok(self.namespaces()?.into_iter().map(|n| n.name).collect())
    }

    fn check(&self) -> Result<()> {
        Ok(self.catalog().query_row("SELECT count(*) FROM namespaces", [], |r| r.get::<_, i64>(0)).map(drop)?)
    }

    fn grant(&self, token: &TokenHash) -> Result<Option<Grant>> {
        let found: Option<(String, Option<String>)> = self
            .catalog()
            .prepare_cached("SELECT namespace, devices FROM credentials WHERE token_hash = ?1")?
            .query_row([&token[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        found.map(|(namespace, devices)| grant_of(namespace, devices)).transpose()
    }

    fn open(&self, name: &str) -> Result<Option<Arc<SyncEngine>>> {
        if check_namespace(name).is_err() {
            return Ok(None);
        }
        let exists: bool = self.catalog().query_row("SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)", [name], |r| r.get(0))?;
        if !exists {
            return Ok(None);
        }
        SyncEngine::open(self.file(name), Options { create: false, ..self.options.clone() }).map(|e| Some(Arc::new(e)))
    }
}

/// Shared ownership of a store by the server.
pub(crate) type SharedStore = Arc<dyn Store>;

/// The storage a hub serves: a directory of SQLite files, or PostgreSQL (feature `postgres`).
pub enum Backend {
    Dir(HubDir),
    #[cfg(feature = "postgres")]
    Postgres(super::pg::PgHub),
}

impl From<HubDir> for Backend {
    fn from(hub: HubDir) -> Self {
        Backend::Dir(hub)
    }
}

#[cfg(feature = "postgres")]
impl From<super::pg::PgHub> for Backend {
    fn from(hub: super::pg::PgHub) -> Self {
        Backend::Postgres(hub)
    }
}

impl Backend {
    pub(crate) fn into_store(self) -> SharedStore {
        match self {
            Backend::Dir(h) => Arc::new(h),
            #[cfg(feature = "postgres")]
            Backend::Postgres(h) => Arc::new(h),
        }
    }

    /// Its admin operations.
    pub fn catalog(&self) -> &dyn Catalog {
        match self {
            Backend::Dir(h) => h,
            #[cfg(feature = "postgres")]
            Backend::Postgres(h) => h,
        }
    }
}
