import DBus

/// The CLI's view of shadowcopyd: calls on the bus, objects from ObjectManager, jobs waited for.
/// The CLI is only a client; everything it does, busctl could do too.
struct DaemonClient {
    static let name: BusName = "org.shadowcopy.ShadowCopy1"
    static let root: ObjectPath = "/org/shadowcopy/ShadowCopy1"
    static let prefix = "org.shadowcopy.ShadowCopy1."

    let connection: Connection
    /// Let polkit ask for a password (a person at a terminal); scripts pass --no-ask.
    let interactive: Bool

    init(address: String?, interactive: Bool) throws {
        connection = try address.map { try Connection(address: $0) } ?? Connection.system()
        self.interactive = interactive
    }

    func close() { connection.close() }

    /// Calls `member` of `interface` (short name: `Coordinator`, `SnapshotSet`...) on `path`.
    @discardableResult
    func call(_ path: ObjectPath, _ interface: String, _ member: MemberName, _ arguments: [Value] = []) async throws -> [Value] {
        let message = Message.methodCall(destination: Self.name, path: path,
                                         interface: InterfaceName(Self.prefix + interface)!, member: member)
        message.allowInteractiveAuthorization = interactive
        try message.append(arguments)
        // An authentication dialog may take a person a while.
        return try await connection.call(message, timeout: interactive ? .seconds(600) : .seconds(60)).arguments()
    }

    func coordinator(_ member: MemberName, _ arguments: [Value] = []) async throws -> [Value] {
        try await call(Self.root, "Coordinator", member, arguments)
    }

    /// Every object the daemon exports, with its interfaces' properties.
    func objects() async throws -> [ObjectPath: [String: [String: Value]]] {
        let reply = try await connection.call(Self.name, Self.root, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
        guard case .dictionary(_, _, let entries) = reply.first else { return [:] }
        var objects: [ObjectPath: [String: [String: Value]]] = [:]
        for entry in entries {
            guard let path = entry.key.objectPath, case .dictionary(_, _, let interfaces) = entry.value else { continue }
            var byInterface: [String: [String: Value]] = [:]
            for interface in interfaces {
                guard let name = interface.key.string else { continue }
                byInterface[name] = interface.value.vardict?.mapValues { $0.variantValue ?? $0 } ?? [:]
            }
            objects[path] = byInterface
        }
        return objects
    }

    /// The objects that have interface `name` (short), sorted by path.
    func objects(with name: String) async throws -> [(ObjectPath, [String: Value])] {
        try await objects().compactMap { path, interfaces in interfaces[Self.prefix + name].map { (path, $0) } }
            .sorted { $0.0.rawValue < $1.0.rawValue }
    }

    /// Runs phase `member` of a set as a job and waits for it; `progress` hears what happens.
    func runJob(_ set: ObjectPath, _ member: MemberName, progress: Progress) async throws {
        progress.phase(String(describing: member))
        let job = try await call(set, "SnapshotSet", member, [.vardict([])]).first?.objectPath
        guard let job else { throw CLIError.protocolError("\(member) returned no job") }
        while true {
            let done = try await call(job, "Job", "Wait", [.uint32(1_000)]).first?.bool ?? false
            if done { break }
            progress.tick()
        }
        let props = try await properties(job, "Job")
        guard props["State"]?.string == "succeeded" else {
            throw DBusError(ErrorName(props["ErrorName"]?.string ?? "") ?? "org.shadowcopy.ShadowCopy1.Error.Failed",
                            props["ErrorMessage"]?.string ?? "\(member) failed")
        }
    }

    /// All properties of `interface` (short) on `path`.
    func properties(_ path: ObjectPath, _ interface: String) async throws -> [String: Value] {
        let reply = try await connection.call(Self.name, path, "org.freedesktop.DBus.Properties", "GetAll",
                                              [.string(Self.prefix + interface)])
        return reply.first?.vardict?.mapValues { $0.variantValue ?? $0 } ?? [:]
    }
}

/// What a long command shows while it runs: phases on a terminal, nothing otherwise.
final class Progress: @unchecked Sendable {
    private let enabled: Bool

    init(enabled: Bool) { self.enabled = enabled }

    func phase(_ name: String) {
        guard enabled else { return }
        Output.stderr("\u{1b}[2K\r\(name)…")
    }

    func tick() {
        guard enabled else { return }
        Output.stderr(".")
    }

    func done() {
        guard enabled else { return }
        Output.stderr("\u{1b}[2K\r")
    }
}

/// Failures of the CLI itself (not the daemon's).
enum CLIError: Error {
    case protocolError(String)
    case usage(String)
    case cancelled
}
