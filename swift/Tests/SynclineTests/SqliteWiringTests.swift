import CSQLite
import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

@testable import Syncline

struct CError: Error { let message: String }

/// One connection of a second SQLite client in this process: the system SQLite's C API
/// directly, as GRDB and SQLite.swift use it.
final class CConnection: @unchecked Sendable {
    private var db: OpaquePointer?

    init(_ path: String) throws {
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else {
            defer { sqlite3_close_v2(db) }
            throw CError(message: "open \(path): \(String(cString: sqlite3_errmsg(db)))")
        }
        sqlite3_busy_timeout(db, 5000)
    }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &err) != SQLITE_OK {
            let message = err.map { String(cString: $0) } ?? "error"
            sqlite3_free(err)
            throw CError(message: "\(sql): \(message)")
        }
    }

    func int(_ sql: String) throws -> Int64 {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else {
            throw CError(message: "\(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(stmt) }
        guard sqlite3_step(stmt) == SQLITE_ROW else { throw CError(message: "\(sql): no row") }
        return sqlite3_column_int64(stmt, 0)
    }

    func close() {
        sqlite3_close_v2(db)
        db = nil
    }

    deinit { if db != nil { sqlite3_close_v2(db) } }
}

/// Syncline runs inside the system SQLite that the app's own driver uses: one SQLite per process
/// (issue 13). The second client here writes through the C API while the engines run, opening and
/// closing its connections between syncs.
final class SqliteWiringTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-swift-wiring-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func testSynclineRunsOnThePlatformSqliteThatTheCApiUses() throws {
        let e = try SyncEngine.open(path: path("a.db"))
        #if os(Linux)
            XCTAssertEqual(platformSqlite(), "libsqlite3.so.0")
        #else
            XCTAssertEqual(platformSqlite(), "/usr/lib/libsqlite3.dylib")
        #endif
        guard let lib = boundSqliteLibrary() else { return XCTFail("nothing bound after open") }
        XCTAssertTrue(lib.origin.contains("libsqlite3"), lib.origin)
        let version = String(cString: sqlite3_libversion())
        XCTAssertEqual(lib.version, version)
        XCTAssertEqual(try e.rows("SELECT sqlite_version()"), [[.text(version)]])
        try usePlatformSqlite()  // again: a no-op
        XCTAssertEqual(boundSqliteLibrary(), lib)
        // The app's driver and the engine share one library.
        let app = try CConnection(":memory:")
        try checkSharedSqlite { sql in try app.exec(sql) }
        // The probe's own failure is reported as such.
        expectError("Sqlite") { try checkSharedSqlite { _ in throw CError(message: "driver down") } }
    }

    func testACApiClientWritesWhileSynclineRunsAndTheReplicasConverge() throws {
        let paths = [path("a.db"), path("b.db")]
        let engines = try paths.map { p -> SyncEngine in
            let e = try SyncEngine.open(path: p, options: .defaults(watchIntervalMs: 10))
            try e.executeBatch(sql: todosSchema)
            try e.enableSync(table: "todos", strategy: .manual)
            return e
        }
        let (a, b) = (engines[0], engines[1])
        func sync(_ from: SyncEngine, _ to: SyncEngine) throws {
            _ = try to.importBundle(bundle: from.generateBundle(peer: to.siteId()))
        }
        let events = Box<Event>()
        let sub = try a.subscribe { events.append($0) }
        defer { sub.close() }
        let kept = try CConnection(paths[1])  // one connection stays open the whole time
        for round in 0..<4 {
            for (i, p) in paths.enumerated() {
                let c = try CConnection(p)  // opened and closed between syncs
                try c.exec("INSERT INTO todos(id, title) VALUES ('r\(round)-\(i)', 'c api')")
                try c.exec("UPDATE todos SET n = \(round) WHERE id LIKE 'r%'")
                c.close()
            }
            try kept.exec("INSERT INTO todos(id, title) VALUES ('k\(round)', 'kept')")
            try sync(a, b)
            try sync(b, a)
        }
        for p in paths {
            let c = try CConnection(p)
            XCTAssertEqual(try c.int("SELECT count(*) FROM todos"), 12)
            XCTAssertEqual(try c.int("SELECT count(*) FROM todos WHERE n = 3"), 8)
            XCTAssertEqual(try c.int("SELECT count(*) FROM _syncline_queue"), 0)
            c.close()
        }
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
        // The engine saw the C API's writes as local changes.
        XCTAssertTrue(waitUntil { events.all.contains { $0.kind == .local && $0.pk == ["r3-0"] } }, "\(events.all.count) events")

        // A manual conflict between the two C API clients records and resolves.
        let ca = try CConnection(paths[0])
        try ca.exec("UPDATE todos SET title = 'from a' WHERE id = 'k0'")
        ca.close()
        try kept.exec("UPDATE todos SET title = 'from b' WHERE id = 'k0'")
        try sync(b, a)
        let open = try a.conflicts()
        XCTAssertEqual(open.map(\.column), ["title"])
        guard let id = open.first?.id else { return XCTFail("no conflict recorded") }
        XCTAssertEqual(open[0].local.value, "from a")
        XCTAssertEqual(open[0].remote.value, "from b")
        try a.resolve(id: id, resolution: .remote)
        XCTAssertEqual(try a.conflicts().count, 0)
        try sync(a, b)
        try sync(b, a)
        for p in paths {
            let c = try CConnection(p)
            XCTAssertEqual(try c.int("SELECT count(*) FROM todos WHERE id = 'k0' AND title = 'from b'"), 1)
            c.close()
        }
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
        kept.close()
        XCTAssertEqual(try a.status().peers.map(\.pending), [0])
    }

    func testASecondSqliteCopyIsRefused() throws {
        let e = try SyncEngine.open(path: path("a.db"))
        guard let origin = boundSqliteLibrary()?.origin else { return XCTFail("nothing bound") }
        // The same library under another file name is another SQLite copy.
        let real = URL(fileURLWithPath: origin).resolvingSymlinksInPath().path
        let copy = path("libsqlite3-copy.so")
        try FileManager.default.copyItem(atPath: real, toPath: copy)
        expectError("SqliteLibrary") { try bindSqliteLibrary(path: copy) }
        expectError("SqliteLibrary") { try bindSqliteLibrary(path: self.path("no-such-library.so")) }
        // A driver on that copy fails the check, whatever it sets.
        guard let handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL), let sym = dlsym(handle, "sqlite3_soft_heap_limit64") else {
            return XCTFail("cannot load the copy")
        }
        typealias SoftHeapLimit = @convention(c) (Int64) -> Int64
        nonisolated(unsafe) let setOnCopy = unsafeBitCast(sym, to: SoftHeapLimit.self)
        expectError("SqliteLibrary") { try checkSharedSqlite(probe: ClosureProbe { n in _ = setOnCopy(n) }) }
        // So does a driver that runs nothing.
        expectError("SqliteLibrary") { try checkSharedSqlite { _ in } }
        // The engine still runs on the bound library.
        XCTAssertEqual(boundSqliteLibrary()?.origin, origin)
        XCTAssertEqual(try e.rows("SELECT 1"), [[1]])
    }
}
