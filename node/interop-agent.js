#!/usr/bin/env node
'use strict'
// The Node interop agent (spec/vectors/README.md §"Interop script"), run by scripts/agents/node:
//
//   node interop-agent.js export interop.json OUT.bundle   # prints the writer's state hash
//   node interop-agent.js import interop.json IN.bundle    # prints the reader's state hash
//
// It uses the addon built in this folder (`npm run build`, which node/test.sh runs): the
// generated loader ./index.js and its syncline.<platform>.node. Not part of the npm package.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

function fail(message, code = 1) {
  process.stderr.write(`interop-agent (node): ${message}\n`)
  process.exit(code)
}

const [command, specPath, bundlePath, ...extra] = process.argv.slice(2)
if (!['export', 'import'].includes(command) || !specPath || !bundlePath || extra.length > 0) {
  fail('usage: interop-agent.js export|import interop.json BUNDLE', 2)
}

const loader = path.join(__dirname, 'index.js')
if (!fs.existsSync(loader)) {
  fail(`no built addon (${loader} is missing): run node/test.sh, or \`npm install && npm run build\` in ${__dirname}`)
}
const { SyncEngine } = require(loader)

/** Name order by UTF-8 bytes, as the Rust agent (serde_json's sorted map) enables tables. */
function byBytes(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

function replica(dir, spec, role) {
  const who = spec[role]
  if (!who) fail(`${specPath} has no "${role}"`)
  const e = new SyncEngine(path.join(dir, `${role}.db`))
  e.setSiteId(who.site)
  e.setManualClock(who.clock_ms ?? null)
  for (const sql of spec.schema || []) e.executeBatch(sql)
  const tables = spec.tables || {}
  for (const table of Object.keys(tables).sort(byBytes)) e.enableSync(table, { strategy: tables[table] })
  return e
}

async function main() {
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'syncline-node-agent-'))
  let e
  try {
    let hash
    if (command === 'export') {
      e = replica(dir, spec, 'writer')
      for (const step of spec.steps || []) {
        if (step.sql !== undefined) e.execute(step.sql)
        if (step.clock_ms !== undefined) e.setManualClock(step.clock_ms)
      }
      fs.writeFileSync(bundlePath, await e.generateBundle())
      hash = e.stateHash()
    } else {
      e = replica(dir, spec, 'reader')
      await e.importBundle(path.resolve(bundlePath))
      hash = e.stateHash()
    }
    process.stdout.write(`${hash}\n`)
  } finally {
    if (e) e.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => fail(`${err.code ? `[${err.code}] ` : ''}${err.message}`))
