import DBus
import Foundation
import ShadowCopyWriter
import Synchronization

/// A `psql` session held open across a backup: pg_backup_start and pg_backup_stop must run on
/// the same connection (non-exclusive backups end with their session).
final class PSQLSession: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSLock()

    init(psql: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: psql)
        process.arguments = arguments + ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=terse"]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    /// Runs `sql` (one statement); returns its output lines, or throws with PostgreSQL's error.
    func run(_ sql: String, timeoutMs: Int = 120_000) throws -> [String] {
        lock.lock()
        defer { lock.unlock() }
        let marker = "__shadowcopy_\(UInt32.random(in: 0...UInt32.max))__"
        input.fileHandleForWriting.write(Data("\(sql)\n\\echo \(marker)\n".utf8))
        var lines: [String] = []
        var buffer = Data()
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while Date() < deadline {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw PSQLError(message: "psql ended: \(String(decoding: buffer, as: UTF8.self))") }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                if line == marker {
                    if let error = lines.first(where: { $0.hasPrefix("ERROR:") || $0.contains("FATAL:") || $0.hasPrefix("psql:") }) {
                        throw PSQLError(message: error)
                    }
                    return lines
                }
                lines.append(line)
            }
        }
        throw PSQLError(message: "no answer to \(sql.prefix(40)) within \(timeoutMs) ms")
    }

    func close() {
        input.fileHandleForWriting.closeFile()
        process.waitUntilExit()
    }

    struct PSQLError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}

/// The PostgreSQL writer: PostgreSQL's own low-level backup API around the copy.
///
/// PrepareForSnapshot runs CHECKPOINT, then `pg_backup_start` (fast, non-exclusive) on a
/// session held until the end; Freeze runs `pg_backup_stop` on it and writes the backup label
/// (and tablespace map) where a restore finds them: `<label-directory>/<set>.backup_label`.
/// The backup ends before the copy is made, so the copy's own pg_wal holds every WAL record
/// from the backup's start to its end: no archive is needed to recover it. A restore copies the
/// data directory out of the copy and puts that file in it as `backup_label`; PostgreSQL then
/// recovers from the backup's start. Abort ends backup mode.
final class PostgreSQLWriter: WriterHandlers {
    let dataDirectory: String
    let connection: [String]
    let labelDirectory: String
    let psql: String
    let log: EventLog
    private let sessions = Mutex<[ObjectPath: PSQLSession]>([:])

    init(dataDirectory: String, connection: [String], labelDirectory: String, psql: String, log: EventLog) {
        self.dataDirectory = dataDirectory
        self.connection = connection
        self.labelDirectory = labelDirectory
        self.psql = psql
        self.log = log
    }

    func identify() async throws -> [WriterComponent] {
        log.note("Identify")
        var components = [WriterComponent(logicalPath: "postgresql", name: "cluster", type: "database",
                                          selectable: true, paths: [dataDirectory])]
        // pg_wal may be a link to another volume; tablespaces live in pg_tblspc.
        let wal = dataDirectory + "/pg_wal"
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: wal) {
            components.append(WriterComponent(logicalPath: "postgresql", name: "wal", type: "database", paths: [target]))
        }
        for link in (try? FileManager.default.contentsOfDirectory(atPath: dataDirectory + "/pg_tblspc")) ?? [] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dataDirectory + "/pg_tblspc/" + link) {
                components.append(WriterComponent(logicalPath: "postgresql/tablespaces", name: link, type: "database", paths: [target]))
            }
        }
        return components
    }

    func prepareForSnapshot(set: ObjectPath, volumes: [String]) async throws {
        log.note("PrepareForSnapshot")
        do {
            let session = try PSQLSession(psql: psql, arguments: connection)
            sessions.withLock { $0[set] = session }
            _ = try session.run("CHECKPOINT;")
            let lsn = try session.run("SELECT pg_backup_start('shadowcopy \(Self.setID(set))', true);")
            log.note("backup started \(lsn.first ?? "")")
        } catch {
            endSession(set)
            throw WriterVeto(.retryable, "PostgreSQL could not start a backup: \(error)")
        }
    }

    func freeze(set: ObjectPath) async throws {
        log.note("Freeze")
        guard let session = sessions.withLock({ $0[set] }) else {
            throw WriterVeto(.inconsistentSnapshot, "no backup was started for this set")
        }
        do {
            // Nothing to wait for: the copy, made after this, holds the WAL up to this point.
            let rows = try session.run("""
                SELECT translate(encode(convert_to(labelfile, 'UTF8'), 'base64'), E'\\n', ''),
                       translate(encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'base64'), E'\\n', '')
                FROM pg_backup_stop(false);
                """)
            guard let row = rows.first(where: { $0.contains("|") }) else { throw PSQLSession.PSQLError(message: "pg_backup_stop returned \(rows)") }
            let parts = row.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            try FileManager.default.createDirectory(atPath: labelDirectory, withIntermediateDirectories: true)
            let base = labelDirectory + "/" + Self.setID(set)
            try Data(base64Encoded: parts[0])?.write(to: URL(fileURLWithPath: base + ".backup_label"))
            if parts.count > 1, let map = Data(base64Encoded: parts[1]), !map.isEmpty {
                try map.write(to: URL(fileURLWithPath: base + ".tablespace_map"))
            }
            log.note("backup stopped, label at \(base).backup_label")
        } catch {
            endSession(set)
            throw WriterVeto(.inconsistentSnapshot, "PostgreSQL could not end the backup: \(error)")
        }
        endSession(set)
    }

    func abort(set: ObjectPath) async throws {
        log.note("Abort")
        if let session = sessions.withLock({ $0[set] }) { _ = try? session.run("SELECT pg_backup_stop(false);") }
        endSession(set)
    }

    func backupShutdown(set: ObjectPath) async throws {
        log.note("BackupShutdown")
        endSession(set)
    }

    func postSnapshot(set: ObjectPath, devices: [String: String]) async throws { log.note("PostSnapshot") }
    func thaw(set: ObjectPath) async throws { log.note("Thaw") }
    func prepareForBackup(set: ObjectPath, backup: BackupInfo) async throws { log.note("PrepareForBackup") }
    func backupComplete(set: ObjectPath, backup: BackupInfo) async throws { log.note("BackupComplete") }

    /// Closing the session ends a backup still in progress (non-exclusive backups die with it).
    private func endSession(_ set: ObjectPath) {
        sessions.withLock { $0.removeValue(forKey: set) }?.close()
    }

    /// The set's id, from its object path: names the label file.
    static func setID(_ set: ObjectPath) -> String { String(set.rawValue.split(separator: "/").last ?? "set") }
}
