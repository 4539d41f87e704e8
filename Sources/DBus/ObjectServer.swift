import Synchronization

/// The objects a connection serves, and the dispatch of the method calls addressed to them.
///
/// Calls are checked against the interface descriptions before any handler runs: unknown
/// objects, interfaces, methods and properties, and arguments of the wrong signature, get the
/// standard errors. Property reads, introspection and `Peer` are answered on the loop thread;
/// method handlers run in their own tasks, so a slow handler never holds up other calls.
public final class ObjectServer: Sendable {
    struct State: ~Copyable {
        weak var connection: Connection?
        var objects: [ObjectPath: [InterfaceName: Interface]] = [:]
        var managers: Set<ObjectPath> = []
        var uids: [BusName: UInt32] = [:]
        /// The property values peers last learned (by export or `PropertiesChanged`), so that a
        /// change is announced once and an unchanged value never.
        var announced: [ObjectPath: [InterfaceName: [MemberName: Value]]] = [:]
        /// For interfaces served in order: the last call of each peer on each object, which
        /// the next one waits for, and a number telling whether a newer one replaced it.
        var queues: [OrderKey: (number: UInt64, task: Task<Void, Never>)] = [:]
        var lastQueued: UInt64 = 0
    }

    struct OrderKey: Hashable {
        let sender: BusName
        let path: ObjectPath
        let interface: InterfaceName
    }

    let state = Mutex(State())

    init() {}

    func attach(_ connection: Connection) { state.withLock { $0.connection = connection } }

    var connection: Connection? { state.withLock { $0.connection } }

    // MARK: Exporting

    /// Serves `interfaces` at `path`, next to any it already serves there.
    ///
    /// Announced with `InterfacesAdded` when an object manager covers `path`.
    public func export(_ path: ObjectPath, _ interfaces: [Interface]) throws(DBusError) {
        let values = interfaces.map { $0.announcedValues() }
        let manager: ObjectPath? = try state.withLock { s throws(DBusError) -> ObjectPath? in
            var current = s.objects[path] ?? [:]
            for interface in interfaces {
                guard current[interface.spec.name] == nil, !StandardInterfaces.names.contains(interface.spec.name) else {
                    throw DBusError(.failed, "\(interface.spec.name) is already served at \(path)")
                }
                current[interface.spec.name] = interface
            }
            s.objects[path] = current
            for (interface, known) in zip(interfaces, values) { s.announced[path, default: [:]][interface.spec.name] = known }
            return s.managers.first { path.isDescendant(of: $0) }
        }
        if let manager {
            let added = Value.dictionary(key: "s", value: "a{sv}", zip(interfaces, values).map { interface, known in
                Value.DictEntry(.string(interface.spec.name.rawValue),
                                .vardict(interface.spec.properties.compactMap { p in known[p.name].map { (p.name.rawValue, $0) } }))
            })
            emit(StandardInterfaces.objectManager, "InterfacesAdded", from: manager, [.objectPath(path), added])
        }
    }

    /// Stops serving `path` (all its interfaces); announced with `InterfacesRemoved`.
    public func unexport(_ path: ObjectPath) {
        let (removed, manager) = state.withLock { s in
            s.announced.removeValue(forKey: path)
            return (s.objects.removeValue(forKey: path), s.managers.first { path.isDescendant(of: $0) })
        }
        guard let removed, let manager else { return }
        let names = removed.keys.sorted().map(\.rawValue)
        emit(StandardInterfaces.objectManager, "InterfacesRemoved", from: manager, [.objectPath(path), .strings(names)])
    }

    /// Serves `org.freedesktop.DBus.ObjectManager` at `path` for the objects below it.
    public func addObjectManager(at path: ObjectPath) {
        state.withLock { _ = $0.managers.insert(path) }
    }

    /// Whether anything is served at `path`.
    public func isExported(_ path: ObjectPath) -> Bool { state.withLock { $0.objects[path] != nil } }

    // MARK: Signals

    /// Emits signal `member` of `spec` from `path`; the arguments must match its declaration.
    public func emit(_ spec: InterfaceSpec, _ member: MemberName, from path: ObjectPath, _ arguments: [Value]) {
        guard let signal = spec.signal(member) else {
            preconditionFailure("\(spec.name) declares no signal \(member)")
        }
        let actual = arguments.map(\.signatureString).joined()
        precondition(actual == signal.signature.rawValue,
                     "\(spec.name).\(member) emitted as (\(actual)), declared (\(signal.signature))")
        guard let connection else { return }
        let message = Message.signal(path: path, interface: spec.name, member: member)
        do {
            try message.append(arguments)
            if let batch = ObjectServer.batch, batch.hold(message) { return }
            try connection.send(message)
        } catch {
            // The connection is closing; there is nobody left to tell.
        }
    }

    /// The signals a method handler emits, held back and sent together just before its reply.
    ///
    /// Each message sent on its own wakes the bus for itself; a handler that emits three
    /// signals between other work costs the bus three wake-ups before its reply can go out.
    /// Sent back to back, they cost one. The order on the wire is kept (the signals still come
    /// before the reply). A task the handler starts inherits the batch; once the handler is
    /// done, the batch is closed and such a task's signals go out at once.
    @TaskLocal static var batch: SignalBatch?

    /// Emits `PropertiesChanged` for those of `names` of `interface` at `path` whose value changed
    /// since peers last learned it (or as invalidated, for properties declared that way).
    ///
    /// Callers name what may have changed; only real changes go on the bus, and nothing at all
    /// when none did: every signal costs the bus and every subscriber a wake-up.
    public func propertiesChanged(_ path: ObjectPath, _ interface: InterfaceName, _ names: [MemberName]) {
        let found: Interface? = state.withLock { $0.objects[path]?[interface] }
        guard let found else { return }
        var current: [(MemberName, Value, PropertySpec.ChangeSignal)] = []
        for name in names {
            guard let spec = found.spec.property(name), let getter = found.getters[name] else { continue }
            switch spec.changeSignal {
            case .emits, .invalidates: current.append((name, getter(), spec.changeSignal))
            case .const, .never: continue
            }
        }
        var changed: [(String, Value)] = []
        var invalidated: [String] = []
        state.withLock { s in
            guard s.objects[path]?[interface] != nil else { return }
            for (name, value, signal) in current where s.announced[path]?[interface]?[name] != value {
                s.announced[path, default: [:]][interface, default: [:]][name] = value
                if signal == .emits { changed.append((name.rawValue, value)) } else { invalidated.append(name.rawValue) }
            }
        }
        guard !changed.isEmpty || !invalidated.isEmpty else { return }
        emit(StandardInterfaces.properties, "PropertiesChanged", from: path,
             [.string(interface.rawValue), .vardict(changed), .strings(invalidated)])
    }

    // MARK: Credentials

    func unixUser(of name: BusName) async throws -> UInt32 {
        if let cached = state.withLock({ $0.uids[name] }) { return cached }
        guard let connection else { throw DBusError(.disconnected, "not connected") }
        let uid = try await connection.unixUser(of: name)
        // Unique names are never reused by a bus, so an entry never goes stale; the cap bounds memory.
        state.withLock { s in
            if s.uids.count >= 4096 { s.uids.removeAll(keepingCapacity: true) }
            if name.isUnique { s.uids[name] = uid }
        }
        return uid
    }
}

/// Signals held back while a method handler runs (see ``ObjectServer/batch``).
final class SignalBatch: Sendable {
    private let state = Mutex<(held: [Message], open: Bool)>(([], true))

    /// Holds `message` for later; false once the batch is closed (send it now).
    func hold(_ message: Message) -> Bool {
        state.withLock { s in
            guard s.open else { return false }
            s.held.append(message)
            return true
        }
    }

    /// Closes the batch; returns what it held, in order.
    func close() -> [Message] {
        state.withLock { s in
            s.open = false
            defer { s.held = [] }
            return s.held
        }
    }
}
