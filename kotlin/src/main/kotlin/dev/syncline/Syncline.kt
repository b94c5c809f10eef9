// The idiomatic Kotlin layer over the generated bindings (generated/dev/syncline/syncline_ffi.kt).
// It only adapts: values from Kotlin types, lambdas for callbacks, Flow for events, and the SQLite
// wiring on open (Sqlite.kt: `SyncEngine.open`, `Syncline.attach`). All behaviour lives in the
// Rust core.
//
// Closing: `SyncEngine.open(path).use { db -> ... }` frees the engine when the block ends, which
// closes the database; `closeEngine()` closes it explicitly (later calls throw
// SynclineException.Closed). A Subscription ends with `cancel()` or `close()`/`use {}`.
//
// Network sync: `sync(url, token)` is a generated `suspend fun` (the blocking pass runs on a
// thread of the native library; the coroutine just waits), `syncBlocking` below is the same call
// for plain threads and Java. `startSync(url, token, SyncOptions(...))` returns a SyncHandle at
// once: `status()`, `syncNow()`, `stop()`; `close()`/`use {}` frees it, which stops the loop too.
@file:JvmName("SynclineExtensions")

package dev.syncline

import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.runBlocking

/** A [Value] from a Kotlin value: null, Long/Int/Short/Byte, Boolean (1/0), Double/Float, String, ByteArray, Value. */
fun sqlValue(x: Any?): Value = when (x) {
    null -> Value.Null
    is Value -> x
    is Long -> Value.Integer(x)
    is Int -> Value.Integer(x.toLong())
    is Short -> Value.Integer(x.toLong())
    is Byte -> Value.Integer(x.toLong())
    is Boolean -> Value.Integer(if (x) 1L else 0L)
    is Double -> Value.Real(x)
    is Float -> Value.Real(x.toDouble())
    is String -> Value.Text(x)
    is ByteArray -> Value.Blob(x)
    else -> throw IllegalArgumentException("not an SQLite value: ${x::class.qualifiedName}")
}

/** Run one statement with Kotlin values as parameters; returns the number of changed rows. */
fun SyncEngine.exec(sql: String, vararg params: Any?): Long = execute(sql, params.map(::sqlValue)).toLong()

/** The rows of a query, with Kotlin values as parameters. */
fun SyncEngine.rows(sql: String, vararg params: Any?): List<List<Value>> = query(sql, params.map(::sqlValue)).rows

/** Register a lambda as the resolver of a `CUSTOM` table (deterministic and symmetric, please). */
fun SyncEngine.setResolver(table: String, resolve: (ConflictInput) -> Resolution) =
    setResolver(table, object : ConflictResolver {
        override fun resolve(conflict: ConflictInput): Resolution = resolve(conflict)
    })

/** Call [listener] for every event (on the engine's threads) until the subscription ends. */
fun SyncEngine.subscribe(listener: (Event) -> Unit): Subscription =
    subscribe(object : EventObserver {
        override fun onEvent(event: Event) = listener(event)
    })

/**
 * A lambda as a [ProgressListener] (rows done, rows total), e.g.
 * `db.writeBundle(path, progress = progressListener { done, total -> ... })`. Throwing stops the
 * calls; the engine call then throws once it is done (a non-Syncline exception as
 * `SynclineException.Resolver`, "the callback threw").
 */
fun progressListener(block: (done: ULong, total: ULong) -> Unit): ProgressListener =
    object : ProgressListener {
        override fun onProgress(done: ULong, total: ULong) = block(done, total)
    }

/** Events as a cold [Flow]: each collector subscribes, and unsubscribes when it stops. */
fun SyncEngine.events(): Flow<Event> = callbackFlow {
    val subscription = subscribe { event -> trySendBlocking(event) }
    awaitClose {
        subscription.cancel()
        subscription.close()
    }
}.buffer(Channel.UNLIMITED)

/**
 * [SyncEngine.sync] for callers that are not coroutines (Java, plain threads): blocks the calling
 * thread until the pass ends. Do not call it on a UI thread.
 */
fun SyncEngine.syncBlocking(url: String, token: String? = null): SyncReport = runBlocking { sync(url, token) }

val Value.isNull: Boolean get() = this is Value.Null
val Value.asLong: Long? get() = (this as? Value.Integer)?.v1
val Value.asDouble: Double? get() = (this as? Value.Real)?.v1
val Value.asString: String? get() = (this as? Value.Text)?.v1
val Value.asBytes: ByteArray? get() = (this as? Value.Blob)?.v1

/** Exact equality (blobs by content, reals by bits): `==` compares ByteArrays by identity. */
fun Value.sameAs(other: Value): Boolean = when {
    this is Value.Blob && other is Value.Blob -> v1.contentEquals(other.v1)
    this is Value.Real && other is Value.Real -> v1.toRawBits() == other.v1.toRawBits()
    else -> this == other
}

/** [sameAs] over rows. */
fun List<List<Value>>.sameAs(other: List<List<Value>>): Boolean =
    size == other.size && zip(other).all { (a, b) -> a.size == b.size && a.zip(b).all { (x, y) -> x.sameAs(y) } }

/** The stable code of the error kind (`"InvalidBundle"`, `"Resolver"`, ...), as in every binding. */
val SynclineException.code: String get() = this::class.simpleName ?: "Other"

/** The core's message (each variant also has it as `reason`; Kotlin's `message` is `"reason=..."`). */
val SynclineException.text: String get() = when (this) {
    is SynclineException.InvalidBundle -> reason
    is SynclineException.SchemaMismatch -> reason
    is SynclineException.UnknownTable -> reason
    is SynclineException.UnknownColumn -> reason
    is SynclineException.ClockDrift -> reason
    is SynclineException.SiteIdClash -> reason
    is SynclineException.Resolver -> reason
    is SynclineException.NotFound -> reason
    is SynclineException.InvalidArgument -> reason
    is SynclineException.Reentrant -> reason
    is SynclineException.Closed -> reason
    is SynclineException.Io -> reason
    is SynclineException.Sqlite -> reason
    is SynclineException.Network -> reason
    is SynclineException.Auth -> reason
    is SynclineException.SqliteLibrary -> reason
    is SynclineException.Corrupt -> reason
    is SynclineException.NeedsSnapshot -> reason
    is SynclineException.Other -> reason
}
