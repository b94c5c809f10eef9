'use strict'
// Bundles made in Node import in the Rust CLI and vice versa. The CLI binary's path comes
// from SYNCLINE_CLI (built with `cargo build --release -p syncline-cli`).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const h = require('./helpers')

const CLI = process.env.SYNCLINE_CLI

function cli(...args) {
  try {
    return execFileSync(CLI, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (e) {
    throw new Error(`${CLI} ${args.join(' ')} failed (${e.status}): ${e.stderr || e.message}`)
  }
}

test('the Rust CLI is available (SYNCLINE_CLI)', () => {
  assert.ok(
    CLI,
    'SYNCLINE_CLI is not set: point it at the CLI binary (cargo build --release -p syncline-cli; target/release/syncline)',
  )
  assert.ok(fs.existsSync(CLI), `SYNCLINE_CLI=${CLI} does not exist`)
})

test('bundles cross between Node and the Rust CLI both ways', { skip: !CLI || !fs.existsSync(CLI) ? 'SYNCLINE_CLI unavailable (see the test above)' : false }, async (t) => {
  const Database = h.betterSqlite3()
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  const big = 2n ** 60n + 7n
  a.execute('INSERT INTO todos(id, title, done, body) VALUES (1, ?, ?, ?), (2, ?, 0, NULL)', ['from node', big, Buffer.from([0, 255]), 'two'])

  // Node -> CLI
  const bdb = path.join(dir, 'b.db')
  const schema = new Database(bdb)
  schema.exec(h.TODOS)
  schema.close()
  cli('init', bdb, '--table', 'todos')
  const nodeBundle = path.join(dir, 'node.bundle')
  await a.writeBundle(nodeBundle)
  cli('import', bdb, nodeBundle)
  const reader = new Database(bdb)
  t.after(() => reader.close())
  reader.defaultSafeIntegers(true)
  assert.deepEqual(
    reader.prepare('SELECT id, title, done, body FROM todos ORDER BY id').raw().all(),
    [
      [1n, 'from node', big, Buffer.from([0, 255])],
      [2n, 'two', 0n, null],
    ],
  )
  const status = JSON.parse(cli('status', bdb, '--json'))
  assert.ok(JSON.stringify(status).toLowerCase().includes(a.siteId), 'the CLI replica knows the Node replica as a peer')

  // CLI -> Node: a change written into b's file (captured by its triggers), exported by the CLI
  reader.prepare('UPDATE todos SET title = ? WHERE id = 2').run('edited for the cli')
  reader.prepare('INSERT INTO todos(id, title) VALUES (3, ?)').run('three')
  const cliBundle = path.join(dir, 'cli.bundle')
  cli('export', bdb, '--peer', a.siteId, '-o', cliBundle)
  const r = await a.importBundle(cliBundle)
  assert.ok(r.applied > 0)
  assert.deepEqual(h.rows(a, 'SELECT id, title FROM todos ORDER BY id'), [
    [1, 'from node'],
    [2, 'edited for the cli'],
    [3, 'three'],
  ])
  const bytes = fs.readFileSync(cliBundle)
  const again = await a.importBundle(bytes)
  assert.equal(again.applied, 0)
})
