/// Calls on the message bus itself (`org.freedesktop.DBus`) and signal subscriptions.
extension Connection {
    static let busPath: ObjectPath = "/org/freedesktop/DBus"
    static let busInterface: InterfaceName = "org.freedesktop.DBus"

    /// How a name request ended (`RequestName` reply codes).
    public enum RequestNameReply: UInt32, Sendable {
        case primaryOwner = 1, inQueue = 2, exists = 3, alreadyOwner = 4
    }

    /// Flags of `RequestName`.
    public struct RequestNameFlags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let allowReplacement = RequestNameFlags(rawValue: 1)
        public static let replaceExisting = RequestNameFlags(rawValue: 2)
        public static let doNotQueue = RequestNameFlags(rawValue: 4)
    }

    func callBus(_ member: MemberName, _ arguments: [Value]) async throws -> [Value] {
        try await call(.bus, Connection.busPath, Connection.busInterface, member, arguments)
    }

    /// Asks the bus for `name`. Register objects first: calls may arrive the moment it is owned.
    public func requestName(_ name: BusName, flags: RequestNameFlags = [.doNotQueue]) async throws -> RequestNameReply {
        let reply = try await callBus("RequestName", [.string(name.rawValue), .uint32(flags.rawValue)])
        guard let code = reply.first?.uint32, let result = RequestNameReply(rawValue: code) else {
            throw DBusError(.failed, "unexpected RequestName reply")
        }
        return result
    }

    /// Gives `name` back to the bus.
    public func releaseName(_ name: BusName) async throws {
        _ = try await callBus("ReleaseName", [.string(name.rawValue)])
    }

    /// The unique name that owns `name` now, or nil when nobody does.
    public func nameOwner(_ name: BusName) async throws -> BusName? {
        do {
            let reply = try await callBus("GetNameOwner", [.string(name.rawValue)])
            return reply.first?.string.flatMap(BusName.init)
        } catch let error as DBusError where error.is(.nameHasNoOwner) {
            return nil
        }
    }

    /// The uid of the process behind `name`, as the bus saw it when it connected.
    public func unixUser(of name: BusName) async throws -> UInt32 {
        let reply = try await callBus("GetConnectionUnixUser", [.string(name.rawValue)])
        guard let uid = reply.first?.uint32 else { throw DBusError(.failed, "unexpected GetConnectionUnixUser reply") }
        return uid
    }

    /// The pid of the process behind `name`.
    public func unixProcessID(of name: BusName) async throws -> UInt32 {
        let reply = try await callBus("GetConnectionUnixProcessID", [.string(name.rawValue)])
        guard let pid = reply.first?.uint32 else { throw DBusError(.failed, "unexpected GetConnectionUnixProcessID reply") }
        return pid
    }

    /// Subscribes to the signals that `rule` matches, until the stream is dropped or cancelled.
    ///
    /// The local subscription exists before the bus is asked to forward anything, so no matching
    /// signal that the bus sends after this returns is lost.
    public func signals(_ rule: MatchRule) async throws -> AsyncStream<Message> {
        let (stream, continuation) = AsyncStream.makeStream(of: Message.self)
        let id = routing.withLock { r -> UInt64 in
            defer { r.nextSubscription += 1 }
            r.subscriptions[r.nextSubscription] = Routing.Subscription(rule: rule, continuation: continuation)
            return r.nextSubscription
        }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            let removed = self.routing.withLock { $0.subscriptions.removeValue(forKey: id) } != nil
            guard removed, self.isConnected else { return }
            let message = Message.methodCall(
                destination: .bus, path: Connection.busPath, interface: Connection.busInterface, member: "RemoveMatch")
            message.noReplyExpected = true
            try? message.append([.string(rule.description)])
            try? self.send(message)
        }
        do {
            _ = try await callBus("AddMatch", [.string(rule.description)])
        } catch {
            continuation.finish()
            throw error
        }
        return stream
    }

    /// Follows who owns `name`: yields the current owner (nil when none), then every change.
    public func watchNameOwner(_ name: BusName) async throws -> AsyncStream<BusName?> {
        let changes = try await signals(MatchRule(
            sender: .bus, interface: Connection.busInterface, member: "NameOwnerChanged",
            path: Connection.busPath, args: [0: name.rawValue]))
        // Asked after subscribing, so a change in between is seen as a signal.
        let initial = try await nameOwner(name)
        return AsyncStream { continuation in
            continuation.yield(initial)
            let task = Task {
                for await signal in changes {
                    let args = (try? signal.arguments()) ?? []
                    guard args.count == 3, let newOwner = args[2].string else { continue }
                    continuation.yield(newOwner.isEmpty ? nil : BusName(newOwner))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
