import DBus
import DeviceMapper
import Foundation
import ShadowCopyTestSupport
import Synchronization
import Testing

extension DeviceMapperSuites {
    /// Shadow storage of dm-snapshot copies in a real kernel: areas, stores that grow before they
    /// fill, and the two overflow policies.
    @Suite("Shadow storage of dm-snapshot copies", .serialized, .enabled(if: DeviceMapper.kernelSupport,
                                                                       "no device-mapper in this kernel: make test runs this suite in a VM"))
    struct ShadowStorageTests {
        typealias T = DMSnapshotProviderTests
        static let storageInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.ShadowStorage"
        static let coordinator: InterfaceName = "org.shadowcopy.ShadowCopy1.Coordinator"
        static let root: ObjectPath = "/org/shadowcopy/ShadowCopy1"
        static let mib = 1 << 20

        /// The daemon checks stores every 50 ms, so that a test's writes grow them in time.
        static let arguments = ["--storage-watch-ms", "50"]

        /// Writes `mib` MiB of `byte` to `path` one MiB at a time, each on disk before the next,
        /// pausing `pauseMs` between them.
        static func write(_ path: String, mib: Int, byte: UInt8, pauseMs: Int = 0) async throws {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw HarnessError("open \(path): \(errno)") }
            defer { close(fd) }
            let chunk = [UInt8](repeating: byte, count: Self.mib)
            for _ in 0..<mib {
                guard Glibc.write(fd, chunk, chunk.count) == chunk.count, fsync(fd) == 0 else { throw HarnessError("write \(path): \(errno)") }
                if pauseMs > 0 { try await Task.sleep(for: .milliseconds(pauseMs)) }
            }
        }

        /// Whether `path` holds `mib` MiB of `byte` and nothing else.
        static func holds(_ path: String, mib: Int, byte: UInt8) -> Bool {
            guard let data = FileManager.default.contents(atPath: path) else { return false }
            return data.count == mib * Self.mib && data.allSatisfy { $0 == byte }
        }

        static func number(_ c: Connection, _ path: ObjectPath, _ interface: InterfaceName, _ name: String) async throws -> UInt64 {
            try await c.call("org.shadowcopy.ShadowCopy1", path, "org.freedesktop.DBus.Properties", "Get",
                             [.string(interface.rawValue), .string(name)]).first?.variantValue?.uint64 ?? 0
        }

        /// A persistent copy of `volume` in a set of its own.
        static func copy(_ c: Connection, _ mountPoint: String) async throws -> (set: ObjectPath, snapshot: ObjectPath) {
            let set = try #require(try await c.call("org.shadowcopy.ShadowCopy1", root, coordinator, "StartSnapshotSet",
                                                    [.vardict([("context", .string("file-share-backup"))])]).first?.objectPath)
            let snapshot = try #require(try await T.call(c, set, T.setInterface, "AddVolume", [.string(mountPoint), .vardict([])]).first?.objectPath)
            #expect(try await T.run(c, set, "DoSnapshotSet") == "succeeded")
            return (set, snapshot)
        }

        /// The ShadowStorage interface element of an introspection document, comments and layout
        /// aside.
        static func storageElement(_ xml: String) -> String? {
            let text = xml.replacing(/<!--[\s\S]*?-->/, with: "").replacing(/>\s+</, with: "><")
            guard let start = text.range(of: "<interface name=\"\(storageInterface)\">"),
                let end = text.range(of: "</interface>", range: start.upperBound..<text.endIndex)
            else { return nil }
            return String(text[start.lowerBound..<end.upperBound])
        }

        /// Collects SnapshotInvalidated signals (snapshot path, reason).
        final class Invalidations: Sendable {
            let seen = Mutex<[(ObjectPath, String)]>([])
            private let task = Mutex<Task<Void, Never>?>(nil)

            init(_ c: Connection) async throws {
                let signals = try await c.signals(MatchRule(interface: ShadowStorageTests.coordinator, member: "SnapshotInvalidated"))
                let listener = Task { [self] in
                    for await signal in signals {
                        guard let args = try? signal.arguments(), let path = args.first?.objectPath, let reason = args.last?.string else { continue }
                        seen.withLock { $0.append((path, reason)) }
                    }
                }
                task.withLock { $0 = listener }
            }

            func reason(for snapshot: ObjectPath) -> String? { seen.withLock { $0.first { $0.0 == snapshot }?.1 } }
            func stop() { task.withLock { $0?.cancel() } }
        }

        static func addStorage(_ c: Connection, _ volume: T.DMVolume, at location: String, maxBytes: UInt64,
                               policy: String) async throws -> ObjectPath {
            try #require(try await c.call("org.shadowcopy.ShadowCopy1", root, coordinator, "AddShadowStorage", [
                .string(volume.mountPoint), .string(location), .uint64(maxBytes), .vardict([("policy", .string(policy))]),
            ]).first?.objectPath)
        }

        @Test func aStoreGrowsBeforeItFillsAndTheCopyKeepsItsData() async throws {
            let volume = try T.DMVolume(sizeMiB: 128)
            defer { volume.remove() }
            try await Self.write(volume.mountPoint + "/before", mib: 4, byte: 0xAA)
            try await DaemonFixture.with(arguments: Self.arguments) { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                let location = f.bus.directory.appendingPathComponent("area").path
                try FileManager.default.createDirectory(atPath: location, withIntermediateDirectories: true)
                // Refused: the volume itself, a missing directory, an unknown policy.
                for (at, policy) in [(volume.mountPoint, "invalidate"), (location + "/missing", "invalidate"), (location, "sometimes")] {
                    await #expect(throws: DBusError.self) { try await Self.addStorage(c, volume, at: at, maxBytes: 0, policy: policy) }
                }
                let storage = try await Self.addStorage(c, volume, at: location, maxBytes: 0, policy: "invalidate")
                #expect(try await T.property(c, storage, Self.storageInterface, "ForVolume") == "/dev/mapper/" + volume.name)
                let served = try await c.call("org.shadowcopy.ShadowCopy1", storage, "org.freedesktop.DBus.Introspectable", "Introspect", [])
                let file = try String(contentsOf: ProjectPaths.root.appendingPathComponent("dbus/\(Self.storageInterface).xml"), encoding: .utf8)
                #expect(Self.storageElement(served.first?.string ?? "") == Self.storageElement(file), "the object serves its contract file")
                let invalidations = try await Invalidations(c)
                defer { invalidations.stop() }

                let (set, snapshot) = try await Self.copy(c, volume.mountPoint)
                #expect(try await Self.number(c, snapshot, T.snapshotInterface, "StorageSize") == UInt64(16 * Self.mib))
                let stores = try FileManager.default.contentsOfDirectory(atPath: location)
                #expect(stores.count == 1 && stores[0].hasSuffix(".cow"), "the store is in the area: \(stores)")

                // 40 MiB of new blocks, each preserved in the store, which starts at 16 MiB.
                try await Self.write(volume.mountPoint + "/before", mib: 4, byte: 0xBB, pauseMs: 20)
                try await Self.write(volume.mountPoint + "/after", mib: 36, byte: 0xCC, pauseMs: 20)
                let size = try await Self.number(c, snapshot, T.snapshotInterface, "StorageSize")
                let used = try await Self.number(c, snapshot, T.snapshotInterface, "StorageUsed")
                #expect(size > UInt64(40 * Self.mib) && used > UInt64(40 * Self.mib) && used <= size, "grown: \(used)/\(size)")
                #expect(try await T.property(c, snapshot, T.snapshotInterface, "State") == "created")
                #expect(try await Self.number(c, storage, Self.storageInterface, "Allocated") == size)
                #expect(invalidations.seen.withLock { $0.isEmpty })
                // What `shadowcopy list shadowstorage` shows of it.
                let listed = try Tool.run(ProjectPaths.products.appendingPathComponent("shadowcopy").path,
                                          ["list", "shadowstorage", "--json"], environment: ["DBUS_SYSTEM_BUS_ADDRESS": f.bus.address])
                #expect(listed.status == 0 && listed.stdout.contains("\"allocated\" : \(size)") && listed.stdout.contains("\"policy\" : \"invalidate\"")
                        && listed.stdout.contains("\"location\" : \"\(location)\""), "\(listed.stdout)\(listed.stderr)")

                // The copy holds the file as it was; the origin as it is now.
                let exposed = try #require(try await T.call(c, snapshot, T.snapshotInterface, "Expose").first?.string)
                #expect(Self.holds(exposed + "/before", mib: 4, byte: 0xAA))
                #expect(!FileManager.default.fileExists(atPath: exposed + "/after"))
                #expect(Self.holds(volume.mountPoint + "/before", mib: 4, byte: 0xBB))

                // Nothing the area holds is lost by a resize or a delete.
                await #expect(throws: DBusError.self) { _ = try await T.call(c, storage, Self.storageInterface, "Resize", [.uint64(UInt64(Self.mib)), .vardict([])]) }
                await #expect(throws: DBusError.self) { _ = try await T.call(c, storage, Self.storageInterface, "Delete") }
                _ = try await T.call(c, set, T.setInterface, "Delete")
                _ = try await T.call(c, storage, Self.storageInterface, "Delete")
                #expect(try FileManager.default.contentsOfDirectory(atPath: location).isEmpty)
                #expect(try T.noShadowcopyDevices())
            }
        }

        @Test func aTinyStoreOverflowsUnderAWriteStormAndOnlyTheCopyIsLost() async throws {
            let volume = try T.DMVolume(sizeMiB: 128)
            defer { volume.remove() }
            try await DaemonFixture.with(arguments: Self.arguments) { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                let location = f.bus.directory.appendingPathComponent("area").path
                try FileManager.default.createDirectory(atPath: location, withIntermediateDirectories: true)
                let storage = try await Self.addStorage(c, volume, at: location, maxBytes: UInt64(16 * Self.mib), policy: "invalidate")
                let invalidations = try await Invalidations(c)
                defer { invalidations.stop() }
                let (set, snapshot) = try await Self.copy(c, volume.mountPoint)
                let exposed = try #require(try await T.call(c, snapshot, T.snapshotInterface, "Expose").first?.string)

                // Three times the store, as fast as the disk takes it; the area allows no growth.
                try await Self.write(volume.mountPoint + "/storm", mib: 48, byte: 0x5A)
                #expect(try await eventually(.seconds(20), every: .milliseconds(50)) { invalidations.reason(for: snapshot) != nil }, "SnapshotInvalidated was emitted")
                #expect(invalidations.reason(for: snapshot)?.contains("overflowed") == true)
                // Cleaned up: the record says so once its devices are gone.
                #expect(try await eventually(.seconds(20), every: .milliseconds(50)) {
                    try await T.property(c, snapshot, T.snapshotInterface, "Device") == ""
                }, "the copy's devices are gone")
                #expect(try T.noShadowcopyDevices())
                #expect(try await T.property(c, snapshot, T.snapshotInterface, "State") == "invalid")
                #expect(try await T.property(c, snapshot, T.snapshotInterface, "Device") == "")
                #expect(try await T.property(c, snapshot, T.snapshotInterface, "ExposedPath") == "")
                #expect(!f.daemon.exposed.contains(exposed))
                #expect(try FileManager.default.contentsOfDirectory(atPath: location).isEmpty, "the store is gone")
                #expect(try await Self.number(c, storage, Self.storageInterface, "Allocated") == 0)

                // The origin has every byte of the storm, and its own table back.
                #expect(try DeviceMapper.table(volume.name).first?.target == "linear")
                _ = try Tool.run("/bin/sh", ["-c", "echo 3 > /proc/sys/vm/drop_caches"])
                #expect(Self.holds(volume.mountPoint + "/storm", mib: 48, byte: 0x5A))
                if invalidations.reason(for: snapshot) == nil {
                    print(f.daemon.log)
                    print(try DeviceMapper.list().map { "\($0.name): \((try? DeviceMapper.status($0.name))?.first?.status ?? "?")" })
                }
                _ = try await T.call(c, set, T.setInterface, "Delete")
            }
        }

        @Test func theDeleteOldestPolicyDeletesTheOldestCopyToMakeRoom() async throws {
            let volume = try T.DMVolume(sizeMiB: 128)
            defer { volume.remove() }
            try await Self.write(volume.mountPoint + "/file", mib: 2, byte: 0x11)
            try await DaemonFixture.with(arguments: Self.arguments) { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                let location = f.bus.directory.appendingPathComponent("area").path
                try FileManager.default.createDirectory(atPath: location, withIntermediateDirectories: true)
                _ = try await Self.addStorage(c, volume, at: location, maxBytes: UInt64(40 * Self.mib), policy: "delete-oldest")
                let invalidations = try await Invalidations(c)
                defer { invalidations.stop() }
                let (firstSet, oldest) = try await Self.copy(c, volume.mountPoint)
                try await Self.write(volume.mountPoint + "/file", mib: 2, byte: 0x22)
                let (secondSet, newest) = try await Self.copy(c, volume.mountPoint)

                // Both copies preserve the next 24 MiB; 40 MiB cannot hold both.
                try await Self.write(volume.mountPoint + "/more", mib: 24, byte: 0x33, pauseMs: 20)
                #expect(try await eventually(.seconds(20), every: .milliseconds(50)) { invalidations.reason(for: oldest) != nil })
                #expect(invalidations.reason(for: oldest)?.contains("delete-oldest") == true)
                #expect(invalidations.reason(for: newest) == nil)
                let listed = try await c.call("org.shadowcopy.ShadowCopy1", Self.root, Self.coordinator, "Query", [.vardict([])])
                #expect(listed.first?.arrayElements?.compactMap(\.objectPath) == [newest], "only the newest copy is left")
                #expect(try await T.property(c, newest, T.snapshotInterface, "State") == "created")
                let exposed = try #require(try await T.call(c, newest, T.snapshotInterface, "Expose").first?.string)
                #expect(Self.holds(exposed + "/file", mib: 2, byte: 0x22))
                _ = try? await T.call(c, firstSet, T.setInterface, "Delete")
                _ = try await T.call(c, secondSet, T.setInterface, "Delete")
                #expect(try T.noShadowcopyDevices())
            }
        }
    
        @Test func aBlockDeviceHoldsStoresAsExtentsThatGrowAndAreGivenBack() async throws {
            let volume = try T.DMVolume(sizeMiB: 128), device = try DeviceMapperKernelTests.Loop(sizeMiB: 48)
            defer { volume.remove(); device.remove() }
            let number = DeviceMapperKernelTests.devNumber(device.device)
            try await Self.write(volume.mountPoint + "/before", mib: 2, byte: 0xAA)
            try await DaemonFixture.with(arguments: Self.arguments) { (f: DaemonFixture) async throws in
                let c = try f.client()
                defer { c.close() }
                await #expect(throws: DBusError.self, "the volume itself") {
                    try await Self.addStorage(c, volume, at: "/dev/mapper/" + volume.name, maxBytes: 0, policy: "invalidate")
                }
                let storage = try await Self.addStorage(c, volume, at: device.device, maxBytes: 0, policy: "invalidate")
                #expect(try await Self.number(c, storage, Self.storageInterface, "MaxSize") == UInt64(48 * Self.mib), "the device's size")

                // The store: extents of the device, mapped by sc-<id>-cow, grown as it fills.
                let (firstSet, first) = try await Self.copy(c, volume.mountPoint)
                let cow = "sc-" + first.rawValue.split(separator: "/").last! + "-cow"
                #expect(try DeviceMapper.table(cow).allSatisfy { $0.target == "linear" && $0.params.hasPrefix(number + " ") })
                try await Self.write(volume.mountPoint + "/before", mib: 2, byte: 0xBB, pauseMs: 30)
                try await Self.write(volume.mountPoint + "/after", mib: 20, byte: 0xCC, pauseMs: 30)
                let size = try await Self.number(c, first, T.snapshotInterface, "StorageSize")
                #expect(size > UInt64(22 * Self.mib), "grown: \(size)")
                #expect(try DeviceMapper.table(cow).reduce(0) { $0 + $1.length } * 512 == size)
                #expect(try await Self.number(c, storage, Self.storageInterface, "Allocated") == size)
                let exposed = try #require(try await T.call(c, first, T.snapshotInterface, "Expose").first?.string)
                #expect(Self.holds(exposed + "/before", mib: 2, byte: 0xAA))

                // Deleted, its extents are free again: the next copy's store starts where the first's did.
                let firstStart = try DeviceMapper.table(cow).first?.params
                _ = try await T.call(c, firstSet, T.setInterface, "Delete")
                #expect(try DeviceMapper.info(cow) == nil)
                let (secondSet, second) = try await Self.copy(c, volume.mountPoint)
                let secondCow = "sc-" + second.rawValue.split(separator: "/").last! + "-cow"
                #expect(try DeviceMapper.table(secondCow).first?.params == firstStart)
                _ = try await T.call(c, secondSet, T.setInterface, "Delete")
                _ = try await T.call(c, storage, Self.storageInterface, "Delete")
                #expect(try T.noShadowcopyDevices())
            }
        }
}
}
