import ArgumentParser
import Logging
import ServiceLifecycle
import ShadowCopyCore

/// `shadowcopyd`: the shadowcopy coordinator daemon.
@main
struct ShadowCopyDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadowcopyd",
        abstract: "The shadowcopy coordinator: Linux volume shadow copies over D-Bus.",
        discussion: """
            Owns org.shadowcopy.ShadowCopy1 on the system bus (DBUS_SYSTEM_BUS_ADDRESS when set) and \
            coordinates requesters, writers and snapshot providers. Stops gracefully on SIGTERM or SIGINT.
            """,
        version: shadowCopyVersion)

    @Option(name: .long, help: "Connect to this bus address instead of the system bus.")
    var address: String?

    @Flag(name: .long, help: "Use the session bus (for development).")
    var session = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if session, address != nil { throw ValidationError("--session and --address exclude each other") }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { JournalLogHandler(label: $0, level: level) }
        let logger = Logger(label: "shadowcopyd")
        let bus: DaemonService.Bus = session ? .session : address.map { .address($0) } ?? .system
        let service = DaemonService(bus: bus, settings: CoordinatorSettings(), logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("shadowcopyd failed", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}


