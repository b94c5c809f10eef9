package dev.syncline

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path
import java.util.Collections

/** Progress listeners on bundle export and import (the core's rows done / rows total). */
class ProgressTest {
    @TempDir
    lateinit var dir: Path

    private val rows = 10_000 // several of the core's progress batches (one call per 4096 rows, then the last)

    private fun replica(name: String): SyncEngine {
        val e = SyncEngine.open(dir.resolve("$name.db").toString(), FAST)
        e.executeBatch(TODOS)
        e.enableSync("todos", Strategy.LWW)
        return e
    }

    private fun fill(e: SyncEngine, n: Int = rows) {
        e.exec(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) " +
                "INSERT INTO todos(id, title, data) SELECT printf('%05d', i), 'title ' || i, randomblob(100) FROM c",
            n,
        )
    }

    private class Recorder : ProgressListener {
        val calls: MutableList<Pair<ULong, ULong>> = Collections.synchronizedList(mutableListOf())
        val threads: MutableSet<Thread> = Collections.synchronizedSet(mutableSetOf())

        override fun onProgress(done: ULong, total: ULong) {
            calls.add(done to total)
            threads.add(Thread.currentThread())
        }

        fun check(rows: Int) {
            assertTrue(calls.size >= 2, "expected intermediate calls, got $calls")
            val dones = calls.map { it.first }
            assertEquals(dones.sorted(), dones, "done never goes backwards")
            assertTrue(calls.all { it.second == rows.toULong() }, "total is the row count: $calls")
            assertEquals(rows.toULong() to rows.toULong(), calls.last())
            assertEquals(setOf(Thread.currentThread()), threads, "called on the calling thread")
        }
    }

    @Test
    fun progressOfExportsAndImports() {
        replica("a").use { a ->
            replica("b").use { b ->
                replica("c").use { c ->
                    fill(a)
                    var seen = Recorder()
                    val bundle = a.generateBundle(progress = seen)
                    seen.check(rows)

                    seen = Recorder()
                    val file = dir.resolve("a.bundle").toString()
                    assertEquals(rows.toULong(), a.writeBundle(file, compress = true, progress = seen).rows)
                    seen.check(rows)

                    seen = Recorder()
                    assertEquals(rows.toULong(), b.importBundle(bundle, seen).rows)
                    seen.check(rows)

                    // the lambda form
                    val calls = mutableListOf<Pair<ULong, ULong>>()
                    assertEquals(rows.toULong(), c.importBundleFile(file, progressListener { d, t -> calls.add(d to t) }).rows)
                    assertEquals(rows.toULong() to rows.toULong(), calls.last())
                    assertTrue(calls.size >= 2)
                    assertEquals(a.stateHash(), b.stateHash())
                    assertEquals(a.stateHash(), c.stateHash())
                    // no listener: the defaults
                    assertEquals(0uL, b.importBundle(bundle).applied)
                }
            }
        }
    }

    @Test
    fun aThrowingListenerIsNotCalledAgainAndItsErrorComesAfterTheCall() {
        replica("a").use { a ->
            replica("b").use { b ->
                fill(a)
                var calls = 0
                val stop = progressListener { _, _ ->
                    calls++
                    throw SynclineException.InvalidArgument("stop here")
                }
                val e = expectError<SynclineException.InvalidArgument> { a.generateBundle(progress = stop) }
                assertEquals("stop here", e.reason)
                assertEquals(1, calls)
                // any other exception: a callback failure
                calls = 0
                val oops = progressListener { _, _ ->
                    calls++
                    throw IllegalStateException("oops")
                }
                val r = expectError<SynclineException.Resolver> { a.writeBundle(dir.resolve("x.bundle").toString(), progress = oops) }
                assertTrue(r.reason.contains("oops"), r.reason)
                assertEquals(1, calls)
                // An import cannot be stopped midway: the error comes once it is applied, and
                // importing the bundle again is harmless.
                val bundle = a.generateBundle()
                calls = 0
                expectError<SynclineException.InvalidArgument> { b.importBundle(bundle, stop) }
                assertEquals(1, calls)
                assertEquals(a.stateHash(), b.stateHash())
                assertEquals(0uL, b.importBundle(bundle).applied)
            }
        }
    }
}
