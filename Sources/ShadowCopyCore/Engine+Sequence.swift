/// The backup sequence: PrepareForBackup, DoSnapshotSet, BackupComplete, and Abort.
extension SnapshotEngine {
    /// PrepareForBackup: tells the participating writers a backup is coming.
    public func prepareForBackup(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> Job {
        let set = try withSet(id, caller) { set throws(ShadowCopyError) in
            let from: [SetState] = set.context.involvesWriters ? [.metadataGathered] : [.created, .metadataGathered]
            try SnapshotEngine.require(set, from, for: "PrepareForBackup")
            return set
        }
        let targets = participants(set)
        return startJob(id, "PrepareForBackup") { [self] _ throws(ShadowCopyError) in
            let failures = await deliver(.prepareForBackup(BackupDetails(set)), set: id, to: targets,
                                         timeoutMs: settings.writerEventTimeoutMs)
            if let veto = SnapshotEngine.veto(failures, at: .prepareForBackup(BackupDetails(set))) {
                await abortSet(id, reason: veto)
                throw veto
            }
            try Task.checkCancellation(or: .cancelled)
            state.withLock { $0.sets[id]?.state = .prepared }
        }
    }

    /// DoSnapshotSet: the whole freeze, commit and thaw sequence, as a job.
    public func doSnapshotSet(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> Job {
        let set = try withSet(id, caller) { set throws(ShadowCopyError) in
            let from: [SetState] = set.context.involvesWriters ? [.prepared] : [.created, .metadataGathered, .prepared]
            try SnapshotEngine.require(set, from, for: "DoSnapshotSet")
            guard !set.volumes.isEmpty else { throw .badState("DoSnapshotSet: add a volume first") }
            set.state = .snapshotting
            return set
        }
        observer.setChanged(id)
        return startJob(id, "DoSnapshotSet") { [self] job throws(ShadowCopyError) in
            // Writers' states are announced once, after the sequence: a signal per writer per
            // event would put hundreds of messages on the bus inside the freeze window.
            defer { for writer in participants(set) { observer.writerChanged(writer.id) } }
            do throws(ShadowCopyError) {
                try await snapshotSequence(set, job)
            } catch {
                // Abort in a task of its own: a cancelled job must still reach every writer.
                await Task { await abortSet(id, reason: error) }.value
                throw error
            }
        }
    }

    private func snapshotSequence(_ set: SnapshotSetRecord, _ job: Job) async throws(ShadowCopyError) {
        let id = set.id
        let targets = participants(set)
        let snapshots = set.snapshots.compactMap { snapshot($0) }
        let used = providers.filter { p in snapshots.contains { $0.provider == p.info.name } }

        // Light subscribers are applications too: a writerless context leaves them out as it
        // leaves out writers (and saves three signals in the way of the copy).
        let tellSubscribers = set.context.involvesWriters
        if tellSubscribers { observer.broadcast(.prepareForSnapshot(set: id, volumes: set.volumes)) }
        let prepareFailures = await deliver(.prepareForSnapshot(volumes: set.volumes), set: id, to: targets,
                                            timeoutMs: settings.writerEventTimeoutMs, announce: false)
        if let veto = SnapshotEngine.veto(prepareFailures, at: .prepareForSnapshot(volumes: [])) { throw veto }
        try Task.checkCancellation(or: .cancelled)
        job.report(0.2)

        // On disk before any copy exists (AddVolume wrote the pending copies and began the
        // flush): a daemon or machine that dies from here on finds at start what it may have
        // half made.
        try await catalog.syncWrites()
        for snapshot in snapshots {
            guard let provider = used.first(where: { $0.info.name == snapshot.provider }) else {
                throw ShadowCopyError(.notFound, "provider \(snapshot.provider) of \(snapshot.originalVolume) is gone")
            }
            if let diff = provider as? any DiffAreaProvider { try await planStorage(snapshot, provider: diff) }
            try await provider.beginPrepare(set: id, snapshot: snapshot.id, volume: snapshot.originalVolume)
        }
        for provider in used { try await provider.endPrepare(set: id) }
        try Task.checkCancellation(or: .cancelled)
        job.report(0.4)

        // Freeze: front-end first, system last; the window is the tightest writer's.
        let window = UInt64(targets.map(\.freezeTimeoutMs).min() ?? settings.freezeTimeoutMs)
        let frozenAt = Clock.monotonicMs()
        if tellSubscribers { observer.broadcast(.freeze(set: id, volumes: set.volumes)) }
        for level in WriterLevel.allCases {
            let remaining = window - min(window, Clock.monotonicMs() - frozenAt)
            guard remaining > 0 else { throw ShadowCopyError(.timeout, "writers took the whole freeze window (\(window) ms)") }
            let failures = await deliver(.freeze, set: id, to: targets.filter { $0.registration.level == level },
                                         timeoutMs: UInt32(remaining), announce: false)
            if let veto = SnapshotEngine.veto(failures, at: .freeze) { throw veto }
        }
        try Task.checkCancellation(or: .cancelled)
        job.report(0.6)

        for provider in used { try await provider.preCommit(set: id) }
        let toHold = snapshots.filter { s in used.contains { $0.info.name == s.provider && !$0.holdsWritesItself } }
        let frozen = try await holdingWrites(toHold.map(\.originalVolume)) { () async throws(ShadowCopyError) in
            for provider in used { try await provider.commit(set: id) }
        }
        var copies: [Identifier: CommittedCopy] = [:]
        for provider in used { copies.merge(try await provider.postCommit(set: id)) { a, _ in a } }
        // A copy made while the coordinator held the filesystem frozen is filesystem-consistent.
        for snapshot in toHold where frozen.contains(snapshot.originalVolume) {
            if let provided = copies[snapshot.id]?.consistency { copies[snapshot.id]?.consistency = min(provided, .filesystem) }
        }
        let heldFor = Clock.monotonicMs() - frozenAt
        // Past the window a writer may have given up its freeze: the copy would not be consistent.
        guard heldFor <= window else {
            throw ShadowCopyError(.timeout, "the freeze lasted \(heldFor) ms, past the \(window) ms window")
        }
        job.report(0.8)

        if tellSubscribers { observer.broadcast(.thaw(set: id)) }
        for level in WriterLevel.allCases.reversed() {
            // A writer that fails Thaw spoils its own components, not the copy (VSS).
            await deliver(.thaw, set: id, to: targets.filter { $0.registration.level == level },
                          timeoutMs: settings.writerEventTimeoutMs, announce: false)
        }
        var devices: [String: String] = [:]
        for snapshot in snapshots { devices[snapshot.originalVolume] = copies[snapshot.id]?.device ?? "" }
        await deliver(.postSnapshot(devices: devices), set: id, to: targets, timeoutMs: settings.writerEventTimeoutMs,
                      announce: false)

        let now = Clock.wallNanoseconds()
        let consistency: Consistency = state.withLock { s in
            for snapshot in snapshots {
                s.snapshots[snapshot.id]?.copy = copies[snapshot.id]
                s.snapshots[snapshot.id]?.state = copies[snapshot.id] == nil ? .invalid : .created
                s.snapshots[snapshot.id]?.creationNs = now
                s.snapshots[snapshot.id]?.attributes = SnapshotEngine.attributes(of: set)
            }
            // The worst copy decides; writers lift it to application only when all of them
            // came through Freeze, Thaw and PostSnapshot.
            let provided = copies.values.map(\.consistency).max() ?? .crash
            let writersOK = !targets.isEmpty && targets.allSatisfy { s.sets[id]?.writers[$0.id]?.failure == nil }
            let achieved: Consistency = writersOK ? .application : provided
            s.sets[id]?.consistency = achieved
            s.sets[id]?.state = .snapshotted
            return achieved
        }
        try persist(id)
        // A persistent copy must outlive a power loss once its requester hears it exists: the
        // record that says so is on disk first. (Other copies die with the service anyway, and
        // a record lost with the power leaves what the next start cleans up.)
        if set.persistent { try await catalog.syncWrites() }
        for snapshot in snapshots { observer.snapshotChanged(snapshot.id) }
        releaseCreationSlot(id)
        observer.setChanged(id)
        observer.broadcast(.done(set: id, ok: true, error: ""))
        logger.info("snapshot set made", metadata: [
            "set": "\(id)", "volumes": "\(set.volumes.joined(separator: ","))", "writers": "\(targets.count)",
            "consistency": "\(consistency.rawValue)", "freeze-ms": "\(heldFor)",
        ])
    }

    /// Runs the providers' commit while writes are held on `volumes`, inside the hold-writes
    /// deadline: past it the volumes are thawed and the set fails. Returns the volumes frozen.
    private func holdingWrites(_ volumes: [String], _ commit: @escaping @Sendable () async throws(ShadowCopyError) -> Void)
        async throws(ShadowCopyError) -> [String]
    {
        let limit = settings.holdWritesTimeoutMs
        guard !volumes.isEmpty else {
            // Nothing held, nothing to thaw in time: the deadline has nothing to guard.
            try await commit()
            return []
        }
        let frozen = try await writeHolder.hold(volumes, limitMs: limit)
        let outcome = await withTaskGroup(of: ShadowCopyError?.self) { [writeHolder] group in
            group.addTask {
                do { try await commit(); return nil } catch { return error as? ShadowCopyError ?? .failed("\(error)") }
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int(limit)))
                guard !Task.isCancelled else { return nil }
                // Thawed here, not after the group: a provider stuck in commit must not keep
                // the volumes frozen while the group waits for it.
                if !frozen.isEmpty { await writeHolder.release() }
                return ShadowCopyError(.timeout, "writes were held \(limit) ms (HoldWritesTimeoutMs)")
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            if !frozen.isEmpty { await writeHolder.release() }
            return first
        }
        if let outcome { throw outcome }
        return frozen
    }

    /// Writes set `id` and its snapshots to the catalog, without waiting for the disk (callers
    /// that need it there use ``Catalog/syncWrites()``).
    func persist(_ id: Identifier) throws(ShadowCopyError) {
        let found = state.withLock { s -> (SnapshotSetRecord, [SnapshotRecord])? in
            guard let set = s.sets[id] else { return nil }
            return (set, set.snapshots.compactMap { s.snapshots[$0] })
        }
        guard let (set, snapshots) = found else { return }
        try catalog.save(set, snapshots)
    }

    static func attributes(of set: SnapshotSetRecord) -> [String] {
        var attributes = [set.persistent ? "persistent" : "non-persistent"]
        if set.autoRelease { attributes.append("auto-release") }
        if !set.context.involvesWriters { attributes.append("no-writers") }
        attributes.append(set.context.rawValue)
        return attributes
    }

    /// BackupComplete: the requester is done with the copies; writers may truncate logs.
    public func backupComplete(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> Job {
        let set = try withSet(id, caller) { set throws(ShadowCopyError) in
            try SnapshotEngine.require(set, [.snapshotted], for: "BackupComplete")
            return set
        }
        let targets = participants(set)
        return startJob(id, "BackupComplete") { [self] _ throws(ShadowCopyError) in
            // The outcomes as they stand now: SetBackupSucceeded calls came before BackupComplete.
            let details = self.set(id).map(BackupDetails.init) ?? BackupDetails(set)
            await deliver(.backupComplete(details), set: id, to: targets, timeoutMs: settings.writerEventTimeoutMs)
            state.withLock { $0.sets[id]?.state = .completed }
            try persist(id)
        }
    }

    /// PreRestore and PostRestore, for restore sets.
    public func restorePhase(_ id: Identifier, _ caller: Caller, post: Bool) throws(ShadowCopyError) -> Job {
        let event: WriterEvent = post ? .postRestore : .preRestore
        let set = try withSet(id, caller) { set throws(ShadowCopyError) in
            guard set.isRestore else { throw .badState("\(event.method) belongs to sets made by StartRestore") }
            try SnapshotEngine.require(set, post ? [.restorePrepared] : [.metadataGathered], for: event.method)
            return set
        }
        let targets = participants(set)
        return startJob(id, event.method) { [self] _ throws(ShadowCopyError) in
            let failures = await deliver(event, set: id, to: targets, timeoutMs: settings.writerEventTimeoutMs)
            if let veto = SnapshotEngine.veto(failures, at: event) { throw veto }
            state.withLock { $0.sets[id]?.state = post ? .restored : .restorePrepared }
        }
    }
}
