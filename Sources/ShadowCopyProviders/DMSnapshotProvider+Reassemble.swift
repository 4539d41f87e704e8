#if canImport(Glibc)
import Glibc
#endif
import DeviceMapper
import ShadowCopyCore

/// Persistent copies after a reboot: the kernel has forgotten them, but their stores hold
/// every chunk they preserved, and a `snapshot` target with a persistent store reads its
/// exceptions back. Each origin is put under snapshot-origin again, with all its copies at once.
extension DMSnapshotProvider {
    public func reassemble(_ copies: [LostCopy]) async -> [String] {
        guard DeviceMapper.kernelSupport else { return [] }
        var done: [String] = []
        var byOrigin: [String: [LostCopy]] = [:]
        for copy in copies { byOrigin[String(copy.volume.dropFirst("/dev/mapper/".count)), default: []].append(copy) }
        for (origin, lost) in byOrigin.sorted(by: { $0.key < $1.key }) {
            do {
                done += try await reassemble(origin: origin, lost)
            } catch {
                done.append("could not bring back the copies of /dev/mapper/\(origin): \(error)")
            }
        }
        for line in done { logger.notice("dm-snapshot reassembled", metadata: ["what": "\(line)"]) }
        return done
    }

    private func reassemble(origin: String, _ lost: [LostCopy]) async throws -> [String] {
        guard try DeviceMapper.info(origin) != nil else {
            return lost.map { "copy \($0.snapshot) not brought back: /dev/mapper/\(origin) is not active" }
        }
        var notes: [String] = []
        var loops: [(LostCopy, CowStore)] = []
        defer { for (_, store) in loops { store.release() } }
        for copy in lost {
            do {
                if let extents = try CowStore.reopenExtents(copy.copy.store, for: copy.snapshot) {
                    loops.append((copy, extents))
                } else if !copy.copy.store.isEmpty, access(copy.copy.store, R_OK | W_OK) == 0 {
                    loops.append((copy, try CowStore.attach(copy.copy.store)))
                } else {
                    notes.append("copy \(copy.snapshot) not brought back: its store \(copy.copy.store) is gone")
                }
            } catch {
                notes.append("copy \(copy.snapshot) not brought back: \(error)")
            }
        }
        guard !loops.isEmpty else { return notes }
        let real = DMSnapshotProvider.realName(origin)
        let table = try DeviceMapper.table(origin)
        let sectors = table.reduce(0) { $0 + $1.length }
        // After a reboot the origin has its own table again; after a daemon restart that lost
        // only some copies, it is still a snapshot-origin of its -real.
        let createReal = try DeviceMapper.info(real) == nil
        guard createReal || table.first?.target == "snapshot-origin" else {
            throw ShadowCopyError.failed("\(real) exists but \(origin) is not its snapshot-origin")
        }
        try await guardian.watchSuspended([origin], limitMs: holdLimitMs)
        var made: [String] = []
        do {
            try DeviceMapper.suspend(origin, lockfs: true, flush: true)
            if createReal { try DeviceMapper.create(real, uuid: "SHADOWCOPY-REAL-" + origin, table: table) }
            guard let realDevice = try DeviceMapper.info(real)?.deviceNumber else { throw ShadowCopyError.failed("\(real) vanished") }
            for (copy, loop) in loops {
                let name = DMSnapshotProvider.copyName(copy.snapshot)
                try DeviceMapper.create(name, uuid: "SHADOWCOPY-SNAP-" + copy.snapshot.hex, table: [
                    try DeviceMapper.TableLine(start: 0, length: sectors, target: "snapshot", params: "\(realDevice) \(loop.deviceNumber) P 8"),
                ], readOnly: true)
                made.append(name)
            }
            if createReal {
                try DeviceMapper.load(origin, table: [
                    try DeviceMapper.TableLine(start: 0, length: sectors, target: "snapshot-origin", params: realDevice),
                ])
            }
            try DeviceMapper.resume(origin)
        } catch {
            for name in made.reversed() { try? DeviceMapper.remove(name) }
            // The extents' devices made here go too; their data stays on the device for a retry.
            for (_, store) in loops { if case .extents(_, let name) = store.backing { try? DeviceMapper.remove(name) } }
            if createReal {
                try? DeviceMapper.clear(origin)
                try? DeviceMapper.resume(origin)
                try? DeviceMapper.remove(real)
            } else {
                try? DeviceMapper.resume(origin)
            }
            await guardian.unwatchSuspended()
            throw error
        }
        await guardian.unwatchSuspended()
        return notes + loops.map { "brought back copy \($0.0.snapshot) of /dev/mapper/\(origin) from \($0.0.copy.store)" }
    }
}
