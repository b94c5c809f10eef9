// The hub's admin page in a real browser (Debian's chromium, headless, driven by
// playwright-core): sign in with the admin token, see a device appear after a client syncs,
// resolve a manual-strategy conflict, and see the resolution reach a client.
// Run by test.sh: node test.js CLI CHROMIUM
'use strict'
const { chromium } = require('playwright-core')
const { spawn, execFileSync } = require('node:child_process')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const [cli, browserPath] = process.argv.slice(2)
const ADMIN = 'admin-' + Math.random().toString(36).slice(2)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'syncline-admin-'))
const run = (...args) => execFileSync(cli, args, { encoding: 'utf8' })
const sql = (db, statement) => execFileSync('sqlite3', [db, statement], { encoding: 'utf8' }).trim()
const SCHEMA = 'CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT);'

function client(name) {
  const db = path.join(dir, `${name}.db`)
  sql(db, SCHEMA)
  run('init', db, '--table', 'todos')
  return { db, site: JSON.parse(run('site-id', db, '--json')).site_id }
}

async function startServer(hub) {
  const child = spawn(cli, ['serve', '--hub', hub, '--port', '0', '--admin-token', ADMIN], {
    stdio: ['ignore', 'pipe', fs.openSync(path.join(dir, 'server.log'), 'w')],
  })
  const first = await new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', resolve)
    child.once('exit', (code) => reject(new Error(`syncline serve exited with ${code}`)))
  })
  return { child, url: first.replace('listening on ', '').trim() }
}

async function main() {
  const hub = path.join(dir, 'hub')
  fs.writeFileSync(path.join(dir, 'schema.sql'), SCHEMA)
  run('hub', 'create', '--dir', hub, 'team', '--schema', path.join(dir, 'schema.sql'), '--table', 'todos', '--strategy', 'manual')
  const token = JSON.parse(run('hub', 'token', '--dir', hub, 'team', '--json')).token
  const { child, url } = await startServer(hub)
  const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] })
  try {
    const page = await browser.newPage()
    const errors = []
    page.on('pageerror', (e) => errors.push(e.message))
    // (the browser logs the deliberate wrong-token attempt's 401 as a failed resource)
    page.on('console', (m) => m.type() === 'error' && !/status of 401/.test(m.text()) && errors.push(m.text()))
    await page.goto(`${url}/admin`)

    // A wrong token is refused, the right one signs in (the field is found by its label).
    await page.getByLabel('Admin token').fill('wrong')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByText('That token was refused.').waitFor()
    await page.getByLabel('Admin token').fill(ADMIN)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('button', { name: 'team' }).click()
    await page.getByRole('heading', { name: 'Namespace team' }).waitFor()
    console.log('ok - signed in, namespace team listed')

    // A client syncs: its device appears (the page refreshes every 2 s).
    const a = client('a')
    sql(a.db, "INSERT INTO todos VALUES (1, 'first');")
    run('sync', a.db, url, '--token', token)
    await page.getByRole('table', { name: 'Devices' }).getByText(a.site).waitFor({ timeout: 15000 })
    console.log('ok - device appears after a client syncs')

    // Two clients change one cell concurrently: the manual-strategy server holds a conflict.
    const b = client('b')
    run('sync', b.db, url, '--token', token)
    sql(a.db, "UPDATE todos SET title = 'from a' WHERE id = 1;")
    sql(b.db, "UPDATE todos SET title = 'from b' WHERE id = 1;")
    run('sync', a.db, url, '--token', token)
    run('sync', b.db, url, '--token', token)
    const conflicts = page.getByRole('table', { name: 'Open conflicts' })
    await conflicts.getByText('"from b"').waitFor({ timeout: 15000 })
    await conflicts.getByRole('button', { name: /Keep incoming value/ }).click()
    await page.getByText(/Conflict \d+ resolved\./).waitFor()
    // the page also refreshes on a timer: wait for the table rather than race it
    await page.waitForFunction(() => document.querySelectorAll('#conflicts tbody button').length === 0, null, { timeout: 15000 })
    console.log('ok - conflict resolved from the page')

    // The resolution is a change like any other: it reaches the clients.
    run('sync', a.db, url, '--token', token)
    assert.equal(sql(a.db, 'SELECT title FROM todos WHERE id = 1;'), 'from b')
    console.log('ok - the resolution reaches a client')
    assert.deepEqual(errors, [], 'no script errors on the page')
  } finally {
    await browser.close()
    child.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().then(() => console.log('admin page: 4 passed'), (e) => {
  console.error(e)
  process.exit(1)
})
