#if canImport(Glibc)
import Glibc
#endif
import DeviceMapper
import Logging
import ShadowCopyCore
import Synchronization

/// The `dm-thin` provider: a volume is a `thin` device of a thin pool; a copy is a thin
/// snapshot made in the pool (`create_snap`) while the origin is suspended, then activated
/// read-only as `sc-<id>`. Copies take pool space, not shadow storage.
///
/// Thin device ids come from a counter kept on disk, so an id is never used twice, even for a
/// copy long deleted (a reused id could be mistaken for the old copy by anything that knew it).
public final class ThinProvider: SnapshotProvider {
    public let info = ProviderInfo(
        name: "dm-thin", id: Identifier("8e2b6a41-3f5c-4d7e-9a1b-2c4d6e8f0a13")!, type: "software", version: shadowCopyVersion)
    /// Suspending the origins (with lockfs) holds their writes.
    public let holdsWritesItself = true

    private struct Prepared: Sendable {
        let snapshot: Identifier
        let origin: String
        let pool: String
        let poolDevice: String
        let originID: UInt32
        /// Whatever follows the device id in the origin's table (an external origin).
        let extra: String
        let sectors: UInt64
        var newID: UInt32?
        /// Whether this provider made the copy's device (one of that name made by someone
        /// else is never removed).
        var activated = false
    }

    /// Ids handed out start here, well above those tools number from 0 or 1.
    static let firstID: UInt32 = 1 << 23
    /// The largest id a pool takes (24 bits).
    static let lastID: UInt32 = (1 << 24) - 1

    private let counterPath: String
    private let sets = Mutex<[Identifier: [Prepared]]>([:])
    /// One allocation at a time, so that the counter file is never read twice for one id.
    private let idLock = Mutex(())
    private let guardian: any WriteHolder
    private let holdLimitMs: UInt32
    private let logger: Logger

    /// The id counter lives in `stateDirectory`; origins are never held suspended past
    /// `holdLimitMs`, by `guardian` if the daemon dies.
    public init(stateDirectory: String, guardian: any WriteHolder, holdLimitMs: UInt32, logger: Logger) {
        counterPath = stateDirectory + "/dm-thin-next-id"
        self.guardian = guardian
        self.holdLimitMs = holdLimitMs
        self.logger = logger
    }

    static func copyName(_ snapshot: Identifier) -> String { "sc-" + snapshot.hex }

    /// A thin volume's table: the pool's `major:minor`, its device id, and what follows.
    static func thinTable(_ name: String) throws -> (pool: String, id: UInt32, extra: String, sectors: UInt64)? {
        let table = try DeviceMapper.table(name)
        guard table.count == 1, table[0].target == "thin" else { return nil }
        let words = table[0].params.split(separator: " ").map(String.init)
        guard words.count >= 2, let id = UInt32(words[1]) else { return nil }
        return (words[0], id, words.dropFirst(2).joined(separator: " "), table[0].length)
    }

    // MARK: Volumes

    public func canonicalVolume(_ volume: String) throws(ShadowCopyError) -> String? {
        guard DeviceMapper.kernelSupport, let device = DMSnapshotProvider.blockDevice(of: volume),
            let name = DMSnapshotProvider.read("/sys/dev/block/\(device)/dm/name"),
            (try? ThinProvider.thinTable(name)) != nil
        else { return nil }
        let uuid = DMSnapshotProvider.read("/sys/dev/block/\(device)/dm/uuid") ?? ""
        if uuid.hasPrefix("LVM-") {
            throw ShadowCopyError(.volumeNotSupported, "\(volume) is an LVM thin volume; LVM's own snapshots (an lvm provider) will copy it")
        }
        if uuid.hasPrefix("SHADOWCOPY-") { throw ShadowCopyError(.volumeNotSupported, "\(volume) is a shadowcopy copy") }
        return "/dev/mapper/" + name
    }

    // MARK: The provider steps

    public func beginPrepare(set: Identifier, snapshot: Identifier, volume: String) async throws(ShadowCopyError) {
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        do {
            guard let thin = try ThinProvider.thinTable(origin) else { throw ShadowCopyError.notFound("\(volume) is no longer a thin volume") }
            guard let pool = DMSnapshotProvider.read("/sys/dev/block/\(thin.pool)/dm/name") else {
                throw ShadowCopyError.notFound("the thin pool \(thin.pool) of \(volume) is gone")
            }
            // A pool out of space or read-only cannot take a snapshot; say so before anything is frozen.
            if let line = try DeviceMapper.status(pool).first, let status = DeviceMapper.ThinPoolStatus(line.status), status.mode != "rw" {
                throw ShadowCopyError.failed("the thin pool \(pool) of \(volume) is \(status.mode)")
            }
            sets.withLock {
                $0[set, default: []].append(Prepared(snapshot: snapshot, origin: origin, pool: pool, poolDevice: thin.pool,
                                                     originID: thin.id, extra: thin.extra, sectors: thin.sectors))
            }
        } catch let error as ShadowCopyError {
            throw error
        } catch {
            throw .failed("\(error)")
        }
    }

    public func endPrepare(set: Identifier) async throws(ShadowCopyError) {}
    public func preCommit(set: Identifier) async throws(ShadowCopyError) {}

    /// Every origin suspended (filesystems frozen), a thin snapshot of each, every origin
    /// resumed; then the copies are activated, outside the hold. Any failure undoes it all.
    public func commit(set: Identifier) async throws(ShadowCopyError) {
        var items = sets.withLock { $0[set] ?? [] }
        var origins: [String] = []
        for origin in items.map(\.origin) where !origins.contains(origin) { origins.append(origin) }
        try await guardian.watchSuspended(origins, limitMs: holdLimitMs)
        var suspended: [String] = []
        do {
            let holdStart = ContinuousClock.now
            for origin in origins {
                try DeviceMapper.suspend(origin, lockfs: true, flush: true)
                suspended.append(origin)
            }
            for index in items.indices {
                items[index].newID = try createSnapshot(in: items[index].pool, of: items[index].originID)
            }
            for origin in suspended { try DeviceMapper.resume(origin) }
            suspended.removeAll()
            // From the first suspend's start to the last resume's end: what writers to the volumes felt.
            let held = ContinuousClock.now - holdStart
            logger.info("origins held", metadata: [
                "set": "\(set)", "held-us": "\(held.components.seconds * 1_000_000 + held.components.attoseconds / 1_000_000_000_000)",
            ])
            await guardian.unwatchSuspended()
            for index in items.indices {
                let item = items[index]
                guard let id = item.newID else { continue }
                let params = ([item.poolDevice, "\(id)"] + (item.extra.isEmpty ? [] : [item.extra])).joined(separator: " ")
                try DeviceMapper.create(ThinProvider.copyName(item.snapshot), uuid: "SHADOWCOPY-SNAP-" + item.snapshot.hex,
                                        table: [try DeviceMapper.TableLine(start: 0, length: item.sectors, target: "thin", params: params)],
                                        readOnly: true)
                items[index].activated = true
            }
        } catch {
            for origin in suspended { try? DeviceMapper.resume(origin) }
            await guardian.unwatchSuspended()
            for item in items { await drop(item) }
            sets.withLock { $0[set] = nil }
            logger.error("dm-thin commit failed; nothing kept", metadata: ["set": "\(set)", "error": "\(error)"])
            throw error as? ShadowCopyError ?? .failed("\(error)")
        }
        sets.withLock { $0[set] = items }
    }

    /// A snapshot of thin device `originID` under a fresh id; ids the pool already has are
    /// skipped (someone else's devices).
    private func createSnapshot(in pool: String, of originID: UInt32) throws -> UInt32 {
        var lastError: (any Error)?
        for _ in 0..<16 {
            let id = try nextID()
            do {
                _ = try DeviceMapper.message(pool, "create_snap \(id) \(originID)")
                return id
            } catch {
                lastError = error
            }
        }
        throw ShadowCopyError.failed("no thin device id was free in \(pool): \(lastError.map { "\($0)" } ?? "?")")
    }

    /// The next id from the counter file, which is on disk before the id is used.
    private func nextID() throws(ShadowCopyError) -> UInt32 {
        try idLock.withLock { _ throws(ShadowCopyError) -> UInt32 in
            let stored = DMSnapshotProvider.read(counterPath).flatMap { UInt32($0) } ?? ThinProvider.firstID
            let id = max(stored, ThinProvider.firstID)
            guard id <= ThinProvider.lastID else { throw .init(.limitExceeded, "every thin device id was used") }
            let directory = String(counterPath[..<counterPath.lastIndex(of: "/")!])
            if mkdir(directory, 0o700) != 0, errno != EEXIST { throw .failed("cannot make \(directory)") }
            let temporary = counterPath + ".new"
            let fd = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .failed("cannot write \(temporary): \(String(cString: strerror(errno)))") }
            let text = Array("\(id + 1)\n".utf8)
            let written = write(fd, text, text.count) == text.count && fsync(fd) == 0
            close(fd)
            guard written, rename(temporary, counterPath) == 0 else { throw .failed("cannot write \(counterPath)") }
            return id
        }
    }

    /// Removes what was made for `item`: its device and its thin snapshot.
    private func drop(_ item: Prepared) async {
        if item.activated { try? DeviceMapper.remove(ThinProvider.copyName(item.snapshot)) }
        if let id = item.newID { _ = try? DeviceMapper.message(item.pool, "delete \(id)") }
    }

    public func postCommit(set: Identifier) async throws(ShadowCopyError) -> [Identifier: CommittedCopy] {
        let items = sets.withLock { $0.removeValue(forKey: set) ?? [] }
        var copies: [Identifier: CommittedCopy] = [:]
        for item in items {
            guard let id = item.newID else { continue }
            copies[item.snapshot] = CommittedCopy(device: "/dev/mapper/" + ThinProvider.copyName(item.snapshot), location: "",
                                                  consistency: .filesystem, store: "\(item.pool):\(id)")
        }
        return copies
    }

    public func abort(set: Identifier) async {
        guard let items = sets.withLock({ $0.removeValue(forKey: set) }) else { return }
        for item in items { await drop(item) }
    }

    public func exists(snapshot: Identifier, copy: CommittedCopy, volume: String) -> Bool {
        ((try? DeviceMapper.info(ThinProvider.copyName(snapshot))) ?? nil) != nil
    }

    /// Removes the copy's device and its thin snapshot from the pool (named by the catalog's
    /// `pool:id` when the device is already gone).
    public func delete(snapshot: Identifier, volume: String, copy: CommittedCopy?) async throws(ShadowCopyError) {
        let name = ThinProvider.copyName(snapshot)
        do {
            var target: (pool: String, id: UInt32)?
            if let store = copy?.store, let colon = store.lastIndex(of: ":"), let id = UInt32(store[store.index(after: colon)...]) {
                target = (String(store[..<colon]), id)
            }
            if try DeviceMapper.info(name) != nil {
                if let thin = try ThinProvider.thinTable(name), let pool = DMSnapshotProvider.read("/sys/dev/block/\(thin.pool)/dm/name") {
                    target = (pool, thin.id)
                }
                try DeviceMapper.remove(name)
            }
            guard let target else { return }
            guard try DeviceMapper.info(target.pool) != nil else {
                throw ShadowCopyError.notFound("thin pool \(target.pool) is not active; thin device \(target.id) is still in it")
            }
            _ = try DeviceMapper.message(target.pool, "delete \(target.id)")
        } catch let error as ShadowCopyError {
            throw error
        } catch {
            throw .failed("\(error)")
        }
    }

    /// After a reboot the thin snapshots are still in their pools: each is activated again
    /// read-only, from the catalog's `pool:id`.
    public func reassemble(_ copies: [LostCopy]) async -> [String] {
        guard DeviceMapper.kernelSupport else { return [] }
        var done: [String] = []
        for lost in copies {
            let store = lost.copy.store
            let origin = String(lost.volume.dropFirst("/dev/mapper/".count))
            do {
                guard let colon = store.lastIndex(of: ":"), let id = UInt32(store[store.index(after: colon)...]) else {
                    done.append("copy \(lost.snapshot) not brought back: no thin device id recorded")
                    continue
                }
                let pool = String(store[..<colon])
                guard let poolInfo = try DeviceMapper.info(pool), let thin = try ThinProvider.thinTable(origin) else {
                    done.append("copy \(lost.snapshot) not brought back: pool \(pool) or volume \(lost.volume) is not active")
                    continue
                }
                let params = ([poolInfo.deviceNumber, "\(id)"] + (thin.extra.isEmpty ? [] : [thin.extra])).joined(separator: " ")
                try DeviceMapper.create(ThinProvider.copyName(lost.snapshot), uuid: "SHADOWCOPY-SNAP-" + lost.snapshot.hex,
                                        table: [try DeviceMapper.TableLine(start: 0, length: thin.sectors, target: "thin", params: params)],
                                        readOnly: true)
                done.append("brought back copy \(lost.snapshot) of \(lost.volume), thin device \(id) of \(pool)")
            } catch {
                done.append("could not bring back copy \(lost.snapshot) of \(lost.volume): \(error)")
            }
        }
        for line in done { logger.notice("dm-thin reassembled", metadata: ["what": "\(line)"]) }
        return done
    }

    public func expose(snapshot: Identifier, copy: CommittedCopy, at path: String) throws(ShadowCopyError) {
        try ReadOnlyMount.device(copy.device, at: path)
    }
}
