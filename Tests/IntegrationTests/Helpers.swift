import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

enum SC {
    static let name: BusName = "org.shadowcopy.ShadowCopy1"
    static let root: ObjectPath = "/org/shadowcopy/ShadowCopy1"
    static let coordinator: InterfaceName = "org.shadowcopy.ShadowCopy1.Coordinator"
    static let writer: InterfaceName = "org.shadowcopy.ShadowCopy1.RegisteredWriter"
    static let properties: InterfaceName = "org.freedesktop.DBus.Properties"
    static let objectManager: InterfaceName = "org.freedesktop.DBus.ObjectManager"

    static func call(_ c: Connection, _ member: MemberName, _ args: [Value] = [],
                     path: ObjectPath = root, interface: InterfaceName = coordinator) async throws -> [Value] {
        try await c.call(name, path, interface, member, args)
    }

    static func errorName(_ body: () async throws -> Void) async -> String { await dbusErrorName(body) }

    static func managedObjects(_ c: Connection) async throws -> [ObjectPath: [String: [String: Value]]] {
        let reply = try await call(c, "GetManagedObjects", interface: objectManager)
        var result: [ObjectPath: [String: [String: Value]]] = [:]
        for entry in reply.first?.dictEntries ?? [] {
            var interfaces: [String: [String: Value]] = [:]
            for i in entry.value.dictEntries ?? [] { interfaces[i.key.string!] = i.value.vardict }
            result[entry.key.objectPath!] = interfaces
        }
        return result
    }

    static func writerPaths(_ c: Connection) async throws -> [ObjectPath] {
        try await managedObjects(c).filter { $0.value[writer.rawValue] != nil }.keys.sorted()
    }

    /// Polls `condition` for up to `timeout`.
    static func eventually(_ timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async throws -> Bool {
        try await ShadowCopyTestSupport.eventually(timeout, condition)
    }
}
