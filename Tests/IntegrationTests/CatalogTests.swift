import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// The catalog: what survives a daemon that dies, and how the next one reconciles it.
@Suite("The catalog across daemon restarts", .serialized)
struct CatalogTests {
    static let snapshot: InterfaceName = "org.shadowcopy.ShadowCopy1.Snapshot"

    /// Makes a writerless set of one snapshot of `volume`; returns the set and the snapshot.
    static func makeSet(_ client: Connection, _ volume: LoopVolume, persistent: Bool) async throws -> (RequesterSet, ObjectPath) {
        let set = try await RequesterSet.start(client, [
            ("context", .string("file-share-backup")), ("persistent", .bool(persistent)), ("auto-release", .bool(false)),
        ])
        let snapshot = try #require(try await set.call("AddVolume", [.string(volume.mountPoint), .vardict([])]).first?.objectPath)
        #expect(try await set.run("DoSnapshotSet") == ("succeeded", ""))
        return (set, snapshot)
    }

    @Test func aKilledDaemonsSnapshotsComeBackAndTheNextStartSaysWhatItFixed() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let catalog = f.bus.directory.appendingPathComponent("catalog.db").path
                var client = try f.client()
                let (kept, keptSnapshot) = try await Self.makeSet(client, volume, persistent: true)
                let (_, transient) = try await Self.makeSet(client, volume, persistent: false)
                let (_, vanishing) = try await Self.makeSet(client, volume, persistent: true)
                let exposed = try #require(try await SC.call(client, "Expose", [.vardict([])], path: keptSnapshot,
                                                             interface: Self.snapshot).first?.string)
                defer { _ = try? Tool.run("/usr/bin/umount", [exposed]) }
                #expect(try volume.subvolumes().count == 3)
                client.close()

                // A crash, then a copy deleted behind the daemon's back while it is down.
                await f.daemon.stop(signal: SIGKILL)
                let gone = String(vanishing.rawValue.split(separator: "/").last!)
                let removed = try Tool.run("/usr/bin/btrfs", ["subvolume", "delete", volume.mountPoint + "/.shadowcopy/" + gone])
                #expect(removed.status == 0, "\(removed.stderr)")

                try await DaemonProcess.with(bus: f.bus, arguments: ["--catalog", catalog]) { again in
                client = try f.client()
                defer { client.close() }
                let listed = try #require(try await SC.call(client, "Query", [.vardict([])]).first?.arrayElements?.compactMap(\.objectPath))
                #expect(listed == [keptSnapshot], "only the persistent copy that still exists is listed")
                #expect(try volume.subvolumes().count == 1, "the non-persistent copy was deleted at start")
                let log = again.log
                #expect(log.contains("deleted snapshot") && log.contains("not persistent"), "\(log)")
                #expect(log.contains("its copy is gone"), "\(log)")

                // The survivor is whole: its set, its properties, its exposure.
                let set = RequesterSet(client: client, path: kept.path)
                #expect(try await set.state() == "snapshotted")
                #expect(try await set.property(keptSnapshot, Self.snapshot, "OriginalVolume") == volume.mountPoint)
                #expect(try await set.property(keptSnapshot, Self.snapshot, "State") == "created")
                #expect(try await set.property(keptSnapshot, Self.snapshot, "ExposedPath") == exposed)
                #expect(try await SC.managedObjects(client)[transient] == nil)
                _ = try await SC.call(client, "Unexpose", [.vardict([])], path: keptSnapshot, interface: Self.snapshot)
                #expect(!Mounts.isMounted(exposed))

                // And it can be deleted by its owner, which leaves nothing behind.
                _ = try await set.call("Delete")
                #expect(try volume.untouched())
                #expect(try await SC.call(client, "Query", [.vardict([])]).first?.arrayElements?.compactMap(\.objectPath) == [])
                }
            }
        }
    }

    @Test func aGracefulStopKeepsPersistentSnapshotsOnly() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let catalog = f.bus.directory.appendingPathComponent("catalog.db").path
                var client = try f.client()
                let (_, persistent) = try await Self.makeSet(client, volume, persistent: true)
                _ = try await Self.makeSet(client, volume, persistent: false)
                client.close()
                #expect(await f.daemon.stop() == 0)
                #expect(try volume.subvolumes().count == 1, "SIGTERM released the non-persistent copy")

                try await DaemonProcess.with(bus: f.bus, arguments: ["--catalog", catalog]) { again in
                client = try f.client()
                defer { client.close() }
                #expect(try await SC.call(client, "Query", [.vardict([])]).first?.arrayElements?.compactMap(\.objectPath) == [persistent])
                #expect(!again.log.contains("catalog reconciled"), "a clean stop leaves nothing to fix")
                #expect(try await SC.call(client, "DeleteSnapshots", [.vardict([("all", .bool(true))])]) == [.uint32(1)])
                #expect(try volume.untouched())
                }
            }
        }
    }
}
