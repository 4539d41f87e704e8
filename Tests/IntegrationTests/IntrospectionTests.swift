import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

@Suite("Introspection equals the contract files")
struct IntrospectionTests {
    /// The `<interface name="...">` element of `xml`, with comments and layout whitespace removed.
    static func element(_ name: String, in xml: String) -> String? {
        var text = xml.replacing(/<!--[\s\S]*?-->/, with: "")
        text = text.replacing(/>\s+</, with: "><").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let start = text.range(of: "<interface name=\"\(name)\">"),
            let end = text.range(of: "</interface>", range: start.upperBound..<text.endIndex)
        else { return nil }
        return String(text[start.lowerBound..<end.upperBound])
    }

    static func contractFile(_ interface: String) throws -> String {
        try String(contentsOf: ProjectPaths.root.appendingPathComponent("dbus/\(interface).xml"), encoding: .utf8)
    }

    @Test func servedInterfacesEqualTheirFiles() async throws {
        try await DaemonFixture.with { fixture in
            let c = try fixture.client()
            defer { c.close() }
            let root = try await SC.call(c, "Introspect", interface: "org.freedesktop.DBus.Introspectable")[0].string!
            let coordinator = "org.shadowcopy.ShadowCopy1.Coordinator"
            let served = try #require(Self.element(coordinator, in: root))
            #expect(served == Self.element(coordinator, in: try Self.contractFile(coordinator)))
            #expect(root.contains("<interface name=\"org.freedesktop.DBus.ObjectManager\">"))

            let writer = try await SC.call(c, "RegisterWriter", [.objectPath("/w"), .vardict([("name", .string("x"))])])
            let writerXML = try await SC.call(c, "Introspect", path: writer[0].objectPath!,
                                              interface: "org.freedesktop.DBus.Introspectable")[0].string!
            let registered = "org.shadowcopy.ShadowCopy1.RegisteredWriter"
            let servedWriter = try #require(Self.element(registered, in: writerXML))
            #expect(servedWriter == Self.element(registered, in: try Self.contractFile(registered)))

            // A set, a job, and the built-in provider: objects of the engine.
            let set = try await RequesterSet.start(c)
            let job = try #require(try await set.call("GatherWriterMetadata").first?.objectPath)
            let provider: ObjectPath = "/org/shadowcopy/ShadowCopy1/providers/btrfs"
            for (path, interface) in [(set.path, "SnapshotSet"), (job, "Job"), (provider, "RegisteredProvider")] {
                let name = "org.shadowcopy.ShadowCopy1.\(interface)"
                let xml = try await SC.call(c, "Introspect", path: path, interface: "org.freedesktop.DBus.Introspectable")[0].string!
                let served = try #require(Self.element(name, in: xml), "\(name) on \(path)")
                #expect(served == Self.element(name, in: try Self.contractFile(name)), "\(name)")
            }
        }
    }

    @Test func aSnapshotObjectServesItsContractFile() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { fixture in
                let c = try fixture.client()
                defer { c.close() }
                let set = try await RequesterSet.start(c, [("context", .string("file-share-backup"))])
                let snapshot = try #require(try await set.call("AddVolume", [.string(volume.mountPoint), .vardict([])]).first?.objectPath)
                let name = "org.shadowcopy.ShadowCopy1.Snapshot"
                let xml = try await SC.call(c, "Introspect", path: snapshot, interface: "org.freedesktop.DBus.Introspectable")[0].string!
                #expect(Self.element(name, in: xml) == Self.element(name, in: try Self.contractFile(name)))
                _ = try await set.call("Delete")
            }
        }
    }

    @Test func everyContractFileDescribesOneInterface() throws {
        let names = ["Coordinator", "SnapshotSet", "Job", "Snapshot", "Writer", "Provider", "RegisteredWriter",
                     "RegisteredProvider", "ShadowStorage"]
        for name in names {
            let interface = "org.shadowcopy.ShadowCopy1.\(name)"
            let text = try Self.contractFile(interface)
            #expect(Self.element(interface, in: text) != nil, "\(interface).xml")
            #expect(text.contains("<!--"), "\(interface).xml is documented")
        }
    }

    @Test func busctlShowsCoordinatorAndObjectManager() async throws {
        try await DaemonFixture.with { fixture in
            let result = try Tool.busctl(fixture.bus, ["introspect", "org.shadowcopy.ShadowCopy1", "/org/shadowcopy/ShadowCopy1"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("org.shadowcopy.ShadowCopy1.Coordinator"))
            #expect(result.stdout.contains("org.freedesktop.DBus.ObjectManager"))
            #expect(result.stdout.contains(".RegisterWriter"))
            let version = try Tool.busctl(fixture.bus, ["get-property", "org.shadowcopy.ShadowCopy1",
                                                        "/org/shadowcopy/ShadowCopy1", "org.shadowcopy.ShadowCopy1.Coordinator",
                                                        "Version"])
            #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "s \"0.1.0\"")
        }
    }
}
