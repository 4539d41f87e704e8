import Foundation

/// Unix users and a group made for one test (useradd/groupadd) and removed by ``remove()``.
public final class TestAccounts: @unchecked Sendable {
    public struct User: Sendable {
        public let name: String
        public let uid: UInt32
        public let gid: UInt32
    }

    /// The group that rules grant rights to.
    public let group: String
    public private(set) var users: [String: User] = [:]
    private let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)

    /// Makes the group `sct<suffix>` and, for each role, a user `sct<suffix><role>`; roles in
    /// `members` also belong to the group.
    public init(roles: [String], members: Set<String>) throws {
        group = "sct\(suffix)"
        try Self.run("/usr/sbin/groupadd", ["--system", group])
        do {
            for role in roles {
                let name = "sct\(suffix)\(role)"
                var arguments = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
                if members.contains(role) { arguments += ["--groups", group] }
                try Self.run("/usr/sbin/useradd", arguments + [name])
                let uid = try Self.id(["-u", name]), gid = try Self.id(["-g", name])
                users[role] = User(name: name, uid: uid, gid: gid)
            }
        } catch {
            remove()
            throw error
        }
    }

    public subscript(role: String) -> User { users[role]! }

    public func remove() {
        for user in users.values { _ = try? Tool.run("/usr/sbin/userdel", [user.name]) }
        _ = try? Tool.run("/usr/sbin/groupdel", [group])
    }

    private static func run(_ tool: String, _ arguments: [String]) throws {
        let result = try Tool.run(tool, arguments)
        guard result.status == 0 else { throw HarnessError("\(tool) \(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    private static func id(_ arguments: [String]) throws -> UInt32 {
        let result = try Tool.run("/usr/bin/id", arguments)
        guard let value = UInt32(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("id \(arguments): \(result.stderr)")
        }
        return value
    }
}

/// A method call made by another process as a given user (Tests/tools/bus-call.py under
/// setpriv), as an unprivileged client of the daemon would make it.
public enum BusCall {
    public struct Outcome: Sendable, CustomStringConvertible {
        /// The D-Bus error name, or nil for a reply.
        public let error: String?
        public let message: String
        public let reply: [String]

        public var description: String { error.map { "\($0): \(message)" } ?? "reply \(reply)" }
    }

    /// Calls `method` on `path` of shadowcopyd as `user` (root when nil).
    public static func call(_ bus: PrivateBus, as user: TestAccounts.User?, _ path: String, _ interface: String,
                            _ method: String, _ signature: String = "", _ arguments: String = "[]",
                            interactive: Bool = false) throws -> Outcome {
        let script = ProjectPaths.root.appendingPathComponent("Tests/tools/bus-call.py").path
        var command = [ProjectPaths.systemPython, script] + (interactive ? ["--interactive"] : [])
            + [path, interface, method, signature, arguments]
        if let user {
            command = ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups"] + command
        }
        let result = try Tool.run(command[0], Array(command.dropFirst()), environment: ["DBUS_SYSTEM_BUS_ADDRESS": bus.address])
        guard let line = result.stdout.split(separator: "\n").last,
            let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw HarnessError("bus-call.py: \(result.stdout) \(result.stderr)") }
        if let error = json["error"] as? String {
            return Outcome(error: error, message: json["message"] as? String ?? "", reply: [])
        }
        let reply = (json["reply"] as? [Any] ?? []).map { "\($0)" }
        return Outcome(error: nil, message: "", reply: reply)
    }
}
