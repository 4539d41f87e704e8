import Foundation

/// Where the project's files and built binaries are, for tests and benchmarks.
public enum ProjectPaths {
    /// The repository root (holds Package.swift, dbus/, polkit/).
    public static let root: URL = {
        // Sources/ShadowCopyTestSupport/Paths.swift -> repository root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }()

    /// The project's bus policy file.
    public static var busPolicy: URL { root.appendingPathComponent("dbus/org.shadowcopy.ShadowCopy1.conf") }

    /// The folder of the running executable: the build's products folder for test bundles and
    /// for the benchmark alike.
    public static let products: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent()
    }()

    /// The `shadowcopyd` binary of this build (or `SHADOWCOPYD` when set).
    public static var daemon: URL {
        if let override = ProcessInfo.processInfo.environment["SHADOWCOPYD"] { return URL(fileURLWithPath: override) }
        return products.appendingPathComponent("shadowcopyd")
    }

    /// Debian's python3, which has python3-dbus (the first python3 on PATH may not).
    public static let systemPython = "/usr/bin/python3"

    /// A new private folder under /tmp named for tests, removed by the caller.
    public static func makeScratch(_ tag: String) throws -> URL {
        let url = URL(fileURLWithPath: "/tmp/shadowcopy-test-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// A failure of the harness itself (a tool missing, a process that would not start).
public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
