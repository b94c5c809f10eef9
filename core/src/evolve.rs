//! Schema evolution of synced tables (spec/schema-evolution.md).
//!
//! Detection: columns added to a synced table behind the engine's back (the `sqlite3` shell,
//! an ORM) are found at the next stamping pass, registered, captured from then on, and the
//! values written to them before are stamped. Unsupported changes are left to
//! `schema::check_synced`, which names them.
//!
//! Migrations: [`add_column`] changes a synced table and registers the column in one
//! transaction, stamped with an HLC; bundles carry the migrations a peer lacks
//! ([`to_send`]), and an import applies them before its rows ([`receive`]) or holds them, as
//! the engine's [`MigrationPolicy`] says. Every registered change is logged in
//! `_syncline_migrations`, which `status` reports and exports read.

use crate::bundle::{WireMigration, ADD_COLUMN};
use crate::capture;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::{self, SyncedTable, VersionVector};
use crate::schema::{self, quote_ident, ColumnInfo};
use crate::shadow::{self, Stamp};
use crate::site::SiteId;
use crate::value::Value;
use rusqlite::{Connection, OptionalExtension};
use std::collections::BTreeMap;

/// The schema log: one row per column registered after its table was enabled. `source` says
/// how it came: `detected` (an ALTER by another writer), `local` (a migration made here),
/// `remote` (a migration received). `state` is `applied`, or `held` (received, the policy
/// holds it for the app). `dflt` is the default as a MessagePack value (migrations), or NULL.
pub const DDL: &str = "CREATE TABLE IF NOT EXISTS _syncline_migrations(
  id INTEGER PRIMARY KEY, hlc INTEGER NOT NULL, site INTEGER NOT NULL, tbl TEXT NOT NULL, col TEXT NOT NULL,
  decl_type TEXT NOT NULL, dflt BLOB, source TEXT NOT NULL, state TEXT NOT NULL, UNIQUE(site, hlc));";

/// One entry of the schema log, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    pub table: String,
    pub column: String,
    /// The declared type, upper-cased.
    pub decl_type: String,
    /// `detected`, `local` or `remote`.
    pub source: String,
    /// `applied` or `held`.
    pub state: String,
    /// The stamp the change was recorded with.
    pub hlc: u64,
}

/// Whether the schema changed since the last pass looked (`PRAGMA schema_version` moved).
pub fn schema_moved(conn: &Connection) -> Result<bool> {
    let now: i64 = conn.prepare_cached("PRAGMA schema_version")?.query_row([], |r| r.get(0))?;
    let seen: Option<i64> =
        conn.prepare_cached("SELECT value FROM _syncline_meta WHERE key = 'schema_version'")?.query_row([], |r| r.get(0)).optional()?;
    Ok(seen != Some(now))
}

fn note_schema(conn: &Connection) -> Result<()> {
    let now: i64 = conn.prepare_cached("PRAGMA schema_version")?.query_row([], |r| r.get(0))?;
    conn.prepare_cached("INSERT OR REPLACE INTO _syncline_meta(key, value) VALUES ('schema_version', ?1)")?.execute([now])?;
    Ok(())
}

/// The default of a live column as SQL text (from the table's own schema), if any.
fn default_sql(conn: &Connection, table: &str, column: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT dflt_value FROM pragma_table_xinfo(?1) WHERE name = ?2")?
        .query_row([table, column], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Columns the live table has that `t` does not register (key and generated ones aside).
pub fn added_columns(conn: &Connection, t: &SyncedTable) -> Result<Vec<ColumnInfo>> {
    let info = schema::introspect(conn, &t.name)?;
    Ok(info.cols.into_iter().filter(|c| !t.cols.contains(&c.name)).collect())
}

/// Register `col` as the next column of `t` (its shadow gains the stamp columns, never
/// stamped), without touching the triggers. The caller reinstalls them.
pub fn register_column(conn: &Connection, t: &mut SyncedTable, col: &ColumnInfo) -> Result<()> {
    conn.prepare_cached("INSERT INTO _syncline_columns(tbl, is_pk, ord, name, affinity, decl_type) VALUES (?1, 0, ?2, ?3, ?4, ?5)")?
        .execute(rusqlite::params![t.id, t.cols.len() as i64, col.name, col.affinity, col.decl_type])?;
    t.cols.push(col.name.clone());
    shadow::add_column(conn, t)
}

/// One added column, as logged (and, for migrations, carried).
#[derive(Debug, Clone, PartialEq)]
pub struct AddColumn {
    pub table: String,
    pub column: String,
    pub decl_type: String,
    /// The default of a migration (`None` for a detected ALTER: the table's own schema has it).
    pub default: Option<Value>,
    pub stamp: Stamp,
}

/// Log a registered column: `source` and `state` as in [`DDL`].
pub fn log(conn: &Connection, m: &AddColumn, source: &str, state: &str) -> Result<()> {
    let dflt = m.default.as_ref().map(|v| rmp_serde::to_vec(v).expect("values encode"));
    conn.prepare_cached(
        "INSERT OR IGNORE INTO _syncline_migrations(hlc, site, tbl, col, decl_type, dflt, source, state) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![m.stamp.hlc as i64, m.stamp.site, m.table, m.column, m.decl_type, dflt, source, state])?;
    Ok(())
}

/// The log entry of a column detected in `t`.
pub fn detected(t: &SyncedTable, col: &ColumnInfo, stamp: Stamp) -> AddColumn {
    AddColumn { table: t.name.clone(), column: col.name.clone(), decl_type: col.decl_type.clone(), default: None, stamp }
}

/// Register the columns added to `t` behind the engine's back, stamping (with one new stamp)
/// the values live rows hold in them other than NULL and the column's default, and reinstall
/// the triggers so the columns are captured from now on. Returns how many were added.
pub fn adopt_added(conn: &Connection, t: &mut SyncedTable) -> Result<usize> {
    let added = added_columns(conn, t)?;
    if added.is_empty() {
        return Ok(0);
    }
    capture::uninstall_triggers(conn, t)?;
    for col in &added {
        let stamp = shadow::local_stamp(conn)?;
        register_column(conn, t, col)?;
        mark_applied(conn, &t.name, &col.name)?;
        let dflt = default_sql(conn, &t.name, &col.name)?;
        shadow::stamp_column(conn, t, t.cols.len() - 1, dflt.as_deref(), stamp)?;
        log(conn, &detected(t, col, stamp), "detected", "applied")?;
    }
    capture::install_triggers(conn, t)?;
    crate::apply::release(conn, &t.name)?;
    Ok(added.len())
}

/// The stamping pass's look at the schema: when it moved, adopt the columns added to every
/// synced table that is otherwise unchanged (a table with an unsupported change, or dropped,
/// is left for `schema::check_synced` to report and `enable_sync` to take back).
pub fn detect(conn: &Connection) -> Result<()> {
    if !schema_moved(conn)? {
        return Ok(());
    }
    let mut unsupported = false;
    for mut t in meta::synced_tables(conn)?.into_values() {
        if !capture::has_triggers(conn, t.id)? || schema::check_columns(conn, t.id, &t.name).is_err() {
            unsupported = true;
            continue;
        }
        adopt_added(conn, &mut t)?;
    }
    // While a change waits to be undone (or the table enabled again), every pass looks again
    // and the file stays as it is.
    if unsupported {
        return Ok(());
    }
    note_schema(conn)
}

/// The schema log, oldest first.
pub fn changes(conn: &Connection) -> Result<Vec<SchemaChange>> {
    let mut stmt = conn.prepare_cached("SELECT tbl, col, decl_type, source, state, hlc FROM _syncline_migrations ORDER BY hlc, id")?;
    let rows = stmt.query_map([], |r| {
        Ok(SchemaChange {
            table: r.get(0)?,
            column: r.get(1)?,
            decl_type: r.get(2)?,
            source: r.get(3)?,
            state: r.get(4)?,
            hlc: r.get::<_, i64>(5)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Held migrations of `table` adding `column` are settled: the column exists now.
fn mark_applied(conn: &Connection, table: &str, column: &str) -> Result<()> {
    conn.prepare_cached("UPDATE _syncline_migrations SET state = 'applied' WHERE tbl = ?1 AND col = ?2 AND state = 'held'")?
        .execute([table, column])?;
    Ok(())
}

/// What an engine does with a migration it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    /// Apply additive migrations to the local table as they arrive (the default).
    #[default]
    Apply,
    /// Keep them (listed in `status` as held, relayed to peers) for the app to apply, by
    /// running the ALTER itself or calling `apply_held_migrations`. Cells of the columns
    /// they add are held meanwhile.
    Hold,
}

impl MigrationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPolicy::Apply => "apply",
            MigrationPolicy::Hold => "hold",
        }
    }
}

impl std::str::FromStr for MigrationPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "apply" => Ok(MigrationPolicy::Apply),
            "hold" => Ok(MigrationPolicy::Hold),
            other => Err(Error::invalid_argument(format!("unknown migration policy {other:?} (apply, hold)"))),
        }
    }
}

/// The engine's policy (stored in the file, so every connection and process agrees).
pub fn policy(conn: &Connection) -> Result<MigrationPolicy> {
    let v: Option<String> =
        conn.prepare_cached("SELECT value FROM _syncline_meta WHERE key = 'migration_policy'")?.query_row([], |r| r.get(0)).optional()?;
    v.map_or(Ok(MigrationPolicy::Apply), |v| v.parse())
}

pub fn set_policy(conn: &Connection, p: MigrationPolicy) -> Result<()> {
    conn.execute("INSERT OR REPLACE INTO _syncline_meta(key, value) VALUES ('migration_policy', ?1)", [p.as_str()])?;
    Ok(())
}

/// Words that would make a declared type a constraint.
const CONSTRAINT_WORDS: [&str; 18] = [
    "PRIMARY",
    "KEY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
    "CONSTRAINT",
    "ON",
    "CONFLICT",
    "ALWAYS",
    "STORED",
    "VIRTUAL",
    "AUTOINCREMENT",
];

/// A table or column name a migration may use: 1 to 128 characters, no control character,
/// not reserved for SQLite or Syncline. (Names are always quoted; the rules keep forged
/// migrations from naming anything odd.)
pub fn check_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) || schema::is_reserved_table(name) {
        return Err(Error::invalid_argument(format!("{what} {name:?} is not a name a migration may use")));
    }
    Ok(())
}

/// A declared type a migration may use, upper-cased: one to three words of letters, digits
/// and `_` (none a constraint keyword), optionally `(n)` or `(n, m)`, as SQLite type names
/// are. Anything else could smuggle a constraint into the ALTER.
pub fn check_type(decl: &str) -> Result<String> {
    let bad = || Error::invalid_argument(format!("{decl:?} is not a column type a migration may use (e.g. INTEGER, TEXT, VARCHAR(20))"));
    let upper = decl.trim().to_ascii_uppercase();
    let (words, size) = match upper.find('(') {
        Some(i) => (&upper[..i], Some(&upper[i..])),
        None => (upper.as_str(), None),
    };
    let words: Vec<&str> = words.split_whitespace().collect();
    let word_ok = |w: &&str| {
        w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !CONSTRAINT_WORDS.contains(w)
    };
    if words.is_empty() || words.len() > 3 || !words.iter().all(word_ok) || upper.len() > 64 {
        return Err(bad());
    }
    if let Some(size) = size {
        let inner = size.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(bad)?;
        let nums: Vec<&str> = inner.split(',').map(str::trim).collect();
        if nums.len() > 2 || !nums.iter().all(|n| !n.is_empty() && n.len() <= 9 && n.chars().all(|c| c.is_ascii_digit())) {
            return Err(bad());
        }
        return Ok(format!("{}({})", words.join(" "), nums.join(",")));
    }
    Ok(words.join(" "))
}

/// A value as an SQL literal, for the DEFAULT clause (which takes no parameters).
pub fn literal(v: &Value) -> Result<String> {
    Ok(match v {
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) if f.is_finite() => format!("{f:?}"),
        Value::Real(_) => return Err(Error::invalid_argument("a column default cannot be NaN or infinite")),
        Value::Text(t) if t.contains('\0') => return Err(Error::invalid_argument("a column default cannot contain NUL")),
        Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
        Value::Blob(b) => format!("X'{}'", hex::encode(b)),
    })
}

/// Check a migration's names, type and default; returns it with the type normalized.
fn checked(m: &AddColumn) -> Result<AddColumn> {
    check_name(&m.table, "table")?;
    check_name(&m.column, "column")?;
    let decl_type = check_type(&m.decl_type)?;
    literal(m.default.as_ref().unwrap_or(&Value::Null))?;
    Ok(AddColumn { decl_type, ..m.clone() })
}

/// Whether the live table `t` already has the column `m` adds, with the same type and
/// default (then the migration is already applied); another type or default is refused.
fn compatible(conn: &Connection, t: &SyncedTable, m: &AddColumn) -> Result<bool> {
    if t.pk.contains(&m.column) {
        return Err(Error::schema(format!("a migration adds column {:?} to {:?}, which is its primary key", m.column, t.name)));
    }
    let live: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT upper(type), dflt_value FROM pragma_table_xinfo(?1) WHERE name = ?2")?
        .query_row([&t.name, &m.column], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((decl, dflt)) = live else { return Ok(false) };
    let want = literal(m.default.as_ref().unwrap_or(&Value::Null))?;
    let have = dflt.unwrap_or_else(|| "NULL".to_owned());
    if decl != m.decl_type || have != want {
        return Err(Error::schema(format!(
            "a migration adds column {:?} to {:?} as {} DEFAULT {want}, but the column exists here as {decl} DEFAULT {have}: \
             changing a column's type or default is not supported; {}",
            m.column,
            t.name,
            m.decl_type,
            schema::WAY_OUT
        )));
    }
    Ok(true)
}

/// Run the ALTER of `m` on the synced table `t` and register the column (triggers reinstalled).
fn apply_to(conn: &Connection, t: &mut SyncedTable, m: &AddColumn) -> Result<()> {
    let sql = format!(
        "ALTER TABLE {} ADD COLUMN {} {} DEFAULT {}",
        quote_ident(&t.name),
        quote_ident(&m.column),
        m.decl_type,
        literal(m.default.as_ref().unwrap_or(&Value::Null))?
    );
    conn.execute_batch(&sql)?;
    let col = schema::introspect(conn, &t.name)?.cols.into_iter().find(|c| c.name == m.column).expect("just added");
    capture::uninstall_triggers(conn, t)?;
    register_column(conn, t, &col)?;
    capture::install_triggers(conn, t)?;
    mark_applied(conn, &t.name, &m.column)?;
    crate::apply::release(conn, &t.name).map(|_| ())
}

/// Add a column to a synced table through Syncline (`SyncEngine::add_column`): the ALTER, its
/// registration and capture, and the migration record with a new stamp, in the caller's
/// transaction. Existing rows hold the default, which needs no stamp.
pub fn add_column(conn: &Connection, table: &str, column: &str, decl_type: &str, default: Value) -> Result<AddColumn> {
    let mut t = meta::synced_tables(conn)?
        .remove(table)
        .ok_or_else(|| Error::new(ErrorKind::UnknownTable, format!("table {table:?} is not enabled for sync")))?;
    let m = checked(&AddColumn {
        table: table.to_owned(),
        column: column.to_owned(),
        decl_type: decl_type.to_owned(),
        default: Some(default),
        stamp: Stamp { hlc: 0, site: 0 },
    })?;
    if t.cols.contains(&m.column) || t.pk.contains(&m.column) || compatible(conn, &t, &m)? {
        return Err(Error::invalid_argument(format!("table {table:?} already has a column {column:?}")));
    }
    let m = AddColumn { stamp: shadow::local_stamp(conn)?, ..m };
    apply_to(conn, &mut t, &m)?;
    log(conn, &m, "local", "applied")?;
    Ok(m)
}

/// Apply (or hold) migrations received in a bundle, oldest first, inside the import's
/// transaction. Returns the stamps they carried (origin ordinal, hlc) and how many changed
/// the local schema. A malformed one is `InvalidBundle`, an incompatible one
/// `SchemaMismatch`; either fails the import, which leaves the file as it was.
pub fn receive(conn: &Connection, wire: &[WireMigration]) -> Result<(Vec<(i64, u64)>, u64)> {
    let policy = policy(conn)?;
    let mut stamps = Vec::with_capacity(wire.len());
    let mut applied = 0;
    for w in wire {
        let site = SiteId::from_slice(&w.6).map_err(|_| Error::invalid_bundle("a migration's site id is not 16 bytes"))?;
        let m = AddColumn {
            table: w.1.clone(),
            column: w.2.clone(),
            decl_type: w.3.clone(),
            default: Some(w.4.clone()),
            stamp: Stamp { hlc: w.5, site: meta::site_ord(conn, &site)? },
        };
        let m = checked(&m).map_err(|e| Error::invalid_bundle(format!("a migration in the bundle is refused: {}", e.message())))?;
        if m.decl_type != w.3 {
            return Err(Error::invalid_bundle("a migration's type is not written in its normal form (not canonical)"));
        }
        stamps.push((m.stamp.site, m.stamp.hlc));
        let known: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM _syncline_migrations WHERE site = ?1 AND hlc = ?2)")?
            .query_row(rusqlite::params![m.stamp.site, m.stamp.hlc as i64], |r| r.get(0))?;
        if known {
            continue;
        }
        let state = match meta::synced_tables(conn)?.remove(&m.table) {
            // Not synced here (yet): kept, relayed, and settled when the table is enabled.
            None => "held",
            Some(t) if compatible(conn, &t, &m)? => "applied",
            Some(_) if policy == MigrationPolicy::Hold => "held",
            Some(mut t) => {
                apply_to(conn, &mut t, &m)?;
                applied += 1;
                "applied"
            }
        };
        log(conn, &m, "remote", state)?;
    }
    Ok((stamps, applied))
}

/// Apply the held migrations of the synced table `t`, or of every synced table (`None`),
/// whatever the policy (`SyncEngine::apply_held_migrations`, and `enable_sync` under the
/// apply policy). Returns how many changed a table.
pub fn apply_held(conn: &Connection, table: Option<&str>) -> Result<u64> {
    let mut stmt = conn.prepare(
        "SELECT hlc, site, tbl, col, decl_type, dflt FROM _syncline_migrations WHERE state = 'held' AND (?1 IS NULL OR tbl = ?1) \
         ORDER BY hlc, id",
    )?;
    let held: Vec<AddColumn> = stmt
        .query_map([table], |r| {
            let dflt: Option<Vec<u8>> = r.get(5)?;
            Ok(AddColumn {
                table: r.get(2)?,
                column: r.get(3)?,
                decl_type: r.get(4)?,
                default: dflt.and_then(|b| rmp_serde::from_slice(&b).ok()),
                stamp: Stamp { hlc: r.get::<_, i64>(0)? as u64, site: r.get(1)? },
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut applied = 0;
    for m in held {
        let Some(mut t) = meta::synced_tables(conn)?.remove(&m.table) else { continue };
        if !t.cols.contains(&m.column) && !compatible(conn, &t, &m)? {
            apply_to(conn, &mut t, &m)?;
            applied += 1;
        }
        mark_applied(conn, &m.table, &m.column)?;
    }
    Ok(applied)
}

/// The migrations (made here or received) a peer that holds `known` lacks, in wire order;
/// `None` when there are none (the header then has no `migrations` key).
pub fn to_send(conn: &Connection, known: &VersionVector, sites: &BTreeMap<i64, SiteId>) -> Result<Option<Vec<WireMigration>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hlc, site, tbl, col, decl_type, dflt FROM _syncline_migrations WHERE source <> 'detected' ORDER BY hlc, id",
    )?;
    let mut out: Vec<WireMigration> = Vec::new();
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, Option<Vec<u8>>>(5)?))
    })?;
    for row in rows {
        let (hlc, site, tbl, col, decl, dflt): (u64, i64, String, String, String, Option<Vec<u8>>) = row?;
        if hlc <= known.get(&site).copied().unwrap_or(0) {
            continue;
        }
        let Some(id) = sites.get(&site) else { continue };
        let default = dflt.and_then(|b| rmp_serde::from_slice(&b).ok()).unwrap_or(Value::Null);
        out.push(WireMigration(ADD_COLUMN.to_owned(), tbl, col, decl, default, hlc, id.0.to_vec()));
    }
    out.sort_by(|a, b| (a.5, &a.6).cmp(&(b.5, &b.6)));
    Ok((!out.is_empty()).then_some(out))
}
