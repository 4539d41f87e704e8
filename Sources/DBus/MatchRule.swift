/// A signal match rule: what the bus forwards to us, and which subscription a signal goes to.
///
/// Fields left nil match anything. Locally a rule is re-checked against each signal; a
/// well-known `sender` cannot be checked locally (signals carry the sender's unique name), so it
/// is left to the bus.
public struct MatchRule: Sendable, Hashable, CustomStringConvertible {
    public var sender: BusName?
    public var interface: InterfaceName?
    public var member: MemberName?
    public var path: ObjectPath?
    /// Matches `pathNamespace` and every path below it.
    public var pathNamespace: ObjectPath?
    /// String arguments by position (`argN` keys): the N-th argument must be this string
    /// (or object path).
    public var args: [Int: String]

    public init(
        sender: BusName? = nil, interface: InterfaceName? = nil, member: MemberName? = nil,
        path: ObjectPath? = nil, pathNamespace: ObjectPath? = nil, args: [Int: String] = [:]
    ) {
        self.sender = sender
        self.interface = interface
        self.member = member
        self.path = path
        self.pathNamespace = pathNamespace
        precondition(args.keys.allSatisfy { (0...63).contains($0) }, "match rules take arg0 to arg63")
        self.args = args
    }

    /// The rule in the bus's text form, for AddMatch and RemoveMatch.
    public var description: String {
        var parts = ["type='signal'"]
        func add(_ key: String, _ value: String?) {
            guard let value else { return }
            // Quoted values cannot contain a quote: close, add an escaped quote, reopen.
            parts.append("\(key)='" + value.replacingAll("'", with: "'\\''") + "'")
        }
        add("sender", sender?.rawValue)
        add("interface", interface?.rawValue)
        add("member", member?.rawValue)
        add("path", path?.rawValue)
        add("path_namespace", pathNamespace?.rawValue)
        for (index, value) in args.sorted(by: { $0.key < $1.key }) { add("arg\(index)", value) }
        return parts.joined(separator: ",")
    }

    func matches(_ message: Message) -> Bool {
        guard message.kind == .signal else { return false }
        if let sender, sender.isUnique || sender == .bus, message.sender != sender { return false }
        if let interface, message.interface != interface { return false }
        if let member, message.member != member { return false }
        if let path, message.path != path { return false }
        if let pathNamespace, let messagePath = message.path,
            messagePath != pathNamespace, !messagePath.isDescendant(of: pathNamespace)
        {
            return false
        }
        if !args.isEmpty {
            guard let values = try? message.arguments() else { return false }
            for (index, expected) in args {
                guard index < values.count else { return false }
                switch values[index] {
                case .string(let s) where s == expected: continue
                case .objectPath(let p) where p.rawValue == expected: continue
                default: return false
                }
            }
        }
        return true
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        out.reserveCapacity(utf8.count)
        for c in self {
            if c == target { out += replacement } else { out.append(c) }
        }
        return out
    }
}
