#if canImport(Glibc)
import Glibc
#endif
import CBtrfs

/// The btrfs operations shadowcopy needs, through the kernel's ioctls (no btrfs-progs).
public enum Btrfs {
    /// A failed btrfs operation: what was attempted and the errno it ended with.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let operation: String
        public let errno: Int32

        public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
    }

    /// Whether `path` is the root directory of a btrfs subvolume (a mount point of one, or a
    /// nested subvolume): on btrfs, every subvolume's root directory has inode 256.
    public static func isSubvolumeRoot(_ path: String) throws(Failure) -> Bool {
        let fd = try openDirectory(path)
        defer { close(fd) }
        let kind = cbtrfs_is_btrfs(fd)
        guard kind >= 0 else { throw Failure(operation: "statfs \(path)", errno: -kind) }
        guard kind == 1 else { return false }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure(operation: "stat \(path)", errno: errno) }
        return UInt64(info.st_ino) == cbtrfs_first_free_objectid
    }

    /// Whether the file open at `fd` lives on a btrfs filesystem.
    public static func isBtrfs(fd: Int32) throws(Failure) -> Bool {
        let kind = cbtrfs_is_btrfs(fd)
        guard kind >= 0 else { throw Failure(operation: "statfs", errno: -kind) }
        return kind == 1
    }

    /// Makes a snapshot of subvolume `source` called `name` inside `directory` (same filesystem).
    public static func snapshot(_ source: String, into directory: String, name: String, readOnly: Bool) throws(Failure) {
        try checkName(name)
        let sourceFD = try openDirectory(source)
        defer { close(sourceFD) }
        let directoryFD = try openDirectory(directory)
        defer { close(directoryFD) }
        let rc = cbtrfs_snapshot(directoryFD, sourceFD, name, readOnly ? 1 : 0)
        guard rc == 0 else { throw Failure(operation: "snapshot \(source) as \(directory)/\(name)", errno: rc) }
    }

    /// Deletes subvolume `name` inside `directory`; a read-only snapshot included (as root).
    public static func deleteSubvolume(_ name: String, in directory: String) throws(Failure) {
        try checkName(name)
        let directoryFD = try openDirectory(directory)
        defer { close(directoryFD) }
        let rc = cbtrfs_destroy(directoryFD, name)
        guard rc == 0 else { throw Failure(operation: "delete subvolume \(directory)/\(name)", errno: rc) }
    }

    /// Opens a directory without following a final symlink.
    static func openDirectory(_ path: String) throws(Failure) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(operation: "open \(path)", errno: errno) }
        return fd
    }

    /// A subvolume name is one path element: the ioctl takes a name, never a path.
    private static func checkName(_ name: String) throws(Failure) {
        guard !name.isEmpty, name != ".", name != "..", !name.utf8.contains(UInt8(ascii: "/")),
            !name.utf8.contains(0), name.utf8.count < 256
        else { throw Failure(operation: "subvolume name '\(name)'", errno: EINVAL) }
    }
}
