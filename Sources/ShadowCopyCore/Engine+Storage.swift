#if canImport(Glibc)
import Glibc
#endif

/// Shadow storage: the areas requesters configure, the plan for each new copy's store, and the
/// watch that grows stores before they fill and applies the overflow policy.
extension SnapshotEngine {
    /// The smallest store worth making, and the step growth is rounded to.
    static let storageGrain: UInt64 = 1 << 20

    // MARK: Areas

    /// Every configured area, by volume.
    public func storageAreas() -> [ShadowStorageRecord] {
        state.withLock { $0.storage.values.sorted { $0.forVolume < $1.forVolume } }
    }

    public func storageArea(_ id: Identifier) -> ShadowStorageRecord? { state.withLock { $0.storage[id] } }

    func storageArea(for volume: String) -> ShadowStorageRecord? {
        state.withLock { $0.storage.values.first { $0.forVolume == volume } }
    }

    /// AddShadowStorage: `location` (a directory on another filesystem) holds the stores of
    /// `volume`'s future copies, all together at most `maxBytes` (0: unbounded).
    public func addStorage(forVolume volume: String, provider: any SnapshotProvider, location: String,
                           maxBytes: UInt64, policy: OverflowPolicy) throws(ShadowCopyError) -> Identifier {
        guard let diff = provider as? any DiffAreaProvider else {
            throw .notSupported("\(provider.info.name) copies of \(volume) keep no shadow storage")
        }
        guard maxBytes == 0 || maxBytes >= SnapshotEngine.storageGrain else {
            throw .invalidArgs("max_bytes: 0 for unbounded, or at least \(SnapshotEngine.storageGrain) bytes")
        }
        try checkVolumeText(location)
        try diff.checkStorageLocation(location, for: volume)
        let capacity = diff.capacity(of: location)
        // A block device holds what it holds: its size is the most, and the policy applies there.
        let most = capacity.map { maxBytes == 0 ? $0 : min(maxBytes, $0) } ?? maxBytes
        let record = ShadowStorageRecord(id: Identifier(), forVolume: volume, location: location, maxBytes: most,
                                         policy: policy)
        try state.withLock { s throws(ShadowCopyError) in
            if let other = s.storage.values.first(where: { $0.forVolume == volume }) {
                throw .alreadyExists("\(volume) already has shadow storage on \(other.location)")
            }
            if capacity != nil, let other = s.storage.values.first(where: { $0.location == location }) {
                throw .alreadyExists("\(location) already holds the shadow storage of \(other.forVolume)")
            }
            s.storage[record.id] = record
        }
        do { try catalog.save(storage: record) } catch {
            state.withLock { $0.storage[record.id] = nil }
            throw error
        }
        observer.storageAdded(record.id)
        logger.info("shadow storage added", metadata: [
            "volume": "\(volume)", "location": "\(location)", "max-bytes": "\(maxBytes)", "policy": "\(policy.rawValue)",
        ])
        return record.id
    }

    /// ShadowStorage.Resize: a new maximum, never below what the stores already take.
    public func resizeStorage(_ id: Identifier, maxBytes: UInt64) throws(ShadowCopyError) {
        guard var area = storageArea(id) else { throw .notFound("no shadow storage \(id)") }
        guard maxBytes == 0 || maxBytes >= SnapshotEngine.storageGrain else {
            throw .invalidArgs("max_bytes: 0 for unbounded, or at least \(SnapshotEngine.storageGrain) bytes")
        }
        var maxBytes = maxBytes
        if let capacity = providers.lazy.compactMap({ ($0 as? any DiffAreaProvider)?.capacity(of: area.location) }).first {
            maxBytes = maxBytes == 0 ? capacity : min(maxBytes, capacity)
        }
        let allocated = storageUse(of: area).allocated
        if maxBytes != 0, maxBytes < allocated {
            throw ShadowCopyError(.limitExceeded, "the stores of \(area.forVolume) already take \(allocated) bytes; delete copies first")
        }
        area.maxBytes = maxBytes
        try catalog.save(storage: area)
        state.withLock { $0.storage[id] = area }
        observer.storageChanged(id)
    }

    /// ShadowStorage.Delete: refused while a copy keeps its store there.
    public func deleteStorage(_ id: Identifier) throws(ShadowCopyError) {
        guard let area = storageArea(id) else { throw .notFound("no shadow storage \(id)") }
        let users = storedIn(area)
        guard users.isEmpty else {
            throw .badState("\(users.count) copies of \(area.forVolume) keep their store in \(area.location); delete them first")
        }
        try catalog.forget(storage: id)
        state.withLock { $0.storage[id] = nil }
        observer.storageRemoved(id)
    }

    /// The copies whose store lives in `area`.
    private func storedIn(_ area: ShadowStorageRecord) -> [SnapshotRecord] {
        let records = state.withLock { s in s.snapshots.values.filter { $0.copy.map { !$0.store.isEmpty } ?? false } }
        return records.filter { record in
            guard let copy = record.copy,
                let provider = providers.first(where: { $0.info.name == record.provider }) as? any DiffAreaProvider
            else { return false }
            return provider.store(copy.store, isIn: area.location)
        }
    }

    /// What the copies of the area's volume use and have, in bytes.
    public func storageUse(of area: ShadowStorageRecord) -> (used: UInt64, allocated: UInt64) {
        storedIn(area).reduce((0, 0)) { sum, record in
            guard let use = storageUse(of: record.id) else { return sum }
            return (sum.0 + use.used, sum.1 + use.size)
        }
    }

    /// A copy's store use, when its provider keeps one.
    public func storageUse(of snapshot: Identifier) -> StorageUse? {
        guard let record = self.snapshot(snapshot), record.copy != nil,
            let provider = providers.first(where: { $0.info.name == record.provider }) as? any DiffAreaProvider
        else { return nil }
        return provider.storageUse(of: snapshot)
    }

    /// The made, valid copies of `volume`, oldest first.
    private func liveCopies(on volume: String) -> [SnapshotRecord] {
        query(volume: volume).filter { $0.state == .created && $0.copy != nil }
    }

    /// Bytes the stores of `volume`'s copies take, in whatever area.
    private func allocated(on volume: String) -> UInt64 {
        query(volume: volume).reduce(0) { $0 + (storageUse(of: $1.id)?.size ?? 0) }
    }

    // MARK: New copies

    /// Tells the provider where `snapshot`'s store goes and how large it may start; under the
    /// delete-oldest policy, older copies of the volume go until the new store fits.
    func planStorage(_ snapshot: SnapshotRecord, provider: any DiffAreaProvider) async throws(ShadowCopyError) {
        let volume = snapshot.originalVolume
        guard let area = storageArea(for: volume) else {
            return provider.plan(snapshot: snapshot.id, StoragePlan(location: provider.defaultStorageLocation, budget: .max))
        }
        let wanted = try provider.initialStoreSize(for: volume)
        func room() -> UInt64 {
            guard area.maxBytes != 0 else { return .max }
            let taken = allocated(on: volume)
            return area.maxBytes > taken ? area.maxBytes - taken : 0
        }
        while room() < wanted, area.policy == .deleteOldest,
            let oldest = liveCopies(on: volume).first(where: { $0.set != snapshot.set }) {
            await dropToMakeRoom(oldest, area)
        }
        let budget = room()
        guard budget >= SnapshotEngine.storageGrain else {
            throw ShadowCopyError(.limitExceeded, "the shadow storage of \(volume) is full (\(area.maxBytes) bytes); "
                                  + "delete copies, resize it, or use the delete-oldest policy")
        }
        provider.plan(snapshot: snapshot.id, StoragePlan(location: area.location, budget: min(budget, wanted)))
    }

    private func dropToMakeRoom(_ oldest: SnapshotRecord, _ area: ShadowStorageRecord) async {
        let reason = "deleted to make room in the shadow storage of \(area.forVolume) (delete-oldest policy)"
        logger.notice("deleting the oldest copy", metadata: ["snapshot": "\(oldest.id)", "volume": "\(area.forVolume)"])
        observer.broadcast(.invalidated(snapshot: oldest.id, reason: reason))
        await removeSnapshot(oldest, deleteCopy: true)
    }

    // MARK: The watch

    /// Checks every copy's store, and every merge, each `storageWatchMs` until cancelled.
    public func watchStorage() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(settings.storageWatchMs)))
            await checkStorage()
            await checkMerges()
        }
    }

    /// One round: invalid copies are reported and cleaned up, stores 80% full (or about to be,
    /// at the pace they fill) grow by a fifth (as LVM's autoextend) or by four rounds' worth,
    /// within their area's maximum, and past it the policy applies.
    public func checkStorage() async {
        let records = state.withLock { s in s.snapshots.values.filter { $0.copy != nil && ($0.state == .created || $0.state == .invalid) } }
        for record in records {
            guard let provider = providers.first(where: { $0.info.name == record.provider }) as? any DiffAreaProvider
            else { continue }
            if record.state == .invalid {
                await cleanUpInvalid(record, provider)
                continue
            }
            guard let use = provider.storageUse(of: record.id) else { continue }
            // What the copy took since the last round: under a heavy load a fifth more is not
            // enough, so the store grows by what two more rounds would take, if that is more.
            let previous = state.withLock { $0.storeUse.updateValue(use.used, forKey: record.id) } ?? use.used
            let pace = use.used > previous ? use.used - previous : 0
            if use.invalid {
                await invalidate(record, provider, reason: "its store of \(use.size) bytes overflowed or failed; the origin is intact")
            } else if use.used + 2 * pace >= use.size / 5 * 4 {
                await grow(record, provider, use, pace: pace)
            }
        }
    }

    private func grow(_ record: SnapshotRecord, _ provider: any DiffAreaProvider, _ use: StorageUse, pace: UInt64) async {
        let ceiling = provider.storageCeiling(of: record.id) ?? .max
        guard use.size < ceiling else { return }
        let step = max(use.size / 5, 4 * pace, SnapshotEngine.storageGrain)
        var target = min(ceiling, (use.size + step + SnapshotEngine.storageGrain - 1) / SnapshotEngine.storageGrain * SnapshotEngine.storageGrain)
        if let area = storageArea(for: record.originalVolume), area.maxBytes != 0 {
            let taken = allocated(on: record.originalVolume)
            let room = area.maxBytes > taken ? area.maxBytes - taken : 0
            if target - use.size > room {
                if room >= SnapshotEngine.storageGrain {
                    target = use.size + room
                } else {
                    if area.policy == .deleteOldest, let oldest = liveCopies(on: record.originalVolume).first {
                        await dropToMakeRoom(oldest, area)
                    }
                    return
                }
            }
        }
        do {
            let store = try provider.growStorage(of: record.id, store: record.copy?.store ?? "", to: target)
            if store != record.copy?.store {
                state.withLock { $0.snapshots[record.id]?.copy?.store = store }
                // Where a reboot finds the store again: must not be lost with the next start.
                if let grown = snapshot(record.id) { try catalog.update(grown) }
            }
            logger.info("store grown", metadata: ["snapshot": "\(record.id)", "from": "\(use.size)", "to": "\(target)"])
            observer.snapshotChanged(record.id)
            if let area = storageArea(for: record.originalVolume) { observer.storageChanged(area.id) }
        } catch {
            logger.error("cannot grow a store", metadata: ["snapshot": "\(record.id)", "error": "\(error)"])
        }
    }

    /// The kernel gave the copy up: say so, then clean it up; the record stays, `invalid`,
    /// until its owner deletes it, so that a requester learns what became of its copy.
    private func invalidate(_ record: SnapshotRecord, _ provider: any DiffAreaProvider, reason: String) async {
        logger.warning("copy invalidated", metadata: ["snapshot": "\(record.id)", "volume": "\(record.originalVolume)", "reason": "\(reason)"])
        state.withLock { $0.snapshots[record.id]?.state = .invalid }
        if let invalid = snapshot(record.id) { try? catalog.update(invalid) }
        observer.snapshotChanged(record.id)
        observer.broadcast(.invalidated(snapshot: record.id, reason: reason))
        var invalid = record
        invalid.state = .invalid
        await cleanUpInvalid(invalid, provider)
    }

    /// Unmounts an invalid copy and deletes its device and store; retried at the next round
    /// while something holds the device open.
    private func cleanUpInvalid(_ record: SnapshotRecord, _ provider: any DiffAreaProvider) async {
        if !record.exposedPath.isEmpty {
            // Reading an invalid copy only gives I/O errors: detach it even if busy.
            umount2(record.exposedPath, Int32(MNT_DETACH | UMOUNT_NOFOLLOW))
            rmdir(record.exposedPath)
        }
        do {
            try await provider.delete(snapshot: record.id, volume: record.originalVolume, copy: record.copy)
        } catch {
            logger.warning("cannot clean up an invalid copy yet", metadata: ["snapshot": "\(record.id)", "error": "\(error)"])
            return
        }
        state.withLock { s in
            s.snapshots[record.id]?.copy = nil
            s.snapshots[record.id]?.exposedPath = ""
        }
        if let cleaned = snapshot(record.id) { try? catalog.update(cleaned) }
        observer.snapshotChanged(record.id)
    }
}
