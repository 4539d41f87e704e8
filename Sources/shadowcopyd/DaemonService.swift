import DBus
import DeviceMapper
import Logging
import ServiceLifecycle
import ShadowCopyCore
import ShadowCopyProviders
import ShadowCopyService
import Synchronization

/// shadowcopyd as a swift-service-lifecycle service: connects, serves, and on graceful
/// shutdown (SIGTERM, SIGINT) closes the connection, which hands the bus name back.
struct DaemonService: Service {
    enum Bus: Sendable {
        case system, session
        case address(String)
    }

    let bus: Bus
    let settings: CoordinatorSettings
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
        let server = ShadowCopyServer(connection: connection, settings: settings,
                                      providers: [BtrfsProvider(logger: logger)], logger: logger)
        do {
            try await server.start()
        } catch {
            connection.close()
            throw error
        }
        let stopping = Mutex(false)
        await withGracefulShutdownHandler {
            await connection.closed()
        } onGracefulShutdown: {
            stopping.withLock { $0 = true }
            // Sets in progress are aborted (their writers thawed) while the bus is still there.
            Task {
                await server.shutdown()
                server.stop()
                connection.close()
            }
        }
        if !stopping.withLock({ $0 }) {
            connection.close()
            throw BusLost()
        }
        logger.info("stopped")
    }
}
