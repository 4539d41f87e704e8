#if canImport(Glibc)
import Glibc
#endif
import DBus
import Synchronization

/// `shadowcopy-fuzz`: sends hostile calls to shadowcopyd on DBUS_SYSTEM_BUS_ADDRESS, as whoever
/// runs it, and prints one line of results: how many were answered, each error name with its
/// count, and the first calls that succeeded (there must be none).
///
/// usage: shadowcopy-fuzz --seed N --count N --set PATH --snapshot PATH [--symlink PATH]...
@main
enum Fuzz {
    static func main() async {
        var seed: UInt64 = 1, count = 10_000
        var set: ObjectPath = "/org/shadowcopy/ShadowCopy1/sets/0", snapshot: ObjectPath = "/org/shadowcopy/ShadowCopy1/snapshots/0"
        var symlinks: [String] = []
        var rest = CommandLine.arguments.dropFirst()
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { fail("\(flag) needs a value") }
            switch flag {
            case "--seed": seed = UInt64(value) ?? seed
            case "--count": count = Int(value) ?? count
            case "--set": set = ObjectPath(value) ?? set
            case "--snapshot": snapshot = ObjectPath(value) ?? snapshot
            case "--symlink": symlinks.append(value)
            default: fail("unknown argument \(flag)")
            }
        }
        let connection: Connection
        do { connection = try Connection.system() } catch { fail("cannot connect: \(error)") }
        let calls = HostileCalls(set: set, snapshot: snapshot, symlinks: symlinks)
        var rng = SplitMix(state: seed)
        let tally = Tally()
        let messages = (0..<count).map { calls.call(&rng, index: $0) }
        // 64 in flight at a time: the system bus allows 128 pending replies per connection.
        for chunk in stride(from: 0, to: messages.count, by: 64) {
            await withTaskGroup(of: Void.self) { group in
                for message in messages[chunk..<min(chunk + 64, messages.count)] {
                    group.addTask { await tally.record(message, on: connection) }
                }
            }
        }
        connection.close()
        print(tally.summary)
    }

    static func fail(_ message: String) -> Never {
        var bytes = Array("shadowcopy-fuzz: \(message)\n".utf8)
        _ = write(2, &bytes, bytes.count)
        exit(64)
    }
}

final class Tally: Sendable {
    private struct Counts {
        var answered = 0
        var errors: [String: Int] = [:]
        var successes: [String] = []
        /// The first call that got no answer at all, for the record.
        var unanswered: String?
    }

    private let counts = Mutex(Counts())

    func record(_ message: Message, on connection: Connection) async {
        var name: String?
        do {
            let reply = try await connection.call(message, timeout: .seconds(60))
            // IsVolumeSupported answers a question: (false, "") is its refusal.
            if message.member?.rawValue == "IsVolumeSupported", (try? reply.arguments())?.first?.bool == false {
                name = "IsVolumeSupported=false"
            }
        } catch let failure as DBusError {
            name = failure.name.rawValue
        } catch {
            name = "client-side: \(error)"
        }
        counts.withLock { c in
            c.answered += 1
            if let name {
                c.errors[name, default: 0] += 1
                if name == ErrorName.noReply.rawValue, c.unanswered == nil { c.unanswered = "\(message) \((try? message.arguments()) ?? [])".prefix(600).description }
            }
            // libdbus answers org.freedesktop.DBus.Peer itself, whatever the arguments.
            else if message.interface?.rawValue != "org.freedesktop.DBus.Peer", c.successes.count < 5 {
                c.successes.append("\(message)")
            }
        }
    }

    /// `answered=N errors=Name:count,... successes=K first=...`
    var summary: String {
        counts.withLock { c in
            let errors = c.errors.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")
            return "answered=\(c.answered) successes=\(c.successes.count) errors=\(errors) first-success=\(c.successes.first ?? "")"
                + (c.unanswered.map { " first-unanswered=\($0)" } ?? "")
        }
    }
}
