#if canImport(Glibc)
import Glibc
#endif
import DeviceMapper
import ShadowCopyCore

/// Revert with `snapshot-merge`: the origin's table becomes a merging snapshot of its -real
/// over the copy's store, and the kernel copies the preserved chunks back in the background.
extension DMSnapshotProvider: RevertingProvider {
    public func mergeProgress(snapshot: Identifier, volume: String) -> MergeProgress {
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        guard let line = (try? DeviceMapper.status(origin))?.first else { return .failed("\(volume) is gone") }
        guard line.target == "snapshot-merge" else {
            return (try? DeviceMapper.info(DMSnapshotProvider.copyName(snapshot))) != nil ? .waiting : .failed("the copy is gone")
        }
        switch DeviceMapper.SnapshotStatus(line.status) {
        // The merge is over when only the store's metadata is left.
        case .active(let allocated, _, let metadata) where allocated <= metadata: return .done
        case .active(let allocated, let total, let metadata):
            return .merging(total > metadata ? 1 - Double(allocated - metadata) / Double(total - metadata) : 0)
        case .mergeFailed: return .failed("the kernel reports Merge failed")
        case .invalid, .overflow: return .failed("the merging copy is invalid")
        case nil: return .failed("unreadable status '\(line.status)'")
        }
    }

    /// Waits (false) while anything has the origin open: a mounted filesystem must not see its
    /// blocks change under it.
    public func startMerge(snapshot: Identifier, volume: String) async throws(ShadowCopyError) -> Bool {
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        let copy = DMSnapshotProvider.copyName(snapshot)
        do {
            guard let info = try DeviceMapper.info(origin) else { throw ShadowCopyError.notFound("\(volume) is gone") }
            guard info.openCount == 0 else { return false }
            guard let copyTable = try DeviceMapper.table(copy).first, copyTable.target == "snapshot",
                let cow = try DMSnapshotProvider.cowDevice(of: copy)
            else { throw ShadowCopyError.failed("\(copy) is not a snapshot over a store") }
            let real = String(copyTable.params.split(separator: " ")[0])
            // A file store's loop device detaches with its last user: hold it while the copy goes
            // and before the origin's merge table takes it (a block device's extents stay anyway).
            var hold: Int32 = -1
            if let backing = DeviceMapper.LoopDevice.backing(of: cow) {
                hold = open(backing.device, O_RDONLY | O_CLOEXEC)
                guard hold >= 0 else { throw ShadowCopyError.failed("cannot open \(backing.device): \(String(cString: strerror(errno)))") }
            }
            defer { if hold >= 0 { close(hold) } }
            try DeviceMapper.remove(copy)
            let original = try DeviceMapper.table(origin)
            do {
                try DeviceMapper.suspend(origin, lockfs: false, flush: true)
                try DeviceMapper.load(origin, table: [
                    try DeviceMapper.TableLine(start: 0, length: copyTable.length, target: "snapshot-merge", params: "\(real) \(cow) P 8"),
                ])
                try DeviceMapper.resume(origin)
            } catch {
                // Back as it was: the origin's table live, the copy made again from its store.
                try? DeviceMapper.clear(origin)
                try? DeviceMapper.load(origin, table: original)
                try? DeviceMapper.resume(origin)
                try? DeviceMapper.create(copy, uuid: "SHADOWCOPY-SNAP-" + snapshot.hex, table: [copyTable], readOnly: true)
                throw error
            }
            return true
        } catch let error as ShadowCopyError {
            throw error
        } catch {
            throw .failed("\(error)")
        }
    }

    /// The origin becomes a snapshot-origin again when other copies remain, else gets its own
    /// table back; the store goes.
    public func finishMerge(snapshot: Identifier, volume: String) async throws(ShadowCopyError) {
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        let real = DMSnapshotProvider.realName(origin)
        do {
            guard let merging = try DeviceMapper.table(origin).first, merging.target == "snapshot-merge" else { return }
            let words = merging.params.split(separator: " ")
            let store = words.count > 1 ? DeviceMapper.LoopDevice.backing(of: String(words[1]))?.file : nil
            guard let realInfo = try DeviceMapper.info(real) else { throw ShadowCopyError.failed("\(real) is gone") }
            let others = try DMSnapshotProvider.copiesUse(realInfo.deviceNumber)
            try DMSnapshotProvider.swapTable(origin, to: others
                ? [try DeviceMapper.TableLine(start: 0, length: merging.length, target: "snapshot-origin", params: realInfo.deviceNumber)]
                : try DeviceMapper.table(real))
            if !others { try DeviceMapper.remove(real) }
            if let store { unlink(store) }
            if try DeviceMapper.info(CowStore.cowName(snapshot)) != nil { try DeviceMapper.remove(CowStore.cowName(snapshot)) }
        } catch let error as ShadowCopyError {
            throw error
        } catch {
            throw .failed("\(error)")
        }
    }
}
