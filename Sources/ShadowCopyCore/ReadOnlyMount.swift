#if canImport(Glibc)
import Glibc
#endif

/// Read-only, nosuid, nodev, noexec mounts of copies, for `Snapshot.Expose`.
public enum ReadOnlyMount {
    static let flags = UInt(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    /// Bind-mounts the directory `source` at `path`, read-only.
    public static func bind(_ source: String, at path: String) throws(ShadowCopyError) {
        guard mount(source, path, nil, UInt(MS_BIND), nil) == 0 else {
            throw .failed("cannot bind \(source) on \(path): \(String(cString: strerror(errno)))")
        }
        // A bind mount takes its flags only on a remount.
        guard mount(nil, path, nil, UInt(MS_REMOUNT | MS_BIND) | flags, nil) == 0 else {
            let error = errno
            umount2(path, Int32(MNT_DETACH))
            throw .failed("cannot make \(path) read-only: \(String(cString: strerror(error)))")
        }
    }

    /// Mounts the filesystem on block device `device` at `path`, read-only and without replaying
    /// its journal (a copy of a live filesystem must not be written to, not even for recovery).
    public static func device(_ device: String, at path: String) throws(ShadowCopyError) {
        let attempts: [(String, String)] = [("ext4", "noload"), ("xfs", "nouuid,norecovery"), ("btrfs", "")]
        var errors: [String] = []
        for (type, options) in attempts {
            if mount(device, path, type, flags, options.isEmpty ? nil : options) == 0 { return }
            errors.append("\(type): \(String(cString: strerror(errno)))")
        }
        throw .failed("cannot mount \(device) read-only on \(path) (\(errors.joined(separator: "; ")))")
    }
}
