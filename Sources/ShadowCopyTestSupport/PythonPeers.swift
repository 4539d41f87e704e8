import Foundation

/// One of the example Python programs (examples/) as a process on a private bus: it logs what
/// it gets, one line each, with the monotonic time (ns) first.
public class PythonPeer: @unchecked Sendable {
    public let process: ChildProcess
    public let logPath: String
    public let name: String

    /// Starts `examples/<script>` and waits until it logged that it registered.
    init(bus: PrivateBus, script: String, name: String, arguments: [String]) async throws {
        self.name = name
        logPath = bus.directory.appendingPathComponent("\(script)-\(name).log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        var environment = ProcessInfo.processInfo.environment
        environment["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        let path = ProjectPaths.root.appendingPathComponent("examples/\(script)").path
        process = try ChildProcess("/usr/bin/python3", [path, "--name", name, "--log", logPath] + arguments,
                                   environment: environment, stdout: logPath + ".out", stderr: logPath + ".out")
        let start = ContinuousClock.now
        while !events.contains(where: { $0.hasPrefix("registered") }) {
            guard process.isRunning else {
                throw HarnessError("\(script) \(name) exited: \((try? String(contentsOfFile: logPath + ".out", encoding: .utf8)) ?? "")")
            }
            guard ContinuousClock.now - start < .seconds(20) else { throw HarnessError("\(script) \(name) did not register") }
            try await Task.sleep(for: .milliseconds(20))
        }
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
public final class PythonWriter: PythonPeer, @unchecked Sendable {
    /// Starts the writer and waits until it registered; `extra` are more of its options.
    public init(bus: PrivateBus, name: String, level: String = "front-end", extra: [String] = []) async throws {
        try await super.init(bus: bus, script: "python-writer.py", name: name, arguments: ["--level", level] + extra)
    }
}

/// The example external provider, examples/python-provider.py, copying files into `store`.
public final class PythonProvider: PythonPeer, @unchecked Sendable {
    public let store: String

    /// Starts the provider and waits until it registered; `extra` are more of its options.
    public init(bus: PrivateBus, name: String, store: String, extra: [String] = []) async throws {
        self.store = store
        try await super.init(bus: bus, script: "python-provider.py", name: name, arguments: ["--store", store] + extra)
    }
}
