import DBus
import Foundation
import ShadowCopyTestSupport

/// What each real writer costs: DoSnapshotSet with that writer alone, and its Freeze-to-Thaw
/// window as it logs it, next to the same set with no writer at all.
extension SnapshotBench {
    static let writerRounds = 10

    func writerCosts(_ results: inout Results) async throws {
        let baseline = try await doSnapshotSetTimes(rounds: Self.writerRounds)
        results.lines.append("| DoSnapshotSet, no writer (ms, median of \(Self.writerRounds)) | \(Self.format(Self.median(baseline))) | | | printed |")

        // Hook scripts: one trivial script, as a qemu-ga hook directory would hold.
        let hooks = try HookDirectory(["10-sync": "#!/bin/sh\nexit 0\n"])
        defer { hooks.remove() }
        try await measure("hooks (one script)", baseline: baseline, into: &results) {
            try await HooksWriterProcess(bus: bus, name: "bench-hooks", directory: hooks.path)
        }

        // SQLite: a database with a busy writer process.
        let database = volume.mountPoint + "/bench.db"
        _ = try Tool.run("/usr/bin/python3", ["-c", """
            import sqlite3; db = sqlite3.connect('\(database)'); db.execute('PRAGMA journal_mode=WAL')
            db.execute('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)'); db.commit()
            """])
        let load = try ChildProcess("/usr/bin/python3", [ProjectPaths.root.appendingPathComponent("Tests/tools/sqlite-load.py").path, database])
        defer { _ = load.stop(signal: SIGKILL) }
        try await measure("sqlite (under load)", baseline: baseline, into: &results) {
            try await SQLiteWriterProcess(bus: bus, name: "bench-sqlite", databases: [database])
        }
        _ = load.stop(signal: SIGKILL)

        // PostgreSQL 15 under pgbench, when it is installed.
        guard FileManager.default.isExecutableFile(atPath: PostgresCluster.bin + "/postgres") else {
            print("PostgreSQL 15 is not installed (apt-get install postgresql-15): its writer was not measured")
            results.lines.append("| postgresql writer | not measured: PostgreSQL 15 not installed | | | printed |")
            return
        }
        let port = Int.random(in: 30_000..<40_000)
        let data = volume.mountPoint + "/pgdata"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        _ = try Tool.run("/usr/bin/chown", ["postgres:postgres", data])
        let cluster = try PostgresCluster(data: data, port: port)
        defer { cluster.stop() }
        try cluster.initdb()
        try cluster.start()
        _ = try PostgresCluster.asPostgres("pgbench", ["-i", "-q", "-s", "1", "-h", cluster.socket, "-p", "\(port)", "-U", "postgres", "postgres"])
        let pgbench = try ChildProcess("/usr/sbin/runuser", ["-u", "postgres", "--", PostgresCluster.bin + "/pgbench", "-c", "2",
                                                             "-T", "300", "-h", cluster.socket, "-p", "\(port)", "-U", "postgres", "postgres"],
                                       stdout: "/dev/null", stderr: "/dev/null")
        defer { _ = pgbench.stop(signal: SIGKILL) }
        let labels = bus.directory.appendingPathComponent("labels").path
        try await measure("postgresql (under pgbench)", baseline: baseline, into: &results) {
            try await PostgreSQLWriterProcess(bus: bus, name: "bench-postgresql", dataDirectory: data, socketDirectory: cluster.socket,
                                              port: port, labelDirectory: labels, bin: PostgresCluster.bin)
        }
    }

    /// Starts one writer, makes sets with it alone, and prints what it added and its window.
    private func measure(_ what: String, baseline: [Double], into results: inout Results,
                         _ start: () async throws -> PeerProcess) async throws {
        let writer = try await start()
        defer { writer.stop() }
        let times = try await doSnapshotSetTimes(rounds: Self.writerRounds)
        // The writer's own log: each Freeze to the Thaw after it.
        var windows: [Double] = []
        var frozenAt: UInt64?
        for (time, event) in writer.timedEvents {
            if event == "Freeze" { frozenAt = time }
            if event == "Thaw", let start = frozenAt { windows.append(Double(time - start) / 1e6); frozenAt = nil }
        }
        let added = Self.median(times) - Self.median(baseline)
        results.lines.append("| DoSnapshotSet with the \(what) writer (ms) | \(Self.format(Self.median(times))) | "
            + "adds \(Self.format(added)) ms; Freeze-to-Thaw \(windows.isEmpty ? "?" : Self.format(Self.median(windows))) ms | "
            + "\(Self.format(Self.median(times) / Self.median(baseline))) | printed |")
    }

    /// DoSnapshotSet (with its job) of writerful sets, each deleted after.
    private func doSnapshotSetTimes(rounds: Int) async throws -> [Double] {
        var times: [Double] = []
        for _ in 0..<rounds {
            let (set, took) = try await makeSet(writers: true)
            times.append(Self.milliseconds(took))
            try await deleteSet(set)
        }
        return times
    }
}
