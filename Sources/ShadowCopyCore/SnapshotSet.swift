/// What a set is for (VSS_SNAPSHOT_CONTEXT); it decides whether writers take part.
public enum SetContext: String, Sendable, CaseIterable {
    case backup
    case fileShareBackup = "file-share-backup"
    case clientAccessible = "client-accessible"
    case appRollback = "app-rollback"

    /// VSS involves writers in backup and app-rollback sets only.
    public var involvesWriters: Bool { self == .backup || self == .appRollback }
}

/// The kind of backup the requester makes (VSS_BACKUP_TYPE).
public enum BackupType: String, Sendable, CaseIterable {
    case full, incremental, differential, log, copy
}

/// Where a set is in its sequence; `State` on the bus.
public enum SetState: String, Sendable {
    case created
    case metadataGathered = "metadata-gathered"
    case prepared
    case snapshotting
    case snapshotted
    case completed
    case restorePrepared = "restore-prepared"
    case restored
    case aborted
}

/// One copy of one volume; `snapshots/<id>` on the bus.
public struct SnapshotRecord: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Added to a set, not made yet.
        case pending
        case created, invalid, merging, deleted
    }

    public let id: Identifier
    public let set: Identifier
    public let originalVolume: String
    public let provider: String
    public var state: State = .pending
    public var copy: CommittedCopy?
    public var exposedPath: String = ""
    /// When the copy was made, in nanoseconds since the epoch: "oldest" must mean oldest, even
    /// for copies made within the same second.
    public var creationNs: UInt64 = 0
    /// When the copy was made, in seconds since the epoch (the `CreationTime` property).
    public var creationTime: UInt64 { creationNs / 1_000_000_000 }
    public var attributes: [String] = []
}

/// A writer's part in one set.
public struct SetWriter: Sendable {
    public let writer: WriterRecord
    public var metadata: WriterMetadata?
    /// Components the requester selected (logical path, name) and whether each backup succeeded.
    public var selected: [ComponentKey: Bool?] = [:]
    public var state: WriterState = .stable
    public var failure: ShadowCopyError.Code?
    public var failureMessage = ""
    /// Events sent so far, so that whoever got Freeze gets Thaw or Abort, and BackupShutdown
    /// goes to every writer that heard of the set.
    public var sent: [String] = []

    public var participated: Bool { !sent.isEmpty }
}

/// A component of a writer, as the requester names it.
public struct ComponentKey: Hashable, Sendable {
    public let logicalPath: String
    public let name: String

    public init(logicalPath: String, name: String) {
        self.logicalPath = logicalPath
        self.name = name
    }
}

/// A requester's session (IVssBackupComponents); `sets/<id>` on the bus.
public struct SnapshotSetRecord: Sendable {
    public let id: Identifier
    /// The unique bus name of the requester that started it and alone may drive it.
    public let requester: String
    public let requesterUID: UInt32
    public let context: SetContext
    public let isRestore: Bool
    public var backupType: BackupType
    public var persistent: Bool
    public var autoRelease: Bool
    public var description: String
    public var state: SetState = .created
    public var creationTime: UInt64
    public var snapshots: [Identifier] = []
    /// Canonical volume names, in the order added.
    public var volumes: [String] = []
    public var consistency: Consistency?
    public var selectComponents = false
    public var writers: [Identifier: SetWriter] = [:]
    /// The operation of the job running on the set, if any: one phase at a time.
    public var busyWith: String?
    public var lastActivity: UInt64
}
