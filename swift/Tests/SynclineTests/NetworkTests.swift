import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

@testable import Syncline

/// Network sync against a real server: `bindings/test.sh` starts `syncline serve` on the host
/// (127.0.0.1, a free port, a random token; the chroot shares the host's network) and passes
/// SYNCLINE_NET_URL and SYNCLINE_NET_TOKEN in. Without them the tests are skipped, unless
/// SYNCLINE_NET_REQUIRED=1 (then they fail). The server is shared by every test (and by the
/// Kotlin suite afterwards): each test writes rows with fresh ids and checks those.
final class NetworkTests: XCTestCase {
    var dir: URL!
    var url = ""
    var token = ""

    override func setUpWithError() throws {
        let env = ProcessInfo.processInfo.environment
        guard let url = env["SYNCLINE_NET_URL"], let token = env["SYNCLINE_NET_TOKEN"], !url.isEmpty else {
            if env["SYNCLINE_NET_REQUIRED"] == "1" {
                XCTFail("SYNCLINE_NET_URL / SYNCLINE_NET_TOKEN are not set (bindings/test.sh starts the server)")
            }
            throw XCTSkip("no sync server (SYNCLINE_NET_URL, SYNCLINE_NET_TOKEN): run bindings/test.sh")
        }
        self.url = url
        self.token = token
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-swift-net-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    func replica(_ name: String) throws -> SyncEngine {
        let e = try SyncEngine.open(path: dir.appendingPathComponent("\(name).db").path)
        try e.executeBatch(sql: todosSchema)
        try e.enableSync(table: "todos", strategy: .lww)
        return e
    }

    func titles(_ e: SyncEngine, _ ids: [String]) throws -> [[Value]] {
        let marks = ids.map { _ in "?" }.joined(separator: ", ")
        return try e.rows("SELECT id, title FROM todos WHERE id IN (\(marks)) ORDER BY id", ids.map { .text($0) })
    }

    /// A URL nobody listens on: a port the kernel hands out, then freed.
    func unreachableURL() -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
                bind(fd, p, len) == 0 ? getsockname(fd, p, &len) : -1
            }
        }
        return "http://127.0.0.1:\(UInt16(bigEndian: addr.sin_port))"
    }

    func expectSyncError(
        _ code: String, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void
    ) async {
        do {
            try await body()
            XCTFail("expected SynclineError.\(code), nothing was thrown", file: file, line: line)
        } catch let e as SynclineError {
            XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
            XCTAssertFalse(e.message.isEmpty, file: file, line: line)
        } catch {
            XCTFail("expected SynclineError.\(code), got \(error)", file: file, line: line)
        }
    }

    func testTwoEnginesConvergeThroughTheServer() async throws {
        let a = try replica("a")
        let b = try replica("b")
        let (x, y) = (uuid7(), uuid7())
        try a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", .text(x), "from a")
        try b.execute("INSERT INTO todos(id, title) VALUES (?, ?)", .text(y), "from b")

        let first = try await a.sync(url: url, token: token)
        XCTAssertGreaterThanOrEqual(first.pushed, 1)
        XCTAssertGreaterThanOrEqual(first.serverApplied, 1)
        XCTAssertGreaterThanOrEqual(first.roundTrips, 2)  // /v1/info, then one POST /v1/sync at least
        let second = try await b.sync(url: url, token: token)
        XCTAssertGreaterThanOrEqual(second.applied, 1)  // a's row at least
        _ = try await a.sync(url: url, token: token)

        let want: [[Value]] = [[.text(x), "from a"], [.text(y), "from b"]].sorted { $0[0].stringValue! < $1[0].stringValue! }
        XCTAssertEqual(try titles(a, [x, y]), want)
        XCTAssertEqual(try titles(b, [x, y]), want)
        XCTAssertEqual(try a.stateHash(), try b.stateHash())  // both hold all the server holds

        // a change on b reaches a, and a sync with nothing new moves nothing
        try b.execute("UPDATE todos SET title = 'edited on b' WHERE id = ?", .text(x))
        _ = try await b.sync(url: url, token: token)
        let pull = try await a.sync(url: url, token: token)
        XCTAssertEqual(pull.applied, 1)
        XCTAssertEqual(try a.rows("SELECT title FROM todos WHERE id = ?", [.text(x)]), [["edited on b"]])
        let idle = try await a.sync(url: url, token: token)
        XCTAssertEqual(idle.pushed, 0)
        XCTAssertEqual(idle.applied, 0)
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
    }

    func testAWrongTokenIsAuthAndChangesNothing() async throws {
        let a = try replica("a")
        let x = uuid7()
        try a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", .text(x), "never sent")
        let before = try a.stateHash()
        let peersBefore = try a.status().peers
        await expectSyncError("Auth") { _ = try await a.sync(url: self.url, token: "not-\(self.token)") }
        await expectSyncError("Auth") { _ = try await a.sync(url: self.url, token: nil) }
        XCTAssertEqual(try a.stateHash(), before)
        XCTAssertEqual(try a.status().peers, peersBefore)
        // the server did not get the row: a fresh replica syncing with the right token lacks it
        let c = try replica("c")
        _ = try await c.sync(url: url, token: token)
        XCTAssertEqual(try titles(c, [x]), [])
    }

    func testAnUnreachableServerIsNetworkAndABadURLIsInvalidArgument() async throws {
        let a = try replica("a")
        try a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", .text(uuid7()), "x")
        let before = try a.stateHash()
        await expectSyncError("Network") { _ = try await a.sync(url: self.unreachableURL(), token: self.token) }
        await expectSyncError("InvalidArgument") { _ = try await a.sync(url: "ftp://127.0.0.1:1", token: self.token) }
        XCTAssertEqual(try a.stateHash(), before)
    }

    func testBackgroundSyncReportsSuccessInItsStatus() async throws {
        let a = try replica("a")
        let x = uuid7()
        try a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", .text(x), "in the background")
        let handle = try a.startSync(url: url, token: token, options: SyncOptions.defaults(intervalMs: 200))
        XCTAssertTrue(waitUntil(20) { ((try? handle.status())?.syncs ?? 0) >= 1 })
        let s = try handle.status()
        XCTAssertTrue(s.running)
        XCTAssertNotNil(s.lastSuccess)
        XCTAssertNil(s.lastError)
        XCTAssertEqual(s.failures, 0)
        XCTAssertEqual(s.pending, 0)
        XCTAssertGreaterThanOrEqual(s.lastReport?.pushed ?? 0, 1)
        XCTAssertLessThanOrEqual(s.lastSuccess!.timeIntervalSinceNow, 1)
        handle.syncNow()
        handle.stop()
        handle.stop()  // idempotent
        XCTAssertFalse(try handle.status().running)

        // the row reached the server
        let b = try replica("b")
        _ = try await b.sync(url: url, token: token)
        XCTAssertEqual(try titles(b, [x]), [[.text(x), "in the background"]])
    }

    func testBackgroundSyncWithAWrongTokenReportsAuthInItsStatus() throws {
        let a = try replica("a")
        let handle = try a.startSync(
            url: url, token: "wrong", options: SyncOptions.defaults(intervalMs: 200, maxBackoffMs: 200))
        XCTAssertTrue(waitUntil(20) { ((try? handle.status())?.failures ?? 0) >= 1 })
        let s = try handle.status()
        XCTAssertEqual(s.syncs, 0)
        XCTAssertNil(s.lastSuccess)
        guard case .Auth = s.lastError else { return XCTFail("expected Auth, got \(String(describing: s.lastError))") }
        handle.stop()
    }

    func testALiveClientSeesAnotherClientsPushWithoutPolling() async throws {
        let a = try replica("a")
        let b = try replica("b")
        // an interval far beyond the test: only the server's notice can make b sync again
        let handle = try b.startSync(url: url, token: token, options: SyncOptions.defaults(intervalMs: 600_000, live: true))
        defer { handle.stop() }
        XCTAssertTrue(waitUntil(20) { ((try? handle.status())?.syncs ?? 0) >= 1 })
        let x = uuid7()
        try a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", .text(x), "live")
        _ = try await a.sync(url: url, token: token)
        XCTAssertTrue(waitUntil(20) { ((try? self.titles(b, [x])) ?? []).count == 1 }, "b never saw a's push")
    }
    func testSyncProgressCountsThePulledChanges() async throws {
        let a = try replica("a")
        let b = try replica("b")
        // more rows than one page (5000 by default)
        try a.execute(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 6000) "
                + "INSERT INTO todos(id, title) SELECT ? || '-' || i, 'progress ' || i FROM c", .text(uuid7()))
        _ = try await a.sync(url: url, token: token)
        let seen = ProgressCalls()
        let report = try await b.sync(url: url, token: token, progress: seen)
        let calls = seen.all
        XCTAssertGreaterThanOrEqual(calls.count, 2, "\(calls)")
        XCTAssertEqual(calls.map { $0.0 }, calls.map { $0.0 }.sorted())
        XCTAssertTrue(calls.allSatisfy { $0.1 == 0 }, "the total is not known: 0")
        XCTAssertEqual(calls.last?.0, report.pulled)
        XCTAssertGreaterThanOrEqual(report.pulled, 6000)
        // a throwing listener: the pass's error once it is done
        await expectSyncError("InvalidArgument") {
            _ = try await b.sync(
                url: self.url, token: self.token,
                progress: ClosureProgress { _, _ in throw SynclineError.InvalidArgument(message: "stop") })
        }
    }

    func testANewDeviceStartsFromTheServersSnapshot() async throws {
        let a = try replica("a")
        let x = uuid7()
        try a.execute("INSERT INTO todos(id, title) VALUES (?, ?)", .text(x), "before the snapshot")
        _ = try await a.sync(url: url, token: token)
        let path = dir.appendingPathComponent("device.db").path
        let seen = ProgressCalls()
        let size = try await cloneSnapshot(url: url, path: path, token: token, progress: seen)
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attrs[.size] as? NSNumber)?.uint64Value, size)
        let calls = seen.all
        XCTAssertEqual(calls.map { $0.0 }, calls.map { $0.0 }.sorted())
        XCTAssertEqual(calls.last?.0, size)
        XCTAssertTrue(calls.allSatisfy { $0.1 == 0 || $0.1 == size }, "\(calls)")
        let device = try SyncEngine.open(path: path)
        XCTAssertNotEqual(try device.siteId(), try a.siteId())
        XCTAssertEqual(try titles(device, [x]), [[.text(x), "before the snapshot"]])
        // it catches up through the server
        try a.execute("UPDATE todos SET title = 'after the snapshot' WHERE id = ?", .text(x))
        _ = try await a.sync(url: url, token: token)
        let caughtUp = try await device.sync(url: url, token: token)
        XCTAssertGreaterThanOrEqual(caughtUp.applied, 1)
        XCTAssertEqual(try titles(device, [x]), [[.text(x), "after the snapshot"]])
        // refusals: an existing file, a wrong token (nothing left behind), no server
        await expectSyncError("InvalidArgument") { _ = try await cloneSnapshot(url: self.url, path: path, token: self.token) }
        let other = dir.appendingPathComponent("other.db").path
        await expectSyncError("Auth") { _ = try await cloneSnapshot(url: self.url, path: other, token: "not-\(self.token)") }
        let down = unreachableURL()
        await expectSyncError("Network") { _ = try await cloneSnapshot(url: down, path: other, token: self.token) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: other))
    }
}

/// Records (done, total) calls, from whichever thread makes them.
final class ProgressCalls: ProgressListener, @unchecked Sendable {
    private let lock = NSLock()
    private var calls: [(UInt64, UInt64)] = []
    func onProgress(done: UInt64, total: UInt64) throws {
        lock.lock()
        calls.append((done, total))
        lock.unlock()
    }
    var all: [(UInt64, UInt64)] { lock.lock(); defer { lock.unlock() }; return calls }
}
