#if canImport(Glibc)
import Glibc
#endif
import SQLite
import Synchronization

/// The catalog: the sets and snapshots that must outlive the daemon, in SQLite.
///
/// A set enters it before its provider makes any copy (its snapshots still `pending`), so a
/// daemon killed mid-commit finds at start what it may have half made; it is updated in one
/// transaction once the copies exist, before the requester hears of them.
///
/// The database is opened on first use and closed once unused for ``linger``: the catalog is
/// written a few times per snapshot set, and a daemon at rest keeps no SQLite memory.
public final class Catalog: Sendable {
    private struct Open: ~Copyable {
        var database: SQLiteDatabase?
        /// When the database was last used (CLOCK_MONOTONIC ms).
        var lastUse: UInt64 = 0
        /// Whether a task is waiting to close the database once unused for ``linger``.
        var closing = false
    }

    /// One operation at a time, so that reads never see another's half-written transaction.
    private let open = Mutex(Open())
    /// How long the database stays open after its last use.
    static let linger: Duration = .seconds(5)
    /// Where it lives, for messages.
    public let path: String
    private let logSync: LogSync

    private static let schema = """
        CREATE TABLE IF NOT EXISTS sets (
            id TEXT PRIMARY KEY, requester TEXT NOT NULL, requester_uid INTEGER NOT NULL,
            context TEXT NOT NULL, backup_type TEXT NOT NULL, persistent INTEGER NOT NULL,
            auto_release INTEGER NOT NULL, description TEXT NOT NULL, state TEXT NOT NULL,
            creation_time INTEGER NOT NULL, consistency TEXT);
        CREATE TABLE IF NOT EXISTS snapshots (
            id TEXT PRIMARY KEY, set_id TEXT NOT NULL REFERENCES sets(id) ON DELETE CASCADE,
            original_volume TEXT NOT NULL, provider TEXT NOT NULL, state TEXT NOT NULL,
            device TEXT NOT NULL, location TEXT NOT NULL, copy_consistency TEXT NOT NULL,
            exposed_path TEXT NOT NULL, creation_ns INTEGER NOT NULL, attributes TEXT NOT NULL,
            store TEXT NOT NULL DEFAULT '');
        CREATE TABLE IF NOT EXISTS storage (
            id TEXT PRIMARY KEY, for_volume TEXT NOT NULL UNIQUE, location TEXT NOT NULL,
            max_bytes INTEGER NOT NULL, policy TEXT NOT NULL);
        PRAGMA user_version = 2;
        """
    /// Version 1 had no shadow storage and no store per copy.
    private static let fromVersion1 = "ALTER TABLE snapshots ADD COLUMN store TEXT NOT NULL DEFAULT '';"


    /// Opens the catalog at `path` (absolute), making its directory (mode 0700) and tables when
    /// missing.
    public init(path: String) throws(ShadowCopyError) {
        guard path.hasPrefix("/") else { throw .invalidArgs("the catalog's path must be absolute, not '\(path)'") }
        self.path = path
        logSync = LogSync(databasePath: path)
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            let directory = String(path[..<slash])
            if mkdir(directory, 0o700) != 0, errno != EEXIST {
                throw .failed("cannot make the catalog's directory \(directory): \(String(cString: strerror(errno)))")
            }
        }
        do {
            try Catalog.connect(path) { db throws(SQLiteDatabase.Failure) in
                let version = try db.run("PRAGMA user_version").first?.first?.integer ?? 0
                guard version <= 2 else {
                    throw SQLiteDatabase.Failure(operation: "open", code: 0,
                                                 message: "schema version \(version) is newer than this shadowcopyd knows")
                }
                if version == 1 { try db.execute(Catalog.fromVersion1) }
                try db.execute(Catalog.schema)
            }
        } catch {
            throw .failed("catalog \(path): \(error)")
        }
    }

    private static func connect<R>(_ path: String, _ body: (SQLiteDatabase) throws(SQLiteDatabase.Failure) -> R)
        throws(SQLiteDatabase.Failure) -> R
    {
        let db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
        // A small log, kept between opens, is rewritten in place (see keepWriteAheadLog); the
        // catalog holds a few rows per copy, so 128 pages (512 KiB) is plenty between checkpoints.
        try db.keepWriteAheadLog()
        try db.execute("PRAGMA wal_autocheckpoint = 128")
        return try body(db)
    }

    /// Runs `body` on the open database, opening it when closed, and schedules its close.
    private func withDatabase<R>(_ body: (SQLiteDatabase) throws(SQLiteDatabase.Failure) -> R)
        throws(SQLiteDatabase.Failure) -> R
    {
        var scheduleClose = false
        let result = try open.withLock { state throws(SQLiteDatabase.Failure) -> Result<R, SQLiteDatabase.Failure> in
            let db: SQLiteDatabase
            if let existing = state.database {
                db = existing
            } else {
                db = try Catalog.connect(path) { $0 }
                state.database = db
            }
            state.lastUse = Clock.monotonicMs()
            scheduleClose = !state.closing
            state.closing = true
            do throws(SQLiteDatabase.Failure) { return .success(try body(db)) } catch { return .failure(error) }
        }
        // One closing task per open period, not one per use: a set's making uses the catalog
        // several times, and every task and timer costs a wake-up on the hot path.
        if scheduleClose {
            Task { [weak self] in
                let linger = UInt64(Catalog.linger.components.seconds) * 1000
                while let self {
                    let wait = self.open.withLock { state -> UInt64 in
                        let idle = Clock.monotonicMs() - state.lastUse
                        guard idle >= linger else { return linger - idle }
                        state.database = nil
                        state.closing = false
                        return 0
                    }
                    if wait == 0 { return }
                    try? await Task.sleep(for: .milliseconds(wait))
                }
            }
        }
        return try result.get()
    }

    /// Starts flushing every write made so far to disk, in the background (see ``syncWrites()``).
    public func startSync() { logSync.start() }

    /// Returns once every write made before the call is on disk: a write made without
    /// `durable`, then, is as durable as one made with it, and the flush can overlap other work
    /// when ``startSync()`` began it early.
    public func syncWrites() async throws(ShadowCopyError) { try await logSync.wait() }

    /// Whether every write made so far is known to be on disk.
    var isSynced: Bool { logSync.isSynced }

    /// Whether the database is open now (it closes once unused for ``linger``).
    var isOpen: Bool { open.withLock { $0.database != nil } }

    /// What the catalog holds, as records the engine can take back.
    public struct Contents: Sendable {
        public var sets: [SnapshotSetRecord] = []
        public var snapshots: [SnapshotRecord] = []
        public var storage: [ShadowStorageRecord] = []
    }

    /// Writes one shadow storage area, replacing what was there.
    public func save(storage area: ShadowStorageRecord) throws(ShadowCopyError) {
        try write(durable: true) { db throws(SQLiteDatabase.Failure) in
            try db.run("INSERT OR REPLACE INTO storage VALUES (?, ?, ?, ?, ?)", [
                .text(area.id.hex), .text(area.forVolume), .text(area.location),
                .integer(Int64(clamping: area.maxBytes)), .text(area.policy.rawValue),
            ])
        }
    }

    /// Removes one shadow storage area.
    public func forget(storage id: Identifier) throws(ShadowCopyError) {
        try write { db throws(SQLiteDatabase.Failure) in try db.run("DELETE FROM storage WHERE id = ?", [.text(id.hex)]) }
    }

    /// Writes `set` and `snapshots` (all of the set's) in one transaction, replacing what was there.
    ///
    /// A `durable` write is on disk when this returns (fsync). Others survive the daemon's death
    /// but may be lost with the machine's power until ``syncWrites()``. Two records must be on
    /// disk: the one made before a provider makes copies (what a lost later write leaves behind,
    /// a pending snapshot, is exactly what the next start cleans up), and a persistent set's
    /// record once it is made, before its requester hears of it.
    public func save(_ set: SnapshotSetRecord, _ snapshots: [SnapshotRecord], durable: Bool = false) throws(ShadowCopyError) {
        try write(durable: durable) { db throws(SQLiteDatabase.Failure) in
            try db.run("""
                INSERT OR REPLACE INTO sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [
                    .text(set.id.hex), .text(set.requester), .integer(Int64(set.requesterUID)),
                    .text(set.context.rawValue), .text(set.backupType.rawValue), .integer(set.persistent ? 1 : 0),
                    .integer(set.autoRelease ? 1 : 0), .text(set.description), .text(set.state.rawValue),
                    .integer(Int64(set.creationTime)), set.consistency.map { .text($0.rawValue) } ?? .null,
                ])
            try db.run("DELETE FROM snapshots WHERE set_id = ?", [.text(set.id.hex)])
            for snapshot in snapshots { try insert(snapshot, db) }
        }
    }

    /// Writes one snapshot's row again (after Expose or Unexpose).
    public func update(_ snapshot: SnapshotRecord) throws(ShadowCopyError) {
        try write { db throws(SQLiteDatabase.Failure) in
            try db.run("DELETE FROM snapshots WHERE id = ?", [.text(snapshot.id.hex)])
            try insert(snapshot, db)
        }
    }

    /// Removes one snapshot, and its set when it was the set's last.
    public func forget(snapshot: Identifier) throws(ShadowCopyError) {
        try write { db throws(SQLiteDatabase.Failure) in
            let set = try db.run("SELECT set_id FROM snapshots WHERE id = ?", [.text(snapshot.hex)]).first?.first
            try db.run("DELETE FROM snapshots WHERE id = ?", [.text(snapshot.hex)])
            if let set {
                try db.run("DELETE FROM sets WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM snapshots WHERE set_id = ?1)",
                           [set])
            }
        }
    }

    /// Removes a set and its snapshots.
    public func forget(set: Identifier) throws(ShadowCopyError) {
        try write { db throws(SQLiteDatabase.Failure) in
            try db.run("DELETE FROM snapshots WHERE set_id = ?", [.text(set.hex)])
            try db.run("DELETE FROM sets WHERE id = ?", [.text(set.hex)])
        }
    }

    /// Everything the catalog holds. Rows it cannot read back are reported, not guessed at.
    public func load() throws(ShadowCopyError) -> (Contents, unreadable: [String]) {
        do {
            return try withDatabase { db throws(SQLiteDatabase.Failure) in
                var contents = Contents()
                var unreadable: [String] = []
                for row in try db.run("SELECT * FROM sets") {
                    if let set = Catalog.set(row) { contents.sets.append(set) } else { unreadable.append("set \(row.first?.text ?? "?")") }
                }
                for row in try db.run("SELECT id, for_volume, location, max_bytes, policy FROM storage") {
                    if let area = Catalog.storage(row) { contents.storage.append(area) }
                    else { unreadable.append("shadow storage \(row.first?.text ?? "?")") }
                }
                for row in try db.run("""
                    SELECT id, set_id, original_volume, provider, state, device, location, copy_consistency,
                           exposed_path, creation_ns, attributes, store FROM snapshots
                    """) {
                    if let snapshot = Catalog.snapshot(row) { contents.snapshots.append(snapshot) }
                    else { unreadable.append("snapshot \(row.first?.text ?? "?")") }
                }
                return (contents, unreadable)
            }
        } catch {
            throw .failed("catalog \(path): \(error)")
        }
    }

    private func write(durable: Bool = false, _ body: (SQLiteDatabase) throws(SQLiteDatabase.Failure) -> Void)
        throws(ShadowCopyError)
    {
        do {
            try withDatabase { db throws(SQLiteDatabase.Failure) in
                try db.execute(durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
                try db.transaction { () throws(SQLiteDatabase.Failure) in try body(db) }
                logSync.committed(durable: durable)
            }
        } catch {
            throw .failed("catalog \(path): \(error)")
        }
    }

    private func insert(_ s: SnapshotRecord, _ db: SQLiteDatabase) throws(SQLiteDatabase.Failure) {
        try db.run("""
            INSERT INTO snapshots (id, set_id, original_volume, provider, state, device, location, copy_consistency,
                                   exposed_path, creation_ns, attributes, store)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [
            .text(s.id.hex), .text(s.set.hex), .text(s.originalVolume), .text(s.provider), .text(s.state.rawValue),
            .text(s.copy?.device ?? ""), .text(s.copy?.location ?? ""),
            .text(s.copy?.consistency.rawValue ?? Consistency.crash.rawValue), .text(s.exposedPath),
            .integer(Int64(s.creationNs)), .text(s.attributes.joined(separator: ",")), .text(s.copy?.store ?? ""),
        ])
    }

    private static func set(_ row: [SQLiteDatabase.Value]) -> SnapshotSetRecord? {
        guard row.count == 11, let id = row[0].text.flatMap(Identifier.init), let requester = row[1].text,
            let uid = row[2].integer.flatMap(UInt32.init(exactly:)), let context = row[3].text.flatMap(SetContext.init),
            let backupType = row[4].text.flatMap(BackupType.init), let persistent = row[5].integer,
            let autoRelease = row[6].integer, let description = row[7].text,
            let state = row[8].text.flatMap(SetState.init), let created = row[9].integer.flatMap(UInt64.init(exactly:))
        else { return nil }
        var set = SnapshotSetRecord(
            id: id, requester: requester, requesterUID: uid, context: context, isRestore: false,
            backupType: backupType, persistent: persistent != 0, autoRelease: autoRelease != 0,
            description: description, creationTime: created, lastActivity: Clock.monotonicMs())
        set.state = state
        set.consistency = row[10].text.flatMap(Consistency.init)
        return set
    }

    private static func snapshot(_ row: [SQLiteDatabase.Value]) -> SnapshotRecord? {
        guard row.count == 12, let id = row[0].text.flatMap(Identifier.init), let set = row[1].text.flatMap(Identifier.init),
            let volume = row[2].text, let provider = row[3].text, let state = row[4].text.flatMap(SnapshotRecord.State.init),
            let device = row[5].text, let location = row[6].text,
            let consistency = row[7].text.flatMap(Consistency.init), let exposed = row[8].text,
            let created = row[9].integer.flatMap(UInt64.init(exactly:)), let attributes = row[10].text,
            let store = row[11].text
        else { return nil }
        var snapshot = SnapshotRecord(id: id, set: set, originalVolume: volume, provider: provider)
        snapshot.state = state
        // An invalid copy that was cleaned up has nothing left to point at.
        if state != .pending, !(state == .invalid && device.isEmpty && location.isEmpty && store.isEmpty) {
            snapshot.copy = CommittedCopy(device: device, location: location, consistency: consistency, store: store)
        }
        snapshot.exposedPath = exposed
        snapshot.creationNs = created
        snapshot.attributes = attributes.isEmpty ? [] : attributes.split(separator: ",").map(String.init)
        return snapshot
    }

    private static func storage(_ row: [SQLiteDatabase.Value]) -> ShadowStorageRecord? {
        guard row.count == 5, let id = row[0].text.flatMap(Identifier.init), let volume = row[1].text,
            let location = row[2].text, let max = row[3].integer.flatMap(UInt64.init(exactly:)),
            let policy = row[4].text.flatMap(OverflowPolicy.init)
        else { return nil }
        return ShadowStorageRecord(id: id, forVolume: volume, location: location, maxBytes: max, policy: policy)
    }
}
