/// Validated D-Bus names.
///
/// libdbus aborts the process when it is handed a malformed name, so every name is checked here,
/// in Swift, before it can reach the C library. The rules are those of the D-Bus specification,
/// "Valid Names".

/// A syntactically valid D-Bus object path such as `/org/shadowcopy/ShadowCopy1`.
public struct ObjectPath: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The path as a string.
    public let rawValue: String

    /// The root path `/`.
    public static let root = ObjectPath(unchecked: "/")

    /// Validates `rawValue`; returns nil when it is not an object path.
    public init?(_ rawValue: String) {
        guard ObjectPath.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    /// Validates a literal; a bad literal is a programming error.
    public init(stringLiteral value: String) {
        precondition(ObjectPath.isValid(value), "invalid object path literal \(value)")
        self.rawValue = value
    }

    init(unchecked: String) { self.rawValue = unchecked }

    public var description: String { rawValue }

    public static func < (lhs: ObjectPath, rhs: ObjectPath) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Whether `self` is `other` or lies below it.
    public func isDescendant(of other: ObjectPath) -> Bool {
        if other.rawValue == "/" { return rawValue != "/" }
        return rawValue.hasPrefix(other.rawValue + "/")
    }

    /// This path with one more element; nil when `element` is not a valid path element.
    public func appending(_ element: String) -> ObjectPath? {
        guard !element.isEmpty, !element.contains("/") else { return nil }
        return ObjectPath(rawValue == "/" ? "/" + element : rawValue + "/" + element)
    }

    /// The path's elements, empty for `/`.
    public var elements: [Substring] { rawValue.split(separator: "/") }

    /// Whether `value` is a valid object path.
    public static func isValid(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return false }
        if bytes.count == 1 { return true }
        guard bytes.last != UInt8(ascii: "/") else { return false }
        var previousSlash = false
        for byte in bytes.dropFirst() {
            if byte == UInt8(ascii: "/") {
                if previousSlash { return false }
                previousSlash = true
            } else {
                guard NameRules.isAlphanumeric(byte) || byte == UInt8(ascii: "_") else { return false }
                previousSlash = false
            }
        }
        return true
    }
}

/// A D-Bus interface name such as `org.shadowcopy.ShadowCopy1.Coordinator`.
public struct InterfaceName: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The name as a string.
    public let rawValue: String
    /// For a name libdbus has already validated (a header field of a received message).
    init(unchecked: String) { self.rawValue = unchecked }
    /// Validates `rawValue`; returns nil when it is not an interface name.
    public init?(_ rawValue: String) {
        guard NameRules.isDottedName(rawValue, allowHyphen: false, allowLeadingDigit: false) else { return nil }
        self.rawValue = rawValue
    }
    /// Validates a literal; a bad literal is a programming error.
    public init(stringLiteral value: String) {
        precondition(InterfaceName(value) != nil, "invalid interface name literal \(value)")
        self.rawValue = value
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A D-Bus error name such as `org.freedesktop.DBus.Error.InvalidArgs`; same rules as interfaces.
public struct ErrorName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The name as a string.
    public let rawValue: String
    /// For a name libdbus has already validated (a header field of a received message).
    init(unchecked: String) { self.rawValue = unchecked }
    /// Validates `rawValue`; returns nil when it is not an error name.
    public init?(_ rawValue: String) {
        guard NameRules.isDottedName(rawValue, allowHyphen: false, allowLeadingDigit: false) else { return nil }
        self.rawValue = rawValue
    }
    /// Validates a literal; a bad literal is a programming error.
    public init(stringLiteral value: String) {
        precondition(ErrorName(value) != nil, "invalid error name literal \(value)")
        self.rawValue = value
    }
    public var description: String { rawValue }
}

/// A method or signal name such as `RegisterWriter`.
public struct MemberName: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The name as a string.
    public let rawValue: String
    /// For a name libdbus has already validated (a header field of a received message).
    init(unchecked: String) { self.rawValue = unchecked }
    /// Validates `rawValue`; returns nil when it is not a member name.
    public init?(_ rawValue: String) {
        guard NameRules.isElement(Array(rawValue.utf8)[...], allowHyphen: false, allowLeadingDigit: false),
            rawValue.utf8.count <= 255
        else { return nil }
        self.rawValue = rawValue
    }
    /// Validates a literal; a bad literal is a programming error.
    public init(stringLiteral value: String) {
        precondition(MemberName(value) != nil, "invalid member name literal \(value)")
        self.rawValue = value
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A bus name: unique (`:1.42`) or well-known (`org.shadowcopy.ShadowCopy1`).
public struct BusName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The name as a string.
    public let rawValue: String
    /// For a name libdbus has already validated (a header field of a received message).
    init(unchecked: String) { self.rawValue = unchecked }

    /// The message bus itself.
    public static let bus: BusName = "org.freedesktop.DBus"

    /// Validates `rawValue`; returns nil when it is not a bus name.
    public init?(_ rawValue: String) {
        if rawValue.hasPrefix(":") {
            guard NameRules.isDottedName(String(rawValue.dropFirst()), allowHyphen: true, allowLeadingDigit: true),
                rawValue.utf8.count <= 255
            else { return nil }
        } else {
            guard NameRules.isDottedName(rawValue, allowHyphen: true, allowLeadingDigit: false) else { return nil }
        }
        self.rawValue = rawValue
    }
    /// Validates a literal; a bad literal is a programming error.
    public init(stringLiteral value: String) {
        precondition(BusName(value) != nil, "invalid bus name literal \(value)")
        self.rawValue = value
    }
    /// Whether this is a connection's unique name (`:1.42`).
    public var isUnique: Bool { rawValue.hasPrefix(":") }
    public var description: String { rawValue }
}

enum NameRules {
    static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }

    static func isElement(_ bytes: ArraySlice<UInt8>, allowHyphen: Bool, allowLeadingDigit: Bool) -> Bool {
        guard let first = bytes.first else { return false }
        if !allowLeadingDigit, first >= 0x30, first <= 0x39 { return false }
        for b in bytes {
            let ok = isAlphanumeric(b) || b == UInt8(ascii: "_") || (allowHyphen && b == UInt8(ascii: "-"))
            if !ok { return false }
        }
        return true
    }

    /// Two or more non-empty elements separated by dots, at most 255 bytes.
    static func isDottedName(_ value: String, allowHyphen: Bool, allowLeadingDigit: Bool) -> Bool {
        let bytes = Array(value.utf8)
        guard !bytes.isEmpty, bytes.count <= 255 else { return false }
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return false }
        return parts.allSatisfy { isElement($0, allowHyphen: allowHyphen, allowLeadingDigit: allowLeadingDigit) }
    }
}
