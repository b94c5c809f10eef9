'use strict'
// The app's own better-sqlite3 connections in the SAME process as the engines (issue 13): a
// Database kept open and written through, connections closed and reopened between syncs,
// short-lived connections only. Each test ends with equal state hashes on all replicas.
//
// Only the constructor is used (no SyncEngine.attach): the engines then run on the SQLite
// library of better-sqlite3 itself. A build that bundles its own SQLite (two copies in one
// process) loses the writes made after the app's first close: these tests fail there.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const h = require('./helpers')
const { SyncEngine } = h.syncline
const { TOKEN, serverDb, startServer, requireCli } = require('./server')

const ids = (e) => h.rows(e, 'SELECT id FROM todos ORDER BY id').map((r) => r[0])

/** Two replicas on DIR/a.db and DIR/b.db; the schema is created by the app (better-sqlite3). */
function pair(t, dir, enable = {}) {
  const files = ['a', 'b'].map((n) => path.join(dir, `${n}.db`))
  for (const f of files) h.withDb(f, (db) => db.exec(h.TODOS))
  const [a, b] = files.map((f) => {
    const e = new SyncEngine(f, { watchIntervalMs: 20 })
    t.after(() => {
      try {
        e.close()
      } catch {}
    })
    e.enableSync('todos', enable)
    return e
  })
  return { a, b, files }
}

function pendingFor(e, peer) {
  const p = e.status().peers.find((x) => x.siteId === peer.siteId)
  return p ? p.pending : null
}

test('the app closes and reopens its better-sqlite3 handle four times between syncs: nothing is lost', async (t) => {
  const Database = h.betterSqlite3()
  const dir = h.tmpdir(t)
  const { a, b, files } = pair(t, dir)
  let handles = files.map((f) => new Database(f))
  t.after(() => handles.forEach((d) => d.open && d.close()))
  handles[0].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(0, 'first, on a')
  await h.syncBoth(a, b)
  for (let round = 1; round <= 4; round++) {
    for (const d of handles) d.close()
    handles = files.map((f) => new Database(f))
    handles[0].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(round * 10 + 1, `a round ${round}`)
    handles[1].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(round * 10 + 2, `b round ${round}`)
    await h.syncBoth(a, b)
  }
  const want = [0, 11, 12, 21, 22, 31, 32, 41, 42]
  assert.deepEqual(ids(a), want, 'replica a holds all 9 rows')
  assert.deepEqual(ids(b), want, 'replica b holds all 9 rows')
  // the app's own handles see the same
  for (const d of handles) assert.deepEqual(d.prepare('SELECT id FROM todos ORDER BY id').raw().all().flat(), want)
  // everything was stamped: nothing waits in the queue, nothing is pending
  assert.deepEqual(a.query('SELECT count(*) FROM _syncline_queue').rows, [[0]])
  assert.deepEqual(b.query('SELECT count(*) FROM _syncline_queue').rows, [[0]])
  assert.equal(pendingFor(a, b), 0)
  assert.equal(pendingFor(b, a), 0)
  h.assertConverged(a, b)
})

test('short-lived connections only; a cell edited on both replicas under manual records a conflict, resolve converges', async (t) => {
  const dir = h.tmpdir(t)
  const { a, b, files } = pair(t, dir, { strategy: 'manual' })
  const write = (i, sql, ...params) => h.withDb(files[i], (db) => db.prepare(sql).run(...params))
  write(0, 'INSERT INTO todos(id, title) VALUES (?, ?)', 1, 'milk')
  write(1, 'INSERT INTO todos(id, title) VALUES (?, ?)', 2, 'eggs')
  await h.syncBoth(a, b)
  assert.deepEqual(ids(a), [1, 2])
  assert.deepEqual(ids(b), [1, 2])
  write(0, 'UPDATE todos SET title = ? WHERE id = 1', 'oat milk')
  write(1, 'UPDATE todos SET title = ? WHERE id = 1', 'soy milk')
  write(1, 'INSERT INTO todos(id, title) VALUES (?, ?)', 3, 'bread')
  const r = await h.sync(b, a)
  assert.equal(r.conflicts, 1, JSON.stringify(r))
  const [c] = a.conflicts()
  assert.equal(c.column, 'title')
  assert.deepEqual(c.pk, [1])
  assert.equal(c.local.value, 'oat milk')
  assert.equal(c.remote.value, 'soy milk')
  assert.deepEqual(h.rows(a, 'SELECT title FROM todos WHERE id = 1'), [['oat milk']], 'manual keeps the local value')
  assert.notEqual(a.stateHash(), b.stateHash())
  a.resolve(c.id, { value: 'oat + soy milk' })
  await h.syncBoth(a, b)
  for (const f of files) {
    assert.deepEqual(
      h.withDb(f, (db) => db.prepare('SELECT id, title FROM todos ORDER BY id').raw().all()),
      [[1, 'oat + soy milk'], [2, 'eggs'], [3, 'bread']],
    )
  }
  assert.deepEqual(a.conflicts(), [])
  assert.deepEqual(b.conflicts(), [])
  h.assertConverged(a, b)
})

test('JavaScript resolvers decide the conflicts of in-process writes', async (t) => {
  const dir = h.tmpdir(t)
  const { a, b, files } = pair(t, dir, { strategy: 'custom' })
  const seen = []
  const longest = (c) => {
    seen.push(c)
    const [l, r] = [String(c.local.value), String(c.remote.value)]
    return l.length !== r.length ? (l.length > r.length ? 'local' : 'remote') : { value: [l, r].sort()[0] }
  }
  a.setResolver('todos', longest)
  b.setResolver('todos', longest)
  const Database = h.betterSqlite3()
  let appA = new Database(files[0])
  t.after(() => appA.close())
  appA.prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(1, 'x')
  await h.syncBoth(a, b)
  appA.close() // the app reopens its handle between syncs
  appA = new Database(files[0])
  appA.prepare('UPDATE todos SET title = ? WHERE id = 1').run('from a, longer')
  h.withDb(files[1], (db) => db.prepare('UPDATE todos SET title = ? WHERE id = 1').run('from b'))
  await h.syncBoth(a, b)
  assert.ok(seen.length >= 1)
  assert.equal(seen[0].column, 'title')
  assert.deepEqual(h.rows(b, 'SELECT title FROM todos'), [['from a, longer']])
  assert.deepEqual(appA.prepare('SELECT title FROM todos').raw().all(), [['from a, longer']])
  h.assertConverged(a, b)
})

test('subscribe sees the writes of the app in this process (kept-open and short-lived connections)', async (t) => {
  const dir = h.tmpdir(t)
  const { a, b, files } = pair(t, dir)
  const ev = h.collector(a)
  t.after(() => ev.sub.close())
  const Database = h.betterSqlite3()
  const app = new Database(files[0])
  t.after(() => app.close())
  app.prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(1, 'kept open')
  const ins = await ev.waitFor((e) => e.kind === 'local' && e.pk[0] === 1, 'insert event')
  assert.equal(ins.table, 'todos')
  assert.ok(ins.columns.includes('title'))
  assert.equal(ins.deleted, false)
  app.close()
  const before = new Set(ev.events)
  h.withDb(files[0], (db) => db.prepare('UPDATE todos SET done = 1 WHERE id = 1').run())
  const upd = await ev.waitFor((e) => !before.has(e) && e.kind === 'local' && e.pk[0] === 1, 'update event')
  assert.deepEqual(upd.columns, ['done'])
  h.withDb(files[0], (db) => db.prepare('DELETE FROM todos WHERE id = 1').run())
  const del = await ev.waitFor((e) => e.kind === 'local' && e.deleted, 'delete event')
  assert.deepEqual(del.pk, [1])
  assert.deepEqual(del.columns, [])
  h.withDb(files[0], (db) => db.prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(2, 'again'))
  await ev.waitFor((e) => e.kind === 'local' && e.pk[0] === 2, 'second insert event')
  await h.syncBoth(a, b)
  assert.deepEqual(ids(b), [2])
  h.assertConverged(a, b)
})

test('network sync of in-process writes through a server, reopening the app handle between syncs', async (t) => {
  requireCli()
  const Database = h.betterSqlite3()
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const { a, b, files } = pair(t, dir)
  let handles = []
  t.after(() => handles.forEach((d) => d.open && d.close()))
  for (let round = 1; round <= 3; round++) {
    handles.forEach((d) => d.close())
    handles = files.map((f) => new Database(f))
    handles[0].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(round * 10 + 1, 'a')
    handles[1].prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(round * 10 + 2, 'b')
    const ra = await a.sync(server.url, { token: TOKEN })
    assert.ok(ra.pushed > 0, JSON.stringify(ra))
    await b.sync(server.url, { token: TOKEN })
    await a.sync(server.url, { token: TOKEN })
  }
  const want = [11, 12, 21, 22, 31, 32]
  assert.deepEqual(ids(a), want)
  assert.deepEqual(ids(b), want)
  const server2 = new SyncEngine(server.db)
  t.after(() => server2.close())
  assert.deepEqual(ids(server2), want)
  h.assertConverged(a, b, server2)
})
