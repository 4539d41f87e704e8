import Foundation

/// A writer or provider process on a private bus (an example Python program, or a shadowcopy
/// writer): it logs what it gets, one line each, with the monotonic time (ns) first.
public class PeerProcess: @unchecked Sendable {
    public let process: ChildProcess
    public let logPath: String
    public let name: String

    /// Starts `executable` with `arguments` plus `--log <file>` and waits until it logged that
    /// it registered.
    init(bus: PrivateBus, executable: String, arguments: [String], name: String, what: String) async throws {
        self.name = name
        logPath = bus.directory.appendingPathComponent("\(what)-\(name).log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        var environment = ProcessInfo.processInfo.environment
        environment["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        process = try ChildProcess(executable, arguments + ["--log", logPath],
                                   environment: environment, stdout: logPath + ".out", stderr: logPath + ".out")
        let start = ContinuousClock.now
        while !events.contains(where: { $0.hasPrefix("registered") }) {
            guard process.isRunning else {
                throw HarnessError("\(what) \(name) exited: \((try? String(contentsOfFile: logPath + ".out", encoding: .utf8)) ?? "")")
            }
            guard ContinuousClock.now - start < .seconds(20) else { throw HarnessError("\(what) \(name) did not register") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The command line of `examples/<script>` run by Debian's python3.
    static func python(_ script: String, name: String, _ arguments: [String]) -> [String] {
        [ProjectPaths.root.appendingPathComponent("examples/\(script)").path, "--name", name] + arguments
    }

    /// The events logged, in order, with the monotonic time (ns) of each.
    public var timedEvents: [(UInt64, String)] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line in
            guard let space = line.firstIndex(of: " "), let time = UInt64(line[..<space]) else { return nil }
            return (time, String(line[line.index(after: space)...]))
        }
    }

    /// The events logged, in order.
    public var events: [String] { timedEvents.map(\.1) }

    /// The methods called on the peer, in order (the log's other lines left out).
    public var calls: [String] {
        events.filter { line in !line.contains(" ") && line.first.map { $0.isUppercase } == true }
    }

    /// When `event` was logged first.
    public func time(of event: String) -> UInt64? { timedEvents.first { $0.1 == event }?.0 }

    /// Stops the process (SIGKILL when asked, as a crash).
    public func stop(signal: Int32 = SIGTERM) { _ = process.stop(signal: signal) }
}

/// The example writer, examples/python-writer.py.
public final class PythonWriter: PeerProcess, @unchecked Sendable {
    /// Starts the writer and waits until it registered; `extra` are more of its options.
    public init(bus: PrivateBus, name: String, level: String = "front-end", extra: [String] = []) async throws {
        try await super.init(bus: bus, executable: "/usr/bin/python3",
                             arguments: Self.python("python-writer.py", name: name, ["--level", level] + extra),
                             name: name, what: "python-writer")
    }
}

/// The example external provider, examples/python-provider.py, copying files into `store`.
public final class PythonProvider: PeerProcess, @unchecked Sendable {
    public let store: String

    /// Starts the provider and waits until it registered; `extra` are more of its options.
    public init(bus: PrivateBus, name: String, store: String, extra: [String] = []) async throws {
        self.store = store
        try await super.init(bus: bus, executable: "/usr/bin/python3",
                             arguments: Self.python("python-provider.py", name: name, ["--store", store] + extra),
                             name: name, what: "python-provider")
    }
}

/// `shadowcopy-writer hooks`, the hook-scripts writer of this build, running the scripts of `directory`.
public final class HooksWriterProcess: PeerProcess, @unchecked Sendable {
    public init(bus: PrivateBus, name: String, directory: String, level: String = "front-end", extra: [String] = []) async throws {
        let binary = ProjectPaths.daemon.deletingLastPathComponent().appendingPathComponent("shadowcopy-writer").path
        try await super.init(bus: bus, executable: binary,
                             arguments: ["hooks", "--name", name, "--level", level, "--dir", directory] + extra,
                             name: name, what: "hooks-writer")
    }
}

/// `shadowcopy-writer sqlite`, the SQLite writer of this build, for `databases`.
public final class SQLiteWriterProcess: PeerProcess, @unchecked Sendable {
    public init(bus: PrivateBus, name: String, databases: [String], level: String = "front-end") async throws {
        let binary = ProjectPaths.daemon.deletingLastPathComponent().appendingPathComponent("shadowcopy-writer").path
        try await super.init(bus: bus, executable: binary,
                             arguments: ["sqlite", "--name", name, "--level", level] + databases.flatMap { ["--database", $0] },
                             name: name, what: "sqlite-writer")
    }
}

/// The example light subscriber, examples/python-subscriber.py: it only listens to signals.
public final class PythonSubscriber: PeerProcess, @unchecked Sendable {
    public init(bus: PrivateBus, name: String) async throws {
        try await super.init(bus: bus, executable: "/usr/bin/python3",
                             arguments: Self.python("python-subscriber.py", name: name, []), name: name, what: "python-subscriber")
    }
}

/// `shadowcopy-writer postgresql`, the PostgreSQL writer of this build.
public final class PostgreSQLWriterProcess: PeerProcess, @unchecked Sendable {
    public init(bus: PrivateBus, name: String, dataDirectory: String, socketDirectory: String, port: Int,
                labelDirectory: String, bin: String) async throws {
        let binary = ProjectPaths.daemon.deletingLastPathComponent().appendingPathComponent("shadowcopy-writer").path
        try await super.init(bus: bus, executable: binary, arguments: [
            "postgresql", "--name", name, "--level", "back-end", "--data-directory", dataDirectory, "--host", socketDirectory,
            "--port", "\(port)", "--label-directory", labelDirectory, "--psql", bin + "/psql",
        ], name: name, what: "postgresql-writer")
    }
}
