// Type-checked under `tsc --strict` (test/tsconfig.json), then run by `node --test` like the
// other tests. It uses the whole public surface with its declared types.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import Database from 'better-sqlite3'
import {
  SyncEngine,
  Subscription,
  SyncHandle,
  uuid7,
  errorCodes,
  errorKinds,
  defaultOptions,
  defaultSyncOptions,
  checkShared,
  sqliteLibrary,
  extensionPath,
  entryPoint,
  type ErrorKindInfo,
  type SqliteDatabase,
  type SqliteLibrary,
  type BundleStats,
  type BundleOptions,
  type CloneOptions,
  type ImportOptions,
  type CompactReport,
  type MigrationPolicy,
  type SchemaChange,
  type VersionEntry,
  type ChangeEvent,
  type Conflict,
  type ConflictInput,
  type EngineOptions,
  type EngineStatus,
  type ErrorCode,
  type ImportReport,
  type QueryResult,
  type Resolution,
  type SqlValue,
  type StartSyncOptions,
  type Strategy,
  type SyncError,
  type SyncOptions,
  type SyncReport,
  type SyncStatus,
} from 'syncline'

interface SynclineError extends Error {
  code: ErrorCode
}

function isSynclineError(e: unknown): e is SynclineError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string'
}

test('typed API', async () => {
  const dir: string = fs.mkdtempSync(path.join(os.tmpdir(), 'syncline-ts-'))
  try {
    const options: EngineOptions = { maxDriftMs: 60_000, busyTimeoutMs: 1_000, watchIntervalMs: 20 }
    const a: SyncEngine = new SyncEngine(path.join(dir, 'a.db'), options)
    const b: SyncEngine = await SyncEngine.open(path.join(dir, 'b.db'))
    const strategy: Strategy = 'custom'
    for (const e of [a, b]) {
      e.executeBatch('CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT, n INTEGER, raw BLOB)')
      e.enableSync('notes', { strategy, allowAutoincrement: false })
    }
    const resolver = (c: ConflictInput): Resolution => {
      const l: SqlValue = c.local.value
      const r: SqlValue = c.remote.value
      return typeof l === 'string' && typeof r === 'string' ? { value: [l, r].sort().join('|') } : 'local'
    }
    a.setResolver('notes', resolver)
    b.setResolver('notes', resolver)
    const events: ChangeEvent[] = []
    const sub: Subscription = b.subscribe((ev: ChangeEvent) => {
      events.push(ev)
    })
    const id: string = uuid7()
    const params: SqlValue[] = [id, 'hello', 2n ** 60n, Buffer.from('raw')]
    const changed: number = a.execute('INSERT INTO notes VALUES (?, ?, ?, ?)', params)
    assert.equal(changed, 1)
    const bundle: Buffer = await a.generateBundle({ peer: b.siteId, compress: true })
    const report: ImportReport = await b.importBundle(bundle)
    assert.equal(report.sender, a.siteId)
    const held: number = report.quarantined + report.released
    assert.equal(held, 0)
    const q: QueryResult = b.query('SELECT n FROM notes WHERE id = ?', [id])
    const n: SqlValue = q.rows[0][0]
    assert.equal(n, 2n ** 60n)
    const file: string = path.join(dir, 'a.bundle')
    const stats: BundleStats = await a.writeBundle(file, { peer: b.siteId })
    assert.ok(stats.bytes > 0)
    await b.importBundle(file)
    // progress and streams
    const seen: Array<[number, number]> = []
    const withProgress: BundleOptions = { onProgress: (done: number, total: number) => void seen.push([done, total]) }
    const streamed: Readable = a.exportStream(withProgress)
    const importOptions: ImportOptions = { onProgress: (done, total) => void seen.push([done, total]) }
    const fromStream: ImportReport = await b.importStream(streamed, importOptions)
    assert.equal(fromStream.sender, a.siteId)
    const fromIterable: ImportReport = await b.importStream((async function* () {
      yield fs.readFileSync(file)
    })())
    assert.equal(fromIterable.applied, 0)
    assert.deepEqual(seen.at(-1), [fromStream.rows, fromStream.rows])
    const st: EngineStatus = b.status()
    const hash: string = b.stateHash()
    assert.match(hash, /^[0-9a-f]{64}$/)
    const hlc: bigint = st.hlc
    const waiting: number = st.quarantined
    assert.equal(waiting, 0)
    assert.ok(hlc > 0n)
    const conflicts: Conflict[] = b.conflicts().concat(b.allConflicts())
    assert.ok(Array.isArray(conflicts))
    const codes: ErrorCode[] = errorCodes()
    assert.ok(codes.includes('InvalidBundle'))
    try {
      await b.importBundle(Buffer.from('junk'))
      assert.fail('expected a rejection')
    } catch (e: unknown) {
      assert.ok(isSynclineError(e))
      assert.equal(e.code, 'InvalidBundle')
    }
    // schema evolution: a column added on a, held by b until it applies it
    const policy: MigrationPolicy = 'hold'
    b.setMigrationPolicy(policy)
    const now: MigrationPolicy = b.migrationPolicy()
    assert.equal(now, 'hold')
    a.addColumn('notes', 'prio', 'INTEGER', 3)
    a.addColumn('notes', 'tag', 'TEXT')
    const moved: ImportReport = await b.importBundle(await a.generateBundle({ peer: b.siteId }))
    const migrated: number = moved.migrated
    const heldChanges: number = moved.held
    assert.equal(migrated, 0)
    assert.ok(heldChanges >= 0)
    const changes: SchemaChange[] = b.status().schemaChanges
    const state: 'applied' | 'held' = changes[0].state
    const source: 'detected' | 'local' | 'remote' = changes[0].source
    const stamp: bigint = changes[0].hlc
    assert.deepEqual([state, source, changes[0].declType], ['held', 'remote', 'INTEGER'])
    assert.ok(stamp > 0n)
    const appliedNow: number = b.applyHeldMigrations()
    assert.equal(appliedNow, 2)
    const heldCells: number = b.status().heldCells
    const heldRows: number = b.status().heldRows
    assert.deepEqual([heldCells, heldRows], [0, 0])
    // @ts-expect-error: not a migration policy
    assert.throws(() => b.setMigrationPolicy('later'))
    // compaction: nothing acknowledged to purge here
    const compacted: CompactReport = b.compact(0)
    const purged: number = compacted.purged
    assert.equal(purged, 0)
    assert.ok(compacted.bytesAfter > 0 && compacted.bytesBefore > 0)
    assert.equal(b.compact().purged, 0)
    const tomb: number = b.status().tombstones + b.status().purgeable
    assert.equal(tomb, 0)
    const horizon: VersionEntry[] = b.status().purgeHorizon
    assert.deepEqual(horizon, [])
    b.setManualClock(Date.now())
    b.setManualClock(null)
    b.setStrategy('notes', 'lww')
    b.clearResolver('notes')
    b.setSiteId(b.resetSiteId())
    sub.close()
    const closed: boolean = sub.closed
    assert.equal(closed, true)
    // @ts-expect-error: not a strategy
    assert.throws(() => b.setStrategy('notes', 'bogus'))
    // @ts-expect-error: booleans are not SQL values
    assert.throws(() => b.execute('SELECT ?', [true]))
    // @ts-expect-error: a resolution is 'local' | 'remote' | {local} | {remote} | {value}
    const bad: Resolution = { keep: 'mine' }
    void bad
    // network sync (nothing listens on port 1: code Network); b, whose resolver was cleared
    // (a background sync and a JS resolver do not mix)
    const once: SyncOptions = { token: 't', onProgress: (pulled: number, total: number) => void [pulled, total] }
    const cloning: (url: string, path: string, options?: CloneOptions) => Promise<number> = SyncEngine.clone
    await assert.rejects(cloning('http://127.0.0.1:1', path.join(dir, 'clone.db'), { token: 't', onProgress: () => {} }))
    try {
      const r: SyncReport = await b.sync('http://127.0.0.1:1', once)
      assert.fail(`expected a rejection, got ${r.roundTrips}`)
    } catch (e: unknown) {
      assert.ok(isSynclineError(e))
      assert.equal(e.code, 'Network')
    }
    const loop: StartSyncOptions = { token: 't', intervalMs: 50, maxBackoffMs: 100, live: false, pageRows: 100, timeoutMs: 1_000 }
    const handle: SyncHandle = b.startSync('http://127.0.0.1:1', loop)
    handle.syncNow()
    let ss: SyncStatus = handle.status()
    while (ss.failures < 1) {
      await new Promise((r) => setTimeout(r, 20))
      ss = handle.status()
    }
    const err: SyncError | undefined = ss.lastError
    const code: ErrorCode | undefined = err?.code
    assert.equal(code, 'Network')
    const last: number | undefined = ss.lastSuccess
    assert.equal(last, undefined)
    const lastReport: SyncReport | undefined = ss.lastReport
    assert.equal(lastReport, undefined)
    const pending: number = ss.pending
    assert.ok(pending >= 0)
    const stopped: Promise<void> = handle.stop()
    await stopped
    assert.equal(handle.status().running, false)
    // @ts-expect-error: intervals are milliseconds (number)
    const badLoop: StartSyncOptions = { intervalMs: '5s' }
    void badLoop
    a.close()
    b.close()
    // the app's own better-sqlite3 Database, attached: one SQLite in the process
    const db: Database.Database = new Database(path.join(dir, 'c.db'))
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)')
    const handle2: SqliteDatabase = db
    const c: SyncEngine = SyncEngine.attach(handle2, { watchIntervalMs: 50 })
    c.enableSync('t')
    db.prepare('INSERT INTO t VALUES (1, ?)').run('x')
    assert.deepEqual(c.query('SELECT v FROM t').rows, [['x']])
    checkShared(db)
    const lib: SqliteLibrary | null = sqliteLibrary()
    assert.ok(lib && lib.version.length > 0)
    const ext: string = extensionPath
    const entry: 'sqlite3_syncline_init' = entryPoint
    assert.ok(ext.endsWith('.node') && entry.length > 0)
    const kinds: ErrorKindInfo[] = errorKinds()
    const firstCode: ErrorCode = kinds[0].code
    assert.equal(firstCode, 'InvalidBundle')
    const eo: EngineOptions = defaultOptions()
    const so: StartSyncOptions = defaultSyncOptions()
    assert.ok((eo.maxDriftMs ?? 0) > 0 && (so.intervalMs ?? 0) > 0)
    // @ts-expect-error: not a database handle
    assert.throws(() => SyncEngine.attach({ nope: true }))
    c.close()
    db.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
