package dev.syncline

import com.sun.jna.Function
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import org.sqlite.SQLiteConfig
import java.io.File
import java.nio.file.Path
import java.sql.Connection
import java.sql.DriverManager
import java.util.Collections
import java.util.concurrent.TimeUnit

/**
 * Syncline runs inside sqlite-jdbc's own SQLite (issue 13): one SQLite per process, so the app's
 * sqlite-jdbc connections in the same JVM write while the engines run, opened and closed freely
 * between syncs, and nothing diverges.
 */
class SqliteJdbcTest {
    @TempDir
    lateinit var dir: Path

    private fun path(name: String) = dir.resolve(name).toString()

    private fun jdbc(path: String, extensions: Boolean = false): Connection {
        val config = SQLiteConfig()
        config.setBusyTimeout(5000)
        if (extensions) config.enableLoadExtension(true)
        return DriverManager.getConnection("jdbc:sqlite:$path", config.toProperties())
    }

    private fun Connection.run(sql: String) = createStatement().use { it.executeUpdate(sql) }

    private fun Connection.long(sql: String): Long =
        createStatement().use { st -> st.executeQuery(sql).use { rs -> assertTrue(rs.next()); rs.getLong(1) } }

    private fun Connection.text(sql: String): String =
        createStatement().use { st -> st.executeQuery(sql).use { rs -> assertTrue(rs.next()); rs.getString(1) } }

    private fun sync(from: SyncEngine, to: SyncEngine) {
        to.importBundle(from.generateBundle(to.siteId()))
    }

    @Test
    fun synclineRunsInsideSqliteJdbcsOwnSqlite() {
        SyncEngine.open(path("a.db")).use { e ->
            val lib = Syncline.boundLibrary ?: throw AssertionError("nothing bound after open")
            assertTrue("sqlitejdbc" in lib.origin, lib.origin)
            jdbc(":memory:").use { c ->
                val version = c.text("SELECT sqlite_version()")
                assertEquals(version, lib.version)
                assertEquals(listOf(listOf<Value>(Value.Text(version))), e.rows("SELECT sqlite_version()"))
                // the app's driver and the engine share one library
                Syncline.checkShared(c)
            }
            // attaching one more connection of the same SQLite is a no-op
            jdbc(":memory:", extensions = true).use { Syncline.attach(it) }
            assertEquals(lib, Syncline.boundLibrary)
            assertTrue(File(Syncline.extensionPath).isAbsolute)
        }
    }

    @Test
    fun sqliteJdbcConnectionsWriteWhileSynclineRunsAndTheReplicasConverge() {
        val paths = listOf(path("a.db"), path("b.db"))
        val engines = paths.map { p ->
            SyncEngine.open(p, defaultEngineOptions().copy(watchIntervalMs = 10uL)).also {
                it.executeBatch(TODOS)
                it.enableSync("todos", Strategy.MANUAL)
            }
        }
        val (a, b) = engines
        val events = Collections.synchronizedList(mutableListOf<Event>())
        val sub = a.subscribe { events.add(it) }
        val kept = jdbc(paths[1]) // one connection stays open the whole time
        for (round in 0 until 4) {
            paths.forEachIndexed { i, p ->
                jdbc(p).use { c -> // opened and closed between syncs
                    c.run("INSERT INTO todos(id, title) VALUES ('r$round-$i', 'jdbc')")
                    c.run("UPDATE todos SET n = $round WHERE id LIKE 'r%'")
                }
            }
            kept.run("INSERT INTO todos(id, title) VALUES ('k$round', 'kept')")
            sync(a, b)
            sync(b, a)
        }
        for (p in paths) {
            jdbc(p).use { c ->
                assertEquals(12L, c.long("SELECT count(*) FROM todos"))
                assertEquals(8L, c.long("SELECT count(*) FROM todos WHERE n = 3"))
                assertEquals(0L, c.long("SELECT count(*) FROM _syncline_queue"))
            }
        }
        assertEquals(a.stateHash(), b.stateHash())
        // the engine saw sqlite-jdbc's writes as local changes
        assertTrue(waitUntil { synchronized(events) { events.any { it.kind == EventKind.LOCAL && it.pk == listOf<Value>(Value.Text("r3-0")) } } })

        // a manual conflict between two sqlite-jdbc writers records and resolves
        jdbc(paths[0]).use { it.run("UPDATE todos SET title = 'from a' WHERE id = 'k0'") }
        kept.run("UPDATE todos SET title = 'from b' WHERE id = 'k0'")
        sync(b, a)
        val open = a.conflicts()
        assertEquals(listOf("title"), open.map { it.column })
        assertEquals(Value.Text("from a"), open[0].local.value)
        assertEquals(Value.Text("from b"), open[0].remote.value)
        a.resolve(open[0].id!!, Resolution.Remote)
        assertEquals(0, a.conflicts().size)
        sync(a, b)
        sync(b, a)
        for (p in paths) {
            jdbc(p).use { assertEquals("from b", it.text("SELECT title FROM todos WHERE id = 'k0'")) }
        }
        assertEquals(a.stateHash(), b.stateHash())
        kept.close()
        assertEquals(listOf(0uL), a.status().peers.map { it.pending })
        sub.close()
        engines.forEach { it.close() }
    }

    @Test
    fun aSecondSqliteLibraryIsRefused() {
        SyncEngine.open(path("a.db")).use { e ->
            val bound = Syncline.boundLibrary
            // the system SQLite is another copy than sqlite-jdbc's
            expectError<SynclineException.SqliteLibrary> { Syncline.bind("libsqlite3.so.0") }
            expectError<SynclineException.SqliteLibrary> { Syncline.bind(path("no-such-library.so")) }
            // a driver on that other copy fails the check, whatever it sets
            val other = Function.getFunction("libsqlite3.so.0", "sqlite3_soft_heap_limit64")
            expectError<SynclineException.SqliteLibrary> {
                checkSharedSqlite(object : SqliteDriverProbe {
                    override fun setSoftHeapLimit(limit: Long) {
                        other.invokeLong(arrayOf(limit))
                    }
                })
            }
            // a probe whose driver throws: that failure, as a Sqlite error
            val failed = expectError<SynclineException.Sqlite> {
                checkSharedSqlite(object : SqliteDriverProbe {
                    override fun setSoftHeapLimit(limit: Long): Unit = throw IllegalStateException("driver down")
                })
            }
            assertTrue("driver down" in failed.text, failed.text)
            // a connection that refuses extensions cannot be attached: a typed error that says how
            jdbc(":memory:").use { c ->
                val err = expectError<SynclineException.SqliteLibrary> { Syncline.attach(c) }
                assertTrue("enableLoadExtension" in err.text, err.text)
            }
            assertEquals(bound, Syncline.boundLibrary)
            assertEquals(listOf(listOf<Value>(Value.Integer(1))), e.rows("SELECT 1"))
        }
    }

    @Test
    fun openingBeforeAnythingIsBoundWithoutSqliteJdbcFailsWithSqliteLibrary() {
        // a fresh JVM (binding is per process) whose class path lacks sqlite-jdbc
        val classPath = listOf(
            SyncEngine::class.java, // target/classes
            Class.forName("dev.syncline.UnwiredMain"), // target/test-classes
            Unit::class.java, // kotlin-stdlib
            com.sun.jna.Native::class.java,
            kotlinx.coroutines.Dispatchers::class.java,
        ).map { File(it.protectionDomain.codeSource.location.toURI()).path }.distinct()
        assertTrue(classPath.none { "sqlite-jdbc" in it }, "$classPath")
        val java = File(System.getProperty("java.home"), "bin/java").path
        val process = ProcessBuilder(
            java, "-Djna.library.path=${System.getProperty("jna.library.path")}",
            "-cp", classPath.joinToString(File.pathSeparator), "dev.syncline.UnwiredMain", dir.toString(),
        ).redirectErrorStream(true).start()
        assertTrue(process.waitFor(120, TimeUnit.SECONDS), "the child JVM did not finish")
        val output = process.inputStream.bufferedReader().readText()
        assertEquals(0, process.exitValue(), output)
        assertTrue("ok: open fails with SqliteLibrary" in output, output)
    }
}
