/// Any D-Bus value, with its type.
///
/// Containers carry the signature of their elements so that empty arrays and dictionaries keep
/// their type on the wire. Values are checked against their declared types before they are
/// appended to a message (``Value/validate()``), never by libdbus, which would abort.
public enum Value: Sendable, Hashable {
    case byte(UInt8)
    case bool(Bool)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(ObjectPath)
    case signature(Signature)
    case unixFD(UnixFD)
    /// An array whose elements all have type `element` (a single complete type).
    case array(element: Signature, [Value])
    /// A dictionary `a{kv}`, in wire order; keys are basic values.
    case dictionary(key: Signature, value: Signature, [DictEntry])
    case structure([Value])
    indirect case variant(Value)

    /// One entry of a dictionary.
    public struct DictEntry: Sendable, Hashable {
        public var key: Value
        public var value: Value
        public init(_ key: Value, _ value: Value) {
            self.key = key
            self.value = value
        }
    }

    /// The value's single complete type.
    public var signature: Signature {
        Signature(unchecked: signatureString)
    }

    var signatureString: String {
        switch self {
        case .byte: "y"
        case .bool: "b"
        case .int16: "n"
        case .uint16: "q"
        case .int32: "i"
        case .uint32: "u"
        case .int64: "x"
        case .uint64: "t"
        case .double: "d"
        case .string: "s"
        case .objectPath: "o"
        case .signature: "g"
        case .unixFD: "h"
        case .array(let element, _): "a" + element.rawValue
        case .dictionary(let key, let value, _): "a{" + key.rawValue + value.rawValue + "}"
        case .structure(let members): "(" + members.map(\.signatureString).joined() + ")"
        case .variant: "v"
        }
    }

    /// An `a{sv}` dictionary, the options type of every shadowcopy method.
    public static func vardict(_ entries: [(String, Value)]) -> Value {
        .dictionary(key: "s", value: "v", entries.map { DictEntry(.string($0.0), .variant($0.1)) })
    }

    /// An `as` array.
    public static func strings(_ items: [String]) -> Value {
        .array(element: "s", items.map(Value.string))
    }

    /// An `ao` array.
    public static func objectPaths(_ items: [ObjectPath]) -> Value {
        .array(element: "o", items.map(Value.objectPath))
    }
}

// MARK: - Reading values

extension Value {
    public var string: String? { if case .string(let v) = self { v } else { nil } }
    public var objectPath: ObjectPath? { if case .objectPath(let v) = self { v } else { nil } }
    public var bool: Bool? { if case .bool(let v) = self { v } else { nil } }
    public var uint32: UInt32? { if case .uint32(let v) = self { v } else { nil } }
    public var int32: Int32? { if case .int32(let v) = self { v } else { nil } }
    public var uint64: UInt64? { if case .uint64(let v) = self { v } else { nil } }
    public var int64: Int64? { if case .int64(let v) = self { v } else { nil } }
    public var double: Double? { if case .double(let v) = self { v } else { nil } }
    public var unixFD: UnixFD? { if case .unixFD(let v) = self { v } else { nil } }
    /// The content of a variant.
    public var variantValue: Value? { if case .variant(let v) = self { v } else { nil } }
    /// Elements of an array (not of a dictionary).
    public var arrayElements: [Value]? { if case .array(_, let v) = self { v } else { nil } }
    public var structMembers: [Value]? { if case .structure(let v) = self { v } else { nil } }
    public var dictEntries: [DictEntry]? { if case .dictionary(_, _, let v) = self { v } else { nil } }

    /// An `as` array as strings.
    public var stringArray: [String]? {
        guard case .array(let element, let items) = self, element.rawValue == "s" else { return nil }
        return items.compactMap(\.string)
    }

    /// An `a{sv}` dictionary as `[String: Value]` (variant contents unwrapped); nil for other types
    /// or when a key repeats.
    public var vardict: [String: Value]? {
        guard case .dictionary(let key, let value, let entries) = self, key.rawValue == "s", value.rawValue == "v"
        else { return nil }
        var result: [String: Value] = [:]
        for entry in entries {
            guard let k = entry.key.string, let v = entry.value.variantValue, result[k] == nil else { return nil }
            result[k] = v
        }
        return result
    }
}

// MARK: - Validation

/// Why a value cannot be put on the wire.
public struct ValueValidationError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

extension Value {
    /// Nesting limits of the wire format: 32 arrays, 32 structs, 64 containers in all.
    static let maxContainerDepth = 64

    /// Checks that the value can be marshalled: element types match their declared signatures,
    /// strings hold no NUL, nesting stays within the wire format's limits.
    public func validate() throws(ValueValidationError) {
        try validate(arrays: 0, structs: 0, total: 0)
    }

    private func validate(arrays: Int, structs: Int, total: Int) throws(ValueValidationError) {
        guard arrays <= 32, structs <= 32, total <= Value.maxContainerDepth else {
            throw ValueValidationError(description: "value nested too deeply")
        }
        switch self {
        case .string(let s):
            guard !s.utf8.contains(0) else { throw ValueValidationError(description: "string contains NUL") }
        case .unixFD(let fd):
            guard fd.rawValue >= 0 else { throw ValueValidationError(description: "file descriptor already taken") }
        case .array(let element, let items):
            guard element.isSingleCompleteType, !element.rawValue.hasPrefix("{") else {
                throw ValueValidationError(description: "array element type \(element) is not one complete type")
            }
            for item in items {
                guard item.signatureString == element.rawValue else {
                    throw ValueValidationError(description: "array element of type \(item.signature), expected \(element)")
                }
                try item.validate(arrays: arrays + 1, structs: structs, total: total + 1)
            }
            guard Signature("a" + element.rawValue) != nil else {
                throw ValueValidationError(description: "array type a\(element) is not valid")
            }
        case .dictionary(let key, let value, let entries):
            guard let keyCode = key.rawValue.utf8.first, key.rawValue.utf8.count == 1, TypeCode.basic.contains(keyCode),
                value.isSingleCompleteType, Signature("a{" + key.rawValue + value.rawValue + "}") != nil
            else { throw ValueValidationError(description: "dictionary type a{\(key)\(value)} is not valid") }
            for entry in entries {
                guard entry.key.signatureString == key.rawValue, entry.value.signatureString == value.rawValue else {
                    throw ValueValidationError(description: "dictionary entry does not match a{\(key)\(value)}")
                }
                try entry.key.validate(arrays: arrays + 1, structs: structs + 1, total: total + 2)
                try entry.value.validate(arrays: arrays + 1, structs: structs + 1, total: total + 2)
            }
        case .structure(let members):
            guard !members.isEmpty else { throw ValueValidationError(description: "empty structure") }
            for member in members { try member.validate(arrays: arrays, structs: structs + 1, total: total + 1) }
            guard Signature(signatureString) != nil else {
                throw ValueValidationError(description: "structure type is not valid")
            }
        case .variant(let inner):
            try inner.validate(arrays: arrays, structs: structs, total: total + 1)
        default:
            break
        }
    }
}
