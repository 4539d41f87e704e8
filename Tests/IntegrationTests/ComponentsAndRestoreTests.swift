import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// Component selection (VSS component mode), writers' metadata and verdicts, and restores.
@Suite("Components, backup verdicts and restores", .serialized)
struct ComponentsAndRestoreTests {
    /// The writer object path of the writer named `name`, from ObjectManager.
    static func writerPath(_ client: Connection, named name: String) async throws -> ObjectPath {
        let objects = try await SC.managedObjects(client)
        return try #require(objects.first { _, interfaces in
            interfaces[SC.writer.rawValue]?["Name"]?.string == name
        }?.key)
    }

    @Test func onlyWritersWithSelectedComponentsTakePartAndHearTheVerdicts() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let chosen = try await PythonWriter(bus: f.bus, name: "chosen")
                let other = try await PythonWriter(bus: f.bus, name: "other", level: "back-end")
                defer { chosen.stop(); other.stop() }
                let client = try f.client()
                defer { client.close() }
                let chosenPath = try await Self.writerPath(client, named: "chosen")
                let otherPath = try await Self.writerPath(client, named: "other")

                let set = try await RequesterSet.start(client)
                _ = try await set.call("SetBackupState", [.vardict([
                    ("select-components", .bool(true)), ("backup-type", .string("incremental")),
                ])])
                #expect(try await set.run("GatherWriterMetadata") == ("succeeded", ""))
                let metadata = try #require(try await set.call("GetWriterMetadata", []).first?.arrayElements)
                let byWriter = Dictionary(uniqueKeysWithValues: metadata.compactMap { entry -> (ObjectPath, [String: Value])? in
                    guard let m = entry.structMembers, let path = m[0].objectPath, let dict = m[1].vardict else { return nil }
                    return (path, dict)
                })
                #expect(Set(byWriter.keys) == [chosenPath, otherPath])
                let components = byWriter[chosenPath]?["components"]?.arrayElements?.compactMap { $0.vardict?["name"]?.string }
                #expect(components == ["chosen"], "the writer's own Identify metadata, as it sent it")

                // A component the writer does not have, and one of a writer that gave no metadata, are refused.
                #expect(await SC.errorName { _ = try await set.call("AddComponent", [.objectPath(chosenPath), .string(""), .string("nope"), .vardict([])]) }
                        == "org.shadowcopy.ShadowCopy1.Error.NotFound")
                _ = try await set.call("AddComponent", [.objectPath(chosenPath), .string(""), .string("chosen"), .vardict([])])
                _ = try await set.call("AddVolume", [.string(volume.mountPoint), .vardict([])])
                #expect(try await set.run("PrepareForBackup") == ("succeeded", ""))
                #expect(try await set.run("DoSnapshotSet") == ("succeeded", ""))

                // SetBackupSucceeded takes only what was added, and only after the copy.
                #expect(await SC.errorName { _ = try await set.call("SetBackupSucceeded", [.objectPath(otherPath), .string(""), .string("other"), .bool(true), .vardict([])]) }
                        == "org.shadowcopy.ShadowCopy1.Error.NotFound")
                _ = try await set.call("SetBackupSucceeded", [.objectPath(chosenPath), .string(""), .string("chosen"), .bool(true), .vardict([])])
                #expect(try await set.run("BackupComplete") == ("succeeded", ""))
                #expect(try await set.state() == "completed")
                _ = try await set.call("Delete")

                #expect(chosen.calls == ["Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot",
                                         "BackupComplete", "BackupShutdown"])
                #expect(chosen.events.contains("detail PrepareForBackup backup-type=incremental components=chosen"))
                #expect(chosen.events.contains("detail BackupComplete backup-type=incremental components=chosen:ok"))
                // VSS: a writer with no selected component gets no further events; Identify named
                // no set, so it has no set to hear the end of either.
                #expect(other.calls == ["Identify"])
                #expect(try volume.untouched())
            }
        }
    }

    @Test func aRestoreRunsPreRestoreThenPostRestoreOnEveryWriter() async throws {
        try await DaemonFixture.with { f in
            let first = try await PythonWriter(bus: f.bus, name: "first")
            let second = try await PythonWriter(bus: f.bus, name: "second", level: "system")
            defer { first.stop(); second.stop() }
            let client = try f.client()
            defer { client.close() }
            let reply = try await SC.call(client, "StartRestore", [.vardict([])])
            let set = RequesterSet(client: client, path: try #require(reply.first?.objectPath))
            // Out of order, and a backup phase on a restore set, are refused.
            #expect(await SC.errorName { _ = try await set.call("PostRestore") } == "org.shadowcopy.ShadowCopy1.Error.BadState")
            #expect(try await set.run("GatherWriterMetadata") == ("succeeded", ""))
            #expect(await SC.errorName { _ = try await set.call("AddVolume", [.string("/"), .vardict([])]) }
                    == "org.shadowcopy.ShadowCopy1.Error.BadState")
            #expect(try await set.run("PreRestore") == ("succeeded", ""))
            #expect(try await set.state() == "restore-prepared")
            #expect(try await set.run("PostRestore") == ("succeeded", ""))
            #expect(try await set.state() == "restored")
            _ = try await set.call("Delete")
            for writer in [first, second] {
                #expect(writer.calls == ["Identify", "PreRestore", "PostRestore", "BackupShutdown"], "\(writer.name)")
            }
        }
    }

    @Test func aVetoInPreRestoreFailsTheRestore() async throws {
        try await DaemonFixture.with { f in
            let refusing = try await PythonWriter(bus: f.bus, name: "refusing", extra: ["--veto", "PreRestore"])
            defer { refusing.stop() }
            let client = try f.client()
            defer { client.close() }
            let reply = try await SC.call(client, "StartRestore", [.vardict([])])
            let set = RequesterSet(client: client, path: try #require(reply.first?.objectPath))
            #expect(try await set.run("GatherWriterMetadata") == ("succeeded", ""))
            #expect(try await set.run("PreRestore") == ("failed", "org.shadowcopy.ShadowCopy1.Error.WriterRetryable"))
            let status = try #require(try await set.call("GatherWriterStatus", []).first?.arrayElements?.first?.structMembers)
            #expect(status[1].string == "failed-at-pre-restore")
            #expect(status[2].string == "org.shadowcopy.ShadowCopy1.Error.WriterRetryable")
            _ = try await set.call("Delete")
        }
    }
}
