#!/usr/bin/env node
'use strict'
// The Node client of scripts/net-interop.py (network sync across languages):
//
//   node net-client.js init DB                 # create the `items` table and enable sync
//   node net-client.js write DB PREFIX N       # insert rows PREFIX-1 .. PREFIX-N
//   node net-client.js sync DB URL TOKEN       # one sync pass; prints the report as JSON
//   node net-client.js ids DB                  # prints the row ids as a JSON array
//   node net-client.js hash DB                 # prints the state hash
//
// A failed sync prints {"code", "message"} as JSON and exits with status 3. It uses the addon
// built in this folder (`npm run build`, which node/test.sh runs). Not part of the npm package.
const fs = require('node:fs')
const path = require('node:path')

function fail(message, code = 1) {
  process.stderr.write(`net-client (node): ${message}\n`)
  process.exit(code)
}

const loader = path.join(__dirname, 'index.js')
if (!fs.existsSync(loader)) {
  fail(`no built addon (${loader} is missing): run node/test.sh, or \`npm install && npm run build\` in ${__dirname}`)
}
const { SyncEngine } = require(loader)

const ITEMS = 'CREATE TABLE IF NOT EXISTS items(id TEXT PRIMARY KEY, origin TEXT, n INTEGER)'

async function main() {
  const [command, db, ...args] = process.argv.slice(2)
  if (!db) fail('usage: net-client.js init|write|sync|ids|hash DB ...', 2)
  const e = new SyncEngine(db)
  try {
    switch (command) {
      case 'init':
        e.executeBatch(ITEMS)
        e.enableSync('items')
        break
      case 'write': {
        const [prefix, n] = args
        for (let i = 1; i <= Number(n); i++) e.execute('INSERT INTO items(id, origin, n) VALUES (?, ?, ?)', [`${prefix}-${i}`, 'node', i])
        break
      }
      case 'sync': {
        const [url, token] = args
        try {
          const report = await e.sync(url, { token })
          process.stdout.write(JSON.stringify(report) + '\n')
        } catch (err) {
          process.stdout.write(JSON.stringify({ code: err.code, message: err.message }) + '\n')
          process.exitCode = 3
        }
        break
      }
      case 'ids':
        process.stdout.write(JSON.stringify(e.query('SELECT id FROM items ORDER BY id').rows.map((r) => r[0])) + '\n')
        break
      case 'hash':
        process.stdout.write(e.stateHash() + '\n')
        break
      default:
        fail(`unknown command ${command}`, 2)
    }
  } finally {
    e.close()
  }
}

main().catch((err) => fail(`${err.code || ''} ${err.stack || err}`))
