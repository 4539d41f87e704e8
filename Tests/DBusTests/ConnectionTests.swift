#if canImport(Glibc)
import Glibc
#endif
import DBus
import ShadowCopyTestSupport
import Synchronization
import Testing

@Suite("Connections on a private bus")
struct ConnectionTests {
    @Test func methodCallsRoundTrip() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let value = Value.vardict([("k", .strings(["a", "b"])), ("n", .int64(-5))])
            #expect(try await f.call("Echo", [.variant(value)]) == [.variant(value)])
            #expect(try await f.call("WhoAmI") == [.uint32(getuid())])
        }
    }

    @Test func standardErrors() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let c = f.client
            #expect(await dbusErrorName { _ = try await c.call(BusFixture.name, "/nowhere", "org.example.Test", "Echo") }
                == ErrorName.unknownObject.rawValue)
            #expect(await dbusErrorName { _ = try await c.call(BusFixture.name, BusFixture.path, "org.example.Nope", "Echo") }
                == ErrorName.unknownInterface.rawValue)
            #expect(await dbusErrorName { _ = try await f.call("Nope") } == ErrorName.unknownMethod.rawValue)
            #expect(await dbusErrorName { _ = try await f.call("Echo", [.string("not a variant")]) }
                == ErrorName.invalidArgs.rawValue)
            #expect(await dbusErrorName { _ = try await f.call("Fail", [.string("org.example.Error.Custom"), .string("why")]) }
                == "org.example.Error.Custom")
            #expect(await dbusErrorName { _ = try await f.call("Broken") } == ErrorName.failed.rawValue)
            let props: InterfaceName = "org.freedesktop.DBus.Properties"
            #expect(await dbusErrorName {
                _ = try await c.call(BusFixture.name, BusFixture.path, props, "Set",
                                     [.string("org.example.Test"), .string("Label"), .variant(.string("x"))])
            } == ErrorName.propertyReadOnly.rawValue)
            #expect(await dbusErrorName {
                _ = try await c.call(BusFixture.name, BusFixture.path, props, "Set",
                                     [.string("org.example.Test"), .string("Counter"), .variant(.string("x"))])
            } == ErrorName.invalidArgs.rawValue)
            #expect(await dbusErrorName {
                _ = try await c.call(BusFixture.name, BusFixture.path, props, "Get", [.string("org.example.Test"), .string("Nope")])
            } == ErrorName.unknownProperty.rawValue)
        }
    }

    @Test func propertiesGetSetAndChangeSignal() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let props: InterfaceName = "org.freedesktop.DBus.Properties"
            let changes = try await f.client.signals(MatchRule(interface: props, member: "PropertiesChanged",
                                                               path: BusFixture.path))
            _ = try await f.client.call(BusFixture.name, BusFixture.path, props, "Set",
                                        [.string("org.example.Test"), .string("Counter"), .variant(.uint32(7))])
            let got = try await f.client.call(BusFixture.name, BusFixture.path, props, "Get",
                                              [.string("org.example.Test"), .string("Counter")])
            #expect(got == [.variant(.uint32(7))])
            let all = try await f.client.call(BusFixture.name, BusFixture.path, props, "GetAll", [.string("org.example.Test")])
            #expect(all.first?.vardict == ["Counter": .uint32(7), "Label": .string("test")])
            var iterator = changes.makeAsyncIterator()
            let signal = try #require(await iterator.next())
            let args = try signal.arguments()
            #expect(args[0] == .string("org.example.Test"))
            #expect(args[1].vardict == ["Counter": .uint32(7)])
        }
    }

    @Test func onlyRealChangesAreAnnounced() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let props: InterfaceName = "org.freedesktop.DBus.Properties"
            let changes = try await f.client.signals(MatchRule(interface: props, member: "PropertiesChanged",
                                                               path: BusFixture.path))
            func set(_ value: UInt32) async throws {
                _ = try await f.client.call(BusFixture.name, BusFixture.path, props, "Set",
                                            [.string("org.example.Test"), .string("Counter"), .variant(.uint32(value))])
            }
            try await set(0)  // the value peers learned at export: no change
            try await set(5)
            try await set(5)  // the same again: no change
            f.server.objects.propertiesChanged(BusFixture.path, "org.example.Test", ["Counter", "Label"])
            try await set(6)
            var iterator = changes.makeAsyncIterator()
            let first = try #require(await iterator.next())
            #expect(try first.arguments()[1].vardict == ["Counter": .uint32(5)])
            // Had any of the no-change calls announced something, it would come before 6.
            let second = try #require(await iterator.next())
            #expect(try second.arguments()[1].vardict == ["Counter": .uint32(6)])
        }
    }

    @Test func aSlowHandlerBlocksNothingElse() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let slowDone = Mutex(false)
            // A handler that would take 30 s; the test ends it by cancelling once the rest is done.
            // (Other suites run in this process at the same time and block its two cooperative
            // threads now and then, so no short time bound is safe here.)
            let slow = Task {
                defer { slowDone.withLock { $0 = true } }
                return try await f.call("Sleep", [.uint32(30_000)], timeout: .seconds(60))
            }
            try await Task.sleep(for: .milliseconds(50))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<200 {
                    group.addTask { () async throws in
                        #expect(try await f.call("Echo", [.variant(.uint32(UInt32(n)))], timeout: .seconds(60))
                                == [.variant(.uint32(UInt32(n)))])
                    }
                }
                try await group.waitForAll()
            }
            #expect(slowDone.withLock { $0 } == false, "the 200 fast calls finished while the slow one still ran")
            slow.cancel()
            await #expect(throws: CancellationError.self) { _ = try await slow.value }
        }
    }

    @Test func callsTimeOutAndCancel() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let start = ContinuousClock.now
            do {
                _ = try await f.call("Sleep", [.uint32(5000)], timeout: .milliseconds(200))
                Issue.record("the call should have timed out")
            } catch let error as DBusError {
                #expect(error.name == .noReply)
            }
            // Well before the 5 s the peer sleeps, with room for a loaded machine.
            #expect(ContinuousClock.now - start < .seconds(3))

            let task = Task { try await f.call("Sleep", [.uint32(5000)]) }
            try await Task.sleep(for: .milliseconds(100))
            let cancelled = ContinuousClock.now
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
            #expect(ContinuousClock.now - cancelled < .seconds(3), "cancelled, not answered after the 5 s sleep")
            // The connection still works after both.
            #expect(try await f.call("Echo", [.variant(.bool(true))]) == [.variant(.bool(true))])
        }
    }

    @Test func unixFileDescriptorsPass() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            let readEnd = UnixFD(owning: fds[0])
            var text = Array("through the bus".utf8)
            #expect(write(fds[1], &text, text.count) == text.count)
            close(fds[1])
            #expect(try await f.call("ReadFd", [.unixFD(readEnd)]) == [.string("through the bus")])
        }
    }

    @Test func signalSubscriptions() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let ticks = try await f.client.signals(MatchRule(interface: "org.example.Test", member: "Ticked"))
            _ = try await f.call("Tick", [.uint32(3)])
            var received: [Value] = []
            for await signal in ticks {
                received.append(try signal.arguments()[0])
                if received.count == 3 { break }
            }
            #expect(received == [.uint32(0), .uint32(1), .uint32(2)])
        }
    }

    /// A handler's signals are held and sent just before its reply: all of them come, in order;
    /// a task the handler started still gets its later signals out once the batch is closed.
    @Test func aHandlersSignalsComeBeforeItsReplyAndLaterOnesStillCome() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let ticks = try await f.client.signals(MatchRule(interface: "org.example.Test", member: "Ticked"))
            let reply = try f.client.send(call: {
                let m = Message.methodCall(destination: BusFixture.name, path: BusFixture.path,
                                           interface: TestService.spec.name, member: "Tick")
                try m.append([.uint32(3)])
                return m
            }())
            var iterator = ticks.makeAsyncIterator()
            var received: [Value] = []
            for _ in 0..<3 { if let signal = await iterator.next() { received.append(try signal.arguments()[0]) } }
            #expect(received == [.uint32(0), .uint32(1), .uint32(2)])
            _ = try await reply.reply()
            _ = try await f.call("TickLater", [.uint32(7)])
            let later = await iterator.next()
            #expect(try later?.arguments() == [.uint32(7)])
        }
    }

    @Test func nameOwnerWatching() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let owners = try await f.client.watchNameOwner("org.example.Owner")
            var iterator = owners.makeAsyncIterator()
            #expect(await iterator.next() == .some(nil))
            let third = try Connection(address: f.bus.address)
            #expect(try await third.requestName("org.example.Owner") == .primaryOwner)
            #expect(await iterator.next() == .some(third.uniqueName))
            third.close()
            #expect(await iterator.next() == .some(nil))
        }
    }

    @Test func objectManagerAndIntrospection() async throws {
        try await BusFixture.with { (f: BusFixture) async throws in
            let om: InterfaceName = "org.freedesktop.DBus.ObjectManager"
            let added = try await f.client.signals(MatchRule(interface: om, path: BusFixture.manager))
            let child: ObjectPath = "/org/example/Test/child"
            try f.server.objects.export(child, [TestService.interface(f.server)])
            let managed = try await f.client.call(BusFixture.name, BusFixture.manager, om, "GetManagedObjects")
            let paths = managed.first?.dictEntries?.compactMap(\.key.objectPath) ?? []
            #expect(paths == [child, BusFixture.path])
            f.server.objects.unexport(child)
            var iterator = added.makeAsyncIterator()
            let first = try #require(await iterator.next())
            #expect(first.member == "InterfacesAdded")
            #expect(try first.arguments()[0] == .objectPath(child))
            let second = try #require(await iterator.next())
            #expect(second.member == "InterfacesRemoved")
            #expect(try second.arguments()[1] == .strings(["org.example.Test"]))

            let xml = try await f.client.call(BusFixture.name, "/org/example", "org.freedesktop.DBus.Introspectable",
                                              "Introspect").first?.string ?? ""
            #expect(xml.contains("<node name=\"Test\"/>"))
            #expect(try await f.client.call(BusFixture.name, "/elsewhere", "org.freedesktop.DBus.Peer", "Ping") == [])
        }
    }

    @Test func losingTheBusEndsEverything() async throws {
        let bus = try PrivateBus(policies: [], extraConfig: BusFixture.policy)
        let connection = try Connection(address: bus.address)
        let server = try Connection(address: bus.address)
        defer {
            connection.close()
            server.close()
        }
        try server.objects.export(BusFixture.path, [TestService.interface(server)])
        _ = try await server.requestName(BusFixture.name)
        let pending = Task {
            try await connection.call(BusFixture.name, BusFixture.path, "org.example.Test", "Sleep", [.uint32(10_000)])
        }
        try await Task.sleep(for: .milliseconds(100))
        bus.stop()
        await connection.closed()
        #expect(!connection.isConnected)
        do {
            _ = try await pending.value
            Issue.record("the pending call should fail")
        } catch let error as DBusError {
            #expect(error.name == .disconnected)
        }
    }
}
