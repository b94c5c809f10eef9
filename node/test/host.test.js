'use strict'
// SyncEngine.attach(db): the engine runs inside the SQLite of the app's own better-sqlite3
// Database, and the safety net refuses a second SQLite library. node --test runs each file in
// its own process, so here nothing is bound before the first test; the order of the tests
// matters (the binding is per process).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')
const syncline = h.syncline
const { SyncEngine } = syncline

const Database = h.betterSqlite3()
const addonOfBetterSqlite3 = () =>
  require.resolve('better-sqlite3/build/Release/better_sqlite3.node', { paths: [path.dirname(require.resolve('syncline'))] })

test('the addon is a SQLite extension: extensionPath, entryPoint, and nothing bound before the first attach', () => {
  assert.ok(path.isAbsolute(syncline.extensionPath), syncline.extensionPath)
  assert.ok(fs.existsSync(syncline.extensionPath))
  assert.match(path.basename(syncline.extensionPath), /^syncline\..*\.node$/)
  assert.equal(syncline.entryPoint, 'sqlite3_syncline_init')
  assert.equal(syncline.sqliteLibrary(), null)
})

test('checkShared before anything is bound is a typed SqliteLibrary error', (t) => {
  const db = new Database(':memory:')
  t.after(() => db.close())
  h.throwsCode(() => syncline.checkShared(db), 'SqliteLibrary', /no SQLite library is bound/)
})

test('attach(db): the app keeps its Database open and writes through it; the engine runs on its SQLite', async (t) => {
  const dir = h.tmpdir(t)
  const files = ['a', 'b'].map((n) => path.join(dir, `${n}.db`))
  const dbs = files.map((f) => new Database(f))
  t.after(() => dbs.forEach((d) => d.open && d.close()))
  for (const d of dbs) d.exec(h.TODOS)
  const [a, b] = dbs.map((d) => {
    const e = SyncEngine.attach(d, { watchIntervalMs: 20 })
    t.after(() => e.close())
    e.enableSync('todos')
    return e
  })
  assert.equal(fs.realpathSync(a.path), fs.realpathSync(files[0]))
  const lib = syncline.sqliteLibrary()
  assert.ok(lib, 'a library is bound')
  assert.equal(fs.realpathSync(lib.origin), fs.realpathSync(addonOfBetterSqlite3()), 'the library of better-sqlite3')
  const version = dbs[0].prepare('SELECT sqlite_version() AS v').get().v
  assert.equal(lib.version, version)
  assert.deepEqual(a.query('SELECT sqlite_version()').rows, [[version]], 'the engine runs on that SQLite')
  // the loading connection got the SQL functions of spec/sql-functions.md
  assert.equal(dbs[0].prepare('SELECT syncline_site_id() AS s').get().s, a.siteId)
  const ev = h.collector(b)
  t.after(() => ev.sub.close())
  for (let i = 1; i <= 3; i++) {
    dbs[0].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(i, `a${i}`)
    dbs[1].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(100 + i, `b${i}`)
    // another, short-lived connection of the app between syncs
    h.withDb(files[1], (db) => db.prepare('UPDATE todos SET done = done + 1 WHERE id = ?').run(100 + i))
    await h.syncBoth(a, b)
  }
  await ev.waitFor((e) => e.kind === 'local' && e.pk[0] === 103, 'local event of the attached Database')
  await ev.waitFor((e) => e.kind === 'remote' && e.pk[0] === 3, 'remote event')
  const want = [[1, 'a1', 0], [2, 'a2', 0], [3, 'a3', 0], [101, 'b1', 1], [102, 'b2', 1], [103, 'b3', 1]]
  for (const d of dbs) assert.deepEqual(d.prepare('SELECT id, title, done FROM todos ORDER BY id').raw().all(), want)
  // the app may close its Database: the engine has its own connection on the same library
  dbs[0].close()
  h.withDb(files[0], (db) => db.prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(4, 'after close'))
  await h.syncBoth(a, b)
  assert.deepEqual(b.query('SELECT title FROM todos WHERE id = 4').rows, [['after close']])
  h.assertConverged(a, b)
})

test('after attach, the constructor and SyncEngine.open run on the same library; checkShared passes', async (t) => {
  const dir = h.tmpdir(t)
  const before = syncline.sqliteLibrary()
  const e = new SyncEngine(path.join(dir, 'c.db'))
  t.after(() => e.close())
  const o = await SyncEngine.open(path.join(dir, 'd.db'))
  t.after(() => o.close())
  assert.deepEqual(syncline.sqliteLibrary(), before)
  const db = new Database(path.join(dir, 'c.db'))
  t.after(() => db.close())
  syncline.checkShared(db)
  // attaching the same library again is fine
  const again = SyncEngine.attach(db)
  t.after(() => again.close())
  assert.equal(again.siteId, e.siteId)
})

test('attach refuses what is not a file database handle with InvalidArgument', (t) => {
  const mem = new Database(':memory:')
  t.after(() => mem.close())
  h.throwsCode(() => SyncEngine.attach(mem), 'InvalidArgument', /database file/)
  h.throwsCode(() => SyncEngine.attach({}), 'InvalidArgument', /loadExtension/)
  h.throwsCode(() => SyncEngine.attach(null), 'InvalidArgument', /loadExtension/)
  h.throwsCode(() => syncline.checkShared({}), 'InvalidArgument', /exec\(\)/)
})

test('a second SQLite library in the process is refused with SqliteLibrary, and nothing breaks', async (t) => {
  const dir = h.tmpdir(t)
  // A copy of better-sqlite3's addon under another name is another SQLite library in this
  // process (what two copies of better-sqlite3, or better-sqlite3 next to node:sqlite, give).
  const copy = path.join(dir, 'better_sqlite3_copy.node')
  fs.copyFileSync(addonOfBetterSqlite3(), copy)
  const file = path.join(dir, 'x.db')
  const other = new Database(file, { nativeBinding: copy })
  t.after(() => other.close())
  other.exec(h.TODOS)
  h.throwsCode(() => SyncEngine.attach(other), 'SqliteLibrary', /second SQLite library/)
  // the proof itself, on a handle of that other library
  h.throwsCode(() => syncline.checkShared(other), 'SqliteLibrary', /another SQLite library/)
  // the engines of this process still run on the first library
  const e = new SyncEngine(path.join(dir, 'y.db'))
  t.after(() => e.close())
  e.executeBatch(h.TODOS)
  e.enableSync('todos')
  const mine = new Database(path.join(dir, 'y.db'))
  t.after(() => mine.close())
  syncline.checkShared(mine)
  mine.prepare('INSERT INTO todos(id, title) VALUES (1, ?)').run('still fine')
  assert.deepEqual(h.rows(e, 'SELECT title FROM todos'), [['still fine']])
})

test('without a loadable better-sqlite3, opening before any attach is a typed SqliteLibrary error that creates nothing', (t) => {
  const { execFileSync } = require('node:child_process')
  const dir = h.tmpdir(t)
  const file = path.join(dir, 'never.db')
  // a fresh process (nothing bound) in which better-sqlite3 cannot be loaded
  const script = `
const Module = require('node:module')
const load = Module._load
Module._load = function (request, ...rest) {
  if (request === 'better-sqlite3') throw new Error('Cannot find module better-sqlite3 (hidden by the test)')
  return load.call(this, request, ...rest)
}
const { SyncEngine } = require(${JSON.stringify(require.resolve('syncline'))})
const out = {}
try { new SyncEngine(${JSON.stringify(file)}) } catch (e) { out.code = e.code; out.message = e.message }
SyncEngine.open(${JSON.stringify(file)}).then(() => {}, (e) => { out.asyncCode = e.code }).finally(() => console.log(JSON.stringify(out)))
`
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }))
  assert.equal(out.code, 'SqliteLibrary', out.message)
  assert.match(out.message, /better-sqlite3 .*cannot be loaded.*hidden by the test/)
  assert.match(out.message, /SyncEngine\.attach/)
  assert.equal(out.asyncCode, 'SqliteLibrary')
  assert.ok(!fs.existsSync(file), 'nothing was created')
})
