#if canImport(Glibc)
import Glibc
#endif
@testable import ShadowCopyCore
import SQLite
import Testing

@Suite("Catalog (SQLite, a file per test)")
struct CatalogUnitTests {
    /// A catalog in a fresh directory, removed afterwards.
    static func withCatalog(_ body: (Catalog, String) throws -> Void) throws {
        var template = Array("/tmp/shadowcopy-catalog-XXXXXX".utf8CString)
        let directory = String(cString: try #require(mkdtemp(&template)))
        defer {
            for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] { unlink(directory + "/" + name) }
            rmdir(directory + "/state")
            rmdir(directory)
        }
        try body(try Catalog(path: directory + "/catalog.db"), directory)
    }

    /// A catalog path in a fresh directory; the database, its log and the directory go afterwards.
    static func withPath(_ body: (String) async throws -> Void) async throws {
        var template = Array("/tmp/shadowcopy-catalog-XXXXXX".utf8CString)
        let directory = String(cString: try #require(mkdtemp(&template)))
        let path = directory + "/catalog.db"
        defer {
            for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
            rmdir(directory)
        }
        try await body(path)
    }

    static func set(persistent: Bool) -> SnapshotSetRecord {
        var set = SnapshotSetRecord(
            id: Identifier(), requester: ":1.7", requesterUID: 1000, context: .backup, isRestore: false,
            backupType: .incremental, persistent: persistent, autoRelease: true, description: "nightly, \"db\"",
            creationTime: 1_700_000_000, lastActivity: 0)
        set.state = .snapshotted
        set.consistency = .application
        return set
    }

    @Test func keepsEveryFieldOfSetsAndSnapshots() throws {
        try Self.withCatalog { catalog, _ in
            var set = Self.set(persistent: true)
            var made = SnapshotRecord(id: Identifier(), set: set.id, originalVolume: "/srv/it's here", provider: "btrfs")
            made.state = .created
            made.copy = CommittedCopy(device: "", location: "/srv/.shadowcopy/x", consistency: .filesystem, store: "/var/x.cow")
            made.exposedPath = "/run/shadowcopy/x"
            made.creationNs = 1_700_000_001_123_456_789
            made.attributes = ["persistent", "auto-release", "backup"]
            let pending = SnapshotRecord(id: Identifier(), set: set.id, originalVolume: "/home", provider: "btrfs")
            set.snapshots = [made.id, pending.id]
            try catalog.save(set, [made, pending])

            let (contents, unreadable) = try catalog.load()
            #expect(unreadable.isEmpty)
            let loadedSet = try #require(contents.sets.first)
            #expect(loadedSet.id == set.id && loadedSet.requester == ":1.7" && loadedSet.requesterUID == 1000)
            #expect(loadedSet.backupType == .incremental && loadedSet.persistent && loadedSet.autoRelease)
            #expect(loadedSet.description == "nightly, \"db\"" && loadedSet.state == .snapshotted)
            #expect(loadedSet.consistency == .application && loadedSet.creationTime == 1_700_000_000)
            #expect(contents.snapshots.count == 2)
            #expect(contents.snapshots.first { $0.id == made.id } == made)
            let loadedPending = try #require(contents.snapshots.first { $0.id == pending.id })
            #expect(loadedPending.state == .pending && loadedPending.copy == nil)
        }
    }

    @Test func forgettingTheLastSnapshotForgetsItsSet() throws {
        try Self.withCatalog { catalog, _ in
            let set = Self.set(persistent: false)
            var a = SnapshotRecord(id: Identifier(), set: set.id, originalVolume: "/a", provider: "btrfs")
            a.state = .created
            a.copy = CommittedCopy(device: "", location: "/a/.shadowcopy/1", consistency: .filesystem)
            let b = SnapshotRecord(id: Identifier(), set: set.id, originalVolume: "/b", provider: "btrfs")
            try catalog.save(set, [a, b])
            try catalog.forget(snapshot: a.id)
            #expect(try catalog.load().0.sets.count == 1)
            try catalog.forget(snapshot: b.id)
            let (contents, _) = try catalog.load()
            #expect(contents.sets.isEmpty && contents.snapshots.isEmpty)
        }
    }

    @Test func refusesARelativePathAndMakesItsDirectory() throws {
        #expect(throws: ShadowCopyError.self) { try Catalog(path: "catalog.db") }
        try Self.withCatalog { _, directory in
            let nested = try Catalog(path: directory + "/state/catalog.db")
            #expect(try nested.load().0.sets.isEmpty)
            var info = stat()
            #expect(stat(directory + "/state", &info) == 0 && info.st_mode & 0o777 == 0o700)
            for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] { unlink(directory + "/state/" + name) }
        }
    }

    /// The database closes once unused; its write-ahead log stays, at its size, so that the next
    /// durable write rewrites blocks the file has rather than growing it.
    @Test func closesWhenUnusedAndKeepsItsLogForTheNextWrite() async throws {
        try await Self.withPath { path in try await Self.closesAndKeepsItsLog(path) }
    }

    private static func closesAndKeepsItsLog(_ path: String) async throws {
        func walSize() -> Int {
            var info = stat()
            return stat(path + "-wal", &info) == 0 ? Int(info.st_size) : -1
        }
        let catalog = try Catalog(path: path)
        // Enough writes for a checkpoint, after which the log starts again from its beginning.
        for _ in 0..<100 { try catalog.save(Self.set(persistent: true), [], durable: true) }
        let size = walSize()
        #expect(size > 0 && size < 1 << 20, "at most 128 pages between checkpoints, not SQLite's default 1000")
        let start = ContinuousClock.now
        while catalog.isOpen, ContinuousClock.now - start < .seconds(15) { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!catalog.isOpen, "closed within \(Catalog.linger) of its last use")
        #expect(walSize() == size)
        try catalog.save(Self.set(persistent: true), [], durable: true)
        #expect(walSize() == size, "the log was rewritten in place")
        #expect(try catalog.load().0.sets.count == 101)
    }

    /// A write made without waiting for the disk is on it once syncWrites returns, whether the
    /// flush began early (startSync) or only then; a durable write needs no flush after it.
    @Test func writesReachTheDiskWhenAskedEarlyOrLate() async throws {
        try await Self.withPath { path in try await Self.reachesTheDisk(path) }
    }

    private static func reachesTheDisk(_ path: String) async throws {
        let catalog = try Catalog(path: path)
        try catalog.save(Self.set(persistent: true), [])
        #expect(!catalog.isSynced)
        catalog.startSync()
        try catalog.save(Self.set(persistent: true), [])
        try await catalog.syncWrites()
        #expect(catalog.isSynced, "the flush begun before the second write did not cover it; another one did")
        try catalog.save(Self.set(persistent: true), [], durable: true)
        #expect(catalog.isSynced)
        try catalog.save(Self.set(persistent: false), [])
        #expect(!catalog.isSynced)
        try await catalog.syncWrites()
        #expect(catalog.isSynced)
    }

    @Test func keepsShadowStorageAreas() throws {
        try Self.withCatalog { catalog, _ in
            let area = ShadowStorageRecord(id: Identifier(), forVolume: "/dev/mapper/data", location: "/var/lib/sc area",
                                           maxBytes: 1 << 40, policy: .invalidate)
            try catalog.save(storage: area)
            var resized = area
            resized.maxBytes = 0
            try catalog.save(storage: resized)
            #expect(try catalog.load().0.storage == [resized])
            try catalog.forget(storage: area.id)
            #expect(try catalog.load().0.storage.isEmpty)
        }
    }

    @Test func aVersion1CatalogGainsStoresAndShadowStorage() throws {
        try Self.withCatalog { _, directory in
            let path = directory + "/old.db"
            defer { for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) } }
            // The schema shadowcopyd 0.1.0 wrote before shadow storage existed.
            let old = """
                PRAGMA journal_mode = WAL;
                CREATE TABLE sets (id TEXT PRIMARY KEY, requester TEXT NOT NULL, requester_uid INTEGER NOT NULL,
                    context TEXT NOT NULL, backup_type TEXT NOT NULL, persistent INTEGER NOT NULL,
                    auto_release INTEGER NOT NULL, description TEXT NOT NULL, state TEXT NOT NULL,
                    creation_time INTEGER NOT NULL, consistency TEXT);
                CREATE TABLE snapshots (id TEXT PRIMARY KEY, set_id TEXT NOT NULL REFERENCES sets(id) ON DELETE CASCADE,
                    original_volume TEXT NOT NULL, provider TEXT NOT NULL, state TEXT NOT NULL,
                    device TEXT NOT NULL, location TEXT NOT NULL, copy_consistency TEXT NOT NULL,
                    exposed_path TEXT NOT NULL, creation_ns INTEGER NOT NULL, attributes TEXT NOT NULL);
                INSERT INTO sets VALUES ('\(Identifier().hex)', ':1.1', 0, 'backup', 'full', 1, 0, '', 'completed', 1, 'crash');
                PRAGMA user_version = 1;
                """
            let setID = try #require(old.firstMatch(of: /VALUES \('([0-9a-f]{32})'/)?.1)
            let snapshotID = Identifier()
            let withSnapshot = old.replacing("PRAGMA user_version = 1;", with: """
                INSERT INTO snapshots VALUES ('\(snapshotID.hex)', '\(setID)', '/dev/mapper/data', 'dm-snapshot', 'created',
                    '/dev/mapper/sc-x', '', 'filesystem', '', 5, '');
                PRAGMA user_version = 1;
                """)
            try SQLiteDatabase(path: path).execute(withSnapshot)
            let catalog = try Catalog(path: path)
            let (contents, unreadable) = try catalog.load()
            #expect(unreadable.isEmpty)
            #expect(contents.snapshots.map(\.id) == [snapshotID])
            #expect(contents.snapshots.first?.copy?.store == "")
            try catalog.save(storage: ShadowStorageRecord(id: Identifier(), forVolume: "/dev/mapper/data", location: "/x",
                                                          maxBytes: 0, policy: .deleteOldest))
            #expect(try catalog.load().0.storage.count == 1)
        }
    }
}

@Suite("SQLite binding")
struct SQLiteBindingTests {
    /// Statements are kept prepared between runs: each run must still see its own parameters and
    /// the current rows, also when several threads run the same statement at once.
    @Test func aKeptStatementRunsWithFreshParametersFromManyThreads() async throws {
        let db = try SQLiteDatabase(path: ":memory:")
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for n in 0..<100 {
                        let key = Int64(worker * 1000 + n)
                        _ = try? db.run("INSERT INTO t VALUES (?, ?)", [.integer(key), .text("v\(key)")])
                        let row = try? db.run("SELECT v FROM t WHERE k = ?", [.integer(key)])
                        #expect(row == [[.text("v\(key)")]])
                    }
                }
            }
        }
        #expect(try db.run("SELECT count(*) FROM t") == [[.integer(800)]])
        // A failed step leaves the kept statement usable.
        #expect(throws: SQLiteDatabase.Failure.self) { try db.run("INSERT INTO t VALUES (?, ?)", [.integer(1), .text("dup")]) }
        try db.run("INSERT INTO t VALUES (?, ?)", [.integer(-1), .text("after")])
        #expect(try db.run("SELECT v FROM t WHERE k = ?", [.integer(-1)]) == [[.text("after")]])
    }
}
