package dev.syncline

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.nio.file.Path
import java.util.Collections

const val TODOS = "CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, n INTEGER, r REAL, data BLOB)"

val FAST = defaultEngineOptions().copy(maxDriftMs = 300_000uL, busyTimeoutMs = 5_000uL, watchIntervalMs = 10uL)

inline fun <reified T : SynclineException> expectError(block: () -> Unit): T {
    val e = assertThrows<T> { block() }
    assertTrue(e.text.isNotEmpty())
    assertEquals(T::class.simpleName, e.code)
    return e
}

fun waitUntil(seconds: Double = 5.0, cond: () -> Boolean): Boolean {
    val end = System.nanoTime() + (seconds * 1e9).toLong()
    while (System.nanoTime() < end) {
        if (cond()) return true
        Thread.sleep(10)
    }
    return cond()
}

class SyncEngineTest {
    @TempDir
    lateinit var dir: Path

    private fun open(name: String, options: EngineOptions? = null) =
        SyncEngine.open(dir.resolve("$name.db").toString(), options)

    private fun replica(name: String, strategy: Strategy = Strategy.LWW, options: EngineOptions? = null): SyncEngine {
        val e = open(name, options)
        e.executeBatch(TODOS)
        e.enableSync("todos", strategy)
        return e
    }

    private fun sync(from: SyncEngine, to: SyncEngine): ImportReport =
        to.importBundle(from.generateBundle(to.siteId()))

    private fun todos(e: SyncEngine) = e.rows("SELECT id, title, done, n, r, data FROM todos ORDER BY id")

    @Test
    fun openSiteIdUuid7AndPath() {
        open("a", defaultEngineOptions().copy(maxDriftMs = 1000uL, busyTimeoutMs = 2000uL, watchIntervalMs = 50uL)).use { e ->
            assertTrue(e.path().endsWith("a.db"))
            val site = e.siteId()
            assertEquals(32, site.length)
            assertTrue(site.all { it in "0123456789abcdef" })
        }
        val id = uuid7()
        assertEquals(36, id.length)
        assertEquals('7', id[14])
    }

    @Test
    fun defaultOptionsComeFromTheCore() {
        assertEquals(EngineOptions(300_000uL, 10_000uL, 100uL, true), defaultEngineOptions())
        assertEquals(SyncOptions(30_000uL, 60_000uL, false, 5000uL, 60_000uL), defaultSyncOptions())
        // create = false is passed through: the core's NotFound, nothing created
        expectError<SynclineException.NotFound> { open("missing", defaultEngineOptions().copy(create = false)) }
        assertFalse(dir.resolve("missing.db").toFile().exists())
    }

    @Test
    fun everyCoreErrorKindHasItsOwnException() {
        val kinds = errorKinds()
        assertEquals(errorCodes(), kinds.map { it.code })
        assertTrue("SqliteLibrary" in errorCodes() && "Corrupt" in errorCodes())
        for (k in kinds) {
            assertTrue(k.description.isNotEmpty())
            val e = errorOfKind(k.code, "m") ?: throw AssertionError(k.code)
            assertEquals(k.code, e.code)
            assertEquals("m", e.text)
        }
        assertNull(errorOfKind("NoSuchKind", "m"))
    }

    @Test
    fun closeStopsTheBackgroundSyncsOfTheEngine() {
        val a = replica("a")
        // nobody listens there: the loop fails and retries until it is stopped
        val handle = a.startSync("http://127.0.0.1:9", null, defaultSyncOptions().copy(intervalMs = 100uL, maxBackoffMs = 100uL))
        assertTrue(handle.isRunning())
        a.closeEngine()
        assertTrue(waitUntil(10.0) { !handle.isRunning() }, "closeEngine() left the sync loop running")
        expectError<SynclineException.Closed> { handle.status() }
        handle.close()
        a.close()
    }

    @Test
    fun zeroIntervalsTimeoutsAndPageSizesAreRefused() {
        replica("a").use { a ->
            val d = defaultSyncOptions()
            for (o in listOf(d.copy(intervalMs = 0uL), d.copy(maxBackoffMs = 0uL), d.copy(pageRows = 0uL), d.copy(timeoutMs = 0uL))) {
                expectError<SynclineException.InvalidArgument> { a.startSync("http://127.0.0.1:9", null, o) }
            }
        }
    }

    @Test
    fun resetAndSetSiteId() {
        replica("a").use { e ->
            val first = e.siteId()
            val second = e.resetSiteId()
            assertNotEquals(first, second)
            assertEquals(second, e.siteId())
            val chosen = "00112233445566778899aabbccddeeff"
            assertEquals(chosen, e.setSiteId(chosen))
            assertEquals(chosen, e.siteId())
            expectError<SynclineException.InvalidArgument> { e.setSiteId("not hex") }
            expectError<SynclineException.InvalidArgument> { e.generateBundle("abc") }
        }
    }

    @Test
    fun roundTripOfEveryValueTypeAndIdempotence() {
        val a = replica("a")
        val b = replica("b")
        val blob = byteArrayOf(0, 1, 2, 0xfe.toByte(), 0xff.toByte())
        a.exec("INSERT INTO todos(id, title, done, n, r, data) VALUES (?, ?, ?, ?, ?, ?)", "max", "héllo ✓ 日本", true, Long.MAX_VALUE, 1.5, blob)
        a.exec("INSERT INTO todos(id, title, n, r, data) VALUES (?, ?, ?, ?, ?)", "min", null, Long.MIN_VALUE, -0.0, ByteArray(0))
        assertEquals(1L, a.exec("UPDATE todos SET done = 0 WHERE id = ?", "min"))
        val report = b.importBundle(a.generateBundle())
        assertTrue(report.applied > 0uL)
        assertEquals(a.siteId(), report.sender)
        assertEquals(2uL, report.rows)
        assertTrue(todos(b).sameAs(todos(a)))
        val rows = todos(b)
        assertEquals(Long.MAX_VALUE, rows[0][3].asLong)
        assertEquals(Long.MIN_VALUE, rows[1][3].asLong)
        assertArrayEquals(blob, rows[0][5].asBytes)
        assertEquals("héllo ✓ 日本", rows[0][1].asString)
        assertTrue(rows[1][1].isNull)
        assertArrayEquals(ByteArray(0), rows[1][5].asBytes)
        assertEquals(1L, rows[0][2].asLong)
        val again = b.importBundle(a.generateBundle())
        assertEquals(0uL, again.applied)
        assertEquals(report.applied, again.alreadyKnown)
        // compressed
        val c = replica("c")
        assertEquals(report.applied, c.importBundle(a.generateBundle(null, true)).applied)
        assertTrue(todos(c).sameAs(todos(a)))
        // peer-specific
        assertEquals(0uL, b.importBundle(a.generateBundle(b.siteId())).applied)
        val q = a.query("SELECT count(*) AS n FROM todos WHERE done = ?", listOf(Value.Integer(1)))
        assertEquals(listOf("n"), q.columns)
        assertEquals(listOf(listOf<Value>(Value.Integer(1))), q.rows)
        listOf(a, b, c).forEach { it.close() }
    }

    @Test
    fun writeBundleImportBundleFileStatusAndManualClock() {
        val a = replica("a", Strategy.MANUAL)
        val b = replica("b")
        a.exec("INSERT INTO todos(id, title) VALUES ('1', 'milk'), ('2', 'eggs')")
        val file = dir.resolve("a.bundle").toString()
        val stats = a.writeBundle(file)
        assertEquals(2uL, stats.rows)
        assertEquals(File(file).length().toULong(), stats.bytes)
        assertEquals(2uL, b.importBundleFile(file).rows)
        val st = a.status()
        assertEquals(a.siteId(), st.siteId)
        assertEquals(listOf(TableStatus("todos", Strategy.MANUAL, 2uL)), st.tables)
        assertEquals(0uL, st.unresolvedConflicts)
        assertEquals(0uL, st.rejected)
        assertEquals(0uL, st.quarantined)
        assertEquals(listOf(a.siteId()), st.versionVector.map { it.siteId })
        val sb = b.status()
        assertEquals(listOf(a.siteId()), sb.peers.map { it.siteId })
        assertEquals(2uL, sb.tables[0].rows)
        // compressed, and for a peer whose state a knows (from b's bundle): nothing left to send
        val packed = dir.resolve("packed.bundle").toString()
        assertEquals(2uL, a.writeBundle(packed, compress = true).rows)
        assertEquals(2uL, replica("d").importBundleFile(packed).rows)
        sync(b, a)
        assertEquals(0uL, a.writeBundle(packed, b.siteId(), true).rows)
        val c = replica("c")
        c.setManualClock(4_000_000_000_000uL)
        c.exec("INSERT INTO todos(id) VALUES ('t')")
        assertEquals(4_000_000_000_000uL, c.status().hlc shr 16)
        c.setManualClock(null)
        expectError<SynclineException.Io> { b.importBundleFile(dir.resolve("missing").toString()) }
    }

    @Test
    fun corruptTruncatedAndEmptyBundlesLeaveTheDatabaseUnchanged() {
        val a = replica("a")
        val b = replica("b")
        a.exec("INSERT INTO todos(id, title) VALUES ('1', 'milk')")
        b.exec("INSERT INTO todos(id, title) VALUES ('b', 'mine')")
        val good = a.generateBundle()
        val before = todos(b)
        val statusBefore = b.status()
        val flipped = good.copyOf().also { it[it.size / 2] = (it[it.size / 2].toInt() xor 0x5a).toByte() }
        for (bad in listOf(flipped, good.copyOf(good.size - 3), good.copyOf(10), ByteArray(0), "not a bundle".toByteArray())) {
            val e = expectError<SynclineException.InvalidBundle> { b.importBundle(bad) }
            assertTrue(e.reason.isNotEmpty())
            assertTrue(todos(b).sameAs(before))
        }
        assertEquals(statusBefore, b.status())
        assertEquals(1uL, b.importBundle(good).rows)
    }

    @Test
    fun unknownTablesAndTableRules() {
        val e = replica("a")
        expectError<SynclineException.UnknownTable> { e.setStrategy("nope", Strategy.MANUAL) }
        expectError<SynclineException.UnknownTable> { e.disableSync("nope") }
        expectError<SynclineException.UnknownTable> { e.enableSync("missing") }
        e.executeBatch("CREATE TABLE nokey(x TEXT); CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT)")
        expectError<SynclineException.SchemaMismatch> { e.enableSync("nokey") }
        expectError<SynclineException.SchemaMismatch> { e.enableSync("auto") }
        e.enableSync("auto", allowAutoincrement = true)
        assertEquals(listOf("auto", "todos"), e.status().tables.map { it.name }.sorted())
        e.disableSync("auto")
        assertEquals(listOf("todos"), e.status().tables.map { it.name })
        e.setStrategy("todos", Strategy.PREFER_REMOTE)
        assertEquals(Strategy.PREFER_REMOTE, e.status().tables[0].strategy)
        expectError<SynclineException.Sqlite> { e.exec("INSERT INTO nowhere VALUES (1)") }
        expectError<SynclineException.Sqlite> { e.executeBatch("NOT SQL AT ALL") }
        expectError<SynclineException.Sqlite> { e.rows("SELECT * FROM nowhere") }
        assertThrows<IllegalArgumentException> { e.exec("SELECT ?", Any()) }
    }

    @Test
    fun aBundleAheadOfTheClockIsQuarantinedThenApplied() {
        val now = System.currentTimeMillis().toULong() // stamps never go back: start from the real clock
        val a = replica("a")
        val b = replica("b", options = defaultEngineOptions().copy(maxDriftMs = 1000uL, busyTimeoutMs = 1000uL, watchIntervalMs = 100uL))
        b.setManualClock(now)
        a.setManualClock(now + 60_000uL) // beyond b's drift, inside the 24 h quarantine horizon
        a.exec("INSERT INTO todos(id, title) VALUES ('1', 'from the future')")
        val hlc = b.status().hlc
        val report = sync(a, b) // no ClockDrift exception any more: the row waits
        assertTrue(report.quarantined > 0uL, "$report")
        assertEquals(0uL, report.applied)
        assertEquals(0uL, report.released)
        var st = b.status()
        assertEquals(1uL, st.quarantined)
        assertEquals(hlc, st.hlc, "a quarantined stamp does not move the clock")
        assertEquals(0, todos(b).size)
        // the clock catches up: the next import applies the held row first
        b.setManualClock(now + 120_000uL)
        val later = sync(a, b)
        assertTrue(later.released > 0uL, "$later")
        assertEquals(report.quarantined, later.released)
        assertEquals(0uL, later.quarantined)
        st = b.status()
        assertEquals(0uL, st.quarantined)
        assertEquals(1, todos(b).size)
        assertEquals(todos(a), todos(b))
        listOf(a, b).forEach { it.close() }
    }

    @Test
    fun aBundleYearsAheadIsRejectedNotQuarantined() {
        val a = replica("a")
        val b = replica("b", options = defaultEngineOptions().copy(maxDriftMs = 1000uL, busyTimeoutMs = 1000uL, watchIntervalMs = 100uL))
        a.setManualClock(4_000_000_000_000uL)
        a.exec("INSERT INTO todos(id, title) VALUES ('1', 'from 2096')")
        val report = sync(a, b)
        assertEquals(0uL, report.applied)
        assertEquals(0uL, report.quarantined)
        assertTrue(report.rejected > 0uL, "$report")
        val st = b.status()
        assertEquals(0uL, st.quarantined)
        assertEquals(1uL, st.rejected)
        assertEquals(0, todos(b).size)
        listOf(a, b).forEach { it.close() }
    }

    @Test
    fun closeThenCallsFailWithClosedAndUseFreesTheEngine() {
        val e = replica("a")
        assertFalse(e.isClosed())
        e.closeEngine()
        assertTrue(e.isClosed())
        expectError<SynclineException.Closed> { e.siteId() }
        expectError<SynclineException.Closed> { e.exec("SELECT 1") }
        expectError<SynclineException.Closed> { e.generateBundle() }
        expectError<SynclineException.Closed> { e.status() }
        expectError<SynclineException.Closed> { e.stateHash() }
        e.close()
        assertThrows<IllegalStateException> { e.siteId() }
        // use {} closes: the file reopens and another writer can take the write lock at once
        open("a").use { it.exec("INSERT INTO todos(id) VALUES ('x')") }
        open("a").use { assertEquals(1, it.rows("SELECT id FROM todos").size) }
    }

    @Test
    fun stateHashIsEqualExactlyWhenReplicasConverged() {
        val a = replica("a")
        val b = replica("b")
        val empty = a.stateHash()
        assertTrue(Regex("[0-9a-f]{64}").matches(empty), empty)
        a.exec("INSERT INTO todos(id, title, n, r, data) VALUES (?, ?, ?, ?, ?)", "1", "milk", Long.MIN_VALUE, -0.0, byteArrayOf(0, -1))
        val written = a.stateHash()
        assertNotEquals(empty, written)
        assertEquals(written, a.stateHash(), "reading does not change it")
        assertNotEquals(written, b.stateHash())
        sync(a, b)
        assertEquals(written, b.stateHash())
        // an edit on one side changes its hash; syncing back converges both again
        b.exec("UPDATE todos SET done = 1 WHERE id = '1'")
        assertNotEquals(written, b.stateHash())
        sync(b, a)
        assertEquals(a.stateHash(), b.stateHash())
        assertNotEquals(written, a.stateHash())
    }

    private fun conflictPair(strategy: Strategy): Pair<SyncEngine, SyncEngine> {
        val a = replica("a", strategy)
        val b = replica("b", strategy)
        a.exec("INSERT INTO todos(id, title) VALUES ('1', 'milk')")
        sync(a, b)
        a.exec("UPDATE todos SET title = 'from a' WHERE id = '1'")
        b.exec("UPDATE todos SET title = 'from b' WHERE id = '1'")
        return a to b
    }

    @Test
    fun manualConflictsAndResolve() {
        val (a, b) = conflictPair(Strategy.MANUAL)
        assertEquals(1uL, sync(b, a).conflicts)
        assertEquals("from a", todos(a)[0][1].asString)
        val cs = a.conflicts()
        assertEquals(1, cs.size)
        val c = cs[0]
        assertEquals("todos", c.table)
        assertEquals(listOf<Value>(Value.Text("1")), c.pk)
        assertEquals("title", c.column)
        assertEquals(Value.Text("from a"), c.local.value)
        assertEquals(Value.Text("from b"), c.remote.value)
        assertEquals(b.siteId(), c.remote.site)
        assertEquals(Strategy.MANUAL, c.strategy)
        assertNull(c.resolution)
        assertEquals(1uL, a.status().unresolvedConflicts)
        expectError<SynclineException.NotFound> { a.resolve(424242, Resolution.Local) }
        a.resolve(c.id!!, Resolution.UseValue(Value.Text("merged")))
        assertEquals(emptyList<Conflict>(), a.conflicts())
        assertEquals("value", a.allConflicts()[0].resolution)
        expectError<SynclineException.NotFound> { a.resolve(c.id!!, Resolution.Remote) }
        sync(a, b)
        sync(b, a)
        assertEquals("merged", todos(b)[0][1].asString)
        assertTrue(todos(a).sameAs(todos(b)))
    }

    @Test
    fun resolveLocalAndRemote() {
        for ((choice, want) in listOf(Resolution.Local to "from a", Resolution.Remote to "from b")) {
            val sub = dir.resolve(want.replace(' ', '_'))
            sub.toFile().mkdirs()
            val a = SyncEngine.open(sub.resolve("a.db").toString()).also { it.executeBatch(TODOS); it.enableSync("todos", Strategy.MANUAL) }
            val b = SyncEngine.open(sub.resolve("b.db").toString()).also { it.executeBatch(TODOS); it.enableSync("todos", Strategy.MANUAL) }
            a.exec("INSERT INTO todos(id, title) VALUES ('1', 'milk')")
            sync(a, b)
            a.exec("UPDATE todos SET title = 'from a' WHERE id = '1'")
            b.exec("UPDATE todos SET title = 'from b' WHERE id = '1'")
            sync(b, a)
            a.resolve(a.conflicts()[0].id!!, choice)
            assertEquals(want, todos(a)[0][1].asString)
        }
    }

    @Test
    fun automaticStrategiesConverge() {
        for (strategy in listOf(Strategy.LWW, Strategy.PREFER_LOCAL, Strategy.PREFER_REMOTE)) {
            val sub = dir.resolve(strategy.name)
            sub.toFile().mkdirs()
            val a = SyncEngine.open(sub.resolve("a.db").toString()).also { it.executeBatch(TODOS); it.enableSync("todos", strategy) }
            val b = SyncEngine.open(sub.resolve("b.db").toString()).also { it.executeBatch(TODOS); it.enableSync("todos", strategy) }
            a.exec("INSERT INTO todos(id, title) VALUES ('1', 'milk')")
            sync(a, b)
            a.exec("UPDATE todos SET title = 'from a' WHERE id = '1'")
            b.exec("UPDATE todos SET title = 'from b' WHERE id = '1'")
            assertEquals(1uL, sync(b, a).conflicts, "$strategy")
            repeat(3) { sync(a, b); sync(b, a) }
            assertTrue(todos(a).sameAs(todos(b)), "$strategy")
            assertEquals(a.stateHash(), b.stateHash(), "$strategy")
        }
    }

    @Test
    fun customResolverDecidesAndItsFailureAppliesNothing() {
        val (a, b) = conflictPair(Strategy.CUSTOM)
        val bundle = b.generateBundle()
        // no resolver registered
        expectError<SynclineException.Resolver> { a.importBundle(bundle) }
        // a resolver throwing a SynclineException
        a.setResolver("todos") { throw SynclineException.Resolver("boom from kotlin") }
        val before = todos(a)
        val statusBefore = a.status()
        val e = expectError<SynclineException.Resolver> { a.importBundle(bundle) }
        assertTrue(e.reason.contains("boom from kotlin"), e.reason)
        assertTrue(todos(a).sameAs(before))
        assertEquals(statusBefore, a.status())
        // a resolver throwing any other exception
        a.setResolver("todos") { throw IllegalStateException("oops") }
        expectError<SynclineException.Resolver> { a.importBundle(bundle) }
        assertTrue(todos(a).sameAs(before))
        // a deterministic, symmetric resolver, as a lambda and as an object
        val seen = Collections.synchronizedList(mutableListOf<ConflictInput>())
        val longest = { c: ConflictInput ->
            seen.add(c)
            val l = c.local.value.asString
            val r = c.remote.value.asString
            if (l == null || r == null) Resolution.Local else Resolution.UseValue(Value.Text(listOf(l, r).sorted().joinToString(" + ")))
        }
        a.setResolver("todos", longest)
        b.setResolver("todos", object : ConflictResolver {
            override fun resolve(conflict: ConflictInput) = longest(conflict)
        })
        repeat(3) { sync(a, b); sync(b, a) }
        assertEquals("from a + from b", todos(a)[0][1].asString)
        assertTrue(todos(a).sameAs(todos(b)))
        assertEquals("title", seen[0].column)
        assertEquals(listOf<Value>(Value.Text("1")), seen[0].pk)
        a.clearResolver("todos")
    }

    @Test
    fun subscribeSeesLocalRemoteConflictAndDeleteEventsUntilCancelled() {
        val a = replica("a", Strategy.MANUAL, FAST)
        val b = replica("b", Strategy.MANUAL, FAST)
        val events = Collections.synchronizedList(mutableListOf<Event>())
        val sub = a.subscribe { events.add(it) }
        fun has(p: (Event) -> Boolean) = waitUntil { synchronized(events) { events.any(p) } }
        assertFalse(sub.isClosed())
        a.exec("INSERT INTO todos(id, title) VALUES ('1', 'local')")
        assertTrue(has { it.kind == EventKind.LOCAL && it.pk == listOf<Value>(Value.Text("1")) && "title" in it.columns && !it.deleted && it.conflict == null }, "$events")
        b.exec("INSERT INTO todos(id, title) VALUES ('2', 'remote')")
        sync(b, a)
        assertTrue(has { it.kind == EventKind.REMOTE && it.pk == listOf<Value>(Value.Text("2")) && it.table == "todos" })
        sync(a, b)
        a.exec("UPDATE todos SET title = 'a' WHERE id = '2'")
        b.exec("UPDATE todos SET title = 'b' WHERE id = '2'")
        sync(b, a)
        assertTrue(has { it.kind == EventKind.CONFLICT && it.conflict?.column == "title" })
        // a conflict event's fields are the core's: the one conflicting column, its row's key
        val c = synchronized(events) { events.first { it.kind == EventKind.CONFLICT } }
        assertEquals(listOf("title"), c.columns)
        assertEquals(listOf<Value>(Value.Text("2")), c.pk)
        assertEquals("todos", c.table)
        assertFalse(c.deleted)
        a.exec("DELETE FROM todos WHERE id = '1'")
        assertTrue(has { it.kind == EventKind.LOCAL && it.deleted && it.columns.isEmpty() })
        sub.cancel()
        assertTrue(sub.isClosed())
        Thread.sleep(100)
        val count = events.size
        a.exec("INSERT INTO todos(id, title) VALUES ('3', 'unseen')")
        b.exec("INSERT INTO todos(id, title) VALUES ('4', 'unseen')")
        sync(b, a)
        Thread.sleep(200)
        assertEquals(count, events.size)
        sub.close()
    }

    @Test
    fun eventsAsFlow() = runBlocking {
        val a = replica("a", options = FAST)
        val b = replica("b")
        val got = async(Dispatchers.Default) { a.events().first { it.kind == EventKind.REMOTE } }
        withTimeout(10_000) {
            var i = 0
            while (got.isActive) {
                b.exec("INSERT OR REPLACE INTO todos(id, title) VALUES ('x', ?)", "v${i++}")
                sync(b, a)
                delay(50)
            }
        }
        val first = got.await()
        assertEquals(listOf<Value>(Value.Text("x")), first.pk)
    }

    @Test
    fun aThrowingObserverDoesNotBreakTheEngine() {
        val a = replica("a")
        val b = replica("b")
        val sub = a.subscribe(object : EventObserver {
            override fun onEvent(event: Event) = throw RuntimeException("ignored")
        })
        b.exec("INSERT INTO todos(id, title) VALUES ('1', 'x')")
        assertEquals(1uL, sync(b, a).rows)
        assertEquals(1, todos(a).size)
        sub.use { }
        assertTrue(true)
    }

    @Test
    fun sqlValueConversions() {
        assertEquals(Value.Null, sqlValue(null))
        assertEquals(Value.Integer(5), sqlValue(5))
        assertEquals(Value.Integer(1), sqlValue(true))
        assertEquals(Value.Real(0.5), sqlValue(0.5f))
        assertEquals(Value.Text("t"), sqlValue("t"))
        assertTrue(sqlValue(byteArrayOf(1)).sameAs(Value.Blob(byteArrayOf(1))))
        assertFalse(Value.Real(0.0).sameAs(Value.Real(-0.0)))
        try {
            sqlValue(listOf(1))
            fail("expected IllegalArgumentException")
        } catch (_: IllegalArgumentException) {
        }
    }

    // ---- schema evolution and compaction (spec/schema-evolution.md, spec/merge-rules.md §8a) ----

    @Test
    fun addColumnReachesAnotherReplicaWithItsValues() {
        replica("a").use { a ->
            replica("b").use { b ->
                a.addColumn("todos", "prio", "integer", Value.Integer(0))
                a.exec("INSERT INTO todos(id, title, prio) VALUES ('1', 'milk', 5)")
                a.exec("INSERT INTO todos(id, title) VALUES ('2', 'eggs')")
                val change = a.status().schemaChanges.single()
                assertEquals(SchemaChange("todos", "prio", "INTEGER", "local", "applied", change.hlc), change)
                assertTrue(change.hlc > 0uL)
                val report = sync(a, b)
                assertEquals(1uL, report.migrated)
                assertEquals(0uL, report.held)
                assertEquals(
                    listOf(listOf(Value.Text("1"), Value.Integer(5)), listOf(Value.Text("2"), Value.Integer(0))),
                    b.rows("SELECT id, prio FROM todos ORDER BY id"),
                )
                val there = b.status().schemaChanges.single()
                assertEquals(listOf("todos", "prio", "remote", "applied"), listOf(there.table, there.column, there.source, there.state))
                assertEquals(a.stateHash(), b.stateHash())
                // the core's checks come through as its error kinds
                expectError<SynclineException.InvalidArgument> { a.addColumn("todos", "prio", "INTEGER") }
                expectError<SynclineException.UnknownTable> { a.addColumn("nope", "x", "TEXT") }
            }
        }
    }

    @Test
    fun heldMigrationsWaitForApplyHeldMigrations() {
        replica("a").use { a ->
            replica("b").use { b ->
                assertEquals(MigrationPolicy.APPLY, b.migrationPolicy())
                b.setMigrationPolicy(MigrationPolicy.HOLD)
                assertEquals(MigrationPolicy.HOLD, b.migrationPolicy())
                a.addColumn("todos", "prio", "INTEGER", Value.Integer(0))
                a.exec("INSERT INTO todos(id, title, prio) VALUES ('1', 'milk', 5)")
                val report = sync(a, b)
                assertEquals(0uL, report.migrated)
                assertTrue(report.held > 0uL, "$report")
                var s = b.status()
                assertEquals("held", s.schemaChanges.single().state)
                assertTrue(s.heldCells > 0uL, "$s")
                assertFalse("prio" in b.query("SELECT * FROM todos LIMIT 0", emptyList()).columns)
                assertEquals(listOf(listOf(Value.Text("milk"))), b.rows("SELECT title FROM todos"))
                assertEquals(1uL, b.applyHeldMigrations())
                assertEquals(0uL, b.applyHeldMigrations(), "nothing is held any more")
                assertEquals(listOf(listOf(Value.Integer(5))), b.rows("SELECT prio FROM todos WHERE id = '1'"))
                s = b.status()
                assertEquals("applied", s.schemaChanges.single().state)
                assertEquals(0uL, s.heldCells)
                assertEquals(0uL, s.heldRows)
                assertEquals(a.stateHash(), b.stateHash())
            }
        }
    }

    @Test
    fun aDeviceStartsFromASnapshotAndCatchesUpWithTheDeltaOnly() {
        replica("a").use { a ->
            for (i in 0 until 50) a.exec("INSERT INTO todos(id, title) VALUES ('$i', 'todo')")
            a.snapshot(dir.resolve("device.db").toString())
            assertThrows<SynclineException.InvalidArgument> { a.snapshot(dir.resolve("device.db").toString()) }
            open("device").use { d ->
                assertNotEquals(a.siteId(), d.siteId())
                assertEquals(todos(a), todos(d))
                a.exec("INSERT INTO todos(id, title) VALUES ('late', 'after the snapshot')")
                sync(d, a) // the device speaks first: the source learns what it holds
                assertEquals(1uL, sync(a, d).rows)
                assertEquals(a.stateHash(), d.stateHash())
            }
        }
    }

    @Test
    fun compactPurgesAnAcknowledgedDelete() {
        replica("a").use { a ->
            replica("b").use { b ->
                a.exec("INSERT INTO todos(id, title) VALUES ('1', 'milk'), ('2', 'eggs')")
                sync(a, b)
                a.exec("DELETE FROM todos WHERE id = '1'")
                var s = a.status()
                assertEquals(1uL to 0uL, s.tombstones to s.purgeable, "b has not seen the delete")
                assertEquals(0uL, a.compact(0uL).purged)
                sync(a, b)
                sync(b, a) // b's answer acknowledges the delete
                s = a.status()
                assertEquals(1uL to 1uL, s.tombstones to s.purgeable)
                assertTrue(s.purgeHorizon.isEmpty(), "nothing purged yet")
                assertEquals(0uL, a.compact(3_600_000uL).purged, "retention keeps a young tombstone")
                val report = a.compact(0uL)
                assertEquals(1uL, report.purged)
                assertTrue(report.bytesBefore > 0uL && report.bytesAfter > 0uL, "$report")
                s = a.status()
                assertEquals(0uL to 0uL, s.tombstones to s.purgeable)
                // the purged delete's origin and stamp: a sender that has not seen it gets NeedsSnapshot
                val horizon = s.purgeHorizon.single()
                assertEquals(a.siteId(), horizon.siteId)
                assertTrue(horizon.hlc > 0uL)
                assertEquals(listOf(listOf(Value.Text("2"))), a.rows("SELECT id FROM todos"))
                assertEquals(listOf(listOf(Value.Text("2"))), b.rows("SELECT id FROM todos"))
            }
        }
    }
}
