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
    /// token configured).
    fn is_open(&self) -> bool;
    /// True when the server opens [`DEFAULT_NAMESPACE`] at start (a single database).
    fn eager(&self) -> bool;
    /// The grant of an admitted token, or `None`.
    fn grant(&self, token: &TokenHash) -> Result<Option<Grant>>;
    /// The engine that writes namespace `name`'s replica, or `None` if there is no such
    /// namespace.
    fn open(&self, name: &str) -> Result<Option<Arc<SyncEngine>>>;
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

fn now_ms() -> i64 {
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

    /// Create namespace `name`: a new database on which `schema` (SQL) runs and `tables` are
    /// enabled with `strategy`. `InvalidArgument` if it exists; nothing is left after an error.
    pub fn create_namespace(&self, name: &str, schema: &str, tables: &[String], strategy: Strategy) -> Result<()> {
        check_namespace(name)?;
        let catalog = self.catalog();
        let exists: bool = catalog.query_row("SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)", [name], |r| r.get(0))?;
        let file = self.file(name);
        if exists || file.exists() {
            return Err(Error::invalid_argument(format!("namespace {name} exists")));
        }
        let made = (|| {
            let engine = SyncEngine::open(&file, Options { create: true, ..self.options.clone() })?;
            engine.execute_batch(schema)?;
            for t in tables {
                engine.enable_sync(t, EnableOptions { strategy, ..Default::default() })?;
            }
            engine.close()?;
            catalog.execute("INSERT INTO namespaces(name, created_ms) VALUES (?1, ?2)", rusqlite::params![name, now_ms()])?;
            Ok(())
        })();
        if made.is_err() {
            remove_database(&file);
        }
        made
    }

    /// Delete namespace `name`, its credentials and its database files. `InvalidArgument` if
    /// there is no such namespace.
    pub fn delete_namespace(&self, name: &str) -> Result<()> {
        check_namespace(name)?;
        if self.catalog().execute("DELETE FROM namespaces WHERE name = ?1", [name])? == 0 {
            return Err(Error::invalid_argument(format!("no namespace {name}")));
        }
        remove_database(&self.file(name));
        Ok(())
    }

    /// Every namespace, by name.
    pub fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        let catalog = self.catalog();
        let mut stmt = catalog.prepare(
            "SELECT n.name, n.created_ms, (SELECT count(*) FROM credentials c WHERE c.namespace = n.name)
             FROM namespaces n ORDER BY n.name",
        )?;
        let rows =
            stmt.query_map([], |r| Ok(NamespaceInfo { name: r.get(0)?, created_ms: r.get(1)?, credentials: r.get::<_, i64>(2)? as u64 }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Issue a new random token for namespace `name`, for any device (`devices` empty) or only
    /// these. The token is shown once: the catalog keeps its hash.
    pub fn issue_token(&self, name: &str, devices: &[SiteId]) -> Result<String> {
        check_namespace(name)?;
        let catalog = self.catalog();
        let exists: bool = catalog.query_row("SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)", [name], |r| r.get(0))?;
        if !exists {
            return Err(Error::invalid_argument(format!("no namespace {name}")));
        }
        let token = format!("sl_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let devices = (!devices.is_empty()).then(|| devices.iter().map(SiteId::to_hex).collect::<Vec<_>>().join(" "));
        catalog.execute(
            "INSERT INTO credentials(token_hash, namespace, devices, created_ms) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![&hash(&token)[..], name, devices, now_ms()],
        )?;
        Ok(token)
    }

    /// Revoke a token; false if it was not issued here.
    pub fn revoke_token(&self, token: &str) -> Result<bool> {
        Ok(self.catalog().execute("DELETE FROM credentials WHERE token_hash = ?1", [&hash(token)[..]])? > 0)
    }
}

/// Remove a database file and its journals.
fn remove_database(file: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

impl Store for HubDir {
    fn is_open(&self) -> bool {
        false
    }

    fn eager(&self) -> bool {
        false
    }

    fn grant(&self, token: &TokenHash) -> Result<Option<Grant>> {
        let found: Option<(String, Option<String>)> = self
            .catalog()
            .prepare_cached("SELECT namespace, devices FROM credentials WHERE token_hash = ?1")?
            .query_row([&token[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((namespace, devices)) = found else { return Ok(None) };
        let devices = devices.map(|d| d.split_whitespace().map(str::parse).collect::<Result<_>>()).transpose()?;
        Ok(Some(Grant { namespace, devices }))
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
