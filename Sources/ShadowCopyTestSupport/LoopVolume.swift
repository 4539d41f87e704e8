import Foundation

/// A real filesystem on a loop device, mounted in a scratch directory; ``remove()`` (always
/// called, through ``with(_:_:)``) unmounts it and frees the loop device and the image.
public final class LoopVolume: @unchecked Sendable {
    public let image: URL
    public let device: String
    public let mountPoint: String

    /// Makes a `sizeMiB` image, attaches it, makes `filesystem` on it and mounts it.
    public init(filesystem: String = "btrfs", sizeMiB: Int = 256) throws {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("shadowcopy-vol-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        image = scratch.appendingPathComponent("image")
        mountPoint = scratch.appendingPathComponent("mnt").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let truncate = try Tool.run("/usr/bin/truncate", ["-s", "\(sizeMiB)M", image.path])
        guard truncate.status == 0 else { throw HarnessError("truncate: \(truncate.stderr)") }
        let attach = try Tool.run("/usr/sbin/losetup", ["--find", "--show", image.path])
        guard attach.status == 0 else { throw HarnessError("losetup: \(attach.stderr)") }
        device = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            let mkfs = try Tool.run("/usr/sbin/mkfs.\(filesystem)", filesystem == "btrfs" ? ["-q", device] : ["-q", "-F", device])
            guard mkfs.status == 0 else { throw HarnessError("mkfs.\(filesystem): \(mkfs.stderr)") }
            let mount = try Tool.run("/usr/bin/mount", [device, mountPoint])
            guard mount.status == 0 else { throw HarnessError("mount: \(mount.stderr)") }
        } catch {
            remove()
            throw error
        }
    }

    /// Runs `body` with a fresh volume and removes the volume afterwards, whatever happens.
    public static func with<R>(filesystem: String = "btrfs", sizeMiB: Int = 256, _ body: (LoopVolume) async throws -> R)
        async throws -> R
    {
        let volume = try LoopVolume(filesystem: filesystem, sizeMiB: sizeMiB)
        defer { volume.remove() }
        return try await body(volume)
    }

    /// Unmounts (anything still mounted below first), detaches and deletes.
    public func remove() {
        _ = try? Tool.run("/usr/bin/umount", ["--recursive", "--lazy", mountPoint])
        _ = try? Tool.run("/usr/sbin/losetup", ["--detach", device])
        try? FileManager.default.removeItem(at: image.deletingLastPathComponent())
    }

    /// Names of the subvolumes btrfs still lists under the volume (copies left behind show here).
    public func subvolumes() throws -> [String] {
        let list = try Tool.run("/usr/bin/btrfs", ["subvolume", "list", "-o", mountPoint])
        return list.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
    }

    /// Whether shadowcopy left nothing on the volume: no subvolume, no `.shadowcopy` folder.
    public func untouched() throws -> Bool {
        try subvolumes().isEmpty && !FileManager.default.fileExists(atPath: mountPoint + "/.shadowcopy")
    }
}
