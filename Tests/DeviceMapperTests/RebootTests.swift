import DBus
import DeviceMapper
import Foundation
import ShadowCopyTestSupport
import Testing

extension DeviceMapperSuites {
    /// Persistent copies across a real reboot: scripts/test-device-mapper boots one VM that makes
    /// them (phase `before`), then a second VM on the same disk images (phase `after`) that finds
    /// them back. Each phase runs only in its own boot.
    @Suite("Persistent dm copies across a VM reboot", .serialized)
    struct RebootTests {
        typealias T = DMSnapshotProviderTests
        typealias S = ShadowStorageTests

        static let environment = ProcessInfo.processInfo.environment
        static let phase = environment["SHADOWCOPY_REBOOT_PHASE"]
        /// The host directory both boots share: disk images, the catalog and the shadow storage.
        static let directory = environment["SHADOWCOPY_REBOOT_DIR"] ?? ""
        static let volume = "sctest-reboot-vol", pool = "sctest-reboot-pool", thin = "sctest-reboot-thin"
        static var arguments: [String] { ["--catalog", directory + "/catalog.db", "--shadow-storage", directory + "/storage"] }
        static func mountPoint(_ name: String) -> String { "/tmp/shadowcopy-test-\(name)" }

        /// Attaches the images (made when `create`) and activates the volumes as the disks' own
        /// volume manager would at boot: a linear volume, and a thin pool with its thin volume.
        static func activate(create: Bool) throws {
            var loops: [String: String] = [:]
            for (image, mib) in [("origin", 64), ("thin-meta", 16), ("thin-data", 512)] {
                let file = directory + "/\(image).img"
                if create { _ = try Tool.run("/usr/bin/truncate", ["-s", "\(mib)M", file]) }
                let attached = try Tool.run("/usr/sbin/losetup", ["--find", "--show", file])
                guard attached.status == 0 else { throw HarnessError("losetup \(file): \(attached.stderr)") }
                loops[image] = DeviceMapperKernelTests.devNumber(attached.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            try DeviceMapper.create(volume, uuid: "TEST-" + volume, table: [
                try DeviceMapper.TableLine(start: 0, length: 64 * 2048, target: "linear", params: "\(loops["origin"]!) 0"),
            ])
            try DeviceMapper.create(pool, uuid: "TEST-" + pool, table: [
                try DeviceMapper.TableLine(start: 0, length: 512 * 2048, target: "thin-pool",
                                           params: "\(loops["thin-meta"]!) \(loops["thin-data"]!) 128 1024"),
            ])
            if create { _ = try DeviceMapper.message(pool, "create_thin 0") }
            try DeviceMapper.create(thin, uuid: "TEST-" + thin, table: [
                try DeviceMapper.TableLine(start: 0, length: 128 * 2048, target: "thin", params: "\(try DeviceMapper.info(pool)!.deviceNumber) 0"),
            ])
        }

        static func mount(_ name: String) throws {
            try FileManager.default.createDirectory(atPath: mountPoint(name), withIntermediateDirectories: true)
            let mounted = try Tool.run("/usr/bin/mount", ["/dev/mapper/" + name, mountPoint(name)])
            guard mounted.status == 0 else { throw HarnessError("mount \(name): \(mounted.stderr)") }
        }

        static func unmount(_ name: String) {
            _ = try? Tool.run("/usr/bin/umount", [mountPoint(name)])
            try? FileManager.default.removeItem(atPath: mountPoint(name))
        }

        @Test(.enabled(if: phase == "before", "runs only in boot 1 of the reboot test that scripts/test-device-mapper runs after this suite"))
        func before() async throws {
            try Self.activate(create: true)
            for name in [Self.volume, Self.thin] {
                let made = try Tool.run("/usr/sbin/mkfs.ext4", ["-q", "-F", "/dev/mapper/" + name])
                #expect(made.status == 0, "\(made.stderr)")
                try Self.mount(name)
                try "kept\n".write(toFile: Self.mountPoint(name) + "/file", atomically: false, encoding: .utf8)
            }
            try await DaemonFixture.with(arguments: Self.arguments) { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", S.root, S.coordinator, "StartSnapshotSet", [
                    .vardict([("context", .string("file-share-backup")), ("persistent", .bool(true)), ("auto-release", .bool(false))]),
                ]).first?.objectPath)
                for name in [Self.volume, Self.thin] {
                    _ = try await T.call(c, set, T.setInterface, "AddVolume", [.string(Self.mountPoint(name)), .vardict([])])
                }
                #expect(try await T.run(c, set, "DoSnapshotSet") == "succeeded")
            }
            // Changed after the copies, then a clean shutdown: the VM powers off with all of it live.
            for name in [Self.volume, Self.thin] {
                try "changed\n".write(toFile: Self.mountPoint(name) + "/file", atomically: false, encoding: .utf8)
                Self.unmount(name)
            }
        }

        @Test(.enabled(if: phase == "after", "runs only in boot 2 of the reboot test that scripts/test-device-mapper runs after this suite"))
        func after() async throws {
            #expect(try T.noShadowcopyDevices(), "a fresh kernel knows no copy")
            try Self.activate(create: false)
            defer {
                for name in [Self.volume, Self.thin] { Self.unmount(name) }
                for device in (try? DeviceMapper.list()) ?? [] where device.name.hasPrefix("sc-") { try? DeviceMapper.remove(device.name) }
                for name in [Self.volume, Self.volume + "-screal", Self.thin, Self.pool] { try? DeviceMapper.remove(name) }
                for image in ["origin", "thin-meta", "thin-data"] {
                    let attached = (try? Tool.run("/usr/sbin/losetup", ["--noheadings", "--output", "NAME", "--associated",
                                                                        Self.directory + "/\(image).img"]))?.stdout ?? ""
                    for device in attached.split(separator: "\n") { _ = try? Tool.run("/usr/sbin/losetup", ["--detach", String(device)]) }
                }
            }
            try await DaemonFixture.with(arguments: Self.arguments) { (f: DaemonFixture) async throws in
                #expect(f.daemon.log.contains("dm-snapshot: brought back copy"), "\(f.daemon.log)")
                #expect(f.daemon.log.contains("dm-thin: brought back copy"), "\(f.daemon.log)")
                let c = try f.client()
                defer { c.close() }
                let listed = try await c.call("org.shadowcopy.ShadowCopy1", S.root, S.coordinator, "Query", [.vardict([])])
                let snapshots = listed.first?.arrayElements?.compactMap(\.objectPath) ?? []
                #expect(snapshots.count == 2)
                for name in [Self.volume, Self.thin] {
                    try Self.mount(name)
                    #expect(try String(contentsOfFile: Self.mountPoint(name) + "/file", encoding: .utf8) == "changed\n")
                }
                for snapshot in snapshots {
                    let exposed = try #require(try await T.call(c, snapshot, T.snapshotInterface, "Expose").first?.string)
                    #expect(try String(contentsOfFile: exposed + "/file", encoding: .utf8) == "kept\n", "\(snapshot)")
                }
                let set = try #require(ObjectPath(try await T.property(c, snapshots[0], T.snapshotInterface, "Set")))
                _ = try await T.call(c, set, T.setInterface, "Delete")
                #expect(try T.noShadowcopyDevices())
                #expect(try DeviceMapper.table(Self.volume).first?.target == "linear", "the origin has its own table back")
            }
        }
    }
}
