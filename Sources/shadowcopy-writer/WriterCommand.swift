import ArgumentParser
import DBus
import Foundation
import ShadowCopyWriter

/// `shadowcopy-writer`: the writers shipped with shadowcopy, one subcommand each.
@main
struct WriterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadowcopy-writer",
        abstract: "Writers that make applications consistent on disk for shadowcopy's snapshots.",
        subcommands: [Hooks.self, SQLiteCommand.self, PostgreSQLCommand.self])
}

/// Options every writer takes.
struct CommonOptions: ParsableArguments {
    @Option(help: "The writer's name, as `shadowcopy status` shows it.")
    var name: String?

    @Option(help: "When it freezes: front-end, back-end or system.")
    var level: String = "front-end"

    @Option(name: .customLong("freeze-timeout-ms"), help: "Longest it tolerates between Freeze and Thaw.")
    var freezeTimeoutMs: UInt32?

    @Option(help: "Append '<monotonic ns> <event>' lines here (default: standard error).")
    var log: String?

    @Option(help: "Bus address (default: the system bus, or DBUS_SYSTEM_BUS_ADDRESS).")
    var address: String?

    func validate() throws {
        guard ["front-end", "back-end", "system"].contains(level) else {
            throw ValidationError("--level must be front-end, back-end or system")
        }
    }

    /// Registers `handlers`, then serves until SIGTERM or SIGINT, and unregisters.
    func serve(_ handlers: any WriterHandlers, defaultName: String, restoreMethod: String, log: EventLog) async throws {
        let connection = try address.map { try Connection(address: $0) } ?? Connection.system()
        let writer = ShadowCopyWriter(connection: connection, options: .init(
            name: name ?? defaultName, level: level, freezeTimeoutMs: freezeTimeoutMs, restoreMethod: restoreMethod),
            handlers: handlers)
        try await writer.start()
        log.note("registered \(writer.record?.rawValue ?? "?")")
        await Self.waitForStop()
        await writer.stop()
        connection.close()
    }

    private static func waitForStop() async {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        let signals = StopSignals([SIGTERM, SIGINT]) { continuation.yield($0) }
        for await _ in stream { break }
        signals.cancel()
    }
}

/// `shadowcopy-writer hooks`: runs hook scripts around the freeze (qemu-ga fsfreeze-hook.d style).
struct Hooks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the executables of a directory with 'freeze', then 'thaw' in reverse order.",
        discussion: """
            Scripts run in sorted order with the argument 'freeze' when a snapshot is about to be made, \
            and with 'thaw' in reverse order, for every script that froze, once it is made or when it \
            is abandoned (then SHADOWCOPY_EVENT=abort). Scripts written for qemu-ga's \
            /etc/qemu/fsfreeze-hook.d run unchanged. A required script that fails to freeze vetoes the \
            snapshot after the scripts that froze before it are thawed.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The directory of hook scripts.")
    var dir: String = "/etc/shadowcopy/hooks.d"

    @Option(name: .customLong("timeout-ms"), help: "Longest one script may run.")
    var timeoutMs: UInt32 = 10_000

    @Option(name: .customLong("script-timeout"), help: "SCRIPT=MS: another time-out for one script (repeatable).")
    var scriptTimeouts: [String] = []

    @Option(name: .customLong("ignore-failure"), help: "SCRIPT: its failure is logged, never a veto (repeatable).")
    var ignored: [String] = []

    func validate() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--dir \(dir) is not a directory")
        }
        for entry in scriptTimeouts {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, UInt32(parts[1]) != nil else {
                throw ValidationError("--script-timeout takes SCRIPT=MILLISECONDS, not '\(entry)'")
            }
        }
    }

    func run() async throws {
        var timeouts: [String: UInt32] = [:]
        for entry in scriptTimeouts {
            let parts = entry.split(separator: "=", maxSplits: 1)
            timeouts[String(parts[0])] = UInt32(parts[1])
        }
        let runner = HookRunner(directory: dir, defaultTimeoutMs: timeoutMs, timeouts: timeouts,
                                policies: Dictionary(uniqueKeysWithValues: ignored.map { ($0, .ignore) }))
        let log = EventLog(path: common.log)
        try await common.serve(HooksWriter(runner: runner, log: log), defaultName: "hooks", restoreMethod: "custom", log: log)
    }
}

/// `shadowcopy-writer sqlite --database FILE...`: SQLite databases, consistent in every copy.
struct SQLiteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sqlite",
        abstract: "Keep SQLite databases consistent: checkpoint before the copy, hold the write lock while it is made.")

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("database"), help: "A database file (repeatable).")
    var databases: [String] = []

    func validate() throws {
        guard !databases.isEmpty else { throw ValidationError("name at least one --database") }
        for path in databases where !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("--database \(path) does not exist")
        }
    }

    func run() async throws {
        let log = EventLog(path: common.log)
        // The lock is released at the writer's own freeze timeout, or the coordinator's (60 s).
        let handlers = SQLiteWriter(databases: databases.map { URL(fileURLWithPath: $0).standardizedFileURL.path },
                                    freezeTimeoutMs: common.freezeTimeoutMs ?? 60_000, log: log)
        try await common.serve(handlers, defaultName: "sqlite", restoreMethod: "stop-restore-start", log: log)
    }
}

/// `shadowcopy-writer postgresql --data-directory DIR`: a PostgreSQL cluster through its backup API.
struct PostgreSQLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "postgresql",
        abstract: "Back up a PostgreSQL cluster with pg_backup_start/pg_backup_stop around each copy.",
        discussion: """
            The backup label of each copy is written to --label-directory as <set>.backup_label: to \
            restore, copy the data directory out of the shadow copy, put that file into it as \
            backup_label, and start PostgreSQL on it.
            """)

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("data-directory"), help: "The cluster's data directory (PGDATA).")
    var dataDirectory: String

    @Option(help: "Where psql connects: a host name or a socket directory.")
    var host: String?

    @Option(help: "The server's port.")
    var port: Int?

    @Option(help: "A role allowed to run backups (superuser or pg_backup_start/pg_backup_stop grants).")
    var user: String = "postgres"

    @Option(name: .customLong("label-directory"), help: "Where backup labels go.")
    var labelDirectory: String = "/var/lib/shadowcopy-writer/postgresql"

    @Option(help: "The psql to run.")
    var psql: String = "/usr/bin/psql"

    func validate() throws {
        guard FileManager.default.fileExists(atPath: dataDirectory + "/PG_VERSION") else {
            throw ValidationError("--data-directory \(dataDirectory) is not a PostgreSQL data directory")
        }
    }

    func run() async throws {
        var connection = ["-U", user, "-d", "postgres"]
        if let host { connection += ["-h", host] }
        if let port { connection += ["-p", "\(port)"] }
        let log = EventLog(path: common.log)
        let writer = PostgreSQLWriter(dataDirectory: dataDirectory, connection: connection, labelDirectory: labelDirectory,
                                      psql: psql, log: log)
        // Restoring means stopping the server, putting the data directory back with its label, starting.
        try await common.serve(writer, defaultName: "postgresql", restoreMethod: "stop-restore-start", log: log)
    }
}
