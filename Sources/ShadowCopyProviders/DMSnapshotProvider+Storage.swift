#if canImport(Glibc)
import Glibc
#endif
import DeviceMapper
import ShadowCopyCore

/// Shadow storage of dm-snapshot copies: each copy's store is a sparse file in its volume's
/// area, attached through a loop device, which the coordinator grows before it fills.
extension DMSnapshotProvider: DiffAreaProvider {
    public var defaultStorageLocation: String { storageDirectory }

    /// VSS's default diff area: a tenth of the volume, at least 16 MiB (the file is sparse).
    public func initialStoreSize(for volume: String) throws(ShadowCopyError) -> UInt64 {
        max(try DMSnapshotProvider.sectors(of: String(volume.dropFirst("/dev/mapper/".count))) * 512 / 10, 16 << 20)
    }

    /// A directory reached without symlinks, or a block device nothing uses (not mounted, not
    /// held by anyone), given over to shadow storage; never the volume itself (the store's
    /// writes would land in what is copied), nor a shadowcopy device.
    public func checkStorageLocation(_ location: String, for volume: String) throws(ShadowCopyError) {
        if try checkPlacement(location, for: volume) {
            let number = try CowStore.blockNumber(location)
            if Mounts.mountedDevices().contains(number) {
                throw .invalidArgs("shadow storage device \(location) is mounted; give a device nothing uses")
            }
            // O_EXCL on a block device: refused while a filesystem, dm or md holds it.
            let fd = open(location, O_RDONLY | O_EXCL | O_CLOEXEC)
            guard fd >= 0 else { throw .invalidArgs("shadow storage device \(location) is in use (\(String(cString: strerror(errno))))") }
            close(fd)
            guard try CowStore.size(of: number) >= 32768 else { throw .invalidArgs("shadow storage device \(location) is under 16 MiB") }
        } else {
            close(try ReadOnlyMount.openDirectory(location))
        }
    }

    /// Whether `location` is a block device (true) or a directory (false), after the checks
    /// every new store passes: not the volume itself, not a shadowcopy device.
    func checkPlacement(_ location: String, for volume: String) throws(ShadowCopyError) -> Bool {
        var info = stat()
        guard stat(location, &info) == 0 else {
            throw .invalidArgs("shadow storage location \(location): \(String(cString: strerror(errno)))")
        }
        let block = info.st_mode & S_IFMT == S_IFBLK
        guard block || info.st_mode & S_IFMT == S_IFDIR else {
            throw .invalidArgs("shadow storage location \(location) is neither a directory nor a block device")
        }
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        let onDevice = DMSnapshotProvider.number(UInt64(block ? info.st_rdev : info.st_dev))
        guard let originInfo = try? DeviceMapper.info(origin) else { throw .notFound("\(volume) is gone") }
        if onDevice == originInfo.deviceNumber {
            throw ShadowCopyError(.invalidArgs, "shadow storage \(location) is \(block ? "" : "on ")\(volume) itself; use another \(block ? "device" : "filesystem")")
        }
        let sysfs = "/sys/dev/block/\(onDevice)/dm"
        if let name = DMSnapshotProvider.read(sysfs + "/name"), name.hasPrefix("sc-") || name.hasSuffix("-screal") || name == origin {
            throw ShadowCopyError(.invalidArgs, "shadow storage \(location) is on a shadowcopy device")
        }
        return block
    }

    public func capacity(of location: String) -> UInt64? {
        guard let number = try? CowStore.blockNumber(location), let sectors = try? CowStore.size(of: number) else { return nil }
        return sectors * 512
    }

    public func store(_ store: String, isIn location: String) -> Bool {
        store.hasPrefix(location + "/") || store.hasPrefix("extents:" + location + ":")
    }

    public func plan(snapshot: Identifier, _ plan: StoragePlan) {
        plans.withLock { $0[snapshot] = plan }
        remember(location: plan.location)
    }

    public func remember(location: String) {
        _ = locations.withLock { $0.insert(location) }
    }

    public func storageUse(of snapshot: Identifier) -> StorageUse? {
        let copy = DMSnapshotProvider.copyName(snapshot)
        guard let line = (try? DeviceMapper.status(copy))?.first, let status = DeviceMapper.SnapshotStatus(line.status) else {
            return nil
        }
        if case .active(let allocated, let total, _) = status {
            return StorageUse(used: allocated * 512, size: total * 512, invalid: false)
        }
        let extents = (try? DeviceMapper.table(CowStore.cowName(snapshot)))?.reduce(0) { $0 + $1.length * 512 }
        let size = extents ?? (try? DMSnapshotProvider.cowDevice(of: copy)).flatMap { $0 }
            .flatMap { DeviceMapper.LoopDevice.backing(of: $0) }
            .map { backing -> UInt64 in
                var info = stat()
                return stat(backing.file, &info) == 0 ? UInt64(info.st_size) : 0
            } ?? 0
        return StorageUse(used: size, size: size, invalid: true)
    }

    /// The whole volume, and the store's metadata: one 16-byte exception per 4 KiB chunk.
    public func storageCeiling(of snapshot: Identifier) -> UInt64? {
        guard let sectors = (try? DeviceMapper.table(DMSnapshotProvider.copyName(snapshot)))?.first?.length else { return nil }
        return sectors * 512 + sectors * 512 / 128 + (1 << 20)
    }

    public func growStorage(of snapshot: Identifier, store: String, to bytes: UInt64) throws(ShadowCopyError) -> String {
        if store.hasPrefix("extents:") { return try CowStore.growExtents(store, of: snapshot, to: bytes) }
        let copy = DMSnapshotProvider.copyName(snapshot)
        do {
            guard let cow = try DMSnapshotProvider.cowDevice(of: copy), let backing = DeviceMapper.LoopDevice.backing(of: cow) else {
                throw ShadowCopyError.notFound("the store of \(copy) is not a loop device")
            }
            try DeviceMapper.LoopDevice.grow(backing.device, file: backing.file, to: bytes)
            return store
        } catch let error as ShadowCopyError {
            throw error
        } catch {
            throw .failed("\(error)")
        }
    }

    /// `major:minor` of the COW device in the `snapshot` table of `copy`.
    static func cowDevice(of copy: String) throws -> String? {
        guard let line = try DeviceMapper.table(copy).first, line.target == "snapshot" || line.target == "snapshot-merge" else {
            return nil
        }
        let words = line.params.split(separator: " ")
        return words.count >= 2 ? String(words[1]) : nil
    }

    static func sectors(of device: String) throws(ShadowCopyError) -> UInt64 {
        do {
            return try DeviceMapper.table(device).reduce(0) { $0 + $1.length }
        } catch {
            throw .failed("\(error)")
        }
    }
}
