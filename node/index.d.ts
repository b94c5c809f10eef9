// The package's types: everything the addon exports (native.d.ts, generated from the Rust code
// by `npm run build`) and what index.js adds: two constants and the stream methods.
import type { Readable } from 'node:stream'
import type { BundleOptions, ImportOptions, ImportReport } from './native'

export * from './native'

declare module './native' {
  interface SyncEngine {
    /**
     * The bundle for `options.peer` (everything without one) as a byte stream. The export
     * starts when the stream is first read: the core writes it to a temporary file beside the
     * database (never whole in memory), streamed 1 MiB at a time and deleted when the stream
     * ends, fails or is destroyed. A failure (`Closed`, `InvalidArgument`, ...) is the
     * stream's 'error'.
     */
    exportStream(options?: BundleOptions): Readable
    /**
     * Import a bundle read from `source` (a Readable such as `fs.createReadStream(...)` or an
     * HTTP response, or any async iterable of `Uint8Array` chunks) to its end, through a
     * temporary file beside the database (never whole in memory). Rejects with code
     * `InvalidArgument` for something that is not a byte stream (nothing imported), with the
     * stream's own error if it fails, else as `importBundle`.
     */
    importStream(source: NodeJS.ReadableStream | AsyncIterable<Uint8Array>, options?: ImportOptions): Promise<ImportReport>
  }
}

/**
 * The absolute path of this addon. It is also a SQLite loadable extension: any driver can load
 * it with `db.loadExtension(extensionPath, entryPoint)` (SyncEngine.attach does), which binds
 * the engines of this process to that driver's SQLite and gives the connection the `syncline_*`
 * SQL functions (spec/sql-functions.md).
 */
export declare const extensionPath: string

/** The extension's entry point, `'sqlite3_syncline_init'`. */
export declare const entryPoint: 'sqlite3_syncline_init'
