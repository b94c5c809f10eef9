'use strict'
// Network sync against a real `syncline serve` (the Rust CLI from SYNCLINE_CLI) on 127.0.0.1,
// started and killed by each test.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')
const { SyncEngine } = h.syncline

const { CLI, TOKEN, requireCli, freePort, serverDb, startServer, waitUntil, serverRows } = require('./server')

const titles = (e) => h.rows(e, 'SELECT id, title FROM todos ORDER BY id')

test('the Rust CLI for the server is available (SYNCLINE_CLI)', () => {
  requireCli()
})

test('two engines converge through the server', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'from a'), (2, 'also a')")
  b.execute("INSERT INTO todos(id, title, done) VALUES (3, 'from b', 1)")
  const first = await a.sync(server.url, { token: TOKEN })
  assert.ok(first.pushed > 0 && first.serverApplied > 0 && first.roundTrips >= 2, JSON.stringify(first))
  const rb = await b.sync(server.url, { token: TOKEN })
  assert.ok(rb.applied > 0)
  const ra = await a.sync(server.url, { token: TOKEN })
  assert.ok(ra.applied > 0)
  assert.deepEqual(titles(a), [
    [1, 'from a'],
    [2, 'also a'],
    [3, 'from b'],
  ])
  assert.deepEqual(h.rows(a), h.rows(b))
  assert.equal(a.stateHash(), b.stateHash())
  // both at once (the calls run off the JS thread)
  a.execute("UPDATE todos SET title = 'edited by a' WHERE id = 3")
  b.execute('UPDATE todos SET done = 0 WHERE id = 3')
  await Promise.all([a.sync(server.url, { token: TOKEN }), b.sync(server.url, { token: TOKEN })])
  await a.sync(server.url, { token: TOKEN })
  await b.sync(server.url, { token: TOKEN })
  assert.deepEqual(h.rows(a, 'SELECT id, title, done FROM todos WHERE id = 3'), [[3, 'edited by a', 0]])
  assert.equal(a.stateHash(), b.stateHash())
  const again = await b.sync(server.url, { token: TOKEN })
  assert.deepEqual([again.pushed, again.applied, again.roundTrips], [0, 0, 2])
})

test('a wrong token is refused with code Auth and changes nothing', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'secret')")
  const before = a.stateHash()
  await h.rejectsCode(a.sync(server.url, { token: 'not-the-token' }), 'Auth')
  await h.rejectsCode(a.sync(server.url), 'Auth')
  assert.equal(a.stateHash(), before)
  assert.deepEqual(serverRows(server), [])
  const c = h.replica(t, dir, 'c')
  const r = await c.sync(server.url, { token: TOKEN })
  assert.equal(r.applied, 0)
  assert.deepEqual(h.rows(c), [])
})

test('an unreachable server is code Network; a bad URL InvalidArgument', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'offline')")
  const before = a.stateHash()
  await h.rejectsCode(a.sync(`http://127.0.0.1:${await freePort()}`, { token: TOKEN }), 'Network')
  assert.equal(a.stateHash(), before)
  await h.rejectsCode(a.sync('ftp://example.invalid'), 'InvalidArgument')
  h.throwsCode(() => a.startSync('http://127.0.0.1:1', { timeoutMs: -1 }), 'InvalidArgument', /timeoutMs/)
})

test('the background loop converges and reports its status', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'loop a')")
  const handle = a.startSync(server.url, { token: TOKEN, intervalMs: 200 })
  t.after(() => handle.stop())
  await waitUntil(() => handle.status().syncs >= 1, 'a first background pass')
  b.execute("INSERT INTO todos(id, title) VALUES (2, 'from b')")
  await b.sync(server.url, { token: TOKEN })
  await waitUntil(() => titles(a).length === 2, "b's row to reach a by the loop")
  a.execute("INSERT INTO todos(id, title) VALUES (3, 'later a')")
  handle.syncNow()
  await waitUntil(() => handle.status().pending === 0 && serverRows(server).length === 3, "a's new row to reach the server")
  const st = handle.status()
  assert.equal(st.running, true)
  assert.ok(st.syncs >= 2)
  assert.equal(st.failures, 0)
  assert.equal(st.lastError, undefined)
  assert.equal(typeof st.lastSuccess, 'number')
  assert.ok(Math.abs(st.lastSuccess - Date.now()) < 60_000)
  assert.equal(typeof st.lastReport.roundTrips, 'number')
  await handle.stop()
  assert.equal(handle.status().running, false)
  await handle.stop() // idempotent
  await b.sync(server.url, { token: TOKEN })
  assert.equal(a.stateHash(), b.stateHash())
})

test('the background loop reports failures and recovers when the server appears', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'waiting')")
  const port = await freePort()
  const handle = a.startSync(`http://127.0.0.1:${port}`, { token: TOKEN, intervalMs: 200, maxBackoffMs: 300 })
  t.after(() => handle.stop())
  await waitUntil(() => handle.status().failures >= 2, 'two failed passes')
  let st = handle.status()
  assert.equal(st.lastError.code, 'Network')
  assert.equal(typeof st.lastError.message, 'string')
  assert.equal(st.lastSuccess, undefined)
  assert.equal(st.syncs, 0)
  assert.ok(st.pending > 0)
  const server = await startServer(t, serverDb(dir, 'late'), port)
  await waitUntil(() => handle.status().syncs >= 1, 'a pass after the server started')
  st = handle.status()
  assert.equal(st.lastError, undefined)
  assert.equal(st.failures, 0)
  await waitUntil(() => handle.status().pending === 0, 'nothing pending')
  await handle.stop()
  assert.deepEqual(serverRows(server), [[1, 'waiting']])
})

test('a background loop with a wrong token reports code Auth', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  const handle = a.startSync(server.url, { token: 'wrong', intervalMs: 200, maxBackoffMs: 300 })
  t.after(() => handle.stop())
  await waitUntil(() => handle.status().failures >= 1, 'a failed pass')
  assert.equal(handle.status().lastError.code, 'Auth')
})

test("live mode sees another client's change without polling", async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  // an hour between polls: only the live notice can bring the change in time
  const handle = b.startSync(server.url, { token: TOKEN, intervalMs: 3_600_000, live: true })
  t.after(() => handle.stop())
  await waitUntil(() => handle.status().syncs >= 1, "b's first pass")
  await h.sleep(500) // let the WebSocket connect
  const syncs = handle.status().syncs
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'live!')")
  await a.sync(server.url, { token: TOKEN })
  await waitUntil(() => titles(b).length === 1, "the live notice to bring a's row to b", 10_000)
  assert.deepEqual(titles(b), [[1, 'live!']])
  // the pass that imported the row is counted just after its commit
  await waitUntil(() => handle.status().syncs > syncs, 'the live pass to be counted')
  // and b's own write is pushed at once
  b.execute("INSERT INTO todos(id, title) VALUES (2, 'pushed live')")
  await waitUntil(() => serverRows(server).length === 2, "b's write to reach the server", 10_000)
  await handle.stop()
  await a.sync(server.url, { token: TOKEN })
  assert.equal(a.stateHash(), b.stateHash())
})

test('JavaScript resolvers: sync() works with one registered; startSync() refuses them', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const resolver = (c) => ({ value: [String(c.local.value), String(c.remote.value)].sort().join('+') })
  const a = h.replica(t, dir, 'a', { strategy: 'custom' })
  const b = h.replica(t, dir, 'b', { strategy: 'custom' })
  a.setResolver('todos', resolver)
  b.setResolver('todos', resolver)
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'base')")
  await a.sync(server.url, { token: TOKEN })
  await b.sync(server.url, { token: TOKEN })
  b.execute("UPDATE todos SET title = 'from b' WHERE id = 1")
  const pending = b.sync(server.url, { token: TOKEN })
  // while a sync that may call a JS resolver is in flight, synchronous calls refuse to block
  h.throwsCode(() => b.status(), 'Reentrant')
  await pending
  await a.sync(server.url, { token: TOKEN })
  assert.deepEqual(titles(a), [[1, 'from b']])
  assert.equal(a.stateHash(), b.stateHash())
  h.throwsCode(() => a.startSync(server.url, { token: TOKEN }), 'InvalidArgument', /resolver/)
  a.clearResolver('todos')
  const handle = a.startSync(server.url, { token: TOKEN, intervalMs: 200 })
  t.after(() => handle.stop())
  h.throwsCode(() => a.setResolver('todos', resolver), 'InvalidArgument', /background sync/)
  await handle.stop()
  a.setResolver('todos', resolver)
})

test('close() stops the background syncs of the engine', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  a.execute("INSERT INTO todos(id, title) VALUES (1, 'x')")
  const handle = a.startSync(server.url, { token: TOKEN, intervalMs: 100 })
  await waitUntil(() => handle.status().syncs >= 1, 'a pass')
  a.close()
  h.throwsCode(() => handle.status(), 'Closed') // the stopped loop counts pending changes with the engine
  await handle.stop()
  await h.rejectsCode(a.sync(server.url, { token: TOKEN }), 'Closed')
  assert.deepEqual(serverRows(server), [[1, 'x']])
})

test('zero intervals, backoffs, timeouts and page sizes are refused by the core (SyncOptions::validate)', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  // the core's own words, one per option: the binding passes zero through and does not decide
  for (const [option, name] of [
    ['intervalMs', 'interval'],
    ['maxBackoffMs', 'max_backoff'],
    ['timeoutMs', 'timeout'],
    ['pageRows', 'page_rows'],
  ]) {
    h.throwsCode(
      () => a.startSync('http://127.0.0.1:1', { [option]: 0 }),
      'InvalidArgument',
      new RegExp(`^sync option ${name} must be greater than zero$`),
    )
  }
  const handle = a.startSync('http://127.0.0.1:1', { intervalMs: 1, maxBackoffMs: 1, timeoutMs: 1, pageRows: 1 })
  await handle.stop()
})

function fillRows(e, n) {
  e.execute(
    'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) ' +
      "INSERT INTO todos(id, title) SELECT i, 'row ' || i FROM c",
    [n]
  )
}

test('sync onProgress gets the changes pulled so far, all before the promise settles', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  fillRows(a, 12000) // more than two pages of the default 5000 rows
  await a.sync(server.url, { token: TOKEN })
  const calls = []
  const report = await b.sync(server.url, { token: TOKEN, onProgress: (pulled, total) => calls.push([pulled, total]) })
  assert.ok(calls.length >= 3, JSON.stringify(calls))
  const pulled = calls.map(([p]) => p)
  assert.deepEqual(pulled, [...pulled].sort((x, y) => x - y))
  assert.ok(calls.every(([, total]) => total === 0), 'the total is not known: 0')
  assert.equal(calls.at(-1)[0], report.pulled)
  assert.equal(a.stateHash(), b.stateHash())
  const boom = new Error('stop')
  await assert.rejects(b.sync(server.url, { token: TOKEN, onProgress: () => { throw boom } }), (e) => e === boom)
  await h.rejectsCode(b.sync(server.url, { token: TOKEN, onProgress: 5 }), 'InvalidArgument')
})

test('SyncEngine.clone starts a new device from the server snapshot', async (t) => {
  const dir = h.tmpdir(t)
  const server = await startServer(t, serverDb(dir))
  const a = h.replica(t, dir, 'a')
  fillRows(a, 3000)
  await a.sync(server.url, { token: TOKEN })
  const file = path.join(dir, 'device.db')
  const calls = []
  const size = await SyncEngine.clone(server.url, file, { token: TOKEN, onProgress: (got, total) => calls.push([got, total]) })
  assert.equal(size, fs.statSync(file).size)
  const got = calls.map(([g]) => g)
  assert.deepEqual(got, [...got].sort((x, y) => x - y))
  assert.equal(calls.at(-1)[0], size)
  assert.ok(calls.every(([, total]) => total === 0 || total === size), JSON.stringify(calls.slice(-3)))
  const device = new SyncEngine(file)
  t.after(() => device.close())
  assert.notEqual(device.siteId, a.siteId)
  assert.deepEqual(h.rows(device), h.rows(a))
  // it catches up with only what changed since
  a.execute("UPDATE todos SET title = 'after the snapshot' WHERE id = 1")
  await a.sync(server.url, { token: TOKEN })
  const report = await device.sync(server.url, { token: TOKEN })
  assert.ok(report.pulled > 0 && report.pulled < 10, JSON.stringify(report))
  assert.equal(device.stateHash(), a.stateHash())
  // refusals: an existing file, a wrong token (nothing left behind), no server, a bad callback
  await h.rejectsCode(SyncEngine.clone(server.url, file, { token: TOKEN }), 'InvalidArgument')
  const other = path.join(dir, 'other.db')
  await h.rejectsCode(SyncEngine.clone(server.url, other, { token: 'wrong' }), 'Auth')
  await h.rejectsCode(SyncEngine.clone(`http://127.0.0.1:${await freePort()}`, other), 'Network')
  await h.rejectsCode(SyncEngine.clone(server.url, other, { token: TOKEN, onProgress: 'x' }), 'InvalidArgument')
  assert.ok(!fs.existsSync(other))
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('download')), [])
})
