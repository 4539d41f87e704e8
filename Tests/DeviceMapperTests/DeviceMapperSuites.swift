import DBus
import DeviceMapper
import Foundation
import ShadowCopyTestSupport
import Testing

/// Every suite that touches the kernel's device-mapper, run one test at a time: they share one
/// kernel, and each checks that no shadowcopy device is left, which another test's copies in
/// flight would contradict.
@Suite("Device-mapper, one test at a time", .serialized)
enum DeviceMapperSuites {}

extension DeviceMapperSuites {
    /// Makes a `filesystem` (ext4 or xfs) on device-mapper device `name` and mounts it at
    /// `mountPoint` (made if missing): what every test volume of these suites needs.
    static func mountFilesystem(_ filesystem: String, on name: String, at mountPoint: String) throws {
        let made = try Tool.run("/usr/sbin/mkfs.\(filesystem)", filesystem == "xfs" ? ["-q", "-f", "/dev/mapper/" + name]
                                                                                      : ["-q", "-F", "/dev/mapper/" + name])
        guard made.status == 0 else { throw HarnessError("mkfs.\(filesystem): \(made.stderr)") }
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = try Tool.run("/usr/bin/mount", ["/dev/mapper/" + name, mountPoint])
        guard mounted.status == 0 else { throw HarnessError("mount: \(mounted.stderr)") }
    }

    /// A writerless set of the volumes at `mountPoints` whose last copy cannot be made: a device
    /// of the test's own already has that copy's name, so DoSnapshotSet fails after the other
    /// copies were made. Returns the set and the decoy, which the caller removes.
    static func setWhoseLastCopyFails(_ c: Connection, _ mountPoints: [String]) async throws -> (set: ObjectPath, decoy: String) {
        let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1",
                                                "org.shadowcopy.ShadowCopy1.Coordinator", "StartSnapshotSet",
                                                [.vardict([("context", .string("file-share-backup"))])]).first?.objectPath)
        var last: ObjectPath?
        for mountPoint in mountPoints {
            last = try #require(try await c.call("org.shadowcopy.ShadowCopy1", set, "org.shadowcopy.ShadowCopy1.SnapshotSet",
                                                 "AddVolume", [.string(mountPoint), .vardict([])]).first?.objectPath)
        }
        let decoy = "sc-" + String(try #require(last).rawValue.split(separator: "/").last!)
        try DeviceMapper.create(decoy, uuid: "TEST-" + decoy, table: [try DeviceMapper.TableLine(start: 0, length: 8, target: "error", params: "")])
        return (set, decoy)
    }
}
