// Run by SqliteJdbcTest in a JVM of its own whose class path lacks sqlite-jdbc: the binding of a
// SQLite library is per process, so "nothing bound yet" can only be seen in a fresh process.
// Prints one line per check and exits 0 when every check held.
@file:JvmName("UnwiredMain")

package dev.syncline

import java.io.File

fun main(args: Array<String>) {
    val dir = File(args[0])
    var ok = true
    fun check(name: String, cond: Boolean) {
        println("${if (cond) "ok" else "FAILED"}: $name")
        ok = ok && cond
    }
    check("sqlite-jdbc is absent", runCatching { Class.forName("org.sqlite.JDBC") }.isFailure)
    check("nothing is bound", Syncline.boundLibrary == null)
    val db = File(dir, "unwired.db")
    val error = runCatching { SyncEngine.open(db.path) }.exceptionOrNull()
    check("open fails with SqliteLibrary (got $error)", error is SynclineException.SqliteLibrary)
    val text = (error as? SynclineException)?.text ?: ""
    check("the message says what to do: $text", "extension" in text)
    check("no file was created", !db.exists())
    val probe = runCatching { checkSharedSqlite(object : SqliteDriverProbe { override fun setSoftHeapLimit(limit: Long) {} }) }
    check("checkShared before binding fails with SqliteLibrary", probe.exceptionOrNull() is SynclineException.SqliteLibrary)
    // bad input is a typed error too
    check("binding a missing library fails with SqliteLibrary",
        runCatching { Syncline.bind(File(dir, "no-such-lib.so").path) }.exceptionOrNull() is SynclineException.SqliteLibrary)
    check("still nothing bound", Syncline.boundLibrary == null)
    kotlin.system.exitProcess(if (ok) 0 else 1)
}
