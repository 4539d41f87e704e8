#if canImport(Glibc)
import Glibc
#endif
@testable import ShadowCopyCore
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
            made.copy = CommittedCopy(device: "", location: "/srv/.shadowcopy/x", consistency: .filesystem)
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
}
