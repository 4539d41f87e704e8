/// An event the coordinator sends a writer (the `Writer` interface of the contract).
public enum WriterEvent: Sendable, Equatable {
    case prepareForBackup(BackupDetails)
    case prepareForSnapshot(volumes: [String])
    case freeze
    case thaw
    case postSnapshot(devices: [String: String])
    case abort
    case backupComplete(BackupDetails)
    case backupShutdown
    case preRestore
    case postRestore

    /// The `Writer` method that carries it.
    public var method: String {
        switch self {
        case .prepareForBackup: "PrepareForBackup"
        case .prepareForSnapshot: "PrepareForSnapshot"
        case .freeze: "Freeze"
        case .thaw: "Thaw"
        case .postSnapshot: "PostSnapshot"
        case .abort: "Abort"
        case .backupComplete: "BackupComplete"
        case .backupShutdown: "BackupShutdown"
        case .preRestore: "PreRestore"
        case .postRestore: "PostRestore"
        }
    }

    /// The writer state a failure of this event leaves (VSS_WS_FAILED_AT_*).
    var failedState: WriterState {
        switch self {
        case .prepareForBackup: .failedAtPrepareBackup
        case .prepareForSnapshot: .failedAtPrepareSnapshot
        case .freeze: .failedAtFreeze
        case .thaw, .abort: .failedAtThaw
        case .postSnapshot: .failedAtPostSnapshot
        case .backupComplete: .failedAtBackupComplete
        case .backupShutdown: .failedAtBackupShutdown
        case .preRestore: .failedAtPreRestore
        case .postRestore: .failedAtPostRestore
        }
    }
}

/// What writers learn of the backup in PrepareForBackup and BackupComplete (VSS writers read it
/// from IVssComponent): its type, their selected components and, once the requester said so
/// with SetBackupSucceeded, whether each component's backup succeeded.
public struct BackupDetails: Sendable, Equatable {
    public var backupType: BackupType
    /// Per writer, its selected components and their outcome (nil until the requester tells).
    public var selected: [Identifier: [ComponentKey: Bool?]]

    public init(backupType: BackupType, selected: [Identifier: [ComponentKey: Bool?]]) {
        self.backupType = backupType
        self.selected = selected
    }

    init(_ set: SnapshotSetRecord) {
        self.init(backupType: set.backupType, selected: set.writers.mapValues(\.selected))
    }
}

/// A writer's component, from its Identify metadata.
public struct WriterComponent: Sendable, Equatable {
    public var logicalPath: String
    public var name: String
    public var selectable: Bool
    public var paths: [String]

    public init(logicalPath: String, name: String, selectable: Bool = true, paths: [String] = []) {
        self.logicalPath = logicalPath
        self.name = name
        self.selectable = selectable
        self.paths = paths
    }
}

/// What a writer's Identify returned: the components the engine reasons about, and the whole
/// answer as the transport received it, handed back unchanged by GetWriterMetadata.
public struct WriterMetadata: Sendable {
    public var components: [WriterComponent]
    public var raw: any Sendable

    public init(components: [WriterComponent], raw: any Sendable) {
        self.components = components
        self.raw = raw
    }
}

/// How a writer answered an event.
public enum WriterAnswer: Sendable, Equatable {
    case ok
    /// It vetoed with one of the contract's writer errors, or failed to answer in time
    /// (`.timeout`), or its connection was gone (`.failed`).
    case failed(ShadowCopyError.Code, String)
}

/// How the coordinator reaches writers; the service layer implements it over D-Bus.
public protocol WriterTransport: Sendable {
    func identify(_ writer: WriterRecord, timeoutMs: UInt32) async -> Result<WriterMetadata, ShadowCopyError>
    func send(_ event: WriterEvent, set: Identifier, to writer: WriterRecord, timeoutMs: UInt32) async -> WriterAnswer
}
