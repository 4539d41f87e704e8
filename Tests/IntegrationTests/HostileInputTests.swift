import DBus
import Foundation
import ShadowCopyTestSupport
import Synchronization
import Testing

/// Randomised hostile calls: every one must be answered with an error, and the daemon must stay
/// up with flat memory and nothing registered.
@Suite("Hostile input")
struct HostileInputTests {
    /// A deterministic generator, so a failure can be replayed from its seed.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let expectedErrors: Set<String> = [
        ErrorName.invalidArgs.rawValue, ErrorName.unknownMethod.rawValue, ErrorName.unknownObject.rawValue,
        ErrorName.unknownInterface.rawValue, ErrorName.unknownProperty.rawValue, ErrorName.propertyReadOnly.rawValue,
        "org.shadowcopy.ShadowCopy1.Error.NotSupported", "org.shadowcopy.ShadowCopy1.Error.NotFound",
    ]

    static let hostileStrings = [
        "../../etc/shadow", "/org/shadowcopy/ShadowCopy1/../../x", "0 100 linear /dev/sda 0\n0 1 zero",
        "shadowcopy-x\nsnapshot /dev/sda", "'; DROP TABLE sets; --", "%s%s%s%n", "\u{202E}evil", "/dev/mapper/../sda",
        String(repeating: "A", count: 4096), "", " ", "\u{7}\u{1b}[2J",
    ]

    static func randomValue(_ rng: inout SplitMix, depth: Int = 0) -> Value {
        switch Int.random(in: 0..<(depth > 3 ? 8 : 12), using: &rng) {
        case 0: return .string(hostileStrings.randomElement(using: &rng)!)
        case 1: return .uint32(UInt32.random(in: 0...UInt32.max, using: &rng))
        case 2: return .int64(Int64.random(in: .min ... .max, using: &rng))
        case 3: return .objectPath(["/", "/org/shadowcopy/ShadowCopy1/writers/00", "/a/b/c"].randomElement(using: &rng)!)
        case 4: return .bool(Bool.random(using: &rng))
        case 5: return .double([Double.nan, .infinity, -0.0, 1e308].randomElement(using: &rng)!)
        case 6: return .byte(UInt8.random(in: 0...255, using: &rng))
        case 7: return .signature("a{sv}")
        case 8: return .variant(randomValue(&rng, depth: depth + 1))
        case 9: return .strings((0..<Int.random(in: 0..<5, using: &rng)).map { _ in hostileStrings.randomElement(using: &rng)! })
        case 10: return .structure([randomValue(&rng, depth: depth + 1), randomValue(&rng, depth: depth + 1)])
        default: return hostileOptions(&rng, depth: depth + 1)
        }
    }

    /// An a{sv} that always holds at least one unknown key or wrong type.
    static func hostileOptions(_ rng: inout SplitMix, depth: Int = 0) -> Value {
        var entries: [(String, Value)] = [(["name", "level", "usage"].randomElement(using: &rng)!, .uint64(1))]
        for _ in 0..<Int.random(in: 0..<4, using: &rng) {
            entries.append((hostileStrings.randomElement(using: &rng)!, randomValue(&rng, depth: depth + 1)))
        }
        entries.shuffle(using: &rng)
        return .vardict(entries)
    }

    static func nested(_ depth: Int) -> Value {
        var value = Value.string("deep")
        for level in 0..<depth { value = level % 2 == 0 ? .variant(value) : .structure([value]) }
        return value
    }

    /// One hostile call: never a valid request, so an error reply is the only right answer.
    static func hostileCall(_ rng: inout SplitMix, index: Int) -> Message {
        let members: [MemberName] = ["RegisterWriter", "UnregisterWriter", "StartSnapshotSet", "Query", "AddShadowStorage",
                                     "IsVolumeSupported", "DeleteSnapshots", "Nope", "Get", "Set", "GetAll", "Introspect",
                                     "GetManagedObjects", "Ping"]
        let interfaces: [InterfaceName?] = [
            "org.shadowcopy.ShadowCopy1.Coordinator", "org.freedesktop.DBus.Properties", "org.example.Unknown",
            "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.ObjectManager", "org.freedesktop.DBus.Peer", nil,
        ]
        let paths: [ObjectPath] = ["/org/shadowcopy/ShadowCopy1", "/org/shadowcopy/ShadowCopy1/writers/0123",
                                   "/org/shadowcopy/ShadowCopy1/sets/x", "/elsewhere"]
        let member = members.randomElement(using: &rng)!
        let message = Message.methodCall(destination: "org.shadowcopy.ShadowCopy1", path: paths.randomElement(using: &rng)!,
                                         interface: interfaces.randomElement(using: &rng)!, member: member)
        var args: [Value]
        switch index % 10 {
        case 0 where index % 500 == 0:
            args = [.string(String(repeating: "x", count: 1 << 20)), hostileOptions(&rng)]   // 1 MiB
        case 1:
            args = [nested(Int.random(in: 20...60, using: &rng))]
        case 2:
            args = [.objectPath("/w"), hostileOptions(&rng)]
        case 3:
            args = [.string("org.shadowcopy.ShadowCopy1.Coordinator"), .string(hostileStrings.randomElement(using: &rng)!)]
        default:
            args = (0..<Int.random(in: 1..<5, using: &rng)).map { _ in randomValue(&rng) }
        }
        // A call that would be valid by chance (Ping(), Introspect(), GetManagedObjects() on the
        // right path) gets a surplus argument so it never is.
        args.append(.uint32(0xDEAD))
        try! message.append(args)
        return message
    }

    @Test func tenThousandHostileCallsAllGetErrors() async throws {
        try await DaemonFixture.with { fixture in
            let c = try fixture.client()
            defer { c.close() }
            var rng = SplitMix(state: 0x5EED_2026)
            let tally = Tally()

            func batch(_ range: Range<Int>, _ rng: inout SplitMix) async throws {
                let messages = range.map { Self.hostileCall(&rng, index: $0) }
                // 64 in flight at a time: the bus allows 128 pending replies per connection.
                for chunk in stride(from: 0, to: messages.count, by: 64) {
                    await withTaskGroup(of: Void.self) { group in
                        for message in messages[chunk..<min(chunk + 64, messages.count)] {
                            group.addTask { await tally.record(message, on: c) }
                        }
                    }
                }
            }

            try await batch(0..<2_000, &rng)       // warm-up: allocator and caches settle
            let before = try #require(fixture.daemon.residentKiB)
            try await batch(2_000..<12_000, &rng)
            let after = try #require(fixture.daemon.residentKiB)

            #expect(tally.answered.withLock { $0 } == 12_000)
            let problems = tally.unexpected.withLock { $0 }
            #expect(problems.isEmpty, "\(problems.count) unexpected answers, first: \(problems.prefix(5))")
            #expect(fixture.daemon.process.isRunning)
            #expect(try await SC.call(c, "Ping", interface: "org.freedesktop.DBus.Peer") == [])
            #expect(try await SC.writerPaths(c).isEmpty)
            print("hostile input: 10000 calls, daemon RSS \(before) KiB -> \(after) KiB")
            #expect(after - before < 4 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
        }
    }

    final class Tally: Sendable {
        let unexpected = Mutex<[String]>([])
        let answered = Mutex(0)

        func record(_ message: Message, on connection: Connection) async {
            do {
                _ = try await connection.call(message, timeout: .seconds(30))
                // libdbus answers org.freedesktop.DBus.Peer itself, whatever the arguments.
                if message.interface?.rawValue != "org.freedesktop.DBus.Peer" {
                    unexpected.withLock { $0.append("success: \(message)") }
                }
            } catch let error as DBusError {
                if !HostileInputTests.expectedErrors.contains(error.name.rawValue) {
                    unexpected.withLock { $0.append("\(error.name): \(error.message) for \(message)") }
                }
            } catch {
                unexpected.withLock { $0.append("\(error) for \(message)") }
            }
            answered.withLock { $0 += 1 }
        }
    }

    @Test func clientRefusesWhatLibdbusWouldAbortOn() {
        let message = Message.methodCall(destination: "org.shadowcopy.ShadowCopy1", path: "/", interface: nil, member: "X")
        #expect(throws: DBusError.self) { try message.append([Self.nested(70)]) }
        #expect(throws: DBusError.self) { try message.append([.string("a\0b")]) }
    }
}
