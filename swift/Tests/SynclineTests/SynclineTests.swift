import Foundation
import XCTest

@testable import Syncline

let todosSchema = "CREATE TABLE IF NOT EXISTS todos(id TEXT PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0, n INTEGER, r REAL, data BLOB)"

final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ x: T) { lock.lock(); items.append(x); lock.unlock() }
    var all: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

func expectError(_ code: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected SynclineError.\(code), nothing was thrown", file: file, line: line)
    } catch let e as SynclineError {
        XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
        XCTAssertFalse(e.message.isEmpty, file: file, line: line)
    } catch {
        XCTFail("expected SynclineError.\(code), got \(error)", file: file, line: line)
    }
}

/// Wait until `cond` holds (events arrive on the engine's threads).
func waitUntil(_ seconds: Double = 5, _ cond: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if cond() { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    return cond()
}

final class SynclineTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-swift-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func open(_ name: String, _ options: EngineOptions? = nil) throws -> SyncEngine {
        try SyncEngine.open(path: dir.appendingPathComponent("\(name).db").path, options: options)
    }

    func replica(_ name: String, _ strategy: Strategy = .lww, options: EngineOptions? = nil) throws -> SyncEngine {
        let e = try open(name, options)
        try e.executeBatch(sql: todosSchema)
        try e.enableSync(table: "todos", strategy: strategy)
        return e
    }

    @discardableResult
    func sync(_ from: SyncEngine, _ to: SyncEngine) throws -> ImportReport {
        try to.importBundle(bundle: from.generateBundle(peer: to.siteId()))
    }

    func todos(_ e: SyncEngine) throws -> [[Value]] {
        try e.rows("SELECT id, title, done, n, r, data FROM todos ORDER BY id")
    }

    // MARK: open, site ids, helpers

    func testOpenSiteIdUuid7AndPath() throws {
        let e = try open("a", EngineOptions.defaults(maxDriftMs: 1000, busyTimeoutMs: 2000, watchIntervalMs: 50))
        XCTAssertTrue(e.path().hasSuffix("a.db"))
        let site = try e.siteId()
        XCTAssertEqual(site.count, 32)
        XCTAssertTrue(site.allSatisfy { $0.isHexDigit })
        let id = uuid7()
        XCTAssertEqual(id.count, 36)
        XCTAssertEqual(Array(id)[14], "7")
    }

    func testDefaultOptionsComeFromTheCore() throws {
        let d = defaultEngineOptions()
        XCTAssertEqual(d, EngineOptions(maxDriftMs: 300_000, busyTimeoutMs: 10_000, watchIntervalMs: 100, create: true))
        XCTAssertEqual(EngineOptions.defaults(maxDriftMs: 7), EngineOptions(maxDriftMs: 7, busyTimeoutMs: 10_000, watchIntervalMs: 100, create: true))
        XCTAssertEqual(defaultSyncOptions(), SyncOptions(intervalMs: 30_000, maxBackoffMs: 60_000, live: false, pageRows: 5000, timeoutMs: 60_000))
        // create: false is passed through (the core's NotFound, nothing created)
        expectError("NotFound") { _ = try self.open("missing", .defaults(create: false)) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("missing.db").path))
    }

    func testEveryCoreErrorKindHasItsOwnCase() throws {
        let kinds = errorKinds()
        XCTAssertEqual(kinds.map(\.code), errorCodes())
        XCTAssertTrue(kinds.map(\.code).contains("SqliteLibrary"))
        XCTAssertTrue(kinds.map(\.code).contains("Corrupt"))
        for k in kinds {
            XCTAssertFalse(k.description.isEmpty)
            guard let e = errorOfKind(code: k.code, message: "m") else { return XCTFail(k.code) }
            XCTAssertEqual(e.code, k.code)
            XCTAssertEqual(e.message, "m")
        }
        XCTAssertNil(errorOfKind(code: "NoSuchKind", message: "m"))
    }

    func testResetAndSetSiteId() throws {
        let e = try replica("a")
        let first = try e.siteId()
        let second = try e.resetSiteId()
        XCTAssertNotEqual(first, second)
        XCTAssertEqual(try e.siteId(), second)
        let chosen = "00112233445566778899aabbccddeeff"
        XCTAssertEqual(try e.setSiteId(siteId: chosen), chosen)
        XCTAssertEqual(try e.siteId(), chosen)
        expectError("InvalidArgument") { _ = try e.setSiteId(siteId: "not hex") }
        expectError("InvalidArgument") { _ = try e.generateBundle(peer: "abc") }
    }

    // MARK: sync of every value type

    func testRoundTripOfEveryValueTypeAndIdempotence() throws {
        let a = try replica("a")
        let b = try replica("b")
        let blob = Data([0, 1, 2, 0xfe, 0xff])
        try a.execute("INSERT INTO todos(id, title, done, n, r, data) VALUES (?, ?, ?, ?, ?, ?)",
                      "max", "héllo ✓ 日本", true, .integer(Int64.max), 1.5, .blob(blob))
        try a.execute("INSERT INTO todos(id, title, n, r, data) VALUES (?, ?, ?, ?, ?)",
                      "min", nil, .integer(Int64.min), -0.0, .blob(Data()))
        let n = try a.execute(sql: "UPDATE todos SET done = 0 WHERE id = ?", params: ["min"])
        XCTAssertEqual(n, 1)
        let report = try b.importBundle(bundle: a.generateBundle())
        XCTAssertGreaterThan(report.applied, 0)
        XCTAssertEqual(report.sender, try a.siteId())
        XCTAssertEqual(report.rows, 2)
        XCTAssertEqual(try todos(b), try todos(a))
        let rows = try todos(b)
        XCTAssertEqual(rows[0][3].int64Value, Int64.max)
        XCTAssertEqual(rows[1][3].int64Value, Int64.min)
        XCTAssertEqual(rows[0][5].dataValue, blob)
        XCTAssertEqual(rows[0][1].stringValue, "héllo ✓ 日本")
        XCTAssertTrue(rows[1][1].isNull)
        // (SQLite itself may store -0.0 as 0 in a REAL column: compare bits with the source)
        XCTAssertEqual(rows[1][4].doubleValue?.bitPattern, try todos(a)[1][4].doubleValue?.bitPattern)
        // the same bundle again changes nothing
        let again = try b.importBundle(bundle: a.generateBundle())
        XCTAssertEqual(again.applied, 0)
        XCTAssertEqual(again.alreadyKnown, report.applied)
        // compressed bundles import the same
        let c = try replica("c")
        let packed = try a.generateBundle(peer: nil, compress: true)
        XCTAssertEqual(try c.importBundle(bundle: packed).applied, report.applied)
        XCTAssertEqual(try todos(c), try todos(a))
        // a peer-specific bundle carries only what the peer lacks
        XCTAssertEqual(try b.importBundle(bundle: a.generateBundle(peer: b.siteId())).applied, 0)
        let q = try a.query(sql: "SELECT count(*) AS n FROM todos WHERE done = ?", params: [1])
        XCTAssertEqual(q.columns, ["n"])
        XCTAssertEqual(q.rows, [[1]])
    }

    func testWriteBundleImportBundleFileAndStatus() throws {
        let a = try replica("a", .manual)
        let b = try replica("b")
        try a.execute("INSERT INTO todos(id, title) VALUES ('1', 'milk'), ('2', 'eggs')")
        let file = dir.appendingPathComponent("a.bundle").path
        let stats = try a.writeBundle(path: file)
        XCTAssertEqual(stats.rows, 2)
        XCTAssertGreaterThan(stats.bytes, 0)
        XCTAssertEqual(Int(stats.bytes), try Data(contentsOf: URL(fileURLWithPath: file)).count)
        let report = try b.importBundleFile(path: file)
        XCTAssertEqual(report.rows, 2)
        let st = try a.status()
        XCTAssertEqual(st.siteId, try a.siteId())
        XCTAssertEqual(st.tables, [TableStatus(name: "todos", strategy: .manual, rows: 2)])
        XCTAssertEqual(st.unresolvedConflicts, 0)
        XCTAssertEqual(st.rejected, 0)
        XCTAssertEqual(st.quarantined, 0)
        XCTAssertEqual(report.quarantined, 0)
        XCTAssertEqual(report.released, 0)
        XCTAssertEqual(st.versionVector.map(\.siteId), [try a.siteId()])
        let sb = try b.status()
        XCTAssertEqual(sb.peers.map(\.siteId), [try a.siteId()])
        XCTAssertEqual(sb.tables.first?.rows, 2)
        // compressed, and for a peer whose state a knows (from b's bundle): nothing left to send
        let packed = dir.appendingPathComponent("packed.bundle").path
        XCTAssertEqual(try a.writeBundle(path: packed, compress: true).rows, 2)
        XCTAssertEqual(try replica("d").importBundleFile(path: packed).rows, 2)
        try sync(b, a)
        XCTAssertEqual(try a.writeBundle(path: packed, peer: b.siteId(), compress: true).rows, 0)
        // a manual clock drives new stamps
        let c = try replica("c")
        try c.setManualClock(ms: 4_000_000_000_000)
        try c.execute("INSERT INTO todos(id) VALUES ('t')")
        XCTAssertEqual(try c.status().hlc >> 16, 4_000_000_000_000)
        try c.setManualClock(ms: nil)
        expectError("Io") { _ = try b.importBundleFile(path: self.dir.appendingPathComponent("missing").path) }
    }

    // MARK: error paths

    func testCorruptTruncatedAndEmptyBundlesLeaveTheDatabaseUnchanged() throws {
        let a = try replica("a")
        let b = try replica("b")
        try a.execute("INSERT INTO todos(id, title) VALUES ('1', 'milk')")
        try b.execute("INSERT INTO todos(id, title) VALUES ('b', 'mine')")
        let good = try a.generateBundle()
        let before = try todos(b)
        let statusBefore = try b.status()
        var flipped = good
        flipped[flipped.count / 2] ^= 0x5a
        for bad in [flipped, good.prefix(good.count - 3), good.prefix(10), Data(), Data("not a bundle".utf8)] {
            expectError("InvalidBundle") { _ = try b.importBundle(bundle: Data(bad)) }
            XCTAssertEqual(try todos(b), before)
        }
        XCTAssertEqual(try b.status(), statusBefore)
        XCTAssertEqual(try b.importBundle(bundle: good).rows, 1)
    }

    func testUnknownTablesAndTableRules() throws {
        let e = try replica("a")
        expectError("UnknownTable") { try e.setStrategy(table: "nope", strategy: .manual) }
        expectError("UnknownTable") { try e.disableSync(table: "nope") }
        try e.executeBatch(sql: "CREATE TABLE nokey(x TEXT); CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT)")
        expectError("SchemaMismatch") { try e.enableSync(table: "nokey") }
        expectError("UnknownTable") { try e.enableSync(table: "missing") }
        expectError("SchemaMismatch") { try e.enableSync(table: "auto") }
        try e.enableSync(table: "auto", strategy: nil, allowAutoincrement: true)
        XCTAssertEqual(try e.status().tables.map(\.name).sorted(), ["auto", "todos"])
        try e.disableSync(table: "auto")
        XCTAssertEqual(try e.status().tables.map(\.name), ["todos"])
        try e.setStrategy(table: "todos", strategy: .preferRemote)
        XCTAssertEqual(try e.status().tables.first?.strategy, .preferRemote)
        expectError("Sqlite") { try e.execute("INSERT INTO nowhere VALUES (1)") }
        expectError("Sqlite") { try e.executeBatch(sql: "NOT SQL AT ALL") }
        expectError("Sqlite") { _ = try e.query(sql: "SELECT * FROM nowhere") }
    }

    func testABundleAheadOfTheClockIsQuarantinedThenApplied() throws {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)  // stamps never go back: start from the real clock
        let a = try replica("a")
        let b = try replica("b", options: EngineOptions.defaults(maxDriftMs: 1000, busyTimeoutMs: 1000, watchIntervalMs: 100))
        try b.setManualClock(ms: now)
        try a.setManualClock(ms: now + 60_000)  // beyond b's drift, inside the 24 h quarantine horizon
        try a.execute("INSERT INTO todos(id, title) VALUES ('1', 'from the future')")
        let hlc = try b.status().hlc
        let report = try sync(a, b)  // no ClockDrift error any more: the row waits
        XCTAssertGreaterThan(report.quarantined, 0)
        XCTAssertEqual(report.applied, 0)
        XCTAssertEqual(report.released, 0)
        var st = try b.status()
        XCTAssertEqual(st.quarantined, 1)
        XCTAssertEqual(st.hlc, hlc, "a quarantined stamp does not move the clock")
        XCTAssertEqual(try todos(b).count, 0)
        // the clock catches up: the next import applies the held row first
        try b.setManualClock(ms: now + 120_000)
        let later = try sync(a, b)
        XCTAssertGreaterThan(later.released, 0)
        XCTAssertEqual(later.released, report.quarantined)
        XCTAssertEqual(later.quarantined, 0)
        st = try b.status()
        XCTAssertEqual(st.quarantined, 0)
        XCTAssertEqual(try todos(b).count, 1)
        XCTAssertEqual(try todos(b), try todos(a))
    }

    func testABundleYearsAheadIsRejectedNotQuarantined() throws {
        let a = try replica("a")
        let b = try replica("b", options: EngineOptions.defaults(maxDriftMs: 1000, busyTimeoutMs: 1000, watchIntervalMs: 100))
        try a.setManualClock(ms: 4_000_000_000_000)
        try a.execute("INSERT INTO todos(id, title) VALUES ('1', 'from 2096')")
        let report = try sync(a, b)
        XCTAssertEqual(report.applied, 0)
        XCTAssertEqual(report.quarantined, 0)
        XCTAssertGreaterThan(report.rejected, 0)
        let st = try b.status()
        XCTAssertEqual(st.quarantined, 0)
        XCTAssertEqual(st.rejected, 1)
        XCTAssertEqual(try todos(b).count, 0)
    }

    func testCloseThenEveryCallFailsWithClosed() throws {
        let e = try replica("a")
        XCTAssertFalse(e.isClosed())
        try e.close()
        XCTAssertTrue(e.isClosed())
        expectError("Closed") { _ = try e.siteId() }
        expectError("Closed") { _ = try e.execute("SELECT 1") }
        expectError("Closed") { _ = try e.generateBundle() }
        expectError("Closed") { _ = try e.status() }
        expectError("Closed") { _ = try e.stateHash() }
        // the file is intact and reopens
        let again = try open("a")
        XCTAssertEqual(try again.status().tables.count, 1)
    }

    func testStateHashIsEqualExactlyWhenReplicasConverged() throws {
        let a = try replica("a")
        let b = try replica("b")
        let empty = try a.stateHash()
        XCTAssertEqual(empty.count, 64)
        XCTAssertTrue(empty.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        try a.execute("INSERT INTO todos(id, title, n, r, data) VALUES (?, ?, ?, ?, ?)",
                      "1", "milk", .integer(Int64.min), -0.0, .blob(Data([0, 255])))
        let written = try a.stateHash()
        XCTAssertNotEqual(written, empty)
        XCTAssertEqual(try a.stateHash(), written, "reading does not change it")
        XCTAssertNotEqual(try b.stateHash(), written)
        try sync(a, b)
        XCTAssertEqual(try b.stateHash(), written)
        // an edit on one side changes its hash; syncing back converges both again
        try b.execute("UPDATE todos SET done = 1 WHERE id = '1'")
        XCTAssertNotEqual(try b.stateHash(), written)
        try sync(b, a)
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
        XCTAssertNotEqual(try a.stateHash(), written)
    }

    // MARK: conflicts

    func conflictPair(_ strategy: Strategy) throws -> (SyncEngine, SyncEngine) {
        let a = try replica("a", strategy)
        let b = try replica("b", strategy)
        try a.execute("INSERT INTO todos(id, title) VALUES ('1', 'milk')")
        try sync(a, b)
        try a.execute("UPDATE todos SET title = 'from a' WHERE id = '1'")
        try b.execute("UPDATE todos SET title = 'from b' WHERE id = '1'")
        return (a, b)
    }

    func testManualConflictsAndResolve() throws {
        let (a, b) = try conflictPair(.manual)
        let r = try sync(b, a)
        XCTAssertEqual(r.conflicts, 1)
        XCTAssertEqual(try todos(a)[0][1], "from a")
        let cs = try a.conflicts()
        XCTAssertEqual(cs.count, 1)
        let c = cs[0]
        XCTAssertEqual(c.table, "todos")
        XCTAssertEqual(c.pk, ["1"])
        XCTAssertEqual(c.column, "title")
        XCTAssertEqual(c.local.value, "from a")
        XCTAssertEqual(c.remote.value, "from b")
        XCTAssertEqual(c.remote.site, try b.siteId())
        XCTAssertEqual(c.strategy, .manual)
        XCTAssertNil(c.resolution)
        XCTAssertEqual(try a.status().unresolvedConflicts, 1)
        expectError("NotFound") { try a.resolve(id: 424242, resolution: .local) }
        try a.resolve(id: c.id!, resolution: .value("merged"))
        XCTAssertEqual(try a.conflicts(), [])
        XCTAssertEqual(try a.allConflicts().first?.resolution, "value")
        expectError("NotFound") { try a.resolve(id: c.id!, resolution: .remote) }
        try sync(a, b)
        try sync(b, a)
        XCTAssertEqual(try todos(b)[0][1], "merged")
        XCTAssertEqual(try todos(a), try todos(b))
    }

    func testResolveLocalAndRemote() throws {
        for (choice, want) in [(Resolution.local, "from a"), (Resolution.remote, "from b")] {
            try tearDownWithError()
            try setUpWithError()
            let (a, b) = try conflictPair(.manual)
            try sync(b, a)
            try a.resolve(id: a.conflicts()[0].id!, resolution: choice)
            XCTAssertEqual(try todos(a)[0][1].stringValue, want)
        }
    }

    func testAutomaticStrategiesConverge() throws {
        for strategy in [Strategy.lww, .preferLocal, .preferRemote] {
            try tearDownWithError()
            try setUpWithError()
            let (a, b) = try conflictPair(strategy)
            XCTAssertEqual(try sync(b, a).conflicts, 1, "\(strategy)")
            for _ in 0..<3 {
                try sync(a, b)
                try sync(b, a)
            }
            XCTAssertEqual(try todos(a), try todos(b), "\(strategy)")
            XCTAssertEqual(try a.stateHash(), try b.stateHash(), "\(strategy)")
        }
    }

    func testCustomResolverDecidesAndItsFailureAppliesNothing() throws {
        let (a, b) = try conflictPair(.custom)
        // no resolver registered: a clean Resolver error
        let bundle = try b.generateBundle()
        expectError("Resolver") { _ = try a.importBundle(bundle: bundle) }
        // a resolver throwing a SynclineError
        a.setResolver(table: "todos") { _ in throw SynclineError.Resolver(message: "boom from swift") }
        let before = try todos(a)
        let statusBefore = try a.status()
        do {
            _ = try a.importBundle(bundle: bundle)
            XCTFail("expected an error")
        } catch let e as SynclineError {
            XCTAssertEqual(e.code, "Resolver")
            XCTAssertTrue(e.message.contains("boom from swift"), e.message)
        }
        XCTAssertEqual(try todos(a), before)
        XCTAssertEqual(try a.status(), statusBefore)
        // a resolver throwing any other Swift error
        struct Oops: Error {}
        a.setResolver(table: "todos") { _ in throw Oops() }
        expectError("Resolver") { _ = try a.importBundle(bundle: bundle) }
        XCTAssertEqual(try todos(a), before)
        // a deterministic, symmetric resolver
        let seen = Box<ConflictInput>()
        let longest: @Sendable (ConflictInput) throws -> Resolution = { c in
            seen.append(c)
            guard let l = c.local.value.stringValue, let r = c.remote.value.stringValue else { return .local }
            return .value(.text([l, r].sorted().joined(separator: " + ")))
        }
        a.setResolver(table: "todos", longest)
        b.setResolver(table: "todos", resolver: ClosureResolver(longest))
        for _ in 0..<3 {
            try sync(a, b)
            try sync(b, a)
        }
        XCTAssertEqual(try todos(a)[0][1], "from a + from b")
        XCTAssertEqual(try todos(a), try todos(b))
        XCTAssertEqual(seen.all.first?.column, "title")
        XCTAssertEqual(seen.all.first?.pk, ["1"])
        a.clearResolver(table: "todos")
    }

    // MARK: background sync decided by the core

    func testCloseStopsTheBackgroundSyncsOfTheEngine() throws {
        let a = try replica("a")
        // nobody listens there: the loop fails and retries until it is stopped
        let handle = try a.startSync(url: "http://127.0.0.1:9", token: nil, options: .defaults(intervalMs: 100, maxBackoffMs: 100))
        XCTAssertTrue(handle.isRunning())
        try a.close()
        XCTAssertTrue(waitUntil(10) { !handle.isRunning() }, "close() left the sync loop running")
        expectError("Closed") { _ = try handle.status() }
        handle.stop()
    }

    func testZeroIntervalsTimeoutsAndPageSizesAreRefused() throws {
        let a = try replica("a")
        for o in [SyncOptions.defaults(intervalMs: 0), .defaults(maxBackoffMs: 0), .defaults(pageRows: 0), .defaults(timeoutMs: 0)] {
            expectError("InvalidArgument") { _ = try a.startSync(url: "http://127.0.0.1:9", token: nil, options: o) }
        }
    }

    // MARK: events

    func testSubscribeSeesLocalRemoteAndConflictEventsUntilClosed() throws {
        let fast = EngineOptions.defaults(maxDriftMs: 300_000, busyTimeoutMs: 5000, watchIntervalMs: 10)
        let a = try replica("a", .manual, options: fast)
        let b = try replica("b", .manual, options: fast)
        let events = Box<Event>()
        let sub = try a.subscribe { events.append($0) }
        XCTAssertFalse(sub.isClosed())
        try a.execute("INSERT INTO todos(id, title) VALUES ('1', 'local')")
        XCTAssertTrue(waitUntil { events.all.contains { $0.kind == .local && $0.pk == ["1"] } }, "\(events.all)")
        if let c = events.all.first(where: { $0.kind == .local }) {
            XCTAssertEqual(c.table, "todos")
            XCTAssertTrue(c.columns.contains("title"))
            XCTAssertFalse(c.deleted)
            XCTAssertNil(c.conflict)
        }
        try b.execute("INSERT INTO todos(id, title) VALUES ('2', 'remote')")
        try sync(b, a)
        XCTAssertTrue(waitUntil { events.all.contains { $0.kind == .remote && $0.pk == ["2"] } })
        // a conflict
        try sync(a, b)
        try a.execute("UPDATE todos SET title = 'a' WHERE id = '2'")
        try b.execute("UPDATE todos SET title = 'b' WHERE id = '2'")
        try sync(b, a)
        XCTAssertTrue(waitUntil { events.all.contains { $0.kind == .conflict && $0.conflict?.column == "title" } })
        // a conflict event's fields are the core's: the one conflicting column, its row's key
        if let c = events.all.first(where: { $0.kind == .conflict }) {
            XCTAssertEqual(c.columns, ["title"])
            XCTAssertEqual(c.pk, ["2"])
            XCTAssertEqual(c.table, "todos")
            XCTAssertFalse(c.deleted)
        }
        // a delete
        try a.execute("DELETE FROM todos WHERE id = '1'")
        XCTAssertTrue(waitUntil { events.all.contains { $0.kind == .local && $0.deleted && $0.columns.isEmpty } })
        sub.close()
        XCTAssertTrue(sub.isClosed())
        Thread.sleep(forTimeInterval: 0.1)
        let count = events.all.count
        try a.execute("INSERT INTO todos(id, title) VALUES ('3', 'unseen')")
        try b.execute("INSERT INTO todos(id, title) VALUES ('4', 'unseen')")
        try sync(b, a)
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(events.all.count, count)
    }

    func testEventsAsAsyncStream() async throws {
        let a = try replica("a", options: EngineOptions.defaults(maxDriftMs: 300_000, busyTimeoutMs: 5000, watchIntervalMs: 10))
        let b = try replica("b")
        let stream = try a.events()
        try b.execute("INSERT INTO todos(id, title) VALUES ('x', 'hi')")
        try sync(b, a)
        var got: Event?
        for await e in stream {
            got = e
            break
        }
        guard let c = got, c.kind == .remote else { return XCTFail("\(String(describing: got))") }
        XCTAssertEqual(c.pk, ["x"])
    }

    func testAThrowingObserverDoesNotBreakTheEngine() throws {
        final class Throwing: EventObserver, @unchecked Sendable {
            func onEvent(event: Event) throws { throw SynclineError.Other(message: "ignored") }
        }
        let a = try replica("a")
        let b = try replica("b")
        let sub = try a.subscribe(observer: Throwing())
        try b.execute("INSERT INTO todos(id, title) VALUES ('1', 'x')")
        XCTAssertEqual(try sync(b, a).rows, 1)
        XCTAssertEqual(try todos(a).count, 1)
        sub.close()
    }

    // MARK: interop (bindings/test.sh reads what this writes)

    /// Writes a bundle and the expected table dump for the Kotlin and CLI interop checks, into
    /// $SYNCLINE_INTEROP_DIR (or a temporary folder, to keep the code path tested).
    // MARK: schema evolution and compaction (spec/schema-evolution.md, spec/merge-rules.md §8a)

    func testAddColumnReachesAnotherReplicaWithItsValues() throws {
        let (a, b) = (try replica("a"), try replica("b"))
        try a.addColumn(table: "todos", column: "prio", declType: "integer", defaultValue: .integer(0))
        _ = try a.execute("INSERT INTO todos(id, title, prio) VALUES ('1', 'milk', 5)")
        _ = try a.execute("INSERT INTO todos(id, title) VALUES ('2', 'eggs')")
        let change = try XCTUnwrap(try a.status().schemaChanges.first)
        XCTAssertEqual(try a.status().schemaChanges.count, 1)
        XCTAssertEqual(change, SchemaChange(table: "todos", column: "prio", declType: "INTEGER", source: "local", state: "applied", hlc: change.hlc))
        XCTAssertGreaterThan(change.hlc, 0)
        let report = try sync(a, b)
        XCTAssertEqual(report.migrated, 1)
        XCTAssertEqual(report.held, 0)
        XCTAssertEqual(try b.rows("SELECT id, prio FROM todos ORDER BY id"), [[.text("1"), .integer(5)], [.text("2"), .integer(0)]])
        let there = try b.status().schemaChanges
        XCTAssertEqual(there.map { [$0.table, $0.column, $0.source, $0.state] }, [["todos", "prio", "remote", "applied"]])
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
        // the core's checks come through as its error kinds
        expectError("InvalidArgument") { try a.addColumn(table: "todos", column: "prio", declType: "INTEGER") }
        expectError("UnknownTable") { try a.addColumn(table: "nope", column: "x", declType: "TEXT") }
    }

    func testHeldMigrationsWaitForApplyHeldMigrations() throws {
        let (a, b) = (try replica("a"), try replica("b"))
        XCTAssertEqual(try b.migrationPolicy(), .apply)
        try b.setMigrationPolicy(policy: .hold)
        XCTAssertEqual(try b.migrationPolicy(), .hold)
        try a.addColumn(table: "todos", column: "prio", declType: "INTEGER", defaultValue: .integer(0))
        _ = try a.execute("INSERT INTO todos(id, title, prio) VALUES ('1', 'milk', 5)")
        let report = try sync(a, b)
        XCTAssertEqual(report.migrated, 0)
        XCTAssertGreaterThan(report.held, 0, "\(report)")
        var s = try b.status()
        XCTAssertEqual(s.schemaChanges.map(\.state), ["held"])
        XCTAssertGreaterThan(s.heldCells, 0, "\(s)")
        XCTAssertFalse(try b.query(sql: "SELECT * FROM todos LIMIT 0", params: []).columns.contains("prio"))
        XCTAssertEqual(try b.rows("SELECT title FROM todos"), [[.text("milk")]])
        XCTAssertEqual(try b.applyHeldMigrations(), 1)
        XCTAssertEqual(try b.applyHeldMigrations(), 0, "nothing is held any more")
        XCTAssertEqual(try b.rows("SELECT prio FROM todos WHERE id = '1'"), [[.integer(5)]])
        s = try b.status()
        XCTAssertEqual(s.schemaChanges.map(\.state), ["applied"])
        XCTAssertEqual(s.heldCells, 0)
        XCTAssertEqual(s.heldRows, 0)
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
    }

    func testCompactPurgesAnAcknowledgedDelete() throws {
        let (a, b) = (try replica("a"), try replica("b"))
        _ = try a.execute("INSERT INTO todos(id, title) VALUES ('1', 'milk'), ('2', 'eggs')")
        try sync(a, b)
        _ = try a.execute("DELETE FROM todos WHERE id = '1'")
        var s = try a.status()
        XCTAssertEqual([s.tombstones, s.purgeable], [1, 0], "b has not seen the delete")
        XCTAssertEqual(try a.compact(retainMs: 0).purged, 0)
        try sync(a, b)
        try sync(b, a)  // b's answer acknowledges the delete
        s = try a.status()
        XCTAssertEqual([s.tombstones, s.purgeable], [1, 1])
        XCTAssertTrue(s.purgeHorizon.isEmpty, "nothing purged yet")
        XCTAssertEqual(try a.compact(retainMs: 3_600_000).purged, 0, "retention keeps a young tombstone")
        let report = try a.compact(retainMs: 0)
        XCTAssertEqual(report.purged, 1)
        XCTAssertTrue(report.bytesBefore > 0 && report.bytesAfter > 0, "\(report)")
        s = try a.status()
        XCTAssertEqual([s.tombstones, s.purgeable], [0, 0])
        // the purged delete's origin and stamp: a sender that has not seen it gets NeedsSnapshot
        XCTAssertEqual(s.purgeHorizon.map(\.siteId), [try a.siteId()])
        XCTAssertGreaterThan(try XCTUnwrap(s.purgeHorizon.first).hlc, 0)
        XCTAssertEqual(try a.rows("SELECT id FROM todos"), [[.text("2")]])
        XCTAssertEqual(try b.rows("SELECT id FROM todos"), [[.text("2")]])
    }

    func testADeviceStartsFromASnapshotAndCatchesUpWithTheDeltaOnly() throws {
        let a = try replica("a")
        for i in 0..<50 { _ = try a.execute("INSERT INTO todos(id, title) VALUES ('\(i)', 'todo')") }
        try a.snapshot(path: dir.appendingPathComponent("device.db").path)
        XCTAssertThrowsError(try a.snapshot(path: dir.appendingPathComponent("device.db").path), "never over an existing file")
        let d = try open("device")
        XCTAssertNotEqual(try d.siteId(), try a.siteId())
        XCTAssertEqual(try todos(d), try todos(a))
        _ = try a.execute("INSERT INTO todos(id, title) VALUES ('late', 'after the snapshot')")
        try sync(d, a)  // the device speaks first: the source learns what it holds
        XCTAssertEqual(try sync(a, d).rows, 1)
        XCTAssertEqual(try a.stateHash(), try d.stateHash())
    }

    func testInteropBundleFromSwift() throws {
        let out = ProcessInfo.processInfo.environment["SYNCLINE_INTEROP_DIR"].map { URL(fileURLWithPath: $0) } ?? dir!
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let path = out.appendingPathComponent("swift.db").path
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        let e = try SyncEngine.open(path: path)
        try e.executeBatch(sql: interopSchema)
        try e.enableSync(table: "items")
        for row in interopRows {
            _ = try e.execute(sql: "INSERT INTO items(id, i, r, t, b) VALUES (?, ?, ?, ?, ?)", params: row)
        }
        try e.execute("UPDATE items SET t = 'updated' WHERE id = 'row-3'")
        try e.execute("DELETE FROM items WHERE id = 'row-4'")
        _ = try e.writeBundle(path: out.appendingPathComponent("swift.bundle").path, peer: nil, compress: true)
        let dump = try dumpTable(e)
        try dump.write(to: out.appendingPathComponent("swift.expected"), atomically: true, encoding: .utf8)
        XCTAssertEqual(dump.split(separator: "\n").count, interopRows.count - 1)
        try e.close()
    }
}

let interopSchema = "CREATE TABLE IF NOT EXISTS items(id TEXT PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB)"

let interopRows: [[Value]] = [
    ["row-1", .integer(Int64.max), 3.25, "plain", .blob(Data([0, 1, 2, 255]))],
    ["row-2", .integer(Int64.min), -0.0, "héllo ✓ 日本 \u{1F600}", .blob(Data())],
    ["row-3", 0, 1e300, "", nil],
    ["row-4", 42, nil, "deleted later", nil],
    ["row-5", nil, nil, nil, .blob(Data(repeating: 0xab, count: 1000))],
]

/// The canonical dump every interop check compares: one line per row, `|`-separated typed cells
/// (n, i:<int>, r:<float64 bits hex>, t:<utf-8 hex>, b:<hex>).
func dumpTable(_ e: SyncEngine) throws -> String {
    let rows = try e.rows("SELECT id, i, r, t, b FROM items ORDER BY id")
    func hex(_ d: Data) -> String { d.map { String(format: "%02x", $0) }.joined() }
    func cell(_ v: Value) -> String {
        switch v {
        case .null: return "n"
        case let .integer(i): return "i:\(i)"
        case let .real(r): return "r:" + String(r.bitPattern, radix: 16)
        case let .text(t): return "t:" + hex(Data(t.utf8))
        case let .blob(b): return "b:" + hex(b)
        }
    }
    return rows.map { $0.map(cell).joined(separator: "|") }.joined(separator: "\n") + "\n"
}
