#if canImport(Glibc)
import Glibc
#endif
import DBus
import DeviceMapper
import FreezeGuard
import Logging
import ShadowCopyCore
import ShadowCopyProviders
import ShadowCopyService
import Synchronization

/// shadowcopyd's life: connects, serves, and on SIGTERM or SIGINT ends its sets, then closes the
/// connection, which hands the bus name back.
///
/// The graceful-shutdown shape is swift-service-lifecycle's, without the library: it and the
/// async-algorithms it brings are 1.5 MB of code, a tenth of the idle RSS budget.
struct DaemonService {
    enum Bus: Sendable {
        case system, session
        case address(String)
    }

    let bus: Bus
    let settings: CoordinatorSettings
    let catalogPath: String
    let storagePath: String
    let logger: Logger

    /// The bus went away while the daemon was serving.
    struct BusLost: Error, CustomStringConvertible {
        var description: String { "the message bus closed the connection" }
    }

    func run() async throws {
        let connection: Connection
        switch bus {
        case .system: connection = try Connection.system()
        case .session: connection = try Connection.session()
        case .address(let address): connection = try Connection(address: address)
        }
        logger.info("starting", metadata: [
            "version": "\(shadowCopyVersion)", "libdevmapper": "\(DeviceMapper.libraryVersion())",
            "device-mapper": "\(DeviceMapper.kernelSupport ? "available" : "absent from this kernel")",
        ])
        let freezeGuard = FreezeGuard()
        defer { freezeGuard.stop() }
        let server: ShadowCopyServer
        do {
            let catalog = try Catalog(path: catalogPath)
            server = ShadowCopyServer(connection: connection, settings: settings,
                                      providers: [BtrfsProvider(logger: logger),
                                                  // Before dm-snapshot, which could copy thin volumes too, less well.
                                                  ThinProvider(stateDirectory: String(catalogPath[..<(catalogPath.lastIndex(of: "/") ?? catalogPath.startIndex)]),
                                                               guardian: freezeGuard, holdLimitMs: settings.holdWritesTimeoutMs,
                                                               logger: logger),
                                                  DMSnapshotProvider(storageDirectory: storagePath, guardian: freezeGuard,
                                                                     holdLimitMs: settings.holdWritesTimeoutMs, logger: logger)],
                                      catalog: catalog,
                                      writeHolder: freezeGuard, logger: logger)
            try await server.start()
        } catch {
            connection.close()
            throw error
        }
        let stopping = Mutex(false)
        let signals = StopSignals([SIGTERM, SIGINT]) { [logger] signal in
            guard !stopping.withLock({ stop in defer { stop = true }; return stop }) else { return }
            logger.info("stopping", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")"])
            // Sets in progress are aborted (their writers thawed) while the bus is still there.
            Task {
                await server.shutdown()
                server.stop()
                connection.close()
            }
        }
        await connection.closed()
        signals.cancel()
        if !stopping.withLock({ $0 }) {
            connection.close()
            throw BusLost()
        }
        logger.info("stopped")
    }
}
