import DBus
import DeviceMapper
import Foundation
import ShadowCopyTestSupport
import Testing

extension DeviceMapperSuites {
    /// The dm-thin provider through the real daemon, in a kernel with device-mapper.
    @Suite("dm-thin copies through shadowcopyd", .serialized, .enabled(if: DeviceMapper.kernelSupport,
                                                                     "no device-mapper in this kernel: make test runs this suite in a VM"))
    struct ThinProviderTests {
        typealias T = DMSnapshotProviderTests
        typealias S = ShadowStorageTests
        typealias Loop = DeviceMapperKernelTests.Loop

        /// A thin pool over two loop devices with one thin volume (device id 0) holding a mounted
        /// filesystem; ``remove()`` undoes it all.
        final class ThinVolume: @unchecked Sendable {
            let metadata: Loop, data: Loop
            let pool: String, name: String, mountPoint: String

            init(filesystem: String = "ext4", sizeMiB: Int = 128) throws {
                let metadata = try Loop(sizeMiB: 16)
                do { data = try Loop(sizeMiB: 512) } catch {
                    metadata.remove()
                    throw error
                }
                self.metadata = metadata
                let tag = UInt32.random(in: 0...UInt32.max)
                pool = "sctest-pool-\(tag)"
                name = "sctest-thin-\(tag)"
                mountPoint = "/tmp/shadowcopy-test-thin-\(tag)"
                do {
                    let md = DeviceMapperKernelTests.devNumber(metadata.device), dd = DeviceMapperKernelTests.devNumber(data.device)
                    // 64 KiB blocks, and a low-water mark the test never reaches.
                    try DeviceMapper.create(pool, uuid: "TEST-" + pool, table: [
                        try DeviceMapper.TableLine(start: 0, length: data.sectors, target: "thin-pool", params: "\(md) \(dd) 128 1024"),
                    ])
                    _ = try DeviceMapper.message(pool, "create_thin 0")
                    let poolDevice = try #require(try DeviceMapper.info(pool)).deviceNumber
                    try DeviceMapper.create(name, uuid: "TEST-" + name, table: [
                        try DeviceMapper.TableLine(start: 0, length: UInt64(sizeMiB) * 2048, target: "thin", params: "\(poolDevice) 0"),
                    ])
                    try DeviceMapperSuites.mountFilesystem(filesystem, on: name, at: mountPoint)
                } catch {
                    // Half made: nothing of it stays.
                    remove()
                    throw error
                }
            }

            /// The thin device id behind a copy's device.
            static func id(of device: String) throws -> String? {
                try DeviceMapper.table(String(device.dropFirst("/dev/mapper/".count))).first?.params.split(separator: " ").dropFirst().first.map(String.init)
            }

            func remove() {
                _ = try? Tool.run("/usr/bin/umount", [mountPoint])
                try? DeviceMapper.remove(name)
                // Copies a failed test left in the pool go with it.
                for device in (try? DeviceMapper.list()) ?? [] where device.name.hasPrefix("sc-") {
                    if (try? DeviceMapper.table(device.name).first?.target) == "thin" { try? DeviceMapper.remove(device.name) }
                }
                try? DeviceMapper.remove(pool)
                try? FileManager.default.removeItem(atPath: mountPoint)
                metadata.remove()
                data.remove()
            }
        }

        @Test func aThinCopyWithAWriterHoldsExactlyWhatWasWrittenBeforeFreezeAndIdsAreNeverReused() async throws {
            let volume = try ThinVolume()
            defer { volume.remove() }
            try "v1\n".write(toFile: volume.mountPoint + "/file", atomically: false, encoding: .utf8)
            try await DaemonFixture.with { (f: DaemonFixture) async throws in
                let writer = try await PythonWriter(bus: f.bus, name: "app", extra: ["--data", volume.mountPoint + "/records"])
                defer { writer.stop() }
                let c = try f.client()
                defer { c.close() }
                let supported = try await c.call("org.shadowcopy.ShadowCopy1", S.root, S.coordinator, "IsVolumeSupported",
                                                 [.string(volume.mountPoint), .vardict([])])
                #expect(supported == [.bool(true), .string("dm-thin")])
                try await Task.sleep(for: .milliseconds(300))

                let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", S.root, S.coordinator, "StartSnapshotSet",
                                                        [.vardict([])]).first?.objectPath)
                #expect(try await T.run(c, set, "GatherWriterMetadata") == "succeeded")
                let first = try #require(try await T.call(c, set, T.setInterface, "AddVolume", [.string(volume.mountPoint), .vardict([])]).first?.objectPath)
                #expect(try await T.run(c, set, "PrepareForBackup") == "succeeded")
                #expect(try await T.run(c, set, "DoSnapshotSet") == "succeeded")
                #expect(try await T.property(c, set, T.setInterface, "Consistency") == "application")
                #expect(try await T.property(c, first, T.snapshotInterface, "Provider") == "dm-thin")
                let device = try await T.property(c, first, T.snapshotInterface, "Device")
                #expect(try DeviceMapper.table(String(device.dropFirst("/dev/mapper/".count))).first?.target == "thin")
                #expect(try DeviceMapper.table(volume.name).first?.target == "thin", "the origin's table is untouched")

                try "v2\n".write(toFile: volume.mountPoint + "/file", atomically: false, encoding: .utf8)
                let exposed = try #require(try await T.call(c, first, T.snapshotInterface, "Expose").first?.string)
                let frozenAfter = try #require(writer.events.first { $0.hasPrefix("frozen-after") }.flatMap { Int($0.split(separator: " ")[1]) })
                #expect(try String(contentsOfFile: exposed + "/records", encoding: .utf8) == (1...frozenAfter).map { "\($0)\n" }.joined())
                #expect(try String(contentsOfFile: exposed + "/file", encoding: .utf8) == "v1\n")
                #expect(try String(contentsOfFile: volume.mountPoint + "/file", encoding: .utf8) == "v2\n")

                // Deleted: the device and the pool's thin snapshot both go, and the next copy's id is new.
                let firstID = try #require(try ThinVolume.id(of: device))
                _ = try await T.call(c, first, T.snapshotInterface, "Delete")
                #expect(try T.noShadowcopyDevices())
                #expect(throws: DeviceMapper.Failure.self, "thin device \(firstID) is gone from the pool") {
                    _ = try DeviceMapper.message(volume.pool, "delete \(firstID)")
                }
                let (secondSet, second) = try await S.copy(c, volume.mountPoint)
                let secondID = try ThinVolume.id(of: try await T.property(c, second, T.snapshotInterface, "Device"))
                #expect(secondID != nil && secondID != firstID, "\(String(describing: secondID)) after \(firstID)")
                _ = try await T.call(c, secondSet, T.setInterface, "Delete")
                _ = try await T.call(c, set, T.setInterface, "Delete")
                #expect(try T.noShadowcopyDevices())
            }
        }

        @Test func aFailureInATwoVolumeThinSetLeavesNothingInThePools() async throws {
            let first = try ThinVolume(), second = try ThinVolume(filesystem: "xfs", sizeMiB: 320)
            defer { first.remove(); second.remove() }
            try await DaemonFixture.with { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                // The second copy's device name is taken: activation fails after both snapshots exist.
                let (set, decoy) = try await DeviceMapperSuites.setWhoseLastCopyFails(c, [first.mountPoint, second.mountPoint])
                defer { try? DeviceMapper.remove(decoy) }

                #expect(try await T.run(c, set, "DoSnapshotSet") == "failed")
                for volume in [first, second] {
                    #expect(try DeviceMapper.info(volume.name)?.suspended == false, "\(volume.name) runs")
                    try "after\n".write(toFile: volume.mountPoint + "/after", atomically: false, encoding: .utf8)
                }
                let left = try DeviceMapper.list().map(\.name).filter { $0.hasPrefix("sc-") }
                #expect(left == [decoy], "only the test's decoy: \(left)")
                // Both snapshots were made (the ids were used) and deleted from their pools again.
                let next = try String(contentsOfFile: f.bus.directory.appendingPathComponent("dm-thin-next-id").path, encoding: .utf8)
                let used = try #require(UInt32(next.trimmingCharacters(in: .whitespacesAndNewlines))) - (1 << 23)
                #expect(used == 2, "two ids were handed out")
                for volume in [first, second] {
                    for id in (1 << 23)..<((1 << 23) + used) {
                        #expect(throws: DeviceMapper.Failure.self, "thin device \(id) is not in \(volume.pool)") {
                            _ = try DeviceMapper.message(volume.pool, "delete \(id)")
                        }
                    }
                }
                #expect(try await T.property(c, set, T.setInterface, "State") == "aborted")
                _ = try await T.call(c, set, T.setInterface, "Delete")
            }
        }
    }
}
