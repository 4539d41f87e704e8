#if canImport(Glibc)
import Glibc
#endif
import DeviceMapper
import ShadowCopyCore

/// One copy's COW store: a sparse file attached to a loop device (a directory area), or
/// extents of a block device (a block device area) mapped by a linear dm device
/// `sc-<id>-cow`. The catalog keeps its ``descriptor``, from which a reboot finds it again.
struct CowStore: Sendable {
    enum Backing: Sendable {
        case file(path: String, loop: DeviceMapper.LoopDevice)
        case extents(device: String, name: String)
    }

    let backing: Backing
    /// `major:minor`, as the snapshot table names it.
    let deviceNumber: String
    /// The file's path, or `extents:<device>:<start>+<length>,...` (sectors).
    let descriptor: String

    static func cowName(_ snapshot: Identifier) -> String { "sc-" + snapshot.hex + "-cow" }

    /// Lets go of what the daemon holds itself (the loop device's descriptor): once the copy's
    /// table holds the store, the loop goes when the copy does.
    func release() {
        if case .file(_, let loop) = backing { loop.release() }
    }

    /// Removes a store no copy uses: the file, or the extents' device.
    func discard() {
        switch backing {
        case .file(let path, let loop):
            loop.release()
            unlink(path)
        case .extents(_, let name):
            try? DeviceMapper.remove(name)
        }
    }

    // MARK: Files

    /// A new sparse file of `bytes` in `directory`, attached to a loop device.
    static func file(for snapshot: Identifier, in directory: String, bytes: UInt64) throws(ShadowCopyError) -> CowStore {
        let path = directory + "/" + snapshot.hex + ".cow"
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .failed("cannot make \(path): \(String(cString: strerror(errno)))") }
        let sized = ftruncate(fd, off_t(bytes))
        close(fd)
        guard sized == 0 else {
            unlink(path)
            throw .failed("cannot size \(path)")
        }
        do { return try attach(path) } catch {
            unlink(path)
            throw error
        }
    }

    /// An existing store file attached to a loop device (again, after a reboot).
    static func attach(_ path: String) throws(ShadowCopyError) -> CowStore {
        do {
            let loop = try DeviceMapper.LoopDevice(file: path)
            return CowStore(backing: .file(path: path, loop: loop), deviceNumber: loop.deviceNumber, descriptor: path)
        } catch {
            throw .failed("\(error)")
        }
    }

    // MARK: Extents of a block device

    /// `sectors` (rounded up to 4 KiB) of `device`, from its free space, as `sc-<id>-cow`; its
    /// first chunk is zeroed, so that no old store's header is taken for this one's.
    static func extents(for snapshot: Identifier, on device: String, bytes: UInt64) throws(ShadowCopyError) -> CowStore {
        let number = try blockNumber(device)
        let deviceSectors = try size(of: number)
        let segments: [(UInt64, UInt64)]
        do { segments = try allocate(sectors(bytes), on: number, deviceSectors: deviceSectors) } catch {
            throw error as? ShadowCopyError ?? .failed("\(error)")
        }
        let name = cowName(snapshot)
        do {
            try DeviceMapper.create(name, uuid: "SHADOWCOPY-COW-" + snapshot.hex, table: try table(segments, on: number))
            let fd = open("/dev/mapper/" + name, O_WRONLY | O_CLOEXEC)
            let zeros = [UInt8](repeating: 0, count: 4096)
            let zeroed = fd >= 0 && write(fd, zeros, zeros.count) == zeros.count && fsync(fd) == 0
            if fd >= 0 { close(fd) }
            guard zeroed else { throw ShadowCopyError.failed("cannot clear the start of \(name)") }
            guard let info = try DeviceMapper.info(name) else { throw ShadowCopyError.failed("\(name) vanished") }
            return CowStore(backing: .extents(device: device, name: name), deviceNumber: info.deviceNumber,
                            descriptor: descriptor(device, segments))
        } catch {
            try? DeviceMapper.remove(name)
            throw error as? ShadowCopyError ?? .failed("\(error)")
        }
    }

    /// The store `descriptor` names made live again (after a reboot), or nil when it names a file.
    static func reopenExtents(_ descriptor: String, for snapshot: Identifier) throws(ShadowCopyError) -> CowStore? {
        guard let (device, segments) = parse(descriptor) else { return nil }
        let name = cowName(snapshot)
        do {
            let number = try blockNumber(device)
            if try DeviceMapper.info(name) == nil {
                try DeviceMapper.create(name, uuid: "SHADOWCOPY-COW-" + snapshot.hex, table: try table(segments, on: number))
            }
            guard let info = try DeviceMapper.info(name) else { throw ShadowCopyError.failed("\(name) vanished") }
            return CowStore(backing: .extents(device: device, name: name), deviceNumber: info.deviceNumber, descriptor: descriptor)
        } catch {
            throw error as? ShadowCopyError ?? .failed("\(error)")
        }
    }

    /// Grows the extents store `descriptor` of `snapshot` to `bytes`; returns its new descriptor.
    static func growExtents(_ descriptor: String, of snapshot: Identifier, to bytes: UInt64) throws(ShadowCopyError) -> String {
        let name = cowName(snapshot)
        guard let (device, _) = parse(descriptor) else { throw .invalidArgs("'\(descriptor)' is not an extents store") }
        do {
            let current = try DeviceMapper.table(name)
            guard let first = current.first, first.target == "linear" else { throw ShadowCopyError.failed("\(name) is not a store") }
            let number = String(first.params.split(separator: " ")[0])
            let have = current.reduce(0) { $0 + $1.length }
            let wanted = sectors(bytes)
            guard wanted > have else { return descriptor }
            let segments = current.compactMap { line in UInt64(line.params.split(separator: " ")[1]).map { ($0, line.length) } }
            let more = try allocate(wanted - have, on: number, deviceSectors: try size(of: number))
            try DeviceMapper.suspend(name, lockfs: false, flush: true)
            do {
                try DeviceMapper.load(name, table: try table(segments + more, on: number))
                try DeviceMapper.resume(name, waitForUdev: false)
            } catch {
                try? DeviceMapper.clear(name)
                try? DeviceMapper.resume(name)
                throw error
            }
            return CowStore.descriptor(device, segments + more)
        } catch {
            throw error as? ShadowCopyError ?? .failed("\(error)")
        }
    }

    static func sectors(_ bytes: UInt64) -> UInt64 { (bytes + 4095) / 4096 * 8 }

    static func descriptor(_ device: String, _ segments: [(UInt64, UInt64)]) -> String {
        "extents:\(device):" + segments.map { "\($0.0)+\($0.1)" }.joined(separator: ",")
    }

    static func parse(_ descriptor: String) -> (String, [(UInt64, UInt64)])? {
        guard descriptor.hasPrefix("extents:"), let colon = descriptor.lastIndex(of: ":") else { return nil }
        let device = String(descriptor[descriptor.index(descriptor.startIndex, offsetBy: 8)..<colon])
        let segments = descriptor[descriptor.index(after: colon)...].split(separator: ",").compactMap { part -> (UInt64, UInt64)? in
            let pair = part.split(separator: "+")
            guard pair.count == 2, let start = UInt64(pair[0]), let length = UInt64(pair[1]) else { return nil }
            return (start, length)
        }
        return segments.isEmpty ? nil : (device, segments)
    }

    private static func table(_ segments: [(UInt64, UInt64)], on number: String) throws -> [DeviceMapper.TableLine] {
        var start: UInt64 = 0
        return try segments.map { segment in
            defer { start += segment.1 }
            return try DeviceMapper.TableLine(start: start, length: segment.1, target: "linear", params: "\(number) \(segment.0)")
        }
    }

    /// First fit over what no `sc-*-cow` device maps of the device, in 4 KiB steps.
    private static func allocate(_ wanted: UInt64, on number: String, deviceSectors: UInt64) throws -> [(UInt64, UInt64)] {
        var used: [(UInt64, UInt64)] = []
        for device in try DeviceMapper.list() where device.name.hasPrefix("sc-") && device.name.hasSuffix("-cow") {
            for line in try DeviceMapper.table(device.name) where line.target == "linear" {
                let words = line.params.split(separator: " ")
                if words.count == 2, words[0] == number, let offset = UInt64(words[1]) { used.append((offset, line.length)) }
            }
        }
        used.sort { $0.0 < $1.0 }
        var found: [(UInt64, UInt64)] = []
        var need = wanted, at: UInt64 = 0
        for (start, length) in used + [(deviceSectors, 0)] where need > 0 {
            if start > at {
                let take = min(need, (start - at) / 8 * 8)
                if take > 0 { found.append((at, take)); need -= take }
            }
            at = max(at, (start + length + 7) / 8 * 8)
        }
        guard need == 0 else {
            throw ShadowCopyError(.limitExceeded, "the shadow storage device has no \(wanted * 512) bytes free")
        }
        return found
    }

    static func blockNumber(_ device: String) throws(ShadowCopyError) -> String {
        var info = stat()
        guard stat(device, &info) == 0, info.st_mode & S_IFMT == S_IFBLK else {
            throw .notFound("shadow storage device \(device) is not there")
        }
        return DMSnapshotProvider.number(UInt64(info.st_rdev))
    }

    /// The device's size in sectors, from sysfs.
    static func size(of number: String) throws(ShadowCopyError) -> UInt64 {
        guard let text = DMSnapshotProvider.read("/sys/dev/block/\(number)/size"), let sectors = UInt64(text) else {
            throw .failed("cannot read the size of block device \(number)")
        }
        return sectors
    }

}
