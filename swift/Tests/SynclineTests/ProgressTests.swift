import Foundation
import XCTest

@testable import Syncline

/// Records a progress listener's calls and the threads they ran on.
final class ProgressRecorder: ProgressListener, @unchecked Sendable {
    private let lock = NSLock()
    private var calls: [(UInt64, UInt64)] = []
    private var threads: Set<String> = []

    func onProgress(done: UInt64, total: UInt64) throws {
        lock.lock()
        defer { lock.unlock() }
        calls.append((done, total))
        threads.insert("\(Thread.current)")
    }

    func check(_ rows: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        lock.lock()
        defer { lock.unlock() }
        XCTAssertGreaterThanOrEqual(calls.count, 2, "expected intermediate calls, got \(calls)", file: file, line: line)
        let dones = calls.map { $0.0 }
        XCTAssertEqual(dones, dones.sorted(), "done never goes backwards", file: file, line: line)
        XCTAssertTrue(calls.allSatisfy { $0.1 == rows }, "total is the row count: \(calls)", file: file, line: line)
        XCTAssertEqual(calls.last?.0, rows, file: file, line: line)
        XCTAssertEqual(calls.last?.1, rows, file: file, line: line)
        XCTAssertEqual(threads, ["\(Thread.current)"], "called on the calling thread", file: file, line: line)
    }
}

final class ProgressTests: XCTestCase {
    var dir: URL!
    let rows: UInt64 = 10_000  // several of the core's progress batches (one call per 4096 rows, then the last)

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-swift-progress-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func replica(_ name: String) throws -> SyncEngine {
        let e = try SyncEngine.open(path: dir.appendingPathComponent("\(name).db").path)
        try e.executeBatch(sql: todosSchema)
        try e.enableSync(table: "todos")
        return e
    }

    func fill(_ e: SyncEngine, _ n: UInt64) throws {
        try e.execute(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
                + "INSERT INTO todos(id, title, data) SELECT printf('%05d', i), 'title ' || i, randomblob(100) FROM c",
            .integer(Int64(n)))
    }

    func testProgressOfExportsAndImports() throws {
        let a = try replica("a")
        let b = try replica("b")
        let c = try replica("c")
        try fill(a, rows)
        var seen = ProgressRecorder()
        let bundle = try a.generateBundle(progress: seen)
        seen.check(rows)

        seen = ProgressRecorder()
        let file = dir.appendingPathComponent("a.bundle").path
        XCTAssertEqual(try a.writeBundle(path: file, compress: true, progress: seen).rows, rows)
        seen.check(rows)

        seen = ProgressRecorder()
        XCTAssertEqual(try b.importBundle(bundle: bundle, progress: seen).rows, rows)
        seen.check(rows)

        // the closure form
        let calls = Box<UInt64>()
        XCTAssertEqual(try c.importBundleFile(path: file, progress: ClosureProgress { done, _ in calls.append(done) }).rows, rows)
        XCTAssertEqual(calls.all.last, rows)
        XCTAssertGreaterThanOrEqual(calls.all.count, 2)
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
        XCTAssertEqual(try a.stateHash(), try c.stateHash())
        XCTAssertEqual(try b.importBundle(bundle: bundle).applied, 0)
    }

    func testAThrowingListenerIsNotCalledAgainAndItsErrorComesAfterTheCall() throws {
        let a = try replica("a")
        let b = try replica("b")
        try fill(a, rows)
        let calls = Box<UInt64>()
        let stop = ClosureProgress { done, _ in
            calls.append(done)
            throw SynclineError.InvalidArgument(message: "stop here")
        }
        expectError("InvalidArgument") { _ = try a.generateBundle(progress: stop) }
        XCTAssertEqual(calls.all.count, 1)
        // any other Swift error: a callback failure
        struct Oops: Error {}
        let oops = ClosureProgress { _, _ in throw Oops() }
        expectError("Resolver") { _ = try a.writeBundle(path: self.dir.appendingPathComponent("x.bundle").path, progress: oops) }
        // An import cannot be stopped midway: the error comes once it is applied, and importing
        // the bundle again is harmless.
        let bundle = try a.generateBundle()
        expectError("InvalidArgument") { _ = try b.importBundle(bundle: bundle, progress: stop) }
        XCTAssertEqual(calls.all.count, 2)
        XCTAssertEqual(try a.stateHash(), try b.stateHash())
        XCTAssertEqual(try b.importBundle(bundle: bundle).applied, 0)
    }
}
