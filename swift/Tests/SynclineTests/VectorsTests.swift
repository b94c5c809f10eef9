// The golden vectors of spec/vectors/ (README.md there) run through the Swift binding, checking
// exactly what the Rust runner (core/tests/vectors.rs) checks: export bytes equal the committed
// bundles, import reports, refused imports (error kind, database unchanged), resolutions, conflict
// counts, final rows (exact: Int64, blob bytes, real bits), open conflicts and the state hash.
// `derive` steps are skipped: the committed damaged bundles are used.

import Foundation
import XCTest

@testable import Syncline

/// spec/vectors, found from this file (the chroot sees the project at the same absolute path).
let vectorsDir = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // SynclineTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()  // swift
    .deletingLastPathComponent()  // repo
    .appendingPathComponent("spec/vectors")

struct VectorFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func hexBytes(_ s: String) throws -> Data {
    guard s.count % 2 == 0 else { throw VectorFailure("odd hex \(s)") }
    var out = Data()
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        guard let b = UInt8(s[i..<j], radix: 16) else { throw VectorFailure("bad hex \(s)") }
        out.append(b)
        i = j
    }
    return out
}

/// A tagged JSON value: null, {"int": "…"}, {"real": "…"}, {"text": "…"}, {"blob": "hex"}.
func taggedValue(_ j: Any) throws -> Value {
    if j is NSNull { return .null }
    guard let o = j as? [String: Any], o.count == 1, let (tag, payload) = o.first, let s = payload as? String else {
        throw VectorFailure("not a tagged value: \(j)")
    }
    switch tag {
    case "int":
        guard let i = Int64(s) else { throw VectorFailure("bad int \(s)") }
        return .integer(i)
    case "real":
        guard let r = Double(s) else { throw VectorFailure("bad real \(s)") }
        return .real(r)
    case "text": return .text(s)
    case "blob": return .blob(try hexBytes(s))
    default: throw VectorFailure("unknown value tag \(tag)")
    }
}

/// Exact: integers, blob bytes, text, and reals by their bits (-0.0 is not 0.0).
func sameValue(_ a: Value, _ b: Value) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case let (.integer(x), .integer(y)): return x == y
    case let (.real(x), .real(y)): return x.bitPattern == y.bitPattern
    case let (.text(x), .text(y)): return Array(x.utf8) == Array(y.utf8)
    case let (.blob(x), .blob(y)): return x == y
    default: return false
    }
}

/// A canonical, exact text of a value (for dumps and messages).
func exactText(_ v: Value) -> String {
    switch v {
    case .null: return "null"
    case let .integer(i): return "int(\(i))"
    case let .real(r): return "real(\(r) bits=\(String(r.bitPattern, radix: 16)))"
    case let .text(t): return "text(\(t.utf8.count):\(t))"
    case let .blob(b): return "blob(\(b.map { String(format: "%02x", $0) }.joined()))"
    }
}

func exactRows(_ rows: [[Value]]) -> String {
    rows.map { "[" + $0.map(exactText).joined(separator: ", ") + "]" }.joined(separator: "; ")
}

/// Every row of a table as `SELECT * FROM t ORDER BY 1, 2, …` returns them.
func tableRows(_ e: SyncEngine, _ table: String) throws -> [[Value]] {
    let quoted = "\"" + table.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    let cols = try e.query(sql: "SELECT * FROM \(quoted) LIMIT 0", params: []).columns.count
    let order = (1...max(cols, 1)).map(String.init).joined(separator: ", ")
    return try e.query(sql: "SELECT * FROM \(quoted) ORDER BY \(order)", params: []).rows
}

/// Every table of the database (sync metadata included), exactly.
func fingerprint(_ e: SyncEngine) throws -> String {
    var out = ""
    for t in try e.rows("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name") {
        guard let name = t[0].stringValue else { throw VectorFailure("table name is not text") }
        out += "\(name):\(exactRows(try tableRows(e, name)));"
    }
    return out
}

func strategy(_ s: String) throws -> Strategy {
    switch s {
    case "lww": return .lww
    case "manual": return .manual
    case "prefer_local": return .preferLocal
    case "prefer_remote": return .preferRemote
    case "custom": return .custom
    default: throw VectorFailure("unknown strategy \(s)")
    }
}

/// The concat resolver of the vectors: two texts sorted by UTF-8 bytes, joined with " + ";
/// anything else keeps the local value.
let concatResolver: @Sendable (ConflictInput) throws -> Resolution = { c in
    if case let .text(l) = c.local.value, case let .text(r) = c.remote.value {
        let both = [l, r].sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        return .value(.text(both.joined(separator: " + ")))
    }
    return .local
}

func uint64(_ j: Any?) throws -> UInt64 {
    guard let n = j as? NSNumber else { throw VectorFailure("not a number: \(String(describing: j))") }
    return n.uint64Value
}

func str(_ j: Any?) throws -> String {
    guard let s = j as? String else { throw VectorFailure("not a string: \(String(describing: j))") }
    return s
}

func obj(_ j: Any?) throws -> [String: Any] {
    guard let o = j as? [String: Any] else { throw VectorFailure("not an object: \(String(describing: j))") }
    return o
}

func arr(_ j: Any?) throws -> [Any] {
    guard let a = j as? [Any] else { throw VectorFailure("not an array: \(String(describing: j))") }
    return a
}

/// Keys every import step's report has; the optional ones are compared when present.
let requiredReportKeys: Set<String> = ["applied", "already_known", "conflicts", "rejected"]
let optionalReportKeys: Set<String> = ["quarantined", "released", "migrated", "held"]

func reportField(_ r: ImportReport, _ key: String) -> UInt64 {
    switch key {
    case "applied": return r.applied
    case "already_known": return r.alreadyKnown
    case "conflicts": return r.conflicts
    case "rejected": return r.rejected
    case "quarantined": return r.quarantined
    case "released": return r.released
    case "migrated": return r.migrated
    case "held": return r.held
    default: preconditionFailure("unknown report key \(key)")
    }
}

/// One scenario; throws VectorFailure describing the first mismatch.
func runScenario(_ path: URL, in dir: URL) throws {
    let sc = try obj(JSONSerialization.jsonObject(with: Data(contentsOf: path)))
    let name = try str(sc["name"])
    let clock = try uint64(sc["clock_ms"])
    let replicas = try obj(sc["replicas"])
    let schemas = sc["schemas"] as? [String: Any] ?? [:]
    let overrides = sc["table_overrides"] as? [String: Any] ?? [:]
    var reps: [String: SyncEngine] = [:]
    defer { for e in reps.values { try? e.close() } }
    for r in replicas.keys.sorted() {
        let e = try SyncEngine.open(path: dir.appendingPathComponent("\(r).db").path, options: nil)
        reps[r] = e
        _ = try e.setSiteId(siteId: str(replicas[r]))
        try e.setManualClock(ms: clock)
        for sql in try arr(schemas[r] ?? sc["schema"]) {
            try e.executeBatch(sql: str(sql))
        }
        let tables = try obj(overrides[r] ?? sc["tables"])
        for t in tables.keys.sorted() {
            let s = try strategy(str(tables[t]))
            try e.enableSync(table: t, strategy: s, allowAutoincrement: false)
            if s == .custom { e.setResolver(table: t, concatResolver) }
        }
    }
    func rep(_ r: Any?) throws -> SyncEngine {
        let key = try str(r)
        guard let e = reps[key] else { throw VectorFailure("\(name): no replica \(key)") }
        return e
    }
    func file(_ step: [String: Any]) throws -> URL { vectorsDir.appendingPathComponent(try str(step["file"])) }

    for (k, stepAny) in try arr(sc["steps"]).enumerated() {
        let step = try obj(stepAny)
        let at = "\(name) step \(k)"
        if step["on"] != nil {
            let e = try rep(step["on"])
            if let sql = step["sql"] { _ = try e.execute(sql: str(sql), params: []) }
            if let ms = step["clock_ms"] { try e.setManualClock(ms: uint64(ms)) }
        } else if step["export"] != nil {
            let e = try rep(step["export"])
            let peer = try step["peer"].map { try rep($0).siteId() }
            let bytes = try e.generateBundle(peer: peer, compress: false)
            let want = try Data(contentsOf: file(step))
            if bytes != want {
                throw VectorFailure("\(at): \(try str(step["file"])) differs from the bundle made now (\(bytes.count) vs \(want.count) bytes)")
            }
        } else if step["derive"] != nil {
            continue // the Rust runner makes and checks these; the committed files are used below
        } else if step["import"] != nil {
            let e = try rep(step["import"])
            let before = try fingerprint(e)
            let path = try file(step).path
            if let kind = step["error"] {
                let want = try str(kind)
                do {
                    let report = try e.importBundleFile(path: path)
                    throw VectorFailure("\(at): expected \(want), the import succeeded: \(report)")
                } catch let err as SynclineError {
                    if err.code != want { throw VectorFailure("\(at): expected \(want), got \(err)") }
                }
                if try fingerprint(e) != before {
                    throw VectorFailure("\(at): a refused bundle changed the database")
                }
            } else {
                let report: ImportReport
                do { report = try e.importBundleFile(path: path) } catch {
                    throw VectorFailure("\(at): \(error)")
                }
                if let want = step["report"] {
                    let w = try obj(want)
                    let keys = Set(w.keys)
                    guard keys.isSuperset(of: requiredReportKeys), keys.isSubset(of: requiredReportKeys.union(optionalReportKeys)) else {
                        throw VectorFailure("\(at): unexpected report keys \(w.keys.sorted())")
                    }
                    // the four required keys, then the optional ones the vector carries
                    let names = ["applied", "already_known", "conflicts", "rejected", "quarantined", "released", "migrated", "held"].filter { keys.contains($0) }
                    let got = names.map { reportField(report, $0) }
                    let exp = try names.map { try uint64(w[$0]) }
                    if got != exp { throw VectorFailure("\(at): import report \(got) != \(exp) (\(names.joined(separator: ", ")))") }
                }
            }
        } else if step["resolve"] != nil {
            let e = try rep(step["resolve"])
            let n = Int(try uint64(step["conflict"]))
            let open = try e.conflicts()
            guard n < open.count, let id = open[n].id else { throw VectorFailure("\(at): no open conflict \(n) (\(open.count) open)") }
            let with: Resolution
            switch step["with"] {
            case let s as String where s == "local": with = .local
            case let s as String where s == "remote": with = .remote
            case let o as [String: Any]:
                guard let v = o["value"] else { throw VectorFailure("\(at): bad resolution \(o)") }
                with = .value(try taggedValue(v))
            default: throw VectorFailure("\(at): bad resolution \(String(describing: step["with"]))")
            }
            try e.resolve(id: id, resolution: with)
        } else if step["conflicts"] != nil {
            let got = UInt64(try rep(step["conflicts"]).conflicts().count)
            let want = try uint64(step["count"])
            if got != want { throw VectorFailure("\(at): \(got) open conflicts, want \(want)") }
        } else if step["migrate"] != nil {
            // spec/vectors/migrations (README.md there): the steps of schema evolution
            let e = try rep(step["migrate"])
            let dflt = try step["default"].map(taggedValue) ?? .null
            let call = {
                try e.addColumn(table: str(step["table"]), column: str(step["add_column"]), declType: str(step["type"]), defaultValue: dflt)
            }
            if let kind = step["error"] {
                let want = try str(kind)
                do {
                    try call()
                    throw VectorFailure("\(at): expected \(want), add_column succeeded")
                } catch let err as SynclineError {
                    if err.code != want { throw VectorFailure("\(at): expected \(want), got \(err)") }
                }
            } else {
                do { try call() } catch { throw VectorFailure("\(at): \(error)") }
            }
        } else if step["migration_policy"] != nil {
            let policy: MigrationPolicy
            switch try str(step["policy"]) {
            case "apply": policy = .apply
            case "hold": policy = .hold
            case let p: throw VectorFailure("\(at): unknown policy \(p)")
            }
            try rep(step["migration_policy"]).setMigrationPolicy(policy: policy)
        } else if step["apply_held_migrations"] != nil {
            let got = try rep(step["apply_held_migrations"]).applyHeldMigrations()
            let want = try uint64(step["count"])
            if got != want { throw VectorFailure("\(at): apply_held_migrations returned \(got), want \(want)") }
        } else if step["enable"] != nil {
            try rep(step["enable"]).enableSync(table: str(step["table"]), strategy: nil, allowAutoincrement: false)
        } else {
            throw VectorFailure("\(at): unknown step \(step)")
        }
    }

    let expect = try obj(sc["expect"])
    for r in expect.keys.sorted() {
        let e = try rep(r)
        let want = try obj(expect[r])
        let rows = try obj(want["rows"])
        for table in rows.keys.sorted() {
            let w = try arr(rows[table]).map { try arr($0).map(taggedValue) }
            let got = try tableRows(e, table)
            let same = got.count == w.count
                && zip(got, w).allSatisfy { g, x in g.count == x.count && zip(g, x).allSatisfy { sameValue($0, $1) } }
            if !same {
                throw VectorFailure("\(name): rows of \(table) on \(r):\n  got  \(exactRows(got))\n  want \(exactRows(w))")
            }
        }
        let open = UInt64(try e.conflicts().count)
        let wantOpen = try uint64(want["open_conflicts"])
        if open != wantOpen { throw VectorFailure("\(name): \(open) open conflicts on \(r), want \(wantOpen)") }
        let hash = try e.stateHash()
        let wantHash = try str(want["state_hash"])
        if hash != wantHash { throw VectorFailure("\(name): state hash of \(r) is \(hash), want \(wantHash)") }
    }
}

final class VectorsTests: XCTestCase {
    /// Every scenario of spec/vectors (interop.json is the interop script, not a scenario),
    /// then those of spec/vectors/migrations (the schema-evolution steps).
    func scenarios() throws -> [URL] {
        func jsons(_ dir: URL) throws -> [URL] {
            try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "json" && $0.lastPathComponent != "interop.json" }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
        }
        return try jsons(vectorsDir) + jsons(vectorsDir.appendingPathComponent("migrations"))
    }

    func testGoldenVectors() throws {
        let paths = try scenarios()
        XCTAssertGreaterThanOrEqual(paths.count, 12, "the vectors are missing from \(vectorsDir.path)")
        XCTAssertTrue(paths.contains { $0.lastPathComponent == "12-hostile-bundles.json" }, "the hostile-bundle scenario is run")
        XCTAssertGreaterThanOrEqual(paths.filter { $0.deletingLastPathComponent().lastPathComponent == "migrations" }.count, 2,
                                    "the migration vectors are run")
        var passed = 0
        for p in paths {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-vectors-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            do {
                try runScenario(p, in: dir)
                passed += 1
            } catch {
                XCTFail("\(p.lastPathComponent): \(error)")
            }
        }
        print("golden vectors: \(passed)/\(paths.count) scenarios passed")
    }

    /// The migration steps are checked too: a wrong `held` count in an import report fails the run.
    func testTheRunnerNoticesAWrongHeldCount() throws {
        let src = vectorsDir.appendingPathComponent("migrations/02-held-migration-and-table.json")
        var sc = try obj(JSONSerialization.jsonObject(with: Data(contentsOf: src)))
        var steps = try arr(sc["steps"])
        let k = try XCTUnwrap(steps.firstIndex { (($0 as? [String: Any])?["report"] as? [String: Any])?["held"] != nil })
        var step = try obj(steps[k])
        var report = try obj(step["report"])
        report["held"] = try uint64(report["held"]) + 1
        step["report"] = report
        steps[k] = step
        sc["steps"] = steps
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-vectors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("scenario.json")
        try JSONSerialization.data(withJSONObject: sc).write(to: path)
        XCTAssertThrowsError(try runScenario(path, in: dir)) { error in
            XCTAssertTrue("\(error)".contains("import report") && "\(error)".contains("held"), "\(error)")
        }
    }

    /// The runner itself refuses a wrong expectation (a changed state hash), so a green run means something.
    func testTheRunnerNoticesAWrongStateHash() throws {
        let src = vectorsDir.appendingPathComponent("01-insert-to-new-peer.json")
        var sc = try obj(JSONSerialization.jsonObject(with: Data(contentsOf: src)))
        var expect = try obj(sc["expect"])
        let first = try XCTUnwrap(expect.keys.sorted().first)
        var want = try obj(expect[first])
        want["state_hash"] = String(repeating: "0", count: 64)
        expect[first] = want
        sc["expect"] = expect
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-vectors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("scenario.json")
        try JSONSerialization.data(withJSONObject: sc).write(to: path)
        XCTAssertThrowsError(try runScenario(path, in: dir)) { error in
            XCTAssertTrue("\(error)".contains("state hash"), "\(error)")
        }
    }
}
