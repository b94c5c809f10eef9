package dev.syncline

import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.IOException
import java.net.ServerSocket
import java.nio.file.Files
import java.nio.file.Path
import java.time.Duration
import java.time.Instant
import java.util.UUID
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/**
 * Network sync against a real server on 127.0.0.1: the one `bindings/test.sh` started
 * (SYNCLINE_NET_URL, SYNCLINE_NET_TOKEN), or else one this class starts itself with
 * `$SYNCLINE_CLI serve` on a free port with a random token. With neither the tests are skipped,
 * unless SYNCLINE_NET_REQUIRED=1 (then they fail). The server may be shared: each test writes rows
 * with fresh ids and checks those.
 */
class NetworkTest {
    companion object {
        private var url: String? = null
        private var token: String = ""
        private var server: Process? = null
        private var serverDir: Path? = null
        private var why = ""

        @BeforeAll
        @JvmStatic
        fun startServer() {
            val envUrl = System.getenv("SYNCLINE_NET_URL")
            if (!envUrl.isNullOrEmpty()) {
                url = envUrl
                token = System.getenv("SYNCLINE_NET_TOKEN") ?: ""
                return
            }
            val exe = System.getenv("SYNCLINE_CLI")
            if (exe.isNullOrEmpty()) {
                why = "neither SYNCLINE_NET_URL nor SYNCLINE_CLI is set"
                return
            }
            val dir = Files.createTempDirectory("syncline-kotlin-server")
            serverDir = dir
            val db = dir.resolve("server.db").toString()
            SyncEngine.open(db).use { it.executeBatch(TODOS) } // `syncline init` needs the table
            val init = ProcessBuilder(exe, "init", db, "--table", "todos").redirectErrorStream(true).start()
            val initOut = init.inputStream.bufferedReader().readText()
            check(init.waitFor(60, TimeUnit.SECONDS) && init.exitValue() == 0) { "syncline init: $initOut" }
            token = "kotlin-" + UUID.randomUUID()
            val p = ProcessBuilder(exe, "serve", db, "--port", "0", "--token", token).redirectErrorStream(true).start()
            server = p
            // "listening on http://127.0.0.1:PORT" (read on a thread: readLine has no timeout)
            val lines = LinkedBlockingQueue<String>()
            Thread {
                try {
                    p.inputStream.bufferedReader().forEachLine { lines.put(it) }
                } catch (_: IOException) {
                    // the stream closes when the server is stopped
                }
            }.apply { isDaemon = true }.start()
            val end = System.nanoTime() + 20_000_000_000L
            while (url == null && System.nanoTime() < end && p.isAlive) {
                val line = lines.poll(100, TimeUnit.MILLISECONDS) ?: continue
                url = Regex("http://127\\.0\\.0\\.1:\\d+").find(line)?.value
            }
            if (url == null) why = "the server did not start: ${lines.joinToString("\n")}"
        }

        @AfterAll
        @JvmStatic
        fun stopServer() {
            server?.let {
                it.destroy()
                if (!it.waitFor(10, TimeUnit.SECONDS)) it.destroyForcibly()
            }
            serverDir?.toFile()?.deleteRecursively()
        }
    }

    @TempDir
    lateinit var dir: Path

    private lateinit var server: String

    @BeforeEach
    fun needServer() {
        val u = url
        if (u == null) {
            assertFalse(System.getenv("SYNCLINE_NET_REQUIRED") == "1", "no sync server: $why")
            assumeTrue(false, "no sync server: $why")
            return
        }
        server = u
    }

    private fun replica(name: String): SyncEngine {
        val e = SyncEngine.open(dir.resolve("$name.db").toString())
        e.executeBatch(TODOS)
        e.enableSync("todos", Strategy.LWW)
        return e
    }

    private fun titles(e: SyncEngine, vararg ids: String): List<List<Value>> =
        e.rows("SELECT id, title FROM todos WHERE id IN (${ids.joinToString(", ") { "?" }}) ORDER BY id", *ids)

    /** A URL nobody listens on: a port the kernel hands out, then freed. */
    private fun unreachableUrl(): String = ServerSocket(0).use { "http://127.0.0.1:${it.localPort}" }

    @Test
    fun twoEnginesConvergeThroughTheServer(): Unit = runBlocking {
        replica("a").use { a ->
            replica("b").use { b ->
                val x = uuid7()
                val y = uuid7()
                a.exec("INSERT INTO todos(id, title) VALUES (?, ?)", x, "from a")
                b.exec("INSERT INTO todos(id, title) VALUES (?, ?)", y, "from b")

                val first = a.sync(server, token)
                assertTrue(first.pushed >= 1uL, "$first")
                assertTrue(first.serverApplied >= 1uL, "$first")
                assertTrue(first.roundTrips >= 2u, "$first") // /v1/info, then one POST /v1/sync at least
                val second = b.sync(server, token)
                assertTrue(second.applied >= 1uL, "$second")
                a.sync(server, token)

                val want = listOf(listOf(Value.Text(x), Value.Text("from a")), listOf(Value.Text(y), Value.Text("from b")))
                    .sortedBy { it[0].asString }
                assertTrue(titles(a, x, y).sameAs(want), "${titles(a, x, y)}")
                assertTrue(titles(b, x, y).sameAs(want), "${titles(b, x, y)}")
                assertEquals(a.stateHash(), b.stateHash()) // both hold all the server holds

                // a change on b reaches a; a sync with nothing new moves nothing
                b.exec("UPDATE todos SET title = 'edited on b' WHERE id = ?", x)
                b.sync(server, token)
                assertEquals(1uL, a.sync(server, token).applied)
                assertEquals("edited on b", a.rows("SELECT title FROM todos WHERE id = ?", x)[0][0].asString)
                val idle = a.sync(server, token)
                assertEquals(0uL, idle.pushed)
                assertEquals(0uL, idle.applied)
                assertEquals(a.stateHash(), b.stateHash())
            }
        }
    }

    @Test
    fun theBlockingFormConvergesToo() {
        replica("a").use { a ->
            replica("b").use { b ->
                val x = uuid7()
                a.exec("INSERT INTO todos(id, title) VALUES (?, ?)", x, "blocking")
                assertTrue(a.syncBlocking(server, token).pushed >= 1uL)
                b.syncBlocking(server, token)
                assertEquals("blocking", b.rows("SELECT title FROM todos WHERE id = ?", x)[0][0].asString)
            }
        }
    }

    @Test
    fun aWrongTokenIsAuthAndChangesNothing(): Unit = runBlocking {
        replica("a").use { a ->
            val x = uuid7()
            a.exec("INSERT INTO todos(id, title) VALUES (?, ?)", x, "never sent")
            val before = a.stateHash()
            val peersBefore = a.status().peers
            expectError<SynclineException.Auth> { runBlocking { a.sync(server, "not-$token") } }
            expectError<SynclineException.Auth> { runBlocking { a.sync(server, null) } }
            expectError<SynclineException.Auth> { a.syncBlocking(server, "wrong") }
            assertEquals(before, a.stateHash())
            assertEquals(peersBefore, a.status().peers)
            // the server did not get the row: a fresh replica syncing with the right token lacks it
            replica("c").use { c ->
                c.sync(server, token)
                assertEquals(emptyList<List<Value>>(), titles(c, x))
            }
        }
    }

    @Test
    fun anUnreachableServerIsNetworkAndABadUrlIsInvalidArgument(): Unit = runBlocking {
        replica("a").use { a ->
            a.exec("INSERT INTO todos(id, title) VALUES (?, ?)", uuid7(), "x")
            val before = a.stateHash()
            val dead = unreachableUrl()
            expectError<SynclineException.Network> { runBlocking { a.sync(dead, token) } }
            expectError<SynclineException.InvalidArgument> { runBlocking { a.sync("ftp://127.0.0.1:1", token) } }
            assertEquals(before, a.stateHash())
        }
    }

    @Test
    fun backgroundSyncReportsSuccessInItsStatus(): Unit = runBlocking {
        replica("a").use { a ->
            val x = uuid7()
            a.exec("INSERT INTO todos(id, title) VALUES (?, ?)", x, "in the background")
            a.startSync(server, token, defaultSyncOptions().copy(intervalMs = 200uL)).use { handle ->
                assertTrue(waitUntil(20.0) { handle.status().syncs >= 1uL }, "${handle.status()}")
                val s = handle.status()
                assertTrue(s.running)
                assertNotNull(s.lastSuccess)
                assertTrue(Duration.between(s.lastSuccess!!, Instant.now()).abs() < Duration.ofMinutes(1))
                assertNull(s.lastError)
                assertEquals(0u, s.failures)
                assertEquals(0uL, s.pending)
                assertTrue((s.lastReport?.pushed ?: 0uL) >= 1uL, "$s")
                handle.syncNow()
                handle.stop()
                handle.stop() // idempotent
                assertFalse(handle.status().running)
            }
            // the row reached the server
            replica("b").use { b ->
                b.sync(server, token)
                assertEquals("in the background", b.rows("SELECT title FROM todos WHERE id = ?", x)[0][0].asString)
            }
        }
    }

    @Test
    fun backgroundSyncWithAWrongTokenReportsAuthInItsStatus() {
        replica("a").use { a ->
            // close() (use {}) frees the handle, which stops the loop
            a.startSync(server, "wrong", defaultSyncOptions().copy(intervalMs = 200uL, maxBackoffMs = 200uL)).use { handle ->
                assertTrue(waitUntil(20.0) { handle.status().failures >= 1u }, "${handle.status()}")
                val s = handle.status()
                assertEquals(0uL, s.syncs)
                assertNull(s.lastSuccess)
                assertTrue(s.lastError is SynclineException.Auth, "${s.lastError}")
            }
        }
    }

    @Test
    fun aLiveClientSeesAnotherClientsPushWithoutPolling(): Unit = runBlocking {
        replica("a").use { a ->
            replica("b").use { b ->
                // an interval far beyond the test: only the server's notice can make b sync again
                b.startSync(server, token, defaultSyncOptions().copy(intervalMs = 600_000uL, live = true)).use { handle ->
                    assertTrue(waitUntil(20.0) { handle.status().syncs >= 1uL }, "${handle.status()}")
                    val x = uuid7()
                    a.exec("INSERT INTO todos(id, title) VALUES (?, ?)", x, "live")
                    a.sync(server, token)
                    assertTrue(waitUntil(20.0) { titles(b, x).size == 1 }, "b never saw a's push")
                }
            }
        }
    }
    @Test
    fun syncProgressCountsThePulledChanges(): Unit = runBlocking {
        replica("a").use { a ->
            replica("b").use { b ->
                // more rows than one page (5000 by default)
                a.exec(
                    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 6000) " +
                        "INSERT INTO todos(id, title) SELECT ? || '-' || i, 'progress ' || i FROM c",
                    uuid7(),
                )
                a.sync(server, token)
                val calls = java.util.Collections.synchronizedList(mutableListOf<Pair<ULong, ULong>>())
                val report = b.sync(server, token, progressListener { done, total -> calls.add(done to total) })
                assertTrue(calls.size >= 2, "$calls")
                val pulled = calls.map { it.first }
                assertEquals(pulled.sorted(), pulled)
                assertTrue(calls.all { it.second == 0uL }, "the total is not known: 0")
                assertEquals(report.pulled, calls.last().first)
                assertTrue(report.pulled >= 6000uL, "$report")
                // a throwing listener: the pass's error once it is done
                val e = runCatching {
                    b.sync(server, token, progressListener { _, _ -> throw SynclineException.InvalidArgument("stop") })
                }.exceptionOrNull()
                assertTrue(e is SynclineException.InvalidArgument, "$e")
            }
        }
    }

    @Test
    fun aNewDeviceStartsFromTheServersSnapshot(): Unit = runBlocking {
        replica("a").use { a ->
            val x = uuid7()
            a.exec("INSERT INTO todos(id, title) VALUES (?, ?)", x, "before the snapshot")
            a.sync(server, token)
            val path = dir.resolve("device.db").toString()
            val calls = java.util.Collections.synchronizedList(mutableListOf<Pair<ULong, ULong>>())
            val size = cloneSnapshot(server, path, token, progressListener { done, total -> calls.add(done to total) })
            assertEquals(java.io.File(path).length().toULong(), size)
            val got = calls.map { it.first }
            assertEquals(got.sorted(), got)
            assertEquals(size, calls.last().first)
            assertTrue(calls.all { it.second == 0uL || it.second == size }, "$calls")
            SyncEngine.open(path).use { device ->
                assertTrue(device.siteId() != a.siteId())
                assertTrue(titles(device, x).sameAs(listOf(listOf(Value.Text(x), Value.Text("before the snapshot")))))
                // it catches up through the server
                a.exec("UPDATE todos SET title = 'after the snapshot' WHERE id = ?", x)
                a.sync(server, token)
                assertTrue(device.sync(server, token).applied >= 1uL)
                assertEquals("after the snapshot", titles(device, x)[0][1].asString)
            }
            // refusals: an existing file, a wrong token (nothing left behind), no server
            val exists = runCatching { cloneSnapshot(server, path, token) }.exceptionOrNull()
            assertTrue(exists is SynclineException.InvalidArgument, "$exists")
            val other = dir.resolve("other.db").toString()
            val auth = runCatching { cloneSnapshot(server, other, "not-$token") }.exceptionOrNull()
            assertTrue(auth is SynclineException.Auth, "$auth")
            val down = runCatching { cloneSnapshot(unreachableUrl(), other, token) }.exceptionOrNull()
            assertTrue(down is SynclineException.Network, "$down")
            assertFalse(java.io.File(other).exists())
        }
    }
}
