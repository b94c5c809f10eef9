'use strict'
// The package's entry point: the generated N-API loader (native.js, `npm run build`) plus the
// two things only JavaScript can do: name the file this addon was loaded from (it is also the
// SQLite extension that better-sqlite3 or node:sqlite loads) and `require` better-sqlite3, the
// driver that hosts the SQLite library when an engine opens before any database was attached.
const native = require('./native.js')

native.__setDefaultDriver(() => require('better-sqlite3'))

module.exports = native
/** The path to give a SQLite driver's `loadExtension` (entry point `sqlite3_syncline_init`). */
module.exports.extensionPath = native.__extensionPath()
/** The extension's entry point. */
module.exports.entryPoint = 'sqlite3_syncline_init'
