import Logging
import Synchronization

/// Who is calling: the unique bus name and the uid behind it.
public struct Caller: Sendable, Equatable {
    public let name: String
    public let uid: UInt32

    public init(name: String, uid: UInt32) {
        self.name = name
        self.uid = uid
    }

    public var isRoot: Bool { uid == 0 }
}

/// Signals for light subscribers, who listen and are never waited for.
public enum Broadcast: Sendable, Equatable {
    case prepareForSnapshot(set: Identifier, volumes: [String])
    case freeze(set: Identifier, volumes: [String])
    case thaw(set: Identifier)
    case done(set: Identifier, ok: Bool, error: String)
    /// A copy was lost (its store overflowed) or deleted to make room for others.
    case invalidated(snapshot: Identifier, reason: String)
}

/// What the service layer mirrors on the bus: objects to add, change and remove, and signals.
public protocol EngineObserver: Sendable {
    func setAdded(_ id: Identifier)
    func setChanged(_ id: Identifier)
    func setRemoved(_ id: Identifier)
    func snapshotAdded(_ id: Identifier)
    func snapshotChanged(_ id: Identifier)
    func snapshotRemoved(_ id: Identifier)
    func jobAdded(_ job: Job)
    func jobChanged(_ job: Job)
    func writerChanged(_ id: Identifier)
    func storageAdded(_ id: Identifier)
    func storageChanged(_ id: Identifier)
    func storageRemoved(_ id: Identifier)
    func broadcast(_ signal: Broadcast)
}

/// The coordinator's engine: snapshot sets, their writers, providers and jobs (VSS's service).
///
/// Every requester call comes through here with its ``Caller``. State lives under one lock and
/// is never held across an await; the long phases run as ``Job``s.
public final class SnapshotEngine: Sendable {
    struct State: ~Copyable {
        var sets: [Identifier: SnapshotSetRecord] = [:]
        var snapshots: [Identifier: SnapshotRecord] = [:]
        var jobs: [UInt64: Job] = [:]
        var nextJob: UInt64 = 1
        /// The set between StartSnapshotSet and the end of its DoSnapshotSet, if any.
        var creating: Identifier?
        var slotWaiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextSlotWaiter: UInt64 = 1
        /// Shadow storage areas, by id.
        var storage: [Identifier: ShadowStorageRecord] = [:]
        /// Each copy's store use at the last storage round, for the pace it fills at.
        var storeUse: [Identifier: UInt64] = [:]
    }

    let state = Mutex(State())
    public let settings: CoordinatorSettings
    public let writers: WriterRegistry
    let transport: any WriterTransport
    /// Built-in providers first, then external ones in the order they registered.
    let providerList: Mutex<[any SnapshotProvider]>
    let observer: any EngineObserver
    /// Where sets and snapshots outlive the daemon.
    public let catalog: Catalog
    /// Holds writes on volumes whose provider does not hold them itself.
    let writeHolder: any WriteHolder
    let logger: Logger

    public init(settings: CoordinatorSettings, writers: WriterRegistry, transport: any WriterTransport,
                providers: [any SnapshotProvider], catalog: Catalog, writeHolder: any WriteHolder,
                observer: any EngineObserver, logger: Logger) {
        self.settings = settings
        self.writers = writers
        self.transport = transport
        self.providerList = Mutex(providers)
        self.catalog = catalog
        self.writeHolder = writeHolder
        self.observer = observer
        self.logger = logger
    }

    /// Every provider, built in and external.
    public var providers: [any SnapshotProvider] { providerList.withLock { $0 } }

    // MARK: Reading

    public func set(_ id: Identifier) -> SnapshotSetRecord? { state.withLock { $0.sets[id] } }
    public func snapshot(_ id: Identifier) -> SnapshotRecord? { state.withLock { $0.snapshots[id] } }
    public func job(_ number: UInt64) -> Job? { state.withLock { $0.jobs[number] } }
    /// The set in creation, if any (`ActiveSet`).
    public var activeSet: Identifier? { state.withLock { $0.creating } }

    /// Snapshots that match every given filter, oldest first.
    public func query(volume: String? = nil, set: Identifier? = nil) -> [SnapshotRecord] {
        state.withLock { s in
            s.snapshots.values.filter { r in
                r.state != .pending && (volume == nil || r.originalVolume == volume) && (set == nil || r.set == set)
            }.sorted { ($0.creationNs, $0.id.hex) < ($1.creationNs, $1.id.hex) }
        }
    }

    /// The provider that would copy `volume` and the volume's canonical name.
    public func provider(for volume: String, named wanted: String? = nil) async throws(ShadowCopyError)
        -> (any SnapshotProvider, String)
    {
        try checkVolumeText(volume)
        var reasons: [String] = []
        for provider in providers where wanted == nil || provider.info.name == wanted {
            do {
                if let canonical = try await provider.canonicalVolume(volume) { return (provider, canonical) }
                reasons.append("\(provider.info.name): not its kind of volume")
            } catch {
                reasons.append("\(provider.info.name): \(error.message)")
            }
        }
        if let wanted, !providers.contains(where: { $0.info.name == wanted }) {
            throw ShadowCopyError(.notFound, "no provider named '\(wanted)'")
        }
        throw ShadowCopyError(.volumeNotSupported,
                              "no provider can copy \(volume) (\(reasons.joined(separator: "; ")))")
    }

    func checkVolumeText(_ volume: String) throws(ShadowCopyError) {
        guard volume.hasPrefix("/"), volume.utf8.count <= 4096, !volume.utf8.contains(0),
            !volume.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw .invalidArgs("a volume is an absolute path (a mount point or a block device), not '\(volume.prefix(64))'") }
    }

    // MARK: Sets

    /// Starts a set for `caller` (StartSnapshotSet, StartRestore), waiting up to `waitMs` for the
    /// creation slot when another set holds it.
    public func startSet(
        caller: Caller, context: SetContext, backupType: BackupType, persistent: Bool, autoRelease: Bool,
        description: String, restore: Bool, waitMs: UInt32
    ) async throws(ShadowCopyError) -> Identifier {
        guard description.utf8.count <= 1024 else { throw .invalidArgs("description: at most 1024 bytes") }
        let id = Identifier()
        let now = Clock.wallSeconds()
        let record = SnapshotSetRecord(
            id: id, requester: caller.name, requesterUID: caller.uid, context: context, isRestore: restore,
            backupType: backupType, persistent: persistent, autoRelease: autoRelease, description: description,
            creationTime: now, lastActivity: Clock.monotonicMs())
        if !restore { try await takeCreationSlot(for: id, waitMs: waitMs) }
        state.withLock { $0.sets[id] = record }
        observer.setAdded(id)
        logger.info("set started", metadata: [
            "set": "\(id)", "requester": "\(caller.name)", "context": "\(context.rawValue)", "restore": "\(restore)",
        ])
        return id
    }

    /// Runs `body` on set `id` for `caller`, who must be allowed to drive it.
    func withSet<R>(_ id: Identifier, _ caller: Caller, rootMay: Bool = false,
                    _ body: (inout SnapshotSetRecord) throws(ShadowCopyError) -> R) throws(ShadowCopyError) -> R {
        try state.withLock { s throws(ShadowCopyError) -> R in
            guard var set = s.sets[id] else { throw .notFound("no snapshot set \(id)") }
            try SnapshotEngine.checkDriver(set, caller, rootMay: rootMay)
            set.lastActivity = Clock.monotonicMs()
            defer { s.sets[id] = set }
            return try body(&set)
        }
    }

    /// Only the requester may drive its set: by bus name, or by uid for sets that outlive their
    /// connection (`auto-release` false, as busctl scripts make, one connection per call).
    static func checkDriver(_ set: SnapshotSetRecord, _ caller: Caller, rootMay: Bool) throws(ShadowCopyError) {
        if caller.name == set.requester { return }
        if !set.autoRelease, caller.uid == set.requesterUID { return }
        if rootMay, caller.isRoot { return }
        throw ShadowCopyError(.notAuthorized, "snapshot set \(set.id) belongs to its requester \(set.requester)")
    }

    /// Refuses when the set is busy with a job or not in one of `states`.
    static func require(_ set: SnapshotSetRecord, _ states: [SetState], for what: String) throws(ShadowCopyError) {
        if let busy = set.busyWith { throw .badState("\(what): the set is busy with \(busy)") }
        guard states.contains(set.state) else {
            let allowed = states.map(\.rawValue).joined(separator: " or ")
            throw .badState("\(what) needs a set that is \(allowed); this one is \(set.state.rawValue)")
        }
    }

    /// SetBackupState: whether components are selected one by one, and the backup type.
    public func setBackupState(_ id: Identifier, _ caller: Caller, selectComponents: Bool?, backupType: BackupType?)
        throws(ShadowCopyError)
    {
        try withSet(id, caller) { set throws(ShadowCopyError) in
            try SnapshotEngine.require(set, [.created, .metadataGathered], for: "SetBackupState")
            if let selectComponents { set.selectComponents = selectComponents }
            if let backupType { set.backupType = backupType }
        }
        observer.setChanged(id)
    }

    /// AddComponent: selects a component that the writer reported in its metadata.
    public func addComponent(_ id: Identifier, _ caller: Caller, writer: Identifier, component: ComponentKey)
        throws(ShadowCopyError)
    {
        try withSet(id, caller) { set throws(ShadowCopyError) in
            try SnapshotEngine.require(set, [.metadataGathered], for: "AddComponent")
            guard var part = set.writers[writer], let metadata = part.metadata else {
                throw .notFound("writer \(writer) gave no metadata to this set")
            }
            guard let found = metadata.components.first(where: {
                $0.logicalPath == component.logicalPath && $0.name == component.name
            }) else {
                throw .notFound("writer \(part.writer.registration.name) has no component '\(component.logicalPath)' '\(component.name)'")
            }
            guard found.selectable else { throw .invalidArgs("component '\(component.name)' is not selectable") }
            part.selected[component] = .some(nil)
            set.writers[writer] = part
        }
    }

    /// AddVolume: a pending snapshot of a volume that ``provider(for:named:)`` resolved (after
    /// ``mayAddVolume(_:_:)``), made by DoSnapshotSet. The service layer resolves the volume
    /// first, to give polkit its canonical name, and the provider is asked only once.
    public func addVolume(_ id: Identifier, _ caller: Caller, canonical: String, provider: any SnapshotProvider)
        throws(ShadowCopyError) -> Identifier
    {
        let snapshot = Identifier()
        try state.withLock { s throws(ShadowCopyError) in
            guard var set = s.sets[id] else { throw .notFound("no snapshot set \(id)") }
            try SnapshotEngine.checkDriver(set, caller, rootMay: false)
            try SnapshotEngine.checkAddVolume(set)
            guard !set.volumes.contains(canonical) else { throw .alreadyExists("\(canonical) is already in the set") }
            guard set.volumes.count < Int(settings.maxVolumesPerSet) else {
                throw .init(.limitExceeded, "a set holds at most \(settings.maxVolumesPerSet) volumes")
            }
            let existing = s.snapshots.values.filter { $0.originalVolume == canonical && $0.state != .pending }.count
            guard existing < Int(settings.maxSnapshotsPerVolume) else {
                throw .init(.limitExceeded, "\(canonical) already has \(existing) snapshots (MaxSnapshotsPerVolume)")
            }
            set.volumes.append(canonical)
            set.snapshots.append(snapshot)
            set.lastActivity = Clock.monotonicMs()
            s.sets[id] = set
            s.snapshots[snapshot] = SnapshotRecord(id: snapshot, set: id, originalVolume: canonical,
                                                   provider: provider.info.name)
        }
        // In the catalog as a pending copy now, on disk before DoSnapshotSet makes it (the
        // sequence waits for the flush begun here, which meanwhile overlaps the bus traffic).
        do throws(ShadowCopyError) {
            try persist(id)
        } catch {
            state.withLock { s in
                s.sets[id]?.volumes.removeAll { $0 == canonical }
                s.sets[id]?.snapshots.removeAll { $0 == snapshot }
                s.snapshots[snapshot] = nil
            }
            throw error
        }
        catalog.startSync()
        observer.snapshotAdded(snapshot)
        observer.setChanged(id)
        return snapshot
    }

    /// Ownership and state, before anything looks at the volume: a stranger learns nothing about
    /// volumes through someone else's set, and a set that cannot take a volume says so whatever
    /// the volume.
    public func mayAddVolume(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) {
        try withSet(id, caller) { set throws(ShadowCopyError) in try SnapshotEngine.checkAddVolume(set) }
    }

    private static func checkAddVolume(_ set: SnapshotSetRecord) throws(ShadowCopyError) {
        guard !set.isRestore else { throw .badState("a restore set takes no volumes") }
        try require(set, [.created, .metadataGathered, .prepared], for: "AddVolume")
    }

    /// GatherWriterStatus: each writer's part in the set.
    public func writerStatus(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> [SetWriter] {
        try withSet(id, caller) { set in set.writers.values.sorted { $0.writer.id.hex < $1.writer.id.hex } }
    }

    /// SetBackupSucceeded: the requester's verdict on one selected component.
    public func setBackupSucceeded(_ id: Identifier, _ caller: Caller, writer: Identifier, component: ComponentKey,
                                   succeeded: Bool) throws(ShadowCopyError) {
        try withSet(id, caller) { set throws(ShadowCopyError) in
            try SnapshotEngine.require(set, [.snapshotted], for: "SetBackupSucceeded")
            guard var part = set.writers[writer], part.selected[component] != nil else {
                throw .notFound("component '\(component.logicalPath)' '\(component.name)' was not added to this set")
            }
            part.selected[component] = .some(succeeded)
            set.writers[writer] = part
        }
    }

    // MARK: Jobs

    /// Starts job `operation` on set `id`, marking the set busy until it ends.
    func startJob(_ id: Identifier, _ operation: String,
                  _ body: @escaping @Sendable (Job) async throws(ShadowCopyError) -> Void) -> Job {
        let job = state.withLock { s -> Job in
            let job = Job(number: s.nextJob, operation: operation, set: id) { [observer] job in observer.jobChanged(job) }
            s.nextJob += 1
            s.jobs[job.number] = job
            s.sets[id]?.busyWith = operation
            return job
        }
        observer.jobAdded(job)
        job.start { [self] job throws(ShadowCopyError) in
            defer {
                state.withLock { $0.sets[id]?.busyWith = nil }
                observer.setChanged(id)
                forgetJobLater(job)
            }
            try await body(job)
        }
        return job
    }

    /// Keeps an ended job visible for a while (a requester may Wait after it ended), then drops it.
    private func forgetJobLater(_ job: Job) {
        Task { [self] in
            try? await Task.sleep(for: .seconds(300))
            if state.withLock({ $0.jobs.removeValue(forKey: job.number) }) != nil { observer.jobChanged(job) }
        }
    }

    // MARK: The creation slot

    private func takeCreationSlot(for id: Identifier, waitMs: UInt32) async throws(ShadowCopyError) {
        let deadline = Clock.monotonicMs() + UInt64(waitMs)
        while true {
            let holder: Identifier? = state.withLock { s in
                if s.creating == nil { s.creating = id }
                return s.creating == id ? nil : s.creating
            }
            guard let holder else { return }
            let now = Clock.monotonicMs()
            guard now < deadline else {
                throw ShadowCopyError(.snapshotSetInProgress,
                                      "snapshot set \(holder) is being created; try again, or pass wait-ms")
            }
            await waitForSlot(upToMs: deadline - now)
        }
    }

    private func waitForSlot(upToMs: UInt64) async {
        let key = state.withLock { s -> UInt64 in
            defer { s.nextSlotWaiter += 1 }
            return s.nextSlotWaiter
        }
        _ = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let free = state.withLock { s -> Bool in
                if s.creating == nil { return true }
                s.slotWaiters[key] = continuation
                return false
            }
            if free { return continuation.resume(returning: true) }
            Task { [self] in
                try? await Task.sleep(for: .milliseconds(Int(min(upToMs, 86_400_000))))
                state.withLock { $0.slotWaiters.removeValue(forKey: key) }?.resume(returning: false)
            }
        }
    }

    /// Gives the creation slot back (DoSnapshotSet ended, the set was aborted or deleted).
    func releaseCreationSlot(_ id: Identifier) {
        let waiters = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            guard s.creating == id else { return [] }
            s.creating = nil
            defer { s.slotWaiters = [:] }
            return Array(s.slotWaiters.values)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }
}

extension SnapshotEngine {
    /// Throws unless `caller` may drive set `id`, root included (as for Abort and Delete).
    /// Returns the set as it is.
    @discardableResult
    public func mayDrive(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> SnapshotSetRecord {
        try withSet(id, caller, rootMay: true) { $0 }
    }
}
