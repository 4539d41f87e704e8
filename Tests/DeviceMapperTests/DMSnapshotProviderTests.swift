import DBus
import DeviceMapper
import Foundation
import ShadowCopyTestSupport
import Testing

extension DeviceMapperSuites {
    /// The dm-snapshot provider through the real daemon, in a kernel with device-mapper (natively
    /// or in the VM that make test starts).
    @Suite("dm-snapshot copies through shadowcopyd", .serialized, .enabled(if: DeviceMapper.kernelSupport,
                                                                         "no device-mapper in this kernel: make test runs this suite in a VM"))
    struct DMSnapshotProviderTests {
        static let setInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.SnapshotSet"
        static let snapshotInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.Snapshot"
        static let jobInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.Job"

        /// A filesystem (ext4 or XFS) on a dm linear device over a loop device, mounted; ``remove()``
        /// undoes it all.
        final class DMVolume: @unchecked Sendable {
            let loop: DeviceMapperKernelTests.Loop
            let name: String
            let mountPoint: String

            init(filesystem: String = "ext4", sizeMiB: Int = 64) throws {
                // XFS will not make a filesystem under 300 MiB; the image is sparse either way.
                loop = try DeviceMapperKernelTests.Loop(sizeMiB: filesystem == "xfs" ? max(sizeMiB, 320) : sizeMiB)
                name = "sctest-vol-\(UInt32.random(in: 0...UInt32.max))"
                mountPoint = "/tmp/shadowcopy-test-dmvol-\(name)"
                do {
                    try DeviceMapper.create(name, uuid: "TEST-" + name, table: [
                        try DeviceMapper.TableLine(start: 0, length: loop.sectors, target: "linear",
                                                   params: "\(DeviceMapperKernelTests.devNumber(loop.device)) 0"),
                    ])
                    try DeviceMapperSuites.mountFilesystem(filesystem, on: name, at: mountPoint)
                } catch {
                    // Half made: nothing of it stays (the loop device least of all).
                    remove()
                    throw error
                }
            }

            func remove() {
                _ = try? Tool.run("/usr/bin/umount", [mountPoint])
                try? DeviceMapper.remove(name)
                try? FileManager.default.removeItem(atPath: mountPoint)
                loop.remove()
            }
        }

        static func call(_ c: Connection, _ path: ObjectPath, _ interface: InterfaceName, _ member: MemberName,
                         _ args: [Value] = [.vardict([])]) async throws -> [Value] {
            try await c.call("org.shadowcopy.ShadowCopy1", path, interface, member, args)
        }

        static func property(_ c: Connection, _ path: ObjectPath, _ interface: InterfaceName, _ name: String) async throws -> String {
            let value = try await c.call("org.shadowcopy.ShadowCopy1", path, "org.freedesktop.DBus.Properties", "Get",
                                         [.string(interface.rawValue), .string(name)]).first?.variantValue
            return value?.string ?? value?.objectPath?.rawValue ?? ""
        }

        /// Runs a phase as a job; returns its State.
        static func run(_ c: Connection, _ set: ObjectPath, _ member: MemberName) async throws -> String {
            let job = try #require(try await call(c, set, setInterface, member).first?.objectPath)
            _ = try await call(c, job, jobInterface, "Wait", [.uint32(60_000)])
            let state = try await property(c, job, jobInterface, "State")
            if state != "succeeded" { print("\(member): \(try await property(c, job, jobInterface, "ErrorMessage"))") }
            return state
        }

        /// No shadowcopy device is left in the kernel.
        static func noShadowcopyDevices() throws -> Bool {
            try DeviceMapper.list().allSatisfy { !$0.name.hasPrefix("sc-") && !$0.name.hasSuffix("-screal") }
        }

        /// Rewrites a few 4 MiB files on `mountPoint` without pause, each on disk before the next:
        /// a load that knows nothing of writers and never stops for a freeze.
        static func writeLoad(on mountPoint: String) throws -> ChildProcess {
            try ChildProcess("/bin/sh", ["-c", "i=0; while :; do dd if=/dev/urandom of=\(mountPoint)/load$((i % 4)) bs=1M count=4 conv=fsync 2>/dev/null; i=$((i + 1)); sleep 0.1; done"])
        }

        /// Whether the copy's filesystem checks clean. ext4 is checked in place (e2fsck -n); XFS
        /// keeps metadata in its log across a freeze, so an image of the copy has its log
        /// replayed by a mount first, as a restore would, and is checked then (xfs_repair -n).
        static func checksClean(_ device: String, filesystem: String) throws -> Bool {
            let script = filesystem == "xfs"
                ? "img=$(mktemp /tmp/shadowcopy-test-xfscheck-XXXXXX); mnt=$(mktemp -d /tmp/shadowcopy-test-xfsmnt-XXXXXX); "
                    + "dd if=\(device) of=$img bs=4M status=none && mount -o loop,nouuid $img $mnt && umount $mnt && xfs_repair -n $img; "
                    + "status=$?; umount $mnt 2>/dev/null; rm -rf $img $mnt; exit $status"
                : "e2fsck -fn \(device)"
            let check = try Tool.run("/bin/sh", ["-c", script])
            if check.status != 0 { print("\(filesystem) check of \(device): \(check.stdout)\(check.stderr)") }
            return check.status == 0
        }

        @Test func aSetOfAnExt4AndAnXFSVolumeUnderWriteLoadHoldsExactlyWhatTheWriterWroteBeforeFreeze() async throws {
            let first = try DMVolume(), second = try DMVolume(filesystem: "xfs")
            defer { first.remove(); second.remove() }
            try "second volume\n".write(toFile: second.mountPoint + "/note", atomically: false, encoding: .utf8)
            // Stores checked often: the load fills the default 16 MiB store quickly.
            try await DaemonFixture.with(arguments: ["--storage-watch-ms", "50"]) { f in
                let writer = try await PythonWriter(bus: f.bus, name: "app", extra: ["--data", first.mountPoint + "/records"])
                defer { writer.stop() }
                let c = try f.client()
                defer { c.close() }
                let supported = try await c.call("org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1",
                                                 "org.shadowcopy.ShadowCopy1.Coordinator", "IsVolumeSupported",
                                                 [.string(first.mountPoint), .vardict([])])
                #expect(supported == [.bool(true), .string("dm-snapshot")])
                try await Task.sleep(for: .milliseconds(300))

                let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1",
                                                        "org.shadowcopy.ShadowCopy1.Coordinator", "StartSnapshotSet",
                                                        [.vardict([])]).first?.objectPath)
                #expect(try await Self.run(c, set, "GatherWriterMetadata") == "succeeded")
                var snapshots: [ObjectPath] = []
                for volume in [first, second] {
                    snapshots.append(try #require(try await Self.call(c, set, Self.setInterface, "AddVolume",
                                                                      [.string(volume.mountPoint), .vardict([])]).first?.objectPath))
                }
                #expect(try await Self.run(c, set, "PrepareForBackup") == "succeeded")
                let loads = try [first, second].map { try Self.writeLoad(on: $0.mountPoint) }
                defer { for load in loads { _ = load.stop(signal: SIGKILL) } }
                try await Task.sleep(for: .milliseconds(500))
                #expect(try await Self.run(c, set, "DoSnapshotSet") == "succeeded")
                for load in loads { _ = load.stop(signal: SIGKILL) }
                #expect(try await Self.property(c, set, Self.setInterface, "Consistency") == "application")
                // Frozen by the kernel at the instant of the copy: both filesystems are clean in it.
                for (snapshot, filesystem) in zip(snapshots, ["ext4", "xfs"]) {
                    #expect(try Self.checksClean(try await Self.property(c, snapshot, Self.snapshotInterface, "Device"), filesystem: filesystem))
                }
                for (snapshot, volume) in zip(snapshots, [first, second]) {
                    #expect(try await Self.property(c, snapshot, Self.snapshotInterface, "Provider") == "dm-snapshot")
                    #expect(try await Self.property(c, snapshot, Self.snapshotInterface, "OriginalVolume") == "/dev/mapper/" + volume.name)
                    #expect(try await Self.property(c, snapshot, Self.snapshotInterface, "Device").hasPrefix("/dev/mapper/sc-"))
                    #expect(try DeviceMapper.table(volume.name).first?.target == "snapshot-origin")
                }

                // Exposed read-only (ext4 without journal replay): exactly the records before Freeze.
                let exposed = try #require(try await Self.call(c, snapshots[0], Self.snapshotInterface, "Expose").first?.string)
                let frozenAfter = try #require(writer.events.first { $0.hasPrefix("frozen-after") }.flatMap { Int($0.split(separator: " ")[1]) })
                #expect(try String(contentsOfFile: exposed + "/records", encoding: .utf8) == (1...frozenAfter).map { "\($0)\n" }.joined())
                #expect(!FileManager.default.createFile(atPath: exposed + "/new", contents: nil), "read-only")
                let second = try #require(try await Self.call(c, snapshots[1], Self.snapshotInterface, "Expose").first?.string)
                #expect(try String(contentsOfFile: second + "/note", encoding: .utf8) == "second volume\n")

                // Delete: copies, stores and -real devices go; the origins get their own tables back.
                _ = try await Self.call(c, set, Self.setInterface, "Delete")
                #expect(try Self.noShadowcopyDevices())
                #expect(try DeviceMapper.table(first.name).first?.target == "linear")
                #expect(((try? FileManager.default.contentsOfDirectory(atPath: f.bus.directory.appendingPathComponent("storage").path)) ?? []).isEmpty)
                #expect(f.daemon.exposed.isEmpty)
            }
        }

        @Test func lvmOwnedVolumesAreRefused() async throws {
            let volume = try DMVolume()
            defer { volume.remove() }
            let lvm = "sctest-lvm-\(UInt32.random(in: 0...UInt32.max))"
            try DeviceMapper.create(lvm, uuid: "LVM-" + String(repeating: "a", count: 64), table: [
                try DeviceMapper.TableLine(start: 0, length: 2048, target: "error", params: ""),
            ])
            defer { try? DeviceMapper.remove(lvm) }
            try await DaemonFixture.with { f in
                let c = try f.client()
                defer { c.close() }
                let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1",
                                                        "org.shadowcopy.ShadowCopy1.Coordinator", "StartSnapshotSet",
                                                        [.vardict([("context", .string("file-share-backup"))])]).first?.objectPath)
                do {
                    _ = try await Self.call(c, set, Self.setInterface, "AddVolume", [.string("/dev/mapper/" + lvm), .vardict([])])
                    Issue.record("an LVM volume was taken")
                } catch let error as DBusError {
                    #expect(error.name.rawValue == "org.shadowcopy.ShadowCopy1.Error.VolumeNotSupported" && error.message.contains("LVM"))
                }
                _ = try await Self.call(c, set, Self.setInterface, "Delete")
            }
        }

        @Test func aDaemonThatDiedMidCommitIsRepairedByTheNextStart() async throws {
            let volume = try DMVolume()
            defer { volume.remove(); try? DeviceMapper.remove(volume.name + "-screal") }
            // The state a daemon killed between suspend and resume leaves: the origin suspended
            // (its filesystem frozen), its table copied to -real, snapshot-origin loaded but not live.
            let table = try DeviceMapper.table(volume.name)
            try DeviceMapper.suspend(volume.name, lockfs: true)
            try DeviceMapper.create(volume.name + "-screal", uuid: "SHADOWCOPY-REAL-" + volume.name, table: table)
            let real = try #require(try DeviceMapper.info(volume.name + "-screal")).deviceNumber
            try DeviceMapper.load(volume.name, table: [
                try DeviceMapper.TableLine(start: 0, length: table[0].length, target: "snapshot-origin", params: real),
            ])
            let blocked = try ChildProcess("/usr/bin/touch", [volume.mountPoint + "/during"])
            try await Task.sleep(for: .milliseconds(300))
            #expect(blocked.isRunning, "the volume is frozen")

            try await DaemonFixture.with { (f: DaemonFixture) async throws in
                #expect(blocked.wait(timeout: .seconds(10)) == 0, "the start resumed the origin: the write went through")
                #expect(try DeviceMapper.info(volume.name)?.suspended == false)
                #expect(try DeviceMapper.info(volume.name + "-screal") == nil, "the unused -real is gone")
                #expect(try DeviceMapper.table(volume.name) == table, "the origin has its own table")
                #expect(f.daemon.log.contains("resumed \(volume.name), left suspended"), "\(f.daemon.log)")
            }
        }

        @Test func aPersistentCopyOpensReadOnlyAndSurvivesADaemonKilledWithSIGKILL() async throws {
            let volume = try DMVolume()
            defer { volume.remove() }
            try "kept\n".write(toFile: volume.mountPoint + "/file", atomically: false, encoding: .utf8)
            try await DaemonFixture.with { (f: DaemonFixture) async throws in
                var c = try f.client()
                let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1",
                                                        "org.shadowcopy.ShadowCopy1.Coordinator", "StartSnapshotSet",
                                                        [.vardict([("context", .string("file-share-backup")), ("persistent", .bool(true)),
                                                                   ("auto-release", .bool(false))])]).first?.objectPath)
                let snapshot = try #require(try await Self.call(c, set, Self.setInterface, "AddVolume",
                                                                [.string(volume.mountPoint), .vardict([])]).first?.objectPath)
                #expect(try await Self.run(c, set, "DoSnapshotSet") == "succeeded")
                let device = try await Self.property(c, snapshot, Self.snapshotInterface, "Device")

                // OpenDevice: the copy's blocks, read-only.
                guard case .unixFD(let fd) = try #require(try await Self.call(c, snapshot, Self.snapshotInterface, "OpenDevice").first) else {
                    Issue.record("OpenDevice returned no descriptor")
                    return
                }
                var viaFD = [UInt8](repeating: 0, count: 4096), direct = [UInt8](repeating: 0, count: 4096)
                #expect(pread(fd.rawValue, &viaFD, 4096, 1024) == 4096)
                let own = open(device, O_RDONLY)
                #expect(pread(own, &direct, 4096, 1024) == 4096 && viaFD == direct, "the descriptor reads the copy")
                close(own)
                #expect(pwrite(fd.rawValue, &viaFD, 512, 0) == -1, "and cannot write it")
                fd.close()
                c.close()

                // SIGKILL, then a new daemon: the copy is still there and still deletable.
                await f.daemon.stop(signal: SIGKILL)
                try await DaemonProcess.with(bus: f.bus) { _ in
                    c = try f.client()
                    defer { c.close() }
                    let listed = try await c.call("org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1",
                                                  "org.shadowcopy.ShadowCopy1.Coordinator", "Query", [.vardict([])])
                    #expect(listed.first?.arrayElements?.compactMap(\.objectPath) == [snapshot])
                    #expect(try await Self.property(c, snapshot, Self.snapshotInterface, "State") == "created")
                    let exposed = try #require(try await Self.call(c, snapshot, Self.snapshotInterface, "Expose").first?.string)
                    #expect(try String(contentsOfFile: exposed + "/file", encoding: .utf8) == "kept\n")
                    _ = try await Self.call(c, set, Self.setInterface, "Delete")
                    #expect(try Self.noShadowcopyDevices())
                    #expect(try DeviceMapper.table(volume.name).first?.target == "linear")
                }
            }
        }

        @Test func aFailureInTheMiddleOfATwoVolumeCommitLeavesBothOriginsAsTheyWere() async throws {
            let first = try DMVolume(), second = try DMVolume()
            defer { first.remove(); second.remove() }
            let tables = [try DeviceMapper.table(first.name), try DeviceMapper.table(second.name)]
            try await DaemonFixture.with { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                // The second copy's device name is taken: its creation fails after the first copy
                // was made and both origins were suspended.
                let (set, decoy) = try await DeviceMapperSuites.setWhoseLastCopyFails(c, [first.mountPoint, second.mountPoint])
                defer { try? DeviceMapper.remove(decoy) }

                #expect(try await Self.run(c, set, "DoSnapshotSet") == "failed")
                for (volume, table) in zip([first, second], tables) {
                    #expect(try DeviceMapper.info(volume.name)?.suspended == false, "\(volume.name) runs")
                    #expect(try DeviceMapper.table(volume.name) == table, "\(volume.name) has its own table")
                    try "written after\n".write(toFile: volume.mountPoint + "/after", atomically: false, encoding: .utf8)
                }
                let left = try DeviceMapper.list().map(\.name).filter { $0.hasPrefix("sc-") || $0.hasSuffix("-screal") }
                #expect(left == [decoy], "no copy and no -real left, only the test's decoy: \(left)")
                #expect(((try? FileManager.default.contentsOfDirectory(atPath: f.bus.directory.appendingPathComponent("storage").path)) ?? []).isEmpty,
                        "no COW store left")
                #expect(try await Self.property(c, set, Self.setInterface, "State") == "aborted")
                _ = try await Self.call(c, set, Self.setInterface, "Delete")
            }
        }
    }
}
