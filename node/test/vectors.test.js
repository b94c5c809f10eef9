'use strict'
// The golden vectors of spec/vectors/ (see its README.md) run through the Node binding,
// checking what the Rust reference runner (core/tests/vectors.rs) checks: exported bundles
// byte-identical to the committed files, import reports, refused imports (error code, and the
// database unchanged), resolutions, conflict counts, final rows (storage class and value
// exactly: integers per the binding's number/bigint rule, blobs as bytes, reals bit for bit),
// open conflicts and state hashes. `derive` steps (damaged bundles) are made and checked by
// the Rust runner only; here the committed damaged files are imported.
//
// The vectors live in the repository, not in the package: SYNCLINE_REPO (set by test.sh)
// names the repository root; without it the tests assume they run from <repo>/node/test.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')
const { SyncEngine } = h.syncline

const REPO = process.env.SYNCLINE_REPO || path.resolve(__dirname, '..', '..')
const VECTORS = path.join(REPO, 'spec', 'vectors')

/** Keys of an import step's report: JSON name -> ImportReport field. */
const REPORT_FIELDS = {
  applied: 'applied',
  already_known: 'alreadyKnown',
  conflicts: 'conflicts',
  rejected: 'rejected',
  quarantined: 'quarantined',
  released: 'released',
  migrated: 'migrated',
  held: 'held',
}
/** Always present; the others are optional (compared when present). */
const REPORT_KEYS = ['applied', 'already_known', 'conflicts', 'rejected']

/** Every scenario file (interop.json is the interop script, not a scenario), then those of
 * spec/vectors/migrations (schema-evolution steps, its README.md) as `migrations/NAME.json`. */
function scenarioFiles() {
  if (!fs.existsSync(VECTORS)) return []
  const top = fs
    .readdirSync(VECTORS)
    .filter((f) => f.endsWith('.json') && f !== 'interop.json')
    .sort()
  return top.concat(migrationFiles())
}

function migrationFiles() {
  const dir = path.join(VECTORS, 'migrations')
  if (!fs.existsSync(dir)) return []
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => `migrations/${f}`)
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/** Name order, by UTF-8 bytes (as the Rust runner's BTreeMap orders keys). */
function byBytes(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/** A tagged JSON value: { type: SQLite storage class, value: the JS value the binding uses }. */
function tagged(j) {
  if (j === null) return { type: 'null', value: null }
  const keys = Object.keys(j)
  assert.equal(keys.length, 1, `tagged value ${JSON.stringify(j)}`)
  const s = j[keys[0]]
  assert.equal(typeof s, 'string', `tagged value payload ${JSON.stringify(j)}`)
  switch (keys[0]) {
    case 'int': {
      const big = BigInt(s)
      return { type: 'integer', value: big >= -MAX_SAFE && big <= MAX_SAFE ? Number(big) : big }
    }
    case 'real': {
      const f = Number(s)
      assert.ok(!Number.isNaN(f) || s.toLowerCase() === 'nan', `real ${s}`)
      return { type: 'real', value: f }
    }
    case 'text':
      return { type: 'text', value: s }
    case 'blob':
      assert.match(s, /^([0-9a-fA-F]{2})*$/, `blob ${s}`)
      return { type: 'blob', value: Buffer.from(s, 'hex') }
    default:
      throw new Error(`unknown value tag ${keys[0]}`)
  }
}

/** The JS parameter for a tagged value (for `{"value": V}` resolutions). */
function param(j) {
  const t = tagged(j)
  if (t.type === 'integer') return typeof t.value === 'bigint' ? t.value : BigInt(t.value)
  if (t.type === 'real' && Number.isSafeInteger(t.value) && !Object.is(t.value, -0)) {
    // The binding binds a safe-integer number as an INTEGER: such a REAL has no JS spelling.
    throw new Error(`the real ${t.value} cannot be passed as a REAL through the Node binding`)
  }
  return t.value
}

function bits(f) {
  const dv = new DataView(new ArrayBuffer(8))
  dv.setFloat64(0, f)
  return dv.getBigUint64(0)
}

/** Whether `got` (from query) with storage class `type` is exactly the tagged value `want`. */
function sameValue(got, type, want) {
  if (type !== want.type) return false
  switch (want.type) {
    case 'null':
      return got === null
    case 'integer':
      return typeof got === typeof want.value && got === want.value
    case 'real':
      return typeof got === 'number' && Object.is(got, want.value) && bits(got) === bits(want.value)
    case 'text':
      return got === want.value
    case 'blob':
      return Buffer.isBuffer(got) && got.equals(want.value)
  }
  return false
}

/** Every row of `table` (SELECT * ... ORDER BY 1, 2, ...), each cell with its storage class. */
function tableRows(e, table) {
  const q = `"${table.replace(/"/g, '""')}"`
  const cols = e.query(`SELECT * FROM ${q} LIMIT 0`).columns
  const order = cols.map((_, i) => i + 1).join(', ')
  const types = cols.map((c) => `, typeof("${c.replace(/"/g, '""')}")`).join('')
  const rows = e.query(`SELECT *${types} FROM ${q} ORDER BY ${order}`).rows
  return rows.map((r) => r.slice(0, cols.length).map((value, i) => ({ value, type: r[cols.length + i] })))
}

/** A printable, exact form of a cell. */
function show(c) {
  const v = c.value
  if (Buffer.isBuffer(v)) return `${c.type}:x'${v.toString('hex')}'`
  if (typeof v === 'bigint') return `${c.type}:${v}n`
  if (typeof v === 'number' && c.type === 'real') return `real:${Object.is(v, -0) ? '-0' : v}(bits ${bits(v).toString(16)})`
  return `${c.type}:${JSON.stringify(v)}`
}

/** Every table of the database (sync metadata included), exactly: the before/after check. */
function fingerprint(e) {
  const names = e.query("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").rows.map((r) => r[0])
  return names.map((n) => `${n}:[${tableRows(e, n).map((r) => `(${r.map(show).join(', ')})`).join('; ')}]`).join('\n')
}

/** The concat resolver every runner registers for `custom` tables. */
function concat(c) {
  const l = c.local.value
  const r = c.remote.value
  if (typeof l === 'string' && typeof r === 'string') return { value: [l, r].sort(byBytes).join(' + ') }
  return 'local'
}

async function run(t, file) {
  const sc = JSON.parse(fs.readFileSync(path.join(VECTORS, file), 'utf8'))
  const name = sc.name
  const dir = h.tmpdir(t)
  const reps = {}
  t.after(() => {
    for (const e of Object.values(reps)) {
      try {
        e.close()
      } catch {}
    }
  })
  for (const r of Object.keys(sc.replicas).sort(byBytes)) {
    const e = new SyncEngine(path.join(dir, `${r}.db`))
    reps[r] = e
    e.setSiteId(sc.replicas[r])
    e.setManualClock(sc.clock_ms)
    for (const sql of (sc.schemas && sc.schemas[r]) || sc.schema) e.executeBatch(sql)
    const tables = (sc.table_overrides && sc.table_overrides[r]) || sc.tables
    for (const table of Object.keys(tables).sort(byBytes)) {
      e.enableSync(table, { strategy: tables[table] })
      if (tables[table] === 'custom') e.setResolver(table, concat)
    }
  }
  const rep = (r) => {
    assert.ok(reps[r], `${name}: unknown replica ${r}`)
    return reps[r]
  }
  const vector = (step) => path.join(VECTORS, step.file)
  let exports = 0
  let imports = 0
  for (const [k, step] of sc.steps.entries()) {
    const at = `${name} step ${k}`
    if (step.on !== undefined) {
      const e = rep(step.on)
      if (step.sql !== undefined) e.execute(step.sql)
      if (step.clock_ms !== undefined) e.setManualClock(step.clock_ms)
    } else if (step.export !== undefined) {
      const peer = step.peer !== undefined ? rep(step.peer).siteId : undefined
      const bytes = await rep(step.export).generateBundle(peer !== undefined ? { peer } : undefined)
      const want = fs.readFileSync(vector(step))
      assert.ok(Buffer.isBuffer(bytes), `${at}: generateBundle gives a Buffer`)
      assert.ok(want.equals(bytes), `${at}: ${step.file} (${want.length} bytes) differs from the bundle made now (${bytes.length} bytes)`)
      exports++
    } else if (step.derive !== undefined) {
      // Made and checked by the Rust runner; the committed damaged file is what gets imported.
      assert.ok(fs.existsSync(vector(step)), `${at}: missing ${step.file}`)
    } else if (step.import !== undefined) {
      const e = rep(step.import)
      const before = fingerprint(e)
      if (step.error !== undefined) {
        await assert.rejects(e.importBundle(vector(step)), (err) => {
          assert.ok(err instanceof Error, `${at}: expected an Error, got ${err}`)
          assert.equal(err.code, step.error, `${at}: error code of: ${err.message}`)
          return true
        })
        assert.equal(fingerprint(e), before, `${at}: a refused bundle changed the database`)
      } else {
        const report = await e.importBundle(vector(step))
        if (step.report !== undefined) {
          const keys = Object.keys(step.report)
          for (const k of REPORT_KEYS) assert.ok(keys.includes(k), `${at}: the report lacks ${k}`)
          for (const k of keys) assert.ok(k in REPORT_FIELDS, `${at}: unknown report key ${k}`)
          // The four required keys, and the optional ones the vector carries.
          const got = {}
          for (const k of keys) got[k] = report[REPORT_FIELDS[k]]
          assert.deepEqual(got, step.report, `${at}: import report`)
        }
      }
      imports++
    } else if (step.resolve !== undefined) {
      const e = rep(step.resolve)
      const open = e.conflicts()
      const c = open[step.conflict]
      assert.ok(c, `${at}: no open conflict number ${step.conflict} (${open.length} open)`)
      const w = step.with
      const resolution = w === 'local' || w === 'remote' ? w : { value: param(w.value) }
      e.resolve(c.id, resolution)
    } else if (step.conflicts !== undefined) {
      assert.equal(rep(step.conflicts).conflicts().length, step.count, `${at}: open conflicts`)
    } else if (step.migrate !== undefined) {
      const e = rep(step.migrate)
      const dflt = step.default !== undefined ? param(step.default) : null
      const call = () => e.addColumn(step.table, step.add_column, step.type, dflt)
      if (step.error !== undefined) {
        assert.throws(call, (err) => {
          assert.equal(err.code, step.error, `${at}: error code of: ${err.message}`)
          return true
        })
      } else {
        call()
      }
    } else if (step.migration_policy !== undefined) {
      const e = rep(step.migration_policy)
      e.setMigrationPolicy(step.policy)
      assert.equal(e.migrationPolicy(), step.policy, `${at}: policy`)
    } else if (step.apply_held_migrations !== undefined) {
      assert.equal(rep(step.apply_held_migrations).applyHeldMigrations(), step.count, `${at}: migrations applied`)
    } else if (step.enable !== undefined) {
      rep(step.enable).enableSync(step.table)
    } else {
      throw new Error(`${at}: unknown step ${JSON.stringify(step)}`)
    }
  }
  for (const r of Object.keys(sc.expect).sort(byBytes)) {
    const want = sc.expect[r]
    const e = rep(r)
    for (const table of Object.keys(want.rows).sort(byBytes)) {
      const expected = want.rows[table].map((row) => row.map(tagged))
      const got = tableRows(e, table)
      const dump = () => got.map((row) => `(${row.map(show).join(', ')})`).join('; ')
      assert.equal(got.length, expected.length, `${name}: rows of ${table} on ${r}: ${dump()}`)
      for (const [i, g] of got.entries()) {
        const w = expected[i]
        const ok = g.length === w.length && g.every((cell, j) => sameValue(cell.value, cell.type, w[j]))
        assert.ok(ok, `${name}: ${table} on ${r}, row ${i}: (${g.map(show).join(', ')}) != (${w.map(show).join(', ')})`)
      }
    }
    assert.equal(e.conflicts().length, want.open_conflicts, `${name}: open conflicts on ${r}`)
    const hash = e.stateHash()
    assert.match(hash, /^[0-9a-f]{64}$/)
    assert.equal(hash, want.state_hash, `${name}: state hash of ${r}`)
  }
  return { exports, imports }
}

test('the golden vectors are found (SYNCLINE_REPO)', () => {
  assert.ok(fs.existsSync(VECTORS), `no ${VECTORS}: set SYNCLINE_REPO to the repository root`)
  assert.ok(scenarioFiles().length >= 12, `the vectors are missing from ${VECTORS}`)
  assert.ok(scenarioFiles().includes('12-hostile-bundles.json'), 'the hostile-bundle scenario is run')
  assert.ok(migrationFiles().length >= 2, 'spec/vectors/migrations is run')
})

for (const file of scenarioFiles()) {
  test(`golden vector ${file}`, async (t) => {
    const { exports, imports } = await run(t, file)
    assert.ok(exports > 0 && imports > 0, `${file} exports and imports something`)
  })
}

const AGENT = path.join(REPO, 'scripts', 'agents', 'node')
const agentReady = fs.existsSync(AGENT) && fs.existsSync(path.join(REPO, 'node', 'index.js'))

test('the interop agent (scripts/agents/node): its export imports to the same hash, and matches this package', { skip: agentReady ? false : `needs ${AGENT} and the addon built in ${path.join(REPO, 'node')}` }, async (t) => {
  const { execFileSync } = require('node:child_process')
  const dir = h.tmpdir(t)
  const script = path.join(VECTORS, 'interop.json')
  const agent = (...args) => execFileSync(AGENT, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
  const out = path.join(dir, 'agent.bundle')
  const written = agent('export', script, out)
  assert.match(written, /^[0-9a-f]{64}$/)
  assert.equal(agent('import', script, out), written, 'the reader reaches the writer state')
  // The same script through the package under test gives the same bytes and hash.
  const spec = JSON.parse(fs.readFileSync(script, 'utf8'))
  const e = new SyncEngine(path.join(dir, 'writer.db'))
  t.after(() => e.close())
  e.setSiteId(spec.writer.site)
  e.setManualClock(spec.writer.clock_ms)
  for (const sql of spec.schema) e.executeBatch(sql)
  for (const table of Object.keys(spec.tables).sort(byBytes)) e.enableSync(table, { strategy: spec.tables[table] })
  for (const step of spec.steps) {
    if (step.sql !== undefined) e.execute(step.sql)
    if (step.clock_ms !== undefined) e.setManualClock(step.clock_ms)
  }
  assert.ok((await e.generateBundle()).equals(fs.readFileSync(out)), 'byte-identical bundles')
  assert.equal(e.stateHash(), written)
})
