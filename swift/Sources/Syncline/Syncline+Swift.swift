// The idiomatic Swift layer over the generated bindings (Syncline.swift). It only adapts:
// value literals, closures for callbacks, AsyncStream for events, and the platform's SQLite
// wiring on open (`SyncEngine.open`, below). All behaviour is in the core.
// Network sync needs nothing here: `SyncEngine.sync(url:token:)` is generated `async` (a UniFFI
// async export whose blocking core pass runs on a native thread), `startSync(url:token:options:)`
// returns a `SyncHandle` at once (`status()`, `syncNow()`, `stop()`).

import Foundation

// MARK: - Values

/// `Value` literals: `try db.execute(sql: "INSERT ...", params: [1, "milk", 2.5, nil, .blob(data)])`.
extension Value: ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByStringLiteral,
    ExpressibleByNilLiteral, ExpressibleByBooleanLiteral
{
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .real(value) }
    public init(stringLiteral value: String) { self = .text(value) }
    public init(nilLiteral: ()) { self = .null }
    /// SQLite has no booleans: `true` is the integer 1, `false` 0.
    public init(booleanLiteral value: Bool) { self = .integer(value ? 1 : 0) }

    public init(_ value: Int64) { self = .integer(value) }
    public init(_ value: Int) { self = .integer(Int64(value)) }
    public init(_ value: Double) { self = .real(value) }
    public init(_ value: String) { self = .text(value) }
    public init(_ value: Data) { self = .blob(value) }
    public init(_ value: [UInt8]) { self = .blob(Data(value)) }

    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var int64Value: Int64? { if case let .integer(v) = self { return v } else { return nil } }
    public var doubleValue: Double? { if case let .real(v) = self { return v } else { return nil } }
    public var stringValue: String? { if case let .text(v) = self { return v } else { return nil } }
    public var dataValue: Data? { if case let .blob(v) = self { return v } else { return nil } }
}

// MARK: - Errors

extension SynclineError {
    /// The stable code of the error kind (`"InvalidBundle"`, `"Resolver"`, ...), as in every binding.
    public var code: String {
        switch self {
        case .InvalidBundle: return "InvalidBundle"
        case .SchemaMismatch: return "SchemaMismatch"
        case .UnknownTable: return "UnknownTable"
        case .UnknownColumn: return "UnknownColumn"
        case .ClockDrift: return "ClockDrift"
        case .SiteIdClash: return "SiteIdClash"
        case .Resolver: return "Resolver"
        case .NotFound: return "NotFound"
        case .InvalidArgument: return "InvalidArgument"
        case .Reentrant: return "Reentrant"
        case .Closed: return "Closed"
        case .Io: return "Io"
        case .Sqlite: return "Sqlite"
        case .Network: return "Network"
        case .Auth: return "Auth"
        case .SqliteLibrary: return "SqliteLibrary"
        case .Corrupt: return "Corrupt"
        case .NeedsSnapshot: return "NeedsSnapshot"
        case .Other: return "Other"
        }
    }

    /// The core's message.
    public var message: String {
        switch self {
        case let .InvalidBundle(m), let .SchemaMismatch(m), let .UnknownTable(m), let .UnknownColumn(m),
            let .ClockDrift(m), let .SiteIdClash(m), let .Resolver(m), let .NotFound(m), let .InvalidArgument(m),
            let .Reentrant(m), let .Closed(m), let .Io(m), let .Sqlite(m), let .Network(m), let .Auth(m),
            let .SqliteLibrary(m), let .Corrupt(m), let .NeedsSnapshot(m), let .Other(m):
            return m
        }
    }
}

// MARK: - SQLite wiring

/// Bind the platform's system SQLite (the core's choice, `platformSqlite()`:
/// `/usr/lib/libsqlite3.dylib` on Apple platforms, `libsqlite3.so.0` on Linux), the library GRDB,
/// SQLite.swift and Core Data run on, unless the app bound a library already
/// (`bindSqliteLibrary(path:)`). `SyncEngine.open` calls it; a platform with no system SQLite
/// for apps binds nothing (opening then fails with `SynclineError.SqliteLibrary`, saying why).
public func usePlatformSqlite() throws {
    if boundSqliteLibrary() != nil { return }
    guard let path = platformSqlite() else { return }
    try bindSqliteLibrary(path: path)
}

/// Adapts a closure to `SqliteDriverProbe`; a non-Syncline error it throws becomes `.Sqlite`.
public final class ClosureProbe: SqliteDriverProbe, @unchecked Sendable {
    private let body: @Sendable (Int64) throws -> Void
    public init(_ body: @escaping @Sendable (Int64) throws -> Void) { self.body = body }
    public func setSoftHeapLimit(limit: Int64) throws {
        do { try body(limit) } catch let e as SynclineError { throw e } catch {
            throw SynclineError.Sqlite(message: "the driver failed: \(error)")
        }
    }
}

/// Prove that your SQLite driver and Syncline share one SQLite library: `run` must execute its
/// SQL argument (`PRAGMA soft_heap_limit = N`) on one of the driver's connections, e.g.
/// `try checkSharedSqlite { sql in try db.execute(sql: sql) }` with GRDB. Throws
/// `SynclineError.SqliteLibrary` if the driver runs on another SQLite copy.
public func checkSharedSqlite(_ run: @escaping @Sendable (String) throws -> Void) throws {
    try checkSharedSqlite(probe: ClosureProbe { limit in try run("PRAGMA soft_heap_limit = \(limit)") })
}

extension SyncEngine {
    /// Open (or create) a database file on the platform's system SQLite (`usePlatformSqlite()`)
    /// or on the library the app bound before; `options`: none for the core's defaults.
    public static func open(path: String, options: EngineOptions? = nil) throws -> SyncEngine {
        try usePlatformSqlite()
        return try openBound(path: path, options: options)
    }
}

/// Start a new device from the snapshot of the server at `url` (`GET /v1/snapshot`): download it
/// to `path`, a new file, on the platform's SQLite or the one bound before (as `SyncEngine.open`);
/// returns its size in bytes. `progress` gets (bytes, total bytes) as it arrives (total 0 if the
/// server did not say), on the download's thread. Then `SyncEngine.open(path:)` and
/// `sync(url:token:)`: the first pass carries only what changed since. Throws `.InvalidArgument`
/// if `path` exists, `.Auth`, `.Network`, `.InvalidBundle`; nothing is left at `path` after an error.
public func cloneSnapshot(url: String, path: String, token: String? = nil, progress: ProgressListener? = nil)
    async throws -> UInt64
{
    try usePlatformSqlite()
    return try await cloneSnapshotBound(url: url, path: path, token: token, progress: progress)
}

// MARK: - Options

extension EngineOptions {
    /// The core's defaults (`defaultEngineOptions()`) with the given fields changed.
    public static func defaults(
        maxDriftMs: UInt64? = nil, busyTimeoutMs: UInt64? = nil, watchIntervalMs: UInt64? = nil, create: Bool? = nil
    ) -> EngineOptions {
        var o = defaultEngineOptions()
        if let maxDriftMs { o.maxDriftMs = maxDriftMs }
        if let busyTimeoutMs { o.busyTimeoutMs = busyTimeoutMs }
        if let watchIntervalMs { o.watchIntervalMs = watchIntervalMs }
        if let create { o.create = create }
        return o
    }
}

extension SyncOptions {
    /// The core's defaults (`defaultSyncOptions()`) with the given fields changed.
    public static func defaults(
        intervalMs: UInt64? = nil, maxBackoffMs: UInt64? = nil, live: Bool? = nil, pageRows: UInt64? = nil,
        timeoutMs: UInt64? = nil
    ) -> SyncOptions {
        var o = defaultSyncOptions()
        if let intervalMs { o.intervalMs = intervalMs }
        if let maxBackoffMs { o.maxBackoffMs = maxBackoffMs }
        if let live { o.live = live }
        if let pageRows { o.pageRows = pageRows }
        if let timeoutMs { o.timeoutMs = timeoutMs }
        return o
    }
}

// MARK: - Callbacks as closures

/// Adapts a closure to `ConflictResolver`.
public final class ClosureResolver: ConflictResolver, @unchecked Sendable {
    private let body: @Sendable (ConflictInput) throws -> Resolution
    public init(_ body: @escaping @Sendable (ConflictInput) throws -> Resolution) { self.body = body }
    public func resolve(conflict: ConflictInput) throws -> Resolution { try body(conflict) }
}

/// Adapts a closure to `EventObserver`.
public final class ClosureObserver: EventObserver, @unchecked Sendable {
    private let body: @Sendable (Event) -> Void
    public init(_ body: @escaping @Sendable (Event) -> Void) { self.body = body }
    public func onEvent(event: Event) throws { body(event) }
}

/// Adapts a closure to `ProgressListener`: `try db.generateBundle(progress: ClosureProgress { done, total in ... })`.
/// Throwing stops the calls; the engine call then throws that error once it is done.
public final class ClosureProgress: ProgressListener, @unchecked Sendable {
    private let body: @Sendable (UInt64, UInt64) throws -> Void
    public init(_ body: @escaping @Sendable (UInt64, UInt64) throws -> Void) { self.body = body }
    public func onProgress(done: UInt64, total: UInt64) throws { try body(done, total) }
}

extension SyncEngine {
    /// Register a closure as the resolver of a `custom` table. It must be deterministic and
    /// symmetric in (local, remote); throwing aborts the import with nothing applied.
    public func setResolver(table: String, _ resolve: @escaping @Sendable (ConflictInput) throws -> Resolution) {
        setResolver(table: table, resolver: ClosureResolver(resolve))
    }

    /// Call `handler` for every event (on the engine's threads) until the subscription is closed.
    public func subscribe(_ handler: @escaping @Sendable (Event) -> Void) throws -> Subscription {
        try subscribe(observer: ClosureObserver(handler))
    }

    /// Events as an `AsyncStream`; the subscription ends when the stream's consumer stops.
    public func events() throws -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        let subscription = try subscribe { continuation.yield($0) }
        continuation.onTermination = { _ in subscription.close() }
        return stream
    }

    /// Run one statement with its parameters: `try db.execute("INSERT INTO t VALUES (?, ?)", 1, "milk")`.
    @discardableResult
    public func execute(_ sql: String, _ params: Value...) throws -> UInt64 {
        try execute(sql: sql, params: params)
    }

    /// The rows of a query as arrays of values (the column names are in `query(sql:params:)`).
    public func rows(_ sql: String, _ params: [Value] = []) throws -> [[Value]] {
        try query(sql: sql, params: params).rows
    }
}
