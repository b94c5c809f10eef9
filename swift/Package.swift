// swift-tools-version:6.0
import PackageDescription
import Foundation

// The host-built libsyncline_ffi.so is copied into swift/.lib/ by bindings/test.sh (gitignored),
// so this file needs no environment (SwiftPM runs inside the Linux chroot, which sees the
// project at the same absolute path). Override with SYNCLINE_FFI_LIB_DIR where env is available.
let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let libDir = ProcessInfo.processInfo.environment["SYNCLINE_FFI_LIB_DIR"]
    ?? here.appendingPathComponent(".lib").standardized.path

let package = Package(
    name: "Syncline",
    products: [
        .library(name: "Syncline", targets: ["Syncline"]),
        // the interop agent of spec/vectors/README.md, run by scripts/agents/swift
        .executable(name: "InteropAgent", targets: ["InteropAgent"]),
    ],
    targets: [
        // Generated: uniffi-bindgen-swift --headers --modulemap (SynclineFFI.h + module.modulemap)
        .systemLibrary(name: "SynclineFFI", path: "Sources/SynclineFFI"),
        // Generated Syncline.swift (uniffi-bindgen-swift --swift-sources) + the idiomatic layer
        .target(
            name: "Syncline",
            dependencies: ["SynclineFFI"],
            path: "Sources/Syncline",
            linkerSettings: [
                .linkedLibrary("syncline_ffi"),
                .unsafeFlags(["-L", libDir, "-Xlinker", "-rpath", "-Xlinker", libDir]),
            ]
        ),
        .executableTarget(name: "InteropAgent", dependencies: ["Syncline"], path: "Sources/InteropAgent"),
        // The system SQLite's C API (sqlite3.h, -lsqlite3): the tests' second SQLite client in the
        // same process, as GRDB / SQLite.swift would be (Linux: apt-get install libsqlite3-dev).
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .testTarget(name: "SynclineTests", dependencies: ["Syncline", "CSQLite"], path: "Tests/SynclineTests"),
    ]
)
