// Which SQLite Syncline runs on inside a JVM. Syncline holds no SQLite of its own: it runs inside
// the SQLite of the application's driver, so that the process holds one SQLite library (two
// copies do not share POSIX file locks and corrupt each other's view of a database file).
//
// On the JVM that driver is sqlite-jdbc, which carries its own native SQLite. Syncline is loaded
// into it as a SQLite extension: `load_extension('<this very libsyncline_ffi.so>',
// 'sqlite3_syncline_init')` on a sqlite-jdbc connection with extension loading enabled. The file
// is the one JNA loaded, so dlopen returns the same handle and the API table lands in the library
// every UniFFI call uses. `SyncEngine.open` does it on first use with a connection of its own
// when sqlite-jdbc is on the class path; `Syncline.attach(connection)` does it with yours.
@file:JvmName("SynclineSqlite")

package dev.syncline

import java.sql.Connection
import java.sql.DriverManager
import java.sql.SQLException
import java.util.Properties

/** The SQLite wiring of Syncline on the JVM (see the file comment and kotlin/README.md). */
object Syncline {
    private const val ENTRY_POINT = "sqlite3_syncline_init"
    private const val SQLITE_JDBC = "org.sqlite.JDBC"
    private const val MEMORY_URL = "jdbc:sqlite::memory:"

    /** The absolute path of the native library the JVM loaded: what a driver loads as the extension. */
    @JvmStatic
    val extensionPath: String
        get() = ffiLibraryPath()
            ?: throw SynclineException.SqliteLibrary("cannot tell where libsyncline_ffi was loaded from")

    /** The SQLite library Syncline runs on in this process, if one is bound. */
    @JvmStatic
    val boundLibrary: SqliteLibraryInfo?
        get() = boundSqliteLibrary()

    /**
     * Run Syncline inside the SQLite of [connection] (sqlite-jdbc, or any JDBC driver over a
     * SQLite that loads extensions), for every engine of this process. The connection must allow
     * extension loading: sqlite-jdbc `SQLiteConfig().apply { enableLoadExtension(true) }` (the
     * connection property `enable_load_extension=true`); Syncline stays loaded when it is closed.
     * Attaching the SQLite already bound again is a no-op.
     *
     * @throws SynclineException.SqliteLibrary if the connection refuses extensions, or if its
     *   SQLite is another copy than the one Syncline already runs on.
     */
    @JvmStatic
    fun attach(connection: Connection) {
        val path = extensionPath
        try {
            connection.createStatement().use { st ->
                st.executeQuery("SELECT load_extension('${path.replace("'", "''")}', '$ENTRY_POINT')").close()
            }
        } catch (e: SQLException) {
            val why = e.message ?: e.toString()
            val hint = if ("not authorized" in why) {
                ": open the connection with extension loading enabled (sqlite-jdbc: " +
                    "SQLiteConfig().apply { enableLoadExtension(true) }.toProperties(), or enable_load_extension=true)"
            } else {
                ""
            }
            throw SynclineException.SqliteLibrary("cannot load Syncline into this connection's SQLite ($why)$hint")
        }
    }

    /**
     * The default wiring, applied by [SyncEngine.Companion.open]: when no SQLite is bound yet and
     * sqlite-jdbc is on the class path, attach Syncline to sqlite-jdbc's SQLite through a private
     * in-memory connection. Without sqlite-jdbc nothing is bound, and opening an engine fails with
     * [SynclineException.SqliteLibrary] until the app calls [attach] or [bind].
     */
    @JvmStatic
    fun useDefault() {
        if (boundSqliteLibrary() != null) return
        synchronized(this) {
            if (boundSqliteLibrary() != null) return
            val driver = try {
                DriverManager.getDriver(MEMORY_URL)
            } catch (e: SQLException) {
                return // no SQLite JDBC driver: no default
            }
            if (driver.javaClass.name != SQLITE_JDBC) return
            val props = Properties().apply { setProperty("enable_load_extension", "true") }
            val connection = driver.connect(MEMORY_URL, props)
                ?: throw SynclineException.SqliteLibrary("sqlite-jdbc refused $MEMORY_URL")
            connection.use { attach(it) }
        }
    }

    /**
     * Bind the SQLite shared library at [path] (a name dlopen resolves or an absolute path) for
     * every engine of this process, when the app's driver runs on that library (not sqlite-jdbc,
     * whose SQLite is private: use [attach] there). Another library than the bound one fails with
     * [SynclineException.SqliteLibrary].
     */
    @JvmStatic
    fun bind(path: String) = bindSqliteLibrary(path)

    /**
     * Prove that [connection]'s driver and Syncline run on one SQLite library (the soft heap
     * limit is global to a library): [SynclineException.SqliteLibrary] if they do not.
     */
    @JvmStatic
    fun checkShared(connection: Connection) = checkSharedSqlite(object : SqliteDriverProbe {
        override fun setSoftHeapLimit(limit: Long) {
            try {
                connection.createStatement().use { it.execute("PRAGMA soft_heap_limit = $limit") }
            } catch (e: SQLException) {
                throw SynclineException.Sqlite("the driver failed: ${e.message}")
            }
        }
    })
}

/**
 * Open (or create) a database file on the SQLite of this process: the one attached or bound
 * before, else sqlite-jdbc's ([Syncline.useDefault]). [options]: none for the core's defaults.
 *
 * @throws SynclineException.SqliteLibrary when no SQLite is bound and sqlite-jdbc is absent.
 */
fun SyncEngine.Companion.open(path: String, options: EngineOptions? = null): SyncEngine {
    Syncline.useDefault()
    return SyncEngine.openBound(path, options)
}

/**
 * Start a new device from the snapshot of the server at [url] (`GET /v1/snapshot`): download it
 * to [path], a new file, on the SQLite of this process ([Syncline.useDefault] first, as
 * [SyncEngine.Companion.open]); returns its size in bytes. [progress] gets (bytes, total bytes)
 * as it arrives (total 0 if the server did not say), on the download's thread. Then
 * `SyncEngine.open(path)` and `sync(url, token)`: the first pass carries only what changed since.
 *
 * @throws SynclineException.InvalidArgument if [path] exists; `Auth`, `Network`, `InvalidBundle`
 *   (not a snapshot of that server). Nothing is left at [path] after an error.
 */
suspend fun cloneSnapshot(url: String, path: String, token: String? = null, progress: ProgressListener? = null): ULong {
    Syncline.useDefault()
    return cloneSnapshotBound(url, path, token, progress)
}
