#if canImport(Glibc)
import Glibc
#endif
import Logging
import FreezeGuard
import ShadowCopyCore

/// `shadowcopyd`: the shadowcopy coordinator daemon.
///
/// Its few options are parsed by hand: an argument-parsing library would bring Foundation into a
/// daemon that must stay small at rest (idle RSS target 15 MiB).
@main
enum ShadowCopyDaemon {
    static let usage = """
        OVERVIEW: The shadowcopy coordinator: Linux volume shadow copies over D-Bus.

        Owns org.shadowcopy.ShadowCopy1 on the system bus (DBUS_SYSTEM_BUS_ADDRESS when set) and
        coordinates requesters, writers and snapshot providers. Stops gracefully on SIGTERM or SIGINT.

        USAGE: shadowcopyd [--address <address>] [--session] [--log-level <log-level>] [--catalog <path>]

        OPTIONS:
          --address <address>     Connect to this bus address instead of the system bus.
          --session               Use the session bus (for development).
          --log-level <log-level> Log level: trace, debug, info, notice, warning, error, critical
                                  (default: info).
          --catalog <path>        The catalog of sets and snapshots (default /var/lib/shadowcopy/catalog.db).
          --idle-set-timeout-ms <ms>
                                  Abort a set its requester leaves idle this long (default 600000).
          --expose-root <path>    Where Expose mounts copies (default /run/shadowcopy).
          --shadow-storage <path> Where device-mapper copies keep their COW stores, as sparse
                                  files (default /var/lib/shadowcopy/storage).
          --hold-writes-timeout-ms <ms>
                                  Hold writes on a set's volumes at most this long (default 10000).
          --storage-watch-ms <ms> Check device-mapper copies' stores this often, to grow them
                                  before they fill (default 1000).
          --version               Show the version.
          -h, --help              Show help information.

        """

    struct Options {
        var bus: DaemonService.Bus = .system
        var logLevel: Logger.Level = .info
        var settings = CoordinatorSettings()
        var catalog = "/var/lib/shadowcopy/catalog.db"
        var storage = "/var/lib/shadowcopy/storage"
    }

    enum Parsed {
        case run(Options)
        /// `--freeze-guard`: this process is the daemon's freeze guard (fd 3 is its socket).
        case freezeGuard
        case exit(Int32, String, toStderr: Bool)
    }

    static func parse(_ arguments: [String]) -> Parsed {
        var options = Options()
        var address: String?, session = false
        var rest = arguments[...]
        func usageError(_ message: String) -> Parsed {
            .exit(64, "Error: \(message)\nUsage: shadowcopyd [--address <address>] [--session] [--log-level <log-level>]\n"
                + "  See 'shadowcopyd --help' for more information.\n", toStderr: true)
        }
        if arguments == ["--freeze-guard"] { return .freezeGuard }
        while let argument = rest.popFirst() {
            switch argument {
            case "-h", "--help": return .exit(0, usage, toStderr: false)
            case "--version": return .exit(0, shadowCopyVersion + "\n", toStderr: false)
            case "--session": session = true
            case "--address":
                guard let value = rest.popFirst(), !value.isEmpty else { return usageError("--address needs a value") }
                address = value
            case "--log-level":
                guard let value = rest.popFirst(), let level = Logger.Level(rawValue: value) else {
                    return usageError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
                }
                options.logLevel = level
            case "--idle-set-timeout-ms":
                guard let value = rest.popFirst().flatMap({ UInt32($0) }), value > 0 else {
                    return usageError("--idle-set-timeout-ms needs a number of milliseconds above 0")
                }
                options.settings.idleSetTimeoutMs = value
            case "--hold-writes-timeout-ms":
                guard let value = rest.popFirst().flatMap({ UInt32($0) }), value > 0 else {
                    return usageError("--hold-writes-timeout-ms needs a number of milliseconds above 0")
                }
                options.settings.holdWritesTimeoutMs = value
            case "--storage-watch-ms":
                guard let value = rest.popFirst().flatMap({ UInt32($0) }), value >= 10 else {
                    return usageError("--storage-watch-ms needs a number of milliseconds, at least 10")
                }
                options.settings.storageWatchMs = value
            case "--expose-root":
                guard let value = rest.popFirst(), value.hasPrefix("/"), value.count > 1 else {
                    return usageError("--expose-root needs an absolute path")
                }
                options.settings.exposeRoot = value
            case "--shadow-storage":
                guard let value = rest.popFirst(), value.hasPrefix("/") else {
                    return usageError("--shadow-storage needs an absolute path")
                }
                options.storage = value
            case "--catalog":
                guard let value = rest.popFirst(), value.hasPrefix("/") else {
                    return usageError("--catalog needs an absolute path")
                }
                options.catalog = value
            default:
                return usageError("unknown argument '\(argument)'")
            }
        }
        if session, address != nil { return usageError("--session and --address exclude each other") }
        options.bus = session ? .session : address.map { .address($0) } ?? .system
        return .run(options)
    }

    static func main() async {
        let options: Options
        switch parse(Array(CommandLine.arguments.dropFirst())) {
        case .run(let parsed):
            options = parsed
        case .freezeGuard:
            GuardServer.run(socket: 3)
        case .exit(let code, let text, let toStderr):
            var bytes = Array(text.utf8)
            _ = write(toStderr ? 2 : 1, &bytes, bytes.count)
            exit(code)
        }
        let level = options.logLevel
        LoggingSystem.bootstrap { JournalLogHandler(label: $0, level: level) }
        let logger = Logger(label: "shadowcopyd")
        let service = DaemonService(bus: options.bus, settings: options.settings, catalogPath: options.catalog,
                                    storagePath: options.storage, logger: logger)
        do {
            try await service.run()
        } catch {
            logger.critical("shadowcopyd failed", metadata: ["error": "\(error)"])
            exit(1)
        }
    }
}
