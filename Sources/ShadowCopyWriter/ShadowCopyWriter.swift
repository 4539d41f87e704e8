import DBus
import Synchronization

/// What an application does at each event of a backup, as a shadowcopy writer (VSS's
/// CVssWriter). Every handler has a default that does nothing, as VSS writers' do.
///
/// Throw ``WriterVeto`` to refuse an event; any other error is sent as a non-retryable veto.
public protocol WriterHandlers: Sendable {
    /// The writer's metadata: its components (see ``WriterComponent``) and anything else of `a{sv}`.
    func identify() async throws -> [WriterComponent]
    /// A backup is coming: `backup` says its type and which of this writer's components it takes.
    func prepareForBackup(set: ObjectPath, backup: BackupInfo) async throws
    func prepareForSnapshot(set: ObjectPath, volumes: [String]) async throws
    /// Stop writing: the copy is about to be made. Thaw or Abort always follows.
    func freeze(set: ObjectPath) async throws
    func thaw(set: ObjectPath) async throws
    func postSnapshot(set: ObjectPath, devices: [String: String]) async throws
    func abort(set: ObjectPath) async throws
    /// The requester is done; `backup` says which components it backed up successfully (a
    /// database may truncate its logs for those).
    func backupComplete(set: ObjectPath, backup: BackupInfo) async throws
    func backupShutdown(set: ObjectPath) async throws
    func preRestore(set: ObjectPath) async throws
    func postRestore(set: ObjectPath) async throws
}

extension WriterHandlers {
    public func identify() async throws -> [WriterComponent] { [] }
    public func prepareForBackup(set: ObjectPath, backup: BackupInfo) async throws {}
    public func prepareForSnapshot(set: ObjectPath, volumes: [String]) async throws {}
    public func freeze(set: ObjectPath) async throws {}
    public func thaw(set: ObjectPath) async throws {}
    public func postSnapshot(set: ObjectPath, devices: [String: String]) async throws {}
    public func abort(set: ObjectPath) async throws {}
    public func backupComplete(set: ObjectPath, backup: BackupInfo) async throws {}
    public func backupShutdown(set: ObjectPath) async throws {}
    public func preRestore(set: ObjectPath) async throws {}
    public func postRestore(set: ObjectPath) async throws {}
}

/// What a writer is told of a backup in PrepareForBackup and BackupComplete.
public struct BackupInfo: Sendable, Equatable {
    /// One selected component, and whether its backup succeeded once the requester said.
    public struct Selected: Sendable, Equatable {
        public var logicalPath: String
        public var name: String
        public var succeeded: Bool?
    }

    /// `full`, `incremental`, `differential`, `log` or `copy`.
    public var backupType: String
    /// Empty when the requester did not select components one by one (everything is taken).
    public var components: [Selected]

    init(_ options: Value) {
        let dict = options.vardict ?? [:]
        backupType = dict["backup-type"]?.string ?? "full"
        components = (dict["components"]?.arrayElements ?? []).compactMap { item in
            guard let c = item.vardict, let name = c["name"]?.string else { return nil }
            return Selected(logicalPath: c["logical-path"]?.string ?? "", name: name, succeeded: c["succeeded"]?.bool)
        }
    }
}

/// One component of a writer: what a requester may select and back up.
public struct WriterComponent: Sendable, Equatable {
    public var logicalPath: String
    public var name: String
    /// `database` or `file-group`.
    public var type: String
    public var selectable: Bool
    public var paths: [String]
    public var exclude: [String]

    public init(logicalPath: String = "", name: String, type: String = "file-group", selectable: Bool = true,
                paths: [String] = [], exclude: [String] = []) {
        self.logicalPath = logicalPath
        self.name = name
        self.type = type
        self.selectable = selectable
        self.paths = paths
        self.exclude = exclude
    }

    var value: Value {
        .vardict([
            ("logical-path", .string(logicalPath)), ("name", .string(name)), ("type", .string(type)),
            ("selectable", .bool(selectable)), ("paths", .strings(paths)), ("exclude", .strings(exclude)),
        ])
    }
}

/// A writer's refusal of an event, with the contract's error kinds (VSS_E_WRITERERROR_*).
public struct WriterVeto: Error, DBusErrorConvertible, Sendable {
    public enum Kind: String, Sendable {
        case retryable = "WriterRetryable"
        case nonRetryable = "WriterNonRetryable"
        case outOfResources = "WriterOutOfResources"
        case inconsistentSnapshot = "WriterInconsistentSnapshot"
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var dbusError: DBusError {
        DBusError(ErrorName("org.shadowcopy.ShadowCopy1.Error." + kind.rawValue)!, message)
    }
}
