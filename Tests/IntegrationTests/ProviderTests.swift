import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// External providers over D-Bus, the coordinator holding writes for them, and the freeze
/// guard that thaws when the coordinator dies.
@Suite("External providers and the freeze guard", .serialized)
struct ProviderTests {
    static let providerInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.RegisteredProvider"

    /// Starts `touch <volume>/<name>`; on a frozen filesystem it blocks until thaw.
    static func probe(_ volume: LoopVolume, _ name: String) throws -> ChildProcess {
        try ChildProcess("/usr/bin/touch", [volume.mountPoint + "/" + name])
    }

    static func store() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-store-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func anExternalProviderCopiesAFrozenExt4VolumeAndTheCopyHoldsWhatCameBeforeFreeze() async throws {
        try await LoopVolume.with(filesystem: "ext4") { volume in
            try await DaemonFixture.with { f in
                let store = try Self.store()
                defer { try? FileManager.default.removeItem(atPath: store) }
                let provider = try await PythonProvider(bus: f.bus, name: "files", store: store, extra: ["--volume", volume.mountPoint])
                let data = volume.mountPoint + "/records"
                let writer = try await PythonWriter(bus: f.bus, name: "app", extra: ["--data", data])
                defer { writer.stop(); provider.stop() }
                let client = try f.client()
                defer { client.close() }
                let registered = try await SC.call(client, "Get", [.string(Self.providerInterface.rawValue), .string("Type")],
                                                   path: "/org/shadowcopy/ShadowCopy1/providers/files", interface: SC.properties)
                #expect(registered.first?.variantValue?.string == "external")
                let supported = try await SC.call(client, "IsVolumeSupported", [.string(volume.mountPoint), .vardict([])])
                #expect(supported == [.bool(true), .string("files")])
                try await Task.sleep(for: .milliseconds(200))

                let set = try await RequesterSet.start(client)
                #expect(try await set.run("GatherWriterMetadata") == ("succeeded", ""))
                let snapshot = try #require(try await set.call("AddVolume", [.string(volume.mountPoint), .vardict([])]).first?.objectPath)
                #expect(try await set.run("PrepareForBackup") == ("succeeded", ""))
                #expect(try await set.run("DoSnapshotSet") == ("succeeded", ""))
                #expect(try await set.property(snapshot, SnapshotSetTests.snapshotInterface, "Provider") == "files")
                #expect(try await set.property(set.path, RequesterSet.interface, "Consistency") == "application")

                // The provider ran its steps in order and found the filesystem frozen in commit.
                #expect(provider.events.filter { !$0.hasPrefix("registered") }.prefix(6) == [
                    "BeginPrepareSnapshot", "EndPrepareSnapshots", "PreCommitSnapshots", "CommitSnapshots",
                    "commit \(volume.mountPoint) frozen=yes", "PostCommitSnapshots",
                ])
                // ...and thawed after: a write goes through.
                let after = try Self.probe(volume, "after")
                #expect(after.wait(timeout: .seconds(5)) == 0)

                let exposed = try #require(try await SC.call(client, "Expose", [.vardict([])], path: snapshot,
                                                             interface: SnapshotSetTests.snapshotInterface).first?.string)
                defer { _ = try? Tool.run("/usr/bin/umount", [exposed]) }
                let copied = try String(contentsOfFile: exposed + "/records", encoding: .utf8).split(separator: "\n").compactMap { Int($0) }
                let frozenAfter = try #require(writer.events.first { $0.hasPrefix("frozen-after") }.flatMap { Int($0.split(separator: " ")[1]) })
                #expect(copied == Array(1...frozenAfter), "the copy holds exactly the records written before Freeze")
                #expect(!FileManager.default.createFile(atPath: exposed + "/new", contents: Data()), "the copy is read-only")

                _ = try await SC.call(client, "Delete", [.vardict([])], path: snapshot, interface: SnapshotSetTests.snapshotInterface)
                #expect(provider.events.last == "DeleteSnapshot")
                #expect(try FileManager.default.contentsOfDirectory(atPath: store).isEmpty, "the provider's copy is gone")
                #expect(!Mounts.isMounted(exposed))
                _ = try await set.call("Delete")
            }
        }
    }

    @Test func theGuardThawsWithinOneSecondWhenTheDaemonIsKilledWhileHoldingWrites() async throws {
        try await LoopVolume.with(filesystem: "ext4") { volume in
            try await DaemonFixture.with { f in
                let store = try Self.store()
                defer { try? FileManager.default.removeItem(atPath: store) }
                let provider = try await PythonProvider(bus: f.bus, name: "stuck", store: store,
                                                        extra: ["--volume", volume.mountPoint, "--hang", "CommitSnapshots"])
                defer { provider.stop() }
                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client, [("context", .string("file-share-backup"))])
                _ = try await set.call("AddVolume", [.string(volume.mountPoint), .vardict([])])
                _ = try await set.call("DoSnapshotSet")
                #expect(try await SC.eventually(.seconds(10)) { provider.events.contains("CommitSnapshots") })

                let blocked = try Self.probe(volume, "during")
                try await Task.sleep(for: .milliseconds(300))
                #expect(blocked.isRunning, "the volume is frozen while the provider commits")
                let guardPID = try #require(Mounts.children(of: f.daemon.pid).first, "the freeze guard runs")

                let killedAt = ContinuousClock.now
                await f.daemon.stop(signal: SIGKILL)
                #expect(blocked.wait(timeout: .seconds(1)) == 0, "the guard thawed within 1 s of SIGKILL")
                #expect(ContinuousClock.now - killedAt < .seconds(1))
                #expect(try await SC.eventually(.seconds(2)) { kill(guardPID, 0) != 0 }, "the guard exits after thawing")
                #expect(f.daemon.log.contains("freeze guard: thawed \(volume.mountPoint): shadowcopyd went away"))
            }
        }
    }

    @Test func writesAreNeverHeldPastHoldWritesTimeout() async throws {
        try await LoopVolume.with(filesystem: "ext4") { volume in
            try await DaemonFixture.with(arguments: ["--hold-writes-timeout-ms", "1000"]) { f in
                let store = try Self.store()
                defer { try? FileManager.default.removeItem(atPath: store) }
                let provider = try await PythonProvider(bus: f.bus, name: "stuck", store: store,
                                                        extra: ["--volume", volume.mountPoint, "--hang", "CommitSnapshots"])
                let writer = try await PythonWriter(bus: f.bus, name: "app")
                defer { provider.stop(); writer.stop() }
                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client)
                _ = try await set.prepare(volume: volume.mountPoint)
                let job = try #require(try await set.call("DoSnapshotSet").first?.objectPath)
                #expect(try await SC.eventually(.seconds(10)) { provider.events.contains("CommitSnapshots") })
                let blocked = try Self.probe(volume, "during")
                #expect(blocked.wait(timeout: .seconds(3)) == 0, "thawed by the 1000 ms hold-writes deadline")
                #expect(blocked.isRunning == false)
                _ = try await SC.call(client, "Wait", [.uint32(20_000)], path: job, interface: RequesterSet.job)
                #expect(try await set.property(job, RequesterSet.job, "ErrorName") == "org.shadowcopy.ShadowCopy1.Error.Timeout")
                #expect(writer.events.last == "Abort")
                #expect(provider.events.last == "AbortSnapshots")
                #expect(try await set.state() == "aborted")
            }
        }
    }

    @Test func providersComeAndGoWithTheirConnection() async throws {
        try await DaemonFixture.with { f in
            let store = try Self.store()
            defer { try? FileManager.default.removeItem(atPath: store) }
            let provider = try await PythonProvider(bus: f.bus, name: "passing", store: store)
            let client = try f.client()
            defer { client.close() }
            let path: ObjectPath = "/org/shadowcopy/ShadowCopy1/providers/passing"
            #expect(try await SC.managedObjects(client)[path] != nil)
            // Only its connection may unregister it; a second one by the same name is refused.
            #expect(await SC.errorName { _ = try await SC.call(client, "UnregisterProvider", [.objectPath(path)]) }
                    == "org.shadowcopy.ShadowCopy1.Error.NotAuthorized")
            #expect(await SC.errorName {
                _ = try await SC.call(client, "RegisterProvider", [.objectPath("/p"), .vardict([("name", .string("passing"))])])
            } == "org.shadowcopy.ShadowCopy1.Error.AlreadyExists")
            #expect(await SC.errorName {
                _ = try await SC.call(client, "RegisterProvider", [.objectPath("/p"), .vardict([("name", .string("Bad Name"))])])
            } == "org.freedesktop.DBus.Error.InvalidArgs")
            #expect(await SC.errorName {
                _ = try await SC.call(client, "RegisterProvider", [.objectPath("/p"), .vardict([("name", .string("btrfs"))])])
            } == "org.shadowcopy.ShadowCopy1.Error.AlreadyExists")
            provider.stop(signal: SIGKILL)
            #expect(try await SC.eventually { try await SC.managedObjects(client)[path] == nil })
        }
    }
}

/// What the kernel shows of mounts and processes, for checks.
enum Mounts {
    static func isMounted(_ path: String) -> Bool {
        ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
            .split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }
    }

    /// The child processes of `pid`.
    static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { Int32($0) }
        }
    }
}
