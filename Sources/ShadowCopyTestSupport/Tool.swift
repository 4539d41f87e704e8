import DBus
import Foundation

/// Runs command-line tools (busctl, python3, the daemon itself) and captures what they print.
public struct ToolResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

public enum Tool {
    /// Runs `executable` with `arguments` to completion.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                           input: String? = nil) throws -> ToolResult {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("shadowcopy-tool-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        let outURL = scratch.appendingPathExtension("out"), errURL = scratch.appendingPathExtension("err")
        let inURL = scratch.appendingPathExtension("in")
        defer {
            for url in [outURL, errURL, inURL] { try? FileManager.default.removeItem(at: url) }
        }
        if let input { try input.write(to: inURL, atomically: true, encoding: .utf8) }
        let child = try ChildProcess(executable, arguments,
                                     environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
                                     stdout: outURL.path, stderr: errURL.path, stdin: input == nil ? nil : inURL.path)
        let status = child.wait(timeout: .seconds(120)) ?? child.stop(signal: SIGKILL)
        return ToolResult(status: status,
                          stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                          stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    /// `busctl --address=<bus>` with `arguments`.
    public static func busctl(_ bus: PrivateBus, _ arguments: [String]) throws -> ToolResult {
        try run("/usr/bin/busctl", ["--address=\(bus.address)"] + arguments)
    }
}

/// The D-Bus error name a call ends with, "no error" when it succeeds, or the description of a
/// non-D-Bus error: what a test asserts about a refused call.
public func dbusErrorName(_ body: () async throws -> Void) async -> String {
    do {
        try await body()
        return "no error"
    } catch let error as DBusError {
        return error.name.rawValue
    } catch {
        return "\(error)"
    }
}
