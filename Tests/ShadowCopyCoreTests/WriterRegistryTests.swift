import ShadowCopyCore
import Testing

@Suite("Identifiers")
struct IdentifierTests {
    @Test func formatsAndParses() throws {
        let id = Identifier()
        #expect(id.hex.count == 32)
        #expect(id.description.count == 36)
        #expect(Identifier(id.description) == id)
        #expect(Identifier(id.hex) == id)
        #expect(Array(id.description)[14] == "4", "version 4")
        #expect(Identifier("3F2504E0-4F89-11D3-9A0C-0305E82C3301")?.description == "3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        for bad in ["", "x", "3f2504e0-4f89-11d3-9a0c-0305e82c330", "3f2504e0+4f89-11d3-9a0c-0305e82c3301",
                    "zz2504e04f8911d39a0c0305e82c3301"] {
            #expect(Identifier(bad) == nil, "\(bad)")
        }
        #expect(Identifier() != Identifier())
    }
}

@Suite("Writer registry")
struct WriterRegistryTests {
    let registry = WriterRegistry(settings: CoordinatorSettings())

    @Test func registersAndListsWriters() throws {
        let record = try registry.register(WriterRegistration(name: "pg"), owner: ":1.1", path: "/pg")
        #expect(registry.writer(record.id)?.registration.name == "pg")
        #expect(record.freezeTimeoutMs == 60_000)
        #expect(record.state == .stable)
        #expect(registry.all.map(\.id) == [record.id])
    }

    @Test func refusesBadRegistrations() {
        #expect(throws: ShadowCopyError.invalidArgs("a writer name must have 1 to 255 bytes")) {
            try registry.register(WriterRegistration(name: ""), owner: ":1.1", path: "/w")
        }
        #expect(throws: ShadowCopyError.self) {
            try registry.register(WriterRegistration(name: "bell\u{7}"), owner: ":1.1", path: "/w")
        }
        #expect(throws: ShadowCopyError.self) {
            try registry.register(WriterRegistration(name: "w", freezeTimeoutMs: 60_001), owner: ":1.1", path: "/w")
        }
        #expect(registry.all.isEmpty)
    }

    @Test func refusesDuplicates() throws {
        let instance = Identifier()
        _ = try registry.register(WriterRegistration(name: "a", instanceID: instance), owner: ":1.1", path: "/a")
        #expect(throws: ShadowCopyError.self) {
            try registry.register(WriterRegistration(name: "b"), owner: ":1.1", path: "/a")
        }
        #expect(throws: ShadowCopyError.self) {
            try registry.register(WriterRegistration(name: "c", instanceID: instance), owner: ":1.2", path: "/c")
        }
        // The same path from another connection is another writer.
        _ = try registry.register(WriterRegistration(name: "d"), owner: ":1.2", path: "/a")
        #expect(registry.all.count == 2)
    }

    @Test func onlyTheOwnerUnregisters() throws {
        let record = try registry.register(WriterRegistration(name: "a"), owner: ":1.1", path: "/a")
        do {
            _ = try registry.unregister(record.id, caller: ":1.2")
            Issue.record("a stranger unregistered the writer")
        } catch {
            #expect(error.code == .notAuthorized)
        }
        #expect(try registry.unregister(record.id, caller: ":1.1").id == record.id)
        do {
            _ = try registry.unregister(record.id, caller: ":1.1")
            Issue.record("unregistered twice")
        } catch {
            #expect(error.code == .notFound)
        }
    }

    @Test func removesEverythingOfAVanishedOwner() throws {
        _ = try registry.register(WriterRegistration(name: "a"), owner: ":1.1", path: "/a")
        _ = try registry.register(WriterRegistration(name: "b"), owner: ":1.1", path: "/b")
        let kept = try registry.register(WriterRegistration(name: "c"), owner: ":1.2", path: "/c")
        #expect(registry.removeAll(ownedBy: ":1.1").count == 2)
        #expect(registry.all.map(\.id) == [kept.id])
    }

    @Test func enforcesLimits() throws {
        var settings = CoordinatorSettings()
        settings.maxWritersPerOwner = 2
        settings.maxWriters = 3
        let small = WriterRegistry(settings: settings)
        _ = try small.register(WriterRegistration(name: "1"), owner: ":1.1", path: "/1")
        _ = try small.register(WriterRegistration(name: "2"), owner: ":1.1", path: "/2")
        do {
            _ = try small.register(WriterRegistration(name: "3"), owner: ":1.1", path: "/3")
            Issue.record("per-owner limit not enforced")
        } catch {
            #expect(error.code == .limitExceeded)
        }
        _ = try small.register(WriterRegistration(name: "4"), owner: ":1.2", path: "/4")
        #expect(throws: ShadowCopyError.self) {
            try small.register(WriterRegistration(name: "5"), owner: ":1.3", path: "/5")
        }
    }
}
