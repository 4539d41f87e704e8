#if canImport(Glibc)
import Glibc
#endif
import DeviceMapper
import Logging
import ShadowCopyCore
import Synchronization

/// The `dm-snapshot` provider: a volume is a device-mapper device not owned by LVM; a copy is a
/// persistent `snapshot` target over the origin's table moved to `<origin>-screal`, with its COW
/// store in the volume's shadow storage: a sparse file attached to a loop device, or extents of
/// a block device (``CowStore``).
///
/// All the origins of a set are suspended with lockfs (the kernel freezes their filesystems)
/// before any table changes, and resumed together after: the copies are one instant. A failure
/// at any step puts every origin back as it was.
public final class DMSnapshotProvider: SnapshotProvider {
    public let info = ProviderInfo(
        name: "dm-snapshot", id: Identifier("5c1d4f0e-9a7b-4c2e-8f3a-6b5d2e1c0a97")!, type: "software", version: shadowCopyVersion)
    /// Suspending with lockfs holds writes; the coordinator freezes nothing itself.
    public let holdsWritesItself = true

    private struct Prepared: Sendable {
        let snapshot: Identifier
        let origin: String
        let sectors: UInt64
        let cow: CowStore
        var copyName: String { DMSnapshotProvider.copyName(snapshot) }
    }

    let storageDirectory: String
    /// Where each copy's store goes and how large it may start, from the coordinator.
    let plans = Mutex<[Identifier: StoragePlan]>([:])
    /// Every location a store may be in, for a copy whose device is already gone.
    let locations = Mutex<Set<String>>([])
    private let sets = Mutex<[Identifier: [Prepared]]>([:])
    /// The copies a set's commit made, until postCommit hands them over (or abort deletes them).
    private let madeCopies = Mutex<[Identifier: Set<Identifier>]>([:])
    /// Resumes the suspended origins if the daemon dies while it holds them.
    let guardian: any WriteHolder
    let holdLimitMs: UInt32
    let logger: Logger

    /// Copies' COW stores go to sparse files in `storageDirectory`, which must not be on a copied
    /// volume; origins are never held suspended past `holdLimitMs`, by `guardian` if need be.
    public init(storageDirectory: String, guardian: any WriteHolder, holdLimitMs: UInt32, logger: Logger) {
        self.storageDirectory = storageDirectory
        self.guardian = guardian
        self.holdLimitMs = holdLimitMs
        self.logger = logger
    }

    static func copyName(_ snapshot: Identifier) -> String { "sc-" + snapshot.hex }
    static func realName(_ origin: String) -> String { origin + "-screal" }

    // MARK: Volumes

    public func canonicalVolume(_ volume: String) throws(ShadowCopyError) -> String? {
        guard DeviceMapper.kernelSupport, let device = DMSnapshotProvider.blockDevice(of: volume) else { return nil }
        let sysfs = "/sys/dev/block/\(device)/dm"
        guard let name = DMSnapshotProvider.read(sysfs + "/name") else { return nil }
        let uuid = DMSnapshotProvider.read(sysfs + "/uuid") ?? ""
        if uuid.hasPrefix("LVM-") {
            throw ShadowCopyError(.volumeNotSupported, "\(volume) is an LVM logical volume; LVM's own snapshots (an lvm provider) will copy it")
        }
        if uuid.hasPrefix("SHADOWCOPY-") || name.hasSuffix("-screal") {
            throw ShadowCopyError(.volumeNotSupported, "\(volume) is a device of shadowcopy's own (a copy, or an origin's -real)")
        }
        return "/dev/mapper/" + name
    }

    /// `major:minor` of the block device `volume` names: the device itself, or what is mounted
    /// at a mount point.
    static func blockDevice(of volume: String) -> String? {
        var info = stat()
        guard stat(volume, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFBLK: return number(UInt64(info.st_rdev))
        case S_IFDIR:
            // The mount point itself, not a directory inside one.
            let lines = (read("/proc/self/mountinfo") ?? "").split(separator: "\n")
            guard let line = lines.last(where: { $0.split(separator: " ").dropFirst(4).first.map(String.init) == volume }) else { return nil }
            return line.split(separator: " ").dropFirst(2).first.map(String.init)
        default: return nil
        }
    }

    static func number(_ dev: UInt64) -> String {
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
        let minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
        return "\(major):\(minor)"
    }

    static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        var text = String(decoding: out, as: UTF8.self)
        while text.last == "\n" { text.removeLast() }
        return text
    }

    // MARK: The provider steps

    public func beginPrepare(set: Identifier, snapshot: Identifier, volume: String) async throws(ShadowCopyError) {
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        do {
            guard try DeviceMapper.info(origin) != nil else { throw ShadowCopyError.notFound("\(volume) is gone") }
            let sectors = try DeviceMapper.table(origin).reduce(0) { $0 + $1.length }
            let plan = plans.withLock { $0.removeValue(forKey: snapshot) }
                ?? StoragePlan(location: storageDirectory, budget: .max)
            if plan.location == storageDirectory, mkdir(storageDirectory, 0o700) != 0, errno != EEXIST {
                throw ShadowCopyError.failed("cannot make the shadow storage directory \(storageDirectory): \(String(cString: strerror(errno)))")
            }
            let bytes = min(try initialStoreSize(for: volume), plan.budget)
            let cow: CowStore
            if try checkPlacement(plan.location, for: volume) {
                cow = try CowStore.extents(for: snapshot, on: plan.location, bytes: bytes)
            } else {
                cow = try CowStore.file(for: snapshot, in: plan.location, bytes: bytes)
            }
            sets.withLock { $0[set, default: []].append(Prepared(snapshot: snapshot, origin: origin, sectors: sectors, cow: cow)) }
        } catch let error as ShadowCopyError {
            throw error
        } catch {
            throw ShadowCopyError.failed("\(error)")
        }
    }

    public func endPrepare(set: Identifier) async throws(ShadowCopyError) {}
    public func preCommit(set: Identifier) async throws(ShadowCopyError) {}

    /// Every origin suspended (filesystems frozen), all tables changed, every origin resumed;
    /// on any failure each origin goes back to the table it had.
    public func commit(set: Identifier) async throws(ShadowCopyError) {
        let items = sets.withLock { $0[set] ?? [] }
        var suspended: [String] = []
        var original: [String: [DeviceMapper.TableLine]] = [:]
        var createdReal: [String] = []
        var createdCopies: [String] = []
        var origins: [String] = []
        for origin in items.map(\.origin) where !origins.contains(origin) { origins.append(origin) }
        // The guard learns of them first: if this process dies from here on, it resumes them.
        try await guardian.watchSuspended(origins, limitMs: holdLimitMs)
        do {
            let holdStart = ContinuousClock.now
            for origin in origins {
                try DeviceMapper.suspend(origin, lockfs: true, flush: true)
                suspended.append(origin)
            }
            for item in items {
                let real = DMSnapshotProvider.realName(item.origin)
                if try DeviceMapper.info(real) == nil {
                    let table = try DeviceMapper.table(item.origin)
                    original[item.origin] = table
                    try DeviceMapper.create(real, uuid: "SHADOWCOPY-REAL-" + item.origin, table: table)
                    createdReal.append(real)
                }
                guard let realDevice = try DeviceMapper.info(real)?.deviceNumber else { throw ShadowCopyError.failed("\(real) vanished") }
                try DeviceMapper.create(item.copyName, uuid: "SHADOWCOPY-SNAP-" + item.snapshot.hex, table: [
                    try DeviceMapper.TableLine(start: 0, length: item.sectors, target: "snapshot",
                                               params: "\(realDevice) \(item.cow.deviceNumber) P 8"),
                ], readOnly: true)
                createdCopies.append(item.copyName)
                if original[item.origin] != nil {
                    try DeviceMapper.load(item.origin, table: [
                        try DeviceMapper.TableLine(start: 0, length: item.sectors, target: "snapshot-origin", params: realDevice),
                    ])
                }
            }
            for origin in suspended { try DeviceMapper.resume(origin) }
            suspended.removeAll()
            // From the first suspend's start to the last resume's end: what writers to the volumes felt.
            let held = ContinuousClock.now - holdStart
            logger.info("origins held", metadata: [
                "set": "\(set)", "held-us": "\(held.components.seconds * 1_000_000 + held.components.attoseconds / 1_000_000_000_000)",
            ])
        } catch {
            // Back as it was: copies gone, original tables, every origin running.
            for copy in createdCopies.reversed() { try? DeviceMapper.remove(copy) }
            for (origin, table) in original where suspended.contains(origin) { try? DeviceMapper.load(origin, table: table) }
            for origin in suspended { try? DeviceMapper.resume(origin) }
            for real in createdReal.reversed() { try? DeviceMapper.remove(real) }
            await guardian.unwatchSuspended()
            logger.error("dm-snapshot commit failed; origins restored", metadata: ["set": "\(set)", "error": "\(error)"])
            throw error as? ShadowCopyError ?? .failed("\(error)")
        }
        await guardian.unwatchSuspended()
        madeCopies.withLock { $0[set] = Set(items.map(\.snapshot)) }
        // The copies' tables hold the stores now; the loop devices go when the copies do.
        for item in items { item.cow.release() }
    }

    public func postCommit(set: Identifier) async throws(ShadowCopyError) -> [Identifier: CommittedCopy] {
        let items = sets.withLock { $0.removeValue(forKey: set) ?? [] }
        madeCopies.withLock { $0[set] = nil }
        var copies: [Identifier: CommittedCopy] = [:]
        for item in items {
            copies[item.snapshot] = CommittedCopy(device: "/dev/mapper/" + item.copyName, location: "", consistency: .filesystem,
                                                  store: item.cow.descriptor)
        }
        return copies
    }

    public func abort(set: Identifier) async {
        guard let items = sets.withLock({ $0.removeValue(forKey: set) }) else { return }
        let made = madeCopies.withLock { $0.removeValue(forKey: set) ?? [] }
        for item in items {
            item.cow.release()
            // Only what this provider made: a device of that name made by someone else stays.
            if made.contains(item.snapshot) {
                let copy = CommittedCopy(device: "", location: "", consistency: .crash, store: item.cow.descriptor)
                do { try await delete(snapshot: item.snapshot, volume: "/dev/mapper/" + item.origin, copy: copy) } catch {
                    logger.error("abort: cannot delete a copy", metadata: ["snapshot": "\(item.snapshot)", "error": "\(error)"])
                }
            } else {
                item.cow.discard()
            }
        }
    }

    public func exists(snapshot: Identifier, copy: CommittedCopy, volume: String) -> Bool {
        ((try? DeviceMapper.info(DMSnapshotProvider.copyName(snapshot))) ?? nil) != nil
    }

    /// Removes the copy and its store; the origin's last copy gone, the origin gets its own table back.
    public func delete(snapshot: Identifier, volume: String, copy: CommittedCopy?) async throws(ShadowCopyError) {
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        let real = DMSnapshotProvider.realName(origin)
        let known = copy?.store ?? ""
        do {
            let copy = DMSnapshotProvider.copyName(snapshot)
            var stores = ([storageDirectory] + locations.withLock { Array($0) }).map { $0 + "/" + snapshot.hex + ".cow" }
            if !known.isEmpty { stores = [known] }
            if try DeviceMapper.info(copy) != nil {
                if let cow = try DMSnapshotProvider.cowDevice(of: copy), let backing = DeviceMapper.LoopDevice.backing(of: cow) {
                    stores = [backing.file]
                }
                try DeviceMapper.remove(copy)
            }
            // A block device's extents: their device goes; a file store: its file.
            if try DeviceMapper.info(CowStore.cowName(snapshot)) != nil { try DeviceMapper.remove(CowStore.cowName(snapshot)) }
            for store in stores where !store.hasPrefix("extents:") { unlink(store) }
            _ = try DMSnapshotProvider.dropRealIfUnused(origin: origin, real: real)
        } catch let error as ShadowCopyError {
            throw error
        } catch {
            throw ShadowCopyError.failed("\(error)")
        }
    }

    public func expose(snapshot: Identifier, copy: CommittedCopy, at path: String) throws(ShadowCopyError) {
        try ReadOnlyMount.device(copy.device, at: path)
    }

    /// When no copy uses `real` any more: the origin gets its own table back (if it still is a
    /// snapshot-origin) and `real` goes. Returns whether it went.
    private static func dropRealIfUnused(origin: String, real: String) throws -> Bool {
        guard let realInfo = try DeviceMapper.info(real) else { return false }
        let target = try DeviceMapper.table(origin).first?.target
        // A merge in progress uses -real too; it gives the origin its table back when it ends.
        guard try !copiesUse(realInfo.deviceNumber), target != "snapshot-merge" else { return false }
        if target == "snapshot-origin" { try swapTable(origin, to: try DeviceMapper.table(real)) }
        try DeviceMapper.remove(real)
        return true
    }

    /// Whether a copy is a snapshot of the -real device `realDevice` (`major:minor`).
    static func copiesUse(_ realDevice: String) throws -> Bool {
        try DeviceMapper.list().contains { device in
            device.name.hasPrefix("sc-") && (try? DeviceMapper.table(device.name).first?.params.hasPrefix(realDevice + " ")) == true
        }
    }

    /// Makes `table` the origin's live table (no lockfs: nothing is copied at this instant);
    /// the origin runs again whatever happens.
    static func swapTable(_ origin: String, to table: [DeviceMapper.TableLine]) throws {
        try DeviceMapper.suspend(origin, lockfs: false, flush: true)
        do {
            try DeviceMapper.load(origin, table: table)
            try DeviceMapper.resume(origin)
        } catch {
            try? DeviceMapper.resume(origin)
            throw error
        }
    }

    /// A daemon that died in the middle of a commit may have left origins suspended (their
    /// filesystems frozen) and an origin's -real device with no copy on it: every such origin is
    /// resumed, and an unused -real goes after giving its origin its table back.
    public func recover() async -> [String] {
        guard DeviceMapper.kernelSupport, let devices = try? DeviceMapper.list() else { return [] }
        var fixes: [String] = []
        for real in devices.map(\.name) where real.hasSuffix("-screal") {
            let origin = String(real.dropLast("-screal".count))
            do {
                guard let originInfo = try DeviceMapper.info(origin) else { continue }
                if originInfo.suspended {
                    try DeviceMapper.resume(origin)
                    fixes.append("resumed \(origin), left suspended")
                }
                if try DMSnapshotProvider.dropRealIfUnused(origin: origin, real: real) {
                    fixes.append("removed \(real), which no copy used; \(origin) has its own table")
                }
            } catch {
                fixes.append("could not repair \(origin): \(error)")
            }
        }
        for copy in devices.map(\.name) where copy.hasPrefix("sc-") {
            if (try? DeviceMapper.info(copy))??.suspended == true, (try? DeviceMapper.resume(copy)) != nil {
                fixes.append("resumed \(copy), left suspended")
            }
        }
        for fix in fixes { logger.notice("dm-snapshot recovered", metadata: ["fix": "\(fix)"]) }
        return fixes
    }
}
