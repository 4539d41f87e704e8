import DBus
import Foundation
import SQLite
import ShadowCopyTestSupport
import Testing

/// `shadowcopy-writer sqlite` with a process writing continuously: every copy is intact and
/// holds exactly the rows committed before Freeze.
@Suite("The SQLite writer", .serialized)
struct SQLiteWriterTests {
    /// Rows in table t, and the highest id.
    static func rows(_ path: String) throws -> (count: Int64, max: Int64) {
        let db = try SQLiteDatabase(path: path)
        let row = try db.run("SELECT count(*), coalesce(max(id), 0) FROM t").first ?? []
        return (row.first?.integer ?? -1, row.last?.integer ?? -1)
    }

    @Test func twentyCopiesUnderLoadAreIntactAndHoldExactlyWhatWasCommittedBeforeFreeze() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let database = volume.mountPoint + "/app.db"
                let setup = try SQLiteDatabase(path: database)
                try setup.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB);")
                let load = try ChildProcess(ProjectPaths.systemPython,
                                            [ProjectPaths.root.appendingPathComponent("Tests/tools/sqlite-load.py").path, database])
                defer { _ = load.stop(signal: SIGKILL) }
                let writer = try await SQLiteWriterProcess(bus: f.bus, name: "app-db", databases: [database])
                // A writer after it answers Freeze only when told: the freeze stays open while the
                // test looks at the live database under the SQLite writer's lock.
                let release = f.bus.directory.appendingPathComponent("release-freeze").path
                let slow = try await PythonWriter(bus: f.bus, name: "slow", level: "system", extra: ["--freeze-until", release])
                defer { writer.stop(); slow.stop() }
                let client = try f.client()
                defer { client.close() }
                let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-test-sqlite-\(UInt32.random(in: 0...UInt32.max))").path
                try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: scratch) }

                var previous: Int64 = 0
                for round in 1...20 {
                    try await Task.sleep(for: .milliseconds(50))
                    let set = try await RequesterSet.start(client)
                    let snapshot = try await set.prepare(volume: volume.mountPoint)
                    let job = try #require(try await set.call("DoSnapshotSet").first?.objectPath)
                    #expect(try await SC.eventually(.seconds(10)) { writer.events.filter { $0 == "locked" }.count == round })
                    #expect(try await SC.eventually(.seconds(10)) { slow.events.filter { $0 == "Freeze" }.count == round })
                    // Nothing can commit while the lock is held: this is what was committed before Freeze.
                    let frozen = try Self.rows(database)
                    #expect(!writer.events.contains { $0.hasPrefix("unlocked") && writer.events.filter { $0 == "locked" }.count == round
                        && writer.events.filter { $0.hasPrefix("unlocked") }.count == round }, "still locked while counted")
                    _ = FileManager.default.createFile(atPath: release, contents: nil)
                    _ = try await SC.call(client, "Wait", [.uint32(30_000)], path: job, interface: RequesterSet.job)
                    let state = try await set.property(job, RequesterSet.job, "State")
                    let why = try await set.property(job, RequesterSet.job, "ErrorMessage")
                    #expect(state == "succeeded", "\(why) \(writer.events.suffix(6))")
                    guard state == "succeeded" else { break }
                    #expect(writer.events.filter { $0.hasPrefix("unlocked thaw") }.count == round, "released at Thaw")

                    let exposed = try #require(try await SC.call(client, "Expose", [.vardict([])], path: snapshot,
                                                                 interface: SnapshotSetTests.snapshotInterface).first?.string)
                    // The copy is read-only; SQLite replays its WAL in a writable place.
                    let copy = scratch + "/copy-\(round).db"
                    for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: exposed + "/app.db" + suffix) {
                        try FileManager.default.copyItem(atPath: exposed + "/app.db" + suffix, toPath: copy + suffix)
                    }
                    let check = try SQLiteDatabase(path: copy).run("PRAGMA integrity_check").first?.first?.text
                    #expect(check == "ok", "copy \(round): \(check ?? "?")")
                    let copied = try Self.rows(copy)
                    #expect(copied.count == frozen.count && copied.max == frozen.max,
                            "copy \(round) holds \(copied), committed before Freeze \(frozen)")
                    #expect(copied.count == copied.max, "rows 1...n, none missing")
                    #expect(copied.count > previous, "the load went on between copies")
                    previous = copied.count
                    _ = try await set.call("Delete")
                }
                #expect(load.isRunning, "the application kept writing through 20 copies")
                #expect(try Self.rows(database).count > previous)
                #expect(writer.events.filter { $0.hasPrefix("checkpoint") }.count == 20)
                #expect(try volume.untouched(), "every copy deleted, no hidden folder left")
            }
        }
    }
}
