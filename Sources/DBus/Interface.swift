/// An interface as served on one object: its description bound to handlers.
///
/// ```swift
/// let greeter = Interface(GreeterSpec.spec) { i in
///     i.method("Hello") { call in [.string("hello \(try call.string(0))")] }
///     i.property("Name") { .string(name) }
/// }
/// try connection.objects.export("/org/example/Greeter", [greeter])
/// ```
public struct Interface: Sendable {
    /// A method implementation: receives the checked call, returns the reply's values.
    public typealias MethodHandler = @Sendable (MethodCall) async throws -> [Value]
    /// A property getter; it runs on the connection's loop thread, so it must be quick.
    public typealias Getter = @Sendable () -> Value
    /// A property setter; the value already has the property's type.
    public typealias Setter = @Sendable (Value, MethodCall) async throws -> Void

    public let spec: InterfaceSpec
    /// Whether one caller's calls to this interface on one object run one after another, in the
    /// order they arrived, rather than side by side (see ``init(_:inOrder:_:)``).
    public let inOrder: Bool
    var methods: [MemberName: MethodHandler] = [:]
    var getters: [MemberName: Getter] = [:]
    var setters: [MemberName: Setter] = [:]

    /// Binds `spec` to the handlers that `build` declares; every method and property of the
    /// description must get one (a missing one is a programming error).
    ///
    /// Handlers run side by side by default, so a slow one holds up nothing. With `inOrder`, the
    /// calls one peer makes to this interface on one object run in the order it sent them, each
    /// after the previous one's reply: a session-like interface then lets its callers send a
    /// sequence of calls at once (pipelining) and rely on it being applied as sent, as a
    /// single-threaded D-Bus service would. Other peers and other objects are not held up.
    public init(_ spec: InterfaceSpec, inOrder: Bool = false, _ build: (inout Interface) -> Void) {
        self.spec = spec
        self.inOrder = inOrder
        build(&self)
        for method in spec.methods {
            precondition(methods[method.name] != nil, "\(spec.name).\(method.name) has no handler")
        }
        for property in spec.properties {
            precondition(getters[property.name] != nil, "\(spec.name).\(property.name) has no getter")
            precondition(property.access == .read || setters[property.name] != nil,
                         "\(spec.name).\(property.name) is writable but has no setter")
        }
    }

    /// Implements method `name` of the description.
    public mutating func method(_ name: MemberName, _ handler: @escaping MethodHandler) {
        precondition(spec.method(name) != nil, "\(spec.name) declares no method \(name)")
        methods[name] = handler
    }

    /// Implements property `name` of the description.
    public mutating func property(_ name: MemberName, get: @escaping Getter, set: Setter? = nil) {
        precondition(spec.property(name) != nil, "\(spec.name) declares no property \(name)")
        getters[name] = get
        if let set { setters[name] = set }
    }

    /// All properties and their current values, as `GetAll` returns them.
    /// The current values of the properties whose changes are announced, as peers learn them.
    func announcedValues() -> [MemberName: Value] {
        var values: [MemberName: Value] = [:]
        for p in spec.properties {
            guard let getter = getters[p.name] else { continue }
            values[p.name] = getter()
        }
        return values
    }

    func allProperties() -> Value {
        .vardict(spec.properties.compactMap { p in getters[p.name].map { (p.name.rawValue, $0()) } })
    }
}

/// One method call as a handler sees it: checked arguments and who sent it.
public struct MethodCall: Sendable {
    /// The message as received.
    public let message: Message
    /// The arguments, already checked against the method's declared signature.
    public let arguments: [Value]
    /// The caller's unique bus name.
    public let sender: BusName
    /// The object the call was addressed to.
    public let path: ObjectPath
    let server: ObjectServer

    /// The caller's uid, asked of the bus once per caller and then remembered.
    public func callerUID() async throws -> UInt32 {
        try await server.unixUser(of: sender)
    }

    /// Whether the caller allows an interactive authorization dialog for this call.
    public var allowsInteraction: Bool { message.allowInteractiveAuthorization }

    /// Argument `index` (whose type the signature check guarantees).
    public subscript(index: Int) -> Value { arguments[index] }
}
