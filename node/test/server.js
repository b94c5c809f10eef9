'use strict'
// A real `syncline serve` (the Rust CLI from SYNCLINE_CLI) on 127.0.0.1 for the network tests,
// started and killed by each test.
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { spawn } = require('node:child_process')
const h = require('./helpers')
const { SyncEngine } = h.syncline

const CLI = process.env.SYNCLINE_CLI
const TOKEN = 's3cret-token'

function requireCli() {
  assert.ok(
    CLI,
    'SYNCLINE_CLI is not set: point it at the `syncline` CLI with `serve` (cargo build --release -p syncline-cli; target/release/syncline)',
  )
  assert.ok(fs.existsSync(CLI), `SYNCLINE_CLI=${CLI} does not exist`)
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** A database with `todos` enabled, for a server. */
function serverDb(dir, name = 'server') {
  const file = path.join(dir, `${name}.db`)
  const e = new SyncEngine(file)
  e.executeBatch(h.TODOS)
  e.enableSync('todos')
  e.close()
  return file
}

/** Start `syncline serve DB --port P --token T` and wait until GET /v1/info answers. */
async function startServer(t, db, port) {
  requireCli()
  port = port ?? (await freePort())
  const url = `http://127.0.0.1:${port}`
  const child = spawn(CLI, ['serve', db, '--port', String(port), '--token', TOKEN], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  let exited = null
  child.on('exit', (code, signal) => (exited = { code, signal }))
  const server = {
    url,
    port,
    db,
    kill() {
      if (exited === null) child.kill('SIGKILL')
      return new Promise((resolve) => (exited !== null ? resolve() : child.once('exit', () => resolve())))
    },
  }
  t.after(() => server.kill())
  const deadline = Date.now() + 20_000
  for (;;) {
    if (exited !== null) throw new Error(`syncline serve exited (${JSON.stringify(exited)}): ${stderr}`)
    try {
      const answer = await fetch(`${url}/v1/info`, { headers: { authorization: `Bearer ${TOKEN}` } })
      if (answer.ok) {
        const info = await answer.json()
        assert.equal(info.protocol, 1)
        server.siteId = info.site_id
        return server
      }
    } catch {}
    if (Date.now() > deadline) throw new Error(`syncline serve did not answer GET ${url}/v1/info within 20 s: ${stderr}`)
    await h.sleep(50)
  }
}

async function waitUntil(pred, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await h.sleep(50)
  }
}

function serverRows(server) {
  const e = new SyncEngine(server.db)
  try {
    return h.rows(e, 'SELECT id, title FROM todos ORDER BY id')
  } finally {
    e.close()
  }
}

module.exports = { CLI, TOKEN, requireCli, freePort, serverDb, startServer, waitUntil, serverRows }
