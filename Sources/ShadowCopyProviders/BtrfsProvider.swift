#if canImport(Glibc)
import Glibc
#endif
import Btrfs
import Logging
import ShadowCopyCore
import Synchronization

/// The `btrfs` provider: a volume is a mounted btrfs subvolume; a copy is a read-only snapshot
/// made by the kernel's snapshot ioctl into the hidden folder `.shadowcopy` of that subvolume.
///
/// btrfs makes a snapshot atomically from a committed transaction, so the provider holds no
/// writes itself: it never freezes the filesystem (FIFREEZE followed by a btrfs snapshot blocks
/// until thaw).
public final class BtrfsProvider: SnapshotProvider {
    public let info = ProviderInfo(
        name: "btrfs", id: Identifier("8e0e2a3c-54b1-4a4e-9a57-1d2b6c4f7e01")!, type: "software", version: shadowCopyVersion)

    /// Snapshots are atomic: no filesystem freeze, ever.
    public let holdsWritesItself = true

    /// The hidden folder, inside each volume, that holds its copies.
    public static let folder = ".shadowcopy"

    private struct Pending: Sendable {
        var volumes: [(snapshot: Identifier, volume: String)] = []
        var made: [Identifier: String] = [:]
    }

    private let sets = Mutex<[Identifier: Pending]>([:])
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func canonicalVolume(_ volume: String) throws(ShadowCopyError) -> String? {
        guard let resolved = realpath(volume, nil) else {
            throw ShadowCopyError(.notFound, "\(volume): \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        let canonical = String(cString: resolved)
        // A copy is not a volume: shadowcopy never copies its own copies (VSS refuses too).
        if canonical.split(separator: "/").contains(Substring(BtrfsProvider.folder)) {
            throw ShadowCopyError(.volumeNotSupported, "\(canonical) is a shadow copy, not a volume")
        }
        do {
            return try Btrfs.isSubvolumeRoot(canonical) ? canonical : nil
        } catch {
            // Not a directory (a block device, say) is simply not a btrfs volume.
            return nil
        }
    }

    public func beginPrepare(set: Identifier, snapshot: Identifier, volume: String) async throws(ShadowCopyError) {
        let folder = volume + "/" + BtrfsProvider.folder
        if mkdir(folder, 0o700) != 0, errno != EEXIST {
            throw .failed("cannot make \(folder): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(folder, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw .failed("\(folder) is not a directory (a symlink is refused)")
        }
        sets.withLock { $0[set, default: Pending()].volumes.append((snapshot, volume)) }
    }

    public func endPrepare(set: Identifier) async throws(ShadowCopyError) {}
    public func preCommit(set: Identifier) async throws(ShadowCopyError) {}

    public func commit(set: Identifier) async throws(ShadowCopyError) {
        let volumes = sets.withLock { $0[set]?.volumes ?? [] }
        for (snapshot, volume) in volumes {
            let folder = volume + "/" + BtrfsProvider.folder
            do {
                try Btrfs.snapshot(volume, into: folder, name: snapshot.hex, readOnly: true)
            } catch {
                throw .failed("btrfs: \(error)")
            }
            sets.withLock { $0[set]?.made[snapshot] = folder + "/" + snapshot.hex }
        }
    }

    public func postCommit(set: Identifier) async throws(ShadowCopyError) -> [Identifier: CommittedCopy] {
        let made = sets.withLock { $0.removeValue(forKey: set)?.made ?? [:] }
        return made.mapValues { CommittedCopy(device: "", location: $0, consistency: .filesystem) }
    }

    public func abort(set: Identifier) async {
        guard let pending = sets.withLock({ $0.removeValue(forKey: set) }) else { return }
        for (snapshot, volume) in pending.volumes {
            if pending.made[snapshot] != nil {
                do {
                    try Btrfs.deleteSubvolume(snapshot.hex, in: volume + "/" + BtrfsProvider.folder)
                } catch {
                    logger.error("abort: cannot delete a copy", metadata: ["snapshot": "\(snapshot)", "error": "\(error)"])
                }
            }
            BtrfsProvider.removeFolderIfEmpty(volume)
        }
    }

    /// The hidden folder goes with the volume's last copy: nothing of shadowcopy's stays behind.
    private static func removeFolderIfEmpty(_ volume: String) {
        // rmdir refuses a folder that still holds copies, which is what we want.
        rmdir(volume + "/" + folder)
    }

    public func exists(snapshot: Identifier, copy: CommittedCopy, volume: String) -> Bool {
        (try? Btrfs.isSubvolumeRoot(copy.location)) ?? false
    }

    public func delete(snapshot: Identifier, volume: String, copy: CommittedCopy?) async throws(ShadowCopyError) {
        do {
            try Btrfs.deleteSubvolume(snapshot.hex, in: volume + "/" + BtrfsProvider.folder)
        } catch where error.errno == ENOENT {
            logger.notice("copy already gone", metadata: ["snapshot": "\(snapshot)"])
        } catch {
            throw .failed("btrfs: \(error)")
        }
        BtrfsProvider.removeFolderIfEmpty(volume)
    }

    public func expose(snapshot: Identifier, copy: CommittedCopy, at path: String) throws(ShadowCopyError) {
        try ReadOnlyMount.bind(copy.location, at: path)
    }
}
