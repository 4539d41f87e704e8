/// What a provider is, as `providers/<name>` shows it (VSS_PROVIDER_PROP).
public struct ProviderInfo: Sendable, Equatable {
    public let name: String
    public let id: Identifier
    /// `software`, `hardware` or `external` (registered over D-Bus).
    public let type: String
    public let version: String

    public init(name: String, id: Identifier, type: String, version: String) {
        self.name = name
        self.id = id
        self.type = type
        self.version = version
    }
}

/// One copy as its provider reports it after commit.
public struct CommittedCopy: Sendable, Equatable {
    /// The copy's block device, empty when the provider has none (btrfs).
    public var device: String
    /// Where the copy can be read as files before it is exposed (a btrfs snapshot directory).
    public var location: String
    /// Consistency the provider gives by itself: `filesystem` when it quiesced or copied the
    /// filesystem atomically, `crash` when it copied blocks of a live filesystem.
    public var consistency: Consistency
    /// What keeps the copy's preserved data, for the provider to find it again after a
    /// restart or a reboot (a dm-snapshot store file); empty when there is nothing to find.
    public var store: String

    public init(device: String, location: String, consistency: Consistency, store: String = "") {
        self.device = device
        self.location = location
        self.consistency = consistency
        self.store = store
    }
}

/// How consistent a copy is, from best to worst.
public enum Consistency: String, Sendable, Comparable, CaseIterable {
    case application
    case filesystem
    case crash

    private var rank: Int {
        switch self {
        case .application: 0
        case .filesystem: 1
        case .crash: 2
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

/// A snapshot provider, built in or external: the steps of IVssProviderCreateSnapshotSet.
///
/// The coordinator calls `beginPrepare` for each volume of a set, then `endPrepare`,
/// `preCommit`, `commit` (while writes are held, so it must be quick), `postCommit`, and on any
/// failure `abort`, which must undo everything the provider did for the set.
public protocol SnapshotProvider: Sendable {
    var info: ProviderInfo { get }
    /// Whether the provider makes consistent copies without the coordinator holding writes
    /// (btrfs snapshots are atomic; device-mapper suspends with lockfs). When false, the
    /// coordinator freezes the volume's filesystem around `commit`, through the freeze guard.
    var holdsWritesItself: Bool { get }

    /// The canonical name of `volume` when this provider can copy it; nil when it cannot.
    /// Throws for input that is not a volume at all.
    func canonicalVolume(_ volume: String) async throws(ShadowCopyError) -> String?

    func beginPrepare(set: Identifier, snapshot: Identifier, volume: String) async throws(ShadowCopyError)
    func endPrepare(set: Identifier) async throws(ShadowCopyError)
    func preCommit(set: Identifier) async throws(ShadowCopyError)
    func commit(set: Identifier) async throws(ShadowCopyError)
    func postCommit(set: Identifier) async throws(ShadowCopyError) -> [Identifier: CommittedCopy]
    /// Undoes whatever was done for `set` so far; never fails (it logs what it could not undo).
    func abort(set: Identifier) async

    /// Whether a committed copy is still there (the catalog is reconciled with this at start).
    func exists(snapshot: Identifier, copy: CommittedCopy, volume: String) -> Bool
    /// Deletes one copy (`copy` is nil when it was never reported made: a half-made one); a
    /// copy already gone is not an error.
    func delete(snapshot: Identifier, volume: String, copy: CommittedCopy?) async throws(ShadowCopyError)
    /// Mounts the copy read-only, nosuid, nodev, noexec at `path` (an empty directory).
    func expose(snapshot: Identifier, copy: CommittedCopy, at path: String) throws(ShadowCopyError)
    /// At start, before the catalog is reconciled: puts back what a daemon that died left half
    /// done in the provider's own domain (a device left suspended, say); returns what it fixed.
    func recover() async -> [String]
    /// At start, after ``recover()``: makes live again the persistent copies the kernel no
    /// longer has (the machine rebooted) from what the catalog recorded of them; returns what
    /// it did, one line per copy. Copies it cannot bring back are left to the reconciliation.
    func reassemble(_ copies: [LostCopy]) async -> [String]
}

/// A persistent copy the catalog knows and its provider no longer finds.
public struct LostCopy: Sendable {
    public let snapshot: Identifier
    public let volume: String
    public let copy: CommittedCopy

    public init(snapshot: Identifier, volume: String, copy: CommittedCopy) {
        self.snapshot = snapshot
        self.volume = volume
        self.copy = copy
    }
}

extension SnapshotProvider {
    /// Nothing to recover by default.
    public func recover() async -> [String] { [] }
    /// Nothing to reassemble by default.
    public func reassemble(_ copies: [LostCopy]) async -> [String] { [] }
}

/// Holds writes on volumes from a guard process outside the daemon, so that a daemon killed
/// while holding them (SIGKILL included) never leaves a filesystem frozen.
public protocol WriteHolder: Sendable {
    /// Freezes the filesystem of each of `volumes` (mount points) for at most `limitMs`: the
    /// guard thaws them by itself past that. Returns the volumes actually frozen (a btrfs volume
    /// is never frozen). On failure nothing stays frozen.
    func hold(_ volumes: [String], limitMs: UInt32) async throws(ShadowCopyError) -> [String]
    /// Thaws whatever `hold` froze; harmless when nothing is held.
    func release() async
    /// Device-mapper devices a provider is about to suspend itself: if the daemon dies, or
    /// `limitMs` passes, before ``unwatchSuspended()``, the guard drops any table loaded but not
    /// yet live and resumes them (which thaws their filesystems).
    func watchSuspended(_ devices: [String], limitMs: UInt32) async throws(ShadowCopyError)
    /// The provider resumed them itself.
    func unwatchSuspended() async
}
