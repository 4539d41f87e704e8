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

    /// A directory reached without symlinks, not on the volume itself (the store's writes would
    /// land in what is copied) nor on a shadowcopy device.
    public func checkStorageLocation(_ location: String, for volume: String) throws(ShadowCopyError) {
        var info = stat()
        guard stat(location, &info) == 0 else {
            throw .invalidArgs("shadow storage location \(location): \(String(cString: strerror(errno)))")
        }
        if info.st_mode & S_IFMT == S_IFBLK {
            throw .notSupported("a block device as shadow storage is not supported yet; give a directory on another filesystem")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw .invalidArgs("shadow storage location \(location) is not a directory") }
        close(try ReadOnlyMount.openDirectory(location))
        let origin = String(volume.dropFirst("/dev/mapper/".count))
        let onDevice = DMSnapshotProvider.number(UInt64(info.st_dev))
        guard let originInfo = try? DeviceMapper.info(origin) else { throw .notFound("\(volume) is gone") }
        if onDevice == originInfo.deviceNumber {
            throw ShadowCopyError(.invalidArgs, "shadow storage \(location) is on \(volume) itself; use another filesystem")
        }
        let sysfs = "/sys/dev/block/\(onDevice)/dm"
        if let name = DMSnapshotProvider.read(sysfs + "/name"), name.hasPrefix("sc-") || name.hasSuffix("-screal") {
            throw ShadowCopyError(.invalidArgs, "shadow storage \(location) is on a shadowcopy device")
        }
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
        let size = (try? DMSnapshotProvider.cowDevice(of: copy)).flatMap { $0 }
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

    public func growStorage(of snapshot: Identifier, to bytes: UInt64) throws(ShadowCopyError) {
        let copy = DMSnapshotProvider.copyName(snapshot)
        do {
            guard let cow = try DMSnapshotProvider.cowDevice(of: copy), let backing = DeviceMapper.LoopDevice.backing(of: cow) else {
                throw ShadowCopyError.notFound("the store of \(copy) is not a loop device")
            }
            try DeviceMapper.LoopDevice.grow(backing.device, file: backing.file, to: bytes)
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
