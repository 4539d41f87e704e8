import DBus
import Synchronization
import Testing

/// Calls sent at once (``Connection/send(call:timeout:)``) to an interface served in order.
@Suite("Pipelined calls on a private bus")
struct PipeliningTests {
    static let path: ObjectPath = "/org/example/Test/ordered"
    static let spec = InterfaceSpec(
        "org.example.Ordered",
        methods: [
            MethodSpec("Append", in: [ArgumentSpec("item", "s"), ArgumentSpec("ms", "u")]),
            MethodSpec("Items", out: [ArgumentSpec("items", "as")]),
        ])

    /// `Append` waits `ms` before it appends, so a later call would overtake an earlier slow one
    /// if the two ran side by side.
    static func interface(inOrder: Bool) -> Interface {
        let items = Mutex<[String]>([])
        return Interface(spec, inOrder: inOrder) { i in
            i.method("Append") { call in
                try await Task.sleep(for: .milliseconds(Int(call[1].uint32 ?? 0)))
                items.withLock { $0.append(call[0].string ?? "") }
                return []
            }
            i.method("Items") { _ in [.strings(items.withLock { $0 })] }
        }
    }

    static func message(_ member: MemberName, _ arguments: [Value] = []) throws -> Message {
        let message = Message.methodCall(destination: BusFixture.name, path: path, interface: spec.name, member: member)
        try message.append(arguments)
        return message
    }

    @Test func callsSentAtOnceAreAppliedInTheOrderSent() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            try f.server.objects.export(Self.path, [Self.interface(inOrder: true)])
            let slow = try f.client.send(call: Self.message("Append", [.string("first"), .uint32(200)]))
            let fast = try f.client.send(call: Self.message("Append", [.string("second"), .uint32(0)]))
            let items = try f.client.send(call: Self.message("Items"))
            // Awaited in reverse: a reply waits for whoever asks, whenever they ask.
            #expect(try await items.values() == [.strings(["first", "second"])])
            _ = try await fast.reply()
            _ = try await slow.reply()
        }
    }

    @Test func withoutOrderTheFastCallOvertakes() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            try f.server.objects.export(Self.path, [Self.interface(inOrder: false)])
            let slow = try f.client.send(call: Self.message("Append", [.string("first"), .uint32(1_000)]))
            let fast = try f.client.send(call: Self.message("Append", [.string("second"), .uint32(0)]))
            _ = try await fast.reply()
            _ = try await slow.reply()
            #expect(try await f.client.send(call: Self.message("Items")).values() == [.strings(["second", "first"])])
        }
    }

    @Test func oneCallersQueueHoldsUpNoOtherCaller() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            try f.server.objects.export(Self.path, [Self.interface(inOrder: true)])
            let other = try Connection(address: f.bus.address)
            defer { other.close() }
            // 30 s: far longer than a loaded machine could hold up the rest (other suites share
            // this process's two cooperative threads); the fixture's end drops the call.
            _ = try f.client.send(call: Self.message("Append", [.string("slow"), .uint32(30_000)]))
            try await Task.sleep(for: .milliseconds(50))
            _ = try await other.send(call: Self.message("Append", [.string("other"), .uint32(0)])).reply()
            #expect(try await other.send(call: Self.message("Items")).values() == [.strings(["other"])])
        }
    }

    @Test func errorsAndTimeoutsReachTheirWaiter() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let failing = Message.methodCall(destination: BusFixture.name, path: BusFixture.path,
                                             interface: TestService.spec.name, member: "Fail")
            try failing.append([.string("org.example.Error.Nope"), .string("no")])
            await #expect(throws: DBusError.self) { _ = try await f.client.send(call: failing).reply() }
            let sleeping = Message.methodCall(destination: BusFixture.name, path: BusFixture.path,
                                              interface: TestService.spec.name, member: "Sleep")
            try sleeping.append([.uint32(2_000)])
            let pending = try f.client.send(call: sleeping, timeout: .milliseconds(100))
            do {
                _ = try await pending.reply()
                Issue.record("a call past its timeout returned")
            } catch let error as DBusError {
                #expect(error.name == .noReply)
            }
            // A message is sent once.
            #expect(throws: DBusError.self) { _ = try f.client.send(call: failing) }
        }
    }
}
