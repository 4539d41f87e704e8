import Foundation

/// A PostgreSQL cluster run as the postgres user, stopped by ``stop()`` whatever happened.
public final class PostgresCluster: @unchecked Sendable {
    /// Debian's PostgreSQL 15 programs.
    public static let bin = "/usr/lib/postgresql/15/bin"

    public let data: String
    public let socket: String
    public let port: Int
    private var started = false

    /// A cluster in `data` (an empty directory) listening on a socket only, on `port`.
    public init(data: String, port: Int) throws {
        self.data = data
        self.port = port
        socket = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-test-pgsock-\(port)").path
        try FileManager.default.createDirectory(atPath: socket, withIntermediateDirectories: true)
        _ = try Tool.run("/usr/bin/chown", ["postgres:postgres", socket])
    }

    /// Runs one of the PostgreSQL programs as the postgres user.
    public static func asPostgres(_ tool: String, _ arguments: [String]) throws -> ToolResult {
        try Tool.run("/usr/sbin/runuser", ["-u", "postgres", "--", PostgresCluster.bin + "/" + tool] + arguments)
    }

    /// Makes the cluster (trust authentication: it listens on its own socket only).
    public func initdb() throws {
        let result = try Self.asPostgres("initdb", ["-D", data, "--auth=trust", "-U", "postgres", "--no-sync"])
        guard result.status == 0 else { throw HarnessError("initdb: \(result.stderr)") }
    }

    /// Starts the server and waits until it accepts connections.
    public func start() throws {
        let result = try Self.asPostgres("pg_ctl", ["-D", data, "-l", socket + "/server.log", "-w", "-t", "60", "-o",
                                                    "-p \(port) -k \(socket) -c listen_addresses='' -c fsync=off", "start"])
        guard result.status == 0 else {
            throw HarnessError("pg_ctl start: \(result.stdout) \(result.stderr) \((try? String(contentsOfFile: socket + "/server.log", encoding: .utf8)) ?? "")")
        }
        started = true
    }

    /// The result of `query`, unaligned and without headers.
    public func sql(_ query: String) throws -> String {
        let result = try Self.asPostgres("psql", ["-X", "-A", "-t", "-h", socket, "-p", "\(port)", "-U", "postgres", "-d", "postgres",
                                                  "-v", "ON_ERROR_STOP=1", "-c", query])
        guard result.status == 0 else {
            let log = (try? String(contentsOfFile: socket + "/server.log", encoding: .utf8)) ?? ""
            throw HarnessError("psql \(query) on port \(port): \(result.stderr)\n\(log.split(separator: "\n").suffix(25).joined(separator: "\n"))")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops the server at once (a test's server holds nothing worth a clean shutdown).
    public func stop() {
        if started { _ = try? Self.asPostgres("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]) }
        started = false
        try? FileManager.default.removeItem(atPath: socket)
    }
}
