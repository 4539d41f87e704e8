import DBus
import Foundation
import SQLite
import ShadowCopyWriter
import Synchronization

/// The SQLite writer: makes configured database files consistent on disk for a copy.
///
/// PrepareForSnapshot checkpoints each database's WAL into the main file; Freeze takes each
/// database's write lock (`BEGIN IMMEDIATE`), so no transaction can commit while the copy is
/// made and the copy holds exactly what was committed before; Thaw, Abort or BackupShutdown
/// release it, and so does the freeze timeout, whatever happens to the coordinator.
final class SQLiteWriter: WriterHandlers {
    let databases: [String]
    let freezeTimeoutMs: UInt32
    let log: EventLog
    /// The connections holding each set's locks.
    private let held = Mutex<[ObjectPath: [SQLiteDatabase]]>([:])

    init(databases: [String], freezeTimeoutMs: UInt32, log: EventLog) {
        self.databases = databases
        self.freezeTimeoutMs = freezeTimeoutMs
        self.log = log
    }

    func identify() async throws -> [WriterComponent] {
        log.note("Identify")
        return databases.map { path in
            let url = URL(fileURLWithPath: path)
            return WriterComponent(logicalPath: url.deletingLastPathComponent().path, name: url.lastPathComponent,
                                   type: "database", paths: [path, path + "-wal", path + "-shm", path + "-journal"])
        }
    }

    func prepareForSnapshot(set: ObjectPath, volumes: [String]) async throws {
        log.note("PrepareForSnapshot")
        for path in databases {
            do {
                let db = try SQLiteDatabase(path: path)
                // PASSIVE never waits on the application: a checkpoint only shortens what the
                // copy must replay, and the lock taken at Freeze makes the copy consistent.
                let result = try db.run("PRAGMA wal_checkpoint(PASSIVE)")
                log.note("checkpoint \(path) \(result.first?.compactMap(\.integer) ?? [])")
            } catch {
                throw WriterVeto(.retryable, "cannot checkpoint \(path): \(error)")
            }
        }
    }

    func freeze(set: ObjectPath) async throws {
        log.note("Freeze")
        var locked: [SQLiteDatabase] = []
        for path in databases {
            do {
                let db = try SQLiteDatabase(path: path)
                try db.execute("BEGIN IMMEDIATE")
                locked.append(db)
            } catch {
                for db in locked { try? db.execute("ROLLBACK") }
                throw WriterVeto(.retryable, "cannot take the write lock of \(path): \(error)")
            }
        }
        held.withLock { $0[set] = locked }
        log.note("locked")
        // Never past the freeze timeout, even if Thaw never comes (the coordinator died).
        let limit = freezeTimeoutMs
        Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(Int(limit)))
            self?.release(set, why: "freeze timeout")
        }
    }

    func thaw(set: ObjectPath) async throws { log.note("Thaw"); release(set, why: "thaw") }
    func abort(set: ObjectPath) async throws { log.note("Abort"); release(set, why: "abort") }
    func backupShutdown(set: ObjectPath) async throws { log.note("BackupShutdown"); release(set, why: "shutdown") }
    func prepareForBackup(set: ObjectPath, backup: BackupInfo) async throws { log.note("PrepareForBackup") }
    func postSnapshot(set: ObjectPath, devices: [String: String]) async throws { log.note("PostSnapshot") }
    func backupComplete(set: ObjectPath, backup: BackupInfo) async throws { log.note("BackupComplete") }

    private func release(_ set: ObjectPath, why: String) {
        guard let locks = held.withLock({ $0.removeValue(forKey: set) }) else { return }
        for db in locks { try? db.execute("ROLLBACK") }
        log.note("unlocked \(why)")
    }
}
