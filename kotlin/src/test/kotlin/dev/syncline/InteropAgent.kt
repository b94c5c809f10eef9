// The Kotlin interop agent (spec/vectors/README.md §"Interop script"), run by scripts/agents/kotlin:
//   export interop.json OUT.bundle   # prints the writer's state hash
//   import interop.json IN.bundle    # prints the reader's state hash
// It lives in the test source set (it needs org.json, a test dependency) and is not a test.
@file:JvmName("InteropAgent")

package dev.syncline

import org.json.JSONObject
import java.io.File
import java.nio.file.Files
import kotlin.system.exitProcess

/** A fresh replica of [role] ("writer" or "reader"): site id, manual clock, schema, synced tables. */
private fun agentReplica(dir: File, spec: JSONObject, role: String): SyncEngine {
    val who = spec.getJSONObject(role)
    val e = SyncEngine.open(dir.resolve("$role.db").path)
    e.setSiteId(who.getString("site"))
    e.setManualClock(who.getLong("clock_ms").toULong())
    val schema = spec.optJSONArray("schema")
    if (schema != null) for (i in 0 until schema.length()) e.executeBatch(schema.getString(i))
    val tables = spec.optJSONObject("tables") ?: JSONObject()
    for (t in tables.keySet().sorted()) e.enableSync(t, strategyOf(tables.getString(t)), false)
    return e
}

fun main(args: Array<String>) {
    if (args.size != 3 || args[0] !in setOf("export", "import")) {
        System.err.println("usage: InteropAgent export|import interop.json BUNDLE")
        exitProcess(2)
    }
    val (command, specPath, bundle) = args
    val dir = Files.createTempDirectory("syncline-agent").toFile()
    val hash = try {
        val spec = JSONObject(File(specPath).readText())
        if (command == "export") {
            agentReplica(dir, spec, "writer").use { e ->
                val steps = spec.optJSONArray("steps")
                if (steps != null) for (i in 0 until steps.length()) {
                    val step = steps.getJSONObject(i)
                    if (step.has("sql")) e.execute(step.getString("sql"), emptyList())
                    if (step.has("clock_ms")) e.setManualClock(step.getLong("clock_ms").toULong())
                }
                File(bundle).writeBytes(e.generateBundle(null, false))
                e.stateHash()
            }
        } else {
            agentReplica(dir, spec, "reader").use { e ->
                e.importBundleFile(bundle)
                e.stateHash()
            }
        }
    } catch (e: Exception) {
        System.err.println("InteropAgent: ${(e as? SynclineException)?.let { "${it.code}: ${it.text}" } ?: e.toString()}")
        exitProcess(1)
    } finally {
        dir.deleteRecursively()
    }
    println(hash)
}
