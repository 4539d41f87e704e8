/// Where a writer sits in the freeze order (VSS_APPLICATION_LEVEL): front-end applications
/// freeze first and thaw last, system writers freeze last.
public enum WriterLevel: String, Sendable, CaseIterable {
    case frontEnd = "front-end"
    case backEnd = "back-end"
    case system
}

/// What a writer's data is for (VSS_USAGE_TYPE).
public enum WriterUsage: String, Sendable, CaseIterable {
    case userData = "user-data"
    case bootableSystemState = "bootable-system-state"
    case systemService = "system-service"
    case other
}

/// A writer's state in the backup sequence (VSS_WRITER_STATE).
public enum WriterState: String, Sendable, CaseIterable {
    case stable
    case waitingForFreeze = "waiting-for-freeze"
    case waitingForThaw = "waiting-for-thaw"
    case waitingForPostSnapshot = "waiting-for-post-snapshot"
    case waitingForBackupComplete = "waiting-for-backup-complete"
    case failedAtIdentify = "failed-at-identify"
    case failedAtPrepareBackup = "failed-at-prepare-backup"
    case failedAtPrepareSnapshot = "failed-at-prepare-snapshot"
    case failedAtFreeze = "failed-at-freeze"
    case failedAtThaw = "failed-at-thaw"
    case failedAtPostSnapshot = "failed-at-post-snapshot"
    case failedAtBackupComplete = "failed-at-backup-complete"
    case failedAtPreRestore = "failed-at-pre-restore"
    case failedAtPostRestore = "failed-at-post-restore"
    case failedAtBackupShutdown = "failed-at-backup-shutdown"
}

/// What an application asks for when it registers a writer.
public struct WriterRegistration: Sendable, Equatable {
    /// The writer's human name (VSS writer name), 1 to 255 bytes.
    public var name: String
    /// The writer class (the same for every instance of one application), if it has one.
    public var classID: Identifier?
    /// This instance; a fresh one when the application gives none.
    public var instanceID: Identifier
    public var usage: WriterUsage
    public var level: WriterLevel
    /// Its own Freeze-to-Thaw limit; the coordinator's `FreezeTimeoutMs` when nil.
    public var freezeTimeoutMs: UInt32?

    public init(name: String, classID: Identifier? = nil, instanceID: Identifier = Identifier(),
                usage: WriterUsage = .userData, level: WriterLevel = .frontEnd, freezeTimeoutMs: UInt32? = nil) {
        self.name = name
        self.classID = classID
        self.instanceID = instanceID
        self.usage = usage
        self.level = level
        self.freezeTimeoutMs = freezeTimeoutMs
    }
}

/// The coordinator's record of one registered writer.
public struct WriterRecord: Sendable, Equatable {
    public let id: Identifier
    /// The connection (unique bus name) that registered it and serves it.
    public let owner: String
    /// The object path of the `Writer` interface on the owner's connection.
    public let path: String
    public let registration: WriterRegistration
    public var freezeTimeoutMs: UInt32
    public var state: WriterState = .stable
    /// The last failure, empty when none.
    public var lastError: String = ""
}
