/// Routing of incoming method calls to standard and exported interfaces.
extension ObjectServer {
    /// Answers one method call; runs on the connection's loop thread.
    func dispatch(_ message: Message) {
        guard let path = message.path, let member = message.member, let sender = message.sender else {
            reply(to: message, error: DBusError(.invalidArgs, "method call without path, member or sender"))
            return
        }
        let interface = message.interface
        switch interface {
        case StandardInterfaces.peer.name?:
            return peer(message, member)
        case StandardInterfaces.introspectable.name?:
            return introspect(message, member, path)
        default:
            break
        }
        let (object, isManager) = state.withLock { ($0.objects[path], $0.managers.contains(path)) }
        if interface == StandardInterfaces.objectManager.name, isManager {
            return managedObjects(message, member, path)
        }
        guard let object else {
            if interface == nil, member == "Ping" || member == "Introspect" {
                return member == "Ping" ? peer(message, member) : introspect(message, member, path)
            }
            return reply(to: message, error: DBusError(.unknownObject, "No such object path '\(path)'"))
        }
        let call = { (arguments: [Value]) in
            MethodCall(message: message, arguments: arguments, sender: sender, path: path, server: self)
        }
        if interface == StandardInterfaces.properties.name {
            return properties(message, member, object, call)
        }
        let target: (Interface, MethodSpec)?
        if let interface {
            guard let found = object[interface] else {
                return reply(to: message, error: DBusError(
                    .unknownInterface, "Object '\(path)' has no interface '\(interface)'"))
            }
            target = found.spec.method(member).map { (found, $0) }
        } else {
            target = object.values.sorted { $0.spec.name < $1.spec.name }
                .lazy.compactMap { i in i.spec.method(member).map { (i, $0) } }.first
        }
        guard let (implementation, spec) = target, let handler = implementation.methods[member] else {
            return reply(to: message, error: DBusError(
                .unknownMethod, "No method '\(member)' on interface '\(interface?.rawValue ?? "(none)")' of '\(path)'"))
        }
        guard message.signature == spec.inputSignature else {
            return reply(to: message, error: DBusError(
                .invalidArgs, "\(member) takes (\(spec.inputSignature)), the call carried (\(message.signature))"))
        }
        let arguments: [Value]
        do { arguments = try message.arguments() } catch { return reply(to: message, error: error) }
        let methodCall = call(arguments)
        let run: @Sendable () async -> Void = { [self] in
            let batch = SignalBatch()
            let outcome: Result<[Value], any Error> = await ObjectServer.$batch.withValue(batch) {
                do { return .success(try await handler(methodCall)) } catch { return .failure(error) }
            }
            if let connection { for held in batch.close() { try? connection.send(held) } }
            switch outcome {
            case .success(let values): reply(to: message, values: values, declared: spec.outputSignature)
            case .failure(let error): reply(to: message, error: ObjectServer.wireError(error))
            }
        }
        guard implementation.inOrder else {
            Task { await run() }
            return
        }
        // Queued behind this peer's previous call here; the queue's entry goes with its last call.
        let key = OrderKey(sender: sender, path: path, interface: implementation.spec.name)
        state.withLock { s in
            let previous = s.queues[key]?.task
            s.lastQueued += 1
            let number = s.lastQueued
            s.queues[key] = (number, Task { [self] in
                await previous?.value
                await run()
                state.withLock { s in if s.queues[key]?.number == number { s.queues[key] = nil } }
            })
        }
    }

    static func wireError(_ error: any Error) -> DBusError {
        if let convertible = error as? any DBusErrorConvertible { return convertible.dbusError }
        if error is CancellationError { return DBusError(.failed, "the call was cancelled") }
        return DBusError(.failed, String(describing: error))
    }

    // MARK: Replies

    func reply(to call: Message, values: [Value], declared: Signature) {
        guard !call.noReplyExpected, let connection else { return }
        let actual = values.map(\.signatureString).joined()
        guard actual == declared.rawValue else {
            // A handler bug must not reach libdbus or the caller as a malformed reply.
            return reply(to: call, error: DBusError(
                .failed, "internal error: reply (\(actual)) does not match the declared (\(declared))"))
        }
        let message = Message.methodReturn(replyingTo: call)
        do {
            try message.append(values)
            try connection.send(message)
        } catch {
            reply(to: call, error: error)
        }
    }

    func reply(to call: Message, error: DBusError) {
        guard !call.noReplyExpected, let connection else { return }
        try? connection.send(Message.error(replyingTo: call, error))
    }

    // MARK: Standard interfaces

    private func peer(_ message: Message, _ member: MemberName) {
        switch (member, message.signature) {
        case ("Ping", .empty): reply(to: message, values: [], declared: .empty)
        case ("GetMachineId", .empty): reply(to: message, values: [.string(StandardInterfaces.machineID)], declared: "s")
        case ("Ping", _), ("GetMachineId", _):
            reply(to: message, error: DBusError(.invalidArgs, "\(member) takes no arguments"))
        default:
            reply(to: message, error: DBusError(.unknownMethod, "No method '\(member)' on org.freedesktop.DBus.Peer"))
        }
    }

    private func introspect(_ message: Message, _ member: MemberName, _ path: ObjectPath) {
        guard member == "Introspect" else {
            return reply(to: message, error: DBusError(.unknownMethod, "No method '\(member)' on Introspectable"))
        }
        guard message.signature == .empty else {
            return reply(to: message, error: DBusError(.invalidArgs, "Introspect takes no arguments"))
        }
        let xml: String? = state.withLock { s in
            let object = s.objects[path]
            var children = Set<String>()
            let depth = path.elements.count
            for other in s.objects.keys where other.isDescendant(of: path) {
                children.insert(String(other.elements[depth]))
            }
            guard object != nil || !children.isEmpty || s.managers.contains(path) else { return nil }
            var specs = [StandardInterfaces.peer, StandardInterfaces.introspectable]
            if object != nil { specs.append(StandardInterfaces.properties) }
            if s.managers.contains(path) { specs.append(StandardInterfaces.objectManager) }
            specs += (object?.values.map(\.spec) ?? []).sorted { $0.name < $1.name }
            return IntrospectionDocument.node(interfaces: specs, children: children.sorted())
        }
        guard let xml else {
            return reply(to: message, error: DBusError(.unknownObject, "No such object path '\(path)'"))
        }
        reply(to: message, values: [.string(xml)], declared: "s")
    }

    private func managedObjects(_ message: Message, _ member: MemberName, _ path: ObjectPath) {
        guard member == "GetManagedObjects", message.signature == .empty else {
            return reply(to: message, error: DBusError(
                member == "GetManagedObjects" ? .invalidArgs : .unknownMethod,
                "ObjectManager has GetManagedObjects() only"))
        }
        let objects = state.withLock { s in s.objects.filter { $0.key.isDescendant(of: path) } }
        let entries = objects.sorted { $0.key < $1.key }.map { (objectPath, interfaces) in
            Value.DictEntry(.objectPath(objectPath), .dictionary(key: "s", value: "a{sv}", interfaces.values
                .sorted { $0.spec.name < $1.spec.name }
                .map { Value.DictEntry(.string($0.spec.name.rawValue), $0.allProperties()) }))
        }
        reply(to: message, values: [.dictionary(key: "o", value: "a{sa{sv}}", entries)], declared: "a{oa{sa{sv}}}")
    }

    private func properties(
        _ message: Message, _ member: MemberName, _ object: [InterfaceName: Interface],
        _ makeCall: ([Value]) -> MethodCall
    ) {
        guard let spec = StandardInterfaces.properties.method(member) else {
            return reply(to: message, error: DBusError(.unknownMethod, "No method '\(member)' on Properties"))
        }
        guard message.signature == spec.inputSignature else {
            return reply(to: message, error: DBusError(
                .invalidArgs, "\(member) takes (\(spec.inputSignature)), the call carried (\(message.signature))"))
        }
        let arguments: [Value]
        do { arguments = try message.arguments() } catch { return reply(to: message, error: error) }
        let interfaceName = arguments[0].string ?? ""
        if member == "GetAll", interfaceName.isEmpty {
            let all = object.values.sorted { $0.spec.name < $1.spec.name }.flatMap { $0.allProperties().dictEntries ?? [] }
            return reply(to: message, values: [.dictionary(key: "s", value: "v", all)], declared: "a{sv}")
        }
        guard let name = InterfaceName(interfaceName), let implementation = object[name] else {
            return reply(to: message, error: DBusError(.unknownInterface, "No interface '\(interfaceName)' here"))
        }
        if member == "GetAll" {
            return reply(to: message, values: [implementation.allProperties()], declared: "a{sv}")
        }
        let propertyName = arguments[1].string ?? ""
        guard let property = MemberName(propertyName), let propertySpec = implementation.spec.property(property),
            let getter = implementation.getters[property]
        else {
            return reply(to: message, error: DBusError(.unknownProperty, "No property '\(propertyName)' on \(name)"))
        }
        if member == "Get" {
            return reply(to: message, values: [.variant(getter())], declared: "v")
        }
        guard propertySpec.access == .readwrite, let setter = implementation.setters[property] else {
            return reply(to: message, error: DBusError(.propertyReadOnly, "Property '\(propertyName)' is read-only"))
        }
        guard let newValue = arguments[2].variantValue, newValue.signature == propertySpec.type else {
            return reply(to: message, error: DBusError(
                .invalidArgs, "Property '\(propertyName)' has type \(propertySpec.type)"))
        }
        let call = makeCall(arguments)
        Task {
            do {
                try await setter(newValue, call)
                reply(to: message, values: [], declared: .empty)
                propertiesChanged(call.path, name, [property])
            } catch {
                reply(to: message, error: ObjectServer.wireError(error))
            }
        }
    }
}
