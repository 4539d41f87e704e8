/// The description of a D-Bus interface: its methods, properties and signals.
///
/// One description serves both dispatch (argument checks against the declared signatures) and
/// introspection (the XML is generated from it), so the two cannot drift apart.
public struct InterfaceSpec: Sendable {
    public let name: InterfaceName
    public let methods: [MethodSpec]
    public let properties: [PropertySpec]
    public let signals: [SignalSpec]

    public init(_ name: InterfaceName, methods: [MethodSpec] = [], properties: [PropertySpec] = [],
                signals: [SignalSpec] = []) {
        self.name = name
        self.methods = methods
        self.properties = properties
        self.signals = signals
    }

    public func method(_ name: MemberName) -> MethodSpec? { methods.first { $0.name == name } }
    public func property(_ name: MemberName) -> PropertySpec? { properties.first { $0.name == name } }
    public func signal(_ name: MemberName) -> SignalSpec? { signals.first { $0.name == name } }
}

/// A named, typed argument of a method or signal.
public struct ArgumentSpec: Sendable, Equatable {
    public let name: String
    public let type: Signature
    public init(_ name: String, _ type: Signature) {
        precondition(type.isSingleCompleteType, "argument \(name) must be one complete type")
        self.name = name
        self.type = type
    }
}

/// A method: its input and output arguments.
public struct MethodSpec: Sendable {
    public let name: MemberName
    public let inputs: [ArgumentSpec]
    public let outputs: [ArgumentSpec]
    /// The signature a call must carry (kept, as every call is checked against it).
    public let inputSignature: Signature
    /// The signature of the reply.
    public let outputSignature: Signature

    public init(_ name: MemberName, in inputs: [ArgumentSpec] = [], out outputs: [ArgumentSpec] = []) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        inputSignature = Signature(unchecked: inputs.map(\.type.rawValue).joined())
        outputSignature = Signature(unchecked: outputs.map(\.type.rawValue).joined())
    }
}

/// A property: its type, whether it can be written, and how changes are announced.
public struct PropertySpec: Sendable {
    public enum Access: String, Sendable { case read, readwrite }

    /// Values of `org.freedesktop.DBus.Property.EmitsChangedSignal`.
    public enum ChangeSignal: String, Sendable {
        /// `PropertiesChanged` carries the new value (the default).
        case emits = "true"
        /// `PropertiesChanged` names the property without its value.
        case invalidates
        /// The value never changes while the object exists.
        case const
        /// The value changes too often to announce; read it when needed.
        case never = "false"
    }

    public let name: MemberName
    public let type: Signature
    public let access: Access
    public let changeSignal: ChangeSignal

    public init(_ name: MemberName, _ type: Signature, access: Access = .read, changeSignal: ChangeSignal = .emits) {
        precondition(type.isSingleCompleteType, "property \(name) must be one complete type")
        self.name = name
        self.type = type
        self.access = access
        self.changeSignal = changeSignal
    }
}

/// A signal and its arguments.
public struct SignalSpec: Sendable {
    public let name: MemberName
    public let arguments: [ArgumentSpec]
    public init(_ name: MemberName, _ arguments: [ArgumentSpec] = []) {
        self.name = name
        self.arguments = arguments
    }
    /// The signature the signal is emitted with.
    public var signature: Signature { Signature(unchecked: arguments.map(\.type.rawValue).joined()) }
}

// MARK: - Introspection XML

extension InterfaceSpec {
    /// The `<interface>` element, indented by `indent` spaces.
    public func introspectionXML(indent: Int = 2) -> String {
        let pad = String(repeating: " ", count: indent)
        var xml = "\(pad)<interface name=\"\(name)\">\n"
        for method in methods {
            let args = method.inputs.map { ($0, "in") } + method.outputs.map { ($0, "out") }
            if args.isEmpty {
                xml += "\(pad)  <method name=\"\(method.name)\"/>\n"
            } else {
                xml += "\(pad)  <method name=\"\(method.name)\">\n"
                for (arg, direction) in args {
                    xml += "\(pad)    <arg name=\"\(arg.name)\" type=\"\(arg.type)\" direction=\"\(direction)\"/>\n"
                }
                xml += "\(pad)  </method>\n"
            }
        }
        for signal in signals {
            if signal.arguments.isEmpty {
                xml += "\(pad)  <signal name=\"\(signal.name)\"/>\n"
            } else {
                xml += "\(pad)  <signal name=\"\(signal.name)\">\n"
                for arg in signal.arguments {
                    xml += "\(pad)    <arg name=\"\(arg.name)\" type=\"\(arg.type)\"/>\n"
                }
                xml += "\(pad)  </signal>\n"
            }
        }
        for property in properties {
            let open = "\(pad)  <property name=\"\(property.name)\" type=\"\(property.type)\" access=\"\(property.access.rawValue)\""
            if property.changeSignal == .emits {
                xml += open + "/>\n"
            } else {
                xml += open + ">\n"
                xml += "\(pad)    <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" "
                    + "value=\"\(property.changeSignal.rawValue)\"/>\n"
                xml += "\(pad)  </property>\n"
            }
        }
        xml += "\(pad)</interface>\n"
        return xml
    }
}

enum IntrospectionDocument {
    static let header = """
        <!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
         "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">

        """

    static func node(interfaces: [InterfaceSpec], children: [String]) -> String {
        var xml = header + "<node>\n"
        for spec in interfaces { xml += spec.introspectionXML() }
        for child in children { xml += "  <node name=\"\(child)\"/>\n" }
        return xml + "</node>\n"
    }
}
