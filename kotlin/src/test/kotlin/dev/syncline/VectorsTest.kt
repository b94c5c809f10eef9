package dev.syncline

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.nio.file.Files
import java.nio.file.Path

/*
 * The golden vectors of spec/vectors/ (README.md there) run through the Kotlin binding, checking
 * exactly what the Rust runner (core/tests/vectors.rs) checks: export bytes equal the committed
 * bundles, import reports, refused imports (error kind, database unchanged), resolutions, conflict
 * counts, final rows (exact: Long, blob bytes, real bits), open conflicts and the state hash.
 * `derive` steps are skipped: the committed damaged bundles are used.
 */

/** spec/vectors, from the Maven project folder (kotlin/); -Dsyncline.vectors.dir overrides. */
val VECTORS_DIR: File = (System.getProperty("syncline.vectors.dir")?.let(::File)
    ?: File(System.getProperty("user.dir")).resolve("../spec/vectors")).canonicalFile

class VectorFailure(message: String) : AssertionError(message)

/** Keys every import step's report has; the optional ones are compared when present. */
val REQUIRED_REPORT_KEYS = listOf("applied", "already_known", "conflicts", "rejected")
val OPTIONAL_REPORT_KEYS = listOf("quarantined", "released", "migrated", "held")

fun reportField(r: ImportReport, key: String): ULong = when (key) {
    "applied" -> r.applied
    "already_known" -> r.alreadyKnown
    "conflicts" -> r.conflicts
    "rejected" -> r.rejected
    "quarantined" -> r.quarantined
    "released" -> r.released
    "migrated" -> r.migrated
    "held" -> r.held
    else -> throw VectorFailure("unknown report key $key")
}

private fun hexBytes(s: String): ByteArray {
    require(s.length % 2 == 0) { "odd hex $s" }
    return ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }
}

private fun hex(b: ByteArray) = b.joinToString("") { "%02x".format(it.toInt() and 0xff) }

/** A tagged JSON value: null, {"int": "…"}, {"real": "…"}, {"text": "…"}, {"blob": "hex"}. */
fun taggedValue(j: Any?): Value {
    if (j == null || j == JSONObject.NULL) return Value.Null
    val o = j as? JSONObject ?: throw VectorFailure("not a tagged value: $j")
    if (o.length() != 1) throw VectorFailure("not a tagged value: $o")
    val tag = o.keys().next()
    val s = o.get(tag) as? String ?: throw VectorFailure("tagged payload is not a string: $o")
    return when (tag) {
        "int" -> Value.Integer(s.toLong())
        "real" -> Value.Real(s.toDouble())
        "text" -> Value.Text(s)
        "blob" -> Value.Blob(hexBytes(s))
        else -> throw VectorFailure("unknown value tag $tag")
    }
}

/** A canonical, exact text of a value (for dumps and messages). */
fun exactText(v: Value): String = when (v) {
    is Value.Null -> "null"
    is Value.Integer -> "int(${v.v1})"
    is Value.Real -> "real(${v.v1} bits=${java.lang.Long.toHexString(v.v1.toRawBits())})"
    is Value.Text -> "text(${v.v1.toByteArray(Charsets.UTF_8).size}:${v.v1})"
    is Value.Blob -> "blob(${hex(v.v1)})"
}

fun exactRows(rows: List<List<Value>>) = rows.joinToString("; ") { r -> r.joinToString(", ", "[", "]") { exactText(it) } }

/** Every row of a table as `SELECT * FROM t ORDER BY 1, 2, …` returns them. */
fun tableRows(e: SyncEngine, table: String): List<List<Value>> {
    val quoted = "\"" + table.replace("\"", "\"\"") + "\""
    val cols = e.query("SELECT * FROM $quoted LIMIT 0", emptyList()).columns.size
    val order = (1..maxOf(cols, 1)).joinToString(", ")
    return e.query("SELECT * FROM $quoted ORDER BY $order", emptyList()).rows
}

/** Every table of the database (sync metadata included), exactly. */
fun fingerprint(e: SyncEngine): String = buildString {
    for (t in e.rows("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")) {
        val name = t[0].asString ?: throw VectorFailure("table name is not text")
        append(name).append(':').append(exactRows(tableRows(e, name))).append(';')
    }
}

fun strategyOf(s: String): Strategy = when (s) {
    "lww" -> Strategy.LWW
    "manual" -> Strategy.MANUAL
    "prefer_local" -> Strategy.PREFER_LOCAL
    "prefer_remote" -> Strategy.PREFER_REMOTE
    "custom" -> Strategy.CUSTOM
    else -> throw VectorFailure("unknown strategy $s")
}

/** Unsigned lexicographic order of UTF-8 bytes (String.compareTo orders UTF-16 units). */
private val utf8Order = Comparator<String> { a, b ->
    val x = a.toByteArray(Charsets.UTF_8)
    val y = b.toByteArray(Charsets.UTF_8)
    java.util.Arrays.compareUnsigned(x, y)
}

/** The concat resolver of the vectors: two texts sorted by UTF-8 bytes, joined with " + "; else local. */
object ConcatResolver : ConflictResolver {
    override fun resolve(conflict: ConflictInput): Resolution {
        val l = conflict.local.value
        val r = conflict.remote.value
        if (l is Value.Text && r is Value.Text) {
            return Resolution.UseValue(Value.Text(listOf(l.v1, r.v1).sortedWith(utf8Order).joinToString(" + ")))
        }
        return Resolution.Local
    }
}

private fun JSONObject.sortedKeys(): List<String> = keySet().sorted()

/** One scenario; throws VectorFailure describing the first mismatch. */
fun runScenario(scenario: File, dir: File) {
    val sc = JSONObject(scenario.readText())
    val name = sc.getString("name")
    val clock = sc.getLong("clock_ms").toULong()
    val replicas = sc.getJSONObject("replicas")
    val schemas = sc.optJSONObject("schemas") ?: JSONObject()
    val overrides = sc.optJSONObject("table_overrides") ?: JSONObject()
    val reps = sortedMapOf<String, SyncEngine>()
    try {
        for (r in replicas.sortedKeys()) {
            val e = SyncEngine.open(dir.resolve("$r.db").path)
            reps[r] = e
            e.setSiteId(replicas.getString(r))
            e.setManualClock(clock)
            val schema = schemas.optJSONArray(r) ?: sc.getJSONArray("schema")
            for (i in 0 until schema.length()) e.executeBatch(schema.getString(i))
            val tables = overrides.optJSONObject(r) ?: sc.getJSONObject("tables")
            for (t in tables.sortedKeys()) {
                val s = strategyOf(tables.getString(t))
                e.enableSync(t, s, false)
                if (s == Strategy.CUSTOM) e.setResolver(t, ConcatResolver)
            }
        }
        fun rep(key: String) = reps[key] ?: throw VectorFailure("$name: no replica $key")
        fun file(step: JSONObject) = VECTORS_DIR.resolve(step.getString("file"))

        val steps = sc.getJSONArray("steps")
        for (k in 0 until steps.length()) {
            val step = steps.getJSONObject(k)
            val at = "$name step $k"
            when {
                step.has("on") -> {
                    val e = rep(step.getString("on"))
                    if (step.has("sql")) e.execute(step.getString("sql"), emptyList())
                    if (step.has("clock_ms")) e.setManualClock(step.getLong("clock_ms").toULong())
                }
                step.has("export") -> {
                    val e = rep(step.getString("export"))
                    val peer = if (step.has("peer")) rep(step.getString("peer")).siteId() else null
                    val bytes = e.generateBundle(peer, false)
                    val want = file(step).readBytes()
                    if (!bytes.contentEquals(want)) {
                        throw VectorFailure("$at: ${step.getString("file")} differs from the bundle made now (${bytes.size} vs ${want.size} bytes)")
                    }
                }
                step.has("derive") -> Unit // the Rust runner makes and checks these; the committed files are used
                step.has("import") -> {
                    val e = rep(step.getString("import"))
                    val before = fingerprint(e)
                    val path = file(step).path
                    if (step.has("error")) {
                        val want = step.getString("error")
                        val report = try {
                            e.importBundleFile(path)
                        } catch (err: SynclineException) {
                            if (err.code != want) throw VectorFailure("$at: expected $want, got ${err.code}: ${err.text}")
                            null
                        }
                        if (report != null) throw VectorFailure("$at: expected $want, the import succeeded: $report")
                        if (fingerprint(e) != before) throw VectorFailure("$at: a refused bundle changed the database")
                    } else {
                        val report = try {
                            e.importBundleFile(path)
                        } catch (err: SynclineException) {
                            throw VectorFailure("$at: ${err.code}: ${err.text}")
                        }
                        step.optJSONObject("report")?.let { w ->
                            val present = w.keySet()
                            if (!present.containsAll(REQUIRED_REPORT_KEYS) || !(REQUIRED_REPORT_KEYS + OPTIONAL_REPORT_KEYS).containsAll(present)) {
                                throw VectorFailure("$at: unexpected report keys ${w.sortedKeys()}")
                            }
                            // the four required keys, then the optional ones the vector carries
                            val keys = (REQUIRED_REPORT_KEYS + OPTIONAL_REPORT_KEYS).filter { it in present }
                            val got = keys.map { reportField(report, it) }
                            val exp = keys.map { w.getLong(it).toULong() }
                            if (got != exp) throw VectorFailure("$at: import report $got != $exp (${keys.joinToString()})")
                        }
                    }
                }
                step.has("resolve") -> {
                    val e = rep(step.getString("resolve"))
                    val n = step.getInt("conflict")
                    val open = e.conflicts()
                    val id = open.getOrNull(n)?.id ?: throw VectorFailure("$at: no open conflict $n (${open.size} open)")
                    val with = when (val w = step.get("with")) {
                        "local" -> Resolution.Local
                        "remote" -> Resolution.Remote
                        is JSONObject -> Resolution.UseValue(taggedValue(w.opt("value") ?: throw VectorFailure("$at: bad resolution $w")))
                        else -> throw VectorFailure("$at: bad resolution $w")
                    }
                    e.resolve(id, with)
                }
                step.has("conflicts") -> {
                    val got = rep(step.getString("conflicts")).conflicts().size.toLong()
                    val want = step.getLong("count")
                    if (got != want) throw VectorFailure("$at: $got open conflicts, want $want")
                }
                step.has("migrate") -> {
                    // spec/vectors/migrations (README.md there): the steps of schema evolution
                    val e = rep(step.getString("migrate"))
                    val dflt = if (step.has("default")) taggedValue(step.get("default")) else Value.Null
                    val call = { e.addColumn(step.getString("table"), step.getString("add_column"), step.getString("type"), dflt) }
                    if (step.has("error")) {
                        val want = step.getString("error")
                        val ok = try {
                            call()
                            true
                        } catch (err: SynclineException) {
                            if (err.code != want) throw VectorFailure("$at: expected $want, got ${err.code}: ${err.text}")
                            false
                        }
                        if (ok) throw VectorFailure("$at: expected $want, add_column succeeded")
                    } else {
                        try {
                            call()
                        } catch (err: SynclineException) {
                            throw VectorFailure("$at: ${err.code}: ${err.text}")
                        }
                    }
                }
                step.has("migration_policy") -> {
                    val policy = when (val p = step.getString("policy")) {
                        "apply" -> MigrationPolicy.APPLY
                        "hold" -> MigrationPolicy.HOLD
                        else -> throw VectorFailure("$at: unknown policy $p")
                    }
                    rep(step.getString("migration_policy")).setMigrationPolicy(policy)
                }
                step.has("apply_held_migrations") -> {
                    val got = rep(step.getString("apply_held_migrations")).applyHeldMigrations()
                    val want = step.getLong("count").toULong()
                    if (got != want) throw VectorFailure("$at: apply_held_migrations returned $got, want $want")
                }
                step.has("enable") -> rep(step.getString("enable")).enableSync(step.getString("table"))
                else -> throw VectorFailure("$at: unknown step $step")
            }
        }

        val expect = sc.getJSONObject("expect")
        for (r in expect.sortedKeys()) {
            val e = rep(r)
            val want = expect.getJSONObject(r)
            val rows = want.getJSONObject("rows")
            for (table in rows.sortedKeys()) {
                val w = rows.getJSONArray(table).map { row -> (row as JSONArray).map { taggedValue(it) } }
                val got = tableRows(e, table)
                if (!got.sameAs(w)) {
                    throw VectorFailure("$name: rows of $table on $r:\n  got  ${exactRows(got)}\n  want ${exactRows(w)}")
                }
            }
            val open = e.conflicts().size.toLong()
            val wantOpen = want.getLong("open_conflicts")
            if (open != wantOpen) throw VectorFailure("$name: $open open conflicts on $r, want $wantOpen")
            val hash = e.stateHash()
            val wantHash = want.getString("state_hash")
            if (hash != wantHash) throw VectorFailure("$name: state hash of $r is $hash, want $wantHash")
        }
    } finally {
        reps.values.forEach { it.close() }
    }
}

/**
 * Every scenario of spec/vectors (interop.json is the interop script, not a scenario), then those
 * of spec/vectors/migrations (the schema-evolution steps).
 */
fun scenarioFiles(): List<File> {
    fun jsons(d: File) = (d.listFiles() ?: emptyArray())
        .filter { it.isFile && it.name.endsWith(".json") && it.name != "interop.json" }
        .sortedBy { it.name }
    return jsons(VECTORS_DIR) + jsons(VECTORS_DIR.resolve("migrations"))
}

class VectorsTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun theVectorsArePresent() {
        assertTrue(scenarioFiles().size >= 12, "the vectors are missing from $VECTORS_DIR")
        assertTrue(scenarioFiles().any { it.name == "12-hostile-bundles.json" }, "the hostile-bundle scenario is run")
        assertTrue(scenarioFiles().count { it.parentFile.name == "migrations" } >= 2, "the migration vectors are run")
    }

    /** One test per scenario. */
    @TestFactory
    fun goldenVectors(): List<DynamicTest> = scenarioFiles().map { f ->
        DynamicTest.dynamicTest((if (f.parentFile.name == "migrations") "migrations/" else "") + f.nameWithoutExtension) {
            val sub = Files.createTempDirectory(dir, f.nameWithoutExtension).toFile()
            runScenario(f, sub)
        }
    }

    /** The migration steps are checked too: a wrong `held` count in an import report fails the run. */
    @Test
    fun theRunnerNoticesAWrongHeldCount() {
        val sc = JSONObject(VECTORS_DIR.resolve("migrations/02-held-migration-and-table.json").readText())
        val steps = sc.getJSONArray("steps")
        val report = (0 until steps.length()).map { steps.getJSONObject(it) }
            .mapNotNull { it.optJSONObject("report") }.first { it.has("held") }
        report.put("held", report.getLong("held") + 1)
        val file = dir.resolve("scenario.json").toFile().apply { writeText(sc.toString()) }
        val sub = Files.createTempDirectory(dir, "run").toFile()
        val e = assertThrows<VectorFailure> { runScenario(file, sub) }
        assertTrue(e.message!!.contains("import report") && e.message!!.contains("held"), e.message)
    }

    /** The runner itself refuses a wrong expectation (a changed state hash), so a green run means something. */
    @Test
    fun theRunnerNoticesAWrongStateHash() {
        val sc = JSONObject(VECTORS_DIR.resolve("01-insert-to-new-peer.json").readText())
        val expect = sc.getJSONObject("expect")
        expect.getJSONObject(expect.sortedKeys().first()).put("state_hash", "0".repeat(64))
        val file = dir.resolve("scenario.json").toFile().apply { writeText(sc.toString()) }
        val sub = Files.createTempDirectory(dir, "run").toFile()
        val e = assertThrows<VectorFailure> { runScenario(file, sub) }
        assertTrue(e.message!!.contains("state hash"), e.message)
        assertEquals(true, scenarioFiles().isNotEmpty())
    }
}
