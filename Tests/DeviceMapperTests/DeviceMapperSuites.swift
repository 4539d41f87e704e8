import DBus
import DeviceMapper
import Testing

/// Every suite that touches the kernel's device-mapper, run one test at a time: they share one
/// kernel, and each checks that no shadowcopy device is left, which another test's copies in
/// flight would contradict.
@Suite("Device-mapper, one test at a time", .serialized)
enum DeviceMapperSuites {}

extension DeviceMapperSuites {
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
