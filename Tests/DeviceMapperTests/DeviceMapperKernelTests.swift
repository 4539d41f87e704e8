#if canImport(Glibc)
import Glibc
#endif
import DeviceMapper
import FreezeGuard
import Foundation
import ShadowCopyTestSupport
import Testing

extension DeviceMapperSuites {
    /// The libdevmapper binding against a real kernel: run natively where the kernel has
    /// device-mapper, and by `make test` inside a VM (scripts/vm) where it does not.
    @Suite("Device-mapper in the kernel", .serialized, .enabled(if: DeviceMapper.kernelSupport,
                                                             "no device-mapper in this kernel: make test runs this suite in a VM"))
    struct DeviceMapperKernelTests {
        /// A loop device over a sparse file in /tmp, detached and deleted by ``remove()``.
        final class Loop: @unchecked Sendable {
            let file: String
            let device: String

            init(sizeMiB: Int) throws {
                file = "/tmp/shadowcopy-test-dm-\(UInt32.random(in: 0...UInt32.max)).img"
                _ = try Tool.run("/usr/bin/truncate", ["-s", "\(sizeMiB)M", file])
                let attached = try Tool.run("/usr/sbin/losetup", ["--find", "--show", file])
                guard attached.status == 0 else { throw HarnessError("losetup: \(attached.stderr)") }
                device = attached.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }

            var sectors: UInt64 {
                UInt64((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0) / 512
            }

            func remove() {
                _ = try? Tool.run("/usr/sbin/losetup", ["--detach", device])
                try? FileManager.default.removeItem(atPath: file)
            }
        }

        /// Whether udev runs here (scripts/vm --udev): libdevmapper then leaves nodes to it and waits
        /// for it with its cookies.
        static let udev = ProcessInfo.processInfo.environment["SHADOWCOPY_VM_UDEV"] == "1"

        /// `major:minor` of a block device, from sysfs.
        static func devNumber(_ path: String) -> String {
            let name = URL(fileURLWithPath: path).lastPathComponent
            return ((try? String(contentsOfFile: "/sys/class/block/\(name)/dev", encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        @Test func createSuspendResumeTablesAndRemoveALinearDevice() throws {
            let loop = try Loop(sizeMiB: 16)
            defer { loop.remove() }
            let name = "sctest-linear-\(UInt32.random(in: 0...UInt32.max))"
            let table = [try DeviceMapper.TableLine(start: 0, length: loop.sectors, target: "linear", params: "\(Self.devNumber(loop.device)) 0")]
            try DeviceMapper.create(name, uuid: "SHADOWCOPY-TEST-" + name, table: table)
            defer { try? DeviceMapper.remove(name) }

            let info = try #require(try DeviceMapper.info(name))
            #expect(info.liveTable && !info.suspended && info.uuid == "SHADOWCOPY-TEST-" + name && info.targetCount == 1)
            #expect(FileManager.default.fileExists(atPath: "/dev/mapper/" + name))
            // Who made the node: udev makes a symlink to ../dm-N, the library a node of its own.
            let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/dev/mapper/" + name)
            if Self.udev {
                #expect(link == "../dm-\(info.minor)", "udev made the node")
            } else {
                #expect(link == nil, "the library made the node itself, without udev")
            }
            #expect(try DeviceMapper.table(name) == table)
            #expect(try DeviceMapper.list().contains { $0.name == name && $0.device == info.deviceNumber })
            #expect(throws: DeviceMapper.Failure.self) { try DeviceMapper.create(name, uuid: "SHADOWCOPY-TEST-other", table: table) }

            try DeviceMapper.suspend(name, lockfs: false)
            #expect(try DeviceMapper.info(name)?.suspended == true)
            // A new table waits, inactive, for the resume.
            try DeviceMapper.load(name, table: [try DeviceMapper.TableLine(start: 0, length: loop.sectors, target: "error", params: "")])
            #expect(try DeviceMapper.info(name)?.inactiveTable == true)
            try DeviceMapper.resume(name)
            #expect(try DeviceMapper.table(name).first?.target == "error")
            #expect(try DeviceMapper.status(name).first?.target == "error")
            #expect(throws: DeviceMapper.Failure.self) { try DeviceMapper.message(name, "create_thin 0") }

            try DeviceMapper.remove(name)
            #expect(try DeviceMapper.info(name) == nil)
            #expect(!FileManager.default.fileExists(atPath: "/dev/mapper/" + name))
        }

        @Test func aSnapshotOfAMountedExt4KeepsWhatWasThereWhenItWasTaken() throws {
            let data = try Loop(sizeMiB: 64), store = try Loop(sizeMiB: 16)
            defer { data.remove(); store.remove() }
            let id = UInt32.random(in: 0...UInt32.max)
            let origin = "sctest-origin-\(id)", real = origin + "-real", copy = "sctest-copy-\(id)"
            let linear = [try DeviceMapper.TableLine(start: 0, length: data.sectors, target: "linear", params: "\(Self.devNumber(data.device)) 0")]
            try DeviceMapper.create(origin, uuid: "SHADOWCOPY-TEST-\(origin)", table: linear)
            let mountPoint = "/tmp/shadowcopy-test-dm-mnt-\(id)", copyMount = mountPoint + "-copy"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: copyMount, withIntermediateDirectories: true)
            defer {
                _ = try? Tool.run("/usr/bin/umount", [copyMount])
                _ = try? Tool.run("/usr/bin/umount", [mountPoint])
                try? DeviceMapper.remove(copy)
                try? DeviceMapper.remove(origin)
                try? DeviceMapper.remove(real)
                try? FileManager.default.removeItem(atPath: mountPoint)
                try? FileManager.default.removeItem(atPath: copyMount)
            }
            #expect(try Tool.run("/usr/sbin/mkfs.ext4", ["-q", "-F", "/dev/mapper/" + origin]).status == 0)
            #expect(try Tool.run("/usr/bin/mount", ["/dev/mapper/" + origin, mountPoint]).status == 0)
            try "before\n".write(toFile: mountPoint + "/file", atomically: false, encoding: .utf8)

            // What the dm-snapshot provider does: the origin's table moves to -real, the copy is a
            // persistent snapshot of -real with its own COW store, and the origin becomes
            // snapshot-origin, all while the origin is suspended with its filesystem frozen.
            try DeviceMapper.suspend(origin, lockfs: true)
            try DeviceMapper.create(real, uuid: "SHADOWCOPY-TEST-\(real)", table: linear)
            let realDevice = try #require(try DeviceMapper.info(real)).deviceNumber
            try DeviceMapper.create(copy, uuid: "SHADOWCOPY-TEST-\(copy)", table: [
                try DeviceMapper.TableLine(start: 0, length: data.sectors, target: "snapshot",
                                           params: "\(realDevice) \(Self.devNumber(store.device)) P 8"),
            ], readOnly: true)
            try DeviceMapper.load(origin, table: [try DeviceMapper.TableLine(start: 0, length: data.sectors, target: "snapshot-origin",
                                                                          params: realDevice)])
            try DeviceMapper.resume(origin)

            try "after\n".write(toFile: mountPoint + "/file", atomically: false, encoding: .utf8)
            _ = try Tool.run("/bin/sync", [])
            #expect(try Tool.run("/usr/bin/mount", ["-o", "ro,noload", "/dev/mapper/" + copy, copyMount]).status == 0)
            #expect(try String(contentsOfFile: copyMount + "/file", encoding: .utf8) == "before\n", "the copy kept the old data")
            #expect(try String(contentsOfFile: mountPoint + "/file", encoding: .utf8) == "after\n", "the origin has the new")
            let status = try #require(try DeviceMapper.status(copy).first.flatMap { DeviceMapper.SnapshotStatus($0.status) })
            guard case .active(let allocated, let total, _) = status else { Issue.record("status \(status)"); return }
            #expect(allocated > 0 && total == store.sectors, "COW use shows: \(allocated)/\(total)")
            #expect(try DeviceMapper.info(copy)?.readOnly == true)
        }

        /// A linear device over a fresh loop device; the caller removes both.
        static func linearDevice() throws -> (Loop, String, [DeviceMapper.TableLine]) {
            let loop = try Loop(sizeMiB: 16)
            let name = "sctest-guarded-\(UInt32.random(in: 0...UInt32.max))"
            let table = [try DeviceMapper.TableLine(start: 0, length: loop.sectors, target: "linear", params: "\(Self.devNumber(loop.device)) 0")]
            try DeviceMapper.create(name, uuid: "TEST-" + name, table: table)
            return (loop, name, table)
        }

        @Test func theFreezeGuardResumesWhatADeadDaemonLeftSuspended() async throws {
            let (loop, name, table) = try Self.linearDevice()
            defer { try? DeviceMapper.remove(name); loop.remove() }
            // The daemon's side of the guard, as shadowcopyd runs it: a separate process.
            let guardian = FreezeGuard(executable: ProjectPaths.daemon.path)
            try await guardian.watchSuspended([name], limitMs: 60_000)
            try DeviceMapper.suspend(name, lockfs: false)
            // A commit in progress: a new table loaded, not yet live.
            try DeviceMapper.load(name, table: [try DeviceMapper.TableLine(start: 0, length: loop.sectors, target: "error", params: "")])
            #expect(try DeviceMapper.info(name)?.suspended == true)

            let closedAt = ContinuousClock.now
            guardian.stop()  // the daemon's end of the socket closes, as when it is killed
            #expect(try DeviceMapper.info(name)?.suspended == false, "resumed by the guard")
            #expect(ContinuousClock.now - closedAt < .seconds(1))
            #expect(try DeviceMapper.table(name) == table, "the table that was not live yet was dropped")
        }

        @Test func theFreezeGuardResumesAtTheHoldDeadlineEvenWithTheDaemonAlive() async throws {
            let (loop, name, _) = try Self.linearDevice()
            defer { try? DeviceMapper.remove(name); loop.remove() }
            let guardian = FreezeGuard(executable: ProjectPaths.daemon.path)
            defer { guardian.stop() }
            try await guardian.watchSuspended([name], limitMs: 300)
            try DeviceMapper.suspend(name, lockfs: false)
            let start = ContinuousClock.now
            while try DeviceMapper.info(name)?.suspended == true, ContinuousClock.now - start < .seconds(5) {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try DeviceMapper.info(name)?.suspended == false, "resumed at the 300 ms limit")
            #expect(ContinuousClock.now - start < .seconds(2))
            // Once the provider resumed by itself, unwatching leaves the device alone.
            try await guardian.watchSuspended([name], limitMs: 60_000)
            await guardian.unwatchSuspended()
            #expect(try DeviceMapper.info(name)?.suspended == false)
        }
    }
}
