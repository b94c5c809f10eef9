package dev.syncline

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import java.io.File
import java.util.concurrent.TimeUnit

const val INTEROP_SCHEMA = "CREATE TABLE IF NOT EXISTS items(id TEXT PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB)"

/** The canonical dump every interop check compares (same format as the Swift tests). */
fun dumpTable(e: SyncEngine): String {
    fun hex(b: ByteArray) = b.joinToString("") { "%02x".format(it.toInt() and 0xff) }
    fun cell(v: Value) = when (v) {
        is Value.Null -> "n"
        is Value.Integer -> "i:${v.v1}"
        is Value.Real -> "r:" + java.lang.Long.toHexString(v.v1.toRawBits())
        is Value.Text -> "t:" + hex(v.v1.toByteArray(Charsets.UTF_8))
        is Value.Blob -> "b:" + hex(v.v1)
    }
    return e.rows("SELECT id, i, r, t, b FROM items ORDER BY id").joinToString("\n") { row -> row.joinToString("|") { cell(it) } } + "\n"
}

/**
 * Cross-language check, run by bindings/test.sh after the Swift suite: the bundle the Swift tests
 * wrote into $SYNCLINE_INTEROP_DIR imports here and in the Rust CLI ($SYNCLINE_CLI) with the very
 * table the Swift side dumped. Skipped when the folder is not given (plain `mvn test`);
 * SYNCLINE_INTEROP_REQUIRED=1 turns a missing input into a failure.
 */
class InteropTest {
    private val dir = System.getenv("SYNCLINE_INTEROP_DIR")?.let(::File)
    private val required = System.getenv("SYNCLINE_INTEROP_REQUIRED") == "1"

    private fun input(): Pair<File, String>? {
        val bundle = dir?.resolve("swift.bundle")
        val expected = dir?.resolve("swift.expected")
        if (bundle == null || expected == null || !bundle.isFile || !expected.isFile) {
            assertTrue(!required, "interop input missing in $dir (the Swift suite writes it)")
            return null
        }
        return bundle to expected.readText()
    }

    @Test
    fun swiftBundleImportsInKotlinWithTheSameTable() {
        val (bundle, expected) = input() ?: return assumeTrue(false, "no interop input")
        val db = File(dir, "kotlin.db")
        listOf("", "-wal", "-shm").forEach { File(db.path + it).delete() }
        SyncEngine.open(db.path).use { e ->
            e.executeBatch(INTEROP_SCHEMA)
            e.enableSync("items")
            val report = e.importBundleFile(bundle.path)
            assertTrue(report.applied > 0uL, "$report")
            assertEquals(expected, dumpTable(e))
            assertEquals(4uL, e.status().tables.single().rows)
            // and the bundle Kotlin makes from it carries the same table back
            val again = File(dir, "kotlin-again.db")
            listOf("", "-wal", "-shm").forEach { File(again.path + it).delete() }
            SyncEngine.open(again.path).use { k ->
                k.executeBatch(INTEROP_SCHEMA)
                k.enableSync("items")
                k.importBundle(e.generateBundle())
                assertEquals(expected, dumpTable(k))
            }
        }
    }

    private fun cli(vararg args: String): String {
        val exe = System.getenv("SYNCLINE_CLI")!!
        val p = ProcessBuilder(listOf(exe) + args).redirectErrorStream(true).start()
        val out = p.inputStream.bufferedReader().readText()
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "syncline ${args.joinToString(" ")} timed out")
        assertEquals(0, p.exitValue(), "syncline ${args.joinToString(" ")}: $out")
        return out
    }

    @Test
    fun swiftBundleImportsInTheRustCliWithTheSameTable() {
        val (bundle, expected) = input() ?: return assumeTrue(false, "no interop input")
        val exe = System.getenv("SYNCLINE_CLI")
        if (exe.isNullOrEmpty()) {
            assertTrue(!required, "SYNCLINE_CLI is not set")
            return assumeTrue(false, "SYNCLINE_CLI is not set")
        }
        val db = File(dir, "cli.db")
        listOf("", "-wal", "-shm").forEach { File(db.path + it).delete() }
        // the table must exist before `syncline init`; the CLI does the enabling and the import
        SyncEngine.open(db.path).use { it.executeBatch(INTEROP_SCHEMA) }
        cli("init", db.path, "--table", "items")
        cli("import", db.path, bundle.path)
        val status = cli("status", db.path, "--json")
        assertTrue(Regex("\"rows\"\\s*:\\s*4\\b").containsMatchIn(status), status)
        SyncEngine.open(db.path).use { assertEquals(expected, dumpTable(it)) }
    }
}
