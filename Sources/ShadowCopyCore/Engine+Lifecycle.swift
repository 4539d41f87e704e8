#if canImport(Glibc)
import Glibc
#endif

/// How sets and snapshots end: Abort, Delete, a requester leaving, and exposing copies.
extension SnapshotEngine {
    /// Abort: writers get Abort, the set's copies are deleted, nothing half-made stays.
    /// The requester may abort its set; root may abort any.
    public func abort(_ id: Identifier, _ caller: Caller) async throws(ShadowCopyError) {
        try withSet(id, caller, rootMay: true) { set throws(ShadowCopyError) in
            guard set.state != .aborted else { throw .badState("the set is already aborted") }
        }
        // A running job aborts the set itself, reaching every writer, when it sees the cancel.
        await cancelJobs(of: id)
        await abortSet(id, reason: ShadowCopyError(.cancelled, "aborted by \(caller.name)"))
    }

    /// Cancels the set's running jobs and waits until they ended.
    private func cancelJobs(of id: Identifier) async {
        let running = state.withLock { s in s.jobs.values.filter { $0.set == id && $0.status.state == .running } }
        for job in running {
            job.cancel()
            _ = await job.wait(timeoutMs: UInt32.max)
        }
    }

    /// Ends what runs on set `id` and aborts it when it is still being made.
    private func stopInProgress(_ id: Identifier, reason: ShadowCopyError) async {
        await cancelJobs(of: id)
        if let set = set(id), [.created, .metadataGathered, .prepared, .snapshotting].contains(set.state) {
            await abortSet(id, reason: reason)
        }
    }

    /// Aborts set `id` whatever its state: Abort to every writer that heard of it, provider abort,
    /// every copy of the set deleted, the creation slot released.
    func abortSet(_ id: Identifier, reason: ShadowCopyError) async {
        let found = state.withLock { s -> SnapshotSetRecord? in
            guard var set = s.sets[id], set.state != .aborted else { return nil }
            set.state = .aborted
            s.sets[id] = set
            return set
        }
        guard let set = found else { return }
        let heard = set.writers.values.filter(\.participated).compactMap { writers.writer($0.writer.id) }
        await deliver(.abort, set: id, to: heard, timeoutMs: settings.writerEventTimeoutMs)
        for provider in providers { await provider.abort(set: id) }
        await dropSnapshots(of: id, deleteCopies: true)
        releaseCreationSlot(id)
        observer.setChanged(id)
        observer.broadcast(.done(set: id, ok: false, error: reason.message))
        logger.warning("snapshot set aborted", metadata: ["set": "\(id)", "reason": "\(reason)"])
    }

    /// Delete: the set ends; its writers get BackupShutdown and all its copies are deleted.
    public func deleteSet(_ id: Identifier, _ caller: Caller) async throws(ShadowCopyError) {
        try withSet(id, caller, rootMay: true) { set throws(ShadowCopyError) in
            if let busy = set.busyWith { throw .badState("the set is busy with \(busy); Abort it first") }
        }
        await release(id, keepPersistent: false)
    }

    /// The requester's connection closed: its auto-release sets are aborted if in progress,
    /// their writers get BackupShutdown, and their non-persistent copies are deleted.
    public func requesterVanished(_ name: String) async {
        let sets = state.withLock { s in s.sets.values.filter { $0.requester == name && $0.autoRelease }.map(\.id) }
        for id in sets {
            await stopInProgress(id, reason: ShadowCopyError(.cancelled, "requester \(name) left the bus"))
            logger.info("requester left; releasing its set", metadata: ["set": "\(id)", "requester": "\(name)"])
            await release(id, keepPersistent: true)
        }
    }

    /// Aborts sets their requester left idle past `IdleSetTimeoutMs` (VSS: 10 minutes) while
    /// they hold the creation slot or wait for BackupComplete; runs until the task is cancelled.
    public func watchIdleSets() async {
        let period = Duration.milliseconds(Int(min(max(settings.idleSetTimeoutMs / 4, 50), 30_000)))
        while (try? await Task.sleep(for: period)) != nil {
            let now = Clock.monotonicMs()
            let idle = state.withLock { s in
                s.sets.values.filter { set in
                    set.busyWith == nil && [.created, .metadataGathered, .prepared].contains(set.state)
                        && now - set.lastActivity > UInt64(settings.idleSetTimeoutMs)
                }.map(\.id)
            }
            for id in idle {
                await abortSet(id, reason: ShadowCopyError(
                    .timeout, "the requester left the set idle for more than \(settings.idleSetTimeoutMs) ms"))
            }
        }
    }

    /// The service stops: every set ends as if its requester had left, auto-release or not.
    public func shutdown() async {
        let ids = state.withLock { Array($0.sets.keys) }
        for id in ids {
            await stopInProgress(id, reason: ShadowCopyError(.cancelled, "shadowcopyd is stopping"))
            await release(id, keepPersistent: true)
        }
    }

    /// Ends set `id`: BackupShutdown to its writers, its copies deleted (persistent ones kept when
    /// asked), and the set itself removed unless copies remain.
    private func release(_ id: Identifier, keepPersistent: Bool) async {
        guard let set = set(id) else { return }
        let heard = set.writers.values.filter(\.participated).compactMap { writers.writer($0.writer.id) }
        await deliver(.backupShutdown, set: id, to: heard, timeoutMs: settings.writerEventTimeoutMs)
        if !(keepPersistent && set.persistent) { await dropSnapshots(of: id, deleteCopies: true) }
        releaseCreationSlot(id)
        let removed = state.withLock { s -> Bool in
            guard s.sets[id]?.snapshots.isEmpty ?? false else { return false }
            s.sets[id] = nil
            return true
        }
        if removed {
            do { try catalog.forget(set: id) } catch {
                logger.error("cannot update the catalog", metadata: ["set": "\(id)", "error": "\(error)"])
            }
            observer.setRemoved(id)
        } else {
            observer.setChanged(id)
        }
    }

    /// Removes every snapshot of set `id`; deletes the copies the providers made.
    func dropSnapshots(of id: Identifier, deleteCopies: Bool) async {
        // A copy being merged stays until its merge ends: its store is the merge's source.
        let records = state.withLock { s in s.snapshots.values.filter { $0.set == id && $0.state != .merging } }
        for record in records { await removeSnapshot(record, deleteCopy: deleteCopies) }
    }

    func removeSnapshot(_ record: SnapshotRecord, deleteCopy: Bool) async {
        if !record.exposedPath.isEmpty { unmount(record.exposedPath) }
        if deleteCopy, record.copy != nil, let provider = providers.first(where: { $0.info.name == record.provider }) {
            do {
                try await provider.delete(snapshot: record.id, volume: record.originalVolume, copy: record.copy)
            } catch {
                logger.error("cannot delete copy", metadata: ["snapshot": "\(record.id)", "error": "\(error)"])
            }
        }
        state.withLock { s in
            s.snapshots[record.id] = nil
            s.storeUse[record.id] = nil
            s.sets[record.set]?.snapshots.removeAll { $0 == record.id }
            s.sets[record.set]?.volumes.removeAll { $0 == record.originalVolume }
        }
        do {
            try catalog.forget(snapshot: record.id)
        } catch {
            // The copy is gone; the next start finds the row without a copy and drops it.
            logger.error("cannot update the catalog", metadata: ["snapshot": "\(record.id)", "error": "\(error)"])
        }
        observer.snapshotRemoved(record.id)
    }

    // MARK: One snapshot

    /// The snapshot, when `caller` may act on it: the requester of its set, or root.
    public func owned(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> SnapshotRecord {
        try state.withLock { s throws(ShadowCopyError) in
            guard let record = s.snapshots[id] else { throw .notFound("no snapshot \(id)") }
            if let set = s.sets[record.set] { try SnapshotEngine.checkDriver(set, caller, rootMay: true) }
            else if !caller.isRoot { throw ShadowCopyError(.notAuthorized, "only root may act on snapshot \(id)") }
            return record
        }
    }

    /// Snapshot.Delete.
    public func deleteSnapshot(_ id: Identifier, _ caller: Caller) async throws(ShadowCopyError) {
        let record = try owned(id, caller)
        guard record.state != .pending else { throw .badState("the snapshot is not made yet; abort its set instead") }
        guard record.state != .merging else { throw .badState("the snapshot is being merged into its volume; it goes when the merge ends") }
        await removeSnapshot(record, deleteCopy: true)
    }

    /// DeleteSnapshots: every made snapshot that matches; refused whole if one is not the caller's.
    public func deleteSnapshots(_ caller: Caller, volume: String?, set: Identifier?, oldest: Bool, all: Bool)
        async throws(ShadowCopyError) -> UInt32
    {
        var matches = query(volume: volume, set: set)
        if oldest {
            guard let volume else { throw .invalidArgs("'oldest' needs 'volume'") }
            matches = Array(query(volume: volume).prefix(1))
        }
        guard volume != nil || set != nil || all else {
            throw .invalidArgs("DeleteSnapshots needs one of volume, set, oldest (with volume) or all")
        }
        matches.removeAll { $0.state == .merging }
        for record in matches { _ = try owned(record.id, caller) }
        for record in matches { await removeSnapshot(record, deleteCopy: true) }
        return UInt32(matches.count)
    }

    /// Snapshot.Expose: mounts the copy read-only under the expose root; returns the path.
    public func expose(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> String {
        let record = try owned(id, caller)
        guard record.state == .created, let copy = record.copy,
            let provider = providers.first(where: { $0.info.name == record.provider })
        else { throw .badState("only a made snapshot can be exposed") }
        guard record.exposedPath.isEmpty else { throw .alreadyExists("exposed at \(record.exposedPath)") }
        let path = try exposeDirectory(for: id)
        do {
            try provider.expose(snapshot: id, copy: copy, at: path)
        } catch {
            rmdir(path)
            throw error
        }
        var exposed = record
        exposed.exposedPath = path
        do {
            // A mount the catalog does not know would be lost by the next start.
            try catalog.update(exposed)
        } catch {
            unmount(path)
            throw error
        }
        state.withLock { $0.snapshots[id]?.exposedPath = path }
        observer.snapshotChanged(id)
        return path
    }

    /// Snapshot.OpenDevice: a read-only descriptor of the copy's block device, for a requester
    /// that reads blocks rather than files.
    public func openDevice(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> Int32 {
        let record = try owned(id, caller)
        guard record.state == .created, let copy = record.copy else { throw .badState("only a made snapshot can be opened") }
        guard !copy.device.isEmpty else {
            throw .notSupported("\(record.provider) copies have no block device; use Expose")
        }
        // The provider named the device, under /dev (root's only): where udev runs, /dev/mapper
        // names are its symlinks to ../dm-N, which must be followed. What opens must be a block device.
        let fd = open(copy.device, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .failed("cannot open \(copy.device): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFBLK else {
            close(fd)
            throw .failed("\(copy.device) is not a block device")
        }
        return fd
    }

    /// Snapshot.Unexpose.
    public func unexpose(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) {
        let record = try owned(id, caller)
        guard !record.exposedPath.isEmpty else { throw .badState("the snapshot is not exposed") }
        guard unmount(record.exposedPath) else { throw .failed("cannot unmount \(record.exposedPath): busy") }
        var hidden = record
        hidden.exposedPath = ""
        do { try catalog.update(hidden) } catch {
            logger.error("cannot update the catalog", metadata: ["snapshot": "\(id)", "error": "\(error)"])
        }
        state.withLock { $0.snapshots[id]?.exposedPath = "" }
        observer.snapshotChanged(id)
    }

    /// Makes `<expose root>/<id>`, refusing a symlink anywhere on the way to the root.
    private func exposeDirectory(for id: Identifier) throws(ShadowCopyError) -> String {
        let root = settings.exposeRoot
        if mkdir(root, 0o755) != 0, errno != EEXIST {
            throw .failed("cannot make \(root): \(String(cString: strerror(errno)))")
        }
        let rootFD = try ReadOnlyMount.openDirectory(root)
        defer { close(rootFD) }
        let path = root + "/" + id.hex
        close(try ReadOnlyMount.makeDirectory(id.hex, in: rootFD, display: path))
        return path
    }

    /// Unmounts and removes an expose directory; false when the mount is busy.
    @discardableResult
    func unmount(_ path: String) -> Bool {
        if umount2(path, Int32(UMOUNT_NOFOLLOW)) != 0, errno != EINVAL, errno != ENOENT {
            logger.warning("cannot unmount", metadata: ["path": "\(path)", "errno": "\(errno)"])
            return false
        }
        rmdir(path)
        return true
    }
}
