import DBus
import Logging
import ShadowCopyCore
import Synchronization

/// Mirrors the engine on the bus: exports and removes set, snapshot and job objects, announces
/// property changes, and emits the Coordinator's and jobs' signals.
final class BusMirror: EngineObserver {
    private let connection: Connection
    private let authorizer: Authorizer
    private let logger: Logger
    private let engineRef = Mutex<SnapshotEngine?>(nil)
    /// Jobs whose Completed was emitted, so it goes out once.
    private let completed = Mutex<Set<UInt64>>([])

    init(connection: Connection, authorizer: Authorizer, logger: Logger) {
        self.connection = connection
        self.authorizer = authorizer
        self.logger = logger
    }

    func bind(_ engine: SnapshotEngine) { engineRef.withLock { $0 = engine } }
    private var engine: SnapshotEngine? { engineRef.withLock { $0 } }
    private var objects: ObjectServer { connection.objects }

    private func export(_ path: ObjectPath, _ interface: Interface) {
        do {
            try objects.export(path, [interface])
        } catch {
            logger.error("cannot export object", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    func setAdded(_ id: Identifier) {
        guard let engine else { return }
        export(ShadowCopyBus.setPath(id), SnapshotSetAdapter(engine: engine, id: id, authorizer: authorizer).interface())
    }

    func setChanged(_ id: Identifier) {
        objects.propertiesChanged(ShadowCopyBus.setPath(id), ShadowCopySpecs.snapshotSet.name,
                                  ["State", "BackupType", "Volumes", "Snapshots", "Persistent", "Consistency"])
        objects.propertiesChanged(ShadowCopyBus.root, ShadowCopySpecs.coordinator.name, ["ActiveSet"])
    }

    func setRemoved(_ id: Identifier) { objects.unexport(ShadowCopyBus.setPath(id)) }

    func snapshotAdded(_ id: Identifier) {
        guard let engine else { return }
        export(ShadowCopyBus.snapshotPath(id), SnapshotAdapter.interface(id, engine: engine, authorizer: authorizer))
    }

    func snapshotChanged(_ id: Identifier) {
        objects.propertiesChanged(ShadowCopyBus.snapshotPath(id), ShadowCopySpecs.snapshot.name,
                                  ["Device", "Attributes", "State", "ExposedPath", "StorageSize"])
    }

    func snapshotRemoved(_ id: Identifier) { objects.unexport(ShadowCopyBus.snapshotPath(id)) }

    func jobAdded(_ job: Job) {
        guard let engine else { return }
        export(ShadowCopyBus.jobPath(job.number), JobAdapter.interface(job, engine: engine))
    }

    func jobChanged(_ job: Job) {
        let path = ShadowCopyBus.jobPath(job.number)
        guard engine?.job(job.number) != nil else { return objects.unexport(path) }
        objects.propertiesChanged(path, ShadowCopySpecs.job.name, ["Progress", "State", "ErrorName", "ErrorMessage"])
        let status = job.status
        guard status.state != .running, completed.withLock({ $0.insert(job.number).inserted }) else { return }
        let error = status.error?.dbusError
        objects.emit(ShadowCopySpecs.job, "Completed", from: path, [
            .bool(status.state == .succeeded), .string(error?.name.rawValue ?? ""), .string(error?.message ?? ""),
        ])
    }

    func storageAdded(_ id: Identifier) {
        guard let engine else { return }
        export(ShadowCopyBus.storagePath(id), ShadowStorageAdapter.interface(id, engine: engine, authorizer: authorizer))
    }

    func storageChanged(_ id: Identifier) {
        objects.propertiesChanged(ShadowCopyBus.storagePath(id), ShadowCopySpecs.shadowStorage.name,
                                  ["Allocated", "MaxSize", "Policy"])
    }

    func storageRemoved(_ id: Identifier) { objects.unexport(ShadowCopyBus.storagePath(id)) }

    func writerChanged(_ id: Identifier) {
        objects.propertiesChanged(ShadowCopyBus.writerPath(id), ShadowCopySpecs.registeredWriter.name, ["State", "LastError"])
    }

    func broadcast(_ signal: Broadcast) {
        let (member, arguments): (MemberName, [Value])
        switch signal {
        case .prepareForSnapshot(let set, let volumes):
            (member, arguments) = ("PrepareForSnapshot", [.objectPath(ShadowCopyBus.setPath(set)), .strings(volumes)])
        case .freeze(let set, let volumes):
            (member, arguments) = ("Freeze", [.objectPath(ShadowCopyBus.setPath(set)), .strings(volumes)])
        case .thaw(let set):
            (member, arguments) = ("Thaw", [.objectPath(ShadowCopyBus.setPath(set))])
        case .done(let set, let ok, let error):
            (member, arguments) = ("SnapshotSetDone", [.objectPath(ShadowCopyBus.setPath(set)), .bool(ok), .string(error)])
        case .invalidated(let snapshot, let reason):
            (member, arguments) = ("SnapshotInvalidated", [.objectPath(ShadowCopyBus.snapshotPath(snapshot)), .string(reason)])
        }
        objects.emit(ShadowCopySpecs.coordinator, member, from: ShadowCopyBus.root, arguments)
    }
}
