#if canImport(Glibc)
import Glibc
#endif

/// Read-only, nosuid, nodev, noexec mounts of copies, for `Snapshot.Expose`.
///
/// No symlink is followed on the way: every directory is opened component by component with
/// `O_NOFOLLOW` (what `openat2` with `RESOLVE_NO_SYMLINKS` does), and mounts name those open
/// directories through `/proc/self/fd`, so a path swapped for a symlink cannot redirect them.
public enum ReadOnlyMount {
    /// Glibc hides O_PATH behind _GNU_SOURCE, which Swift's Glibc module does not define; its
    /// value is 010000000 on every Linux architecture Swift runs on.
    static let O_PATH: Int32 = 0o10000000
    static let flags = UInt(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    /// Opens directory `path` (absolute) as an `O_PATH` descriptor, refusing a symlink anywhere.
    public static func openDirectory(_ path: String) throws(ShadowCopyError) -> Int32 {
        guard path.hasPrefix("/") else { throw .invalidArgs("\(path) is not an absolute path") }
        var fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .failed("cannot open /: \(String(cString: strerror(errno)))") }
        for component in path.split(separator: "/") where component != "." {
            guard component != ".." else {
                close(fd)
                throw .invalidArgs("\(path): '..' is refused")
            }
            let next = openat(fd, String(component), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let error = errno
            close(fd)
            guard next >= 0 else {
                let why = error == ELOOP || error == ENOTDIR ? "a symlink or not a directory" : String(cString: strerror(error))
                throw .failed("\(path): \(component) is \(why); refused")
            }
            fd = next
        }
        return fd
    }

    /// Makes the directory `name` inside the open directory `parent` and opens it.
    public static func makeDirectory(_ name: String, in parent: Int32, display: String) throws(ShadowCopyError) -> Int32 {
        guard mkdirat(parent, name, 0o755) == 0 else {
            throw .failed("cannot make \(display): \(String(cString: strerror(errno)))")
        }
        let fd = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .failed("cannot open \(display): \(String(cString: strerror(errno)))") }
        return fd
    }

    static func procPath(_ fd: Int32) -> String { "/proc/self/fd/\(fd)" }

    /// Bind-mounts the directory `source` at `path` (an empty directory), read-only.
    public static func bind(_ source: String, at path: String) throws(ShadowCopyError) {
        let from = try openDirectory(source)
        defer { close(from) }
        let to = try openDirectory(path)
        defer { close(to) }
        guard mount(procPath(from), procPath(to), nil, UInt(MS_BIND), nil) == 0 else {
            throw .failed("cannot bind \(source) on \(path): \(String(cString: strerror(errno)))")
        }
        // A bind mount takes its flags only on a remount. `path` is a mount point now, which
        // cannot be renamed or replaced, so naming it is safe.
        guard mount(nil, path, nil, UInt(MS_REMOUNT | MS_BIND) | flags, nil) == 0 else {
            let error = errno
            umount2(path, Int32(MNT_DETACH))
            throw .failed("cannot make \(path) read-only: \(String(cString: strerror(error)))")
        }
    }

    /// Mounts the filesystem on block device `device` at `path`, read-only and without replaying
    /// its journal (a copy of a live filesystem must not be written to, not even for recovery).
    public static func device(_ device: String, at path: String) throws(ShadowCopyError) {
        let to = try openDirectory(path)
        defer { close(to) }
        let attempts: [(String, String)] = [("ext4", "noload"), ("xfs", "nouuid,norecovery"), ("btrfs", "")]
        var errors: [String] = []
        for (type, options) in attempts {
            if mount(device, procPath(to), type, flags, options.isEmpty ? nil : options) == 0 { return }
            errors.append("\(type): \(String(cString: strerror(errno)))")
        }
        throw .failed("cannot mount \(device) read-only on \(path) (\(errors.joined(separator: "; ")))")
    }
}
