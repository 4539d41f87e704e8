import DBus
import Synchronization

/// A Swift application's writer: serves the contract's `Writer` interface with ``WriterHandlers``
/// and keeps it registered with shadowcopyd, registering again whenever the daemon restarts.
///
/// ```swift
/// let writer = ShadowCopyWriter(connection: try Connection.system(), options: .init(name: "my-db"),
///                               handlers: MyDatabaseWriter())
/// try await writer.start()
/// ```
public final class ShadowCopyWriter: Sendable {
    /// How the writer presents itself (`RegisterWriter` options).
    public struct Options: Sendable {
        public var name: String
        /// `front-end`, `back-end` or `system`: the order in which writers freeze.
        public var level: String
        /// Longest this writer tolerates between Freeze and Thaw; nil for the coordinator's default.
        public var freezeTimeoutMs: UInt32?
        public var classID: String?
        public var instanceID: String?
        /// How a restore puts the data back (VSS_RESTOREMETHOD_ENUM): `restore-if-not-there`,
        /// `restore-if-can-replace`, `stop-restore-start`, `restore-to-alternate-location`,
        /// `restore-at-reboot` or `custom`; Identify reports it as `restore-method`.
        public var restoreMethod: String?

        public init(name: String, level: String = "front-end", freezeTimeoutMs: UInt32? = nil,
                    classID: String? = nil, instanceID: String? = nil, restoreMethod: String? = nil) {
            self.name = name
            self.level = level
            self.freezeTimeoutMs = freezeTimeoutMs
            self.classID = classID
            self.instanceID = instanceID
            self.restoreMethod = restoreMethod
        }
    }

    public static let coordinatorName: BusName = "org.shadowcopy.ShadowCopy1"
    static let coordinatorPath: ObjectPath = "/org/shadowcopy/ShadowCopy1"
    static let coordinatorInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.Coordinator"

    public let connection: Connection
    public let path: ObjectPath
    public let options: Options
    private let handlers: any WriterHandlers
    private let registration = Mutex<(record: ObjectPath?, watch: Task<Void, Never>?)>((nil, nil))

    public init(connection: Connection, path: ObjectPath = "/org/shadowcopy/Writer", options: Options,
                handlers: any WriterHandlers) {
        self.connection = connection
        self.path = path
        self.options = options
        self.handlers = handlers
    }

    /// The coordinator's record of this writer (`writers/<id>`), while registered.
    public var record: ObjectPath? { registration.withLock { $0.record } }

    /// Exports the writer and registers it; afterwards follows the coordinator, registering
    /// again each time a new shadowcopyd takes the name.
    public func start() async throws {
        try connection.objects.export(path, [WriterSpec.interface(handlers, restoreMethod: options.restoreMethod)])
        let owners = try await connection.watchNameOwner(Self.coordinatorName)
        try await register()
        let watch = Task { [weak self] in
            var previous: BusName?? = .none
            for await owner in owners {
                guard let self else { return }
                defer { previous = owner }
                // The first value is the owner at subscription time: already registered with it.
                guard case .some = previous, let owner, owner != previous else { continue }
                try? await self.register()
            }
        }
        registration.withLock { $0.watch = watch }
    }

    /// Registers with the coordinator now.
    public func register() async throws {
        var list: [(String, Value)] = [("name", .string(options.name)), ("level", .string(options.level))]
        if let timeout = options.freezeTimeoutMs { list.append(("freeze-timeout-ms", .uint32(timeout))) }
        if let classID = options.classID { list.append(("class-id", .string(classID))) }
        if let instanceID = options.instanceID { list.append(("instance-id", .string(instanceID))) }
        let reply = try await connection.call(Self.coordinatorName, Self.coordinatorPath, Self.coordinatorInterface,
                                              "RegisterWriter", [.objectPath(path), .vardict(list)])
        registration.withLock { $0.record = reply.first?.objectPath }
    }

    /// Stops following the coordinator, unregisters and withdraws the writer object.
    public func stop() async {
        let (record, watch) = registration.withLock { state in
            defer { state = (nil, nil) }
            return state
        }
        watch?.cancel()
        if let record {
            _ = try? await connection.call(Self.coordinatorName, Self.coordinatorPath, Self.coordinatorInterface,
                                           "UnregisterWriter", [.objectPath(record)])
        }
        connection.objects.unexport(path)
    }
}

/// The contract's `Writer` interface, served from ``WriterHandlers``.
enum WriterSpec {
    static let spec: InterfaceSpec = {
        let set = ArgumentSpec("set", "o"), options = ArgumentSpec("options", "a{sv}")
        return InterfaceSpec("org.shadowcopy.ShadowCopy1.Writer", methods: [
            MethodSpec("Identify", out: [ArgumentSpec("metadata", "a{sv}")]),
            MethodSpec("PrepareForBackup", in: [set, options]),
            MethodSpec("PrepareForSnapshot", in: [set, ArgumentSpec("volumes", "as")]),
            MethodSpec("Freeze", in: [set]),
            MethodSpec("Thaw", in: [set]),
            MethodSpec("PostSnapshot", in: [set, ArgumentSpec("volume_to_snapshot_device", "a{ss}")]),
            MethodSpec("Abort", in: [set]),
            MethodSpec("BackupComplete", in: [set, options]),
            MethodSpec("BackupShutdown", in: [set]),
            MethodSpec("PreRestore", in: [set, options]),
            MethodSpec("PostRestore", in: [set, options]),
        ])
    }()

    static func interface(_ h: any WriterHandlers, restoreMethod: String?) -> Interface {
        Interface(spec) { i in
            i.method("Identify") { _ in
                let components = try await veto { try await h.identify() }
                var metadata: [(String, Value)] = [("components", .array(element: "a{sv}", components.map(\.value)))]
                if let restoreMethod { metadata.append(("restore-method", .string(restoreMethod))) }
                return [.vardict(metadata)]
            }
            func on(_ name: MemberName, _ body: @escaping @Sendable (MethodCall, ObjectPath) async throws -> Void) {
                i.method(name) { call in
                    guard let set = call[0].objectPath else { return [] }
                    try await veto { try await body(call, set) }
                    return []
                }
            }
            on("PrepareForBackup") { call, set in try await h.prepareForBackup(set: set, backup: BackupInfo(call[1])) }
            on("PrepareForSnapshot") { call, set in try await h.prepareForSnapshot(set: set, volumes: call[1].stringArray ?? []) }
            on("Freeze") { _, set in try await h.freeze(set: set) }
            on("Thaw") { _, set in try await h.thaw(set: set) }
            on("PostSnapshot") { call, set in
                var devices: [String: String] = [:]
                if case .dictionary(_, _, let entries) = call[1] {
                    for entry in entries { if let k = entry.key.string, let v = entry.value.string { devices[k] = v } }
                }
                try await h.postSnapshot(set: set, devices: devices)
            }
            on("Abort") { _, set in try await h.abort(set: set) }
            on("BackupComplete") { call, set in try await h.backupComplete(set: set, backup: BackupInfo(call[1])) }
            on("BackupShutdown") { _, set in try await h.backupShutdown(set: set) }
            on("PreRestore") { _, set in try await h.preRestore(set: set) }
            on("PostRestore") { _, set in try await h.postRestore(set: set) }
        }
    }

    /// Runs a handler; an error that is not a ``WriterVeto`` becomes a non-retryable one.
    private static func veto<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let veto as WriterVeto {
            throw veto
        } catch {
            throw WriterVeto(.nonRetryable, "\(error)")
        }
    }
}
