/// What happens when a volume's copies need more shadow storage than its maximum allows.
public enum OverflowPolicy: String, Sendable, CaseIterable {
    /// The oldest copies of the volume are deleted to make room (VSS's behaviour).
    case deleteOldest = "delete-oldest"
    /// Nothing is deleted: the copy that fills its store is invalidated by the kernel, and
    /// reported.
    case invalidate
}

/// A shadow storage area (the VSS diff area): where the copies of one volume keep the data
/// they preserve; `storage/<id>` on the bus.
public struct ShadowStorageRecord: Sendable, Equatable {
    public let id: Identifier
    /// The volume whose copies it holds (canonical name).
    public let forVolume: String
    /// A directory on another filesystem (each copy's store a sparse file in it), or a block
    /// device given over to shadow storage (each copy's store extents of it).
    public let location: String
    /// Most bytes all the volume's stores together may take; 0 is unbounded.
    public var maxBytes: UInt64
    public var policy: OverflowPolicy

    public init(id: Identifier, forVolume: String, location: String, maxBytes: UInt64, policy: OverflowPolicy) {
        self.id = id
        self.forVolume = forVolume
        self.location = location
        self.maxBytes = maxBytes
        self.policy = policy
    }
}

/// How much of its store one copy uses, as its provider reads it from the kernel.
public struct StorageUse: Sendable, Equatable {
    /// Bytes of the store holding preserved data and metadata.
    public var used: UInt64
    /// Bytes the store has.
    public var size: UInt64
    /// The kernel gave the copy up (its store overflowed, or failed).
    public var invalid: Bool

    public init(used: UInt64, size: UInt64, invalid: Bool) {
        self.used = used
        self.size = size
        self.invalid = invalid
    }
}

/// Where a new copy's store goes and how large it may start.
public struct StoragePlan: Sendable, Equatable {
    /// The directory of the store file.
    public var location: String
    /// The most the store may start with, within the area's maximum.
    public var budget: UInt64

    public init(location: String, budget: UInt64) {
        self.location = location
        self.budget = budget
    }
}

/// A provider whose copies keep what they preserve in shadow storage that the coordinator
/// manages: it places each store where the coordinator plans, reports its use, and grows it.
public protocol DiffAreaProvider: SnapshotProvider {
    /// Where stores go for volumes with no shadow storage of their own.
    var defaultStorageLocation: String { get }
    /// The size a new copy's store starts at, for `volume`.
    func initialStoreSize(for volume: String) throws(ShadowCopyError) -> UInt64
    /// Throws unless `location` may hold stores of `volume` (canonical).
    func checkStorageLocation(_ location: String, for volume: String) throws(ShadowCopyError)
    /// The most `location` can hold when that is bounded (a block device); nil for a directory.
    func capacity(of location: String) -> UInt64?
    /// Whether the store a copy records (``CommittedCopy/store``) is in `location`.
    func store(_ store: String, isIn location: String) -> Bool
    /// Called before ``SnapshotProvider/beginPrepare(set:snapshot:volume:)`` for each copy.
    func plan(snapshot: Identifier, _ plan: StoragePlan)
    /// A location stores may be in (an area from the catalog), for deleting what a daemon
    /// that died left there.
    func remember(location: String)
    /// The copy's store use; nil when the copy has no store (it is gone).
    func storageUse(of snapshot: Identifier) -> StorageUse?
    /// The most a store of the copy could ever need (its volume's size and the store's metadata).
    func storageCeiling(of snapshot: Identifier) -> UInt64?
    /// Grows the copy's store (`store`, as recorded) to `bytes`, the copy running on; returns
    /// the store as it must be recorded from now on.
    func growStorage(of snapshot: Identifier, store: String, to bytes: UInt64) throws(ShadowCopyError) -> String
}

/// Where a revert (a merge of a copy back into its volume) stands.
public enum MergeProgress: Sendable, Equatable {
    /// Not started: the volume is in use (mounted or open), as `lvconvert --merge` waits.
    case waiting
    /// Merging; the fraction done.
    case merging(Double)
    /// The volume holds the copy's data again.
    case done
    case failed(String)
}

/// A provider that can put a copy's data back into its volume (VSS's revert).
public protocol RevertingProvider: SnapshotProvider {
    /// Starts merging the copy into `volume` when nothing has the volume open; returns false
    /// when it must wait for that.
    func startMerge(snapshot: Identifier, volume: String) async throws(ShadowCopyError) -> Bool
    func mergeProgress(snapshot: Identifier, volume: String) -> MergeProgress
    /// After ``MergeProgress/done``: the volume gets its own table back, the store goes.
    func finishMerge(snapshot: Identifier, volume: String) async throws(ShadowCopyError)
}
