'use strict'
// The package's entry point: the generated N-API loader (native.js, `npm run build`) plus the
// things only JavaScript can do: name the file this addon was loaded from (it is also the
// SQLite extension that better-sqlite3 or node:sqlite loads), `require` better-sqlite3, the
// driver that hosts the SQLite library when an engine opens before any database was attached,
// and adapt bundle files to Node streams (`exportStream`, `importStream`).
const fs = require('node:fs')
const path = require('node:path')
const { Readable } = require('node:stream')
const { pipeline } = require('node:stream/promises')
const native = require('./native.js')

native.__setDefaultDriver(() => require('better-sqlite3'))

module.exports = native
/** The path to give a SQLite driver's `loadExtension` (entry point `sqlite3_syncline_init`). */
module.exports.extensionPath = native.__extensionPath()
/** The extension's entry point. */
module.exports.entryPoint = 'sqlite3_syncline_init'

// -- streams: the core reads and writes bundle files; these copy between a file and a stream --

/** Bytes copied at a time between a stream and the temporary bundle file. */
const CHUNK = 1 << 20

/** An `Error` with `code: 'InvalidArgument'`, as the addon throws for bad arguments. */
function invalidArgument(message) {
  const err = new Error(message)
  err.code = 'InvalidArgument'
  return err
}

/**
 * A private (0700) temporary folder beside the engine's database, on its disk rather than in
 * the system temp folder (which may live in memory); the caller removes it.
 */
function temporaryFolder(engine) {
  return fs.promises.mkdtemp(path.join(path.dirname(path.resolve(engine.path)), '.syncline-'))
}

function removeFolder(dir) {
  return fs.promises.rm(dir, { recursive: true, force: true })
}

/**
 * The bundle for `options.peer` (everything without one) as a byte stream. The export starts
 * when the stream is first read: the core writes it to a temporary file (`writeBundle`: the
 * bundle is never whole in memory), which is streamed 1 MiB at a time and deleted when the
 * stream ends, fails or is destroyed. A failure (e.g. `Closed`, `InvalidArgument`) is the
 * stream's 'error'. `options` as in `writeBundle` (`peer`, `compress`, `onProgress`).
 */
native.SyncEngine.prototype.exportStream = function exportStream(options) {
  const engine = this
  async function* chunks() {
    const dir = await temporaryFolder(engine)
    try {
      const file = path.join(dir, 'bundle')
      await engine.writeBundle(file, options)
      yield* fs.createReadStream(file, { highWaterMark: CHUNK })
    } finally {
      await removeFolder(dir)
    }
  }
  return Readable.from(chunks(), { objectMode: false, highWaterMark: CHUNK })
}

/** Passes chunks of bytes on; anything else (text from a stream with an encoding) is refused. */
async function* onlyBytes(source) {
  for await (const chunk of source) {
    if (!(chunk instanceof Uint8Array)) {
      throw invalidArgument(
        `importStream expects a stream of bytes (Buffer/Uint8Array chunks), got a chunk of type ${typeof chunk}` +
          (typeof chunk === 'string' ? ' (was an encoding set on the stream?)' : '')
      )
    }
    yield chunk
  }
}

/**
 * Import a bundle read from `source` (a Readable, e.g. `fs.createReadStream` or an HTTP
 * response, or any async iterable of `Uint8Array` chunks) to its end. The bytes are copied
 * into a temporary file beside the database, imported from there (`importBundle(path)`: never
 * whole in memory) and deleted. Rejects with `InvalidArgument` for something that is not a
 * byte stream (nothing imported), with the stream's own error if it fails, else as
 * `importBundle`. `options` as in `importBundle` (`onProgress`).
 */
native.SyncEngine.prototype.importStream = async function importStream(source, options) {
  const readable =
    source !== null &&
    typeof source === 'object' &&
    (typeof source.pipe === 'function' || typeof source[Symbol.asyncIterator] === 'function') &&
    !(source instanceof Uint8Array)
  if (!readable) {
    throw invalidArgument('importStream expects a readable stream of bytes (or an async iterable of Uint8Array chunks)')
  }
  const dir = await temporaryFolder(this)
  try {
    const file = path.join(dir, 'bundle')
    await pipeline(source, onlyBytes, fs.createWriteStream(file, { highWaterMark: CHUNK }))
    return await this.importBundle(file, options)
  } finally {
    await removeFolder(dir)
  }
}
