// The package's types: everything the addon exports (native.d.ts, generated from the Rust code
// by `npm run build`) and the two constants index.js adds.
export * from './native'

/**
 * The absolute path of this addon. It is also a SQLite loadable extension: any driver can load
 * it with `db.loadExtension(extensionPath, entryPoint)` (SyncEngine.attach does), which binds
 * the engines of this process to that driver's SQLite and gives the connection the `syncline_*`
 * SQL functions (spec/sql-functions.md).
 */
export declare const extensionPath: string

/** The extension's entry point, `'sqlite3_syncline_init'`. */
export declare const entryPoint: 'sqlite3_syncline_init'
