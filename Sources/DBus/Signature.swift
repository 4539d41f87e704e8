/// A validated D-Bus type signature: zero or more complete types, such as `oa{sv}`.
public struct Signature: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The signature as a string.
    public let rawValue: String

    /// The empty signature (no arguments).
    public static let empty = Signature(unchecked: "")

    /// Validates `rawValue`; returns nil when it is not a valid signature.
    public init?(_ rawValue: String) {
        guard (try? SignatureParser.completeTypes(Array(rawValue.utf8))) != nil else { return nil }
        self.rawValue = rawValue
    }

    /// Validates a literal; a bad literal is a programming error.
    public init(stringLiteral value: String) {
        precondition(Signature(value) != nil, "invalid signature literal \(value)")
        self.rawValue = value
    }

    init(unchecked: String) { self.rawValue = unchecked }

    public var description: String { rawValue }

    /// The complete types this signature is made of, each as its own signature.
    public var completeTypes: [Signature] {
        // Valid by construction, so the parse cannot fail.
        ((try? SignatureParser.completeTypes(Array(rawValue.utf8))) ?? []).map {
            Signature(unchecked: String(decoding: $0, as: UTF8.self))
        }
    }

    /// Whether this signature is exactly one complete type.
    public var isSingleCompleteType: Bool { completeTypes.count == 1 }

    /// Concatenation of complete types.
    public static func + (lhs: Signature, rhs: Signature) -> Signature {
        Signature(unchecked: lhs.rawValue + rhs.rawValue)
    }
}

/// Type codes of the D-Bus wire format.
enum TypeCode {
    static let byte = UInt8(ascii: "y"), boolean = UInt8(ascii: "b"), int16 = UInt8(ascii: "n")
    static let uint16 = UInt8(ascii: "q"), int32 = UInt8(ascii: "i"), uint32 = UInt8(ascii: "u")
    static let int64 = UInt8(ascii: "x"), uint64 = UInt8(ascii: "t"), double = UInt8(ascii: "d")
    static let string = UInt8(ascii: "s"), objectPath = UInt8(ascii: "o"), signature = UInt8(ascii: "g")
    static let unixFD = UInt8(ascii: "h"), array = UInt8(ascii: "a"), variant = UInt8(ascii: "v")
    static let structOpen = UInt8(ascii: "("), structClose = UInt8(ascii: ")")
    static let dictOpen = UInt8(ascii: "{"), dictClose = UInt8(ascii: "}")
    /// What libdbus's iterators use for a struct and a dict entry (never in signatures).
    static let structIter = UInt8(ascii: "r"), dictEntryIter = UInt8(ascii: "e")

    static let basic: Set<UInt8> = [byte, boolean, int16, uint16, int32, uint32, int64, uint64, double,
                                     string, objectPath, signature, unixFD]
}

/// Signature validation per the specification: at most 255 bytes, 32 nested arrays, 32 nested
/// structs, dict entries only directly inside arrays with a basic key and exactly one value.
enum SignatureParser {
    struct Invalid: Error {}

    static let maxLength = 255
    static let maxDepth = 32

    static func completeTypes(_ bytes: [UInt8]) throws(Invalid) -> [ArraySlice<UInt8>] {
        guard bytes.count <= maxLength else { throw Invalid() }
        var index = 0
        var types: [ArraySlice<UInt8>] = []
        while index < bytes.count {
            let start = index
            try parseOne(bytes, &index, arrayDepth: 0, structDepth: 0, inArray: false)
            types.append(bytes[start..<index])
        }
        return types
    }

    private static func parseOne(
        _ b: [UInt8], _ i: inout Int, arrayDepth: Int, structDepth: Int, inArray: Bool
    ) throws(Invalid) {
        guard i < b.count else { throw Invalid() }
        let code = b[i]
        i += 1
        if TypeCode.basic.contains(code) || code == TypeCode.variant { return }
        switch code {
        case TypeCode.array:
            guard arrayDepth < maxDepth else { throw Invalid() }
            try parseOne(b, &i, arrayDepth: arrayDepth + 1, structDepth: structDepth, inArray: true)
        case TypeCode.structOpen:
            guard structDepth < maxDepth else { throw Invalid() }
            var members = 0
            while i < b.count, b[i] != TypeCode.structClose {
                try parseOne(b, &i, arrayDepth: arrayDepth, structDepth: structDepth + 1, inArray: false)
                members += 1
            }
            guard i < b.count, members > 0 else { throw Invalid() }
            i += 1
        case TypeCode.dictOpen:
            guard inArray, structDepth < maxDepth, i < b.count, TypeCode.basic.contains(b[i]) else { throw Invalid() }
            i += 1
            try parseOne(b, &i, arrayDepth: arrayDepth, structDepth: structDepth + 1, inArray: false)
            guard i < b.count, b[i] == TypeCode.dictClose else { throw Invalid() }
            i += 1
        default:
            throw Invalid()
        }
    }
}
