import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

@Suite("Writer registration on the real daemon")
struct WriterRegistrationTests {
    static let pythonWriter = """
        import dbus, sys, time
        bus = dbus.SystemBus()
        coordinator = dbus.Interface(bus.get_object('org.shadowcopy.ShadowCopy1', '/org/shadowcopy/ShadowCopy1'),
                                     'org.shadowcopy.ShadowCopy1.Coordinator')
        path = coordinator.RegisterWriter(dbus.ObjectPath('/org/example/PyWriter'),
                                          {'name': 'python writer', 'level': 'back-end',
                                           'freeze-timeout-ms': dbus.UInt32(5000)})
        print(bus.get_unique_name(), path, flush=True)
        time.sleep(120)
        """

    @Test func aWriterFromAnotherProcessIsListedAndVanishesWithItsConnection() async throws {
        guard FileManager.default.isExecutableFile(atPath: ProjectPaths.systemPython) else {
            Issue.record("\(ProjectPaths.systemPython) with python3-dbus is required (apt-get install python3-dbus)")
            return
        }
        try await DaemonFixture.with { fixture in
            let c = try fixture.client()
            defer { c.close() }
            let removed = try await c.signals(MatchRule(interface: SC.objectManager, member: "InterfacesRemoved", path: SC.root))
            let output = fixture.bus.directory.appendingPathComponent("python.out").path
            let script = fixture.bus.directory.appendingPathComponent("writer.py")
            try Self.pythonWriter.write(to: script, atomically: true, encoding: .utf8)
            let python = try ChildProcess(ProjectPaths.systemPython, [script.path],
                                          environment: ["DBUS_SYSTEM_BUS_ADDRESS": fixture.bus.address],
                                          stdout: output, stderr: output)
            defer { python.stop(signal: SIGKILL) }
            var line = ""
            #expect(try await SC.eventually(.seconds(10)) {
                line = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
                return line.hasSuffix("\n")
            }, "python printed: \(line)")
            let parts = line.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            let owner = parts[0], path = try #require(ObjectPath(parts[1]))

            let objects = try await SC.managedObjects(c)
            let writer = try #require(objects[path]?[SC.writer.rawValue])
            #expect(writer["Name"] == .string("python writer"))
            #expect(writer["Owner"] == .string(owner))
            #expect(writer["Path"] == .objectPath("/org/example/PyWriter"))
            #expect(writer["Level"] == .string("back-end"))
            #expect(writer["FreezeTimeoutMs"] == .uint32(5000))
            #expect(writer["State"] == .string("stable"))
            #expect(writer["Id"]?.string.map { path.rawValue.hasSuffix($0.replacingOccurrences(of: "-", with: "")) } == true)

            python.stop(signal: SIGKILL)
            var iterator = removed.makeAsyncIterator()
            let signal = try #require(await iterator.next())
            #expect(try signal.arguments()[0] == .objectPath(path))
            #expect(try await SC.writerPaths(c).isEmpty)
            #expect(await SC.errorName { _ = try await SC.call(c, "GetAll", [.string(SC.writer.rawValue)], path: path,
                                                               interface: SC.properties) }
                == ErrorName.unknownObject.rawValue)
        }
    }

    @Test func aBusctlWriterGoesWhenBusctlExits() async throws {
        try await DaemonFixture.with { fixture in
            let c = try fixture.client()
            defer { c.close() }
            let result = try Tool.busctl(fixture.bus, ["call", "org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1",
                                                       "org.shadowcopy.ShadowCopy1.Coordinator", "RegisterWriter", "oa{sv}",
                                                       "/w", "1", "name", "s", "from busctl"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.hasPrefix("o \"/org/shadowcopy/ShadowCopy1/writers/"))
            #expect(try await SC.eventually { try await SC.writerPaths(c).isEmpty })
            #expect(fixture.daemon.log.contains("writer gone with its connection"))
        }
    }

    @Test func onlyTheOwnerUnregisters() async throws {
        try await DaemonFixture.with { fixture in
            let owner = try fixture.client(), other = try fixture.client()
            defer {
                owner.close()
                other.close()
            }
            let path = try await SC.call(owner, "RegisterWriter", [.objectPath("/w"), .vardict([("name", .string("mine"))])])[0]
            #expect(await SC.errorName { _ = try await SC.call(other, "UnregisterWriter", [path]) }
                == "org.shadowcopy.ShadowCopy1.Error.NotAuthorized")
            #expect(try await SC.writerPaths(owner) == [path.objectPath!])
            #expect(await SC.errorName { _ = try await SC.call(owner, "UnregisterWriter", [.objectPath("/org/x")]) }
                == "org.shadowcopy.ShadowCopy1.Error.NotFound")
            #expect(try await SC.call(owner, "UnregisterWriter", [path]) == [])
            #expect(try await SC.writerPaths(owner).isEmpty)
            #expect(await SC.errorName { _ = try await SC.call(owner, "UnregisterWriter", [path]) }
                == "org.shadowcopy.ShadowCopy1.Error.NotFound")
        }
    }

    @Test func badOptionsAreRefusedAndLeaveNothing() async throws {
        try await DaemonFixture.with { fixture in
            let c = try fixture.client()
            defer { c.close() }
            let invalid = ErrorName.invalidArgs.rawValue
            let cases: [(String, [(String, Value)])] = [
                (invalid, [("name", .string("w")), ("colour", .string("red"))]),
                (invalid, [("name", .uint32(1))]),
                (invalid, []),
                (invalid, [("name", .string(""))]),
                (invalid, [("name", .string(String(repeating: "n", count: 256)))]),
                (invalid, [("name", .string("w")), ("level", .string("middle"))]),
                (invalid, [("name", .string("w")), ("usage", .string("fun"))]),
                (invalid, [("name", .string("w")), ("class-id", .string("not-a-uuid"))]),
                (invalid, [("name", .string("w")), ("freeze-timeout-ms", .uint32(0))]),
                (invalid, [("name", .string("w")), ("freeze-timeout-ms", .uint32(3_600_000))]),
            ]
            for (expected, options) in cases {
                let got = await SC.errorName {
                    _ = try await SC.call(c, "RegisterWriter", [.objectPath("/w"), .vardict(options)])
                }
                #expect(got == expected, "\(options)")
            }
            let repeated = Value.dictionary(key: "s", value: "v", [.init(.string("name"), .variant(.string("a"))),
                                                                   .init(.string("name"), .variant(.string("b")))])
            #expect(await SC.errorName { _ = try await SC.call(c, "RegisterWriter", [.objectPath("/w"), repeated]) } == invalid)
            #expect(await SC.errorName { _ = try await SC.call(c, "RegisterWriter", [.string("/w"), .vardict([])]) } == invalid)
            #expect(try await SC.writerPaths(c).isEmpty)

            _ = try await SC.call(c, "RegisterWriter", [.objectPath("/w"), .vardict([("name", .string("w"))])])
            #expect(await SC.errorName {
                _ = try await SC.call(c, "RegisterWriter", [.objectPath("/w"), .vardict([("name", .string("again"))])])
            } == "org.shadowcopy.ShadowCopy1.Error.AlreadyExists")
            #expect(try await SC.writerPaths(c).count == 1)
        }
    }

    @Test func shadowStorageIsRefusedForWhatNoDeviceMapperProviderCopies() async throws {
        try await DaemonFixture.with { fixture in
            let c = try fixture.client()
            defer { c.close() }
            // Shadow storage itself is tested in a kernel with device-mapper (ShadowStorageTests).
            let cases: [([Value], String)] = [
                ([.string("/srv"), .string("/var"), .uint64(1 << 30), .vardict([])], "VolumeNotSupported"),
                ([.string("relative"), .string("/var"), .uint64(0), .vardict([])], "InvalidArgs"),
                ([.string("/srv"), .string("/var"), .uint64(0), .vardict([("policy", .string("sometimes"))])], "InvalidArgs"),
            ]
            for (args, expected) in cases {
                do {
                    _ = try await SC.call(c, "AddShadowStorage", args)
                    Issue.record("AddShadowStorage \(args) answered without error")
                } catch let error as DBusError {
                    #expect(error.name.rawValue.hasSuffix("." + expected), "\(args): \(error.name) \(error.message)")
                }
            }
            #expect(try await SC.managedObjects(c).keys.allSatisfy { !$0.rawValue.contains("/storage/") })
        }
    }

    @Test func coordinatorProperties() async throws {
        try await DaemonFixture.with { fixture in
            let c = try fixture.client()
            defer { c.close() }
            let all = try await SC.call(c, "GetAll", [.string(SC.coordinator.rawValue)], interface: SC.properties)[0].vardict
            #expect(all == [
                "Version": .string("0.1.0"), "FreezeTimeoutMs": .uint32(60_000), "HoldWritesTimeoutMs": .uint32(10_000),
                "MaxVolumesPerSet": .uint32(64), "MaxSnapshotsPerVolume": .uint32(32), "ActiveSet": .objectPath("/"),
            ])
            #expect(await SC.errorName {
                _ = try await SC.call(c, "Set", [.string(SC.coordinator.rawValue), .string("FreezeTimeoutMs"),
                                                 .variant(.uint32(1))], interface: SC.properties)
            } == ErrorName.propertyReadOnly.rawValue)
        }
    }
}
