import DBus
import DeviceMapper
import Foundation
import ShadowCopyTestSupport
import Testing

extension DeviceMapperSuites {
    /// Persistent copies the kernel has forgotten (as after a reboot) come back at daemon start.
    @Suite("Persistent dm copies after the kernel forgot them", .serialized, .enabled(if: DeviceMapper.kernelSupport,
                                                                                    "no device-mapper in this kernel: make test runs this suite in a VM"))
    struct ReassemblyTests {
        typealias T = DMSnapshotProviderTests
        typealias S = ShadowStorageTests
        typealias Thin = ThinProviderTests.ThinVolume

        /// What a reboot leaves of the device-mapper world: nothing but the disks. Filesystems are
        /// unmounted cleanly, every dm device goes, the disks' own volumes come back (as udev and
        /// the volume manager would bring them back), not mounted yet.
        static func forgetAndReactivate(_ volume: T.DMVolume, _ thin: Thin) throws {
            for mountPoint in [volume.mountPoint, thin.mountPoint] {
                let unmounted = try Tool.run("/usr/bin/umount", [mountPoint])
                guard unmounted.status == 0 else { throw HarnessError("umount \(mountPoint): \(unmounted.stderr)") }
            }
            for device in try DeviceMapper.list() where device.name.hasPrefix("sc-") { try DeviceMapper.remove(device.name) }
            let poolTable = try DeviceMapper.table(thin.pool), thinTable = try DeviceMapper.table(thin.name)
            for name in [volume.name, volume.name + "-screal", thin.name, thin.pool] { try DeviceMapper.remove(name) }
            try DeviceMapper.create(volume.name, uuid: "TEST-" + volume.name, table: [
                try DeviceMapper.TableLine(start: 0, length: volume.loop.sectors, target: "linear",
                                           params: "\(DeviceMapperKernelTests.devNumber(volume.loop.device)) 0"),
            ])
            try DeviceMapper.create(thin.pool, uuid: "TEST-" + thin.pool, table: poolTable)
            try DeviceMapper.create(thin.name, uuid: "TEST-" + thin.name, table: thinTable)
        }

        static func mount(_ device: String, _ mountPoint: String) throws {
            let mounted = try Tool.run("/usr/bin/mount", [device, mountPoint])
            guard mounted.status == 0 else { throw HarnessError("mount \(device): \(mounted.stderr)") }
        }

        @Test func persistentCopiesOfBothProvidersComeBackWithTheirData() async throws {
            let volume = try T.DMVolume(), thin = try Thin(), storeDevice = try DeviceMapperKernelTests.Loop(sizeMiB: 32)
            defer { volume.remove(); thin.remove(); storeDevice.remove() }
            for mountPoint in [volume.mountPoint, thin.mountPoint] {
                try "kept\n".write(toFile: mountPoint + "/file", atomically: false, encoding: .utf8)
            }
            try await DaemonFixture.with { (f: DaemonFixture) async throws in
                var c = try f.client()
                // The dm-snapshot copy's store: extents of a block device, found again from the catalog.
                _ = try await c.call("org.shadowcopy.ShadowCopy1", S.root, S.coordinator, "AddShadowStorage", [
                    .string(volume.mountPoint), .string(storeDevice.device), .uint64(0), .vardict([]),
                ])
                let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", S.root, S.coordinator, "StartSnapshotSet", [
                    .vardict([("context", .string("file-share-backup")), ("persistent", .bool(true)), ("auto-release", .bool(false))]),
                ]).first?.objectPath)
                var snapshots: [ObjectPath] = []
                for mountPoint in [volume.mountPoint, thin.mountPoint] {
                    snapshots.append(try #require(try await T.call(c, set, T.setInterface, "AddVolume",
                                                                   [.string(mountPoint), .vardict([])]).first?.objectPath))
                }
                #expect(try await T.run(c, set, "DoSnapshotSet") == "succeeded")
                for mountPoint in [volume.mountPoint, thin.mountPoint] {
                    try "changed\n".write(toFile: mountPoint + "/file", atomically: false, encoding: .utf8)
                }
                c.close()
                await f.daemon.stop(signal: SIGKILL)

                try Self.forgetAndReactivate(volume, thin)
                try await DaemonProcess.with(bus: f.bus) { daemon in
                    #expect(daemon.log.contains("dm-snapshot: brought back copy"), "\(daemon.log)")
                    #expect(daemon.log.contains("dm-thin: brought back copy"), "\(daemon.log)")
                    #expect(try DeviceMapper.table(volume.name).first?.target == "snapshot-origin")
                    let cow = "sc-" + snapshots[0].rawValue.split(separator: "/").last! + "-cow"
                    #expect(try DeviceMapper.table(cow).first?.params.hasPrefix(DeviceMapperKernelTests.devNumber(storeDevice.device) + " ") == true,
                            "the store's extents are mapped again")
                    try Self.mount("/dev/mapper/" + volume.name, volume.mountPoint)
                    try Self.mount("/dev/mapper/" + thin.name, thin.mountPoint)
                    // Written after the copies came back: preserved by them, not seen in them.
                    for mountPoint in [volume.mountPoint, thin.mountPoint] {
                        #expect(try String(contentsOfFile: mountPoint + "/file", encoding: .utf8) == "changed\n")
                        try "changed again\n".write(toFile: mountPoint + "/file", atomically: false, encoding: .utf8)
                    }
                    sync()
                    c = try f.client()
                    defer { c.close() }
                    for snapshot in snapshots {
                        #expect(try await T.property(c, snapshot, T.snapshotInterface, "State") == "created")
                        let exposed = try #require(try await T.call(c, snapshot, T.snapshotInterface, "Expose").first?.string)
                        #expect(try String(contentsOfFile: exposed + "/file", encoding: .utf8) == "kept\n", "\(snapshot)")
                    }
                    _ = try await T.call(c, set, T.setInterface, "Delete")
                    #expect(try T.noShadowcopyDevices())
                    #expect(try DeviceMapper.table(volume.name).first?.target == "linear")
                }
            }
        }
    }
}
