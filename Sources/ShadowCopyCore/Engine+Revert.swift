/// Revert: a copy's data put back into its volume by its provider, scheduled as LVM's merge is.
extension SnapshotEngine {
    /// Snapshot.Revert: the copy becomes `merging`; the merge starts as soon as nothing has the
    /// volume open, and when it ends the snapshot is gone (its data is the volume's again).
    public func revert(_ id: Identifier, _ caller: Caller) async throws(ShadowCopyError) {
        let record = try owned(id, caller)
        guard record.state == .created, record.copy != nil else {
            throw .badState("only a made, valid snapshot can be reverted to; this one is \(record.state.rawValue)")
        }
        guard let provider = providers.first(where: { $0.info.name == record.provider }) as? any RevertingProvider else {
            throw .notSupported("\(record.provider) copies cannot be reverted to; restore their files instead")
        }
        if let set = set(record.set), let busy = set.busyWith { throw .badState("its set is busy with \(busy)") }
        if state.withLock({ s in s.snapshots.values.contains { $0.originalVolume == record.originalVolume && $0.state == .merging } }) {
            throw .badState("\(record.originalVolume) is already being reverted")
        }
        if !record.exposedPath.isEmpty {
            guard unmount(record.exposedPath) else { throw .failed("the copy is exposed at \(record.exposedPath) and busy") }
        }
        state.withLock { s in
            s.snapshots[id]?.state = .merging
            s.snapshots[id]?.exposedPath = ""
        }
        if let merging = snapshot(id) { try catalog.update(merging) }
        observer.snapshotChanged(id)
        logger.notice("revert scheduled", metadata: ["snapshot": "\(id)", "volume": "\(record.originalVolume)"])
        await checkMerge(record, provider)
    }

    /// One round over the copies being merged: start those whose volume is free, finish
    /// those done.
    func checkMerges() async {
        let merging = state.withLock { s in s.snapshots.values.filter { $0.state == .merging } }
        for record in merging {
            guard let provider = providers.first(where: { $0.info.name == record.provider }) as? any RevertingProvider else { continue }
            await checkMerge(record, provider)
        }
    }

    private func checkMerge(_ record: SnapshotRecord, _ provider: any RevertingProvider) async {
        let volume = record.originalVolume
        switch provider.mergeProgress(snapshot: record.id, volume: volume) {
        case .waiting:
            do {
                if try await provider.startMerge(snapshot: record.id, volume: volume) {
                    logger.notice("merge started", metadata: ["snapshot": "\(record.id)", "volume": "\(volume)"])
                }
            } catch {
                logger.error("cannot start the merge", metadata: ["snapshot": "\(record.id)", "error": "\(error)"])
            }
        case .merging:
            break
        case .done:
            do {
                try await provider.finishMerge(snapshot: record.id, volume: volume)
            } catch {
                logger.error("cannot finish the merge", metadata: ["snapshot": "\(record.id)", "error": "\(error)"])
                return
            }
            logger.notice("reverted", metadata: ["snapshot": "\(record.id)", "volume": "\(volume)"])
            state.withLock { $0.snapshots[record.id]?.state = .deleted }
            observer.snapshotChanged(record.id)
            var merged = record
            merged.copy = nil
            await removeSnapshot(merged, deleteCopy: false)
        case .failed(let reason):
            logger.error("merge failed", metadata: ["snapshot": "\(record.id)", "volume": "\(volume)", "reason": "\(reason)"])
        }
    }
}
