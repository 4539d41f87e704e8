import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// `shadowcopy-writer postgresql` with PostgreSQL 15 under a pgbench load: a server started on
/// the copy recovers, and holds every transaction committed before Freeze, consistently.
@Suite("The PostgreSQL writer", .serialized)
struct PostgreSQLWriterTests {
    @Test func aServerStartedOnTheCopyRecoversWithEveryTransactionCommittedBeforeFreeze() async throws {
        // Room for the cluster, pgbench's WAL and the copy's diverging blocks (a sparse image).
        try await LoopVolume.with(sizeMiB: 2048) { volume in
            try await DaemonFixture.with { f in
                let port = Int.random(in: 20_000..<30_000)
                let data = volume.mountPoint + "/pgdata"
                try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
                _ = try Tool.run("/usr/bin/chown", ["postgres:postgres", data])
                let live = try PostgresCluster(data: data, port: port)
                defer { live.stop() }
                try live.initdb()
                try live.start()
                let setup = try PostgresCluster.asPostgres("pgbench", ["-i", "-q", "-s", "2", "-h", live.socket, "-p", "\(port)", "-U", "postgres", "postgres"])
                #expect(setup.status == 0, "\(setup.stderr)")
                let load = try ChildProcess("/usr/sbin/runuser", ["-u", "postgres", "--", PostgresCluster.bin + "/pgbench", "-c", "4", "-j", "2",
                                                                  "-T", "120", "-h", live.socket, "-p", "\(port)", "-U", "postgres", "postgres"],
                                            stdout: "/dev/null", stderr: "/dev/null")
                defer { _ = load.stop(signal: SIGKILL) }

                let labels = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-test-labels-\(port)").path
                defer { try? FileManager.default.removeItem(atPath: labels) }
                let writer = try await PostgreSQLWriterProcess(bus: f.bus, name: "postgresql", dataDirectory: data, socketDirectory: live.socket,
                                                               port: port, labelDirectory: labels, bin: PostgresCluster.bin)
                defer { writer.stop() }
                try await Task.sleep(for: .seconds(1))  // pgbench commits for a while

                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client)
                let snapshot = try await set.prepare(volume: volume.mountPoint)
                // Its metadata, as a requester reads it: the cluster as a component, and how to restore it.
                let metadata = try #require(try await set.call("GetWriterMetadata", []).first?.arrayElements?.first?.structMembers?[1].vardict)
                #expect(metadata["restore-method"]?.string == "stop-restore-start")
                let cluster = metadata["components"]?.arrayElements?.first?.vardict
                #expect(cluster?["name"]?.string == "cluster" && cluster?["type"]?.string == "database")
                #expect(cluster?["paths"]?.stringArray == [data])
                // Every transaction counted here committed before Freeze.
                let before = Int(try live.sql("SELECT count(*) FROM pgbench_history")) ?? -1
                #expect(before > 0, "pgbench is committing")
                #expect(try await set.run("DoSnapshotSet") == ("succeeded", ""))
                #expect(try await set.property(set.path, RequesterSet.interface, "Consistency") == "application")
                #expect(writer.calls == ["Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot"])
                #expect(writer.events.contains { $0.hasPrefix("backup started") } && writer.events.contains { $0.hasPrefix("backup stopped") })
                let setID = String(set.path.rawValue.split(separator: "/").last!)
                let label = try String(contentsOfFile: labels + "/\(setID).backup_label", encoding: .utf8)
                #expect(label.contains("START WAL LOCATION") && label.contains("LABEL: shadowcopy \(setID)"))

                // Restore as the writer documents: the data directory out of the copy, the label into it.
                let exposed = try #require(try await SC.call(client, "Expose", [.vardict([])], path: snapshot,
                                                             interface: SnapshotSetTests.snapshotInterface).first?.string)
                let restored = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-test-restore-\(port)").path
                defer { try? FileManager.default.removeItem(atPath: restored) }
                #expect(try Tool.run("/bin/cp", ["-a", exposed + "/pgdata", restored]).status == 0)
                try? FileManager.default.removeItem(atPath: restored + "/postmaster.pid")
                try label.write(toFile: restored + "/backup_label", atomically: true, encoding: .utf8)
                _ = try Tool.run("/usr/bin/chown", ["postgres:postgres", restored + "/backup_label"])
                let copy = try PostgresCluster(data: restored, port: port + 1)
                defer { copy.stop() }
                try copy.start()

                let recovered = Int(try copy.sql("SELECT count(*) FROM pgbench_history")) ?? -1
                #expect(recovered >= before, "the copy holds \(recovered) transactions; \(before) were committed before Freeze")
                // pgbench's invariant: every transaction moved delta through accounts, tellers and branches.
                let sums = try copy.sql("""
                    SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
                           (SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)
                    """).split(separator: "|")
                #expect(sums.count == 4 && Set(sums).count == 1, "balances and history agree: \(sums)")
                #expect(try copy.sql("SELECT pg_is_in_recovery()") == "f", "recovery finished")
                #expect(Int(try live.sql("SELECT count(*) FROM pgbench_history")) ?? 0 > recovered, "the live cluster went on")

                copy.stop()
                _ = try await set.call("Delete")
            }
        }
    }
}
