'use strict'
// Snapshots for new devices: a copy without the source's site id, re-keyed on first open,
// whose first exchange carries only the changes since (spec/sync-protocol.md, Snapshots).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const h = require('./helpers')

test('a device starts from a snapshot and catches up with the delta only', async (t) => {
  const dir = h.tmpdir(t)
  const a = h.replica(t, dir, 'a')
  for (let i = 0; i < 200; i++) a.execute('INSERT INTO todos(id, title) VALUES (?, ?)', [i, `todo ${i}`])
  const file = path.join(dir, 'device.db')
  a.snapshot(file)
  h.throwsCode(() => a.snapshot(file), 'InvalidArgument')
  const d = new h.syncline.SyncEngine(file)
  t.after(() => d.close())
  assert.notEqual(d.siteId, a.siteId)
  assert.deepEqual(h.rows(d), h.rows(a))
  a.execute("INSERT INTO todos(id, title) VALUES (1000, 'after the snapshot')")
  await h.sync(d, a) // the device speaks first: the source learns what it holds
  const report = await h.sync(a, d)
  assert.equal(report.rows, 1)
  h.assertConverged(a, d)
})
