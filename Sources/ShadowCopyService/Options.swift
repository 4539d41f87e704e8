import DBus
import ShadowCopyCore

/// The `a{sv}` options of a method, checked against the keys it accepts.
///
/// Unknown keys and values of the wrong type are refused with `InvalidArgs`: an option that is
/// silently ignored is a bug report waiting to happen.
struct Options {
    private let values: [String: Value]

    init(_ value: Value, accepted: [String: Signature], method: String) throws(ShadowCopyError) {
        guard let dict = value.vardict else {
            throw .invalidArgs("\(method): options must be an a{sv} dictionary without repeated keys")
        }
        for (key, item) in dict {
            guard let expected = accepted[key] ?? Options.everywhere[key] else {
                let known = accepted.keys.sorted().joined(separator: ", ")
                throw .invalidArgs("\(method): unknown option '\(Options.printable(key))'"
                    + (known.isEmpty ? " (it takes none)" : " (known: \(known))"))
            }
            guard item.signature == expected else {
                throw .invalidArgs("\(method): option '\(key)' must have type \(expected), not \(item.signature)")
            }
        }
        values = dict
    }

    /// Keys every method takes (the udisks convention): `auth.no_user_interaction b` forbids
    /// polkit from asking the user to authenticate.
    static let everywhere: [String: Signature] = ["auth.no_user_interaction": "b"]

    /// Whether the caller's options forbid an authentication dialog.
    var noUserInteraction: Bool { bool("auth.no_user_interaction") ?? false }

    func string(_ key: String) -> String? { values[key]?.string }
    func uint32(_ key: String) -> UInt32? { values[key]?.uint32 }
    func bool(_ key: String) -> Bool? { values[key]?.bool }

    /// A string option that must be one of `Choice`'s raw values.
    func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, as: Choice.Type) throws(ShadowCopyError)
        -> Choice? where Choice.RawValue == String
    {
        guard let text = string(key) else { return nil }
        guard let choice = Choice(rawValue: text) else {
            let allowed = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            throw .invalidArgs("option '\(key)' must be one of \(allowed), not '\(Options.printable(text))'")
        }
        return choice
    }

    /// An object-path option naming a snapshot set.
    func setID(_ key: String) throws(ShadowCopyError) -> Identifier? {
        guard let value = values[key] else { return nil }
        guard let path = value.objectPath, let id = ShadowCopyBus.setID(path) else {
            throw .invalidArgs("option '\(key)' must be a snapshot set object (sets/<id>)")
        }
        return id
    }

    /// A UUID option in canonical form.
    func identifier(_ key: String) throws(ShadowCopyError) -> Identifier? {
        guard let text = string(key) else { return nil }
        guard text.utf8.count == 36, let id = Identifier(text) else {
            throw .invalidArgs("option '\(key)' must be a UUID such as 3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        }
        return id
    }

    /// Untrusted text cut short for a message.
    static func printable(_ text: String) -> String {
        let limit = 64
        let cleaned = String(text.unicodeScalars.prefix(limit).map {
            $0.properties.generalCategory == .control ? "?" : Character($0)
        })
        return text.unicodeScalars.count > limit ? cleaned + "..." : cleaned
    }
}
