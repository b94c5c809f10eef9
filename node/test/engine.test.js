'use strict'
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')
const { SyncEngine, uuid7, errorCodes, errorKinds, defaultOptions, defaultSyncOptions } = h.syncline

const PACKAGE = path.dirname(require.resolve('syncline'))

test('the package under test is the one expected', () => {
  const where = fs.realpathSync(require.resolve('syncline'))
  const expected = process.env.SYNCLINE_EXPECT_INSTALLED
  if (expected) assert.ok(where.startsWith(fs.realpathSync(expected) + path.sep), `${where} is not under ${expected}`)
  assert.equal(typeof SyncEngine, 'function')
})

test('uuid7 and errorCodes', () => {
  const a = uuid7()
  const b = uuid7()
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.notEqual(a, b)
  const codes = errorCodes()
  for (const c of ['InvalidBundle', 'SchemaMismatch', 'UnknownTable', 'Resolver', 'InvalidArgument', 'Closed', 'Sqlite', 'Reentrant']) {
    assert.ok(codes.includes(c), c)
  }
})

test("the error codes of index.d.ts and of the README are the core's list (ErrorKind::ALL)", () => {
  const kinds = errorKinds()
  const codes = errorCodes()
  assert.deepEqual(kinds.map((k) => k.code), codes)
  assert.ok(codes.includes('SqliteLibrary') && codes.includes('Corrupt'))
  for (const k of kinds) assert.ok(k.description.length > 10, k.code)
  // the TypeScript union ErrorCode, in the installed declarations
  const dts = fs.readFileSync(path.join(PACKAGE, 'native.d.ts'), 'utf8')
  const union = dts.match(/export type ErrorCode =([^]*?)\n\n/)
  assert.ok(union, 'native.d.ts declares ErrorCode')
  assert.deepEqual([...union[1].matchAll(/'(\w+)'/g)].map((m) => m[1]), codes)
  // the README's table of codes: every kind with the core's description, in the core's order
  const readme = fs.readFileSync(path.join(PACKAGE, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('### Errors'), readme.indexOf('###', readme.indexOf('### Errors') + 3))
  const rows = [...section.matchAll(/^\| `(\w+)` \| (.+) \|$/gm)].map((m) => ({ code: m[1], description: m[2] }))
  assert.deepEqual(rows, kinds)
})

test("the documented defaults are the core's (Options::default, SyncOptions::default)", () => {
  const engine = defaultOptions()
  const loop = defaultSyncOptions()
  assert.deepEqual(Object.keys(engine).sort(), ['busyTimeoutMs', 'maxDriftMs', 'watchIntervalMs'])
  assert.deepEqual(Object.keys(loop).sort(), ['intervalMs', 'live', 'maxBackoffMs', 'pageRows', 'timeoutMs'])
  const dts = fs.readFileSync(path.join(PACKAGE, 'native.d.ts'), 'utf8')
  for (const [iface, defaults] of [['EngineOptions', engine], ['StartSyncOptions', loop]]) {
    const body = dts.match(new RegExp(`export interface ${iface} \\{([^]*?)\\n\\}`))[1]
    const documented = Object.fromEntries(
      [...body.matchAll(/\(default (\w+)\)[^]*?\*\/\s*(\w+)\?:/g)].map((m) => [m[2], m[1]]),
    )
    assert.deepEqual(documented, Object.fromEntries(Object.entries(defaults).map(([k, v]) => [k, String(v)])), iface)
  }
  const readme = fs.readFileSync(path.join(PACKAGE, 'README.md'), 'utf8')
  const said = (name) => {
    const m = readme.match(new RegExp(`\`${name}\`,? \\(?default ([\\d ]+)`))
    assert.ok(m, `the README gives the default of ${name}`)
    return Number(m[1].replace(/ /g, ''))
  }
  assert.equal(said('intervalMs'), loop.intervalMs)
  assert.equal(said('maxBackoffMs'), loop.maxBackoffMs)
  assert.equal(said('watchIntervalMs'), engine.watchIntervalMs)
})

test('constructor, async open, options and path', async (t) => {
  const dir = h.tmpdir(t)
  const file = path.join(dir, 'x.db')
  const e = new SyncEngine(file, { maxDriftMs: 1000, busyTimeoutMs: 500, watchIntervalMs: 10 })
  assert.equal(e.path, file)
  assert.match(e.siteId, /^[0-9a-f]{32}$/)
  e.close()
  const again = await SyncEngine.open(file)
  t.after(() => again.close())
  assert.ok(again instanceof SyncEngine)
  assert.equal(again.siteId.length, 32)
  h.throwsCode(() => new SyncEngine(path.join(dir, 'y.db'), { busyTimeoutMs: -1 }), 'InvalidArgument', /busyTimeoutMs/)
  await h.rejectsCode(SyncEngine.open(path.join(dir, 'y.db'), { maxDriftMs: -5 }), 'InvalidArgument')
  await h.rejectsCode(SyncEngine.open(path.join(dir, 'no', 'such', 'dir.db')), 'Sqlite')
  h.throwsCode(() => new SyncEngine(path.join(dir, 'no', 'such', 'dir.db')), 'Sqlite')
})

test('site ids: setSiteId, resetSiteId, bad hex', (t) => {
  const dir = h.tmpdir(t)
  const e = h.replica(t, dir, 'a')
  const chosen = '00112233445566778899aabbccddeeff'
  assert.equal(e.setSiteId(chosen), chosen)
  assert.equal(e.siteId, chosen)
  const fresh = e.resetSiteId()
  assert.match(fresh, /^[0-9a-f]{32}$/)
  assert.notEqual(fresh, chosen)
  assert.equal(e.siteId, fresh)
  h.throwsCode(() => e.setSiteId('xyz'), 'InvalidArgument')
  h.throwsCode(() => e.setSiteId('0011'), 'InvalidArgument')
})

test('setManualClock fixes the stamps and null restores the system clock', (t) => {
  const dir = h.tmpdir(t)
  const e = h.replica(t, dir, 'a')
  const ms = Date.now() + 60_000
  e.setManualClock(ms)
  e.execute('INSERT INTO todos(id, title) VALUES (1, ?)', ['x'])
  assert.equal(e.status().hlc >> 16n, BigInt(ms))
  e.setManualClock(null)
  e.execute('UPDATE todos SET title = ? WHERE id = 1', ['y'])
  assert.equal(e.status().hlc >> 16n, BigInt(ms), 'never goes back: counter bumps on the same ms')
  h.throwsCode(() => e.setManualClock(-1), 'InvalidArgument')
})

test('enableSync, disableSync, setStrategy and their errors', (t) => {
  const dir = h.tmpdir(t)
  const e = new SyncEngine(path.join(dir, 'a.db'))
  t.after(() => e.close())
  e.executeBatch(h.TODOS)
  e.executeBatch('CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT); CREATE TABLE nopk(a TEXT)')
  h.throwsCode(() => e.enableSync('missing'), 'UnknownTable')
  h.throwsCode(() => e.enableSync('todos', { strategy: 'bogus' }), 'InvalidArgument', /strategy/)
  h.throwsCode(() => e.enableSync('auto'), 'SchemaMismatch')
  h.throwsCode(() => e.enableSync('nopk'), 'SchemaMismatch')
  e.enableSync('auto', { allowAutoincrement: true })
  e.enableSync('todos')
  e.enableSync('todos', { strategy: 'manual' })
  assert.deepEqual(
    e.status().tables.map((x) => [x.name, x.strategy]).sort(),
    [['auto', 'lww'], ['todos', 'manual']],
  )
  for (const s of ['lww', 'manual', 'prefer_local', 'prefer_remote', 'custom']) {
    e.setStrategy('todos', s)
    assert.equal(e.status().tables.find((x) => x.name === 'todos').strategy, s)
  }
  h.throwsCode(() => e.setStrategy('todos', 'nope'), 'InvalidArgument')
  h.throwsCode(() => e.setStrategy('missing', 'lww'), 'UnknownTable')
  e.disableSync('auto')
  assert.deepEqual(e.status().tables.map((x) => x.name), ['todos'])
  h.throwsCode(() => e.disableSync('auto'), 'UnknownTable')
})

test('execute, executeBatch, query', (t) => {
  const dir = h.tmpdir(t)
  const e = h.replica(t, dir, 'a')
  assert.equal(e.execute('INSERT INTO todos(id, title) VALUES (?, ?), (?, ?)', [1, 'a', 2, 'b']), 2)
  assert.equal(e.execute('UPDATE todos SET done = 1'), 2)
  const q = e.query('SELECT id, title, done FROM todos WHERE id > ? ORDER BY id', [0])
  assert.deepEqual(q.columns, ['id', 'title', 'done'])
  assert.deepEqual(q.rows, [[1, 'a', 1], [2, 'b', 1]])
  h.throwsCode(() => e.execute('INSERT INTO nowhere VALUES (1)'), 'Sqlite', /nowhere/)
  h.throwsCode(() => e.query('SELEC 1'), 'Sqlite')
  h.throwsCode(() => e.executeBatch('CREATE TABLE'), 'Sqlite')
  h.throwsCode(() => e.execute('SELECT ?', [true]), 'InvalidArgument', /boolean/)
  h.throwsCode(() => e.execute('SELECT ?', [{}]), 'InvalidArgument')
  h.throwsCode(() => e.execute('SELECT ?', [2n ** 64n]), 'InvalidArgument', /64-bit/)
})

test('values: integers (number when safe, bigint otherwise), reals, text, blobs, null', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  a.executeBatch('CREATE TABLE vals(id INTEGER PRIMARY KEY, v)')
  b.executeBatch('CREATE TABLE vals(id INTEGER PRIMARY KEY, v)')
  a.enableSync('vals')
  b.enableSync('vals')
  const MAX = 2n ** 63n - 1n
  const MIN = -(2n ** 63n)
  const cases = [
    [1, 42, 42],
    [2, 2n ** 53n + 1n, 2n ** 53n + 1n],
    [3, MAX, MAX],
    [4, MIN, MIN],
    [5, 7n, 7], // a bigint parameter in the safe range comes back as a number
    [6, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    [7, -Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER],
    [8, 1.5, 1.5],
    [9, 'héllo ✓', 'héllo ✓'],
    [10, Buffer.from([0, 1, 2, 255]), Buffer.from([0, 1, 2, 255])],
    [11, new Uint8Array([9, 8, 7]), Buffer.from([9, 8, 7])],
    [12, null, null],
    [13, undefined, null],
    [14, '', ''],
    [15, Buffer.alloc(0), Buffer.alloc(0)],
    [16, -(2n ** 53n), -(2n ** 53n)],
  ]
  for (const [id, v] of cases) a.execute('INSERT INTO vals(id, v) VALUES (?, ?)', [id, v])
  const typeOf = a.query('SELECT typeof(v) FROM vals WHERE id = 2').rows[0][0]
  assert.equal(typeOf, 'integer')
  assert.equal(a.query('SELECT typeof(v) FROM vals WHERE id = 8').rows[0][0], 'real')
  await h.sync(a, b)
  for (const e of [a, b]) {
    const got = new Map(e.query('SELECT id, v FROM vals').rows.map(([id, v]) => [id, v]))
    for (const [id, , want] of cases) {
      assert.deepEqual(got.get(id), want, `id ${id} on ${e === a ? 'a' : 'b'}`)
      if (typeof want === 'bigint') assert.equal(typeof got.get(id), 'bigint')
      if (Buffer.isBuffer(want)) assert.ok(Buffer.isBuffer(got.get(id)))
    }
  }
  // big integers as parameters find their rows exactly (no rounding through doubles)
  assert.deepEqual(b.query('SELECT id FROM vals WHERE v = ?', [2n ** 53n + 1n]).rows, [[2]])
  assert.deepEqual(b.query('SELECT id FROM vals WHERE v = ?', [MAX]).rows, [[3]])
  // a bigint primary key
  a.executeBatch('CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT)')
  b.executeBatch('CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT)')
  a.enableSync('big')
  b.enableSync('big')
  a.execute('INSERT INTO big VALUES (?, ?)', [MAX - 1n, 'x'])
  await h.sync(a, b)
  assert.deepEqual(b.query('SELECT id, v FROM big').rows, [[MAX - 1n, 'x']])
})

test('bundles: generate (plain and compressed), write to a file, import bytes and paths', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  const c = h.replica(t, dir, 'c')
  a.execute('INSERT INTO todos(id, title, body) VALUES (1, ?, ?), (2, ?, NULL)', ['milk', Buffer.from('x'), 'eggs'])
  const plain = await a.generateBundle()
  const packed = await a.generateBundle({ compress: true, peer: b.siteId })
  assert.ok(Buffer.isBuffer(plain) && Buffer.isBuffer(packed))
  assert.deepEqual(await a.generateBundle(), plain, 'equal inputs give identical bundles')
  const r = await b.importBundle(packed)
  assert.equal(r.sender, a.siteId)
  assert.equal(r.rows, 2)
  assert.ok(r.applied > 0)
  assert.equal(r.conflicts, 0)
  assert.equal(r.rejected, 0)
  const again = await b.importBundle(new Uint8Array(plain))
  assert.equal(again.applied, 0)
  assert.ok(again.alreadyKnown > 0)
  assert.deepEqual(h.rows(b), h.rows(a))
  const file = path.join(dir, 'a.bundle')
  const stats = await a.writeBundle(file, { peer: c.siteId })
  assert.equal(stats.rows, 2)
  assert.equal(stats.bytes, fs.statSync(file).size)
  assert.ok(stats.changes > 0)
  const rc = await c.importBundle(file)
  assert.equal(rc.rows, 2)
  assert.deepEqual(h.rows(c), h.rows(a))
  const zipped = path.join(dir, 'a.z.bundle')
  const zstats = await a.writeBundle(zipped, { compress: true })
  assert.deepEqual(fs.readFileSync(zipped), await a.generateBundle({ compress: true }), 'the file holds the compressed bundle')
  assert.equal(zstats.bytes, fs.statSync(zipped).size)
  assert.notEqual(zstats.bytes, stats.bytes, 'compressed file differs in size from the plain one')
  assert.equal((await c.importBundle(zipped)).applied, 0)
  await h.rejectsCode(c.importBundle(path.join(dir, 'missing.bundle')), 'Io')
  await h.rejectsCode(a.generateBundle({ peer: 'not-hex' }), 'InvalidArgument')
  await h.rejectsCode(a.writeBundle(path.join(dir, 'x.bundle'), { peer: '12' }), 'InvalidArgument')
  await h.rejectsCode(a.writeBundle(path.join(dir, 'no', 'dir', 'x.bundle')), 'Io')
  await h.rejectsCode(c.importBundle(42), 'InvalidArgument')
  // status: b knows a as a peer with nothing pending once in sync
  const st = b.status()
  assert.equal(st.siteId, b.siteId)
  assert.equal(typeof st.hlc, 'bigint')
  assert.deepEqual(st.tables, [{ name: 'todos', strategy: 'lww', rows: 2 }])
  assert.ok(st.versionVector.some((v) => v.site === a.siteId && typeof v.hlc === 'bigint'))
  const peer = st.peers.find((p) => p.siteId === a.siteId)
  assert.ok(peer)
  assert.equal(typeof peer.pending, 'number')
  assert.equal(st.unresolvedConflicts, 0)
  assert.equal(st.rejected, 0)
  assert.equal(st.quarantined, 0)
  assert.equal(r.quarantined, 0)
  assert.equal(r.released, 0)
})

test('a bundle stamped ahead of the clock is quarantined, then applied once the clock caught up', async (t) => {
  const dir = h.tmpdir(t)
  const now = Date.now() // stamps never go back: start from the real clock
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b', {}, { watchIntervalMs: 20, maxDriftMs: 1000 })
  b.setManualClock(now)
  a.setManualClock(now + 60_000) // beyond b's drift, inside the 24 h quarantine horizon
  a.execute('INSERT INTO todos(id, title) VALUES (1, ?)', ['from the future'])
  const hlc = b.status().hlc
  const r = await h.sync(a, b) // no ClockDrift error: the row waits
  assert.ok(r.quarantined > 0)
  assert.deepEqual([r.quarantined, r.applied, r.released], [4, 0, 0])
  let st = b.status()
  assert.equal(st.quarantined, 1)
  assert.equal(st.hlc, hlc, 'a quarantined stamp does not move the clock')
  assert.deepEqual(h.rows(b), [])
  b.setManualClock(now + 120_000)
  const later = await h.sync(a, b)
  assert.ok(later.released > 0)
  assert.deepEqual([later.released, later.quarantined], [4, 0])
  st = b.status()
  assert.equal(st.quarantined, 0)
  assert.deepEqual(h.rows(b), h.rows(a))
  assert.equal(h.rows(b).length, 1)
})

test('a bundle stamped years ahead is rejected, not quarantined', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b', {}, { watchIntervalMs: 20, maxDriftMs: 1000 })
  a.setManualClock(4_000_000_000_000)
  a.execute('INSERT INTO todos(id, title) VALUES (1, ?)', ['from 2096'])
  const r = await h.sync(a, b)
  assert.deepEqual([r.applied, r.quarantined, r.rejected], [0, 0, 4])
  const st = b.status()
  assert.deepEqual([st.quarantined, st.rejected], [0, 1])
  assert.deepEqual(h.rows(b), [])
})

test('stateHash: equal for converged replicas whatever their bookkeeping, changes with data and stamps', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  const empty = a.stateHash()
  assert.match(empty, /^[0-9a-f]{64}$/)
  assert.equal(b.stateHash(), empty, 'two empty replicas')
  assert.equal(a.stateHash(), empty, 'reading it changes nothing')
  a.execute('INSERT INTO todos(id, title, done, body) VALUES (1, ?, ?, ?), (2, ?, 0, NULL)', ['milk', 2n ** 60n, Buffer.from([0, 255]), 'eggs'])
  const written = a.stateHash()
  assert.notEqual(written, empty)
  assert.notEqual(b.stateHash(), written)
  await h.sync(a, b)
  assert.equal(b.stateHash(), written, 'b holds what a holds')
  await h.sync(b, a)
  assert.equal(a.stateHash(), written, 'a round trip (peers, version vectors) does not change it')
  // equal rows written independently (other site, other stamps) are not the same state
  const c = h.replica(t, dir, 'c')
  c.execute('INSERT INTO todos(id, title, done, body) VALUES (1, ?, ?, ?), (2, ?, 0, NULL)', ['milk', 2n ** 60n, Buffer.from([0, 255]), 'eggs'])
  assert.deepEqual(h.rows(c), h.rows(a))
  assert.notEqual(c.stateHash(), written)
  // an update moves it, and the replicas converge again after a sync
  a.execute('UPDATE todos SET title = ? WHERE id = 1', ['oat milk'])
  const restamped = a.stateHash()
  assert.notEqual(restamped, written)
  await h.sync(a, b)
  assert.equal(b.stateHash(), restamped)
  // a delete changes it too; an unsynced table does not count
  b.execute('DELETE FROM todos WHERE id = 2')
  const deleted = b.stateHash()
  assert.notEqual(deleted, restamped)
  b.executeBatch('CREATE TABLE local_only(x); INSERT INTO local_only VALUES (1)')
  assert.equal(b.stateHash(), deleted)
  await h.sync(b, a)
  assert.equal(a.stateHash(), deleted)
})

test('a corrupt bundle fails with InvalidBundle and leaves the database unchanged', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  b.execute('INSERT INTO todos(id, title) VALUES (9, ?)', ['mine'])
  a.execute('INSERT INTO todos(id, title) VALUES (1, ?), (2, ?)', ['milk', 'eggs'])
  const good = await a.generateBundle()
  const before = JSON.stringify(h.rows(b)) + JSON.stringify(b.status(), (_, v) => (typeof v === 'bigint' ? String(v) : v))
  const bad = [
    Buffer.from('not a bundle at all'),
    good.subarray(0, good.length - 1),
    good.subarray(0, 20),
    Buffer.concat([good, Buffer.from([0])]),
    Buffer.alloc(0),
  ]
  for (const i of [0, 9, Math.floor(good.length / 2), good.length - 1]) {
    const flipped = Buffer.from(good)
    flipped[i] ^= 0x40
    bad.push(flipped)
  }
  const hash = b.stateHash()
  for (const bytes of bad) await h.rejectsCode(b.importBundle(bytes), 'InvalidBundle')
  const after = JSON.stringify(h.rows(b)) + JSON.stringify(b.status(), (_, v) => (typeof v === 'bigint' ? String(v) : v))
  assert.equal(after, before)
  assert.equal(b.stateHash(), hash)
  // the good one still imports afterwards
  await b.importBundle(good)
  assert.equal(h.rows(b).length, 3)
})

test('a bundle for a table not enabled here is held until it is (spec/schema-evolution.md §5)', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = new SyncEngine(path.join(dir, 'b.db'))
  t.after(() => b.close())
  a.execute('INSERT INTO todos(id, title) VALUES (1, ?)', ['milk'])
  const report = await b.importBundle(await a.generateBundle())
  assert.ok(report.held > 0, `held ${report.held}`)
  assert.equal(b.status().heldRows, 1)
  b.executeBatch(h.TODOS)
  b.enableSync('todos')
  assert.equal(b.status().heldRows, 0)
  assert.deepEqual(h.rows(b, 'SELECT id, title FROM todos'), [[1, 'milk']])
})

test('manual conflicts: conflicts(), resolve() in every form, allConflicts(), NotFound', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a', { strategy: 'manual' })
  const b = h.replica(t, dir, 'b', { strategy: 'manual' })
  a.execute('INSERT INTO todos(id, title, done) VALUES (1, ?, 0), (2, ?, 0), (3, ?, 0)', ['one', 'two', 'three'])
  await h.sync(a, b)
  for (const id of [1, 2, 3]) {
    a.execute('UPDATE todos SET title = ? WHERE id = ?', [`a${id}`, id])
    b.execute('UPDATE todos SET title = ? WHERE id = ?', [`b${id}`, id])
  }
  const r = await h.sync(b, a)
  assert.equal(r.conflicts, 3)
  const cs = a.conflicts()
  assert.equal(cs.length, 3)
  const byPk = new Map(cs.map((c) => [c.pk[0], c]))
  const c1 = byPk.get(1)
  assert.equal(c1.table, 'todos')
  assert.equal(c1.column, 'title')
  assert.equal(c1.local.value, 'a1')
  assert.equal(c1.remote.value, 'b1')
  assert.equal(c1.local.site, a.siteId)
  assert.equal(c1.remote.site, b.siteId)
  assert.equal(typeof c1.local.hlc, 'bigint')
  assert.equal(c1.strategy, 'manual')
  assert.equal(typeof c1.id, 'number')
  assert.equal(a.status().unresolvedConflicts, 3)
  assert.deepEqual(h.rows(a, 'SELECT title FROM todos ORDER BY id'), [['a1'], ['a2'], ['a3']], 'manual keeps local')
  h.throwsCode(() => a.resolve(c1.id, { nonsense: 1 }), 'InvalidArgument')
  h.throwsCode(() => a.resolve(c1.id, 'sideways'), 'InvalidArgument')
  a.resolve(c1.id, { value: 'merged' })
  a.resolve(byPk.get(2).id, { remote: true })
  a.resolve(byPk.get(3).id, 'local')
  h.throwsCode(() => a.resolve(c1.id, 'local'), 'NotFound')
  h.throwsCode(() => a.resolve(999999, 'local'), 'NotFound')
  assert.deepEqual(a.conflicts(), [])
  const all = a.allConflicts()
  assert.equal(all.length, 3)
  assert.deepEqual(all.map((c) => c.resolution).sort(), ['local', 'remote', 'value'])
  assert.deepEqual(h.rows(a, 'SELECT title FROM todos ORDER BY id'), [['merged'], ['b2'], ['a3']])
  for (let i = 0; i < 2; i++) {
    await h.sync(a, b)
    await h.sync(b, a)
  }
  assert.deepEqual(h.rows(b), h.rows(a))
  assert.deepEqual(b.conflicts(), [])
})

test('custom resolver: decides, gets {local}/{remote}/{value}, converges', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a', { strategy: 'custom' })
  const b = h.replica(t, dir, 'b', { strategy: 'custom' })
  const seen = []
  const joinSorted = (c) => {
    seen.push(c)
    if (c.column !== 'title') return { local: true }
    return { value: [c.local.value, c.remote.value].sort().join(' + ') }
  }
  a.setResolver('todos', joinSorted)
  b.setResolver('todos', joinSorted)
  a.execute('INSERT INTO todos(id, title) VALUES (1, ?)', ['milk'])
  await h.sync(a, b)
  a.execute('UPDATE todos SET title = ? WHERE id = 1', ['from a'])
  b.execute('UPDATE todos SET title = ? WHERE id = 1', ['from b'])
  const r = await h.sync(b, a)
  assert.equal(r.conflicts, 1)
  assert.equal(seen.length, 1)
  assert.deepEqual(seen[0].pk, [1])
  assert.equal(seen[0].table, 'todos')
  assert.equal(seen[0].local.value, 'from a')
  assert.equal(seen[0].remote.value, 'from b')
  for (let i = 0; i < 3; i++) {
    await h.sync(a, b)
    await h.sync(b, a)
  }
  assert.deepEqual(h.rows(a, 'SELECT title FROM todos'), [['from a + from b']])
  assert.deepEqual(h.rows(b), h.rows(a))
  // string forms work too
  a.setResolver('todos', () => 'remote')
  a.execute('UPDATE todos SET title = ? WHERE id = 1', ['a again'])
  b.execute('UPDATE todos SET title = ? WHERE id = 1', ['b again'])
  await h.sync(b, a)
  assert.deepEqual(h.rows(a, 'SELECT title FROM todos'), [['b again']])
  a.clearResolver('todos')
})

async function conflictPair(t) {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a', { strategy: 'custom' })
  const b = h.replica(t, dir, 'b', { strategy: 'custom' })
  a.execute('INSERT INTO todos(id, title) VALUES (1, ?)', ['milk'])
  await h.sync(a, b)
  a.execute('UPDATE todos SET title = ? WHERE id = 1', ['from a'])
  a.execute('INSERT INTO todos(id, title) VALUES (2, ?)', ['only a'])
  b.execute('UPDATE todos SET title = ? WHERE id = 1', ['from b'])
  b.execute('INSERT INTO todos(id, title) VALUES (3, ?)', ['only b'])
  const snapshot = () => JSON.stringify(h.rows(a)) + JSON.stringify(a.status(), (_, v) => (typeof v === 'bigint' ? String(v) : v))
  return { a, b, snapshot }
}

test('a throwing resolver fails the import with code Resolver and applies nothing', async (t) => {
  const { a, b, snapshot } = await conflictPair(t)
  const before = snapshot()
  const bundle = await b.generateBundle()
  a.setResolver('todos', () => {
    throw new Error('boom')
  })
  await h.rejectsCode(a.importBundle(bundle), 'Resolver', /boom/)
  assert.equal(snapshot(), before)
  // throwing a non-Error value, returning garbage, returning a Promise: all clean errors
  a.setResolver('todos', () => {
    throw 'a string' // eslint-disable-line no-throw-literal
  })
  await h.rejectsCode(a.importBundle(bundle), 'Resolver')
  a.setResolver('todos', () => 42)
  await h.rejectsCode(a.importBundle(bundle), 'Resolver', /bad value/)
  a.setResolver('todos', async () => ({ local: true }))
  await h.rejectsCode(a.importBundle(bundle), 'Resolver')
  a.setResolver('todos', () => ({ value: {} }))
  await h.rejectsCode(a.importBundle(bundle), 'Resolver')
  assert.equal(snapshot(), before)
  // no resolver at all on a custom table
  a.clearResolver('todos')
  await h.rejectsCode(a.importBundle(bundle), 'Resolver')
  assert.equal(snapshot(), before)
  // and a good one afterwards works
  a.setResolver('todos', () => 'local')
  const r = await a.importBundle(bundle)
  assert.equal(r.conflicts, 1)
  assert.deepEqual(h.rows(a, 'SELECT id, title FROM todos ORDER BY id'), [[1, 'from a'], [2, 'only a'], [3, 'only b']])
})

test('no deadlock: the engine refuses synchronous calls while a JS resolver may be needed', async (t) => {
  const { a, b, snapshot } = await conflictPair(t)
  const before = snapshot()
  const bundle = await b.generateBundle()
  // a resolver calling back into the engine gets a Reentrant error, the import fails cleanly
  a.setResolver('todos', () => {
    a.query('SELECT 1')
    return 'local'
  })
  await h.rejectsCode(a.importBundle(bundle), 'Resolver', /in progress|Reentrant|resolver/i)
  assert.equal(snapshot(), before)
  // a synchronous call while such an import is in flight throws instead of blocking
  a.setResolver('todos', () => 'remote')
  const pending = a.importBundle(bundle)
  h.throwsCode(() => a.query('SELECT 1'), 'Reentrant')
  h.throwsCode(() => a.stateHash(), 'Reentrant')
  const r = await pending
  assert.equal(r.conflicts, 1)
  assert.deepEqual(a.query('SELECT 1 AS one').rows, [[1]], 'usable again once the import settled')
  assert.deepEqual(h.rows(a, 'SELECT title FROM todos WHERE id = 1'), [['from b']])
})

test('subscribe: local writes by better-sqlite3 in this process, remote changes, conflicts; close() stops', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a', { strategy: 'manual' })
  const b = h.replica(t, dir, 'b', { strategy: 'manual' })
  const ev = h.collector(a)
  t.after(() => ev.sub.close())
  // a write by the app's own better-sqlite3 connection, in this process
  const file = path.join(dir, 'a.db')
  h.withDb(file, (db) => db.prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(1, 'from better-sqlite3'))
  const local = await ev.waitFor((e) => e.kind === 'local' && e.pk[0] === 1, 'local event')
  assert.equal(local.table, 'todos')
  assert.ok(local.columns.includes('title'))
  assert.equal(local.deleted, false)
  h.withDb(file, (db) => db.prepare('DELETE FROM todos WHERE id = ?').run(1))
  const del = await ev.waitFor((e) => e.kind === 'local' && e.deleted, 'delete event')
  assert.deepEqual(del.pk, [1])
  assert.deepEqual(del.columns, [], 'a delete names no columns (Event::columns)')
  assert.equal(del.conflict, undefined)
  // a remote change
  b.execute('INSERT INTO todos(id, title) VALUES (5, ?)', ['from b'])
  await h.sync(b, a)
  const remote = await ev.waitFor((e) => e.kind === 'remote' && e.pk[0] === 5, 'remote event')
  assert.ok(remote.columns.includes('title'))
  // a conflict
  await h.sync(a, b)
  a.execute('UPDATE todos SET title = ? WHERE id = 5', ['a5'])
  b.execute('UPDATE todos SET title = ? WHERE id = 5', ['b5'])
  await h.sync(b, a)
  const conflict = await ev.waitFor((e) => e.kind === 'conflict', 'conflict event')
  assert.equal(conflict.conflict.column, 'title')
  assert.equal(conflict.conflict.local.value, 'a5')
  assert.equal(conflict.conflict.remote.value, 'b5')
  // the fields of a conflict event are the core's: its one column, never deleted
  assert.equal(conflict.table, 'todos')
  assert.deepEqual(conflict.pk, [5])
  assert.deepEqual(conflict.columns, ['title'])
  assert.equal(conflict.deleted, false)
  assert.equal(remote.conflict, undefined)
  // close() stops delivery
  ev.sub.close()
  assert.equal(ev.sub.closed, true)
  ev.sub.close()
  const count = ev.events.length
  h.withDb(file, (db) => db.prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(7, 'after close'))
  await h.sleep(200)
  assert.equal(ev.events.length, count)
})

test('writes made by better-sqlite3 (in another process) are captured and reach another replica', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  const big = 2n ** 62n + 3n
  h.withBetterSqlite3InChild(path.join(dir, 'a.db'), `db.defaultSafeIntegers(true)
db.prepare('INSERT INTO todos(id, title, done, body) VALUES (?, ?, ?, ?)').run(1n, 'bs3', 2n ** 62n + 3n, Buffer.from([1, 2]))
db.prepare('INSERT INTO todos(id, title) VALUES (?, ?)').run(2n, 'gone')
db.prepare('DELETE FROM todos WHERE id = ?').run(2n)`)
  const r = await h.sync(a, b)
  assert.ok(r.applied > 0)
  assert.deepEqual(h.rows(b), [[1, 'bs3', big, Buffer.from([1, 2])]])
})

test('close(): later calls fail with code Closed', async (t) => {
  const dir = h.tmpdir(t)
  const e = new SyncEngine(path.join(dir, 'a.db'))
  e.close()
  h.throwsCode(() => e.siteId, 'Closed')
  h.throwsCode(() => e.status(), 'Closed')
  h.throwsCode(() => e.stateHash(), 'Closed')
  h.throwsCode(() => e.query('SELECT 1'), 'Closed')
  h.throwsCode(() => e.execute('SELECT 1'), 'Closed')
  await h.rejectsCode(e.generateBundle(), 'Closed')
  await h.rejectsCode(e.importBundle(Buffer.from('x')), 'Closed')
})

test('a subscription outlives its collected handle; engine.close() ends it', async (t) => {
  const dir = h.tmpdir(t)
  const e = new SyncEngine(path.join(dir, 'a.db'), { watchIntervalMs: 20 })
  e.executeBatch(h.TODOS)
  e.enableSync('todos')
  const seen = []
  e.subscribe((ev) => seen.push(ev)) // handle dropped on purpose
  if (global.gc) global.gc()
  e.execute('INSERT INTO todos(id, title) VALUES (1, ?)', ['x'])
  for (let i = 0; i < 100 && seen.length === 0; i++) await h.sleep(20)
  assert.equal(seen.length, 1)
  assert.equal(seen[0].kind, 'local')
  e.close()
})
