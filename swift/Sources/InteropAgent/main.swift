// The Swift interop agent (spec/vectors/README.md §"Interop script"), run by scripts/agents/swift:
//   InteropAgent export interop.json OUT.bundle   # prints the writer's state hash
//   InteropAgent import interop.json IN.bundle    # prints the reader's state hash
// Paths must be visible inside the Swift chroot (the wrapper copies them under swift/.interop/).

import Foundation
import Syncline

struct AgentError: Error, CustomStringConvertible {
    let description: String
}

func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("InteropAgent: \(message)\n".utf8))
    exit(code)
}

func strategy(_ s: String) throws -> Strategy {
    switch s {
    case "lww": return .lww
    case "manual": return .manual
    case "prefer_local": return .preferLocal
    case "prefer_remote": return .preferRemote
    case "custom": return .custom
    default: throw AgentError(description: "unknown strategy \(s)")
    }
}

/// A fresh replica of `role` ("writer" or "reader"): site id, manual clock, schema, synced tables.
func replica(_ dir: URL, _ spec: [String: Any], _ role: String) throws -> SyncEngine {
    guard let who = spec[role] as? [String: Any], let site = who["site"] as? String,
          let clock = who["clock_ms"] as? NSNumber
    else { throw AgentError(description: "interop.json has no valid \(role)") }
    let e = try SyncEngine.open(path: dir.appendingPathComponent("\(role).db").path, options: nil)
    _ = try e.setSiteId(siteId: site)
    try e.setManualClock(ms: clock.uint64Value)
    for sql in spec["schema"] as? [String] ?? [] {
        try e.executeBatch(sql: sql)
    }
    let tables = spec["tables"] as? [String: String] ?? [:]
    for t in tables.keys.sorted() {
        try e.enableSync(table: t, strategy: strategy(tables[t]!), allowAutoincrement: false)
    }
    return e
}

let args = CommandLine.arguments
guard args.count == 4, ["export", "import"].contains(args[1]) else {
    fail("usage: InteropAgent export|import interop.json BUNDLE", code: 2)
}
let (command, specPath, bundlePath) = (args[1], args[2], args[3])

do {
    let specData = try Data(contentsOf: URL(fileURLWithPath: specPath))
    guard let spec = try JSONSerialization.jsonObject(with: specData) as? [String: Any] else {
        throw AgentError(description: "\(specPath) is not a JSON object")
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("syncline-agent-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let hash: String
    if command == "export" {
        let e = try replica(dir, spec, "writer")
        for step in spec["steps"] as? [[String: Any]] ?? [] {
            if let sql = step["sql"] as? String { _ = try e.execute(sql: sql, params: []) }
            if let ms = step["clock_ms"] as? NSNumber { try e.setManualClock(ms: ms.uint64Value) }
        }
        try e.generateBundle(peer: nil, compress: false).write(to: URL(fileURLWithPath: bundlePath))
        hash = try e.stateHash()
        try e.close()
    } else {
        let e = try replica(dir, spec, "reader")
        _ = try e.importBundleFile(path: bundlePath)
        hash = try e.stateHash()
        try e.close()
    }
    print(hash)
} catch {
    fail("\(error)")
}
