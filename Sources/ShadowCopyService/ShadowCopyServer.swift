import DBus
import Logging
import ShadowCopyCore
import Synchronization

/// shadowcopyd on the bus: serves the contract's objects and owns `org.shadowcopy.ShadowCopy1`.
///
/// Start order follows the zbus rule: every object is exported and the owner-tracking
/// subscription is in place before the name is requested, so no early call is lost.
public final class ShadowCopyServer: Sendable {
    public let connection: Connection
    public let settings: CoordinatorSettings
    let writers: WriterRegistry
    /// Sets, snapshots, jobs and the sequence; this class only puts them on the bus.
    public let engine: SnapshotEngine
    let logger: Logger
    private let ownerWatch = Mutex<Task<Void, Never>?>(nil)
    private let idleWatch = Mutex<Task<Void, Never>?>(nil)
    private let storageWatch = Mutex<Task<Void, Never>?>(nil)

    /// Asks polkit before anything changes.
    let authorizer: Authorizer
    /// External providers by name, with the bus name that registered each.
    let externalProviders = Mutex<[String: ExternalProvider]>([:])

    public init(connection: Connection, settings: CoordinatorSettings, providers: [any SnapshotProvider],
                catalog: Catalog, writeHolder: any WriteHolder, logger: Logger) {
        self.connection = connection
        self.settings = settings
        self.writers = WriterRegistry(settings: settings)
        self.logger = logger
        authorizer = Authorizer(connection: connection, logger: logger)
        let mirror = BusMirror(connection: connection, authorizer: authorizer, logger: logger)
        engine = SnapshotEngine(settings: settings, writers: writers, transport: DBusWriterTransport(connection: connection),
                                providers: providers, catalog: catalog, writeHolder: writeHolder, observer: mirror,
                                logger: logger)
        mirror.bind(engine)
    }

    /// Why the daemon could not take its place on the bus.
    public struct NameTaken: Error, CustomStringConvertible {
        public let description: String
    }

    /// Exports the root object, starts following writer owners, then requests the bus name.
    public func start() async throws {
        try connection.objects.export(ShadowCopyBus.root, [CoordinatorAdapter(server: self).interface()])
        connection.objects.addObjectManager(at: ShadowCopyBus.root)
        for provider in engine.providers {
            try connection.objects.export(ShadowCopyBus.providerPath(provider.info.name),
                                          [ProviderAdapter.interface(provider.info)])
        }
        _ = try await engine.restoreFromCatalog()
        try await followDisconnects()
        idleWatch.withLock { $0 = Task { [engine] in await engine.watchIdleSets() } }
        storageWatch.withLock { $0 = Task { [engine] in await engine.watchStorage() } }
        let reply = try await connection.requestName(ShadowCopyBus.name, flags: [.doNotQueue])
        guard reply == .primaryOwner || reply == .alreadyOwner else {
            let owner = (try? await connection.nameOwner(ShadowCopyBus.name))?.rawValue ?? "another process"
            throw NameTaken(description: "\(ShadowCopyBus.name) is already owned by \(owner); is shadowcopyd running?")
        }
        logger.info("serving on the bus", metadata: [
            "name": "\(ShadowCopyBus.name)", "unique-name": "\(connection.uniqueName)",
        ])
    }

    /// Ends every set before the daemon stops: in-progress ones are aborted, writers get
    /// BackupShutdown, and non-persistent copies are deleted (they do not outlive the service).
    public func shutdown() async {
        await engine.shutdown()
    }

    /// Stops following owners; the caller closes the connection, which gives the name back.
    public func stop() {
        ownerWatch.withLock { $0?.cancel() }
        idleWatch.withLock { $0?.cancel() }
        storageWatch.withLock { $0?.cancel() }
    }

    /// One subscription to every name that leaves the bus, rather than one per writer owner:
    /// the system bus allows a connection only 512 match rules.
    private func followDisconnects() async throws {
        let lost = try await connection.signals(MatchRule(
            sender: .bus, interface: "org.freedesktop.DBus", member: "NameOwnerChanged",
            path: "/org/freedesktop/DBus", args: [2: ""]))
        let task = Task { [weak self] in
            for await signal in lost {
                guard let self, let args = try? signal.arguments(), args.count == 3,
                    let name = args[0].string, name.hasPrefix(":")
                else { continue }
                self.ownerVanished(name)
            }
        }
        ownerWatch.withLock { $0 = task }
    }

    // MARK: Writers

    func registerWriter(_ registration: WriterRegistration, owner: BusName, path: ObjectPath) throws(ShadowCopyError)
        -> WriterRecord
    {
        let record = try writers.register(registration, owner: owner.rawValue, path: path.rawValue)
        do {
            try connection.objects.export(ShadowCopyBus.writerPath(record.id),
                                          [RegisteredWriterAdapter.interface(record.id, registry: writers)])
        } catch {
            // Roll back this registration only; the owner's other writers stay.
            _ = try? writers.unregister(record.id, caller: owner.rawValue)
            throw ShadowCopyError(.failed, "cannot export writer: \(error.message)")
        }
        logger.info("writer registered", metadata: [
            "writer": "\(record.id)", "name": "\(registration.name)", "owner": "\(owner)", "path": "\(path)",
            "level": "\(registration.level.rawValue)",
        ])
        // The owner may have left before the registration was recorded, when its
        // NameOwnerChanged had already gone by: ask once more.
        Task { [weak self] in
            guard let self, (try? await self.connection.nameOwner(owner)) == nil else { return }
            self.ownerVanished(owner.rawValue)
        }
        return record
    }

    func unregisterWriter(_ id: Identifier, caller: BusName) throws(ShadowCopyError) {
        let record = try writers.unregister(id, caller: caller.rawValue)
        connection.objects.unexport(ShadowCopyBus.writerPath(id))
        logger.info("writer unregistered", metadata: ["writer": "\(id)", "name": "\(record.registration.name)"])
    }

    func ownerVanished(_ owner: String) {
        // A requester's auto-release sets die with its connection.
        Task { [engine] in await engine.requesterVanished(owner) }
        unregisterProviders(ownedBy: owner)
        for record in writers.removeAll(ownedBy: owner) {
            connection.objects.unexport(ShadowCopyBus.writerPath(record.id))
            logger.info("writer gone with its connection", metadata: [
                "writer": "\(record.id)", "name": "\(record.registration.name)", "owner": "\(owner)",
            ])
        }
    }
}
