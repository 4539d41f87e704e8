import DBus
import DeviceMapper
import Foundation
import ShadowCopyTestSupport
import Testing

extension DeviceMapperSuites {
    /// Revert through snapshot-merge in a real kernel.
    @Suite("Revert of dm-snapshot copies", .serialized, .enabled(if: DeviceMapper.kernelSupport,
                                                               "no device-mapper in this kernel: make test runs this suite in a VM"))
    struct RevertTests {
        typealias T = DMSnapshotProviderTests
        typealias S = ShadowStorageTests

        @Test func revertWaitsForTheVolumeToBeFreeThenPutsTheCopyBackAndSparesTheOtherCopy() async throws {
            let volume = try T.DMVolume()
            defer { volume.remove() }
            let table = try DeviceMapper.table(volume.name)
            try "v1\n".write(toFile: volume.mountPoint + "/file", atomically: false, encoding: .utf8)
            sync()
            try await DaemonFixture.with(arguments: S.arguments) { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                let (_, first) = try await S.copy(c, volume.mountPoint)
                try "v2\n".write(toFile: volume.mountPoint + "/file", atomically: false, encoding: .utf8)
                try "added\n".write(toFile: volume.mountPoint + "/added", atomically: false, encoding: .utf8)
                sync()
                let (secondSet, second) = try await S.copy(c, volume.mountPoint)

                // Mounted: the merge waits, and the copy cannot be deleted meanwhile.
                _ = try await T.call(c, first, T.snapshotInterface, "Revert")
                #expect(try await T.property(c, first, T.snapshotInterface, "State") == "merging")
                try await Task.sleep(for: .milliseconds(300))
                #expect(try DeviceMapper.table(volume.name).first?.target == "snapshot-origin", "nothing merges under a mounted filesystem")
                await #expect(throws: DBusError.self) { _ = try await T.call(c, first, T.snapshotInterface, "Delete") }
                await #expect(throws: DBusError.self) { _ = try await T.call(c, second, T.snapshotInterface, "Revert") }

                let unmounted = try Tool.run("/usr/bin/umount", [volume.mountPoint])
                #expect(unmounted.status == 0, "\(unmounted.stderr)")
                #expect(try await eventually(.seconds(60), every: .milliseconds(50)) {
                    let listed = try await c.call("org.shadowcopy.ShadowCopy1", S.root, S.coordinator, "Query", [.vardict([])])
                    return listed.first?.arrayElements?.compactMap(\.objectPath) == [second]
                }, "the reverted copy is gone once merged")
                #expect(try DeviceMapper.table(volume.name).first?.target == "snapshot-origin", "the other copy still needs the origin")

                // The volume holds the first copy's data; the second copy still holds its own.
                let mounted = try Tool.run("/usr/bin/mount", ["/dev/mapper/" + volume.name, volume.mountPoint])
                #expect(mounted.status == 0, "\(mounted.stderr)")
                #expect(try String(contentsOfFile: volume.mountPoint + "/file", encoding: .utf8) == "v1\n")
                #expect(!FileManager.default.fileExists(atPath: volume.mountPoint + "/added"))
                let exposed = try #require(try await T.call(c, second, T.snapshotInterface, "Expose").first?.string)
                #expect(try String(contentsOfFile: exposed + "/file", encoding: .utf8) == "v2\n")
                #expect(try String(contentsOfFile: exposed + "/added", encoding: .utf8) == "added\n")

                _ = try await T.call(c, secondSet, T.setInterface, "Delete")
                #expect(try T.noShadowcopyDevices())
                #expect(try DeviceMapper.table(volume.name) == table, "the origin has its own table back")
                #expect(((try? FileManager.default.contentsOfDirectory(atPath: f.bus.directory.appendingPathComponent("storage").path)) ?? []).isEmpty)
            }
        }
    }
}
