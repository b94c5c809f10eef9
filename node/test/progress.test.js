'use strict'
// Progress callbacks (onProgress) on bundle export and import; bundles as Node streams
// (exportStream / importStream).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { Readable } = require('node:stream')
const h = require('./helpers')

const ROWS = 10_000 // several of the core's progress batches (one call per 4096 rows, then the last)
const MiB = 1 << 20

function fill(e, n = ROWS) {
  e.execute(
    'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) ' +
      "INSERT INTO todos(id, title, body) SELECT i, 'title ' || i, randomblob(300) FROM c",
    [n]
  )
}

function recorder() {
  const calls = []
  const onProgress = (done, total) => {
    calls.push([done, total])
  }
  function check(rows) {
    assert.ok(calls.length >= 2, `expected intermediate calls, got ${JSON.stringify(calls)}`)
    const dones = calls.map(([d]) => d)
    assert.deepEqual(dones, [...dones].sort((x, y) => x - y), 'done never goes backwards')
    for (const [, total] of calls) assert.equal(total, rows)
    assert.deepEqual(calls.at(-1), [rows, rows], 'the last call (before the promise settled) is done === total')
  }
  return { calls, onProgress, check }
}

/** The temporary folders the stream methods leave beside the databases (none, once done). */
function leftovers(dir) {
  return fs.readdirSync(dir).filter((f) => f.startsWith('.syncline-'))
}

async function noLeftovers(dir) {
  // removal runs when the stream's generator finishes, just after 'close'
  for (let i = 0; i < 100 && leftovers(dir).length > 0; i++) await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(leftovers(dir), [])
}

test('onProgress of generateBundle, writeBundle and importBundle', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  fill(a)
  let seen = recorder()
  const bundle = await a.generateBundle({ onProgress: seen.onProgress })
  seen.check(ROWS)

  seen = recorder()
  const file = path.join(dir, 'a.bundle')
  const stats = await a.writeBundle(file, { compress: true, onProgress: seen.onProgress })
  assert.equal(stats.rows, ROWS)
  seen.check(ROWS)

  const b = h.replica(t, dir, 'b')
  seen = recorder()
  assert.equal((await b.importBundle(bundle, { onProgress: seen.onProgress })).rows, ROWS)
  seen.check(ROWS)

  const c = h.replica(t, dir, 'c')
  seen = recorder()
  assert.equal((await c.importBundle(file, { onProgress: seen.onProgress })).rows, ROWS)
  seen.check(ROWS)
  h.assertConverged(a, b, c)

  // absent, undefined and null are no callback
  await b.importBundle(bundle, {})
  await b.importBundle(bundle, { onProgress: undefined })
  await a.generateBundle({ onProgress: null })
})

test('every progress call comes before the promise settles, even with a busy JS thread', async (t) => {
  // The JS thread is busy while the worker queues every call and finishes: the calls and the
  // task's completion are then all pending together when the thread gets free.
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  fill(a)
  const busy = (ms) => {
    const until = Date.now() + ms
    while (Date.now() < until);
  }
  let seen = recorder()
  let pending = a.generateBundle({ onProgress: seen.onProgress })
  busy(1500)
  const bundle = await pending
  seen.check(ROWS)
  seen = recorder()
  pending = a.writeBundle(path.join(dir, 'a.bundle'), { onProgress: seen.onProgress })
  busy(1500)
  await pending
  seen.check(ROWS)
  seen = recorder()
  pending = b.importBundle(bundle, { onProgress: seen.onProgress })
  busy(1500)
  await pending
  seen.check(ROWS)
})

test('an onProgress that is not a function is InvalidArgument, nothing imported', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  fill(a, 10)
  const bundle = await a.generateBundle()
  const before = b.stateHash()
  await h.rejectsCode(a.generateBundle({ onProgress: 42 }), 'InvalidArgument', /onProgress must be a function/)
  await h.rejectsCode(a.writeBundle(path.join(dir, 'x.bundle'), { onProgress: 'no' }), 'InvalidArgument')
  await h.rejectsCode(b.importBundle(bundle, { onProgress: {} }), 'InvalidArgument')
  assert.equal(b.stateHash(), before)
  assert.deepEqual(h.rows(b), [])
  assert.ok(!fs.existsSync(path.join(dir, 'x.bundle')))
})

test('what onProgress throws rejects the promise once the call is done', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  fill(a)
  const boom = new Error('stop')
  let calls = 0
  const onProgress = () => {
    calls++
    throw boom
  }
  await assert.rejects(a.generateBundle({ onProgress }), (err) => err === boom)
  assert.ok(calls >= 1 && calls <= 3, `queued calls only, got ${calls}`)
  await assert.rejects(a.writeBundle(path.join(dir, 'x.bundle'), { onProgress }), (err) => err === boom)
  // a thrown non-Error travels as it is
  await assert.rejects(a.generateBundle({ onProgress: () => { throw 'plain' } }), (err) => err === 'plain')
  // An import cannot be stopped midway: the rejection comes once it is applied; importing the
  // bundle again is harmless.
  const b = h.replica(t, dir, 'b')
  const bundle = await a.generateBundle()
  await assert.rejects(b.importBundle(bundle, { onProgress }), (err) => err === boom)
  h.assertConverged(a, b)
  assert.equal((await b.importBundle(bundle)).applied, 0)
})

test('exportStream streams a multi-MB bundle in 1 MiB chunks and cleans up', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  fill(a)
  const seen = recorder()
  const stream = a.exportStream({ onProgress: seen.onProgress })
  assert.ok(stream instanceof Readable)
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  seen.check(ROWS)
  const data = Buffer.concat(chunks)
  assert.ok(data.length > 3 * MiB, `${data.length} bytes`)
  assert.ok(chunks.length >= 3 && chunks.every((c) => Buffer.isBuffer(c) && c.length <= MiB), 'bounded chunks')
  assert.deepEqual(data, await a.generateBundle())
  await noLeftovers(dir)

  // straight into another replica, and through a real file
  const b = h.replica(t, dir, 'b')
  const seenImport = recorder()
  assert.equal((await b.importStream(a.exportStream(), { onProgress: seenImport.onProgress })).rows, ROWS)
  seenImport.check(ROWS)
  const file = path.join(dir, 'a.bundle')
  await require('node:stream/promises').pipeline(a.exportStream({ compress: true }), fs.createWriteStream(file))
  const c = h.replica(t, dir, 'c')
  assert.equal((await c.importStream(fs.createReadStream(file))).rows, ROWS)
  h.assertConverged(a, b, c)
  // a delta for a known peer, from an async iterable of chunks
  a.execute('UPDATE todos SET done = 1 WHERE id = 7')
  const delta = await a.generateBundle({ peer: b.siteId })
  async function* pieces() {
    for (let i = 0; i < delta.length; i += 100) yield delta.subarray(i, i + 100)
  }
  assert.equal((await b.importStream(pieces())).applied, 1)
  await noLeftovers(dir)
})

test('exportStream: destroyed early or failing, the temporary file goes', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  fill(a)
  const stream = a.exportStream()
  const first = await new Promise((resolve, reject) => {
    stream.once('data', resolve)
    stream.once('error', reject)
  })
  assert.ok(first.length > 0)
  stream.destroy()
  await new Promise((r) => stream.once('close', r))
  await noLeftovers(dir)

  const failing = a.exportStream({ peer: 'not-hex' })
  await h.rejectsCode(
    new Promise((resolve, reject) => {
      failing.on('error', reject)
      failing.on('end', resolve)
      failing.resume()
    }),
    'InvalidArgument'
  )
  await noLeftovers(dir)

  a.close()
  await h.rejectsCode(
    (async () => {
      for await (const _ of a.exportStream()) void _
    })(),
    'Closed'
  )
  await noLeftovers(dir)
})

test('importStream refuses what is not a byte stream, and changes nothing', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const b = h.replica(t, dir, 'b')
  fill(a, 100)
  const file = path.join(dir, 'a.bundle')
  await a.writeBundle(file)
  const before = b.stateHash()
  for (const wrong of [42, file, null, undefined, fs.readFileSync(file), { read() {} }]) {
    await h.rejectsCode(b.importStream(wrong), 'InvalidArgument', /readable stream/)
  }
  // text chunks (a stream with an encoding) are refused before anything is imported
  const text = fs.createReadStream(file)
  text.setEncoding('latin1')
  await h.rejectsCode(b.importStream(text), 'InvalidArgument', /encoding/)
  await h.rejectsCode(b.importStream(Readable.from(['SYNCLINE'])), 'InvalidArgument')
  // bytes that are no bundle: the core's error
  await h.rejectsCode(b.importStream(Readable.from([Buffer.from('not a bundle at all')])), 'InvalidBundle')
  // the source's own error
  const broken = new Readable({
    read() {
      this.destroy(new Error('disk on fire'))
    },
  })
  await assert.rejects(b.importStream(broken), /disk on fire/)
  assert.equal(b.stateHash(), before)
  assert.deepEqual(h.rows(b), [])
  await noLeftovers(dir)
  b.close()
  await h.rejectsCode(b.importStream(fs.createReadStream(file)), 'Closed')
  await noLeftovers(dir)
})
