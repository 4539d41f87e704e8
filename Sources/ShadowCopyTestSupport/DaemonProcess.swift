import DBus
import Foundation

/// The real `shadowcopyd` binary, started against a ``PrivateBus``.
public final class DaemonProcess: @unchecked Sendable {
    public let process: ChildProcess
    public let logURL: URL
    public let bus: PrivateBus
    /// Where this daemon exposes copies (`--expose-root`).
    public let exposeRoot: String

    /// Starts the daemon and waits until it owns its name (at most `timeout`: generous, since
    /// under emulation in the device-mapper VM a start can take many seconds).
    public init(bus: PrivateBus, arguments: [String] = [], binary: URL = ProjectPaths.daemon,
                timeout: Duration = .seconds(60)) async throws {
        self.bus = bus
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw HarnessError("\(binary.path) is missing: build the package first (swift build)")
        }
        logURL = bus.directory.appendingPathComponent("shadowcopyd-\(UInt32.random(in: 0...UInt32.max)).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        var environment = ProcessInfo.processInfo.environment
        environment["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        environment.removeValue(forKey: "JOURNAL_STREAM")
        // Each daemon keeps its catalog and its exposed copies beside its bus unless told
        // otherwise: tests never touch /var/lib/shadowcopy or /run/shadowcopy, and suites that
        // run at once never see each other's mounts.
        var arguments = arguments
        if !arguments.contains("--catalog") { arguments += ["--catalog", bus.directory.appendingPathComponent("catalog.db").path] }
        if !arguments.contains("--shadow-storage") {
            arguments += ["--shadow-storage", bus.directory.appendingPathComponent("storage").path]
        }
        if let at = arguments.firstIndex(of: "--expose-root"), at + 1 < arguments.count {
            exposeRoot = arguments[at + 1]
        } else {
            exposeRoot = bus.directory.appendingPathComponent("expose").path
            arguments += ["--expose-root", exposeRoot]
        }
        process = try ChildProcess(binary.path, arguments, environment: environment,
                                   stdout: logURL.path, stderr: logURL.path)
        try await waitForName(timeout: timeout)
    }

    private func waitForName(timeout: Duration) async throws {
        let probe = try Connection(address: bus.address)
        defer { probe.close() }
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if try await probe.nameOwner("org.shadowcopy.ShadowCopy1") != nil { return }
            guard process.isRunning else {
                throw HarnessError("shadowcopyd exited with \(process.poll() ?? -1) before owning its name:\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw HarnessError("shadowcopyd did not own its name within \(timeout):\n\(log)")
    }

    /// Runs `body` with a daemon on `bus` and stops it afterwards, also on failure.
    public static func with<T: Sendable>(bus: PrivateBus, arguments: [String] = [],
                                         _ body: (DaemonProcess) async throws -> T) async throws -> T {
        let daemon = try await DaemonProcess(bus: bus, arguments: arguments)
        do {
            let result = try await body(daemon)
            await daemon.stop()
            daemon.unmountExposed()
            return result
        } catch {
            await daemon.stop()
            daemon.unmountExposed()
            throw error
        }
    }

    /// The process id.
    public var pid: Int32 { process.pid }

    /// Everything the daemon logged so far.
    public var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Resident memory in KiB, from /proc.
    public var residentKiB: Int? { ProcStatus.residentKiB(pid: pid) }

    /// Sends `signal` and waits for the exit; returns the exit status (128 + signal if killed).
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async -> Int32 {
        process.stop(signal: signal, grace: timeout)
    }

    /// Unmounts whatever is still exposed under this daemon's expose root: exposed persistent
    /// copies outlive the daemon by design, but not the test.
    public func unmountExposed() {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: exposeRoot)) ?? [] {
            _ = try? Tool.run("/usr/bin/umount", ["--lazy", exposeRoot + "/" + entry])
        }
    }

    /// The entries under the expose root (a copy exposed, or a leftover).
    public var exposed: [String] { (try? FileManager.default.contentsOfDirectory(atPath: exposeRoot)) ?? [] }
}

/// Reads /proc/<pid>/status.
public enum ProcStatus {
    /// VmRSS in KiB.
    public static func residentKiB(pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }
}

/// A bus with a running daemon, torn down by ``stop()`` whatever happened in between.
public struct DaemonFixture: Sendable {
    public let bus: PrivateBus
    public let daemon: DaemonProcess

    /// Runs `body` with a fresh bus and daemon, and stops both afterwards, also on failure.
    public static func with<T: Sendable>(
        arguments: [String] = [], extraConfig: String = "", morePolicies: [URL] = [],
        _ body: (DaemonFixture) async throws -> T
    ) async throws -> T {
        let bus = try PrivateBus(policies: [ProjectPaths.busPolicy] + morePolicies, extraConfig: extraConfig)
        let daemon: DaemonProcess
        do {
            daemon = try await DaemonProcess(bus: bus, arguments: arguments)
        } catch {
            bus.stop()
            throw error
        }
        let fixture = DaemonFixture(bus: bus, daemon: daemon)
        do {
            let result = try await body(fixture)
            await daemon.stop()
            daemon.unmountExposed()
            bus.stop()
            return result
        } catch {
            await daemon.stop()
            daemon.unmountExposed()
            bus.stop()
            throw error
        }
    }

    /// A new client connection to the fixture's bus; the caller closes it.
    public func client() throws -> Connection { try Connection(address: bus.address) }
}
