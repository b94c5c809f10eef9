// The idiomatic Swift layer over the generated bindings (Syncline.swift). It only adapts:
// value literals, closures for callbacks, AsyncStream for events. All behaviour is in the core.
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
        case .Other: return "Other"
        }
    }

    /// The core's message.
    public var message: String {
        switch self {
        case let .InvalidBundle(m), let .SchemaMismatch(m), let .UnknownTable(m), let .UnknownColumn(m),
            let .ClockDrift(m), let .SiteIdClash(m), let .Resolver(m), let .NotFound(m), let .InvalidArgument(m),
            let .Reentrant(m), let .Closed(m), let .Io(m), let .Sqlite(m), let .Network(m), let .Auth(m),
            let .Other(m):
            return m
        }
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
