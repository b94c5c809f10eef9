'use strict'
// SyncEngine.attach with node:sqlite (Node >= 22.5; loadExtension since 22.13 / 23.5): the
// engines of this process run on Node's own SQLite. Its own file, so its own process: nothing
// was bound to better-sqlite3's SQLite before.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')
const syncline = h.syncline
const { SyncEngine } = syncline

let DatabaseSync = null
let why = null
try {
  ;({ DatabaseSync } = require('node:sqlite'))
  if (typeof DatabaseSync.prototype.loadExtension !== 'function') why = `node:sqlite of Node ${process.version} cannot load extensions`
} catch (e) {
  why = `node:sqlite is not available in Node ${process.version} (it needs Node >= 22.5; ${e.code || e.message})`
}
if (why) console.log(`skipping the node:sqlite tests: ${why}`)

test('attach(DatabaseSync): in-process writes through node:sqlite sync between replicas', { skip: why || false }, async (t) => {
  const dir = h.tmpdir(t)
  const files = ['a', 'b'].map((n) => path.join(dir, `${n}.db`))
  // without allowExtension the connection refuses extensions: a typed error that says what to do
  const closed = new DatabaseSync(files[0])
  closed.exec(h.TODOS)
  h.throwsCode(() => SyncEngine.attach(closed), 'InvalidArgument', /allowExtension/)
  closed.close()
  assert.equal(syncline.sqliteLibrary(), null)
  const dbs = files.map((f) => new DatabaseSync(f, { allowExtension: true }))
  t.after(() => dbs.forEach((d) => d.isOpen !== false && d.close()))
  const [a, b] = dbs.map((d) => {
    d.exec(h.TODOS)
    const e = SyncEngine.attach(d)
    t.after(() => e.close())
    e.enableSync('todos', { strategy: 'manual' })
    return e
  })
  const version = dbs[0].prepare('SELECT sqlite_version() AS v').get().v
  assert.equal(syncline.sqliteLibrary().version, version)
  syncline.checkShared(dbs[1])
  for (let i = 1; i <= 3; i++) {
    dbs[0].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(i, `a${i}`)
    dbs[1].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(10 + i, `b${i}`)
    await h.syncBoth(a, b)
  }
  dbs[0].prepare('UPDATE todos SET title = ? WHERE id = 1').run('edited on a')
  dbs[1].prepare('UPDATE todos SET title = ? WHERE id = 1').run('edited on b')
  const r = await h.sync(b, a)
  assert.equal(r.conflicts, 1)
  a.resolve(a.conflicts()[0].id, 'remote')
  await h.syncBoth(a, b)
  for (const d of dbs) {
    assert.deepEqual(d.prepare('SELECT count(*) AS n FROM todos').get().n, 6)
    assert.deepEqual(d.prepare('SELECT title FROM todos WHERE id = 1').get().title, 'edited on b')
  }
  h.assertConverged(a, b)
  // better-sqlite3 next to it is a second SQLite library in this process: refused
  const Database = h.betterSqlite3()
  const other = new Database(path.join(dir, 'c.db'))
  t.after(() => other.close())
  h.throwsCode(() => SyncEngine.attach(other), 'SqliteLibrary', /second SQLite library/)
  assert.ok(fs.existsSync(files[0]))
})
