'use strict'
// Shared helpers for the node --test suite. The package under test is loaded by name
// ("syncline"): in the repo that is the package itself (self-reference through "exports"),
// in test.sh the copy installed from the npm pack tarball.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const syncline = require('syncline')

/**
 * better-sqlite3 as the app gets it: the copy `syncline` itself depends on (one copy of the
 * addon, so one SQLite library in the process: the engine runs inside it).
 */
function betterSqlite3() {
  const from = path.dirname(require.resolve('syncline'))
  return require(require.resolve('better-sqlite3', { paths: [from] }))
}

/** Open `file` with better-sqlite3, run `fn(db)`, close it: a short-lived app connection. */
function withDb(file, fn) {
  const Database = betterSqlite3()
  const db = new Database(file)
  try {
    return fn(db)
  } finally {
    db.close()
  }
}

/**
 * Run `code` (with `db`, a better-sqlite3 Database on `file`, in scope) in a child process:
 * another process writing the same file.
 */
function withBetterSqlite3InChild(file, code) {
  const { execFileSync } = require('node:child_process')
  const from = path.dirname(require.resolve('syncline'))
  const modulePath = require.resolve('better-sqlite3', { paths: [from] })
  const script = `const Database = require(${JSON.stringify(modulePath)});
const db = new Database(${JSON.stringify(file)});
try { ${code} } finally { db.close() }`
  execFileSync(process.execPath, ['-e', script], { stdio: 'inherit' })
}

/** Both directions, twice: then every replica holds what the other has. */
async function syncBoth(a, b) {
  for (let i = 0; i < 2; i++) {
    await sync(a, b)
    await sync(b, a)
  }
}

/** Every replica converged: equal state hashes, nothing pending for each other. */
function assertConverged(...engines) {
  const hashes = engines.map((e) => e.stateHash())
  for (const hsh of hashes) assert.equal(hsh, hashes[0], 'equal state hashes on all replicas')
}

const TODOS =
  'CREATE TABLE IF NOT EXISTS todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, body BLOB)'

function tmpdir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'syncline-node-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** An engine on DIR/NAME.db with the todos table enabled, closed when the test ends. */
function replica(t, dir, name, enable = {}, options = { watchIntervalMs: 20 }) {
  const e = new syncline.SyncEngine(path.join(dir, `${name}.db`), options)
  t.after(() => {
    try {
      e.close()
    } catch {}
  })
  e.executeBatch(TODOS)
  e.enableSync('todos', enable)
  return e
}

/** Send what `to` lacks from `from`. */
async function sync(from, to) {
  const bundle = await from.generateBundle({ peer: to.siteId })
  return to.importBundle(bundle)
}

function rows(e, sql = 'SELECT id, title, done, body FROM todos ORDER BY id', params = []) {
  return e.query(sql, params).rows
}

/** Assert that fn throws an Error whose code is `code`. */
function throwsCode(fn, code, message) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Error, `expected an Error, got ${err}`)
    assert.equal(err.code, code, `code of ${err.message}`)
    if (message) assert.match(err.message, message)
    return true
  })
}

/** Assert that a promise rejects with an Error whose code is `code`. */
async function rejectsCode(promise, code, message) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof Error, `expected an Error, got ${err}`)
    assert.equal(err.code, code, `code of ${err.message}`)
    if (message) assert.match(err.message, message)
    return true
  })
}

/** Collect events; `waitFor(pred)` resolves with the first matching one (5 s timeout). */
function collector(engine) {
  const events = []
  const waiters = []
  const sub = engine.subscribe((ev) => {
    events.push(ev)
    for (const w of [...waiters]) {
      if (w.pred(ev)) {
        waiters.splice(waiters.indexOf(w), 1)
        clearTimeout(w.timer)
        w.resolve(ev)
      }
    }
  })
  function waitFor(pred, what = 'event') {
    const found = events.find(pred)
    if (found) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const w = { pred, resolve }
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1)
        reject(new Error(`no ${what} within 5 s; got ${JSON.stringify(events, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`))
      }, 5000)
      waiters.push(w)
    })
  }
  return { events, sub, waitFor }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

module.exports = {
  syncline, betterSqlite3, withDb, withBetterSqlite3InChild, syncBoth, assertConverged, TODOS, tmpdir, replica, sync, rows, throwsCode, rejectsCode, collector, sleep }
