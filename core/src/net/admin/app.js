// The hub's admin page: signs in with the admin token (kept in this tab's sessionStorage and
// sent as a bearer token, never as a cookie), lists namespaces, a namespace's devices and open
// conflicts, and resolves a conflict. Everything from the server is shown with textContent.
'use strict'
const $ = (id) => document.getElementById(id)
let current = null

function say(text) { $('message').textContent = text }

async function api(path, options = {}) {
  const token = sessionStorage.getItem('syncline-admin')
  const answer = await fetch(path, { ...options, headers: { ...(options.headers || {}), authorization: `Bearer ${token}` } })
  if (answer.status === 401) { signOut('That token was refused.'); throw new Error('unauthorized') }
  const body = await answer.json()
  if (!answer.ok) throw new Error(body.message || answer.statusText)
  return body
}

function cell(row, text, code) {
  const td = row.insertCell()
  if (code) { const c = document.createElement('code'); c.textContent = text; td.append(c) } else td.textContent = text
  return td
}

function show(value) { return value === null ? 'NULL' : JSON.stringify(value) }

async function namespaces() {
  const { namespaces } = await api('/admin/api/namespaces')
  const list = $('namespaces')
  list.replaceChildren(...namespaces.map((name) => {
    const li = document.createElement('li')
    const b = document.createElement('button')
    b.type = 'button'
    b.textContent = name
    b.setAttribute('aria-current', String(name === current))
    b.addEventListener('click', () => { current = name; refresh() })
    li.append(b)
    return li
  }))
  if (current === null && namespaces.length) current = namespaces[0]
}

async function detail() {
  if (current === null) return
  const ns = await api(`/admin/api/ns/${encodeURIComponent(current)}`)
  $('detail').hidden = false
  $('detail-title').textContent = `Namespace ${ns.name}`
  const devices = $('devices').tBodies[0]
  devices.replaceChildren()
  for (const d of ns.devices) {
    const row = devices.insertRow()
    cell(row, d.site_id, true)
    cell(row, d.last_seen_ms ? new Date(d.last_seen_ms).toLocaleString() : 'never')
    cell(row, String(d.pending))
  }
  const conflicts = $('conflicts').tBodies[0]
  conflicts.replaceChildren()
  for (const c of ns.conflicts) {
    const row = conflicts.insertRow()
    cell(row, c.table)
    cell(row, c.pk.map(show).join(', '), true)
    cell(row, c.column)
    cell(row, show(c.local.value), true)
    cell(row, show(c.remote.value), true)
    const actions = row.insertCell()
    for (const [keep, label] of [['local', 'Keep server value'], ['remote', 'Keep incoming value']]) {
      const b = document.createElement('button')
      b.type = 'button'
      b.textContent = label
      b.setAttribute('aria-label', `${label} for ${c.table} ${c.pk.map(show).join(', ')} ${c.column}`)
      b.addEventListener('click', () => resolve(c.id, keep))
      actions.append(b)
    }
  }
}

async function resolve(id, keep) {
  try {
    await api(`/admin/api/ns/${encodeURIComponent(current)}/conflicts/${id}`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ keep }),
    })
    await refresh()
    say(`Conflict ${id} resolved.`) // announced once the table shows it
  } catch (e) { say(`Could not resolve conflict ${id}: ${e.message}`) }
}

async function refresh() {
  try { await namespaces(); await detail() } catch (e) { if (e.message !== 'unauthorized') say(e.message) }
}

function signOut(text) {
  sessionStorage.removeItem('syncline-admin')
  $('console').hidden = true
  $('login').hidden = false
  say(text || 'Signed out.')
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault()
  sessionStorage.setItem('syncline-admin', $('token').value)
  $('token').value = ''
  $('login').hidden = true
  $('console').hidden = false
  say('Signed in.')
  await refresh()
})
$('logout').addEventListener('click', () => signOut())
setInterval(() => { if (!$('console').hidden) refresh() }, 2000)
if (sessionStorage.getItem('syncline-admin')) { $('login').hidden = true; $('console').hidden = false; refresh() }
