import DBus
import ShadowCopyTestSupport

/// A private bus where the test service `org.example.Test` may be owned and called, and a server
/// connection that serves ``TestService`` there.
struct BusFixture {
    static let name: BusName = "org.example.Test"
    static let path: ObjectPath = "/org/example/Test/object"
    static let manager: ObjectPath = "/org/example/Test"
    static let policy = """
        <policy context="default">
          <allow own="org.example.Test"/>
          <allow own="org.example.Owner"/>
          <allow send_destination="org.example.Test"/>
        </policy>
        """

    let bus: PrivateBus
    let server: Connection
    let client: Connection

    /// Runs `body` with a bus, a serving connection and a client; tears all down afterwards.
    static func with(_ body: (BusFixture) async throws -> Void) async throws {
        let bus = try PrivateBus(policies: [], extraConfig: policy)
        var connections: [Connection] = []
        defer {
            for connection in connections { connection.close() }
            bus.stop()
        }
        let server = try Connection(address: bus.address)
        connections.append(server)
        let client = try Connection(address: bus.address)
        connections.append(client)
        server.objects.addObjectManager(at: manager)
        try server.objects.export(path, [TestService.interface(server)])
        #expect(try await server.requestName(name) == .primaryOwner)
        try await body(BusFixture(bus: bus, server: server, client: client))
    }

    func call(_ member: MemberName, _ arguments: [Value] = [], timeout: Duration = .seconds(10)) async throws -> [Value] {
        try await client.call(BusFixture.name, BusFixture.path, TestService.spec.name, member, arguments, timeout: timeout)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing

/// A small service exercising every server feature.
enum TestService {
    static let spec = InterfaceSpec(
        "org.example.Test",
        methods: [
            MethodSpec("Echo", in: [ArgumentSpec("value", "v")], out: [ArgumentSpec("value", "v")]),
            MethodSpec("Sleep", in: [ArgumentSpec("ms", "u")], out: [ArgumentSpec("done", "s")]),
            MethodSpec("ReadFd", in: [ArgumentSpec("fd", "h")], out: [ArgumentSpec("text", "s")]),
            MethodSpec("WhoAmI", out: [ArgumentSpec("uid", "u")]),
            MethodSpec("Fail", in: [ArgumentSpec("name", "s"), ArgumentSpec("message", "s")]),
            MethodSpec("Tick", in: [ArgumentSpec("count", "u")]),
            MethodSpec("TickLater", in: [ArgumentSpec("n", "u")]),
            MethodSpec("Broken", out: [ArgumentSpec("value", "s")]),
        ],
        properties: [
            PropertySpec("Counter", "u", access: .readwrite),
            PropertySpec("Label", "s", changeSignal: .const),
        ],
        signals: [SignalSpec("Ticked", [ArgumentSpec("n", "u")])])

    static func interface(_ connection: Connection) -> Interface {
        let counter = Mutex<UInt32>(0)
        return Interface(spec) { i in
            i.method("Echo") { call in [call[0]] }
            i.method("Sleep") { call in
                try await Task.sleep(for: .milliseconds(Int(call[0].uint32 ?? 0)))
                return [.string("slept")]
            }
            i.method("ReadFd") { call in
                let fd = call[0].unixFD!
                var buffer = [UInt8](repeating: 0, count: 64)
                let n = read(fd.rawValue, &buffer, buffer.count)
                return [.string(String(decoding: buffer[0..<max(n, 0)], as: UTF8.self))]
            }
            i.method("WhoAmI") { call in [.uint32(try await call.callerUID())] }
            i.method("Fail") { call in
                throw DBusError(ErrorName(call[0].string!) ?? .failed, call[1].string!)
            }
            i.method("Tick") { call in
                for n in 0..<(call[0].uint32 ?? 0) {
                    connection.objects.emit(spec, "Ticked", from: BusFixture.path, [.uint32(n)])
                }
                return []
            }
            // Emits from a task that outlives the call: the handler's held signals are long sent.
            i.method("TickLater") { call in
                let n = call[0].uint32 ?? 0
                Task {
                    try? await Task.sleep(for: .milliseconds(100))
                    connection.objects.emit(spec, "Ticked", from: BusFixture.path, [.uint32(n)])
                }
                return []
            }
            // Declares `s` but answers `u`: the server must refuse to send it.
            i.method("Broken") { _ in [.uint32(1)] }
            i.property("Counter", get: { .uint32(counter.withLock { $0 }) }, set: { value, _ in
                counter.withLock { $0 = value.uint32! }
            })
            i.property("Label", get: { .string("test") })
        }
    }
}
